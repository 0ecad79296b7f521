/*
 * Eigenvalues of symmetric 3x3 matrices, per voxel, with fastfilters' float32 arithmetic
 * (spec/pixel-classification.md §5.3): the entries are divided by the largest absolute entry,
 * the characteristic polynomial is solved with the trigonometric method, and atan2, sin and cos
 * are the polynomial approximations of fastfilters' AVX code (cephes' sinf/cosf reduction and
 * polynomials; an atan polynomial of degree 8 in s^2), evaluated step by step in float32.
 * Results are sorted descending and scaled back. An all-zero matrix gives zeros.
 *
 * Compiled with -ffp-contract=off: every product and sum is rounded on its own, as in the
 * reference (checked bit for bit against ilastik's 3D Features exports). The GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "eigen3_math.h" /* kernels/: the scalar solver, shared with the CUDA kernel */

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define HAVE_AVX2_CLONE 1

/* The same steps as ev_atan2, ev_sincos and ev_solve3 of eigen3_math.h, eight voxels at a time. */
__attribute__((target("avx2"))) static inline __m256 atan2_avx2(__m256 y, __m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256 sign_x = _mm256_and_ps(x, sign), sign_y = _mm256_and_ps(y, sign);
    const __m256 ax = _mm256_andnot_ps(sign, x), ay = _mm256_andnot_ps(sign, y);
    const __m256 rotate = _mm256_cmp_ps(ay, ax, _CMP_GT_OS);
    x = _mm256_blendv_ps(ax, ay, rotate);
    y = _mm256_blendv_ps(ay, _mm256_xor_ps(ax, sign), rotate);
    const __m256 q = _mm256_add_ps(_mm256_blendv_ps(zero, _mm256_set1_ps(-2.0f), sign_x),
                                   _mm256_and_ps(rotate, _mm256_set1_ps(1.0f)));
    const __m256 s = _mm256_div_ps(y, x);
    __m256 t = _mm256_mul_ps(s, s);
    static const float c[8] = {0.00282363896258175373077393f, -0.0159569028764963150024414f,
                               0.0425049886107444763183594f, -0.0748900920152664184570312f,
                               0.106347933411598205566406f,  -0.142027363181114196777344f,
                               0.199926957488059997558594f,  -0.333331018686294555664062f};
    __m256 u = _mm256_set1_ps(c[0]);
    for (int k = 1; k < 8; ++k)
        u = _mm256_add_ps(_mm256_mul_ps(t, u), _mm256_set1_ps(c[k]));
    t = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(t, s), u), s);
    t = _mm256_add_ps(_mm256_mul_ps(q, _mm256_set1_ps((float)(M_PI / 2.0))), t);
    t = _mm256_xor_ps(t, sign_x);
    t = _mm256_blendv_ps(t, _mm256_set1_ps((float)(M_PI / 2.0)), _mm256_cmp_ps(x, zero, _CMP_EQ_OQ));
    t = _mm256_blendv_ps(t, _mm256_blendv_ps(zero, _mm256_set1_ps((float)M_PI), sign_x), _mm256_cmp_ps(y, zero, _CMP_EQ_OQ));
    return _mm256_xor_ps(t, sign_y);
}

__attribute__((target("avx2"))) static inline void sincos_avx2(__m256 x, __m256 *s, __m256 *c)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 sign_sin = _mm256_and_ps(x, sign);
    x = _mm256_andnot_ps(sign, x);
    __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(1.27323954473516f)));
    j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
    const __m256 y = _mm256_cvtepi32_ps(j);
    const __m256 swap_sign_sin = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29));
    const __m256 sin_poly = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)), _mm256_setzero_si256()));
    x = _mm256_add_ps(x, _mm256_mul_ps(y, _mm256_set1_ps(-0.78515625f)));
    x = _mm256_add_ps(x, _mm256_mul_ps(y, _mm256_set1_ps(-2.4187564849853515625e-4f)));
    x = _mm256_add_ps(x, _mm256_mul_ps(y, _mm256_set1_ps(-3.77489497744594108e-8f)));
    const __m256 sign_cos = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_andnot_si256(_mm256_sub_epi32(j, _mm256_set1_epi32(2)), _mm256_set1_epi32(4)), 29));
    sign_sin = _mm256_xor_ps(sign_sin, swap_sign_sin);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 yc = _mm256_mul_ps(_mm256_set1_ps(2.443315711809948E-005f), z);
    yc = _mm256_mul_ps(_mm256_add_ps(yc, _mm256_set1_ps(-1.388731625493765E-003f)), z);
    yc = _mm256_mul_ps(_mm256_add_ps(yc, _mm256_set1_ps(4.166664568298827E-002f)), z);
    yc = _mm256_mul_ps(yc, z);
    yc = _mm256_sub_ps(yc, _mm256_mul_ps(z, _mm256_set1_ps(0.5f)));
    yc = _mm256_add_ps(yc, _mm256_set1_ps(1.0f));
    __m256 ys = _mm256_mul_ps(_mm256_set1_ps(-1.9515295891E-4f), z);
    ys = _mm256_mul_ps(_mm256_add_ps(ys, _mm256_set1_ps(8.3321608736E-3f)), z);
    ys = _mm256_mul_ps(_mm256_add_ps(ys, _mm256_set1_ps(-1.6666654611E-1f)), z);
    ys = _mm256_add_ps(_mm256_mul_ps(ys, x), x);
    *s = _mm256_xor_ps(_mm256_blendv_ps(yc, ys, sin_poly), sign_sin);
    *c = _mm256_xor_ps(_mm256_blendv_ps(ys, yc, sin_poly), sign_cos);
}

