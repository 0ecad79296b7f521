"""OME-Zarr outputs are valid NGFF 0.4, checked by an independent reader (ome-zarr-models, issue 20).

gpuheadless's own ``ome-zarr`` stores its axes ordered by type (time, channel, then space: ``t, c,
z, y, x``) whatever the export's axis order, with the same values as the HDF5 export; ilastik's
``single-scale``/``multi-scale OME-Zarr`` keep ilastik 1.4.2's layout (always ``t, c, z, y, x``),
which is valid NGFF too. Single and multi-scale, 2D, 3D and time series.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

zarr = pytest.importorskip("zarr", reason="the cluster extra (zarr) is not installed")
v04 = pytest.importorskip("ome_zarr_models.v04", reason="ome-zarr-models (test extra) is not installed")

from cli_helpers import run_cli  # noqa: E402

# project, input, cutout, the axes gpuheadless's ome-zarr stores
CASES = {
    "2d": ("PixelClassification2d.ilp", "2d.h5", "[(300,500,0),(428,660,2)]", "cyx"),
    "2d-large": ("PixelClassification2d.ilp", "2d.h5", "[(0,0,0),(600,700,2)]", "cyx"),
    "3d": ("PixelClassification3d.ilp", "3d.h5", None, "czyx"),
    "time-2d": ("PixelClassification5t2d1c.ilp", "5t2d1c.h5", None, "tcyx"),
    "time-3d": ("PixelClassification5t3d2c.ilp", "5t3d2c.h5", "[(0,0,0,0,0),(2,20,40,45,2)]", "tczyx"),
}


def _export(data, tmp_path, capsys, case, output_format, name, *flags):
    project, image, cutout, _ = CASES[case]
    extra = [f"--cutout_subregion={cutout}"] if cutout else []
    code, err = run_cli(["--headless", f"--project={data / 'projects' / project}", f"--output_format={output_format}",
                         f"--output_filename_format={tmp_path / name}", *extra, *flags,
                         str(data / "inputs" / image)], tmp_path, capsys)
    assert code == 0, err
    return tmp_path / name


def _validate(path):
    """The image as ome-zarr-models reads it (raises on invalid NGFF 0.4 metadata or arrays)."""
    image = v04.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    axes = [(a.name, a.type) for a in image.attributes.multiscales[0].axes]
    order = {"time": 0, "channel": 1, "space": 2}
    assert [order[t] for _, t in axes] == sorted(order[t] for _, t in axes)  # by type: t, c, then space
    return image, "".join(name for name, _ in axes)


@pytest.mark.parametrize("case", ["2d", "3d", "time-2d", "time-3d"])
def test_gpuheadless_ome_zarr_is_valid_ngff_with_the_hdf5_exports_values(case, data, tmp_path, capsys):
    hdf5 = _export(data, tmp_path, capsys, case, "hdf5", "p.h5")
    with h5py.File(hdf5, "r") as f:
        values, tags = f["exported_data"][()], f["exported_data"].attrs["axistags"]
    import json

    hdf5_axes = "".join(a["key"] for a in json.loads(tags)["axes"])
    ome = _export(data, tmp_path, capsys, case, "ome-zarr", "p.zarr")
    image, axes = _validate(ome)
    assert axes == CASES[case][3]
    stored = zarr.open_array(str(ome / "0"), mode="r")
    np.testing.assert_array_equal(stored[...], np.transpose(values, [hdf5_axes.index(a) for a in axes]))
    assert "".join(a["key"] for a in json.loads(stored.attrs["axistags"])["axes"]) == axes  # vigra tags agree


def test_pyramid_and_output_axis_order(data, tmp_path, capsys):
    """--pyramid: every level valid and listed; --output_axis_order does not change the NGFF order."""
    ome = _export(data, tmp_path, capsys, "2d", "ome-zarr", "py.zarr", "--pyramid", "--output_axis_order=xyc",
                  "--cutout_subregion=[(0,0,0),(256,320,2)]")
    image, axes = _validate(ome)
    assert axes == "cyx"
    assert [d.path for d in image.attributes.multiscales[0].datasets] == ["0", "1", "2", "3"]  # down to 32 x 40
    group = zarr.open_group(str(ome), mode="r")
    assert group["0"].shape == (2, 256, 320) and group["2"].shape == (2, 64, 80)
    np.testing.assert_array_equal(group["2"][...], group["0"][:, ::4, ::4])


@pytest.mark.parametrize("case", ["2d-large", "3d", "time-3d"])
@pytest.mark.parametrize("output_format", ["single-scale OME-Zarr", "multi-scale OME-Zarr"])
def test_ilastiks_ome_zarr_formats_are_valid_ngff_in_ilastiks_layout(case, output_format, data, tmp_path, capsys):
    ome = _export(data, tmp_path, capsys, case, output_format, "i.zarr")
    image, axes = _validate(ome)
    assert axes == "tczyx"  # ilastik 1.4.2 writes all five axes, whatever the export's
    levels = [d.path for d in image.attributes.multiscales[0].datasets]
    # ilastik's pyramid stops at the first level that fits one chunk (1 MB): only the 2D image needs two
    assert levels == (["s0", "s1"] if output_format.startswith("multi") and case == "2d-large" else ["s0"])
