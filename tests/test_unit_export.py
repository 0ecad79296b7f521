"""The export transform and export sources on small hand-made arrays: source names, derived
sources, dtype conversion, drange renormalisation, axis order and option parsing (no external data)."""
from __future__ import annotations

import numpy as np
import pytest

from gpuheadless.errors import UsageError
from gpuheadless.export import (derive_from_probabilities, make_transform, output_axes, parse_cutout, parse_pair,
                                resolve_source, source_channels, source_dtype, source_names, split_source)


def test_source_names_are_case_insensitive_and_unknown_ones_list_the_valid_ones():
    """``simple segmentation`` is Simple Segmentation; an unknown source names every valid one."""
    assert resolve_source("simple segmentation") == "Simple Segmentation"
    assert resolve_source(" UNCERTAINTY ") == "Uncertainty"
    with pytest.raises(UsageError, match="'probabilities', 'simple segmentation'"):
        resolve_source("Probability")


def test_autocontext_sources_run_from_the_last_stage_and_default_to_its_probabilities():
    """Two stages give 2 x 6 stage sources, last stage first, then all stages' probabilities."""
    names = source_names(2)
    assert len(names) == 13 and names[0] == "Probabilities Stage 2" and names[6] == "Probabilities Stage 1"
    assert names[-1] == "Probabilities All Stages" and "Input Stage 1" in names
    assert resolve_source("Probabilities", 2) == "Probabilities Stage 2"
    assert resolve_source("features stage 1", 2) == "Features Stage 1"
    assert split_source("Features Stage 2") == ("Features", 1)
    assert split_source("Probabilities All Stages") == ("Probabilities All Stages", None)
    assert split_source("Simple Segmentation") == ("Simple Segmentation", None)


def test_source_types_and_channel_counts():
    """Segmentations and labels are uint8 with one channel; probabilities float32 with a channel per class."""
    assert source_dtype("Simple Segmentation") == np.uint8 and source_dtype("Labels") == np.uint8
    assert source_dtype("Probabilities") == np.float32 and source_dtype("Uncertainty") == np.float32
    assert source_dtype("Input Stage 1", np.uint16) == np.uint16
    assert source_channels("Probabilities", 3, 10) == 3 and source_channels("Features", 3, 10) == 10
    assert source_channels("Uncertainty", 3, 10) == 1 and source_channels("Input Stage 2", 3, 10, raw_channels=2) == 2


def test_simple_segmentation_is_argmax_plus_one_with_ties_to_the_first_class():
    """Per pixel: the most probable class counted from 1; a tie (or all zeros) gives the lower class."""
    p = np.array([[0.2, 0.8, 0.0], [0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.0, 0.0, 0.0], [0.1, 0.2, 0.7]], np.float32)
    seg = derive_from_probabilities(np, p, "Simple Segmentation")
    assert seg.dtype == np.uint8 and seg.shape == (5, 1)
    assert seg[:, 0].tolist() == [2, 1, 1, 1, 3]


def test_uncertainty_is_one_minus_the_margin_of_the_two_best_classes():
    """``1 - (p_max - p_second)``: 0.4 for (0.2, 0.8), 1 for a tie; zero with a single class."""
    p = np.array([[0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0]], np.float32)
    u = derive_from_probabilities(np, p, "Uncertainty")
    assert u.dtype == np.float32 and u.shape == (4, 1)
    np.testing.assert_allclose(u[:, 0], [0.4, 1.0, 0.5, 0.0], atol=1e-6)
    np.testing.assert_array_equal(derive_from_probabilities(np, p[:, :1], "Uncertainty"), np.zeros((4, 1)))
    assert derive_from_probabilities(np, p, "Probabilities") is p
    with pytest.raises(ValueError):
        derive_from_probabilities(np, p, "Features")


