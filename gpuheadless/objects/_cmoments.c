/* Per-object central moment sums as vigra's accumulators form them, one pass per object.
 *
 * The readable reference is tests/arithmetic_reference.py (running_moment_sums, libm_powers): this file computes the
 * same numbers with the same operations in the same order, so the results are bit-identical to it
 * and to vigra 1.11.1. Built with -ffp-contract=off: every product and sum is rounded on its own,
 * as in vigra and NumPy (a fused multiply-add would change the last bits).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const double *values;   /* (m, k): pixels grouped by object, raster order within each object */
    const long long *starts; /* (n + 2): object i owns rows starts[i] .. starts[i + 1] - 1 */
    const double *centre;   /* (n + 1, k): each object's mean, used for the powers */
    const long long *pairs; /* (p, 2): column pairs of the scatter matrix */
    double *squares, *cubes, *fourths, *products; /* (n + 1, k), (n + 1, k), (n + 1, k), (n + 1, p) */
    long long n, k, p;
    int powers;
} Moments;

/* Welford's running update (vigra's Central<PowerSum<2>> and ScatterMatrixEigensystem): for the
 * j-th pixel x (j from 1), S the running sum, diff = S / j - x, add j / (j - 1) * (diff * diff)
 * and (j / (j - 1) * diff_high) * diff_low. */
static void running_sums(const Moments *m, long long i, double *sum, double *diff)
{
    const long long k = m->k, first = m->starts[i], end = m->starts[i + 1];
    double *squares = m->squares + i * k, *products = m->products + i * m->p;
    for (long long c = 0; c < k; ++c)
        sum[c] = 0.0;
    for (long long row = first; row < end; ++row) {
        const double *x = m->values + row * k;
        const double count = (double)(row - first + 1);
        for (long long c = 0; c < k; ++c)
            sum[c] += x[c];
        if (row == first)
            continue; /* the first pixel adds nothing */
        const double weight = count / (count - 1.0);
        for (long long c = 0; c < k; ++c) {
            diff[c] = sum[c] / count - x[c];
            squares[c] += weight * (diff[c] * diff[c]);
        }
        for (long long q = 0; q < m->p; ++q) {
            long long a = m->pairs[2 * q], b = m->pairs[2 * q + 1];
            long long low = a < b ? a : b, high = a < b ? b : a;
            products[q] += (weight * diff[high]) * diff[low];
        }
    }
}

/* A few hundred recent (value, pow(d, 3), pow(d, 4)) per column: most images hold few distinct
 * intensities (8- and 16-bit data), and pow is by far the slowest step. Keys are the values' bits,
 * so a hit returns exactly what pow returned for that value. */
#define CACHE_SLOTS 512
typedef struct {
    unsigned long long key[CACHE_SLOTS];
    double cube[CACHE_SLOTS], fourth[CACHE_SLOTS];
    unsigned char used[CACHE_SLOTS];
} PowCache;

static void powers_of(PowCache *cache, double x, double centre, double *cube, double *fourth)
{
    unsigned long long bits;
    memcpy(&bits, &x, sizeof bits);
    const unsigned slot = (unsigned)((bits * 0x9E3779B97F4A7C15ULL) >> 55);
    if (cache->used[slot] && cache->key[slot] == bits) {
        *cube = cache->cube[slot];
        *fourth = cache->fourth[slot];
        return;
    }
    const double d = x - centre;
    *cube = pow(d, 3.0);
    *fourth = pow(d, 4.0);
    cache->used[slot] = 1;
    cache->key[slot] = bits;
    cache->cube[slot] = *cube;
    cache->fourth[slot] = *fourth;
}

/* vigra's second pass: the sums of pow(x - mean, 3) and pow(x - mean, 4), the C library's pow. */
static void power_sums(const Moments *m, long long i, PowCache *caches)
{
    const long long k = m->k;
    const double *centre = m->centre + i * k;
    double *cubes = m->cubes + i * k, *fourths = m->fourths + i * k;
    for (long long c = 0; c < k; ++c)
        memset(caches[c].used, 0, sizeof caches[c].used); /* the centre, hence every entry, is the object's */
    for (long long row = m->starts[i]; row < m->starts[i + 1]; ++row) {
        const double *x = m->values + row * k;
        for (long long c = 0; c < k; ++c) {
            double cube, fourth;
            powers_of(&caches[c], x[c], centre[c], &cube, &fourth);
            cubes[c] += cube;
            fourths[c] += fourth;
        }
    }
}

static int compute(const Moments *m)
{
    double *scratch = malloc(sizeof(double) * (size_t)(2 * m->k + 1));
    PowCache *caches = m->powers ? malloc(sizeof(PowCache) * (size_t)m->k) : NULL;
    if (!scratch || (m->powers && !caches)) {
        free(scratch);
        free(caches);
        return -1;
    }
    for (long long i = 0; i <= m->n; ++i) {
        running_sums(m, i, scratch, scratch + m->k);
        if (m->powers)
            power_sums(m, i, caches);
    }
    free(scratch);
    free(caches);
    return 0;
}

static int check(Py_buffer *buffer, Py_ssize_t items, const char *name)
{
    if (buffer->len != items * 8) {
        PyErr_Format(PyExc_ValueError, "moments: %s has %zd bytes, expected %zd", name, buffer->len, items * 8);
        return -1;
    }
    return 0;
}

