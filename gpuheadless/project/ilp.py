"""Read an ilastik Pixel Classification project (``.ilp``), layouts of ilastik 1.2.2 to 1.4.x.

Only what a headless run needs is read (spec §7.7): version and workflow, training lanes, the
feature selection, label names and colours, stored labels, the vigra forests and the classifier
factory's settings (through the restricted unpickler), and the export defaults.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import h5py
import numpy as np

from ..errors import UserError, brief
from ..features.plan import FeatureSelection
from ..forest.model import Forest
from .safe_pickle import PickledClass, PickledObject, UnsafePickleError, safe_loads
from .vigra_forest import VigraForestError, read_vigra_forests

log = logging.getLogger(__name__)

PIXEL_CLASSIFICATION = "Pixel Classification"
# The deprecated Pixel + Object Classification workflow stores a whole Pixel Classification project.
PIXEL_STAGE_OF_OBJECT_WORKFLOW = ("Object Classification (from pixel classification)", "ObjectClassificationWorkflowPixel",
                                  "Pixel Classification + Object Classification (deprecated)")
# ilastik 1.4 workflows other than Pixel Classification, by any name ilastik matches (workflowName,
# class name or display name; "Object Classification" ones are told apart before this reader).
# A name ilastik does not know is opened as Pixel Classification, by ilastik and so here.
_OTHER_WORKFLOW_WORDS = ("autocontext", "carving", "tracking", "counting", "multicut", "neural network", "domain adaptation",
                         "watershed", "wsdt", "object classification", "connected components", "data conversion",
                         "deviation from mean", "fill missing slices", "label image viewer", "labeling", "layer viewer",
                         "prediction viewer", "threshold masking", "feature selection")
AUTOCONTEXT_STAGES = {2: "Two", 3: "Three", 4: "Four"}
_VIGRA_CLASSIFIERS = {"ParallelVigraRfLazyflowClassifier", "VigraRfLazyflowClassifier"}


@dataclass(frozen=True)
class TrainingLane:
    """One training image of the project (``Input Data/infos/laneNNNN/Raw Data``)."""

    index: int
    file_path: str
    axes: str
    shape: tuple[int, ...] | None
    nickname: str
    project_dir: Path
    resolutions: dict[str, float] = field(default_factory=dict)
    axis_units: dict[str, str] = field(default_factory=dict)

    @property
    def resolved_paths(self) -> list[str]:
        """Stored path(s) resolved against the project directory (members joined by ``os.pathsep``)."""
        out = []
        for member in self.file_path.split(os.pathsep):
            external = member
            if not os.path.isabs(external):
                external = str(self.project_dir / external)
            out.append(external)
        return out


@dataclass(frozen=True)
class LabelBlock:
    """Stored labels of one block: values pasted at ``slices`` (internal axis order, with ``c``)."""

    slices: tuple[slice, ...]
    values: np.ndarray


@dataclass
class Project:
    """What gpuheadless knows about a Pixel Classification project (or an Autocontext project's
    first stage)."""

    path: Path
    ilastik_version: str
    workflow: str
    lanes: list[TrainingLane]
    selection: FeatureSelection
    label_names: list[str]
    label_colors: list[tuple[int, int, int]]
    labels: dict[int, list[LabelBlock]]
    forest: Forest | None
    forest_note: str
    factory: dict[str, Any]
    export: dict[str, Any]
    later_stages: list[Project] = field(default_factory=list)

    @property
    def stages(self) -> list[Project]:
        """The classification stages: this one, then an Autocontext project's later stages, each
        with its own feature selection, labels and classifier (stage n + 1 classifies the raw
        data stacked with stage n's probabilities)."""
        return [self, *self.later_stages]

    @property
    def n_classes(self) -> int:
        """``K``: the number of label names (at least 1), i.e. probability channels."""
        return max(len(self.label_names), 1)

    @property
    def has_labels(self) -> bool:
        return any(np.any(block.values) for blocks in self.labels.values() for block in blocks)

    @property
    def tree_count(self) -> int:
        """Trees of a retrained forest: the classifier factory's ``_num_trees`` (default 100).

        Raises
        ------
        UserError
            The factory asks for something else than a positive number of trees.
        """
        value = self.factory.get("_num_trees", 100) or 100
        try:
            count = int(value)
        except (TypeError, ValueError, OverflowError):
            count = 0
        if count < 1:
            raise UserError(f"project file '{self.path}': its classifier factory asks for {repr(value)[:40]} trees")
        return count


def read_item(dataset: h5py.Dataset) -> Any:
    """``dataset[()]``, refusing variable-length sequences: ilastik stores none, and reading one made
    by damaged bytes (a string's type turned into a sequence's) crashes the HDF5 library.

    Raises
    ------
    ValueError
        The dataset holds variable-length sequences.
    """
    base = h5py.check_vlen_dtype(dataset.dtype)
    if base is not None and base not in (str, bytes):
        raise ValueError(f"{dataset.name} holds variable-length sequences, not an ilastik item")
    return dataset[()]


def read_text(value: Any) -> str:
    """A text item (a dataset, bytes or a string) as a string; damaged bytes are replaced, not refused."""
    if isinstance(value, h5py.Group):
        raise TypeError(f"{value.name} is a group, not text")
    if isinstance(value, h5py.Dataset):
        value = read_item(value)
    if isinstance(value, np.ndarray):
        value = value.item() if value.shape == () else value.tobytes()
    if isinstance(value, np.void):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _texts(dataset: h5py.Dataset) -> list[str]:
    return [read_text(v) for v in np.asarray(read_item(dataset)).reshape(-1)]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def read_project(path: str | os.PathLike[str]) -> Project:
    """Open and read a Pixel Classification or Autocontext project.

    Raises
    ------
    UserError
        Missing or unreadable file, not an ilastik project, another workflow, a refused pickle,
        or a malformed group (any error decoding an item: the file may come from anyone); the
        message names the file.
    """
    return read_ilp(path, read_pixel_project, "damaged or not a Pixel Classification project")


T = TypeVar("T")


def read_ilp(path: str | os.PathLike[str], read: Callable[[h5py.File, Path], T], damaged: str = "damaged") -> T:
    """Open the ``.ilp`` at ``path`` and decode it with ``read(file, resolved path)``.

    Every project reader goes through here, so each refuses a missing, unreadable or damaged file
    alike: a :class:`UserError` naming the file, ``damaged`` saying what a decoding error means.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.exists():
        raise UserError(f"project file '{path}' does not exist")
    if path.is_dir():
        raise UserError(f"project file '{path}' is a directory")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"project file '{path}' is not an ilastik project (cannot open it as HDF5: {exc})") from None
    try:
        with handle as f:
            with warnings.catch_warnings():  # a complex value where a number belongs: damaged
                warnings.simplefilter("error", np.exceptions.ComplexWarning)
                return read(f, path.resolve())
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed item makes the decoding raise
        raise UserError(f"project file '{path}' is {damaged} ({brief(exc)})") from None


def read_pixel_project(f: h5py.File, path: Path) -> Project:
    """The Pixel Classification (or Autocontext) project in the open ``.ilp`` ``f``; also the pixel
    stage of a Pixel + Object Classification project."""
    version = read_text(f["ilastikVersion"]) if "ilastikVersion" in f else ""
    if "workflowName" in f:
        workflow = read_text(f["workflowName"])
    elif "PixelClassification" not in f:
        raise UserError(f"project file '{path}' is not an ilastik project (no workflowName, no PixelClassification group)")
    else:
        log.warning("%s has no workflowName; assuming Pixel Classification", path)
        workflow = PIXEL_CLASSIFICATION
    n_stages = autocontext_stages(workflow)
    if n_stages is None and workflow not in (PIXEL_CLASSIFICATION, "PixelClassificationWorkflow") + PIXEL_STAGE_OF_OBJECT_WORKFLOW:
        if _names_another_workflow(workflow):
            raise UserError(f"project file '{path}' is a '{workflow}' project; gpuheadless runs Pixel Classification, "
                            "Autocontext and Object Classification projects")
        log.warning("%s: workflow '%s' is not one ilastik knows; running it as Pixel Classification, as ilastik does",
                    path, workflow)
    lanes = _read_lanes(f, path.parent)
    export = read_export(f)
    stages = [_read_stage(f, path, version, workflow, lanes, export, index) for index in range(n_stages or 1)]
    stages[0].later_stages = stages[1:]
    return stages[0]


def autocontext_stages(workflow: str) -> int | None:
    """The stage count of an Autocontext workflow name (ilastik's class or display name), else None."""
    for count, word in AUTOCONTEXT_STAGES.items():
        if workflow in (f"Autocontext{word}Stage", f"Autocontext ({count}-stage)"):
            return count
    return None


def stage_groups(index: int) -> tuple[str, str]:
    """The feature selection and classifier groups of stage ``index`` (0 = the first)."""
    suffix = f"{index:02d}" if index else ""
    return f"FeatureSelections{suffix}", f"PixelClassification{suffix}"


def _read_stage(f: h5py.File, path: Path, version: str, workflow: str, lanes: list[TrainingLane],
                export: dict[str, Any], index: int) -> Project:
    features_group, classifier_group = stage_groups(index)
    if features_group not in f or classifier_group not in f:
        raise UserError(f"project file '{path}' has no {features_group} or {classifier_group} group")
    selection = _read_selection(f[features_group], path)
    pc = f[classifier_group]
    label_names = _texts(pc["LabelNames"]) if "LabelNames" in pc else []
    colors = _read_colors(pc["LabelColors"]) if "LabelColors" in pc else []
    labels = _read_labels(pc, lanes, version)
    if not label_names and labels:
        top = max((int(b.values.max()) for blocks in labels.values() for b in blocks if b.values.size), default=0)
        label_names = [f"Label {i}" for i in range(1, top + 1)]
    factory = _read_factory(pc, path)
    forest, note = _read_forest(pc, path, len(label_names))
    return Project(
        path=path,
        ilastik_version=version,
        workflow=workflow,
        lanes=lanes,
        selection=selection,
        label_names=label_names,
        label_colors=colors,
        labels=labels,
        forest=forest,
        forest_note=note,
        factory=factory,
        export=export,
    )


def _read_colors(dataset: h5py.Dataset) -> list[tuple[int, int, int]]:
    """Label colours as ``(r, g, b)`` rows; none where the list is stored empty.

    ilastik stores an empty list as a 1-element float64 array (or a scalar) with the attribute
    ``isEmpty``; colours are only decoration for a headless run, so any other shape that is
    not rows of three is read as no colours too.
    """
    if bool(dataset.attrs.get("isEmpty", False)):
        return []
    values = np.asarray(dataset[()])
    if values.ndim != 2 or values.shape[1] < 3 or values.dtype.kind not in "iuf":
        return []
    return [tuple(int(v) for v in row[:3]) for row in values]


def _names_another_workflow(name: str) -> bool:
    """Whether ``name`` is (close to) the name of an ilastik workflow other than Pixel Classification."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()
    return any(word in spaced for word in _OTHER_WORKFLOW_WORDS)


def _read_lanes(f: h5py.File, project_dir: Path) -> list[TrainingLane]:
    if "Input Data/infos" not in f:
        return []
    lanes = []
    infos = f["Input Data/infos"]
    for name in sorted(infos.keys()):
        raw = infos[name].get("Raw Data")
        if raw is None or "filePath" not in raw:
            continue
        axes, resolutions = "", {}
        if "axistags" in raw:
            tags = json.loads(read_text(raw["axistags"]))
            axes = "".join(a["key"] for a in tags["axes"])
            resolutions = {a["key"]: float(a.get("resolution", 0) or 0) for a in tags["axes"]}
        elif "axisorder" in raw:
            axes = read_text(raw["axisorder"])
        units = json.loads(read_text(raw["axis_units"])) if "axis_units" in raw else {}
        shape = tuple(int(v) for v in raw["shape"][()]) if "shape" in raw else None
        lanes.append(
            TrainingLane(
                index=int(re.sub(r"\D", "", name) or 0),
                file_path=read_text(raw["filePath"]),
                axes=axes,
                shape=shape,
                nickname=read_text(raw["nickname"]) if "nickname" in raw else "",
                project_dir=project_dir,
                resolutions=resolutions,
                axis_units=units or {},
            )
        )
    return lanes


def _read_selection(g: h5py.Group, path: Path) -> FeatureSelection:
    try:
        ids = tuple(_texts(g["FeatureIds"]))
        scales = tuple(float(s) for s in np.asarray(g["Scales"][()]).reshape(-1))
        matrix = np.asarray(g["SelectionMatrix"][()], dtype=bool)
        in_2d = tuple(bool(v) for v in np.asarray(g["ComputeIn2d"][()]).reshape(-1)) if "ComputeIn2d" in g else None
        if in_2d is not None and len(in_2d) != len(scales):
            in_2d = None
        return FeatureSelection(ids, scales, matrix, in_2d)
    except KeyError as exc:
        raise UserError(f"project file '{path}': FeatureSelections is incomplete ({exc})") from None
    except ValueError as exc:
        raise UserError(f"project file '{path}': FeatureSelections: {exc}") from None


_SLICE = re.compile(r"(\d+):(\d+)")


def _parse_block_slice(text: str) -> tuple[slice, ...]:
    parts = _SLICE.findall(text)
    if not parts:
        raise ValueError(f"bad blockSlice {text!r}")
    return tuple(slice(int(a), int(b)) for a, b in parts)


def _internal_axes(lane: TrainingLane | None) -> str | None:
    if lane is None or not lane.axes:
        return None
    keys = lane.axes.replace("c", "")
    if lane.shape is not None and len(lane.shape) == len(lane.axes):
        extent = dict(zip(lane.axes, lane.shape))
        keys = "".join(k for k in keys if extent[k] > 1)
    return "".join(k for k in "tzyx" if k in keys) + "c"


def _read_labels(pc: h5py.Group, lanes: list[TrainingLane], version: str) -> dict[int, list[LabelBlock]]:
    out: dict[int, list[LabelBlock]] = {}
    if "LabelSets" not in pc:
        return out
    lanes_by_index = {lane.index: lane for lane in lanes}
    original_order = (1, 3, 3) <= _version_tuple(version) <= (1, 4, 0) and "post2" in version or (
        (1, 3, 4) <= _version_tuple(version) < (1, 4, 0)
    )
    for name in sorted(pc["LabelSets"].keys()):
        index = int(re.sub(r"\D", "", name) or 0)
        blocks = []
        for bname in sorted(pc["LabelSets"][name].keys()):
            ds = pc["LabelSets"][name][bname]
            values = np.asarray(ds[()])
            slices = _parse_block_slice(read_text(ds.attrs["blockSlice"]))
            if len(slices) != values.ndim:
                raise ValueError(f"label block {ds.name}: blockSlice does not match its shape")
            lane = lanes_by_index.get(index)
            if original_order and lane is not None and lane.axes:
                values, slices = _to_internal_order(values, slices, lane)
            blocks.append(LabelBlock(slices, values))
        out[index] = blocks
    return out


def _to_internal_order(values: np.ndarray, slices: tuple[slice, ...], lane: TrainingLane):
    """Label blocks stored by ilastik 1.3.3post2-1.4.0b7 use the raw file's axis order."""
    original = lane.axes if "c" in lane.axes else lane.axes + "c"
    internal = _internal_axes(lane) or original
    if len(original) != values.ndim:
        return values, slices
    keep = [original.index(a) for a in internal if a in original]
    dropped = [i for i in range(len(original)) if i not in keep]
    values = np.transpose(values, keep + dropped).reshape([values.shape[i] for i in keep])
    return values, tuple(slices[i] for i in keep)


def _read_factory(pc: h5py.Group, path: Path) -> dict[str, Any]:
    if "ClassifierFactory" not in pc:
        return {}
    data = read_item(pc["ClassifierFactory"])
    raw = data.tobytes() if isinstance(data, (np.void, np.ndarray)) else data
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    try:
        factory = safe_loads(raw)
    except UnsafePickleError as exc:
        raise UserError(f"project file '{path}': PixelClassification/ClassifierFactory: {exc}; refusing to load it") from None
    except pickle.UnpicklingError as exc:
        log.warning("%s: unreadable classifier factory (%s); using 100 trees", path, exc)
        return {}
    if isinstance(factory, PickledObject):
        return {"class": factory.cls.name, **factory.state}
    return {}


def _read_forest(pc: h5py.Group, path: Path, n_label_names: int) -> tuple[Forest | None, str]:
    if "ClassifierForests" not in pc:
        return None, "the project has no trained classifier"
    g = pc["ClassifierForests"]
    kind = "ParallelVigraRfLazyflowClassifier"
    if "pickled_type" in g:
        data = read_item(g["pickled_type"])
        raw = data.tobytes() if isinstance(data, (np.void, np.ndarray)) else data
        try:
            cls = safe_loads(raw)
        except UnsafePickleError as exc:
            raise UserError(f"project file '{path}': ClassifierForests/pickled_type: {exc}; refusing to load it") from None
        except pickle.UnpicklingError:
            cls = None
        if isinstance(cls, PickledClass):
            kind = cls.name
    if kind not in _VIGRA_CLASSIFIERS:
        return None, f"the stored classifier is a {kind}, which gpuheadless does not load (it is a pickle)"
    names = sorted(k for k in g.keys() if k.startswith("Forest")) or (["forest"] if "forest" in g else [])
    if not names:
        return None, "the project has no stored forest"
    try:
        forest = read_vigra_forests([g[n] for n in names])
    except (VigraForestError, KeyError) as exc:
        raise UserError(f"project file '{path}': stored forest is malformed ({exc})") from None
    if "known_labels" in g:
        with np.errstate(invalid="ignore"):  # only compared, for a warning: NaN or negative labels just differ
            known = np.asarray(g["known_labels"][()]).astype(np.uint32).reshape(-1)
        if len(known) == forest.n_classes and not np.array_equal(known, forest.labels):
            log.warning("%s: known_labels %s differ from the forests' labels %s", path, known, forest.labels)
    if n_label_names and forest.n_classes > n_label_names:
        return None, "the stored classifier has more classes than the project has labels (ilastik discards it)"
    return forest, ""


_EXPORT_KEYS = {
    "OutputFilenameFormat": "output_filename_format",
    "OutputFormat": "output_format",
    "OutputInternalPath": "output_internal_path",
    "ExportDtype": "export_dtype",
    "OutputAxisOrder": "output_axis_order",
}


def read_export(f: h5py.File, group: str = "Prediction Export") -> dict[str, Any]:
    """The export settings stored in ``group`` (ilastik's DataExportSerializer, the same for every
    workflow: ``Prediction Export``, or ``Object Information Export`` of Object Classification),
    as :class:`~gpuheadless.config.ExportOptions` field names; settings left unset are absent."""
    if group not in f:
        return {}
    g = f[group]
    out: dict[str, Any] = {}
    for key, name in _EXPORT_KEYS.items():
        if key in g:
            value = read_text(g[key])
            if value:
                out[name] = value
    if "RegionStart" in g and "RegionStop" in g:
        start = [None if v == -1 else int(v) for v in np.asarray(g["RegionStart"][()]).reshape(-1)]
        stop = [None if v == -1 else int(v) for v in np.asarray(g["RegionStop"][()]).reshape(-1)]
        out["cutout_subregion"] = (start, stop)
    if all(k in g for k in ("InputMin", "InputMax")):
        out["pipeline_result_drange"] = (float(g["InputMin"][()]), float(g["InputMax"][()]))
    if all(k in g for k in ("ExportMin", "ExportMax")):
        out["export_drange"] = (float(g["ExportMin"][()]), float(g["ExportMax"][()]))
    return out
