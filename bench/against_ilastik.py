"""Every command line of the reference MANIFEST, run by the real ilastik and by gpuheadless.

Group ``manifest``: each command of ``../shared/data/ilastik/reference/MANIFEST.md``; group
``exports``: every export source of every Pixel Classification test project with default names
and formats. Each command runs twice in fresh processes, once with ilastik's launcher and once
with ``python -m gpuheadless`` (same arguments, same working-directory layout; ilastik with
``LAZYFLOW_THREADS=1``, where its forest sums are reproducible, gpuheadless with 2), each in its
own scratch folder. Every output file either wrote (found by listing the folders before and after; the two sets of names must be
equal) is then compared: array values (HDF5, PNG, TIFF), HDF5 attributes, and CSV tables cell by
cell with columns matched by name (ilastik's column order depends on Python's hash seed). The
live ilastik output of a MANIFEST command is also compared with the stored reference file, which
shows that the ilastik being run is the one that made the references.

    ILASTIK=/path/to/run_ilastik python bench/against_ilastik.py [--groups manifest exports] [--only TEXT] [--json out.json]

Prints one row per output file and exits 1 if any difference is not one of the explained ones
(``EXPLAINED``). The live test suite (``tests/live/test_pixel_live.py``) runs the same cases.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parity  # noqa: E402

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
}


FOREST_ORDER_ROUNDING = 2.0 ** -23


@dataclass(frozen=True)
class Command:
    """One command line; ``group`` says where it comes from (``manifest`` or a generated group)."""

    args: tuple[str, ...]          # the arguments after the ``ilastik`` launcher word
    group: str = "manifest"
    # ilastik adds its forests' votes in the order its threads finish them; with one thread the
    # order is fixed and its probabilities are reproducible to the bit.
    ilastik_threads: int = 1


@dataclass
class Comparison:
    """One output file of both programs, compared."""

    output: str
    group: str = "manifest"
    values: int = 0
    differing: int = 0
    max_diff: float = 0.0
    attributes_equal: bool = True
    reference_identical: bool | None = None   # live ilastik == stored reference (manifest outputs only)
    problems: list[str] = field(default_factory=list)
    explained: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Finished:
    """One program's run of one command: exit status, wall seconds, output tail, files it wrote."""

    returncode: int
    wall_s: float
    tail: str
    written: frozenset[str]


