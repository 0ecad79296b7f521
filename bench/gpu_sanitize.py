"""A small pixel run and a small object run in one process, for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 3 python bench/gpu_sanitize.py --out DIR
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("GPUHEADLESS_TEST_DATA", HERE.parents[1] / "shared" / "data" / "ilastik"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="gpu")
    args = parser.parse_args(argv)
    from gpuheadless.cli import main as cli

    args.out.mkdir(parents=True, exist_ok=True)
    pixel = cli(["--headless", f"--project={DATA}/projects/PixelClassification3d.ilp", f"--device={args.device}",
                 f"--output_filename_format={args.out}/pixel.h5", "--cutout_subregion=[(0,0,0,None),(20,40,40,None)]",
                 f"{DATA}/inputs/3d.h5/data"])
    objects = cli(["--headless", f"--project={DATA}/projects/ObjectClassification5t3d2c_wPred.ilp",
                   f"--device={args.device}", f"--raw_data={DATA}/inputs/5t3d2c.h5/data",
                   f"--prediction_maps={DATA}/inputs/5t3d2c_Probabilities.h5/exported_data",
                   "--export_source=Object Identities", f"--output_filename_format={args.out}/objects.h5"])
    print(f"pixel run: exit {pixel}; object run: exit {objects}")
    return pixel or objects


if __name__ == "__main__":
    sys.exit(main())
