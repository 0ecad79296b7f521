/*
 * CPU random-forest inference with vigra's exact semantics (spec/object-classification.md §7.3,
 * §4.4): a row with any NaN gives zeros; at a split go left iff (double)x[col] < threshold;
 * per forest the class values are accumulated in float32 and their sum in float64, the forest's
 * probabilities are acc / (float)total; forests are combined as sum_f P_f * n_f / n_total in
 * float32.
 *
 * pack() turns the flat node table of gpuheadless/forest/model.py into a traversal-friendly one:
 * trees laid out breadth first, both children of a node adjacent (next = left + !(x < t), no
 * branch), float32 thresholds rounded toward +inf (for float32 x, x < t32 decides exactly as
 * (double)x < t), and leaves that point to themselves (threshold NaN, left = self - 1). predict()
 * then walks GROUP rows through one tree in lockstep until none moves, which hides the latency of
 * the dependent node loads. The GIL is released, so Python threads can run row ranges at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int feature;
    float threshold;
    int left; /* right child is left + 1 */
    int leaf; /* index into the leaf value table, -1 for a split */
} Node;

enum { CHUNK = 4096, GROUP = 8 };

static int check_buffer(const Py_buffer *buf, Py_ssize_t itemsize, Py_ssize_t min_items, const char *name)
{
    if (buf->len < itemsize * min_items) {
        PyErr_Format(PyExc_ValueError, "%s: buffer too small (%zd bytes, need %zd)", name, buf->len,
                     itemsize * min_items);
        return 0;
    }
    return 1;
}

static float upper_float32(double t)
{
    float t32 = (float)t;
    if ((double)t32 < t)
        t32 = nextafterf(t32, INFINITY);
    return t32;
}

/* Breadth-first relabelling of every tree; returns 0 and sets an exception on a malformed table. */
static int pack_trees(const int *feature, const double *threshold, const int *left, const int *right,
                      const double *values, const int *roots, Py_ssize_t n_nodes, Py_ssize_t n_trees,
                      Py_ssize_t n_classes, Py_ssize_t n_features, Node *nodes, double *leaf_values, int *new_roots,
                      Py_ssize_t *n_packed)
{
    int *queue = (int *)malloc(sizeof(int) * (size_t)(n_nodes > 0 ? n_nodes : 1));
    if (!queue) {
        PyErr_NoMemory();
        return 0;
    }
    Py_ssize_t next_slot = 0, n_leaves = 0;
    for (Py_ssize_t t = 0; t < n_trees; ++t) {
        if (roots[t] < 0 || roots[t] >= n_nodes || next_slot >= n_nodes) {
            PyErr_SetString(PyExc_ValueError, "malformed forest: root out of range or too many nodes");
            free(queue);
            return 0;
        }
        Py_ssize_t head = next_slot, tail = next_slot;
        new_roots[t] = (int)next_slot;
        queue[tail++] = roots[t];
        next_slot++;
        while (head < tail) {
            Py_ssize_t slot = head;
            int old = queue[head++];
            Node *nd = &nodes[slot];
            if (feature[old] < 0) {
                nd->feature = 0;
                nd->threshold = NAN;
                nd->left = (int)slot - 1;
                nd->leaf = (int)n_leaves;
                memcpy(leaf_values + n_leaves * n_classes, values + (Py_ssize_t)old * n_classes,
                       sizeof(double) * (size_t)n_classes);
                n_leaves++;
                continue;
            }
            if (next_slot + 2 > n_nodes || feature[old] >= n_features || left[old] < 0 || left[old] >= n_nodes || right[old] < 0 ||
                right[old] >= n_nodes) {
                PyErr_SetString(PyExc_ValueError, "malformed forest: column or child out of range, or a cycle");
                free(queue);
                return 0;
            }
            nd->feature = feature[old];
            nd->threshold = upper_float32(threshold[old]);
            nd->left = (int)next_slot;
            nd->leaf = -1;
            queue[tail++] = left[old];
            queue[tail++] = right[old];
            next_slot += 2;
        }
    }
    free(queue);
    *n_packed = next_slot;
    return 1;
}

