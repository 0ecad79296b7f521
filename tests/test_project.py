"""Reading .ilp projects of both layouts, and refusing what is unsafe or not ours."""
from __future__ import annotations

import pickle
import shutil

import h5py
import numpy as np
import pytest

from gpuheadless.errors import UserError
from gpuheadless.project.ilp import read_project
from gpuheadless.project.safe_pickle import PickledObject, UnsafePickleError, safe_loads


def test_old_layout(data):
    p = read_project(data / "projects" / "PixelClassification2d.ilp")
    assert p.ilastik_version == "1.2.2rc4" and p.workflow == "Pixel Classification"
    assert p.label_names == ["Label 1", "Label 2"] and p.label_colors == [(255, 0, 0), (0, 255, 0)]
    assert p.lanes[0].axes == "yx" and p.lanes[0].shape is None and p.lanes[0].file_path == "./inputdata/2d.h5/data"
    assert p.selection.compute_in_2d is None and int(p.selection.matrix.sum()) == 22
    assert sum(int(np.count_nonzero(b.values)) for b in p.labels[0]) == 466  # equals the forests' row_count_
    assert p.factory["_num_trees"] == 100 and p.factory["_num_forests"] == 8  # Python 2 pickle, parsed safely
    assert p.export["output_format"] == "hdf5"


def test_new_layout(data):
    p = read_project(data / "projects" / "PixelClassification2d_units.ilp")
    assert p.lanes[0].shape == (16, 16) and p.lanes[0].axis_units == {"y": "nm", "x": "cm"}
    assert p.selection.compute_in_2d == (True,) * 7
    assert p.forest.n_features == 8 and p.label_colors[0] == (255, 225, 25)


def test_time_series_and_channels(data):
    p = read_project(data / "projects" / "PixelClassification5t3d2c.ilp")
    assert p.lanes[0].axes == "tzyxc" and p.forest.n_features == 54
    assert p.labels[0][0].slices[0] == slice(0, 1)  # t first in the internal order


def _set(path, name, value):
    with h5py.File(path, "a") as f:
        if name in f:
            del f[name]
        f[name] = value


def test_crafted_pickle_is_refused(data, tmp_path):
    target = tmp_path / "evil.ilp"
    target.write_bytes((data / "projects" / "PixelClassification2d.ilp").read_bytes())
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    _set(target, "PixelClassification/ClassifierFactory", payload)
    with pytest.raises(UserError, match="refusing to load os.system"):
        read_project(target)
    assert not marker.exists()


def test_safe_loads_refuses_builtins_and_reduce():
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps(eval, protocol=0))
    with pytest.raises(UnsafePickleError):
        safe_loads(b"cbuiltins\nexec\n(S'print(1)'\ntR.")
    obj = safe_loads(b"ccopy_reg\n_reconstructor\n(clazyflow.classifiers.parallelVigraRfLazyflowClassifier\n"
                     b"ParallelVigraRfLazyflowClassifierFactory\nc__builtin__\nobject\nNtR(dS'_num_trees'\nI7\nsb.")
    assert isinstance(obj, PickledObject) and obj.state == {"_num_trees": 7}


def test_other_workflow_missing_and_corrupt(data, tmp_path):
    with pytest.raises(UserError, match="Object Classification"):
        read_project(data / "projects" / "ObjectClassification5t3d2c_wPred.ilp")
    with pytest.raises(UserError, match="does not exist"):
        read_project(tmp_path / "nope.ilp")
    bad = tmp_path / "bad.ilp"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(UserError, match="not an ilastik project"):
        read_project(bad)


@pytest.mark.parametrize("stored", [np.array([5e-324]), np.float64(0.0), np.zeros((0, 3), np.int64)])
def test_empty_label_colours_as_ilastik_stores_them(stored, data, tmp_path):
    """ilastik's API stores an empty colour list as a 1-element float64 array (isEmpty=True)."""
    path = tmp_path / "p.ilp"
    shutil.copy(data / "projects" / "PixelClassification2d.ilp", path)
    with h5py.File(path, "r+") as f:
        for key in ("LabelColors", "PmapColors"):
            del f["PixelClassification"][key]
            f["PixelClassification"].create_dataset(key, data=stored).attrs["isEmpty"] = True
    project = read_project(path)
    assert project.label_colors == [] and project.label_names == ["Label 1", "Label 2"]
    assert project.forest is not None


@pytest.mark.parametrize("name, refused", [("NoSuchWorkflow", False), ("Carving", True), ("CountingWorkflow", True),
                                           ("ManualTrackingWorkflow", True)])
def test_unknown_workflow_name_is_read_as_pixel_classification(name, refused, data, tmp_path):
    """ilastik's headless shell opens a project whose workflow it does not know as Pixel Classification."""
    path = tmp_path / "p.ilp"
    shutil.copy(data / "projects" / "PixelClassification2d3c.ilp", path)
    with h5py.File(path, "r+") as f:
        del f["workflowName"]
        f["workflowName"] = name.encode()
    if refused:
        with pytest.raises(UserError, match=name):
            read_project(path)
    else:
        project = read_project(path)
        assert project.workflow == name and project.forest is not None
