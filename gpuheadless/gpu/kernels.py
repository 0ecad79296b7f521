"""Host side of the CUDA kernels in ``kernels/``: sources, launch shapes and argument types.

:class:`KernelSet` wraps a *loader* ``loader(file, options) -> module`` whose ``get_function(name)``
returns ``kernel(grid, block, args)``: ``cupy.RawModule`` on a GPU, or the CPU emulation of the
tests (DESIGN §4). The same host code therefore runs, and is tested, without a GPU. Arrays come
from ``xp`` (CuPy or NumPy); scalars are passed as NumPy scalars of the kernels' C types.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any, Callable

import numpy as np

from ..features.filters import correlation_operands
from ..features.kernels import FirKernel
from ..forest.model import Forest

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535
# -fmad=false: products and sums round separately unless a kernel calls fmaf(), as on the CPU.
NVCC_OPTIONS = ("-fmad=false",)
# What NVRTC gets: IEEE float32 as on the CPU (no flushing of subnormals, correctly rounded
# division and square root), and CuPy's default execution space. cupy.RawModule would append
# -ftz=true after these, which is why cupy_loader compiles with NVRTC itself.
NVRTC_OPTIONS = NVCC_OPTIONS + ("-ftz=false", "-prec-div=true", "-prec-sqrt=true",
                                "--device-as-default-execution-space")
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)
_KERNEL_NAME = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


def kernel_source_dir() -> str:
    """Where the ``.cu`` files are: inside the installed package, or ``kernels/`` of a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "..", "kernels"), os.path.join(here, "..", "..", "kernels")):
        if os.path.exists(os.path.join(candidate, "forest.cu")):
            return os.path.normpath(candidate)
    raise FileNotFoundError("the CUDA sources (kernels/*.cu) are not installed")


def module_source(path: str, _seen: frozenset[str] = frozenset()) -> str:
    """The source of ``path`` with every ``#include "..."`` of the kernel folder inlined.

    The compiled module then depends on this text alone, so a cache keyed by it sees a changed
    header (CuPy's own cache key covers the ``.cu`` text only).

    Parameters
    ----------
    path : str
        A ``.cu`` or header file.

    Returns
    -------
    str
        The source, each quoted include replaced by that file's (inlined) text once.
    """
    path = os.path.abspath(path)
    with open(path) as f:
        source = f.read()
    directory = os.path.dirname(path)
    seen = _seen | {path}

    def inline(match: re.Match) -> str:
        header = os.path.abspath(os.path.join(directory, match.group(1)))
        if not os.path.exists(header):
            return match.group(0)  # left to the compiler's include path
        if header in seen:
            return f"// {match.group(1)}: already included"
        return f"// begin {match.group(1)}\n{module_source(header, seen)}\n// end {match.group(1)}"

    return _INCLUDE.sub(inline, source)


def kernel_names(source: str) -> list[str]:
    """The ``extern "C" __global__`` functions of a CUDA source."""
    return _KERNEL_NAME.findall(source)


