"""Pixel Classification end to end on a generated project: ``gpuheadless train`` on a small image of
bright disks, then the batch command (and ``gpuheadless.api``) on an unseen one: every export source,
the export options (dtype, drange, cutout, axis order, file-name placeholders), output formats and
block layouts (no external data)."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from gpuheadless import api
from gpuheadless.cli import main

FEATURES = "GaussianSmoothing@1.0,GaussianSmoothing@2.0,GaussianGradientMagnitude@1.0,HessianOfGaussianEigenvalues@1.6"
N_FEATURES = 1 + 1 + 1 + 2
SHAPE = (48, 56)


def disks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw uint8, truth 1 = background / 2 = disk): disks of radius 5 on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = np.ones(SHAPE, np.uint8)
    for cy, cx in ((10, 12), (12, 40), (34, 20), (36, 44)):
        cy, cx = cy + rng.integers(-2, 3), cx + rng.integers(-2, 3)
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = 2
    raw = np.where(truth == 2, 170, 50) + rng.normal(0, 12, SHAPE)
    return np.clip(raw, 0, 255).astype(np.uint8), truth


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A trained project and an unseen image (``cells.h5/data``) with its truth."""
    folder = tmp_path_factory.mktemp("pixel")
    train_raw, train_truth = disks(1)
    test_raw, test_truth = disks(2)
    scribbles = np.zeros(SHAPE, np.uint8)
    scribbles[::3, ::3] = train_truth[::3, ::3]  # a sparse grid of labels, both classes
    with h5py.File(folder / "train.h5", "w") as f:
        f["data"] = train_raw
        f["labels"] = scribbles
    with h5py.File(folder / "cells.h5", "w") as f:
        f["data"] = test_raw
    assert main(["train", "--raw", f"{folder}/train.h5/data", "--labels", f"{folder}/train.h5/labels",
                 "--output", f"{folder}/p.ilp", "--features", FEATURES, "--trees", "16", "--seed", "0",
                 "--label_names", "Background", "Disk"]) == 0
    return folder, test_truth


def run(setup, tmp_path, capsys, *flags, out="{nickname}_{result_type}"):
    """The batch command on the unseen image; returns the exit status and stderr."""
    folder, _ = setup
    argv = ["--headless", f"--project={folder}/p.ilp", "--device=cpu",
            f"--output_filename_format={tmp_path}/{out}", *flags, f"{folder}/cells.h5/data"]
    return run_cli(argv, tmp_path, capsys)


def exported(path):
    with h5py.File(path, "r") as f:
        ds = f["exported_data"]
        return ds[()], dict(ds.attrs)


@pytest.fixture(scope="module")
def probabilities(setup, tmp_path_factory):
    """The Probabilities export (H5) of the unseen image, computed once."""
    folder, _ = setup
    out = tmp_path_factory.mktemp("probabilities")
    assert main(["--headless", f"--project={folder}/p.ilp", "--device=cpu", "--output_format=hdf5",
                 f"--output_filename_format={out}/p.h5", f"{folder}/cells.h5/data"]) == 0
    return exported(out / "p.h5")[0]


def test_probabilities_sum_to_one_and_find_the_disks(setup, probabilities):
    """Two float32 channels summing to 1; the disk channel is above 0.5 on most disk pixels and
    below on most background pixels."""
    _, truth = setup
    p = probabilities
    assert p.shape == SHAPE + (2,) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-5)
    disk = p[..., 1] > 0.5
    assert disk[truth == 2].mean() > 0.9 and (~disk)[truth == 1].mean() > 0.9


