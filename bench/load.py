"""Load: one call with 2,000 small images, one with 50 large ones (issue 15).

Each batch runs as one ``gpuheadless`` process; the end of every lane is marked as it is logged
and the process's resident memory polled meanwhile. Reports, per batch: lanes written, the memory
held between lanes (each lane's least resident memory) and the time per lane early (second
quarter) against late (last quarter), the peak, and whether the batch is flat: growth under
--max-growth-mb and a late/early time ratio under --max-ratio.

    python bench/load.py                       # 2,000 x 64² and 50 x 2048², LAZYFLOW_THREADS=2
    python bench/load.py --small 500 --large 10

Needs the shared ilastik data (PixelClassification2d.ilp). Exit status 1 if a batch is not flat
or an output is missing.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from load_harness import flatness, make_images, missing_outputs, run_batch  # noqa: E402

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", HERE.parents[1] / "shared" / "data" / "ilastik"))


def _processor() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def _batch(label: str, count: int, side: int, threads: int, scratch: Path, max_growth: float, max_ratio: float) -> bool:
    inputs = make_images(scratch / label, count, side)
    out = scratch / f"{label}-out"
    run = run_batch(["--headless", f"--project={DATA / 'projects/PixelClassification2d.ilp'}",
                     f"--output_filename_format={out}/{{nickname}}.h5", *inputs], scratch, threads)
    missing = missing_outputs(out, inputs, (side, side, 2))
    print(f"{label}: {count} images of {side}x{side}, exit {run.returncode}, {len(run.marks)} lanes logged, "
          f"{count - len(missing)} outputs written, {run.seconds:.1f} s in all, peak {run.peak_mb:.0f} MiB")
    if len(run.marks) < 4:
        print(run.stderr_tail)
        return False
    found = flatness(run)
    print("  " + found.summary())
    flat = found.rss_growth_mb < max_growth and found.time_ratio < max_ratio
    print(f"  {'flat' if flat else 'NOT FLAT'} (limits: +{max_growth} MiB, x{max_ratio})")
    return run.returncode == 0 and not missing and flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--small-side", type=int, default=64)
    parser.add_argument("--large", type=int, default=50)
    parser.add_argument("--large-side", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--max-ratio", type=float, default=1.25)
    args = parser.parse_args(argv)
    print(f"{_processor()}, {os.cpu_count()} cores, LAZYFLOW_THREADS={args.threads}")
    with tempfile.TemporaryDirectory(prefix="gpuheadless-load-") as scratch:
        ok = True
        for label, count, side in (("small", args.small, args.small_side), ("large", args.large, args.large_side)):
            if count:
                ok &= _batch(label, count, side, args.threads, Path(scratch), args.max_growth_mb, args.max_ratio)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
