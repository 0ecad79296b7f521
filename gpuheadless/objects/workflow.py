"""Headless Object Classification: objects, features, classes, images and the object table.

Per input lane and time point: the object ids (thresholded prediction maps, a binary
segmentation, or a label image), the selected object features, the object classifier's
probabilities and classes; then the selected image (``Object Predictions``, ``Object
Probabilities``, ``Object Identities``) through the same writers as Pixel Classification, and
the CSV table of ``--table_filename`` (spec/object-classification.md §5).

This version computes each time point whole (volumes larger than RAM are not supported yet), on
the CPU, with the Standard Object Features (not the convex-hull and skeleton plugins).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ..config import RunConfig
from ..errors import UsageError, UserError
from ..export import ExportTransform
from ..io import formats
from ..io.naming import format_known, replace_extension
from ..io.stacks import open_input
from ..io.writers import axistags_json, open_writer
from ..pipeline.block_runner import place
from ..pipeline.blocks import Block
from ..pipeline.lane import Lane, lane_axes
from .classifier import feature_matrix, object_probabilities, predicted_classes
from .features import NEIGHBOURHOOD_SUFFIX, neighbourhood_features, standard_features
from .hull import hull_features
from .pixel_stage import PIXEL_SOURCES, export_pixel_image, probabilities_for_objects
from .project import ObjectProject, read_object_project
from .table import write_csv_table, write_h5_table
from .threshold import object_ids, threshold

log = logging.getLogger(__name__)

SOURCES = ("Object Predictions", "Object Probabilities", "Blockwise Object Predictions",
           "Blockwise Object Probabilities", "Object Identities")
STANDARD_PLUGIN = "Standard Object Features"
DEFAULT_FEATURES = ("Count", "Coord<Minimum>", "Coord<Maximum>", "RegionCenter")
HULL_PLUGINS = ("2D Convex Hull Features", "3D Convex Hull Features")
SECOND_ROLE = {"prediction": "--prediction_maps", "binary": "--segmentation_image", "labels": "--label_image"}


@dataclass
class ObjectOptions:
    """The Object Classification inputs and table option of one run."""

    second_inputs: list[str] = field(default_factory=list)
    table_filename: str | None = None
    extra_sources: list[str] = field(default_factory=list)  # --export_object_*_img, --export_pixel_probability_img


def resolve_object_source(name: str | None, variant: str = "prediction") -> str:
    """ilastik's export name for ``--export_source`` (case-insensitive); the pixel sources only in the pixel variant."""
    valid = SOURCES + (tuple(PIXEL_SOURCES) if variant == "pixel" else ())
    if not name:
        return valid[0]
    for source in valid:
        if source.lower() == name.strip().lower():
            return source
    raise UsageError(f"Invalid option for --export_source: {name!r}. Valid options are: {[s.lower() for s in valid]}")


def run_object_batch(config: RunConfig, options: ObjectOptions) -> tuple[list[str], list[str]]:
    """Export every lane; returns (written files, failures)."""
    project = read_object_project(config.project)
    source = resolve_object_source(config.export.source if config.export.source != "Probabilities" else None,
                                   project.variant)
    if project.variant == "pixel":
        if options.second_inputs:
            raise UsageError("this project computes its pixel probabilities itself: give --raw_data only")
        options.second_inputs = [""] * len(config.inputs)
    elif len(options.second_inputs) != len(config.inputs):
        raise UsageError(f"give one {SECOND_ROLE[project.variant]} input per --raw_data input (got "
                         f"{len(options.second_inputs)} for {len(config.inputs)})")
    if "Pixel Probabilities" in options.extra_sources and project.variant != "pixel":
        raise UsageError("--export_pixel_probability_img: only the Pixel + Object Classification workflow has pixel "
                         "probabilities")
    unsupported = sorted(p for p in project.selected if p not in (STANDARD_PLUGIN,) + HULL_PLUGINS)
    if unsupported:
        raise UsageError(f"project file '{project.path}': the object features of {', '.join(unsupported)} are not "
                         "implemented yet (Standard Object Features and the convex-hull features are)")
    if project.forest is None and project.labels:
        project.forest = _train(config, project)
    written, failures = [], []
    with tempfile.TemporaryDirectory(prefix="gpuheadless-pixel-") as scratch:
        for raw_path, second_path in zip(config.inputs, options.second_inputs):
            try:
                if project.variant == "pixel":
                    second_path = probabilities_for_objects(config, raw_path, scratch)
                written += _run_lane(config, options, project, source, raw_path, second_path)
            except UserError as exc:
                failures.append(str(exc))
                log.error("%s", exc)
    return written, failures


