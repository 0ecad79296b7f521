/*
 * Separable FIR correlation along one axis of a float32 volume with fastfilters' arithmetic
 * (spec/pixel-classification.md §5.4, §5.9), so that features come out bit for bit as ilastik's:
 *
 *   acc = c[0] * x[i]                                  (float32 product)
 *   for k = 1..r:  acc = fma(x[i+k] +/- x[i-k], c[k], acc)   (the pair sum rounded to float32)
 *
 * "+" for symmetric kernels (orders 0 and 2), "-" for the antisymmetric order 1. fastfilters
 * vectorises with AVX/FMA, but along the contiguous axis it computes a few pixels at each end of
 * a line with scalar code that rounds the product and the sum separately; the caller says which
 * pixels those are (`plain_below`, `plain_from`, in array coordinates). Borders mirror without
 * repeating the edge pixel.
 *
 * On x86-64 a copy of the loops is compiled for AVX2+FMA and chosen at run time; elsewhere, or on
 * CPUs without FMA, a fused multiply-add is emulated in double precision (exact product, one
 * rounding of the sum to double, then to float; different from a true FMA only when that sum lies
 * within 2^-29 of a float32 rounding boundary). The GIL is released during the work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *in;
    Py_ssize_t s0, s1; /* input strides in elements; the x stride is 1 */
    float *out;        /* C-contiguous, same shape */
    Py_ssize_t n0, n1, n2;
    int axis;
    const float *c;
    int r;
    int antisymmetric;
    Py_ssize_t plain_below, plain_from;
} Job;

