"""Host side of the CUDA kernels in ``kernels/``: sources, launch shapes and argument types.

:class:`KernelSet` wraps a *loader* ``loader(file, options) -> module`` whose ``get_function(name)``
returns ``kernel(grid, block, args)``: ``cupy.RawModule`` on a GPU, or the CPU emulation of the
tests (DESIGN §4). The same host code therefore runs, and is tested, without a GPU. Arrays come
from ``xp`` (CuPy or NumPy); scalars are passed as NumPy scalars of the kernels' C types.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..features.filters import correlation_operands
from ..features.kernels import FirKernel
from ..forest.model import Forest

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535
# -fmad=false: products and sums round separately unless a kernel calls fmaf(), as on the CPU.
NVCC_OPTIONS = ("-fmad=false",)


def kernel_source_dir() -> str:
    """Where the ``.cu`` files are: inside the installed package, or ``kernels/`` of a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "..", "kernels"), os.path.join(here, "..", "..", "kernels")):
        if os.path.exists(os.path.join(candidate, "forest.cu")):
            return os.path.normpath(candidate)
    raise FileNotFoundError("the CUDA sources (kernels/*.cu) are not installed")


def _launch_shape(n: int) -> tuple[tuple[int], tuple[int]]:
    blocks = max(1, min(MAX_BLOCKS, -(-n // THREADS_PER_BLOCK)))
    return (blocks,), (THREADS_PER_BLOCK,)


class KernelSet:
    """The kernels of one device, compiled on first use and cached per specialisation."""

    def __init__(self, loader: Callable[[str, tuple[str, ...]], Any], xp: Any) -> None:
        self._loader = loader
        self._xp = xp
        self._modules: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _function(self, file: str, name: str, options: tuple[str, ...] = ()) -> Any:
        key = (file, options)
        if key not in self._modules:
            directory = kernel_source_dir()
            self._modules[key] = self._loader(os.path.join(directory, file), NVCC_OPTIONS + (f"-I{directory}",) + options)
        return self._modules[key].get_function(name)

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
        device = forest.scratch.get(("device_packed", id(xp)))
        if device is None:
            nodes, leaf_values, roots = packed_forest(forest)
            counts = np.ascontiguousarray(forest.forest_tree_counts, dtype=np.int32)
            device = tuple(xp.asarray(a) for a in (nodes, leaf_values, roots, counts))
            forest.scratch[("device_packed", id(xp))] = device
        nodes, leaf_values, roots, counts = device
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
            grid, block = _launch_shape(bins)
            self._function("object_sums.cu", "object_sums")(grid, block, (
                columns, xp.asarray(order, dtype=xp.int64), xp.asarray(starts, dtype=xp.int64), np.int64(bins),
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
        if bins and k:
            grid, block = _launch_shape(bins)
            self._function("object_sums.cu", "object_moment_sums")(grid, block, (
                columns, xp.asarray(order, dtype=xp.int64), xp.asarray(starts, dtype=xp.int64), np.int64(bins),
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


def cupy_loader(path: str, options: tuple[str, ...]) -> Any:
    """``cupy.RawModule`` for one ``.cu`` file (NVRTC, compiled on first use and cached by CuPy)."""
    import cupy  # noqa: PLC0415

    with open(path) as f:
        return cupy.RawModule(code=f.read(), options=options)
