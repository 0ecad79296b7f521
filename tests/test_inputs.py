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


# --- OME-Zarr by URL and N5 ------------------------------------------------------------------------

def _ome_zarr(tmp_path, image, name="img.zarr"):
    from gpuheadless.io.ome_zarr_ilastik import IlastikOmeZarrWriter
    from gpuheadless.io.ilastik_layout import axistags_json

    path = str(tmp_path / name)
    writer = IlastikOmeZarrWriter(path, image.shape, image.dtype, "yx", {"axistags": axistags_json("yx")}, multiscale=True)
    writer.write((slice(None),) * 2, image)
    writer.commit()
    return path


def test_ome_zarr_file_url_without_zgroup_and_root_at_lowest_resolution(tmp_path):
    pytest.importorskip("zarr")
    image = np.arange(1100 * 1030, dtype=np.uint32).reshape(1100, 1030) % 251
    path = _ome_zarr(tmp_path, image.astype(np.uint8), "my img.zarr")  # a space: escaped in the URL
    os.remove(os.path.join(path, ".zgroup"))
    url = "file://" + path.replace(" ", "%20") + "/s0"
    source = open_input(url)  # a URL has a colon: one image, not a path list
    assert source.axes == "tczyx" and source.shape == (1, 1, 1, 1100, 1030) and source.nickname == "s0"
    np.testing.assert_array_equal(source.read((slice(None),) * 5)[0, 0, 0], image.astype(np.uint8))
    root = open_input(path)  # ilastik takes the last (lowest-resolution) level of an image named by its root
    assert root.shape == (1, 1, 1, 550, 515) and root.resolutions["y"] == 2.0


def _ome_zarr_with_transforms(folder, image, axes, level_transforms, image_transforms=None, units=None):
    """An OME-Zarr with one level ``s0`` and the given coordinateTransformations."""
    import zarr

    group = zarr.open_group(str(folder), mode="w", zarr_format=2)
    group.create_array(name="s0", shape=image.shape, chunks=image.shape, dtype=image.dtype)[...] = image
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    spec = {"axes": [dict(name=a, type=kinds[a], **({"unit": units[a]} if units and a in units else {})) for a in axes],
            "datasets": [{"path": "s0", "coordinateTransformations": level_transforms}], "version": "0.4"}
    if image_transforms:
        spec["coordinateTransformations"] = image_transforms
    group.attrs["multiscales"] = [spec]
    return str(folder)


