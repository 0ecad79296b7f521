"""Run one command as a child process: wall seconds, peak resident memory, output.

Used by bench/run.py so that every system is measured the same way (a fresh process each time,
its own peak RSS from the kernel's accounting of that child).

    python bench/measure.py -- CMD ARG ...    # prints one JSON line
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None, cwd: str | None = None) -> dict:
    """Run ``cmd`` in a fresh wrapper process (in ``cwd``); returns wall_s, peak_mib, returncode, stderr."""
    wrapper = [sys.executable, os.path.abspath(__file__), "--", *cmd]
    done = subprocess.run(wrapper, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"returncode": done.returncode, "stderr": done.stderr, "wall_s": float("nan"), "peak_mib": float("nan")}
    return json.loads(lines[-1])


def _main(cmd: list[str]) -> int:
    started = time.perf_counter()
    child = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_mib": peak_kib / 1024.0, "returncode": child.returncode,
                      "stderr": child.stderr[-4000:], "stdout": child.stdout[-2000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[sys.argv.index("--") + 1:]))
