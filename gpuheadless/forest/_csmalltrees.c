/*
 * Forests of small trees (at most 64 leaves each) by bit vectors, in the manner of QuickScorer
 * (Lucchese et al., SIGIR 2015), with vigra's exact semantics (the same as _cforest.c):
 *
 * A tree's leaves are numbered left to right. Every split node whose test fails for a row
 * ("go right": !(x < t), NaN included) removes the leaves of its left subtree from the row's
 * bit vector; the leaf the row reaches is then the lowest bit left. So instead of walking each
 * tree node by node (a chain of dependent loads per level), every split of every tree is one
 * comparison, applied to 8 rows at once: the splits are sorted by feature, and the pipeline's
 * feature-major rows give 8 consecutive values of a feature in one load.
 *
 * The leaves' values are then added up per row in tree order, exactly as _cforest.c adds them
 * (float32 class sums, float64 total, per-forest division, weighted combination), so both give
 * the same bits. On x86-64 the comparisons run with AVX2 when the CPU has it; elsewhere a
 * portable loop does the same. The GIL is released during the work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define HAVE_AVX2_CLONE 1
#else
#define HAVE_AVX2_CLONE 0
#endif

enum { GROUP = 8, CHUNK = 1024 };

typedef struct {
    const int *split_feature_start; /* n_features + 1 offsets into the split arrays, sorted by feature */
    const float *split_threshold;   /* go left iff x < threshold (already rounded up to float32) */
    const int *split_tree;
    const uint64_t *split_left_leaves;
    const uint64_t *tree_leaves;  /* every leaf bit of each tree */
    const int *leaf_row;          /* tree * 64 + bit -> row of leaf_values */
    const double *leaf_values;    /* n_classes per leaf row */
    const int *counts;            /* trees per forest, in order */
    Py_ssize_t n_trees, n_forests, n_features, n_classes;
} Model;

/* Bit vectors of GROUP rows (feature-major values xf[j * col_stride + g]) for every tree. */
static void masks_portable(const Model *m, const float *x, Py_ssize_t col_stride, uint64_t *masks)
{
    for (Py_ssize_t t = 0; t < m->n_trees; ++t)
        for (int g = 0; g < GROUP; ++g)
            masks[t * GROUP + g] = m->tree_leaves[t];
    for (Py_ssize_t j = 0; j < m->n_features; ++j) {
        const float *xj = x + j * col_stride;
        for (int s = m->split_feature_start[j]; s < m->split_feature_start[j + 1]; ++s) {
            const float t = m->split_threshold[s];
            const uint64_t gone = m->split_left_leaves[s];
            uint64_t *mt = masks + (Py_ssize_t)m->split_tree[s] * GROUP;
            for (int g = 0; g < GROUP; ++g)
                mt[g] &= (xj[g] < t) ? ~(uint64_t)0 : ~gone;
        }
    }
}

#if HAVE_AVX2_CLONE
__attribute__((target("avx2"))) static void masks_avx2(const Model *m, const float *x, Py_ssize_t col_stride,
                                                       uint64_t *masks)
{
    for (Py_ssize_t t = 0; t < m->n_trees; ++t) {
        const __m256i all = _mm256_set1_epi64x((long long)m->tree_leaves[t]);
        _mm256_storeu_si256((__m256i *)(masks + t * GROUP), all);
        _mm256_storeu_si256((__m256i *)(masks + t * GROUP + 4), all);
    }
    for (Py_ssize_t j = 0; j < m->n_features; ++j) {
        const int first = m->split_feature_start[j], last = m->split_feature_start[j + 1];
        if (first == last)
            continue;
        const __m256 xv = _mm256_loadu_ps(x + j * col_stride);
        for (int s = first; s < last; ++s) {
            /* all ones where the row goes right: !(x < t), true for NaN as in the walker */
            const __m256i right = _mm256_castps_si256(_mm256_cmp_ps(xv, _mm256_set1_ps(m->split_threshold[s]), _CMP_NLT_UQ));
            const __m256i right_lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(right));
            const __m256i right_hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(right, 1));
            const __m256i gone = _mm256_set1_epi64x((long long)m->split_left_leaves[s]);
            __m256i *mt = (__m256i *)(masks + (Py_ssize_t)m->split_tree[s] * GROUP);
            _mm256_storeu_si256(mt, _mm256_andnot_si256(_mm256_and_si256(right_lo, gone), _mm256_loadu_si256(mt)));
            _mm256_storeu_si256(mt + 1, _mm256_andnot_si256(_mm256_and_si256(right_hi, gone), _mm256_loadu_si256(mt + 1)));
        }
    }
}
#endif

