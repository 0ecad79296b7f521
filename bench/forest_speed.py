"""Forest inference speed: gpuheadless's compiled kernel against scikit-learn's predict_proba.

Both predict the same 100-tree forest (trained by scikit-learn, converted exactly) on the same
float32 rows with 2 threads; the median of 3 runs after a warm-up is reported.

    python bench/forest_speed.py [--rows 1000000] [--features 49]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from gpuheadless.forest.model import from_sklearn
from gpuheadless.forest.predict import predict_cpu
from gpuheadless.forest.train import vigra_mtry


def _median_time(fn, repeat=3):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=49)
    parser.add_argument("--train", type=int, default=5000, help="training samples (deeper trees with more)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(args.train, args.features)).astype(np.float32)
    y_train = (x_train[:, :3].sum(axis=1) + rng.normal(0, 0.5, args.train) > 0).astype(int) + 1
    model = RandomForestClassifier(100, max_features=vigra_mtry(args.features), n_jobs=2, random_state=0).fit(x_train, y_train)
    forest = from_sklearn(model)
    x = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    ours = _median_time(lambda: predict_cpu(forest, x, threads=2))
    theirs = _median_time(lambda: model.predict_proba(x))
    assert np.array_equal(np.argmax(predict_cpu(forest, x[:10000]), 1), np.argmax(model.predict_proba(x[:10000]), 1))
    depth = max(est.tree_.max_depth for est in model.estimators_)
    print(f"{args.rows} rows, {args.features} features, 100 trees (max depth {depth}), 2 threads")
    print(f"gpuheadless   {ours:7.3f} s  {args.rows / ours / 1e6:6.2f} Mrows/s")
    print(f"scikit-learn  {theirs:7.3f} s  {args.rows / theirs / 1e6:6.2f} Mrows/s   ({theirs / ours:.2f}x)")


if __name__ == "__main__":
    main()
