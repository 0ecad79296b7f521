"""HDF5 attributes of Pixel Classification exports, as the live ilastik 1.4.2 writes them
(seen side by side with bench/against_ilastik.py: group ``exports``)."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import parity  # noqa: E402


def _attrs(case: parity.Case, data: Path, tmp_path: Path) -> dict:
    with h5py.File(parity.run_case(case, str(data), str(tmp_path)), "r") as f:
        return dict(f["exported_data"].attrs)


@pytest.mark.parametrize("project,image,dtype", [
    ("PixelClassification2d3c.ilp", "inputs/2d3c.h5/data", np.uint8),
    ("PixelClassification5t2d1c.ilp", "inputs/5t2d1c.h5/data", np.float32),  # labels take the raw data's type
])
def test_labels_say_default_display_and_range_0_255_in_the_data_type(project, image, dtype, data, tmp_path):
    attrs = _attrs(parity.Case("labels.h5", project, image, source="Labels"), data, tmp_path)
    assert attrs["display_mode"] == "default"
    assert attrs["drange"].dtype == dtype and attrs["drange"].tolist() == [0, 255]


def test_probabilities_say_grayscale_and_range_0_1(data, tmp_path):
    attrs = _attrs(parity.Case("p.h5", "PixelClassification5t2d1c.ilp", "inputs/5t2d1c.h5/data"), data, tmp_path)
    assert attrs["display_mode"] == "grayscale"
    assert attrs["drange"].dtype == np.float32 and attrs["drange"].tolist() == [0.0, 1.0]
