"""ilastik's "Threshold and Size Filter" settings and its smoothing (spec/object-classification.md §2).

The thresholding, size filter and labelling themselves run slab by slab in :mod:`.labeling`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIMPLE, HYSTERESIS = 0, 1


@dataclass(frozen=True)
class ThresholdSettings:
    """The project's ``ThresholdTwoLevels`` group."""

    method: int = SIMPLE
    low: float = 0.5
    high: float = 0.8
    channel: int = 0
    core_channel: int = 0
    min_size: int = 10
    max_size: int = 1000000
    sigmas: tuple[float, float, float] = (1.0, 1.0, 1.0)  # z, y, x


def smoothing_radius(sigma: float) -> int:
    """Half the width of the smoothing window (vigra's window ratio 2.0)."""
    return int(math.floor(2.0 * sigma + 0.5))


def _gaussian_taps(sigma: float) -> np.ndarray:
    radius = smoothing_radius(sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def smooth(prediction: np.ndarray, sigmas: tuple[float, float, float], axes: tuple[int, ...] | None = None) -> np.ndarray:
    """vigra's Gaussian smoothing (window 2.0, mirror borders) of every channel over the spatial
    axes longer than 1; unchanged if any of their sigmas is below 0.1.

    ``axes`` names those axes when ``prediction`` is a slab of a larger image (whose extents decide)."""
    if axes is None:
        axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
    if any(sigmas[a] < 0.1 for a in axes):
        return prediction.astype(np.float32)
    out = prediction.astype(np.float32)
    for a in axes:
        out = ndimage.correlate1d(out, _gaussian_taps(sigmas[a]), axis=a, mode="mirror", output=np.float32)
    return out


def gpu_smoother(kernels, xp):
    """:func:`smooth` through the CUDA kernel of ``kernels`` (bit-identical to the CPU's). The result
    stays on the device: the threshold is applied there and the mask labelled there."""

    def smooth_on_device(prediction: np.ndarray, sigmas: tuple[float, float, float],
                         axes: tuple[int, ...] | None = None) -> np.ndarray:
        if axes is None:
            axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
        out = xp.asarray(prediction, dtype=xp.float32)
        if any(sigmas[a] < 0.1 for a in axes):
            return out
        for a in axes:
            out = kernels.smooth_pass(out, _gaussian_taps(sigmas[a]), a)
        return out

    return smooth_on_device
