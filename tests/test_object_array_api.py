"""Object Classification on arrays (issue 18): the command line's images and table, as arrays and a DataFrame."""
from __future__ import annotations

import csv
import sys

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli
from tiny_objects import prediction_maps, tiny_image, write_tiny_project

from gpuheadless import UserError
from gpuheadless.experimental.api import (ObjectClassificationFromPredictionPipeline,
                                          ObjectClassificationFromSegmentationPipeline, ObjectClassificationPipeline,
                                          from_project_file)

IMAGES = {"Object Identities": "identities", "Object Predictions": "predictions",
          "Object Probabilities": "probabilities"}
SECOND_FLAG = {"prediction": "--prediction_maps", "binary": "--segmentation_image", "labels": "--label_image"}


def _cli(project, raw, second, flag, axes, tmp_path, capsys):
    """The command line's three object images (in ``axes``) and the path of its CSV table."""
    argv = ["--headless", f"--project={project}", f"--raw_data={raw}", "--device=cpu", "--output_format=hdf5",
            "--export_source=Object Identities", "--export_object_prediction_img", "--export_object_probability_img",
            f"--output_axis_order={axes}", f"--output_filename_format={tmp_path}/cli_{{result_type}}.h5",
            f"--table_filename={tmp_path}/cli.csv"]
    code, err = run_cli(argv + ([f"{flag}={second}"] if second else []), tmp_path, capsys)
    assert code == 0, err
    images = {}
    for source in IMAGES:
        with h5py.File(tmp_path / f"cli_{source}.h5", "r") as f:
            images[source] = f["exported_data"][()]
    return images, tmp_path / "cli_table.csv"


def _h5(path, array):
    with h5py.File(path, "w") as f:
        f["data"] = array
    return f"{path}/data"


def assert_table_equals_csv(frame, path):
    """Every column of the DataFrame, in order, holds the values the CSV prints (read back at the
    column's own type: a float32 cell is parsed and rounded to float32)."""
    with open(path) as f:
        rows = list(csv.reader(f))
    assert list(frame.columns) == rows[0]
    assert len(frame) == len(rows) - 1 > 0
    for k, name in enumerate(rows[0]):
        column, written = frame[name].to_numpy(), [row[k] for row in rows[1:]]
        if column.dtype.kind in "iu":
            assert column.tolist() == [int(v) for v in written], name
        elif column.dtype.kind == "f":
            np.testing.assert_array_equal(column, np.array([float(v) for v in written]).astype(column.dtype), name)
        else:
            assert column.tolist() == written, name


@pytest.fixture
def tiny(tmp_path):
    raw, foreground, classes, centres = tiny_image()
    path = tmp_path / "tiny.ilp"
    write_tiny_project(path)
    return path, raw, foreground, classes, centres


def test_tiny_objects_from_arrays_equal_the_command_line(tiny, tmp_path, capsys):
    project, raw, foreground, classes, centres = tiny
    maps = prediction_maps(foreground)
    pipeline = ObjectClassificationPipeline.from_ilp_file(project, device="cpu")
    assert isinstance(pipeline, ObjectClassificationFromPredictionPipeline)
    result = pipeline.classify(raw, prediction_maps=maps, axes="yx")  # the maps' axes default to yx + c
    assert result.identities.shape == raw.shape and result.identities.dtype == np.uint32
    assert result.predictions.dtype == np.uint8 and result.probabilities.shape == raw.shape + (2,)
    # each disk is one object, of its size class
    assert result.identities.max() == len(classes)
    assert [result.predictions[c] for c in centres] == classes.tolist()
    images, table = _cli(project, _h5(tmp_path / "raw.h5", raw), _h5(tmp_path / "maps.h5", maps), "--prediction_maps",
                         "yxc", tmp_path, capsys)
    for source, name in IMAGES.items():
        ours = getattr(result, name)
        np.testing.assert_array_equal(ours if ours.ndim == 3 else ours[..., None], images[source], err_msg=source)
    assert_table_equals_csv(result.table, table)
    by_id = {int(result.identities[c]): ("small", "large")[k - 1] for c, k in zip(centres, classes)}
    assert result.table["Predicted Class"].tolist() == [by_id[i] for i in result.table["labelimage_oid"]]