def test_drange_renormalisation_rounds_float_results_and_does_not_clip():
    """(0, 1) -> (0, 255) as uint8: ``rint(p * 255)``; values outside the input range map outside
    the output range (int16 shows 306 for 1.2, as ilastik does not clip)."""
    t = make_transform("Probabilities", "uint8", (0.0, 1.0), (0.0, 255.0))
    assert t.dtype == np.uint8 and t.drange == (0, 255)
    p = np.array([0.0, 0.2, 0.5, 0.9999, 1.0], np.float32)
    np.testing.assert_array_equal(t.apply(p), [0, 51, 128, 255, 255])
    wide = make_transform("Probabilities", "int16", (0.0, 1.0), (0.0, 255.0)).apply(np.array([1.2, -0.2], np.float32))
    np.testing.assert_array_equal(wide, [306, -51])


def test_drange_maps_an_inner_range_linearly():
    """(10, 20) -> (-1, 1) as float32 on a float image: 15 -> 0, 10 -> -1, 25 -> 2."""
    t = make_transform("Features", "float32", (10.0, 20.0), (-1.0, 1.0))
    np.testing.assert_allclose(t.apply(np.array([10, 15, 20, 25], np.float32)), [-1, 0, 1, 2], atol=1e-6)
    assert t.drange == (-1.0, 1.0)


def test_integer_sources_are_scaled_without_rounding_to_a_float_type():
    """Simple Segmentation 1..2 mapped (1, 2) -> (0, 100) as float32 gives 0 and 100."""
    t = make_transform("Simple Segmentation", "float32", (1.0, 2.0), (0.0, 100.0))
    out = t.apply(np.array([1, 2, 2], np.uint8))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 100.0, 100.0]


def test_a_plain_dtype_change_truncates_as_a_cast():
    """Without dranges, float32 0.7 -> uint8 0 and 3.9 -> 3 (a plain cast), and no drange is recorded."""
    t = make_transform("Probabilities", "uint8", None, None)
    assert t.drange is None
    np.testing.assert_array_equal(t.apply(np.array([0.7, 1.0, 3.9], np.float32)), [0, 1, 3])
    same = make_transform("Simple Segmentation", None, None, None)
    assert same.dtype == np.uint8 and same.apply(np.array([1, 2], np.uint8)).tolist() == [1, 2]


def test_bad_transforms_are_refused():
    """An export drange needs the result's drange; an unknown dtype is refused."""
    with pytest.raises(UsageError, match="pipeline_result_drange"):
        make_transform("Probabilities", "uint8", None, (0, 255))
    with pytest.raises(UsageError, match="--export_dtype"):
        make_transform("Probabilities", "float16", None, None)


def test_ranges_and_cutouts_are_parsed_as_ilastik_parses_them():
    """``(0,255)`` and ``[1, 2.5]`` are pairs; cutouts keep ``None`` for open ends."""
    assert parse_pair("(0,255)", "--export_drange") == (0.0, 255.0)
    assert parse_pair("[1, 2.5]", "--export_drange") == (1.0, 2.5)
    assert parse_cutout("[(0,None,1),(10,20,None)]") == ([0, None, 1], [10, 20, None])
    for bad in ("(1,2,3)", "(a,b)", "(1,'x')"):
        with pytest.raises(UsageError):
            parse_pair(bad, "--export_drange")
    for bad in ("[(0,1),(2,)]", "[(0.5,1),(2,3)]", "(1,2)", "nonsense"):
        with pytest.raises(UsageError):
            parse_cutout(bad)


def test_output_axes_default_to_the_inputs_plus_c_and_may_drop_only_singletons():
    """No order given: the input's axes plus ``c``; a requested order may add axes but never drop
    one with extent > 1."""
    assert output_axes(None, "yx", {"y": 5, "x": 6}) == "yxc"
    assert output_axes(None, "zyxc", {}) == "zyxc"
    assert output_axes("XYC", "yxc", {"y": 5, "x": 6, "c": 2}) == "xyc"
    assert output_axes("tzyxc", "yxc", {"y": 5, "x": 6, "c": 2}) == "tzyxc"
    assert output_axes("yx", "yxc", {"y": 5, "x": 6, "c": 1}) == "yx"
    with pytest.raises(UsageError, match="non-singleton axes: c"):
        output_axes("yx", "yxc", {"y": 5, "x": 6, "c": 2})
    for bad in ("yyx", "yxq", ""):
        with pytest.raises(UsageError):
            output_axes(bad, "yxc", {"y": 5, "x": 6})
