"""Live: projects built with ilastik's own Python API, run by ilastik and by gpuheadless.

The projects are made as ilastik's own tests make them (HeadlessShell, a blank project from
ProjectManager, the feature selection set on the operator, labels written into the label
slot, the classifier trained by ilastik and the project saved), with settings only the API
allows: Structure Tensor Eigenvalues and every derivative at scale 0.3, odd scales, in-2D
scales on 3D data, nine classes, a time series. ilastik's API also stores LabelColors and
PmapColors as a 1-element float64 array. Both programs then export Probabilities and Features
for the training image and an unseen one: equal bit for bit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpuheadless.io.ilastik_layout import axistags_json

from .ilastik_runner import run_gpuheadless, run_ilastik, run_ilastik_python
from .synthetic import class_image, scribbles, truth_map

IDS = ["GaussianSmoothing", "LaplacianOfGaussian", "StructureTensorEigenvalues", "HessianOfGaussianEigenvalues",
       "GaussianGradientMagnitude", "DifferenceOfGaussians"]  # the row order of ilastik's own test


@dataclass(frozen=True)
class ApiCase:
    """One project built with ilastik's API."""

    name: str
    shape: tuple[int, ...]  # spatial (and t) axes, in ``axes`` order without c
    axes: str  # the data's axes, c last
    channels: int
    n_classes: int
    scales: tuple[float, ...]
    matrix: tuple[tuple[bool, ...], ...]  # rows: IDS
    in_2d: tuple[bool, ...] | None  # None: left to ilastik (2D data: all True)


def _rows(*selected: tuple[int, ...]) -> tuple[tuple[bool, ...], ...]:
    """Selection rows from the selected column indices of each feature (IDS order)."""
    width = max((c for cols in selected for c in cols), default=0) + 1
    return tuple(tuple(c in cols for c in range(width)) for cols in selected)


_T, _F = True, False
CASES = [
    # ilastik's own test selection (GS, LoG and ST at 0.3), plus the Hessian at 1.0 and DoG at 3.5.
    ApiCase("2d-structure-tensor-0.3", (60, 70), "yxc", 1, 2, (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0),
            _rows((0,), (0,), (0,), (2,), (), (4,)), None),
    ApiCase("3d-odd-scales-in-2d", (20, 40, 44), "zyxc", 1, 3, (0.3, 0.45, 1.3, 2.2, 4.0),
            _rows((0, 2), (1, 3), (0, 1, 4), (2,), (0, 3), (4,)), (_F, _T, _F, _T, _F)),
    ApiCase("2d-3c-nine-classes-every-feature-at-0.3", (50, 60), "yxc", 3, 9, (0.3, 1.0, 2.5),
            _rows((0, 1, 2), (0, 1, 2), (0, 1, 2), (0, 1, 2), (0, 1, 2), (0, 1, 2)), None),
    ApiCase("5t-2d-2c-time-series", (4, 40, 45), "tyxc", 2, 2, (0.3, 0.7, 1.6),
            _rows((0, 2), (1,), (0, 2), (1,), (2,), (0,)), None),
    ApiCase("3d-2c-mixed-2d-3d", (16, 36, 36), "zyxc", 2, 4, (0.3, 0.7, 1.0, 1.6, 3.5),
            _rows((0, 4), (2,), (0, 3), (1, 4), (2,), (3,)), (_T, _F, _T, _F, _F)),
]

_BUILD = r"""
import json
import numpy as np
from ilastik.shell.projectManager import ProjectManager
from ilastik.shell.headless.headlessShell import HeadlessShell
from ilastik.workflows.pixelClassification import PixelClassificationWorkflow
from ilastik.applets.dataSelection.opDataSelection import FilesystemDatasetInfo

for spec in json.loads(SPECS):
    shell = HeadlessShell()
    ProjectManager.createBlankProjectFile(spec["project"], PixelClassificationWorkflow, []).close()
    shell.openProjectFile(spec["project"])
    workflow = shell.workflow
    info = FilesystemDatasetInfo(filePath=spec["data"], project_file=shell.projectManager.currentProjectFile)
    selection = workflow.dataSelectionApplet.topLevelOperator
    selection.DatasetGroup.resize(1)
    selection.DatasetGroup[0][0].setValue(info)
    features = workflow.featureSelectionApplet.topLevelOperator
    features.Scales.setValue(spec["scales"])
    features.FeatureIds.setValue(spec["ids"])
    features.SelectionMatrix.setValue(np.array(spec["matrix"]))
    if spec["in_2d"] is not None:
        features.ComputeIn2d.setValue(spec["in_2d"])
    pc = workflow.pcApplet.topLevelOperator
    pc.LabelNames.setValue(spec["names"])
    slot = pc.LabelInputs[0]
    keys = "".join(slot.meta.getAxisKeys())
    labels = np.load(spec["labels"])
    given = spec["axes"]
    labels = np.transpose(labels, [given.index(k) for k in keys if k in given])
    labels = labels.reshape([1 if k == "c" else n for k, n in zip(keys, slot.meta.shape)])
    for value in range(1, len(spec["names"]) + 1):  # one box per class, as a user would paint
        where = np.argwhere(labels == value)
        box = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0)))
        slot[box] = labels[box]
    pc.FreezePredictions.setValue(False)
    _ = pc.Classifier.value
    shell.projectManager.saveProject()
    shell.closeCurrentProject()
print("BUILT", len(json.loads(SPECS)))
"""