#if HAVE_AVX2_CLONE
/* has_nan[g] for the GROUP rows: whether any feature of row g is NaN */
__attribute__((target("avx2"))) static void nan_rows_avx2(const float *x, Py_ssize_t col_stride, Py_ssize_t n_features,
                                                          char *has_nan)
{
    __m256 any = _mm256_setzero_ps();
    for (Py_ssize_t j = 0; j < n_features; ++j) {
        const __m256 v = _mm256_loadu_ps(x + j * col_stride);
        any = _mm256_or_ps(any, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    const int bits = _mm256_movemask_ps(any);
    for (int g = 0; g < GROUP; ++g)
        has_nan[g] = (char)((bits >> g) & 1);
}
#endif

static int forced = -1; /* -1: decide by the CPU; 0/1: forced by force_path() (tests) */

static int use_avx2(void)
{
#if HAVE_AVX2_CLONE
    static int cached = -1;
    if (forced >= 0)
        return forced;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2");
    }
    return cached;
#else
    return 0;
#endif
}

/* Leaf values of trees [tree, tree + count) added for GROUP rows, each row in _cforest.c's order:
 * per tree, class by class, acc[c * GROUP + g] += (float)v[c] and total[g] += v[c]. The rows go
 * side by side (tree outer, row inner) so that their chains of dependent float64 additions overlap. */
static void add_leaves_portable(const Model *m, const uint64_t *masks, Py_ssize_t tree, int count, float *acc,
                                double *total)
{
    const Py_ssize_t nc = m->n_classes;
    for (int k = 0; k < count; ++k, ++tree) {
        const uint64_t *mt = masks + tree * GROUP;
        const int *rows_of_leaves = m->leaf_row + tree * 64;
        for (int g = 0; g < GROUP; ++g) {
            const double *v = m->leaf_values + (Py_ssize_t)rows_of_leaves[__builtin_ctzll(mt[g])] * nc;
            for (Py_ssize_t c = 0; c < nc; ++c) {
                acc[c * GROUP + g] += (float)v[c];
                total[g] += v[c];
            }
        }
    }
}

#if HAVE_AVX2_CLONE
/* add_leaves_portable() with the GROUP rows in vector lanes (the leaf values gathered): each lane
 * does its row's additions in the same order, so every lane's result is the portable one. */
__attribute__((target("avx2"))) static void add_leaves_avx2(const Model *m, const uint64_t *masks, Py_ssize_t tree,
                                                            int count, float *acc, double *total)
{
    const Py_ssize_t nc = m->n_classes;
    __m256d total_lo = _mm256_loadu_pd(total), total_hi = _mm256_loadu_pd(total + 4);
    for (int k = 0; k < count; ++k, ++tree) {
        const uint64_t *mt = masks + tree * GROUP;
        const int *rows_of_leaves = m->leaf_row + tree * 64;
        int first[GROUP];
        for (int g = 0; g < GROUP; ++g)
            first[g] = rows_of_leaves[__builtin_ctzll(mt[g])] * (int)nc;
        const __m128i lo = _mm_loadu_si128((const __m128i *)first);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(first + 4));
        for (Py_ssize_t c = 0; c < nc; ++c) {
            const __m256d v_lo = _mm256_i32gather_pd(m->leaf_values + c, lo, 8);
            const __m256d v_hi = _mm256_i32gather_pd(m->leaf_values + c, hi, 8);
            const __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(v_hi), _mm256_cvtpd_ps(v_lo));
            _mm256_storeu_ps(acc + c * GROUP, _mm256_add_ps(_mm256_loadu_ps(acc + c * GROUP), v));
            total_lo = _mm256_add_pd(total_lo, v_lo);
            total_hi = _mm256_add_pd(total_hi, v_hi);
        }
    }
    _mm256_storeu_pd(total, total_lo);
    _mm256_storeu_pd(total + 4, total_hi);
}
#endif

