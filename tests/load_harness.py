"""A batch of many lanes in one call, watched from outside: memory and time lane by lane (issue 15).

The command line runs as a fresh process; each "Exported ..." line it prints marks a lane's end.
Its resident memory is polled from ``/proc/<pid>/status`` meanwhile: each lane's least (what the
batch holds between blocks and lanes, where a leak shows) and most. Used by
tests/test_load.py (a few hundred lanes) and bench/load.py (2,000 small and 50 large images).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import tifffile
from PIL import Image

FORMATS = ("h5", "tif", "png")


def make_images(folder: Path, count: int, side: int, seed: int = 0, formats: tuple[str, ...] = FORMATS) -> list[str]:
    """``count`` random uint8 ``side`` x ``side`` images, cycling through ``formats``.

    Returns
    -------
    list of str
        The inputs as the command line takes them (``x.h5/data`` for HDF5).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = rng.integers(0, 256, (side, side), dtype=np.uint8)
        kind = formats[i % len(formats)]
        path = folder / f"img{i:05d}.{kind}"
        if kind == "h5":
            with h5py.File(path, "w") as f:
                f["data"] = image
            paths.append(f"{path}/data")
        elif kind == "tif":
            tifffile.imwrite(path, image)
            paths.append(str(path))
        else:
            Image.fromarray(image).save(path)
            paths.append(str(path))
    return paths


@dataclass(frozen=True)
class LaneMark:
    """One lane, seen from outside: when it ended (seconds since the start) and the process's
    resident memory during it (MiB): the least (what the batch holds between blocks and lanes:
    a leak raises it lane after lane) and the most (the lane's working set on top)."""

    seconds: float
    floor_mb: float
    peak_mb: float


@dataclass(frozen=True)
class BatchRun:
    returncode: int
    marks: list[LaneMark]
    peak_mb: float
    seconds: float
    stderr_tail: str

    @property
    def lane_seconds(self) -> list[float]:
        times = [0.0] + [m.seconds for m in self.marks]
        return [b - a for a, b in zip(times, times[1:])]


def _status_mb(pid: int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class _MemoryWatch:
    """Polls a process's resident memory every ``period`` s; ``take()`` returns (least, most)
    since the previous call."""

    def __init__(self, pid: int, period: float = 0.01) -> None:
        self._pid, self._period = pid, period
        self._low, self._high = float("inf"), 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            rss = _status_mb(self._pid, "VmRSS")
            if rss == rss:  # not NaN: the process is there
                with self._lock:
                    self._low, self._high = min(self._low, rss), max(self._high, rss)
            time.sleep(self._period)

    def take(self) -> tuple[float, float]:
        rss = _status_mb(self._pid, "VmRSS")
        with self._lock:
            low, high = min(self._low, rss), max(self._high, rss)
            self._low, self._high = float("inf"), 0.0
        return low, high

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_batch(args: list[str], cwd: Path, threads: int = 2, timeout: float = 3600) -> BatchRun:
    """``gpuheadless ARGS`` as one process, marking each lane's end as it is logged."""
    env = {**os.environ, "LAZYFLOW_THREADS": str(threads)}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gpuheadless", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watch = _MemoryWatch(proc.pid)
    marks, tail, peak = [], [], 0.0
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("Exported "):
                low, high = watch.take()
                marks.append(LaneMark(time.monotonic() - start, low, high))
                peak = max(peak, _status_mb(proc.pid, "VmHWM"))
            else:
                tail = (tail + [line])[-20:]
            if time.monotonic() - start > timeout:
                proc.kill()
                break
        proc.wait()
    finally:
        watch.stop()
    return BatchRun(proc.returncode, marks, peak, time.monotonic() - start, "".join(tail))


@dataclass(frozen=True)
class Flatness:
    """Memory held between lanes and time per lane, early in the batch against late in it
    (warm-up lanes left out)."""

    lanes: int
    early_rss_mb: float
    late_rss_mb: float
    early_lane_s: float
    late_lane_s: float

    @property
    def rss_growth_mb(self) -> float:
        return self.late_rss_mb - self.early_rss_mb

    @property
    def time_ratio(self) -> float:
        return self.late_lane_s / self.early_lane_s

    def summary(self) -> str:
        return (f"{self.lanes} lanes: memory held between lanes {self.early_rss_mb:.0f} -> {self.late_rss_mb:.0f} MiB "
                f"({self.rss_growth_mb:+.1f} MiB), time per lane {self.early_lane_s * 1000:.1f} -> "
                f"{self.late_lane_s * 1000:.1f} ms (x{self.time_ratio:.2f})")


def flatness(run: BatchRun) -> Flatness:
    """Medians over the second quarter of the lanes (after warm-up) and the last quarter: the
    memory a lane starts from (its least) and its time."""
    n = len(run.marks)
    quarter = max(n // 4, 1)
    early, late = slice(quarter, 2 * quarter), slice(n - quarter, n)
    rss = [m.floor_mb for m in run.marks]
    seconds = run.lane_seconds
    return Flatness(n, statistics.median(rss[early]), statistics.median(rss[late]),
                    statistics.median(seconds[early]), statistics.median(seconds[late]))


def missing_outputs(folder: Path, inputs: list[str], shape: tuple[int, ...]) -> list[str]:
    """Inputs whose ``{nickname}.h5`` output is absent or not of ``shape``."""
    missing = []
    for path in inputs:
        # ilastik's nickname: the file's stem, and "-data" for the dataset inside an HDF5 file
        nickname = Path(path[:-5]).stem + "-data" if path.endswith(".h5/data") else Path(path).stem
        out = folder / f"{nickname}.h5"
        try:
            with h5py.File(out, "r") as f:
                if f["exported_data"].shape != shape:
                    missing.append(path)
        except (OSError, KeyError):
            missing.append(path)
    return missing
