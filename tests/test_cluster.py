"""The cluster as a user's cluster behaves (issue 20), on in-process Dask clusters of worker processes.

Blocks sized by the workers' memory (not the client's), workers of different sizes, no worker
at all (one line, no endless wait), every worker lost mid-run (one line, then ``--resume``), the
forest made again after every worker holding it died, a block that kills its workers.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the cluster extra (dask.distributed) is not installed")
zarr = pytest.importorskip("zarr", reason="the cluster extra (zarr) is not installed")

from cli_helpers import run_cli  # noqa: E402
from gpuheadless.config import ExportOptions, RunConfig  # noqa: E402
from gpuheadless.io.zarr_io import partial_path  # noqa: E402
from gpuheadless.pipeline import distributed as dist  # noqa: E402
from gpuheadless.pipeline import pixel  # noqa: E402
from gpuheadless.pipeline.distributed import ClusterLost, WorkerMemory, plan_budget, task_budget  # noqa: E402

MIB = 2**20


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread with a Dask memory limit of 1 GiB each (nannies restart them)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                                  dashboard_address=":0") as c:
        yield c


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster.scheduler_address) as c:
        yield c
        cluster.scale(2)  # whatever the test did to the workers, the next one finds two
        c.wait_for_workers(2, timeout=60)
        c.run(lambda: os.environ.pop("LAZYFLOW_TOTAL_RAM_MB", None))


@pytest.fixture(scope="module")
def volume(tmp_path_factory, data):
    """A 60 x 120 x 110 crop of the 3D input mirrored up, and its single-process Probabilities."""
    with h5py.File(data / "inputs" / "3d.h5", "r") as f:
        base = f["data"][()]
    big = np.concatenate([base, base[::-1]], axis=0)[:60]
    big = np.concatenate([big, big[:, ::-1]], axis=1)[:, :120]
    big = np.concatenate([big, big[:, :, ::-1]], axis=2)[:, :, :110]
    folder = tmp_path_factory.mktemp("vol")
    with h5py.File(folder / "v.h5", "w") as f:
        f["data"] = big
    path = str(folder / "v.h5") + "/data"
    results, _ = pixel.run_batch(_config(data, path, str(folder / "ref.h5"), "hdf5", workers=2))
    with h5py.File(results[0].output, "r") as f:
        return path, f["exported_data"][()]


def _config(data, path, output, fmt="zarr", **extra):
    return RunConfig(project=str(data / "projects/PixelClassification3d.ilp"), inputs=[path],
                     export=ExportOptions(output_format=fmt, output_filename_format=output), threads=1,
                     ram_budget_mb=600, device="cpu", progress=False, **extra)


def _small_blocks(monkeypatch):
    """Many 40 MiB blocks, so that runs are long enough to be interrupted."""
    budget = dist.cluster_budget
    monkeypatch.setattr(dist, "cluster_budget",
                        lambda client, config: dataclasses.replace(budget(client, config), per_block=40 * MIB))


def _when_blocks_done(output, count=1, timeout=60):
    done = os.path.join(partial_path(output), ".gpuheadless-done")
    deadline = time.time() + timeout
    while time.time() < deadline and not (os.path.isdir(done) and len(os.listdir(done)) >= count):
        time.sleep(0.02)
    return len(os.listdir(done)) if os.path.isdir(done) else 0


def _worker(address="w", host="h", nthreads=1, limit_mib=None, guard=0.8, env=None, default=8000, resident_mib=200,
            gpu_free_mib=None):
    return WorkerMemory(address, host, nthreads, limit_mib * MIB if limit_mib else None, guard, env, default,
                        resident_mib * MIB, gpu_free_mib * MIB if gpu_free_mib is not None else None)


def test_workers_sharing_one_gpu_share_its_memory():
    """Issue 14's defect 9: two workers of one machine on the same GPU each plan for half of it;
    on two GPUs each has its own."""
    one = _worker(address="a", limit_mib=64_000, gpu_free_mib=8000)
    alone = plan_budget([dataclasses.replace(one, gpu_id="0000:01:00.0")])
    shared = plan_budget([dataclasses.replace(one, gpu_id="0000:01:00.0"),
                          dataclasses.replace(one, address="b", gpu_id="0000:01:00.0")])
    apart = plan_budget([dataclasses.replace(one, gpu_id="0000:01:00.0"),
                         dataclasses.replace(one, address="b", gpu_id="0000:02:00.0")])
    assert alone.per_block == pytest.approx(0.8 * 8000 * MIB)
    assert shared.per_block == pytest.approx(alone.per_block / 2)
    assert apart.per_block == pytest.approx(alone.per_block)


def test_the_budget_of_a_worker_and_of_workers_of_different_sizes():
    # Dask pauses a worker at 80 % of its limit: blocks stay below, after what it holds, per thread.
    assert task_budget(_worker(limit_mib=4096, nthreads=2)) == pytest.approx((4096 * 0.8 - 200) * 0.85 / 2 * MIB)
    # LAZYFLOW_TOTAL_RAM_MB on the worker, when it is the smaller ceiling
    assert task_budget(_worker(limit_mib=4096, env=1000)) == pytest.approx((1000 - 200) * 0.85 * MIB)
    assert task_budget(_worker(limit_mib=1024, env=4000)) == pytest.approx((1024 * 0.8 - 200) * 0.85 * MIB)
    # no limit and no variable: half the machine's available memory, shared by the workers on it
    assert task_budget(_worker(default=8000), workers_on_host=4) == pytest.approx((2000 - 200) * 0.85 * MIB)
    # a GPU worker: at most 80 % of its free GPU memory per thread, and --gpu_memory_mb
    assert task_budget(_worker(limit_mib=64000, nthreads=2, gpu_free_mib=10000)) == pytest.approx(4000 * MIB)
    assert task_budget(_worker(limit_mib=64000, gpu_free_mib=10000), gpu_memory_mb=1500) == pytest.approx(1500 * MIB)
    # a worker that holds more than its budget already still gets the floor of 64 MiB
    assert task_budget(_worker(limit_mib=600, resident_mib=700)) == 64 * MIB
    # Different sizes: the smallest budget per block decides (every block fits every worker); all threads count.
    big = _worker("tcp://big:1", "big", nthreads=8, limit_mib=32768)
    small = _worker("tcp://small:1", "small", nthreads=1, limit_mib=2048)
    budget = plan_budget([big, small])
    assert budget.smallest is small and budget.threads == 9 and budget.workers == 2
    assert budget.per_block == pytest.approx(task_budget(small))
    assert "tcp://small:1" in budget.describe() and "Dask memory limit 2048 MiB" in budget.describe()
    # two workers without a limit on one machine share its default budget
    pair = plan_budget([_worker("a", "h1", default=8000), _worker("b", "h1", default=8000)])
    assert pair.per_block == pytest.approx((4000 - 200) * 0.85 * MIB)


def test_blocks_are_sized_by_the_workers_memory_not_the_clients(client, data, volume, tmp_path, caplog):
    path, reference = volume
    huge = dataclasses.replace(_config(data, path, str(tmp_path / "a.zarr"), scheduler=client.scheduler.address),
                               ram_budget_mb=64000)
    budget = dist.cluster_budget(client, huge)
    resident = max(int(client.run(lambda: __import__("gpuheadless.config").config.resident_memory_mb()).get(a))
                   for a in client.nthreads())
    assert budget.threads == 2 and budget.smallest.memory_limit == 1024 * MIB
    # the worker's limit (below Dask's termination guard), not 64 GB
    assert budget.per_block <= (1024 * budget.smallest.guard - resident + 50) * 0.85 * MIB
    # LAZYFLOW_TOTAL_RAM_MB set on one worker only (a smaller job): that worker decides.
    small = sorted(client.nthreads())[0]
    client.run(lambda: os.environ.__setitem__("LAZYFLOW_TOTAL_RAM_MB", "500"), workers=[small])
    budget = dist.cluster_budget(client, huge)
    assert budget.smallest.address == small and budget.smallest.env_ram_mb == 500
    assert budget.per_block <= 500 * 0.85 * MIB
    # The run plans with that budget and gives the single process's output.
    with caplog.at_level("INFO", logger="gpuheadless"):
        results, failures = pixel.run_batch(huge)
    assert not failures
    assert "LAZYFLOW_TOTAL_RAM_MB=500" in caplog.text and "blocks sized for" in caplog.text
    array = zarr.open_array(results[0].output, mode="r")
    from gpuheadless.pipeline.blocks import block_cost_bytes

    plan = pixel.plan_lane(huge, pixel.read_project(huge.project), None, "Probabilities", "zarr", path, None).plan
    halo = (plan.max_halo,) * 3
    assert block_cost_bytes(array.chunks[:3], halo, 1, plan.n_features, 2) <= budget.per_block
    np.testing.assert_array_equal(array[...], reference)


def test_no_worker_is_one_line_after_the_timeout_not_an_endless_wait(data, volume, tmp_path, capsys):
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        started = time.monotonic()
        code, err = run_cli(["--headless", f"--project={data / 'projects/PixelClassification3d.ilp'}",
                             f"--scheduler={empty.scheduler_address}", "--worker_timeout=1", "--output_format=zarr",
                             f"--output_filename_format={tmp_path}/n.zarr", volume[0]], tmp_path, capsys)
    assert code == 1 and time.monotonic() - started < 30
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"gpuheadless: error: no Dask worker on the scheduler {empty.scheduler_address} for 1 s (--worker_timeout); "
        "start workers (cluster.adapt) or wait longer; finished blocks are kept; rerun with --resume")
    code, err = run_cli(["--headless", "--project=p.ilp", "--worker_timeout=0", "x.h5"], tmp_path, capsys)
    assert code == 2 and "--worker_timeout must be a positive number" in err


def test_all_workers_lost_is_one_line_and_resume_finishes(cluster, client, data, volume, tmp_path, capsys,
                                                          monkeypatch):
    """Every job cancelled at once (a shared walltime): one line, exit 1; --resume on new workers completes."""
    path, reference = volume
    _small_blocks(monkeypatch)
    output = str(tmp_path / "lost.zarr")
    command = ["--headless", f"--project={data / 'projects/PixelClassification3d.ilp'}", "--output_format=zarr",
               f"--scheduler={cluster.scheduler_address}", "--worker_timeout=2", f"--output_filename_format={output}",
               path]
    losing = threading.Thread(target=lambda: _when_blocks_done(output, 2) and cluster.scale(0))
    losing.start()
    started = time.monotonic()
    code, err = run_cli(command, tmp_path, capsys)
    losing.join()
    assert code == 1 and "Traceback" not in err and time.monotonic() - started < 60
    assert err.strip().splitlines()[-1] == ("gpuheadless: error: all Dask workers lost (none for 2 s); finished blocks "
                                            "are kept; rerun with --resume")
    finished = len(os.listdir(os.path.join(partial_path(output), ".gpuheadless-done")))
    blocks = zarr.open_array(partial_path(output), mode="r").nchunks
    assert 2 <= finished < blocks and not os.path.exists(output)
    cluster.scale(2)  # the jobs come back (cluster.adapt resubmits them)
    client.wait_for_workers(2, timeout=60)
    code, err = run_cli(command + ["--resume"], tmp_path, capsys)
    assert code == 0, err
    assert f"{finished} of {blocks} blocks already written" in err
    np.testing.assert_array_equal(zarr.open_array(output, mode="r")[...], reference)


def test_the_forest_is_made_again_when_every_worker_holding_it_dies(cluster, client, data, volume, tmp_path,
                                                                    monkeypatch):
    """SIGKILL every worker mid-run (the nannies start new ones): the run goes on and finishes.

    With the forest scattered, its only copies died with the workers and every remaining block
    failed with "lost scattered data"; as a task's result the scheduler computes it again.
    """
    path, reference = volume
    _small_blocks(monkeypatch)
    output = str(tmp_path / "k.zarr")
    config = _config(data, path, output, scheduler=cluster.scheduler_address, worker_timeout_s=60)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("r", pixel.run_batch(config)))
    runner.start()
    finished_at_kill = _when_blocks_done(output, 2)
    for pid in client.run(os.getpid).values():
        os.kill(pid, signal.SIGKILL)
    runner.join(120)
    results, failures = outcome["r"]
    assert not failures
    assert finished_at_kill < zarr.open_array(output, mode="r").nchunks  # killed mid-run
    np.testing.assert_array_equal(zarr.open_array(output, mode="r")[...], reference)


def test_a_block_that_kills_its_workers_is_one_line(cluster, client, data, volume, tmp_path, monkeypatch):
    """Dask gives up on a task whose workers died (KilledWorker); here after one death, as after 3 by default."""
    path, _ = volume
    _small_blocks(monkeypatch)
    output = str(tmp_path / "m.zarr")
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:
        config = _config(data, path, output, scheduler=cluster.scheduler_address, worker_timeout_s=60)
        outcome = {}

        def run():
            try:
                pixel.run_batch(config)
            except ClusterLost as exc:
                outcome["error"] = str(exc)

        runner = threading.Thread(target=run)
        runner.start()
        _when_blocks_done(output, 1)
        os.kill(client.run(os.getpid)[sorted(client.nthreads())[0]], signal.SIGKILL)
        runner.join(120)
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed))
    assert "Dask gave up on block" in outcome["error"] and "out of memory?" in outcome["error"]
    assert outcome["error"].endswith("finished blocks are kept; rerun with --resume")


def test_a_lost_scheduler_is_one_line(data, volume, tmp_path, monkeypatch):
    """cluster.py stopped mid-run (the scheduler and its workers gone): one line, the finished blocks kept."""
    path, _ = volume
    _small_blocks(monkeypatch)
    output = str(tmp_path / "s.zarr")
    gone = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    config = _config(data, path, output, scheduler=gone.scheduler_address, worker_timeout_s=2)
    outcome = {}

    def run():
        try:
            pixel.run_batch(config)
        except ClusterLost as exc:
            outcome["error"] = str(exc)

    runner = threading.Thread(target=run)
    runner.start()
    _when_blocks_done(output, 1)
    started = time.monotonic()
    gone.close()
    runner.join(120)
    assert outcome["error"].startswith(f"lost the Dask scheduler {gone.scheduler_address}")
    assert outcome["error"].endswith("finished blocks are kept; rerun with --resume")
    assert time.monotonic() - started < 60 and len(os.listdir(os.path.join(partial_path(output), ".gpuheadless-done")))


def test_local_workers_get_the_budget_of_one_process(monkeypatch):
    """--scheduler local:N: LAZYFLOW_TOTAL_RAM_MB per worker as per process; unset, the default is shared."""
    from gpuheadless.pipeline.distributed import connect, disconnect

    monkeypatch.delenv("LAZYFLOW_TOTAL_RAM_MB", raising=False)
    config = RunConfig(project="p.ilp", inputs=[], scheduler="local:2", threads=1, ram_budget_mb=2000, device="cpu")
    client = connect(config)
    try:
        limits = client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit)
        assert sorted(limits.values()) == [int(1000 / 0.95) * MIB] * 2  # Dask ends a worker at 95 %: at 1000 MiB
        budget = dist.cluster_budget(client, config)
        assert budget.per_block <= 1000 * 0.85 * MIB and budget.threads == 2
    finally:
        disconnect(client, config)
