#!/usr/bin/env bash
# The GPU path on a fresh GPU machine, in one command of at most 8 minutes (issue 14):
#
#   bash bench/gpu_check.sh             # on the device: run tool, carry=[".gpu_carry"]
#   bash bench/gpu_check.sh --dry-run   # here, without a GPU: every step on the CPU, small sizes
#
# Installs the carried wheels offline (bench/gpu_wheels.sh fills .gpu_carry/), unpacks the shared
# data beside the checkout, builds the C extensions, runs the gpu-marked tests, GPU-vs-CPU parity
# bit for bit on every shared reference (the CPU side in the background meanwhile),
# compute-sanitizer memcheck and racecheck over a small pixel and object run, bench/run.py (GPU
# and CPU, 2D 2048^2 and 3D 256^3), a 256x1024x1024 volume on the GPU and a 2 GiB volume under
# --gpu_memory_mb=1024 with its peak GPU memory, then one summary table. Each step has its own
# time limit, cut to what is left of the whole budget. Results go to $OUT (summary.md,
# steps.tsv, gpu_check_logs.tar.gz); scratch data is deleted at the end.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$REPO/bench/results/gpu_check}
CARRY=${GPU_CHECK_CARRY:-$REPO/.gpu_carry}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
PYTHON=${GPU_CHECK_PYTHON:-python3}
START=$(date +%s)
WORK=$OUT/work
rm -rf "$WORK" && mkdir -p "$WORK" && : > "$OUT/steps.tsv"
export PYTHONUNBUFFERED=1 GPUHEADLESS_KERNEL_CACHE=$WORK/kernel-cache REPO OUT CARRY PYTHON WORK

record() {  # step, status, seconds
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/steps.tsv"
    printf '[%4ss] %-12s %s (%s s)\n' "$(( $(date +%s) - START ))" "$1" "$2" "$3"
}

step() {  # name, limit in s, command...: runs it with a time limit, logs to $WORK/name.log
    local name=$1 limit=$2; shift 2
    local left=$(( START + BUDGET - $(date +%s) - 20 ))
    (( limit > left )) && limit=$left
    if (( limit < 5 )); then record "$name" "SKIPPED (no time left)" 0; return; fi
    local t0=$SECONDS rc status
    if declare -F "$1" > /dev/null; then  # a function of this script: timeout needs a program
        timeout -k 5 "$limit" bash -c "$(declare -f "$1"); \"\$@\"" "$name" "$@" > "$WORK/$name.log" 2>&1; rc=$?
    else
        timeout -k 5 "$limit" "$@" > "$WORK/$name.log" 2>&1; rc=$?
    fi
    case $rc in 0) status=ok ;; 124|137) status="TIMEOUT after ${limit} s" ;; *) status="FAIL (exit $rc)" ;; esac
    record "$name" "$status" "$(( SECONDS - t0 ))"
    return $rc
}

# Environment: carried wheels first on the path, the shared data where every tool looks for it.
export SITE=$WORK/site
export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
DATA=$REPO/../shared/data/ilastik
if [ ! -d "$DATA/projects" ]; then
    mkdir -p "$DATA" 2>/dev/null || DATA=$WORK/shared/data/ilastik
    mkdir -p "$DATA" && tar -C "$DATA" -xJf "$CARRY/shared-data.tar.xz"
fi
export GPUHEADLESS_TEST_DATA=$DATA

install() {
    if compgen -G "$CARRY/wheels/*.whl" > /dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$CARRY"/wheels/*.whl || return 1
    fi
    "$PYTHON" setup.py -q build_ext --inplace --parallel 8 || return 1
    "$PYTHON" -c "import gpuheadless.cli, treelite, h5py; print('gpuheadless importable')"
}
device_info() {
    nvidia-smi || true
    "$PYTHON" -c "
import sys, numpy; print(sys.version, 'numpy', numpy.__version__)
from gpuheadless.backend import probe_gpu
backend, reason = probe_gpu(); print('probe:', backend.info if backend else reason)
import cupy; print('cupy', cupy.__version__, 'nvrtc', cupy.cuda.nvrtc.getVersion())"
}
parity() {  # the GPU side now, then the CPU side (running since setup) and the comparison
    "$PYTHON" bench/gpu_parity.py produce --device "$1" --out "$WORK/parity_$1" --threads 4 || return 1
    while kill -0 "$CPU_PARITY" 2> /dev/null; do sleep 1; done  # started by the parent shell
    "$PYTHON" bench/gpu_parity.py compare "$WORK/parity_cpu" "$WORK/parity_$1" --json "$WORK/parity.json"
}
sanitize() {  # tool
    command -v compute-sanitizer > /dev/null || { echo "compute-sanitizer is not installed"; return 1; }
    compute-sanitizer --tool "$1" --error-exitcode 3 "$PYTHON" bench/gpu_sanitize.py --out "$WORK/sanitize_$1"
}
bench() {
    "$PYTHON" bench/run.py --repeat 1 --skip-sweep --skip-objects --systems gpuheadless-gpu gpuheadless-cpu || return 1
    mkdir -p "$WORK/bench" && cp bench/results/latest.json "$WORK/bench/benchmark.json"
}

step setup 90 install || { "$PYTHON" bench/gpu_summary.py "$OUT"; exit 1; }
if (( DRY )); then
    DEVICE=cpu
    record device-info "SKIPPED (dry run)" 0
else
    DEVICE=gpu
    step device-info 30 device_info
fi
timeout -k 5 240 "$PYTHON" bench/gpu_parity.py produce --device cpu --out "$WORK/parity_cpu" --threads 4 \
    > "$WORK/parity-cpu.log" 2>&1 &
export CPU_PARITY=$!
step tests 75 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_kernels.py tests/test_cupy_arrays.py \
    tests/test_gpu_fixes.py tests/test_gpu_check.py
if (( DRY )); then
    step parity 120 parity cpu
else
    step parity 120 parity gpu
fi
if (( DRY )); then
    record memcheck "SKIPPED (dry run)" 0; record racecheck "SKIPPED (dry run)" 0; record bench "SKIPPED (dry run)" 0
    step large 60 "$PYTHON" bench/gpu_volumes.py large --out "$WORK/large" --device cpu --shape 40 64 64
    step memory 60 "$PYTHON" bench/gpu_volumes.py memory --out "$WORK/memory" --device cpu --shape 40 64 64 --gpu-memory-mb 64
else
    step memcheck 70 sanitize memcheck
    step racecheck 45 sanitize racecheck
    step bench 120 bench
    step large 60 "$PYTHON" bench/gpu_volumes.py large --out "$WORK/large"
    step memory 75 "$PYTHON" bench/gpu_volumes.py memory --out "$WORK/memory" --gpu-memory-mb 1024
fi
"$PYTHON" bench/gpu_summary.py "$OUT"; verdict=$?
echo "total $(( $(date +%s) - START )) s of ${BUDGET} s"
tar -C "$WORK" -czf "$OUT/gpu_check_logs.tar.gz" --exclude='parity_*' --exclude='site' --exclude='kernel-cache' \
    --exclude='*.h5' --exclude='shared' . 2>/dev/null
[ -n "${GPU_CHECK_KEEP:-}" ] || rm -rf "$WORK"
exit $verdict
