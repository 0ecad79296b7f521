"""Dask scale-out on a LocalCluster of two worker processes: identical output, a killed worker, resume."""
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

from gpuheadless.config import ExportOptions, RunConfig  # noqa: E402
from gpuheadless.pipeline import pixel  # noqa: E402
from gpuheadless.io.zarr_io import partial_path  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def volume(tmp_path_factory, data):
    """A 60 x 120 x 110 crop of the 3D input mirrored up: several blocks with the 3D project."""
    with h5py.File(data / "inputs" / "3d.h5", "r") as f:
        base = f["data"][()]
    big = np.concatenate([base, base[::-1]], axis=0)[:60]
    big = np.concatenate([big, big[:, ::-1]], axis=1)[:, :120]
    big = np.concatenate([big, big[:, :, ::-1]], axis=2)[:, :, :110]
    path = tmp_path_factory.mktemp("vol") / "v.h5"
    with h5py.File(path, "w") as f:
        f["data"] = big
    return str(path) + "/data"


def _config(data, inputs, output, fmt="zarr", **extra):
    return RunConfig(project=str(data / "projects/PixelClassification3d.ilp"), inputs=list(inputs),
                     export=ExportOptions(output_format=fmt, output_filename_format=output), threads=1,
                     ram_budget_mb=600, device="cpu", progress=False, **extra)


