"""The Pixel Classification batch workflow: for each input, block by block, features to export.

``run_batch`` is the whole run; ``execute_plan`` computes one planned input (see
:mod:`.export_plan`) with :func:`~.block_task.compute_block`, block by block.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend
from ..config import RunConfig, trim_heap
from ..errors import UsageError, UserError, writing_output
from ..export import ALL_STAGES, split_source
from ..forest.model import Forest
from ..io.formats import CONTAINER_FORMATS, ZARR_FORMATS, is_sequence
from ..io.stacks import expand_members, has_glob, open_input
from ..io.writers import open_writer
from ..project.ilp import Project, read_project
from ..resolve import Resolved, resolve_run
from .block_runner import block_budget_bytes, block_id, chunk_shape, layout_blocks, place, run_local
from .block_task import BlockTask, compute_block
from .blocks import Block
from .input_guard import check_unchanged, snapshot
from .export_plan import (LanePlan, check_filename_options, check_output_collisions, effective_format, open_mask,
                          output_target, plan_lane)
from .lane import Lane, warn_if_nonfinite
from .stages import Stage
from .training import resolve_classifier

log = logging.getLogger(__name__)



@dataclass
class LaneResult:
    input: str
    output: str
    blocks: int
    stage_seconds: dict[str, float] = field(default_factory=dict)


def run_batch(config: RunConfig, on_lane_done: Callable[[LaneResult], None] | None = None,
              resolved: Resolved | None = None) -> tuple[list[LaneResult], list[str]]:
    """Apply the project to every input; a failed input is reported and the batch goes on.

    Every input is planned (opened, checked, its output decided) before anything is computed,
    so a bad option stops the run with nothing computed or written. ``resolved`` holds the
    run's decisions (project, export source, device); by default they are made here.

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
    resolved = resolved or resolve_run(config, read_project(config.project))
    project, source, backend = resolved.project, resolved.source, resolved.backend
    output_format = effective_format(config, project)
    check_filename_options(config, project, output_format)
    if len(config.prediction_masks) > len(config.inputs):
        raise UserError("--prediction_mask: more masks than raw inputs")
    for path in config.inputs + config.prediction_masks:
        if has_glob(os.path.expanduser(path)):
            expand_members(path, config.cwd)  # a pattern that matches nothing is a usage error
    failures: list[str] = []
    plans: list[LanePlan] = []
    for index, path in enumerate(config.inputs):
        mask_path = config.prediction_masks[index] if index < len(config.prediction_masks) else None
        try:
            plans.append(plan_lane(config, project, project.forest, source, output_format, path, mask_path))
        except UsageError:
            raise
        except UserError as exc:
            failures.append(str(exc))
            log.error("%s", exc)
    if not plans:
        return [], failures
    check_output_collisions([output_target(f"input '{p.path}'", p.output_format, p.final_path, p.internal_path)
                             for p in plans], config.inputs + config.prediction_masks, config.cwd,
                            parallel=bool(config.scheduler))
    # Features and Labels never use the classifier; train one for them only when asked to.
    forest = None
    kind = split_source(source)[0]
    if kind not in ("Features", "Labels", "Input") or config.retrain or (kind == "Features" and len(project.stages) > 1):
        project = stage_classifiers(config, project, backend, source)
        forest = project.forest
    client = None
    if config.scheduler:
        from .distributed import connect  # noqa: PLC0415 - dask is an optional extra

        client = connect(config)
    try:
        if client is None:
            outcomes = [_execute(config, project, backend, forest, source, p, None) for p in plans]
        else:  # several inputs in flight at once: their blocks share the cluster
            with ThreadPoolExecutor(max_workers=max(2, len(client.nthreads()))) as pool:
                outcomes = list(pool.map(lambda p: _execute(config, project, backend, forest, source, p, client), plans))
    finally:
        if client is not None:
            from .distributed import disconnect  # noqa: PLC0415

            disconnect(client, config)
    results = []
    for outcome in outcomes:
        if isinstance(outcome, str):
            failures.append(outcome)
            continue
        results.append(outcome)
        if on_lane_done:
            on_lane_done(outcome)
    return results, failures


