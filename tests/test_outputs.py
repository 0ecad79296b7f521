"""Every output format, placeholders, sequences, and bad export options."""
from __future__ import annotations

import io
import os
import struct

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from cli_helpers import run_cli as _run
from gpuheadless.cli import main
from gpuheadless.io import encoders, formats

PROJECT_2D3C = "projects/PixelClassification2d3c.ilp"
INPUT_2D3C = "inputs/2d3c.h5/data"



def _export(data, tmp_path, capsys, *options, project=PROJECT_2D3C, inputs=(INPUT_2D3C,), name="out/result.h5"):
    code, err = _run(["--headless", f"--project={data / project}", f"--output_filename_format={tmp_path / name}",
                      *options, *(str(data / i) for i in inputs)], tmp_path, capsys)
    assert code == 0, err
    return tmp_path / os.path.dirname(name)


@pytest.fixture(scope="module")
def segmentation_2d3c(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / "seg.h5"
    code = main(["--headless", f"--project={data / PROJECT_2D3C}", "--export_source=Simple Segmentation",
                 "--output_format=hdf5", f"--output_filename_format={path}", str(data / INPUT_2D3C)])
    assert code == 0
    with h5py.File(path, "r") as f:
        return f["exported_data"][()][..., 0]  # (73, 187) uint8 labels 1/2


# --- decoders written from the format descriptions (no maintained Python reader exists) ---------

def read_radiance(blob: bytes) -> np.ndarray:
    header, _, body = blob.partition(b"\n\n")
    assert header.startswith(b"#?RADIANCE") and b"FORMAT=32-bit_rle_rgbe" in header
    size_line, _, body = body.partition(b"\n")
    _, height, _, width = size_line.split()
    height, width = int(height), int(width)
    out = np.zeros((height, width, 4), np.uint8)
    pos = 0
    for y in range(height):
        if body[pos:pos + 2] == b"\x02\x02" and 8 <= width < 0x8000:
            pos += 4
            for component in range(4):
                x = 0
                while x < width:
                    count = body[pos]
                    pos += 1
                    if count > 128:  # a run of one value
                        out[y, x:x + count - 128, component] = body[pos]
                        pos += 1
                        x += count - 128
                    else:
                        out[y, x:x + count, component] = np.frombuffer(body[pos:pos + count], np.uint8)
                        pos += count
                        x += count
        else:
            out[y] = np.frombuffer(body[pos:pos + 4 * width], np.uint8).reshape(width, 4)
            pos += 4 * width
    exponent = out[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0)
    return (out[..., :3] + 0.5) * scale[..., None] * (exponent[..., None] > 0)


def read_viff(blob: bytes) -> np.ndarray:
    assert blob[0] == 0xAB and blob[1] == 1  # Khoros VIFF 1.0 identifier and file type
    order = ">" if blob[4] == 0x2 else "<"
    width, height = struct.unpack(order + "II", blob[520:528])
    bands, storage = struct.unpack(order + "II", blob[560:568])
    dtype = {1: "u1", 2: "i2", 4: "i4", 5: "f4", 9: "f8"}[storage]
    data = np.frombuffer(blob[1024:], dtype=order + dtype, count=bands * height * width)
    return np.moveaxis(data.reshape(bands, height, width), 0, -1)


# --- every 2D format -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["bmp", "gif", "png", "pgm", "pnm", "ras", "tif", "tiff", "xv", "jpeg", "jpg", "pbm"])
def test_segmentation_in_every_single_channel_format(fmt, data, tmp_path, capsys, segmentation_2d3c):
    out = _export(data, tmp_path, capsys, "--export_source=Simple Segmentation", f"--output_format={fmt}")
    (name,) = os.listdir(out)
    assert name == f"result.{formats.extension(fmt)}"
    blob = (out / name).read_bytes()
    if fmt == "xv":
        pixels = read_viff(blob)[..., 0]
    elif fmt in ("tif", "tiff"):
        pixels = tifffile.imread(out / name)
    else:
        with Image.open(io.BytesIO(blob)) as image:
            pixels = np.asarray(image.convert("L"))
    if fmt == "pbm":  # one bit: non-zero is set, which Pillow shows as black (0)
        np.testing.assert_array_equal(pixels == 0, segmentation_2d3c != 0)
    elif fmt in ("jpeg", "jpg"):  # lossy
        assert np.abs(pixels.astype(int) - segmentation_2d3c).mean() < 0.5
    else:
        np.testing.assert_array_equal(pixels, segmentation_2d3c)


def test_float_probabilities_are_rescaled_for_8_bit_codecs_and_kept_by_others(data, tmp_path, capsys):
    h5 = _export(data, tmp_path, capsys, "--output_format=hdf5", name="h5/p.h5")
    with h5py.File(h5 / "p.h5", "r") as f:
        probabilities = f["exported_data"][()]
    png = _export(data, tmp_path, capsys, "--output_format=png", name="png/p.png")
    with Image.open(png / "p.png") as image:
        assert image.mode == "LA"  # two channels: gray + alpha
        stored = np.asarray(image)
    lo, hi = probabilities.min(), probabilities.max()
    np.testing.assert_array_equal(stored, np.rint((probabilities.astype(np.float64) - lo) * 255 / (hi - lo)).astype(np.uint8))
    xv = _export(data, tmp_path, capsys, "--output_format=xv", name="xv/p.xv")
    np.testing.assert_array_equal(read_viff((xv / "p.xv").read_bytes()), probabilities)


def test_radiance_holds_three_float_channels(data, tmp_path, capsys):
    h5 = _export(data, tmp_path, capsys, "--export_source=Features", "--output_format=hdf5",
                 "--cutout_subregion=[(None,None,0),(None,None,3)]", name="h5/f.h5")
    with h5py.File(h5 / "f.h5", "r") as f:
        features = f["exported_data"][()]
    hdr = _export(data, tmp_path, capsys, "--export_source=Features", "--output_format=hdr",
                  "--cutout_subregion=[(None,None,0),(None,None,3)]", name="hdr/f.hdr")
    decoded = read_radiance((hdr / "f.hdr").read_bytes())
    brightest = features.max(axis=-1, keepdims=True)
    assert np.all(np.abs(decoded - features) <= brightest / 128 + 1e-6)  # 8-bit mantissa per channel


def test_encoders_handle_16_bit_and_odd_widths(tmp_path):
    image = (np.arange(5 * 7 * 3) * 997 % 65536).astype(np.uint16).reshape(5, 7, 3)
    for codec in ("png", "ppm"):
        buffer = io.BytesIO()
        encoders.encode_image(buffer, image, codec)
        buffer.seek(0)
        if codec == "png":  # Pillow reads 16-bit RGB PNGs as 8-bit; check the raw header and one row instead
            blob = buffer.getvalue()
            assert blob[24:26] == bytes((16, 2))
        else:
            with Image.open(buffer) as decoded:
                assert decoded.size == (7, 5)
    gray = (np.arange(5 * 7) * 13).astype(np.uint8).reshape(5, 7, 1)
    for codec in ("ras", "pbm"):
        buffer = io.BytesIO()
        encoders.encode_image(buffer, np.repeat(gray, 3, axis=2) if codec == "ras" else gray, codec)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            back = np.asarray(decoded.convert("RGB" if codec == "ras" else "L"))
        if codec == "ras":
            np.testing.assert_array_equal(back, np.repeat(gray, 3, axis=2))
        else:
            np.testing.assert_array_equal(back == 0, gray[..., 0] != 0)


# --- sequences ---------------------------------------------------------------------------------------

def test_png_sequence_numbers_slices_from_the_cutout_start(data, tmp_path, capsys):
    out = _export(data, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=png sequence",
                  "--cutout_subregion=[(10,None,None,None),(30,None,None,None)]",
                  project="projects/PixelClassification3d.ilp", inputs=("inputs/3d.h5/data",), name="seq/z{slice_index}.png")
    names = sorted(os.listdir(out))
    assert names == [f"z{i}.png" for i in range(10, 30)]  # ceil(log10(30 + 1)) = 2 digits
    whole = _export(data, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=hdf5",
                    project="projects/PixelClassification3d.ilp", inputs=("inputs/3d.h5/data",), name="whole/s.h5")
    with h5py.File(whole / "s.h5", "r") as f:
        reference = f["exported_data"][10:30, ..., 0]
    for i, name in enumerate(names):
        with Image.open(out / name) as image:
            np.testing.assert_array_equal(np.asarray(image), reference[i])


def test_multipage_tiff_sequence_writes_one_volume_per_time_step(data, tmp_path, capsys):
    out = _export(data, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=multipage tiff sequence",
                  project="projects/PixelClassification5t3d2c.ilp", inputs=("inputs/5t3d2c.h5/data",),
                  name="mts/t_{slice_index:03d}.tiff")
    assert sorted(os.listdir(out)) == [f"t_{i:03d}.tiff" for i in range(5)]
    assert tifffile.imread(out / "t_000.tiff").shape == (33, 77, 45)


def test_placeholders_give_ilastiks_file_name(data, tmp_path, capsys):
    reference = "PixelClassification2d__2d-data__Simple_Segmentation__via_placeholders.h5"
    out = _export(data, tmp_path, capsys, "--export_source=Simple Segmentation", "--output_format=compressed hdf5",
                  project="projects/PixelClassification2d.ilp", inputs=("inputs/2d.h5/data",),
                  name="ph/PixelClassification2d__{nickname}__{result_type}__via_placeholders.h5")
    assert os.listdir(out) == [reference.replace("Simple_Segmentation", "Simple Segmentation")]
    with h5py.File(out / os.listdir(out)[0], "r") as ours, h5py.File(data / "reference" / reference, "r") as ref:
        np.testing.assert_array_equal(ours["exported_data"][()], ref["exported_data"][()])


def test_roi_placeholders_and_internal_path(data, tmp_path, capsys):
    out = _export(data, tmp_path, capsys, "--cutout_subregion=[(10,20,0),(30,None,1)]",
                  "--output_internal_path=grp/{nickname}", "--output_format=hdf5", name="roi/{x_start}-{x_stop}_{roi}.h5")
    (name,) = os.listdir(out)
    assert name == "20-187_[(10, 20, 0), (30, 187, 1)].h5"
    with h5py.File(out / name, "r") as f:
        assert f["grp/2d3c-data"].shape == (20, 167, 1)


# --- bad options: exit 2, nothing computed, nothing written -------------------------------------

@pytest.mark.parametrize("options, message", [
    (["--cutout_subregion=[(0,0),(10)]"], "--cutout_subregion"),
    (["--cutout_subregion=[(0,0,0,0),(10,10,10,1)]"], "entries per corner"),
    (["--output_format=webp"], "invalid choice"),
    (["--output_format=dvid"], "DVID server"),
    (["--output_filename_format={tmp}/x_{foo}.h5"], "unknown placeholder {foo}"),
    (["--output_filename_format={tmp}/x_{slice_index}.h5"], "only for sequence formats"),
    (["--output_format=png sequence", "--output_filename_format={tmp}/x.png"], "must contain {slice_index}"),
    (["--pipeline_result_drange=(0,1,2)", "--export_drange=(0,255)"], "--pipeline_result_drange"),
    (["--output_axis_order=xc"], "drop the following non-singleton axes: y"),
    (["--output_format=jpg"], "stores 1 or 3 channel(s), the result has 2"),
])
def test_bad_export_options_stop_before_computing(options, message, data, tmp_path, capsys):
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    if not any(o.startswith("--output_filename_format") for o in options):
        options.append(f"--output_filename_format={tmp_path}/x.h5")
    code, err = _run(["--headless", f"--project={data / PROJECT_2D3C}", *options, str(data / INPUT_2D3C)], tmp_path, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_a_volume_cannot_go_to_a_2d_format(data, tmp_path, capsys):
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification3d.ilp'}", "--output_format=png",
                      f"--output_filename_format={tmp_path}/x.png", str(data / "inputs/3d.h5/data")], tmp_path, capsys)
    assert code == 2 and "use a sequence format" in err and os.listdir(tmp_path) == []


