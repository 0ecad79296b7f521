// Eigenvalues of one symmetric 3x3 matrix with fastfilters' float32 arithmetic
// (spec/pixel-classification.md §5.3): entries divided by the largest absolute entry, the
// trigonometric solution of the characteristic polynomial with fastfilters' polynomial atan2,
// sin and cos (cephes' reduction and coefficients), results sorted descending and scaled back;
// an all-zero matrix gives zeros. Shared, unchanged, by the CUDA kernel (eigenvalues.cu) and the
// CPU extension (gpuheadless/features/_ceigen.c), which therefore give the same bits. Compile
// without contraction of products and sums (nvcc -fmad=false, gcc -ffp-contract=off).
#ifndef GPUHEADLESS_EIGEN3_MATH_H
#define GPUHEADLESS_EIGEN3_MATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__) || defined(__device__)  /* nvcc, NVRTC, the tests' emulation */
#define EV_FN __device__ __forceinline__
#else
#include <math.h>
#include <stdbool.h>
#define EV_FN static inline
#endif

EV_FN float ev_min(float a, float b) { return a < b ? a : b; }
EV_FN float ev_max(float a, float b) { return a > b ? a : b; }

EV_FN float ev_negate_if(float x, bool negate) { return negate ? -x : x; }

EV_FN float ev_atan2(float y, float x)
{
    const bool negative_x = signbit(x), negative_y = signbit(y);
    const float ax = fabsf(x), ay = fabsf(y);
    const bool rotate = ay > ax;
    x = rotate ? ay : ax;
    y = rotate ? -ax : ay;
    const float q = (negative_x ? -2.0f : 0.0f) + (rotate ? 1.0f : 0.0f);
    const float s = y / x;
    float t = s * s;
    float u = 0.00282363896258175373077393f;
    u = t * u + -0.0159569028764963150024414f;
    u = t * u + 0.0425049886107444763183594f;
    u = t * u + -0.0748900920152664184570312f;
    u = t * u + 0.106347933411598205566406f;
    u = t * u + -0.142027363181114196777344f;
    u = t * u + 0.199926957488059997558594f;
    u = t * u + -0.333331018686294555664062f;
    t = (t * s) * u + s;
    t = q * 1.57079637050628662109375f + t;  // (float)(pi / 2)
    t = ev_negate_if(t, negative_x);
    t = x == 0.0f ? 1.57079637050628662109375f : t;
    t = y == 0.0f ? (negative_x ? 3.14159274101257324219f : 0.0f) : t;  // (float)pi
    return ev_negate_if(t, negative_y);
}

EV_FN void ev_sincos(float x, float *s, float *c)
{
    bool negative_sin = signbit(x);
    x = fabsf(x);
    const int j = ((int)(x * 1.27323954473516f) + 1) & ~1;
    const float y = (float)j;
    negative_sin = negative_sin != ((j & 4) != 0);
    const bool cos_poly_for_sin = (j & 2) != 0;
    x = x + y * -0.78515625f;
    x = x + y * -2.4187564849853515625e-4f;
    x = x + y * -3.77489497744594108e-8f;
    const bool negative_cos = (~(j - 2) & 4) != 0;
    const float z = x * x;
    float yc = 2.443315711809948E-005f * z;
    yc = (yc + -1.388731625493765E-003f) * z;
    yc = (yc + 4.166664568298827E-002f) * z;
    yc = yc * z;
    yc = yc - z * 0.5f;
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f * z;
    ys = (ys + 8.3321608736E-3f) * z;
    ys = (ys + -1.6666654611E-1f) * z;
    ys = ys * x + x;
    *s = ev_negate_if(cos_poly_for_sin ? yc : ys, negative_sin);
    *c = ev_negate_if(cos_poly_for_sin ? ys : yc, negative_cos);
}

EV_FN void ev_solve3(float x00, float x01, float x02, float x11, float x12, float x22, float *ev)
{
    const float largest = ev_max(ev_max(ev_max(fabsf(x00), fabsf(x01)), ev_max(fabsf(x02), fabsf(x11))),
                                 ev_max(fabsf(x12), fabsf(x22)));
    const float m = largest == 0.0f ? 1.0f : largest;
    x00 = x00 / m; x01 = x01 / m; x02 = x02 / m; x11 = x11 / m; x12 = x12 / m; x22 = x22 / m;
    const float inv3 = 0.3333333432674407958984375f, root3 = 1.73205077648162841796875f;
    const float c0 = (x00 * x11) * x22 + ((2.0f * x01) * x02) * x12 - (x00 * x12) * x12 - (x11 * x02) * x02 -
                     (x22 * x01) * x01;
    const float c1 = x00 * x11 - x01 * x01 + x00 * x22 - x02 * x02 + x11 * x22 - x12 * x12;
    const float c2 = x00 + x11 + x22;
    const float c2_div3 = c2 * inv3;
    const float a_div3 = ev_min((c1 - c2 * c2_div3) * inv3, 0.0f);
    const float mb_div2 = 0.5f * (c0 + c2_div3 * ((2.0f * c2_div3) * c2_div3 - c1));
    const float q = ev_min(mb_div2 * mb_div2 + (a_div3 * a_div3) * a_div3, 0.0f);
    const float magnitude = sqrtf(-a_div3);
    const float angle = ev_atan2(sqrtf(-q), mb_div2) * inv3;
    float sn, cs;
    ev_sincos(angle, &sn, &cs);
    const float r0 = c2_div3 + (2.0f * magnitude) * cs;
    const float r1 = c2_div3 - magnitude * (cs + root3 * sn);
    const float r2 = c2_div3 - magnitude * (cs - root3 * sn);
    const float lo01 = ev_min(r0, r1), hi01 = ev_max(r0, r1);
    const float smallest = ev_min(lo01, r2), rest = ev_max(lo01, r2);
    const bool zero = largest == 0.0f;
    ev[0] = zero ? 0.0f : ev_max(hi01, rest) * m;
    ev[1] = zero ? 0.0f : ev_min(hi01, rest) * m;
    ev[2] = zero ? 0.0f : smallest * m;
}

#endif
