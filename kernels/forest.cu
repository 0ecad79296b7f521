// Random-forest probabilities with vigra's semantics (spec/object-classification.md §7.3),
// over the packed node table of gpuheadless/forest/_cforest.c pack(): 16-byte nodes
// {feature, float32 threshold rounded up, left (right = left + 1), leaf index or -1}, leaves that
// point to themselves, leaf values in float64. Per forest the class values are accumulated in
// float32 and their sum in float64; forests are combined weighted by their tree counts.
// A row with a NaN gives zeros. One thread per row. N_CLASSES is fixed at load time
// (-DN_CLASSES=2 ...). Compile with -fmad=false.

#ifndef N_CLASSES
#define N_CLASSES 2
#endif

struct ForestNode {
    int feature;
    float threshold;
    int left;
    int leaf;
};

extern "C" __global__ void forest_predict(const ForestNode *nodes, const double *leaf_values, const int *roots,
                                          const int *tree_counts, int n_forests, const float *x, long long n_rows,
                                          long long row_stride, long long col_stride, long long n_features, float *out)
{
    for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < n_rows; r += (long long)gridDim.x * blockDim.x) {
        const float *row = x + r * row_stride;
        bool has_nan = false;
        for (long long j = 0; j < n_features; ++j)
            has_nan = has_nan || isnan(row[j * col_stride]);
        float combined[N_CLASSES];
        for (int c = 0; c < N_CLASSES; ++c)
            combined[c] = 0.0f;
        int tree = 0, total_trees = 0;
        for (int f = 0; f < n_forests; ++f) {
            float acc[N_CLASSES];
            double total = 0.0;
            for (int c = 0; c < N_CLASSES; ++c)
                acc[c] = 0.0f;
            for (int k = 0; k < tree_counts[f]; ++k, ++tree) {
                int node = roots[tree];
                while (nodes[node].leaf < 0) {
                    const ForestNode nd = nodes[node];
                    node = nd.left + (row[nd.feature * col_stride] < nd.threshold ? 0 : 1);
                }
                const double *v = leaf_values + (long long)nodes[node].leaf * N_CLASSES;
                for (int c = 0; c < N_CLASSES; ++c) {
                    acc[c] += (float)v[c];
                    total += v[c];
                }
            }
            const float ftotal = (float)total, fcount = (float)tree_counts[f];
            for (int c = 0; c < N_CLASSES; ++c)
                combined[c] += (ftotal != 0.0f ? acc[c] / ftotal : 0.0f) * fcount;
            total_trees += tree_counts[f];
        }
        for (int c = 0; c < N_CLASSES; ++c)
            out[r * N_CLASSES + c] = has_nan ? 0.0f : combined[c] / (float)total_trees;
    }
}