static PyObject *pack(PyObject *self, PyObject *args)
{
    Py_buffer feature_b, threshold_b, left_b, right_b, values_b, roots_b, nodes_b, leaves_b, new_roots_b;
    Py_ssize_t n_nodes, n_classes, n_features;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*w*w*nnn", &feature_b, &threshold_b, &left_b, &right_b, &values_b,
                          &roots_b, &nodes_b, &leaves_b, &new_roots_b, &n_nodes, &n_classes, &n_features))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int);
    Py_ssize_t n_packed = 0;
    if (n_classes < 1) {
        PyErr_SetString(PyExc_ValueError, "a forest needs at least one class");
        goto done;
    }
    if (!check_buffer(&feature_b, sizeof(int), n_nodes, "feature") ||
        !check_buffer(&threshold_b, sizeof(double), n_nodes, "threshold") ||
        !check_buffer(&left_b, sizeof(int), n_nodes, "left") || !check_buffer(&right_b, sizeof(int), n_nodes, "right") ||
        !check_buffer(&values_b, sizeof(double), n_nodes * n_classes, "values") ||
        !check_buffer(&nodes_b, sizeof(Node), n_nodes, "nodes") ||
        !check_buffer(&leaves_b, sizeof(double), n_nodes * n_classes, "leaf_values") ||
        !check_buffer(&new_roots_b, sizeof(int), n_trees, "packed roots"))
        goto done;
    if (pack_trees((const int *)feature_b.buf, (const double *)threshold_b.buf, (const int *)left_b.buf,
                   (const int *)right_b.buf, (const double *)values_b.buf, (const int *)roots_b.buf, n_nodes, n_trees,
                   n_classes, n_features, (Node *)nodes_b.buf, (double *)leaves_b.buf, (int *)new_roots_b.buf,
                   &n_packed))
        result = PyLong_FromSsize_t(n_packed);
done:
    PyBuffer_Release(&feature_b);
    PyBuffer_Release(&threshold_b);
    PyBuffer_Release(&left_b);
    PyBuffer_Release(&right_b);
    PyBuffer_Release(&values_b);
    PyBuffer_Release(&roots_b);
    PyBuffer_Release(&nodes_b);
    PyBuffer_Release(&leaves_b);
    PyBuffer_Release(&new_roots_b);
    return result;
}

/* Leaf of one tree for GROUP rows (rows beyond `rows` repeat the last one and are ignored). */
static inline void walk_group(const Node *nodes, int root, const float *const *xr, Py_ssize_t col_stride, int *leaf)
{
    int cur[GROUP];
    for (int g = 0; g < GROUP; ++g)
        cur[g] = root;
    int moved;
    do {
        moved = 0;
        for (int g = 0; g < GROUP; ++g) {
            const Node nd = nodes[cur[g]];
            const int next = nd.left + !(xr[g][nd.feature * col_stride] < nd.threshold);
            moved |= next != cur[g];
            cur[g] = next;
        }
    } while (moved);
    for (int g = 0; g < GROUP; ++g)
        leaf[g] = nodes[cur[g]].leaf;
}

