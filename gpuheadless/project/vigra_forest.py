"""Decode vigra RandomForest HDF5 groups (spec/object-classification.md §7) into a Forest."""
from __future__ import annotations

from typing import Sequence

import h5py
import numpy as np

from ..forest.model import LEAF, Forest, concatenate_trees

_THRESHOLD_NODE = 0
_LEAF_NODE = 0x40000000


class VigraForestError(ValueError):
    """The group is not a vigra forest this reader understands."""


def _scalar(group: h5py.Group, name: str, default: float | None = None) -> float:
    if name not in group:
        if default is None:
            raise VigraForestError(f"missing {group.name}/{name}")
        return default
    return float(np.asarray(group[name][()]).reshape(-1)[0])


def _class_labels(dataset: h5py.Dataset) -> np.ndarray:
    """A forest's class labels: whole numbers from 0 to 2**32 - 1, as uint32."""
    values = np.asarray(dataset[()]).reshape(-1)
    wide = values.astype(np.float64) if values.dtype.kind in "biuf" else None  # float16 overflows at 2**32
    if wide is None or (wide.size and not (
            np.all(np.isfinite(wide)) and np.all(wide >= 0) and np.all(wide <= 2**32 - 1)
            and np.all(wide == np.floor(wide)))):
        raise VigraForestError(f"{dataset.name}: {values.dtype} values {values[:4].tolist()} are not class labels")
    return values.astype(np.uint32)


def _decode_tree(topology: np.ndarray, parameters: np.ndarray, n_classes: int, weighted: bool):
    """Walk one vigra tree from its root (topology index 2) into tree-local node arrays."""
    order: list[int] = []  # topology offsets in visit order
    local: dict[int, int] = {}
    stack = [2]
    while stack:
        pos = stack.pop()
        if pos in local:
            raise VigraForestError("a tree's topology refers back to an earlier node")
        if pos < 2 or pos >= len(topology):
            raise VigraForestError(f"node index {pos} outside the topology array")
        local[pos] = len(order)
        order.append(pos)
        kind = int(topology[pos])
        if kind == _THRESHOLD_NODE:
            stack.extend((int(topology[pos + 3]), int(topology[pos + 2])))
        elif kind != _LEAF_NODE:
            raise VigraForestError(f"unsupported vigra node type {kind} (only threshold splits are supported)")
    count = len(order)
    feature = np.full(count, LEAF, dtype=np.int32)
    threshold = np.zeros(count)
    left = np.full(count, -1, dtype=np.int64)
    right = np.full(count, -1, dtype=np.int64)
    values = np.zeros((count, n_classes))
    for i, pos in enumerate(order):
        p = int(topology[pos + 1])
        if int(topology[pos]) == _THRESHOLD_NODE:
            feature[i] = int(topology[pos + 4])
            threshold[i] = parameters[p + 1]
            left[i] = local[int(topology[pos + 2])]
            right[i] = local[int(topology[pos + 3])]
        else:
            weight = parameters[p] if weighted else 1.0
            values[i] = parameters[p + 1 : p + 1 + n_classes] * weight
    return feature, threshold, left, right, values


def read_vigra_forests(groups: Sequence[h5py.Group]) -> Forest:
    """Read one or several vigra forest groups into one :class:`Forest`.

    Parameters
    ----------
    groups : sequence of h5py.Group
        ``Forest0000``, ``Forest0001`` ... in ilastik's order; they must agree on labels and columns.

    Raises
    ------
    VigraForestError
        On a malformed or unsupported forest.
    """
    if not groups:
        raise VigraForestError("no forest groups")
    trees, counts = [], []
    labels = n_features = None
    for group in groups:
        ext = group["_ext_param"]
        opts = group["_options"]
        group_labels = _class_labels(ext["labels"])
        columns = int(_scalar(ext, "column_count_"))
        n_classes = int(_scalar(ext, "class_count_"))
        if len(group_labels) != n_classes:
            raise VigraForestError(f"{group.name}: {len(group_labels)} labels for {n_classes} classes")
        if labels is None:
            labels, n_features = group_labels, columns
        elif not np.array_equal(labels, group_labels) or columns != n_features:
            raise VigraForestError(f"{group.name}: labels or column count differ from the first forest")
        weighted = _scalar(opts, "predict_weighted_", 0.0) != 0.0
        tree_names = [name for name in group.keys() if not name.startswith("_")]
        for name in tree_names:  # h5py lists names in order, as vigra loads them
            tree = group[name]
            topology = np.asarray(tree["topology"][()])
            if topology.dtype.kind not in "iu":
                raise VigraForestError(f"{tree.name}: topology of {topology.dtype}, not integers")
            topology = topology.astype(np.int64)
            parameters = np.asarray(tree["parameters"][()], dtype=np.float64)
            if len(topology) < 4 or topology[1] != n_classes:
                raise VigraForestError(f"{tree.name}: topology header does not match the forest")
            trees.append(_decode_tree(topology, parameters, n_classes, weighted))
        counts.append(len(tree_names))
    return concatenate_trees(trees, counts, labels, n_features)
