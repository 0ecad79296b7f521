/* One pass of the Threshold and Size Filter's Gaussian smoothing along one axis, as vigra's
 * convolveLine computes it: in double, tap * value added from the leftmost offset to the
 * rightmost, starting from 0, mirror borders, the result rounded to float32.
 *
 * The readable reference is tests/arithmetic_reference.py (smooth_axis): same operations, same order, so the
 * results are bit-identical to it, NaN and infinities included. Built with -ffp-contract=off:
 * a fused multiply-add would change the last bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

/* vigra's reflective border (d c b | a b c d | c b a), repeated for short lines. */
static long long reflect(long long i, long long n)
{
    if (n == 1)
        return 0;
    while (i < 0 || i >= n)
        i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

#define CHUNK 2048 /* inner items summed at once: their double sums stay in the L1 cache */

/* The array is seen as (outer, extent, inner): the pass runs along the middle axis. Each output
 * item is sum = 0, then sum = sum + taps[k] * value[p - radius + k] for k = 0 .. 2 radius. */
static int pass(const float *in, float *out, const double *taps, long long radius, long long outer,
                long long extent, long long inner)
{
    const long long width = 2 * radius + 1;
    double *sum = malloc(sizeof(double) * CHUNK);
    double *line = malloc(sizeof(double) * (size_t)(extent + 2 * radius));
    long long *source = malloc(sizeof(long long) * (size_t)(extent + 2 * radius));
    if (!sum || !line || !source) {
        free(sum);
        free(line);
        free(source);
        return -1;
    }
    for (long long p = -radius; p < extent + radius; ++p)
        source[p + radius] = reflect(p, extent);
    for (long long o = 0; o < outer; ++o) {
        const float *block = in + o * extent * inner;
        float *target = out + o * extent * inner;
        if (inner == 1) { /* a contiguous line: mirror it once into doubles */
            for (long long q = 0; q < extent + 2 * radius; ++q)
                line[q] = (double)block[source[q]];
            for (long long p = 0; p < extent; ++p) {
                double s = 0.0;
                for (long long k = 0; k < width; ++k)
                    s = s + taps[k] * line[p + k];
                target[p] = (float)s;
            }
            continue;
        }
        for (long long p = 0; p < extent; ++p)
            for (long long i0 = 0; i0 < inner; i0 += CHUNK) {
                const long long n = inner - i0 < CHUNK ? inner - i0 : CHUNK;
                for (long long i = 0; i < n; ++i)
                    sum[i] = 0.0;
                for (long long k = 0; k < width; ++k) {
                    const double tap = taps[k];
                    const float *row = block + source[p + k] * inner + i0;
                    for (long long i = 0; i < n; ++i)
                        sum[i] = sum[i] + tap * (double)row[i];
                }
                for (long long i = 0; i < n; ++i)
                    target[p * inner + i0 + i] = (float)sum[i];
            }
    }
    free(sum);
    free(line);
    free(source);
    return 0;
}

/* smooth_pass(values, out, taps, outer, extent, inner) -> None
 * values, out: float32, C-contiguous, outer * extent * inner items; taps: float64, odd length. */
static PyObject *py_smooth_pass(PyObject *self, PyObject *args)
{
    Py_buffer values, out, taps;
    long long outer, extent, inner;
    if (!PyArg_ParseTuple(args, "y*w*y*LLL", &values, &out, &taps, &outer, &extent, &inner))
        return NULL;
    const long long items = outer * extent * inner, n_taps = taps.len / (Py_ssize_t)sizeof(double);
    int status = 0;
    if (outer < 0 || extent < 1 || inner < 0 || values.len != items * 4 || out.len != items * 4 || n_taps % 2 != 1) {
        PyErr_SetString(PyExc_ValueError, "smooth_pass: buffers do not match (outer, extent, inner) or taps not odd");
        status = -2;
    } else {
        Py_BEGIN_ALLOW_THREADS
        status = pass(values.buf, out.buf, taps.buf, n_taps / 2, outer, extent, inner);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&values);
    PyBuffer_Release(&out);
    PyBuffer_Release(&taps);
    if (status == -2)
        return NULL;
    if (status == -1)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"smooth_pass", py_smooth_pass, METH_VARARGS, "One Gaussian pass along the middle axis (see threshold.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_csmooth", NULL, -1, methods};

PyMODINIT_FUNC PyInit__csmooth(void) { return PyModule_Create(&module); }