static inline Py_ssize_t reflect(Py_ssize_t i, Py_ssize_t n)
{
    if (n == 1)
        return 0;
    const Py_ssize_t period = 2 * n - 2;
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

/* The loops, written once and compiled twice (generic and AVX2+FMA).
 *
 * Speed without changing a single rounding: the taps are applied in the same order to every
 * pixel, but CHUNK pixels at a time with their accumulators held in registers across all taps
 * (instead of one pass over a row per tap), and along z the volume is walked column by column so
 * that the 2r + 1 rows a window needs stay in cache from one output row to the next. */
#define CHUNK 16
#define CHUNKS_LOOP(OP, FMA)                                                                                 \
    for (; j + CHUNK <= n; j += CHUNK) {                                                                    \
        float acc[CHUNK];                                                                                   \
        for (int l = 0; l < CHUNK; ++l)                                                                     \
            acc[l] = c[0] * center[j + l];                                                                  \
        for (int k = 1; k <= r; ++k) {                                                                      \
            const float ck = c[k];                                                                          \
            const float *p = plus[k] + offset + j, *m = minus[k] + offset + j;                                                \
            for (int l = 0; l < CHUNK; ++l)                                                                 \
                acc[l] = FMA(p[l] OP m[l], ck, acc[l]);                                                     \
        }                                                                                                   \
        for (int l = 0; l < CHUNK; ++l)                                                                     \
            out[j + l] = acc[l];                                                                            \
    }
#define DEFINE_CORRELATE(NAME, ATTR, FMA)                                                                    \
    /* out[j] for j in [0, n), fused: acc = c0*x[j]; acc = fma(x[j+k] +/- x[j-k], ck, acc), k = 1..r,  \
     * where x[j+k] is plus[k][j] and x[j-k] is minus[k][j] (rows of the window, already mirrored). */  \
    ATTR static void NAME##_rows(const float *center, const float *const *plus, const float *const *minus,   \
                                 Py_ssize_t offset, const float *c, int r, float sign, float *out,          \
                                 Py_ssize_t n)                                                              \
    {                                                                                                       \
        Py_ssize_t j = 0;                                                                                   \
        /* x + (-1)*y is exactly x - y: two copies spare a multiplication per tap */                         \
        if (sign > 0)                                                                                       \
            { CHUNKS_LOOP(+, FMA) }                                                                                \
        else                                                                                                \
            { CHUNKS_LOOP(-, FMA) }                                                                                \
        if (j < n && n >= CHUNK) { /* the last chunk again, overlapping: the same values, vectorised */      \
            j = n - CHUNK;                                                                                  \
            if (sign > 0)                                                                                   \
                { CHUNKS_LOOP(+, FMA) }                                                                     \
            else                                                                                            \
                { CHUNKS_LOOP(-, FMA) }                                                                     \
        }                                                                                                   \
        for (; j < n; ++j) {                                                                                \
            float acc = c[0] * center[j];                                                                   \
            for (int k = 1; k <= r; ++k)                                                                    \
                acc = FMA(plus[k][offset + j] + sign * minus[k][offset + j], c[k], acc);                                      \
            out[j] = acc;                                                                                   \
        }                                                                                                   \
    }                                                                                                       \
    ATTR static int NAME(const Job *job)                                                                    \
    {                                                                                                       \
        const float *c = job->c;                                                                            \
        const int r = job->r;                                                                               \
        const float sign = job->antisymmetric ? -1.0f : 1.0f;                                               \
        const Py_ssize_t n0 = job->n0, n1 = job->n1, n2 = job->n2;                                          \
        const float **plus = (const float **)malloc(sizeof(float *) * (size_t)(2 * r + 2));                 \
        if (!plus)                                                                                          \
            return 0;                                                                                       \
        const float **minus = plus + r + 1;                                                                 \
        if (job->axis == 2) {                                                                               \
            float *line = (float *)malloc(sizeof(float) * (size_t)(n2 + 2 * r));                            \
            if (!line) {                                                                                    \
                free(plus);                                                                                 \
                return 0;                                                                                   \
            }                                                                                               \
            const Py_ssize_t lo = job->plain_below < n2 ? (job->plain_below > 0 ? job->plain_below : 0) : n2; \
            const Py_ssize_t hi = job->plain_from > lo ? (job->plain_from < n2 ? job->plain_from : n2) : lo; \
            const float *x = line + r;                                                                      \
            for (int k = 1; k <= r; ++k) {                                                                  \
                plus[k] = x + lo + k;                                                                       \
                minus[k] = x + lo - k;                                                                      \
            }                                                                                               \
            for (Py_ssize_t a = 0; a < n0; ++a)                                                             \
                for (Py_ssize_t b = 0; b < n1; ++b) {                                                       \
                    const float *src = job->in + a * job->s0 + b * job->s1;                                  \
                    float *acc = job->out + (a * n1 + b) * n2;                                              \
                    for (Py_ssize_t i = -r; i < 0; ++i)                                                     \
                        line[i + r] = src[reflect(i, n2)];                                                  \
                    memcpy(line + r, src, sizeof(float) * (size_t)n2);                                      \
                    for (Py_ssize_t i = n2; i < n2 + r; ++i)                                                \
                        line[i + r] = src[reflect(i, n2)];                                                  \
                    /* fastfilters' scalar ends: product and sum rounded separately */                       \
                    for (Py_ssize_t i = 0; i < lo; ++i) {                                                   \
                        float v = c[0] * x[i];                                                              \
                        for (int k = 1; k <= r; ++k)                                                        \
                            v = v + c[k] * (x[i + k] + sign * x[i - k]);                                    \
                        acc[i] = v;                                                                         \
                    }                                                                                       \
                    NAME##_rows(x + lo, plus, minus, 0, c, r, sign, acc + lo, hi - lo);                        \
                    for (Py_ssize_t i = hi; i < n2; ++i) {                                                  \
                        float v = c[0] * x[i];                                                              \
                        for (int k = 1; k <= r; ++k)                                                        \
                            v = v + c[k] * (x[i + k] + sign * x[i - k]);                                    \
                        acc[i] = v;                                                                         \
                    }                                                                                       \
                }                                                                                           \
            free(line);                                                                                     \
            free(plus);                                                                                     \
            return 1;                                                                                       \
        }                                                                                                   \
        /* Outer axes: whole rows at once, all fused (fastfilters has no scalar path there). */           \
        const Py_ssize_t len = job->axis == 0 ? n0 : n1;                                                    \
        const Py_ssize_t lanes = job->axis == 0 ? n1 : n0; /* independent windows: y rows, or z slabs */    \
        const Py_ssize_t step = job->axis == 0 ? job->s0 : job->s1; /* along the filtered axis */         \
        const Py_ssize_t lane_step = job->axis == 0 ? job->s1 : job->s0;                                   \
        /* along z with whole planes contiguous and the window's planes small enough to stay in cache,  \
         * a plane is one long row; otherwise a few y rows side by side: their windows stay in cache and  \
         * the writes stay dense */                                                                     \
        if (job->axis == 0 && job->s1 == n2 && (2 * r + 1) * n1 * n2 * (Py_ssize_t)sizeof(float) <= (1 << 20)) { \
            for (Py_ssize_t i = 0; i < len; ++i) {                                                          \
                for (int k = 1; k <= r; ++k) {                                                              \
                    plus[k] = job->in + reflect(i + k, len) * step;                                         \
                    minus[k] = job->in + reflect(i - k, len) * step;                                        \
                }                                                                                           \
                NAME##_rows(job->in + i * step, plus, minus, 0, c, r, sign, job->out + i * n1 * n2, n1 * n2);   \
            }                                                                                               \
            free(plus);                                                                                     \
            return 1;                                                                                       \
        }                                                                                                   \
        const Py_ssize_t tile = job->axis == 0 ? 8 : 1;                                                     \
        for (Py_ssize_t w0 = 0; w0 < lanes; w0 += tile) {                                                   \
            const Py_ssize_t w1 = w0 + tile < lanes ? w0 + tile : lanes;                                    \
            for (Py_ssize_t i = 0; i < len; ++i) {                                                          \
                for (int k = 1; k <= r; ++k) {                                                              \
                    plus[k] = job->in + reflect(i + k, len) * step;                                         \
                    minus[k] = job->in + reflect(i - k, len) * step;                                        \
                }                                                                                           \
                for (Py_ssize_t w = w0; w < w1; ++w) {                                                      \
                    float *acc = job->out + (job->axis == 0 ? (i * n1 + w) * n2 : (w * n1 + i) * n2);       \
                    NAME##_rows(job->in + w * lane_step + i * step, plus, minus, w * lane_step, c, r, sign,  \
                                acc, n2);                                                                   \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        free(plus);                                                                                         \
        return 1;                                                                                           \
    }

static inline float fma_via_double(float a, float b, float c) { return (float)((double)a * (double)b + (double)c); }

DEFINE_CORRELATE(correlate_generic, , fma_via_double)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_FMA_CLONE 1
DEFINE_CORRELATE(correlate_fma, __attribute__((target("avx2,fma"))), __builtin_fmaf)
#else
#define HAVE_FMA_CLONE 0
#endif

static int forced = -1; /* -1: decide by the CPU; 0/1: forced by force_path() (tests) */

static int use_fma_clone(void)
{
#if HAVE_FMA_CLONE
    static int cached = -1;
    if (forced >= 0)
        return forced;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

static PyObject *correlate(PyObject *self, PyObject *args)
{
    Py_buffer in_b, out_b, taps_b;
    Job job;
    if (!PyArg_ParseTuple(args, "y*w*y*nnnnnipnn", &in_b, &out_b, &taps_b, &job.s0, &job.s1, &job.n0, &job.n1,
                          &job.n2, &job.axis, &job.antisymmetric, &job.plain_below, &job.plain_from))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n_taps = taps_b.len / (Py_ssize_t)sizeof(float);
    const Py_ssize_t total = job.n0 * job.n1 * job.n2;
    if (job.axis < 0 || job.axis > 2 || n_taps < 1 || job.n0 < 1 || job.n1 < 1 || job.n2 < 1 || job.s0 < 0 ||
        job.s1 < 0) {
        PyErr_SetString(PyExc_ValueError, "correlate: bad axis, taps or shape");
        goto done;
    }
    if (out_b.len < total * (Py_ssize_t)sizeof(float) ||
        in_b.len < ((job.n0 - 1) * job.s0 + (job.n1 - 1) * job.s1 + job.n2) * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "correlate: buffer too small for the shape and strides");
        goto done;
    }
    job.in = (const float *)in_b.buf;
    job.out = (float *)out_b.buf;
    job.c = (const float *)taps_b.buf;
    job.r = (int)(n_taps - 1);
    int ok;
    Py_BEGIN_ALLOW_THREADS
#if HAVE_FMA_CLONE
    ok = use_fma_clone() ? correlate_fma(&job) : correlate_generic(&job);
#else
    ok = correlate_generic(&job);
#endif
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&in_b);
    PyBuffer_Release(&out_b);
    PyBuffer_Release(&taps_b);
    return result;
}

static PyObject *has_fma(PyObject *self, PyObject *noargs) { return PyBool_FromLong(use_fma_clone()); }

static PyObject *force_path(PyObject *self, PyObject *args)
{
    int path;
    if (!PyArg_ParseTuple(args, "i", &path))
        return NULL;
    forced = path < 0 ? -1 : (path > 0 && HAVE_FMA_CLONE);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"correlate", correlate, METH_VARARGS,
     "correlate(in, out, half_taps, s0, s1, n0, n1, n2, axis, antisymmetric, plain_below, plain_from)\n\n"
     "fastfilters-exact correlation of a (n0, n1, n2) float32 volume (element strides s0, s1, 1) along "
     "axis into the C-contiguous out. half_taps are c[0..r]."},
    {"has_fma", has_fma, METH_NOARGS, "Whether the AVX2+FMA copy of the loops is in use."},
    {"force_path", force_path, METH_VARARGS,
     "force_path(p): 0 = the portable loops, 1 = the AVX2+FMA loops (if compiled), -1 = decide by the CPU."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cfilters", "fastfilters-exact FIR correlation", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cfilters(void) { return PyModule_Create(&module); }
