"""The Pixel Classification batch workflow: for each input, block by block, features to export.

``run_batch`` is the whole run; ``process_lane`` handles one input; ``compute_block`` is a pure
function of one block, so the same function runs in a loop, in a thread pool or as a task.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..backend import Backend, select_backend
from ..config import RunConfig
from ..errors import NotImplementedYet, UserError
from ..export import (
    ExportTransform,
    derive_from_probabilities,
    make_transform,
    output_axes,
    parse_cutout,
    resolve_source,
    source_channels,
)
from ..features.compute import compute_features
from ..features.plan import FeaturePlan, check_image_size, make_plan
from ..forest.model import Forest
from ..forest.predict import predict_proba
from ..io.naming import format_known, replace_extension, roi_values
from ..io.readers import open_image
from ..io.writers import SUPPORTED_FORMATS, axistags_json, open_writer
from ..project.ilp import Project, read_project
from .blocks import Block, choose_block_shape, iter_blocks
from .lane import Lane, check_against_training, lane_axes
from .training import resolve_classifier

log = logging.getLogger(__name__)

DEFAULT_FILENAME_FORMAT = "{dataset_dir}/{nickname}_{result_type}"
DEFAULT_FORMAT = "compressed hdf5"
DEFAULT_INTERNAL_PATH = "exported_data"


@dataclass(frozen=True)
class BlockTask:
    """Everything ``compute_block`` needs besides the block itself."""

    backend: Backend
    lane: Lane
    plan: FeaturePlan
    forest: Forest | None
    source: str
    n_classes: int
    channels: slice
    mask: Lane | None
    threads: int


@dataclass
class LaneResult:
    input: str
    output: str
    blocks: int


def compute_block(task: BlockTask, block: Block) -> np.ndarray:
    """The export source on one block: ``(Z, Y, X, channels)`` for time step ``block.t``."""
    bk, lane, plan = task.backend, task.lane, task.plan
    shape = block.shape
    if task.source == "Labels":
        return np.zeros(shape + (1,), dtype=np.uint8)[..., task.channels]
    mask = None
    if task.mask is not None and task.source != "Features":
        mask = np.any(task.mask.read(block.t, block.slices) != 0, axis=-1)
        if not mask.any():
            probabilities = np.zeros(shape + (task.n_classes,), dtype=np.float32)
            return bk.to_host(derive_from_probabilities(np, probabilities, task.source))[..., task.channels]
    z_halo = plan.max_halo if plan.any_3d and lane.shape[1] > 1 else 0
    halo = (z_halo, plan.max_halo, plan.max_halo)
    region = tuple(
        slice(max(0, a - h), min(n, b + h)) for a, b, h, n in zip(block.start, block.stop, halo, lane.shape[1:4])
    )
    image = bk.asarray(lane.read(block.t, region))
    interior = tuple(slice(a - r.start, b - r.start) for a, b, r in zip(block.start, block.stop, region))
    features = compute_features(bk, image, plan, interior, region[2].start, lane.shape[3])
    if task.source == "Features":
        return bk.to_host(bk.xp.moveaxis(features, 0, -1)[..., task.channels])
    rows = features.reshape(plan.n_features, -1).T
    scores = predict_proba(task.forest, rows, bk, task.threads)
    probabilities = bk.xp.zeros((rows.shape[0], task.n_classes), dtype=bk.xp.float32)
    for column, label in enumerate(task.forest.labels):
        if 1 <= label <= task.n_classes:
            probabilities[:, int(label) - 1] = scores[:, column]
    probabilities = probabilities.reshape(shape + (task.n_classes,))
    if mask is not None:
        probabilities = probabilities * bk.asarray(mask[..., None].astype(np.float32))
    derived = derive_from_probabilities(bk.xp, probabilities, task.source)
    return bk.to_host(derived[..., task.channels])


def run_batch(config: RunConfig, on_lane_done: Callable[[LaneResult], None] | None = None) -> tuple[list[LaneResult], list[str]]:
    """Apply the project to every input; a failed input is reported and the batch goes on.

    Returns
    -------
    results : list of LaneResult
    failures : list of str
        One line per failed input.

    Raises
    ------
    UserError
        For problems that stop the whole run (project, options, classifier).
    """
    project = read_project(config.project)
    source = resolve_source(config.export.source)
    output_format = config.export.output_format or project.export.get("output_format") or DEFAULT_FORMAT
    if output_format not in SUPPORTED_FORMATS:
        raise NotImplementedYet(f"--output_format {output_format!r}", f"this version writes {', '.join(SUPPORTED_FORMATS)}")
    backend = select_backend(config.device)
    # Features and Labels never use the classifier; train one for them only when asked to.
    forest = None
    if source not in ("Features", "Labels") or config.retrain:
        forest = resolve_classifier(
            backend, project, config.retrain, config.tree_count, config.label_proportion, max(config.threads, 1), config.seed
        )
    if len(config.prediction_masks) > len(config.inputs):
        raise UserError("--prediction_mask: more masks than raw inputs")
    results, failures = [], []
    for index, path in enumerate(config.inputs):
        mask_path = config.prediction_masks[index] if index < len(config.prediction_masks) else None
        try:
            result = process_lane(config, project, backend, forest, source, path, mask_path)
        except UserError as exc:
            failures.append(str(exc))
            log.error("%s", exc)
            continue
        results.append(result)
        if on_lane_done:
            on_lane_done(result)
    return results, failures


def _expected_channels(project: Project, forest: Forest | None, z_extent: int) -> int | None:
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


def process_lane(
    config: RunConfig,
    project: Project,
    backend: Backend,
    forest: Forest | None,
    source: str,
    path: str,
    mask_path: str | None = None,
) -> LaneResult:
    """Export ``source`` for one input; the output appears only when it is complete."""
    image = open_image(path, config.cwd)
    mask_image = None
    try:
        lane = Lane(image, lane_axes(image, config.input_axes, project, config.ignore_training_axistags))
        check_against_training(lane, project, _expected_channels(project, forest, lane.shape[1]))
        plan = make_plan(project.selection, lane.n_channels, lane.shape[1])
        if project.selection.is_empty and source in ("Probabilities", "Simple Segmentation", "Uncertainty", "Features"):
            raise UserError(f"project file '{project.path}': no features are selected")
        check_image_size(plan, lane.shape[1:4], path)
        if forest is not None and source != "Labels" and forest.n_features != plan.n_features:
            raise UserError(
                f"input '{path}': the project's classifier expects {forest.n_features} features, this input gives "
                f"{plan.n_features}"
            )
        mask = None
        if mask_path:
            mask_image = open_image(mask_path, config.cwd)
            mask = Lane(mask_image, lane_axes(mask_image, None, None, True))
            if mask.shape[:4] != lane.shape[:4]:
                raise UserError(f"prediction mask '{mask_path}' has shape {mask.shape[:4]} (tzyx), the image {lane.shape[:4]}")
        return _export_lane(config, project, backend, forest, source, lane, plan, mask)
    finally:
        image.close()
        if mask_image is not None:
            mask_image.close()


def _export_lane(config, project, backend, forest, source, lane: Lane, plan: FeaturePlan, mask) -> LaneResult:
    stored = project.export
    opts = config.export
    n_classes = project.n_classes
    n_channels = source_channels(source, n_classes, plan.n_features)
    internal = lane.internal_axes
    extent = dict(zip("tzyxc", lane.shape[:4] + (n_channels,)))
    start, stop = _cutout(opts.cutout_subregion or stored.get("cutout_subregion"), internal, extent)
    transform = make_transform(
        source,
        opts.export_dtype or stored.get("export_dtype"),
        opts.pipeline_result_drange or stored.get("pipeline_result_drange"),
        opts.export_drange or stored.get("export_drange"),
    )
    region = {a: (start[a], stop[a]) for a in "tzyxc"}
    out_axes = output_axes(opts.output_axis_order or stored.get("output_axis_order"), lane.axes, {a: region[a][1] - region[a][0] for a in "tzyxc"})
    out_shape = tuple(region[a][1] - region[a][0] if a in region else 1 for a in out_axes)
    output_format = opts.output_format or stored.get("output_format") or DEFAULT_FORMAT
    final_path, internal_path = _output_location(config, project, lane, source, output_format, internal, start, stop)
    attrs = _dataset_attrs(lane, out_axes, transform, source)
    writer = open_writer(output_format, final_path, internal_path, out_shape, transform.dtype, out_axes, attrs, lane.source.resolutions)
    try:
        task = BlockTask(backend, lane, plan, forest, source, n_classes, slice(start["c"], stop["c"]), mask, 1)
        blocks = _write_blocks(config, task, region, out_axes, transform, writer)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    shown = final_path + (f"/{internal_path}" if output_format in ("hdf5", "compressed hdf5") else "")
    log.info("Exported %s of %s to %s", source, lane.source.display, shown)
    return LaneResult(lane.source.display, final_path, blocks)


def _cutout(cutout, internal: str, extent: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Start/stop per ``tzyxc`` axis from ``--cutout_subregion`` in the internal axis order."""
    start = {a: 0 for a in "tzyxc"}
    stop = dict(extent)
    if cutout is None:
        return start, stop
    if isinstance(cutout, str):
        cutout = parse_cutout(cutout)
    lo, hi = cutout
    if len(lo) != len(internal):
        raise UserError(
            f"--cutout_subregion has {len(lo)} entries per corner but the export's axes are {','.join(internal)} "
            f"({len(internal)} entries, in that order)"
        )
    for axis, a, b in zip(internal, lo, hi):
        a = 0 if a is None else max(0, int(a))
        b = extent[axis] if b in (None, 0) else min(int(b), extent[axis])
        if a >= b:
            raise UserError(f"--cutout_subregion: empty range {a}:{b} along {axis}")
        start[axis], stop[axis] = a, b
    return start, stop


