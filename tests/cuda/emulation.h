// CPU emulation of the CUDA subset the kernels in kernels/ use, for tests only (DESIGN §4):
// qualifiers become plain C++, blockIdx/threadIdx/blockDim/gridDim are thread_local variables a
// generated launcher sets before calling the kernel once per (block, thread), in any order.
// Build with -ffp-contract=off, the counterpart of nvcc's -fmad=false.
#pragma once
#include <cmath>
#include <cstdint>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

using std::isnan;
using std::signbit;

// Atomics: the launcher runs one thread at a time, so a plain read-modify-write is atomic.
inline long long atomicMin(long long *address, long long value)
{
    const long long old = *address;
    if (value < old)
        *address = value;
    return old;
}
