"""Inputs: stacks from globs, path lists and HDF5 globs, --stack_along, nicknames, image files."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli as _run
from gpuheadless.io.stacks import expand_members, open_input



@pytest.fixture
def volume(data):
    with h5py.File(data / "inputs" / "3d.h5", "r") as f:
        return f["data"][()]  # (50, 60, 55) uint8, zyx


def _export(project, inputs, tmp_path, capsys, *extra):
    code, err = _run(["--headless", f"--project={project}", "--output_format=hdf5",
                      f"--output_filename_format={tmp_path}/out/{{nickname}}.h5", *extra, *inputs], tmp_path, capsys)
    assert code == 0, err
    (name,) = os.listdir(tmp_path / "out")
    with h5py.File(tmp_path / "out" / name, "r") as f:
        data = f["exported_data"][()]
    for leftover in os.listdir(tmp_path / "out"):
        os.remove(tmp_path / "out" / leftover)
    return name, data


def test_png_stack_from_a_glob_equals_the_volume(data, volume, tmp_path, capsys):
    (tmp_path / "stack").mkdir()
    for z, plane in enumerate(volume):
        Image.fromarray(plane).save(tmp_path / "stack" / f"slice_{z:02d}.png")
    project = data / "projects" / "PixelClassification3d.ilp"
    _, reference = _export(project, [str(data / "inputs" / "3d.h5/data")], tmp_path, capsys)
    name, stacked = _export(project, ["stack/slice_*.png"], tmp_path, capsys)
    assert name == "slice_.h5"  # nickname: common prefix of the members
    np.testing.assert_array_equal(stacked.reshape(reference.shape), reference)


def test_hdf5_glob_and_path_list_stack_members_in_string_order(volume, tmp_path):
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        for z in (0, 1, 2, 10):
            f[f"slices/img{z}"] = volume[z]
    source = open_input("vol.h5/slices/img*", str(tmp_path))
    assert source.nickname == "vol-slices-img" and source.axes == "zyx" and source.shape == (4, 60, 55)
    # string order: img0, img1, img10, img2
    np.testing.assert_array_equal(source.read((slice(2, 4), slice(None), slice(None))), volume[[10, 2]])
    for z in (0, 1):
        Image.fromarray(volume[z]).save(tmp_path / f"p{z}.png")
    listed = open_input(f"p1.png{os.pathsep}p0.png", str(tmp_path))
    np.testing.assert_array_equal(listed.read((slice(0, 2), slice(None), slice(None), slice(None)))[..., 0], volume[:2])


def test_stack_along_an_existing_axis_concatenates(volume, tmp_path):
    for i in range(3):
        Image.fromarray(volume[i]).save(tmp_path / f"t{i}.png")
    joined = open_input("t*.png", str(tmp_path), stack_along="x")
    assert joined.axes == "yxc" and joined.shape == (60, 165, 1)
    np.testing.assert_array_equal(joined.read((slice(None), slice(50, 60), slice(None)))[..., 0], np.concatenate([volume[0][:, 50:], volume[1][:, :5]], axis=1))
    in_time = open_input("t*.png", str(tmp_path), stack_along="t")
    assert in_time.axes == "tyxc" and in_time.shape == (3, 60, 55, 1)


def test_stack_errors(volume, tmp_path, capsys, data):
    Image.fromarray(volume[0]).save(tmp_path / "a.png")
    Image.fromarray(volume[0][:30]).save(tmp_path / "b.png")
    Image.fromarray(volume[0]).save(tmp_path / "c.tif")
    project = f"--project={data / 'projects' / 'PixelClassification3d.ilp'}"
    for pattern, code_wanted, message in [
        ("nothing*.png", 2, "matches no file"),
        ("[ab].png", 1, "a stack needs members of one shape and type"),
        (f"a.png{os.pathsep}c.tif", 1, "share one file type"),
    ]:
        code, err = _run(["--headless", project, f"--output_filename_format={tmp_path}/o.h5", pattern], tmp_path, capsys)
        assert code == code_wanted and message in err, err
        assert "Traceback" not in err
        assert not (tmp_path / "o.h5").exists()
    with pytest.raises(Exception, match="stack_along"):
        open_input("*.png", str(tmp_path), stack_along="q")
    assert [os.path.basename(e) for e, _ in expand_members("*.png", str(tmp_path))] == ["a.png", "b.png"]


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".ppm", ".pnm", ".tif", ".npy", ".gif", ".jpg"])
def test_image_files_give_the_same_result_as_hdf5(suffix, data, tmp_path, capsys):
    with h5py.File(data / "inputs" / "2d3c.h5", "r") as f:
        image = f["data"][()]  # (73, 187, 3) uint8
    path = tmp_path / f"img{suffix}"
    if suffix == ".npy":
        np.save(path, image)
    elif suffix == ".tif":
        import tifffile

        tifffile.imwrite(path, image, photometric="rgb")
    else:
        Image.fromarray(image).save(path)
    project = data / "projects" / "PixelClassification2d3c.ilp"
    _, reference = _export(project, [str(data / "inputs" / "2d3c.h5/data")], tmp_path, capsys)
    name, ours = _export(project, [str(path)], tmp_path, capsys)
    assert name == "img.h5"
    assert ours.shape == reference.shape
    if suffix in (".gif", ".jpg"):  # lossy codecs (palette, DCT): the same image, roughly
        assert np.mean(np.abs(ours - reference)) < 0.1
    else:
        np.testing.assert_array_equal(ours, reference)


def test_several_inputs_in_one_call(data, tmp_path, capsys):
    project = data / "projects" / "PixelClassification2d3c.ilp"
    code, err = _run(["--headless", f"--project={project}", f"--output_filename_format={tmp_path}/out/{{nickname}}.h5",
                      str(data / "inputs/2d3c.h5/data"), str(data / "inputs/2d3c.h5")], tmp_path, capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["2d3c-data.h5", "2d3c.h5"]
