"""What object images record beyond their values, as the live ilastik 1.4.2 writes them (checked
side by side on ObjectClassification2d_wPred.ilp, 2026-12-05): the second input's pixel sizes and
units where it has them, else the raw data's; the project's stored export settings. Generated data."""
from __future__ import annotations

import json

import h5py
import numpy as np

from cli_helpers import run_cli
from tiny_objects import prediction_maps, tiny_image, write_tiny_project


def _write(path, data, axes, sizes=None, units=None):
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", data=data)
        flags = {"c": 1, "x": 2, "y": 2}
        d.attrs["axistags"] = json.dumps({"axes": [{"key": a, "typeFlags": flags[a], "resolution": (sizes or {}).get(a, 0),
                                                    "description": ""} for a in axes]})
        if units:
            d.attrs["axis_units"] = json.dumps(units)
    return f"{path}/data"


def _export(tmp_path, capsys, raw, maps, name, *extra):
    project = tmp_path / "tiny.ilp"
    if not project.exists():
        write_tiny_project(project)
    code, err = run_cli(["--headless", f"--project={project}", f"--raw_data={raw}", f"--prediction_maps={maps}",
                         "--export_source=Object Identities", f"--output_filename_format={tmp_path}/{name}.h5", *extra],
                        tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / f"{name}.h5", "r") as f:
        d = f["exported_data"]
        assert d[()].max() > 0
        sizes = [a["resolution"] for a in json.loads(d.attrs["axistags"])["axes"]]
        return d.shape, sizes, json.loads(d.attrs["axis_units"]) if "axis_units" in d.attrs else None


def test_object_images_record_the_second_inputs_pixel_sizes_else_the_raw_datas(tmp_path, capsys):
    raw, foreground, _, _ = tiny_image()
    maps = prediction_maps(foreground)
    plain_raw = _write(tmp_path / "raw.h5", raw, "yx")
    plain_maps = _write(tmp_path / "maps.h5", maps, "yxc")
    sized_raw = _write(tmp_path / "raw_um.h5", raw, "yx", {"y": 0.25, "x": 0.5}, {"y": "µm", "x": "µm"})
    sized_maps = _write(tmp_path / "maps_nm.h5", maps, "yxc", {"y": 2.0, "x": 3.0}, {"y": "nm", "x": "nm", "c": ""})
    assert _export(tmp_path, capsys, plain_raw, plain_maps, "none")[1:] == ([0, 0, 0], None)
    assert _export(tmp_path, capsys, sized_raw, plain_maps, "raw")[1:] == ([0.25, 0.5, 0], {"y": "µm", "x": "µm"})
    assert _export(tmp_path, capsys, plain_raw, sized_maps, "maps")[1:] == ([2, 3, 0], {"y": "nm", "x": "nm", "c": ""})
    assert _export(tmp_path, capsys, sized_raw, sized_maps, "both")[1:] == ([2, 3, 0], {"y": "nm", "x": "nm", "c": ""})


def test_object_images_follow_the_projects_stored_cutout_and_axis_order(tmp_path, capsys):
    """ilastik stores an object export's settings as it stores Pixel Classification's
    (RegionStart/RegionStop, OutputAxisOrder in "Object Information Export"); the command line wins."""
    raw, foreground, _, _ = tiny_image()
    plain_raw = _write(tmp_path / "raw.h5", raw, "yx")
    plain_maps = _write(tmp_path / "maps.h5", prediction_maps(foreground), "yxc")
    project = tmp_path / "tiny.ilp"
    write_tiny_project(project)
    with h5py.File(project, "a") as f:
        g = f.require_group("Object Information Export")
        g["RegionStart"] = np.array([4, 8, -1])
        g["RegionStop"] = np.array([40, 50, -1])
        g["OutputAxisOrder"] = b"xyc"
    assert _export(tmp_path, capsys, plain_raw, plain_maps, "stored")[0] == (42, 36, 1)
    assert _export(tmp_path, capsys, plain_raw, plain_maps, "given", "--output_axis_order=yxc")[0] == (36, 42, 1)