def test_xarray_in_xarray_out_in_the_raw_datas_axes(tiny):
    xarray = pytest.importorskip("xarray")
    project, raw, foreground, _, _ = tiny
    pipeline = ObjectClassificationPipeline.from_ilp_file(project, device="cpu")
    expected = pipeline.classify(raw, prediction_maps(foreground), axes="yx")
    # x before y, and maps whose channel axis comes first: the results follow the raw data's dims
    result = pipeline.classify(xarray.DataArray(raw.T, dims=("x", "y")),
                               xarray.DataArray(np.moveaxis(prediction_maps(foreground), -1, 0), dims=("c", "y", "x")))
    assert isinstance(result.identities, xarray.DataArray) and result.identities.dims == ("x", "y")
    assert result.probabilities.dims == ("x", "y", "c")
    np.testing.assert_array_equal(result.identities.values, expected.identities.T)
    np.testing.assert_array_equal(result.probabilities.values, np.moveaxis(expected.probabilities, 0, 1))
    np.testing.assert_array_equal(
        pipeline.get_object_probabilities(xarray.DataArray(raw, dims=("y", "x")),
                                          xarray.DataArray(prediction_maps(foreground), dims=("y", "x", "c"))).values,
        expected.probabilities)


@pytest.mark.parametrize("variant", ["binary", "labels"])
def test_segmentation_and_label_image_variants_equal_the_command_line(variant, tmp_path, capsys):
    raw, foreground, classes, centres = tiny_image()
    project = tmp_path / f"{variant}.ilp"
    write_tiny_project(project, variant)
    if variant == "binary":
        second = foreground.astype(np.uint8)
    else:  # two disks sharing one value form one object of a label image
        from scipy import ndimage

        second = ndimage.label(foreground)[0].astype(np.uint16) * 3
        second[second == 6] = 3
    pipeline = ObjectClassificationPipeline.from_ilp_file(project, device="cpu")
    assert pipeline.second_input == {"binary": "segmentation_image", "labels": "label_image"}[variant]
    result = pipeline.classify(raw, **{pipeline.second_input: second}, axes="yx")
    assert result.identities.max() == len(classes) - (variant == "labels")
    images, table = _cli(project, _h5(tmp_path / "raw.h5", raw), _h5(tmp_path / "second.h5", second),
                         SECOND_FLAG[variant], "yxc", tmp_path, capsys)
    for source, name in IMAGES.items():
        ours = getattr(result, name)
        np.testing.assert_array_equal(ours if ours.ndim == 3 else ours[..., None], images[source], err_msg=source)
    assert_table_equals_csv(result.table, table)


def test_ilastiks_names_and_calls(tiny, tmp_path):
    project, raw, foreground, _, _ = tiny
    segmentation_project = tmp_path / "binary.ilp"
    write_tiny_project(segmentation_project, "binary")
    pipeline = ObjectClassificationFromSegmentationPipeline.from_ilp_file(segmentation_project, device="cpu")
    segmentation = foreground.astype(np.uint8)
    probabilities = pipeline.get_object_probabilities(raw, segmentation, axes="yx")  # ilastik's positional call
    np.testing.assert_array_equal(probabilities, pipeline.classify(raw, segmentation_image=segmentation, axes="yx")
                                  .probabilities)
    np.testing.assert_allclose(probabilities[foreground].sum(axis=-1), 1, rtol=1e-6)
    assert not probabilities[~foreground].any()
    with pytest.deprecated_call():
        assert isinstance(from_project_file(project), ObjectClassificationFromPredictionPipeline)
    with pytest.raises(UserError, match="takes projects from a binary segmentation, this one is from prediction maps"):
        ObjectClassificationFromSegmentationPipeline.from_ilp_file(project)


def test_bad_object_inputs_are_one_line_errors(tiny):
    project, raw, foreground, _, _ = tiny
    pipeline = ObjectClassificationPipeline.from_ilp_file(project, device="cpu")
    maps = prediction_maps(foreground)
    cases = [
        (dict(segmentation_image=foreground), "takes prediction_maps .*not segmentation_image"),
        (dict(), "needs prediction_maps= besides raw_data"),
        (dict(prediction_maps=maps[:-1]), r"has shape \(1, 1, 47, 64\) \(tzyx\), the raw data 'raw_data' \(1, 1, 48, 64\)"),
        (dict(prediction_maps=maps[..., :1]), "have 1 channel\\(s\\); the project thresholds channel 1"),
        (dict(prediction_maps=maps[None]), "second_axes="),
    ]
    for inputs, words in cases:
        with pytest.raises(UserError, match=words) as caught:
            pipeline.classify(raw, axes="yx", **inputs)
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="pass axes="):
        pipeline.classify(raw, maps)


