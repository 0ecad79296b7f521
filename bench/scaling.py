"""Scale-out: the 3D benchmark (256^3, 61 features) on 1 and 2 local Dask workers.

Each configuration is one fresh process (LAZYFLOW_TOTAL_RAM_MB=512 per process/worker, one
thread per worker), writing Zarr; the single-process runs with 1 and 2 threads are shown for
comparison. On a machine with more cores or GPUs, pass --workers 1 2 4 8.

    python bench/scaling.py [--workers 1 2] [--scheduler ADDRESS]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from inputs import make_inputs  # noqa: E402
from measure import measure  # noqa: E402

PROJECT = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ilastik", "projects",
                                        "PixelClassification3d_allfeatures.ilp"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scheduler", help="an existing scheduler instead of local clusters")
    args = parser.parse_args()
    image = make_inputs()["synth3d_256.h5"] + "/data"
    voxels = 256**3
    runs = [(f"one process, {t} thread(s)", t, None) for t in (1, 2)]
    runs += [(f"{n} Dask worker(s)", 1, args.scheduler or f"local:{n}") for n in args.workers]
    print(f"{'configuration':28s} {'wall s':>8s} {'Mvox/s':>8s}")
    for label, threads, scheduler in runs:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={PROJECT}", "--output_format=zarr",
                   f"--output_filename_format={tmp}/out.zarr", "--device=cpu", image]
            if scheduler:
                cmd.insert(-1, f"--scheduler={scheduler}")
            env = dict(os.environ, LAZYFLOW_THREADS=str(threads), LAZYFLOW_TOTAL_RAM_MB="512")
            result = measure(cmd, env)
        if result["returncode"]:
            print(f"{label:28s} failed: {result['stderr'].strip().splitlines()[-1:]}")
            continue
        print(f"{label:28s} {result['wall_s']:8.2f} {voxels / result['wall_s'] / 1e6:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
