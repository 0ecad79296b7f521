"""Autocontext projects (issue 19): every command of tests/data/autocontext/MANIFEST.md, made by
a real ilastik 1.4.2 on projects it built and trained, run by gpuheadless: bit-identical files.

The data lives in the repository (a few MB), so these run without the shared ilastik data; the
live suite (tests/live/test_autocontext_live.py) adds ilastik's own Autocontext test projects and
every export source.
"""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_helpers import run_cli
from gpuheadless.export import resolve_source, source_names, split_source
from gpuheadless.errors import UsageError
from gpuheadless.pipeline.stages import to_input_type

DATA = Path(__file__).parent / "data" / "autocontext"


def _commands() -> list[tuple[str, list[str]]]:
    """(reference file, ilastik's arguments) of each MANIFEST row."""
    rows = []
    for line in (DATA / "MANIFEST.md").read_text().splitlines():
        found = re.match(r"\| `(reference/[^`]+)` \|.*\| `ilastik --headless ([^`]+)` \|$", line)
        if found:
            rows.append((found[1], shlex.split(found[2])))
    return rows


COMMANDS = _commands()


def test_the_manifest_covers_two_and_three_stages_2d_3d_and_float_data():
    projects = {a.split("=", 1)[1] for _, args in COMMANDS for a in args if a.startswith("--project=")}
    assert projects == {"two-stage-2d.ilp", "three-stage-3d.ilp", "two-stage-2d-2c-float.ilp"}
    assert len(COMMANDS) >= 12


@pytest.mark.parametrize("reference, args", COMMANDS, ids=[r.split("/")[-1][:-3] for r, _ in COMMANDS])
def test_bit_identical_to_ilastik(reference: str, args: list[str], tmp_path: Path, capsys):
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    code, err = run_cli(["--headless", *args], work, capsys)
    assert code == 0, err
    with h5py.File(DATA / reference, "r") as theirs, h5py.File(work / reference, "r") as ours:
        a, b = theirs["exported_data"], ours["exported_data"]
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_array_equal(b[()], a[()])
        for key in ("axistags", "drange", "display_mode"):
            assert (key in a.attrs) == (key in b.attrs), key
            if key in a.attrs:
                assert np.array_equal(np.asarray(a.attrs[key]), np.asarray(b.attrs[key])), key


def test_source_names_are_ilastiks():
    assert source_names(2) == [
        "Probabilities Stage 2", "Simple Segmentation Stage 2", "Uncertainty Stage 2", "Features Stage 2",
        "Labels Stage 2", "Input Stage 2", "Probabilities Stage 1", "Simple Segmentation Stage 1",
        "Uncertainty Stage 1", "Features Stage 1", "Labels Stage 1", "Input Stage 1", "Probabilities All Stages"]
    assert resolve_source("probabilities stage 1", 3) == "Probabilities Stage 1"
    assert resolve_source("Probabilities", 3) == "Probabilities Stage 3"  # the default: the last stage
    assert split_source("Features Stage 2") == ("Features", 1)
    assert split_source("Probabilities All Stages") == ("Probabilities All Stages", None)
    with pytest.raises(UsageError, match="Stage 3"):
        resolve_source("Features Stage 3", 2)
    with pytest.raises(UsageError):
        resolve_source("Input", 1)  # Pixel Classification has no Input source


