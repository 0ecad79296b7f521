"""Blocks as tasks on a Dask cluster (``--scheduler``); needs the ``cluster`` extra.

``--scheduler ADDRESS`` connects to a running ``dask.distributed`` scheduler (e.g. one started by
dask-jobqueue on SLURM), ``local[:N]`` starts a LocalCluster of N worker processes, and
``local-cuda`` (with dask-cuda) one worker per visible GPU. Each task computes one block with
the same pure function as a single-process run; for Zarr outputs the worker writes its block
into its own chunks and records it as finished, so a task Dask reruns after losing a worker
rewrites the same bytes, and ``--resume`` skips finished blocks. Other formats get the blocks
back on the client, which writes them (one writer: slower, same result).

The blocks are sized for the workers, not for the client: before a lane is planned every worker
is asked for its Dask memory limit, its ``LAZYFLOW_TOTAL_RAM_MB``, its resident memory, its
threads and (where it computes on a GPU) its free GPU memory; the smallest budget per block
decides (:func:`cluster_budget`). The forest reaches the workers as the result of a task that
holds it, not as scattered data, so when the workers holding it are lost the scheduler makes it
again on the next worker. With no worker for ``--worker_timeout`` seconds (all jobs cancelled or
timed out, none started) the run stops with :class:`ClusterLost`, one line; finished blocks of
Zarr outputs are kept for ``--resume``.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..config import RunConfig, trim_heap
from ..errors import UsageError, UserError
from ..export import ExportTransform
from ..features.plan import FeaturePlan
from .block_runner import _BLOCK_SHARE, _GPU_SHARE, _MIN_BLOCK_BUDGET, block_id, place
from .blocks import Block

log = logging.getLogger(__name__)

_MIB = 2**20
_POLL_S = 0.5  # how often the client looks at the cluster while it waits for blocks
_FETCH_S = 30.0  # fetching one finished block's result (a lost one is waited for again)
_RESUME_HINT = "finished blocks are kept; rerun with --resume"
_TERMINATE = 0.95  # Dask's default: a worker past 95 % of its memory limit is ended


class ClusterLost(UserError):
    """The cluster cannot go on (no workers, a block that kills its workers, the scheduler gone).

    Stops the whole batch, not one lane: every other lane would wait for the same workers.
    """


def connect(config: RunConfig) -> Any:
    """A ``dask.distributed.Client`` for ``config.scheduler``, with at least one worker."""
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
        # Each worker gets LAZYFLOW_TOTAL_RAM_MB as a process does (the default, half of the available
        # memory, is shared by the workers), as a Dask limit whose 95 % (where Dask ends a worker) is it.
        per_worker = config.ram_budget_mb
        if os.environ.get("LAZYFLOW_TOTAL_RAM_MB", "").strip() in ("", "0"):
            per_worker = max(per_worker / workers, 500.0)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=max(config.threads, 1), processes=True,
                               memory_limit=f"{int(per_worker / _TERMINATE)}MiB", dashboard_address=":0")
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
    try:
        wait_for_workers(client, config)
    except BaseException:
        disconnect(client, config)
        raise
    log.info("Running on Dask: %s with %d worker(s)", scheduler, len(_nthreads(client)))
    return client


def disconnect(client: Any, config: RunConfig) -> None:
    """Close the client, and the cluster if this run started it."""
    cluster = getattr(client, "cluster", None)
    try:
        client.close(timeout=10)
    except Exception:  # the scheduler is gone already  # noqa: BLE001
        pass
    if cluster is not None and (config.scheduler or "").startswith("local"):
        cluster.close()


def _nthreads(client: Any, timeout: float = 30) -> dict[str, int]:
    """Threads per worker address, asked from the scheduler now (raises OSError/TimeoutError when it is gone)."""
    return client.sync(client.scheduler.ncores, callback_timeout=timeout)


def _cancelled(client: Any, config: RunConfig) -> ClusterLost:
    """Why the scheduler cancelled this run's tasks: it is gone, or it dropped them."""
    try:
        _nthreads(client, timeout=5)
    except Exception as exc:  # noqa: BLE001 - comm errors of every kind
        why = f"lost the Dask scheduler {config.scheduler} ({type(exc).__name__})"
    else:
        why = f"the Dask scheduler {config.scheduler} cancelled this run's tasks"
    return ClusterLost(f"{why}; {_RESUME_HINT}")