def _output_location(config, project, lane: Lane, source, output_format, internal, start, stop) -> tuple[str, str]:
    from_cli = config.export.output_filename_format is not None
    pattern = config.export.output_filename_format or project.export.get("output_filename_format") or DEFAULT_FILENAME_FORMAT
    base_dir = config.cwd if from_cli or "output_filename_format" not in project.export else str(project.path.parent)
    lane_values = {"dataset_dir": lane.source.dataset_dir, "nickname": lane.source.nickname.replace("*", ""), "result_type": source}
    roi = roi_values(internal, tuple(start[a] for a in internal), tuple(stop[a] for a in internal))
    try:
        path = format_known(os.path.expanduser(pattern), lane_values, strict=True)
    except ValueError as exc:
        raise UserError(f"--output_filename_format {pattern!r}: {exc}") from None
    path = format_known(path, roi)
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    path = replace_extension(path, output_format)
    internal_pattern = config.export.output_internal_path or project.export.get("output_internal_path") or DEFAULT_INTERNAL_PATH
    try:
        internal_path = format_known(format_known(internal_pattern, lane_values, strict=True), roi, strict=True)
    except ValueError as exc:
        raise UserError(f"--output_internal_path {internal_pattern!r}: {exc}") from None
    return path, internal_path


def _dataset_attrs(lane: Lane, out_axes: str, transform: ExportTransform, source: str) -> dict[str, Any]:
    resolutions = {a: lane.source.resolutions.get(a, 0) for a in out_axes if a != "c"}
    attrs: dict[str, Any] = {"axistags": axistags_json(out_axes, resolutions), "display_mode": "grayscale"}
    drange = transform.drange
    if drange is None:
        if source in ("Probabilities", "Uncertainty"):
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
    if lane.source.axis_units:
        import json  # noqa: PLC0415

        units = lane.source.axis_units
        attrs["axis_units"] = json.dumps({a: units[a] for a in out_axes if a in units})
    return attrs


