"""The napari plugin "Apply ilastik project" (issue 18), headless: Qt offscreen, pytest-qt.

Needs the ``napari`` extra and pytest-qt (``pip install -e '.[napari]' pytest-qt``); skipped with
that reason where they are not installed (CI installs ``.[test,gpu,cluster]``).
"""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from tiny_objects import prediction_maps, tiny_image, write_tiny_project

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from gpuheadless.experimental.api import AutocontextPipeline, ObjectClassificationPipeline  # noqa: E402
from gpuheadless.napari._apply import apply_to_layer, guess_axes  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "autocontext")
PIXEL_PROJECT = os.path.join(HERE, "two-stage-2d.ilp")


def _pixel_image():
    with h5py.File(os.path.join(HERE, "two-stage-2d-unseen.h5"), "r") as f:
        return f["data"][..., 0]  # a 2D layer: the project was trained on yxc with one channel


def test_the_manifest_is_valid_and_names_the_widget():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("gpuheadless")
    (widget,) = manifest.contributions.widgets
    assert widget.display_name == "Apply ilastik project"
    (command,) = manifest.contributions.commands
    assert command.python_name == "gpuheadless.napari._widget:apply_project_widget"


def test_layer_axes_are_guessed_as_ilastik_does():
    assert guess_axes(2, False, "yxc") == "yx"
    assert guess_axes(3, False, "zyx") == "zyx"
    assert guess_axes(3, True, None) == "yxc"
    assert guess_axes(4, False, None) == "zyxc"


def test_the_widget_adds_the_pipelines_results_as_layers(qtbot):
    from napari.components import ViewerModel

    from gpuheadless.napari._widget import apply_project_widget

    image = _pixel_image()
    widget = apply_project_widget()
    qtbot.addWidget(widget.native)
    viewer = ViewerModel()
    layer = viewer.add_image(image, name="cells")
    for data, options, kind in widget(image=layer, project=PIXEL_PROJECT, device="cpu"):
        viewer._add_layer_from_data(data, options, kind)
    expected = AutocontextPipeline.from_ilp_file(PIXEL_PROJECT, device="cpu").get_probabilities(image[..., None],
                                                                                              axes="yxc")
    names = [layer.name for layer in viewer.layers]
    assert len(names) == 1 + expected.shape[-1] + 1 and names[-1] == "cells Simple Segmentation"
    for k in range(expected.shape[-1]):
        np.testing.assert_array_equal(viewer.layers[1 + k].data, expected[..., k])
    segmentation = viewer.layers[-1]
    assert isinstance(segmentation, napari.layers.Labels)
    np.testing.assert_array_equal(segmentation.data, np.argmax(expected, axis=-1) + 1)
    assert len(np.unique(segmentation.data)) > 1


def test_object_projects_give_identities_predictions_and_the_table(tmp_path):
    raw, foreground, classes, _ = tiny_image()
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    steps = []
    layers = apply_to_layer(project, raw, "disks", second=prediction_maps(foreground), device="cpu",
                            progress=lambda done, total: steps.append((done, total)))
    expected = ObjectClassificationPipeline.from_ilp_file(project, device="cpu").classify(
        raw, prediction_maps(foreground), axes="yx")
    (ids, id_options, id_kind), (predictions, _, prediction_kind) = layers
    assert id_kind == prediction_kind == "labels" and steps[-1] == (1, 1)
    np.testing.assert_array_equal(ids, expected.identities)
    np.testing.assert_array_equal(predictions, expected.predictions)
    assert len(id_options["metadata"]["object table"]) == len(classes)
    with pytest.raises(Exception, match="needs prediction maps: choose its layer"):
        apply_to_layer(project, raw, "disks", device="cpu")
