"""Fuzzing (issue 15, "a batch never loses work and never lies"): damaged projects, damaged inputs
and odd command lines never give a traceback, a hang, a crash, an unexpected exit status, a long
message, a file at a final output name after a failure, or a leftover temporary.

The cases come from the Hypothesis strategies of ``fuzz_harness`` (derandomized: the same cases
on every run); most run in-process, every tenth in a forked child (an interpreter crash kills
only the child), cases that damage HDF5 bytes always forked, and one test samples fresh
interpreters. ``bench/fuzz.py`` runs thousands. Below them, one regression test per violation
the fuzzing found, each pinned to its one-line message.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

import fuzz_harness as fh
from fuzz_harness import (Case, FileSpec, FlipBytes, H5Delete, H5Group, H5Link, H5Poke, H5Sequences, H5Write, HugeDataset,
                          InFile, JsonSet, Overwrite, Rewrite, TiffTag, Truncate)

CASES = {"ilp_pixel": 60, "ilp_object": 60, "input_h5": 50, "input_tiff": 50, "input_png": 45, "input_zarr": 50,
         "cli": 85}


def fuzz_settings(cases: int) -> settings:
    """Reproducible in CI: the same ``cases`` cases every run, no example database, no deadline."""
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


_counter = itertools.count()


@pytest.fixture(scope="module")
def seeds(data, tmp_path_factory) -> fh.Seeds:
    """Tiny pristine projects and inputs, copied from the shared data once for the module."""
    return fh.build_seeds(data, tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cases")


def _check(result: fh.Result) -> None:
    assert not result.violations, fh.report(result)


def _fuzz(target: str, seeds: fh.Seeds, workdir: Path) -> int:
    """Run the target's cases; returns how many ran."""
    ran = []

    @fuzz_settings(CASES[target])
    @given(case=fh.TARGETS[target]())
    def run(case: Case) -> None:
        ran.append(case)
        _check(fh.evaluate(case, seeds, workdir, fh.pick_mode(next(_counter), fork_every=10, subprocess_every=0)))

    run()
    return len(ran)


@pytest.mark.parametrize("target", sorted(CASES))
def test_fuzz_target(target, seeds, workdir):
    """Every case of the target keeps the property (see ``fuzz_harness.check_outcome``)."""
    assert _fuzz(target, seeds, workdir) == CASES[target]


def test_fuzz_fresh_interpreters(seeds, workdir):
    """A few cases of each target in ``python -m gpuheadless`` itself: the entry point, no crash."""

    @fuzz_settings(2)
    @given(case=fh.TARGETS["ilp_pixel"]() | fh.TARGETS["input_h5"]() | fh.TARGETS["input_zarr"]() | fh.TARGETS["cli"]())
    def run(case: Case) -> None:
        _check(fh.evaluate(case, seeds, workdir, "subprocess"))

    run()


# --- regressions: one per violation the fuzzing found --------------------------------------------------

_PIXEL = (FileSpec("in/img.h5", "img.h5"),)
_PIXEL_ARGS = ("--headless", "--project=project.ilp", "in/img.h5/data")
_OBJECT_INPUTS = (FileSpec("in/raw3c.h5", "raw3c.h5"), FileSpec("in/seg.h5", "seg.h5"), FileSpec("in/pmap.h5", "pmap.h5"))
_SEG_ARGS = ("--headless", "--project=project.ilp", "--raw_data=in/raw3c.h5/data", "--segmentation_image=in/seg.h5/data")
_PRED_ARGS = ("--headless", "--project=project.ilp", "--raw_data=in/raw3c.h5/data", "--prediction_maps=in/pmap.h5/data")
_FOREST = "ObjectClassification/ClassifierForests/Forest0000"
_FEATURES = "ObjectClassification/SelectedFeatures/Standard Object Features"


def _pixel_project(*ops) -> tuple[FileSpec, ...]:
    return (FileSpec("project.ilp", "pixel", tuple(ops)),) + _PIXEL


def _object_project(seed: str, *ops) -> tuple[FileSpec, ...]:
    return (FileSpec("project.ilp", seed, tuple(ops)),) + _OBJECT_INPUTS