def stage_classifiers(config: RunConfig, project: Project, backend: Backend, source: str) -> Project:
    """``project`` with the classifiers this run uses: the stored ones, or trained on the
    project's labels (``--retrain``, ``--tree-count``, ``--label-proportion``, or none stored).

    An Autocontext stage is trained on features that read the previous stages' probabilities,
    so once a stage is trained, the stages after it are trained too, in order (as ilastik
    retrains them all). Only the stages the export source needs are resolved.
    """
    kind, stage = split_source(source)
    needed = len(project.stages) if stage is None else stage + 1
    threads, forests, retrain = max(config.threads, 1), [], config.retrain
    for k in range(needed):
        if kind == "Features" and k == needed - 1 and not retrain and project.stages[k].forest is None:
            forests.append(None)  # a stage's own features do not need its classifier
            break
        forest = resolve_classifier(backend, project, retrain, config.tree_count, config.label_proportion, threads,
                                    config.seed, k, tuple(forests))
        retrain = retrain or forest is not project.stages[k].forest  # later stages see new probabilities
        forests.append(forest)
    stages = [dataclasses.replace(s, forest=f, later_stages=[]) for s, f in zip(project.stages, forests)]
    stages += project.stages[len(stages):]
    return dataclasses.replace(stages[0], later_stages=stages[1:])


def _resumed_blocks(config: RunConfig, lane_plan: LanePlan) -> tuple[int, int, int] | None:
    """The block shape of an unfinished Zarr output that ``--resume`` continues."""
    if not (config.resume and lane_plan.output_format in ZARR_FORMATS):
        return None
    from ..io.zarr_io import unfinished_chunks  # noqa: PLC0415

    chunks = unfinished_chunks(lane_plan.final_path, lane_plan.output_format != "zarr", lane_plan.out_axes)
    if chunks is None:
        return None
    return tuple(chunks.get(a, 1) for a in "zyx")


def _execute(config, project, backend, forest, source, lane_plan: LanePlan, client) -> LaneResult | str:
    """``execute_plan``, or the failure's one-line message.

    Afterwards what the lane's blocks freed goes back to the system: glibc keeps it otherwise,
    and the resident memory of a long batch would swing by a block's working set from lane to lane.
    """
    try:
        return execute_plan(config, project, backend, forest, source, lane_plan, client)
    except UserError as exc:
        if client is not None:
            from .distributed import ClusterLost  # noqa: PLC0415

            if isinstance(exc, ClusterLost):  # the whole batch stops: every lane needs the workers
                raise
        log.error("%s", exc)
        return str(exc)
    finally:
        trim_heap()


