"""Readers and writers on small generated arrays: every container format written block by block
and read back (HDF5, NumPy, N5, Zarr, OME-Zarr, TIFF, PNG and other 2D codecs, sequences), the
metadata they carry, the codecs' conversions, ilastik's chunking and the readers' refusals."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from gpuheadless.errors import UsageError, UserError
from gpuheadless.io import formats
from gpuheadless.io.naming import format_known, placeholder_names, replace_extension, roi_values
from gpuheadless.io.paths import nickname, split_dataset_path
from gpuheadless.io.readers import open_image
from gpuheadless.io.source import default_axes
from gpuheadless.io.stacks import open_input
from gpuheadless.io.ilastik_layout import axistags_json, determine_block_shape
from gpuheadless.io.writers import ilastik_chunks, open_writer

RES = {"z": 2.0, "y": 0.5, "x": 0.25}


def volume(shape=(3, 6, 7, 2), dtype=np.float32) -> np.ndarray:
    """Distinct values everywhere, so any misplaced block or transposition shows."""
    return (np.arange(int(np.prod(shape))) % 251 + 1).astype(dtype).reshape(shape)


def write_in_blocks(output_format, path, array, axes, attrs=None, internal="exported_data", **kwargs):
    """Write ``array`` one slice of its first axis at a time, then commit; returns the writer."""
    writer = open_writer(output_format, str(path), internal, array.shape, array.dtype, axes, attrs or {}, **kwargs)
    for i in range(array.shape[0]):
        writer.write((slice(i, i + 1),) + (slice(None),) * (array.ndim - 1), array[i:i + 1])
    writer.commit()
    return writer


def read_all(path):
    source = open_image(str(path))
    try:
        return source, source.read(tuple(slice(None) for _ in source.shape))
    finally:
        source.close()


def in_order(data, axes, wanted):
    """``data`` (axes ``axes``) transposed to ``wanted``, dropping singleton axes not wanted."""
    for a in [a for a in axes if a not in wanted]:
        data = np.take(data, 0, axis=axes.index(a))
        axes = axes.replace(a, "")
    return np.transpose(data, [axes.index(a) for a in wanted])


def test_hdf5_round_trip_keeps_values_axes_pixel_sizes_and_drange(tmp_path):
    """An HDF5 export reads back with its values, axistags (axes and resolutions), drange and ilastik's chunks."""
    a = volume()
    attrs = {"axistags": axistags_json("zyxc", RES), "drange": (1, 251)}
    write_in_blocks("hdf5", tmp_path / "out.h5", a, "zyxc", attrs)
    source, data = read_all(f"{tmp_path}/out.h5/exported_data")
    assert source.axes == "zyxc" and source.shape == a.shape and source.dtype == np.float32
    assert source.resolutions == {**RES, "c": 0.0} and source.drange == (1, 251)
    np.testing.assert_array_equal(data, a)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        ds = f["exported_data"]
        assert ds.chunks == ilastik_chunks("zyxc", a.shape, a.dtype) and ds.compression is None
        assert [d.label for d in ds.dims] == list("zyxc")


def test_compressed_hdf5_appends_to_an_existing_file_and_keeps_its_datasets(tmp_path):
    """``compressed hdf5`` gzips; another dataset of the same file survives the export."""
    path = tmp_path / "both.h5"
    with h5py.File(path, "w") as f:
        f["keep"] = np.arange(5)
    a = volume((4, 5), np.uint16)
    write_in_blocks("compressed hdf5", path, a, "yx", internal="group/result")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["keep"][()], np.arange(5))
        np.testing.assert_array_equal(f["group/result"][()], a)
        assert f["group/result"].compression == "gzip"


