"""Object Classification on a Dask cluster (``--scheduler``): each lane is one task.

A worker opens the lane's inputs, labels its objects, computes their features and classes with
its own backend, and writes the lane's images and table, exactly as one process does (the same
:func:`~gpuheadless.objects.workflow` functions run there). The client decides everything once
(project, classifiers, export source, outputs), waits for the tasks and reports failed lanes.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ObjectOptions, RunConfig
from ..errors import UserError
from ..project.objects import ObjectProject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectLaneJob:
    """What a worker needs for any lane of the run (picklable).

    ``project`` holds the classifiers the client resolved (a Pixel + Object project's pixel stage
    too), so no worker trains or reads the project again. ``budget`` is the bytes one task may use
    on the smallest worker (each worker thread runs one lane at a time). ``run_lane`` is the
    module-level function that computes and writes one lane on the worker.
    """

    config: RunConfig
    options: ObjectOptions
    source: str
    project: ObjectProject
    budget: float
    run_lane: Callable[["ObjectLaneJob", str, str], list[str]]


def run_lanes_on_cluster(config: RunConfig, job: ObjectLaneJob, lanes: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Run every ``(raw, second)`` lane as a task on the cluster of ``config.scheduler``.

    Returns
    -------
    written : list of str
    failures : list of str
        One line per lane that failed on its worker (the others go on).

    Raises
    ------
    ClusterLost
        The scheduler or every worker went away (``--worker_timeout``).
    """
    from ..pipeline.distributed import cluster_budget, completed, connect, disconnect  # noqa: PLC0415

    client = connect(config)
    written: list[str] = []
    failures: list[str] = []
    try:
        budget = cluster_budget(client, config)
        job = dataclasses.replace(job, budget=budget.per_block)
        futures = {client.submit(_lane_task, job, raw, second, pure=False): k for k, (raw, second) in enumerate(lanes)}
        outcomes: dict[int, Any] = {}
        for future, value in completed(list(futures), client, config):
            if isinstance(value, BaseException) and not isinstance(value, UserError):
                raise value
            outcomes[futures[future]] = value
        for k in sorted(outcomes):  # reported in the order of the inputs, as one process does
            value = outcomes[k]
            if isinstance(value, UserError):
                failures.append(str(value))
                log.error("%s", value)
            else:
                written += value
    finally:
        disconnect(client, config)
    return written, failures


def _lane_task(job: ObjectLaneJob, raw_path: str, second_path: str) -> list[str] | UserError:
    """One lane, on a worker: the files written, or the lane's failure as a value (a failed
    input is an outcome of the batch, not an error of the worker for Dask to log and retry)."""
    try:
        return job.run_lane(job, raw_path, second_path)
    except UserError as exc:
        return exc