def _stopped(client: Any) -> ClusterLost | None:
    return getattr(client, "_gpuheadless_lost", None)


def _stop(client: Any, error: ClusterLost) -> ClusterLost:
    """Record that the cluster is lost, so lanes running beside this one stop at once too."""
    if _stopped(client) is None:
        client._gpuheadless_lost = error
    return _stopped(client)


def wait_for_workers(client: Any, config: RunConfig) -> None:
    """Return once the scheduler has a worker; raise :class:`ClusterLost` after ``--worker_timeout``."""
    lost = _stopped(client)
    if lost is not None:
        raise lost
    try:
        if _nthreads(client):
            return
    except Exception as exc:  # noqa: BLE001 - comm errors of every kind
        raise _stop(client, ClusterLost(f"lost the Dask scheduler {config.scheduler} ({type(exc).__name__}); "
                                        f"{_RESUME_HINT}")) from None
    timeout = config.worker_timeout_s
    log.info("No Dask worker on %s yet; waiting up to %g s (--worker_timeout)", config.scheduler, timeout)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:  # TimeoutError, or the scheduler went away  # noqa: BLE001
        raise _stop(client, ClusterLost(
            f"no Dask worker on the scheduler {config.scheduler} for {timeout:g} s (--worker_timeout); "
            f"start workers (cluster.adapt) or wait longer; {_RESUME_HINT}")) from None


# -- the workers' budgets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerMemory:
    """What one worker said about its memory (see :func:`_probe_worker`)."""

    address: str
    host: str
    nthreads: int
    memory_limit: int | None  # Dask's limit for the worker process, bytes (None: no limit)
    guard: float  # the share of the limit the blocks may reach: Dask pauses (or kills) the worker above it
    env_ram_mb: float | None  # LAZYFLOW_TOTAL_RAM_MB in the worker's environment
    default_ram_mb: float  # half of the memory available on the worker's machine
    resident: int  # the worker process's resident memory now, bytes
    gpu_free: int | None  # free memory of the worker's GPU, bytes (None: computes on the CPU)
    error: str | None = None
    gpu_id: str | None = None  # the worker's GPU (its PCI bus id): workers naming the same one share it


def _probe_worker(device: str, dask_worker: Any = None) -> dict[str, Any]:
    """Run on a worker (``client.run``): its memory limit, budget variables, resident memory, GPU."""
    import dask  # noqa: PLC0415

    from ..config import ram_budget_from_env, resident_memory_mb  # noqa: PLC0415

    error = None
    env_ram = None
    if os.environ.get("LAZYFLOW_TOTAL_RAM_MB", "").strip() not in ("", "0"):
        try:
            env_ram = ram_budget_from_env()
        except UsageError as exc:
            error = str(exc)
    manager = getattr(dask_worker, "memory_manager", None)
    limit = getattr(manager, "memory_limit", None) or None
    fractions = [getattr(manager, "memory_pause_fraction", False),
                 dask.config.get("distributed.worker.memory.terminate", False)]
    fractions = [f for f in fractions if f]
    gpu_free = gpu_id = None
    if device != "cpu":
        try:
            gpu_free = worker_backend(device).device_free_bytes()
            gpu_id = worker_backend(device).device_id()
        except UsageError as exc:  # --device gpu on a worker without one
            error = str(exc)
    state = getattr(dask_worker, "state", None)
    nthreads = getattr(state, "nthreads", None) or getattr(dask_worker, "nthreads", 1)
    trim_heap()  # what the last blocks freed is reused by the next ones: count only what is held
    return {"host": socket.gethostname(), "nthreads": int(nthreads), "memory_limit": int(limit) if limit else None,
            "guard": float(min(fractions)) if fractions else 1.0, "env_ram_mb": env_ram,
            "default_ram_mb": ram_budget_from_env({}), "resident": int(resident_memory_mb() * _MIB),
            "gpu_free": gpu_free, "gpu_id": gpu_id, "error": error}