def test_probabilities_reach_the_next_stage_in_the_raw_datas_type():
    p = np.array([0.0, 0.5, 0.999, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(to_input_type(np, p, np.uint8), [0, 127, 254, 255])  # truncated, as ilastik
    np.testing.assert_array_equal(to_input_type(np, p, np.uint16), [0, 32767, 65469, 65535])
    np.testing.assert_array_equal(to_input_type(np, p, np.float32), p)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def test_retrain_trains_every_stage_in_order(tmp_path: Path, capsys):
    """``--retrain``: stage 1 on its labels, then stage 2 on features of the image stacked with
    the new stage 1's probabilities. Reproducible with ``--seed``; the classes agree with
    ilastik's own trained project about as often as two ilastik retrainings agree (about 98 % and
    96 % of pixels here: measured against ilastik 1.4.2, which needs ``--readonly=0`` to retrain
    and then saves the project; gpuheadless never modifies it)."""
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    before = (work / "two-stage-2d.ilp").read_bytes()
    results = []
    for run in range(2):
        out = work / f"retrained{run}.h5"
        code, err = run_cli(["--headless", "--project=two-stage-2d.ilp", "--retrain", "--seed=3",
                             "--export_source=Probabilities All Stages", f"--output_filename_format={out}",
                             "two-stage-2d-unseen.h5/data"], work, capsys)
        assert code == 0, err
        assert "(stage 1)" in err and "(stage 2)" in err
        with h5py.File(out, "r") as f:
            results.append(f["exported_data"][()])
    np.testing.assert_array_equal(results[0], results[1])
    stored = _stored("two-stage-2d-unseen__Probabilities_All_Stages.h5")
    assert not np.array_equal(results[0], stored)
    assert _agreement(results[0][..., :2], stored[..., :2]) > 0.95
    assert _agreement(results[0][..., 2:], stored[..., 2:]) > 0.9
    assert (work / "two-stage-2d.ilp").read_bytes() == before


def test_a_stage_without_a_classifier_is_trained_and_only_it(tmp_path: Path, capsys):
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    with h5py.File(work / "two-stage-2d.ilp", "r+") as f:
        del f["PixelClassification01/ClassifierForests"]
    out = work / "out.h5"
    code, err = run_cli(["--headless", "--project=two-stage-2d.ilp", "--seed=1", "--export_source=Probabilities All Stages",
                         f"--output_filename_format={out}", "two-stage-2d-unseen.h5/data"], work, capsys)
    assert code == 0, err
    assert "(stage 2)" in err and "(stage 1)" not in err
    stored = _stored("two-stage-2d-unseen__Probabilities_All_Stages.h5")
    with h5py.File(out, "r") as f:
        result = f["exported_data"][()]
    np.testing.assert_array_equal(result[..., :2], stored[..., :2])  # stage 1 kept its stored forest
    assert _agreement(result[..., 2:], stored[..., 2:]) > 0.9


def test_an_unknown_stage_is_refused_with_one_line(tmp_path: Path, capsys):
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    code, err = run_cli(["--headless", "--project=two-stage-2d.ilp", "--export_source=Features Stage 3",
                         "two-stage-2d.h5/data"], work, capsys)
    assert code == 2 and "Valid options" in err and "Traceback" not in err


@pytest.mark.parametrize("reference, args", [c for c in COMMANDS if "Probabilities_All_Stages" in c[0]],
                         ids=lambda v: v.split("/")[-1][:-3] if isinstance(v, str) else "")
def test_small_blocks_give_the_same_bytes(reference: str, args: list[str], tmp_path: Path, capsys, monkeypatch):
    """Each block computes every stage on the region the next stage needs: blocks much smaller
    than the stages' halos (up to 3 x 9 pixels here) still give ilastik's values."""
    from gpuheadless.pipeline import block_runner

    monkeypatch.setattr(block_runner, "choose_block_shape", lambda extent, *rest: tuple(min(n, s) for n, s in zip(extent, (5, 17, 23))))
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    code, err = run_cli(["--headless", *args], work, capsys)
    assert code == 0, err
    with h5py.File(DATA / reference, "r") as theirs, h5py.File(work / reference, "r") as ours:
        np.testing.assert_array_equal(ours["exported_data"][()], theirs["exported_data"][()])


def test_on_a_dask_cluster(tmp_path: Path, capsys, monkeypatch):
    """The same block function as tasks: the earlier stages' classifiers travel with the exported one."""
    distributed = pytest.importorskip("distributed")
    from gpuheadless.pipeline import block_runner

    monkeypatch.setattr(block_runner, "choose_block_shape", lambda extent, *rest: tuple(min(n, s) for n, s in zip(extent, (5, 17, 23))))
    reference, args = next(c for c in COMMANDS if c[0].endswith("three-stage-3d__Probabilities_All_Stages.h5"))
    work = tmp_path / "work"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("reference"))
    # a cluster of its own: --scheduler local:N would set Dask's worker settings for this whole process
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        code, err = run_cli(["--headless", f"--scheduler={cluster.scheduler_address}", *args], work, capsys)
    assert code == 0, err
    with h5py.File(DATA / reference, "r") as theirs, h5py.File(work / reference, "r") as ours:
        np.testing.assert_array_equal(ours["exported_data"][()], theirs["exported_data"][()])


def _stored(name: str) -> np.ndarray:
    with h5py.File(DATA / "reference" / name, "r") as f:
        return f["exported_data"][()]


def test_python_api_gives_each_stage_as_the_command_line():
    """ilastik's ``AutocontextPipeline`` names on arrays: each stage's probabilities equal the
    command line's (ilastik's) Probabilities All Stages, split by stage; Dask arrays too."""
    xarray = pytest.importorskip("xarray")
    from gpuheadless.experimental.api import AutocontextPipeline, PixelClassificationPipeline

    with h5py.File(DATA / "two-stage-2d.h5", "r") as f:
        image = f["data"][()]
    every = _stored("two-stage-2d__Probabilities_All_Stages.h5")  # stage 1: 2 classes, stage 2: 3
    pipeline = AutocontextPipeline.from_ilp_file(DATA / "two-stage-2d.ilp", device="cpu")
    data = xarray.DataArray(image, dims=("y", "x", "c"))
    first, second = pipeline.get_probabilities_stage_1(data), pipeline.get_probabilities_stage_2(data)
    assert first.dims == ("y", "x", "c") and second.shape == (96, 110, 3)
    np.testing.assert_array_equal(first.values, every[..., :2])
    np.testing.assert_array_equal(second.values, every[..., 2:])
    # ilastik's PixelClassificationPipeline reads an Autocontext project's first stage
    np.testing.assert_array_equal(PixelClassificationPipeline.from_ilp_file(DATA / "two-stage-2d.ilp", device="cpu")
                                  .get_probabilities(data).values, every[..., :2])
    da = pytest.importorskip("dask.array")
    lazy = pipeline.get_probabilities(da.from_array(image, chunks=(40, 37, 1)), axes="yxc")
    np.testing.assert_array_equal(lazy.compute(), every[..., 2:])

    with h5py.File(DATA / "three-stage-3d.h5", "r") as f:
        volume = f["data"][()]
    three = AutocontextPipeline.from_ilp_file(DATA / "three-stage-3d.ilp", device="cpu")
    np.testing.assert_array_equal(three.get_probabilities(volume, axes="zyxc"),
                                  _stored("three-stage-3d__Probabilities_All_Stages.h5")[..., 4:])
    with pytest.raises(ValueError, match="stages 1 to 3"):
        three.get_probabilities(volume, axes="zyxc", stage=4)
