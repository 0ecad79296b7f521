"""``gpuheadless demo``: a self-contained example, no network and no data from elsewhere.

It draws a training image of bright blobs on a noisy background with a few scribbles, trains a
project from them with ``gpuheadless train`` (an ``.ilp`` in ilastik's layout, forest included),
then applies it to a second, unseen image through the normal command line and reports the
accuracy against the truth.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import h5py
import numpy as np

from .trainer import train

# Gaussian Smoothing from 0.3, every other feature at 0.7-3.5: 26 channels.
DEMO_FEATURES = ",".join(
    [f"GaussianSmoothing@{s}" for s in (0.3, 0.7, 1.0, 1.6, 3.5)]
    + [f"{f}@{s}" for f in ("LaplacianOfGaussian", "GaussianGradientMagnitude", "DifferenceOfGaussians",
                            "StructureTensorEigenvalues", "HessianOfGaussianEigenvalues") for s in (0.7, 1.0, 1.6, 3.5)]
)


def synthetic_image(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image of blurred bright discs on an uneven noisy background, and its truth (1 bg, 2 blob)."""
    from scipy import ndimage  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(max(4, shape[0] * shape[1] // 900)):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.uniform(4, 10)
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    background = ndimage.gaussian_filter(rng.standard_normal(shape), min(shape) / 8)
    background = (background - background.min()) / (np.ptp(background) + 1e-9)
    image = ndimage.gaussian_filter(truth.astype(np.float32), 1.5) * 120 + 40 + 40 * background
    image += rng.normal(0, 10, shape)
    return np.clip(image, 0, 255).astype(np.uint8), np.where(truth, 2, 1).astype(np.uint8)


def scribbles(truth: np.ndarray, seed: int, per_class: int = 150) -> np.ndarray:
    """Sparse labels: a few hundred pixels of each class, far from the class borders."""
    from scipy import ndimage  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    labels = np.zeros(truth.shape, dtype=np.uint8)
    for value in (1, 2):
        core = ndimage.binary_erosion(truth == value, iterations=2)
        ys, xs = np.nonzero(core)
        pick = rng.choice(len(ys), size=min(per_class, len(ys)), replace=False)
        labels[ys[pick], xs[pick]] = value
    return labels


def main(argv: list[str]) -> int:
    """Build the example in ``--output`` (default ``./gpuheadless-demo``) and run it."""
    from .config import ExportOptions, RunConfig, ram_budget_from_env, threads_from_env  # noqa: PLC0415
    from .run import run_workflow  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="gpuheadless demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="gpuheadless-demo", help="folder for the example files")
    parser.add_argument("--size", type=int, default=512, help="side of the square images (default 512)")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    train_image, train_truth = synthetic_image((args.size, args.size), seed=1)
    test_image, test_truth = synthetic_image((args.size, args.size), seed=2)
    for name, image in (("train.h5", train_image), ("cells.h5", test_image)):
        with h5py.File(os.path.join(out, name), "w") as f:
            f["data"] = image
    labels = scribbles(train_truth, seed=3)
    with h5py.File(os.path.join(out, "train-labels.h5"), "w") as f:
        f["data"] = labels
    project = train([os.path.join(out, "train.h5/data")], [os.path.join(out, "train-labels.h5/data")],
                    os.path.join(out, "demo.ilp"), features=DEMO_FEATURES, label_names=["Background", "Blob"], seed=0)
    print(f"demo: trained {project} on {int((labels > 0).sum())} scribbled pixels; applying it to {out}/cells.h5",
          flush=True)
    started = time.perf_counter()
    # what `gpuheadless --headless --project=demo.ilp --export_source="Simple Segmentation" cells.h5/data` runs
    config = RunConfig(project=project, inputs=[f"{out}/cells.h5/data"], threads=threads_from_env(),
                       ram_budget_mb=ram_budget_from_env(), progress=False,
                       export=ExportOptions(source="Simple Segmentation",
                                            output_filename_format=f"{out}/{{nickname}}_{{result_type}}.h5"))
    _written, failures = run_workflow(config)
    if failures:
        return 1
    elapsed = time.perf_counter() - started
    with h5py.File(os.path.join(out, "cells-data_Simple Segmentation.h5"), "r") as f:
        segmentation = f["exported_data"][..., 0]
    accuracy = float((segmentation == test_truth).mean())
    print(f"demo: segmented {out}/cells.h5 ({args.size}x{args.size}) in {elapsed:.2f} s; "
          f"pixel accuracy against the truth {accuracy:.1%}; result in '{out}/cells-data_Simple Segmentation.h5'")
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