static PyObject *predict(PyObject *self, PyObject *args)
{
    Py_buffer nodes_b, leaves_b, roots_b, counts_b, x_b, out_b;
    Py_ssize_t n_classes, n_features, row_begin, row_end, row_stride, col_stride;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*nnnnnn", &nodes_b, &leaves_b, &roots_b, &counts_b, &x_b, &out_b,
                          &n_classes, &n_features, &row_begin, &row_end, &row_stride, &col_stride))
        return NULL;

    PyObject *result = NULL;
    const Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int);
    const Py_ssize_t n_forests = counts_b.len / (Py_ssize_t)sizeof(int);
    if (n_classes < 1 || row_begin < 0 || row_end < row_begin || n_features < 1 ||
        !check_buffer(&out_b, sizeof(float), (row_end - row_begin) * n_classes, "out")) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bad row range, class or feature count");
        goto done;
    }
    {
        const Node *nodes = (const Node *)nodes_b.buf;
        const double *leaf_values = (const double *)leaves_b.buf;
        const int *roots = (const int *)roots_b.buf;
        const int *counts = (const int *)counts_b.buf;
        const float *x = (const float *)x_b.buf;
        float *out = (float *)out_b.buf;
        const Py_ssize_t max_offset = (row_end - 1) * row_stride + (n_features - 1) * col_stride;
        if (row_end > row_begin && !check_buffer(&x_b, sizeof(float), max_offset + 1, "x"))
            goto done;
        Py_ssize_t total_trees = 0;
        for (Py_ssize_t f = 0; f < n_forests; ++f)
            total_trees += counts[f];
        if (total_trees != n_trees) {
            PyErr_SetString(PyExc_ValueError, "forest tree counts do not add up to the number of roots");
            goto done;
        }
        float *acc = (float *)malloc(sizeof(float) * 2 * CHUNK * n_classes);
        double *total = (double *)malloc(sizeof(double) * CHUNK);
        char *has_nan = (char *)malloc(CHUNK);
        float *copy = col_stride != 1 ? (float *)malloc(sizeof(float) * CHUNK * n_features) : NULL;
        if (!acc || !total || !has_nan || (col_stride != 1 && !copy)) {
            free(acc); free(total); free(has_nan); free(copy);
            PyErr_NoMemory();
            goto done;
        }
        float *combined = acc + CHUNK * n_classes;

        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t base = row_begin; base < row_end; base += CHUNK) {
            const Py_ssize_t rows = row_end - base < CHUNK ? row_end - base : CHUNK;
            /* Rows are walked with their features side by side: a chunk given feature-major (the
             * pipeline's layout) is copied row-major first, so a row's splits share cache lines. */
            const float *chunk = x + base * row_stride;
            Py_ssize_t chunk_row_stride = row_stride, chunk_col_stride = col_stride;
            if (copy) {
                for (Py_ssize_t j = 0; j < n_features; ++j) {
                    const float *column = x + base * row_stride + j * col_stride;
                    for (Py_ssize_t r = 0; r < rows; ++r)
                        copy[r * n_features + j] = column[r * row_stride];
                }
                chunk = copy;
                chunk_row_stride = n_features;
                chunk_col_stride = 1;
            }
            for (Py_ssize_t r = 0; r < rows; ++r) {
                const float *xr = chunk + r * chunk_row_stride;
                has_nan[r] = 0;
                for (Py_ssize_t j = 0; j < n_features; ++j) {
                    if (isnan(xr[j * chunk_col_stride])) {
                        has_nan[r] = 1;
                        break;
                    }
                }
            }
            memset(combined, 0, sizeof(float) * CHUNK * n_classes);
            Py_ssize_t tree = 0;
            for (Py_ssize_t f = 0; f < n_forests; ++f) {
                memset(acc, 0, sizeof(float) * CHUNK * n_classes);
                memset(total, 0, sizeof(double) * CHUNK);
                for (int k = 0; k < counts[f]; ++k, ++tree) {
                    for (Py_ssize_t r0 = 0; r0 < rows; r0 += GROUP) {
                        const float *xr[GROUP];
                        int leaf[GROUP];
                        for (int g = 0; g < GROUP; ++g) {
                            const Py_ssize_t r = r0 + g < rows ? r0 + g : rows - 1;
                            xr[g] = chunk + r * chunk_row_stride;
                        }
                        walk_group(nodes, roots[tree], xr, chunk_col_stride, leaf);
                        const int n_group = rows - r0 < GROUP ? (int)(rows - r0) : GROUP;
                        for (int g = 0; g < n_group; ++g) {
                            const double *v = leaf_values + (Py_ssize_t)leaf[g] * n_classes;
                            float *a = acc + (r0 + g) * n_classes;
                            double t = total[r0 + g];
                            for (Py_ssize_t c = 0; c < n_classes; ++c) {
                                a[c] += (float)v[c];
                                t += v[c];
                            }
                            total[r0 + g] = t;
                        }
                    }
                }
                const float fcount = (float)counts[f];
                for (Py_ssize_t r = 0; r < rows; ++r) {
                    const float ftotal = (float)total[r];
                    for (Py_ssize_t c = 0; c < n_classes; ++c) {
                        float p = ftotal != 0.0f ? acc[r * n_classes + c] / ftotal : 0.0f;
                        combined[r * n_classes + c] += p * fcount;
                    }
                }
            }
            const float ftrees = (float)total_trees;
            for (Py_ssize_t r = 0; r < rows; ++r) {
                float *o = out + (base + r - row_begin) * n_classes;
                for (Py_ssize_t c = 0; c < n_classes; ++c)
                    o[c] = has_nan[r] ? 0.0f : combined[r * n_classes + c] / ftrees;
            }
        }
        Py_END_ALLOW_THREADS

        free(acc);
        free(total);
        free(has_nan);
        free(copy);
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    PyBuffer_Release(&nodes_b);
    PyBuffer_Release(&leaves_b);
    PyBuffer_Release(&roots_b);
    PyBuffer_Release(&counts_b);
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&out_b);
    return result;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS,
     "pack(feature, threshold, left, right, values, roots, nodes, leaf_values, packed_roots, n_nodes, n_classes, "
     "n_features) -> nodes used\n\n"
     "Lay a flat node table out for predict() into the three writable buffers (16 bytes per node, "
     "8 * n_classes bytes per node, 4 bytes per tree)."},
    {"predict", predict, METH_VARARGS,
     "predict(nodes, leaf_values, roots, counts, x, out, n_classes, n_features, row_begin, row_end, "
     "row_stride, col_stride)\n\n"
     "Vigra-exact forest probabilities for rows [row_begin, row_end) of x into out."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cforest", "CPU forest inference", -1, methods};

PyMODINIT_FUNC PyInit__cforest(void) { return PyModule_Create(&module); }
