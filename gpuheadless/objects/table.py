"""The object table (spec/object-classification.md §5.2-§5.3): CSV, and the HDF5 variant."""
from __future__ import annotations

import logging
import os

import numpy as np

from ..pipeline.lane import Lane
from ..io import staging
from ..io.guarded_file import hdf5_output
from ..io.ilastik_layout import axistags_json
from .classifier import predicted_classes
from .features import NEIGHBOURHOOD_SUFFIX
from ..project.objects import ObjectProject

log = logging.getLogger(__name__)

DEFAULT_DISPLAY = {"Count": "Size in pixels", "Coord<Minimum>": "Bounding Box Minimum",
                   "Coord<Maximum>": "Bounding Box Maximum", "RegionCenter": "Center of the object", "original_oid": "original_oid"}


def columns(project: ObjectProject, features: dict) -> list[tuple[str, str, str, int]]:
    """(display column name, plugin, feature, component) in the table's order (spec §5.2)."""
    wanted = set(project.table_features or [n for names in project.selected.values() for n in names])
    columns, seen = [], set()
    plugins = sorted(p for p in features if p != "Default features") + ["Default features"]
    for plugin in plugins:
        names = sorted(features[plugin])
        ordered = [n for n in names if not n.endswith(NEIGHBOURHOOD_SUFFIX)] + [n for n in names if n.endswith(NEIGHBOURHOOD_SUFFIX)]
        for name in ordered:
            if plugin != "Default features" and name not in wanted:
                continue
            if plugin == "Default features":
                display = DEFAULT_DISPLAY[name]
            elif name.endswith(NEIGHBOURHOOD_SUFFIX):
                base = name[: -len(NEIGHBOURHOOD_SUFFIX)]
                display = project.display_names.get(base, base) + NEIGHBOURHOOD_SUFFIX
            else:
                display = project.display_names.get(name, name)
            if display in seen:
                continue
            seen.add(display)
            width = features[plugin][name].shape[1]
            for k in range(width):
                columns.append((display if width == 1 else f"{display}_{k}", plugin, name, k))
    return columns


def _number(value: np.generic) -> str:
    """``str()`` of a NumPy scalar as ilastik's NumPy 1.x writes it: float32 from 1e6 to 1e16 in
    positional notation (NumPy 2 switched those to scientific)."""
    if isinstance(value, np.float32) and np.isfinite(value) and 1e6 <= abs(float(value)) < 1e16:
        return np.format_float_positional(value, unique=True, trim="0")
    return str(value)


def write_csv_table(path: str, project: ObjectProject, results) -> str:
    """The CSV table of ``--table_filename``: one row per object of every time point, values
    printed as ilastik prints them."""
    header, cells, where = table_rows(project, results)
    lines = [",".join(header)]
    lines += [",".join(_number(column[row]) for column in cells) for row in range(len(where))]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = staging.temporary_file(path)
    try:
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
    except BaseException:
        staging.remove(tmp)
        raise
    staging.commit(tmp, path)
    log.info("Wrote the object table %s (%d objects)", path, len(where))
    return path


def table_rows(project: ObjectProject, results) -> tuple[list[str], list[list], list[tuple[int, int]]]:
    """The object table as values: the one source of the CSV, HDF5 and DataFrame tables.

    Parameters
    ----------
    project : ObjectProject
    results : list of (ObjectIds, probabilities, features)
        One entry per time point (see :func:`~gpuheadless.objects.workflow.lane_results`).

    Returns
    -------
    header : list of str
        ``object_id``, ``timestep``, ``labelimage_oid``, ``User Label``, ``Predicted Class``,
        ``Probability of <class>``, then the feature columns (:func:`columns`).
    cells : list of lists
        Per column, one value per object: ``numpy.int64`` ids, ``str`` labels and classes,
        ``numpy.float32`` probabilities, features in their computed type.
    where : list of (t, object id)
        Per row, the time point and the object's id in that time point's Object Identities.
    """
    names = project.label_names or ["Label 1"]
    table_columns = columns(project, results[0][2]) if results else []
    header = ["object_id", "timestep", "labelimage_oid", "User Label", "Predicted Class"]
    header += [f"Probability of {n}" for n in names] + [c[0] for c in table_columns]
    cells: list[list] = [[] for _ in header]
    where = []
    row_id = 0
    for t, (ids, probabilities, features) in enumerate(results):
        classes = predicted_classes(probabilities, project.forest is not None)
        for oid in range(1, probabilities.shape[0]):
            row = [np.int64(row_id), np.int64(t), np.int64(oid), "0", names[classes[oid] - 1] if classes[oid] else "0"]
            row += [np.float32(p) for p in probabilities[oid]]
            row += [features[plugin][name][oid, k] for _, plugin, name, k in table_columns]
            for column, value in zip(cells, row):
                column.append(value)
            where.append((t, oid))
            row_id += 1
    return header, cells, where


