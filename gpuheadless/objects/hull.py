"""ilastik's "2D/3D Convex Hull Features" (spec/object-classification.md §3.5).

As the spec establishes from the values ilastik stores, vigra's hull H of an object is its
axis-aligned bounding box, not the geometric convex hull; defects are the components of
H minus the object (4-connected in 2D, 6-connected in 3D). Computed from the label image alone.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

NAMES = ("InputVolume", "InputCenter", "HullVolume", "HullCenter", "Convexity", "DefectCount", "DefectCenter",
         "DefectDisplacementMean", "DefectVolumeMean", "DefectVolumeVariance", "DefectVolumeSkewness",
         "DefectVolumeKurtosis")


def _size_statistics(sizes: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, unbiased variance, and the sample-corrected skewness and kurtosis of defect sizes."""
    n = len(sizes)
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    mean = float(sizes.mean())
    centred = sizes - mean
    m2 = float(np.mean(centred**2))
    variance = float(np.sum(centred**2) / (n - 1)) if n > 1 else 0.0
    skewness = kurtosis = 0.0
    if n > 2 and m2 > 0:
        g1 = float(np.mean(centred**3)) / m2**1.5
        skewness = np.sqrt(n * (n - 1)) / (n - 2) * g1
    if n > 3 and m2 > 0:
        g2 = float(np.mean(centred**4)) / m2**2 - 3.0
        kurtosis = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0)
    return mean, variance, float(skewness), float(kurtosis)


def hull_features(labels: np.ndarray, names=NAMES, origin=(0, 0, 0), dims: int | None = None) -> dict[str, np.ndarray]:
    """The selected hull features of objects 1..n of a (X, Y, Z) label image; float32 tables.

    ``origin`` (x, y, z) places a crop holding whole objects in the time point; ``dims`` is 2 or
    3 (by default 2 when the z extent is 1)."""
    dims = dims or (2 if labels.shape[2] == 1 else 3)
    plane = labels[:, :, 0] if dims == 2 else labels
    n = int(plane.max()) if plane.size else 0
    structure = ndimage.generate_binary_structure(dims, 1)
    table = {name: np.zeros((n + 1, dims if name.endswith("Center") else 1)) for name in NAMES}
    for i, box in enumerate(ndimage.find_objects(plane.astype(np.int64)), start=1):
        if box is None:
            continue
        inside = plane[box] == i
        offset = np.array([s.start + o for s, o in zip(box, origin)], dtype=np.float64)
        coords = np.argwhere(inside) + offset
        center = coords.mean(axis=0)
        hull_volume = float(inside.size)
        table["InputVolume"][i] = inside.sum()
        table["InputCenter"][i] = center
        table["HullVolume"][i] = hull_volume
        table["HullCenter"][i] = [(s.start + o + s.stop + o - 1) / 2.0 for s, o in zip(box, origin)]
        table["Convexity"][i] = inside.sum() / hull_volume
        defects, count = ndimage.label(~inside, structure=structure)
        table["DefectCount"][i] = count
        if count:
            defect_coords = np.argwhere(defects > 0) + offset
            table["DefectCenter"][i] = defect_coords.mean(axis=0)
            sizes = np.bincount(defects.reshape(-1))[1:].astype(np.float64)
            centers = np.stack([np.asarray(ndimage.mean(np.indices(inside.shape)[d] + offset[d], defects,
                                                        index=np.arange(1, count + 1))) for d in range(dims)], axis=1)
            distances = np.linalg.norm(centers - center, axis=1)
            table["DefectDisplacementMean"][i] = float(np.sum(sizes * distances) / np.sum(sizes))
            stats = _size_statistics(sizes)
            for name, value in zip(("DefectVolumeMean", "DefectVolumeVariance", "DefectVolumeSkewness",
                                    "DefectVolumeKurtosis"), stats):
                table[name][i] = value
    return {name: table[name].astype(np.float32) for name in names}
