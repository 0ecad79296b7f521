"""Forest inference speed: gpuheadless's compiled kernel against scikit-learn's predict_proba.

Both predict the same 100-tree forest (trained by scikit-learn, converted exactly) on the same
float32 rows with 2 threads; the median of 3 runs after a warm-up is reported. Two forests are
timed: one trained on 5,000 samples (the size of a typical ilastik labelling) and a deep one
trained on 50,000. The pipeline hands the kernel feature-major rows, so that layout is timed too.

    python bench/forest_speed.py [--rows 1000000] [--features 49] [--train 5000 50000]
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
    parser.add_argument("--train", type=int, nargs="+", default=[5000, 50000],
                        help="training samples per forest (deeper trees with more)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    x_feature_major = np.asfortranarray(x)
    for n_train in args.train:
        x_train = rng.normal(size=(n_train, args.features)).astype(np.float32)
        y_train = (x_train[:, :3].sum(axis=1) + rng.normal(0, 0.5, n_train) > 0).astype(int) + 1
        model = RandomForestClassifier(100, max_features=vigra_mtry(args.features), n_jobs=2, random_state=0)
        model.fit(x_train, y_train)
        forest = from_sklearn(model)
        np.testing.assert_allclose(predict_cpu(forest, x[:10000]), model.predict_proba(x[:10000]), atol=1e-5)
        theirs = _median_time(lambda: model.predict_proba(x))
        depth = max(est.tree_.max_depth for est in model.estimators_)
        print(f"{args.rows} rows, {args.features} features, 100 trees from {n_train} samples "
              f"({forest.n_nodes} nodes, max depth {depth}), 2 threads")
        print(f"  scikit-learn               {theirs:7.3f} s  {args.rows / theirs / 1e6:6.2f} Mrows/s")
        for layout, rows in (("row-major", x), ("feature-major", x_feature_major)):
            ours = _median_time(lambda: predict_cpu(forest, rows, threads=2))
            print(f"  gpuheadless {layout:<14} {ours:7.3f} s  {args.rows / ours / 1e6:6.2f} Mrows/s"
                  f"   ({theirs / ours:.2f}x scikit-learn)")


if __name__ == "__main__":
    main()
