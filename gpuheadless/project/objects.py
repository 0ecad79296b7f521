"""Reading an Object Classification project (spec/object-classification.md §1.1, §2.1, §3.7, §4, §6).

Opened through :func:`~gpuheadless.project.ilp.read_ilp`, as every project is; a Pixel + Object
Classification project also holds its pixel stage, read by the Pixel Classification reader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import UserError
from ..forest.model import Forest
from ..objects.threshold import ThresholdSettings
from .ilp import Project, read_export, read_ilp, read_item, read_pixel_project, read_text
from .safe_pickle import safe_loads
from .vigra_forest import VigraForestError, read_vigra_forests

VARIANTS = {
    "Object Classification (from prediction image)": "prediction",
    "ObjectClassificationWorkflowPrediction": "prediction",
    "Object Classification [Inputs: Raw Data, Pixel Prediction Map]": "prediction",
    "Object Classification (from binary image)": "binary",
    "ObjectClassificationWorkflowBinary": "binary",
    "Object Classification [Inputs: Raw Data, Segmentation]": "binary",
    "Object Classification (from label image)": "labels",
    "ObjectClassificationWorkflowLabels": "labels",
    "Object Classification [Inputs: Raw Data, Label Image]": "labels",
    "Object Classification (from pixel classification)": "pixel",
    "ObjectClassificationWorkflowPixel": "pixel",
    "Pixel Classification + Object Classification (deprecated)": "pixel",
}


@dataclass
class ObjectProject:
    """What a headless Object Classification run needs from the ``.ilp``."""

    path: Path
    variant: str
    ilastik_version: str
    threshold: ThresholdSettings
    selected: dict[str, list[str]]
    margins: dict[str, np.ndarray]
    display_names: dict[str, str]
    label_names: list[str]
    forest: Forest | None
    table_settings: dict[str, Any] | None
    table_features: list[str]
    export: dict[str, Any] = field(default_factory=dict)
    training_axes: str | None = None
    labels: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (lane, t) -> class per object id
    lanes: list[tuple[str, str]] = field(default_factory=list)  # (raw, second input), resolved paths
    pixel: Project | None = None  # the pixel stage of a Pixel + Object Classification project

    @property
    def n_classes(self) -> int:
        return max(len(self.label_names), 1)


MAX_SIGMA = 1000.0  # pixels; the smoothing window has 4 sigma + 1 taps


def _sigma(dataset: h5py.Dataset) -> float:
    """A threshold smoothing sigma: a finite number of pixels from 0 to :data:`MAX_SIGMA`."""
    value = float(dataset[()])
    if not 0.0 <= value <= MAX_SIGMA:
        raise ValueError(f"{dataset.name} is {value}, not a smoothing sigma from 0 to {MAX_SIGMA:g} pixels")
    return value


def _margin(dataset: h5py.Dataset, name: str) -> np.ndarray:
    """A neighbourhood feature's margins: 2 or 3 whole numbers of pixels (x, y[, z]), at least 1."""
    values = np.asarray(dataset[()])
    if values.ndim != 1 or len(values) not in (2, 3) or values.dtype.kind not in "iuf" or not np.all(values >= 1) \
            or not np.all(values == np.floor(values)):
        raise ValueError(f"the margin of '{name}' is {values.tolist() if values.size < 8 else values.shape}, "
                         "not 2 or 3 whole numbers of pixels")
    return values.astype(np.int64)


def workflow_variant(path: str | os.PathLike[str]) -> str | None:
    """``prediction``, ``binary``, ``labels`` or ``pixel`` for an Object Classification project, else None."""
    try:
        with h5py.File(path, "r") as f:
            return object_variant(f)
    except Exception:  # noqa: BLE001 - unreadable, or a broken workflowName: not one (the pixel reader says why)
        return None


def object_variant(f: h5py.File) -> str | None:
    """The Object Classification variant of the open ``.ilp`` ``f``, None for another workflow."""
    return VARIANTS.get(read_text(f["workflowName"])) if "workflowName" in f else None


def read_object_project(path: str | os.PathLike[str]) -> ObjectProject:
    """Read an Object Classification project; UserError naming the file on anything unusable.

    The file may come from anyone: any error while decoding it (an item missing, renamed or of
    another type, a malformed forest, an absurd size) is a damaged project, reported in one line.
    """
    return read_ilp(path, read_object_project_file)


