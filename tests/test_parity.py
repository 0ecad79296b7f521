"""Parity with real ilastik 1.4.2 outputs, with ilastik's tolerance (bench/parity.py has the cases)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import parity  # noqa: E402

PROBABILITY_CASES = [c for c in parity.CASES if c.source != "Features"]


@pytest.mark.parametrize("case", PROBABILITY_CASES, ids=lambda c: c.reference)
def test_matches_ilastik_within_tolerance(case, data, tmp_path):
    output = parity.run_case(case, str(data), str(tmp_path))
    ours = parity.load(output)
    ref = parity.load(str(data / "reference" / case.reference))
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if ref.dtype == np.uint8 and case.source == "Probabilities":  # rint(p * 255): one tree vote is 2.55
        assert (diff >= 0.015 * 255).mean() <= 1e-3
        assert diff.max() < 0.15 * 255
    elif ref.dtype.kind in "iu":
        assert (diff != 0).mean() <= 1e-3
    else:
        assert (diff >= 0.015).mean() <= 1e-3
        assert diff.max() < 0.15


EXACT = [
    "PixelClassification2d__2d__Probabilities.h5", "PixelClassification2d__2d__Uncertainty.h5",
    "PixelClassification3d__3d__Probabilities.h5", "PixelClassification3d2c__3d2c__Probabilities.h5",
    "PixelClassification3d_allfeatures__3d__Features__cutout_z0-10_y0-12_x0-12.h5",
]


@pytest.mark.parametrize("name", EXACT)
def test_results_are_bit_identical_to_ilastik(name, data, tmp_path):
    """fastfilters' float32 arithmetic reproduced exactly: no feature lands on the other side of a split.

    (The 2D Features cutout is not in the list: ilastik filtered that cutout as its own array,
    so the few pixels fastfilters computes with scalar code at row ends differ from ours by an
    ulp; the full-image outputs are exact.)
    """
    case = next(c for c in parity.CASES if c.reference == name)
    ours = parity.load(parity.run_case(case, str(data), str(tmp_path)))
    np.testing.assert_array_equal(ours, parity.load(str(data / "reference" / name)))


def test_uncertainty_and_segmentation_derive_exactly_from_probabilities(data, tmp_path):
    base = dict(project="PixelClassification3d.ilp", input="inputs/3d.h5/data")
    outputs = {
        source: parity.load(parity.run_case(parity.Case(f"{source}.h5", source=source, **base), str(data), str(tmp_path)))
        for source in ("Probabilities", "Uncertainty", "Simple Segmentation")
    }
    p = outputs["Probabilities"]
    top = np.sort(p, axis=-1)
    np.testing.assert_array_equal(outputs["Uncertainty"][..., 0], np.float32(1) - (top[..., -1] - top[..., -2]))
    np.testing.assert_array_equal(outputs["Simple Segmentation"][..., 0], np.argmax(p, axis=-1) + 1)


def test_hdf5_output_carries_ilastik_metadata(data, tmp_path):
    import h5py

    case = parity.CASES[8]  # 2d_units: pixel sizes and units survive
    output = parity.run_case(case, str(data), str(tmp_path))
    with h5py.File(output, "r") as ours, h5py.File(data / "reference" / case.reference, "r") as ref:
        a, b = ours["exported_data"], ref["exported_data"]
        assert a.chunks == b.chunks
        assert list(a.attrs["DIMENSION_LABELS"]) == list(b.attrs["DIMENSION_LABELS"])
        assert a.attrs["axis_units"] == b.attrs["axis_units"]
        import json

        tags_a, tags_b = json.loads(a.attrs["axistags"]), json.loads(b.attrs["axistags"])
        assert [x["key"] for x in tags_a["axes"]] == [x["key"] for x in tags_b["axes"]]
        assert [x["resolution"] for x in tags_a["axes"]] == pytest.approx([x["resolution"] for x in tags_b["axes"]], rel=1e-5)
        np.testing.assert_array_equal(a.attrs["drange"], b.attrs["drange"])
