"""Write a Pixel Classification project in ilastik's 1.4 layout (spec/pixel-classification.md §7).

Input lanes with paths relative to the project, the feature selection, label names and colours,
labels in ilastik's label-set block layout, export defaults, and, when given, the trained forest
as vigra forests with the classifier factory and names ilastik stores next to it.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Sequence

import h5py
import numpy as np

from ..features.plan import FeatureSelection
from ..forest.model import Forest
from ..io.guarded_file import hdf5_output
from ..io.ilastik_layout import axistags_json, determine_block_shape
from .vigra_writer import write_vigra_forest

WRITTEN_VERSION = "1.4.2"  # the ilastik release whose layout this follows
_LABEL_BLOCK_VOLUME = 40**3  # ilastik's internal label blocking
_FACTORY_CLASS = "lazyflow.classifiers.parallelVigraRfLazyflowClassifier\nParallelVigraRfLazyflowClassifierFactory"
_EMPTY_LIST_PICKLE = b"(lp0\n."  # the bookmarks of a lane: pickle.dumps([], 0), as ilastik stores it
ASCII = h5py.string_dtype("ascii")
UTF8 = h5py.string_dtype("utf-8")
_CLASSIFIER_TYPE = b"clazyflow.classifiers.parallelVigraRfLazyflowClassifier\nParallelVigraRfLazyflowClassifier\np0\n."
DEFAULT_COLORS = [
    (255, 0, 0), (0, 255, 0), (255, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255), (255, 105, 180),
    (102, 205, 170), (165, 42, 42), (160, 32, 240), (255, 165, 0), (127, 255, 212),
]


@dataclass
class LaneData:
    """One training image as the project stores it.

    Attributes
    ----------
    file_path : str
        As stored: relative to the project's folder (or absolute), ``file.h5/data`` for HDF5;
        stack members joined by ``os.pathsep``.
    axes : str
        The file's own axes (e.g. ``yx``, ``zyx``, ``yxc``).
    shape : tuple of int
        The file's shape in those axes.
    nickname : str
    labels : array
        The lane's labels in its internal axis order with a trailing ``c`` of 1 (``yxc``,
        ``zyxc``, ``tyxc``, ``tzyxc``); 0 = unlabelled.
    internal_axes : str
    """

    file_path: str
    axes: str
    shape: tuple[int, ...]
    nickname: str
    labels: np.ndarray
    internal_axes: str


def classifier_factory_pickle(n_trees: int, n_forests: int) -> bytes:
    """ilastik's ``ClassifierFactory`` record as protocol-0 pickle text (no pickler involved)."""
    return (
        "ccopy_reg\n_reconstructor\np0\n(c" + _FACTORY_CLASS + "\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(dp5\n"
        "VVERSION\np6\nI2\nsV_num_trees\np7\nI" + str(int(n_trees)) + "\nsV_label_proportion\np8\nN"
        "sV_variable_importance_path\np9\nNsV_variable_importance_enabled\np10\nI00\nsV_kwargs\np11\n(dp12\n"
        "sV_num_forests\np13\nI" + str(int(n_forests)) + "\nsb."
    ).encode("ascii")


