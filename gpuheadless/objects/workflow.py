"""Headless Object Classification: objects, features, classes, images and the object table.

Per input lane and time point: the object ids (thresholded prediction maps, a binary
segmentation, or a label image), the selected object features, the object classifier's
probabilities and classes; then the selected image (``Object Predictions``, ``Object
Probabilities``, ``Object Identities``) through the same writers as Pixel Classification, and
the CSV table of ``--table_filename`` (spec/object-classification.md §5).

Each time point is labelled slab by slab and its features computed a batch of objects at a time
within the memory budget (``labeling``, ``batches``), on the CPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import h5py
import numpy as np

from ..backend import Backend
from ..config import ObjectOptions, RunConfig
from ..errors import NotImplementedYet, UsageError, UserError, writing_output
from ..export import PIXEL_STAGE_SOURCES
from ..io import staging
from ..io.guarded_file import hdf5_output
from ..io.naming import format_known
from ..io.stacks import open_input
from ..pipeline.block_runner import block_budget_bytes
from ..pipeline.export_plan import (OutputTarget, check_output_collisions, dataset_dir, given_or_stored, output_location,
                                    output_target, rooted_filename_pattern)
from ..pipeline.input_guard import check_unchanged, snapshot
from ..pipeline.lane import Lane, lane_axes, warn_if_nonfinite
from ..project.objects import ObjectProject, read_object_project
from ..resolve import Resolved, resolve_run
from .batches import PLUGINS, object_features
from .classifier import feature_matrix, object_probabilities
from .images import export_bounds, plan_image, write_image
from .labeling import ObjectIds, label_image_ids, segmentation_ids, slab_axis, slab_thickness, threshold_ids
from .pixel_stage import PixelStage, export_pixel_image, lane_probabilities, prepare_pixel_stage
from .table import write_csv_table, write_h5_table

log = logging.getLogger(__name__)

SECOND_ROLE = {"prediction": "--prediction_maps", "binary": "--segmentation_image", "labels": "--label_image"}


@dataclass(frozen=True)
class ObjectRun:
    """What every lane of an Object Classification run shares, decided once: the run, the project
    (with its classifier), the backend and, for Pixel + Object projects, the pixel stage."""

    config: RunConfig
    project: ObjectProject
    backend: Backend
    pixel: PixelStage | None = None
    budget_bytes: float | None = None  # a Dask task's share of its worker; None: this process's budget

    @property
    def budget(self) -> float:
        """Bytes the labelling slabs and feature batches may use now (see :func:`object_budget_bytes`)."""
        if self.budget_bytes is not None:
            return min(self.budget_bytes, OBJECT_WORKING_SET)
        return object_budget_bytes(self.config, self.backend)


def start_object_run(config: RunConfig, project: ObjectProject, backend: Backend) -> ObjectRun:
    """The run's shared state: the pixel stage's classifier and then the object classifier
    resolved (trained now where the project has labels but stores none, as ilastik does)."""
    pixel = prepare_pixel_stage(config, project.pixel, backend) if project.pixel is not None else None
    run = ObjectRun(config, project, backend, pixel)
    if project.forest is None and project.labels:
        project.forest = _train(run)
    return run


def run_object_batch(config: RunConfig, options: ObjectOptions,
                     resolved: Resolved | None = None) -> tuple[list[str], list[str]]:
    """Export every lane; returns (written files, failures).

    ``resolved`` holds the run's decisions (project, export source, device); by default they are
    made here from ``config``.
    """
    if options.atlas:
        raise NotImplementedYet("--atlas")
    resolved = resolved or resolve_run(config, read_object_project(config.project))
    project, source = resolved.project, resolved.source
    if config.resume:
        log.warning("--resume applies to Pixel Classification; this Object Classification run computes every lane")
    second_inputs = options.second_inputs
    if project.variant == "pixel":
        if second_inputs:
            raise UsageError("this project computes its pixel probabilities itself: give --raw_data only")
        second_inputs = [""] * len(config.inputs)  # the pixel stage makes them, lane by lane
    elif len(second_inputs) != len(config.inputs):
        raise UsageError(f"give one {SECOND_ROLE[project.variant]} input per --raw_data input (got "
                         f"{len(options.second_inputs)} for {len(config.inputs)})")
    if options.table_only and not (options.table_filename or (project.table_settings or {}).get("file path")):
        raise UsageError("--table_only: there is no table to write; give --table_filename")
    if "Pixel Probabilities" in options.extra_sources and project.variant != "pixel":
        raise UsageError("--export_pixel_probability_img: only the Pixel + Object Classification workflow has pixel "
                         "probabilities")
    check_plugins(project)
    check_output_collisions(_all_targets(config, options, project, source), config.inputs + [p for p in second_inputs if p],
                            config.cwd)
    run = start_object_run(config, project, resolved.backend)
    if config.scheduler:
        from .cluster import ObjectLaneJob, run_lanes_on_cluster  # noqa: PLC0415 - dask is an optional extra

        shipped = dataclasses.replace(project, pixel=run.pixel.project if run.pixel is not None else None)
        job = ObjectLaneJob(dataclasses.replace(config, threads=1, progress=False), options, source, shipped, 0.0,
                            _lane_on_worker, _time_point_on_worker)
        lanes = list(zip(config.inputs, second_inputs))
        split = {} if run.pixel is not None else _time_points(config, lanes)
        return run_lanes_on_cluster(config, job, lanes, split,
                                    lambda raw, second, time_points: _run_lane(run, options, source, raw, second,
                                                                               time_points))
    written, failures = [], []
    for raw_path, second_path in zip(config.inputs, second_inputs):
        try:
            written += _run_lane(run, options, source, raw_path, second_path)
        except UserError as exc:
            failures.append(str(exc))
            log.error("%s", exc)
    return written, failures


def _worker_run(job) -> ObjectRun:
    """The run's shared state on a Dask worker (:mod:`.cluster`): the client's project and
    classifiers, this worker's backend, the task's budget."""
    from ..pipeline.distributed import worker_backend  # noqa: PLC0415

    backend = worker_backend(job.config.device)
    pixel = PixelStage(job.config, job.project.pixel, backend) if job.project.pixel is not None else None
    return ObjectRun(job.config, job.project, backend, pixel, job.budget)


def _lane_on_worker(job, raw_path: str, second_path: str) -> list[str]:
    """One lane of a Dask run, on a worker."""
    return _run_lane(_worker_run(job), job.options, job.source, raw_path, second_path)


def _time_point_on_worker(job, raw_path: str, second_path: str, t: int):
    """Time point ``t`` of a lane of a Dask run, on a worker (never a Pixel + Object lane)."""
    from .cluster import TimePointResult  # noqa: PLC0415

    run = _worker_run(job)
    with _lane_inputs(run, raw_path, second_path) as (raw, second):
        budget = run.budget
        with _scratch((1,) + raw.shape[1:4], budget) as scratch:
            ids, probabilities, features = _time_point(job.project, raw, second, t, budget, scratch, run.backend)
            labels = ids.read((slice(None),) * 3)
        return TimePointResult(labels, ids.n_objects, ids.boxes, ids.original, probabilities, features,
                               raw.nonfinite_seen, second.nonfinite_seen)


def _time_points(config: RunConfig, lanes: list[tuple[str, str]]) -> dict[int, int]:
    """The lanes with several time points, and how many: each time point becomes a task."""
    counts = {}
    for k, (raw_path, _) in enumerate(lanes):
        try:
            raw = _open(config, raw_path)
        except UserError:  # reported by the lane's task
            continue
        raw.source.close()
        if raw.shape[0] > 1:
            counts[k] = raw.shape[0]
    return counts


def check_plugins(project: ObjectProject) -> None:
    """Refuse a project selecting features of a plugin gpuheadless does not compute (UsageError)."""
    unsupported = sorted(p for p in project.selected if p not in PLUGINS)
    if unsupported:
        raise UsageError(f"project file '{project.path}': the object features of {', '.join(unsupported)} are not "
                         f"implemented (only those of {', '.join(PLUGINS)})")


def _all_targets(config: RunConfig, options: ObjectOptions, project: ObjectProject, source: str) -> list[OutputTarget]:
    """Every file the batch will write (images and tables), decided from the inputs' headers only.

    A lane whose input cannot be opened is left out: it fails on its own when its turn comes.
    """
    targets: list[OutputTarget] = []
    for raw_path in config.inputs:
        try:
            raw = _open(config, raw_path)
        except UsageError:
            raise
        except UserError:
            continue
        try:
            targets += _lane_targets(config, options, project, source, raw)
        finally:
            raw.source.close()
    return targets


def _lane_targets(config: RunConfig, options: ObjectOptions, project: ObjectProject, source: str,
                  raw: Lane) -> list[OutputTarget]:
    """The images and the table one lane writes; an HDF5 table replaces its whole file."""
    display = raw.source.display
    sources = [] if options.table_only else [source] + [s for s in options.extra_sources if s != source]
    opts = given_or_stored(config.export, project.export)
    output_format = opts.output_format or "compressed hdf5"
    targets = []
    for name in sources:
        if name in PIXEL_STAGE_SOURCES:
            start, stop = export_bounds(opts, raw, 1)
            path, internal = output_location(config, project, raw, name, output_format, raw.internal_axes, start, stop)
        else:
            plan = plan_image(config, project, name, raw, [], None)
            path, internal = plan.path, plan.internal
        targets.append(output_target(f"the {name} of input '{display}'", output_format, path, internal))
    table = _table_path(config, options, project, raw)
    if table:
        targets.append(OutputTarget(f"the table of input '{display}'", table[0]))
    return targets


# The most memory the labelling slabs and feature batches of one time point use by default: with
# the whole default budget (half the machine) a 48x512x512 volume took 700 MiB, at this cap 505 MiB
# in the same time (bench/objects_vs_ilastik.py); a smaller LAZYFLOW_TOTAL_RAM_MB still decides.
OBJECT_WORKING_SET = 768 * 2**20


def object_budget_bytes(config: RunConfig, backend: Backend) -> float:
    """Bytes the object stage's slabs and batches may use: the block budget of ``backend``'s
    device (on a GPU its free memory and ``--gpu_memory_mb`` cap it), at most
    :data:`OBJECT_WORKING_SET`."""
    return min(block_budget_bytes(config, backend), OBJECT_WORKING_SET)


def _train(run: ObjectRun):
    """A new object classifier from the objects labelled in the project (it stores no forest)."""
    from ..forest.train import train_forest  # noqa: PLC0415

    project, config = run.project, run.config
    rows, targets = [], []
    for lane_index, (raw_path, second_path) in enumerate(project.lanes):
        wanted = {t: v for (lane, t), v in project.labels.items() if lane == lane_index}
        if wanted:
            lane_rows, lane_targets = _training_rows(run, raw_path, second_path, wanted)
            rows.append(lane_rows)
            targets.append(lane_targets)
    if not rows:
        raise UserError(f"project file '{project.path}': no labelled objects to train a classifier")
    x, y = np.concatenate(rows), np.concatenate(targets)
    log.info("Training an object classifier: 100 trees on %d labelled objects", len(y))
    return train_forest(x, y, n_trees=100, threads=max(config.threads, 1), seed=config.seed)


def _training_rows(run: ObjectRun, raw_path: str, second_path: str, wanted: dict):
    """(feature rows, classes) of the labelled objects of one training lane."""
    project = run.project
    rows, targets = [], []
    try:
        with _lane_inputs(run, raw_path, second_path) as (raw, second):
            budget = run.budget
            _check_channels(project, second, second_path)
            with _scratch(raw.shape[:4], budget) as labels_scratch:
                for t, classes in sorted(wanted.items()):
                    _, _, features = _time_point(project, raw, second, t, budget, labels_scratch, run.backend,
                                                 classify=False)
                    matrix = feature_matrix(features, project.selected)
                    ids = np.nonzero(classes[: matrix.shape[0]])[0]
                    rows.append(matrix[ids])
                    targets.append(classes[ids].astype(np.uint32))
    except UserError as exc:
        raise UserError(f"project file '{project.path}': cannot read the training data to train the object "
                        f"classifier: {exc}") from None
    return np.concatenate(rows), np.concatenate(targets)


@contextlib.contextmanager
def _lane_inputs(run: ObjectRun, raw_path: str, second_path: str) -> Iterator[tuple[Lane, Lane]]:
    """The raw data and the second input of one lane, opened; for a Pixel + Object project the
    second input is the pixel stage's probabilities of the raw data, computed once here."""
    if run.pixel is not None:
        with lane_probabilities(run.pixel, raw_path) as (raw, second):
            yield raw, second
        return
    raw = _open(run.config, raw_path)
    try:
        second = _open(run.config, second_path)
        try:
            yield raw, second
        finally:
            second.source.close()
    finally:
        raw.source.close()


