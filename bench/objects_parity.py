"""Object Classification parity, per test project: stored features and cached probabilities.

For every Object Classification project in ``shared/data/ilastik/projects``:

* features: each value ilastik stored in ``ObjectExtraction/RegionFeatures`` (Standard Object
  Features with their neighbourhood twins, convex-hull and skeleton features; every object and
  time point) against ours, computed from the label image the project stores;
* probabilities: the whole headless run on the project's own inputs against the probabilities
  ilastik cached in ``ObjectClassification/CachedProbabilities``.

    python bench/objects_parity.py [--out bench/results]

Prints a Markdown table and writes ``objects_parity.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared/data/ilastik"))
SECOND = {"wPred": ("--prediction_maps", "{stem}_Probabilities.h5/exported_data"),
          "wSeg": ("--segmentation_image", "{stem}_Binary_Segmentation.h5/exported_data"),
          "wLabels": ("--label_image", "{stem}_Object Identities.h5/exported_data")}


def _raw_tzyxc(raw: np.ndarray) -> np.ndarray:
    return {2: lambda a: a[None, None, ..., None], 3: lambda a: a[None, None], 4: lambda a: a[:, None],
            5: lambda a: a}[raw.ndim](raw)


def stored_features(path: Path) -> dict:
    """Compare every stored feature value with ours; counts, exact matches and largest difference."""
    from gpuheadless.backend import cpu_backend
    from gpuheadless.objects.features import neighbourhood_features, standard_features
    from gpuheadless.objects.hull import hull_features
    from gpuheadless.objects.skeleton import skeleton_features

    cpu = cpu_backend()

    row = {"objects": 0, "values": 0, "exact": 0, "max_abs_diff": 0.0, "note": ""}
    with h5py.File(path, "r") as f:
        if "ObjectExtraction/LabelImage_v2/labelimage000" not in f or not len(f["ObjectExtraction/RegionFeatures"]):
            row["note"] = "no stored features"
            return row
        raw_name = f["Input Data/infos/lane0000/Raw Data/filePath"][()].decode().replace("\\", "/").split("/")[1]
        with h5py.File(DATA / "inputs" / raw_name, "r") as r:
            raw = _raw_tzyxc(r["data"][()])
        blocks = f["ObjectExtraction/LabelImage_v2/labelimage000"]
        stored = f["ObjectExtraction/RegionFeatures/0000"]
        times = sorted(stored, key=lambda k: int(k.split("]")[0][2:]))
        margins = f["ObjectExtraction/Features/Standard Object Features/Mean in neighborhood/margin"][()]
        for t, (block, key) in enumerate(zip(sorted(blocks), times)):
            labels = blocks[block][0, ..., 0]
            table = stored[key]
            counts = np.bincount(labels.reshape(-1).astype(np.int64))[1:]
            if not np.array_equal(counts, table["Default features"]["Count"][1:, 0]):
                row.update(objects=0, values=0, exact=0, max_abs_diff=0.0,
                           note="stored features belong to an older label image (object sizes differ)")
                return row
            image = np.transpose(raw[t], (2, 1, 0, 3)).astype(np.float32)
            names = list(table["Standard Object Features"])
            plain = [n for n in names if "neighborhood" not in n]
            local = sorted({n.split(" in ")[0] for n in names if n.endswith(" in neighborhood")})
            ours = {"Standard Object Features": standard_features(image, labels, plain, exclusive_max=False, backend=cpu)}
            ours["Standard Object Features"].update(neighbourhood_features(image, labels, local, margins, False))
            for plugin in ("2D Convex Hull Features", "3D Convex Hull Features"):
                if plugin in table:
                    ours[plugin] = hull_features(labels, tuple(table[plugin]))
            if "2D Skeleton Features" in table:
                ours["2D Skeleton Features"] = skeleton_features(labels, tuple(table["2D Skeleton Features"]))
            row["objects"] += int(labels.max())
            for plugin, features in ours.items():
                for name, values in features.items():
                    if name not in table[plugin]:
                        continue
                    reference = table[plugin][name][()][1:]
                    mine = values[1:]
                    if name == "RegionAxes":  # vigra's sign for near-isotropic objects (see tests)
                        mine, reference = np.abs(mine), np.abs(reference)
                    both_nan = np.isnan(mine) & np.isnan(reference)
                    equal = (mine == reference) | both_nan
                    row["values"] += reference.size
                    row["exact"] += int(equal.sum())
                    diff = np.where(both_nan, 0.0, np.abs(mine.astype(np.float64) - reference))
                    row["max_abs_diff"] = max(row["max_abs_diff"], float(np.nanmax(diff)) if diff.size else 0.0)
    return row


def cached_probabilities(path: Path, variant: str, stem: str) -> dict:
    """Run the project headless on its inputs; compare each object's probabilities with the cache."""
    from gpuheadless.cli import main

    row = {"objects": 0, "max_prob_diff": 0.0, "same_class": 0}
    with h5py.File(path, "r") as f:
        if "ObjectClassification/CachedProbabilities/0000" not in f or "ObjectClassification/ClassifierForests" not in f:
            return row  # without a classifier the cache is a leftover of an earlier one
        cached = {int(t): v[()] for t, v in f["ObjectClassification/CachedProbabilities/0000"].items()}
    flag, second = SECOND[variant]
    with tempfile.TemporaryDirectory() as out:
        here = os.getcwd()
        os.chdir(out)  # a table path stored in the project is relative to the working directory
        try:
            code = main(["--headless", f"--project={path}", f"--raw_data={DATA}/inputs/{stem}.h5/data",
                         f"{flag}={DATA}/inputs/{second.format(stem=stem)}", "--export_source=Object Identities",
                         "--export_object_probability_img", "--output_format=hdf5",
                         f"--output_filename_format={out}/{{result_type}}.h5"])
        finally:
            os.chdir(here)
        if code != 0:
            row["note"] = f"run failed ({code})"
            return row
        with h5py.File(f"{out}/Object Identities.h5", "r") as a, h5py.File(f"{out}/Object Probabilities.h5", "r") as b:
            ids, probabilities = a["exported_data"][()], b["exported_data"][()]
    if ids.ndim == 3:
        ids, probabilities = ids[None], probabilities[None]
    for t, reference in sorted(cached.items()):
        flat = ids[t, ..., 0].reshape(-1)
        _, first = np.unique(flat, return_index=True)
        ours = probabilities[t].reshape(-1, probabilities.shape[-1])[first[1:]]
        if len(ours) != len(reference) - 1:
            row["note"] = f"t={t}: {len(ours)} objects, the cache has {len(reference) - 1}"
            continue
        row["objects"] += len(ours)
        row["max_prob_diff"] = max(row["max_prob_diff"], float(np.abs(ours - reference[1:]).max()))
        row["same_class"] += int((ours.argmax(1) == reference[1:].argmax(1)).sum())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    rows = []
    for path in sorted((DATA / "projects").glob("ObjectClassification*.ilp")):
        stem, variant = path.stem[len("ObjectClassification"):].split("_")[:2]
        features = stored_features(path)
        probabilities = cached_probabilities(path, variant, stem)
        rows.append({"project": path.name, "features": features, "probabilities": probabilities})
    print("| project | objects | stored feature values | bit-identical | largest difference | objects with cached "
          "probabilities | largest probability difference | same class |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        f, p = row["features"], row["probabilities"]
        print(f"| {row['project']} | {f['objects'] or '-'} | {f['values'] or f['note']} | {f['exact'] if f['values'] else '-'} "
              f"| {f['max_abs_diff']:.3g} | {p['objects'] or '-'} | {p['max_prob_diff']:.3g} | {p['same_class']} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / "objects_parity.json", "w") as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