# --- N5 and ilastik's OME-Zarr ---------------------------------------------------------------------

def _n5_block(path, dtype, gz):
    """One N5 block decoded from the format description: big-endian header and values."""
    import gzip

    raw = open(path, "rb").read()
    mode, rank = struct.unpack(">HH", raw[:4])
    extent = struct.unpack(f">{rank}I", raw[4:4 + 4 * rank])
    body = gzip.decompress(raw[4 + 4 * rank:]) if gz else raw[4 + 4 * rank:]
    assert mode == 0
    return np.frombuffer(body, dtype=np.dtype(dtype).newbyteorder(">")).reshape(extent[::-1])


@pytest.mark.parametrize("fmt", ["n5", "compressed n5"])
def test_n5_has_ilastiks_attributes_blocks_and_values(fmt, data, tmp_path, capsys):
    import json

    out = _export(data, tmp_path, capsys, "--output_format=hdf5", name="out/ref.h5")
    _export(data, tmp_path, capsys, f"--output_format={fmt}", name="out/result.n5")
    with h5py.File(out / "ref.h5", "r") as f:
        expected = f["exported_data"][()]  # (73, 187, 2) float32 yxc
    assert sorted(os.listdir(out)) == ["ref.h5", "result.n5"]  # nothing left under a temporary name
    assert json.load(open(out / "result.n5/attributes.json")) == {"n5": "2.0.0"}
    attrs = json.load(open(out / "result.n5/exported_data/attributes.json"))
    # ilastik 1.4.2 (z5py): N5 order (reversed), 512 kB blocks with c = 1, raw or gzip level 1
    assert attrs["axes"] == "cxy" and attrs["dimensions"] == [2, 187, 73] and attrs["blockSize"] == [1, 187, 73]
    assert attrs["dataType"] == "float32" and attrs["drange"] == [0.0, 1.0] and attrs["display_mode"] == "grayscale"
    assert attrs["compression"] == ({"level": 1, "type": "gzip"} if fmt == "compressed n5" else {"type": "raw"})
    assert [a["key"] for a in json.loads(attrs["axistags"])["axes"]] == list("yxc")
    for c in range(2):  # block path: N5 order, c first
        block = _n5_block(out / f"result.n5/exported_data/{c}/0/0", "float32", fmt == "compressed n5")
        np.testing.assert_array_equal(block, expected[..., c:c + 1])


