"""Object Classification on a Dask cluster (``--scheduler``): lanes and time points as tasks.

A lane with one time point (or a Pixel + Object lane, whose pixel stage covers the whole lane)
is one task: a worker opens its inputs, labels its objects, computes their features and classes
with its own backend and writes the lane's images and table. A lane with several time points is
one task per time point: workers label and measure them, and the client writes the lane's
images and table from their results. Either way the same
:mod:`~gpuheadless.objects.workflow` functions run as in one process, so the outputs are the same.
The client decides everything once (project, classifiers, export source, outputs), waits for the
tasks and reports failed lanes in the order of the inputs.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..config import ObjectOptions, RunConfig
from ..errors import UserError
from ..pipeline.lane import Lane
from ..project.objects import ObjectProject
from .labeling import ObjectIds

log = logging.getLogger(__name__)

LaneHere = Callable[[str, str, Callable[[Lane, Lane], list[tuple]]], list[str]]


@dataclass(frozen=True)
class ObjectLaneJob:
    """What a worker needs for any lane or time point of the run (picklable).

    ``project`` holds the classifiers the client resolved (a Pixel + Object project's pixel stage
    too), so no worker trains or reads the project again. ``budget`` is the bytes one task may use
    on the smallest worker (each worker thread runs one task at a time). ``run_lane`` computes
    and writes one lane on a worker; ``run_time_point`` computes one time point there.
    """

    config: RunConfig
    options: ObjectOptions
    source: str
    project: ObjectProject
    budget: float
    run_lane: Callable[["ObjectLaneJob", str, str], list[str]]
    run_time_point: Callable[["ObjectLaneJob", str, str, int], "TimePointResult"]


@dataclass(frozen=True)
class TimePointResult:
    """One time point's objects as a worker sends them back: the ids as a (Z, Y, X) uint32 volume,
    the rest as :func:`~gpuheadless.objects.workflow.lane_results` has them."""

    labels: np.ndarray
    n_objects: int
    boxes: np.ndarray
    original: np.ndarray | None
    probabilities: np.ndarray | None
    features: dict
    raw_nonfinite: bool
    second_nonfinite: bool

    def result(self) -> tuple[ObjectIds, Any, dict]:
        labels = self.labels
        ids = ObjectIds(labels.shape, self.n_objects, self.boxes, lambda region: labels[region], self.original)
        return ids, self.probabilities, self.features


def run_lanes_on_cluster(config: RunConfig, job: ObjectLaneJob, lanes: list[tuple[str, str]],
                         time_points: dict[int, int], lane_here: LaneHere) -> tuple[list[str], list[str]]:
    """Run the ``(raw, second)`` lanes on the cluster of ``config.scheduler``.

    Parameters
    ----------
    time_points : dict
        Lane index to its number of time points, for the lanes split into one task per time
        point; the others are one task each.
    lane_here : callable
        ``(raw, second, time_points) -> files``: writes a split lane on the client from its
        time points' results (``time_points(raw lane, second lane) -> results``).

    Returns
    -------
    written : list of str
    failures : list of str
        One line per lane that failed (the others go on).

    Raises
    ------
    ClusterLost
        The scheduler or every worker went away (``--worker_timeout``).
    """
    from ..pipeline.distributed import cluster_budget, completed, connect, disconnect  # noqa: PLC0415

    client = connect(config)
    outcomes: dict[int, list[str] | UserError] = {}
    try:
        job = dataclasses.replace(job, budget=cluster_budget(client, config).per_block)
        whole = {client.submit(_lane_task, job, raw, second, pure=False): k
                 for k, (raw, second) in enumerate(lanes) if k not in time_points}
        parts = {k: [client.submit(_time_point_task, job, lanes[k][0], lanes[k][1], t, pure=False) for t in range(n)]
                 for k, n in time_points.items()}
        log.info("Dask: %d lane(s) as one task each, %d as %d time-point tasks", len(whole), len(parts),
                 sum(time_points.values()))
        for k, futures in parts.items():
            raw, second = lanes[k]
            try:
                outcomes[k] = lane_here(raw, second, lambda raw_lane, second_lane, futures=futures:
                                        _gathered(futures, raw_lane, second_lane, client, config))
            except UserError as exc:
                client.cancel(futures)
                outcomes[k] = exc
        for future, value in completed(list(whole), client, config):
            if isinstance(value, BaseException) and not isinstance(value, UserError):
                raise value
            outcomes[whole[future]] = value
    finally:
        disconnect(client, config)
    written: list[str] = []
    failures: list[str] = []
    for k in sorted(outcomes):  # in the order of the inputs, as one process reports them
        value = outcomes[k]
        if isinstance(value, UserError):
            failures.append(str(value))
            log.error("%s", value)
        else:
            written += value
    return written, failures


def _gathered(futures: list[Any], raw: Lane, second: Lane, client: Any, config: RunConfig) -> list[tuple]:
    """The results of a lane's time-point tasks, in time order; a failed one fails the lane."""
    from ..pipeline.distributed import completed  # noqa: PLC0415

    order = {future: t for t, future in enumerate(futures)}
    found: dict[int, TimePointResult] = {}
    for future, value in completed(futures, client, config):
        if isinstance(value, BaseException):
            raise value
        found[order[future]] = value
    for part in found.values():
        raw.nonfinite_seen |= part.raw_nonfinite
        second.nonfinite_seen |= part.second_nonfinite
    return [found[t].result() for t in range(len(futures))]


def _lane_task(job: ObjectLaneJob, raw_path: str, second_path: str) -> list[str] | UserError:
    """One lane, on a worker: the files written, or the lane's failure as a value (a failed
    input is an outcome of the batch, not an error of the worker for Dask to log and retry)."""
    try:
        return job.run_lane(job, raw_path, second_path)
    except UserError as exc:
        return exc


def _time_point_task(job: ObjectLaneJob, raw_path: str, second_path: str, t: int) -> TimePointResult | UserError:
    """One time point of a lane, on a worker (its failure as a value, as :func:`_lane_task`)."""
    try:
        return job.run_time_point(job, raw_path, second_path, t)
    except UserError as exc:
        return exc
