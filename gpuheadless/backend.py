"""The array backend: NumPy + SciPy on the CPU, CuPy on a CUDA GPU.

Block-level code takes a :class:`Backend` and only calls ``bk.xp`` / ``bk.ndi`` and the methods
below, never ``numpy`` directly on block data, so one code path serves both devices.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .errors import UsageError
from .features.filters import correlate_fastfilters
from .features.kernels import FirKernel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """An array module, its ``ndimage`` and host/device transfers.

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"gpu"``.
    xp : module
        ``numpy`` or ``cupy``.
    ndi : module
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
    info : dict
        The device's name, and per-thread state (streams, the object sums' device caches).
    kernels : KernelSet or None
        The CUDA kernels (:mod:`gpuheadless.gpu.kernels`); None on the CPU.
    threads : int
        CPU threads the work inside one call may use (the object smoothing's lines);
        ``LAZYFLOW_THREADS`` of the run.
    """

    name: str
    xp: ModuleType
    ndi: ModuleType
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    kernels: Any = field(default=None, compare=False, repr=False)
    threads: int = field(default=1, compare=False)

    @property
    def on_device(self) -> bool:
        """True for a real CUDA device (CuPy), False for NumPy (also the tests' emulation)."""
        return self.name == "gpu" and hasattr(self.xp, "cuda")

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Move ``array`` to this backend's device (no copy on the CPU when possible).

        On a GPU, a host array is copied once: CuPy stages it through its own pinned buffer.
        Booleans and integers of up to 16 bits travel as they are and are converted on the device
        (a quarter or half of the bytes of float32; exact in float32, so no rounding either way);
        other conversions stay on the host, where no float is flushed to zero.
        """
        if self.on_device and isinstance(array, np.ndarray):
            target = np.dtype(dtype or array.dtype)
            if target != array.dtype and array.dtype.kind in "biu" and array.dtype.itemsize <= 2 and target.kind == "f":
                return self.xp.asarray(array).astype(target)
            return self.xp.asarray(array, dtype=target)
        return self.xp.asarray(array, dtype=dtype)

    def stream(self) -> Any:
        """A context in which this thread's device work runs on its own CUDA stream.

        Worker threads then overlap one block's transfers with another's kernels. On the CPU a
        no-op context.
        """
        if not self.on_device:
            return contextlib.nullcontext()
        local = self.info.setdefault("_thread_streams", threading.local())
        if not hasattr(local, "stream"):
            local.stream = self.xp.cuda.Stream(non_blocking=True)
        return local.stream

    def device_id(self) -> str | None:
        """The GPU's PCI bus id, which processes sharing one GPU have in common (None on the CPU)."""
        if not self.on_device:
            return None
        return str(self.xp.cuda.Device().pci_bus_id)

    def device_free_bytes(self) -> int | None:
        """Free memory of the GPU (None on the CPU)."""
        if not self.on_device:
            return None
        free, _total = self.xp.cuda.runtime.memGetInfo()
        return int(free)

    def to_host(self, array: Any) -> np.ndarray:
        """Return ``array`` as a NumPy array in host memory."""
        if isinstance(array, np.ndarray):
            return array
        return self.xp.asnumpy(array)

    def correlate1d(self, array: Any, kernel: FirKernel, axis: int, unfused: tuple[int, int] | None = None) -> Any:
        """Correlate ``array`` with ``kernel`` along ``axis``, mirroring without edge repetition.

        Parameters
        ----------
        array : (Z, Y, X) float32 array
        kernel : FirKernel
        axis : int
        unfused : (below, from), optional
            Along x only: array positions computed with fastfilters' unfused scalar arithmetic
            (see :func:`~gpuheadless.features.kernels.unfused_span`); the rest is fused.

        Returns
        -------
        float32 array of the same shape.
        """
        if self.kernels is not None:
            return self.kernels.correlate(array, kernel, axis, unfused)
        if self.name == "cpu":
            return correlate_fastfilters(array, kernel, axis, unfused)
        out = self.xp.empty(array.shape, dtype=self.xp.float32)
        self.ndi.correlate1d(array, self.xp.asarray(kernel.taps), axis=axis, mode="mirror", output=out)
        return out

    # Object Classification's operations. The CPU versions are imported on use: a Pixel
    # Classification run never loads the object code.

    def smooth(self, prediction: Any, sigmas: tuple[float, float, float], axes: tuple[int, ...] | None = None) -> Any:
        """The Threshold and Size Filter's Gaussian smoothing, vigra's bit for bit.

        Parameters
        ----------
        prediction : (Z, Y, X, C) array
        sigmas : (z, y, x) floats
        axes : tuple of int, optional
            As :func:`gpuheadless.objects.threshold.smooth`.

        Returns
        -------
        (Z, Y, X, C) float32 array on this backend's device (it is thresholded there).
        """
        if self.kernels is None:
            from .objects.threshold import smooth  # noqa: PLC0415

            return smooth(prediction, sigmas, axes, self.threads)
        from .gpu.object_ops import smooth_on_device  # noqa: PLC0415

        return smooth_on_device(self, prediction, sigmas, axes)

    def label(self, values: Any) -> tuple[np.ndarray, int]:
        """Connected regions of equal non-zero value of a (Z, Y, X) slab, 4/6-connected.

        Returns
        -------
        labels : (Z, Y, X) int64 ndarray in host memory, regions 1..count
        count : int
        """
        if self.kernels is None:
            from .objects.labeling import label_equal_values  # noqa: PLC0415

            return label_equal_values(self.to_host(values))
        from .gpu.object_ops import label_on_device  # noqa: PLC0415

        return label_on_device(self, values)

    def object_sums(self, columns: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
        """``(n + 1, k)`` float64: per object (``index`` in 0..n per pixel) the sum of each column
        of ``columns`` (pixels, k) float64, each object's pixels added in raster order (vigra's)."""
        if self.kernels is None:
            from .objects.features import bincount_sums  # noqa: PLC0415

            return bincount_sums(columns, index, n)
        return self._device_sums().sums(columns, index, n)

    def centred_sums(self, columns: np.ndarray, index: np.ndarray, n: int, centre: np.ndarray, powers: bool,
                     pairs: list[tuple[int, int]]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Per object the central moment sums as vigra forms them (see
        :func:`gpuheadless.objects.features.centred_sums`), in host memory."""
        if self.kernels is None:
            from .objects.features import centred_sums  # noqa: PLC0415

            return centred_sums(columns, index, n, centre, powers, pairs)
        return self._device_sums().centred_sums(columns, index, n, centre, powers, pairs)

    def _device_sums(self) -> Any:
        """This thread's :class:`~gpuheadless.gpu.object_ops.DeviceObjectSums` (it caches device arrays)."""
        local = self.info.setdefault("_thread_sums", threading.local())
        if not hasattr(local, "sums"):
            from .gpu.object_ops import DeviceObjectSums  # noqa: PLC0415

            local.sums = DeviceObjectSums(self)
        return local.sums


class _ImportedOnUse:
    """A module imported at its first attribute lookup.

    The CPU backend computes with its own compiled filters and never needs ``scipy.ndimage``;
    importing it anyway cost 0.13 s of every run's start.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(self._name), attribute)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _ImportedOnUse, (self._name,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ImportedOnUse) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)


_SCIPY_NDIMAGE = _ImportedOnUse("scipy.ndimage")


def cpu_backend(threads: int = 1) -> Backend:
    """The NumPy/SciPy backend: always available, the reference implementation."""
    return Backend("cpu", np, _SCIPY_NDIMAGE, threads=max(threads, 1))


def probe_gpu() -> tuple[Backend | None, str]:
    """Try to build the CuPy backend; never raises.

    Returns
    -------
    backend : Backend or None
    reason : str
        Why no GPU is usable (empty when one is).
    """
    try:
        import cupy  # noqa: PLC0415 - imported lazily on purpose
    except Exception as exc:  # ImportError, or a broken CUDA install
        return None, f"cupy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"no CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "no CUDA device"
    try:
        # One tiny kernel launch catches a missing NVRTC or a driver too old for this CuPy.
        probe = cupy.ElementwiseKernel("float32 x", "float32 y", "y = x * 2", "gpuheadless_probe")
        value = float(probe(cupy.ones(1, dtype=cupy.float32)).get()[0])
        if value != 2.0:
            return None, "the probe kernel returned a wrong value"
        import cupyx.scipy.ndimage as cndi  # noqa: PLC0415

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props.get("name", b"").decode(errors="replace")
    except Exception as exc:
        return None, f"CUDA kernels cannot run ({type(exc).__name__}: {exc})"
    try:
        # Our own kernels too (compiled once, then cached): a compile error, a missing header or
        # a missing kernel folder sends an auto run to the CPU here, not in its first block.
        from .gpu.kernels import KernelSet, cupy_loader  # noqa: PLC0415

        kernels = KernelSet(cupy_loader, cupy)
        kernels.compile_all()
    except Exception as exc:
        return None, f"the CUDA kernels of gpuheadless cannot be compiled ({type(exc).__name__}: {_first_line(exc)})"
    return Backend("gpu", cupy, cndi, {"device": name}, kernels), ""


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a compiler log follows it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def select_backend(device: str, threads: int = 1) -> Backend:
    """Resolve ``--device auto|cpu|gpu`` to a backend whose calls may use ``threads`` CPU threads.

    ``auto`` uses a usable GPU and otherwise logs one line saying why it uses the CPU. ``gpu``
    without a usable GPU is a :class:`~gpuheadless.errors.UsageError`.
    """
    if device == "cpu":
        return cpu_backend(threads)
    if device not in ("auto", "gpu"):
        raise UsageError(f"--device: expected auto, cpu or gpu, got {device!r}")
    gpu, reason = probe_gpu()
    if gpu is not None:
        _announce(f"Using the GPU: {gpu.info.get('device', 'CUDA device')}")
        return dataclasses.replace(gpu, threads=max(threads, 1))
    if device == "gpu":
        raise UsageError(f"--device gpu: no usable GPU: {reason}")
    _announce(f"Using the CPU: {reason}")
    return cpu_backend(threads)


_announced: set[str] = set()


def _announce(line: str) -> None:
    """Log the device line once per process.

    A run chooses its device once; a process that builds several pipelines (the Python API,
    the napari plugin) chooses it for each, and the user is told once.
    """
    if line not in _announced:
        _announced.add(line)
        log.info("%s", line)