# ilastik 1.4.2's outputs for a 2D image stored as tczyx (1, 1, 1, h, w), level scale (2, 3, 4, 0.5, 0.25)
# and translation (10, 0, 5, 7, 9), image-wide scale (1.5, 1, 1, 1, 1) and translation (0, 0, 0, 1, 1),
# units second / micrometer, run with --input_axes=tczyx (tests/live/test_formats_live.py runs it)
A2D_TRANSFORMS = ([{"type": "scale", "scale": [2.0, 3.0, 4.0, 0.5, 0.25]},
                   {"type": "translation", "translation": [10.0, 0.0, 5.0, 7.0, 9.0]}],
                  [{"type": "scale", "scale": [1.5, 1.0, 1.0, 1.0, 1.0]},
                   {"type": "translation", "translation": [0.0, 0.0, 0.0, 1.0, 1.0]}],
                  {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"})


def test_ome_zarr_input_metadata_as_ilastik_reads_it(tmp_path):
    pytest.importorskip("zarr")
    path = _ome_zarr_with_transforms(tmp_path / "a.zarr", np.zeros((1, 1, 1, 8, 9), np.uint8), "tczyx", *A2D_TRANSFORMS)
    source = open_input(path)
    assert source.resolutions == {"t": 3.0, "c": 3.0, "z": 4.0, "y": 0.5, "x": 0.25}  # level times image-wide scale
    assert list(source.axis_units.items()) == [("t", "second"), ("c", ""), ("z", "micrometer"), ("y", "micrometer"),
                                               ("x", "micrometer")]
    assert source.translation == {"t": 10.0, "z": 5.0, "y": 8.0, "x": 10.0} and source.scale_key == "s0"
    # a scale of the wrong length is no pixel size, and without one there are no units or translation
    bad = _ome_zarr_with_transforms(tmp_path / "b.zarr", np.zeros((8, 9), np.uint8), "yx",
                                    [{"type": "scale", "scale": [1.0]}, {"type": "translation", "translation": [1.0, 2.0]}])
    assert (open_input(bad).resolutions, open_input(bad).axis_units) == ({}, {})
    none = _ome_zarr_with_transforms(tmp_path / "c.zarr", np.zeros((8, 9), np.uint8), "yx",
                                     [{"type": "translation", "translation": [1.0, 2.0]}])
    assert open_input(none).translation == {}


def test_ome_zarr_pixel_sizes_and_translation_reach_the_outputs_as_in_ilastik(data, tmp_path, capsys):
    """ilastik drops the pixel size of axes of extent 1 (t, z here), keeps the channel's and the
    units of every input axis, and adds the input's translation to its OME-Zarr export's."""
    pytest.importorskip("zarr")
    import json

    import zarr

    with h5py.File(data / "inputs/2d.h5", "r") as f:
        image = f["data"][0:64, 0:80]
    path = _ome_zarr_with_transforms(tmp_path / "a2d.zarr", image[None, None, None], "tczyx", *A2D_TRANSFORMS)
    for fmt, name in (("hdf5", "p.h5"), ("single-scale OME-Zarr", "p.zarr")):
        code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d.ilp'}", f"--output_format={fmt}",
                          f"--output_filename_format={tmp_path / 'out' / name}", path], tmp_path, capsys)
        assert code == 0, err
    with h5py.File(tmp_path / "out/p.h5", "r") as f:
        ds = f["exported_data"]
        assert ds.shape == (1, 2, 1, 64, 80)
        tags = json.loads(ds.attrs["axistags"])["axes"]
        assert [(t["key"], t["resolution"]) for t in tags] == [("t", 0), ("c", 3), ("z", 0), ("y", 0.5), ("x", 0.25)]
        assert ds.attrs["axis_units"] == '{"t": "second", "c": "", "z": "micrometer", "y": "micrometer", "x": "micrometer"}'
    meta = zarr.open_group(str(tmp_path / "out/p.zarr"), mode="r").attrs["multiscales"][0]
    assert meta["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 3.0, 1.0, 0.5, 0.25]},
                                                 {"type": "translation", "translation": [10.0, 0.0, 5.0, 8.0, 10.0]}]
    assert meta["datasets"] == [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 5}]}]


def test_ome_zarr_over_http(tmp_path, project_copy, capsys):
    pytest.importorskip("zarr")
    pytest.importorskip("aiohttp")
    import functools
    import http.server
    import threading

    image = (np.arange(60 * 70) % 200).astype(np.uint8).reshape(60, 70)
    _ome_zarr(tmp_path, image)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        source = open_input(f"{base}/img.zarr/s0")
        np.testing.assert_array_equal(source.read((slice(None),) * 5)[0, 0, 0], image)
        assert source.nickname == "s0" and source.dataset_dir == ""  # ilastik: {dataset_dir} is the project's folder
        assert open_input(f"{base}/img.zarr").nickname == "img"
        project = project_copy("PixelClassification2d.ilp")
        (tmp_path / "elsewhere").mkdir()
        code, err = _run(["--headless", f"--project={project}", f"{base}/img.zarr/s0"], tmp_path / "elsewhere", capsys)
        assert code == 0, err
        assert (project.parent / "s0_Probabilities.h5").is_file()
        with pytest.raises(Exception, match="not a readable Zarr array|cannot read"):
            open_input(f"{base}/img.zarr/s7")
    finally:
        server.shutdown()
        server.server_close()


def _hand_written_n5(folder, data, block, gz, attrs):
    """An N5 dataset written from the format description (independent of gpuheadless.io.n5)."""
    import gzip
    import json
    import struct

    os.makedirs(folder)
    json.dump({"n5": "2.0.0"}, open(os.path.join(os.path.dirname(folder), "attributes.json"), "w"))
    json.dump({"dimensions": list(data.shape[::-1]), "blockSize": list(block[::-1]), "dataType": data.dtype.name,
               "compression": {"type": "gzip", "level": 6} if gz else {"type": "raw"}, **attrs},
              open(os.path.join(folder, "attributes.json"), "w"))
    for index in np.ndindex(*(-(-n // b) for n, b in zip(data.shape, block))):
        piece = data[tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block))]
        body = piece.astype(piece.dtype.newbyteorder(">")).tobytes()
        blob = struct.pack(f">HH{piece.ndim}I", 0, piece.ndim, *piece.shape[::-1]) + (gzip.compress(body) if gz else body)
        target = os.path.join(folder, *(str(i) for i in index[::-1]))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "wb").write(blob)


