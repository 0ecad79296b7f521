"""The README's SLURM recipe, run as a user runs it (issue 20). Opt-in, like the live ilastik suite.

Runs only with ``GPUHEADLESS_SLURM=1``, a SLURM answering ``sinfo`` with an idle node
(``../shared/tools/setup-slurm.sh`` starts a single-node one on loopback) and dask-jobqueue
installed. The README's ``cluster.py`` block is taken verbatim from README.md, with the values
of this machine put in (``cores=1``, ``memory``, ``interface="lo"``, 2 jobs), started as a
user starts it, and ``gpuheadless`` is run as a subprocess against its fixed port:

1. the output is identical to one process, on a volume whose blocks must be sized for the
   workers (one block of the whole volume needs more than a worker's memory), with the
   ``gpuheadless`` process's own budget at its default (half of this machine's memory);
2. a ``scancel`` of one job mid-run: the run finishes identically, ``adapt`` replaces the job;
3. every job cancelled mid-run: the run waits, ``adapt``'s new jobs finish it identically;
4. every job cancelled with a short ``--worker_timeout``: one line, exit 1, then ``--resume``
   finishes identically.

``GPUHEADLESS_SLURM_SHAPE`` (default ``256,512,512``) and ``GPUHEADLESS_SLURM_MEMORY`` (default
``4GB``, per job) change the case; ``GPUHEADLESS_SLURM_REPORT=path.json`` writes the figures.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPE = tuple(int(n) for n in os.environ.get("GPUHEADLESS_SLURM_SHAPE", "256,512,512").split(","))
MEMORY = os.environ.get("GPUHEADLESS_SLURM_MEMORY", "4GB")
JOBS = 2
PORT = 8786
ADDRESS = f"tcp://127.0.0.1:{PORT}"
FIGURES: dict[str, object] = {"shape": SHAPE, "job_memory": MEMORY, "jobs": JOBS}


def _why_not() -> str | None:
    if os.environ.get("GPUHEADLESS_SLURM") != "1":
        return "opt-in: set GPUHEADLESS_SLURM=1 with a running SLURM (../shared/tools/setup-slurm.sh)"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM commands (sinfo, sbatch)"
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "sinfo does not answer"
    if not re.search(r"\b(idle|mix)\b", state):
        return f"no idle SLURM node (sinfo: {state.strip()!r})"
    try:
        import dask_jobqueue  # noqa: F401, PLC0415
        import distributed  # noqa: F401, PLC0415
        import zarr  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"needs dask-jobqueue and the cluster extra ({exc})"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def recipe(readme: Path = ROOT / "README.md", memory: str = MEMORY, jobs: int = JOBS) -> str:
    """README.md's ``cluster.py``, with this machine's values put in."""
    block = re.search(r"```python\n(# cluster\.py.*?)```", readme.read_text(), re.S)
    assert block, "README.md has no cluster.py block"
    text = block.group(1)
    for old, new in (("cores=8", "cores=1"), ('memory="32GB"', f'memory="{memory}"'),
                     ('interface="ib0"', 'interface="lo"'),
                     ("minimum_jobs=10, maximum_jobs=10", f"minimum_jobs={jobs}, maximum_jobs={jobs}"),
                     ('"port": 8786', f'"port": {PORT}')):
        assert old in text, f"README's cluster.py no longer has {old}"
        text = text.replace(old, new)
    return text


def _jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", "dask-worker", "-o", "%i %T"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.split()[1:] == ["RUNNING"])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """``python cluster.py`` running, with its jobs' workers connected; stopped with Enter at the end."""
    import distributed  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("slurm")
    (folder / "cluster.py").write_text(recipe())
    log = open(folder / "cluster.log", "w")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "cluster.py"], cwd=folder, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        address = process.stdout.readline().strip()
        assert address == ADDRESS, f"cluster.py printed {address!r}; see {folder / 'cluster.log'}"
        client = distributed.Client(ADDRESS, timeout="30s")
        client.wait_for_workers(JOBS, timeout=300)
        FIGURES["cluster_start_s"] = round(time.monotonic() - started, 1)
        yield {"folder": folder, "client": client, "process": process}
        client.close()
    finally:
        try:
            process.stdin.write("\n")
            process.stdin.flush()
            process.wait(timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
        subprocess.run(["scancel", "-n", "dask-worker"], check=False)
        log.close()
        report = os.environ.get("GPUHEADLESS_SLURM_REPORT")
        if report:
            Path(report).write_text(json.dumps(FIGURES, indent=2))


@pytest.fixture(scope="module")
def volume(tmp_path_factory, data):
    """The 3D input mirrored up to ``SHAPE`` (uint8, as the issue's run), and one process's output
    (at ``LAZYFLOW_TOTAL_RAM_MB=2048``, 2 threads: the layout does not change the values)."""
    with h5py.File(data / "inputs" / "3d.h5", "r") as f:
        image = f["data"][()]
    for axis, n in enumerate(SHAPE):
        while image.shape[axis] < n:
            image = np.concatenate([image, np.flip(image, axis)], axis=axis)
        image = image[tuple(slice(0, n) if a == axis else slice(None) for a in range(3))]
    folder = tmp_path_factory.mktemp("volume")
    with h5py.File(folder / "big.h5", "w") as f:
        f.create_dataset("data", data=image, chunks=(64, 64, 64))
    path = str(folder / "big.h5") + "/data"
    code, err, seconds = _gpuheadless(path, str(folder / "single.zarr"), [], {"LAZYFLOW_TOTAL_RAM_MB": "2048"})
    assert code == 0, err
    FIGURES["single_process_s"] = seconds
    FIGURES["single_process_peak_mib"] = _children_peak_mib()
    import zarr  # noqa: PLC0415

    return path, zarr.open_array(str(folder / "single.zarr"), mode="r")[...]


def _children_peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def _gpuheadless(path, output, flags, env_extra, during=None):
    """``python -m gpuheadless`` as a user runs it; ``during(output)`` runs beside it. (code, stderr, s)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZYFLOW_")}  # the client's defaults
    env.update(env_extra)
    command = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={_project()}", "--output_format=zarr",
               f"--output_filename_format={output}", *flags, path]
    started = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    helper = threading.Thread(target=during, args=(output,)) if during else None
    if helper:
        helper.start()
    _, err = process.communicate(timeout=1800)
    if helper:
        helper.join(600)
    return process.returncode, err, round(time.monotonic() - started, 1)


def _project() -> str:
    from conftest import DATA  # noqa: PLC0415

    return str(DATA / "projects" / "PixelClassification3d.ilp")


def _done(output) -> int:
    from gpuheadless.io.zarr_io import partial_path  # noqa: PLC0415

    folder = os.path.join(partial_path(output), ".gpuheadless-done")
    return len(os.listdir(folder)) if os.path.isdir(folder) else 0


def _blocks(output) -> int:
    import zarr  # noqa: PLC0415

    from gpuheadless.io.zarr_io import partial_path  # noqa: PLC0415

    for path in (partial_path(output), output):
        if os.path.isdir(path):
            return zarr.open_array(path, mode="r").nchunks
    return 0


def _after_a_quarter(output, action, timeout=900):
    """Call ``action()`` once a quarter of the blocks is finished; returns (finished then, blocks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocks = _blocks(output)
        if blocks and _done(output) >= max(1, blocks // 4):
            finished = _done(output)
            action()
            return finished, blocks
        time.sleep(0.2)
    raise AssertionError("the run never got a quarter done")


def _identical(output, reference):
    import zarr  # noqa: PLC0415

    np.testing.assert_array_equal(zarr.open_array(output, mode="r")[...], reference)


def _wait_for_jobs(client, since):
    client.wait_for_workers(JOBS, timeout=300)
    return round(time.monotonic() - since, 1)


def test_recipe_output_is_identical_to_one_process_with_blocks_sized_for_the_workers(slurm, volume, tmp_path):
    from gpuheadless.pipeline.blocks import block_cost_bytes  # noqa: PLC0415
    from gpuheadless.pipeline.export_plan import plan_lane  # noqa: PLC0415
    from gpuheadless.config import RunConfig  # noqa: PLC0415
    from gpuheadless.project.ilp import read_project  # noqa: PLC0415

    path, reference = volume
    client = slurm["client"]
    code, err, seconds = _gpuheadless(path, str(tmp_path / "r.zarr"), [f"--scheduler={ADDRESS}"], {})
    assert code == 0, err
    _identical(str(tmp_path / "r.zarr"), reference)
    said = re.search(r"blocks sized for (\d+) MiB each.*", err)
    assert said, err
    budget = int(said.group(1)) * 2**20
    import zarr  # noqa: PLC0415

    chunks = zarr.open_array(str(tmp_path / "r.zarr"), mode="r").chunks[:3]
    config = RunConfig(project=_project(), inputs=[path], device="cpu")
    plan = plan_lane(config, read_project(config.project), None, "Probabilities", "zarr", path, None).plan
    halo = (plan.max_halo,) * 3
    limit = min(client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit).values())
    whole = block_cost_bytes(SHAPE, (0, 0, 0), 1, plan.n_features, 2)
    assert block_cost_bytes(chunks, halo, 1, plan.n_features, 2) <= budget < limit < whole
    peaks = client.run(lambda: __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss * 1024)
    logs = "".join(p.read_text(errors="replace") for p in slurm["folder"].glob("slurm-*.out"))
    assert "memory budget" not in logs  # no worker was restarted for its memory
    assert max(peaks.values()) < 0.95 * limit
    listening = _listening(client, slurm["process"].pid)
    assert listening and all(a.startswith("127.0.0.1:") for a in listening), listening  # interface="lo"
    FIGURES["recipe"] = {"seconds": seconds, "budget_line": said.group(0), "blocks": _blocks(str(tmp_path / "r.zarr")),
                         "block_shape": chunks, "worker_memory_limit_mib": round(limit / 2**20),
                         "worker_peak_rss_mib": sorted(round(v / 2**20) for v in peaks.values()),
                         "one_block_of_the_whole_volume_mib": round(whole / 2**20), "listening": listening}


def _listening(client, scheduler_pid) -> list[str]:
    """Local addresses that the scheduler's process and the workers (and nannies) listen on."""
    pids = {scheduler_pid, *client.run(os.getpid).values(), *client.run(os.getpid, nanny=True).values()}
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return sorted({line.split()[3] for line in out.splitlines()
                   if any(f"pid={p}," in line for p in pids)})


def test_scancel_of_one_job_mid_run_is_survived(slurm, volume, tmp_path):
    path, reference = volume
    client = slurm["client"]
    seen = {}

    def cancel_one(output):
        def action():
            seen["job"] = _jobs()[0]
            seen["at"] = time.monotonic()
            subprocess.run(["scancel", seen["job"]], check=True)
        seen["finished"], seen["blocks"] = _after_a_quarter(output, action)
        while len(client.nthreads()) >= JOBS and time.monotonic() - seen["at"] < 60:
            time.sleep(0.2)
        seen["replaced_after_s"] = _wait_for_jobs(client, seen["at"])

    code, err, seconds = _gpuheadless(path, str(tmp_path / "one.zarr"), [f"--scheduler={ADDRESS}"], {}, cancel_one)
    assert code == 0, err
    _identical(str(tmp_path / "one.zarr"), reference)
    assert seen["finished"] < seen["blocks"]
    FIGURES["scancel_one"] = {"seconds": seconds, "cancelled_job": seen["job"], "finished_at_cancel": seen["finished"],
                              "blocks": seen["blocks"], "new_job_worker_after_s": seen["replaced_after_s"]}


def test_every_job_cancelled_mid_run_adapt_brings_new_ones_and_the_run_finishes(slurm, volume, tmp_path):
    path, reference = volume
    client = slurm["client"]
    seen = {}

    def cancel_all(output):
        def action():
            seen["at"] = time.monotonic()
            subprocess.run(["scancel", "-n", "dask-worker"], check=True)
        seen["finished"], seen["blocks"] = _after_a_quarter(output, action)
        while client.nthreads() and time.monotonic() - seen["at"] < 60:
            time.sleep(0.2)
        seen["workers_back_after_s"] = _wait_for_jobs(client, seen["at"])

    code, err, seconds = _gpuheadless(path, str(tmp_path / "all.zarr"), [f"--scheduler={ADDRESS}"], {}, cancel_all)
    assert code == 0, err
    assert "all Dask workers lost; waiting up to 300 s for workers (--worker_timeout)" in err
    _identical(str(tmp_path / "all.zarr"), reference)
    FIGURES["scancel_all_default_timeout"] = {"seconds": seconds, "finished_at_cancel": seen["finished"],
                                              "blocks": seen["blocks"],
                                              "workers_back_after_s": seen["workers_back_after_s"]}


def test_every_job_cancelled_past_the_timeout_is_one_line_then_resume(slurm, volume, tmp_path):
    path, reference = volume
    client = slurm["client"]
    output = str(tmp_path / "resume.zarr")
    seen = {}

    def cancel_all(out):
        def action():
            seen["at"] = time.monotonic()
            subprocess.run(["scancel", "-n", "dask-worker"], check=True)
        seen["finished"], seen["blocks"] = _after_a_quarter(out, action)

    flags = [f"--scheduler={ADDRESS}", "--worker_timeout=3"]
    code, err, seconds = _gpuheadless(path, output, flags, {}, cancel_all)
    stopped_after = round(time.monotonic() - seen["at"], 1)
    assert code == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last == ("gpuheadless: error: all Dask workers lost (none for 3 s); finished blocks are kept; "
                    "rerun with --resume"), err
    kept = _done(output)
    back = _wait_for_jobs(client, seen["at"])
    code, err, resumed_seconds = _gpuheadless(path, output, [*flags, "--resume"], {})
    assert code == 0, err
    said = re.search(r"Resuming .*: (\d+) of (\d+) blocks already written", err)
    assert said and int(said.group(1)) == kept, err
    _identical(output, reference)
    FIGURES["scancel_all_short_timeout"] = {"first_run_s": seconds, "stopped_after_cancel_s": stopped_after,
                                            "last_line": last, "exit": 1, "blocks_kept": kept,
                                            "blocks": seen["blocks"], "workers_back_after_s": back,
                                            "resume_line": said.group(0), "resume_s": resumed_seconds}
