"""The command line end to end: default names, bad input, retraining, block independence."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli as _run



def _files(path):
    return sorted(p for p in os.listdir(path))


def test_default_output_name_and_location(data, tmp_path, capsys):
    shutil.copyfile(data / "inputs" / "2d.h5", tmp_path / "2d.h5")
    code, _ = _run(["--headless", f"--project={data / 'projects' / 'PixelClassification2d.ilp'}", "2d.h5"], tmp_path, capsys)
    assert code == 0
    assert _files(tmp_path) == ["2d.h5", "2d_Probabilities.h5"]  # project pattern {dataset_dir}/{nickname}_{result_type}.h5
    with h5py.File(tmp_path / "2d_Probabilities.h5", "r") as f:
        assert f["exported_data"].shape == (1024, 1344, 2)


def test_console_script_reports_one_line_without_traceback(tmp_path):
    exe = shutil.which("gpuheadless") or os.path.join(os.path.dirname(sys.executable), "gpuheadless")
    result = subprocess.run([exe, "--headless", "--project=missing.ilp", "in.h5"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "missing.ilp" in result.stderr and "does not exist" in result.stderr


@pytest.fixture
def no_classifier_project(data, tmp_path):
    path = tmp_path / "empty.ilp"
    shutil.copyfile(data / "projects" / "PixelClassification2d.ilp", path)
    with h5py.File(path, "a") as f:
        del f["PixelClassification/ClassifierForests"]
        del f["PixelClassification/LabelSets"]
    return path


BAD_CASES = {
    "missing project": (lambda d, t: [f"--project={t / 'nope.ilp'}", str(d / "inputs/2d.h5/data")], "does not exist"),
    "corrupt project": (lambda d, t: [f"--project={t / 'corrupt.ilp'}", str(d / "inputs/2d.h5/data")], "not an ilastik project"),
    "other workflow": (lambda d, t: [f"--project={t / 'carving.ilp'}", str(d / "inputs/2d.h5/data")], "Carving"),
    "no classifier, no labels": (lambda d, t: [f"--project={t / 'empty.ilp'}", str(d / "inputs/2d.h5/data")], "no labels"),
    "wrong channel count": (lambda d, t: [f"--project={d / 'projects/PixelClassification2d.ilp'}", str(d / "inputs/2d3c.h5/data")],
                            "3 channel"),
    "wrong dimensionality": (lambda d, t: [f"--project={d / 'projects/PixelClassification2d.ilp'}", str(d / "inputs/3d.h5/data")], "3D"),
    "unreadable image": (lambda d, t: [f"--project={d / 'projects/PixelClassification2d.ilp'}", str(t / "broken.png")], "broken.png"),
    "missing internal path": (lambda d, t: [f"--project={d / 'projects/PixelClassification2d.ilp'}", str(d / "inputs/2d.h5/nope")],
                              "no dataset 'nope'"),
    "unwritable output folder": (lambda d, t: [f"--project={d / 'projects/PixelClassification2d.ilp'}",
                                               f"--output_filename_format={t / 'afile' / 'out.h5'}", str(d / "inputs/2d3c.h5/data")],
                                 "3 channel"),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_one_line_nonzero_no_output(name, data, tmp_path, capsys, no_classifier_project):
    (tmp_path / "corrupt.ilp").write_bytes(b"\x00garbage")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp_path / "afile").write_text("a file where a folder should be")
    shutil.copyfile(data / "projects/PixelClassification2d3c.ilp", tmp_path / "carving.ilp")
    with h5py.File(tmp_path / "carving.ilp", "a") as f:  # a workflow gpuheadless does not run
        del f["workflowName"]
        f["workflowName"] = b"Carving"
    make_args, expected = BAD_CASES[name]
    before = _files(tmp_path)
    code, err = _run(["--headless", *make_args(data, tmp_path)], tmp_path, capsys)
    assert code != 0
    assert expected in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len([line for line in lines if expected in line]) == 1  # said once
    assert _files(tmp_path) == before  # nothing written, no partial file


def test_unwritable_output_folder(data, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d3c.ilp'}",
                      f"--output_filename_format={tmp_path / 'afile' / 'out.h5'}", str(data / "inputs/2d3c.h5/data")], tmp_path, capsys)
    assert code == 1 and "cannot write there" in err and "afile" in err
    assert _files(tmp_path) == ["afile"]


def test_batch_goes_on_past_a_failed_input(data, tmp_path, capsys):
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d3c.ilp'}",
                      f"--output_filename_format={tmp_path}/{{nickname}}.h5", "missing.h5/data", str(data / "inputs/2d3c.h5/data")],
                     tmp_path, capsys)
    assert code == 1 and "1 of 2 input(s) failed" in err
    assert _files(tmp_path) == ["2d3c-data.h5"]


@pytest.mark.parametrize("flag", [["--distributed"], ["--preconvert_stacks"]])
def test_unimplemented_ilastik_options_say_so(flag, data, tmp_path, capsys):
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d3c.ilp'}", *flag,
                      f"--output_filename_format={tmp_path}/o.h5", str(data / "inputs/2d3c.h5/data")], tmp_path, capsys)
    assert code == 2 and "does not implement yet" in err
    assert not (tmp_path / "o.h5").exists()


def test_bad_option_values_are_usage_errors(data, tmp_path, capsys):
    base = ["--headless", f"--project={data / 'projects/PixelClassification2d3c.ilp'}", str(data / "inputs/2d3c.h5/data")]
    for extra, expected in [(["--export_source=Nope"], "Invalid option for --export_source"),
                            (["--export_drange=(0,255)"], "pipeline_result_drange"),
                            (["--cutout_subregion=[(1,2)"], "--cutout_subregion")]:
        code, err = _run(base + extra, tmp_path, capsys)
        assert code == 2 and expected in err


@pytest.mark.parametrize("name", ["3d", "2d"])
def test_results_do_not_depend_on_block_shape(name, data, tmp_path, monkeypatch):
    from gpuheadless.config import ExportOptions, RunConfig
    from gpuheadless.pipeline.pixel import run_batch

    def run(output, ram_mb, threads):
        config = RunConfig(project=str(data / f"projects/PixelClassification{name}.ilp"), inputs=[f"inputs/{name}.h5/data"],
                           export=ExportOptions(output_format="hdf5", output_filename_format=str(tmp_path / output)),
                           threads=threads, ram_budget_mb=ram_mb, device="cpu", cwd=str(data), progress=False)
        results, failures = run_batch(config)
        assert not failures
        with h5py.File(results[0].output, "r") as f:
            return f["exported_data"][()], results[0].blocks

    monkeypatch.setenv("GPUHEADLESS_BLOCK_MB", "100000")  # no cap on a block's working set: one block
    whole, n_whole = run("one.h5", 100000, 1)
    tiled, n_tiled = run("tiny.h5", 30, 2)  # a tiny budget: many small blocks with halos
    assert n_whole <= 2 < n_tiled
    np.testing.assert_array_equal(whole, tiled)  # every pixel is computed with the same arithmetic


def test_retrains_from_project_labels_when_no_forest(project_copy, tmp_path, capsys):
    project = project_copy("PixelClassification2d3c.ilp")
    with h5py.File(project, "a") as f:
        del f["PixelClassification/ClassifierForests"]
    code, err = _run(["--headless", f"--project={project}", "--seed=1", f"--output_filename_format={tmp_path}/r.h5",
                      "inputdata/2d3c.h5/data"], tmp_path, capsys)
    assert code == 0, err
    assert "a new classifier is trained" in err
    with h5py.File(tmp_path / "r.h5", "r") as f:
        p = f["exported_data"][()]
    assert p.shape == (73, 187, 2) and np.allclose(p.sum(-1), 1, atol=1e-6)


NO_INPUT_CASES = {
    "missing project": (lambda t: t / "nope.ilp", "does not exist"),
    "garbage project": (lambda t: t / "corrupt.ilp", "not an ilastik project"),
    "empty project file": (lambda t: t / "empty.ilp", "not an ilastik project"),
    "folder as project": (lambda t: t, "is a directory"),
    "hdf5 without a pixel classification": (lambda t: t / "plain.ilp", "not an ilastik project"),
}


@pytest.mark.parametrize("name", list(NO_INPUT_CASES))
def test_project_without_inputs_is_opened_first(name, tmp_path, capsys):
    """ilastik opens the project before it looks at inputs: exit 1 on a bad one, even with none."""
    (tmp_path / "corrupt.ilp").write_bytes(b"\x00garbage")
    (tmp_path / "empty.ilp").write_bytes(b"")
    with h5py.File(tmp_path / "plain.ilp", "w") as f:
        f["data"] = np.zeros(3)
    make_path, expected = NO_INPUT_CASES[name]
    path = make_path(tmp_path)
    before = _files(tmp_path)
    code, err = _run(["--headless", f"--project={path}"], tmp_path, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0] and "Traceback" not in err
    assert _files(tmp_path) == before


def test_good_project_without_inputs_succeeds(data, tmp_path, capsys):
    for name in ("PixelClassification2d.ilp", "ObjectClassification2d_wPred.ilp"):
        code, err = _run(["--headless", f"--project={data / 'projects' / name}"], tmp_path, capsys)
        assert code == 0, err
    assert _files(tmp_path) == []


@pytest.mark.parametrize("axes", ["zq", "yy", "zc"])
def test_malformed_input_axes_is_a_usage_error_before_anything_runs(axes, data, tmp_path, capsys):
    """ilastik refuses these while parsing its command line (exit 2); so does gpuheadless."""
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d3c.ilp'}", f"--input_axes={axes}",
                      str(data / "inputs/2d3c.h5/data")], tmp_path, capsys)
    assert code == 2 and "--input_axes" in err and len(err.strip().splitlines()) == 1, err
    assert _files(tmp_path) == []


def test_damaged_hdf5_chunk_is_one_line_and_nothing_written(data, tmp_path, capsys):
    with h5py.File(tmp_path / "damaged.h5", "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8),
                         chunks=(50, 50), compression="gzip")
    raw = bytearray((tmp_path / "damaged.h5").read_bytes())
    raw[len(raw) - 20000:len(raw) - 100] = bytes(19900)  # zero the compressed chunks near the end
    (tmp_path / "damaged.h5").write_bytes(bytes(raw))
    before = _files(tmp_path)
    code, err = _run(["--headless", f"--project={data / 'projects/PixelClassification2d.ilp'}",
                      f"--output_filename_format={tmp_path}/out.h5", "damaged.h5/data"], tmp_path, capsys)
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if "damaged.h5" in line] == [line for line in err.splitlines()
                                                                          if "cannot read" in line]
    assert len([line for line in err.splitlines() if "cannot read" in line]) == 1
    assert _files(tmp_path) == before


# Flags of ilastik 1.4.2's headless parsers (ilastik/app.py, the data selection, data export and
# batch processing applets, the Pixel and Object Classification workflows, their input roles).
ILASTIK_FLAGS = [
    "--clean_paths", "--configfile", "--debug", "--exit_on_failure", "--fullscreen", "--hbp", "--headless",
    "--logfile", "--new_project", "--nn_device", "--process_name", "--project", "--readonly", "--redirect_output",
    "--tiktorch_executable", "--version", "--workflow",
    "--ignore-training-axistags", "--ignore_training_axistags", "--input-axes", "--input_axes",
    "--preconvert-stacks", "--preconvert_stacks", "--stack-along", "--stack_along",
    "--raw_data", "--raw-data", "--prediction_mask", "--prediction-mask", "--prediction_maps", "--prediction-maps",
    "--segmentation_image", "--segmentation-image", "--label_image", "--label-image", "--atlas",
    "--cutout_subregion", "--export_drange", "--export_dtype", "--export_source", "--output_axis_order",
    "--output_filename_format", "--output_format", "--output_internal_path", "--pipeline_result_drange", "--table_only",
    "--distributed", "--distributed-block-roi", "--distributed_block_roi",
    "--generate-random-labels", "--label-proportion", "--label-search-value", "--print-labels-by-slice",
    "--random-label-count", "--random-label-value", "--retrain", "--tree-count", "--variable-importance-path",
    "--export_object_prediction_img", "--export_object_probability_img", "--export_pixel_probability_img",
    "--fillmissing", "--nobatch", "--table_filename",
]


def test_every_ilastik_headless_flag_is_accepted():
    from gpuheadless.cli import build_parser, option_strings

    missing = sorted(set(ILASTIK_FLAGS) - set(option_strings(build_parser())))
    assert not missing


@pytest.mark.parametrize("flag, nearest", [("--output_fomat=png", "--output_format"), ("--tree_count=3", "--tree-count"),
                                           ("--export-source", "--export_source")])
def test_misspelled_flag_is_refused_with_the_nearest_flag(flag, nearest, data, tmp_path, capsys):
    shutil.copyfile(data / "inputs" / "2d.h5", tmp_path / "a.h5")
    code, err = _run([f"--project={data / 'projects' / 'PixelClassification2d.ilp'}", flag, "a.h5"], tmp_path, capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and flag.split("=")[0] in err and f"did you mean {nearest}?" in err
    assert _files(tmp_path) == ["a.h5"]


def test_unknown_flag_without_a_near_one_is_refused(data, tmp_path, capsys):
    code, err = _run([f"--project={data / 'projects' / 'PixelClassification2d.ilp'}", "--frobnicate", "x.h5"], tmp_path, capsys)
    assert code == 2 and "'--frobnicate'" in err and "--help" in err


def _two_lanes(data, tmp_path):
    for name in ("a.h5", "b.h5"):
        shutil.copyfile(data / "inputs" / "2d.h5", tmp_path / name)
    return [f"--project={data / 'projects' / 'PixelClassification2d.ilp'}", "--cutout_subregion=[(0,0,None),(32,32,None)]"]


def test_two_lanes_writing_one_file_are_refused_before_computing(data, tmp_path, capsys):
    # the inputs on both sides of a flag are both lanes, as in ilastik
    argv = _two_lanes(data, tmp_path)[:1] + ["a.h5", "--output_filename_format=t/result.h5", "b.h5"]
    code, err = _run(argv, tmp_path, capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert "'a.h5'" in err and "'b.h5'" in err and "result.h5" in err
    assert _files(tmp_path) == ["a.h5", "b.h5"]  # not even the folder t


def test_output_over_its_own_input_is_refused(data, tmp_path, capsys):
    argv = _two_lanes(data, tmp_path) + ["--output_filename_format={nickname}.h5", "--output_internal_path=data", "a.h5"]
    before = (tmp_path / "a.h5").read_bytes()
    code, err = _run(argv, tmp_path, capsys)
    assert code == 2 and "overwrite input 'a.h5'" in err
    assert (tmp_path / "a.h5").read_bytes() == before and _files(tmp_path) == ["a.h5", "b.h5"]


def test_lanes_may_share_an_hdf5_file_under_different_datasets(data, tmp_path, capsys):
    argv = _two_lanes(data, tmp_path) + ["--output_filename_format=out.h5", "--output_internal_path={nickname}",
                                         "a.h5", "b.h5"]
    code, err = _run(argv, tmp_path, capsys)
    assert code == 0, err
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert sorted(f) == ["a", "b"] and f["a"].shape == f["b"].shape == (32, 32, 2)


def test_lanes_sharing_an_hdf5_file_are_refused_when_they_run_at_once(data, tmp_path, capsys):
    argv = _two_lanes(data, tmp_path) + ["--output_filename_format=out.h5", "--output_internal_path={nickname}",
                                         "--scheduler=local:2", "a.h5", "b.h5"]
    code, err = _run(argv, tmp_path, capsys)
    assert code == 2 and "--scheduler" in err and "'a.h5'" in err and "'b.h5'" in err
    assert _files(tmp_path) == ["a.h5", "b.h5"]
