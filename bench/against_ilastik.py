"""Every command line of the reference MANIFEST, run by the real ilastik and by gpuheadless.

Each command of ``../shared/data/ilastik/reference/MANIFEST.md`` runs twice in fresh processes,
once with ilastik's launcher and once with ``python -m gpuheadless`` (same arguments, same
working-directory layout, ``LAZYFLOW_THREADS=2``), each in its own scratch folder. Every output
file is then compared: array values (HDF5, PNG, TIFF), HDF5 attributes, and CSV tables cell by
cell with columns matched by name (ilastik's column order depends on Python's hash seed). The
live ilastik output is also compared with the stored reference file, which shows that the
ilastik being run is the one that made the references.

    ILASTIK=/path/to/run_ilastik python bench/against_ilastik.py [--json out.json] [--only SUBSTRING]

Prints one row per output file and exits 1 if any difference is not one of the explained ones
(``EXPLAINED``). The live test suite (``tests/live/test_manifest_live.py``) runs the same cases.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", HERE.parents[1] / "shared" / "data" / "ilastik"))

# Differences that come from ilastik, with the reason (see the README's parity section). The
# value is the largest absolute difference accepted; every other output must be identical.
EXPLAINED = {
    "PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660.h5":
        (0.0101, "ilastik filters a cutout as its own array: features move by an ulp, one tree vote flips"),
    "PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660__axes_cyx.h5":
        (0.0101, "as the yxc cutout"),
    "PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660.tiff":
        (0.0101, "as the yxc cutout"),
    "PixelClassification2d_allfeatures__2d__Probabilities__cutout_y300-428_x500-660.h5":
        (0.0101, "as the yxc cutout"),
    "PixelClassification2d__2d__Features__cutout_y0-128_x0-160.h5":
        (2e-5, "ilastik filters a cutout as its own array: fastfilters' scalar row ends move, one float32 ulp"),
    "PixelClassification2d_allfeatures__2d__Features__cutout_y0-48_x64-112.h5":
        (2e-5, "as the 2D Features cutout"),
    "PixelClassification5t3d2c__5t3d2c__Probabilities.h5":
        (1e-7, "one float32 rounding of a probability sum"),
}


FOREST_ORDER_ROUNDING = 2.0 ** -23
FOREST_ORDER_NOTE = ("identical to ilastik's stored output; the live ilastik differs from its own stored output by one "
                     "float32 rounding (it adds its forests' votes in the order its threads finish)")


@dataclass(frozen=True)
class Command:
    """One MANIFEST command line and the reference files it wrote."""

    args: tuple[str, ...]          # the arguments after the ``ilastik`` launcher word
    outputs: tuple[str, ...]       # file names in reference/


@dataclass
class Comparison:
    """One output file of both programs, compared."""

    output: str
    values: int = 0
    differing: int = 0
    max_diff: float = 0.0
    attributes_equal: bool = True
    reference_identical: bool = True   # live ilastik == stored reference
    problems: list[str] = field(default_factory=list)
    explained: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def manifest_commands(data: Path) -> list[Command]:
    """The distinct command lines of MANIFEST.md, with the outputs each one wrote."""
    by_args: dict[tuple[str, ...], list[str]] = {}
    for line in (data / "reference" / "MANIFEST.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 12 or not re.fullmatch(r"\d+", cells[1]):
            continue
        output = cells[2].strip("`")
        command = next(c for c in cells if c.startswith("`ilastik "))
        words = shlex.split(command.strip("`"))
        by_args.setdefault(tuple(words[1:]), []).append(output)
    return [Command(args, tuple(outputs)) for args, outputs in by_args.items()]


def prepare_workspace(data: Path, root: Path) -> Path:
    """A folder laid out as the MANIFEST's working directory, without writing into ``data``.

    Projects are copied (ilastik opens them for writing). ``inputs`` is a real folder of links to
    the input files, so that ``{dataset_dir}/..`` in an output name is the workspace, not ``data``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "inputs").mkdir()
    for item in (data / "inputs").iterdir():
        (root / "inputs" / item.name).symlink_to(item)
    (root / "projects").mkdir()
    for project in (data / "projects").glob("*.ilp"):
        shutil.copyfile(project, root / "projects" / project.name)
    (root / "projects" / "inputdata").symlink_to("../inputs")
    (root / "reference").mkdir()
    return root


