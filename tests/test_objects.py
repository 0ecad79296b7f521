"""Object Classification building blocks against the values stored in ilastik's own project
(ObjectClassification5t3d2c_wPred: 5 time points, 2 channels, 3D)."""
from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest

from gpuheadless.objects.classifier import feature_matrix, object_probabilities, predicted_classes
from gpuheadless.objects.eigensystem import symmetric_eigensystem
from gpuheadless.backend import cpu_backend
from gpuheadless.objects.features import neighbourhood_features, standard_features
from gpuheadless.project.vigra_forest import read_vigra_forests

CPU = cpu_backend()

PROJECT = "projects/ObjectClassification5t3d2c_wPred_tablecsv.ilp"
DEFAULTS = ("RegionCenter", "Coord<Minimum>", "Coord<Maximum>", "Count")


@pytest.fixture(scope="module")
def stored(data):
    with h5py.File(data / PROJECT, "r") as f, h5py.File(data / "inputs/5t3d2c.h5", "r") as raw:
        selected = {p: sorted(f["ObjectClassification/SelectedFeatures"][p]) for p in f["ObjectClassification/SelectedFeatures"]}
        margins = f["ObjectExtraction/Features/Standard Object Features/Mean in neighborhood/margin"][()]
        forests = f["ObjectClassification/ClassifierForests"]
        forest = read_vigra_forests([forests[k] for k in sorted(forests) if k.startswith("Forest")])
        steps = []
        for t in range(5):
            labels = f[f"ObjectExtraction/LabelImage_v2/labelimage000/block{t:04d}"][0, ..., 0]  # x, y, z
            group = f[f"ObjectExtraction/RegionFeatures/0000/[[{t}], [{t + 1}]]"]
            features = {p: {k: group[p][k][()] for k in group[p]} for p in group}
            probabilities = f[f"ObjectClassification/CachedProbabilities/0000/{t}"][()]
            image = np.transpose(raw["data"][t], (2, 1, 0, 3)).astype(np.float32)  # x, y, z, c
            steps.append((image, labels, features, probabilities))
        n_classes = len(f["ObjectClassification/LabelNames"])
    return selected, margins, forest, steps, n_classes


def _ours(image, labels, selected, margins):
    names = selected["Standard Object Features"]
    plain = [n for n in names if "neighborhood" not in n]
    local = [n[: -len(" in neighborhood")] for n in names if n.endswith(" in neighborhood")]
    # The project was written by ilastik 1.2.2, which stored Coord<Maximum> inclusive.
    ours = standard_features(image, labels, plain + list(DEFAULTS), exclusive_max=False, backend=CPU)
    ours.update(neighbourhood_features(image, labels, local, margins, exclusive_max=False))
    return ours


def test_every_object_feature_equals_the_stored_value(stored):
    selected, margins, _, steps, _ = stored
    compared = 0
    for image, labels, features, _ in steps:
        ours = _ours(image, labels, selected, margins)
        for plugin, table in features.items():
            for name, reference in table.items():
                if "object and neighborhood" in name:
                    continue  # computed by ilastik but never selectable
                np.testing.assert_array_equal(ours[name], reference, err_msg=f"{plugin}/{name}")
                compared += reference.size
    assert compared > 4000


def test_stored_object_probabilities_are_reproduced_exactly(stored):
    selected, margins, forest, steps, n_classes = stored
    for image, labels, _, reference in steps:
        ours = _ours(image, labels, selected, margins)
        matrix = feature_matrix({"Standard Object Features": ours}, selected)
        assert matrix.shape[1] == forest.n_features == 53
        probabilities = object_probabilities(forest, matrix, n_classes)
        np.testing.assert_array_equal(probabilities, reference)
        assert predicted_classes(probabilities)[0] == 0


def test_eigensystem_is_an_eigensystem_ordered_by_magnitude_as_vigra():
    rng = np.random.default_rng(1)
    for n in (2, 3, 4):
        a = rng.normal(size=(n, n))
        matrix = a + a.T
        values, vectors = symmetric_eigensystem(matrix)
        assert np.all(np.diff(np.abs(values)) <= 0)  # vigra's tql2 sorts by absolute value
        np.testing.assert_allclose(matrix @ vectors, vectors * values, atol=1e-10)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), atol=1e-10)


def _run(data, tmp_path, capsys, *extra, project=PROJECT, second=("--prediction_maps", "inputs/5t3d2c_Probabilities.h5/exported_data")):
    """Run in ``tmp_path``: a table path stored in the project is relative to the working directory."""
    from cli_helpers import run_cli

    return run_cli(["--headless", f"--project={data / project}", f"--raw_data={data}/inputs/5t3d2c.h5/data", second[0],
                    str(data / second[1]), "--output_format=compressed hdf5",
                    f"--output_filename_format={tmp_path}/{{nickname}}_{{result_type}}.h5", *extra], tmp_path, capsys)