def test_simple_segmentation_labels_both_classes_as_the_truth(setup, tmp_path, capsys, probabilities):
    """Simple Segmentation is uint8 1/2, both present, matching the truth and the probabilities' argmax."""
    _, truth = setup
    code, err = run(setup, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=hdf5")
    assert code == 0, err
    seg, attrs = exported(tmp_path / "cells-data_Simple Segmentation.h5")
    assert seg.dtype == np.uint8 and seg.shape == SHAPE + (1,) and set(np.unique(seg).tolist()) == {1, 2}
    assert (seg[..., 0] == truth).mean() > 0.95
    np.testing.assert_array_equal(seg[..., 0], np.argmax(probabilities, axis=-1) + 1)
    assert "axistags" in attrs


def test_uncertainty_is_one_minus_the_probability_margin(setup, tmp_path, capsys, probabilities):
    """Uncertainty equals ``1 - |p1 - p2|`` of the probabilities export; highest on the disks' rims."""
    code, err = run(setup, tmp_path, capsys, "--export_source=uncertainty", "--output_format=hdf5")
    assert code == 0, err
    u, _ = exported(tmp_path / "cells-data_Uncertainty.h5")
    expected = 1 - np.abs(probabilities[..., 0] - probabilities[..., 1])
    np.testing.assert_allclose(u[..., 0], expected, atol=1e-6)
    assert u.max() > 0.5 and u.min() < 0.2


def test_features_export_has_the_projects_columns(setup, tmp_path, capsys):
    """Features: one float32 channel per classifier column; the first is the smoothed image."""
    folder, _ = setup
    code, err = run(setup, tmp_path, capsys, "--export_source=Features", "--output_format=hdf5")
    assert code == 0, err
    features, _ = exported(tmp_path / "cells-data_Features.h5")
    assert features.shape == SHAPE + (N_FEATURES,) and features.dtype == np.float32
    with h5py.File(folder / "cells.h5", "r") as f:
        raw = f["data"][()].astype(np.float32)
    smooth = features[..., 0]
    assert abs(smooth.mean() - raw.mean()) < 1 and smooth.std() < raw.std()
    assert np.all(features[..., 2] >= 0) and features[..., 2].max() > 1  # a gradient magnitude


def test_drange_renormalisation_to_uint8(setup, tmp_path, capsys, probabilities):
    """Probabilities (0,1) -> (0,255) as uint8 are ``rint(p * 255)``, and record the new drange."""
    code, err = run(setup, tmp_path, capsys, "--export_dtype=uint8", "--pipeline_result_drange=(0,1)",
                    "--export_drange=(0,255)", "--output_format=hdf5")
    assert code == 0, err
    data, attrs = exported(tmp_path / "cells-data_Probabilities.h5")
    assert data.dtype == np.uint8 and data.min() < 20 and data.max() > 235
    np.testing.assert_array_equal(data, np.rint(probabilities * np.float32(255)).astype(np.uint8))
    assert tuple(attrs["drange"]) == (0, 255)


def test_cutout_axis_order_and_roi_placeholders(setup, tmp_path, capsys, probabilities):
    """A cutout in y, x, c with x, y, c output order is the transposed region, named by its ROI."""
    code, err = run(setup, tmp_path, capsys, "--cutout_subregion=[(5,6,1),(20,30,2)]", "--output_axis_order=xyc",
                    "--output_format=hdf5", out="{nickname}_{x_start}-{x_stop}_{y_start}-{y_stop}")
    assert code == 0, err
    data, _ = exported(tmp_path / "cells-data_6-30_5-20.h5")
    assert data.shape == (24, 15, 1)
    np.testing.assert_array_equal(data, np.transpose(probabilities[5:20, 6:30, 1:2], (1, 0, 2)))


def test_dataset_dir_placeholder_and_extension_rule(setup, tmp_path, capsys):
    """``{dataset_dir}`` is the input's folder; the format's extension replaces the pattern's."""
    folder, _ = setup
    out_dir = tmp_path / "out"
    argv = ["--headless", f"--project={folder}/p.ilp", "--device=cpu", "--export_source=Simple Segmentation",
            "--output_format=numpy", f"--output_filename_format={out_dir}/{{nickname}}-{{result_type}}.tmp",
            f"{folder}/cells.h5/data"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    seg = np.load(out_dir / "cells-data-Simple Segmentation.npy")
    assert set(np.unique(seg).tolist()) == {1, 2}
    argv = ["--headless", f"--project={folder}/p.ilp", "--device=cpu", "--output_format=hdf5",
            "--output_filename_format={dataset_dir}/dd/{nickname}.h5", f"{folder}/cells.h5/data"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    data, _ = exported(folder / "dd" / "cells-data.h5")
    assert data.shape == SHAPE + (2,) and data.max() > 0.9
    os.remove(folder / "dd" / "cells-data.h5")


def test_png_and_tiff_exports(setup, tmp_path, capsys, probabilities):
    """PNG of Simple Segmentation stores 1/2 as they are; a float TIFF stores the probabilities exactly."""
    code, err = run(setup, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=png")
    assert code == 0, err
    png = np.asarray(Image.open(tmp_path / "cells-data_Simple Segmentation.png"))
    assert png.shape == SHAPE and set(np.unique(png).tolist()) == {1, 2}
    code, err = run(setup, tmp_path, capsys, "--output_format=tiff")
    assert code == 0, err
    import tifffile

    tiff = tifffile.imread(tmp_path / "cells-data_Probabilities.tiff")
    np.testing.assert_array_equal(tiff.reshape(probabilities.shape), probabilities)


def test_small_blocks_give_the_same_bytes(setup, tmp_path, capsys, probabilities, monkeypatch):
    """A tiny block budget (many blocks with halos) gives the one-block probabilities bit for bit."""
    monkeypatch.setenv("GPUHEADLESS_BLOCK_MB", "0.05")
    code, err = run(setup, tmp_path, capsys, "--output_format=hdf5", "--debug")
    assert code == 0, err
    blocks = [line for line in err.splitlines() if "block(s) of" in line]
    assert blocks and int(blocks[0].split("block(s)")[0].split()[-1]) > 1, blocks
    data, _ = exported(tmp_path / "cells-data_Probabilities.h5")
    np.testing.assert_array_equal(data, probabilities)


def test_python_api_equals_the_command_line(setup, tmp_path, probabilities):
    """``gpuheadless.api.predict`` writes the command line's probabilities and returns the path."""
    folder, _ = setup
    written = api.predict(str(folder / "p.ilp"), [f"{folder}/cells.h5/data"], output_format="hdf5",
                          output_filename_format=f"{tmp_path}/api.h5", device="cpu")
    assert written == [f"{tmp_path}/api.h5"]
    np.testing.assert_array_equal(exported(tmp_path / "api.h5")[0], probabilities)


def test_input_axes_reinterpret_a_transposed_image(setup, tmp_path, capsys, probabilities):
    """The image stored as x, y with ``--input_axes=xy`` gives the probabilities in x, y, c order."""
    folder, _ = setup
    with h5py.File(folder / "cells.h5", "r") as f:
        raw = f["data"][()]
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["data"] = raw.T
    argv = ["--headless", f"--project={folder}/p.ilp", "--device=cpu", "--input_axes=xy", "--output_format=hdf5",
            f"--output_filename_format={tmp_path}/t_out.h5", f"{tmp_path}/t.h5/data"]
    code, err = run_cli(argv, tmp_path, capsys)
    assert code == 0, err
    data, _ = exported(tmp_path / "t_out.h5")
    np.testing.assert_allclose(np.transpose(data, (1, 0, 2)), probabilities, atol=1e-6)


def test_bad_options_are_one_line_usage_errors_and_write_nothing(setup, tmp_path, capsys):
    """An unknown source, a drange without its pipeline range, a bad cutout and an unknown flag exit 2."""
    for flags in (["--export_source=Probability"], ["--export_drange=(0,255)"], ["--cutout_subregion=[(0,0)]"],
                  ["--output_fomat=png"]):
        code, err = run(setup, tmp_path, capsys, *flags)
        assert code == 2, (flags, err)
        assert err.startswith("gpuheadless") and len(err.strip().splitlines()) == 1, err
    assert not os.listdir(tmp_path)


def test_train_refuses_labels_of_a_single_class(setup, tmp_path, capsys):
    """Training needs two classes: labels all 1 are refused with one line naming the reason."""
    folder, _ = setup
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["labels"] = np.ones(SHAPE, np.uint8)
    code = main(["train", "--raw", f"{folder}/train.h5/data", "--labels", f"{tmp_path}/one.h5/labels",
                 "--output", f"{tmp_path}/x.ilp"])
    err = capsys.readouterr().err
    assert code == 1 and "at least two classes" in err
    assert not (tmp_path / "x.ilp").exists()
