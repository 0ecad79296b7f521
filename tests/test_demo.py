"""The README's first command: the demo builds its own project and segments an unseen image."""
from __future__ import annotations

import h5py
import numpy as np

from gpuheadless.cli import main
from gpuheadless.demo import synthetic_image


def test_demo_runs_and_segments(tmp_path, capsys):
    """The demo's segmentation holds both classes and matches the unseen image's truth on both:
    an all-background (or all-blob) image fails."""
    assert main(["demo", "--output", str(tmp_path), "--size", "160"]) == 0
    out = capsys.readouterr().out
    assert "pixel accuracy against the truth" in out
    with h5py.File(tmp_path / "cells-data_Simple Segmentation.h5", "r") as f:
        seg = f["exported_data"][()]
    assert seg.shape == (160, 160, 1) and set(np.unique(seg).tolist()) == {1, 2}
    _, truth = synthetic_image((160, 160), seed=2)  # the demo's unseen image
    seg = seg[..., 0]
    assert 0.05 < (truth == 2).mean() < 0.95  # the truth itself has both classes
    for value in (1, 2):  # each class is found where it is (recall), not only the majority one
        assert (seg[truth == value] == value).mean() > 0.8, value
    assert (seg == truth).mean() > 0.9
