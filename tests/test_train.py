"""`gpuheadless train`: projects written in ilastik's layout, exact round trips, bad input."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from gpuheadless import predict, train
from gpuheadless.backend import cpu_backend
from gpuheadless.cli import main
from gpuheadless.errors import UserError
from gpuheadless.forest.predict import predict_cpu
from gpuheadless.forest.train import train_forest
from gpuheadless.pipeline.training import training_samples
from gpuheadless.project.ilp import read_project
from gpuheadless.project.vigra_forest import read_vigra_forests
from gpuheadless.project.vigra_writer import write_vigra_forest
from gpuheadless.project.writer import LaneData, write_project


def _label_volume(project, shape):
    """The stored labels of lane 0 pasted into a zero volume of ``shape`` (internal order + c)."""
    volume = np.zeros(shape, np.uint8)
    for block in project.labels[0]:
        region = volume[block.slices]
        region[block.values > 0] = block.values[block.values > 0]
    return volume


@pytest.fixture
def labelled_2d3c(data, tmp_path):
    """The 2d3c training image and its project's labels as a label image."""
    project = read_project(data / "projects" / "PixelClassification2d3c.ilp")
    labels = _label_volume(project, (73, 187, 1))[..., 0]
    with h5py.File(tmp_path / "labels.h5", "w") as f:
        f["data"] = labels.astype(np.int32)  # any integer type
    return str(data / "inputs" / "2d3c.h5/data"), str(tmp_path / "labels.h5/data"), labels


def test_trained_project_reproduces_the_in_memory_forest_exactly(labelled_2d3c, tmp_path):
    raw, labels, label_image = labelled_2d3c
    path = train([raw], [labels], str(tmp_path / "p.ilp"), seed=3, trees=20, threads=1)
    project = read_project(path)
    assert project.n_classes == 2 and project.forest.n_trees == 20
    # The same samples and seed give the same forest in memory.
    x, y = training_samples(cpu_backend(), project)
    assert len(y) == int((label_image > 0).sum())
    in_memory = train_forest(x, y, n_trees=20, threads=1, seed=3)
    for name in ("feature", "threshold", "left", "right"):
        np.testing.assert_array_equal(getattr(project.forest, name)[project.forest.feature >= 0],
                                      getattr(in_memory, name)[in_memory.feature >= 0])
    # Applied to its training image with the batch pipeline: exactly the in-memory probabilities.
    (output,) = predict(path, [raw], output_format="numpy", output_filename_format=str(tmp_path / "p.npy"), device="cpu")
    from gpuheadless.features.compute import compute_features
    from gpuheadless.features.plan import make_plan

    with h5py.File(raw.rsplit("/", 1)[0], "r") as f:
        image = f["data"][()].astype(np.float32)[None]
    plan = make_plan(project.selection, 3, 1)
    features = compute_features(cpu_backend(), image, plan, (slice(0, 1), slice(0, 73), slice(0, 187)))
    expected = predict_cpu(in_memory, features.reshape(plan.n_features, -1).T)
    np.testing.assert_array_equal(np.load(output).reshape(-1, 2), expected)


def test_vigra_forest_written_and_read_back_predicts_identically(data, tmp_path):
    with h5py.File(data / "projects" / "PixelClassification2d.ilp", "r") as f:
        g = f["PixelClassification/ClassifierForests"]
        stored = read_vigra_forests([g[k] for k in sorted(g) if k.startswith("Forest")])
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_vigra_forest(f.create_group("Forest0000"), stored, range(stored.n_trees), 466, 5)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        back = read_vigra_forests([f["Forest0000"]])
        assert list(f["Forest0000"].keys())[:3] == ["Tree_00", "Tree_01", "Tree_02"]
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 300, (5000, 28)).astype(np.float32)
    interior = stored.feature >= 0
    x[:, stored.feature[interior][:28 % len(stored.feature)]] = 0  # keep shape
    for i in range(0, 5000, 2):  # half the rows sit exactly on thresholds
        j = rng.integers(interior.sum())
        x[i, stored.feature[interior][j]] = np.float32(stored.threshold[interior][j])
    # One forest of 100 trees against 8 of 12-13: the same trees, combined by tree count.
    np.testing.assert_allclose(predict_cpu(back, x), predict_cpu(stored, x), atol=2e-7)


