"""NaN and infinities in floating-point inputs (issue 15): processed as ilastik 1.4.2 processes them.

Nothing refuses them, as in ilastik: the filters spread them over their reach, a pixel with a NaN
feature gets probability 0 for every class, the objects' smoothing keeps a NaN to its window and
an infinity infinite, and vigra's minimum and maximum pass over NaN. Each lane says so in one
line, without NumPy's warnings. tests/live/test_nonfinite_live.py compares the same cases with
the real ilastik.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from arithmetic_reference import mirror_indices, smooth_axis
from cli_helpers import run_cli
from gpuheadless.backend import cpu_backend
from gpuheadless.objects import threshold
from gpuheadless.objects.features import labelled_range, standard_features

CPU = cpu_backend()


def _direct_smoothing(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """One pass written out sample by sample: 0, then + tap * value from the leftmost offset."""
    taps = threshold.gaussian_taps(sigma)
    radius = len(taps) // 2
    moved = np.moveaxis(values, axis, -1)
    out = np.empty(moved.shape, dtype=np.float32)
    n = moved.shape[-1]
    for index in np.ndindex(moved.shape[:-1]):
        line = moved[index].astype(np.float64)
        for p in range(n):
            total = 0.0
            for k in range(-radius, radius + 1):
                total = total + taps[k + radius] * line[mirror_indices(n, radius)[p + k + radius]]
            out[index + (p,)] = total
    return np.moveaxis(out, -1, axis)


def test_smoothing_pass_is_the_sum_written_out_nan_and_inf_included():
    rng = np.random.default_rng(3)
    values = rng.random((3, 7, 9, 2), dtype=np.float32)
    values[1, 3, 4, 0], values[0, 0, 0, 1], values[2, 6, 8, 0] = np.nan, np.inf, -np.inf
    for axis, sigma in ((0, 1.0), (1, 1.5), (2, 3.0)):
        expected = _direct_smoothing(values, sigma, axis)
        taps = threshold.gaussian_taps(sigma)
        np.testing.assert_array_equal(smooth_axis(values, taps, axis), expected)
        np.testing.assert_array_equal(threshold._smooth_pass(values, taps, axis), expected)


def test_a_nan_reaches_exactly_its_window_and_an_infinity_stays_infinite():
    image = np.zeros((1, 21, 21, 1), dtype=np.float32)
    image[0, 10, 10, 0] = np.nan
    image[0, 3, 15, 0] = np.inf
    smoothed = threshold.smooth(image, (1.0, 1.0, 1.0))
    radius = threshold.smoothing_radius(1.0)
    window = np.zeros((21, 21), dtype=bool)
    window[10 - radius:11 + radius, 10 - radius:11 + radius] = True
    np.testing.assert_array_equal(np.isnan(smoothed[0, ..., 0]), window)
    assert np.isposinf(smoothed[0, 3, 15, 0]) and np.isposinf(smoothed[0, 3 - radius, 15 + radius, 0])
    assert np.isfinite(smoothed[0, 3 - radius - 1, 15, 0])


def test_minimum_maximum_and_histogram_pass_over_nan_as_vigra():
    # two 1x3 objects in an (X, Y, Z, C) image; object 1 holds a NaN
    image = np.array([1.0, np.nan, 5.0, 2.0, 3.0, 7.0], dtype=np.float32).reshape(6, 1, 1, 1)
    labels = np.array([1, 1, 1, 2, 2, 2], dtype=np.uint32).reshape(6, 1, 1)
    with np.errstate(all="ignore"):
        features = standard_features(image, labels, ["Minimum", "Maximum", "Histogram", "Sum"], dims=2, backend=CPU)
    np.testing.assert_array_equal(features["Minimum"][1:, 0], [1.0, 2.0])
    np.testing.assert_array_equal(features["Maximum"][1:, 0], [5.0, 7.0])
    assert features["Histogram"][1].sum() == 2 and features["Histogram"][2].sum() == 3  # the NaN in no bin
    assert np.isnan(features["Sum"][1, 0]) and features["Sum"][2, 0] == 12.0  # sums do take it
    assert labelled_range(image[:, 0, 0, 0].astype(np.float64), labels[:, 0, 0]) == (1.0, 7.0)


def _float_copy(source: Path, target: Path, key: str, spoil) -> str:
    with h5py.File(source, "r") as f:
        values = f[key][()].astype(np.float32)
    spoil(values)
    with h5py.File(target, "w") as f:
        f[key] = values
    return f"{target}/{key}"


def _read(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def _warnings(err: str) -> list[str]:
    assert "Traceback" not in err and "RuntimeWarning" not in err, err
    return [line for line in err.splitlines() if "NaN or infinite" in line]


def test_pixel_classification_of_nan_and_inf(data: Path, tmp_path: Path, capsys):
    project = data / "projects/PixelClassification2d.ilp"
    nan_at, inf_at = (40, 50), (90, 20)

    def spoil(values):
        values[nan_at], values[inf_at] = np.nan, np.inf

    clean = _float_copy(data / "inputs/2d.h5", tmp_path / "clean.h5", "data", lambda v: None)
    spoiled = _float_copy(data / "inputs/2d.h5", tmp_path / "spoiled.h5", "data", spoil)
    results = {}
    for name, image in (("clean", clean), ("spoiled", spoiled)):
        for source in ("Probabilities", "Features"):
            out = tmp_path / f"{name}_{source}.h5"
            code, err = run_cli(["--headless", f"--project={project}", f"--export_source={source}",
                                 f"--output_filename_format={out}", image], tmp_path, capsys)
            assert code == 0, err
            found = _warnings(err)
            assert len(found) == (1 if name == "spoiled" else 0), err
            if found:
                assert "spoiled.h5/data" in found[0] and "probability 0" in found[0]
            results[name, source] = _read(out)
    features, probabilities = results["spoiled", "Features"], results["spoiled", "Probabilities"]
    nan_feature = np.isnan(features).any(axis=-1)
    assert nan_feature[nan_at] and not nan_feature.all()
    # a pixel with a NaN feature: 0 for every class; the others are probabilities
    assert (probabilities[nan_feature] == 0).all()
    np.testing.assert_allclose(probabilities[~nan_feature].sum(axis=-1), 1.0, atol=1e-5)
    assert np.isinf(features[inf_at]).any()
    # beyond the filters' reach of both values, nothing changed
    reach = np.isnan(features).any(axis=-1) | np.isinf(features).any(axis=-1)
    far = ~reach
    far[max(0, inf_at[0] - 40):inf_at[0] + 41, max(0, inf_at[1] - 40):inf_at[1] + 41] = False
    far[max(0, nan_at[0] - 40):nan_at[0] + 41, max(0, nan_at[1] - 40):nan_at[1] + 41] = False
    np.testing.assert_array_equal(probabilities[far], results["clean", "Probabilities"][far])


OBJECTS = "ObjectClassification5t3d2c_wPred_tablecsv.ilp"


def test_object_classification_with_nan_in_the_prediction_maps(data: Path, tmp_path: Path, capsys):
    """A NaN prediction makes its smoothing window background, nothing else changes."""
    with h5py.File(data / "inputs/5t3d2c_Probabilities.h5", "r") as f:
        at = (1, *np.argwhere(f["exported_data"][1, 5:-5, 5:-5, 5:-5, 0] > 0.9)[0] + 5, 0)  # t z y x c, in an object

    def spoil(values):
        values[at] = np.nan

    spoiled = _float_copy(data / "inputs/5t3d2c_Probabilities.h5", tmp_path / "p.h5", "exported_data", spoil)
    ids = {}
    for name, maps in (("clean", f"{data}/inputs/5t3d2c_Probabilities.h5/exported_data"), ("spoiled", spoiled)):
        out = tmp_path / f"{name}.h5"
        code, err = run_cli(["--headless", f"--project={data}/projects/{OBJECTS}", f"--raw_data={data}/inputs/5t3d2c.h5/data",
                             f"--prediction_maps={maps}", "--export_source=Object Identities",
                             f"--output_filename_format={out}"], tmp_path, capsys)
        assert code == 0, err
        assert len(_warnings(err)) == (1 if name == "spoiled" else 0), err
        ids[name] = _read(out)[..., 0] > 0
    changed = np.argwhere(ids["clean"] != ids["spoiled"])
    assert len(changed) > 0 and not ids["spoiled"][tuple(changed.T)].any()  # only towards background
    radius = threshold.smoothing_radius(1.0)
    assert (changed[:, 0] == at[0]).all()
    assert (np.abs(changed[:, 1:4] - np.array(at[1:4])) <= radius).all()


def test_object_classification_with_nan_in_the_raw_data(data: Path, tmp_path: Path, capsys):
    """ilastik 1.4.2 stops when a NaN lies inside an object; the table keeps NaN where it enters a
    sum and the objects are still classified, their missing features as 0."""
    with h5py.File(data / "inputs/5t3d2c_Probabilities.h5", "r") as f:
        inside = tuple(np.argwhere(f["exported_data"][0, ..., 0] > 0.9)[0])

    def spoil(values):
        values[(0, *inside, 0)] = np.nan

    raw = _float_copy(data / "inputs/5t3d2c.h5", tmp_path / "raw.h5", "data", spoil)
    table = tmp_path / "objects.csv"
    code, err = run_cli(["--headless", f"--project={data}/projects/{OBJECTS}", f"--raw_data={raw}",
                         f"--prediction_maps={data}/inputs/5t3d2c_Probabilities.h5/exported_data",
                         f"--table_filename={table}", f"--output_filename_format={tmp_path}/out.h5"], tmp_path, capsys)
    assert code == 0, err
    found = _warnings(err)
    assert len(found) == 1 and "raw.h5/data" in found[0] and "stops" in found[0]
    text = (tmp_path / "objects_table.csv").read_text()
    assert "nan" in text
    predicted = _read(tmp_path / "out.h5")
    assert predicted[0].max() > 0
