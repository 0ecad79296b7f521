"""Build the Autocontext test data of tests/data/autocontext with a real ilastik 1.4.2.

Each project is made as ilastik's own tests make projects (HeadlessShell, a blank project of
the Autocontext workflow, each stage's feature selection set on its operator, labels written
into each stage's label slot, the last stage's classifier requested so ilastik trains every
stage in turn, the project saved). ilastik then exports every source listed in CASES from the
training image and from an unseen one; those files are the references tests/test_autocontext.py
compares gpuheadless with, and MANIFEST.md records the exact commands.

    ILASTIK=/path/to/run_ilastik python bench/make_autocontext_data.py

ilastik 1.4.2 defines its 3- and 4-stage workflows in debug mode only (whose other imports need
packages a plain build lacks): the builder registers the same two classes and runs ilastik's own
headless entry point.

Rerunning replaces the folder's contents (the images are generated from fixed seeds; ilastik's
forests are not reproducible, so the projects and references change together).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET = REPO / "tests" / "data" / "autocontext"
sys.path.insert(0, str(REPO / "tests"))

from live.ilastik_runner import (AUTOCONTEXT_STAGES_PRELUDE, ilastik_command,  # noqa: E402
                                 run_ilastik_headless_with_stages, run_ilastik_python)
from live.synthetic import class_image, scribbles, truth_map  # noqa: E402

from gpuheadless.io.ilastik_layout import axistags_json  # noqa: E402

IDS = ["GaussianSmoothing", "LaplacianOfGaussian", "StructureTensorEigenvalues", "HessianOfGaussianEigenvalues",
       "GaussianGradientMagnitude", "DifferenceOfGaussians"]
WORKFLOWS = {2: "AutocontextTwoStage", 3: "AutocontextThreeStage"}


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]  # without c, in ``axes`` order
    axes: str  # c last
    channels: int
    dtype: str
    classes: tuple[int, ...]  # per stage
    scales: tuple[float, ...]
    matrices: tuple[tuple[tuple[int, ...], ...], ...]  # per stage: selected scale indices per IDS row
    sources: tuple[str, ...]


CASES = [
    Case("two-stage-2d", (96, 110), "yxc", 1, "uint8", (2, 3), (0.7, 1.6, 3.5),
         (((0, 1), (1,), (), (0, 2), (1,), ()), ((0, 2), (), (1,), (1,), (0,), (2,))),
         ("Probabilities All Stages", "Simple Segmentation Stage 2", "Uncertainty Stage 1", "Features Stage 2")),
    Case("three-stage-3d", (24, 40, 44), "zyxc", 1, "uint8", (2, 2, 3), (0.7, 1.6),
         (((0, 1), (1,), (), (0,), (), ()), ((0,), (1,), (), (), (1,), ()), ((1,), (), (0,), (), (), (1,))),
         ("Probabilities All Stages", "Simple Segmentation Stage 3", "Uncertainty Stage 2")),
    Case("two-stage-2d-2c-float", (80, 90), "yxc", 2, "float32", (3, 2), (1.0, 2.5),
         (((0, 1), (0,), (1,), (), (), ()), ((0,), (), (), (0, 1), (1,), ())),
         ("Probabilities All Stages", "Simple Segmentation Stage 2", "Features Stage 2")),
]

_BUILD = r"""
import json
import numpy as np
from ilastik.shell.projectManager import ProjectManager
from ilastik.shell.headless.headlessShell import HeadlessShell
from ilastik.workflows.newAutocontext import newAutocontextWorkflow as workflows
from ilastik.applets.dataSelection.opDataSelection import FilesystemDatasetInfo

for spec in json.loads(SPECS):
    shell = HeadlessShell()
    workflow_class = {"AutocontextThreeStage": AutocontextThreeStage}.get(spec["workflow"]) or getattr(workflows, spec["workflow"])
    ProjectManager.createBlankProjectFile(spec["project"], workflow_class, []).close()
    shell.openProjectFile(spec["project"])
    workflow = shell.workflow
    info = FilesystemDatasetInfo(filePath=spec["data"], project_file=shell.projectManager.currentProjectFile)
    selection = workflow.dataSelectionApplet.topLevelOperator
    selection.DatasetGroup.resize(1)
    selection.DatasetGroup[0][0].setValue(info)
    for stage, matrix in enumerate(spec["matrices"]):
        features = workflow.featureSelectionApplets[stage].topLevelOperator
        features.Scales.setValue(spec["scales"])
        features.FeatureIds.setValue(spec["ids"])
        features.SelectionMatrix.setValue(np.array(matrix))
        pc = workflow.pcApplets[stage].topLevelOperator
        pc.LabelNames.setValue(spec["names"][stage])
        slot = pc.LabelInputs[0]
        keys = "".join(slot.meta.getAxisKeys())
        labels = np.load(spec["labels"][stage])
        given = spec["axes"]
        labels = np.transpose(labels, [given.index(k) for k in keys if k in given])
        labels = labels.reshape([1 if k == "c" else n for k, n in zip(keys, slot.meta.shape)])
        for value in range(1, len(spec["names"][stage]) + 1):
            where = np.argwhere(labels == value)
            box = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0)))
            slot[box] = labels[box]
    for pc_applet in workflow.pcApplets:
        pc_applet.topLevelOperator.FreezePredictions.setValue(False)
    _ = workflow.pcApplets[-1].topLevelOperator.Classifier.value
    shell.projectManager.saveProject()
    shell.closeCurrentProject()
