// Connected components of equal non-zero values, face neighbours only (4-connected in 2D,
// 6-connected in 3D), as ilastik labels objects. Union-find over linear (raster) indices: every
// link points at a smaller index, so each component ends with all its pixels pointing at its
// smallest index, i.e. its first pixel in raster order, whatever order the threads ran in.
// Finding a root halves the path it walks (below), so flattening costs about O(N log N), not O(N x depth).
// Background pixels (value 0) get parent -1.

// Path halving: each visited pixel is re-pointed to its grandparent on the way up, so chains stay
// short as the slab grows. Concurrent threads only ever lower a parent (atomicMin) to another pixel
// of the same component with a smaller index, which keeps both invariants the result rests on
// (parent[i] <= i, and i and parent[i] in one component); a plain store could undo a smaller link
// another thread has just made.
__device__ long long label_root(long long *parent, long long i)
{
    while (true) {
        const long long up = parent[i];
        if (up == i)
            return i;
        const long long grand = parent[up];
        if (grand < up)
            atomicMin(&parent[i], grand);
        i = up;
    }
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
