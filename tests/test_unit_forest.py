"""The random forest on small generated samples: training, prediction paths, threads, NaN rows and
the vigra HDF5 round trip (no external data)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from gpuheadless.backend import cpu_backend
from forest_reference import predict_reference
from gpuheadless.forest.predict import predict_cpu, predict_proba
from gpuheadless.forest.train import train_forest, vigra_mtry
from gpuheadless.project.vigra_forest import read_vigra_forests
from gpuheadless.project.vigra_writer import write_vigra_forest


def samples(n=600, seed=0):
    """Three classes in 5 features: the class is decided by features 0 and 1 only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 3, np.where(x[:, 1] > 0, 2, 1))
    return x, y


@pytest.fixture(scope="module")
def forest():
    x, y = samples()
    return train_forest(x, y, n_trees=12, seed=4)


def test_mtry_is_vigras_rounded_square_root():
    """``floor(sqrt(n) + 0.5)``, at least 1."""
    assert [vigra_mtry(n) for n in (1, 2, 3, 6, 7, 28, 100)] == [1, 1, 2, 2, 3, 5, 10]


def test_a_trained_forest_learns_the_rule_and_its_probabilities_sum_to_one(forest):
    """On unseen samples the most probable class is right for most rows, all three classes occur,
    and each row's probabilities sum to 1."""
    x, y = samples(2000, seed=1)
    p = predict_cpu(forest, x)
    assert p.shape == (2000, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    predicted = forest.labels[np.argmax(p, axis=1)]
    assert set(predicted.tolist()) == {1, 2, 3} and forest.labels.tolist() == [1, 2, 3]
    assert (predicted == y).mean() > 0.9


def test_prediction_paths_and_threads_agree(forest):
    """The compiled kernel (any number of threads), the reference and the backend entry agree."""
    x, _ = samples(1003, seed=2)
    one = predict_cpu(forest, x)
    np.testing.assert_array_equal(predict_cpu(forest, x, threads=3), one)
    np.testing.assert_allclose(predict_reference(forest, x), one, atol=1e-6)
    np.testing.assert_array_equal(predict_proba(forest, x, cpu_backend()), one)
    np.testing.assert_array_equal(predict_cpu(forest, np.asfortranarray(x)), one)  # feature-major input
    assert predict_cpu(forest, x[:0]).shape == (0, 3)
    with pytest.raises(ValueError):
        predict_cpu(forest, x[:, :3])


def test_rows_with_nan_get_zero_probabilities(forest):
    """A row holding NaN predicts all-zero probabilities; the other rows are unaffected."""
    x, _ = samples(10, seed=3)
    clean = predict_cpu(forest, x)
    x[4, 2] = np.nan
    p = predict_cpu(forest, x)
    assert not p[4].any() and p[[0, 1, 2, 3, 5]].sum() == pytest.approx(5, abs=1e-4)
    np.testing.assert_array_equal(np.delete(p, 4, 0), np.delete(clean, 4, 0))


def test_vigra_forest_round_trip_predicts_identically(forest, tmp_path):
    """A forest written in vigra's HDF5 layout (split in two groups) reads back predicting the same."""
    x, y = samples(500, seed=5)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_vigra_forest(f.create_group("Forest0000"), forest, range(0, 5), len(y), vigra_mtry(5))
        write_vigra_forest(f.create_group("Forest0001"), forest, range(5, 12), len(y), vigra_mtry(5))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        back = read_vigra_forests([f["Forest0000"], f["Forest0001"]])
    assert back.n_trees == 12 and back.forest_tree_counts.tolist() == [5, 7] and back.labels.tolist() == [1, 2, 3]
    np.testing.assert_allclose(predict_cpu(back, x), predict_cpu(forest, x), atol=1e-6)


def test_deep_trees_use_the_general_kernel_and_agree_with_the_reference():
    """Trees with more than 64 leaves (noisy labels) take the general kernel; it equals the reference."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    y = rng.integers(1, 3, 3000)  # pure noise: every tree grows hundreds of leaves
    forest = train_forest(x, y, n_trees=3, seed=1)
    assert forest.n_nodes > 3 * 2 * 64
    test = rng.normal(size=(500, 4)).astype(np.float32)
    p = predict_cpu(forest, test)
    np.testing.assert_allclose(p, predict_reference(forest, test), atol=1e-6)
    assert 0 < p[:, 0].mean() < 1
