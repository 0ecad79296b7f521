"""Object Classification side by side with the real ilastik on generated volumes (issue 13, item 6).

Each case writes a volume of at least 1,000 objects (blobs of varied shapes, sizes and intensities
in two channels, fixed seed), runs one of ilastik's own projects on it with ilastik and with
gpuheadless, and compares the images voxel by voxel and the object tables cell by cell (columns
matched by name: ilastik's column order depends on Python's hash seed).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from .ilastik_runner import run_gpuheadless, run_ilastik

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from against_ilastik import read_table  # noqa: E402
from object_volumes import blob_volume, object_inputs  # noqa: E402

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data" / "ilastik"))


def _write(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data, chunks=True)


def _read(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["exported_data"][...]


def assert_tables_equal(theirs: Path, ours: Path) -> int:
    """Both programs' ``table_table.csv`` equal cell for cell; the number of cells compared."""
    cells, differing = compare_tables(read_table(ours / "table_table.csv"), read_table(theirs / "table_table.csv"))
    assert not differing, f"{len(differing)} of {cells} cells differ: {differing[:20]}"
    return cells


def compare_tables(ours: dict[str, list[str]], theirs: dict[str, list[str]]) -> tuple[int, list[str]]:
    """Cells compared and the differing ones (``column[row]: ours != theirs``), columns by name."""
    assert sorted(ours) == sorted(theirs), set(ours) ^ set(theirs)
    compared, differing = 0, []
    for name in sorted(theirs):
        assert len(ours[name]) == len(theirs[name]), name
        for row, (a, b) in enumerate(zip(ours[name], theirs[name])):
            compared += 1
            if a != b:
                differing.append(f"{name}[{row}]: {a} != {b}")
    return compared, differing


def _both(args: list[str], cwd: Path) -> tuple[Path, Path]:
    """Run ``args`` with ilastik and with gpuheadless; ``{out}`` in an argument names each one's
    own output folder (returned: ilastik's, ours)."""
    folders = []
    for who, run in (("ilastik", run_ilastik), ("ours", lambda a, c: run_gpuheadless(["--headless", *a], c))):
        folder = cwd / who
        folder.mkdir(exist_ok=True)
        done = run([arg.replace("{out}", str(folder)) for arg in args], cwd)
        assert done.returncode == 0, f"{who} failed:\n{done.output[-3000:]}"
        folders.append(folder)
    return folders[0], folders[1]


