// Connected components of equal non-zero values, face neighbours only (4-connected in 2D,
// 6-connected in 3D), as ilastik labels objects. Union-find over linear (raster) indices: every
// link points at a smaller index, so each component ends with all its pixels pointing at its
// smallest index, i.e. its first pixel in raster order, whatever order the threads ran in.
// Background pixels (value 0) get parent -1.

__device__ long long label_root(const long long *parent, long long i)
{
    while (parent[i] != i)
        i = parent[i];
    return i;
}

__device__ void label_unite(long long *parent, long long a, long long b)
{
    while (true) {
        a = label_root(parent, a);
        b = label_root(parent, b);
        if (a == b)
            return;
        if (a < b) {
            const long long t = a;
            a = b;
            b = t;
        }
        // Hang the larger root under the smaller; if another thread moved it meanwhile, go on
        // from where it now points.
        const long long previous = atomicMin(&parent[a], b);
        if (previous == a)
            return;
        a = previous;
    }
}

extern "C" __global__ void label_init(const unsigned long long *values, long long *parent, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        parent[i] = values[i] ? i : -1;
}

extern "C" __global__ void label_merge(const unsigned long long *values, long long *parent,
                                       long long n0, long long n1, long long n2)
{
    const long long n = n0 * n1 * n2;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const unsigned long long v = values[i];
        if (!v)
            continue;
        const long long x = i % n2, y = (i / n2) % n1, z = i / (n1 * n2);
        if (x > 0 && values[i - 1] == v)
            label_unite(parent, i, i - 1);
        if (y > 0 && values[i - n2] == v)
            label_unite(parent, i, i - n2);
        if (z > 0 && values[i - n1 * n2] == v)
            label_unite(parent, i, i - n1 * n2);
    }
}

extern "C" __global__ void label_flatten(long long *parent, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        if (parent[i] >= 0)
            parent[i] = label_root(parent, i);
}