def test_n5_blocks_of_any_alignment_and_other_datasets_kept(tmp_path):
    from gpuheadless.io.n5 import N5Writer, open_dataset

    image = np.arange(7 * 9 * 2, dtype=np.uint16).reshape(7, 9, 2)
    path = str(tmp_path / "c.n5")
    for name in ("a", "grp/b"):
        writer = N5Writer(path, name, image.shape, image.dtype, "yxc", (3, 4, 1), {}, compress=name == "a")
        for rows in (slice(0, 2), slice(2, 5), slice(5, 7)):  # blocks that cut through N5 blocks
            for cols in (slice(0, 5), slice(5, 9)):
                writer.write((rows, cols, slice(0, 2)), image[rows, cols])
        writer.commit()
    for name in ("a", "grp/b"):
        ds = open_dataset(path, name)
        assert ds.shape == image.shape and ds.chunks == (3, 4, 1)
        np.testing.assert_array_equal(ds[(slice(None),) * 3], image)
        np.testing.assert_array_equal(ds[(slice(1, 6), slice(3, 8), slice(1, 2))], image[1:6, 3:8, 1:2])
    assert sorted(os.listdir(tmp_path / "c.n5")) == ["a", "attributes.json", "grp"]
    assert _n5_block(tmp_path / "c.n5/grp/b/1/2/2", "uint16", False).shape == (1, 1, 1)  # edge block, truncated