def test_a_writer_shows_nothing_until_commit_and_abort_leaves_nothing(tmp_path):
    """Outputs appear under their name only at commit; an aborted write leaves no file behind."""
    a = volume((4, 5), np.uint8)
    writer = open_writer("hdf5", str(tmp_path / "late.h5"), "data", a.shape, a.dtype, "yx", {})
    writer.write((slice(None), slice(None)), a)
    assert not (tmp_path / "late.h5").exists()
    writer.commit()
    assert (tmp_path / "late.h5").exists()
    writer = open_writer("numpy", str(tmp_path / "never.npy"), "", a.shape, a.dtype, "yx", {})
    writer.write((slice(None), slice(None)), a)
    writer.abort()
    assert sorted(os.listdir(tmp_path)) == ["late.h5"]


def test_numpy_round_trip(tmp_path):
    """A ``.npy`` export holds the array; read back it gets ilastik's default axes by rank."""
    a = volume((3, 6, 7, 2), np.int16)
    write_in_blocks("numpy", tmp_path / "out.npy", a, "zyxc")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), a)
    source, data = read_all(tmp_path / "out.npy")
    assert source.axes == "zyxc"
    np.testing.assert_array_equal(data, a)


@pytest.mark.parametrize("output_format", ["n5", "compressed n5"])
def test_n5_round_trip_with_axes_and_resolutions(output_format, tmp_path):
    """N5 exports read back with values, axes and pixel sizes, with or without the dataset path."""
    a = volume()
    write_in_blocks(output_format, tmp_path / "out.n5", a, "zyxc", {"axistags": axistags_json("zyxc", RES)})
    for path in (tmp_path / "out.n5", f"{tmp_path}/out.n5/exported_data"):
        source, data = read_all(path)
        assert source.axes == "zyxc" and source.resolutions["x"] == 0.25 and source.resolutions["z"] == 2.0
        np.testing.assert_array_equal(data, a)


@pytest.mark.parametrize("output_format, axes", [("zarr", "zyxc"), ("ome-zarr", "czyx"),
                                                 ("single-scale OME-Zarr", "tczyx"), ("multi-scale OME-Zarr", "tczyx")])
def test_zarr_and_ome_zarr_round_trips(output_format, axes, tmp_path):
    """Zarr exports read back with the same values; OME-Zarr stores NGFF's order (channels first) and
    the pixel sizes."""
    a = volume()
    write_in_blocks(output_format, tmp_path / "out.zarr", a, "zyxc", {"axistags": axistags_json("zyxc", RES)},
                    resolutions=RES)
    source, data = read_all(tmp_path / "out.zarr")
    assert source.axes == axes
    np.testing.assert_array_equal(in_order(data, source.axes, "zyxc"), a)
    if output_format != "zarr":
        assert {k: source.resolutions[k] for k in "zyx"} == RES


def test_multipage_tiff_round_trip_with_pixel_sizes_and_units(tmp_path):
    """A multipage TIFF of a 3D volume reads back as zyx with its pixel sizes and units."""
    a = volume((3, 6, 7), np.uint16)
    attrs = {"axistags": axistags_json("zyx", RES), "axis_units": json.dumps({"z": "micrometer", "y": "micrometer",
                                                                              "x": "micrometer"})}
    write_in_blocks("multipage tiff", tmp_path / "out.tiff", a, "zyx", attrs)
    source, data = read_all(tmp_path / "out.tiff")
    assert source.axes == "zyx" and source.resolutions == RES
    assert source.axis_units == {"z": "\u00b5m", "y": "\u00b5m", "x": "\u00b5m"}
    np.testing.assert_array_equal(data, a)


@pytest.mark.parametrize("codec, dtype", [("png", np.uint8), ("png", np.uint16), ("tiff", np.float32), ("tif", np.int32),
                                          ("bmp", np.uint8), ("pgm", np.uint16)])
def test_2d_image_codecs_store_their_own_types_exactly(codec, dtype, tmp_path):
    """A 2D image in a type its codec holds reads back identical (values in 1..251)."""
    a = volume((6, 7), dtype)
    path = tmp_path / f"out.{codec}"
    write_in_blocks(codec, path, a, "yx")
    _, data = read_all(path)
    np.testing.assert_array_equal(data.reshape(a.shape), a)