def _check_channels(project: ObjectProject, second: Lane, second_path: str) -> None:
    """Prediction maps (training ones too) must have the channels the project thresholds."""
    channel = max(project.threshold.channel, project.threshold.core_channel)
    if project.variant in ("prediction", "pixel") and second.n_channels <= channel:
        raise UserError(f"prediction maps '{second_path}' have {second.n_channels} channel(s); the project "
                        f"thresholds channel {channel}")


def _open(config: RunConfig, path: str) -> Lane:
    source = open_input(path, config.cwd, config.stack_along)
    axes = config.input_axes.split(",")[0] if config.input_axes else None
    return Lane(source, lane_axes(source, axes, None, True))


def _run_lane(run: ObjectRun, options: ObjectOptions, source: str, raw_path: str, second_path: str,
              time_points: TimePoints | None = None) -> list[str]:
    """Compute one lane's objects (``time_points`` may bring them from elsewhere, see
    :func:`lane_results`) and write its images and table."""
    config, project = run.config, run.project
    inputs = [snapshot(p, config.cwd) for p in (raw_path, second_path) if p]
    with _lane_inputs(run, raw_path, second_path) as (raw, second):
        budget = run.budget
        with _scratch(raw.shape[:4], budget) as scratch:
            results = lane_results(project, raw, second, budget, scratch, run.backend, time_points)
            sources = [] if options.table_only else [source] + [s for s in options.extra_sources if s != source]
            plans = [None if s in PIXEL_STAGE_SOURCES else plan_image(config, project, s, raw, results, second)
                     for s in sources]
            for before in inputs:  # every object is computed: the inputs are not read again
                check_unchanged(before)
            warn_if_nonfinite(raw, "raw data", "object features they enter are NaN or infinite and reach the "
                              "classifier as 0, as ilastik passes missing features (ilastik 1.4.2 itself stops "
                              "when such a value lies inside an object)")
            if project.variant in ("prediction", "pixel"):
                warn_if_nonfinite(second, "prediction maps", "after the smoothing a NaN is below every threshold "
                                  "and an infinity above, as in ilastik")
            outputs = [export_pixel_image(run.pixel, s, raw_path, rooted_filename_pattern(config, project),
                                          project.export.get("output_format"), second) if plan is None
                       else write_image(config, plan, project, raw, results, budget, run.backend) for s, plan in zip(sources, plans)]
            table = _table_path(config, options, project, raw)
            if table:
                with writing_output(table[0]):
                    if table[1] == "h5":
                        outputs.append(write_h5_table(table[0], project, results, raw, project.table_settings or {}))
                    else:
                        outputs.append(write_csv_table(table[0], project, results))
        return outputs


