"""Shared fixtures: the ilastik reference data in ../shared/data/ilastik (never copied here)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ilastik"))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def data():
    """The reference data; the session fails if any test added, changed or removed a file there."""
    if not (DATA / "projects").is_dir():
        pytest.skip(f"ilastik reference data not found at {DATA} (set GPUHEADLESS_TEST_DATA)")
    before = _snapshot(DATA)
    yield DATA
    after = _snapshot(DATA)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests modified the shared reference data in {DATA}: {changed}"


@pytest.fixture
def project_copy(data: Path, tmp_path: Path):
    """Copy a project next to a symlink ``inputdata -> <data>/inputs`` so its training data resolves."""

    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copyfile(data / "projects" / name, target)
        link = tmp_path / "inputdata"
        if not link.exists():
            link.symlink_to(data / "inputs")
        return target

    return make


@pytest.fixture(scope="session")
def stored_forest(data: Path):
    """The eight vigra forests (100 trees) of PixelClassification2d.ilp as one Forest."""
    import h5py

    from gpuheadless.project.vigra_forest import read_vigra_forests

    with h5py.File(data / "projects" / "PixelClassification2d.ilp", "r") as f:
        g = f["PixelClassification/ClassifierForests"]
        return read_vigra_forests([g[k] for k in sorted(g) if k.startswith("Forest")])
