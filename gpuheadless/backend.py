"""The array backend: NumPy + SciPy on the CPU, CuPy on a CUDA GPU.

Block-level code takes a :class:`Backend` and only calls ``bk.xp`` / ``bk.ndi`` and the methods
below, never ``numpy`` directly on block data, so one code path serves both devices.
"""
from __future__ import annotations

import contextlib
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
    """

    name: str
    xp: ModuleType
    ndi: ModuleType
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    kernels: Any = field(default=None, compare=False, repr=False)

    @property
    def on_device(self) -> bool:
        """True for a real CUDA device (CuPy), False for NumPy (also the tests' emulation)."""
        return self.name == "gpu" and hasattr(self.xp, "cuda")

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Move ``array`` to this backend's device (no copy on the CPU when possible).

        On a GPU, host arrays go through a pinned (page-locked) staging buffer, which the
        driver copies faster and without an extra bounce.
        """
        if self.on_device and isinstance(array, np.ndarray):
            import cupyx  # noqa: PLC0415

            staged = cupyx.empty_pinned(array.shape, dtype=dtype or array.dtype)
            staged[...] = array
            return self.xp.asarray(staged)
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


def cpu_backend() -> Backend:
    """The NumPy/SciPy backend: always available, the reference implementation."""
    return Backend("cpu", np, _SCIPY_NDIMAGE)


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
    except Exception as exc:
        return None, f"CUDA kernels cannot run ({type(exc).__name__}: {exc})"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props.get("name", b"").decode(errors="replace")
    from .gpu.kernels import KernelSet, cupy_loader  # noqa: PLC0415

    return Backend("gpu", cupy, cndi, {"device": name}, KernelSet(cupy_loader, cupy)), ""


def select_backend(device: str) -> Backend:
    """Resolve ``--device auto|cpu|gpu`` to a backend.

    ``auto`` uses a usable GPU and otherwise logs one line saying why it uses the CPU. ``gpu``
    without a usable GPU is a :class:`~gpuheadless.errors.UsageError`.
    """
    if device == "cpu":
        return cpu_backend()
    if device not in ("auto", "gpu"):
        raise UsageError(f"--device: expected auto, cpu or gpu, got {device!r}")
    gpu, reason = probe_gpu()
    if gpu is not None:
        _announce(f"Using the GPU: {gpu.info.get('device', 'CUDA device')}")
        return gpu
    if device == "gpu":
        raise UsageError(f"--device gpu: no usable GPU: {reason}")
    _announce(f"Using the CPU: {reason}")
    return cpu_backend()


_announced: set[str] = set()


def _announce(line: str) -> None:
    """Log the device line once per process.

    A Pixel + Object run selects the device for the object stage and again in the pixel
    pipeline it runs for each input; the user is told once.
    """
    if line not in _announced:
        _announced.add(line)
        log.info("%s", line)