def _write_blocks(config: RunConfig, task: BlockTask, region, out_axes: str, transform: ExportTransform, writer) -> int:
    """Compute every block (in a thread pool) and write each as it arrives; returns the block count."""
    spatial_start = tuple(region[a][0] for a in "zyx")
    spatial_stop = tuple(region[a][1] for a in "zyx")
    region_shape = tuple(b - a for a, b in zip(spatial_start, spatial_stop))
    plan = task.plan
    z_halo = plan.max_halo if plan.any_3d and task.lane.shape[1] > 1 else 0
    halo = tuple(min(h, n) for h, n in zip((z_halo, plan.max_halo, plan.max_halo), task.lane.shape[1:4]))
    workers = max(config.threads, 1)
    block_shape = choose_block_shape(
        region_shape, halo, task.lane.n_channels, plan.n_features + task.n_classes, config.ram_budget_mb * 2**20, workers
    )
    blocks = list(iter_blocks(range(*region["t"]), spatial_start, spatial_stop, block_shape))
    total = len(blocks)
    log.debug("%d block(s) of %s (z,y,x) with halo %s", total, block_shape, halo)

    def store(block: Block, values: np.ndarray) -> None:
        data = transform.apply(values)
        where = {"t": slice(block.t - region["t"][0], block.t - region["t"][0] + 1)}
        for axis, a, b, origin in zip("zyx", block.start, block.stop, spatial_start):
            where[axis] = slice(a - origin, b - origin)
        where["c"] = slice(None)
        data = data[None]  # (1, Z, Y, X, C) in tzyxc
        # Axes the output leaves out have extent 1 (output_axes checked that), so drop them.
        kept = [a for a in "tzyxc" if a in out_axes]
        data = data.reshape([n for a, n in zip("tzyxc", data.shape) if a in out_axes])
        data = np.transpose(data, [kept.index(a) for a in out_axes])
        writer.write(tuple(where[a] for a in out_axes), data)

    with _progress(config, total, task.lane.source.display) as advance:
        if config.threads <= 0 or total == 1:
            for block in blocks:
                store(block, compute_block(task, block))
                advance()
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pending: dict[Any, Block] = {}
                queue = iter(blocks)
                for block in queue:
                    pending[pool.submit(compute_block, task, block)] = block
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        block = pending.pop(future)
                        store(block, future.result())
                        advance()
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(compute_block, task, nxt)] = nxt
    return total


class _progress:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, config: RunConfig, total: int, label: str) -> None:
        self._enabled = config.progress and os.isatty(2) and total > 1
        self._total, self._label = total, label

    def __enter__(self) -> Callable[[], None]:
        if not self._enabled:
            return lambda: None
        from rich.progress import Progress  # noqa: PLC0415

        self._bar = Progress(transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self._label, total=self._total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._enabled:
            self._bar.__exit__(*exc)


__all__ = ["BlockTask", "LaneResult", "compute_block", "process_lane", "run_batch"]
