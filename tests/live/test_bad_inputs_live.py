"""Live: bad input given to ilastik and to gpuheadless.

Every row is run by both programs. Wherever ilastik fails (non-zero exit), gpuheadless must
fail too: a non-zero exit, one message line naming the file or option and the problem (said
once: only a batch of several inputs repeats it under its "N of M input(s) failed" summary), no
traceback, and no output file left behind.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from .ilastik_runner import Run, run_gpuheadless, run_ilastik

PIXEL = "--project=PixelClassification2d3c.ilp"
OUT = "--output_filename_format=out/{nickname}_{result_type}.h5"
IMAGE = "2d3c.h5/data"

# name: (arguments after --headless, a word the message must contain)
CASES: dict[str, tuple[list[str], str]] = {
    "missing project": (["--project=missing.ilp", OUT, IMAGE], "missing.ilp"),
    "missing project, no inputs": (["--project=missing.ilp"], "missing.ilp"),
    "garbage project": (["--project=garbage.ilp", OUT, IMAGE], "garbage.ilp"),
    "garbage project, no inputs": (["--project=garbage.ilp"], "garbage.ilp"),
    "empty project file, no inputs": (["--project=empty.ilp"], "empty.ilp"),
    "folder as project": (["--project=adir", OUT, IMAGE], "adir"),
    "object project without its second input": (["--project=ObjectClassification2d3c_wPred.ilp", OUT,
                                                  f"--raw_data={IMAGE}"], "--prediction_maps"),
    "missing input file": ([PIXEL, OUT, "missing.h5/data"], "missing.h5"),
    "missing hdf5 dataset": ([PIXEL, OUT, "2d3c.h5/nope"], "nope"),
    "folder as input": ([PIXEL, OUT, "adir"], "adir"),
    "unreadable png": ([PIXEL, OUT, "broken.png"], "broken.png"),
    "wrong channel count": ([PIXEL, OUT, "2d.h5/data"], "channel"),
    "3D volume for a 2D project": ([PIXEL, OUT, "3d.h5/data"], "3d.h5"),
    "missing prediction mask": ([PIXEL, OUT, "--prediction_mask", "missing.h5/data", "--raw_data", IMAGE], "missing.h5"),
    "bad export source": ([PIXEL, OUT, "--export_source=Nonsense", IMAGE], "Nonsense"),
    "bad output format": ([PIXEL, OUT, "--output_format=foo", IMAGE], "foo"),
    "unparsable cutout": ([PIXEL, OUT, "--cutout_subregion=garbage", IMAGE], "cutout_subregion"),
    "cutout of the wrong rank": ([PIXEL, OUT, "--cutout_subregion=[(0,0),(10,10)]", IMAGE], "cutout_subregion"),
    "bad export dtype": ([PIXEL, OUT, "--export_dtype=foo", IMAGE], "foo"),
    "bad output axis order": ([PIXEL, OUT, "--output_axis_order=qyx", IMAGE], "qyx"),
    "export drange without pipeline drange": ([PIXEL, OUT, "--export_drange=(0,255)", IMAGE], "pipeline_result_drange"),
    "bad input axes": ([PIXEL, OUT, "--input_axes=zq", IMAGE], "zq"),
    "output folder is a file": ([PIXEL, "--output_filename_format=afile/{nickname}.h5", IMAGE], "afile"),
    "84 float channels as png": ([PIXEL, OUT, "--output_format=png", "--export_source=Features", IMAGE], "png"),
}


@pytest.fixture(scope="module")
def folder(ilastik, data, tmp_path_factory) -> Path:
    """Projects, images and broken files side by side (projects find ``inputdata/`` beside them)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    for name in ("PixelClassification2d3c.ilp", "ObjectClassification2d3c_wPred.ilp"):
        shutil.copy(data / "projects" / name, root / name)
    for name in ("2d3c.h5", "2d.h5", "3d.h5"):
        shutil.copy(data / "inputs" / name, root / name)
    (root / "inputdata").symlink_to(data / "inputs")
    (root / "garbage.ilp").write_text("garbage\n")
    (root / "empty.ilp").write_bytes(b"")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (root / "afile").write_text("a file where a folder should be\n")
    (root / "adir").mkdir()
    return root


def _run(runner, args: list[str], folder: Path) -> tuple[Run, list[str]]:
    """Run in ``folder`` without ``out/``; what the run left there (then removed)."""
    shutil.rmtree(folder / "out", ignore_errors=True)
    done = runner(args, folder)
    left = sorted(os.listdir(folder / "out")) if (folder / "out").is_dir() else []
    shutil.rmtree(folder / "out", ignore_errors=True)
    return done, left


_SUMMARY = re.compile(r"gpuheadless: \d+ of \d+ input\(s\) failed:")
_DEVICE_NOTE = re.compile(r"Using the (CPU|GPU)\b.*")  # the run's one informational line, not an error


def _message_lines(stderr: str) -> list[str]:
    """The lines of a failure report, without a batch summary's header and the device note."""
    lines = (line.strip() for line in stderr.splitlines())
    return [line for line in lines if line and not _SUMMARY.fullmatch(line) and not _DEVICE_NOTE.fullmatch(line)]


@pytest.mark.parametrize("name", list(CASES))
def test_where_ilastik_fails_we_fail_cleanly(name, folder):
    args, word = CASES[name]
    theirs, _ = _run(run_ilastik, args, folder)
    if theirs.returncode == 0:
        pytest.skip(f"ilastik accepts this (exit 0); nothing to compare: {theirs.output[-300:]}")
    before = sorted(os.listdir(folder))
    ours, left = _run(run_gpuheadless, ["--headless", *args], folder)
    assert ours.returncode != 0, f"ilastik exits {theirs.returncode}, gpuheadless 0:\n{ours.output[-2000:]}"
    assert "Traceback" not in ours.output, ours.output[-3000:]
    lines = _message_lines(ours.stderr)
    assert len(lines) == 1, f"expected one message, said once, got {lines}"
    assert word in lines.pop(), ours.stderr
    assert left == [], f"left behind: {left}"
    assert sorted(os.listdir(folder)) == before


def test_table_runs_files_that_exist(folder):
    """The good inputs of the table work in both programs, so the rows test what they say."""
    for runner, extra in ((run_ilastik, []), (run_gpuheadless, ["--headless"])):
        done, left = _run(runner, [*extra, PIXEL, OUT, IMAGE], folder)
        assert done.returncode == 0, done.output[-2000:]
        assert left == ["2d3c-data_Probabilities.h5"]


def test_unknown_workflow_name_runs_as_pixel_classification(folder):
    """ilastik opens a project whose workflowName it does not know as Pixel Classification; so do we."""
    shutil.copy(folder / "PixelClassification2d3c.ilp", folder / "renamed.ilp")
    with h5py.File(folder / "renamed.ilp", "r+") as f:
        del f["workflowName"]
        f["workflowName"] = b"NoSuchWorkflow"
    results = {}
    for who, runner, extra in (("ilastik", run_ilastik, []), ("ours", run_gpuheadless, ["--headless"])):
        target = folder / f"renamed-{who}"
        done = runner([*extra, "--project=renamed.ilp", f"--output_filename_format={target}/p.h5", IMAGE], folder)
        assert done.returncode == 0, done.output[-2000:]
        with h5py.File(target / "p.h5", "r") as f:
            results[who] = f["exported_data"][()]
        shutil.rmtree(target)
    (folder / "renamed.ilp").unlink()
    np.testing.assert_array_equal(results["ours"], results["ilastik"])
