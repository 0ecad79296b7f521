"""ilastik's "Threshold and Size Filter" and object labelling (spec/object-classification.md §2, §3.1).

Works on one time point: a prediction map ``(Z, Y, X, C)`` float32 becomes a label image
``(Z, Y, X)`` uint32 with objects numbered 1..n in raster order of their first pixel (x fastest),
4-connected in 2D and 6-connected in 3D.
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
    """:func:`smooth` through the CUDA kernel of ``kernels`` (bit-identical to the CPU's)."""

    def smooth_on_device(prediction: np.ndarray, sigmas: tuple[float, float, float],
                         axes: tuple[int, ...] | None = None) -> np.ndarray:
        if axes is None:
            axes = tuple(a for a in range(3) if prediction.shape[a] > 1)
        if any(sigmas[a] < 0.1 for a in axes):
            return prediction.astype(np.float32)
        out = xp.asarray(prediction, dtype=xp.float32)
        for a in axes:
            out = kernels.smooth_pass(out, _gaussian_taps(sigmas[a]), a)
        return out.get() if hasattr(out, "get") else np.asarray(out)

    return smooth_on_device


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Objects of a boolean (Z, Y, X) mask, 4/6-connected, numbered in raster order (uint32)."""
    structure = ndimage.generate_binary_structure(3, 1)
    if mask.shape[0] == 1:  # a singleton z behaves as 2D
        structure[0] = structure[2] = False
    labels, _ = ndimage.label(mask, structure=structure)
    return labels.astype(np.uint32)


def _size_filter(labels: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    if min_size == 0 and max_size > labels.size:
        return labels
    counts = np.bincount(labels.reshape(-1))
    bad = (counts < min_size) | (counts > max_size)
    bad[0] = False
    return np.where(bad[labels], 0, labels).astype(np.uint32)


def threshold(prediction: np.ndarray, settings: ThresholdSettings) -> np.ndarray:
    """The thresholded, size-filtered label image of one time point (ids not compacted)."""
    smoothed = smooth(prediction, settings.sigmas)
    final = smoothed[..., settings.channel]
    if settings.method == SIMPLE:
        return _size_filter(connected_components(final >= np.float32(settings.low)), settings.min_size, settings.max_size)
    if settings.method == HYSTERESIS:
        core_input = smoothed[..., settings.core_channel]
        cores = _size_filter(connected_components(core_input >= np.float32(settings.high)), settings.min_size,
                             settings.max_size)
        if settings.channel != settings.core_channel:
            final = final + core_input
        labels = connected_components(final >= np.float32(settings.low))
        keep = np.zeros(int(labels.max()) + 1, dtype=bool)
        keep[np.unique(labels[cores > 0])] = True
        keep[0] = False
        return _size_filter(np.where(keep[labels], labels, 0).astype(np.uint32), settings.min_size, settings.max_size)
    raise ValueError(f"thresholding method {settings.method} (graph cut / IPHT) is not supported yet")


def object_ids(segmentation: np.ndarray) -> np.ndarray:
    """ilastik's object ids: connected regions of equal non-zero value, numbered in raster order."""
    structure = ndimage.generate_binary_structure(3, 1)
    if segmentation.shape[0] == 1:
        structure[0] = structure[2] = False
    out = np.zeros(segmentation.shape, dtype=np.uint32)
    values = np.unique(segmentation)
    values = values[values != 0]
    if len(values) <= 1:
        return connected_components(segmentation != 0)
    # Label each value separately, then renumber all regions by their first pixel in raster order.
    offset = 0
    for value in values:
        labels, count = ndimage.label(segmentation == value, structure=structure)
        out[labels > 0] = labels[labels > 0] + offset
        offset += count
    first = ndimage.minimum(np.arange(out.size).reshape(out.shape), out, index=np.arange(1, offset + 1))
    order = np.argsort(np.asarray(first), kind="stable")
    mapping = np.zeros(offset + 1, dtype=np.uint32)
    mapping[order + 1] = np.arange(1, offset + 1, dtype=np.uint32)
    return mapping[out]
