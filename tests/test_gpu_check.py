"""The parts of bench/gpu_check.sh that run without a GPU: its syntax, the bit-for-bit comparison
of two runs' outputs and the summary table (the whole script: ``bench/gpu_check.sh --dry-run``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)
import gpu_parity  # noqa: E402
import gpu_summary  # noqa: E402


def test_the_script_parses():
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        assert subprocess.run(["bash", "-n", os.path.join(BENCH, script)]).returncode == 0


def _write(folder, name, values):
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / name, "w") as f:
        f["exported_data"] = values


def test_compare_finds_one_ulp_and_accepts_equal_nans(tmp_path):
    values = np.array([0.25, np.nan, 1e-40], np.float32)
    _write(tmp_path / "cpu", "a.h5", values)
    _write(tmp_path / "gpu", "a.h5", values.copy())
    _write(tmp_path / "cpu", "b.h5", values)
    _write(tmp_path / "gpu", "b.h5", np.array([0.25, np.nan, 0.0], np.float32))  # a subnormal flushed
    (tmp_path / "cpu" / "o").mkdir()
    (tmp_path / "gpu" / "o").mkdir()
    (tmp_path / "cpu" / "o" / "table.csv").write_text("1,2\n")
    (tmp_path / "gpu" / "o" / "table.csv").write_text("1,2\n")
    rows = gpu_parity.compare(tmp_path / "cpu", tmp_path / "gpu")
    assert rows["a.h5"]["identical"] and rows["o/table.csv"]["identical"]
    assert not rows["b.h5"]["identical"] and rows["b.h5"]["note"].startswith("1 of 3 values differ")
    assert gpu_parity.main(["compare", str(tmp_path / "cpu"), str(tmp_path / "cpu")]) == 0
    assert gpu_parity.main(["compare", str(tmp_path / "cpu"), str(tmp_path / "gpu")]) == 1


def test_summary_table_shows_each_step_with_its_figures(tmp_path):
    (tmp_path / "steps.tsv").write_text("setup\tok\t20\nparity\tok\t50\nmemory\tTIMEOUT after 75 s\t75\n")
    work = tmp_path / "work"
    (work / "memory").mkdir(parents=True)
    (work / "parity.json").write_text(json.dumps({"identical": 39, "outputs": 39}))
    (work / "memory" / "memory.json").write_text(json.dumps(
        {"shape": [512, 1024, 1024], "wall_s": 4.0, "mvox_s": 134.2, "stages_s": {"features": 2.0},
         "gpu_peak_mib": 1900.0, "gpu_peak_above_idle_mib": 1400.0, "gpu_memory_mb_cap": 1024.0}))
    assert gpu_summary.main([str(tmp_path)]) == 1  # a step timed out
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[2] == "| setup | ok | 20 |  |"
    assert table[3] == "| parity | ok | 50 | 39 of 39 outputs bit-identical |"
    assert "512x1024x1024: 4.0 s, 134 Mvox/s (features 2.00); GPU peak 1900 MiB (1400 above idle), cap 1024 MB" in table[4]