def test_gif_reads_back_as_rgb_with_the_gray_values_in_every_channel(tmp_path):
    """A gray GIF is a palette image: read back as three equal channels holding the values."""
    a = volume((6, 7), np.uint8)
    write_in_blocks("gif", tmp_path / "g.gif", a, "yx")
    source, data = read_all(tmp_path / "g.gif")
    assert source.axes == "yxc" and source.shape == (6, 7, 3)
    for k in range(3):
        np.testing.assert_array_equal(data[..., k], a)


def test_rgb_png_and_ppm_keep_three_channels(tmp_path):
    """Three channels become an RGB image, read back as yxc."""
    a = volume((6, 7, 3), np.uint8)
    for codec in ("png", "ppm"):
        write_in_blocks(codec, tmp_path / f"rgb.{codec}", a, "yxc")
        source, data = read_all(tmp_path / f"rgb.{codec}")
        assert source.axes == "yxc" and source.shape == (6, 7, 3)
        np.testing.assert_array_equal(data, a)


def test_png_of_float_data_maps_its_own_range_onto_uint8(tmp_path):
    """vigra's conversion: the image's minimum..maximum onto 0..255, rounded."""
    a = np.array([[0.25, 0.5], [0.75, 1.25]], np.float32)
    write_in_blocks("png", tmp_path / "p.png", a, "yx")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")), [[0, 64], [128, 255]])


def test_codec_conversion_rules():
    """Types a codec holds pass unchanged; others are rescaled min..max (a constant gives the minimum)."""
    a = np.array([-5, 0, 5], np.int16)
    np.testing.assert_array_equal(formats.convert_for_codec(a, "png"), [0, 128, 255])
    assert formats.convert_for_codec(a, "png").dtype == np.uint8
    np.testing.assert_array_equal(formats.convert_for_codec(np.full(3, 7.0), "png"), [0, 0, 0])
    same = np.array([1, 2], np.uint16)
    assert formats.convert_for_codec(same, "png") is same
    assert formats.convert_for_codec(np.array([1, 2], np.uint8), "hdr").dtype == np.float32


def test_image_sequences_number_files_from_the_cutout_start(tmp_path):
    """``png sequence`` writes one file per slice of the first non-singleton axis, numbered from the
    offset with enough digits for the last; a glob reads them back as the same volume."""
    a = volume((3, 6, 7), np.uint8)
    write_in_blocks("png sequence", tmp_path / "s_{slice_index}.png", a, "zyx", slice_offset=8)
    assert sorted(os.listdir(tmp_path)) == ["s_08.png", "s_09.png", "s_10.png"]
    source = open_input(f"{tmp_path}/s_*.png")
    assert source.shape == (3, 6, 7, 1) and source.axes == "zyxc"
    np.testing.assert_array_equal(source.read((slice(None),) * 4)[..., 0], a)


def test_multipage_tiff_sequence_writes_a_volume_per_time_point(tmp_path):
    """A tzyx result as ``multipage tiff sequence``: one 3D TIFF per time point."""
    a = volume((2, 3, 4, 5), np.uint8)
    write_in_blocks("multipage tiff sequence", tmp_path / "t{slice_index}.tiff", a, "tzyx")
    assert sorted(os.listdir(tmp_path)) == ["t0.tiff", "t1.tiff"]
    for t in range(2):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"t{t}.tiff"), a[t])


def test_export_fit_checks_say_what_would_work():
    """2D codecs refuse three spatial axes and channel counts they cannot store; sequences, volumes pass."""
    with pytest.raises(UsageError, match="sequence format"):
        formats.check_export_fits("png", "zyxc", (3, 6, 7, 1))
    with pytest.raises(UsageError, match="stores 1 or 3 channel"):
        formats.check_export_fits("jpg", "yxc", (6, 7, 2))
    formats.check_export_fits("png sequence", "zyxc", (3, 6, 7, 1))
    formats.check_export_fits("hdf5", "tzyxc", (2, 3, 6, 7, 5))
    formats.check_export_fits("png", "zyxc", (1, 6, 7, 4))
    with pytest.raises(UsageError, match="dvid"):
        formats.check_supported("dvid")
    with pytest.raises(UsageError, match="not a known format"):
        formats.check_supported("webp")


