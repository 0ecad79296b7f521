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
        float *acc = (float *)malloc(sizeof(float) * 2 * n_classes);
        if (!acc) {
            PyErr_NoMemory();
            goto done;
        }
        float *combined = acc + n_classes;

        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t row = row_begin; row < row_end; ++row) {
            const float *xr = x + row * row_stride;
            float *o = out + (row - row_begin) * n_classes;
            int has_nan = 0;
            for (Py_ssize_t j = 0; j < n_features; ++j) {
                if (isnan(xr[j * col_stride])) {
                    has_nan = 1;
                    break;
                }
            }
            if (has_nan) {
                memset(o, 0, sizeof(float) * n_classes);
                continue;
            }
            memset(combined, 0, sizeof(float) * n_classes);
            int tree = 0;
            for (Py_ssize_t f = 0; f < n_forests; ++f) {
                memset(acc, 0, sizeof(float) * n_classes);
                double total = 0.0;
                for (int k = 0; k < counts[f]; ++k, ++tree) {
                    int node = roots[tree];
                    while (feature[node] >= 0) {
                        node = ((double)xr[feature[node] * col_stride] < threshold[node]) ? left[node] : right[node];
                    }
                    const double *v = values + (Py_ssize_t)node * n_classes;
                    for (Py_ssize_t c = 0; c < n_classes; ++c) {
                        acc[c] += (float)v[c];
                        total += v[c];
                    }
                }
                float ftotal = (float)total;
                float fcount = (float)counts[f];
                for (Py_ssize_t c = 0; c < n_classes; ++c) {
                    float p = ftotal != 0.0f ? acc[c] / ftotal : 0.0f;
                    combined[c] += p * fcount;
                }
            }
            float ftrees = (float)total_trees;
            for (Py_ssize_t c = 0; c < n_classes; ++c)
                o[c] = combined[c] / ftrees;
        }
        Py_END_ALLOW_THREADS

        free(acc);
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