def task_budget(worker: WorkerMemory, workers_on_host: int = 1, gpu_memory_mb: float | None = None,
                workers_on_gpu: int = 1) -> float:
    """Bytes one block may use on ``worker`` (each of its threads computes one block at a time).

    The ceiling is the smaller of the worker's ``LAZYFLOW_TOTAL_RAM_MB`` and the share of its Dask
    memory limit below which Dask neither pauses nor kills it; with neither, half of its machine's
    available memory shared by the workers on that machine. What the worker holds already is
    taken off, 85 % of the rest is for blocks, split between its threads; on a GPU also at most
    80 % of the free GPU memory (and ``--gpu_memory_mb``) per thread, the GPU shared by the
    ``workers_on_gpu`` workers that compute on it.
    """
    ceilings = []
    if worker.env_ram_mb:
        ceilings.append(worker.env_ram_mb * _MIB)
    if worker.memory_limit:
        ceilings.append(worker.memory_limit * worker.guard)
    if not ceilings:
        ceilings.append(worker.default_ram_mb * _MIB / max(workers_on_host, 1))
    budget = max((min(ceilings) - worker.resident) * _BLOCK_SHARE, _MIN_BLOCK_BUDGET) / max(worker.nthreads, 1)
    if worker.gpu_free is not None:
        gpu = worker.gpu_free * _GPU_SHARE / max(worker.nthreads, 1) / max(workers_on_gpu, 1)
        if gpu_memory_mb is not None:
            gpu = min(gpu, gpu_memory_mb * _MIB)
        budget = min(budget, gpu)
    return budget


@dataclass(frozen=True)
class ClusterBudget:
    """The budget of one block on the cluster: the smallest worker's, and all workers' threads."""

    per_block: float
    threads: int
    workers: int
    smallest: WorkerMemory

    def describe(self) -> str:
        w = self.smallest
        said = [f"{w.nthreads} thread(s)", f"resident {w.resident / _MIB:.0f} MiB"]
        if w.memory_limit:
            said.insert(0, f"Dask memory limit {w.memory_limit / _MIB:.0f} MiB")
        if w.env_ram_mb:
            said.insert(0, f"LAZYFLOW_TOTAL_RAM_MB={w.env_ram_mb:g}")
        if w.gpu_free is not None:
            said.append(f"{w.gpu_free / _MIB:.0f} MiB free on its GPU")
        return (f"{self.workers} worker(s), {self.threads} thread(s); blocks sized for {self.per_block / _MIB:.0f} MiB "
                f"each, the smallest worker's budget ({w.address}: {', '.join(said)})")


def plan_budget(workers: Sequence[WorkerMemory], gpu_memory_mb: float | None = None) -> ClusterBudget:
    """The block budget that fits every worker: the smallest per-block budget among them."""
    hosts: dict[str, int] = {}
    gpus: dict[tuple[str, str | None], int] = {}
    for w in workers:
        hosts[w.host] = hosts.get(w.host, 0) + 1
        gpus[(w.host, w.gpu_id)] = gpus.get((w.host, w.gpu_id), 0) + 1
    budgets = [(task_budget(w, hosts[w.host], gpu_memory_mb, gpus[(w.host, w.gpu_id)]), w) for w in workers]
    per_block, smallest = min(budgets, key=lambda pair: pair[0])
    return ClusterBudget(per_block, sum(max(w.nthreads, 1) for w in workers), len(workers), smallest)


def cluster_budget(client: Any, config: RunConfig) -> ClusterBudget:
    """Ask every worker for its memory and plan for the smallest (waits for a worker first).

    The client's own ``LAZYFLOW_TOTAL_RAM_MB`` does not decide: the blocks run on the workers.
    """
    for _ in range(3):  # a worker may leave while it is asked
        wait_for_workers(client, config)
        try:
            answers = client.run(_probe_worker, config.device, on_error="return")
        except Exception as exc:  # noqa: BLE001 - the scheduler went away
            raise _stop(client, ClusterLost(f"lost the Dask scheduler {config.scheduler} ({type(exc).__name__}); "
                                            f"{_RESUME_HINT}")) from None
        workers = [WorkerMemory(address, **answer) for address, answer in sorted(answers.items())
                   if isinstance(answer, dict)]
        errors = sorted({w.error for w in workers if w.error})
        if errors:
            raise UsageError(f"Dask worker: {errors[0]}")
        if workers:
            budget = plan_budget(workers, config.gpu_memory_mb)
            said = getattr(client, "_gpuheadless_said", None)
            line = budget.describe()
            (log.debug if said == line else log.info)("Dask: %s", line)
            client._gpuheadless_said = line
            return budget
    raise _stop(client, ClusterLost(f"the Dask workers on {config.scheduler} did not answer; {_RESUME_HINT}"))