TimePoints = Callable[[Lane, Lane], list[tuple]]


def lane_results(project: ObjectProject, raw: Lane, second: Lane, budget: float, scratch: h5py.File | None,
                 backend: Backend, time_points: TimePoints | None = None) -> list[tuple]:
    """Objects, probabilities and features of every time point of one lane.

    Parameters
    ----------
    project : ObjectProject
    raw, second : Lane
        The raw data and the second input (prediction maps, segmentation or label image), of the
        same ``tzyx`` shape; ``source.display`` names them in messages.
    budget : float
        Bytes the labelling and the feature batches may use.
    scratch : h5py.File or None
        Where provisional labels go when they do not fit in memory (None: in memory).
    backend : Backend
        Where the smoothing, labelling and object sums run (the CPU with its threads, or the GPU).
    time_points : callable, optional
        ``(raw, second) -> results`` computed elsewhere (the time points as Dask tasks); by
        default each time point is computed here, one after the other.

    Returns
    -------
    list of (ObjectIds, (n + 1, K) float32 probabilities, {plugin: {feature: (n + 1, k) array}})
        One entry per time point.

    Raises
    ------
    UserError
        Shapes that differ, prediction maps without the thresholded channel, a segmentation
        without any object.
    """
    raw_name, second_name = raw.source.display, second.source.display
    if second.shape[:4] != raw.shape[:4]:
        raise UserError(f"'{second_name}' has shape {second.shape[:4]} (tzyx), the raw data '{raw_name}' {raw.shape[:4]}")
    _check_channels(project, second, second_name)
    if time_points is not None:
        results = time_points(raw, second)
    else:
        results = [_time_point(project, raw, second, t, budget, scratch, backend) for t in range(raw.shape[0])]
    if sum(r[0].n_objects for r in results) == 0 and project.variant in ("binary", "labels"):
        raise UserError(f"'{second_name}': the segmentation has no object")
    return results


