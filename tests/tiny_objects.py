"""A tiny generated Object Classification example for tests that need no shared data.

Disks of two sizes on a 2D image; a project (any of the three input variants) whose forest
tells small disks (class 1, "small") from large ones (class 2, "large") by their pixel count.
"""
from __future__ import annotations

import h5py
import numpy as np

from gpuheadless.forest.train import train_forest, vigra_mtry
from gpuheadless.project.vigra_writer import write_vigra_forest

WORKFLOWS = {"prediction": "Object Classification (from prediction image)",
             "binary": "Object Classification (from binary image)",
             "labels": "Object Classification (from label image)"}
SMALL, LARGE = 2, 4  # disk radii
FEATURES = ("Count", "Mean")


def tiny_image(shape=(48, 64), seed=0):
    """(raw uint8 (Y, X), foreground bool (Y, X), size class of each disk 1/2, centre of each disk).

    Disks are placed on a grid far enough apart that smoothing never joins them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    foreground = np.zeros(shape, bool)
    classes, centres = [], []
    for cy in range(8, shape[0] - 6, 14):
        for cx in range(8, shape[1] - 6, 14):
            size = int(rng.integers(1, 3))
            foreground |= (yy - cy) ** 2 + (xx - cx) ** 2 <= (SMALL if size == 1 else LARGE) ** 2
            classes.append(size)
            centres.append((cy, cx))
    raw = (foreground * 150 + rng.integers(0, 60, shape)).astype(np.uint8)
    return raw, foreground, np.array(classes), centres


def prediction_maps(foreground: np.ndarray) -> np.ndarray:
    """(Y, X, 2) float32: background, foreground."""
    fg = foreground.astype(np.float32)
    return np.stack([1 - fg, fg], axis=-1)


def write_tiny_project(path, variant: str = "prediction", seed: int = 1) -> None:
    """An Object Classification project of ``variant`` selecting Count and Mean, with a trained forest."""
    rng = np.random.default_rng(seed)
    small = np.pi * SMALL ** 2 + rng.normal(0, 2, 40)
    large = np.pi * LARGE ** 2 + rng.normal(0, 4, 40)
    x = np.stack([np.concatenate([small, large]), rng.uniform(100, 210, 80)], axis=1).astype(np.float32)
    y = np.repeat([1, 2], 40)
    forest = train_forest(x, y, n_trees=8, seed=seed)
    with h5py.File(path, "w") as f:
        f["workflowName"] = WORKFLOWS[variant].encode()
        f["ilastikVersion"] = b"1.4.2"
        if variant == "prediction":
            g = f.create_group("ThresholdTwoLevels")
            for name, value in (("CurOperator", 0), ("LowThreshold", 0.5), ("HighThreshold", 0.8), ("Channel", 1),
                                ("CoreChannel", 1), ("MinSize", 2), ("MaxSize", 100000)):
                g[name] = value
            for a in "zyx":
                g[f"SmootherSigma/{a}"] = 1.0
        for name in FEATURES:
            f.create_group(f"ObjectClassification/SelectedFeatures/Standard Object Features/{name}")
        f["ObjectClassification/LabelNames"] = np.array([b"small", b"large"], dtype=object)
        write_vigra_forest(f.create_group("ObjectClassification/ClassifierForests/Forest0000"), forest,
                           range(forest.n_trees), len(y), vigra_mtry(x.shape[1]))