def test_format_names_and_extensions():
    """Every ilastik format name has an extension; sequences step along the first non-singleton axis."""
    assert formats.extension("compressed hdf5") == "h5" and formats.extension("jpeg sequence") == "jpeg"
    assert formats.extension("multi-scale OME-Zarr") == "zarr" and formats.extension("numpy") == "npy"
    assert "bmp sequence" in formats.all_format_names() and "multipage tiff" in formats.all_format_names()
    assert formats.step_axis("tzyxc", (1, 1, 5, 6, 1)) == 2 and formats.step_axis("yx", (1, 1)) is None
    assert formats.sequence_digits(0, 9) == 1 and formats.sequence_digits(0, 10) == 2 and formats.sequence_digits(95, 5) == 3


def test_ilastik_chunks_are_about_512_kb_with_one_time_point_and_channel():
    """Chunks hold at most 512000 bytes, one t and one c, as isotropic as the shape allows."""
    chunks = ilastik_chunks("tzyxc", (4, 100, 200, 300, 3), np.float32)
    assert chunks[0] == 1 and chunks[-1] == 1
    assert np.prod(chunks) * 4 <= 512000 and np.prod(chunks) * 4 > 400000
    assert max(chunks[1:4]) - min(chunks[1:4]) <= 1
    assert ilastik_chunks("yxc", (10, 20, 3), np.uint8) == (10, 20, 1)  # small images: one chunk per channel
    assert determine_block_shape((5, 1000), 1000) == (5, 200)


def test_axistags_are_vigras_json():
    """Space axes have type flag 2, channels 1, time 8; whole resolutions are written as integers."""
    tags = json.loads(axistags_json("tyxc", {"x": 2.0, "y": 0.5}))
    assert [(a["key"], a["typeFlags"], a["resolution"]) for a in tags["axes"]] == [
        ("t", 8, 0), ("y", 2, 0.5), ("x", 2, 2), ("c", 1, 0)]
    assert isinstance(tags["axes"][2]["resolution"], int)


def test_default_axes_by_rank():
    """ilastik's axes for data without metadata: yx, yxc (<= 4 channels) or zyx, zyxc, tzyxc."""
    assert default_axes((5, 6)) == "yx" and default_axes((5, 6, 3)) == "yxc" and default_axes((5, 6, 7)) == "zyx"
    assert default_axes((2, 5, 6, 1)) == "zyxc" and default_axes((2, 2, 5, 6, 1)) == "tzyxc"
    with pytest.raises(ValueError):
        default_axes((1, 2, 3, 4, 5, 6))


