"""What happens when things go wrong mid-run (issue 15): stop signals, killed runs, a full disk or a
file-size limit, an output folder or an input that vanishes or changes, two processes writing.

Each case: one line naming the file and the problem, a non-zero exit, no file at the final name,
no temporary file left, and the other lanes of the batch unaffected. Signals and limits are real
(a ``gpuheadless`` subprocess); mid-run accidents are injected at the first block, in-process.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli
from gpuheadless.io import staging
from gpuheadless.pipeline import pixel

PROJECT = "PixelClassification2d.ilp"


def _image(path: Path, side: int, seed: int = 0) -> str:
    """A random uint8 ``side`` x ``side`` HDF5 input for the 2D project; returns ``path/data``."""
    with h5py.File(path, "w") as f:
        f["data"] = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    return f"{path}/data"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A large input (a run of several seconds) and a small one, outside the shared data."""
    folder = tmp_path_factory.mktemp("fault-inputs")
    return {"large": _image(folder / "large.h5", 4096), "medium": _image(folder / "medium.h5", 1536, 1),
            "small": _image(folder / "small.h5", 48, 2)}


def _command(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gpuheadless", "--headless", f"--project={data}/projects/{PROJECT}", *args]


def _start(command: list[str], limits: dict | None = None, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "LAZYFLOW_THREADS": "2", **env}

    def apply_limits() -> None:
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))

    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                            preexec_fn=apply_limits if limits else None)


def _wait_for_partial(folder: Path, proc: subprocess.Popen, timeout: float = 120.0) -> list[str]:
    """The temporary names in ``folder`` once the run has started writing."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [n for n in os.listdir(folder)] if folder.is_dir() else []
        found = [n for n in found if n.endswith(".partial")]
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run ended before writing: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no temporary output appeared")


def _one_error_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = {line.strip() for line in err.splitlines() if all(w in line for w in words)}
    assert len(lines) == 1, err  # logged when it happens, repeated in a batch's summary
    return lines.pop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_stop_signal_ends_the_run_within_a_second_leaving_nothing(signum, data, inputs, tmp_path):
    out = tmp_path / "out"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _start(_command(data, f"--output_filename_format={out}/{{nickname}}.h5", inputs["large"]),
                  TMPDIR=str(scratch))
    _wait_for_partial(out, proc)
    time.sleep(0.3)  # well inside the block computations
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 128 + signum, err
    assert elapsed < 1.5, f"stopping took {elapsed:.2f} s"
    _one_error_line(err, "gpuheadless: stopped by", signal.Signals(signum).name)
    assert os.listdir(out) == []
    assert os.listdir(scratch) == []


def _wait_for_cpu_time(proc: subprocess.Popen, seconds: float, timeout: float = 120) -> None:
    """Wait until ``proc`` has used ``seconds`` of CPU time (user + system, from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:
            return
        time.sleep(0.02)


def test_stop_signal_in_a_pixel_and_object_run(data, tmp_path):
    """Stopped while the pixel stage computes its probabilities (in memory; beyond a quarter of the
    budget in a scratch file, see test_objects): one line, exit 130, nothing written or left."""
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as f:
        f["data"] = np.random.default_rng(3).random((5, 1200, 1200, 1), dtype=np.float32)
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={data}/projects/pc-oc-133.ilp",
               "--export_source=Object Predictions", f"--raw_data={raw}/data",
               f"--output_filename_format={out}/{{nickname}}_{{result_type}}.h5"]
    proc = _start(command, TMPDIR=str(scratch))
    _wait_for_cpu_time(proc, 1.5)  # imports done, the pixel stage well under way
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 1.5
    _one_error_line(err, "gpuheadless: stopped by SIGINT")
    assert os.listdir(scratch) == []
    assert not out.exists() or os.listdir(out) == []


def test_a_killed_run_leaves_a_hidden_partial_that_the_next_run_removes(data, inputs, tmp_path):
    out = tmp_path / "out"
    command = _command(data, f"--output_filename_format={out}/{{nickname}}.h5", inputs["medium"])
    proc = _start(command)
    (left,) = _wait_for_partial(out, proc)
    proc.kill()
    proc.wait()
    assert os.listdir(out) == [left] and left.startswith(f".medium-data.h5.{proc.pid}@")
    again = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LAZYFLOW_THREADS": "2"})
    assert again.returncode == 0, again.stderr
    assert os.listdir(out) == ["medium-data.h5"]
    assert "left by a run that was killed" in again.stderr


