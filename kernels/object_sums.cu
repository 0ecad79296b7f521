// Per-object sums for the Standard Object Features, bit-identical to the CPU's np.bincount.
//
// The CPU adds each object's pixels one after the other in raster order, so every sum is a chain
// of float64 additions in one fixed order; splitting an object's pixels among threads (a tree or
// warp reduction) would add them in another order and change the last bits. What is independent
// is the sum of each (object, column): one thread per pair, walking that object's pixels in
// raster order (``order`` lists the pixel rows grouped by object, ``starts`` where each object's
// run begins). A large object is then worked on by as many threads as there are columns (values,
// coordinates, their centred powers and products), neighbouring threads reading neighbouring
// columns of the same pixel row. ``schedule`` lists the objects largest first, so the long walks
// start first and the small objects fill in around them. Divisions and the rest stay on the host.

extern "C" __global__ void object_sums(const double *columns, const long long *order, const long long *starts,
                                       const long long *schedule, long long bins, long long k, double *out)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < bins * k; t += stride) {
        const long long b = schedule[t / k], c = t % k;
        double sum = 0.0;
        for (long long p = starts[b]; p < starts[b + 1]; ++p)
            sum = sum + columns[order[p] * k + c];
        out[b * k + c] = sum;
    }
}

// Second central moments as vigra's accumulators update them (Welford): for the j-th pixel x of an
// object (j from 1), with S the running sum and diff = S / j - x, add j/(j-1) * (diff * diff) to the
// column's square sum and (j/(j-1) * diff_b) * diff_a to the product sum of a pair of columns,
// a < b by index. Bit-identical to running_moment_sums in gpuheadless/objects/features.py.

__device__ double square_sum(const double *columns, const long long *order, long long first, long long last,
                             long long k, long long c)
{
    double sum = 0.0, m2 = 0.0, count = 0.0;
    for (long long p = first; p < last; ++p) {
        const double x = columns[order[p] * k + c];
        sum = sum + x;
        count = count + 1.0;
        if (count > 1.0) {
            const double diff = sum / count - x;
            m2 = m2 + count / (count - 1.0) * (diff * diff);
        }
    }
    return m2;
}

__device__ double pair_sum(const double *columns, const long long *order, long long first, long long last,
                           long long k, long long a, long long b)
{
    const long long low = a < b ? a : b, high = a < b ? b : a;
    double sum_low = 0.0, sum_high = 0.0, total = 0.0, count = 0.0;
    for (long long p = first; p < last; ++p) {
        const long long row = order[p];
        const double x_low = columns[row * k + low], x_high = columns[row * k + high];
        sum_low = sum_low + x_low;
        sum_high = sum_high + x_high;
        count = count + 1.0;
        if (count > 1.0)
            total = total + (count / (count - 1.0) * (sum_high / count - x_high)) * (sum_low / count - x_low);
    }
    return total;
}

// One thread per (object, task): tasks 0..k-1 are the square sums of each column (when
// ``squares``; otherwise there are none), the next ``n_pairs`` the pairs' product sums.
extern "C" __global__ void object_moment_sums(const double *columns, const long long *order, const long long *starts,
                                              const long long *schedule, long long bins, long long k, int squares,
                                              const long long *pairs, long long n_pairs, double *square_sums,
                                              double *pair_sums)
{
    const long long n_squares = squares ? k : 0, tasks = n_squares + n_pairs;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < bins * tasks; t += stride) {
        const long long b = schedule[t / tasks], task = t % tasks;
        const long long first = starts[b], last = starts[b + 1];
        if (task < n_squares) {
            square_sums[b * k + task] = square_sum(columns, order, first, last, k, task);
        } else {
            const long long q = task - n_squares;
            pair_sums[b * n_pairs + q] = pair_sum(columns, order, first, last, k, pairs[2 * q], pairs[2 * q + 1]);
        }
    }
}