def test_single_scale_ome_zarr_is_ilastiks_layout(data, tmp_path, capsys):
    import json

    import zarr

    out = _export(data, tmp_path, capsys, "--output_format=hdf5", name="out/ref.h5")
    _export(data, tmp_path, capsys, "--output_format=single-scale OME-Zarr", name="out/result.zarr")
    with h5py.File(out / "ref.h5", "r") as f:
        expected = f["exported_data"][()]
    root = out / "result.zarr"
    assert sorted(os.listdir(root)) == [".zattrs", ".zgroup", "s0"]
    meta = json.load(open(root / ".zattrs"))
    assert meta["_creator"]["name"] == "gpuheadless"
    assert meta["multiscales"] == [{
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, {"name": "z", "type": "space"},
                 {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 5}]}],
        "version": "0.4"}]
    zarray = json.load(open(root / "s0/.zarray"))
    assert zarray["shape"] == [1, 2, 1, 73, 187] and zarray["chunks"] == [1, 1, 1, 73, 187]
    assert zarray["dimension_separator"] == "/" and zarray["dtype"] == "<f4"
    assert zarray["compressor"] == {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
    assert os.path.isfile(root / "s0/0/1/0/0/0")
    level = json.load(open(root / "s0/.zattrs"))
    assert level["drange"] == [0.0, 1.0] and level["display_mode"] == "grayscale"
    assert [a["key"] for a in json.loads(level["axistags"])["axes"]] == list("tczyx")
    np.testing.assert_array_equal(zarr.open_array(str(root / "s0"), mode="r")[0, :, 0], np.moveaxis(expected, -1, 0))
    code, err = _run(["--headless", f"--project={data / PROJECT_2D3C}", "--output_format=single-scale OME-Zarr",
                      f"--output_filename_format={root}", str(data / INPUT_2D3C)], tmp_path, capsys)
    assert code == 1 and "exists" in err and "Traceback" not in err  # ilastik refuses to overwrite too


def test_multi_scale_levels_chunks_and_downscaling(tmp_path):
    import zarr
    from scipy import ndimage

    from gpuheadless.io.ome_zarr_ilastik import IlastikOmeZarrWriter, chunk_shape, level_shapes
    from gpuheadless.io.ilastik_layout import axistags_json

    assert chunk_shape((1, 2, 1, 1024, 1344), np.float32) == (1, 1, 1, 506, 505)
    assert level_shapes((1, 2, 1, 1024, 1344), np.float32) == [(1, 2, 1, 1024, 1344), (1, 2, 1, 512, 672), (1, 2, 1, 256, 336)]
    assert level_shapes((1, 1, 1, 1024, 1344), np.uint8) == [(1, 1, 1, 1024, 1344), (1, 1, 1, 512, 672)]
    assert level_shapes((1, 1, 1, 40, 40), np.uint8) == [(1, 1, 1, 40, 40)]
    rng = np.random.default_rng(3)
    image = rng.random((800, 800)).astype(np.float64)
    attrs = {"axistags": axistags_json("yx"), "display_mode": "grayscale"}
    for name, labels in (("i.zarr", False), ("l.zarr", True)):
        writer = IlastikOmeZarrWriter(str(tmp_path / name), image.shape, image.dtype, "yx", attrs, multiscale=True,
                                      labels=labels, offset={"y": 10, "x": 0})
        writer.write((slice(0, 500), slice(None)), image[:500])
        writer.write((slice(500, 800), slice(None)), image[500:])
        writer.commit()
        group = zarr.open_group(str(tmp_path / name), mode="r")
        assert sorted(group.array_keys()) == ["s0", "s1", "s2"]
        assert group["s1"].chunks == (1, 1, 1, 358, 357) and group["s1"].shape == (1, 1, 1, 400, 400)  # 2x2 chunks
        s1 = group["s1"][0, 0, 0]
        if labels:  # nearest neighbour at 2i + 0.5, no smoothing
            np.testing.assert_array_equal(s1, image[1::2, 1::2])
        else:  # Gaussian sigma 0.5 (mirror), then linear at 2i + 0.5: the mean of each 2x2 cell
            smooth = ndimage.gaussian_filter(image, 0.5, mode="mirror")
            expected = (smooth[0::2, 0::2] + smooth[1::2, 0::2] + smooth[0::2, 1::2] + smooth[1::2, 1::2]) / 4
            np.testing.assert_allclose(s1, expected, rtol=1e-12)
        meta = group.attrs["multiscales"][0]
        assert meta["metadata"]["kwargs"]["order"] == (0 if labels else 1)
        assert [d["coordinateTransformations"][0]["scale"][3:] for d in meta["datasets"]] == [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]]
        assert meta["coordinateTransformations"] == [{"type": "scale", "scale": [1.0] * 5},
                                                     {"type": "translation", "translation": [0.0, 0.0, 0.0, 10.0, 0.0]}]
    assert sorted(os.listdir(tmp_path)) == ["i.zarr", "l.zarr"]