def execute_plan(
    config: RunConfig, project: Project, backend: Backend, forest: Forest | None, source: str, lane_plan: LanePlan,
    client: Any = None, probabilities: Lane | None = None,
) -> LaneResult:
    """Compute and write one planned export; the output appears only when it is complete.

    With a Dask ``client`` the blocks run as tasks on the cluster's workers. ``probabilities``
    (a ``tzyxc`` lane of the exported stage's probabilities, computed already) is where sources
    derived from them are read instead of computed.
    """
    first_plan = (lane_plan.stage_plans or (lane_plan.plan,))[0]
    if forest is not None and split_source(source)[0] not in ("Labels", "Input") and forest.n_features != first_plan.n_features:
        raise UserError(
            f"input '{lane_plan.path}': the classifier expects {forest.n_features} features, this input gives "
            f"{first_plan.n_features}"
        )
    if config.resume and os.path.exists(lane_plan.final_path) and not is_sequence(lane_plan.output_format):
        log.info("Skipping %s: %s exists (--resume)", lane_plan.path, lane_plan.final_path)
        return LaneResult(lane_plan.path, lane_plan.final_path, 0)
    inputs = [snapshot(lane_plan.path, config.cwd)]
    if lane_plan.mask_path:
        inputs.append(snapshot(lane_plan.mask_path, config.cwd))
    source_image = open_input(lane_plan.path, config.cwd, config.stack_along)
    lane = Lane(source_image, lane_plan.lane_axes)
    mask = open_mask(lane_plan.mask_path, config.cwd, config.stack_along) if lane_plan.mask_path else None
    try:
        region = lane_plan.region
        task = lane_block_task(backend, lane, lane_plan, project, forest, source, mask, probabilities)
        if client is None:
            layout = layout_blocks(config, task, region, block_budget_bytes(config, backend),
                                   _resumed_blocks(config, lane_plan))
        else:  # sized for the workers' memory, not the client's; each worker thread computes one block
            from .distributed import cluster_budget  # noqa: PLC0415

            budget = cluster_budget(client, config)
            layout = layout_blocks(dataclasses.replace(config, threads=1, workers=config.workers or budget.threads),
                                   task, region, budget.per_block, _resumed_blocks(config, lane_plan))
        with writing_output(lane_plan.final_path):
            writer = open_writer(
                lane_plan.output_format, lane_plan.final_path, lane_plan.internal_path, lane_plan.out_shape,
                lane_plan.transform.dtype, lane_plan.out_axes, lane_plan.attrs, lane_plan.slice_offset,
                chunks=chunk_shape(layout, lane_plan.out_axes, lane_plan.out_shape),
                resolutions=lane.source.resolutions, resume=config.resume, pyramid=config.pyramid,
            )
        try:
            with writing_output(lane_plan.final_path):
                todo = _write_blocks(config, lane_plan, task, layout, writer, client)
                for before in inputs:
                    check_unchanged(before)
                with task.clock.measure("write"):
                    writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        lane.source.close()
        if mask is not None:
            mask.source.close()
    warn_if_nonfinite(lane, "input", "features within a filter's reach of them are NaN or infinite, and a "
                      "pixel with a NaN feature gets probability 0 for every class, as in ilastik")
    shown = lane_plan.final_path + (f"/{lane_plan.internal_path}" if lane_plan.output_format in CONTAINER_FORMATS else "")
    log.info("Exported %s of %s to %s", source, lane.source.display, shown)
    log.debug("Timing (summed over worker threads): %s", task.clock.summary())
    return LaneResult(lane.source.display, lane_plan.final_path, len(todo), dict(task.clock.seconds))


def lane_block_task(backend: Backend, lane: Lane, lane_plan: LanePlan, project: Project, forest: Forest | None, source: str,
                mask: Lane | None, probabilities: Lane | None = None) -> BlockTask:
    """The block function's inputs for one lane: the exported stage, and the stages before it."""
    plans = lane_plan.stage_plans or (lane_plan.plan,)
    stages = project.stages[:len(plans)]
    forests = [forest, *(s.forest for s in stages[1:])]
    upstream = tuple(Stage(p, f, s.n_classes) for p, f, s in zip(plans[:-1], forests[:-1], stages[:-1]))
    classes = sum(s.n_classes for s in stages) if source == ALL_STAGES else stages[-1].n_classes
    return BlockTask(backend, lane, plans[-1], forests[-1], source, classes, slice(*lane_plan.region["c"]), mask, 1,
                     upstream=upstream, probabilities=probabilities)


def _write_blocks(config: RunConfig, lane_plan: LanePlan, task: BlockTask, layout: Any, writer: Any,
                  client: Any) -> list[Block]:
    """Compute and write the blocks not written yet (``--resume``); returns those computed."""
    done = writer.done_blocks() if hasattr(writer, "done_blocks") else set()
    todo = [b for b in layout.blocks if block_id(b) not in done]
    if done:
        log.info("Resuming %s: %d of %d blocks already written", lane_plan.path, len(layout.blocks) - len(todo),
                 len(layout.blocks))

    def store(block: Block, values: np.ndarray) -> None:
        with task.clock.measure("write"):
            where, data = place(block, values, lane_plan.transform, lane_plan.region, lane_plan.out_axes)
            writer.write(where, data)
            if hasattr(writer, "mark_done"):
                writer.mark_done(block_id(block))

    with _progress(config, len(todo), task.lane.source.display) as advance:
        if client is not None:
            from .distributed import run_on_cluster  # noqa: PLC0415

            run_on_cluster(client, config, lane_plan, task, task.forest, todo, writer, advance)
        else:
            run_local(config, todo, lambda b: compute_block(task, b), store, advance)
    return todo


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


__all__ = ["BlockTask", "LaneResult", "compute_block", "execute_plan", "run_batch"]
