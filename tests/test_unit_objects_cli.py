"""Object Classification through the command line and ``gpuheadless.api`` on generated projects and
hand-made images: object counts, sizes, means, centres, bounding boxes, convex hull and skeleton
features with hand-computed values, predictions of a trained forest, images and tables (no
external data)."""
from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli
from tiny_objects import LARGE, SMALL, WORKFLOWS, prediction_maps, tiny_image, write_tiny_project

from gpuheadless import api

SECOND_FLAG = {"prediction": "--prediction_maps", "binary": "--segmentation_image", "labels": "--label_image"}
STANDARD = "Standard Object Features"


def write_untrained_project(path, variant: str, features: dict[str, list[str]]) -> None:
    """An Object Classification project of ``variant`` selecting ``features`` (plugin -> names), without a forest."""
    with h5py.File(path, "w") as f:
        f["workflowName"] = WORKFLOWS[variant].encode()
        f["ilastikVersion"] = b"1.4.2"
        for plugin, names in features.items():
            for name in names:
                f.create_group(f"ObjectClassification/SelectedFeatures/{plugin}/{name}")
        f["ObjectClassification/LabelNames"] = np.array([b"a", b"b"], dtype=object)


def h5(path, array):
    with h5py.File(path, "w") as f:
        f["data"] = array
    return f"{path}/data"


