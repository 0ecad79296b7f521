"""Live: projects written by ``gpuheadless train`` opened and run by the real ilastik.

For each case (2D and 3D; HDF5, TIFF and PNG training images; 1 to 3 channels; 1 or 2 training
images; 2 or 5 classes; sparse scribbles or dense labels; default, all and custom features
incl. scale 0.3 and in-2D scales on 3D data) a project is trained by gpuheadless, then both
programs apply it headless to its first training image and to an unseen image: the
probabilities must be equal bit for bit. ilastik's own project loading must give back the
labels we trained from, and the label names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpuheadless import train

from .ilastik_runner import run_gpuheadless, run_ilastik, run_ilastik_python
from .synthetic import class_image, scribbles, truth_map


@dataclass(frozen=True)
class Case:
    """One training set-up."""

    name: str
    shape: tuple[int, ...]  # spatial, (y, x) or (z, y, x)
    fmt: str  # h5, tif or png
    channels: int
    n_images: int
    n_classes: int
    dense: bool
    features: str
    in_2d: str | tuple[float, ...] | None = None


CUSTOM_2D = ("GaussianSmoothing@0.3,StructureTensorEigenvalues@0.3,LaplacianOfGaussian@0.7,"
             "GaussianGradientMagnitude@1.6,DifferenceOfGaussians@2.5,HessianOfGaussianEigenvalues@1.0")
CUSTOM_3D = ("GaussianSmoothing@0.3,StructureTensorEigenvalues@0.3,GaussianGradientMagnitude@1.0,"
             "HessianOfGaussianEigenvalues@1.6,DifferenceOfGaussians@0.7")
CASES = [
    Case("2d-h5-1c-1img-2cl-sparse-default", (61, 83), "h5", 1, 1, 2, False, "default"),
    Case("2d-tif-3c-2img-5cl-dense-all", (50, 57), "tif", 3, 2, 5, True, "all"),
    Case("2d-png-1c-2img-5cl-sparse-custom", (64, 70), "png", 1, 2, 5, False, CUSTOM_2D),
    Case("2d-png-3c-1img-2cl-dense-custom", (45, 66), "png", 3, 1, 2, True,
         "StructureTensorEigenvalues@0.3,HessianOfGaussianEigenvalues@0.7,GaussianSmoothing@5.0"),
    Case("3d-h5-1c-1img-2cl-sparse-custom-in2d", (14, 40, 37), "h5", 1, 1, 2, False, CUSTOM_3D, (0.3, 1.6)),
    Case("3d-h5-2c-2img-5cl-dense-default-in2d10", (24, 40, 41), "h5", 2, 2, 5, True, "default", (10.0,)),
    Case("3d-tif-1c-2img-2cl-sparse-all", (37, 38, 39), "tif", 1, 2, 2, False, "all"),
]


def _save(image: np.ndarray, path: Path, fmt: str) -> str:
    """Write ``image`` (spatial axes + c) in ``fmt``; returns the input path to give the programs."""
    squeezed = image[..., 0] if image.shape[-1] == 1 else image
    if fmt == "h5":
        with h5py.File(path.with_suffix(".h5"), "w") as f:
            f["data"] = squeezed
        return str(path.with_suffix(".h5")) + "/data"
    if fmt == "tif":
        import tifffile

        photometric = "rgb" if squeezed.ndim == 3 and image.shape[-1] == 3 and image.ndim == 3 else "minisblack"
        tifffile.imwrite(path.with_suffix(".tif"), squeezed, photometric=photometric)
        return str(path.with_suffix(".tif"))
    from PIL import Image

    Image.fromarray(squeezed).save(path.with_suffix(".png"))
    return str(path.with_suffix(".png"))


def _make_case(case: Case, folder: Path, seed: int) -> dict:
    """Images, label images, an unseen image and the trained project of ``case``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    raws, label_paths, label_arrays = [], [], []
    for k in range(case.n_images):
        truth = truth_map(rng, case.shape, case.n_classes)
        raws.append(_save(class_image(rng, truth, case.channels), folder / f"train{k}", case.fmt))
        labels = scribbles(rng, truth, case.dense)
        with h5py.File(folder / f"labels{k}.h5", "w") as f:
            f["data"] = labels
        label_paths.append(str(folder / f"labels{k}.h5/data"))
        label_arrays.append(labels)
    unseen = _save(class_image(rng, truth_map(rng, case.shape, case.n_classes), case.channels), folder / "unseen", case.fmt)
    names = [f"class {k}" for k in range(1, case.n_classes + 1)]
    project = train(raws, label_paths, str(folder / "project.ilp"), features=case.features, trees=30, seed=seed,
                    label_names=names, threads=2, in_2d=case.in_2d)
    return {"project": project, "raws": raws, "labels": label_arrays, "unseen": unseen, "names": names}


