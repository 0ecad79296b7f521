"""Blocks as tasks on a Dask cluster (``--scheduler``); needs the ``cluster`` extra.

``--scheduler ADDRESS`` connects to a running ``dask.distributed`` scheduler (e.g. one started by
dask-jobqueue on SLURM), ``local[:N]`` starts a LocalCluster of N worker processes, and
``local-cuda`` (with dask-cuda) one worker per visible GPU. Each task computes one block with
the same pure function as a single-process run; for Zarr outputs the worker writes its block
into its own chunks and records it as finished, so a task Dask reruns after losing a worker
rewrites the same bytes, and ``--resume`` skips finished blocks. Other formats get the blocks
back on the client, which writes them (one writer: slower, same result).
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..config import RunConfig
from ..errors import UsageError
from ..export import ExportTransform
from ..features.plan import FeaturePlan
from .block_runner import block_id, place
from .blocks import Block

log = logging.getLogger(__name__)


def connect(config: RunConfig) -> Any:
    """A ``dask.distributed.Client`` for ``config.scheduler``."""
    try:
        from dask.distributed import Client, LocalCluster  # noqa: PLC0415
    except ImportError:
        raise UsageError("--scheduler needs the cluster extra: pip install 'gpuheadless[cluster]'") from None
    if not log.isEnabledFor(logging.DEBUG):  # Dask's own progress lines only with --debug
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)
    scheduler = config.scheduler or ""
    if scheduler == "local" or scheduler.startswith("local:"):
        count = scheduler.partition(":")[2]
        if count and not count.isdigit():
            raise UsageError(f"--scheduler {scheduler!r}: expected local or local:N")
        workers = int(count) if count else (os.cpu_count() or 1)
        import dask  # noqa: PLC0415

        # Blocks are sized to the budget already; Dask's own spilling and pausing at 60-80 % of
        # the limit would only stall them. Its limit stays as a guard (terminate at 95 %).
        dask.config.set({"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                         "distributed.worker.memory.pause": False,
                         # Dask sets MALLOC_TRIM_THRESHOLD_ for its workers, which turns off glibc's
                         # adaptive mmap threshold: every temporary array is then mapped and faulted
                         # in afresh, and features took twice as long. Workers we start keep glibc's
                         # defaults; on other clusters _tune_worker_malloc restores large thresholds.
                         "distributed.nanny.pre-spawn-environ": {}})
        cluster = LocalCluster(n_workers=workers, threads_per_worker=max(config.threads, 1), processes=True,
                               memory_limit=f"{int(config.ram_budget_mb)}MiB", dashboard_address=":0")
        client = Client(cluster)
    elif scheduler == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster  # noqa: PLC0415
        except ImportError:
            raise UsageError("--scheduler local-cuda needs dask-cuda (pip install dask-cuda)") from None
        client = Client(LocalCUDACluster())
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except Exception as exc:  # OSError, TimeoutError from the comm layer
            raise UsageError(f"--scheduler {scheduler}: cannot connect ({type(exc).__name__}: {exc})") from None
    log.info("Running on Dask: %s with %d worker(s)", scheduler, len(client.scheduler_info().get("workers", {})))
    return client


def disconnect(client: Any, config: RunConfig) -> None:
    """Close the client, and the cluster if this run started it."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and (config.scheduler or "").startswith("local"):
        cluster.close()


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to compute one lane's blocks (picklable)."""

    lane_path: str
    lane_axes: str
    mask_path: str | None
    cwd: str
    stack_along: str
    device: str
    plan: FeaturePlan
    source: str
    n_classes: int
    channels: tuple[int, int]
    transform: ExportTransform
    region: dict[str, tuple[int, int]]
    out_axes: str
    array_path: str | None  # Zarr outputs: the worker writes here
    partial_path: str | None


def completed(futures: Sequence[Any]) -> Any:
    """The futures in the order they finish (``dask.distributed.as_completed``)."""
    from dask.distributed import as_completed  # noqa: PLC0415

    return as_completed(futures)


_WORKER_STATE = threading.local()
_MALLOC_TUNED = False


def _tune_worker_malloc() -> None:
    """Large glibc mmap/trim thresholds in this worker process (see ``connect``); once, Linux only."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: glibc's adaptive maximum
    except (OSError, AttributeError):
        pass


def _worker_task(job: BlockJob, forest: Any, block: Block) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Compute one block on a worker; write it (Zarr) or return where it goes and its data."""
    from ..backend import select_backend  # noqa: PLC0415
    from ..io.stacks import open_input  # noqa: PLC0415
    from .export_plan import open_mask  # noqa: PLC0415
    from .lane import Lane  # noqa: PLC0415
    from .pixel import BlockTask, compute_block  # noqa: PLC0415

    _tune_worker_malloc()
    cache = getattr(_WORKER_STATE, "tasks", None)
    if cache is None:
        cache = _WORKER_STATE.tasks = {}
    key = (job.lane_path, job.mask_path, id(forest), job.source, job.channels)
    task = cache.get(key)
    if task is None:
        config = RunConfig(project="", inputs=[], cwd=job.cwd, stack_along=job.stack_along)
        lane = Lane(open_input(job.lane_path, job.cwd, job.stack_along), job.lane_axes)
        mask = open_mask(config, job.mask_path) if job.mask_path else None
        task = BlockTask(select_backend(job.device), lane, job.plan, forest, job.source, job.n_classes,
                         slice(*job.channels), mask, 1)
        cache.clear()  # one lane at a time per worker thread keeps file handles bounded
        cache[key] = task
    where, data = place(block, compute_block(task, block), job.transform, job.region, job.out_axes)
    if job.array_path is None:
        return where, data
    from ..io.zarr_io import mark_done, write_region  # noqa: PLC0415

    write_region(job.array_path, where, data)
    mark_done(job.partial_path, block_id(block))
    return None


def run_on_cluster(
    client: Any,
    config: RunConfig,
    lane_plan: Any,
    task: Any,
    forest: Any,
    blocks: Sequence[Block],
    writer: Any,
    advance: Callable[[], None],
) -> None:
    """Run ``blocks`` as cluster tasks; Zarr outputs are written by the workers themselves."""
    parallel = hasattr(writer, "array_path")
    job = BlockJob(
        lane_path=lane_plan.path, lane_axes=lane_plan.lane_axes, mask_path=lane_plan.mask_path, cwd=config.cwd,
        stack_along=config.stack_along, device="cpu" if task.backend.name == "cpu" else config.device,
        plan=lane_plan.plan, source=task.source, n_classes=task.n_classes,
        channels=(task.channels.start, task.channels.stop), transform=lane_plan.transform, region=lane_plan.region,
        out_axes=lane_plan.out_axes, array_path=writer.array_path if parallel else None,
        partial_path=writer.tmp_path if parallel else None,
    )
    forest_future = client.scatter(forest, broadcast=True) if forest is not None else None
    futures = client.map(_worker_task, [job] * len(blocks), [forest_future] * len(blocks), list(blocks), pure=False)
    for future in completed(futures):
        result = future.result()
        if result is not None:
            where, data = result
            writer.write(where, data)
        advance()
