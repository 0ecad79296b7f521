"""Object Classification's device operations through the CUDA kernels: smoothing, labelling and
per-object sums, bit-identical to the CPU's (:mod:`gpuheadless.objects`).

:class:`~gpuheadless.backend.Backend` calls these with itself when it has kernels; the object
stage only ever talks to the backend. ``backend.kernels`` is a
:class:`~gpuheadless.gpu.kernels.KernelSet` over ``backend.xp`` (CuPy, or NumPy in the tests'
emulation).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..objects.features import moment_sums
from ..objects.labeling import label_equal_values
from ..objects.threshold import gaussian_taps

if TYPE_CHECKING:
    from ..backend import Backend


def smooth_on_device(backend: Backend, prediction: Any, sigmas: tuple[float, float, float],
                     axes: tuple[int, ...] | None = None) -> Any:
    """:func:`~gpuheadless.objects.threshold.smooth` through the CUDA smoothing kernel.

    The result stays on the device: the threshold is applied there and the mask labelled there.
    """
    if axes is None:
        axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
    out = backend.xp.asarray(prediction, dtype=backend.xp.float32)
    if any(sigmas[a] < 0.1 for a in axes):
        return out
    for a in sorted(axes, reverse=True):
        out = backend.kernels.smooth_pass(out, gaussian_taps(sigmas[a]), a)
    return out


def label_on_device(backend: Backend, values: Any) -> tuple[np.ndarray, int]:
    """:func:`~gpuheadless.objects.labeling.label_equal_values` through the union-find kernels.

    Integer values only; others are labelled on the CPU. Returns host int64 labels and the count.
    """
    if values.dtype.kind not in "biu":
        return label_equal_values(backend.to_host(values))
    xp = backend.xp
    roots = backend.kernels.label_roots(xp.asarray(values))
    found, labels = xp.unique(roots.reshape(-1), return_inverse=True)  # -1 (background) sorts first
    background = bool(found.size) and int(found[0]) < 0
    labels = labels.reshape(values.shape).astype(xp.int64) + (0 if background else 1)
    return backend.to_host(labels), int(found.size) - int(background)


class DeviceObjectSums:
    """Per-object sums through the CUDA kernels, each object's pixels added in raster order:
    bit-identical to :func:`~gpuheadless.objects.features.bincount_sums` and
    :func:`~gpuheadless.objects.features.centred_sums`.

    One instance per thread: it keeps the last object index's runs and the last arrays on the
    device, because the standard features ask twice per array (sums, then centred sums).
    """

    def __init__(self, backend: Backend) -> None:
        self._kernels = backend.kernels
        self._xp = backend.xp
        self._host = backend.to_host
        self._runs_of: tuple = (None, None)
        self._uploaded: list[tuple] = []  # (host array, device copy): the intensities and the coordinates

    def _runs(self, index: np.ndarray, n: int) -> tuple[Any, Any]:
        """The pixel order grouped by object (raster order within each) and each object's start, on the device."""
        if self._runs_of[0] is not index:
            order = np.argsort(index, kind="stable")
            starts = np.searchsorted(index[order], np.arange(n + 2))
            self._runs_of = (index, (self._xp.asarray(order), self._xp.asarray(starts)))
        return self._runs_of[1]

    def _upload(self, columns: np.ndarray) -> Any:
        for host, device in self._uploaded:
            if host is columns:
                return device
        device = self._xp.asarray(columns)
        self._uploaded = self._uploaded[-1:] + [(columns, device)]
        return device

    def sums(self, columns: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
        """``(n + 1, k)``: per object the sum of each column of ``columns`` (pixels, k) float64."""
        order, starts = self._runs(index, n)
        return self._host(self._kernels.object_sums(self._upload(columns), order, starts))

    def centred_sums(self, columns: np.ndarray, index: np.ndarray, n: int, centre: np.ndarray, powers: bool,
                     pairs: list[tuple[int, int]]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """As :func:`~gpuheadless.objects.features.centred_sums`."""
        order, starts = self._runs(index, n)
        squares, products = self._kernels.object_moment_sums(self._upload(columns), order, starts, powers, list(pairs))
        products = self._host(products)
        if not powers:
            return {}, products
        # The C library's pow cannot run on the device: its sums are made here, in the same order.
        _, cubes, fourths, _ = moment_sums(columns, index, n, centre, True, [])
        return {2: self._host(squares), 3: cubes, 4: fourths}, products
