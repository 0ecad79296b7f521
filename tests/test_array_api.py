"""ilastik's Python API on arrays (issue 18): the same numbers as the command line, ilastik's checks."""
from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest

from gpuheadless import UserError
from gpuheadless.experimental.api import PixelClassificationPipeline, from_project_file

xarray = pytest.importorskip("xarray")


def _input(data, name):
    with h5py.File(data / "inputs" / f"{name}.h5", "r") as f:
        return f["data"][...]


def _reference(data, name):
    with h5py.File(data / "reference" / f"{name}.h5", "r") as f:
        return f["exported_data"][...]


@pytest.fixture(scope="module")
def pipeline_3d(data):
    return PixelClassificationPipeline.from_ilp_file(data / "projects" / "PixelClassification3d.ilp", device="cpu")


@pytest.mark.parametrize("project,name,dims", [
    ("PixelClassification2d", "2d", ("y", "x")),
    ("PixelClassification3d", "3d", ("z", "y", "x")),
    ("PixelClassification2d3c", "2d3c", ("y", "x", "c")),
])
def test_xarray_in_gives_ilastiks_probabilities_bit_for_bit(project, name, dims, data):
    pipeline = PixelClassificationPipeline.from_ilp_file(data / "projects" / f"{project}.ilp", device="cpu")
    result = pipeline.get_probabilities(xarray.DataArray(_input(data, name), dims=dims))
    assert isinstance(result, xarray.DataArray)
    assert result.dims == tuple(d for d in dims if d != "c") + ("c",)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result.values, _reference(data, f"{project}__{name}__Probabilities"))


def test_numpy_in_numpy_out_with_axes_and_any_axis_order(pipeline_3d, data):
    image = _input(data, "3d")
    expected = _reference(data, "PixelClassification3d__3d__Probabilities")
    result = pipeline_3d.get_probabilities(np.transpose(image, (2, 0, 1))[None], axes="cxzy")
    assert isinstance(result, np.ndarray) and result.shape == expected.shape  # the training axes, zyxc
    np.testing.assert_array_equal(result, expected)


def test_dask_in_gives_a_lazy_array_equal_to_the_eager_one(pipeline_3d, data):
    da = pytest.importorskip("dask.array")
    image = da.from_array(_input(data, "3d"), chunks=(20, 25, 30))
    calls = []
    counted = image.map_blocks(lambda b: calls.append(b.size) or b, dtype=image.dtype)
    lazy = pipeline_3d.get_probabilities(counted, axes="zyx")
    assert isinstance(lazy, da.Array) and not any(calls)  # nothing read yet (dask may probe with empty blocks)
    assert lazy.shape == (50, 60, 55, 2) and lazy.chunks[:3] == image.chunks
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"),
                                  _reference(data, "PixelClassification3d__3d__Probabilities"))


@pytest.mark.parametrize("project,name,dims,words", [
    ("PixelClassification2d", "2d3c", ("y", "x", "c"), "Number of channels mismatch. Classifier trained for 1 but input has 3"),
    ("PixelClassification2d3c", "2d", ("y", "x"), "Number of channels mismatch. Classifier trained for 3 but input has 1"),
    ("PixelClassification2d", "3d", ("z", "y", "x"), "Number of spatial dims doesn't match. Classifier trained for 2 but input has 3"),
    ("PixelClassification3d", "2d", ("y", "x"), "Number of spatial dims doesn't match. Classifier trained for 3 but input has 2"),
])
def test_wrong_channels_or_dimensionality_is_a_value_error(project, name, dims, words, data):
    pipeline = PixelClassificationPipeline.from_ilp_file(data / "projects" / f"{project}.ilp", device="cpu")
    with pytest.raises(ValueError, match=words) as caught:
        pipeline.get_probabilities(xarray.DataArray(_input(data, name), dims=dims))
    assert isinstance(caught.value, UserError)


def test_bad_axes_are_refused(pipeline_3d):
    with pytest.raises(ValueError, match="pass axes="):
        pipeline_3d.get_probabilities(np.zeros((4, 5, 6)))
    with pytest.raises(ValueError, match="distinct letters"):
        pipeline_3d.get_probabilities(np.zeros((4, 5, 6)), axes="zyy")


def test_a_project_without_a_classifier_is_refused(data, tmp_path):
    path = tmp_path / "untrained.ilp"
    shutil.copyfile(data / "projects" / "PixelClassification3d.ilp", path)
    with h5py.File(path, "a") as f:
        del f["PixelClassification/ClassifierForests"]
    with pytest.raises(UserError, match="no trained classifier"):
        PixelClassificationPipeline.from_ilp_file(path)


def test_ilastiks_deprecated_names_still_work(data):
    image = xarray.DataArray(_input(data, "3d"), dims=("z", "y", "x"))
    with pytest.deprecated_call():
        pipeline = from_project_file(data / "projects" / "PixelClassification3d.ilp")
    with pytest.deprecated_call():
        result = pipeline.predict(image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = pipeline.get_probabilities(image)
    np.testing.assert_array_equal(result.values, again.values)