def compare_images(theirs: Path, ours: Path) -> int:
    """Voxels compared (the images must be equal)."""
    a, b = _read(theirs), _read(ours)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    differing = int(np.count_nonzero(a != b))
    assert differing == 0, f"{theirs.name}: {differing} of {a.size} voxels differ"
    return a.size


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch folder with copies of the projects and ``inputdata`` pointing at the shared inputs."""
    (tmp_path / "inputdata").symlink_to(DATA / "inputs")
    return tmp_path


def edited_project(name: str, target: Path, *, workflow: str | None = None, role: tuple[str, str] | None = None,
                   forest_from: str | None = None, without: tuple[str, ...] = (), retrain: bool = False) -> Path:
    """A tmp copy of one of ilastik's test projects, edited as ilastik's GUI could have saved it.

    ``workflow`` renames the workflow, ``role`` (old, new) the second input role; ``forest_from``
    copies another project's stored forest (same features and classes); ``without`` drops feature
    plugins from the selection; ``retrain`` drops the stored forest (both programs then train on
    the project's labelled objects). Every copy gets CSV table settings with all its features
    (ilastik refuses ``--table_filename`` without them).
    """
    shutil.copy(DATA / "projects" / name, target)
    with h5py.File(target, "r+") as f:
        if workflow:
            del f["workflowName"]
            f["workflowName"] = workflow.encode()
        if role:
            roles = [r.decode() for r in f["Input Data/Role Names"][()]]
            del f["Input Data/Role Names"]
            f["Input Data/Role Names"] = [(role[1] if r == role[0] else r).encode() for r in roles]
            for lane in f["Input Data/infos"].values():
                if role[0] in lane:
                    lane.move(role[0], role[1])
        for plugin in without:
            for group in ("ObjectClassification/SelectedFeatures", "ObjectExtraction/Features"):
                if plugin in f[group]:
                    del f[group][plugin]
        if (retrain or without) and "ObjectClassification/ClassifierForests" in f:
            del f["ObjectClassification/ClassifierForests"]
        if forest_from:
            with h5py.File(DATA / "projects" / forest_from, "r") as source:
                source.copy("ObjectClassification/ClassifierForests", f["ObjectClassification"])
        names = sorted({n for plugin in f["ObjectClassification/SelectedFeatures"].values() for n in plugin})
        settings = ({"file type": "csv", "file path": "unused.csv", "compression": {}}, names)
        if "ObjectClassification/ExportSettings" in f:
            del f["ObjectClassification/ExportSettings"]
        f["ObjectClassification/ExportSettings"] = np.void(pickle.dumps(settings, protocol=0))
    return target


def compare_zarr(theirs: Path, ours: Path) -> int:
    """Voxels compared over every level of two OME-Zarr exports (equal, and equal attributes but
    the creator's name)."""
    import zarr

    attrs = [json.loads((folder / ".zattrs").read_text()) for folder in (theirs, ours)]
    for a in attrs:
        a.pop("_creator", None)
    assert attrs[0] == attrs[1], attrs
    voxels = 0
    for level in attrs[0]["multiscales"][0]["datasets"]:
        a, b = (zarr.open(str(folder / level["path"]), mode="r") for folder in (theirs, ours))
        assert dict(a.attrs) == dict(b.attrs), level["path"]
        a, b = a[...], b[...]
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{theirs.name}/{level['path']}: differs"
        voxels += a.size
    return voxels


def compare_attributes(theirs: Path, ours: Path) -> None:
    """The exported dataset's HDF5 attributes, names, values and types."""
    with h5py.File(theirs, "r") as a, h5py.File(ours, "r") as b:
        x, y = a["exported_data"].attrs, b["exported_data"].attrs
        assert sorted(x) == sorted(y), (sorted(x), sorted(y))
        for key in x:
            assert np.asarray(x[key]).dtype == np.asarray(y[key]).dtype, key
            assert np.array_equal(np.asarray(x[key]), np.asarray(y[key])), key


PREDICTION_COLUMNS = ("Predicted Class", "Probability of ")


def split_table(table: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(feature and identity columns, prediction columns) of an object table."""
    predictions = {k: v for k, v in table.items() if k.startswith(PREDICTION_COLUMNS)}
    return {k: v for k, v in table.items() if k not in predictions}, predictions


def class_agreement(ours: dict[str, list[str]], theirs: dict[str, list[str]]) -> float:
    """Fraction of objects with the same predicted class (retrained forests differ run to run)."""
    a, b = ours["Predicted Class"], theirs["Predicted Class"]
    return sum(x == y for x, y in zip(a, b)) / max(len(a), 1)


def write_inputs(workdir: Path, raw: np.ndarray, second: np.ndarray, second_name: str = "exported_data") -> None:
    _write(workdir / "raw.h5", "data", raw)
    _write(workdir / "second.h5", second_name, second)


def ids_and_table(workdir: Path, project: Path, second_flag: str, extra: tuple[str, ...] = ()) -> tuple[Path, Path, int, int]:
    """Both programs' Object Identities and table; returns (theirs, ours, objects, voxels compared)."""
    inputs = [f"--project={project}", "--raw_data=raw.h5/data", f"{second_flag}=second.h5/exported_data",
              "--output_format=hdf5", *extra]
    theirs, ours = _both(inputs + ["--export_source=Object Identities", "--table_filename={out}/table.csv",
                                   "--output_filename_format={out}/ids.h5"], workdir)
    ids = _read(theirs / "ids.h5")
    n_objects = int(sum(ids[t].max() for t in range(len(ids)))) if ids.ndim == 5 else int(ids.max())
    voxels = compare_images(theirs / "ids.h5", ours / "ids.h5")
    compare_attributes(theirs / "ids.h5", ours / "ids.h5")
    return theirs, ours, n_objects, voxels


def test_prediction_maps_3d_time_series(ilastik, workdir):
    """``ObjectClassification5t3d2c_wPred_tablecsv.ilp`` (smoothing, threshold 0.7, size filter,
    20 features incl. principal axes and channel covariance, stored forest) on 2 x 20 x 360 x 360."""
    labels = blob_volume((2, 20, 360, 360), (10, 18, 18), seed=13)
    raw, probabilities = object_inputs(labels, seed=14)
    _write(workdir / "raw.h5", "data", raw)
    _write(workdir / "pmaps.h5", "exported_data", probabilities)
    project = workdir / "oc.ilp"
    shutil.copy(DATA / "projects" / "ObjectClassification5t3d2c_wPred_tablecsv.ilp", project)
    inputs = [f"--project={project}", "--raw_data=raw.h5/data", "--prediction_maps=pmaps.h5/exported_data",
              "--output_format=hdf5"]
    theirs, ours = _both(inputs + ["--export_source=Object Identities", "--table_filename={out}/table.csv",
                                   "--output_filename_format={out}/ids.h5"], workdir)
    ids = _read(theirs / "ids.h5")
    n_objects = int(sum(ids[t].max() for t in range(len(ids))))
    assert n_objects >= 1000, n_objects
    voxels = compare_images(theirs / "ids.h5", ours / "ids.h5")
    cells = assert_tables_equal(theirs, ours)
    theirs, ours = _both(inputs + ["--export_source=Object Probabilities", "--output_filename_format={out}/p.h5",
                                   "--table_filename={out}/again.csv"],
                         workdir)
    voxels += compare_images(theirs / "p.h5", ours / "p.h5")
    print(f"3D time series: {n_objects} objects, {voxels} voxels and {cells} table cells equal")


def test_prediction_maps_3d_and_multiscale_ome_zarr(ilastik, workdir):
    """The same project on a 3D volume without time (``--input_axes=zyxc``), 40 x 360 x 360 with
    some 1,200 objects (of 1,600 blobs, the rest below the size filter); Object Probabilities also as ilastik's multi-scale OME-Zarr (every level)."""
    labels = blob_volume((1, 40, 360, 360), (10, 18, 18), seed=15)
    raw, probabilities = object_inputs(labels, seed=16)
    write_inputs(workdir, raw[0], probabilities[0])
    project = edited_project("ObjectClassification5t3d2c_wPred_tablecsv.ilp", workdir / "oc.ilp")
    axes = ("--input_axes=zyxc",)
    theirs, ours, n_objects, voxels = ids_and_table(workdir, project, "--prediction_maps", axes)
    assert n_objects >= 1000, n_objects
    cells = assert_tables_equal(theirs, ours)
    inputs = [f"--project={project}", "--raw_data=raw.h5/data", "--prediction_maps=second.h5/exported_data", *axes,
              "--table_filename={out}/again.csv"]
    theirs, ours = _both(inputs + ["--export_source=Object Predictions", "--output_format=hdf5",
                                   "--output_filename_format={out}/predictions.h5"], workdir)
    voxels += compare_images(theirs / "predictions.h5", ours / "predictions.h5")
    compare_attributes(theirs / "predictions.h5", ours / "predictions.h5")
    theirs, ours = _both(inputs + ["--export_source=Object Probabilities", "--output_format=multi-scale OME-Zarr",
                                   "--output_filename_format={out}/p"], workdir)
    voxels += compare_zarr(theirs / "p.zarr", ours / "p.zarr")
    print(f"3D: {n_objects} objects, {voxels} voxels and {cells} table cells equal")


def test_binary_segmentation_3d_time_series(ilastik, workdir):
    """``ObjectClassification5t3d2c_wSeg.ilp`` (it selects the same 20 features as the prediction
    map project, whose forest it is given) on a binary segmentation, 2 x 20 x 288 x 288."""
    labels = blob_volume((2, 20, 288, 288), (10, 18, 18), seed=17)
    raw, _ = object_inputs(labels, seed=18)
    write_inputs(workdir, raw, (labels > 0).astype(np.uint8)[..., None])
    project = edited_project("ObjectClassification5t3d2c_wSeg.ilp", workdir / "oc.ilp",
                             forest_from="ObjectClassification5t3d2c_wPred_tablecsv.ilp")
    theirs, ours, n_objects, voxels = ids_and_table(workdir, project, "--segmentation_image")
    assert n_objects >= 1000, n_objects
    cells = assert_tables_equal(theirs, ours)
    print(f"binary segmentation: {n_objects} objects, {voxels} voxels and {cells} table cells equal")


def test_label_image_3d(ilastik, workdir):
    """ilastik's label image workflow (a copy of the binary segmentation project with that workflow
    and its "Label Image" role) on 40 x 288 x 288 labels numbered at random (ids follow the first
    occurrence, as ilastik renumbers them)."""
    labels = blob_volume((1, 40, 288, 288), (10, 18, 18), seed=19)
    shuffled = np.concatenate([[0], np.random.default_rng(20).permutation(int(labels.max())) + 1])[labels]
    raw, _ = object_inputs(labels, seed=21)
    write_inputs(workdir, raw, shuffled.astype(np.uint32)[..., None])
    project = edited_project("ObjectClassification5t3d2c_wSeg.ilp", workdir / "oc.ilp",
                             workflow="Object Classification (from label image)",
                             role=("Segmentation Image", "Label Image"),
                             forest_from="ObjectClassification5t3d2c_wPred_tablecsv.ilp")
    theirs, ours, n_objects, voxels = ids_and_table(workdir, project, "--label_image")
    assert n_objects >= 1000, n_objects
    cells = assert_tables_equal(theirs, ours)
    print(f"label image: {n_objects} objects, {voxels} voxels and {cells} table cells equal")


def test_prediction_maps_2d_retrained(ilastik, workdir):
    """``ObjectClassification2d_wPred.ilp`` without its "2D Convex Hull Features" (vigra 1.11.1 has
    no extract2DConvexHullFeatures), so both programs retrain from its labelled objects, on a
    1,088 x 1,088 image with 1,024 objects: Object Identities and every feature column exact; the
    classes agree about as well as two ilastik runs do (its training is not deterministic)."""
    labels = blob_volume((1, 1, 1088, 1088), (1, 34, 34), seed=22)
    raw, probabilities = object_inputs(labels, seed=23)
    write_inputs(workdir, raw[0, 0, ..., 0], probabilities[0, 0, ..., ::-1])  # the project thresholds channel 1
    project = edited_project("ObjectClassification2d_wPred.ilp", workdir / "oc.ilp",
                             without=("2D Convex Hull Features",))
    theirs, ours, n_objects, voxels = ids_and_table(workdir, project, "--prediction_maps")
    assert n_objects >= 1000, n_objects
    our_features, our_predictions = split_table(read_table(ours / "table_table.csv"))
    their_features, their_predictions = split_table(read_table(theirs / "table_table.csv"))
    cells, differing = compare_tables(our_features, their_features)
    assert not differing, f"{len(differing)} of {cells} cells differ: {differing[:20]}"
    agreement = class_agreement(our_predictions, their_predictions)
    # Retrained on 4 labelled objects, far from this data: two ilastik runs agreed on 70 % of the
    # objects, two of ours (other seeds) on 74 %, ilastik and ours on 50-75 % (4 pairs).
    assert agreement >= 0.45, agreement
    assert set(our_predictions["Predicted Class"]) == set(their_predictions["Predicted Class"])
    print(f"2D retrained: {n_objects} objects, {voxels} voxels and {cells} feature cells equal; "
          f"classes agree for {agreement:.1%}")
