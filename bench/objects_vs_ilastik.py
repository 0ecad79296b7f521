"""Object Classification side by side with the real ilastik: wall time and peak memory.

A generated 48x512x512 two-channel volume with 1,156 objects (blobs, fixed seed) and its
prediction maps go through ilastik's own ``ObjectClassification5t3d2c_wPred_tablecsv.ilp`` (Object
Predictions image and CSV table) with gpuheadless and with ilastik (``ILASTIK`` names its
launcher), each run a fresh process with ``LAZYFLOW_THREADS=2``, the two in turn within each
round; medians of ``--repeat`` rounds after a warm-up round.

    ILASTIK=/path/to/run_ilastik python bench/objects_vs_ilastik.py [--repeat 3] [--ram-mb 512]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import h5py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import measure  # noqa: E402
from object_volumes import blob_volume, object_inputs  # noqa: E402
from run import DATA, median_row, processor  # noqa: E402

PROJECT = "ObjectClassification5t3d2c_wPred_tablecsv.ilp"
SHAPE, CELL = (1, 48, 512, 512), (12, 30, 30)


def write_inputs(folder: Path) -> int:
    """Raw data and prediction maps (t, z, y, x, c) in ``folder``; returns the number of objects."""
    labels = blob_volume(SHAPE, CELL, seed=1)
    raw, probabilities = object_inputs(labels, seed=2)
    with h5py.File(folder / "raw.h5", "w") as f:
        f.create_dataset("data", data=raw, chunks=True)
    with h5py.File(folder / "probabilities.h5", "w") as f:
        f.create_dataset("exported_data", data=probabilities, chunks=True)
    return int(labels.max())


def workspace(folder: Path) -> Path:
    """A working folder with the project beside ``inputdata`` and a ``reference/`` folder for its table."""
    folder.mkdir()
    shutil.copyfile(Path(DATA) / "projects" / PROJECT, folder / PROJECT)
    (folder / "inputdata").symlink_to(Path(DATA) / "inputs")
    (folder / "reference").mkdir()
    return folder


def command(system: str, inputs: Path) -> list[str]:
    program = [sys.executable, "-m", "gpuheadless", "--device=cpu"] if system == "gpuheadless" else [os.environ["ILASTIK"]]
    return [*program, "--headless", f"--project={PROJECT}", f"--raw_data={inputs}/raw.h5/data",
            f"--prediction_maps={inputs}/probabilities.h5/exported_data", "--export_source=Object Predictions",
            "--output_filename_format=out/{nickname}_{result_type}.h5"]


def measure_objects(repeat: int, ram_mb: int | None = None) -> tuple[dict[str, dict], int]:
    """Median rows (``run.median_row``) of gpuheadless and ilastik on the generated volume, and
    its number of objects; ``ILASTIK`` names ilastik's launcher."""
    env = dict(os.environ, LAZYFLOW_THREADS="2", QT_QPA_PLATFORM="offscreen")
    if ram_mb:
        env["LAZYFLOW_TOTAL_RAM_MB"] = str(ram_mb)
    else:
        env.pop("LAZYFLOW_TOTAL_RAM_MB", None)
    systems = ["gpuheadless", "ilastik"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_objects = write_inputs(root)
        folders = {s: workspace(root / s) for s in systems}
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        for round_index in range(repeat + 1):
            for system in systems:
                result = measure(command(system, root), env, cwd=str(folders[system]))
                if round_index:
                    runs[system].append(result)
    voxels = SHAPE[1] * SHAPE[2] * SHAPE[3]
    return {s: median_row(s, "objects", voxels, runs[s]) for s in systems}, n_objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ram-mb", type=int, help="LAZYFLOW_TOTAL_RAM_MB for both (default: unset)")
    args = parser.parse_args()
    if not os.environ.get("ILASTIK"):
        raise SystemExit("set ILASTIK to ilastik's launcher")
    rows, n_objects = measure_objects(args.repeat, args.ram_mb)
    print(f"{processor()}, {os.cpu_count()} cores; {SHAPE[1]}x{SHAPE[2]}x{SHAPE[3]}, 2 channels, {n_objects} objects, "
          f"{PROJECT}; LAZYFLOW_THREADS=2, LAZYFLOW_TOTAL_RAM_MB={args.ram_mb or 'unset'}; median of {args.repeat} rounds")
    for system, row in rows.items():
        if "error" in row:
            print(f"{system}: failed: {' '.join(row['error'])}")
            return 1
        print(f"{system:12s} {row['wall_s']:7.2f} s  peak {row['peak_mib']:6.0f} MiB  runs {', '.join(f'{w:.2f}' for w in row['runs'])}")
    print(f"speed-up over ilastik: {rows['ilastik']['wall_s'] / rows['gpuheadless']['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