def read_h5(path):
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def read_table(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def run_objects(tmp_path, capsys, project, raw, second, variant, *extra, name="out"):
    """The command line on one lane; the three object images (Y, X, C) and the CSV table's rows."""
    argv = ["--headless", f"--project={project}", f"--raw_data={raw}", f"{SECOND_FLAG[variant]}={second}",
            "--device=cpu", "--output_format=hdf5", "--export_source=Object Identities",
            "--export_object_prediction_img", "--export_object_probability_img",
            f"--output_filename_format={tmp_path}/{name}_{{result_type}}.h5", f"--table_filename={tmp_path}/{name}.csv",
            *extra]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    images = {source: read_h5(tmp_path / f"{name}_{source}.h5")
              for source in ("Object Identities", "Object Predictions", "Object Probabilities")}
    return images, read_table(tmp_path / f"{name}_table.csv")


# Hand-made shapes on a 30 x 40 image (y, x): each a separate object.
RECT = (slice(2, 6), slice(3, 9))  # 4 x 6 = 24 pixels


def shapes() -> tuple[np.ndarray, np.ndarray]:
    """(segmentation uint8, raw uint8): a rectangle, an L, a 1 x 9 line, a single pixel and a ring."""
    seg = np.zeros((30, 40), np.uint8)
    seg[RECT] = 1
    seg[10:20, 3:6] = 1
    seg[17:20, 6:12] = 1  # L: 30 + 18 = 48 pixels
    seg[25, 20:29] = 1  # line: 9 pixels
    seg[5, 30] = 1  # one pixel
    seg[10:17, 28:35] = 1
    seg[12:15, 30:33] = 0  # ring: 49 - 9 = 40 pixels around a 3 x 3 hole
    raw = (np.arange(30 * 40).reshape(30, 40) % 7 + 10).astype(np.uint8)
    return seg, raw


@pytest.fixture(scope="module")
def shape_run(tmp_path_factory):
    """The binary workflow without a classifier on :func:`shapes`, with standard, hull and skeleton features."""
    from gpuheadless.cli import main  # capsys is function-scoped: this module-wide run prints freely

    tmp = tmp_path_factory.mktemp("shapes")
    seg, raw = shapes()
    write_untrained_project(tmp / "p.ilp", "binary", {
        STANDARD: ["Count", "Mean", "RegionCenter", "Coord<Minimum>", "Coord<Maximum>"],
        "2D Convex Hull Features": ["HullVolume", "InputVolume", "Convexity", "DefectCount"],
        "2D Skeleton Features": ["Total Length", "Branch Count", "Diameter", "Hole Count"]})
    argv = ["--headless", f"--project={tmp}/p.ilp", f"--raw_data={h5(tmp / 'raw.h5', raw)}",
            f"--segmentation_image={h5(tmp / 'seg.h5', seg)}", "--device=cpu", "--output_format=hdf5",
            "--export_source=Object Identities", "--export_object_probability_img",
            f"--output_filename_format={tmp}/out_{{result_type}}.h5", f"--table_filename={tmp}/t.csv"]
    assert main(argv) == 0
    return seg, raw, read_h5(tmp / "out_Object Identities.h5"), read_h5(tmp / "out_Object Probabilities.h5"), \
        read_table(tmp / "t_table.csv")


def test_each_connected_shape_is_one_object_numbered_in_scan_order(shape_run):
    """Five shapes give ids 1..5, first met first in scan order, covering exactly the foreground."""
    seg, _, ids, _, rows = shape_run
    assert ids.shape == (30, 40, 1) and ids.dtype == np.uint32
    ids = ids[..., 0]
    assert ids.max() == 5 and len(rows) == 5
    np.testing.assert_array_equal(ids > 0, seg > 0)
    assert ids[2, 3] == 1 and ids[5, 30] == 2 and ids[10, 3] == 3 and ids[10, 28] == 4 and ids[25, 20] == 5
    assert [int(r["labelimage_oid"]) for r in rows] == [1, 2, 3, 4, 5]


def test_standard_features_equal_hand_computed_values(shape_run):
    """Count, Mean, RegionCenter (x, y) and the bounding box of each object, computed from its mask."""
    _, raw, ids, _, rows = shape_run
    ids = ids[..., 0]
    for row in rows:
        mask = ids == int(row["labelimage_oid"])
        ys, xs = np.nonzero(mask)
        assert float(row["Count"]) == mask.sum() > 0
        assert float(row["Mean"]) == pytest.approx(raw[mask].mean(), rel=1e-6)
        assert (float(row["RegionCenter_0"]), float(row["RegionCenter_1"])) == pytest.approx((xs.mean(), ys.mean()))
        assert (float(row["Coord<Minimum>_0"]), float(row["Coord<Minimum>_1"])) == (xs.min(), ys.min())
        assert (float(row["Coord<Maximum>_0"]), float(row["Coord<Maximum>_1"])) == (xs.max() + 1, ys.max() + 1)
    assert [float(r["Count"]) for r in rows] == [24, 1, 48, 40, 9]


def test_convex_hull_features_tell_convex_from_concave_shapes(shape_run):
    """Rectangle, line and pixel are their own hulls (convexity 1, no defect); the L's hull is larger,
    its convexity ``InputVolume / HullVolume`` below 1, with one defect; the ring's hole is its defect."""
    rows = {int(r["labelimage_oid"]): r for r in shape_run[4]}
    for oid in (1, 2, 5):
        assert float(rows[oid]["Convexity"]) == 1.0 and float(rows[oid]["DefectCount"]) == 0
        assert float(rows[oid]["HullVolume"]) == float(rows[oid]["InputVolume"]) == float(rows[oid]["Count"])
    l_shape = rows[3]
    assert float(l_shape["InputVolume"]) == 48 and float(l_shape["HullVolume"]) > 60
    assert float(l_shape["Convexity"]) == pytest.approx(48 / float(l_shape["HullVolume"]), rel=1e-6)
    assert float(l_shape["DefectCount"]) == 1
    assert float(rows[4]["HullVolume"]) == 49 and float(rows[4]["DefectCount"]) == 1


def test_skeleton_features_of_a_line_a_pixel_and_a_ring(shape_run):
    """A 9-pixel line is its own skeleton (length and diameter 8, two branches); a pixel has none;
    only the ring has a hole."""
    rows = {int(r["labelimage_oid"]): r for r in shape_run[4]}
    line = rows[5]
    assert float(line["Total Length"]) == 8 and float(line["Diameter"]) == 8 and float(line["Branch Count"]) == 2
    assert float(rows[2]["Total Length"]) == 0 and float(rows[2]["Branch Count"]) == 0
    assert [float(rows[k]["Hole Count"]) for k in (1, 2, 3, 4, 5)] == [0, 0, 0, 1, 0]
    assert float(rows[4]["Total Length"]) > 8  # around the hole


def test_without_a_classifier_probabilities_are_zero_and_no_class_is_predicted(shape_run):
    """An untrained project still labels objects; its probability image and table say no class."""
    _, _, ids, probabilities, rows = shape_run
    assert ids.max() == 5 and probabilities.shape == (30, 40, 2) and not probabilities.any()
    assert {r["Predicted Class"] for r in rows} == {"0"}


@pytest.fixture
def tiny(tmp_path):
    """The disks of :mod:`tiny_objects` as HDF5 inputs: raw, foreground maps, binary and label images."""
    raw, foreground, classes, centres = tiny_image()
    labels = np.zeros(foreground.shape, np.uint32)
    from scipy import ndimage

    components, n = ndimage.label(foreground)
    assert n == len(classes) > 4
    labels[foreground] = (components[foreground] * 1000 + 7).astype(np.uint32)  # any values, not consecutive
    seconds = {"prediction": h5(tmp_path / "maps.h5", prediction_maps(foreground)),
               "binary": h5(tmp_path / "seg.h5", foreground.astype(np.uint8)),
               "labels": h5(tmp_path / "labels.h5", labels)}
    return h5(tmp_path / "raw.h5", raw), seconds, foreground, classes, centres


@pytest.mark.parametrize("variant", ["prediction", "binary", "labels"])
def test_trained_projects_tell_small_disks_from_large_ones(variant, tiny, tmp_path, capsys):
    """Every disk is one object, predicted as its size class (both classes occur); the probability
    image holds each object's class probabilities, summing to 1; the table lists every object."""
    raw, seconds, foreground, classes, centres = tiny
    assert set(classes.tolist()) == {1, 2}
    project = tmp_path / f"{variant}.ilp"
    write_tiny_project(project, variant)
    images, rows = run_objects(tmp_path, capsys, project, raw, seconds[variant], variant)
    ids, predictions, probabilities = (images[s] for s in ("Object Identities", "Object Predictions",
                                                            "Object Probabilities"))
    assert ids.max() == len(classes) and len(rows) == len(classes)
    assert [int(predictions[c][0]) for c in centres] == classes.tolist()
    np.testing.assert_array_equal(predictions[..., 0] > 0, ids[..., 0] > 0)
    inside = ids[..., 0] > 0
    np.testing.assert_allclose(probabilities[inside].sum(axis=-1), 1.0, atol=1e-6)
    assert not probabilities[~inside].any()
    by_id = {int(r["labelimage_oid"]): r for r in rows}
    for c, k in zip(centres, classes):
        row = by_id[int(ids[c][0])]
        assert row["Predicted Class"] == ("small" if k == 1 else "large")
        assert float(row[f"Probability of {row['Predicted Class']}"]) > 0.5
        if variant != "prediction":  # the thresholded variant smooths the maps first
            assert float(row["Count"]) == (13 if k == 1 else 49)  # pixels within radius 2 and 4 of the centre
    assert SMALL == 2 and LARGE == 4


def test_label_image_values_become_consecutive_ids_in_scan_order(tiny, tmp_path, capsys):
    """Label values 1007, 2007 ... become ids 1, 2 ... in order of first occurrence; each object keeps its pixels."""
    raw, seconds, _, classes, _ = tiny
    write_tiny_project(tmp_path / "l.ilp", "labels")
    images, _ = run_objects(tmp_path, capsys, tmp_path / "l.ilp", raw, seconds["labels"], "labels")
    ids = images["Object Identities"][..., 0]
    with h5py.File(tmp_path / "labels.h5", "r") as f:
        labels = f["data"][()]
    firsts = [int(v) for v in dict.fromkeys(labels[labels > 0].tolist())]
    assert len(firsts) == len(classes)
    for k, value in enumerate(firsts, start=1):
        np.testing.assert_array_equal(ids == k, labels == value)


def test_python_api_gives_the_command_lines_images(tiny, tmp_path, capsys):
    """``gpuheadless.api.predict`` on an object project writes what the command line writes."""
    raw, seconds, _, classes, _ = tiny
    project = tmp_path / "b.ilp"
    write_tiny_project(project, "binary")
    images, _ = run_objects(tmp_path, capsys, project, raw, seconds["binary"], "binary")
    written = api.predict(str(project), [raw], export_source="Object Predictions", output_format="hdf5",
                          output_filename_format=f"{tmp_path}/api_{{result_type}}.h5",
                          segmentation_image=[seconds["binary"]], device="cpu")
    assert written and written[0].endswith("api_Object Predictions.h5")
    api_predictions = read_h5(written[0])
    assert set(np.unique(api_predictions).tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(api_predictions, images["Object Predictions"])


def test_table_only_and_hdf5_tables(tiny, tmp_path, capsys):
    """``--table_only`` writes the table and no image; an ``.h5`` table holds one row per object."""
    raw, seconds, _, classes, _ = tiny
    project = tmp_path / "b.ilp"
    write_tiny_project(project, "binary")
    argv = ["--headless", f"--project={project}", f"--raw_data={raw}", f"--segmentation_image={seconds['binary']}",
            "--device=cpu", "--table_only", f"--table_filename={tmp_path}/only.csv",
            f"--output_filename_format={tmp_path}/img_{{result_type}}.h5"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    assert len(read_table(tmp_path / "only_table.csv")) == len(classes)
    assert not list(tmp_path.glob("img_*"))
    code, err = run_cli(argv[:-3] + [f"--table_filename={tmp_path}/t.h5", "--output_format=hdf5",
                                     f"--output_filename_format={tmp_path}/img_{{result_type}}.h5"], tmp_path, capsys)
    assert code == 0, err
    tables = list(tmp_path.glob("t*.h5"))
    assert tables
    with h5py.File(tables[0], "r") as f:
        found = []
        f.visititems(lambda n, o: found.append(o.shape[0]) if isinstance(o, h5py.Dataset) and n.endswith("table") else None)
    assert found and found[0] == len(classes)


def test_object_export_applies_dtype_and_cutout(tiny, tmp_path, capsys):
    """Object Identities exported as uint8 over a cutout equal the full export's region."""
    raw, seconds, _, classes, _ = tiny
    project = tmp_path / "b.ilp"
    write_tiny_project(project, "binary")
    full, _ = run_objects(tmp_path, capsys, project, raw, seconds["binary"], "binary")
    argv = ["--headless", f"--project={project}", f"--raw_data={raw}", f"--segmentation_image={seconds['binary']}",
            "--device=cpu", "--output_format=hdf5", "--export_source=Object Identities", "--export_dtype=uint8",
            "--cutout_subregion=[(5,10,None),(30,50,None)]", f"--output_filename_format={tmp_path}/cut.h5"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    cut = read_h5(tmp_path / "cut.h5")
    assert cut.dtype == np.uint8 and cut.shape == (25, 40, 1) and cut.max() > 0
    np.testing.assert_array_equal(cut, full["Object Identities"][5:30, 10:50])


def test_missing_second_input_and_unknown_source_are_one_line_errors(tiny, tmp_path, capsys):
    """An object project without its second input, or with a pixel export source, fails with a message."""
    raw, seconds, _, _, _ = tiny
    project = tmp_path / "b.ilp"
    write_tiny_project(project, "binary")
    base = ["--headless", f"--project={project}", f"--raw_data={raw}", "--device=cpu",
            f"--output_filename_format={tmp_path}/x.h5"]
    code, err = run_cli(base, tmp_path, capsys)
    assert code != 0 and "gpuheadless" in err and len(err.strip().splitlines()) <= 3
    code, err = run_cli(base + [f"--segmentation_image={seconds['binary']}", "--export_source=Features"], tmp_path, capsys)
    assert code != 0 and "Features" in err
    assert not (tmp_path / "x.h5").exists()


def test_pixel_and_object_project_equals_its_two_stages(tmp_path, capsys):
    """A Pixel + Object project (pixel forest trained by ``gpuheadless train``, object forest of
    :mod:`tiny_objects`) gives the Pixel Probabilities of the pixel stage alone, and the object
    images and table of the prediction-maps project applied to those probabilities."""
    from gpuheadless.cli import main

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :64]
    truth = np.zeros((48, 64), bool)
    for (cy, cx), r in (((10, 10), SMALL), ((12, 40), LARGE), ((34, 20), LARGE), ((36, 50), SMALL)):
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    raw = np.clip(np.where(truth, 180, 40) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
    scribbles = np.zeros(truth.shape, np.uint8)
    scribbles[::2, ::2] = np.where(truth, 2, 1)[::2, ::2]
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["raw"] = raw
        f["labels"] = scribbles
    assert main(["train", "--raw", f"{tmp_path}/in.h5/raw", "--labels", f"{tmp_path}/in.h5/labels",
                 "--output", f"{tmp_path}/pixel.ilp", "--features", "GaussianSmoothing@0.7,GaussianSmoothing@1.6",
                 "--trees", "8", "--seed", "0"]) == 0
    write_tiny_project(tmp_path / "objects.ilp", "prediction")
    with h5py.File(tmp_path / "pixel.ilp", "r") as p, h5py.File(tmp_path / "objects.ilp", "r") as o, \
            h5py.File(tmp_path / "both.ilp", "w") as both:
        for key in p:
            if key != "workflowName":
                p.copy(key, both)
        for key in ("ThresholdTwoLevels", "ObjectClassification"):
            o.copy(key, both)
        both["workflowName"] = b"Object Classification (from pixel classification)"
    common = ["--headless", "--device=cpu", "--output_format=hdf5"]
    code, err = run_cli(common + [f"--project={tmp_path}/both.ilp", "--export_source=Object Predictions",
                                  "--export_pixel_probability_img", "--export_object_probability_img",
                                  f"--output_filename_format={tmp_path}/both_{{result_type}}.h5",
                                  f"--table_filename={tmp_path}/both.csv", f"{tmp_path}/in.h5/raw"], tmp_path, capsys)
    assert code == 0, err
    code, err = run_cli(common + [f"--project={tmp_path}/pixel.ilp", f"--output_filename_format={tmp_path}/pixel.h5",
                                  f"{tmp_path}/in.h5/raw"], tmp_path, capsys)
    assert code == 0, err
    pixel = read_h5(tmp_path / "pixel.h5")
    np.testing.assert_array_equal(read_h5(tmp_path / "both_Pixel Probabilities.h5"), pixel)
    two_stage, rows = run_objects(tmp_path, capsys, tmp_path / "objects.ilp", f"{tmp_path}/in.h5/raw",
                                  f"{tmp_path}/pixel.h5/exported_data", "prediction", name="stages")
    predictions = read_h5(tmp_path / "both_Object Predictions.h5")
    np.testing.assert_array_equal(predictions, two_stage["Object Predictions"])
    np.testing.assert_array_equal(read_h5(tmp_path / "both_Object Probabilities.h5"), two_stage["Object Probabilities"])
    assert [int(predictions[c][0]) for c in ((10, 10), (12, 40), (34, 20), (36, 50))] == [1, 2, 2, 1]
    assert len(rows) == 4 and (tmp_path / "both_table.csv").read_text() == (tmp_path / "stages_table.csv").read_text()


def _replace(f, key, value):
    del f[key]
    f[key] = value


@pytest.mark.parametrize("damage, words", [
    (lambda f: _replace(f, "ThresholdTwoLevels/SmootherSigma/x", 5000.0), "not a smoothing sigma"),
    (lambda f: _replace(f, "ThresholdTwoLevels/Channel", -1), "thresholds channel -1"),
    (lambda f: f.__setitem__("ObjectClassification/LabelInputs/lane0000/t0", np.array([0.5, 1.0])), "not one class"),
    (lambda f: _replace(f, "ObjectClassification/ClassifierForests/Forest0000/Tree_0",
                        np.zeros(3, np.float32)), "is damaged"),
    (lambda f: _replace(f, "workflowName", b"Something Else"), "no FeatureSelections or PixelClassification"),
], ids=["sigma", "channel", "labels", "forest", "workflow"])
def test_damaged_object_projects_are_one_line_errors_naming_the_file(damage, words, tmp_path, capsys):
    """A generated project with one item damaged is refused when opened (exit 1), in one line
    naming the file and the item; the undamaged project opens."""
    project = tmp_path / "p.ilp"
    write_tiny_project(project, "prediction")
    code, err = run_cli([f"--project={project}"], tmp_path, capsys)
    assert code == 0 and "error" not in err, err
    with h5py.File(project, "a") as f:
        damage(f)
    code, err = run_cli([f"--project={project}"], tmp_path, capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 1 and len(errors) == 1 and "p.ilp" in errors[0] and words in errors[0], err
