"""The Pixel Classification batch workflow: for each input, block by block, features to export.

``run_batch`` is the whole run; ``execute_plan`` computes one planned input (see
:mod:`.export_plan`); ``compute_block`` is a pure
function of one block, so the same function runs in a loop, in a thread pool or as a task.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend, select_backend
from ..config import RunConfig, resident_memory_mb
from ..errors import UsageError, UserError
from ..export import ExportTransform, derive_from_probabilities, resolve_source
from ..features.compute import compute_features
from ..features.plan import FeaturePlan
from ..forest.model import Forest
from ..forest.predict import predict_proba
from ..io.stacks import expand_members, has_glob
from ..io.writers import open_writer
from ..project.ilp import Project, read_project
from .blocks import Block, choose_block_shape, iter_blocks
from .export_plan import LanePlan, check_filename_options, effective_format, open_lane, open_mask, plan_lane
from .lane import Lane
from .timing import StageClock, process_age_s
from .training import resolve_classifier

log = logging.getLogger(__name__)



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
    clock: StageClock = field(default_factory=StageClock)


@dataclass
class LaneResult:
    input: str
    output: str
    blocks: int
    stage_seconds: dict[str, float] = field(default_factory=dict)


def compute_block(task: BlockTask, block: Block) -> np.ndarray:
    """The export source on one block: ``(Z, Y, X, channels)`` for time step ``block.t``."""
    with task.backend.stream():
        return _compute_block(task, block)


def _compute_block(task: BlockTask, block: Block) -> np.ndarray:
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
    with task.clock.measure("read"):
        image = bk.asarray(lane.read(block.t, region))
    interior = tuple(slice(a - r.start, b - r.start) for a, b, r in zip(block.start, block.stop, region))
    with task.clock.measure("features"):
        features = compute_features(bk, image, plan, interior, region[2].start, lane.shape[3])
    if task.source == "Features":
        return bk.to_host(bk.xp.moveaxis(features, 0, -1)[..., task.channels])
    with task.clock.measure("forest"):
        return _classify(task, features, shape, mask)


def _classify(task: BlockTask, features: Any, shape: tuple[int, int, int], mask: np.ndarray | None) -> np.ndarray:
    """Forest probabilities of a block's features, masked, as the export source."""
    bk, plan = task.backend, task.plan
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

    Every input is planned (opened, checked, its output decided) before anything is computed,
    so a bad option stops the run with nothing computed or written.

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
    backend = select_backend(config.device)
    # Features and Labels never use the classifier; train one for them only when asked to.
    forest = None
    if source not in ("Features", "Labels") or config.retrain:
        forest = resolve_classifier(
            backend, project, config.retrain, config.tree_count, config.label_proportion, max(config.threads, 1), config.seed
        )
    results = []
    for lane_plan in plans:
        try:
            result = execute_plan(config, project, backend, forest, source, lane_plan)
        except UserError as exc:
            failures.append(str(exc))
            log.error("%s", exc)
            continue
        results.append(result)
        if on_lane_done:
            on_lane_done(result)
    return results, failures


def execute_plan(config: RunConfig, project: Project, backend: Backend, forest: Forest | None, source: str, lane_plan: LanePlan) -> LaneResult:
    """Compute and write one planned export; the output appears only when it is complete."""
    if forest is not None and source != "Labels" and forest.n_features != lane_plan.plan.n_features:
        raise UserError(
            f"input '{lane_plan.path}': the classifier expects {forest.n_features} features, this input gives "
            f"{lane_plan.plan.n_features}"
        )
    lane = open_lane(config, project, lane_plan.path)
    mask = open_mask(config, lane_plan.mask_path) if lane_plan.mask_path else None
    try:
        writer = open_writer(
            lane_plan.output_format, lane_plan.final_path, lane_plan.internal_path, lane_plan.out_shape,
            lane_plan.transform.dtype, lane_plan.out_axes, lane_plan.attrs, lane_plan.slice_offset,
        )
        try:
            region = lane_plan.region
            task = BlockTask(backend, lane, lane_plan.plan, forest, source, project.n_classes,
                             slice(*region["c"]), mask, 1)
            blocks = _write_blocks(config, task, region, lane_plan.out_axes, lane_plan.transform, writer)
            with task.clock.measure("write"):
                writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        lane.source.close()
        if mask is not None:
            mask.source.close()
    shown = lane_plan.final_path + (f"/{lane_plan.internal_path}" if lane_plan.output_format in ("hdf5", "compressed hdf5") else "")
    log.info("Exported %s of %s to %s", source, lane.source.display, shown)
    log.debug("Timing (summed over worker threads): %s", task.clock.summary())
    return LaneResult(lane.source.display, lane_plan.final_path, blocks, dict(task.clock.seconds))


# Share of the budget left after the interpreter that blocks may use; the rest covers allocator
# slack, I/O buffers and the results waiting to be written.
_BLOCK_SHARE = 0.85
_MIN_BLOCK_BUDGET = 64 * 2**20


_GPU_SHARE = 0.8


def block_budget_bytes(config: RunConfig, backend: Backend | None = None) -> float:
    """Bytes the blocks in flight may use.

    ``LAZYFLOW_TOTAL_RAM_MB`` minus what the process holds now; on a GPU also at most 80 % of
    the free device memory, and at most ``--gpu_memory_mb``.
    """
    free = (config.ram_budget_mb - resident_memory_mb()) * 2**20
    budget = max(free * _BLOCK_SHARE, _MIN_BLOCK_BUDGET)
    device_free = backend.device_free_bytes() if backend is not None else None
    if device_free is not None:
        budget = min(budget, device_free * _GPU_SHARE)
        if config.gpu_memory_mb is not None:
            budget = min(budget, config.gpu_memory_mb * 2**20)
    return budget


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
        region_shape, halo, task.lane.n_channels, plan.n_features, task.n_classes, block_budget_bytes(config, task.backend),
        workers
    )
    blocks = list(iter_blocks(range(*region["t"]), spatial_start, spatial_stop, block_shape))
    total = len(blocks)
    log.debug("%d block(s) of %s (z,y,x) with halo %s", total, block_shape, halo)

    age = process_age_s()
    if age is not None:
        log.debug("First block after %.2f s since the process started", age)

    def store(block: Block, values: np.ndarray) -> None:
        with task.clock.measure("write"):
            _store(block, values)

    def _store(block: Block, values: np.ndarray) -> None:
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


__all__ = ["BlockTask", "LaneResult", "compute_block", "execute_plan", "run_batch"]
