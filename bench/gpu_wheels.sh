#!/usr/bin/env bash
# Fill .gpu_carry/ for bench/gpu_check.sh: the wheels the GPU machine's image lacks (it has no
# package registry) and the shared data (../shared does not travel), about 15 MiB in all.
#
#   bench/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12, the device's python3
#
# Versions are those of this checkout's .venv, for CPython PYTHON_VERSION on manylinux x86-64.
# Carry the folder with the run tool: carry=[".gpu_carry"], command "bash bench/gpu_check.sh".
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYVER=${1:-3.12}
CARRY=${GPU_CHECK_CARRY:-$REPO/.gpu_carry}
DATA=${GPUHEADLESS_TEST_DATA:-$REPO/../shared/data/ilastik}
PIP=${PIP:-$REPO/.venv/bin/python -m pip}
# Missing from the image (KINDS.md): treelite for the forests; zarr, numcodecs and Dask for the
# OME-Zarr and cluster paths, with the needs of theirs the image lacks as well.
PACKAGES=(treelite zarr numcodecs donfig dask distributed partd locket tblib zict tornado)

grep -qx '/.gpu_carry/' "$REPO/.git/info/exclude" 2>/dev/null || echo '/.gpu_carry/' >> "$REPO/.git/info/exclude"
rm -rf "$CARRY/wheels" && mkdir -p "$CARRY/wheels"
for name in "${PACKAGES[@]}"; do
    version=$($PIP show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
    spec=$name${version:+==$version}
    $PIP download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$CARRY/wheels" "$spec"
done
tar -C "$DATA" -cf - projects inputs | xz -6 -T2 > "$CARRY/shared-data.tar.xz"
du -sh "$CARRY"/wheels "$CARRY"/shared-data.tar.xz
