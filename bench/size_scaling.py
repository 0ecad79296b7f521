"""Scaling with image size and threads: gpuheadless at its defaults on 2D images from 256^2 to
8192^2 and 3D volumes from 64^3 to 512^3, with 1 and 2 threads (issue 17).

The full-feature projects and BENCH.md's images (cut down, or mirror-tiled up); every run a fresh
process with no LAZYFLOW_TOTAL_RAM_MB, ``LAZYFLOW_THREADS`` 1 or 2; the median of ``--repeat``
runs after a warm-up for the small cases, a single run for the two largest of each kind (marked).

    python bench/size_scaling.py [--repeat 3] [--kinds 2d 3d]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from block_sweep import environment  # noqa: E402
from inputs import CACHE, make_inputs, sweep_input  # noqa: E402
from measure import measure  # noqa: E402
from run import _commands, processor  # noqa: E402

SIZES = {"2d": [256, 512, 1024, 2048, 4096, 8192], "3d": [64, 128, 256, 512]}
SINGLE_RUN = {"2d": {4096, 8192}, "3d": {512}}


def volume_input(side: int) -> str:
    """A ``side``^3 volume cut from (or mirror-tiled up from) the 256^3 one."""
    path = os.path.join(CACHE, f"sweep3d_{side}.h5")
    if not os.path.exists(path):
        with h5py.File(make_inputs()["synth3d_256.h5"], "r") as f:
            base = f["data"][()]
        index = np.arange(side)
        period = 2 * base.shape[0]
        folded = np.where(index % period < base.shape[0], index % period, period - 1 - index % period)
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("data", shape=(side,) * 3, dtype=base.dtype, chunks=(min(side, 64),) * 3)
            for z in range(0, side, 64):  # slab by slab
                ds[z:z + 64] = base[folded[z:z + 64]][:, folded][:, :, folded]
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["2d", "3d"], choices=sorted(SIZES))
    args = parser.parse_args()
    print(f"{processor()}, {os.cpu_count()} logical CPUs, defaults (no LAZYFLOW_TOTAL_RAM_MB)")
    print("| case | threads | wall s | Mvox/s | peak RSS MiB | runs |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out_dir:
        for kind in args.kinds:
            for side in SIZES[kind]:
                image = sweep_input(side) if kind == "2d" else volume_input(side)
                voxels = side**2 if kind == "2d" else side**3
                command = _commands("gpuheadless-cpu", kind, image, out_dir)
                single = side in SINGLE_RUN[kind]
                for threads in (1, 2):
                    env = environment("default", threads)
                    runs = []
                    for index in range(1 if single else args.repeat + 1):
                        result = measure(command, env)
                        if result["returncode"] != 0:
                            raise SystemExit(f"{kind} {side}: {result['stderr'].strip().splitlines()[-1:]}")
                        if single or index:
                            runs.append(result)
                    wall = statistics.median(r["wall_s"] for r in runs)
                    peak = statistics.median(r["peak_mib"] for r in runs)
                    case = f"{kind} {side}{'²' if kind == '2d' else '³'}" + (" (one run)" if single else "")
                    print(f"| {case} | {threads} | {wall:.2f} | {voxels / wall / 1e6:.2f} | {peak:.0f} | "
                          + ", ".join(f"{r['wall_s']:.2f}" for r in runs) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