# -- the blocks as tasks -------------------------------------------------------------------------------


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
    stored_axes: str | None = None  # the Zarr array's axis order (OME-Zarr: t, c, z, y, x)


def completed(futures: Sequence[Any], client: Any = None, config: RunConfig | None = None) -> Iterator[tuple[Any, Any]]:
    """``(future, result)`` as the futures finish (the result is the exception for a failed one).

    Waits in short steps and asks the scheduler for its workers in between, so a cluster whose
    jobs were all cancelled never makes the client wait for ever: :class:`ClusterLost` after
    ``--worker_timeout`` s without workers. A future that finished but whose result was lost
    with its worker before it was fetched is waited for again (Dask computes it again).
    """
    from concurrent.futures import CancelledError  # noqa: PLC0415

    from dask.distributed import wait  # noqa: PLC0415

    pending = set(futures)
    alone_since: float | None = None
    while pending:
        try:
            done, pending = wait(list(pending), timeout=_POLL_S, return_when="FIRST_COMPLETED")
            pending = set(pending)
        except TimeoutError:
            done = set()
        except CancelledError as exc:  # the scheduler cancelled some (or the connection to it is lost)
            cancelled = [f for f in pending if f.cancelled()]
            if not cancelled:
                raise
            yield cancelled[0], exc
            pending -= set(cancelled[:1])
            continue
        fetched = False
        for future in done:
            try:
                value = future.result(timeout=_FETCH_S)
            except TimeoutError:  # lost with its worker since: pending again
                pending.add(future)
                continue
            except Exception as exc:  # noqa: BLE001 - the task's own error, KilledWorker, cancelled
                value = exc
            fetched = True
            yield future, value
        if client is None or config is None or fetched:
            alone_since = None
            continue
        lost = _stopped(client)
        if lost is not None:
            raise lost
        try:
            workers = len(_nthreads(client))
        except Exception as exc:  # noqa: BLE001 - the scheduler is gone: comm errors of every kind
            workers, why = 0, f"lost the Dask scheduler {config.scheduler} ({type(exc).__name__})"
        else:
            why = "all Dask workers lost"
        if workers:
            alone_since = None
            continue
        if alone_since is None:
            alone_since = time.monotonic()
            log.warning("%s; waiting up to %g s for workers (--worker_timeout)", why, config.worker_timeout_s)
        elif time.monotonic() - alone_since > config.worker_timeout_s:
            raise _stop(client, ClusterLost(f"{why} (none for {config.worker_timeout_s:g} s); {_RESUME_HINT}"))


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


def _hold(value: Any) -> Any:
    """The task whose result is the forest on the workers (see :func:`_shared`)."""
    return value


_SHARED_LOCK = threading.Lock()


def _shared(client: Any, value: Any) -> Any:
    """A future holding ``value`` on the cluster, one per run and value.

    Not ``client.scatter``: scattered data that every worker holding it loses is lost for good
    (the tasks needing it fail with "lost scattered data"). A task's result is made again by the
    scheduler from the task, which keeps the value, on whichever worker needs it next.
    """
    with _SHARED_LOCK:
        held = client.__dict__.setdefault("_gpuheadless_shared", {})
        entry = held.get(id(value))
        if entry is None or entry[0] is not value:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "large object in the task graph": once per run, on purpose
                entry = held[id(value)] = (value, client.submit(_hold, value, pure=False))
        return entry[1]


def _models(client: Any, forest: Any, upstream: tuple) -> tuple[Any, tuple]:
    """``(forest, upstream stages)``; the same tuple for every lane of a Pixel Classification run,
    so its forest is sent to the cluster once."""
    if upstream:
        return forest, upstream
    with _SHARED_LOCK:
        return client.__dict__.setdefault("_gpuheadless_models", {}).setdefault(id(forest), (forest, ()))