def manifest_commands(data: Path) -> list[Command]:
    """The distinct command lines of MANIFEST.md, in its order."""
    commands: dict[tuple[str, ...], None] = {}
    for line in (data / "reference" / "MANIFEST.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 12 or not re.fullmatch(r"\d+", cells[1]):
            continue
        command = next(c for c in cells if c.startswith("`ilastik "))
        commands[tuple(shlex.split(command.strip("`"))[1:])] = None
    return [Command(args) for args in commands]


# Every Pixel Classification test project with the input it was trained on (MANIFEST.md).
PIXEL_PROJECTS = {
    "PixelClassification2d.ilp": "inputs/2d.h5/data",
    "PixelClassification2d3c.ilp": "inputs/2d3c.h5/data",
    "PixelClassification3d.ilp": "inputs/3d.h5/data",
    "PixelClassification3d1c.ilp": "inputs/3d1c.h5/data",
    "PixelClassification3d2c.ilp": "inputs/3d2c.h5/data",
    "PixelClassification5t2d1c.ilp": "inputs/5t2d1c.h5/data",
    "PixelClassification5t2d2c.ilp": "inputs/5t2d2c.h5/data",
    "PixelClassification5t3d2c.ilp": "inputs/5t3d2c.h5/data",
    "PixelClassification2d_units.ilp": "inputs/2d_with_pixel_sizes.tif",
}
SMALL = {"PixelClassification2d3c.ilp", "PixelClassification3d.ilp", "PixelClassification5t2d1c.ilp",
         "PixelClassification5t2d2c.ilp", "PixelClassification2d_units.ilp"}


def export_commands() -> list[Command]:
    """Every export source of every Pixel Classification project, with no other flag.

    Output name, folder and format are each program's defaults (the project's stored export
    settings, else ilastik's), so the files written must match by name as well as by content.
    Features only for the small projects (a full-image Features export of 2d.h5 is 154 MB).
    """
    commands = []
    for project, image in PIXEL_PROJECTS.items():
        sources = ["Probabilities", "Simple Segmentation", "Uncertainty", "Labels"] + (["Features"] if project in SMALL else [])
        for source in sources:
            commands.append(Command(("--headless", f"--project=projects/{project}", f"--export_source={source}", image),
                                    "exports"))
    return commands


GROUPS = {"manifest": lambda data: manifest_commands(data), "exports": lambda data: export_commands()}


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


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``root`` (links to folders not followed)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def run(program: str, command: Command, workspace: Path, threads: int = 2) -> Finished:
    """Run one command line in ``workspace``; the files it wrote are found by comparing listings."""
    env = dict(os.environ, LAZYFLOW_THREADS=str(threads), QT_QPA_PLATFORM="offscreen")
    before = snapshot(workspace)
    start = time.perf_counter()
    done = subprocess.run([*program_command(program), *command.args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    after = snapshot(workspace)
    written = frozenset(k for k, v in after.items() if before.get(k) != v and not k.startswith("projects/"))
    return Finished(done.returncode, wall, (done.stdout + done.stderr)[-2000:], written)


def load_array(path: Path) -> np.ndarray:
    """The image an output file holds (HDF5 ``exported_data``, TIFF pages, PNG), as bench/parity.py reads it."""
    return parity.load(str(path))


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
        elif isinstance(value, np.ndarray):  # the type matters too: ilastik stores drange in the data's type
            value = (value.dtype.str if value.dtype.kind != "O" else "str",
                     [v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v for v in value.ravel()])
        elif isinstance(value, np.generic):
            value = (value.dtype.str, value.item())
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


def compare_output(name: str, ours_dir: Path, ilastik_dir: Path, data: Path, group: str = "manifest") -> Comparison:
    """Our file against live ilastik's; for MANIFEST outputs also live ilastik's against the stored one.

    ``name`` is relative to the workspaces. ilastik runs with one thread here: with more, it adds
    its forests' votes in the order its threads finish them, so its own runs differ by a float32
    rounding. The stored references were made with two threads, so the live output may differ
    from them by that rounding (and no more).
    """
    result = Comparison(name, group)
    ours, theirs = ours_dir / name, ilastik_dir / name
    stored = data / name if name.startswith("reference/") else None
    for path, who in ((ours, "gpuheadless"), (theirs, "ilastik")):
        if not path.exists():
            result.problems.append(f"{who} wrote no {name}")
    if result.problems:
        return result
    tolerance, result.explained = EXPLAINED.get(Path(name).name, (0.0, ""))
    if name.endswith(".csv"):
        compare_tables(ours, theirs, result)
        if stored is not None:
            result.reference_identical = read_table(theirs) == read_table(stored)
            if not result.reference_identical:
                result.problems.append("the live ilastik's table differs from the stored reference")
        return result
    compare_arrays(ours, theirs, result, tolerance)
    if stored is not None:
        live, reference = load_array(theirs), load_array(stored)
        result.reference_identical = bool(np.array_equal(live, reference))
        if not result.reference_identical and (live.dtype.kind != "f" or live.shape != reference.shape or
                                               np.abs(live.astype(np.float64) - reference).max() > FOREST_ORDER_ROUNDING):
            result.problems.append("the live ilastik's output differs from the stored reference by more than a rounding")
    return result


def run_all(data: Path, scratch: Path, groups: list[str], only: str = "") -> tuple[list[Comparison], dict[str, float]]:
    """Run every selected command with both programs; the comparisons and wall times."""
    before = snapshot(data)
    try:
        return _run_all(data, scratch, groups, only)
    finally:
        after = snapshot(data)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:
            raise RuntimeError(f"a program wrote into the reference data {data}: {changed}")


def run_both(command: Command, workspaces: dict[str, Path], data: Path) -> tuple[list[Comparison], dict[str, Finished]]:
    """One command by both programs; one comparison per file either wrote."""
    finished = {program: run(program, command, workspace, command.ilastik_threads if program == "ilastik" else 2)
                for program, workspace in workspaces.items()}
    comparisons = []
    for name in sorted(finished["ilastik"].written | finished["gpuheadless"].written):
        result = compare_output(name, workspaces["gpuheadless"], workspaces["ilastik"], data, command.group)
        for program, done in finished.items():
            if done.returncode != 0:
                last = done.tail.strip().splitlines()[-1] if done.tail.strip() else ""
                result.problems.append(f"{program} exited {done.returncode}: {last}")
        comparisons.append(result)
    if not comparisons:
        comparisons.append(Comparison(" ".join(command.args), command.group, problems=[
            f"{p} wrote nothing (exit {d.returncode}: {d.tail.strip().splitlines()[-1] if d.tail.strip() else ''})"
            for p, d in finished.items()]))
    return comparisons, finished


def _run_all(data: Path, scratch: Path, groups: list[str], only: str) -> tuple[list[Comparison], dict[str, float]]:
    workspaces = {p: prepare_workspace(data, scratch / p) for p in ("ilastik", "gpuheadless")}
    comparisons, walls = [], {"ilastik": 0.0, "gpuheadless": 0.0}
    for group in groups:
        for command in GROUPS[group](data):
            if only and not any(only in a for a in command.args):
                continue
            found, finished = run_both(command, workspaces, data)
            comparisons += found
            for program, done in finished.items():
                walls[program] += done.wall_s
    return comparisons, walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--scratch", type=Path, help="folder for both programs' outputs (default: a temporary one)")
    parser.add_argument("--only", default="", help="only commands with an argument containing this")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.scratch or Path(tmp)
        comparisons, walls = run_all(args.data, scratch, args.groups, args.only)
    print("| group | output | values | differing | max diff | attributes | live ilastik = reference | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for c in comparisons:
        verdict = "identical" if c.ok and not c.differing else ("explained: " + c.explained if c.ok else "; ".join(c.problems))
        stored = {None: "–", True: "yes", False: "NO"}[c.reference_identical]
        print(f"| {c.group} | {c.output} | {c.values} | {c.differing} | {c.max_diff:.3g} | "
              f"{'equal' if c.attributes_equal else 'DIFFER'} | {stored} | {verdict} |")
    values = sum(c.values for c in comparisons)
    print(f"\n{len(comparisons)} outputs, {values} values compared, {sum(c.differing for c in comparisons)} differing; "
          f"{sum(not c.ok for c in comparisons)} unexplained. Wall time summed: ilastik {walls['ilastik']:.1f} s, "
          f"gpuheadless {walls['gpuheadless']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ | {"ok": c.ok} for c in comparisons], indent=2))
    return 0 if all(c.ok for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
