"""The bit-vector path for forests of small trees gives the node walker's probabilities bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from gpuheadless.forest import _cforest, _csmalltrees
from gpuheadless.forest.model import from_sklearn
from gpuheadless.forest.predict import bit_vector_tables, packed_forest, predict_cpu
from gpuheadless.forest.small_trees import MAX_LEAVES, NODE


def _forest(max_leaves, n_classes=3, n_features=7, seed=0, n_samples=400):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5) + (n_classes > 3) * (x[:, 2] > 1)
    y[rng.random(n_samples) < 0.2] = 0  # label noise: fully grown trees get many leaves
    model = RandomForestClassifier(n_estimators=12, max_leaf_nodes=max_leaves, random_state=seed).fit(x, y)
    return from_sklearn(model)


def _walker(forest, x):
    """The node walker's probabilities (the path used for trees of more than 64 leaves)."""
    nodes, leaf_values, roots = packed_forest(forest)
    counts = np.ascontiguousarray(forest.forest_tree_counts, dtype=np.int32)
    out = np.empty((x.shape[0], forest.n_classes), np.float32)
    _cforest.predict(nodes, leaf_values, roots, counts, x, out, forest.n_classes, forest.n_features, 0, x.shape[0],
                     x.strides[0] // 4, x.strides[1] // 4)
    return out


def _rows(n_rows, n_features, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    x[rng.random(x.shape) < 0.002] = np.nan  # rows with a NaN give zeros
    x[3, 0] = np.inf
    return x


@pytest.mark.parametrize("path", [0, 1])
@pytest.mark.parametrize("max_leaves", [2, 9, 64])
def test_bit_vectors_equal_the_walker(path, max_leaves):
    forest = _forest(max_leaves)
    assert bit_vector_tables(forest) is not None
    x = _rows(1003, forest.n_features, max_leaves)  # not a multiple of 8: the last group is padded
    # the pipeline's feature-major rows, and row-major rows
    feature_major = np.ascontiguousarray(x.T).T
    expected = _walker(forest, np.ascontiguousarray(x))
    assert np.isnan(x).any(axis=1).sum() > 0 and (expected.sum(axis=1) == 0).sum() >= np.isnan(x).any(axis=1).sum()
    assert len(np.unique(expected, axis=0)) > max_leaves // 2  # not a trivial forest
    _csmalltrees.force_path(path)
    try:
        for rows in (feature_major, np.ascontiguousarray(x)):
            np.testing.assert_array_equal(predict_cpu(forest, rows), expected)
    finally:
        _csmalltrees.force_path(-1)


def test_trees_of_more_than_64_leaves_use_the_walker():
    forest = _forest(None, n_samples=3000)  # fully grown
    nodes, _, roots = packed_forest(forest)
    leaves = (np.frombuffer(nodes, NODE)[: forest.n_nodes]["leaf"] >= 0).sum()
    assert leaves > MAX_LEAVES * forest.n_trees
    assert bit_vector_tables(forest) is None
    x = _rows(200, forest.n_features, 1)
    np.testing.assert_array_equal(predict_cpu(forest, x), _walker(forest, x))


def test_tables_number_leaves_left_to_right():
    """A stump on feature 1 at 0.5: its split removes leaf 0 (bit 1) when x[1] >= 0.5."""
    from gpuheadless.forest.model import Forest

    forest = Forest(feature=np.array([1, -1, -1]), threshold=np.array([0.5, 0, 0]), left=np.array([1, -1, -1]),
                    right=np.array([2, -1, -1]), values=np.array([[0, 0], [3.0, 1.0], [0.0, 2.0]]),
                    roots=np.array([0]), labels=np.array([1, 2], np.uint32), n_features=2,
                    forest_tree_counts=np.array([1]))
    start, threshold, tree, gone, tree_leaves, leaf_row = bit_vector_tables(forest)
    assert start.tolist() == [0, 0, 1] and threshold.tolist() == [0.5] and tree.tolist() == [0]
    assert gone.tolist() == [1] and tree_leaves.tolist() == [3]
    x = np.array([[9, 0.49], [9, 0.5], [9, np.float32(np.nextafter(np.float32(0.5), 0))]], np.float32)
    np.testing.assert_array_equal(predict_cpu(forest, x), [[0.75, 0.25], [0, 1], [0.75, 0.25]])
