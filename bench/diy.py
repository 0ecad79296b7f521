"""The usual do-it-yourself alternative: scikit-image features + a scikit-learn random forest.

Trains ``RandomForestClassifier(100 trees)`` on the labels stored in an ilastik project, with
``skimage.feature.multiscale_basic_features`` over the project's scale range (intensity, edges,
texture) computed on its training image, then predicts probabilities for a whole image and saves
them as ``.npy``. It needs ``pip install '.[bench]'`` (scikit-image).

    python bench/diy.py --project P.ilp --training inputs/2d.h5/data --input big.h5/data --output out.npy
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import h5py
import numpy as np


def _features(image: np.ndarray, scales: list[float]) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(
        image.astype(np.float32), intensity=True, edges=True, texture=True,
        sigma_min=min(scales), sigma_max=max(scales), num_sigma=len(scales), channel_axis=None,
    ).astype(np.float32)


def _read(path: str) -> np.ndarray:
    external, internal = path.split(".h5", 1)
    with h5py.File(external + ".h5", "r") as f:
        return np.squeeze(f[internal.strip("/")][()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--training", required=True, help="the project's training image (file.h5/data)")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("LAZYFLOW_THREADS", "2") or 2))
    args = parser.parse_args()
    from sklearn.ensemble import RandomForestClassifier

    from gpuheadless.project.ilp import read_project

    project = read_project(args.project)
    scales = list(project.selection.scales)
    training = _read(args.training)
    labels = np.zeros(training.shape, np.uint8)
    for block in project.labels[0]:
        values = block.values.reshape(block.values.shape[: training.ndim])
        region = labels[tuple(block.slices[: training.ndim])]
        region[values > 0] = values[values > 0]
    mask = labels > 0
    train_features = _features(training, scales)
    forest = RandomForestClassifier(100, n_jobs=args.threads, random_state=0).fit(train_features[mask], labels[mask])
    image = _read(args.input)
    started = time.perf_counter()
    features = _features(image, scales)
    feature_s = time.perf_counter() - started
    probabilities = forest.predict_proba(features.reshape(-1, features.shape[-1])).astype(np.float32)
    forest_s = time.perf_counter() - started - feature_s
    np.save(args.output, probabilities.reshape(image.shape + (-1,)))
    print(f"Timing: features {feature_s:.2f} s, forest {forest_s:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
