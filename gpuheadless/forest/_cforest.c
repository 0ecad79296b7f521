/*
 * CPU random-forest inference with vigra's exact semantics (spec/object-classification.md §7.3,
 * §4.4): a row with any NaN gives zeros; at a split go left iff (double)x[col] < threshold;
 * per forest the class values are accumulated in float32 and their sum in float64, the forest's
 * probabilities are acc / (float)total; forests are combined as sum_f P_f * n_f / n_total in
 * float32.
 *
 * The forest is a flat node table (see gpuheadless/forest/model.py). The GIL is released, so
 * Python threads can run several row ranges at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_buffer(const Py_buffer *buf, Py_ssize_t itemsize, Py_ssize_t min_items, const char *name)
{
    if (buf->len < itemsize * min_items) {
        PyErr_Format(PyExc_ValueError, "%s: buffer too small (%zd bytes, need %zd)", name, buf->len,
                     itemsize * min_items);
        return 0;
    }
    return 1;
}

static PyObject *predict(PyObject *self, PyObject *args)
{
    Py_buffer feature_b, threshold_b, left_b, right_b, values_b, roots_b, counts_b, x_b, out_b;
    Py_ssize_t n_nodes, n_classes, n_features, n_forests, row_begin, row_end, row_stride, col_stride;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*w*nnnnnnnn", &feature_b, &threshold_b, &left_b, &right_b,
                          &values_b, &roots_b, &counts_b, &x_b, &out_b, &n_nodes, &n_classes, &n_features,
                          &n_forests, &row_begin, &row_end, &row_stride, &col_stride))
        return NULL;

    PyObject *result = NULL;
    Py_ssize_t n_trees = roots_b.len / (Py_ssize_t)sizeof(int);
    if (!check_buffer(&feature_b, sizeof(int), n_nodes, "feature") ||
        !check_buffer(&threshold_b, sizeof(double), n_nodes, "threshold") ||
        !check_buffer(&left_b, sizeof(int), n_nodes, "left") || !check_buffer(&right_b, sizeof(int), n_nodes, "right") ||
        !check_buffer(&values_b, sizeof(double), n_nodes * n_classes, "values") ||
        !check_buffer(&counts_b, sizeof(int), n_forests, "counts") ||
        !check_buffer(&out_b, sizeof(float), (row_end - row_begin) * n_classes, "out") || n_classes < 1) {
        goto done;
    }
    {
        const int *feature = (const int *)feature_b.buf;
        const double *threshold = (const double *)threshold_b.buf;
        const int *left = (const int *)left_b.buf;
        const int *right = (const int *)right_b.buf;
        const double *values = (const double *)values_b.buf;
        const int *roots = (const int *)roots_b.buf;
        const int *counts = (const int *)counts_b.buf;
        const float *x = (const float *)x_b.buf;
        float *out = (float *)out_b.buf;
        Py_ssize_t max_offset = (row_end - 1) * row_stride + (n_features - 1) * col_stride;
        if (row_end > row_begin && !check_buffer(&x_b, sizeof(float), max_offset + 1, "x"))
            goto done;
        int total_trees = 0;
        for (Py_ssize_t f = 0; f < n_forests; ++f)
            total_trees += counts[f];
        if (total_trees != n_trees) {
            PyErr_SetString(PyExc_ValueError, "forest tree counts do not add up to the number of roots");
            goto done;
        }
        /* Tree-major over small row chunks keeps one tree's nodes in cache while it serves
         * many rows; each row still adds its trees in stored order, so results are identical. */
        enum { CHUNK = 256 };
        /* float32 threshold rounded toward +inf: for float32 x, x < t32 decides exactly as (double)x < t. */
        typedef struct { int feature, left, right; float threshold; } Node;
        Node *nodes = (Node *)malloc(sizeof(Node) * (size_t)n_nodes);
        float *acc = (float *)malloc(sizeof(float) * 2 * CHUNK * n_classes);
        double *total = (double *)malloc(sizeof(double) * CHUNK);
        char *has_nan = (char *)malloc(CHUNK);
        if (!nodes || !acc || !total || !has_nan) {
            free(nodes); free(acc); free(total); free(has_nan);
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n_nodes; ++i) {
            nodes[i].feature = feature[i];
            nodes[i].left = left[i];
            nodes[i].right = right[i];
            float t32 = (float)threshold[i];
            if ((double)t32 < threshold[i])
                t32 = nextafterf(t32, INFINITY);
            nodes[i].threshold = t32;
        }
        float *combined = acc + CHUNK * n_classes;

        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t base = row_begin; base < row_end; base += CHUNK) {
            Py_ssize_t rows = row_end - base < CHUNK ? row_end - base : CHUNK;
            for (Py_ssize_t r = 0; r < rows; ++r) {
                const float *xr = x + (base + r) * row_stride;
                has_nan[r] = 0;
                for (Py_ssize_t j = 0; j < n_features; ++j) {
                    if (isnan(xr[j * col_stride])) {
                        has_nan[r] = 1;
                        break;
                    }
                }
            }
            memset(combined, 0, sizeof(float) * CHUNK * n_classes);
            int tree = 0;
            for (Py_ssize_t f = 0; f < n_forests; ++f) {
                memset(acc, 0, sizeof(float) * CHUNK * n_classes);
                memset(total, 0, sizeof(double) * CHUNK);
                for (int k = 0; k < counts[f]; ++k, ++tree) {
                    const int root = roots[tree];
                    for (Py_ssize_t r = 0; r < rows; ++r) {
                        const float *xr = x + (base + r) * row_stride;
                        int node = root;
                        while (nodes[node].feature >= 0) {
                            const Node *nd = &nodes[node];
                            node = (xr[nd->feature * col_stride] < nd->threshold) ? nd->left : nd->right;
                        }
                        const double *v = values + (Py_ssize_t)node * n_classes;
                        float *a = acc + r * n_classes;
                        for (Py_ssize_t c = 0; c < n_classes; ++c) {
                            a[c] += (float)v[c];
                            total[r] += v[c];
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

        free(nodes);
        free(acc);
        free(total);
        free(has_nan);
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    PyBuffer_Release(&feature_b);
    PyBuffer_Release(&threshold_b);
    PyBuffer_Release(&left_b);
    PyBuffer_Release(&right_b);
    PyBuffer_Release(&values_b);
    PyBuffer_Release(&roots_b);
    PyBuffer_Release(&counts_b);
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&out_b);
    return result;
}

static PyMethodDef methods[] = {
    {"predict", predict, METH_VARARGS,
     "predict(feature, threshold, left, right, values, roots, counts, x, out, n_nodes, n_classes, "
     "n_features, n_forests, row_begin, row_end, row_stride, col_stride)\n\n"
     "Vigra-exact forest probabilities for rows [row_begin, row_end) of x into out."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cforest", "CPU forest inference", -1, methods};

PyMODINIT_FUNC PyInit__cforest(void) { return PyModule_Create(&module); }