@pytest.mark.parametrize("name, shape", [("PixelClassification2d.ilp", (1024, 1344, 1)), ("PixelClassification3d.ilp", (50, 60, 55, 1))])
def test_ilastik_projects_rewritten_keep_labels_and_features(name, shape, data, tmp_path):
    original = read_project(data / "projects" / name)
    lane = original.lanes[0]
    labels = _label_volume(original, shape)
    rewritten = tmp_path / name
    write_project(str(rewritten), [LaneData(lane.file_path, lane.axes, shape[:-1], lane.nickname, labels, "yxc" if len(shape) == 3 else "zyxc")],
                  original.selection, original.label_names, original.label_colors)
    back = read_project(rewritten)
    assert back.selection.feature_ids == original.selection.feature_ids
    np.testing.assert_array_equal(back.selection.matrix[:, :len(original.selection.scales)], original.selection.matrix)
    assert back.label_names == original.label_names
    np.testing.assert_array_equal(_label_volume(back, shape), labels)


def _tree(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, type(o).__name__ if isinstance(o, h5py.Group) else o.dtype.kind))
    return out


def test_written_layout_has_every_path_ilastik_writes(labelled_2d3c, data, tmp_path):
    raw, labels, _ = labelled_2d3c
    path = train([raw], [labels], str(tmp_path / "p.ilp"), seed=0, trees=5, threads=1)
    with h5py.File(path, "r") as ours, h5py.File(data / "projects" / "PixelClassification2d_allfeatures.ilp", "r") as ref:
        mine, theirs = _tree(ours), _tree(ref)
    relevant = {k: v for k, v in theirs.items()
                if not k.startswith("PixelClassification/ClassifierForests/Forest0001")
                and "/Tree_" not in k and "block000" not in k and "local_data/" not in k}
    missing = sorted(k for k in relevant if k not in mine)
    assert not missing, missing
    # Strings: fixed or variable length (ilastik wrote both over the years); the bookmarks: a
    # pickle as an opaque scalar, as ilastik 1.4.2 stores it (older versions as a string).
    same = ({"O", "S"}, {"O", "V"})
    kinds = {k: (mine[k], v) for k, v in relevant.items() if mine[k] != v and {mine[k], v} not in same}
    assert not kinds, kinds
    with h5py.File(path, "r") as f:
        assert f["PixelClassification/ClassifierFactory"][()].startswith(b"ccopy_reg\n_reconstructor")
        assert f["Input Data/infos/lane0000/Raw Data/filePath"][()].decode().endswith("2d3c.h5/data")
        assert not os.path.isabs(f["Input Data/infos/lane0000/Raw Data/filePath"][()].decode())


def test_train_command_line(labelled_2d3c, tmp_path, capsys):
    raw, labels, _ = labelled_2d3c
    code = main(["train", "--raw", raw, "--labels", labels, "--output", str(tmp_path / "cli.ilp"), "--trees", "7",
                 "--seed", "1", "--features", "GaussianSmoothing@1.0,HessianOfGaussianEigenvalues@1.6",
                 "--label_names", "fg", "bg", "--label_colors", "#ff0000", "0,0,255"])
    assert code == 0, capsys.readouterr().err
    project = read_project(tmp_path / "cli.ilp")
    assert project.label_names == ["fg", "bg"] and project.forest.n_trees == 7
    assert project.forest.n_features == 3 * (1 + 2)  # 3 channels x (GS + 2 eigenvalues)


