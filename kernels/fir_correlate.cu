// Separable FIR correlation along one axis of a float32 volume, with fastfilters' arithmetic
// (spec/pixel-classification.md §5.4): acc = c[0] * x[i], then for k = 1..r
// acc = fma(x[i+k] +/- x[i-k], c[k], acc), the pair sum rounded to float32 first. Along x, the
// positions fastfilters computes with scalar code ([0, plain_below) and [plain_from, n)) round the
// product and the sum separately. Borders mirror without repeating the edge pixel.
//
// One thread per output element, grid-stride loop. Compile with -fmad=false: only the explicit
// fmaf() below may fuse. Input strides are in elements (x stride 1); the output is C-contiguous.

__device__ __forceinline__ long long fir_reflect(long long i, long long n)
{
    if (n == 1)
        return 0;
    const long long period = 2 * n - 2;
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

extern "C" __global__ void fir_correlate(const float *in, float *out, const float *taps, long long n0, long long n1,
                                         long long n2, long long s0, long long s1, int axis, int radius,
                                         int antisymmetric, long long plain_below, long long plain_from)
{
    const long long total = n0 * n1 * n2;
    const float sign = antisymmetric ? -1.0f : 1.0f;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long c = idx % n2, b = (idx / n2) % n1, a = idx / (n1 * n2);
        long long pos, len, step;
        const float *line;
        if (axis == 2) {
            pos = c, len = n2, step = 1, line = in + a * s0 + b * s1;
        } else if (axis == 1) {
            pos = b, len = n1, step = s1, line = in + a * s0 + c;
        } else {
            pos = a, len = n0, step = s0, line = in + b * s1 + c;
        }
        const bool plain = axis == 2 && (pos < plain_below || pos >= plain_from);
        float acc = taps[0] * line[pos * step];
        for (int k = 1; k <= radius; ++k) {
            const float pair = line[fir_reflect(pos + k, len) * step] + sign * line[fir_reflect(pos - k, len) * step];
            acc = plain ? acc + taps[k] * pair : fmaf(pair, taps[k], acc);
        }
        out[idx] = acc;
    }
}
