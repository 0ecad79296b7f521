"""Many lanes in one call (issue 15): every output written, memory flat, time per lane constant.

A few hundred small images and a few large ones here; bench/load.py runs the issue's 2,000 small
and 50 large images with the same harness.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from load_harness import flatness, make_images, missing_outputs, run_batch

PROJECT = "projects/PixelClassification2d.ilp"


@pytest.mark.parametrize("count, side, max_growth_mb, max_ratio", [(300, 48, 15.0, 1.5), (6, 1024, 30.0, 1.5)])
def test_a_long_batch_stays_flat(data: Path, tmp_path: Path, count: int, side: int, max_growth_mb: float,
                                 max_ratio: float):
    inputs = make_images(tmp_path / "in", count, side)
    run = run_batch(["--headless", f"--project={data / PROJECT}", f"--output_filename_format={tmp_path}/out/{{nickname}}.h5",
                     *inputs], tmp_path)
    assert run.returncode == 0, run.stderr_tail
    assert len(run.marks) == count, run.stderr_tail
    assert missing_outputs(tmp_path / "out", inputs, (side, side, 2)) == []
    found = flatness(run)
    assert found.rss_growth_mb < max_growth_mb, found.summary()
    assert found.time_ratio < max_ratio, found.summary()