def test_tiff_and_hdf5_inputs_with_imagej_metadata_and_axistags(tmp_path):
    """ImageJ TIFFs give their pixel sizes and units; HDF5 axistags give any axis order."""
    a = volume((3, 6, 7), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", a, imagej=True, resolution=(4.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    source, data = read_all(tmp_path / "ij.tif")
    assert source.axes == "zyx" and source.resolutions == {"z": 3.0, "y": 0.5, "x": 0.25}
    np.testing.assert_array_equal(data, a)
    with h5py.File(tmp_path / "xy.h5", "w") as f:
        f["raw"] = a[0].T
        f["raw"].attrs["axistags"] = axistags_json("xy")
    source, data = read_all(tmp_path / "xy.h5")  # the only dataset, found without its path
    assert source.axes == "xy" and source.nickname == "xy"
    np.testing.assert_array_equal(data, a[0].T)


def test_stacks_along_z_and_along_channels(tmp_path):
    """A glob of 2D HDF5 datasets stacks along z by default, or along c when asked, in name order."""
    slices = [volume((6, 7), np.uint8) * (k + 1) for k in range(3)]
    for k, s in enumerate(slices):
        with h5py.File(tmp_path / f"slice{k}.h5", "w") as f:
            f["data"] = s
    z = open_input(f"{tmp_path}/slice*.h5/data")
    assert z.axes == "zyx" and z.shape == (3, 6, 7)
    np.testing.assert_array_equal(z.read((slice(None),) * 3), np.stack(slices))
    c = open_input(f"{tmp_path}/slice*.h5/data", stack_along="c")
    assert sorted(c.axes) == sorted("cyx") and c.shape[c.axes.index("c")] == 3
    np.testing.assert_array_equal(in_order(c.read((slice(None),) * 3), c.axes, "cyx"), np.stack(slices))


def test_readers_refuse_what_they_cannot_read_in_one_line(tmp_path):
    """Missing files, unknown suffixes, internal paths of non-containers, ambiguous HDF5 files,
    empty and complex images are each one UserError naming the input."""
    np.save(tmp_path / "a.npy", np.zeros((4, 5)))
    (tmp_path / "a.xyz").write_bytes(b"x")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["one"] = np.zeros((4, 5))
        f["two"] = np.zeros((4, 5))
        f["empty"] = np.zeros((0, 5))
        f["complex"] = np.zeros((4, 5), np.complex64)
    cases = {f"{tmp_path}/missing.h5": "does not exist", f"{tmp_path}/a.xyz": "unsupported file type",
             f"{tmp_path}/two.h5": "several",
             f"{tmp_path}/two.h5/three": "no dataset 'three'", f"{tmp_path}/two.h5/empty": "empty",
             f"{tmp_path}/two.h5/complex": "complex"}
    for path, words in cases.items():
        with pytest.raises(UserError, match=words):
            open_image(path)


def test_paths_and_nicknames():
    """``file.h5/internal`` splits at the container suffix; the nickname joins file and dataset names."""
    assert split_dataset_path("/d/cells.h5/data/raw") == ("/d/cells.h5", "data/raw")
    assert split_dataset_path("/d/cells.png") == ("/d/cells.png", None)
    assert nickname(["/d/cells.h5"], ["data"]) == "cells-data"
    assert nickname(["/d/cells.png"], [None]) == "cells"


def test_placeholders_are_filled_where_known_and_kept_otherwise():
    """Known ``{fields}`` are filled (with format specs); unknown ones and malformed patterns stay as written."""
    values = {"nickname": "cells", "result_type": "Probabilities", **roi_values("yxc", (5, 6, 0), (20, 30, 2))}
    assert values["roi"] == "[(5, 6, 0), (20, 30, 2)]"
    assert format_known("{nickname}_{result_type}_{x_start:04d}-{x_stop}_{slice_index}", values) == \
        "cells_Probabilities_0006-30_{slice_index}"
    assert format_known("{nickname!r}", values) == "'cells'"
    assert format_known("a{b", values) == "a{b"
    with pytest.raises(ValueError):
        format_known("a{b", values, strict=True)
    assert placeholder_names("{dataset_dir}/{nickname}_{y_start}.h5") == ["dataset_dir", "nickname", "y_start"]
    assert placeholder_names("a{b") == []
    assert replace_extension("/d/out.tar.h5", "png") == "/d/out.tar.png" and replace_extension("out", "h5") == "out.h5"


def test_plain_zarr_keeps_a_non_default_axis_order(tmp_path):
    """A plain Zarr export in x, y, c order reads back as xyc, as HDF5 and N5 exports do."""
    a = volume((7, 6, 2))
    for output_format, path in (("hdf5", f"{tmp_path}/xy.h5/exported_data"), ("n5", f"{tmp_path}/xy.n5/exported_data")):
        write_in_blocks(output_format, path.rsplit("/", 1)[0], a, "xyc", {"axistags": axistags_json("xyc")})
        assert read_all(path)[0].axes == "xyc"
    write_in_blocks("zarr", tmp_path / "xy.zarr", a, "xyc", {"axistags": axistags_json("xyc")})
    source, data = read_all(tmp_path / "xy.zarr")
    np.testing.assert_array_equal(data, a)
    assert source.axes == "xyc"