@pytest.mark.parametrize("case, message", [
    ("shape", "must match"),
    ("empty", "no labelled pixel"),
    ("one class", "at least two classes"),
    ("above 99", "0..99"),
    ("channels", "same channels"),
])
def test_bad_training_input(case, message, labelled_2d3c, data, tmp_path, capsys):
    raw, labels, label_image = labelled_2d3c
    raws, label_paths = [raw], [labels]
    bad = label_image.astype(np.int32)
    if case == "shape":
        bad = bad[:50]
    elif case == "empty":
        bad[:] = 0
    elif case == "one class":
        bad[bad > 0] = 1
    elif case == "above 99":
        bad[bad == 2] = 100  # ilastik's eraser value: a stored 100 would become 0 in ilastik
    if case == "channels":
        raws.append(str(data / "inputs" / "2d.h5/data"))
        with h5py.File(tmp_path / "l2.h5", "w") as f:
            f["data"] = np.zeros((1024, 1344), np.uint8)
        label_paths.append(str(tmp_path / "l2.h5/data"))
    else:
        with h5py.File(tmp_path / "bad.h5", "w") as f:
            f["data"] = bad
        label_paths = [str(tmp_path / "bad.h5/data")]
    code = main(["train", "--raw", *raws, "--labels", *label_paths, "--output", str(tmp_path / "out/p.ilp")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    with pytest.raises(UserError):
        train(raws, label_paths, str(tmp_path / "api.ilp"))


def _write_labels(path, array):
    with h5py.File(path, "w") as f:
        f["data"] = array
    return f"{path}/data"


@pytest.mark.parametrize("case, message", [
    ("intensity", "256 distinct values (the largest 255)"),
    ("fractions", "not all whole numbers"),
    ("nan", "not all whole numbers"),
    ("scribbled intensity", "looks like an intensity image: 41 distinct values (the largest 40) on 40 labelled"),
    ("huge values", "(the largest 4000000000)"),
])
def test_label_images_that_cannot_be_labels_are_refused_before_computing(case, message, labelled_2d3c, tmp_path,
                                                                          capsys, monkeypatch):
    """Issue 15: an intensity image as --labels trained 255 classes until the kernel killed it."""
    raw, _, label_image = labelled_2d3c
    rng = np.random.default_rng(0)
    if case == "intensity":
        bad = rng.integers(0, 256, label_image.shape).astype(np.uint8)
        bad.flat[:256] = np.arange(256)
    elif case == "fractions":
        bad = label_image + np.float32(0.5)
    elif case == "nan":
        bad = label_image.astype(np.float64)
        bad[0, 0] = np.nan
    elif case == "scribbled intensity":  # 40 classes on 40 pixels: one value per labelled pixel
        bad = np.zeros(label_image.shape, np.uint16)
        bad[5, 10:50] = np.arange(1, 41)
    else:
        bad = label_image.astype(np.uint32)
        bad[0, 0] = 4_000_000_000
    labels = _write_labels(tmp_path / "b.h5", bad)
    computed = []
    monkeypatch.setattr("gpuheadless.trainer.training_samples", lambda *a, **k: computed.append(1))
    code = main(["train", "--raw", raw, "--labels", labels, "--output", str(tmp_path / "out/X.ilp")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"label image '{labels}'" in err and message in err, err
    assert not computed
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_float_label_image_of_whole_numbers_is_accepted(labelled_2d3c, tmp_path):
    raw, _, label_image = labelled_2d3c
    labels = _write_labels(tmp_path / "f.h5", label_image.astype(np.float32))
    project = read_project(train([raw], [labels], str(tmp_path / "p.ilp"), trees=2, seed=0, threads=1))
    np.testing.assert_array_equal(_label_volume(project, (73, 187, 1))[..., 0], label_image)


def test_many_dense_classes_are_labels_not_an_intensity_image(tmp_path):
    from gpuheadless.trainer import check_label_values

    dense = np.repeat(np.arange(99, dtype=np.int64), 200).reshape(99, 200)  # 99 classes, 200 pixels each
    assert check_label_values("d.h5", dense).dtype == np.uint8
    with pytest.raises(UserError, match="looks like an intensity image"):
        check_label_values("d.h5", dense[:, :1])  # the same classes on one pixel each


@pytest.mark.parametrize("error", [MemoryError, KeyboardInterrupt])
def test_no_partial_project_is_left_when_training_fails(error, labelled_2d3c, tmp_path, capsys, monkeypatch):
    raw, labels, _ = labelled_2d3c

    def fail(*args, **kwargs):
        raise error()

    monkeypatch.setattr("gpuheadless.trainer.train_forest", fail)
    if error is MemoryError:
        code = main(["train", "--raw", raw, "--labels", labels, "--output", str(tmp_path / "out/X.ilp")])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error" in line or "Traceback" in line]
        assert code == 1 and len(errors) == 1 and "out of memory" in errors[0] and "X.ilp" in errors[0], err
    else:
        with pytest.raises(KeyboardInterrupt):
            train([raw], [labels], str(tmp_path / "out/X.ilp"), trees=2, threads=1)
    assert os.listdir(tmp_path / "out") == []


# What ilastik 1.4.2 (h5py 3.7) writes for a Pixel Classification project built with its own
# Python API, dataset by dataset: the character set of every string (0 ASCII, 1 UTF-8), all
# variable length. Readers such as pyilastik decode them as bytes, which a UTF-8 string is not.
ILASTIK_142_STRINGS = {
    "ilastikVersion": 0, "time": 0, "workflowName": 0,
    "FeatureSelections/FeatureIds": 0, "FeatureSelections/StorageVersion": 1,
    "Input Data/Role Names": 0, "Input Data/StorageVersion": 1,
    **{f"Input Data/infos/lane0000/Raw Data/{k}": 0 for k in (
        "__class__", "axis_units", "axistags", "datasetId", "display_mode", "filePath", "location", "nickname",
        "working_scale")},
    "PixelClassification/ClassifierFactory": 0, "PixelClassification/ClassifierForests/feature_names": 0,
    "PixelClassification/ClassifierForests/pickled_type": 0, "PixelClassification/LabelNames": 0,
    "PixelClassification/StorageVersion": 1,
    "Prediction Export/OutputFilenameFormat": 0, "Prediction Export/OutputFormat": 0,
    "Prediction Export/OutputInternalPath": 0, "Prediction Export/StorageVersion": 1,
}


def _string_type(h5obj, attribute=None):
    """(variable length?, character set) of a string dataset or attribute; None if not a string."""
    tid = h5py.h5a.open(h5obj.id, attribute.encode()).get_type() if attribute else h5obj.id.get_type()
    if not isinstance(tid, h5py.h5t.TypeStringID):
        return None
    return tid.is_variable_str(), tid.get_cset()


@pytest.fixture
def small_2d(tmp_path):
    """A 2D training image (uint8, 48x52) with two scribbled classes."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (48, 52)).astype(np.uint8)
    labels = np.zeros((48, 52), np.uint8)
    labels[2:8, 3:20], labels[30:40, 30:33] = 1, 2
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f["data"], f["labels"] = image, labels
    return str(tmp_path / "img.h5/data"), str(tmp_path / "img.h5/labels"), labels


def test_strings_stored_as_ilastik_stores_them(small_2d, tmp_path):
    raw, labels, _ = small_2d
    path = train([raw], [labels], str(tmp_path / "p.ilp"), trees=3, seed=0, threads=1,
                 features="GaussianSmoothing@1.0,StructureTensorEigenvalues@0.3")
    with h5py.File(path, "r") as f:
        found = {}
        f.visititems(lambda name, obj: found.__setitem__(name, _string_type(obj))
                     if isinstance(obj, h5py.Dataset) and _string_type(obj) else None)
        # ``axisorder``: the legacy key older ilastik versions read, kept beside axistags.
        legacy = {"Input Data/infos/lane0000/Raw Data/axisorder": (True, 0)}
        assert found == {**{k: (True, cset) for k, cset in ILASTIK_142_STRINGS.items()}, **legacy}
        block = f["PixelClassification/LabelSets/labels000/block0000"]
        assert _string_type(block, "blockSlice") == (True, 0)  # pyilastik calls .decode('ascii') on it
        assert _string_type(block, "axistags") == (True, 1)
        assert f["PixelClassification/ClassifierForests/feature_names"][0].decode() == "Gaussian Smoothing (\u03c3=1.0) in 2D"
        assert f["PixelClassification/Bookmarks/0000"][()].tobytes() == b"(lp0\n."
        assert f["PixelClassification/Bookmarks/0000"].attrs["version"] == 1


def test_2d_projects_compute_every_scale_in_2d(small_2d, tmp_path):
    raw, labels, _ = small_2d
    path = train([raw], [labels], str(tmp_path / "p.ilp"), trees=3, seed=0, threads=1, in_2d=[1.0])
    with h5py.File(path, "r") as f:
        flags = f["FeatureSelections/ComputeIn2d"][()]
        scales = f["FeatureSelections/Scales"][()]
    assert flags.dtype == bool and flags.shape == scales.shape and flags.all()


@pytest.fixture
def small_3d(tmp_path):
    """A 3D training volume (uint8, 12x30x31) with two classes of labels."""
    rng = np.random.default_rng(6)
    image = rng.integers(0, 255, (12, 30, 31)).astype(np.uint8)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:5, 2:8, 3:9], labels[6:9, 20:25, 20:28] = 1, 2
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f["data"], f["labels"] = image, labels
    return str(tmp_path / "vol.h5/data"), str(tmp_path / "vol.h5/labels"), labels


@pytest.mark.parametrize("in_2d, expected", [(None, ()), ([0.7, 1.6], (0.7, 1.6)), ("all", "all")])
def test_3d_projects_compute_in_2d_only_where_asked(in_2d, expected, small_3d, tmp_path):
    raw, labels, _ = small_3d
    path = train([raw], [labels], str(tmp_path / "p.ilp"), trees=3, seed=0, threads=1, in_2d=in_2d,
                 features="GaussianSmoothing@0.7,HessianOfGaussianEigenvalues@1.6,StructureTensorEigenvalues@0.3")
    with h5py.File(path, "r") as f:
        flags = f["FeatureSelections/ComputeIn2d"][()]
        scales = f["FeatureSelections/Scales"][()]
    want = [True] * len(scales) if expected == "all" else [s in expected for s in scales]
    assert flags.tolist() == want
    project = read_project(path)
    # Eigenvalues: 2 per scale in 2D, 3 in 3D; the forest was trained on exactly those columns.
    hessian_in_2d = expected == "all" or 1.6 in expected
    structure_in_2d = expected == "all"
    assert project.forest.n_features == 1 + (2 if hessian_in_2d else 3) + (2 if structure_in_2d else 3)


def test_train_in_2d_option_rejects_unknown_scales(small_3d, tmp_path, capsys):
    raw, labels, _ = small_3d
    code = main(["train", "--raw", raw, "--labels", labels, "--output", str(tmp_path / "p.ilp"), "--in_2d", "2.5"])
    err = capsys.readouterr().err
    assert code == 2 and "2.5" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.ilp").exists()


@pytest.mark.parametrize("spec", ["GaussianSmoothing@0", "LaplacianOfGaussian@-1", "GaussianSmoothing@nan"])
def test_train_refuses_scales_that_are_not_positive(spec, small_2d, tmp_path):
    raw, labels, _ = small_2d
    with pytest.raises(UserError, match="positive"):
        train([raw], [labels], str(tmp_path / "p.ilp"), features=spec)


def test_structure_tensor_at_scale_0_3_as_fastfilters_computes_it(small_2d, tmp_path):
    """Gradients at 0.15 have a radius-0 kernel, which fastfilters applies as a copy.

    So each tensor entry is the same smoothed square of the presmoothed image: the matrix
    [[a, a], [a, a]] has the eigenvalues 2a and 0 (up to the solver's rounding).
    """
    from gpuheadless.features.compute import compute_features
    from gpuheadless.features.kernels import PRESMOOTH_WINDOW, gaussian_kernel
    from gpuheadless.features.plan import FEATURE_IDS, FeatureSelection, make_plan

    assert gaussian_kernel(0.15, 1, 2.0).half.tolist() == [1.0]
    raw, labels, _ = small_2d
    with h5py.File(raw.rsplit("/", 1)[0], "r") as f:
        image = f["data"][()].astype(np.float32)
    matrix = np.zeros((6, 1), bool)
    matrix[FEATURE_IDS.index("StructureTensorEigenvalues"), 0] = True
    bk, box = cpu_backend(), (slice(0, 1), slice(0, 48), slice(0, 52))
    st = compute_features(bk, image[None, ..., None], make_plan(FeatureSelection(FEATURE_IDS, (0.3,), matrix), 1, 1), box)
    assert st.shape == (2, 1, 48, 52) and np.isfinite(st).all()
    # a: the square of the image presmoothed at 0.3, smoothed at 0.3 again.
    presmoothed = image
    for axis in (1, 0):
        presmoothed = _correlate(presmoothed, gaussian_kernel(0.3, 0, PRESMOOTH_WINDOW).taps, axis)
    a = presmoothed * presmoothed
    for axis in (1, 0):
        a = _correlate(a, gaussian_kernel(0.3, 0, 2.0).taps, axis)
    np.testing.assert_allclose(st[0, 0], 2 * a, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(st[1, 0], 0, atol=1e-3 * float(a.max()))


def _correlate(array, taps, axis):
    """Plain float64 correlation with mirrored borders (a reference, not fastfilters' rounding)."""
    from scipy.ndimage import correlate1d

    return correlate1d(array.astype(np.float64), taps.astype(np.float64), axis=axis, mode="mirror")


def test_train_with_structure_tensor_at_0_3(small_2d, tmp_path):
    raw, labels, _ = small_2d
    path = train([raw], [labels], str(tmp_path / "p.ilp"), trees=3, seed=0, threads=1,
                 features="StructureTensorEigenvalues@0.3,GaussianSmoothing@0.3")
    project = read_project(path)
    assert project.forest.n_features == 3
    (out,) = predict(path, [raw], output_format="numpy", output_filename_format=str(tmp_path / "o.npy"), device="cpu")
    assert np.isfinite(np.load(out)).all()
