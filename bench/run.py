"""Benchmark: throughput and memory of gpuheadless against ilastik and the usual alternative.

One command regenerates the inputs of ../shared/data/ilastik/BENCH.md (checksums verified) and
runs side by side, in turn within each round, on the same full-feature projects and images:

* gpuheadless on the CPU, and on the GPU when one is usable;
* the do-it-yourself alternative: scikit-image ``multiscale_basic_features`` + scikit-learn
  ``RandomForestClassifier`` (100 trees), see bench/diy.py (needs ``pip install '.[bench]'``);
* real ilastik when the environment variable ``ILASTIK`` names its launcher (else skipped).

Cases: 2D 2048x2048 and 3D 256^3, plus a sweep of 2D sizes; with live ilastik also Object
Classification of a generated 48x512x512 volume (bench/objects_vs_ilastik.py, both programs at
their defaults). Every run is a fresh process with
``LAZYFLOW_THREADS=2`` and ``LAZYFLOW_TOTAL_RAM_MB=512`` (ilastik's best configuration in
BENCH.md); the median of ``--repeat`` rounds after one warm-up round is reported with Mvox/s,
peak RSS, the speed-up over live ilastik and the split between reading, features, forest and
writing. Without live ilastik, BENCH.md's figures (another machine) are shown and marked so. Results go to the terminal and to
bench/results/ as JSON, Markdown and a PNG plot.

    python bench/run.py [--repeat 3] [--skip-3d] [--skip-objects] [--skip-sweep] [--systems gpuheadless-cpu diy]
    python bench/run.py --memory-check     # 1 GiB volume, 512 MiB budget: peak RSS
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from inputs import SWEEP_2D, make_inputs, sweep_input, volume_1gib  # noqa: E402
from measure import measure  # noqa: E402
from plot import line_plot  # noqa: E402

DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ilastik"))
RESULTS = os.path.join(HERE, "results")
PROJECTS = {"2d": "PixelClassification2d_allfeatures.ilp", "3d": "PixelClassification3d_allfeatures.ilp"}
TRAINING = {"2d": "inputs/2d.h5/data", "3d": "inputs/3d.h5/data"}
# BENCH.md, real ilastik 1.4.2 with LAZYFLOW_TOTAL_RAM_MB=512: wall s, peak MiB.
ILASTIK_BENCH_MD = {"2d": (5.8, 499), "3d": (21.0, 590)}
ENV = {"LAZYFLOW_THREADS": "2", "LAZYFLOW_TOTAL_RAM_MB": "512"}
_TIMING = re.compile(r"(read|features|forest|write) ([0-9.]+) s")
_FIRST_BLOCK = re.compile(r"First block after ([0-9.]+) s")


def _gpu_reason() -> str:
    """Empty if gpuheadless can use a GPU here, else why not."""
    from gpuheadless.backend import probe_gpu, select_backend
    from gpuheadless.errors import UserError

    backend, reason = probe_gpu()
    if backend is None:
        return reason
    try:
        select_backend("gpu")
    except UserError as exc:
        return str(exc)
    return ""


def _project_copy(case: str, out_dir: str) -> str:
    """The case's project copied beside ``inputdata`` (its training data), as ilastik needs to open it."""
    import shutil

    project = os.path.join(out_dir, PROJECTS[case])
    if not os.path.exists(project):
        shutil.copyfile(os.path.join(DATA, "projects", PROJECTS[case]), project)
    link = os.path.join(out_dir, "inputdata")
    if not os.path.lexists(link):
        os.symlink(os.path.join(DATA, "inputs"), link)
    return project


def _commands(system: str, case: str, image: str, out_dir: str) -> list[str] | None:
    project = _project_copy(case, out_dir)
    if system.startswith("gpuheadless"):
        device = "gpu" if "-gpu" in system else "cpu"
        return [sys.executable, "-m", "gpuheadless", "--headless", f"--project={project}", "--export_source=Probabilities",
                "--output_format=hdf5", f"--output_filename_format={out_dir}/{system}.h5", f"--device={device}", "--debug",
                f"{image}/data"]
    if system == "diy":
        return [sys.executable, os.path.join(HERE, "diy.py"), "--project", project, "--training",
                os.path.join(DATA, TRAINING[case]), "--input", f"{image}/data", "--output", f"{out_dir}/diy.npy"]
    if system == "ilastik":
        return [os.environ["ILASTIK"], "--headless", f"--project={project}", "--export_source=Probabilities",
                "--output_format=hdf5", f"--output_filename_format={out_dir}/ilastik.h5", f"{image}/data"]
    raise ValueError(system)