def test_object_images_and_table_equal_ilastiks(data, tmp_path, capsys):
    import csv

    code, err = _run(data, tmp_path, capsys, "--export_source=Object Identities", "--export_object_prediction_img",
                     "--export_object_probability_img", f"--table_filename={tmp_path}/objects.csv")
    assert code == 0, err
    for ours, ref in (("Object Identities", "Object_Identities"), ("Object Predictions", "Object_Predictions"),
                      ("Object Probabilities", "Object_Probabilities")):
        with h5py.File(tmp_path / f"5t3d2c-data_{ours}.h5", "r") as a, h5py.File(
                data / f"reference/ObjectClassification5t3d2c_wPred__5t3d2c__{ref}.h5", "r") as b:
            assert a["exported_data"].dtype == b["exported_data"].dtype
            np.testing.assert_array_equal(a["exported_data"][()], b["exported_data"][()])
            _assert_same_attributes(a["exported_data"], b["exported_data"])
    with open(tmp_path / "objects_table.csv") as f:
        ours = list(csv.reader(f))
    with open(data / "reference/ObjectClassification5t3d2c_wPred__5t3d2c_table.csv") as f:
        ref = list(csv.reader(f))
    assert sorted(ours[0]) == sorted(ref[0]) and len(ours) == len(ref) == 72
    position = {name: i for i, name in enumerate(ours[0])}
    for ref_row, our_row in zip(ref[1:], ours[1:]):  # ilastik's column order is not deterministic
        assert [our_row[position[name]] for name in ref[0]] == ref_row


def test_binary_segmentation_without_classifier_gives_zeros(data, tmp_path, capsys):
    code, err = _run(data, tmp_path, capsys, "--export_source=Object Predictions", project="projects/ObjectClassification5t3d2c_wSeg.ilp",
                     second=("--segmentation_image", "inputs/5t3d2c_Binary_Segmentation.h5/exported_data"))
    assert code == 0, err
    with h5py.File(tmp_path / "5t3d2c-data_Object Predictions.h5", "r") as f:
        assert not f["exported_data"][()].any()  # no labels in the project: no classifier


def test_blockwise_sources_equal_the_plain_ones(data, tmp_path, capsys):
    code, err = _run(data, tmp_path, capsys, "--export_source=Blockwise Object Probabilities")
    assert code == 0, err
    # Without --table_filename the project's own table setting applies, relative to the working directory.
    assert (tmp_path / "reference/ObjectClassification5t3d2c_wPred__5t3d2c_table.csv").is_file()
    with h5py.File(tmp_path / "5t3d2c-data_Blockwise Object Probabilities.h5", "r") as a, h5py.File(
            data / "reference/ObjectClassification5t3d2c_wPred__5t3d2c__Blockwise_Object_Probabilities.h5", "r") as b:
        np.testing.assert_array_equal(a["exported_data"][()], b["exported_data"][()])
        _assert_same_attributes(a["exported_data"], b["exported_data"])


def _assert_same_attributes(ours: h5py.Dataset, ilastiks: h5py.Dataset) -> None:
    """The HDF5 attributes ilastik writes on an export: display mode, range (value and type), axes."""
    import json

    assert sorted(ours.attrs) == sorted(ilastiks.attrs)
    for key in ours.attrs:
        a, b = ours.attrs[key], ilastiks.attrs[key]
        if key == "axistags":
            assert json.loads(a) == json.loads(b)
        elif isinstance(b, np.ndarray):
            assert a.dtype.kind == b.dtype.kind and a.tolist() == b.tolist(), key
        else:
            assert a == b, key