def test_a_killed_zarr_run_is_resumed(data, inputs, tmp_path):
    pytest.importorskip("zarr")
    out = tmp_path / "out"
    command = _command(data, "--output_format=zarr", f"--output_filename_format={out}/{{nickname}}.zarr",
                       inputs["large"])
    proc = _start(command, LAZYFLOW_TOTAL_RAM_MB="500")
    (partial,) = _wait_for_partial(out, proc)
    done = out / partial / ".gpuheadless-done"
    end = time.monotonic() + 120
    while (not done.is_dir() or len(os.listdir(done)) < 2) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert partial == ".large-data.zarr.partial"
    again = subprocess.run(command + ["--resume"], capture_output=True, text=True,
                           env={**os.environ, "LAZYFLOW_THREADS": "2", "LAZYFLOW_TOTAL_RAM_MB": "500"})
    assert again.returncode == 0, again.stderr
    assert "Resuming" in again.stderr and "blocks already written" in again.stderr
    assert os.listdir(out) == ["large-data.zarr"]


def test_a_second_process_on_the_same_output(data, inputs, tmp_path):
    """A file output: both runs finish and the survivor is complete; the slower run's temporary is
    never taken for a leftover. A Zarr output (built in place, resumable): the second run is refused."""
    out = tmp_path / "out"
    slow = _start(_command(data, f"--output_filename_format={out}/result.h5", inputs["large"]))
    (theirs,) = _wait_for_partial(out, slow)
    fast = subprocess.run(_command(data, f"--output_filename_format={out}/result.h5", inputs["small"]),
                          capture_output=True, text=True)
    assert fast.returncode == 0, fast.stderr
    assert theirs in os.listdir(out)
    _, err = slow.communicate(timeout=300)
    assert slow.returncode == 0, err
    assert os.listdir(out) == ["result.h5"]
    with h5py.File(out / "result.h5") as f:
        assert f["exported_data"].shape[:2] == (4096, 4096)


def test_a_second_process_on_the_same_zarr_output_is_refused(data, inputs, tmp_path):
    pytest.importorskip("zarr")
    out = tmp_path / "out"
    args = ("--output_format=zarr", f"--output_filename_format={out}/result.zarr")
    slow = _start(_command(data, *args, inputs["large"]), LAZYFLOW_TOTAL_RAM_MB="500")
    _wait_for_partial(out, slow)
    second = subprocess.run(_command(data, *args, inputs["large"]), capture_output=True, text=True)
    _, err = slow.communicate(timeout=300)
    assert slow.returncode == 0, err
    assert second.returncode == 1
    _one_error_line(second.stderr, "result.zarr", f"another gpuheadless process (pid {slow.pid})")
    assert os.listdir(out) == ["result.zarr"]


@pytest.mark.parametrize("output_format,suffix", [("hdf5", "h5"), ("numpy", "npy"), ("tiff", "tiff")])
def test_file_size_limit_fails_the_lane_not_the_batch(output_format, suffix, data, inputs, tmp_path):
    """``ulimit -f`` (RLIMIT_FSIZE): the kernel's SIGXFSZ would kill the interpreter; EFBIG is one line."""
    out = tmp_path / "out"
    proc = _start(_command(data, f"--output_format={output_format}",
                           f"--output_filename_format={out}/{{nickname}}.{suffix}", inputs["medium"], inputs["small"]),
                  limits={resource.RLIMIT_FSIZE: 256 * 1024})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    _one_error_line(err, f"output '{out}/medium-data.{suffix}'", "File too large")
    assert os.listdir(out) == [f"small-data.{suffix}"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root, as in CI); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("output_format,suffix", [("hdf5", "h5"), ("numpy", "npy"), ("png", "png")])
def test_full_disk_fails_the_lane_not_the_batch(output_format, suffix, data, inputs, tiny_disk, tmp_path, capsys):
    code, err = run_cli(["--headless", f"--project={data}/projects/{PROJECT}", f"--output_format={output_format}",
                         f"--output_filename_format={tiny_disk}/{{nickname}}.{suffix}", inputs["medium"],
                         inputs["small"]], tmp_path, capsys)
    assert code == 1
    _one_error_line(err, f"output '{tiny_disk}/medium-data.{suffix}'", "No space left on device")
    assert os.listdir(tiny_disk) == [f"small-data.{suffix}"]


def _at_first_block(monkeypatch, accident) -> None:
    """Run ``accident()`` when the first block of the run is computed."""
    compute = pixel.compute_block
    happened = []

    def compute_then(task, block):
        if not happened:
            happened.append(True)
            accident()
        return compute(task, block)

    monkeypatch.setattr(pixel, "compute_block", compute_then)