def label_blocks(labels: np.ndarray) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """ilastik's label blocks: a 40^3-voxel grid, each block cut to the box of its labels."""
    spatial = labels.shape[:-1]
    grid = determine_block_shape(spatial, _LABEL_BLOCK_VOLUME)
    blocks = []
    for corner in np.ndindex(*[-(-n // g) for n, g in zip(spatial, grid)]):
        cell = tuple(slice(i * g, min((i + 1) * g, n)) for i, g, n in zip(corner, grid, spatial))
        values = labels[cell]
        nonzero = np.nonzero(values[..., 0])
        if not nonzero[0].size:
            continue
        box = tuple(slice(s.start + int(idx.min()), s.start + int(idx.max()) + 1) for s, idx in zip(cell, nonzero))
        blocks.append((box + (slice(0, 1),), labels[box + (slice(0, 1),)]))
    return blocks


def write_project(
    path: str,
    lanes: Sequence[LaneData],
    selection: FeatureSelection,
    label_names: Sequence[str],
    label_colors: Sequence[tuple[int, int, int]],
    forest: Forest | None = None,
    feature_names: Sequence[str] = (),
    row_count: int = 0,
    mtry: int = 0,
    n_trees: int = 100,
) -> None:
    """Write the project to ``path`` (overwritten).

    Parameters
    ----------
    path : str
    lanes : sequence of LaneData
    selection : FeatureSelection
    label_names, label_colors : sequences, one entry per class (label value 1, 2, ...)
    forest : Forest, optional
        The trained classifier, written as one vigra forest.
    feature_names : sequence of str
        Classifier column names (spec §5.8), stored with the forest.
    row_count, mtry : int
        Training samples and features per split, recorded in the forest.
    n_trees : int
        The factory's tree count.
    """
    open(path, "wb").close()  # a new file each time (a file object is not truncated by HDF5's "w")
    # Through a guarded file: HDF5 crashes the interpreter on a full disk or a file-size limit.
    with hdf5_output(path) as f:
        _put_text(f, "ilastikVersion", WRITTEN_VERSION)
        _put_text(f, "workflowName", "Pixel Classification")
        _put_text(f, "time", time.ctime())
        f["currentApplet"] = np.int64(0)
        _write_inputs(f, lanes)
        _write_selection(f, selection)
        pc = f.create_group("PixelClassification")
        _put_text(pc, "StorageVersion", "0.1", utf8=True)
        _put_texts(pc, "LabelNames", label_names).attrs["isEmpty"] = False
        for key in ("LabelColors", "PmapColors"):
            pc.create_dataset(key, data=np.asarray(label_colors, dtype=np.int64)).attrs["isEmpty"] = False
        bookmarks = pc.create_dataset("Bookmarks/0000", data=np.void(_EMPTY_LIST_PICKLE))
        bookmarks.attrs["version"] = np.int64(1)
        for index, lane in enumerate(lanes):
            group = pc.create_group(f"LabelSets/labels{index:03d}")
            for k, (slices, values) in enumerate(label_blocks(lane.labels)):
                block = group.create_dataset(f"block{k:04d}", data=values.astype(np.uint8))
                block.attrs["axistags"] = axistags_json(lane.internal_axes)  # vlen UTF-8, as ilastik writes it
                block.attrs.create("blockSlice", data=_block_slice_text(slices).encode("ascii"), dtype=ASCII)
        _put_text(pc, "ClassifierFactory", classifier_factory_pickle(n_trees, 1))
        if forest is not None:
            forests = pc.create_group("ClassifierForests")
            write_vigra_forest(forests.create_group("Forest0000"), forest, range(forest.n_trees), row_count, mtry)
            forests["known_labels"] = np.asarray(forest.labels, dtype=np.uint32)
            _put_texts(forests, "feature_names", feature_names)
            _put_text(forests, "pickled_type", _CLASSIFIER_TYPE)
        export = f.create_group("Prediction Export")
        for key, value in {"OutputFilenameFormat": "{dataset_dir}/{nickname}_{result_type}", "OutputFormat": "hdf5",
                           "OutputInternalPath": "exported_data"}.items():
            _put_text(export, key, value)
        _put_text(export, "StorageVersion", "0.1", utf8=True)


def _put_text(group: h5py.Group, name: str, value: str | bytes, utf8: bool = False) -> h5py.Dataset:
    """A scalar string as ilastik 1.4.2 stores it: variable length, ASCII-tagged UTF-8 bytes.

    ilastik hands h5py ``str.encode("utf-8")`` for almost every string, which h5py stores with
    the ASCII character set; readers built on that (pyilastik) get ``bytes`` back and decode
    them. Only the applets' ``StorageVersion`` is stored from a ``str`` (``utf8=True``).
    """
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    return group.create_dataset(name, data=data, dtype=UTF8 if utf8 else ASCII)


def _put_texts(group: h5py.Group, name: str, values: Sequence[str]) -> h5py.Dataset:
    """A 1-D array of strings, stored as :func:`_put_text` stores one."""
    data = np.array([v.encode("utf-8") for v in values], dtype=object)
    return group.create_dataset(name, data=data, shape=(len(values),), dtype=ASCII)


def _block_slice_text(slices: Sequence[slice]) -> str:
    return "[" + ",".join(f"{s.start}:{s.stop}" for s in slices) + "]"


def _write_inputs(f: h5py.File, lanes: Sequence[LaneData]) -> None:
    _put_texts(f, "Input Data/Role Names", ["Raw Data", "Prediction Mask"])
    _put_text(f["Input Data"], "StorageVersion", "0.2", utf8=True)
    f.create_group("Input Data/local_data")
    for index, lane in enumerate(lanes):
        raw = f.create_group(f"Input Data/infos/lane{index:04d}/Raw Data")
        f.create_group(f"Input Data/infos/lane{index:04d}/Prediction Mask")
        for key, value in {
            "__class__": "RelativeFilesystemDatasetInfo" if not os.path.isabs(lane.file_path) else "FilesystemDatasetInfo",
            "axis_units": "null",
            "axistags": axistags_json(lane.axes),
            "axisorder": lane.axes,
            "datasetId": str(uuid.uuid4()),
            "display_mode": "default",
            "filePath": lane.file_path,
            "location": "FileSystem",
            "nickname": lane.nickname,
            "working_scale": "",
        }.items():
            _put_text(raw, key, value)
        raw["allowLabels"] = True
        raw["fromstack"] = os.pathsep in lane.file_path
        raw["shape"] = np.asarray(lane.shape, dtype=np.int64)
        raw["normalizeDisplay"] = False
        raw["scale_locked"] = False


def _write_selection(f: h5py.File, selection: FeatureSelection) -> None:
    fs = f.create_group("FeatureSelections")
    _put_texts(fs, "FeatureIds", selection.feature_ids)
    fs["Scales"] = np.asarray(selection.scales, dtype=np.float64)
    fs["SelectionMatrix"] = np.asarray(selection.matrix, dtype=bool)
    in_2d = selection.compute_in_2d or (False,) * len(selection.scales)
    fs["ComputeIn2d"] = np.asarray(in_2d, dtype=bool)
    _put_text(fs, "StorageVersion", "0.1", utf8=True)