def write_h5_table(path: str, project: ObjectProject, results, raw: Lane, settings: dict) -> str:
    """The HDF5 table: a structured ``table`` dataset, and per object its mask (``labeling``) and
    raw cut-out over its bounding box widened by ``margin`` (or the whole raw image once with
    ``include raw``)."""

    header, cells, where = table_rows(project, results)
    fields, data = [], []
    for name, values in zip(header, cells):
        if values and isinstance(values[0], str):
            encoded = [v.encode() for v in values]
            fields.append((name, f"S{max(len(v) for v in encoded) or 1}"))
            data.append(encoded)
        else:
            fields.append((name, np.asarray(values).dtype if values else np.float32))
            data.append(values)
    table = np.zeros(len(where), dtype=fields)
    for (name, _), values in zip(fields, data):
        table[name] = values
    margin = int(settings.get("margin", 0) or 0)
    compression = settings.get("compression") or {}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = staging.temporary_file(path)
    try:
        with hdf5_output(tmp) as f:
            f.create_dataset("table", data=table, **{k: v for k, v in compression.items() if k in ("compression", "compression_opts")})
            spatial = [a for a in "zyx" if raw.shape["tzyx".index(a)] > 1]
            if settings.get("include raw"):
                _write_whole_raw(f, raw)
            for i, (t, oid) in enumerate(where):
                ids = results[t][0]
                region = tuple(slice(max(int(a) - margin, 0), min(int(b) + margin, n))
                               for a, b, n in zip(ids.boxes[oid, 0], ids.boxes[oid, 1], ids.shape))
                mask = np.squeeze((ids.read(region) == oid).astype(np.uint8))
                labeling = f.create_dataset(f"images/{i}/labeling", data=mask)
                labeling.attrs["type"] = "labeling"
                labeling.attrs["axistags"] = axistags_json("".join(spatial))
                if not settings.get("include raw"):
                    cut = np.squeeze(raw.read(t, region))
                    f.create_dataset(f"images/{i}/raw", data=cut).attrs["type"] = "image"
    except BaseException:
        staging.remove(tmp)
        raise
    staging.commit(tmp, path)
    log.info("Wrote the object table %s (%d objects)", path, len(where))
    return path


def _write_whole_raw(f, raw: Lane, slab_bytes: float = 64 * 2**20) -> None:
    """``images/raw``: the whole raw image (singleton axes dropped), written slab by slab."""
    from .labeling import iter_slabs, slab_thickness  # noqa: PLC0415

    full = tuple(raw.shape[:4]) + (raw.n_channels,)
    keep = [i for i, n in enumerate(full) if n > 1]
    dataset = f.create_dataset("images/raw", shape=tuple(full[i] for i in keep), dtype=np.float32)
    dataset.attrs["type"] = "image"
    spatial = tuple(raw.shape[1:4])
    for t in range(full[0]):
        for region in iter_slabs(spatial, slab_thickness(spatial, 8.0 * full[4], slab_bytes)):
            block = raw.read(t, region)[None]
            index = (slice(t, t + 1),) + tuple(region) + (slice(None),)
            dataset[tuple(index[i] for i in keep)] = block.reshape([block.shape[i] for i in keep])
