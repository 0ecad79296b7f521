"""Forest inference with vigra's semantics, exact conversions, and the treelite exchange."""
from __future__ import annotations

import numpy as np
import pytest

from gpuheadless.forest.model import float32_strict_upper_bound_for_le, from_treelite, to_treelite
from forest_reference import predict_reference
from gpuheadless.forest.predict import predict_cpu
from gpuheadless.forest.train import train_forest, vigra_mtry


def _edge_rows(forest, n=6000, seed=0):
    """Random rows plus rows sitting exactly at, just below and just above split thresholds."""
    rng = np.random.default_rng(seed)
    interior = forest.feature >= 0
    thresholds, columns = forest.threshold[interior], forest.feature[interior]
    lo, hi = thresholds.min(), thresholds.max()
    x = rng.uniform(lo - 1, hi + 1, (n, forest.n_features)).astype(np.float32)
    for i in range(n):
        j = rng.integers(len(thresholds))
        t = np.float32(thresholds[j])
        x[i, columns[j]] = (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)))[i % 3]
    return x


def test_reads_all_eight_vigra_forests(stored_forest):
    assert stored_forest.n_trees == 100
    assert list(stored_forest.forest_tree_counts) == [13, 13, 13, 13, 12, 12, 12, 12]
    assert stored_forest.n_features == 28 and list(stored_forest.labels) == [1, 2]


def test_compiled_kernel_equals_reference_at_and_next_to_every_threshold(stored_forest):
    x = _edge_rows(stored_forest)
    expected = predict_reference(stored_forest, x)
    np.testing.assert_array_equal(predict_cpu(stored_forest, x, threads=2), expected)
    np.testing.assert_array_equal(predict_cpu(stored_forest, np.asfortranarray(x)), expected)  # any strides


@pytest.mark.parametrize("defect", ["cycle", "column beyond n_features", "child out of range"])
def test_compiled_kernel_refuses_a_malformed_node_table(defect):
    from gpuheadless.forest.model import Forest

    feature = np.array([0, -1, -1], np.int32)
    left, right = np.array([1, -1, -1], np.int32), np.array([2, -1, -1], np.int32)
    if defect == "cycle":
        left[0] = 0
    elif defect == "column beyond n_features":
        feature[0] = 5
    else:
        right[0] = 7
    forest = Forest(feature, np.zeros(3), left, right, np.eye(3, 2), np.array([0], np.int32),
                    np.array([1], np.int32), np.array([1, 2], np.uint32), n_features=2)
    with pytest.raises(ValueError, match="malformed forest"):
        predict_cpu(forest, np.zeros((4, 2), np.float32))


def test_reference_uses_strict_less_than(stored_forest):
    node = int(stored_forest.roots[0])
    column, t = int(stored_forest.feature[node]), stored_forest.threshold[node]
    x = np.zeros((2, stored_forest.n_features), np.float32)
    x[0, column] = np.float32(t) if np.float32(t) >= t else np.nextafter(np.float32(t), np.float32(np.inf))
    x[1, column] = np.nextafter(x[0, column], np.float32(-np.inf))
    # A value at or above the threshold goes right; the float32 below it (if < t) goes left.
    assert float(x[0, column]) >= t and float(x[1, column]) < t


def test_nan_rows_give_zeros(stored_forest):
    x = _edge_rows(stored_forest, 10)
    x[3, 5] = np.nan
    out = predict_cpu(stored_forest, x)
    assert np.all(out[3] == 0) and np.allclose(out[[0, 1, 2]].sum(axis=1), 1)


def test_le_to_lt_conversion_decides_every_float32_the_same():
    rng = np.random.default_rng(4)
    t = np.concatenate([rng.normal(0, 100, 500), rng.normal(0, 100, 500).astype(np.float32).astype(np.float64), [0.0, -0.0, 1e-40]])
    lt = float32_strict_upper_bound_for_le(t)
    xs = np.stack([t.astype(np.float32), np.nextafter(t.astype(np.float32), np.float32(np.inf)),
                   np.nextafter(t.astype(np.float32), np.float32(-np.inf))]).astype(np.float64)
    assert np.array_equal(xs <= t, xs < lt)


def test_trained_forest_matches_scikit_learn_exactly_and_round_trips_treelite():
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 7)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + 1
    forest = train_forest(x, y, n_trees=20, seed=3)
    model = RandomForestClassifier(n_estimators=20, max_features=vigra_mtry(7), random_state=3, n_jobs=1).fit(x, y)
    test = np.concatenate([x, rng.normal(size=(2000, 7)).astype(np.float32)])
    # every threshold and its float32 neighbours
    for tree in model.estimators_:
        inner = tree.tree_.children_left >= 0
        for f, t in zip(tree.tree_.feature[inner], tree.tree_.threshold[inner]):
            row = test[0].copy()
            for v in (np.float32(t), np.nextafter(np.float32(t), np.float32(np.inf)), np.nextafter(np.float32(t), np.float32(-np.inf))):
                row[f] = v
                test = np.vstack([test, row])
    ours = predict_cpu(forest, test)
    np.testing.assert_allclose(ours, model.predict_proba(test), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(ours, 1), np.argmax(model.predict_proba(test), 1))
    back = from_treelite(to_treelite(forest))
    np.testing.assert_array_equal(predict_cpu(back, test), ours)


def test_treelite_gtil_agrees_with_the_stored_forest(stored_forest):
    import treelite

    x = _edge_rows(stored_forest, 2000)
    gtil = treelite.gtil.predict(to_treelite(stored_forest), x.astype(np.float64)).reshape(len(x), -1)
    np.testing.assert_allclose(gtil, predict_cpu(stored_forest, x), atol=1e-6)