def _train(config: RunConfig, project: ObjectProject):
    """A new object classifier from the objects labelled in the project (it stores no forest)."""
    from ..forest.train import train_forest  # noqa: PLC0415

    rows, targets = [], []
    with tempfile.TemporaryDirectory(prefix="gpuheadless-pixel-") as scratch:
        for lane_index, (raw_path, second_path) in enumerate(project.lanes):
            wanted = {t: v for (lane, t), v in project.labels.items() if lane == lane_index}
            if wanted:
                lane_rows, lane_targets = _training_rows(config, project, raw_path, second_path, wanted, scratch)
                rows.append(lane_rows)
                targets.append(lane_targets)
    if not rows:
        raise UserError(f"project file '{project.path}': no labelled objects to train a classifier")
    x, y = np.concatenate(rows), np.concatenate(targets)
    log.info("Training an object classifier: 100 trees on %d labelled objects", len(y))
    return train_forest(x, y, n_trees=100, threads=max(config.threads, 1), seed=config.seed)


def _training_rows(config, project: ObjectProject, raw_path: str, second_path: str, wanted: dict, scratch: str):
    """(feature rows, classes) of the labelled objects of one training lane."""
    rows, targets = [], []
    try:
        if project.variant == "pixel":
            second_path = probabilities_for_objects(config, raw_path, scratch)
        raw, second = _open(config, raw_path, project), _open(config, second_path, project)
    except UserError as exc:
        raise UserError(f"project file '{project.path}': cannot read the training data to train the object "
                        f"classifier: {exc}") from None
    try:
        for t, classes in sorted(wanted.items()):
            _, _, features = _time_point(project, raw, second, t, classify=False)
            matrix = feature_matrix(features, project.selected)
            ids = np.nonzero(classes[: matrix.shape[0]])[0]
            rows.append(matrix[ids])
            targets.append(classes[ids].astype(np.uint32))
    finally:
        raw.source.close()
        second.source.close()
    return np.concatenate(rows), np.concatenate(targets)


def _open(config: RunConfig, path: str, project: ObjectProject) -> Lane:
    source = open_input(path, config.cwd, config.stack_along)
    axes = config.input_axes.split(",")[0] if config.input_axes else None
    return Lane(source, lane_axes(source, axes, None, True))


def _run_lane(config, options, project: ObjectProject, source: str, raw_path: str, second_path: str) -> list[str]:
    raw = _open(config, raw_path, project)
    second = _open(config, second_path, project)
    try:
        if second.shape[:4] != raw.shape[:4]:
            raise UserError(f"'{second_path}' has shape {second.shape[:4]} (tzyx), the raw data '{raw_path}' {raw.shape[:4]}")
        if project.variant in ("prediction", "pixel") and second.n_channels <= max(project.threshold.channel, project.threshold.core_channel):
            raise UserError(f"prediction maps '{second_path}' have {second.n_channels} channel(s); the project "
                            f"thresholds channel {max(project.threshold.channel, project.threshold.core_channel)}")
        results = [_time_point(project, raw, second, t) for t in range(raw.shape[0])]
        if sum(len(r[1]) - 1 for r in results) == 0 and project.variant in ("binary", "labels"):
            raise UserError(f"'{second_path}': the segmentation has no object")
        sources = [source] + [s for s in options.extra_sources if s != source]
        outputs = [_export_pixel_image(config, project, s, raw_path) if s in PIXEL_SOURCES
                   else _write_image(config, project, s, raw, results) for s in sources]
        table = _table_path(config, options, project, raw)
        if table and table[1] == "h5":
            outputs.append(write_h5_table(table[0], project, results, raw, project.table_settings or {}))
        elif table:
            outputs.append(write_csv_table(table[0], project, results))
        return outputs
    finally:
        raw.source.close()
        second.source.close()


