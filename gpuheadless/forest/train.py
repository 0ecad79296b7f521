"""Train a random forest with vigra's parameters through scikit-learn, converted exactly."""
from __future__ import annotations

import math

import numpy as np

from .model import Forest, from_sklearn


def vigra_mtry(n_features: int) -> int:
    """Features tried per split, as vigra's default: ``floor(sqrt(n) + 0.5)``."""
    return max(1, int(math.floor(math.sqrt(n_features) + 0.5)))


def train_forest(
    x: np.ndarray,
    y: np.ndarray,
    n_trees: int = 100,
    threads: int = 1,
    seed: int | None = None,
) -> Forest:
    """Train a forest on labelled samples with ilastik's random-forest parameters.

    Bootstrap with replacement of N rows per tree, ``floor(sqrt(n_features) + 0.5)`` features per
    split, Gini impurity, nodes split until pure, no class weighting (spec §6.2).

    Parameters
    ----------
    x : (n_samples, n_features) float32
    y : (n_samples,) integer labels (1..K)
    n_trees : int
    threads : int
    seed : int, optional
        Makes training reproducible (ilastik's is not).

    Returns
    -------
    Forest
        One forest; its class columns are the sorted unique labels.
    """
    from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415 - slow import

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    model = RandomForestClassifier(
        n_estimators=n_trees,
        criterion="gini",
        max_features=vigra_mtry(x.shape[1]),
        bootstrap=True,
        min_samples_split=2,
        min_samples_leaf=1,
        n_jobs=max(1, threads),
        random_state=seed,
    )
    model.fit(x, y)
    return from_sklearn(model, labels=np.asarray(model.classes_, dtype=np.uint32))
