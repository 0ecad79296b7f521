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
#include <string.h>

#define MUL_ADD(a, b, c) ((a) * (b) + (c))

static inline float vmin(float a, float b) { return a < b ? a : b; } /* _mm256_min_ps */
static inline float vmax(float a, float b) { return a > b ? a : b; } /* _mm256_max_ps */

static inline uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static float atan2_approx(float y, float x)
{
    const uint32_t sign_x = bits(x) & 0x80000000u, sign_y = bits(y) & 0x80000000u;
    x = fabsf(x);
    y = fabsf(y);
    float q = sign_x ? -2.0f : 0.0f;
    if (y > x) { /* rotate by pi/2 */
        const float x0 = x;
        x = y;
        y = -x0;
        q = q + 1.0f;
    }
    const float s = y / x;
    float t = s * s;
    float u = 0.00282363896258175373077393f;
    u = MUL_ADD(t, u, -0.0159569028764963150024414f);
    u = MUL_ADD(t, u, 0.0425049886107444763183594f);
    u = MUL_ADD(t, u, -0.0748900920152664184570312f);
    u = MUL_ADD(t, u, 0.106347933411598205566406f);
    u = MUL_ADD(t, u, -0.142027363181114196777344f);
    u = MUL_ADD(t, u, 0.199926957488059997558594f);
    u = MUL_ADD(t, u, -0.333331018686294555664062f);
    t = MUL_ADD(t * s, u, s);
    t = MUL_ADD(q, (float)(M_PI / 2.0), t);
    t = from_bits(bits(t) ^ sign_x);
    if (x == 0.0f)
        t = (float)(M_PI / 2.0);
    if (y == 0.0f)
        t = sign_x ? (float)M_PI : 0.0f;
    return from_bits(bits(t) ^ sign_y);
}

static void sincos_approx(float x, float *s, float *c)
{
    uint32_t sign_sin = bits(x) & 0x80000000u;
    x = fabsf(x);
    float y = x * 1.27323954473516f; /* 4 / pi */
    int32_t j = (int32_t)y;          /* truncation, as cvttps */
    j = (j + 1) & ~1;
    y = (float)j;
    const uint32_t swap_sign_sin = (uint32_t)(j & 4) << 29;
    const int use_cos_poly_for_sin = (j & 2) == 0 ? 0 : 1;
    x = x + y * -0.78515625f;
    x = x + y * -2.4187564849853515625e-4f;
    x = x + y * -3.77489497744594108e-8f;
    const uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    sign_sin ^= swap_sign_sin;
    const float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = yc * z;
    yc = yc + -1.388731625493765E-003f;
    yc = yc * z;
    yc = yc + 4.166664568298827E-002f;
    yc = yc * z;
    yc = yc * z;
    yc = yc - z * 0.5f;
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = ys * z;
    ys = ys + 8.3321608736E-3f;
    ys = ys * z;
    ys = ys + -1.6666654611E-1f;
    ys = ys * z;
    ys = ys * x;
    ys = ys + x;
    const float sine = use_cos_poly_for_sin ? yc : ys;
    const float cosine = use_cos_poly_for_sin ? ys : yc;
    *s = from_bits(bits(sine) ^ sign_sin);
    *c = from_bits(bits(cosine) ^ sign_cos);
}

static void eigen3(float a00, float a01, float a02, float a11, float a12, float a22, float *ev)
{
    const float m = vmax(vmax(vmax(fabsf(a00), fabsf(a01)), vmax(fabsf(a02), fabsf(a11))), vmax(fabsf(a12), fabsf(a22)));
    if (m == 0.0f) {
        ev[0] = ev[1] = ev[2] = 0.0f;
        return;
    }
    a00 /= m; a01 /= m; a02 /= m; a11 /= m; a12 /= m; a22 /= m;
    const float inv3 = (float)(1.0 / 3.0), root3 = sqrtf(3.0f);
    const float c0 = (a00 * a11) * a22 + ((2.0f * a01) * a02) * a12 - (a00 * a12) * a12 - (a11 * a02) * a02 - (a22 * a01) * a01;
    const float c1 = a00 * a11 - a01 * a01 + a00 * a22 - a02 * a02 + a11 * a22 - a12 * a12;
    const float c2 = a00 + a11 + a22;
    const float c2_div3 = c2 * inv3;
    const float a_div3 = vmin((c1 - c2 * c2_div3) * inv3, 0.0f);
    const float mb_div2 = 0.5f * (c0 + c2_div3 * ((2.0f * c2_div3) * c2_div3 - c1));
    const float q = vmin(mb_div2 * mb_div2 + (a_div3 * a_div3) * a_div3, 0.0f);
    const float magnitude = sqrtf(-a_div3);
    const float angle = atan2_approx(sqrtf(-q), mb_div2) * inv3;
    float sn, cs;
    sincos_approx(angle, &sn, &cs);
    const float r0 = c2_div3 + (2.0f * magnitude) * cs;
    const float r1 = c2_div3 - magnitude * (cs + root3 * sn);
    const float r2 = c2_div3 - magnitude * (cs - root3 * sn);
    const float lo01 = vmin(r0, r1), hi01 = vmax(r0, r1);
    const float smallest = vmin(lo01, r2), rest = vmax(lo01, r2);
    ev[2] = smallest * m;
    ev[1] = vmin(hi01, rest) * m;
    ev[0] = vmax(hi01, rest) * m;
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
        for (Py_ssize_t i = 0; i < n; ++i) {
            float ev[3];
            eigen3(a[0][i], a[1][i], a[2][i], a[3][i], a[4][i], a[5][i], ev);
            e[0][i] = ev[0];
            e[1][i] = ev[1];
            e[2][i] = ev[2];
        }
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

static PyMethodDef methods[] = {
    {"eigenvalues3", eigenvalues3, METH_VARARGS,
     "eigenvalues3(a00, a01, a02, a11, a12, a22, ev0, ev1, ev2)\n\n"
     "Eigenvalues (largest first) of the symmetric 3x3 matrices given by six contiguous float32 arrays."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ceigen", "fastfilters-exact 3x3 eigenvalues", -1, methods};

PyMODINIT_FUNC PyInit__ceigen(void) { return PyModule_Create(&module); }