def program_command(program: str) -> list[str]:
    """The argv prefix of ``ilastik`` (from ``$ILASTIK``) or ``gpuheadless``."""
    if program == "gpuheadless":
        return [sys.executable, "-m", "gpuheadless"]
    launcher = os.environ.get("ILASTIK")
    if not launcher:
        raise SystemExit("set ILASTIK to ilastik's launcher (../shared/tools/build-ilastik.sh makes run_ilastik)")
    return [launcher, "-m", "ilastik"] if Path(launcher).name.startswith("python") else [launcher]


def run(program: str, command: Command, workspace: Path, threads: int = 2) -> tuple[int, float, str]:
    """Run one command line in ``workspace``; returns (exit status, wall seconds, output tail)."""
    env = dict(os.environ, LAZYFLOW_THREADS=str(threads), QT_QPA_PLATFORM="offscreen")
    start = time.perf_counter()
    done = subprocess.run([*program_command(program), *command.args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=1800)
    return done.returncode, time.perf_counter() - start, (done.stdout + done.stderr)[-2000:]


def load_array(path: Path) -> np.ndarray:
    """The image an output file holds (HDF5 ``exported_data``, TIFF pages, PNG)."""
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def hdf5_attributes(path: Path) -> dict[str, object]:
    """``exported_data``'s attributes, JSON ones parsed, arrays as lists."""
    with h5py.File(path, "r") as f:
        attrs = dict(f["exported_data"].attrs)
    out: dict[str, object] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
            value = json.loads(value)
        elif isinstance(value, np.ndarray):
            value = [v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v for v in value.ravel()]
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def read_table(path: Path) -> dict[str, list[str]]:
    """A CSV table as columns by name."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {name: [row[i] for row in rows[1:]] for i, name in enumerate(rows[0])}


def compare_tables(ours: Path, theirs: Path, result: Comparison) -> None:
    a, b = read_table(ours), read_table(theirs)
    if set(a) != set(b):
        result.problems.append(f"columns differ: only ours {sorted(set(a) - set(b))}, only ilastik {sorted(set(b) - set(a))}")
    for name in set(a) & set(b):
        if len(a[name]) != len(b[name]):
            result.problems.append(f"column {name!r}: {len(a[name])} rows vs {len(b[name])}")
            continue
        result.values += len(a[name])
        result.differing += sum(x != y for x, y in zip(a[name], b[name]))
    if result.differing:
        result.problems.append(f"{result.differing} of {result.values} table cells differ")


def compare_arrays(ours: Path, theirs: Path, result: Comparison, tolerance: float) -> None:
    a, b = load_array(ours), load_array(theirs)
    if a.shape != b.shape or a.dtype != b.dtype:
        result.problems.append(f"shape/dtype {a.shape} {a.dtype} vs ilastik {b.shape} {b.dtype}")
        return
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    result.values = int(a.size)
    result.differing = int(np.count_nonzero(diff))
    result.max_diff = float(diff.max()) if diff.size else 0.0
    if result.max_diff > tolerance:
        result.problems.append(f"{result.differing} of {result.values} values differ, max {result.max_diff:.3g}")
    if ours.suffix == ".h5":
        mine, ilastik = hdf5_attributes(ours), hdf5_attributes(theirs)
        result.attributes_equal = mine == ilastik
        if not result.attributes_equal:
            keys = sorted(k for k in mine.keys() | ilastik.keys() if mine.get(k) != ilastik.get(k))
            result.problems.append(f"HDF5 attributes differ: {keys} ours {[mine.get(k) for k in keys]} ilastik {[ilastik.get(k) for k in keys]}")


def compare_output(name: str, ours_dir: Path, ilastik_dir: Path, data: Path) -> Comparison:
    """Our file against live ilastik's, and live ilastik's against the stored reference."""
    result = Comparison(name)
    ours, theirs, stored = ours_dir / "reference" / name, ilastik_dir / "reference" / name, data / "reference" / name
    for path, who in ((ours, "gpuheadless"), (theirs, "ilastik")):
        if not path.exists():
            result.problems.append(f"{who} wrote no {name}")
    if result.problems:
        return result
    tolerance, result.explained = EXPLAINED.get(name, (0.0, ""))
    if name.endswith(".csv"):
        compare_tables(ours, theirs, result)
        result.reference_identical = read_table(theirs) == read_table(stored)
        if not result.reference_identical:
            result.problems.append("the live ilastik's table differs from the stored reference")
        return result
    live, reference, mine = load_array(theirs), load_array(stored), load_array(ours)
    result.reference_identical = bool(np.array_equal(live, reference))
    if not result.reference_identical and np.array_equal(mine, reference) and mine.dtype.kind == "f" \
            and np.abs(live.astype(np.float64) - reference).max() <= FOREST_ORDER_ROUNDING:
        # ilastik adds its forests' votes in the order the forests finish (threads), so its own
        # runs differ by a float32 rounding; ours equals the stored run exactly.
        tolerance, result.explained = FOREST_ORDER_ROUNDING, FOREST_ORDER_NOTE
    compare_arrays(ours, theirs, result, tolerance)
    return result


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``root`` (to prove nothing wrote there)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def run_all(data: Path, scratch: Path, only: str = "") -> tuple[list[Comparison], dict[str, float]]:
    """Run every selected MANIFEST command with both programs; the comparisons and wall times."""
    before = snapshot(data)
    try:
        return _run_all(data, scratch, only)
    finally:
        after = snapshot(data)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:
            raise RuntimeError(f"a program wrote into the reference data {data}: {changed}")


def _run_all(data: Path, scratch: Path, only: str) -> tuple[list[Comparison], dict[str, float]]:
    workspaces = {p: prepare_workspace(data, scratch / p) for p in ("ilastik", "gpuheadless")}
    comparisons, walls = [], {"ilastik": 0.0, "gpuheadless": 0.0}
    for command in manifest_commands(data):
        if only and not any(only in o for o in command.outputs):
            continue
        statuses = {}
        for program, workspace in workspaces.items():
            statuses[program] = run(program, command, workspace)
            walls[program] += statuses[program][1]
        for name in command.outputs:
            result = compare_output(name, workspaces["gpuheadless"], workspaces["ilastik"], data)
            for program, (code, _, tail) in statuses.items():
                if code != 0:
                    result.problems.append(f"{program} exited {code}: {tail.strip().splitlines()[-1] if tail.strip() else ''}")
            comparisons.append(result)
    return comparisons, walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--scratch", type=Path, help="folder for both programs' outputs (default: a temporary one)")
    parser.add_argument("--only", default="", help="only commands whose output name contains this")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.scratch or Path(tmp)
        comparisons, walls = run_all(args.data, scratch, args.only)
    print("| output | values | differing | max diff | attributes | live ilastik = reference | verdict |")
    print("|---|---|---|---|---|---|---|")
    for c in comparisons:
        verdict = "identical" if c.ok and not c.differing else ("explained: " + c.explained if c.ok else "; ".join(c.problems))
        print(f"| {c.output} | {c.values} | {c.differing} | {c.max_diff:.3g} | {'equal' if c.attributes_equal else 'DIFFER'} "
              f"| {'yes' if c.reference_identical else 'NO'} | {verdict} |")
    values = sum(c.values for c in comparisons)
    print(f"\n{len(comparisons)} outputs, {values} values compared, {sum(c.differing for c in comparisons)} differing; "
          f"{sum(not c.ok for c in comparisons)} unexplained. Wall time summed: ilastik {walls['ilastik']:.1f} s, "
          f"gpuheadless {walls['gpuheadless']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ | {"ok": c.ok} for c in comparisons], indent=2))
    return 0 if all(c.ok for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
