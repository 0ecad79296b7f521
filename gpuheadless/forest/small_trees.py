"""Tables for the bit-vector evaluation of forests whose trees have at most 64 leaves (``_csmalltrees``).

ilastik's forests trained on a few brush strokes are of this kind (the 2D test projects: 100 trees,
524 nodes): walking them node by node costs a chain of dependent loads per tree and row, while
the bit-vector form is one comparison per split for 8 rows at once.
"""
from __future__ import annotations

import numpy as np

MAX_LEAVES = 64  # one bit per leaf in a 64-bit word

# the packed node of forest/_cforest.c: feature, threshold (rounded up to float32), left child
# (the right one is next to it), leaf row (-1 for a split)
NODE = np.dtype([("feature", "<i4"), ("threshold", "<f4"), ("left", "<i4"), ("leaf", "<i4")])


def small_tree_tables(nodes: np.ndarray, roots: np.ndarray, n_features: int) -> tuple[np.ndarray, ...] | None:
    """The bit-vector tables of a packed forest, or None if a tree has more than 64 leaves.

    Parameters
    ----------
    nodes : uint8 array
        The packed node table (16 bytes per node, :data:`NODE`).
    roots : (n_trees,) int32
    n_features : int

    Returns
    -------
    split_feature_start : (n_features + 1,) int32
        Splits of feature j are ``split_*[start[j]:start[j + 1]]``.
    split_threshold : (n_splits,) float32
    split_tree : (n_splits,) int32
    split_left_leaves : (n_splits,) uint64
        The leaves of the split's left subtree, as bits (leaves numbered left to right per tree).
    tree_leaves : (n_trees,) uint64
        Every leaf of the tree, as bits.
    leaf_row : (n_trees * 64,) int32
        Row of the leaf value table for each (tree, bit).
    """
    table = np.frombuffer(nodes, dtype=NODE)
    features, thresholds, trees, gone = [], [], [], []
    tree_leaves = np.zeros(len(roots), dtype=np.uint64)
    leaf_row = np.zeros(len(roots) * MAX_LEAVES, dtype=np.int32)
    for tree, root in enumerate(roots.tolist()):
        leaves = 0
        stack = [(int(root), False)]  # (node, its left subtree is done)
        open_splits: list[tuple[int, int]] = []  # (split node, first leaf of its left subtree)
        while stack:
            node, left_done = stack.pop()
            entry = table[node]
            if entry["leaf"] >= 0:
                if leaves == MAX_LEAVES:
                    return None
                leaf_row[tree * MAX_LEAVES + leaves] = entry["leaf"]
                leaves += 1
                continue
            if not left_done:  # in order: left subtree, then mark the split, then right subtree
                open_splits.append((node, leaves))
                stack.append((node, True))
                stack.append((int(entry["left"]), False))
                continue
            split, first = open_splits.pop()
            features.append(int(table[split]["feature"]))
            thresholds.append(table[split]["threshold"])
            trees.append(tree)
            gone.append(((1 << leaves) - 1) ^ ((1 << first) - 1))
            stack.append((int(entry["left"]) + 1, False))
        tree_leaves[tree] = (1 << leaves) - 1 if leaves < MAX_LEAVES else (1 << 64) - 1
    order = np.argsort(np.asarray(features, dtype=np.int64), kind="stable")
    split_feature = np.asarray(features, dtype=np.int64)[order]
    start = np.searchsorted(split_feature, np.arange(n_features + 1)).astype(np.int32)
    return (start, np.asarray(thresholds, dtype=np.float32)[order], np.asarray(trees, dtype=np.int32)[order],
            np.asarray(gone, dtype=np.uint64)[order], tree_leaves, leaf_row)