def median_row(system: str, case: str, voxels: int, runs: list[dict]) -> dict:
    failed = [r for r in runs if r["returncode"] != 0]
    if failed:
        return {"system": system, "case": case, "voxels": voxels, "error": failed[0]["stderr"].strip().splitlines()[-1:]}
    wall = statistics.median(r["wall_s"] for r in runs)
    stages = {}
    for r in runs:
        for stage, seconds in _TIMING.findall(r["stderr"]):
            stages.setdefault(stage, []).append(float(seconds))
        for seconds in _FIRST_BLOCK.findall(r["stderr"]):
            stages.setdefault("first block", []).append(float(seconds))
    return {
        "system": system, "case": case, "voxels": voxels, "wall_s": wall, "mvox_s": voxels / wall / 1e6,
        "peak_mib": statistics.median(r["peak_mib"] for r in runs), "runs": [r["wall_s"] for r in runs],
        "stages_s": {k: statistics.median(v) for k, v in stages.items()},
    }


def run(systems: list[str], case: str, image: str, voxels: int, repeat: int) -> list[dict]:
    """One warm-up round plus ``repeat`` measured rounds, the systems in turn within each round.

    Interleaving keeps the comparison fair when the machine's speed drifts. Returns the median
    figures of each system.
    """
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory() as out_dir:
        commands = {s: _commands(s, case, image, out_dir) for s in systems}
        for round_index in range(repeat + 1):
            for system in systems:
                result = measure(commands[system], _environment(system))
                if round_index:
                    runs[system].append(result)
    return [median_row(s, case, voxels, runs[s]) for s in systems]


def _environment(system: str) -> dict[str, str]:
    """LAZYFLOW_THREADS=2 and the 512 MiB budget; a ``-default`` system runs without the budget."""
    env = dict(os.environ, **ENV)
    if system.endswith("-default"):
        env.pop("LAZYFLOW_TOTAL_RAM_MB")
    return env


def processor() -> str:
    """The processor's model name, as the kernel reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table(rows: list[dict]) -> list[str]:
    """Markdown rows; with live ilastik rows, each case gets its speed-up over ilastik, else BENCH.md's figures."""
    ilastik = {r["case"]: r for r in rows if r["system"] == "ilastik" and "error" not in r}
    lines = ["| system | case | voxels | wall s (median) | Mvox/s | peak RSS MiB | vs ilastik | read / features / forest / write s | first block s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['case']} | {r['voxels']:,} | failed: {' '.join(r['error'])} | | | | | |")
            continue
        stages = " / ".join(f"{r['stages_s'][k]:.2f}" if k in r["stages_s"] else "–" for k in ("read", "features", "forest", "write"))
        first = f"{r['stages_s']['first block']:.2f}" if "first block" in r["stages_s"] else "–"
        ratio = f"{ilastik[r['case']]['wall_s'] / r['wall_s']:.2f}x" if r["case"] in ilastik else "–"
        lines.append(f"| {r['system']} | {r['case']} | {r['voxels']:,} | {r['wall_s']:.2f} | {r['mvox_s']:.2f} | "
                     f"{r['peak_mib']:.0f} | {ratio} | {stages} | {first} |")
    if not ilastik:
        for case, (wall, peak) in ILASTIK_BENCH_MD.items():
            voxels = 2048 * 2048 if case == "2d" else 256**3
            lines.append(f"| ilastik 1.4.2 (BENCH.md, another machine: not side by side) | {case} | {voxels:,} | {wall:.2f} | "
                         f"{voxels / wall / 1e6:.2f} | {peak} | – | – | ≈2.6 |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per case (after one warm-up)")
    parser.add_argument("--skip-3d", action="store_true")
    parser.add_argument("--skip-objects", action="store_true",
                        help="leave out Object Classification (run only with ilastik: bench/objects_vs_ilastik.py)")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--systems", nargs="+", default=["gpuheadless-cpu", "gpuheadless-gpu", "diy", "ilastik"],
                        help="also gpuheadless-cpu-default / gpuheadless-gpu-default: without LAZYFLOW_TOTAL_RAM_MB")
    parser.add_argument("--memory-check", action="store_true",
                        help="only: a 1 GiB float32 volume at LAZYFLOW_TOTAL_RAM_MB=512, peak RSS against the budget")
    args = parser.parse_args()
    if args.memory_check:
        return memory_check()
    inputs = make_inputs()
    systems, skipped = [], {}
    for system in args.systems:
        if system.startswith("gpuheadless-gpu") and (reason := _gpu_reason()):
            skipped[system] = reason
        elif system == "diy" and not _importable("skimage"):
            skipped[system] = "scikit-image is not installed (pip install '.[bench]')"
        elif system == "ilastik" and not os.environ.get("ILASTIK"):
            skipped[system] = "set ILASTIK to ilastik's launcher to include it; BENCH.md's figures are shown instead"
        else:
            systems.append(system)
    for system, reason in skipped.items():
        print(f"skipped {system}: {reason}")
    cases = [("2d", inputs["synth2d_2048.h5"], 2048 * 2048)]
    if not args.skip_3d:
        cases.append(("3d", inputs["synth3d_256.h5"], 256**3))
    rows = []
    for case, image, voxels in cases:
        rows += run(systems, case, image, voxels, args.repeat)
        print("\n".join(_table(rows[-len(systems):])[2:2 + len(systems)]))
    if "ilastik" in systems and not args.skip_objects:  # both at their defaults, as users run them
        from objects_vs_ilastik import measure_objects  # noqa: PLC0415

        found, _ = measure_objects(args.repeat)
        found["gpuheadless-cpu-default"] = dict(found.pop("gpuheadless"), system="gpuheadless-cpu-default")
        rows += [found["gpuheadless-cpu-default"], found["ilastik"]]
        print("\n".join(_table(rows[-2:])[2:4]))
    sweep = []
    if not args.skip_sweep:
        for side in SWEEP_2D:
            sweep += run(systems, "2d", sweep_input(side), side * side, args.repeat)
            print("\n".join(_table(sweep[-len(systems):])[2:2 + len(systems)]))
    _write_results(rows, sweep, skipped, args)
    return 0