@pytest.fixture(scope="module")
def trained(ilastik, tmp_path_factory):
    """Every case trained once (gpuheadless, in this process)."""
    root = tmp_path_factory.mktemp("train_live")
    return root, {case.name: _make_case(case, root / case.name, seed) for seed, case in enumerate(CASES)}


def _probabilities(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            out[path.stem] = f["exported_data"][()]
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ilastik_applies_our_project_exactly_as_we_do(case, trained):
    root, made = trained
    job = made[case.name]
    folder = root / case.name
    inputs = [job["raws"][0], job["unseen"]]
    results = {}
    for who, runner in (("ilastik", run_ilastik), ("ours", run_gpuheadless)):
        args = [f"--project={job['project']}", "--export_source=Probabilities", "--output_format=hdf5",
                f"--output_filename_format={folder / who}/{{nickname}}.h5", *inputs]
        done = runner(args if who == "ilastik" else ["--headless", *args], folder)
        assert done.returncode == 0, f"{who} failed on {case.name}:\n{done.output[-3000:]}"
        assert "FeatureSelectionConstraintError" not in done.output
        results[who] = _probabilities(folder / who)
    assert sorted(results["ilastik"]) == sorted(results["ours"]) and len(results["ours"]) == 2
    for name, theirs in results["ilastik"].items():
        ours = results["ours"][name]
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (name, ours.shape, theirs.shape)
        assert ours.shape[-1] == case.n_classes
        differing = int(np.count_nonzero(ours != theirs))
        assert differing == 0, f"{case.name}/{name}: {differing} of {ours.size} values differ " \
                               f"(max {float(np.abs(ours.astype(np.float64) - theirs).max())})"


_READ_BACK = r"""
import json
import numpy as np
from ilastik.shell.headless.headlessShell import HeadlessShell

out = {}
for name, path in json.loads(PROJECTS).items():
    shell = HeadlessShell()
    shell.openProjectFile(path, force_readonly=True)
    op = shell.workflow.pcApplet.topLevelOperator
    lanes = []
    for lane in range(len(op.LabelImages)):
        slot = op.LabelImages[lane]
        labels = slot[:].wait()
        np.save(f"{path}.lane{lane}.npy", labels)
        lanes.append("".join(slot.meta.getAxisKeys()))
    out[name] = {"axes": lanes, "names": list(op.LabelNames.value),
                 "in_2d": [bool(v) for v in shell.workflow.featureSelectionApplet.topLevelOperator.ComputeIn2d.value]}
    shell.closeCurrentProject()
print("RESULT " + json.dumps(out))
"""


def test_ilastik_reads_back_our_labels_and_names(trained):
    root, made = trained
    projects = {name: job["project"] for name, job in made.items()}
    script = f"PROJECTS = {json.dumps(json.dumps(projects))}\n" + _READ_BACK
    done = run_ilastik_python(script, root)
    assert done.returncode == 0, done.output[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    read = json.loads(line[len("RESULT "):])
    for case in CASES:
        job, back = made[case.name], read[case.name]
        assert back["names"] == job["names"]
        assert len(back["axes"]) == case.n_images
        assert all(back["in_2d"]) == (len(case.shape) == 2 or case.in_2d == "all")
        for lane, labels in enumerate(job["labels"]):
            theirs = np.load(f"{job['project']}.lane{lane}.npy")
            axes = back["axes"][lane]
            spatial = "zyx" if len(case.shape) == 3 else "yx"
            # ilastik's label image has the lane's axes with c = 1: drop every axis of extent 1
            theirs = theirs.squeeze(axis=tuple(i for i, a in enumerate(axes) if a not in spatial))
            order = "".join(a for a in axes if a in spatial)
            theirs = np.transpose(theirs, [order.index(a) for a in spatial])
            np.testing.assert_array_equal(theirs, labels, err_msg=f"{case.name} lane {lane}")
