// Eigenvalues of symmetric 2x2 and 3x3 matrices per pixel, largest first, with fastfilters'
// float32 arithmetic: the same steps as gpuheadless/features/_ceigen.c and eigen.py (2x2), so the
// CPU and GPU give the same bits. Compile with -fmad=false: no product and sum may fuse.
// One thread per pixel, grid-stride loop; outputs are separate contiguous arrays.

#include "eigen3_math.h"

extern "C" __global__ void eigenvalues3(const float *a00, const float *a01, const float *a02, const float *a11,
                                        const float *a12, const float *a22, float *ev0, float *ev1, float *ev2,
                                        long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float ev[3];
        ev_solve3(a00[i], a01[i], a02[i], a11[i], a12[i], a22[i], ev);
        ev0[i] = ev[0];
        ev1[i] = ev[1];
        ev2[i] = ev[2];
    }
}

extern "C" __global__ void eigenvalues2(const float *xx, const float *xy, const float *yy, float *ev0, float *ev1,
                                        long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float half_trace = (xx[i] + yy[i]) * 0.5f;
        const float half_diff = (xx[i] - yy[i]) * 0.5f;
        const float root = sqrtf(half_diff * half_diff + xy[i] * xy[i]);
        ev0[i] = half_trace + root;
        ev1[i] = half_trace - root;
    }
}
