"""Messages and names users see: the device line, placeholder lists, ilastik's tiff extension rule."""
from __future__ import annotations

import logging
import os
import re

import pytest

from cli_helpers import run_cli
from gpuheadless import backend
from gpuheadless.io import formats
from gpuheadless.io.naming import describe_placeholders, replace_extension

_DEVICE_LINE = re.compile(r"^Using the (CPU|GPU)\b", re.MULTILINE)


def test_the_device_line_is_logged_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_announced", set())
    monkeypatch.setattr(backend, "probe_gpu", lambda: (None, "no CUDA device"))
    with caplog.at_level(logging.INFO, logger="gpuheadless.backend"):
        for _ in range(3):
            assert backend.select_backend("auto").name == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["Using the CPU: no CUDA device"]


def test_pixel_and_object_run_says_which_device_once(data, tmp_path, capsys, monkeypatch):
    """Issue 15: the object stage and the pixel pipeline it runs per input both select the device."""
    monkeypatch.setattr(backend, "_announced", set())
    code, err = run_cli(["--headless", f"--project={data}/projects/pc-oc-133.ilp", "--export_source=Object Identities",
                         f"--raw_data={data}/inputs/5t2d1c.h5/data",
                         f"--output_filename_format={tmp_path}/{{nickname}}_{{result_type}}.h5"], tmp_path, capsys)
    assert code == 0, err
    assert len(_DEVICE_LINE.findall(err)) == 1, err


def test_placeholder_list_names_every_placeholder():
    from gpuheadless.pipeline.export_plan import _LANE_KEYS, _ROI_KEYS

    text = describe_placeholders(sequence=True)
    listed = set(re.findall(r"\{(\w+)\}", text))
    for group, ends in re.findall(r"\{([a-z|]+)\}_(start|stop)", text):
        listed |= {f"{axis}_{ends}" for axis in group.split("|")}
    assert listed == _LANE_KEYS | _ROI_KEYS | {"slice_index"}
    assert "slice_index" not in describe_placeholders(sequence=False)


@pytest.mark.parametrize("output_format, name, written", [
    ("tiff", "x.tif", "x.tiff"),  # ilastik's OpExportSlot._get_export_path: splitext(name)[0] + ".tiff"
    ("tif", "x.tiff", "x.tif"),
    ("tif", "x.tif", "x.tif"),
    ("multipage tiff", "x.tif", "x.tiff"),
])
def test_tiff_extension_is_ilastiks(output_format, name, written, data, tmp_path, capsys):
    """The format's extension replaces the user's, as ilastik does, so outputs keep ilastik's names."""
    assert replace_extension(name, formats.extension(output_format)) == written
    code, err = run_cli(["--headless", f"--project={data}/projects/PixelClassification2d.ilp",
                         f"--output_format={output_format}", "--export_source=Simple Segmentation",
                         f"--output_filename_format={tmp_path}/out/{name}", f"{data}/inputs/2d.h5/data"],
                        tmp_path, capsys)
    assert code == 0, err
    assert os.listdir(tmp_path / "out") == [written]