/* Probabilities of GROUP rows from their bit vectors, as _cforest.c computes them: per forest the
 * class sums over its total, weighted by its tree count, then over all trees; rows with a NaN give
 * zeros. acc and combined hold GROUP * n_classes floats (class-major). */
static void accumulate(const Model *m, const uint64_t *masks, int rows, const char *has_nan, int avx2, float *acc,
                       float *combined, float *out)
{
    const Py_ssize_t nc = m->n_classes;
    Py_ssize_t total_trees = 0;
    for (Py_ssize_t f = 0; f < m->n_forests; ++f)
        total_trees += m->counts[f];
    memset(combined, 0, sizeof(float) * (size_t)(GROUP * nc));
    Py_ssize_t tree = 0;
    for (Py_ssize_t f = 0; f < m->n_forests; ++f) {
        double total[GROUP] = {0.0};
        memset(acc, 0, sizeof(float) * (size_t)(GROUP * nc));
#if HAVE_AVX2_CLONE
        if (avx2)
            add_leaves_avx2(m, masks, tree, m->counts[f], acc, total);
        else
#endif
            add_leaves_portable(m, masks, tree, m->counts[f], acc, total);
        (void)avx2;
        tree += m->counts[f];
        const float fcount = (float)m->counts[f];
        for (int g = 0; g < GROUP; ++g) {
            const float ftotal = (float)total[g];
            for (Py_ssize_t c = 0; c < nc; ++c) {
                float p = ftotal != 0.0f ? acc[c * GROUP + g] / ftotal : 0.0f;
                combined[c * GROUP + g] += p * fcount;
            }
        }
    }
    const float ftrees = (float)total_trees;
    for (int g = 0; g < rows; ++g)
        for (Py_ssize_t c = 0; c < nc; ++c)
            out[g * nc + c] = has_nan[g] ? 0.0f : combined[c * GROUP + g] / ftrees;
}

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
    Py_buffer start_b, thr_b, tree_b, left_b, leaves_b, leafrow_b, values_b, counts_b, x_b, out_b;
    Py_ssize_t n_classes, n_features, row_begin, row_end, row_stride, col_stride;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*w*nnnnnn", &start_b, &thr_b, &tree_b, &left_b, &leaves_b,
                          &leafrow_b, &values_b, &counts_b, &x_b, &out_b, &n_classes, &n_features, &row_begin,
                          &row_end, &row_stride, &col_stride))
        return NULL;
    PyObject *result = NULL;
    Model m;
    m.n_trees = leaves_b.len / (Py_ssize_t)sizeof(uint64_t);
    m.n_forests = counts_b.len / (Py_ssize_t)sizeof(int);
    m.n_features = n_features;
    m.n_classes = n_classes;
    if (n_classes < 1 || n_features < 1 || row_begin < 0 || row_end < row_begin || row_stride < 0 || col_stride < 0 ||
        !check_buffer(&start_b, sizeof(int), n_features + 1, "split_feature_start") ||
        !check_buffer(&leafrow_b, sizeof(int), m.n_trees * 64, "leaf_row") ||
        !check_buffer(&out_b, sizeof(float), (row_end - row_begin) * n_classes, "out")) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bad row range, class or feature count");
        goto done;
    }
    m.split_feature_start = (const int *)start_b.buf;
    const Py_ssize_t n_splits = m.split_feature_start[n_features];
    Py_ssize_t total_trees = 0;
    for (Py_ssize_t f = 0; f < m.n_forests; ++f)
        total_trees += ((const int *)counts_b.buf)[f];
    if (n_splits < 0 || !check_buffer(&thr_b, sizeof(float), n_splits, "split_threshold") ||
        !check_buffer(&tree_b, sizeof(int), n_splits, "split_tree") ||
        !check_buffer(&left_b, sizeof(uint64_t), n_splits, "split_left_leaves") || total_trees != m.n_trees) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "forest tree counts do not add up to the number of trees");
        goto done;
    }
    if (row_end > row_begin &&
        !check_buffer(&x_b, sizeof(float), (row_end - 1) * row_stride + (n_features - 1) * col_stride + 1, "x"))
        goto done;
    m.split_threshold = (const float *)thr_b.buf;
    m.split_tree = (const int *)tree_b.buf;
    m.split_left_leaves = (const uint64_t *)left_b.buf;
    m.tree_leaves = (const uint64_t *)leaves_b.buf;
    m.leaf_row = (const int *)leafrow_b.buf;
    m.leaf_values = (const double *)values_b.buf;
    m.counts = (const int *)counts_b.buf;
    {
        const float *x = (const float *)x_b.buf;
        float *out = (float *)out_b.buf;
        /* GROUP rows side by side per feature: the rows' own memory when it is feature-major, else a copy */
        float *group = (float *)malloc(sizeof(float) * (size_t)(GROUP * n_features));
        uint64_t *masks = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(GROUP * (m.n_trees > 0 ? m.n_trees : 1)));
        float *scratch = (float *)malloc(sizeof(float) * (size_t)(2 * GROUP * n_classes));
        if (!group || !masks || !scratch) {
            free(group); free(masks); free(scratch);
            PyErr_NoMemory();
            goto done;
        }
        const int avx2 = use_avx2();
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r0 = row_begin; r0 < row_end; r0 += GROUP) {
            const int rows = row_end - r0 < GROUP ? (int)(row_end - r0) : GROUP;
            const float *xg;
            Py_ssize_t stride;
            if (row_stride == 1 && rows == GROUP) {
                xg = x + r0;
                stride = col_stride;
            } else { /* row-major input, or the last rows (padded with the last one, ignored) */
                for (Py_ssize_t j = 0; j < n_features; ++j)
                    for (int g = 0; g < GROUP; ++g)
                        group[j * GROUP + g] = x[(r0 + (g < rows ? g : rows - 1)) * row_stride + j * col_stride];
                xg = group;
                stride = GROUP;
            }
            char has_nan[GROUP];
#if HAVE_AVX2_CLONE
            if (avx2)
                nan_rows_avx2(xg, stride, n_features, has_nan);
            else
#endif
            for (int g = 0; g < rows; ++g) {
                has_nan[g] = 0;
                for (Py_ssize_t j = 0; j < n_features; ++j)
                    if (isnan(xg[j * stride + g])) {
                        has_nan[g] = 1;
                        break;
                    }
            }
#if HAVE_AVX2_CLONE
            if (avx2)
                masks_avx2(&m, xg, stride, masks);
            else
#endif
                masks_portable(&m, xg, stride, masks);
            accumulate(&m, masks, rows, has_nan, avx2, scratch, scratch + GROUP * n_classes,
                       out + (r0 - row_begin) * n_classes);
        }
        Py_END_ALLOW_THREADS
        free(group);
        free(masks);
        free(scratch);
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    PyBuffer_Release(&start_b);
    PyBuffer_Release(&thr_b);
    PyBuffer_Release(&tree_b);
    PyBuffer_Release(&left_b);
    PyBuffer_Release(&leaves_b);
    PyBuffer_Release(&leafrow_b);
    PyBuffer_Release(&values_b);
    PyBuffer_Release(&counts_b);
    PyBuffer_Release(&x_b);
    PyBuffer_Release(&out_b);
    return result;
}