@contextlib.contextmanager
def _scratch(shape_tzyx: tuple[int, ...], budget: float) -> Iterator[h5py.File | None]:
    """A temporary HDF5 file for the provisional labels of the lane, or None when they fit a
    quarter of the memory budget."""
    if math.prod(shape_tzyx) * 4 <= budget / 4:
        yield None
        return
    with staging.scratch_folder("gpuheadless-objects-") as directory:
        path = os.path.join(directory, "labels.h5")
        open(path, "wb").close()
        with writing_output(path), hdf5_output(path) as scratch:
            log.debug("provisional labels of %s (tzyx) go to a temporary file", shape_tzyx)
            yield scratch


def _object_ids(project: ObjectProject, second: Lane, t: int, budget: float, scratch, backend: Backend) -> ObjectIds:
    """The object ids of time point ``t``, slab by slab within ``budget``."""
    shape = second.shape[1:4]
    if project.variant in ("prediction", "pixel"):
        thickness = slab_thickness(shape, 12.0 * second.n_channels + 48.0, budget)
        ids = threshold_ids(lambda region: second.read(t, region), shape, project.threshold, thickness, scratch, f"t{t}",
                            backend)
    elif project.variant == "binary":
        thickness = slab_thickness(shape, 48.0, budget)
        ids = segmentation_ids(lambda region: second.read(t, region, None)[..., 0], shape, thickness, scratch, f"t{t}",
                               backend)
    else:
        thickness = slab_thickness(shape, 48.0, budget)
        ids = label_image_ids(lambda region: second.read(t, region, None)[..., 0], shape, thickness)
    if thickness < shape[slab_axis(shape)]:
        log.debug("t=%d: objects labelled in slabs of %d planes", t, thickness)
    return ids


