"""Generated volumes for Object Classification: blobs of varied shapes, sizes and intensities.

Used by the live comparison with ilastik (tests/live/test_objects_live.py) and by the side-by-side
object benchmark (bench/objects_vs_ilastik.py).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def blob_volume(shape: tuple[int, int, int, int], cell: tuple[int, int, int], seed: int) -> np.ndarray:
    """One blob per grid cell, numbered 1..n, none touching another.

    Parameters
    ----------
    shape : (t, z, y, x)
    cell : (z, y, x) cell size; a z cell of 1 makes 2D blobs.
    seed : int

    Returns
    -------
    (t, z, y, x) int32
        Each blob is an ellipsoid, or two overlapping ones (bent and dumbbell shapes), of random
        radii and position inside its cell, one voxel clear of the cell's faces.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    counts = [s // c for s, c in zip(shape[1:], cell)]
    grids = np.indices(cell, dtype=np.float64)
    n = 0
    for t in range(shape[0]):
        for index in np.ndindex(*counts):
            mask = np.zeros(cell, bool)
            for _ in range(1 + int(rng.random() < 0.3)):
                radii = [rng.uniform(0.2, 0.32) * c if c > 1 else 1.0 for c in cell]
                centre = [rng.uniform(r + 1, c - r - 2) if c > 1 else 0.0 for r, c in zip(radii, cell)]
                mask |= sum(((g - m) / r) ** 2 for g, m, r in zip(grids, centre, radii)) <= 1.0
            n += 1
            corner = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, cell))
            labels[(t,) + corner][mask] = n
    return labels


def object_inputs(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw data and prediction maps for blobs ``labels`` (t, z, y, x).

    Returns
    -------
    raw : (t, z, y, x, 2) uint8
        Per blob a random brightness in each channel, plus noise.
    probabilities : (t, z, y, x, 2) float32
        Channel 0 the blurred blobs with noise (so the project's smoothing and threshold decide
        voxels near the edges), channel 1 its complement.
    """
    rng = np.random.default_rng(seed)
    n = int(labels.max())
    brightness = rng.uniform(60, 200, (n + 1, 2))
    brightness[0] = 20
    raw = brightness[labels] + rng.normal(0, 12, labels.shape + (2,))
    raw = np.clip(raw, 0, 255).astype(np.uint8)
    inside = (labels > 0).astype(np.float64)
    blurred = np.stack([ndimage.gaussian_filter(inside[t], 0.8) for t in range(len(labels))])
    p0 = np.clip(blurred * 0.97 + rng.normal(0, 0.04, labels.shape), 0, 1).astype(np.float32)
    return raw, np.stack([p0, 1 - p0], axis=-1)