/* moments(values, starts, centre, pairs, squares, cubes, fourths, products, k, powers) -> None
 * Buffers: float64 / int64, C-contiguous; the four outputs zero-filled, written in place. */
static PyObject *py_moments(PyObject *self, PyObject *args)
{
    Py_buffer in[4], out[4];
    long long k;
    int powers;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*w*w*Lp", &in[0], &in[1], &in[2], &in[3], &out[0], &out[1], &out[2],
                          &out[3], &k, &powers))
        return NULL;
    Moments m;
    m.k = k;
    m.n = in[1].len / 8 - 2;
    m.p = in[3].len / 16;
    m.powers = powers;
    int bad = k <= 0 || m.n < 0 || in[0].len % (8 * k) != 0;
    if (bad)
        PyErr_SetString(PyExc_ValueError, "moments: values are not (m, k) float64 or starts too short");
    bad = bad || check(&in[2], (m.n + 1) * k, "centre") || check(&out[0], (m.n + 1) * k, "squares")
          || check(&out[1], (m.n + 1) * k, "cubes") || check(&out[2], (m.n + 1) * k, "fourths")
          || check(&out[3], (m.n + 1) * m.p, "products");
    const long long *starts = in[1].buf, *pairs = in[3].buf;
    const long long rows = k > 0 ? in[0].len / (8 * k) : 0;
    for (long long i = 0; !bad && i <= m.n; ++i)
        if (starts[i] < 0 || starts[i] > starts[i + 1] || starts[i + 1] > rows) {
            PyErr_SetString(PyExc_ValueError, "moments: starts must rise within the rows");
            bad = 1;
        }
    for (long long q = 0; !bad && q < 2 * m.p; ++q)
        if (pairs[q] < 0 || pairs[q] >= k) {
            PyErr_SetString(PyExc_ValueError, "moments: a pair names a column out of range");
            bad = 1;
        }
    int status = 0;
    if (!bad) {
        m.values = in[0].buf;
        m.starts = starts;
        m.centre = in[2].buf;
        m.pairs = pairs;
        m.squares = out[0].buf;
        m.cubes = out[1].buf;
        m.fourths = out[2].buf;
        m.products = out[3].buf;
        Py_BEGIN_ALLOW_THREADS
        status = compute(&m);
        Py_END_ALLOW_THREADS
    }
    for (int b = 0; b < 4; ++b) {
        PyBuffer_Release(&in[b]);
        PyBuffer_Release(&out[b]);
    }
    if (bad)
        return NULL;
    if (status)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* segments(values, starts, sums, low, high, k) -> None
 * Per object, over its rows starts[i]:starts[i + 1] of the (m, k) float64 values, in order: the
 * sums as np.bincount adds them (from 0.0, one value after the other) and the minimum and maximum
 * as vigra's accumulators keep them (from +inf / -inf, replaced only by a smaller / larger value,
 * so NaN is passed over and the first of two equal values stays). Outputs (n + 1, k) float64. */
static PyObject *py_segments(PyObject *self, PyObject *args)
{
    Py_buffer values_b, starts_b, out[3];
    long long k;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*L", &values_b, &starts_b, &out[0], &out[1], &out[2], &k))
        return NULL;
    const long long n = starts_b.len / 8 - 2;
    int bad = k <= 0 || n < 0 || values_b.len % (8 * k) != 0;
    if (bad)
        PyErr_SetString(PyExc_ValueError, "segments: values are not (m, k) float64 or starts too short");
    bad = bad || check(&out[0], (n + 1) * k, "sums") || check(&out[1], (n + 1) * k, "low")
          || check(&out[2], (n + 1) * k, "high");
    const long long *starts = starts_b.buf;
    const long long rows = k > 0 ? values_b.len / (8 * k) : 0;
    for (long long i = 0; !bad && i <= n; ++i)
        if (starts[i] < 0 || starts[i] > starts[i + 1] || starts[i + 1] > rows) {
            PyErr_SetString(PyExc_ValueError, "segments: starts must rise within the rows");
            bad = 1;
        }
    if (!bad) {
        const double *values = values_b.buf;
        double *sums = out[0].buf, *low = out[1].buf, *high = out[2].buf;
        Py_BEGIN_ALLOW_THREADS
        for (long long i = 0; i <= n; ++i)
            for (long long c = 0; c < k; ++c) {
                double sum = 0.0, lo = INFINITY, hi = -INFINITY;
                for (long long r = starts[i]; r < starts[i + 1]; ++r) {
                    const double v = values[r * k + c];
                    sum += v;
                    if (v < lo)
                        lo = v;
                    if (hi < v)
                        hi = v;
                }
                sums[i * k + c] = sum;
                low[i * k + c] = lo;
                high[i * k + c] = hi;
            }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&values_b);
    PyBuffer_Release(&starts_b);
    for (int b = 0; b < 3; ++b)
        PyBuffer_Release(&out[b]);
    if (bad)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"moments", py_moments, METH_VARARGS, "Per-object running second moments and libm power sums (see features.py)."},
    {"segments", py_segments, METH_VARARGS, "Per-object sums, minima and maxima of grouped rows (see features.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cmoments", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cmoments(void) { return PyModule_Create(&module); }