def _time_point(project: ObjectProject, raw: Lane, second: Lane, t: int, budget: float, scratch, backend: Backend,
                classify: bool = True):
    """(ids, probabilities (n+1, K), features {plugin: {name: table}}) of time point t.

    NaN and infinities flow through as in ilastik (the lane says so once): no NumPy warnings.
    """
    with np.errstate(all="ignore"):
        ids = _object_ids(project, second, t, budget, scratch, backend)
        features = object_features(lambda region: raw.read(t, region), ids, project.selected, project.margins,
                                   raw.n_channels, budget, backend)
    if not classify:
        return ids, None, features
    matrix = feature_matrix(features, project.selected)
    probabilities = object_probabilities(project.forest, matrix, project.n_classes)
    return ids, probabilities, features


def _table_path(config: RunConfig, options: ObjectOptions, project: ObjectProject, raw: Lane) -> tuple[str, str] | None:
    """Where the object table goes and its type (``csv`` or ``h5``), or None for no table.

    ``--table_filename`` wins (its extension picks the type), then the project's table settings.
    A CSV goes to ``<base>_table.<ext>``; an HDF5 table to the path itself (spec §5.2-§5.3).
    """
    settings = project.table_settings or {}
    pattern = options.table_filename or settings.get("file path")
    if not pattern:
        return None
    path = format_known(os.path.expanduser(pattern), {"dataset_dir": dataset_dir(raw.source, project.path),
                                                      "nickname": raw.source.nickname.replace("*", "")})
    if not os.path.isabs(path):
        path = os.path.join(config.cwd, path)
    base, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        raise UsageError(f"--table_filename {pattern!r}: needs an extension, e.g. objects.csv")
    kind = ("h5" if ext.lower() in ("h5", "hdf5") else "csv") if options.table_filename else settings.get("file type", "csv")
    return (path, "h5") if kind == "h5" else (f"{base}_table.{ext}", "csv")