def _time_point(project: ObjectProject, raw: Lane, second: Lane, t: int, classify: bool = True):
    """(ids (Z, Y, X), probabilities (n+1, K), features {plugin: {name: table}}) of time point t."""
    full = (slice(None), slice(None), slice(None))
    image = raw.read(t, full)
    if project.variant in ("prediction", "pixel"):
        ids = object_ids(threshold(second.read(t, full), project.threshold))
    elif project.variant == "binary":
        ids = object_ids(second.read(t, full)[..., 0])
    else:
        ids = _relabel_consecutive(second.read(t, full)[..., 0])
    if int(ids.max()) > np.iinfo(np.uint32).max:
        raise UserError("more objects than a uint32 label image can hold")
    image_xyzc = np.ascontiguousarray(np.transpose(image, (2, 1, 0, 3)))
    ids_xyz = np.ascontiguousarray(np.transpose(ids, (2, 1, 0)))
    names = project.selected.get(STANDARD_PLUGIN, [])
    plain = [n for n in names if not n.endswith(NEIGHBOURHOOD_SUFFIX)]
    local = [n[: -len(NEIGHBOURHOOD_SUFFIX)] for n in names if n.endswith(NEIGHBOURHOOD_SUFFIX)]
    # ilastik 1.4 computes Coord<Maximum> exclusive (max + 1), whatever version wrote the project.
    computed = standard_features(image_xyzc, ids_xyz, list(plain) + list(DEFAULT_FEATURES), True, np.float64)
    defaults = {n: computed[n] for n in DEFAULT_FEATURES}  # float64, as vigra returns them
    computed = {n: v.astype(np.float32) for n, v in computed.items()}  # plugin features are float32
    if local:
        reach = np.max([project.margins.get(n + NEIGHBOURHOOD_SUFFIX, [0]) for n in local], axis=0)
        computed.update(neighbourhood_features(image_xyzc, ids_xyz, local, reach, True))
    features = {STANDARD_PLUGIN: {n: computed[n] for n in names}, "Default features": defaults}
    for plugin in HULL_PLUGINS:
        if project.selected.get(plugin):
            features[plugin] = hull_features(ids_xyz, project.selected[plugin])
    if not classify:
        return ids, None, features
    matrix = feature_matrix(features, project.selected)
    probabilities = object_probabilities(project.forest, matrix, project.n_classes)
    return ids, probabilities, features