def _write(path: Path, image: np.ndarray, axes: str) -> str:
    """An HDF5 dataset with vigra axistags, so both programs read ``axes`` (e.g. t, not z)."""
    with h5py.File(path, "w") as f:
        f["data"] = image
        f["data"].attrs["axistags"] = axistags_json(axes)
    return f"{path}/data"


@pytest.fixture(scope="module")
def built(ilastik, tmp_path_factory):
    """Every case: its data, and its project built and trained by ilastik's API."""
    root = tmp_path_factory.mktemp("api_live")
    specs, made = [], {}
    for seed, case in enumerate(CASES):
        rng = np.random.default_rng(100 + seed)
        folder = root / case.name
        folder.mkdir()
        truth = truth_map(rng, case.shape, case.n_classes)
        data = _write(folder / "train.h5", class_image(rng, truth, case.channels), case.axes)
        unseen = _write(folder / "unseen.h5", class_image(rng, truth_map(rng, case.shape, case.n_classes), case.channels),
                        case.axes)
        labels = scribbles(rng, truth, dense=False)[..., None]
        np.save(folder / "labels.npy", labels)
        names = [f"Label {k}" for k in range(1, case.n_classes + 1)]
        specs.append({"project": str(folder / "project.ilp"), "data": data, "labels": str(folder / "labels.npy"),
                      "axes": case.axes, "scales": list(case.scales), "ids": IDS,
                      "matrix": [list(r) + [False] * (len(case.scales) - len(r)) for r in case.matrix],
                      "in_2d": None if case.in_2d is None else list(case.in_2d), "names": names})
        made[case.name] = {"project": folder / "project.ilp", "inputs": [data, unseen], "folder": folder}
    done = run_ilastik_python(f"SPECS = {json.dumps(json.dumps(specs))}\n" + _BUILD, root)
    assert done.returncode == 0 and "BUILT" in done.stdout, done.output[-4000:]
    return made


def test_api_projects_store_colours_as_ilastik_does(built):
    """The layout detail gpuheadless once refused: empty colour lists as 1-element float64."""
    for job in built.values():
        with h5py.File(job["project"], "r") as f:
            for key in ("LabelColors", "PmapColors"):
                stored = f["PixelClassification"][key]
                assert stored.dtype == np.float64 and stored.shape == (1,), (key, stored.dtype, stored.shape)


@pytest.mark.parametrize("source", ["Probabilities", "Features"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_programs_export_the_same(case, source, built):
    job = built[case.name]
    folder: Path = job["folder"]
    outputs = {}
    for who, runner in (("ilastik", run_ilastik), ("ours", run_gpuheadless)):
        target = folder / f"{who}-{source}"
        args = [f"--project={job['project']}", f"--export_source={source}", "--output_format=hdf5",
                f"--output_filename_format={target}/{{nickname}}.h5", *job["inputs"]]
        done = runner(args if who == "ilastik" else ["--headless", *args], folder)
        assert done.returncode == 0, f"{who} failed on {case.name}:\n{done.output[-3000:]}"
        outputs[who] = {}
        for path in sorted(target.glob("*.h5")):
            with h5py.File(path, "r") as f:
                outputs[who][path.stem] = f["exported_data"][()]
    assert sorted(outputs["ours"]) == sorted(outputs["ilastik"]) and len(outputs["ours"]) == 2
    for name, theirs in outputs["ilastik"].items():
        ours = outputs["ours"][name]
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (name, ours.shape, theirs.shape)
        bad = ours != theirs
        if bad.any():
            channels = sorted({int(c) for c in np.nonzero(bad)[-1]})
            raise AssertionError(f"{case.name} {source} {name}: {int(bad.sum())} of {bad.size} values differ, "
                                 f"channels {channels[:20]}")

