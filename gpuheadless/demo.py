"""``gpuheadless demo``: a self-contained example, no network and no data from elsewhere.

It draws a training image of bright blobs on a noisy background with a few scribbles, writes an
ilastik-layout project (feature selection, training lane, labels; no forest, so the batch run
trains one from the labels, as ilastik does for such a project), then applies it to a second,
unseen image through the normal command line and reports the accuracy against the truth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import h5py
import numpy as np

from .features.plan import FEATURE_IDS


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


def write_demo_project(path: str, training_file: str, labels: np.ndarray) -> None:
    """An ilastik 1.4-layout Pixel Classification project with labels and no trained forest."""
    scales = np.array([0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0])
    selection = np.zeros((6, 7), dtype=bool)
    selection[0, :5] = True  # Gaussian Smoothing 0.3-3.5
    selection[1:, 1:5] = True  # the others at 0.7-3.5
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.create_dataset("ilastikVersion", data="1.4.2", dtype=text)
        f.create_dataset("workflowName", data="Pixel Classification", dtype=text)
        f.create_dataset("time", data=time.ctime(), dtype=text)
        fs = f.create_group("FeatureSelections")
        fs.create_dataset("FeatureIds", data=np.array(FEATURE_IDS, dtype=object), dtype=text)
        fs["Scales"] = scales
        fs["SelectionMatrix"] = selection
        fs["ComputeIn2d"] = np.ones(7, dtype=bool)
        fs.create_dataset("StorageVersion", data="0.1", dtype=text)
        raw = f.create_group("Input Data/infos/lane0000/Raw Data")
        f.create_group("Input Data/infos/lane0000/Prediction Mask")
        f.create_group("Input Data/local_data")
        f.create_dataset("Input Data/Role Names", data=np.array(["Raw Data", "Prediction Mask"], dtype=object), dtype=text)
        f.create_dataset("Input Data/StorageVersion", data="0.2", dtype=text)
        tags = {"axes": [{"key": k, "typeFlags": 2, "resolution": 0, "description": ""} for k in "yx"]}
        for key, value in {
            "__class__": "RelativeFilesystemDatasetInfo",
            "axistags": json.dumps(tags),
            "datasetId": str(uuid.uuid4()),
            "display_mode": "default",
            "filePath": os.path.relpath(training_file, os.path.dirname(path)) + "/data",
            "location": "FileSystem",
            "nickname": "train",
        }.items():
            raw.create_dataset(key, data=value, dtype=text)
        raw["allowLabels"] = True
        raw["shape"] = np.array(labels.shape, dtype=np.int64)
        pc = f.create_group("PixelClassification")
        pc.create_dataset("LabelNames", data=np.array(["Background", "Blob"], dtype=object), dtype=text)
        pc["LabelColors"] = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.int64)
        pc["PmapColors"] = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.int64)
        pc.create_dataset("StorageVersion", data="0.1", dtype=text)
        ys, xs = np.nonzero(labels)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        block = pc.create_dataset("LabelSets/labels000/block0000", data=labels[box][..., None])
        block.attrs["blockSlice"] = f"[{box[0].start}:{box[0].stop},{box[1].start}:{box[1].stop},0:1]"
        export = f.create_group("Prediction Export")
        for key, value in {"OutputFilenameFormat": "{dataset_dir}/{nickname}_{result_type}", "OutputFormat": "hdf5",
                           "OutputInternalPath": "exported_data", "StorageVersion": "0.1"}.items():
            export.create_dataset(key, data=value, dtype=text)


def main(argv: list[str]) -> int:
    """Build the example in ``--output`` (default ``./gpuheadless-demo``) and run it."""
    from .cli import main as cli_main  # noqa: PLC0415

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
    project = os.path.join(out, "demo.ilp")
    write_demo_project(project, os.path.join(out, "train.h5"), labels)
    print(f"demo: wrote {project} ({int((labels > 0).sum())} labelled pixels) and {out}/cells.h5", flush=True)
    started = time.perf_counter()
    code = cli_main(["--headless", f"--project={project}", "--export_source=Simple Segmentation", "--seed=0",
                     f"--output_filename_format={out}/{{nickname}}_{{result_type}}.h5", f"{out}/cells.h5/data"])
    if code:
        return code
    elapsed = time.perf_counter() - started
    with h5py.File(os.path.join(out, "cells-data_Simple Segmentation.h5"), "r") as f:
        segmentation = f["exported_data"][..., 0]
    accuracy = float((segmentation == test_truth).mean())
    print(f"demo: segmented {out}/cells.h5 ({args.size}x{args.size}) in {elapsed:.2f} s; "
          f"pixel accuracy against the truth {accuracy:.1%}; result in '{out}/cells-data_Simple Segmentation.h5'")
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