def memory_check() -> int:
    """Process a 1 GiB volume with a 512 MiB budget; peak RSS must stay under 512 MiB + the interpreter."""
    volume = volume_1gib()
    baseline = measure([sys.executable, "-c", "import gpuheadless.cli, gpuheadless.pipeline.pixel, h5py"])["peak_mib"]
    project = os.path.join(DATA, "projects", "PixelClassification3d.ilp")
    env = dict(os.environ, **ENV)
    with tempfile.TemporaryDirectory() as out_dir:
        result = measure([sys.executable, "-m", "gpuheadless", "--headless", f"--project={project}", "--output_format=hdf5",
                          f"--output_filename_format={out_dir}/p.h5", "--device=cpu", "--debug", f"{volume}/data"], env)
    if result["returncode"] != 0:
        print(result["stderr"])
        return 1
    limit = 512 + baseline
    verdict = "within" if result["peak_mib"] <= limit else "OVER"
    blocks = re.search(r"(\d+) block\(s\) of \(([^)]*)\)", result["stderr"])
    line = (f"1 GiB volume (640^3 float32, PixelClassification3d.ilp, 27 features): {result['wall_s']:.1f} s, "
            f"peak RSS {result['peak_mib']:.0f} MiB; budget 512 MiB + interpreter {baseline:.0f} MiB = {limit:.0f} MiB: "
            f"{verdict}" + (f" ({blocks.group(1)} blocks of {blocks.group(2)})" if blocks else ""))
    print(line)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "memory_check.txt"), "w") as f:
        f.write(line + "\n")
    return 0 if verdict == "within" else 1


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_results(rows: list[dict], sweep: list[dict], skipped: dict, args: argparse.Namespace) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    machine = f"{processor()}, {os.cpu_count()} cores, {platform.platform()}"
    stamp = datetime.date.today().isoformat()
    doc = {"date": stamp, "machine": machine, "env": ENV, "repeat": args.repeat, "cases": rows, "sweep": sweep,
           "skipped": skipped, "ilastik_bench_md": ILASTIK_BENCH_MD}
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
    lines = [f"Benchmark of {stamp} on {machine}; LAZYFLOW_THREADS=2, LAZYFLOW_TOTAL_RAM_MB=512, median of {args.repeat} "
             "interleaved rounds (systems in turn within each round).", ""]
    lines += _table(rows) + [""]
    if sweep:
        lines += ["Size sweep (2D):", ""] + [line for line in _table(sweep) if "BENCH.md" not in line] + [""]
    lines += [f"Skipped: {s}: {r}" for s, r in skipped.items()]
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    series = {}
    for r in sweep:
        if "error" not in r:
            series.setdefault(r["system"], []).append((r["voxels"] / 1e6, r["mvox_s"]))
    if series and "ilastik" not in series:
        ilastik = ILASTIK_BENCH_MD["2d"]
        series["ilastik 1.4.2 (BENCH.md, 2048x2048)"] = [(2048 * 2048 / 1e6, 2048 * 2048 / ilastik[0] / 1e6)]
        line_plot(os.path.join(RESULTS, "throughput.png"), series, "image size (Mpx, log scale)", "throughput (Mpx/s)",
                  f"2D throughput, 2 threads, 512 MiB budget ({stamp})")
    print("\n".join(lines))
    print(f"written: {RESULTS}/latest.json, latest.md" + (", throughput.png" if series else ""))


if __name__ == "__main__":
    sys.exit(main())
