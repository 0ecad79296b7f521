"""Training speed: `gpuheadless train` on scribbles in the 2048x2048 benchmark image.

Ten short strokes per class (about 1,500 labelled pixels) are drawn on the BENCH.md 2D image,
then a project with the full feature set (49 channels) and 100 trees is trained; features are
computed only on the boxes around the labels. Prints the wall time of the whole call.

    python bench/train_speed.py
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inputs import make_inputs  # noqa: E402


def strokes(shape: tuple[int, int], image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Horizontal strokes of 80 pixels: class 2 on bright pixels, class 1 on dark ones."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    for value, keep in ((1, image < 60), (2, image > 120)):
        drawn = 0
        while drawn < 10:
            y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1] - 80)
            row = keep[y, x:x + 80]
            if row.mean() > 0.9:
                labels[y, x:x + 80][row] = value
                drawn += 1
    return labels


def main() -> int:
    from gpuheadless import train

    image_path = make_inputs()["synth2d_2048.h5"]
    with h5py.File(image_path, "r") as f:
        image = f["data"][()]
    labels = strokes(image.shape, image)
    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(os.path.join(tmp, "labels.h5"), "w") as f:
            f["data"] = labels
        started = time.perf_counter()
        train([f"{image_path}/data"], [os.path.join(tmp, "labels.h5/data")], os.path.join(tmp, "p.ilp"),
              features="all", seed=0, threads=2)
        elapsed = time.perf_counter() - started
    print(f"trained 100 trees on {int((labels > 0).sum())} labelled pixels of a 2048x2048 image, 49 features: "
          f"{elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
