"""Large volumes on one device: throughput, and peak GPU memory under --gpu_memory_mb.

    python bench/gpu_volumes.py large  --out DIR [--device gpu] [--shape 256 1024 1024]
    python bench/gpu_volumes.py memory --out DIR [--device gpu] [--shape 512 1024 1024] [--gpu-memory-mb 1024]

``large`` tiles BENCH.md's synthetic 256^3 image to ``shape`` (uint8) and runs the full-feature 3D
project; ``memory`` writes a float32 volume (2 GiB at the default shape) and runs
PixelClassification3d.ilp with the GPU budget while nvidia-smi is polled every 50 ms. Each
writes ``<command>.json`` (wall s, Mvox/s, stage split, peak GPU MiB above the idle level).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", HERE.parents[1] / "shared" / "data" / "ilastik"))
_STAGES = re.compile(r"(read|features|forest|write) ([0-9.]+) s")


class GpuMemoryPoll:
    """Largest ``memory.used`` (MiB) nvidia-smi reports while the context is open; None without it."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s, self.peak, self.idle = period_s, None, None
        self._stop = threading.Event()

    @staticmethod
    def used_mib() -> float | None:
        if shutil.which("nvidia-smi") is None:
            return None
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                              capture_output=True, text=True, timeout=10)
        return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout.strip() else None

    def _poll(self) -> None:
        while not self._stop.is_set():
            used = self.used_mib()
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.period_s)

    def __enter__(self) -> "GpuMemoryPoll":
        self.idle = self.used_mib()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def tiled_volume(shape: tuple[int, int, int], path: Path) -> Path:
    """BENCH.md's synth3d_256 tiled to ``shape`` (uint8, zyx)."""
    from inputs import make_inputs

    with h5py.File(make_inputs()["synth3d_256.h5"], "r") as f:
        tile = f["data"][()]
    reps = [-(-n // t) for n, t in zip(shape, tile.shape)]
    volume = np.tile(tile, reps)[: shape[0], : shape[1], : shape[2]]
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=volume, chunks=tuple(min(c, n) for c, n in zip((64, 128, 128), shape)))
    return path


def float_volume(shape: tuple[int, int, int], path: Path) -> Path:
    """A float32 volume of smooth noise in [0, 255] (2 GiB at 512 x 1024 x 1024)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_dataset("data", shape=shape, dtype=np.float32, chunks=tuple(min(c, n) for c, n in zip((32, 256, 256), shape)))
        for z in range(0, shape[0], 32):
            data[z:z + 32] = rng.random((min(32, shape[0] - z),) + shape[1:], dtype=np.float32) * 255
    return path


def run_cli(project: Path, image: Path, out: Path, device: str, extra: list[str]) -> dict:
    """One headless run; wall time, stage split and the tail of its log."""
    command = [sys.executable, "-m", "gpuheadless", "--headless", f"--project={project}", "--export_source=Probabilities",
               "--output_format=hdf5", f"--output_filename_format={out}/{{nickname}}_probabilities.h5",
               f"--device={device}", "--debug", *extra, f"{image}/data"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return {"returncode": done.returncode, "wall_s": wall, "stages_s": {k: float(v) for k, v in _STAGES.findall(done.stderr)},
            "log_tail": done.stderr.strip().splitlines()[-5:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("large", "memory"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--shape", type=int, nargs=3)
    parser.add_argument("--gpu-memory-mb", type=float, default=1024.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "large":
        shape = tuple(args.shape or (256, 1024, 1024))
        image = tiled_volume(shape, args.out / "large.h5")
        project, extra = DATA / "projects" / "PixelClassification3d_allfeatures.ilp", []
    else:
        shape = tuple(args.shape or (512, 1024, 1024))
        image = float_volume(shape, args.out / "memory.h5")
        project, extra = DATA / "projects" / "PixelClassification3d.ilp", [f"--gpu_memory_mb={args.gpu_memory_mb:g}"]
    with GpuMemoryPoll() as poll:
        result = run_cli(project, image, args.out, args.device, extra)
    voxels = int(np.prod(shape))
    result.update(command=args.command, shape=list(shape), voxels=voxels, device=args.device,
                  mvox_s=voxels / result["wall_s"] / 1e6, input_bytes=image.stat().st_size,
                  gpu_memory_mb_cap=args.gpu_memory_mb if args.command == "memory" else None,
                  gpu_idle_mib=poll.idle, gpu_peak_mib=poll.peak,
                  gpu_peak_above_idle_mib=None if poll.peak is None or poll.idle is None else poll.peak - poll.idle)
    (args.out / f"{args.command}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}))
    for f in args.out.glob("*.h5"):
        f.unlink()  # gigabytes: nothing of it has to come back
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