def read_object_project_file(f: h5py.File, path: Path) -> ObjectProject:
    """The Object Classification project in the open ``.ilp`` ``f`` (its pixel stage included)."""
    variant = object_variant(f)
    if variant is None:
        raise UserError(f"project file '{path}': not an Object Classification project")
    settings = ThresholdSettings()
    if "ThresholdTwoLevels" in f:
        g = f["ThresholdTwoLevels"]

        def value(name: str, default: float) -> float:
            return float(g[name][()]) if name in g else default

        sigma = g.get("SmootherSigma")
        method = int(value("CurOperator", 0))
        low = value("LowThreshold", 0.5)
        if method == 0 and "SingleThreshold" in g:  # legacy single threshold
            low = value("SingleThreshold", low)
        settings = ThresholdSettings(
            method=method, low=low, high=value("HighThreshold", 0.8), channel=int(value("Channel", 0)),
            core_channel=int(value("CoreChannel", value("Channel", 0))), min_size=int(value("MinSize", 10)),
            max_size=int(value("MaxSize", 1000000)),
            sigmas=tuple(_sigma(sigma[a]) if sigma is not None and a in sigma else 1.0 for a in "zyx"),
        )
        if min(settings.channel, settings.core_channel) < 0:
            raise ValueError(f"ThresholdTwoLevels thresholds channel {min(settings.channel, settings.core_channel)}")
    selected: dict[str, list[str]] = {}
    margins: dict[str, np.ndarray] = {}
    display: dict[str, str] = {}
    source = f.get("ObjectClassification/SelectedFeatures") or f.get("ObjectExtraction/Features")
    extraction = f.get("ObjectExtraction/Features")
    for group in filter(None, (source, extraction)):
        root = group["0"] if "0" in group else group  # old projects wrap the selection in "0/"
        for plugin in root:
            for name in root[plugin]:
                item = root[plugin][name]
                if group is source:
                    selected.setdefault(plugin, []).append(name)
                if "margin" in item:
                    margins[name] = _margin(item["margin"], name)
                if "displaytext" in item:
                    display[name] = read_text(item["displaytext"])
    label_names = ([read_text(n) for n in read_item(f["ObjectClassification/LabelNames"])]
                   if "ObjectClassification/LabelNames" in f else [])
    forest = None
    if "ObjectClassification/ClassifierForests" in f:
        g = f["ObjectClassification/ClassifierForests"]
        groups = [g[k] for k in sorted(g) if k.startswith("Forest")]
        if groups:
            try:
                forest = read_vigra_forests(groups)
            except VigraForestError as exc:
                raise UserError(f"project file '{path}': unreadable object classifier ({exc})") from None
    table_settings, table_features = None, []
    if "ObjectClassification/ExportSettings" in f:
        try:
            stored = safe_loads(bytes(read_item(f["ObjectClassification/ExportSettings"])))
        except Exception:  # a pickle we do not accept is treated as "no settings"
            stored = (None, None)
        if isinstance(stored, tuple) and len(stored) == 2 and isinstance(stored[0], dict):
            table_settings, table_features = stored[0], list(stored[1] or [])
    export = read_export(f, "Object Information Export")
    axes = None
    raw = "Input Data/infos/lane0000/Raw Data/axistags"
    if raw in f:
        import json  # noqa: PLC0415

        axes = "".join(a["key"] for a in json.loads(read_text(f[raw]))["axes"])
    labels: dict[tuple[int, int], np.ndarray] = {}
    if "ObjectClassification/LabelInputs" in f:
        for lane_name, lane_group in f["ObjectClassification/LabelInputs"].items():
            for t_name, values in lane_group.items():
                classes = np.asarray(values[()])
                wide = classes.astype(np.float64) if classes.dtype.kind in "biuf" else None  # float16 overflows at 2**32
                if classes.ndim != 1 or wide is None or not (
                        np.all(np.isfinite(wide)) and np.all(wide >= 0) and np.all(wide == np.floor(wide))
                        and np.all(wide < 2**32)):
                    raise ValueError(f"{values.name} holds {classes.dtype} of shape {classes.shape}, not one class "
                                     "(a whole number, 0 unlabelled) per object")
                if np.any(classes):
                    labels[(int(lane_name), int(t_name))] = classes
    lanes = []
    infos = f.get("Input Data/infos")
    for lane_name in sorted(infos) if infos is not None else []:
        roles = [r for r in infos[lane_name] if "filePath" in infos[lane_name][r]]
        paths = {r: read_text(infos[lane_name][r]["filePath"]) for r in roles}
        second = next((paths[r] for r in roles if r != "Raw Data"), None)
        if variant == "pixel":
            second = ""  # the pixel stage computes it from the raw data
        if "Raw Data" in paths and second is not None:
            lanes.append(tuple(p if not p or os.path.isabs(p) else str(path.parent / p) for p in (paths["Raw Data"], second)))
    return ObjectProject(
        path=path, variant=variant, ilastik_version=read_text(f["ilastikVersion"]) if "ilastikVersion" in f else "",
        threshold=settings, selected=selected, margins=margins, display_names=display, label_names=label_names,
        forest=forest, table_settings=table_settings, table_features=table_features, export=export,
        training_axes=axes, labels=labels, lanes=lanes,
        pixel=read_pixel_project(f, path) if variant == "pixel" else None,
    )