def _relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Label-image variant: ids 1..n in raster order of first occurrence, 0 kept."""
    values, first, inverse = np.unique(labels.reshape(-1), return_index=True, return_inverse=True)
    rank = np.empty(len(values), dtype=np.uint32)
    order = np.argsort(first, kind="stable")
    nonzero = values[order] != 0
    rank[order[nonzero]] = np.arange(1, int(nonzero.sum()) + 1, dtype=np.uint32)
    rank[values == 0] = 0
    return rank[inverse].reshape(labels.shape)


def _image(source: str, ids: np.ndarray, probabilities: np.ndarray, classified: bool) -> np.ndarray:
    """The export source of one time point as (Z, Y, X, C)."""
    if source == "Object Identities":
        return ids[..., None].astype(np.uint32)
    if source.endswith("Predictions"):
        return predicted_classes(probabilities, classified).astype(np.uint8)[ids][..., None]
    return probabilities[ids]


def _write_image(config: RunConfig, project: ObjectProject, source: str, raw: Lane, results) -> str:
    output_format = config.export.output_format or project.export.get("output_format") or "compressed hdf5"
    formats.check_supported(output_format)
    channels = project.n_classes if source.endswith("Probabilities") else 1
    dtype = np.dtype(np.uint32 if source == "Object Identities" else np.uint8 if source.endswith("Predictions") else np.float32)
    out_axes = raw.axes if "c" in raw.axes else raw.axes + "c"
    extent = dict(zip("tzyxc", raw.shape[:4] + (channels,)))
    out_shape = tuple(extent[a] for a in out_axes)
    formats.check_export_fits(output_format, out_axes, out_shape)
    values = {"dataset_dir": raw.source.dataset_dir, "nickname": raw.source.nickname.replace("*", ""), "result_type": source}
    path = format_known(_filename_pattern(config, project), values)
    path = replace_extension(path, formats.extension(output_format))
    internal = config.export.output_internal_path or project.export.get("output_internal_path") or "exported_data"
    attrs = {"axistags": axistags_json(out_axes), "display_mode": "grayscale"}
    if dtype == np.float32:
        attrs["drange"] = np.array([0.0, 1.0], dtype=np.float32)
    writer = open_writer(output_format, path, internal, out_shape, dtype, out_axes, attrs)
    transform = ExportTransform(dtype, dtype, None)
    region = {a: (0, extent[a]) for a in "tzyxc"}
    try:
        for t, (ids, probabilities, _) in enumerate(results):
            block = Block(t, (0, 0, 0), ids.shape)
            where, data = place(block, _image(source, ids, probabilities, project.forest is not None), transform, region,
                                out_axes)
            writer.write(where, data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    log.info("Exported %s of %s to %s", source, raw.source.display, path)
    return path


def _filename_pattern(config: RunConfig, project: ObjectProject) -> str:
    """The output file name pattern: the command line's (relative to the working directory), else the project's
    (relative to the project), else ``{dataset_dir}/{nickname}_{result_type}``."""
    if config.export.output_filename_format is not None:
        pattern, base = config.export.output_filename_format, config.cwd
    else:
        pattern = project.export.get("output_filename_format") or "{dataset_dir}/{nickname}_{result_type}"
        base = str(project.path.parent)
    pattern = os.path.expanduser(pattern)
    return pattern if os.path.isabs(pattern) or pattern.startswith("{dataset_dir}") else os.path.join(base, pattern)


def _export_pixel_image(config: RunConfig, project: ObjectProject, source: str, raw_path: str) -> str:
    """Pixel Probabilities or Simple Segmentation of the pixel variant, through the Pixel Classification export."""
    pattern = _filename_pattern(config, project)
    if config.export.output_format is None and project.export.get("output_format"):
        config = dataclasses.replace(config, export=dataclasses.replace(
            config.export, output_format=project.export["output_format"]))
    return export_pixel_image(config, source, raw_path, pattern)


def _table_path(config: RunConfig, options: ObjectOptions, project: ObjectProject, raw: Lane) -> tuple[str, str] | None:
    """Where the object table goes and its type (``csv`` or ``h5``), or None for no table.

    ``--table_filename`` wins (its extension picks the type), then the project's table settings.
    A CSV goes to ``<base>_table.<ext>``; an HDF5 table to the path itself (spec §5.2-§5.3).
    """
    settings = project.table_settings or {}
    pattern = options.table_filename or settings.get("file path")
    if not pattern:
        return None
    path = format_known(os.path.expanduser(pattern), {"dataset_dir": raw.source.dataset_dir,
                                                      "nickname": raw.source.nickname.replace("*", "")})
    if not os.path.isabs(path):
        path = os.path.join(config.cwd, path)
    base, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        raise UsageError(f"--table_filename {pattern!r}: needs an extension, e.g. objects.csv")
    kind = ("h5" if ext.lower() in ("h5", "hdf5") else "csv") if options.table_filename else settings.get("file type", "csv")
    return (path, "h5") if kind == "h5" else (f"{base}_table.{ext}", "csv")