def _read(path):
    if path.endswith(".zarr"):
        return zarr.open_array(path, mode="r")[...]
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def test_cluster_output_is_bit_identical_to_one_process(cluster, data, volume, tmp_path):
    single, failures = pixel.run_batch(_config(data, [volume], str(tmp_path / "one.h5"), "hdf5", workers=2))
    assert not failures and single[0].blocks > 1
    several = [volume, str(data / "inputs/3d.h5/data")]  # two inputs in flight at once
    results, failures = pixel.run_batch(_config(data, several, str(tmp_path / "{nickname}.zarr"), scheduler=cluster.scheduler_address))
    assert not failures
    np.testing.assert_array_equal(_read(results[0].output), _read(single[0].output))
    one_block, _ = pixel.run_batch(_config(data, [several[1]], str(tmp_path / "small.h5"), "hdf5"))
    np.testing.assert_array_equal(_read(results[1].output), _read(one_block[0].output))
    ome, failures = pixel.run_batch(_config(data, [volume], str(tmp_path / "ome.zarr"), "ome-zarr", scheduler=cluster.scheduler_address))
    group = zarr.open_group(ome[0].output, mode="r")
    assert [a["name"] for a in group.attrs["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]  # NGFF 0.4: by type
    np.testing.assert_array_equal(group["0"][...], np.moveaxis(_read(single[0].output), -1, 0))
    hdf5, failures = pixel.run_batch(_config(data, [volume], str(tmp_path / "client.h5"), "hdf5", scheduler=cluster.scheduler_address))
    np.testing.assert_array_equal(_read(hdf5[0].output), _read(single[0].output))  # one writer on the client


def test_a_killed_worker_loses_nothing(cluster, data, volume, tmp_path):
    reference, _ = pixel.run_batch(_config(data, [volume], str(tmp_path / "ref.h5"), "hdf5", workers=8))
    config = _config(data, [volume], str(tmp_path / "k.zarr"), scheduler=cluster.scheduler_address, workers=8)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("r", pixel.run_batch(config)))
    runner.start()
    done_dir = tmp_path / ".k.zarr.partial" / ".gpuheadless-done"
    deadline = time.time() + 60
    while time.time() < deadline and not (done_dir.exists() and os.listdir(done_dir)):
        time.sleep(0.05)
    # the worker processes' pids from their nannies: a second Client in this process while the run's
    # own one waits in another thread trips dask ("Event ... is bound to a different event loop")
    pids = sorted(nanny.pid for nanny in cluster.workers.values())
    finished_at_kill = len(os.listdir(done_dir))
    os.kill(pids[0], signal.SIGKILL)
    runner.join(180)
    assert finished_at_kill < reference[0].blocks  # the worker died mid-run
    results, failures = outcome["r"]
    assert not failures
    np.testing.assert_array_equal(_read(results[0].output), _read(reference[0].output))


def test_resume_skips_finished_blocks_and_outputs(data, volume, tmp_path, monkeypatch):
    output = str(tmp_path / "r.zarr")
    clean, _ = pixel.run_batch(_config(data, [volume], str(tmp_path / "clean.zarr"), workers=4))
    calls = {"n": 0}
    original = pixel.compute_block

    def interrupted(task, block):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # the job is cancelled after two blocks
        return original(task, block)

    monkeypatch.setattr(pixel, "compute_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pixel.run_batch(_config(data, [volume], output, workers=4))
    monkeypatch.setattr(pixel, "compute_block", original)
    assert not os.path.exists(output) and os.path.isdir(partial_path(output))
    finished = len(os.listdir(os.path.join(partial_path(output), ".gpuheadless-done")))
    blocks = zarr.open_array(partial_path(output), mode="r").nchunks  # one chunk per block
    assert 1 <= finished <= 2 and blocks > 2
    resumed, failures = pixel.run_batch(_config(data, [volume], output, workers=4, resume=True))
    assert not failures and resumed[0].blocks == blocks - finished
    np.testing.assert_array_equal(_read(output), _read(clean[0].output))
    again, _ = pixel.run_batch(_config(data, [volume], output, workers=4, resume=True))
    assert again[0].blocks == 0  # the finished output is skipped


def test_zarr_and_ome_zarr_inputs_and_the_command_line(data, volume, tmp_path, capsys):
    from cli_helpers import run_cli

    code, err = run_cli(["--headless", f"--project={data / 'projects/PixelClassification3d.ilp'}", "--export_source=Features",
                         "--output_format=ome-zarr", "--cutout_subregion=[(None,None,None,0),(None,None,None,1)]",
                         f"--output_filename_format={tmp_path}/raw.zarr", "--scheduler=local:2", volume], tmp_path, capsys)
    assert code == 0, err
    # The exported channel (Gaussian smoothing 0.3) as an input: OME-Zarr group and plain array path
    # (stored c, z, y, x as NGFF orders axes; the axes come from the image's metadata).
    for path in (str(tmp_path / "raw.zarr"), str(tmp_path / "raw.zarr/0")):
        results, failures = pixel.run_batch(_config(data, [path], str(tmp_path / "p.h5"), "hdf5"))
        assert not failures
        assert _read(results[0].output).shape == (2, 60, 120, 110)
    code, err = run_cli(["--headless", f"--project={data / 'projects/PixelClassification3d.ilp'}", "--resume",
                         "--output_format=ome-zarr", f"--output_filename_format={tmp_path}/raw.zarr", volume],
                        tmp_path, capsys)
    assert code == 0 and "Skipping" in err  # --resume: the finished output is left alone


def test_ome_zarr_pyramid_levels_take_every_second_voxel(tmp_path):
    from gpuheadless.io.zarr_io import ZarrWriter

    image = np.arange(100 * 130, dtype=np.uint16).reshape(100, 130, 1)
    writer = ZarrWriter(str(tmp_path / "p.zarr"), image.shape, image.dtype, "yxc", (40, 40, 1), {}, ome=True,
                        resolutions={"y": 0.5, "x": 0.25}, pyramid=True)
    writer.write((slice(None),) * 3, image)
    writer.commit()
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert sorted(group.array_keys()) == ["0", "1"]  # 50 x 65; a third level would be below 32
    np.testing.assert_array_equal(group["1"][...], np.moveaxis(image[::2, ::2], -1, 0))  # stored c, y, x
    scales = [d["coordinateTransformations"][0]["scale"] for d in group.attrs["multiscales"][0]["datasets"]]
    assert scales == [[1.0, 0.5, 0.25], [1.0, 1.0, 0.5]]


def test_a_cancelled_cluster_job_resumes(cluster, data, volume, tmp_path, monkeypatch):
    """The client stops after two finished blocks (a cancelled job); --resume on the cluster finishes it."""
    from gpuheadless.pipeline import distributed as dist

    output = str(tmp_path / "c.zarr")
    reference, _ = pixel.run_batch(_config(data, [volume], str(tmp_path / "ref.h5"), "hdf5", workers=8))
    original = dist.completed

    def cancelled_after_two(futures, client=None, config=None):
        for k, (future, result) in enumerate(original(futures, client, config)):
            if k == 2:
                for other in futures:
                    other.cancel()
                raise KeyboardInterrupt
            yield future, result

    monkeypatch.setattr(dist, "completed", cancelled_after_two)
    budget = dist.cluster_budget
    monkeypatch.setattr(dist, "cluster_budget",  # many small blocks
                        lambda client, config: dataclasses.replace(budget(client, config), per_block=40 * 2**20))
    config = _config(data, [volume], output, scheduler=cluster.scheduler_address, workers=8)
    with pytest.raises(KeyboardInterrupt):
        pixel.run_batch(config)
    monkeypatch.setattr(dist, "completed", original)
    time.sleep(1.0)  # let tasks already running on the workers finish or be cancelled
    finished = len(os.listdir(os.path.join(partial_path(output), ".gpuheadless-done")))
    blocks = zarr.open_array(partial_path(output), mode="r").nchunks
    assert 2 <= finished < blocks
    resumed, failures = pixel.run_batch(_config(data, [volume], output, scheduler=cluster.scheduler_address, workers=8,
                                                 resume=True))
    assert not failures and resumed[0].blocks == blocks - finished
    np.testing.assert_array_equal(_read(output), _read(reference[0].output))