def test_bad_object_inputs(data, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    # raw data and prediction maps of different shapes
    code, err = _run(data, out, capsys, second=("--prediction_maps", "inputs/3d2c_Probabilities.h5/exported_data"))
    assert code == 1 and "has shape" in err and "Traceback" not in err
    # the project thresholds a channel the prediction maps lack
    project = tmp_path / "channel2.ilp"
    shutil.copyfile(data / PROJECT, project)
    with h5py.File(project, "a") as f:
        f["ThresholdTwoLevels/Channel"][()] = 2
    code, err = _run(data, out, capsys, project=project)
    assert code == 1 and "thresholds channel 2" in err
    # a segmentation without any object
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["data"] = np.zeros((5, 33, 77, 45, 1), np.uint8)
    code, err = _run(data, out, capsys, project="projects/ObjectClassification5t3d2c_wSeg.ilp",
                     second=("--segmentation_image", str(tmp_path / "empty.h5/data")))
    assert code == 1 and "no object" in err
    # more objects than --export_dtype holds: 360 separate pixels at t=0
    many = np.zeros((5, 33, 77, 45, 1), np.uint8)
    many[0, ::4, ::8, ::14] = 1
    many[1:, 5, 5, 5] = 1
    with h5py.File(tmp_path / "many.h5", "w") as f:
        f["data"] = many
    code, err = _run(data, out, capsys, "--export_source=Object Identities", "--export_dtype=uint8",
                     f"--table_filename={out}/t.csv", project="projects/ObjectClassification5t3d2c_wSeg.ilp",
                     second=("--segmentation_image", str(tmp_path / "many.h5/data")))
    assert code == 1 and "360 objects do not fit Object Identities of type uint8" in err
    assert not list(out.iterdir())  # nothing written for any of them


@pytest.mark.parametrize("name", ["Probabilities", "probabilities", "Simple Segmentation"])
def test_a_pixel_export_source_is_refused_by_object_projects_as_ilastik_refuses_it(name, data, tmp_path, capsys):
    """ilastik 1.4.2 stops on ``--export_source=Probabilities`` with an object project ("Invalid option
    for --export_source ... Valid options are: ['object predictions', ...]"); so does this, whatever
    the case, instead of taking it as not given; nothing is written."""
    code, err = _run(data, tmp_path, capsys, f"--export_source={name}")
    assert code == 2 and f"Invalid option for --export_source: '{name}'" in err
    assert "['object predictions', 'object probabilities'" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.h5"))


WPRED = ["ObjectClassification2d_wPred.ilp", "ObjectClassification2d3c_wPred.ilp", "ObjectClassification5t2d1c_wPred.ilp",
         "ObjectClassification5t2d2c_wPred.ilp", "ObjectClassification5t3d2c_wPred.ilp"]


@pytest.mark.parametrize("name", WPRED)
def test_standard_and_hull_features_of_every_project_equal_the_stored_ones(name, data):
    """Every stored Standard Object Feature and convex-hull feature, every object, every time point,
    region axes included (their signs too: the scatter matrix's eigenvectors as vigra finds them)."""
    from gpuheadless.objects.hull import hull_features

    with h5py.File(data / "projects" / name, "r") as f:
        raw_name = f["Input Data/infos/lane0000/Raw Data/filePath"][()].decode().split("/")[1]
        selection = f["ObjectClassification/SelectedFeatures"]
        selection = selection["0"] if "0" in selection else selection
        names = list(selection["Standard Object Features"])
        margins = f["ObjectExtraction/Features/Standard Object Features/Mean in neighborhood/margin"][()]
        blocks = sorted(f["ObjectExtraction/LabelImage_v2/labelimage000"])
        times = sorted(f["ObjectExtraction/RegionFeatures/0000"], key=lambda k: int(k.split("]")[0][2:]))
        with h5py.File(data / "inputs" / raw_name, "r") as r:
            raw = r["data"][()]
        # to (t, z, y, x, c) from yx, yxc, tyxc or tzyxc
        raw = {2: lambda a: a[None, None, ..., None], 3: lambda a: a[None, None], 4: lambda a: a[:, None],
               5: lambda a: a}[raw.ndim](raw)
        for t, (block, key) in enumerate(zip(blocks, times)):
            labels = f[f"ObjectExtraction/LabelImage_v2/labelimage000/{block}"][0, ..., 0]
            image = np.transpose(raw[t], (2, 1, 0, 3)).astype(np.float32)  # x, y, z, c
            plain = [n for n in names if "neighborhood" not in n]
            local = [n[: -len(" in neighborhood")] for n in names if n.endswith(" in neighborhood")]
            ours = standard_features(image, labels, plain, exclusive_max=False, backend=CPU)
            ours.update(neighbourhood_features(image, labels, local, margins, exclusive_max=False))
            stored = f[f"ObjectExtraction/RegionFeatures/0000/{key}"]
            for feature, values in ours.items():
                reference = stored["Standard Object Features"][feature][()]
                np.testing.assert_array_equal(values, reference, err_msg=feature)
            hull_plugin = "2D Convex Hull Features"
            if hull_plugin in stored:
                for feature, values in hull_features(labels).items():
                    np.testing.assert_array_equal(values, stored[hull_plugin][feature][()], err_msg=feature)


def test_retrains_from_stored_object_labels_without_a_forest(data, tmp_path, capsys, project_copy):
    project = project_copy("ObjectClassification5t3d2c_wPred.ilp")
    with h5py.File(project, "a") as f:
        del f["ObjectClassification/ClassifierForests"]
    code, err = _run(data, tmp_path, capsys, "--seed=1", "--export_source=Object Predictions", project=project)
    assert code == 0, err
    assert "Training an object classifier" in err
    with h5py.File(tmp_path / "5t3d2c-data_Object Predictions.h5", "r") as a, h5py.File(
            data / "reference/ObjectClassification5t3d2c_wPred__5t3d2c__Object_Predictions.h5", "r") as b:
        ours, ref = a["exported_data"][()], b["exported_data"][()]
    assert set(np.unique(ours)) <= {0, 1, 2} and np.array_equal(ours > 0, ref > 0)
    # Two labelled objects only, and training is random: most objects still get ilastik's class.
    assert (ours[ref > 0] == ref[ref > 0]).mean() > 0.6


def test_table_only_writes_the_table_and_no_image(data, tmp_path, capsys):
    code, err = _run(data, tmp_path, capsys, "--table_only", f"--table_filename={tmp_path}/objects.csv",
                     project="projects/ObjectClassification5t3d2c_wPred.ilp")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects_table.csv"]
    code, err = _run(data, tmp_path, capsys, "--table_only", project="projects/ObjectClassification5t3d2c_wPred.ilp")
    assert code == 2 and "no table to write" in err


def test_hdf5_object_table(data, tmp_path, capsys):
    code, err = _run(data, tmp_path, capsys, f"--table_filename={tmp_path}/objects.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "objects.h5", "r") as f:  # the HDF5 table keeps the given name
        table = f["table"][()]
        assert len(table) == 71 and table["Predicted Class"][0] == b"Label 1"
        assert np.isclose(table["Probability of Label 1"][0], 0.61)
        for i in (0, 35, 70):
            mask = f[f"images/{i}/labeling"][()]
            assert mask.sum() == table["Size in pixels"][i] and f[f"images/{i}/raw"].shape[:3] == mask.shape


def test_label_image_ids_follow_first_occurrence_and_equal_values_form_objects():
    from gpuheadless.objects.labeling import label_image_ids, segmentation_ids

    whole = (slice(None),) * 3
    labels = np.array([[[5, 5, 0], [0, 9, 3]], [[3, 0, 7], [9, 9, 9]]], dtype=np.uint16)
    ids = label_image_ids(lambda region: labels[region], labels.shape, 1)
    np.testing.assert_array_equal(ids.read(whole), [[[1, 1, 0], [0, 2, 3]], [[3, 0, 4], [2, 2, 2]]])
    np.testing.assert_array_equal(ids.original, [0, 5, 9, 3, 7])  # ilastik's original_oid column
    # A binary image with values 1 and 2: touching regions of different values are separate objects.
    segmentation = np.array([[[1, 1, 2, 0, 2]]], dtype=np.uint8)
    ids = segmentation_ids(lambda region: segmentation[region], segmentation.shape, 1, None, "s", CPU).read(whole)
    np.testing.assert_array_equal(ids, [[[1, 1, 2, 0, 3]]])


def test_python_api_runs_object_projects(data, tmp_path):
    from gpuheadless import predict

    output, table = predict(str(data / PROJECT), [str(data / "inputs/5t3d2c.h5/data")], device="cpu", output_format="numpy",
                        prediction_maps=[str(data / "inputs/5t3d2c_Probabilities.h5/exported_data")],
                        output_filename_format=str(tmp_path / "objects.npy"), table_filename=str(tmp_path / "o.csv"))
    assert table == str(tmp_path / "o_table.csv") and os.path.isfile(table)
    with h5py.File(data / "reference/ObjectClassification5t3d2c_wPred__5t3d2c__Object_Predictions.h5", "r") as f:
        np.testing.assert_array_equal(np.load(output), f["exported_data"][()])


def test_pixel_and_object_workflow_equals_its_two_stages(data, tmp_path, capsys):
    """pc-oc-133.ilp (Pixel + Object Classification) takes --raw_data only: its pixel stage, then
    the prediction-map variant's thresholding on those probabilities."""
    import shutil

    from cli_helpers import run_cli

    common = [f"--raw_data={data}/inputs/5t2d1c.h5/data", f"--output_filename_format={tmp_path}/{{nickname}}_{{result_type}}.h5"]
    code, err = run_cli(["--headless", f"--project={data}/projects/pc-oc-133.ilp", "--export_source=Object Identities",
                         "--export_pixel_probability_img", *common], tmp_path, capsys)
    assert code == 0, err
    staged = tmp_path / "staged.ilp"  # the same project as a prediction-map project
    shutil.copyfile(data / "projects/pc-oc-133.ilp", staged)
    with h5py.File(staged, "a") as f:
        del f["workflowName"]
        f["workflowName"] = b"Object Classification (from prediction image)"
    code, err = run_cli(["--headless", f"--project={staged}", "--export_source=Object Identities",
                         f"--prediction_maps={tmp_path}/5t2d1c-data_Pixel Probabilities.h5/exported_data",
                         f"--raw_data={data}/inputs/5t2d1c.h5/data", f"--output_filename_format={tmp_path}/staged.h5"],
                        tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "5t2d1c-data_Object Identities.h5", "r") as a, h5py.File(tmp_path / "staged.h5", "r") as b, \
            h5py.File(tmp_path / "5t2d1c-data_Pixel Probabilities.h5", "r") as p:
        ids = a["exported_data"][()]
        np.testing.assert_array_equal(ids, b["exported_data"][()])
        assert all(ids[t].max() > 0 for t in range(5))
        probabilities = p["exported_data"][()]
        assert probabilities.shape == (5, 33, 77, 2) and np.allclose(probabilities.sum(-1), 1, atol=1e-5)
    code, err = run_cli(["--headless", f"--project={data}/projects/pc-oc-133.ilp", "--export_source=simple segmentation",
                         *common], tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "5t2d1c-data_Simple Segmentation.h5", "r") as f:
        np.testing.assert_array_equal(f["exported_data"][()][..., 0], probabilities.argmax(-1) + 1)
    # pixel sources and flags belong to this variant only, and it takes no second input
    code, err = _run(data, tmp_path, capsys, "--export_source=Pixel Probabilities")
    assert code == 2 and "Invalid option for --export_source" in err
    code, err = _run(data, tmp_path, capsys, "--export_pixel_probability_img")
    assert code == 2 and "only the Pixel + Object Classification workflow" in err
    code, err = run_cli(["--headless", f"--project={data}/projects/pc-oc-133.ilp", "--prediction_maps=x.h5/data", *common],
                        tmp_path, capsys)
    assert code == 2 and "give --raw_data only" in err


SKELETON_PROJECTS = ["ObjectClassification2d_wPred.ilp", "ObjectClassification2d_wSeg.ilp",
                     "ObjectClassification2d3c_wPred.ilp", "ObjectClassification5t2d1c_wPred.ilp",
                     "ObjectClassification5t2d2c_wPred.ilp"]


@pytest.mark.parametrize("name", SKELETON_PROJECTS)
def test_skeleton_features_equal_the_stored_ones(name, data):
    """Every stored 2D skeleton feature, every object and time point, bit for bit in float32.
    (The other 2D *_wSeg projects store features of an older label image than the one they hold.)"""
    from gpuheadless.objects.skeleton import skeleton_features

    compared = 0
    with h5py.File(data / "projects" / name, "r") as f:
        blocks = f["ObjectExtraction/LabelImage_v2/labelimage000"]
        stored = f["ObjectExtraction/RegionFeatures/0000"]
        times = sorted(stored, key=lambda k: int(k.split("]")[0][2:]))
        for block, key in zip(sorted(blocks), times):
            labels = blocks[block][0, :, :, 0, 0][:, :, None]  # x, y, 1
            reference = stored[key]["2D Skeleton Features"]
            ours = skeleton_features(labels, tuple(reference))
            assert len(ours["Diameter"]) == len(reference["Diameter"])
            for feature in reference:
                np.testing.assert_array_equal(ours[feature], reference[feature][()], err_msg=f"{block} {feature}")
                compared += reference[feature].size - reference[feature].shape[1]
    assert compared > 0


@pytest.mark.parametrize("stem", ["2d", "2d3c", "5t2d1c", "5t2d2c"])
def test_stored_object_probabilities_of_the_2d_projects_are_reproduced(stem, data, tmp_path, capsys):
    """End to end (thresholding, Standard, convex-hull and skeleton features, the stored forest):
    each object's probabilities equal those ilastik cached in the project."""
    from cli_helpers import run_cli

    code, err = run_cli(["--headless", f"--project={data}/projects/ObjectClassification{stem}_wPred.ilp",
                         f"--raw_data={data}/inputs/{stem}.h5/data",
                         f"--prediction_maps={data}/inputs/{stem}_Probabilities.h5/exported_data",
                         "--export_source=Object Identities", "--export_object_probability_img", "--output_format=hdf5",
                         f"--output_filename_format={tmp_path}/{{result_type}}.h5"], tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "Object Identities.h5", "r") as a, h5py.File(tmp_path / "Object Probabilities.h5", "r") as b, \
            h5py.File(data / f"projects/ObjectClassification{stem}_wPred.ilp", "r") as f:
        ids, probabilities = a["exported_data"][()], b["exported_data"][()]
        if ids.ndim == 3:  # no time axis
            ids, probabilities = ids[None], probabilities[None]
        cached = f["ObjectClassification/CachedProbabilities/0000"]
        for t in range(ids.shape[0]):
            reference = cached[str(t)][()]
            flat_ids = ids[t, ..., 0].reshape(-1)
            assert flat_ids.max() == len(reference) - 1
            _, first = np.unique(flat_ids, return_index=True)
            ours = probabilities[t].reshape(-1, probabilities.shape[-1])[first[1:]]
            np.testing.assert_array_equal(ours, reference[1:])


def test_hdf5_table_with_the_whole_raw_image(data, tmp_path, capsys, project_copy):
    import pickle

    project = project_copy("ObjectClassification5t3d2c_wPred.ilp")
    settings = ({"file type": "h5", "file path": str(tmp_path / "table.h5"), "include raw": True, "margin": 0}, [])
    with h5py.File(project, "a") as f:
        del f["ObjectClassification/ExportSettings"]
        f["ObjectClassification/ExportSettings"] = np.void(pickle.dumps(settings, protocol=0))
    code, err = _run(data, tmp_path, capsys, "--table_only", project=project)
    assert code == 0, err
    with h5py.File(tmp_path / "table.h5", "r") as f, h5py.File(data / "inputs/5t3d2c.h5", "r") as raw:
        np.testing.assert_array_equal(f["images/raw"][()], raw["data"][()].astype(np.float32))
        assert "raw" not in f["images/0"] and f["images/0/labeling"][()].sum() == f["table"]["Size in pixels"][0]


def test_resume_is_said_to_apply_to_pixel_classification_only(data, tmp_path, capsys):
    """--resume continues unfinished Zarr outputs of Pixel Classification; an object run computes
    every lane and says so (its --scheduler runs lanes as Dask tasks: tests/test_object_cluster.py)."""
    code, err = _run(data, tmp_path, capsys, "--resume", "--export_source=Object Identities")
    assert code == 0, err
    assert "--resume applies to Pixel Classification" in err
    assert (tmp_path / "5t3d2c-data_Object Identities.h5").is_file()


def test_compiled_skeleton_equals_the_python_reference(data):
    """The C extension against the readable Python implementation: every value of every object."""
    from scipy import ndimage

    from gpuheadless.objects.skeleton import skeleton_features
    from skeleton_reference import object_skeleton

    rng = np.random.default_rng(0)
    planes = []
    with h5py.File(data / "projects/ObjectClassification2d_wSeg.ilp", "r") as f:  # single pixels and lines too
        planes.append(f["ObjectExtraction/LabelImage_v2/labelimage000/block0000"][0, :, :, 0, 0][:, :, None])
    for _ in range(8):  # random shapes with holes, touching the image border
        height, width = rng.integers(20, 120, 2)
        noise = ndimage.gaussian_filter(rng.random((height, width)), rng.uniform(0.5, 4))
        holes = ndimage.gaussian_filter(rng.random((height, width)), 1.0)
        mask = (noise > np.quantile(noise, rng.uniform(0.3, 0.9))) & ~(holes > np.quantile(holes, 0.97))
        planes.append(ndimage.label(mask)[0].T[:, :, None].astype(np.uint32))
    objects = 0
    for labels in planes:
        compiled = skeleton_features(labels, compute=None)
        reference = skeleton_features(labels, compute=object_skeleton)
        for name in compiled:
            np.testing.assert_array_equal(compiled[name], reference[name], err_msg=name)
        objects += len(compiled["Diameter"]) - 1
    assert objects > 300


# Literals below were printed by vigra 1.11.1 (Debian python3-vigra, the library ilastik 1.4.2 runs
# on here) as float.hex() of its results for the same inputs.

def test_smoothing_taps_are_vigras_gaussian_kernel():
    from gpuheadless.objects.threshold import gaussian_taps

    # vigra.filters.gaussianKernel(2.5, 1.0, 2.0)[0..5]; exp(-x*x/(2 s*s)) normalised differs here
    expected = ["0x1.4fce0a14b3f86p-3", "0x1.35fca7fbb2166p-3", "0x1.e7b0503d092a6p-4", "0x1.46e853c3d288dp-4",
                "0x1.75770fe452ec1p-5", "0x1.6b91e8038ac4bp-6"]
    taps = gaussian_taps(2.5)
    assert [float(t).hex() for t in taps[5:]] == expected
    np.testing.assert_array_equal(taps, taps[::-1])


def test_smoothing_is_vigras_bit_for_bit():
    import hashlib

    from gpuheadless.objects.threshold import smooth

    # vigra.filters.gaussianSmoothing(taggedView(a, "zyx"), [0.7, 1.3, 1.0], window_size=2.0,
    # roi=((0, 0, 0), a.shape)), as ilastik's Threshold and Size Filter calls it: sha256 of the
    # float32 result and its first values (passes x, y, z; sums from the leftmost tap).
    a = ((np.arange(4 * 7 * 9).reshape(4, 7, 9) * 0.37) % 1).astype(np.float32)
    out = smooth(a[..., None], (0.7, 1.3, 1.0))[..., 0]
    assert [float(v).hex() for v in out.ravel()[:3]] == ["0x1.9de2180000000p-2", "0x1.94353e0000000p-2",
                                                         "0x1.944cc00000000p-2"]
    assert hashlib.sha256(out.tobytes()).hexdigest() == "3c25740f88ba850f0d05669cf974e52851256404fa70f8f4623b3042aacfe8ad"


def test_moments_and_axes_are_vigras_accumulators():
    from gpuheadless.objects.features import standard_features

    # One object (11 pixels of a 4 x 3 image, x fastest), two channels near 1000 so the running
    # (Welford) and two-pass sums differ; vigra.analysis.extractRegionFeatures on xy(c) views.
    values = (1000.0 + (np.arange(12) * 0.713) % 1).astype(np.float32).reshape(3, 4)
    image = np.stack([values, values[::-1] * 0.5], -1).astype(np.float32).transpose(1, 0, 2)[:, :, None, :]
    labels = np.ones((3, 4), np.uint32)
    labels[0, 0] = 0
    names = ["Covariance", "PrincipalAxes", "RegionAxes", "RegionRadii", "Skewness"]
    got = standard_features(image, labels.T[:, :, None], names, dtype=np.float64, backend=CPU)
    expected = {
        "Covariance": ["0x1.459bc8e043adcp-4", "0x1.1cdaf9fbc5167p-8", "0x1.1cdaf9fbc5167p-8", "0x1.9d06ee9854973p-6"],
        "PrincipalAxes": ["0x1.fe631bc2b3f84p-1", "0x1.44dc0e550414ep-4", "0x1.44dc0e550414ep-4",
                          "-0x1.fe631bc2b3f84p-1"],
        "RegionAxes": ["0x1.ee63e0a19f0a2p-1", "-0x1.0a4039e0376e2p-2", "-0x1.0a4039e0376e2p-2",
                       "-0x1.ee63e0a19f0a2p-1"],
        "RegionRadii": ["0x1.1626fe60837b7p+0", "0x1.889f21cdae398p-1"],
        "Skewness": ["-0x1.83fc0ee75780ap-4", "0x1.fc3c139c4ccf7p-5"],
    }
    for name, hexes in expected.items():
        assert [float(v).hex() for v in got[name][1]] == hexes, name


def test_running_moment_sums_are_welford_updates_in_pixel_order():
    from arithmetic_reference import running_moment_sums

    rng = np.random.default_rng(4)
    columns = 1000.0 + rng.random((40, 2))
    index = rng.integers(0, 4, 40)
    squares, products = running_moment_sums(columns, index, 3, [(0, 1), (1, 0)])
    for o in range(1, 4):
        total, m2, scatter = np.zeros(2), np.zeros(2), 0.0
        for j, x in enumerate(columns[index == o], start=1):
            total = total + x
            if j > 1:
                diff = total / j - x
                m2 = m2 + j / (j - 1.0) * (diff * diff)
                scatter += (j / (j - 1.0) * diff[1]) * diff[0]
        np.testing.assert_array_equal(squares[o], m2)
        assert products[o, 0] == products[o, 1] == scatter


def test_powers_are_the_c_librarys_pow():
    from arithmetic_reference import libm_powers

    d = np.random.default_rng(2).standard_normal(20000) * 37.0
    cubes, fourths = libm_powers(d)
    assert [float(v) for v in cubes] == [math.pow(v, 3.0) for v in d.tolist()]
    assert [float(v) for v in fourths] == [math.pow(v, 4.0) for v in d.tolist()]
    assert np.count_nonzero(d * d * d != cubes) > 1000  # the naive product is not the same


@pytest.mark.parametrize("kind", ["integers", "fractions", "signed zeros"])
def test_compiled_moment_sums_equal_the_numpy_reference(kind):
    from arithmetic_reference import reference_moment_sums

    from gpuheadless.objects import features

    if features._cmoments is None:
        pytest.skip("the _cmoments extension is not built")
    rng = np.random.default_rng({"integers": 5, "fractions": 6, "signed zeros": 7}[kind])
    n, channels = 30, 3
    index = rng.integers(0, n + 1, 5000)
    index[index == 7] = 8  # an object with no pixel
    columns = rng.integers(0, 256, (5000, channels)).astype(np.float64)
    if kind == "fractions":
        columns += rng.random(columns.shape)
    if kind == "signed zeros":
        columns[rng.random(columns.shape) < 0.3] = -0.0
    centre = features.bincount_sums(columns, index, n) / np.maximum(np.bincount(index, minlength=n + 1), 1)[:, None]
    pairs = [(a, b) for a in range(channels) for b in range(channels)]
    got = features.moment_sums(columns, index, n, centre, True, pairs)
    expected = reference_moment_sums(columns, index, n, centre, True, pairs)
    for ours, reference in zip(got, expected):
        np.testing.assert_array_equal(ours.view(np.int64), reference.view(np.int64))  # bits, signed zeros too
    assert np.count_nonzero(got[1]) > n // 2


def test_neighbourhood_features_of_many_objects_equal_one_vigra_call_each():
    from gpuheadless.objects import features

    rng = np.random.default_rng(8)
    labels = np.zeros((60, 50, 1), np.int64)
    for i in range(1, 13):
        x, y = rng.integers(0, 55), rng.integers(0, 45)
        labels[x:x + rng.integers(2, 6), y:y + rng.integers(2, 6), 0] = i
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)  # ids 1..n, none missing
    image = rng.integers(0, 256, labels.shape + (1,)).astype(np.float32)
    names = ["Mean", "Variance", "Skewness", "Kurtosis", "Minimum", "Maximum", "Sum", "Histogram"]
    together = features.neighbourhood_features(image, labels, names, [5, 3])
    for i in range(1, int(labels.max()) + 1):
        # One object at a time: its context's pixels x fastest, statistics of that set alone.
        values = features._context_values(image, labels, i, ndimage_box(labels, i), [5, 3], True, 2)
        alone = features._intensity_stats(values, np.ones(len(values), np.int64), 1, set(names), None, None)
        for name in names:
            np.testing.assert_array_equal(together[name + " in neighborhood"][i], alone[name][1].astype(np.float32))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "_NEIGHBOURHOOD_CHUNK", 1)  # one object per call
        single = features.neighbourhood_features(image, labels, names, [5, 3])
    for name, table in together.items():
        np.testing.assert_array_equal(single[name], table)


