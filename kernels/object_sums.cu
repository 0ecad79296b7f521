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

// Second central moments as vigra's accumulators update them (Welford): for the j-th pixel x of an
// object (j from 1), with S the running sum and diff = S / j - x, add j/(j-1) * (diff * diff) to the
// column's square sum (when ``squares``) and (j/(j-1) * diff_b) * diff_a to the product sum of each
// listed pair, a < b by index. Bit-identical to running_moment_sums in gpuheadless/objects/features.py.
extern "C" __global__ void object_moment_sums(const double *columns, const long long *order, const long long *starts,
                                              long long bins, long long k, int squares, const long long *pairs,
                                              long long n_pairs, double *square_sums, double *pair_sums)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < bins; b += stride) {
        if (squares) {
            for (long long c = 0; c < k; ++c) {
                double sum = 0.0, m2 = 0.0, count = 0.0;
                for (long long p = starts[b]; p < starts[b + 1]; ++p) {
                    const double x = columns[order[p] * k + c];
                    sum = sum + x;
                    count = count + 1.0;
                    if (count > 1.0) {
                        const double diff = sum / count - x;
                        m2 = m2 + count / (count - 1.0) * (diff * diff);
                    }
                }
                square_sums[b * k + c] = m2;
            }
        }
        for (long long q = 0; q < n_pairs; ++q) {
            const long long low = pairs[2 * q] < pairs[2 * q + 1] ? pairs[2 * q] : pairs[2 * q + 1];
            const long long high = pairs[2 * q] < pairs[2 * q + 1] ? pairs[2 * q + 1] : pairs[2 * q];
            double sum_low = 0.0, sum_high = 0.0, total = 0.0, count = 0.0;
            for (long long p = starts[b]; p < starts[b + 1]; ++p) {
                const long long row = order[p];
                const double x_low = columns[row * k + low], x_high = columns[row * k + high];
                sum_low = sum_low + x_low;
                sum_high = sum_high + x_high;
                count = count + 1.0;
                if (count > 1.0)
                    total = total + (count / (count - 1.0) * (sum_high / count - x_high)) * (sum_low / count - x_low);
            }
            pair_sums[b * n_pairs + q] = total;
        }
    }
}
