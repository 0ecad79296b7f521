"""Benchmark: gpuheadless on the BENCH.md inputs, wall time and peak memory of the whole command.

Regenerates ``synth2d_2048.h5`` (and with ``--3d`` ``synth3d_256.h5``) as ../shared/data/ilastik/BENCH.md
describes them (the checksums are verified), then runs
``gpuheadless --project=<full-feature project> <input>`` as a separate process with
``LAZYFLOW_THREADS=2`` and ``LAZYFLOW_TOTAL_RAM_MB=512`` (ilastik's best configuration there) and
reports the median of ``--repeat`` runs after one warm-up.

    python bench/run.py [--3d] [--repeat 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ilastik"))
CACHE = os.path.join(HERE, "data")
SHA256 = {
    "synth2d_2048.h5": "c23f2bb108d82338697070b4bbd35a48155f3b4c7b46392288b001f64d01d504",
    "synth3d_256.h5": "b177c6cc3e7c1d5c1a45bb584ea3e4df7119531e0f3ec192e99be7134f1622d4",
}
ILASTIK_FIGURES = {"2d": (5.8, 499), "3d": (21.0, 590)}  # BENCH.md, 512 MiB budget: wall s, peak MiB


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], n_blobs: int, rmin: float, rmax: float) -> np.ndarray:
    """BENCH.md's generator: blobs, uneven background, blur, noise, uint8."""
    nd = len(shape)
    image = np.zeros(shape, np.float32)
    centres = [rng.integers(0, n, n_blobs) for n in shape]
    radii = rng.uniform(rmin, rmax, n_blobs)
    for i in range(n_blobs):
        r = radii[i]
        c = [centres[d][i] for d in range(nd)]
        box = tuple(slice(max(0, int(c[d] - r - 1)), min(shape[d], int(c[d] + r + 2))) for d in range(nd))
        coords = [np.arange(box[d].start, box[d].stop).reshape([-1 if k == d else 1 for k in range(nd)]) for d in range(nd)]
        inside = sum((coords[d] - c[d]) ** 2 for d in range(nd)) <= r * r
        image[box][inside] = np.maximum(image[box][inside], rng.uniform(0.6, 1.0))
    background = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=min(shape) / 16)
    background = (background - background.min()) / (background.max() - background.min() + 1e-9)
    image = ndimage.gaussian_filter(image, 1.5) * 150 + 30 + 30 * background
    image += rng.normal(0, 12, shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_inputs() -> dict[str, str]:
    """Create (once) and verify the benchmark inputs; returns name -> path."""
    os.makedirs(CACHE, exist_ok=True)
    paths = {name: os.path.join(CACHE, name) for name in SHA256}
    if not all(os.path.exists(p) for p in paths.values()):
        rng = np.random.default_rng(42)  # one generator: the 2D image first, then the 3D one
        for name, args, chunks in (("synth2d_2048.h5", ((2048, 2048), 2500, 4, 14), (256, 256)),
                                   ("synth3d_256.h5", ((256, 256, 256), 1500, 3, 9), (64, 64, 64))):
            array = _blobs(rng, *args)
            with h5py.File(paths[name], "w") as f:
                f.create_dataset("data", data=array, chunks=chunks)
    for name, path in paths.items():
        with h5py.File(path, "r") as f:
            digest = hashlib.sha256(np.ascontiguousarray(f["data"][()]).tobytes()).hexdigest()
        if digest != SHA256[name]:
            raise SystemExit(f"{path}: checksum {digest} differs from BENCH.md's; delete it and rerun")
    return paths


def run_once(project: str, image: str, out: str, device: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one gpuheadless process."""
    env = dict(os.environ, LAZYFLOW_THREADS="2", LAZYFLOW_TOTAL_RAM_MB="512")
    cmd = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={project}", "--export_source=Probabilities",
           "--output_format=hdf5", f"--output_filename_format={out}", f"--device={device}", f"{image}/data"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--3d", dest="three_d", action="store_true", help="also run the 256^3 volume")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    inputs = make_inputs()
    cases = [("2d", "PixelClassification2d_allfeatures.ilp", inputs["synth2d_2048.h5"], 2048 * 2048)]
    if args.three_d:
        cases.append(("3d", "PixelClassification3d_allfeatures.ilp", inputs["synth3d_256.h5"], 256**3))
    print(f"{'case':5s} {'median wall s':>14s} {'Mvox/s':>8s} {'peak MiB':>9s}   ilastik 1.4.2 (BENCH.md, 512 MiB budget)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, project, image, voxels in cases:
            out = os.path.join(tmp, f"{name}.h5")
            run_once(os.path.join(DATA, "projects", project), image, out, args.device)  # warm-up
            runs = [run_once(os.path.join(DATA, "projects", project), image, out, args.device) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            ref_wall, ref_peak = ILASTIK_FIGURES[name]
            print(f"{name:5s} {wall:14.2f} {voxels / wall / 1e6:8.2f} {peak:9.0f}   {ref_wall:.1f} s, "
                  f"{voxels / ref_wall / 1e6:.2f} Mvox/s, {ref_peak} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