def test_output_folder_removed_mid_run(data, inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _at_first_block(monkeypatch, lambda: shutil.rmtree(out / "medium-data"))
    code, err = run_cli(["--headless", f"--project={data}/projects/{PROJECT}",
                         f"--output_filename_format={out}/{{nickname}}/result.h5", inputs["medium"], inputs["small"]],
                        tmp_path, capsys)
    assert code == 1
    _one_error_line(err, f"output '{out}/medium-data/result.h5'", "was removed during the run")
    assert sorted(os.listdir(out)) == ["small-data"] and os.listdir(out / "small-data") == ["result.h5"]


@pytest.mark.parametrize("accident,words", [
    (lambda path: os.remove(path), "was removed during the run"),
    (lambda path: open(path, "ab").write(b"\0" * 16), "changed during the run"),
    (lambda path: os.replace(_image(Path(path + ".new"), 32, 9)[:-len("/data")], path), "changed during the run"),
])
def test_input_changed_or_removed_mid_run(accident, words, data, inputs, tmp_path, capsys, monkeypatch):
    victim = tmp_path / "victim.h5"
    shutil.copyfile(inputs["medium"][:-len("/data")], victim)
    out = tmp_path / "out"
    _at_first_block(monkeypatch, lambda: accident(str(victim)))
    code, err = run_cli(["--headless", f"--project={data}/projects/{PROJECT}",
                         f"--output_filename_format={out}/{{nickname}}.h5", f"{victim}/data", inputs["small"]],
                        tmp_path, capsys)
    assert code == 1
    _one_error_line(err, f"input '{victim}/data'", words)
    assert os.listdir(out) == ["small-data.h5"]


def test_leftovers_are_told_from_live_temporaries(tmp_path):
    """Only a temporary whose process is gone on this host is removed; live ones and other hosts' stay."""
    final = str(tmp_path / "x.h5")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    names = [f".x.h5.{dead}@{staging.host_name()}.abc.partial", f".x.h5.{os.getpid()}@{staging.host_name()}.def.partial",
             f".x.h5.{dead}@some-other-node.ghi.partial", f".y.h5.{dead}@{staging.host_name()}.jkl.partial", "x.h5"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / f".x.h5.{dead}@{staging.host_name()}.dir.partial.d").mkdir()
    assert staging.remove_leftovers(final) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:] + [f".x.h5.{dead}@{staging.host_name()}.dir.partial.d"])


def test_a_stopped_zarr_run_says_how_to_resume(data, inputs, tmp_path):
    pytest.importorskip("zarr")
    out = tmp_path / "out"
    proc = _start(_command(data, "--output_format=zarr", f"--output_filename_format={out}/{{nickname}}.zarr",
                           inputs["large"]), LAZYFLOW_TOTAL_RAM_MB="500")
    _wait_for_partial(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    _one_error_line(err, "stopped by SIGTERM", "1 unfinished Zarr output(s) kept", "--resume")
    assert os.listdir(out) == [".large-data.zarr.partial"]


def test_train_at_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """``gpuheadless train`` writes its project through the same guarded HDF5 file as the exports."""
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f["data"] = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    labels = np.zeros((256, 256), dtype=np.uint8)
    labels[10:200, 10:20], labels[10:200, 100:110] = 1, 2
    with h5py.File(tmp_path / "labels.h5", "w") as f:
        f["data"] = labels
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "gpuheadless", "train", "--raw", f"{tmp_path}/raw.h5/data", "--labels",
               f"{tmp_path}/labels.h5/data", "--output", f"{out}/p.ilp", "--trees", "20"]
    proc = _start(command, limits={resource.RLIMIT_FSIZE: 32 * 1024})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    _one_error_line(err, f"'{out}/p.ilp'", "File too large")
    assert os.listdir(out) == []
    proc = _start(command)  # without the limit the same command writes the project
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and os.listdir(out) == ["p.ilp"], err


def test_a_stop_signal_as_the_run_ends_is_one_line(monkeypatch, capsys):
    """A signal landing while the handlers are being restored (the run complete) ends in one line,
    exit 128 + the signal, no traceback."""
    import contextlib

    from gpuheadless import cli, interrupts

    @contextlib.contextmanager
    def stopped_on_exit():
        yield
        raise interrupts.Stopped(signal.SIGTERM)

    monkeypatch.setattr(interrupts, "stop_on_signals", stopped_on_exit)
    monkeypatch.setattr(cli, "_dispatch", lambda argv: 0)
    assert cli.main(["--headless"]) == 143
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["gpuheadless: stopped by SIGTERM as the run ended; every output it reported is complete"]