def ndimage_box(labels: np.ndarray, i: int) -> tuple[slice, ...]:
    from scipy import ndimage

    return ndimage.find_objects((labels == i).astype(np.int64))[0]


@pytest.mark.parametrize("source", ["Object Probabilities", "Object Identities", "Object Predictions",
                                    "Blockwise Object Predictions"])
def test_multiscale_ome_zarr_object_images_are_downscaled_as_labels(source, data, tmp_path, capsys):
    """ilastik 1.4.2 gives every object image its ids' label semantics: nearest-neighbour levels
    (``order`` 0), no value that is not in ``s0`` (checked live in tests/live/test_objects_live.py)."""
    import json

    zarr = pytest.importorskip("zarr")
    from cli_helpers import run_cli

    rng = np.random.default_rng(9)
    inside = np.zeros((1, 16, 256, 256), bool)  # 2 levels even as uint8
    for z, y, x in rng.integers([1, 4, 4], [13, 246, 246], (60, 3)):
        inside[0, z:z + 3, y:y + rng.integers(3, 9), x:x + rng.integers(3, 9)] = True
    raw = np.where(inside, rng.integers(80, 200, inside.shape), 20)[..., None].repeat(2, -1).astype(np.uint8)
    probabilities = np.stack([inside * 0.98 + 0.01, 0.99 - inside * 0.98], -1).astype(np.float32)
    for name, key, array in (("raw.h5", "data", raw), ("pmaps.h5", "exported_data", probabilities)):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset(key, data=array)
    code, err = run_cli(["--headless", f"--project={data / PROJECT}", f"--raw_data={tmp_path}/raw.h5/data",
                         f"--prediction_maps={tmp_path}/pmaps.h5/exported_data", f"--export_source={source}",
                         "--output_format=multi-scale OME-Zarr", f"--output_filename_format={tmp_path}/out",
                         f"--table_filename={tmp_path}/t.csv"], tmp_path, capsys)
    assert code == 0, err
    with open(tmp_path / "out.zarr/.zattrs") as f:
        multiscales = json.load(f)["multiscales"][0]
    assert multiscales["metadata"]["kwargs"]["order"] == 0
    levels = [zarr.open(str(tmp_path / "out.zarr" / d["path"]), mode="r")[...] for d in multiscales["datasets"]]
    assert len(levels) >= 2 and levels[0].any()
    for level in levels[1:]:
        assert np.isin(level, levels[0]).all()  # smoothing and linear interpolation would blend values