@functools.lru_cache(maxsize=None)
def worker_backend(device: str, threads: int = 1) -> Any:
    """This worker process's backend for ``--device`` ``device``, chosen once per process: workers
    keep their own device choice (a worker with a usable GPU uses it under ``auto``)."""
    from ..backend import select_backend  # noqa: PLC0415

    return select_backend(device, threads)


def _worker_task(job: BlockJob, models: Any, block: Block) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Compute one block on a worker; write it (Zarr) or return where it goes and its data."""
    from ..io.stacks import open_input  # noqa: PLC0415
    from .export_plan import open_mask  # noqa: PLC0415
    from .lane import Lane  # noqa: PLC0415
    from .block_task import BlockTask, compute_block  # noqa: PLC0415

    _tune_worker_malloc()
    cache = getattr(_WORKER_STATE, "tasks", None)
    if cache is None:
        cache = _WORKER_STATE.tasks = {}
    forest, upstream = models if models is not None else (None, ())
    key = (job.lane_path, job.mask_path, id(models), job.source, job.channels)
    task = cache.get(key)
    if task is None:
        lane = Lane(open_input(job.lane_path, job.cwd, job.stack_along), job.lane_axes)
        mask = open_mask(job.mask_path, job.cwd, job.stack_along) if job.mask_path else None
        task = BlockTask(worker_backend(job.device), lane, job.plan, forest, job.source, job.n_classes,
                         slice(*job.channels), mask, 1, upstream=upstream)
        cache.clear()  # one lane at a time per worker thread keeps file handles bounded
        cache[key] = task
    where, data = place(block, compute_block(task, block), job.transform, job.region, job.out_axes)
    if job.array_path is None:
        return where, data
    from ..io.zarr_io import mark_done, write_region  # noqa: PLC0415

    write_region(job.array_path, where, data, job.out_axes, job.stored_axes)
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
    """Run ``blocks`` as cluster tasks; Zarr outputs are written by the workers themselves.

    Raises :class:`ClusterLost` (one line) when the cluster cannot finish them.
    """
    from dask.distributed import CancelledError  # noqa: PLC0415
    from distributed.scheduler import KilledWorker  # noqa: PLC0415

    parallel = hasattr(writer, "array_path")
    job = BlockJob(
        lane_path=lane_plan.path, lane_axes=lane_plan.lane_axes, mask_path=lane_plan.mask_path, cwd=config.cwd,
        stack_along=config.stack_along, device=config.device,  # the workers' own devices, not the client's
        plan=lane_plan.plan, source=task.source, n_classes=task.n_classes,
        channels=(task.channels.start, task.channels.stop), transform=lane_plan.transform, region=lane_plan.region,
        out_axes=lane_plan.out_axes, array_path=writer.array_path if parallel else None,
        partial_path=writer.tmp_path if parallel else None, stored_axes=getattr(writer, "stored_axes", None),
    )
    # the classifiers travel once per worker, as a task's result: the exported stage's and, for
    # Autocontext, the stages before it
    models = _shared(client, _models(client, forest, task.upstream)) if forest is not None or task.upstream else None
    futures = client.map(_worker_task, [job] * len(blocks), [models] * len(blocks), list(blocks), pure=False)
    names = {future.key: block for future, block in zip(futures, blocks)}
    unfinished = set(futures)
    try:
        for future, result in completed(futures, client, config):
            if isinstance(result, KilledWorker):
                block = names.get(future.key)
                raise _stop(client, ClusterLost(
                    f"input '{lane_plan.path}': Dask gave up on block {block_id(block) if block else future.key} "
                    f"(t-z-y-x) after the workers computing it died (out of memory? see the workers' logs; "
                    f"a smaller LAZYFLOW_TOTAL_RAM_MB on the workers makes smaller blocks); {_RESUME_HINT}"))
            if isinstance(result, CancelledError):
                raise _stopped(client) or _stop(client, _cancelled(client, config))
            if isinstance(result, BaseException):
                raise result  # the block's own error (an input changed, a full disk ...)
            unfinished.discard(future)
            future.release()  # a finished block is not computed again when its worker is lost later
            if result is not None:
                where, data = result
                writer.write(where, data)
            advance()
    finally:
        if unfinished:  # a failure or a stop: blocks not computed yet are dropped
            client.cancel(list(unfinished))
