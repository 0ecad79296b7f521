// The smoothing of ilastik's Threshold and Size Filter: one pass of a symmetric Gaussian along
// one axis of a (n0, n1, n2, n3) float32 array, mirror borders, as vigra's convolveLine computes it
// (and the CPU path): in double, tap * value added from the leftmost offset to the rightmost,
// starting from 0; the result rounded to float32. ``taps`` holds the centre tap, then outwards.

__device__ long long smoothing_mirror(long long i, long long n)
{
    if (n == 1)
        return 0;
    while (i < 0 || i >= n)
        i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

extern "C" __global__ void smooth_pass(const float *in, float *out, const double *taps, long long n0, long long n1,
                                       long long n2, long long n3, int axis, int radius)
{
    const long long n = n0 * n1 * n2 * n3;
    const long long extent = axis == 0 ? n0 : axis == 1 ? n1 : n2;
    const long long step = axis == 0 ? n1 * n2 * n3 : axis == 1 ? n2 * n3 : n3;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long position = (i / step) % extent;
        const long long base = i - position * step;
        double sum = 0.0;
        for (int k = -radius; k <= radius; ++k)
            sum = sum + taps[k < 0 ? -k : k] * (double)in[base + smoothing_mirror(position + k, extent) * step];
        out[i] = (float)sum;
    }
}
