"""Write forests in vigra's RandomForest HDF5 format (spec/object-classification.md §7.1-§7.2).

The inverse of :mod:`.vigra_forest`: every tree of a :class:`~gpuheadless.forest.model.Forest`
becomes a ``Tree_NN`` group with vigra's ``topology``/``parameters`` encoding. The Forest's
thresholds already have vigra's meaning (go left iff ``float32 x < threshold``), so they are
written as they are, and ilastik predicts with them exactly as gpuheadless does.
"""
from __future__ import annotations

from typing import Sequence

import h5py
import numpy as np

from ..forest.model import Forest

LEAF_TAG = 0x40000000
THRESHOLD_SPLIT = 0


def encode_tree(forest: Forest, root: int) -> tuple[np.ndarray, np.ndarray]:
    """vigra's ``topology`` (int32) and ``parameters`` (float64) of the tree rooted at ``root``.

    Nodes are laid out depth first, the root at topology index 2; a split is
    ``[0, p, left, right, column]`` with ``parameters[p:p+2] = [1, threshold]``, a leaf
    ``[0x40000000, p]`` with ``parameters[p:p+1+C] = [1, p_1 ... p_C]`` (the leaf weight is
    unused when ``predict_weighted_`` is 0, as ilastik writes it).
    """
    topology: list[int] = [forest.n_features, forest.n_classes]
    parameters: list[float] = []
    stack: list[tuple[int, int, int]] = [(root, -1, 0)]  # (node, parent slot to patch, which child)
    while stack:
        node, parent, side = stack.pop()
        index = len(topology)
        if parent >= 0:
            topology[parent + 2 + side] = index
        if forest.feature[node] < 0:
            topology += [LEAF_TAG, len(parameters)]
            parameters += [1.0, *forest.values[node].tolist()]
        else:
            topology += [THRESHOLD_SPLIT, len(parameters), -1, -1, int(forest.feature[node])]
            parameters += [1.0, float(forest.threshold[node])]
            stack.append((int(forest.right[node]), index, 1))
            stack.append((int(forest.left[node]), index, 0))
    return np.asarray(topology, dtype=np.int32), np.asarray(parameters, dtype=np.float64)


def write_vigra_forest(group: h5py.Group, forest: Forest, trees: Sequence[int], row_count: int, mtry: int) -> None:
    """Fill ``group`` with the trees ``trees`` of ``forest`` as one vigra forest.

    Parameters
    ----------
    group : h5py.Group
        Empty group, e.g. ``PixelClassification/ClassifierForests/Forest0000``.
    forest : Forest
    trees : sequence of int
        Indices into ``forest.roots``.
    row_count : int
        Number of training samples.
    mtry : int
        Features tried per split.
    """
    group.attrs["vigra_random_forest_version"] = np.array([0.1])
    options = {
        "min_split_node_size_": 1.0, "mtry_": 0.0, "mtry_func_": 0.0, "mtry_switch_": 6.0, "predict_weighted_": 0.0,
        "prepare_online_learning_": 0.0, "sample_with_replacement_": 1.0, "stratification_method_": 3.0,
        "training_set_calc_switch_": 1.0, "training_set_func_": 0.0, "training_set_proportion_": 1.0,
        "training_set_size_": 0.0, "tree_count_": float(len(trees)),
    }
    ext = {
        "actual_msample_": float(row_count), "actual_mtry_": float(mtry), "class_count_": float(forest.n_classes),
        "column_count_": float(forest.n_features), "is_weighted_": 1.0, "precision_": 0.0, "problem_type_": 1.0,
        "response_size_": 1.0, "row_count_": float(row_count), "used_": 1.0,
    }
    for name, values in (("_options", options), ("_ext_param", ext)):
        sub = group.create_group(name)
        for key, value in values.items():
            sub[key] = np.array([value], dtype=np.float64)
    group["_ext_param/class_weights_"] = np.ones(forest.n_classes, dtype=np.float64)
    group["_ext_param/labels"] = np.asarray(forest.labels, dtype=np.uint32)
    digits = len(str(max(len(trees) - 1, 0)))
    for k, t in enumerate(trees):
        topology, parameters = encode_tree(forest, int(forest.roots[t]))
        tree = group.create_group(f"Tree_{k:0{digits}d}")
        tree["topology"] = topology
        tree["parameters"] = parameters