@pytest.mark.parametrize("gz, attrs, axes", [(False, {}, "zyx"), (True, {"axes": ["x", "y", "z"]}, "zyx"),
                                             (True, {"axes": "xyt"}, "tyx")])
def test_n5_inputs(gz, attrs, axes, tmp_path):
    data = (np.arange(9 * 10 * 11) * 7 % 65521).astype(np.uint16).reshape(9, 10, 11)
    _hand_written_n5(str(tmp_path / "vol.n5/grp/raw"), data, (4, 5, 3), gz, attrs)
    source = open_input(str(tmp_path / "vol.n5/grp/raw"))
    assert source.axes == axes and source.shape == data.shape and source.nickname == "vol-grp-raw"
    np.testing.assert_array_equal(source.read((slice(2, 9), slice(1, 7), slice(0, 11))), data[2:9, 1:7])
    assert open_input(str(tmp_path / "vol.n5")).shape == data.shape  # the only dataset


def test_bad_n5_and_url_inputs_say_what_is_wrong(tmp_path, capsys):
    from gpuheadless.errors import UserError

    _hand_written_n5(str(tmp_path / "vol.n5/raw"), np.zeros((4, 4), np.uint8), (2, 2), False, {})
    with pytest.raises(UserError, match="no N5 dataset 'nothing'"):
        open_input(str(tmp_path / "vol.n5/nothing"))
    with pytest.raises(UserError, match="file does not exist"):
        open_input(f"file://{tmp_path}/missing.zarr/s0")
    with pytest.raises(UserError, match="unsupported URL scheme"):
        open_input("ftp://example.org/a.zarr")


def test_ome_tiff_input_pixel_sizes_as_ilastiks_tiff_reader(tmp_path):
    """An OME-TIFF (ilastik's multipage TIFF export) gives its pixel sizes and OME units back, the
    units for every axis in the file's order (ilastik's TIFF reader does the same)."""
    from gpuheadless.io.ome_tiff import write_multipage_tiff

    with open(tmp_path / "v.tiff", "wb") as stream:
        write_multipage_tiff(stream, np.zeros((3, 4, 5, 2), np.float32), "zyxc", {"z": 2.0, "y": 0.5, "x": 0.25},
                             {"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    source = open_input(str(tmp_path / "v.tiff"))
    assert source.axes == "zcyx" and source.shape == (3, 2, 4, 5)
    assert source.resolutions == {"z": 2.0, "y": 0.5, "x": 0.25}
    assert list(source.axis_units.items()) == [("z", "µm"), ("c", ""), ("y", "µm"), ("x", "µm")]


def test_damaged_n5_block_is_one_line_naming_the_block(tmp_path):
    from gpuheadless.errors import UserError

    _hand_written_n5(str(tmp_path / "vol.n5/raw"), np.ones((4, 4), np.uint8), (2, 2), True, {})
    block = tmp_path / "vol.n5/raw/1/0"
    block.write_bytes(block.read_bytes()[:9])  # truncated mid-payload
    source = open_input(str(tmp_path / "vol.n5/raw"))
    with pytest.raises(UserError, match=r"N5 block .*raw/1/0 is damaged"):
        source.read((slice(0, 4), slice(0, 4)))


def test_zarr_v3_arrays_and_ngff_05_images(tmp_path):
    """Zarr v3 (``zarr.json``) arrays by their root, and OME-Zarr 0.5 images (``attributes.ome``)."""
    zarr = pytest.importorskip("zarr")
    volume = np.arange(2 * 30 * 40, dtype=np.uint8).reshape(2, 30, 40)
    array = zarr.create_array(str(tmp_path / "arr.zarr"), shape=volume.shape, dtype=volume.dtype, chunks=(1, 16, 16),
                              zarr_format=3)
    array[:] = volume
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w", zarr_format=3)
    level = group.create_array("s0", shape=(30, 40), dtype=np.uint8, chunks=(16, 16))
    level[:] = volume[0]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25]}]}]}]}
    source = open_input(str(tmp_path / "arr.zarr"))
    assert source.axes == "zyx" and source.shape == volume.shape
    np.testing.assert_array_equal(source.read((slice(None),) * 3), volume)
    for path in ("ome.zarr", "ome.zarr/s0"):
        source = open_input(str(tmp_path / path))
        assert source.axes == "yx" and source.resolutions == {"y": 0.5, "x": 0.25}
        np.testing.assert_array_equal(source.read((slice(None),) * 2), volume[0])
