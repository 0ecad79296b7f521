// Per-object sums for the Standard Object Features: one thread per object walks that object's
// pixels in raster order (``order`` lists the pixel rows grouped by object, ``starts`` where each
// object's run begins), so every sum adds the same values in the same order as the CPU's
// np.bincount, and the results are bit-identical. Divisions and the rest stay on the host.

extern "C" __global__ void object_sums(const double *columns, const long long *order, const long long *starts,
                                       long long bins, long long k, double *out)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < bins; b += stride) {
        for (long long c = 0; c < k; ++c) {
            double sum = 0.0;
            for (long long p = starts[b]; p < starts[b + 1]; ++p)
                sum = sum + columns[order[p] * k + c];
            out[b * k + c] = sum;
        }
    }
}

// Sums of centred values d = x - centre: d^2, d^2*d and d^2*d^2 per column (when ``powers``), and
// d_a*d_b for each listed pair of columns.
extern "C" __global__ void object_centred_sums(const double *columns, const long long *order, const long long *starts,
                                               const double *centre, long long bins, long long k, int powers,
                                               const long long *pairs, long long n_pairs, double *power_sums,
                                               double *pair_sums)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < bins; b += stride) {
        if (powers) {
            for (long long c = 0; c < k; ++c) {
                double m2 = 0.0, m3 = 0.0, m4 = 0.0;
                const double mean = centre[b * k + c];
                for (long long p = starts[b]; p < starts[b + 1]; ++p) {
                    const double d = columns[order[p] * k + c] - mean;
                    const double squared = d * d;
                    m2 = m2 + squared;
                    m3 = m3 + squared * d;
                    m4 = m4 + squared * squared;
                }
                power_sums[(b * 3 + 0) * k + c] = m2;
                power_sums[(b * 3 + 1) * k + c] = m3;
                power_sums[(b * 3 + 2) * k + c] = m4;
            }
        }
        for (long long q = 0; q < n_pairs; ++q) {
            const long long a = pairs[2 * q], c = pairs[2 * q + 1];
            double sum = 0.0;
            for (long long p = starts[b]; p < starts[b + 1]; ++p) {
                const long long row = order[p];
                sum = sum + (columns[row * k + a] - centre[b * k + a]) * (columns[row * k + c] - centre[b * k + c]);
            }
            pair_sums[b * n_pairs + q] = sum;
        }
    }
}
