"""The README's first command: the demo builds its own project and segments an unseen image."""
from __future__ import annotations

import h5py
import numpy as np

from gpuheadless.cli import main


def test_demo_runs_and_segments(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--size", "160"]) == 0
    out = capsys.readouterr().out
    assert "pixel accuracy against the truth" in out
    with h5py.File(tmp_path / "cells-data_Simple Segmentation.h5", "r") as f:
        seg = f["exported_data"][()]
    assert seg.shape == (160, 160, 1) and set(np.unique(seg)) <= {1, 2}