__attribute__((target("avx2"))) static Py_ssize_t solve_avx2(const float *const *a, float *const *e, Py_ssize_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    const __m256 inv3 = _mm256_set1_ps((float)(1.0 / 3.0)), root3 = _mm256_set1_ps(sqrtf(3.0f));
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x00 = _mm256_loadu_ps(a[0] + i), x01 = _mm256_loadu_ps(a[1] + i), x02 = _mm256_loadu_ps(a[2] + i);
        __m256 x11 = _mm256_loadu_ps(a[3] + i), x12 = _mm256_loadu_ps(a[4] + i), x22 = _mm256_loadu_ps(a[5] + i);
#define ABS(v) _mm256_andnot_ps(sign, v)
        const __m256 largest = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(ABS(x00), ABS(x01)), _mm256_max_ps(ABS(x02), ABS(x11))),
                                             _mm256_max_ps(ABS(x12), ABS(x22)));
#undef ABS
        const __m256 all_zero = _mm256_cmp_ps(largest, zero, _CMP_EQ_OQ);
        const __m256 m = _mm256_blendv_ps(largest, one, all_zero);
        x00 = _mm256_div_ps(x00, m); x01 = _mm256_div_ps(x01, m); x02 = _mm256_div_ps(x02, m);
        x11 = _mm256_div_ps(x11, m); x12 = _mm256_div_ps(x12, m); x22 = _mm256_div_ps(x22, m);
        __m256 c0 = _mm256_mul_ps(_mm256_mul_ps(x00, x11), x22);
        c0 = _mm256_add_ps(c0, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(two, x01), x02), x12));
        c0 = _mm256_sub_ps(c0, _mm256_mul_ps(_mm256_mul_ps(x00, x12), x12));
        c0 = _mm256_sub_ps(c0, _mm256_mul_ps(_mm256_mul_ps(x11, x02), x02));
        c0 = _mm256_sub_ps(c0, _mm256_mul_ps(_mm256_mul_ps(x22, x01), x01));
        __m256 c1 = _mm256_sub_ps(_mm256_mul_ps(x00, x11), _mm256_mul_ps(x01, x01));
        c1 = _mm256_add_ps(c1, _mm256_mul_ps(x00, x22));
        c1 = _mm256_sub_ps(c1, _mm256_mul_ps(x02, x02));
        c1 = _mm256_add_ps(c1, _mm256_mul_ps(x11, x22));
        c1 = _mm256_sub_ps(c1, _mm256_mul_ps(x12, x12));
        const __m256 c2 = _mm256_add_ps(_mm256_add_ps(x00, x11), x22);
        const __m256 c2_div3 = _mm256_mul_ps(c2, inv3);
        const __m256 a_div3 = _mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(c1, _mm256_mul_ps(c2, c2_div3)), inv3), zero);
        const __m256 mb_div2 = _mm256_mul_ps(
            half, _mm256_add_ps(c0, _mm256_mul_ps(c2_div3, _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(two, c2_div3), c2_div3), c1))));
        const __m256 q = _mm256_min_ps(
            _mm256_add_ps(_mm256_mul_ps(mb_div2, mb_div2), _mm256_mul_ps(_mm256_mul_ps(a_div3, a_div3), a_div3)), zero);
        const __m256 magnitude = _mm256_sqrt_ps(_mm256_xor_ps(a_div3, sign));
        const __m256 angle = _mm256_mul_ps(atan2_avx2(_mm256_sqrt_ps(_mm256_xor_ps(q, sign)), mb_div2), inv3);
        __m256 sn, cs;
        sincos_avx2(angle, &sn, &cs);
        const __m256 r0 = _mm256_add_ps(c2_div3, _mm256_mul_ps(_mm256_mul_ps(two, magnitude), cs));
        const __m256 r1 = _mm256_sub_ps(c2_div3, _mm256_mul_ps(magnitude, _mm256_add_ps(cs, _mm256_mul_ps(root3, sn))));
        const __m256 r2 = _mm256_sub_ps(c2_div3, _mm256_mul_ps(magnitude, _mm256_sub_ps(cs, _mm256_mul_ps(root3, sn))));
        const __m256 lo01 = _mm256_min_ps(r0, r1), hi01 = _mm256_max_ps(r0, r1);
        const __m256 smallest = _mm256_min_ps(lo01, r2), rest = _mm256_max_ps(lo01, r2);
        _mm256_storeu_ps(e[2] + i, _mm256_andnot_ps(all_zero, _mm256_mul_ps(smallest, m)));
        _mm256_storeu_ps(e[1] + i, _mm256_andnot_ps(all_zero, _mm256_mul_ps(_mm256_min_ps(hi01, rest), m)));
        _mm256_storeu_ps(e[0] + i, _mm256_andnot_ps(all_zero, _mm256_mul_ps(_mm256_max_ps(hi01, rest), m)));
    }
    return i;
}
#else
#define HAVE_AVX2_CLONE 0
#endif

