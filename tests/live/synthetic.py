"""Synthetic images with known classes, and label images drawn on them, for the live suite."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def truth_map(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int) -> np.ndarray:
    """A smooth random partition of the image into classes 0..n-1 (by quantiles)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    edges = np.quantile(field, np.linspace(0, 1, n_classes + 1)[1:-1])
    return np.digitize(field, edges)


def class_image(rng: np.random.Generator, truth: np.ndarray, channels: int) -> np.ndarray:
    """uint8 image whose channels depend on the class differently, plus noise; channels last."""
    planes = []
    for c in range(channels):
        gain = 40 + 25 * c
        plane = 60 + gain * ((truth * (c + 1)) % 4) + rng.normal(0, 25, truth.shape)
        planes.append(np.clip(ndimage.gaussian_filter(plane, 0.8), 0, 255))
    return np.stack(planes, axis=-1).astype(np.uint8)


def scribbles(rng: np.random.Generator, truth: np.ndarray, dense: bool) -> np.ndarray:
    """Class + 1 everywhere (dense) or on a few short scribbles per class (sparse)."""
    labels = (truth + 1).astype(np.uint8)
    if dense:
        return labels
    keep = np.zeros(truth.shape, bool)
    for _ in range(12):
        start = [int(rng.integers(0, n)) for n in truth.shape]
        line = tuple(slice(s, s + 1) for s in start[:-1]) + (slice(start[-1], start[-1] + 9),)
        keep[line] = True
    for k in range(truth.max() + 1):  # every class gets scribbled at least once
        where = np.argwhere(truth == k)
        keep[tuple(where[rng.integers(len(where))])] = True
    return np.where(keep, labels, 0).astype(np.uint8)
