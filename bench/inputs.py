"""The benchmark inputs: BENCH.md's synthetic images (checksums verified) and the size sweep.

    python bench/inputs.py      # create them under bench/data/
"""
from __future__ import annotations

import hashlib
import os

import h5py
import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "data")
SHA256 = {
    "synth2d_2048.h5": "c23f2bb108d82338697070b4bbd35a48155f3b4c7b46392288b001f64d01d504",
    "synth3d_256.h5": "b177c6cc3e7c1d5c1a45bb584ea3e4df7119531e0f3ec192e99be7134f1622d4",
}
SWEEP_2D = (256, 512, 1024, 2048, 4096)


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




def sweep_input(side: int) -> str:
    """A ``side`` x ``side`` 2D image cut from (or mirror-tiled up from) the 2048 x 2048 one."""
    path = os.path.join(CACHE, f"sweep2d_{side}.h5")
    if not os.path.exists(path):
        with h5py.File(make_inputs()["synth2d_2048.h5"], "r") as f:
            base = f["data"][()]
        while base.shape[0] < side:
            base = np.block([[base, base[:, ::-1]], [base[::-1], base[::-1, ::-1]]])
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=base[:side, :side], chunks=(min(side, 256), min(side, 256)))
    return path


def volume_1gib() -> str:
    """A 640^3 float32 volume (1.0 GiB), mirror-tiled from the 256^3 one, for the memory check."""
    path = os.path.join(CACHE, "volume640_float32.h5")
    if not os.path.exists(path):
        with h5py.File(make_inputs()["synth3d_256.h5"], "r") as f:
            base = f["data"][()]
        side = 640
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("data", shape=(side,) * 3, dtype=np.float32, chunks=(64, 64, 64))
            for z in range(0, side, 64):  # slab by slab: the generator itself stays small
                index = np.arange(z, z + 64)
                period = 2 * base.shape[0]
                folded = np.where(index % period < base.shape[0], index % period, period - 1 - index % period)
                slab = base[folded]
                tiled = np.concatenate([slab, slab[:, ::-1], slab], axis=1)[:, :side]
                tiled = np.concatenate([tiled, tiled[:, :, ::-1], tiled], axis=2)[:, :, :side]
                ds[z:z + 64] = tiled.astype(np.float32)
    return path


if __name__ == "__main__":
    for name, path in make_inputs().items():
        print(name, path)
    for side in SWEEP_2D:
        print(side, sweep_input(side))
