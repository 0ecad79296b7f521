"""Where the time goes: seconds per pipeline stage, summed over worker threads."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

STAGES = ("read", "features", "forest", "write")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux), for start-up timing; None elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return up - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class StageClock:
    """Accumulates seconds per stage from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Add the time spent inside the ``with`` block to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += elapsed

    def summary(self) -> str:
        """One line: ``read 0.31 s, features 3.12 s, forest 1.20 s, write 0.25 s``."""
        return ", ".join(f"{stage} {self.seconds[stage]:.2f} s" for stage in STAGES)