static int forced = -1; /* -1: decide by the CPU; 0: portable loop only (tests) */

static int use_avx2(void)
{
#if HAVE_AVX2_CLONE
    if (forced >= 0)
        return forced;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static void solve_all(const float *const *a, float *const *e, Py_ssize_t n)
{
    const float *a00 = a[0], *a01 = a[1], *a02 = a[2], *a11 = a[3], *a12 = a[4], *a22 = a[5];
    float *e0 = e[0], *e1 = e[1], *e2 = e[2];
    Py_ssize_t i = 0;
#if HAVE_AVX2_CLONE
    if (use_avx2())
        i = solve_avx2(a, e, n);
#endif
    for (; i < n; ++i) {
        float ev[3];
        ev_solve3(a00[i], a01[i], a02[i], a11[i], a12[i], a22[i], ev);
        e0[i] = ev[0];
        e1[i] = ev[1];
        e2[i] = ev[2];
    }
}

static PyObject *eigenvalues3(PyObject *self, PyObject *args)
{
    Py_buffer in[6], out[3];
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*w*w*", &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], &out[0], &out[1],
                          &out[2]))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = in[0].len / (Py_ssize_t)sizeof(float);
    for (int k = 0; k < 6; ++k)
        if (in[k].len != in[0].len)
            goto mismatch;
    for (int k = 0; k < 3; ++k)
        if (out[k].len < in[0].len)
            goto mismatch;
    {
        const float *a[6];
        float *e[3];
        for (int k = 0; k < 6; ++k)
            a[k] = (const float *)in[k].buf;
        for (int k = 0; k < 3; ++k)
            e[k] = (float *)out[k].buf;
        Py_BEGIN_ALLOW_THREADS
        solve_all(a, e, n);
        Py_END_ALLOW_THREADS
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
mismatch:
    PyErr_SetString(PyExc_ValueError, "eigenvalues3: the six inputs and three outputs need equal float32 lengths");
done:
    for (int k = 0; k < 6; ++k)
        PyBuffer_Release(&in[k]);
    for (int k = 0; k < 3; ++k)
        PyBuffer_Release(&out[k]);
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

static PyMethodDef methods[] = {
    {"force_path", force_path, METH_VARARGS,
     "force_path(p): 0 = the portable loop, 1 = the AVX2 loop (if compiled), -1 = decide by the CPU."},
    {"eigenvalues3", eigenvalues3, METH_VARARGS,
     "eigenvalues3(a00, a01, a02, a11, a12, a22, ev0, ev1, ev2)\n\n"
     "Eigenvalues (largest first) of the symmetric 3x3 matrices given by six contiguous float32 arrays."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ceigen", "fastfilters-exact 3x3 eigenvalues", -1, methods};

PyMODINIT_FUNC PyInit__ceigen(void) { return PyModule_Create(&module); }
