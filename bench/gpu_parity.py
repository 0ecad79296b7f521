"""GPU against CPU, bit for bit, on every shared reference case (Pixel and Object Classification).

    python bench/gpu_parity.py produce --device gpu --out DIR [--only N]   # every case's outputs
    python bench/gpu_parity.py compare CPU_DIR GPU_DIR [--json out.json]   # same bytes of values?

``produce`` runs each Pixel Classification case of bench/parity.py (the ilastik references name
them) and each Object Classification project of the shared data (identities, probabilities and
the feature table) on one device; ``compare`` checks two such folders value for value (dtype,
shape and NaN positions included) and prints one line per case.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", HERE.parents[1] / "shared" / "data" / "ilastik"))
SECOND = {"wPred": ("--prediction_maps", "{stem}_Probabilities.h5/exported_data"),
          "wSeg": ("--segmentation_image", "{stem}_Binary_Segmentation.h5/exported_data"),
          "wLabels": ("--label_image", "{stem}_Object Identities.h5/exported_data")}


def produce_pixel(case, device: str, out: Path, threads: int) -> None:
    """One Pixel Classification case's output on ``device`` under ``out``."""
    from gpuheadless.config import ExportOptions, RunConfig
    from gpuheadless.io.formats import extension
    from gpuheadless.pipeline.pixel import run_batch

    stem = case.reference.rsplit(".", 1)[0]
    config = RunConfig(
        project=str(DATA / "projects" / case.project), inputs=[case.input],
        export=ExportOptions(source=case.source, output_format=case.output_format,
                             output_filename_format=str(out / f"{stem}.{extension(case.output_format)}"), **case.options),
        threads=threads, ram_budget_mb=2048.0, device=device, cwd=str(DATA), progress=False)
    _, failures = run_batch(config)
    if failures:
        raise RuntimeError("; ".join(failures))


def produce_objects(project: Path, device: str, out: Path) -> None:
    """One Object Classification project's identities, probabilities and table on ``device``."""
    from gpuheadless.cli import main

    stem, variant = project.stem[len("ObjectClassification"):].split("_")[:2]
    flag, second = SECOND[variant]
    target = out / project.stem
    target.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(target)  # a table path stored in the project is relative to the working directory
    try:
        code = main(["--headless", f"--project={project}", f"--raw_data={DATA}/inputs/{stem}.h5/data",
                     f"{flag}={DATA}/inputs/{second.format(stem=stem)}", f"--device={device}",
                     "--export_source=Object Identities", "--export_object_probability_img", "--output_format=hdf5",
                     f"--table_filename={target}/table.csv", f"--output_filename_format={target}/{{result_type}}.h5"])
    finally:
        os.chdir(here)
    if code != 0:
        raise RuntimeError(f"exit code {code}")


def produce(device: str, out: Path, only: int | None, threads: int) -> int:
    """Every case on ``device``; a failing case is recorded in ``failures.json``, the rest go on."""
    from parity import CASES

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(c.reference, lambda c=c: produce_pixel(c, device, out, threads)) for c in CASES]
    jobs += [(p.name, lambda p=p: produce_objects(p, device, out))
             for p in sorted((DATA / "projects").glob("ObjectClassification*.ilp"))]
    failures, start = {}, time.perf_counter()
    for name, job in jobs[:only]:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - reported per case
            failures[name] = f"{type(exc).__name__}: {exc}"
    (out / "failures.json").write_text(json.dumps(failures, indent=1))
    print(f"{device}: {len(jobs[:only])} cases in {time.perf_counter() - start:.1f} s, {len(failures)} failed")
    return 0


def load_values(path: Path) -> np.ndarray | str:
    """An output's values: HDF5 ``exported_data``, TIFF, PNG or a CSV table (its text)."""
    if path.suffix == ".csv":
        return path.read_text()
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    import h5py

    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def same(a: np.ndarray | str, b: np.ndarray | str) -> tuple[bool, str]:
    """Bit-identical values (dtype, shape, NaNs where the other has NaNs); and a note if not."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b, "" if a == b else "tables differ"
    if a.dtype != b.dtype or a.shape != b.shape:
        return False, f"{a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if np.array_equal(a.view(np.uint8), b.view(np.uint8)) if a.dtype.kind == "f" else np.array_equal(a, b):
        return True, ""
    if a.dtype.kind == "f":
        off = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        return False, f"{int(off.sum())} of {a.size} values differ, largest by {float(np.nanmax(np.abs(a - b))):.3g}"
    return False, f"{int((a != b).sum())} of {a.size} values differ"


def compare(first: Path, second: Path) -> dict:
    """Every output file under ``first`` against the same file under ``second``."""
    rows = {}
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and p.name != "failures.json")
    for name in names:
        other = second / name
        if not other.exists():
            rows[str(name)] = {"identical": False, "note": f"missing under {second}"}
            continue
        identical, note = same(load_values(first / name), load_values(other))
        rows[str(name)] = {"identical": identical, "note": note}
    for folder in (first, second):
        failures = folder / "failures.json"
        for case, error in (json.loads(failures.read_text()) if failures.exists() else {}).items():
            rows[f"{case} ({folder.name})"] = {"identical": False, "note": error}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("produce")
    make.add_argument("--device", choices=("cpu", "gpu"), required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--only", type=int, help="only the first N cases (a quick check)")
    make.add_argument("--threads", type=int, default=2)
    check = commands.add_parser("compare")
    check.add_argument("first", type=Path)
    check.add_argument("second", type=Path)
    check.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "produce":
        return produce(args.device, args.out, args.only, args.threads)
    rows = compare(args.first, args.second)
    for name, row in rows.items():
        print(f"{'identical' if row['identical'] else 'DIFFERENT'}  {name}  {row['note']}")
    identical = sum(r["identical"] for r in rows.values())
    print(f"{identical} of {len(rows)} outputs bit-identical")
    if args.json:
        args.json.write_text(json.dumps({"identical": identical, "outputs": len(rows), "rows": rows}, indent=1))
    return 0 if rows and identical == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
