"""Vigra's random-forest prediction in plain NumPy: the oracle the compiled kernels are tested against."""
from __future__ import annotations

import numpy as np

from gpuheadless.forest.model import Forest


def predict_reference(forest: Forest, x: np.ndarray) -> np.ndarray:
    """Vigra-exact probabilities with plain NumPy (slow; the test oracle).

    Parameters
    ----------
    forest : Forest
    x : (n_rows, n_features) float32

    Returns
    -------
    (n_rows, n_classes) float32
    """
    x = np.asarray(x, dtype=np.float32)
    n_rows = x.shape[0]
    combined = np.zeros((n_rows, forest.n_classes), dtype=np.float32)
    rows = np.arange(n_rows)
    tree = 0
    for count in forest.forest_tree_counts:
        acc = np.zeros((n_rows, forest.n_classes), dtype=np.float32)
        total = np.zeros(n_rows, dtype=np.float64)
        for _ in range(int(count)):
            node = np.full(n_rows, forest.roots[tree], dtype=np.int64)
            tree += 1
            active = forest.feature[node] >= 0
            while active.any():
                n = node[active]
                go_left = x[rows[active], forest.feature[n]].astype(np.float64) < forest.threshold[n]
                node[active] = np.where(go_left, forest.left[n], forest.right[n])
                active = forest.feature[node] >= 0
            leaf = forest.values[node]
            for c in range(forest.n_classes):  # class by class, tree by tree, as vigra
                acc[:, c] += leaf[:, c].astype(np.float32)
                total += leaf[:, c]
        ftotal = total.astype(np.float32)
        safe = np.where(ftotal != 0, ftotal, np.float32(1))
        p = np.where(ftotal[:, None] != 0, acc / safe[:, None], np.float32(0))
        combined += p * np.float32(count)
    out = combined / np.float32(forest.n_trees)
    out[np.isnan(x).any(axis=1)] = 0
    return out.astype(np.float32)