print("BUILT", len(json.loads(SPECS)))
"""


def _write(path: Path, image: np.ndarray, axes: str) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = image
        f["data"].attrs["axistags"] = axistags_json(axes)


def _image(rng: np.random.Generator, truth: np.ndarray, case: Case) -> np.ndarray:
    image = class_image(rng, truth, case.channels)
    if case.dtype == "float32":
        return (image.astype(np.float32) / 255).astype(np.float32)
    return image.astype(case.dtype)


def main() -> int:
    if ilastik_command() is None:
        print("set ILASTIK to ilastik's launcher (../shared/tools/build-ilastik.sh builds one)")
        return 2
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    scratch = TARGET / "labels"
    scratch.mkdir()
    specs = []
    for seed, case in enumerate(CASES):
        rng = np.random.default_rng(1900 + seed)
        truth = truth_map(rng, case.shape, max(case.classes))
        _write(TARGET / f"{case.name}.h5", _image(rng, truth, case), case.axes)
        _write(TARGET / f"{case.name}-unseen.h5", _image(rng, truth_map(rng, case.shape, max(case.classes)), case), case.axes)
        label_files = []
        for stage, classes in enumerate(case.classes):
            stage_truth = np.minimum(truth, classes - 1)  # fewer classes in some stages, as users do
            labels = scribbles(rng, stage_truth, dense=False)[..., None]
            np.save(scratch / f"{case.name}-{stage}.npy", labels)
            label_files.append(str(scratch / f"{case.name}-{stage}.npy"))
        width = len(case.scales)
        specs.append({
            "project": str(TARGET / f"{case.name}.ilp"), "workflow": WORKFLOWS[len(case.classes)],
            "data": f"{case.name}.h5/data", "axes": case.axes, "scales": list(case.scales), "ids": IDS,
            "matrices": [[[c in row for c in range(width)] for row in matrix] for matrix in case.matrices],
            "names": [[f"Label {k}" for k in range(1, n + 1)] for n in case.classes], "labels": label_files,
        })
    built = run_ilastik_python(AUTOCONTEXT_STAGES_PRELUDE + f"SPECS = {json.dumps(json.dumps(specs))}\n" + _BUILD, TARGET)
    if built.returncode != 0 or "BUILT" not in built.stdout:
        print(built.output[-4000:])
        return 1
    shutil.rmtree(scratch)
    rows = []
    for case in CASES:
        # every source on the training image; the probabilities of all stages on the unseen one
        for image, sources in ((f"{case.name}.h5/data", case.sources),
                               (f"{case.name}-unseen.h5/data", ("Probabilities All Stages",))):
            for source in sources:
                out = f"reference/{Path(image.split('.h5')[0]).name}__{source.replace(' ', '_')}.h5"
                args = [f"--project={case.name}.ilp", f"--export_source={source}", f"--output_filename_format={out}",
                        image]
                done = run_ilastik_headless_with_stages(args, TARGET)
                if done.returncode != 0:
                    print(done.output[-3000:])
                    return 1
                with h5py.File(TARGET / out, "r") as f:
                    data = f["exported_data"]
                    rows.append((out, case.name, image, source, data.shape, str(data.dtype), shlex.join(args)))
    _manifest(rows)
    print(f"wrote {len(rows)} references for {len(CASES)} projects into {TARGET}")
    return 0


def _manifest(rows) -> None:
    version = run_ilastik_python("import ilastik; print(ilastik.__version__)", TARGET).stdout.strip()
    lines = [
        "# Autocontext test data: projects built and outputs written by a real ilastik",
        "",
        f"Made by `bench/make_autocontext_data.py` with ilastik {version} (`LAZYFLOW_THREADS=1`, so its forests'",
        "votes add up in a fixed order). The projects were built with ilastik's Python API (HeadlessShell,",
        "a blank project of the workflow, feature selection and labels set per stage, the last stage's",
        "classifier requested so ilastik trained every stage, the project saved); the images are",
        "synthetic (fixed seeds). `tests/test_autocontext.py` runs gpuheadless on the same command lines",
        "and compares every file: bit-identical. ilastik 1.4.2 defines its 3-stage workflow only in debug",
        "mode, whose other imports need packages a plain build lacks; the builder registers the same class",
        "(`AutocontextThreeStage`, as ilastik writes it) and calls ilastik's own headless entry point.",
        "",
        "| file | project | image | export source | shape | dtype | ilastik command (run in this folder) |",
        "|---|---|---|---|---|---|---|",
    ]
    for out, project, image, source, shape, dtype, args in rows:
        lines.append(f"| `{out}` | `{project}.ilp` | `{image}` | {source} | {shape} | {dtype} | "
                     f"`ilastik --headless {args}` |")
    (TARGET / "MANIFEST.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
