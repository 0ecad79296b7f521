"""Object Classification side by side with the real ilastik on generated volumes (issue 13, item 6).

Each case writes a volume of at least 1,000 objects (blobs of varied shapes, sizes and intensities
in two channels, fixed seed), runs one of ilastik's own projects on it with ilastik and with
gpuheadless, and compares the images voxel by voxel and the object tables cell by cell (columns
matched by name: ilastik's column order depends on Python's hash seed).
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from .ilastik_runner import run_gpuheadless, run_ilastik

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ilastik"
if not DATA.exists():
    DATA = Path(os.environ.get("ILASTIK_DATA", "/work/shared/data/ilastik"))


def blob_volume(shape: tuple[int, int, int, int], cell: tuple[int, int, int], seed: int) -> np.ndarray:
    """One blob per grid cell, numbered 1..n, none touching another.

    Parameters
    ----------
    shape : (t, z, y, x)
    cell : (z, y, x) cell size; a z cell of 1 makes 2D blobs.
    seed : int

    Returns
    -------
    (t, z, y, x) int32
        Each blob is an ellipsoid, or two overlapping ones (bent and dumbbell shapes), of random
        radii and position inside its cell, one voxel clear of the cell's faces.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    counts = [s // c for s, c in zip(shape[1:], cell)]
    grids = np.indices(cell, dtype=np.float64)
    n = 0
    for t in range(shape[0]):
        for index in np.ndindex(*counts):
            mask = np.zeros(cell, bool)
            for _ in range(1 + int(rng.random() < 0.3)):
                radii = [rng.uniform(0.2, 0.32) * c if c > 1 else 1.0 for c in cell]
                centre = [rng.uniform(r + 1, c - r - 2) if c > 1 else 0.0 for r, c in zip(radii, cell)]
                mask |= sum(((g - m) / r) ** 2 for g, m, r in zip(grids, centre, radii)) <= 1.0
            n += 1
            corner = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, cell))
            labels[(t,) + corner][mask] = n
    return labels


def object_inputs(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw data and prediction maps for blobs ``labels`` (t, z, y, x).

    Returns
    -------
    raw : (t, z, y, x, 2) uint8
        Per blob a random brightness in each channel, plus noise.
    probabilities : (t, z, y, x, 2) float32
        Channel 0 the blurred blobs with noise (so the project's smoothing and threshold decide
        voxels near the edges), channel 1 its complement.
    """
    rng = np.random.default_rng(seed)
    n = int(labels.max())
    brightness = rng.uniform(60, 200, (n + 1, 2))
    brightness[0] = 20
    raw = brightness[labels] + rng.normal(0, 12, labels.shape + (2,))
    raw = np.clip(raw, 0, 255).astype(np.uint8)
    inside = (labels > 0).astype(np.float64)
    blurred = np.stack([ndimage.gaussian_filter(inside[t], 0.8) for t in range(len(labels))])
    p0 = np.clip(blurred * 0.97 + rng.normal(0, 0.04, labels.shape), 0, 1).astype(np.float32)
    return raw, np.stack([p0, 1 - p0], axis=-1)


def _write(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data, chunks=True)


def _read(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["exported_data"][...]


def _table(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {name: [row[i] for row in rows[1:]] for i, name in enumerate(rows[0])}


def compare_tables(ours: dict[str, list[str]], theirs: dict[str, list[str]]) -> tuple[int, list[str]]:
    """Cells compared and the differing ones (``column[row]: ours != theirs``), columns by name."""
    assert sorted(ours) == sorted(theirs), set(ours) ^ set(theirs)
    compared, differing = 0, []
    for name in sorted(theirs):
        assert len(ours[name]) == len(theirs[name]), name
        for row, (a, b) in enumerate(zip(ours[name], theirs[name])):
            compared += 1
            if a != b:
                differing.append(f"{name}[{row}]: {a} != {b}")
    return compared, differing


def _both(args: list[str], cwd: Path) -> tuple[Path, Path]:
    """Run ``args`` with ilastik and with gpuheadless; ``{out}`` in an argument names each one's
    own output folder (returned: ilastik's, ours)."""
    folders = []
    for who, run in (("ilastik", run_ilastik), ("ours", lambda a, c: run_gpuheadless(["--headless", *a], c))):
        folder = cwd / who
        folder.mkdir(exist_ok=True)
        done = run([arg.replace("{out}", str(folder)) for arg in args], cwd)
        assert done.returncode == 0, f"{who} failed:\n{done.output[-3000:]}"
        folders.append(folder)
    return folders[0], folders[1]


def compare_images(theirs: Path, ours: Path) -> int:
    """Voxels compared (the images must be equal)."""
    a, b = _read(theirs), _read(ours)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    differing = int(np.count_nonzero(a != b))
    assert differing == 0, f"{theirs.name}: {differing} of {a.size} voxels differ"
    return a.size


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch folder with copies of the projects and ``inputdata`` pointing at the shared inputs."""
    (tmp_path / "inputdata").symlink_to(DATA / "inputs")
    return tmp_path


def test_prediction_maps_3d_time_series(ilastik, workdir):
    """``ObjectClassification5t3d2c_wPred_tablecsv.ilp`` (smoothing, threshold 0.7, size filter,
    20 features incl. principal axes and channel covariance, stored forest) on 2 x 20 x 360 x 360."""
    labels = blob_volume((2, 20, 360, 360), (10, 18, 18), seed=13)
    raw, probabilities = object_inputs(labels, seed=14)
    _write(workdir / "raw.h5", "data", raw)
    _write(workdir / "pmaps.h5", "exported_data", probabilities)
    project = workdir / "oc.ilp"
    shutil.copy(DATA / "projects" / "ObjectClassification5t3d2c_wPred_tablecsv.ilp", project)
    inputs = [f"--project={project}", "--raw_data=raw.h5/data", "--prediction_maps=pmaps.h5/exported_data",
              "--output_format=hdf5"]
    theirs, ours = _both(inputs + ["--export_source=Object Identities", "--table_filename={out}/table.csv",
                                   "--output_filename_format={out}/ids.h5"], workdir)
    ids = _read(theirs / "ids.h5")
    n_objects = int(sum(ids[t].max() for t in range(len(ids))))
    assert n_objects >= 1000, n_objects
    voxels = compare_images(theirs / "ids.h5", ours / "ids.h5")
    cells, differing = compare_tables(_table(ours / "table_table.csv"), _table(theirs / "table_table.csv"))
    assert not differing, f"{len(differing)} of {cells} cells differ: {differing[:20]}"
    theirs, ours = _both(inputs + ["--export_source=Object Probabilities", "--output_filename_format={out}/p.h5",
                                   "--table_filename={out}/again.csv"],
                         workdir)
    voxels += compare_images(theirs / "p.h5", ours / "p.h5")
    print(f"3D time series: {n_objects} objects, {voxels} voxels and {cells} table cells equal")
