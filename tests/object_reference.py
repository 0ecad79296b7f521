"""Whole-image reference implementations of ilastik's object labelling, for the tests: the
production code (gpuheadless.objects.labeling) works slab by slab and must give the same ids."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from gpuheadless.objects.threshold import HYSTERESIS, SIMPLE, ThresholdSettings, smooth


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Objects of a boolean (Z, Y, X) mask, 4/6-connected, numbered in raster order (uint32)."""
    structure = ndimage.generate_binary_structure(3, 1)
    if mask.shape[0] == 1:  # a singleton z behaves as 2D
        structure[0] = structure[2] = False
    labels, _ = ndimage.label(mask, structure=structure)
    return labels.astype(np.uint32)


def size_filter(labels: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
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
        return size_filter(connected_components(final >= np.float32(settings.low)), settings.min_size, settings.max_size)
    if settings.method == HYSTERESIS:
        core_input = smoothed[..., settings.core_channel]
        cores = size_filter(connected_components(core_input >= np.float32(settings.high)), settings.min_size,
                             settings.max_size)
        if settings.channel != settings.core_channel:
            final = final + core_input
        labels = connected_components(final >= np.float32(settings.low))
        keep = np.zeros(int(labels.max()) + 1, dtype=bool)
        keep[np.unique(labels[cores > 0])] = True
        keep[0] = False
        return size_filter(np.where(keep[labels], labels, 0).astype(np.uint32), settings.min_size, settings.max_size)
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


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Label-image variant: ids 1..n in raster order of first occurrence, 0 kept."""
    values, first, inverse = np.unique(labels.reshape(-1), return_index=True, return_inverse=True)
    rank = np.empty(len(values), dtype=np.uint32)
    order = np.argsort(first, kind="stable")
    nonzero = values[order] != 0
    rank[order[nonzero]] = np.arange(1, int(nonzero.sum()) + 1, dtype=np.uint32)
    rank[values == 0] = 0
    return rank[inverse].reshape(labels.shape)