def _launch_shape(n: int) -> tuple[tuple[int], tuple[int]]:
    blocks = max(1, min(MAX_BLOCKS, -(-n // THREADS_PER_BLOCK)))
    return (blocks,), (THREADS_PER_BLOCK,)


class KernelSet:
    """The kernels of one device, compiled on first use and cached per specialisation."""

    def __init__(self, loader: Callable[[str, tuple[str, ...]], Any], xp: Any) -> None:
        self._loader = loader
        self._xp = xp
        self._modules: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._upload_lock = threading.Lock()

    def _function(self, file: str, name: str, options: tuple[str, ...] = ()) -> Any:
        key = (file, options)
        if key not in self._modules:
            directory = kernel_source_dir()
            self._modules[key] = self._loader(os.path.join(directory, file), NVCC_OPTIONS + (f"-I{directory}",) + options)
        return self._modules[key].get_function(name)

    def compile_all(self) -> list[str]:
        """Compile every kernel of ``kernels/`` (the forest for its default class count).

        The device probe calls this, so a compile error or a missing source folder sends an
        ``auto`` run to the CPU before its first block. Returns the kernels' names.
        """
        directory = kernel_source_dir()
        names = []
        for file in sorted(f for f in os.listdir(directory) if f.endswith(".cu")):
            with open(os.path.join(directory, file)) as f:
                for name in kernel_names(f.read()):
                    self._function(file, name)
                    names.append(name)
        if not names:
            raise FileNotFoundError(f"no CUDA kernels in {directory}")
        return names

    def _publish_once(self, cache: dict, key: Any, make: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """``cache[key]``, made by ``make()`` on its own stream and complete before anyone sees it.

        ``xp.asarray`` of host data is an asynchronous copy on the calling thread's stream;
        another thread, on another stream, must not read the arrays before the copy is done.
        """
        device = cache.get(key)
        if device is not None:
            return device
        with self._upload_lock:
            device = cache.get(key)
            if device is None:
                cuda = getattr(self._xp, "cuda", None)
                if cuda is None:
                    device = make()
                else:
                    stream = cuda.Stream(non_blocking=True)
                    with stream:
                        device = make()
                    stream.synchronize()
                cache[key] = device
        return device

    def correlate(self, array: Any, kernel: FirKernel, axis: int, unfused: tuple[int, int] | None) -> Any:
        """fastfilters-exact correlation of a (Z, Y, X) float32 array along ``axis``."""
        xp = self._xp
        array, out, (below, start) = correlation_operands(xp, array, axis, unfused)
        if out.size == 0:
            return out
        n0, n1, n2 = array.shape
        taps = xp.asarray(kernel.half, dtype=xp.float32)
        grid, block = _launch_shape(out.size)
        self._function("fir_correlate.cu", "fir_correlate")(grid, block, (
            array, out, taps, np.int64(n0), np.int64(n1), np.int64(n2), np.int64(array.strides[0] // 4),
            np.int64(array.strides[1] // 4), np.int32(axis), np.int32(kernel.radius), np.int32(kernel.antisymmetric),
            np.int64(below), np.int64(start),
        ))
        return out

    def eigenvalues(self, entries: list[Any]) -> list[Any]:
        """Eigenvalues, largest first, of per-pixel symmetric matrices given by their upper
        triangle: three arrays (2x2: xx, xy, yy) or six (3x3: 00, 01, 02, 11, 12, 22)."""
        xp = self._xp
        flat = [xp.ascontiguousarray(e, dtype=xp.float32).reshape(-1) for e in entries]
        shape = entries[0].shape
        n = flat[0].size
        k = 2 if len(entries) == 3 else 3
        out = [xp.empty(n, dtype=xp.float32) for _ in range(k)]
        if n:
            grid, block = _launch_shape(n)
            name = "eigenvalues2" if k == 2 else "eigenvalues3"
            self._function("eigenvalues.cu", name)(grid, block, (*flat, *out, np.int64(n)))
        return [o.reshape(shape) for o in out]

    def forest_predict(self, forest: Forest, x: Any) -> Any:
        """Vigra-exact probabilities ``(rows, classes)`` of the rows of ``x`` (any float32 strides)."""
        from ..forest.predict import packed_forest  # noqa: PLC0415 - the C packer builds the node table

        xp = self._xp
        x = xp.asarray(x, dtype=xp.float32)
        if any(s < 0 or s % 4 for s in x.strides):
            x = xp.ascontiguousarray(x)

        def upload() -> tuple[Any, ...]:
            nodes, leaf_values, roots = packed_forest(forest)
            counts = np.ascontiguousarray(forest.forest_tree_counts, dtype=np.int32)
            return tuple(xp.asarray(a) for a in (nodes, leaf_values, roots, counts))

        nodes, leaf_values, roots, counts = self._publish_once(forest.scratch, ("device_packed", id(xp)), upload)
        n_rows = x.shape[0]
        out = xp.empty((n_rows, forest.n_classes), dtype=xp.float32)
        if n_rows:
            grid, block = _launch_shape(n_rows)
            predict = self._function("forest.cu", "forest_predict", (f"-DN_CLASSES={forest.n_classes}",))
            predict(grid, block, (
                nodes, leaf_values, roots, counts, np.int32(len(forest.forest_tree_counts)), x, np.int64(n_rows),
                np.int64(x.strides[0] // 4), np.int64(x.strides[1] // 4), np.int64(forest.n_features), out,
            ))
        return out


    def smooth_pass(self, array: Any, taps: np.ndarray, axis: int) -> Any:
        """One pass of a symmetric smoothing kernel (``taps``, odd length, float64) along spatial
        ``axis`` of a (Z, Y, X, C) float32 array, mirror borders, summed as vigra's convolveLine."""
        xp = self._xp
        array = xp.ascontiguousarray(array, dtype=xp.float32)
        out = xp.empty_like(array)
        radius = len(taps) // 2
        half = xp.asarray(np.ascontiguousarray(taps[radius:], dtype=np.float64))  # centre, then outwards
        if array.size:
            grid, block = _launch_shape(array.size)
            self._function("smoothing.cu", "smooth_pass")(grid, block, (
                array, out, half, *(np.int64(n) for n in array.shape), np.int32(axis), np.int32(radius)))
        return out

    def object_sums(self, columns: Any, order: Any, starts: Any) -> Any:
        """Per object (``starts`` delimits each object's run of ``order``) the sum of every column
        of ``columns`` (pixels, k) float64, added in the order ``order`` gives."""
        xp = self._xp
        columns = xp.ascontiguousarray(columns, dtype=xp.float64)
        bins, k = len(starts) - 1, columns.shape[1]
        out = xp.zeros((bins, k), dtype=xp.float64)
        if bins and k:
            starts = xp.asarray(starts, dtype=xp.int64)
            grid, block = _launch_shape(bins * k)
            self._function("object_sums.cu", "object_sums")(grid, block, (
                columns, xp.asarray(order, dtype=xp.int64), starts, _largest_first(xp, starts), np.int64(bins),
                np.int64(k), out))
        return out

    def object_moment_sums(self, columns: Any, order: Any, starts: Any, squares: bool,
                           pairs: list[tuple[int, int]]) -> tuple[Any, Any]:
        """Per object the second central moment sums as vigra's accumulators update them, pixel
        by pixel (Welford): of every column (``squares``; shape (objects, k)) and of each pair of
        columns (objects, pairs)."""
        xp = self._xp
        columns = xp.ascontiguousarray(columns, dtype=xp.float64)
        bins, k = len(starts) - 1, columns.shape[1]
        square_sums = xp.zeros((bins, k), dtype=xp.float64)
        pair_sums = xp.zeros((bins, max(len(pairs), 1)), dtype=xp.float64)
        tasks = (k if squares else 0) + len(pairs)
        if bins and k and tasks:
            starts = xp.asarray(starts, dtype=xp.int64)
            grid, block = _launch_shape(bins * tasks)
            self._function("object_sums.cu", "object_moment_sums")(grid, block, (
                columns, xp.asarray(order, dtype=xp.int64), starts, _largest_first(xp, starts), np.int64(bins),
                np.int64(k), np.int32(squares),
                xp.asarray(np.array(pairs, dtype=np.int64).reshape(-1) if pairs else np.zeros(2, np.int64)),
                np.int64(len(pairs)), square_sums, pair_sums))
        return square_sums, pair_sums[:, :len(pairs)]

    def label_roots(self, values: Any) -> Any:
        """Connected components of equal non-zero values of a (Z, Y, X) integer array, face
        neighbours only: per pixel the raster index of its component's first pixel, -1 for 0."""
        xp = self._xp
        flat = xp.ascontiguousarray(values).astype(xp.uint64, copy=False).reshape(-1)
        n0, n1, n2 = values.shape
        parent = xp.empty(flat.size, dtype=xp.int64)
        if flat.size:
            grid, block = _launch_shape(flat.size)
            self._function("labeling.cu", "label_init")(grid, block, (flat, parent, np.int64(flat.size)))
            self._function("labeling.cu", "label_merge")(grid, block, (flat, parent, np.int64(n0), np.int64(n1),
                                                                      np.int64(n2)))
            self._function("labeling.cu", "label_flatten")(grid, block, (parent, np.int64(flat.size)))
        return parent.reshape(values.shape)


def _largest_first(xp: Any, starts: Any) -> Any:
    """The objects delimited by ``starts``, largest first (ties by index): the kernels' schedule."""
    sizes = starts[1:] - starts[:-1]
    return xp.argsort(-sizes, kind="stable").astype(xp.int64)


def compile_nvrtc(source: str, name: str, options: tuple[str, ...], arch: str, target: str = "cubin") -> bytes:
    """Compile CUDA C++ with NVRTC, with exactly ``options`` (no flag added behind our back).

    Parameters
    ----------
    source : str
        The whole source (includes already inlined, see :func:`module_source`).
    name : str
        The program's name in messages.
    options : tuple of str
        NVRTC options, e.g. :data:`NVRTC_OPTIONS`.
    arch : str
        Compute capability, e.g. ``"90"``.
    target : {"cubin", "ptx"}
        Machine code for ``sm_<arch>``, or PTX for ``compute_<arch>``.

    Returns
    -------
    bytes
    """
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415

    virtual = "sm" if target == "cubin" else "compute"
    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [*options, f"-arch={virtual}_{arch}"])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"{name}: {exc}\n{nvrtc.getProgramLog(program)}") from exc
        code = nvrtc.getCUBIN(program) if target == "cubin" else nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)
    return code if isinstance(code, bytes) else code.encode()


def kernel_cache_dir() -> str:
    """Where compiled modules are kept: ``GPUHEADLESS_KERNEL_CACHE``, else the user's cache folder."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gpuheadless", "kernels")
    return os.environ.get("GPUHEADLESS_KERNEL_CACHE", default)


def cached_cubin(path: str, options: tuple[str, ...], arch: str) -> str:
    """The cubin of one ``.cu`` file, compiled on first use; returns its path in the cache.

    The key is the source with its headers inlined, the options, the architecture and NVRTC's
    version, so a changed header is a new module.
    """
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415

    source = module_source(path)
    options = NVRTC_OPTIONS + tuple(o for o in options if o not in NVRTC_OPTIONS and not o.startswith("-I"))
    key = hashlib.sha256("\0".join([source, *options, arch, repr(nvrtc.getVersion())]).encode()).hexdigest()[:32]
    directory = kernel_cache_dir()
    cubin = os.path.join(directory, f"{os.path.basename(path)}.{key}.cubin")
    if not os.path.exists(cubin):
        code = compile_nvrtc(source, os.path.basename(path), options, arch)
        os.makedirs(directory, exist_ok=True)
        partial = f"{cubin}.{os.getpid()}.{threading.get_ident()}"
        with open(partial, "wb") as f:
            f.write(code)
        os.replace(partial, cubin)
    return cubin


def device_arch() -> str:
    """The current device's compute capability, capped at the newest NVRTC can target."""
    import cupy  # noqa: PLC0415

    try:
        from cupy.cuda.compiler import _get_arch  # noqa: PLC0415 - CuPy's own cap, where it has one

        return str(_get_arch())
    except ImportError:
        return str(cupy.cuda.Device().compute_capability)


def cupy_loader(path: str, options: tuple[str, ...]) -> Any:
    """``cupy.RawModule`` of one ``.cu`` file, compiled by :func:`cached_cubin` (IEEE float32)."""
    import cupy  # noqa: PLC0415

    return cupy.RawModule(path=cached_cubin(path, options, device_arch()))
