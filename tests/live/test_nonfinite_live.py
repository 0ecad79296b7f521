"""NaN and infinities in floating-point inputs, side by side with the real ilastik (issue 15).

Each case spoils a float32 copy of a shared input with NaN, +inf and -inf, runs both programs
(ilastik at one thread: reproducible) and compares every value, NaN where NaN. Where ilastik
1.4.2 stops (a NaN inside an object of the raw data: vigra's eigensystem refuses it), gpuheadless
goes on and says so in one line: that case pins the difference.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from .ilastik_runner import run_gpuheadless, run_ilastik

OBJECTS = "projects/ObjectClassification5t3d2c_wPred_tablecsv.ilp"


@pytest.fixture(scope="module")
def workspace(data: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nonfinite")
    (root / "projects").mkdir()
    for name in ("PixelClassification2d.ilp", "PixelClassification3d.ilp", Path(OBJECTS).name):
        shutil.copyfile(data / "projects" / name, root / "projects" / name)
    (root / "projects/inputdata").symlink_to(data / "inputs")
    (root / "inputs").symlink_to(data / "inputs")
    (root / "reference").mkdir()  # where the object project's stored table settings write its table
    rng = np.random.default_rng(15)

    def spoiled(name: str, key: str, target: str, where=None) -> None:
        with h5py.File(data / "inputs" / name, "r") as f:
            values = f[key][()].astype(np.float32)
        picks = where(values) if where is not None else np.argwhere(np.ones(values.shape, bool))
        chosen = picks[rng.choice(len(picks), 30, replace=False)]
        for k, position in enumerate(chosen):
            values[tuple(position)] = (np.nan, np.inf, -np.inf)[k % 3]
        with h5py.File(root / target, "w") as f:
            f[key] = values

    spoiled("2d.h5", "data", "2d.h5")
    spoiled("3d.h5", "data", "3d.h5")
    spoiled("5t3d2c_Probabilities.h5", "exported_data", "maps.h5", lambda v: np.argwhere(v[..., 0] > 0.5))
    with h5py.File(data / "reference/ObjectClassification5t3d2c_wPred__5t3d2c__Object_Identities.h5", "r") as f:
        objects = f["exported_data"][()][..., 0] > 0
    far = ~_dilate(objects, 3)
    near = _dilate(objects, 1) & ~objects  # background within the neighbourhood features' reach
    spoiled("5t3d2c.h5", "data", "raw_far.h5", lambda v: np.argwhere(far[..., None] & np.ones(v.shape, bool)))
    spoiled("5t3d2c.h5", "data", "raw_near.h5", lambda v: np.argwhere(near[..., None] & np.ones(v.shape, bool)))
    spoiled("5t3d2c.h5", "data", "raw_inside.h5", lambda v: np.argwhere(objects[..., None] & np.ones(v.shape, bool)))
    return root


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros_like(mask)
    for t in range(mask.shape[0]):
        out[t] = ndimage.binary_dilation(mask[t], iterations=steps)
    return out


def _values(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["exported_data"][()]


def _assert_identical(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, what
    np.testing.assert_array_equal(ours, theirs, err_msg=what)  # NaN equals NaN here


def _both(workspace: Path, args: list[str], name: str, table: bool = False) -> tuple[Path, Path, str]:
    """Both programs on ``args``; their outputs (and with ``table`` their tables) named by program."""
    theirs, ours = workspace / f"ilastik_{name}.h5", workspace / f"ours_{name}.h5"
    extra = {p: [f"--table_filename={workspace}/{p}_{name}.csv"] if table else [] for p in ("ilastik", "ours")}
    done = run_ilastik([*args, *extra["ilastik"], f"--output_filename_format={theirs}"], workspace)
    assert done.returncode == 0, done.output[-3000:]
    mine = run_gpuheadless(["--headless", *args, *extra["ours"], f"--output_filename_format={ours}"], workspace)
    assert mine.returncode == 0, mine.output
    assert "Traceback" not in mine.stderr and "RuntimeWarning" not in mine.stderr, mine.stderr
    return theirs, ours, mine.stderr


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("source", ["Probabilities", "Simple Segmentation", "Uncertainty", "Features"])
def test_pixel_classification(ilastik, workspace: Path, dims: str, source: str):
    theirs, ours, err = _both(workspace, [f"--project=projects/PixelClassification{dims}.ilp",
                                          f"--export_source={source}", f"{dims}.h5/data"], f"{dims}_{source}")
    assert sum("NaN or infinite" in line for line in err.splitlines()) == 1, err
    _assert_identical(_values(ours), _values(theirs), f"{dims} {source}")


@pytest.mark.parametrize("source", ["Object Identities", "Object Predictions", "Object Probabilities"])
def test_objects_with_nan_in_the_prediction_maps(ilastik, workspace: Path, source: str):
    theirs, ours, _ = _both(workspace, [f"--project={OBJECTS}", "--raw_data=inputs/5t3d2c.h5/data",
                                        "--prediction_maps=maps.h5/exported_data", f"--export_source={source}"],
                            f"maps_{source}")
    _assert_identical(_values(ours), _values(theirs), source)


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("raw", ["raw_far", "raw_near"])
def test_objects_with_nan_in_the_raw_background(ilastik, workspace: Path, raw: str):
    """NaN outside the objects: near them it enters the "in neighborhood" features (vigra's
    minimum and maximum pass over it); every table cell and image value equals ilastik's."""
    args = [f"--project={OBJECTS}", f"--raw_data={raw}.h5/data",
            "--prediction_maps=inputs/5t3d2c_Probabilities.h5/exported_data"]
    theirs, ours, _ = _both(workspace, args, raw, table=True)
    _assert_identical(_values(ours), _values(theirs), raw)
    ilastik_rows, our_rows = _table(workspace / f"ilastik_{raw}_table.csv"), _table(workspace / f"ours_{raw}_table.csv")
    assert len(our_rows) == len(ilastik_rows) > 0
    assert sorted(our_rows[0]) == sorted(ilastik_rows[0])
    differ = [(i, k) for i, row in enumerate(ilastik_rows) for k in row if row[k] != our_rows[i][k]]
    assert not differ, differ[:10]
    if raw == "raw_near":
        assert any(row[k] == "nan" for row in ilastik_rows for k in row if "neighborhood" in k)


def test_objects_with_nan_inside_objects_ilastik_stops_we_say_so(ilastik, workspace: Path):
    args = [f"--project={OBJECTS}", "--raw_data=raw_inside.h5/data",
            "--prediction_maps=inputs/5t3d2c_Probabilities.h5/exported_data"]
    done = run_ilastik([*args, f"--output_filename_format={workspace}/ilastik_inside.h5"], workspace)
    assert done.returncode != 0 and "symmetric input matrix required" in done.output
    mine = run_gpuheadless(["--headless", *args, f"--output_filename_format={workspace}/ours_inside.h5"], workspace)
    assert mine.returncode == 0, mine.output
    lines = [line for line in mine.stderr.splitlines() if "NaN or infinite" in line]
    assert len(lines) == 1 and "raw_inside.h5/data" in lines[0] and "stops" in lines[0], mine.stderr
    assert _values(workspace / "ours_inside.h5").max() > 0