static PyObject *force_path(PyObject *self, PyObject *args)
{
    int path;
    if (!PyArg_ParseTuple(args, "i", &path))
        return NULL;
    forced = path < 0 ? -1 : (path > 0 && HAVE_AVX2_CLONE);
    Py_RETURN_NONE;
}

static PyObject *has_avx2(PyObject *self, PyObject *noargs) { return PyBool_FromLong(use_avx2()); }

static PyMethodDef methods[] = {
    {"predict", predict, METH_VARARGS,
     "predict(split_feature_start, split_threshold, split_tree, split_left_leaves, tree_leaves, leaf_row, "
     "leaf_values, counts, x, out, n_classes, n_features, row_begin, row_end, row_stride, col_stride)\n\n"
     "Vigra-exact probabilities of a forest of trees with at most 64 leaves, for rows [row_begin, row_end)."},
    {"force_path", force_path, METH_VARARGS, "force_path(p): 0 = portable, 1 = AVX2 (if compiled), -1 = by the CPU."},
    {"has_avx2", has_avx2, METH_NOARGS, "Whether the AVX2 comparisons are in use."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_csmalltrees", "Forests of small trees by bit vectors",
                                    -1, methods};

PyMODINIT_FUNC PyInit__csmalltrees(void) { return PyModule_Create(&module); }
