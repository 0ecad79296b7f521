"""Is the default the fastest? gpuheadless with no setting against every LAZYFLOW_TOTAL_RAM_MB and
block size tried, on the BENCH.md inputs and the full-feature projects (issue 17).

Every configuration is a fresh process with ``LAZYFLOW_THREADS=2``, run in turn within each round
(one warm-up round, then ``--repeat`` measured ones); the median wall time and peak RSS are
printed, with each configuration's time relative to the default.

    python bench/block_sweep.py [--repeat 3] [--cases 2d 3d]

``GPUHEADLESS_BLOCK_MB`` sets one block's working set directly (the default picks 64 MiB in 2D
and 256 MiB in 3D, see gpuheadless/pipeline/blocks.py); ``ram=N`` sets LAZYFLOW_TOTAL_RAM_MB=N.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from inputs import make_inputs  # noqa: E402
from measure import measure  # noqa: E402
from run import _commands, processor  # noqa: E402

SETTINGS = {
    "2d": ["default", "ram=512", "ram=1024", "ram=2048", "ram=4096", "block=32", "block=128", "block=256"],
    "3d": ["default", "ram=512", "ram=1024", "ram=2048", "ram=4096", "block=128", "block=512"],
}
IMAGES = {"2d": ("synth2d_2048.h5", 2048 * 2048), "3d": ("synth3d_256.h5", 256**3)}


def environment(setting: str, threads: int = 2) -> dict[str, str]:
    """This process's environment for a run with ``setting`` (``default``, ``ram=N``, ``block=N``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LAZYFLOW_TOTAL_RAM_MB", "GPUHEADLESS_BLOCK_MB")}
    env["LAZYFLOW_THREADS"] = str(threads)
    if setting.startswith("ram="):
        env["LAZYFLOW_TOTAL_RAM_MB"] = setting[4:]
    elif setting.startswith("block="):
        env["GPUHEADLESS_BLOCK_MB"] = setting[6:]
    return env


def sweep(case: str, repeat: int) -> list[dict]:
    image = make_inputs()[IMAGES[case][0]]
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS[case]}
    with tempfile.TemporaryDirectory() as out_dir:
        command = _commands("gpuheadless-cpu", case, image, out_dir)
        for round_index in range(repeat + 1):
            for setting in SETTINGS[case]:
                result = measure(command, environment(setting))
                if result["returncode"] != 0:
                    raise SystemExit(f"{case} {setting}: {result['stderr'].strip().splitlines()[-1:]}")
                if round_index:
                    runs[setting].append(result)
    return [{"case": case, "setting": s, "wall_s": statistics.median(r["wall_s"] for r in rs),
             "peak_mib": statistics.median(r["peak_mib"] for r in rs), "runs": [r["wall_s"] for r in rs]}
            for s, rs in runs.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["2d", "3d"], choices=sorted(SETTINGS))
    args = parser.parse_args()
    print(f"{processor()}, {os.cpu_count()} logical CPUs, LAZYFLOW_THREADS=2, median of {args.repeat}")
    print("| case | setting | wall s | vs default | peak RSS MiB | runs |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        rows = sweep(case, args.repeat)
        default = rows[0]["wall_s"]
        for r in rows:
            runs = ", ".join(f"{w:.2f}" for w in r["runs"])
            print(f"| {case} | {r['setting']} | {r['wall_s']:.2f} | {r['wall_s'] / default:.2f} | {r['peak_mib']:.0f} | {runs} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