def test_blockwise_hdf5_is_refused_as_ilastik_fails_on_it(data, tmp_path, capsys):
    code, err = _run(["--headless", f"--project={data / PROJECT_2D3C}", "--output_format=blockwise hdf5",
                      f"--output_filename_format={tmp_path}/out/r.json", str(data / INPUT_2D3C)], tmp_path, capsys)
    assert code == 2 and "NotImplementedError" in err and not (tmp_path / "out").exists()


# --- multipage TIFF: ilastik's OME-TIFF layout ------------------------------------------------

def _ome_pixels(tif: tifffile.TiffFile) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    return dict(ET.fromstring(tif.pages[0].description).find("{*}Image/{*}Pixels").attrib)


@pytest.mark.parametrize("axes, shape, series_axes", [
    ("yx", (6, 7), "YX"), ("yxc", (6, 7, 2), "CYX"), ("zyx", (3, 6, 7), "ZYX"), ("zyxc", (3, 6, 7, 2), "ZCYX"),
    ("tzyxc", (2, 3, 6, 7, 2), "TZCYX"), ("tyxc", (4, 6, 7, 1), "TYX"), ("cyx", (2, 6, 7), "CYX"),
])
def test_multipage_tiff_is_ilastiks_ome_tiff(axes, shape, series_axes):
    """Pages in t, z, c order; OME-XML with DimensionOrder XYCZT and the 5 sizes (as ilastik 1.4.2
    writes it; the live suite compares with ilastik's own files), read back with its axes."""
    from gpuheadless.io.ome_tiff import write_multipage_tiff

    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    stream = io.BytesIO()
    write_multipage_tiff(stream, array, axes)
    stream.seek(0)
    with tifffile.TiffFile(stream) as tif:
        size = dict(zip(axes, shape))
        expected = [size.get(a, 1) for a in "tzcyx"]
        assert tif.is_ome and not tif.is_imagej and tif.byteorder == "<"
        assert len(tif.pages) == np.prod(expected[:3])
        assert all(p.compression == 1 and p.photometric == 1 and p.rowsperstrip == expected[3] for p in tif.pages)
        assert tif.series[0].axes == series_axes
        ordered = np.transpose(array.reshape([size.get(a, 1) if a in axes else 1 for a in axes]),
                               [axes.index(a) for a in "tzcyx" if a in axes]).reshape(expected)
        for index, page in enumerate(tif.pages):
            np.testing.assert_array_equal(page.asarray(), ordered.reshape(-1, *expected[3:])[index])
        pixels = _ome_pixels(tif)
        assert pixels["DimensionOrder"] == "XYCZT" and pixels["Type"] == "float"
        assert [int(pixels[f"Size{a}"]) for a in "TZCYX"] == expected
        assert {k: v for k, v in pixels.items() if k.startswith("Physical") or k.startswith("Time")} == {
            "PhysicalSizeXUnit": "pixel", "PhysicalSizeYUnit": "pixel", "PhysicalSizeZUnit": "pixel"}


