"""Autocontext side by side with the real ilastik: 2D 2048x2048, two stages.

The benchmark's 2D image (bench/inputs.py, BENCH.md's checksum) through a two-stage project
trained by ilastik itself: ilastik's own ``Autocontext_2D.ilp`` test project (stage 1: 17
features, stage 2: 39 on the image stacked with stage 1's probabilities; from ``ILASTIK_MIRROR``,
a clone of ilastik), or with ``--project`` any two-stage project of uint8 single-channel data.
Exports ``Probabilities Stage 2`` with gpuheadless (its default configuration, or
``--our-ram-mb``) and ilastik (``LAZYFLOW_TOTAL_RAM_MB=512``, its best configuration in
BENCH.md), each run a fresh process with ``LAZYFLOW_THREADS=2``, the two in turn within each
round; medians of ``--repeat`` rounds after a warm-up round; outputs compared.

    ILASTIK=/path/to/run_ilastik python bench/autocontext_vs_ilastik.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from inputs import make_inputs  # noqa: E402
from measure import measure  # noqa: E402
from run import median_row, processor  # noqa: E402

MIRROR = os.environ.get("ILASTIK_MIRROR", str(HERE.parents[1] / ".mirror" / "ilastik+ilastik" / "repo"))
SOURCE = "Probabilities Stage 2"


def _project(folder: Path, given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    done = subprocess.run(["git", f"--git-dir={MIRROR}", "show", "HEAD:tests/test_ilastik/data/api_projects.zip"],
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit("needs ilastik's api_projects.zip: set ILASTIK_MIRROR to a clone of ilastik, or give --project")
    (folder / "api.zip").write_bytes(done.stdout)
    with zipfile.ZipFile(folder / "api.zip") as z:
        z.extract("Autocontext_2D.ilp", folder)
    return folder / "Autocontext_2D.ilp"


def command(system: str, project: Path, image: str, out: Path) -> list[str]:
    program = [sys.executable, "-m", "gpuheadless", "--device=cpu"] if system == "gpuheadless" else [os.environ["ILASTIK"]]
    return [*program, "--headless", f"--project={project}", f"--export_source={SOURCE}",
            f"--output_filename_format={out}", "--input_axes=yx", image]  # the project was trained on yxc data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--project", help="a two-stage Autocontext project (default: ilastik's Autocontext_2D.ilp)")
    parser.add_argument("--our-ram-mb", type=int, help="LAZYFLOW_TOTAL_RAM_MB for gpuheadless (default: unset)")
    args = parser.parse_args()
    if not os.environ.get("ILASTIK"):
        raise SystemExit("set ILASTIK to ilastik's launcher")
    image = make_inputs()["synth2d_2048.h5"] + "/data"
    base = dict(os.environ, LAZYFLOW_THREADS="2", QT_QPA_PLATFORM="offscreen")
    base.pop("LAZYFLOW_TOTAL_RAM_MB", None)
    env = {"gpuheadless": dict(base, **({"LAZYFLOW_TOTAL_RAM_MB": str(args.our_ram_mb)} if args.our_ram_mb else {})),
           "ilastik": dict(base, LAZYFLOW_TOTAL_RAM_MB="512")}
    systems = ["gpuheadless", "ilastik"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = _project(root, args.project)
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        for round_index in range(args.repeat + 1):
            for system in systems:
                result = measure(command(system, project, image, root / f"{system}.h5"), env[system], cwd=str(root))
                if round_index:
                    runs[system].append(result)
        values = {}
        for system in systems:
            with h5py.File(root / f"{system}.h5", "r") as f:
                values[system] = f["exported_data"][()]
    rows = {s: median_row(s, "autocontext-2d", 2048 * 2048, runs[s]) for s in systems}
    print(f"{processor()}, {os.cpu_count()} cores; 2D 2048x2048, {project.name}, {SOURCE}; LAZYFLOW_THREADS=2; "
          f"gpuheadless LAZYFLOW_TOTAL_RAM_MB={args.our_ram_mb or 'unset'}, ilastik 512; median of {args.repeat} rounds")
    for system, row in rows.items():
        if "error" in row:
            print(f"{system}: failed: {' '.join(row['error'])}")
            return 1
        print(f"{system:12s} {row['wall_s']:7.2f} s  peak {row['peak_mib']:6.0f} MiB  runs {', '.join(f'{w:.2f}' for w in row['runs'])}")
    gap = np.abs(values["gpuheadless"].astype(np.float64) - values["ilastik"])
    # ilastik at 2 threads adds its forests' votes in the order its threads finish: float32 roundings
    print(f"speed-up over ilastik: {rows['ilastik']['wall_s'] / rows['gpuheadless']['wall_s']:.2f}x; "
          f"values differing: {int(np.count_nonzero(gap))} of {gap.size}, at most {gap.max():.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
