"""Object Classification larger than the memory budget: peak memory and time.

Makes a synthetic 3D volume (two raw channels and a binary segmentation of many blob-shaped
objects, some crossing every slab boundary), then runs the binary-segmentation test project on it
under ``LAZYFLOW_TOTAL_RAM_MB`` as a fresh measured process, and once more with a budget that
holds the whole volume, and checks that both give the same Object Identities and table.

    python bench/objects_memory.py [--planes 96] [--budget-mb 512] [--out bench/results]
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import measure  # noqa: E402

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared/data/ilastik"))
PROJECT = DATA / "projects/ObjectClassification5t3d2c_wSeg.ilp"


def make_volume(folder: Path, planes: int, side: int) -> tuple[str, str, int]:
    """Raw (t, z, y, x, c) uint8 and a segmentation of smoothed-noise blobs, written slab by slab."""
    rng = np.random.default_rng(0)
    raw_path, seg_path = folder / "raw.h5", folder / "seg.h5"
    shape = (1, planes, side, side)
    with h5py.File(raw_path, "w") as r, h5py.File(seg_path, "w") as s:
        raw = r.create_dataset("data", shape=shape + (2,), dtype=np.uint8, chunks=(1, 16, 256, 256, 2))
        seg = s.create_dataset("data", shape=shape + (1,), dtype=np.uint8, chunks=(1, 16, 256, 256, 1))
        for z in range(0, planes, 16):
            n = min(16, planes - z)
            noise = ndimage.gaussian_filter(rng.random((n + 8, side, side), dtype=np.float32), 3.0)[4:4 + n]
            blobs = noise > np.quantile(noise, 0.93)
            raw[0, z:z + n] = rng.integers(0, 255, (n, side, side, 2), dtype=np.uint8)
            seg[0, z:z + n, ..., 0] = blobs
    return f"{raw_path}/data", f"{seg_path}/data", int(np.prod(shape))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=96)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--budget-mb", type=int, default=512)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="objects-bench-") as tmp:
        folder = Path(tmp)
        raw, seg, voxels = make_volume(folder, args.planes, args.side)
        input_mib = voxels * 3 / 2**20
        for label, budget in (("budget", args.budget_mb), ("whole", 16384)):
            out = folder / label
            cmd = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={PROJECT}", f"--raw_data={raw}",
                   f"--segmentation_image={seg}", "--export_source=Object Identities", "--output_format=hdf5",
                   f"--output_filename_format={out}/ids.h5", f"--table_filename={out}/objects.csv"]
            env = dict(os.environ, LAZYFLOW_TOTAL_RAM_MB=str(budget), LAZYFLOW_THREADS="2")
            result = measure(cmd, env)
            if result["returncode"] != 0:
                print(result["stderr"], file=sys.stderr)
                return 1
            with h5py.File(out / "ids.h5", "r") as f:
                objects = int(f["exported_data"][()].max())
            rows.append({"run": label, "budget_mb": budget, "input_mib": round(input_mib, 1),
                         "objects": objects, "wall_s": round(result["wall_s"], 2), "peak_mib": round(result["peak_mib"], 1)})
            print(json.dumps(rows[-1]))
        same_table = filecmp.cmp(folder / "budget/objects_table.csv", folder / "whole/objects_table.csv", shallow=False)
        with h5py.File(folder / "budget/ids.h5", "r") as a, h5py.File(folder / "whole/ids.h5", "r") as b:
            same_ids = bool(np.array_equal(a["exported_data"][()], b["exported_data"][()]))
    print(json.dumps({"identical_ids": same_ids, "identical_table": same_table}))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / "objects_memory.json", "w") as f:
        json.dump({"rows": rows, "identical_ids": same_ids, "identical_table": same_table}, f, indent=1)
    return 0 if same_ids and same_table else 1


if __name__ == "__main__":
    sys.exit(main())