def test_multipage_tiff_records_pixel_sizes_as_ilastik():
    from gpuheadless.io.ome_tiff import write_multipage_tiff

    stream = io.BytesIO()
    write_multipage_tiff(stream, np.zeros((2, 4, 5, 2), np.uint16), "zyxc", {"z": 2.0, "y": 0.5, "x": 0, "t": 0},
                         {"z": "micrometer", "y": "nm", "x": "furlong"})
    stream.seek(0)
    with tifffile.TiffFile(stream) as tif:
        pixels = _ome_pixels(tif)
        assert tif.series[0].axes == "ZCYX" and tif.pages[0].dtype == np.uint16
    assert {k: v for k, v in pixels.items() if k.startswith("Physical") or k.startswith("Time")} == {
        "PhysicalSizeZ": "2.0", "PhysicalSizeZUnit": "µm", "PhysicalSizeY": "0.5", "PhysicalSizeYUnit": "nm",
        "PhysicalSizeXUnit": "pixel"}


@pytest.mark.parametrize("unit, axis, symbol", [
    ("", "x", "pixel"), ("furlong", "y", "pixel"), ("micron", "x", "µm"), ("UM", "x", "µm"), ("μm", "z", "µm"),
    ("Nanometers", "x", "nm"), ("PM", "x", "pm"), ("Pm", "x", "Pm"), ("EM", "x", "Em"), ("Å", "x", "pixel"),
    ("angstrom", "x", "Å"), ("light years", "x", "ly"), ("", "t", ""), ("m", "t", "min"), ("ms", "t", "ms"),
    ("MS", "t", ""), ("Ms", "t", "Ms"), ("Seconds", "t", "s"), ("hrs", "t", "h"), ("us", "t", "µs"), ("furlong", "t", ""),
])
def test_ome_unit_symbols_follow_ilastiks_table(unit, axis, symbol):
    """Spot checks of ilastik's to_ome (all 1,270 spellings of its tables were compared once)."""
    from gpuheadless.io.ome_tiff import ome_unit

    assert ome_unit(unit, axis) == symbol


