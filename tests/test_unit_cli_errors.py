"""Command-line refusals, one-line error words and input stacks on small generated files: every
refusal exits with its status before anything is read, and stacks read regions across members
(no external data)."""
from __future__ import annotations

import errno
import os

import h5py
import numpy as np
import pytest

from gpuheadless.cli import main
from gpuheadless.errors import (NotImplementedYet, OneLineParser, UsageError, UserError, brief, describe_write_error,
                                writing_output)
from gpuheadless.io.stacks import expand_members, open_input

NO_PROJECT = "--project=/nonexistent/never-opened.ilp"


@pytest.mark.parametrize("flags, words", [
    (["--hbp", NO_PROJECT], "--hbp is deprecated"),
    (["--fullscreen", NO_PROJECT], "GUI flags"),
    (["--distributed", NO_PROJECT], "does not implement yet"),
    (["--configfile=x.cfg", NO_PROJECT], "--configfile is an ilastik option"),
    (["--readonly=perhaps", NO_PROJECT], "--readonly: expected a boolean"),
    (["in.h5"], "at least --project"),
    (["--input_axes=zz", NO_PROJECT, "in.h5"], "--input_axes 'zz'"),
    (["--input_axes=zc", NO_PROJECT, "in.h5"], "including x and y"),
    (["--raw_data=a.h5", NO_PROJECT, "b.h5"], "trailing file paths"),
    (["--tree-count=-1", NO_PROJECT], "--tree-count must be a number of trees"),
    (["--gpu_memory_mb=0", NO_PROJECT], "--gpu_memory_mb must be positive"),
    (["--worker_timeout=0", NO_PROJECT], "--worker_timeout must be a positive"),
    (["--export_drange=(0,1)", NO_PROJECT], "without a specified pipeline_result_drange"),
    (["--pipeline_result_drange=(0,1,2)", NO_PROJECT], "expected two numbers"),
    (["--output_format=webp", NO_PROJECT], "invalid choice"),
    (["--tiktorch_executable=x", "--outptu_format=png", NO_PROJECT], "did you mean --output_format"),
])
def test_refusals_exit_2_in_one_line_before_opening_anything(flags, words, tmp_path, capsys, monkeypatch):
    """Each malformed or unsupported command line is one ``gpuheadless: error`` line, exit status 2."""
    monkeypatch.chdir(tmp_path)
    assert main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not os.listdir(tmp_path)


def test_a_missing_project_is_exit_1_naming_the_file(tmp_path, capsys):
    """With valid flags, a project that does not exist fails with status 1, naming the file."""
    assert main([f"--project={tmp_path}/missing.ilp"]) == 1
    err = capsys.readouterr().err
    assert "missing.ilp" in err and len(err.strip().splitlines()) == 1


def test_train_usage_errors(tmp_path, capsys):
    """``gpuheadless train`` with mismatched inputs, a bad colour or a bad scale exits 2 in one line."""
    for argv, words in ((["--raw", "a.h5", "b.h5", "--labels", "l.h5", "--output", "x.ilp"], "one --labels image per"),
                        (["--raw", "a.h5", "--labels", "l.h5", "--output", "x.ilp", "--label_colors", "red"],
                         "is not #rrggbb"),
                        (["--raw", "a.h5", "--labels", "l.h5", "--output", "x.ilp", "--trees", "0"], "at least 1"),
                        (["--raw", "a.h5", "--labels", "l.h5", "--output", "x.ilp", "--in_2d", "big"], "--in_2d")):
        assert main(["train", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err, err


def test_error_words():
    """``brief`` names the type and cuts long messages; write errors say why in a few words."""
    assert brief(ValueError("bad   value\nhere")) == "ValueError: bad value here"
    assert brief(KeyError()) == "KeyError"
    long = brief(RuntimeError("x" * 500), limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert "No space left on device" in describe_write_error(OSError(errno.ENOSPC, "full"), "/tmp/out.h5")
    assert "No space left on device" in describe_write_error(OSError("HDF5 error: errno = 28, error message"), "/tmp/o.h5")
    assert "was removed during the run" in describe_write_error(OSError(5, "x"), "/nonexistent/folder/o.h5")
    with pytest.raises(UserError, match="output '/tmp/o.h5': cannot write it"):
        with writing_output("/tmp/o.h5"):
            raise OSError(errno.EFBIG, "too big")
    assert NotImplementedYet("--atlas", "soon").exit_code == 2 and "soon" in str(NotImplementedYet("--atlas", "soon"))
    parser = OneLineParser(prog="p")
    parser.add_argument("--n", type=int)
    with pytest.raises(UsageError, match="p: argument --n"):
        parser.parse_args(["--n", "x"])


def _slices(tmp_path, n=3, shape=(4, 5)):
    arrays = [np.full(shape, k + 1, np.uint8) + np.arange(shape[-1], dtype=np.uint8) for k in range(n)]
    for k, a in enumerate(arrays):
        with h5py.File(tmp_path / f"m{k}.h5", "w") as f:
            f["data"] = a
    return arrays


def test_path_lists_and_dataset_globs_are_stacks(tmp_path):
    """``a.h5/data:b.h5/data`` and ``f.h5/slice*`` are stacks in name order."""
    arrays = _slices(tmp_path)
    listed = open_input(os.pathsep.join(f"{tmp_path}/m{k}.h5/data" for k in (2, 0, 1)))
    np.testing.assert_array_equal(listed.read((slice(None),) * 3), np.stack(arrays))
    with h5py.File(tmp_path / "one.h5", "w") as f:
        for k, a in enumerate(arrays):
            f[f"slice{k}"] = a
    members = expand_members(f"{tmp_path}/one.h5/slice*", str(tmp_path))
    assert [m[1] for m in members] == ["slice0", "slice1", "slice2"]
    stacked = open_input(f"{tmp_path}/one.h5/slice*")
    assert stacked.shape == (3, 4, 5)
    np.testing.assert_array_equal(stacked.read((slice(1, 3), slice(0, 2), slice(None))), np.stack(arrays)[1:3, :2])


def test_stacking_along_an_existing_axis_reads_regions_across_members(tmp_path):
    """3D members stacked along z concatenate; a region spanning two members reads correctly."""
    vols = [np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5) + 100 * k for k in range(3)]
    for k, v in enumerate(vols):
        np.save(tmp_path / f"v{k}.npy", v[..., None])  # zyxc
    source = open_input(f"{tmp_path}/v*.npy")
    assert source.axes == "zyxc" and source.shape == (6, 4, 5, 1)
    whole = np.concatenate(vols)[..., None]
    np.testing.assert_array_equal(source.read((slice(1, 5), slice(None), slice(2, 4), slice(None))), whole[1:5, :, 2:4])


def test_bad_stacks_are_refused_naming_the_problem(tmp_path):
    """No match, mixed file types and members of different shapes are refused."""
    _slices(tmp_path, 2)
    with h5py.File(tmp_path / "m9.h5", "w") as f:
        f["data"] = np.zeros((4, 6), np.uint8)
    np.save(tmp_path / "m5.npy", np.zeros((4, 5)))
    with pytest.raises(UsageError, match="matches no file"):
        open_input(f"{tmp_path}/nothing*.h5/data")
    with pytest.raises(UserError, match="one file type"):
        open_input(f"{tmp_path}/m*")
    with pytest.raises(UserError, match="members of one shape"):
        open_input(f"{tmp_path}/m*.h5/data")
