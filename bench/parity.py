"""Parity figures against real ilastik 1.4.2 outputs in ../shared/data/ilastik/reference.

Runs every Pixel Classification reference case through gpuheadless and prints, per case, the
fraction of values off by 0.015 or more, the largest difference and ilastik's tolerance verdict
(at most 0.1 % of values off by 0.015 or more, none off by 0.15 or more).

    python bench/parity.py [--data ../shared/data/ilastik] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field

import h5py
import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ilastik"))


@dataclass(frozen=True)
class Case:
    """One reference output and the options that produced it."""

    reference: str
    project: str
    input: str
    source: str = "Probabilities"
    options: dict = field(default_factory=dict)
    output_format: str = "hdf5"


CASES = [
    Case("PixelClassification2d__2d__Probabilities.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data"),
    Case("PixelClassification2d3c__2d3c__Probabilities.h5", "PixelClassification2d3c.ilp", "inputs/2d3c.h5/data"),
    Case("PixelClassification3d__3d__Probabilities.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data"),
    Case("PixelClassification3d1c__3d1c__Probabilities.h5", "PixelClassification3d1c.ilp", "inputs/3d1c.h5/data"),
    Case("PixelClassification3d2c__3d2c__Probabilities.h5", "PixelClassification3d2c.ilp", "inputs/3d2c.h5/data"),
    Case("PixelClassification5t2d1c__5t2d1c__Probabilities.h5", "PixelClassification5t2d1c.ilp", "inputs/5t2d1c.h5/data"),
    Case("PixelClassification5t2d2c__5t2d2c__Probabilities.h5", "PixelClassification5t2d2c.ilp", "inputs/5t2d2c.h5/data"),
    Case("PixelClassification5t3d2c__5t3d2c__Probabilities.h5", "PixelClassification5t3d2c.ilp", "inputs/5t3d2c.h5/data"),
    Case("PixelClassification2d_units__2d_with_pixel_sizes__Probabilities.h5", "PixelClassification2d_units.ilp", "inputs/2d_with_pixel_sizes.tif"),
    Case("PixelClassification2d__2d__Simple_Segmentation.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data", "Simple Segmentation"),
    Case("PixelClassification2d__2d__Uncertainty.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data", "Uncertainty"),
    Case("PixelClassification3d__3d__Simple_Segmentation.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data", "Simple Segmentation"),
    Case("PixelClassification3d__3d__Uncertainty.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data", "Uncertainty"),
    Case("PixelClassification2d__2d__Probabilities__uint8_0-255.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data",
         options=dict(export_dtype="uint8", pipeline_result_drange=(0.0, 1.0), export_drange=(0.0, 255.0))),
    Case("PixelClassification3d__3d__Probabilities__uint8_0-255.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data",
         options=dict(export_dtype="uint8", pipeline_result_drange=(0.0, 1.0), export_drange=(0.0, 255.0))),
    Case("PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data",
         options=dict(cutout_subregion=([300, 500, 0], [428, 660, 2]))),
    Case("PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660__axes_cyx.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data",
         options=dict(cutout_subregion=([300, 500, 0], [428, 660, 2]), output_axis_order="cyx")),
    Case("PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660.tiff", "PixelClassification2d.ilp", "inputs/2d.h5/data",
         options=dict(cutout_subregion=([300, 500, 0], [428, 660, 2])), output_format="multipage tiff"),
    Case("PixelClassification3d__3d__Probabilities__cutout_z10-30_y20-40_x15-45.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data",
         options=dict(cutout_subregion=([10, 20, 15, 0], [30, 40, 45, 2]))),
    Case("PixelClassification3d__3d__Probabilities__axes_czyx.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data",
         options=dict(output_axis_order="czyx")),
    Case("PixelClassification2d_allfeatures__2d__Probabilities__cutout_y300-428_x500-660.h5", "PixelClassification2d_allfeatures.ilp",
         "inputs/2d.h5/data", options=dict(cutout_subregion=([300, 500, 0], [428, 660, 2]))),
    Case("PixelClassification3d_allfeatures__3d__Probabilities__cutout_z10-30_y20-40_x15-45.h5", "PixelClassification3d_allfeatures.ilp",
         "inputs/3d.h5/data", options=dict(cutout_subregion=([10, 20, 15, 0], [30, 40, 45, 2]))),
    Case("PixelClassification2d__2d__Simple_Segmentation.png", "PixelClassification2d.ilp", "inputs/2d.h5/data",
         "Simple Segmentation", output_format="png"),
    Case("PixelClassification2d__2d__Features__cutout_y0-128_x0-160.h5", "PixelClassification2d.ilp", "inputs/2d.h5/data", "Features",
         options=dict(cutout_subregion=([0, 0, None], [128, 160, None]))),
    Case("PixelClassification3d__3d__Features__cutout_z0-20_y0-30_x0-30.h5", "PixelClassification3d.ilp", "inputs/3d.h5/data", "Features",
         options=dict(cutout_subregion=([0, 0, 0, None], [20, 30, 30, None]))),
    Case("PixelClassification2d_allfeatures__2d__Features__cutout_y0-48_x64-112.h5", "PixelClassification2d_allfeatures.ilp",
         "inputs/2d.h5/data", "Features", options=dict(cutout_subregion=([0, 64, None], [48, 112, None]))),
    Case("PixelClassification3d_allfeatures__3d__Features__cutout_z0-10_y0-12_x0-12.h5", "PixelClassification3d_allfeatures.ilp",
         "inputs/3d.h5/data", "Features", options=dict(cutout_subregion=([0, 0, 0, None], [10, 12, 12, None]))),
]


def run_case(case: Case, data: str, out_dir: str, threads: int = 2, ram_mb: float = 2048.0) -> str:
    """Produce ``case``'s output with gpuheadless; returns the output path."""
    from gpuheadless.config import ExportOptions, RunConfig
    from gpuheadless.pipeline.pixel import run_batch

    from gpuheadless.io.formats import extension

    ext = "." + extension(case.output_format)
    config = RunConfig(
        project=os.path.join(data, "projects", case.project),
        inputs=[case.input],
        export=ExportOptions(
            source=case.source,
            output_format=case.output_format,
            output_filename_format=os.path.join(out_dir, case.reference.rsplit(".", 1)[0] + ext),
            **case.options,
        ),
        threads=threads,
        ram_budget_mb=ram_mb,
        device="cpu",
        cwd=data,
        progress=False,
    )
    results, failures = run_batch(config)
    if failures:
        raise RuntimeError("; ".join(failures))
    return results[0].output


def load(path: str) -> np.ndarray:
    if path.endswith((".tif", ".tiff")):
        return tifffile.imread(path)
    if path.endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    """ilastik's tolerance figures for one output."""
    if ours.shape != ref.shape:
        return {"shape": [list(ours.shape), list(ref.shape)], "ok": False}
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if ref.dtype.kind in "iu":
        off = float((diff != 0).mean())
        return {"fraction_off": off, "max_diff": float(diff.max()), "ok": off <= 1e-3, "dtype": str(ours.dtype)}
    off = float((diff >= 0.015).mean())
    return {"fraction_off": off, "max_diff": float(diff.max()), "ok": off <= 1e-3 and float(diff.max()) < 0.15, "dtype": str(ours.dtype)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for case in CASES:
            path = run_case(case, args.data, out_dir)
            figures = compare(load(path), load(os.path.join(args.data, "reference", case.reference)))
            rows.append({"reference": case.reference, **figures})
            print(f"{'ok ' if figures['ok'] else 'BAD'} {case.reference:80s} off>=0.015: {figures.get('fraction_off', float('nan')):.2e}"
                  f"  max diff: {figures.get('max_diff', float('nan')):.3g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
