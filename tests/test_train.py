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
    kinds = {k: (mine[k], v) for k, v in relevant.items() if mine[k] != v and {mine[k], v} != {"O", "S"}}
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
    ("above 255", "0..255"),
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
    elif case == "above 255":
        bad[bad == 2] = 300
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