def test_the_table_needs_pandas_and_says_so(tiny, monkeypatch):
    project, raw, foreground, _, _ = tiny
    result = ObjectClassificationPipeline.from_ilp_file(project, device="cpu").classify(
        raw, prediction_maps(foreground), axes="yx")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="^the object table as a DataFrame needs pandas: pip install pandas$"):
        result.table  # noqa: B018


# ilastik's test projects (../shared/data/ilastik)

def _read(path, name="data"):
    with h5py.File(path, "r") as f:
        return f[name][()]


def test_ilastiks_3d_time_series_project_gives_ilastiks_images_and_table(data, tmp_path, capsys):
    xarray = pytest.importorskip("xarray")
    raw = _read(data / "inputs/5t3d2c.h5")
    maps = _read(data / "inputs/5t3d2c_Probabilities.h5", "exported_data")
    pipeline = ObjectClassificationPipeline.from_ilp_file(data / "projects/ObjectClassification5t3d2c_wPred.ilp",
                                                          device="cpu")
    dims = ("t", "z", "y", "x", "c")
    result = pipeline.classify(xarray.DataArray(raw, dims=dims), prediction_maps=xarray.DataArray(maps, dims=dims))
    for source, name in IMAGES.items():
        reference = _read(data / f"reference/ObjectClassification5t3d2c_wPred__5t3d2c__{source.replace(' ', '_')}.h5",
                          "exported_data")
        ours = getattr(result, name).values
        np.testing.assert_array_equal(ours if ours.ndim == 5 else ours[..., None], reference, err_msg=source)
    _, table = _cli(data / "projects/ObjectClassification5t3d2c_wPred.ilp", f"{data}/inputs/5t3d2c.h5/data",
                    f"{data}/inputs/5t3d2c_Probabilities.h5/exported_data", "--prediction_maps", "tzyxc", tmp_path, capsys)
    assert_table_equals_csv(result.table, table)
    assert len(result.table) == 71 and result.table["timestep"].max() == 4


@pytest.mark.parametrize("stem,variant,second", [
    ("2d3c_wPred", "prediction", "2d3c_Probabilities.h5/exported_data"),
    ("2d3c_wSeg", "binary", "2d3c_Binary_Segmentation.h5/exported_data"),
    ("2d3c_wLabels", "labels", "2d3c_Object Identities.h5/exported_data"),
])
def test_ilastiks_2d_projects_with_hull_and_skeleton_features_equal_the_command_line(stem, variant, second, data,
                                                                                     tmp_path, capsys):
    raw = _read(data / "inputs/2d3c.h5")
    file, name = second.rsplit("/", 1)
    pipeline = ObjectClassificationPipeline.from_ilp_file(data / f"projects/ObjectClassification{stem}.ilp", device="cpu")
    result = pipeline.classify(raw, _read(data / "inputs" / file, name), axes="yxc")
    images, table = _cli(data / f"projects/ObjectClassification{stem}.ilp", f"{data}/inputs/2d3c.h5/data",
                         f"{data}/inputs/{second}", SECOND_FLAG[variant], "yxc", tmp_path, capsys)
    for source, attribute in IMAGES.items():
        ours = getattr(result, attribute)
        np.testing.assert_array_equal(ours if ours.ndim == 3 else ours[..., None], images[source], err_msg=source)
    assert result.identities.max() > 5
    assert_table_equals_csv(result.table, table)
    assert any(c.startswith("Diameter") for c in result.table.columns)  # the skeleton features are there


def test_pixel_and_object_project_from_raw_data_only_equals_the_command_line(data, tmp_path, capsys):
    raw = _read(data / "inputs/5t2d1c.h5")
    pipeline = ObjectClassificationPipeline.from_ilp_file(data / "projects/pc-oc-133.ilp", device="cpu")
    assert pipeline.second_input is None
    result = pipeline.classify(raw, axes="tyxc")
    assert result.identities.shape == raw.shape[:3] and result.identities.max() > 0
    images, table = _cli(data / "projects/pc-oc-133.ilp", f"{data}/inputs/5t2d1c.h5/data", None, None, "tyxc",
                         tmp_path, capsys)
    for source, attribute in IMAGES.items():
        ours = getattr(result, attribute)
        np.testing.assert_array_equal(ours if ours.ndim == 4 else ours[..., None], images[source], err_msg=source)
    assert_table_equals_csv(result.table, table)
    with pytest.raises(UserError, match="give raw_data only"):
        pipeline.classify(raw, np.zeros_like(raw), axes="tyxc")