def test_multipage_tiff_reference_layout_equals_ilastiks_file(data, tmp_path, capsys):
    """MANIFEST case 17 (2 pages of 128x160 float32): ilastik's stored file, same tags, OME-XML and values."""
    import re

    reference = data / "reference/PixelClassification2d__2d__Probabilities__cutout_y300-428_x500-660.tiff"
    out = _export(data, tmp_path, capsys, "--export_source=Probabilities", "--output_format=multipage tiff",
                  "--cutout_subregion=[(300,500,0),(428,660,2)]", project="projects/PixelClassification2d.ilp",
                  inputs=("inputs/2d.h5/data",), name="mp/p.tiff")

    def layout(tif):
        tags = [[(t.name, t.value) for t in p.tags.values() if t.name not in ("StripOffsets", "Software", "ImageDescription")]
                for p in (tif.pages[i].aspage() for i in range(len(tif.pages)))]
        return tif.series[0].axes, tif.series[0].shape, tags, re.sub(r' UUID="[^"]*"\s*Creator="[^"]*"', "", tif.pages[0].description)

    with tifffile.TiffFile(out / "p.tiff") as ours, tifffile.TiffFile(reference) as theirs:
        assert layout(ours) == layout(theirs)
        assert layout(ours)[:2] == ("CYX", (2, 128, 160))
        a, b = ours.asarray(), theirs.asarray()
    # ilastik computed this cutout with its own halo: at one pixel (y 414, x 656) one tree voted
    # otherwise than in ilastik's full-image output (0.24 here, 0.25 there and in ours)
    assert np.count_nonzero(a != b) == 2 and np.abs(a - b).max() <= 0.0100001
    with h5py.File(data / "reference/PixelClassification2d__2d__Probabilities.h5", "r") as f:
        np.testing.assert_array_equal(a, np.moveaxis(f["exported_data"][300:428, 500:660], -1, 0))


@pytest.mark.parametrize("fmt, ext, shown", [("n5", "n5", "/exported_data"), ("compressed hdf5", "h5", "/exported_data"),
                                             ("numpy", "npy", "")])
def test_exported_log_line_names_the_dataset_as_ilastik(fmt, ext, shown, data, tmp_path, capsys):
    """ilastik logs "Exporting to <file>/<internal path>" for HDF5 and N5 alike."""
    code, err = _run(["--headless", f"--project={data / PROJECT_2D3C}", f"--output_format={fmt}",
                      f"--output_filename_format={tmp_path}/log/r.{ext}", str(data / INPUT_2D3C)], tmp_path, capsys)
    lines = [line for line in err.splitlines() if "Exported" in line]
    assert code == 0 and lines and lines[-1].endswith(f"{tmp_path}/log/r.{ext}{shown}")


# --- OME-Zarr exports of OME-Zarr inputs: the input's levels -------------------------------------

INPUT_LEVELS = {"s0": {"t": 1, "c": 1, "z": 1, "y": 1024, "x": 1344}, "s1": {"t": 1, "c": 1, "z": 1, "y": 512, "x": 672}}