def _linked(data, tmp_path, *names):
    """Symlinks in ``tmp_path`` to the reference inputs, so two lanes have two names."""
    for link, target in names:
        (tmp_path / link).symlink_to(data / "inputs" / target)


def _object_cli(data, tmp_path, capsys, *argv, project=PROJECT):
    from cli_helpers import run_cli

    return run_cli(["--headless", f"--project={data / project}", "--output_format=compressed hdf5", *argv], tmp_path, capsys)


def test_object_lanes_writing_one_file_are_refused_before_computing(data, tmp_path, capsys):
    _linked(data, tmp_path, ("a.h5", "5t3d2c.h5"), ("b.h5", "5t3d2c.h5"), ("p.h5", "5t3d2c_Probabilities.h5"))
    code, err = _object_cli(data, tmp_path, capsys, "--raw_data", "a.h5/data", "b.h5/data", "--prediction_maps",
                            "p.h5/exported_data", "p.h5/exported_data", "--output_filename_format=t/result.h5")
    assert code == 2 and err.strip().count("\n") == 0
    assert "'a.h5/data'" in err and "'b.h5/data'" in err and "result.h5" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "p.h5"]


def test_object_table_and_image_in_one_hdf5_file_are_refused(data, tmp_path, capsys):
    # the HDF5 table replaces its whole file: the image written before it would be lost
    _linked(data, tmp_path, ("a.h5", "5t3d2c.h5"), ("p.h5", "5t3d2c_Probabilities.h5"))
    code, err = _object_cli(data, tmp_path, capsys, "--raw_data=a.h5/data", "--prediction_maps=p.h5/exported_data",
                            "--output_filename_format=out.h5", "--table_filename=out.h5")
    assert code == 2 and "the table of input 'a.h5/data'" in err and "out.h5" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "p.h5"]


def test_object_image_over_an_input_is_refused(data, tmp_path, capsys):
    _linked(data, tmp_path, ("a.h5", "5t3d2c.h5"), ("p.h5", "5t3d2c_Probabilities.h5"))
    code, err = _object_cli(data, tmp_path, capsys, "--raw_data=a.h5/data", "--prediction_maps=p.h5/exported_data",
                            "--output_filename_format=p.h5")
    assert code == 2 and "overwrite input 'p.h5/exported_data'" in err
    assert (tmp_path / "p.h5").is_symlink()


def test_pixel_probabilities_and_object_image_in_one_dataset_are_refused(data, tmp_path, capsys):
    code, err = _object_cli(data, tmp_path, capsys, f"--raw_data={data}/inputs/5t2d1c.h5/data",
                            "--export_pixel_probability_img", "--output_filename_format=out.h5",
                            project="projects/pc-oc-133.ilp")
    assert code == 2 and "the Pixel Probabilities of input" in err and "dataset 'exported_data'" in err
    assert not list(tmp_path.iterdir())