def _input(name: str, seed: str, arg: str, *ops, extra: tuple[str, ...] = ()) -> Case:
    return Case("regression", (FileSpec("project.ilp", "pixel"), FileSpec(name, seed, tuple(ops))),
                ("--headless", "--project=project.ilp", *extra, arg))


REGRESSIONS = {
    # project readers: any decoding error of a malformed item is "damaged", one line naming the file
    "object forest group missing an item": (
        Case("regression", _object_project("object_pred", H5Delete(f"{_FOREST}/_options")), _PRED_ARGS),
        "project.ilp' is damaged (KeyError"),
    "object threshold value of the wrong type": (
        Case("regression", _object_project("object_pred", H5Write("ThresholdTwoLevels/MinSize", "xy")), _PRED_ARGS),
        "project.ilp' is damaged (ValueError"),
    "object forest count infinite": (
        Case("regression", _object_project("object_pred", H5Write(f"{_FOREST}/_ext_param/column_count_",
                                                                  np.array([np.inf]))), _PRED_ARGS),
        "is damaged (OverflowError"),
    "object axistags nested beyond recursion": (
        Case("regression", _object_project("object_seg", H5Write("Input Data/infos/lane0000/Raw Data/axistags",
                                                                 "[" * 5000 + "]" * 5000)), _SEG_ARGS),
        "is damaged (RecursionError"),
    "object LabelInputs a dataset": (
        Case("regression", _object_project("object_seg", H5Write("ObjectClassification/LabelInputs", np.zeros(3))),
             _SEG_ARGS),
        "is damaged (AttributeError"),
    "object workflowName a broken link": (
        Case("regression", _object_project("object_seg", H5Link("workflowName", "/", "missing.h5")), _SEG_ARGS),
        "not a Pixel Classification project"),
    "object threshold complex": (
        Case("regression", _object_project("object_pred", H5Write("ThresholdTwoLevels/LowThreshold",
                                                                  np.array(0.5 + 1j, np.complex64))), _PRED_ARGS),
        "is damaged (ComplexWarning"),
    "object margin not numbers": (
        Case("regression", _object_project("object_seg", H5Write(f"ObjectExtraction/Features/Standard Object Features/"
                                                                 "Mean in neighborhood/margin", b"\xc0\xe9")), _SEG_ARGS),
        "margin of 'Mean in neighborhood'"),
    "object smoothing sigma absurd": (
        Case("regression", _object_project("object_pred", H5Poke("ThresholdTwoLevels/SmootherSigma/x", 0, 2.0 ** 30)),
             _PRED_ARGS),
        "not a smoothing sigma"),
    "object training prediction maps without the thresholded channel": (
        Case("regression", _object_project("object_pred", H5Delete("ObjectClassification/ClassifierForests"),
                                           H5Poke("ThresholdTwoLevels/Channel", 0, 2.0)), _PRED_ARGS),
        "have 2 channel(s); the project thresholds channel 2"),
    "object negative threshold channel": (
        Case("regression", _object_project("object_pred", H5Poke("ThresholdTwoLevels/Channel", 0, -1.0)), _PRED_ARGS),
        "ThresholdTwoLevels thresholds channel -1"),
    "object text item of variable-length sequences": (  # its damaged twin crashed HDF5 (SIGSEGV)
        Case("regression", _object_project("object_pred", H5Sequences("Input Data/infos/lane0000/Raw Data/axistags")),
             _PRED_ARGS),
        "holds variable-length sequences"),
    "object labels not whole numbers": (  # cast to uint32 for training: NumPy warned, the classes were garbage
        Case("regression", _object_project("object_seg", H5Write("ObjectClassification/LabelInputs/0000/0",
                                                                 np.array([0, 1, np.nan, -2.0]))), _SEG_ARGS),
        "not one class (a whole number, 0 unlabelled) per object"),
    "object labels as float16": (  # the check itself warned (2**32 overflows float16)
        Case("regression", _object_project("object_seg", H5Write("ObjectClassification/LabelInputs/0000/0",
                                                                 np.array([0, 1, 0, 2, 0, 0, 0], np.float16))),
             _SEG_ARGS), None),
    "object labels of two dimensions": (
        Case("regression", _object_project("object_seg", H5Delete("ObjectClassification/ClassifierForests"),
                                           H5Write("ObjectClassification/LabelInputs/0000/0", np.ones((3, 4), np.uint32))),
             _SEG_ARGS),
        "not one class (a whole number, 0 unlabelled) per object"),
    "object feature no plugin computes": (
        Case("regression", _object_project("object_pred", H5Group(f"{_FEATURES}/block9999")), _PRED_ARGS),
        "the object feature 'block9999'"),
    "object forest and selection disagree": (
        Case("regression", _object_project("object_pred", H5Group("ObjectClassification/SelectedFeatures/"
                                                                  "2D Skeleton Features")), _PRED_ARGS),
        "object classifier expects"),
    "object project selecting no feature": (
        Case("regression", _object_project("object_seg", H5Group("ObjectClassification/SelectedFeatures")),
             _SEG_ARGS + ("--export_source=Object Identities",)), None),
    "pixel LabelSets a dataset": (
        Case("regression", _pixel_project(H5Write("PixelClassification/LabelSets", np.float32(0))), _PIXEL_ARGS),
        "is damaged or not a Pixel Classification project (AttributeError"),
    "pixel selected scale overflowing": (
        Case("regression", _pixel_project(H5Poke("FeatureSelections/Scales", 1.0, 1e300)), _PIXEL_ARGS),
        "FeatureSelections: scale 1e+300 is selected"),
    "train scale overflowing": (
        Case("regression", _PIXEL + (FileSpec("in/labels.h5", "labels.h5"),),
             ("train", "--raw", "in/img.h5/data", "--labels", "in/labels.h5/data", "--output", "new.ilp",
              "--features", "GaussianSmoothing@1e200", "--trees", "2")),
        "the scale must be a positive number below 1e+100", 2),
    "pixel known labels not numbers": (
        Case("regression", _pixel_project(H5Write("PixelClassification/ClassifierForests/known_labels",
                                                  np.array([np.nan, 1.0]))), _PIXEL_ARGS), None),
    "pixel text item of variable-length sequences": (
        Case("regression", _pixel_project(H5Sequences("Input Data/infos/lane0000/Raw Data/filePath")), _PIXEL_ARGS),
        "holds variable-length sequences"),
    "pixel factory asking for no trees": (
        Case("regression", _pixel_project(H5Write("PixelClassification/ClassifierFactory", fh._factory_variant(
            b"_num_trees", b"I-5\n"))), _PIXEL_ARGS[:2] + ("--retrain",) + _PIXEL_ARGS[2:]),
        "its classifier factory asks for -5 trees"),
    "pixel forest labels not class numbers": (
        Case("regression", _pixel_project(H5Write("PixelClassification/ClassifierForests/Forest0000/_ext_param/labels",
                                                  np.array([np.nan, -np.inf], np.float32))), _PIXEL_ARGS),
        "are not class labels"),
    "negative tree count": (
        Case("regression", _pixel_project(), _PIXEL_ARGS[:2] + ("--tree-count=-3",) + _PIXEL_ARGS[2:]),
        "--tree-count must be a number of trees, got -3", 2),
    "pixel stored export format unknown": (  # was reported as the user's --output_format
        Case("regression", _pixel_project(H5Write("Prediction Export/OutputFormat", "[[]]")), _PIXEL_ARGS),
        "project.ilp': its stored export format '[[]]' is not a known format", 2),
    "pixel stored file name with an unknown placeholder": (
        Case("regression", _pixel_project(H5Write("Prediction Export/OutputFilenameFormat", "{nickname!r}_{foo}")),
             _PIXEL_ARGS),
        "project.ilp': its stored output_filename_format '{nickname!r}_{foo}': unknown placeholder {foo}", 2),
    "pixel forest topology complex": (
        Case("regression", _pixel_project(H5Write("PixelClassification/ClassifierForests/Forest0000/Tree_00/topology",
                                                  np.arange(46).astype(np.complex64))), _PIXEL_ARGS),
        "topology of complex64, not integers"),
    # inputs: a reader library's own error on damaged bytes is one line naming the input
    "tiff truncated": (_input("in/img.tif", "img.tif", "in/img.tif", Truncate(0.5)), "in/img.tif'"),
    "tiff header declares more pixels than it holds": (
        _input("in/img.tif", "img.tif", "in/img.tif", TiffTag(256, 2 ** 30), extra=("--export_source=Labels",)),
        "its TIFF header declares 1073741824 x 40 pixels"),
    "tiff decodes to another shape": (
        _input("in/img.tif", "img.tif", "in/img.tif", TiffTag(277, 3)), "in/img.tif'"),
    "zarr chunk not zstd": (
        _input("in/img.zarr", "img.zarr", "in/img.zarr", InFile("0.0", Overwrite(b"\x00" * 10))),
        "cannot read [0:40, 0:40] (RuntimeError: Zstd decompression error"),
    "zarr chunks not blosc": (
        _input("in/img.zarr", "img.zarr", "in/img.zarr", JsonSet(".zarray", ("compressor",), {
            "id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0})),
        "cannot read [0:40, 0:40] (RuntimeError: error during blosc decompression"),
    "hdf5 input of absurd declared size": (
        _input("in/img.h5", "img.h5", "in/img.h5/data", H5Write("data", HugeDataset((2 ** 31, 2 ** 31)))),
        "blocks of"),
    "zarr input of absurd declared size": (
        _input("in/img.zarr", "img.zarr", "in/img.zarr", JsonSet(".zarray", ("shape",), [2 ** 40, 2 ** 40])),
        "is its declared shape"),
    "empty input": (_input("in/img.h5", "img.h5", "in/img.h5/data", Rewrite(np.zeros((0, 40), np.uint8)),
                           extra=("--export_source=Labels",)), "the image is empty (shape (0, 40))"),
    "file of another format named .png": (_input("in/img.png", "img.png", "in/img.png", Overwrite(b"\x89HDF\r\n\x1a\n"),
                                                extra=("--export_source=Labels",)), "in/img.png'"),
    "complex input": (_input("in/img.h5", "img.h5", "in/img.h5/data", Rewrite(np.ones((40, 40), np.complex64))),
                      "complex numbers (complex64) are not an image"),
    # command line
    "log file in a missing folder": (
        Case("regression", _PIXEL + (FileSpec("project.ilp", "pixel"),),
             ("--headless", "--project=project.ilp", "--logfile=nowhere/log.txt", "in/img.h5/data")),
        "--logfile 'nowhere/log.txt': cannot write it (No such file or directory)"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzz_regression(name, seeds, workdir):
    """The case fails with exit status 1 (or the one given), one line with the expected words, nothing
    left behind (or, where ``words`` is None, succeeds)."""
    case, words, *status = REGRESSIONS[name]
    result = fh.evaluate(case, seeds, workdir, "inprocess", timeout=30)
    _check(result)
    if words is None:  # a valid case that used to fail
        assert result.outcome.code == 0, fh.report(result)
        return
    assert result.outcome.code == (status[0] if status else 1), fh.report(result)
    assert words in result.outcome.stderr, fh.report(result)


def test_fuzz_damaged_hdf5_project_bytes_never_crash(seeds, workdir):
    """Flipped and truncated bytes of a project, in a forked child: exit 1 with one line, no signal."""
    for op in (FlipBytes(((0.3, 0xFF), (0.31, 0x0F), (0.5, 0x55))), Truncate(0.6), Overwrite(b"\x89HDF\r\n\x1a\n")):
        _check(fh.evaluate(Case("regression", _pixel_project(op), _PIXEL_ARGS, isolate=True), seeds, workdir, "fork"))


def test_fuzz_crafted_pickles_are_never_executed(seeds, workdir):
    """Every crafted pickle in the classifier factory is refused or read inert; none creates PWNED."""
    for payload in fh._crafted_pickles():
        case = Case("regression", _pixel_project(H5Write("PixelClassification/ClassifierFactory", payload)), _PIXEL_ARGS)
        _check(fh.evaluate(case, seeds, workdir, "inprocess"))
