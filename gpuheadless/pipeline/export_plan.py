"""Everything about one input's export that is decided before any pixel is computed.

``plan_lane`` opens the input (headers only), checks it against the project, and fixes the
cutout, the output axes, shape, type, format and file name, refusing impossible combinations.
``run_batch`` plans every input first, so a bad option stops the run before anything is
computed or written.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExportOptions, RunConfig
from ..errors import UsageError, UserError
from ..export import ALL_STAGES, ExportTransform, make_transform, output_axes, parse_cutout, source_channels, split_source
from ..features.plan import FeaturePlan, check_image_size, make_plan
from ..forest.model import Forest
from ..io import formats
from ..io.naming import describe_placeholders, format_known, placeholder_names, replace_extension, roi_values
from ..io.readers import ImageSource
from ..io.stacks import expand_members, open_input
from ..io.ilastik_layout import axistags_json
from ..io.writers import EXPORT_HINTS
from ..project.ilp import Project
from .lane import Lane, check_against_training, lane_axes

DEFAULT_FILENAME_FORMAT = "{dataset_dir}/{nickname}_{result_type}"
DEFAULT_FORMAT = "compressed hdf5"
DEFAULT_INTERNAL_PATH = "exported_data"
_LANE_KEYS = {"dataset_dir", "nickname", "result_type"}
_ROI_KEYS = {"roi"} | {f"{a}_{end}" for a in "tzyxc" for end in ("start", "stop")}


@dataclass
class LanePlan:
    """One input's export, fully decided.

    ``region`` maps each of ``tzyxc`` to its (start, stop) in the export source; ``out_axes`` and
    ``out_shape`` describe the written array.
    """

    path: str
    mask_path: str | None
    lane_axes: str
    plan: FeaturePlan
    region: dict[str, tuple[int, int]]
    out_axes: str
    out_shape: tuple[int, ...]
    transform: ExportTransform
    output_format: str
    final_path: str
    internal_path: str
    attrs: dict[str, Any]
    slice_offset: int
    stage_plans: tuple[FeaturePlan, ...] = ()  # every stage's, up to the exported one (``plan``)


@dataclass(frozen=True)
class OutputTarget:
    """One file (or folder, or sequence pattern) a lane will write.

    ``internal`` is the dataset inside an HDF5/N5 container whose writer keeps the file's other
    datasets; ``None`` where the writer replaces the whole file.
    """

    owner: str
    path: str
    internal: str | None = None


def output_target(owner: str, output_format: str, path: str, internal_path: str) -> OutputTarget:
    """The target of an export in ``output_format`` (containers keep their other datasets)."""
    internal = internal_path.strip("/") if output_format in formats.CONTAINER_FORMATS else None
    return OutputTarget(owner, path, internal)


def check_output_collisions(targets: list[OutputTarget], inputs: list[str], cwd: str, parallel: bool = False) -> None:
    """Refuse, before anything is computed, outputs that would overwrite each other or an input.

    Two targets collide when they name the same file and either replaces the whole file or both
    name the same dataset. Different datasets of one HDF5/N5 file are kept one after the other
    (each writer copies the file as it is), but not when lanes run at once (``parallel``, under
    ``--scheduler``): the later rename would drop the other lane's dataset.

    Raises
    ------
    UsageError
        Naming both owners and the file.
    """
    seen: dict[str, OutputTarget] = {}
    for target in targets:
        key = os.path.realpath(target.path)
        first = seen.setdefault(key, target)
        if first is not target:
            _check_pair(first, target, parallel)
    for display in inputs:
        for external, internal in _input_files(display, cwd):
            target = seen.get(os.path.realpath(external))
            if target is not None and (target.internal is None or internal is None
                                       or target.internal == internal.strip("/")):
                raise UsageError(f"{target.owner} would overwrite input '{display}' ('{target.path}'); "
                                 "choose another --output_filename_format")


def _check_pair(first: OutputTarget, second: OutputTarget, parallel: bool) -> None:
    where = f"'{first.path}'"
    if first.internal is not None and second.internal is not None and first.internal != second.internal:
        if not parallel:
            return
        raise UsageError(f"{first.owner} and {second.owner} both write {where} (datasets '{first.internal}', "
                         f"'{second.internal}'), at the same time under --scheduler: one would lose the other's "
                         "dataset; give each lane its own file")
    if first.internal is not None and first.internal == second.internal:
        where += f" dataset '{first.internal}'"
    raise UsageError(f"{first.owner} and {second.owner} both write {where}; give each its own output name "
                     "(e.g. with {nickname} in --output_filename_format)")


def _input_files(display: str, cwd: str) -> list[tuple[str, str | None]]:
    """The (file, dataset) members of an input on this machine; none for a URL or an unreadable pattern."""
    if "://" in display:
        return []
    try:
        return expand_members(display, cwd)
    except UserError:  # reported when the lane is opened
        return []


def effective_format(config: RunConfig, project: Project) -> str:
    """``--output_format``, else the project's stored format, else ilastik's default; checked."""
    output_format = config.export.output_format or project.export.get("output_format") or DEFAULT_FORMAT
    try:
        formats.check_supported(output_format)
    except UsageError as exc:
        if config.export.output_format:
            raise
        # the project's stored setting, not a flag the user gave: say so
        raise UsageError(f"project file '{project.path}': its stored export format "
                         f"{str(exc).removeprefix('--output_format ')}; --output_format overrides it") from None
    return output_format


def check_filename_options(config: RunConfig, project: Project, output_format: str) -> None:
    """Placeholders of the file name and internal path: known ones only, ``{slice_index}`` iff a sequence."""
    pattern = _filename_pattern(config, project)
    sequence = formats.is_sequence(output_format)
    known = _LANE_KEYS | _ROI_KEYS | ({"slice_index"} if sequence else set())
    for option, text in (("--output_filename_format", pattern), ("--output_internal_path", _internal_pattern(config, project))):
        if not getattr(config.export, option[2:]):  # the project's stored setting, not a flag the user gave
            option = f"project file '{project.path}': its stored {option[2:]}"
        unknown = [name for name in placeholder_names(text) if name not in known]
        if unknown:
            hint = " ({slice_index} is only for sequence formats)" if "slice_index" in unknown else ""
            raise UsageError(
                f"{option} {text!r}: unknown placeholder {{{unknown[0]}}}{hint}; known: {describe_placeholders(sequence)}"
            )
    if sequence and "slice_index" not in placeholder_names(pattern):
        raise UsageError(
            f"--output_filename_format {pattern!r}: the {output_format!r} format writes one file per slice, so the "
            "pattern must contain {slice_index}"
        )


def _filename_pattern(config: RunConfig, project: Project) -> str:
    return config.export.output_filename_format or project.export.get("output_filename_format") or DEFAULT_FILENAME_FORMAT


def _pattern_folder(config: RunConfig, project: Project) -> str:
    """Where a relative file name pattern starts: the working directory for the command line's
    (or ilastik's default), the project's folder for the project's stored one."""
    stored = config.export.output_filename_format is None and "output_filename_format" in project.export
    return str(project.path.parent) if stored else config.cwd


def rooted_filename_pattern(config: RunConfig, project: Project) -> str:
    """The file name pattern (see :func:`output_location`) with a relative one joined to its
    folder; placeholders are left in."""
    pattern = os.path.expanduser(_filename_pattern(config, project))
    if os.path.isabs(pattern) or pattern.startswith("{dataset_dir}"):
        return pattern
    return os.path.join(_pattern_folder(config, project), pattern)


def _internal_pattern(config: RunConfig, project: Project) -> str:
    return config.export.output_internal_path or project.export.get("output_internal_path") or DEFAULT_INTERNAL_PATH


def expected_channels(project: Project, forest: Forest | None, z_extent: int) -> int | None:
    """Channel count the project was trained on, from its forest or its training lane."""
    if forest is not None:
        per_channel = make_plan(project.selection, 1, z_extent).n_features
        if per_channel and forest.n_features % per_channel == 0:
            return forest.n_features // per_channel
    if project.lanes and project.lanes[-1].shape:
        lane = project.lanes[-1]
        if "c" in lane.axes and len(lane.shape) == len(lane.axes):
            return lane.shape[lane.axes.index("c")]
        return 1
    return None


def open_lane(config: RunConfig, project: Project, path: str) -> Lane:
    """The input as a lane, with the axes ilastik would read it with."""
    image = open_input(path, config.cwd, config.stack_along)
    return Lane(image, lane_axes(image, config.input_axes, project, config.ignore_training_axistags))


def open_mask(path: str, cwd: str, stack_along: str) -> Lane:
    """A prediction mask as a lane, with the file's own axes (``cwd`` and ``stack_along`` as the run's)."""
    image = open_input(path, cwd, stack_along)
    return Lane(image, lane_axes(image, None, None, True))


def stage_plans(project: Project, lane: Lane) -> list[FeaturePlan]:
    """The feature plan of each stage: the first on the raw data's channels, each later one on
    the raw channels plus the previous stage's classes."""
    plans = []
    for k, stage in enumerate(project.stages):
        channels = lane.n_channels + (project.stages[k - 1].n_classes if k else 0)
        plans.append(make_plan(stage.selection, channels, lane.shape[1]))
    return plans


def exported_stage(project: Project, source: str) -> int:
    """The 0-based stage ``source`` comes from (the last for Pixel Classification's names and all stages)."""
    stage = split_source(source)[1]
    return len(project.stages) - 1 if stage is None else stage


def plan_lane(
    config: RunConfig, project: Project, forest: Forest | None, source: str, output_format: str, path: str, mask_path: str | None
) -> LanePlan:
    """Decide the export of one input; raises UsageError for options that cannot work on it.

    ``forest`` is the (first) stage's classifier; later Autocontext stages bring their own.
    """
    lane = open_lane(config, project, path)
    try:
        check_against_training(lane, project, expected_channels(project, forest, lane.shape[1]))
        kind = split_source(source)[0]
        last = exported_stage(project, source)
        plans = stage_plans(project, lane)[:last + 1]
        # the stages whose probabilities are computed, and those whose features are
        classified = [] if kind in ("Labels", "Input") else list(range(last if kind == "Features" else last + 1))
        featured = classified + ([last] if kind == "Features" else [])
        for k in featured:
            stage = project.stages[k]
            where = f" (stage {k + 1})" if len(project.stages) > 1 else ""
            if stage.selection.is_empty:
                raise UserError(f"project file '{project.path}': no features are selected{where}")
            check_image_size(plans[k], lane.shape[1:4], path)
            stage_forest = forest if k == 0 else stage.forest
            if k in classified and stage_forest is not None and stage_forest.n_features != plans[k].n_features:
                raise UserError(
                    f"input '{path}': the project's classifier{where} expects {stage_forest.n_features} features, "
                    f"this input gives {plans[k].n_features}"
                )
        if mask_path:
            mask = open_mask(mask_path, config.cwd, config.stack_along)
            try:
                if mask.shape[:4] != lane.shape[:4]:
                    raise UserError(f"prediction mask '{mask_path}' has shape {mask.shape[:4]} (tzyx), the image {lane.shape[:4]}")
            finally:
                mask.source.close()
        return _plan_export(config, project, source, output_format, lane, plans, path, mask_path)
    finally:
        lane.source.close()


def _plan_export(config, project, source, output_format, lane: Lane, plans: list[FeaturePlan], path, mask_path) -> LanePlan:
    opts = given_or_stored(config.export, project.export)
    plan = plans[-1]
    kind = split_source(source)[0]
    stages = project.stages[:len(plans)]
    classes = sum(s.n_classes for s in stages) if kind == ALL_STAGES else stages[-1].n_classes
    n_channels = source_channels(source, classes, plan.n_features, lane.n_channels)
    internal = lane.internal_axes
    extent = dict(zip("tzyxc", lane.shape[:4] + (n_channels,)))
    start, stop = cutout_bounds(opts.cutout_subregion, internal, extent)
    transform = make_transform(
        source,
        opts.export_dtype,
        opts.pipeline_result_drange,
        opts.export_drange,
        lane.source.dtype if kind == "Input" else None,
    )
    region = {a: (start[a], stop[a]) for a in "tzyxc"}
    sizes = {a: region[a][1] - region[a][0] for a in "tzyxc"}
    out_axes = output_axes(opts.output_axis_order, lane.axes, sizes)
    out_shape = tuple(sizes.get(a, 1) for a in out_axes)
    formats.check_export_fits(output_format, out_axes, out_shape)
    final_path, internal_path = output_location(config, project, lane, source, output_format, internal, start, stop)
    step = formats.step_axis(out_axes, out_shape)
    slice_offset = region[out_axes[step]][0] if step is not None and out_axes[step] in region else 0
    return LanePlan(
        path=path, mask_path=mask_path, lane_axes=lane.axes, plan=plan, region=region, out_axes=out_axes, out_shape=out_shape,
        transform=transform, output_format=output_format, final_path=final_path, internal_path=internal_path,
        attrs=_dataset_attrs(lane, out_axes, transform, kind, {a: region[a][0] for a in "tzyxc"},
                             _stacked_drange(lane) if kind == "Features" and len(plans) > 1 else None),
        slice_offset=slice_offset, stage_plans=tuple(plans),
    )


def dataset_dir(source: ImageSource, project_path: str | os.PathLike[str]) -> str:
    """``{dataset_dir}`` of an input: its folder, or for an http(s) input the project's folder (as ilastik)."""
    return source.dataset_dir or str(Path(project_path).absolute().parent)


def cutout_bounds(cutout, internal: str, extent: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Start/stop per ``tzyxc`` axis from ``--cutout_subregion`` in the internal axis order."""
    start = {a: 0 for a in "tzyxc"}
    stop = dict(extent)
    if cutout is None:
        return start, stop
    if isinstance(cutout, str):
        cutout = parse_cutout(cutout)
    lo, hi = cutout
    if len(lo) != len(internal):
        raise UsageError(
            f"--cutout_subregion has {len(lo)} entries per corner but the export's axes are {','.join(internal)} "
            f"({len(internal)} entries, in that order)"
        )
    for axis, a, b in zip(internal, lo, hi):
        a = 0 if a is None else max(0, int(a))
        b = extent[axis] if b in (None, 0) else min(int(b), extent[axis])
        if a >= b:
            raise UsageError(f"--cutout_subregion: empty range {a}:{b} along {axis}")
        start[axis], stop[axis] = a, b
    return start, stop


def given_or_stored(given: ExportOptions, stored: dict[str, Any]) -> ExportOptions:
    """The export options of a run: each one given on the command line, else the project's stored one."""
    return dataclasses.replace(given, **{f.name: getattr(given, f.name) or stored.get(f.name)
                                         for f in dataclasses.fields(given) if f.name != "source"})


def output_location(config, project, lane: Lane, source, output_format, internal, start, stop) -> tuple[str, str]:
    """The file and the internal path an export of ``source`` of ``lane`` goes to, every workflow's:
    ``--output_filename_format`` (relative to the working directory), else the project's (relative
    to its folder), else ilastik's default; placeholders filled in, the format's extension set."""
    pattern = _filename_pattern(config, project)
    lane_values = {"dataset_dir": dataset_dir(lane.source, project.path), "nickname": lane.source.nickname.replace("*", ""),
                   "result_type": source}
    roi = roi_values(internal, tuple(start[a] for a in internal), tuple(stop[a] for a in internal))
    try:
        path = format_known(os.path.expanduser(pattern), lane_values, strict=True)
    except ValueError as exc:
        raise UsageError(f"--output_filename_format {pattern!r}: {exc}") from None
    path = format_known(path, roi)
    if not os.path.isabs(path):
        path = os.path.join(_pattern_folder(config, project), path)
    path = replace_extension(path, formats.extension(output_format))
    internal_pattern = _internal_pattern(config, project)
    try:
        internal_path = format_known(format_known(internal_pattern, lane_values, strict=True), roi, strict=True)
    except ValueError as exc:
        raise UsageError(f"--output_internal_path {internal_pattern!r}: {exc}") from None
    return path, internal_path


_LABEL_SOURCES = ("Simple Segmentation", "Labels")  # ilastik marks these as label images (nearest-neighbour pyramids)


def _stacked_drange(lane: Lane) -> tuple[float, float]:
    """The value range ilastik gives a later Autocontext stage's input, so its features: the
    previous stage's probability range [0, 1] converted to the raw data's type (its stacker
    keeps the metadata of the last image stacked)."""
    from .stages import to_input_type  # noqa: PLC0415 - stages imports the feature code this module need not

    return tuple(to_input_type(np, np.array([0.0, 1.0], dtype=np.float32), lane.source.dtype).tolist())


def _dataset_attrs(lane: Lane, out_axes: str, transform: ExportTransform, source: str,
                   offset: dict[str, int], drange: tuple | None = None) -> dict[str, Any]:
    resolutions = export_resolutions(lane, out_axes)
    # ilastik's label array says display "default" and range 0..255 whatever the raw data's type
    display_mode = "default" if source in ("Labels", "Input") else "grayscale"
    own_axes = lane.axes == lane.source.axes
    hints = {"labels": source in _LABEL_SOURCES, "offset": offset,
             "translation": lane.source.translation if own_axes else {}, "scale_key": lane.source.scale_key,
             "scales": lane.source.scales if own_axes else {}}
    attrs: dict[str, Any] = {"axistags": axistags_json(out_axes, resolutions), "display_mode": display_mode,
                             EXPORT_HINTS: hints}
    drange = transform.drange or drange
    if drange is None:
        if source == "Labels":
            drange = (0, 255)
        elif source in ("Probabilities", "Uncertainty", ALL_STAGES):
            drange = (0.0, 1.0)
        elif source == "Simple Segmentation":
            drange = (0, 1)
        elif lane.source.drange is not None:
            drange = lane.source.drange
        elif lane.source.dtype == np.uint8:
            drange = (0, 255)
        drange = None if drange is None else tuple(np.array(drange).astype(transform.dtype).tolist())
    if drange is not None:
        attrs["drange"] = np.array(drange, dtype=transform.dtype)
    if lane.source.axis_units and own_axes:
        units = lane.source.axis_units  # in the input's order, empty units included, as ilastik passes them on
        attrs["axis_units"] = json.dumps({a: u for a, u in units.items() if a in out_axes})
    return attrs


def export_resolutions(lane: Lane, out_axes: str) -> dict[str, float]:
    """The pixel size per output axis that ilastik's export records, 0 for none.

    ilastik's pipeline drops the input's axes of extent 1 other than ``c`` and adds them back
    without a pixel size, so only axes longer than 1 keep theirs; the channel axis keeps the
    input's channel pixel size (an OME-Zarr's ``c`` scale) although it now counts classes. Axes
    given by ``--input_axes`` other than the file's own replace its metadata (no pixel sizes).
    """
    source = lane.source
    if lane.axes != source.axes:
        return dict.fromkeys(out_axes, 0)
    extent = dict(zip(source.axes, source.shape))
    return {a: source.resolutions.get(a, 0) if a == "c" or extent.get(a, 1) > 1 else 0 for a in out_axes}