@pytest.mark.parametrize("shape, key, expected", [
    ((1, 2, 1, 1024, 1344), "s0", [("s0", (1, 2, 1, 1024, 1344)), ("s1", (1, 2, 1, 512, 672))]),
    ((1, 2, 1, 512, 672), "s1", [("s1", (1, 2, 1, 512, 672))]),  # never upscaled to s0
    ((1, 2, 1, 101, 200), "s0", [("s0", (1, 2, 1, 101, 200)), ("s1", (1, 2, 1, 50, 100))]),  # a cutout: int(n / 2)
    ((1, 2, 1, 3, 200), "s0", [("s0", (1, 2, 1, 3, 200))]),  # s1 would be 1 x 100: not 2D, left out
])
def test_multi_scale_export_of_an_ome_zarr_input_follows_its_levels(shape, key, expected):
    from gpuheadless.io.ome_zarr_ilastik import input_scaling_axes, matched_levels

    assert matched_levels(shape, INPUT_LEVELS, key) == expected
    assert input_scaling_axes(INPUT_LEVELS) == {"y", "x"} and input_scaling_axes({"s0": INPUT_LEVELS["s0"]}) == set()


def test_single_scale_export_of_an_input_level_is_named_after_it(tmp_path):
    """ilastik names the level after the input's (``s1``) and, the input's levels differing in y
    and x, records their pixel size on the level rather than image-wide; t keeps its own."""
    pytest.importorskip("zarr")
    import zarr

    from gpuheadless.io.ome_zarr_ilastik import IlastikOmeZarrWriter
    from gpuheadless.io.ilastik_layout import axistags_json

    image = np.zeros((3, 5, 6), np.float32)
    attrs = {"axistags": axistags_json("tyx", {"t": 4.0, "y": 2.0, "x": 0.5})}
    writer = IlastikOmeZarrWriter(str(tmp_path / "o.zarr"), image.shape, image.dtype, "tyx", attrs, multiscale=False,
                                  scale_key="s1", input_scales=INPUT_LEVELS, translation={"y": 1.5})
    writer.write((slice(None),) * 3, image)
    writer.commit()
    meta = zarr.open_group(str(tmp_path / "o.zarr"), mode="r").attrs["multiscales"][0]
    assert meta["datasets"] == [{"path": "s1", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 1.0, 2.0, 0.5]}]}]
    assert meta["coordinateTransformations"] == [{"type": "scale", "scale": [4.0, 1.0, 1.0, 1.0, 1.0]},
                                                 {"type": "translation", "translation": [0.0, 0.0, 0.0, 1.5, 0.0]}]


def test_n5_output_stays_inside_its_container_and_leaves_nothing_on_failure(tmp_path):
    from gpuheadless.errors import UserError
    from gpuheadless.io.n5 import N5Writer

    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("mine")
    image = np.zeros((4, 5, 1), np.uint8)
    for internal in ("../victim", "a/../../victim", "a//b", "."):
        with pytest.raises(UserError, match="inside the container"):
            N5Writer(str(tmp_path / "c.n5"), internal, image.shape, image.dtype, "yxc", (2, 2, 1), {}, compress=False)
    (tmp_path / "plain").mkdir()  # a folder that is no N5 container is not written into
    with pytest.raises(UserError, match="not an N5 container"):
        N5Writer(str(tmp_path / "plain"), "data", image.shape, image.dtype, "yxc", (2, 2, 1), {}, compress=False)
    writer = N5Writer(str(tmp_path / "c.n5"), "data", image.shape, image.dtype, "yxc", (2, 2, 1), {}, compress=True)
    writer.write((slice(0, 4), slice(0, 5), slice(0, 1)), image)
    writer.commit()
    writer = N5Writer(str(tmp_path / "c.n5"), "grp/new", image.shape, image.dtype, "yxc", (2, 2, 1), {}, compress=True)
    writer.abort()  # a failed run into an existing container leaves no group and no partial folder behind
    assert sorted(os.listdir(tmp_path)) == ["c.n5", "plain", "victim"]
    assert sorted(os.listdir(tmp_path / "c.n5")) == ["attributes.json", "data"]
    assert (tmp_path / "victim" / "keep.txt").read_text() == "mine"
