/* render_c.c — prints a planned group (lower.h) as one C function: the shared preamble (16-bit
 * float conversions and integer helpers, the same arithmetic as src/core/dtype.c and
 * src/ops/elementwise.c; vectorizable f32 transcendentals), per-element expressions in
 * registers, and the loop nest (inner loops `omp simd`). */
#include "codegen/lower.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_BLOCK 8192      /* elements of the innermost dim per tile of an elementwise loop */
#define GEN_COL_BLOCK 256   /* output columns a column reduction accumulates at once */
#define GEN_PAR_WORK 32768  /* elements from which the outer loop runs in parallel */

/* Guarded, so several kernels concatenate into one translation unit. Copies of the reference
 * arithmetic: generated code must round and wrap exactly as the interpreter does, except the
 * f32 transcendentals (kg_expf...), which agree with it within a few ulp. */
static const char PREAMBLE[] =
    "#ifndef KILN_GEN_PREAMBLE\n"
    "#define KILN_GEN_PREAMBLE\n"
    "#include <stdint.h>\n#include <string.h>\n#include <math.h>\n"
    "static inline uint32_t kg_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }\n"
    "static inline float kg_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }\n"
    "static inline uint16_t kg_st_f16(float x) {\n"
    "    uint32_t u = kg_bits(x); uint16_t sign = (uint16_t)((u >> 16) & 0x8000);\n"
    "    uint32_t exp = (u >> 23) & 0xff, mant = u & 0x7fffff;\n"
    "    if (exp == 0xff) return sign | 0x7c00 | (mant ? 0x200 | (uint16_t)(mant >> 13) : 0);\n"
    "    int e = (int)exp - 127 + 15;\n"
    "    if (e >= 31) return sign | 0x7c00;\n"
    "    if (e <= 0) {\n"
    "        if (e < -10) return sign;\n"
    "        mant |= 0x800000; int shift = 14 - e;\n"
    "        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);\n"
    "        if (rem > mid || (rem == mid && (half & 1))) half++;\n"
    "        return sign | (uint16_t)half;\n"
    "    }\n"
    "    uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;\n"
    "    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;\n"
    "    return sign | (uint16_t)half;\n"
    "}\n"
    "static inline float kg_ld_f16(uint16_t h) {\n"
    "    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;\n"
    "    if (exp == 0x1f) return kg_float(sign | 0x7f800000 | (mant << 13));\n"
    "    if (exp == 0) { float v = ldexpf((float)mant, -24); return sign ? -v : v; }\n"
    "    return kg_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));\n"
    "}\n"
    "static inline uint16_t kg_st_bf16(float x) {\n"
    "    uint32_t u = kg_bits(x);\n"
    "    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);\n"
    "    u += 0x7fff + ((u >> 16) & 1);\n"
    "    return (uint16_t)(u >> 16);\n"
    "}\n"
    "static inline float kg_ld_bf16(uint16_t h) { return kg_float((uint32_t)h << 16); }\n"
    "static inline float kg_rnd_f16(float x) { return kg_ld_f16(kg_st_f16(x)); }\n"
    "static inline float kg_rnd_bf16(float x) { return kg_ld_bf16(kg_st_bf16(x)); }\n"
    "static inline int64_t kg_sat(double v) {\n"
    "    if (isnan(v)) return 0;\n"
    "    if (v >= 9223372036854775807.0) return INT64_MAX;\n"
    "    if (v <= -9223372036854775808.0) return INT64_MIN;\n"
    "    return (int64_t)v;\n"
    "}\n"
    "static inline int64_t kg_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }\n"
    "static inline int64_t kg_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }\n"
    "static inline int64_t kg_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }\n"
    "static inline int64_t kg_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }\n"
    "static inline int64_t kg_floordiv(int64_t x, int64_t y) {\n"
    "    if (y == 0) return 0;\n"
    "    if (y == -1) return kg_neg(x);\n"
    "    int64_t q = x / y;\n"
    "    return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;\n"
    "}\n"
    "static inline int64_t kg_mod(int64_t x, int64_t y) {\n"
    "    if (y == 0 || y == -1) return 0;\n"
    "    int64_t r = x % y;\n"
    "    return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;\n"
    "}\n"
    "static inline int64_t kg_pow(int64_t x, int64_t y) {\n"
    "    if (y < 0) return 0;\n"
    "    uint64_t r = 1, b = (uint64_t)x;\n"
    "    for (; y; y >>= 1, b *= b) if (y & 1) r *= b;\n"
    "    return (int64_t)r;\n"
    "}\n"
    "static inline int64_t kg_shl(int64_t x, int64_t y) { return y < 0 || y >= 64 ? 0 : (int64_t)((uint64_t)x << y); }\n"
    "static inline int64_t kg_shr(int64_t x, int64_t y) { return y < 0 || y >= 64 ? (x < 0 ? -1 : 0) : x >> y; }\n"
    /* Vectorizable f32 transcendentals: branch-free (selects only), no calls, so gcc vectorizes a
     * loop of them (with -fno-trapping-math, which lets it evaluate both arms of a select). f32,
     * f16 and bf16 use them; f64 keeps libm. Max errors against the exact value over every 5th
     * f32: exp 0.98, log 0.88, log2 1.44, tanh 1.33, sigmoid 2.36, erf 1.41, atan 2.07 ulp
     * (codegen_transcendental_ulp asserts these plus a margin); special values (+-0, +-inf,
     * NaN, overflow to inf, underflow to 0, saturation to +-1) exact.
     * kg_pow2i: 2^n for n in [-126, 127], built in the exponent field. */
    "static inline float kg_pow2i(int32_t n) { return kg_float((uint32_t)(n + 127) << 23); }\n"
    /* exp: n = rint(x log2 e) (adding and removing 1.5 * 2^23 rounds to an integer), r = x - n ln2
     * with ln2 in two parts (Cody-Waite; n * 0.693359375 is exact), e^r by Cephes' degree-6
     * polynomial on |r| <= ln2 / 2, then * 2^n as two powers of two (one final rounding, so
     * subnormal results and the overflow to inf are right). x is clamped to [-104, 89], beyond
     * which the result is 0 / inf anyway. */
    "static inline float kg_expf(float x) {\n"
    "    const float x1 = x > 89.0f ? 89.0f : x, x2 = x1 < -104.0f ? -104.0f : x1, xc = x == x ? x2 : 0.0f;\n"
    "    const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;\n"
    "    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;\n"
    "    const float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r\n"
    "                      + 1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) + r + 1.0f;\n"
    "    const int32_t ni = (int32_t)n, n1 = ni / 2;\n"
    "    const float y = p * kg_pow2i(n1) * kg_pow2i(ni - n1);\n"
    "    return x == x ? y : x;\n"
    "}\n"
    /* log: x = 2^e m with m in [sqrt(1/2), sqrt(2)) (subnormals scaled by 2^23 first), f = m - 1
     * (exact); log m = f + y, y = f^3 P(f) - f^2 / 2 (Cephes logf's polynomial). x < 0 gives the
     * NaN of (x - x) / 0, as libm's (the default NaN). */
    "static inline float kg_log_parts(float x, float *e, float *y) {\n"
    "    const int sub = x < 1.17549435e-38f;\n"
    "    const float xs = x * 8388608.0f;\n"
    "    const uint32_t u = kg_bits(sub ? xs : x) + (0x3f800000u - 0x3f3504f3u);\n"
    "    const int32_t k = (int32_t)(u >> 23) - (sub ? 150 : 127);\n"
    "    const float f = kg_float((u & 0x007fffffu) + 0x3f3504f3u) - 1.0f, z = f * f;\n"
    "    *e = (float)k;\n"
    "    *y = f * z * ((((((((7.0376836292e-2f * f - 1.1514610310e-1f) * f + 1.1676998740e-1f) * f - 1.2420140846e-1f) * f\n"
    "                       + 1.4249322787e-1f) * f - 1.6668057665e-1f) * f + 2.0000714765e-1f) * f - 2.4999993993e-1f) * f\n"
    "                   + 3.3333331174e-1f) - 0.5f * z;\n"
    "    return f;\n"
    "}\n"
    "static inline float kg_log_special(float x, float r) {\n"
    "    const float r1 = x == INFINITY ? x : r, r2 = x == 0 ? -INFINITY : r1;\n"
    "    return (x < 0) | (x != x) ? (x - x) / 0.0f : r2;\n"
    "}\n"
    "static inline float kg_logf(float x) {\n"
    "    float e, y, f = kg_log_parts(x, &e, &y);\n"
    "    return kg_log_special(x, (f + (y + e * -2.12194440e-4f)) + e * 0.693359375f);\n"
    "}\n"
    /* log2 = e + (f + y) log2 e, with log2 e = 1 + 0.4427: the large part f enters unscaled. */
    "static inline float kg_log2f(float x) {\n"
    "    float e, y, f = kg_log_parts(x, &e, &y);\n"
    "    return kg_log_special(x, (((y * 0.44269504088896340736f + f * 0.44269504088896340736f) + y) + f) + e);\n"
    "}\n"
    /* tanh: x + x^3 P(x^2) for |x| < 0.625 (Cephes), else 1 - 2 / (e^2|x| + 1), which saturates
     * to 1 when e^2|x| overflows; sign restored with copysign (keeps -0). */
    "static inline float kg_tanhf(float x) {\n"
    "    const float a = fabsf(x), z = a * a;\n"
    "    const float s = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z\n"
    "                     - 3.33332819422e-1f) * z * a + a;\n"
    "    const float l = 1.0f - 2.0f / (kg_expf(a + a) + 1.0f);\n"
    "    return copysignf(a < 0.625f ? s : l, x);\n"
    "}\n"
    /* sigmoid with e = e^-|x| <= 1: 1 / (1 + e) for x >= 0, e / (1 + e) below (no overflow,
     * tiny results keep their precision). */
    "static inline float kg_sigmoidf(float x) {\n"
    "    const float e = kg_expf(-fabsf(x));\n"
    "    return (x >= 0 ? 1.0f : e) / (1.0f + e);\n"
    "}\n"
    /* erf: |x| < 0.921875: x + x Q(x^2); above: 1 - e^P(|x| - 0.921875), P fitting log erfc to
     * ~1e-11 weighted by erfc (minimax-like least squares, degree 5 and 9); |x| clamped to 4,
     * where erf rounds to 1. */
    "static inline float kg_erff(float x) {\n"
    "    const float a = fabsf(x), s = a * a;\n"
    "    const float lo = a + a * (((((-6.013395614e-04f * s + 4.998001270e-03f) * s - 2.677023225e-02f) * s\n"
    "                               + 1.128192693e-01f) * s - 3.761250675e-01f) * s + 1.283791512e-01f);\n"
    "    const float t = (a > 4.0f ? 4.0f : a) - 0.921875f;\n"
    "    const float p = ((((((((1.032884938e-06f * t - 8.021665053e-06f) * t + 3.622932354e-06f) * t\n"
    "                        + 2.592895180e-04f) * t - 2.110351808e-03f) * t + 1.083694305e-02f) * t\n"
    "                      - 4.482151195e-02f) * t - 8.329891562e-01f) * t - 2.508012533e+00f) * t - 1.648561835e+00f;\n"
    "    const float hi = 1.0f - kg_expf(p);\n"
    "    return copysignf(a < 0.921875f ? lo : hi, x);\n"
    "}\n"
    /* atan (Cephes atanf): |x| reduced to w in [-tan pi/8, tan pi/8] with atan |x| = c + atan w,
     * c = 0, pi/4 or pi/2 (given as hi + lo), then w + w^3 P(w^2). */
    "static inline float kg_atanf(float x) {\n"
    "    const float a = fabsf(x);\n"
    "    const int big = a > 2.414213562f, mid = a > 0.414213562f;\n"
    "    const float inv = -1.0f / a, red = (a - 1.0f) / (a + 1.0f);\n"
    "    const float w = big ? inv : mid ? red : a, z = w * w;\n"
    "    const float hi = big ? 1.570796327f : mid ? 0.785398163f : 0.0f;\n"
    "    const float lo = big ? -4.37113883e-8f : mid ? -2.18556941e-8f : 0.0f;\n"
    "    const float q = (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f) * z;\n"
    "    return copysignf(hi + ((q * w + lo) + w), x);\n"
    "}\n"
    "#define KG_FLOAT_MATH(M, S)\\\n"
    "    static inline M kg_mod_##M(M x, M y) {\\\n"
    "        M r = fmod##S(x, y);\\\n"
    "        if (r != 0 && (r < 0) != (y < 0)) return r + y;\\\n"
    "        return r != 0 ? r : copysign##S((M)0, y);\\\n"
    "    }\\\n"
    "    static inline M kg_floordiv_##M(M x, M y) {\\\n"
    "        if (y == 0) return x / y;\\\n"
    "        M mod = fmod##S(x, y), div = (x - mod) / y;\\\n"
    "        if (mod != 0 && (y < 0) != (mod < 0)) div -= 1;\\\n"
    "        if (div == 0) return copysign##S((M)0, x / y);\\\n"
    "        M fl = floor##S(div);\\\n"
    "        return div - fl > (M)0.5 ? fl + 1 : fl;\\\n"
    "    }\n"
    "KG_FLOAT_MATH(float, f)\n"
    "KG_FLOAT_MATH(double, )\n"
    "#endif\n";

/* ---- types and conversions ----------------------------------------------------------------- */
/* An expression; kernels never nest deeply (operands get their own locals). */
typedef struct gx {
    char s[512];
} gx;

static gx gxf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static gx gxf(const char *fmt, ...) {
    gx g;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.s, sizeof g.s, fmt, ap);
    va_end(ap);
    return g;
}

static bool is_f(kiln_dtype dt) { return kiln_dtype_is_float(dt); }

/* The C type a dtype computes in (16-bit floats in float, ints and bool in int64). */
static const char *math_t(kiln_dtype dt) {
    return dt == KILN_F64 ? "double" : is_f(dt) ? "float" : "int64_t";
}

static const char *store_t(kiln_dtype dt) {
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_F16: case KILN_BF16: return "uint16_t";
    case KILN_I8: return "int8_t";
    case KILN_I32: return "int32_t";
    case KILN_I64: return "int64_t";
    default: return "uint8_t";
    }
}

/* Element x (stored as dt) as its math value. */
static gx load_x(kiln_dtype dt, const char *x) {
    switch (dt) {
    case KILN_F32: case KILN_F64: return gxf("%s", x);
    case KILN_F16: return gxf("kg_ld_f16(%s)", x);
    case KILN_BF16: return gxf("kg_ld_bf16(%s)", x);
    case KILN_BOOL: return gxf("(int64_t)(%s != 0)", x);
    default: return gxf("(int64_t)%s", x);
    }
}

/* A math value already representable in dt, as its storage. */
static gx store_x(kiln_dtype dt, const char *e) {
    switch (dt) {
    case KILN_F32: case KILN_F64: return gxf("%s", e);
    case KILN_F16: return gxf("kg_st_f16(%s)", e);
    case KILN_BF16: return gxf("kg_st_bf16(%s)", e);
    case KILN_BOOL: return gxf("(uint8_t)(%s != 0)", e);
    default: return gxf("(%s)%s", store_t(dt), e);
    }
}

/* Rounds / wraps a math value of dt's math type to what a store into dt and a load keep. */
static gx fin_x(kiln_dtype dt, const char *e) {
    switch (dt) {
    case KILN_F16: return gxf("kg_rnd_f16(%s)", e);
    case KILN_BF16: return gxf("kg_rnd_bf16(%s)", e);
    case KILN_I8: case KILN_U8: case KILN_I32: return gxf("(int64_t)(%s)(%s)", store_t(dt), e);
    case KILN_BOOL: return gxf("(int64_t)((%s) != 0)", e);
    default: return gxf("%s", e);
    }
}

/* The value kiln_convert gives converting e (a math value of sd) to cd, as cd's math value. */
static gx conv_x(const char *e, kiln_dtype sd, kiln_dtype cd) {
    if (sd == cd) return gxf("%s", e);
    if (is_f(cd)) {
        gx d = gxf("(double)(%s)", e); /* int -> float goes through double, as kiln_convert */
        if (cd == KILN_F64) return d;
        gx f = gxf("(float)%s", d.s);
        return cd == KILN_F32 ? f : fin_x(cd, f.s);
    }
    if (is_f(sd)) return cd == KILN_BOOL ? gxf("(int64_t)((%s) != 0)", e) : fin_x(cd, gxf("kg_sat((double)(%s))", e).s);
    return fin_x(cd, e);
}

/* A double as C source that reads back exactly. */
static gx double_x(double v) {
    if (isnan(v)) return gxf("NAN");
    if (isinf(v)) return gxf("%sINFINITY", v < 0 ? "-" : "");
    return gxf("(%a)", v);
}

/* Float to int64 as kiln_convert does: NaN 0, out of range saturated. */
static int64_t sat_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static gx int_x(int64_t v) {
    if (v == INT64_MIN) return gxf("INT64_MIN");
    return gxf("INT64_C(%lld)", (long long)v);
}

/* A var's math value: a literal inline, else its local v<id>. */
static gx var_x(const kiln_var *v) {
    if (v->kind != KILN_VAR_LITERAL) return gxf("v%d", v->id);
    if (v->type->dtype == KILN_F64) return double_x(v->lit.f);
    if (v->type->dtype == KILN_BOOL) return gxf("INT64_C(%d)", v->lit.b ? 1 : 0);
    return int_x(v->lit.i);
}

/* ---- per-node expressions ------------------------------------------------------------------ */
/* Unary ops on X (a local of dt's math type), as the reference kernels compute them. */
static gx unary_x(const kiln_node *n, kiln_dtype dt, const char *X) {
    const char *sf = dt == KILN_F64 ? "" : "f", *M = math_t(dt);
    bool fl = is_f(dt);
    double lo = -INFINITY, hi = INFINITY;
    if (n->op == KILN_OP_CLIP) {
        const kiln_attr *mn = kiln_attr_get(n->op, n->attrs, "min"), *mx = kiln_attr_get(n->op, n->attrs, "max");
        if (mn->set) lo = mn->f;
        if (mx->set) hi = mx->f;
        if (lo > hi) lo = hi;
    }
    switch (n->op) {
    case KILN_OP_LOGICAL_NOT: return gxf("(%s == 0)", X);
    case KILN_OP_COPY: case KILN_OP_BROADCAST_TO: return gxf("%s", X);
    case KILN_OP_NEG: return fl ? gxf("-%s", X) : gxf("kg_neg(%s)", X);
    case KILN_OP_ABS: return fl ? gxf("fabs%s(%s)", sf, X) : gxf("(%s < 0 ? kg_neg(%s) : %s)", X, X, X);
    case KILN_OP_SIGN:
        return fl ? gxf("(isnan(%s) ? %s : (%s)((%s > 0) - (%s < 0)))", X, X, M, X, X) : gxf("(int64_t)((%s > 0) - (%s < 0))", X, X);
    case KILN_OP_RELU: return fl ? gxf("(%s > 0 || isnan(%s) ? %s : 0)", X, X, X) : gxf("(%s > 0 ? %s : 0)", X, X);
    case KILN_OP_FLOOR: case KILN_OP_CEIL: case KILN_OP_ROUND: case KILN_OP_TRUNC:
        if (!fl) return gxf("%s", X);
        return gxf("%s%s(%s)", n->op == KILN_OP_FLOOR ? "floor" : n->op == KILN_OP_CEIL ? "ceil" : n->op == KILN_OP_ROUND ? "rint" : "trunc", sf, X);
    case KILN_OP_CLIP: {
        if (fl) {
            gx l = double_x(lo), h = double_x(hi);
            return gxf("(%s < (%s)%s ? (%s)%s : %s > (%s)%s ? (%s)%s : %s)", X, M, l.s, M, l.s, X, M, h.s, M, h.s, X);
        }
        int64_t ilo = sat_i64(ceil(lo)), ihi = sat_i64(floor(hi));
        if (ilo > ihi) ilo = ihi;
        gx l = int_x(ilo), h = int_x(ihi);
        return gxf("(%s < %s ? %s : %s > %s ? %s : %s)", X, l.s, l.s, X, h.s, h.s, X);
    }
    case KILN_OP_THRESHOLD: {
        double thr = kiln_attr_float(n->op, n->attrs, "threshold"), val = kiln_attr_float(n->op, n->attrs, "value");
        gx t = double_x(thr);
        if (fl) {
            gx v = double_x(val);
            return gxf("(%s <= (%s)%s ? (%s)%s : %s)", X, M, t.s, M, v.s, X);
        }
        gx v = int_x(sat_i64(val));
        return gxf("((double)%s <= %s ? %s : %s)", X, t.s, v.s, X);
    }
    default: break;
    }
    /* f64 calls libm; f32 (and f16 / bf16, computed in float) the preamble's kg_*f where the
     * op has one (within a few ulp of libm, vectorizable), else libm's float function. */
    static const struct { kiln_op op; const char *fmt, *vec; } FLOAT_FN[] = {
        {KILN_OP_EXP, "exp%s(%s)", "kg_expf(%s)"}, {KILN_OP_LOG, "log%s(%s)", "kg_logf(%s)"},
        {KILN_OP_LOG2, "log2%s(%s)", "kg_log2f(%s)"}, {KILN_OP_SQRT, "sqrt%s(%s)", NULL},
        {KILN_OP_RSQRT, "(1 / sqrt%s(%s))", NULL}, {KILN_OP_SIN, "sin%s(%s)", NULL},
        {KILN_OP_COS, "cos%s(%s)", NULL}, {KILN_OP_TANH, "tanh%s(%s)", "kg_tanhf(%s)"},
        {KILN_OP_ATAN, "atan%s(%s)", "kg_atanf(%s)"}, {KILN_OP_ERF, "erf%s(%s)", "kg_erff(%s)"},
        {KILN_OP_SIGMOID, "(1 / (1 + exp%s(-%s)))", "kg_sigmoidf(%s)"},
    };
    if (n->op == KILN_OP_RECIPROCAL) return gxf("(1 / %s)", X);
    for (size_t i = 0; i < KILN_COUNTOF(FLOAT_FN); i++) {
        if (FLOAT_FN[i].op != n->op) continue;
        if (dt != KILN_F64 && FLOAT_FN[i].vec) return gxf(FLOAT_FN[i].vec, X);
        return gxf(FLOAT_FN[i].fmt, sf, X);
    }
    return gxf("?");
}

/* Binary ops on X and Y (locals of dt's math type). */
static gx binary_x(kiln_op op, kiln_dtype dt, const char *X, const char *Y) {
    static const struct { kiln_op op; const char *fmt; } LOGIC[] = {
        {KILN_OP_EQUAL, "(int64_t)(%s == %s)"}, {KILN_OP_NOT_EQUAL, "(int64_t)(%s != %s)"},
        {KILN_OP_LESS, "(int64_t)(%s < %s)"}, {KILN_OP_LESS_EQUAL, "(int64_t)(%s <= %s)"},
        {KILN_OP_GREATER, "(int64_t)(%s > %s)"}, {KILN_OP_GREATER_EQUAL, "(int64_t)(%s >= %s)"},
    };
    for (size_t i = 0; i < KILN_COUNTOF(LOGIC); i++)
        if (LOGIC[i].op == op) return gxf(LOGIC[i].fmt, X, Y);
    bool fl = is_f(dt);
    const char *sf = dt == KILN_F64 ? "" : "f", *M = math_t(dt);
    switch (op) {
    case KILN_OP_LOGICAL_AND: return gxf("(int64_t)(%s != 0 && %s != 0)", X, Y);
    case KILN_OP_LOGICAL_OR: return gxf("(int64_t)(%s != 0 || %s != 0)", X, Y);
    case KILN_OP_LOGICAL_XOR: return gxf("(int64_t)((%s != 0) != (%s != 0))", X, Y);
    case KILN_OP_ADD: return fl ? gxf("(%s + %s)", X, Y) : gxf("kg_add(%s, %s)", X, Y);
    case KILN_OP_SUBTRACT: return fl ? gxf("(%s - %s)", X, Y) : gxf("kg_sub(%s, %s)", X, Y);
    case KILN_OP_MULTIPLY: return fl ? gxf("(%s * %s)", X, Y) : gxf("kg_mul(%s, %s)", X, Y);
    case KILN_OP_DIVIDE: return gxf("(%s / %s)", X, Y); /* the shape rule makes it float */
    case KILN_OP_FLOOR_DIVIDE: return fl ? gxf("kg_floordiv_%s(%s, %s)", M, X, Y) : gxf("kg_floordiv(%s, %s)", X, Y);
    case KILN_OP_MOD: return fl ? gxf("kg_mod_%s(%s, %s)", M, X, Y) : gxf("kg_mod(%s, %s)", X, Y);
    case KILN_OP_POWER: return fl ? gxf("pow%s(%s, %s)", sf, X, Y) : gxf("kg_pow(%s, %s)", X, Y);
    case KILN_OP_MAXIMUM: case KILN_OP_MINIMUM: {
        const char *cmp = op == KILN_OP_MAXIMUM ? ">" : "<";
        if (fl) return gxf("(isnan(%s) ? %s : isnan(%s) ? %s : %s %s %s ? %s : %s)", X, X, Y, Y, X, cmp, Y, X, Y);
        return gxf("(%s %s %s ? %s : %s)", X, cmp, Y, X, Y);
    }
    case KILN_OP_LEFT_SHIFT: return gxf("kg_shl(%s, %s)", X, Y);
    case KILN_OP_RIGHT_SHIFT: return gxf("kg_shr(%s, %s)", X, Y);
    default: return gxf("?");
    }
}

/* Emits `const M v<id> = ...;` for node n (not the reduction). */
static void emit_node(kiln_buf *b, const kiln_node *n) {
    int id = n->out->id;
    kiln_dtype od = n->out->type->dtype;
    const kiln_op_info *info = kiln_op_info_get(n->op);
    if (n->op == KILN_OP_WHERE) {
        gx c = var_x(n->in[0]), x = var_x(n->in[1]), y = var_x(n->in[2]);
        gx cx = conv_x(x.s, n->in[1]->type->dtype, od), cy = conv_x(y.s, n->in[2]->type->dtype, od);
        kiln_buf_printf(b, "const %s v%d = %s != 0 ? %s : %s;\n", math_t(od), id, c.s, cx.s, cy.s);
        return;
    }
    if (n->op == KILN_OP_CAST) {
        gx x = var_x(n->in[0]), cx = conv_x(x.s, n->in[0]->type->dtype, od);
        kiln_buf_printf(b, "const %s v%d = %s;\n", math_t(od), id, cx.s);
        return;
    }
    /* Comparisons and logical ops compute in the promoted input dtype, arithmetic in the
     * output's; unary ops in their input's. Operands are converted first (kiln_convert). */
    kiln_dtype cd = od;
    if (n->n_in == 1) cd = n->in[0]->type->dtype;
    else if (info->shape == kiln_shape_compare) cd = kiln_dtype_promote(n->in[0]->type->dtype, n->in[1]->type->dtype);
    for (int i = 0; i < n->n_in; i++) {
        gx x = var_x(n->in[i]), cx = conv_x(x.s, n->in[i]->type->dtype, cd);
        kiln_buf_printf(b, "const %s v%d_%d = %s;\n", math_t(cd), id, i, cx.s);
    }
    gx X = gxf("v%d_0", id), Y = gxf("v%d_1", id);
    gx e = n->n_in == 1 ? unary_x(n, cd, X.s) : binary_x(n->op, cd, X.s, Y.s);
    gx f = fin_x(od, e.s);
    kiln_buf_printf(b, "const %s v%d = %s;\n", math_t(od), id, f.s);
}

/* ---- the reduction ------------------------------------------------------------------------- */
/* Accumulator: double for float inputs (as the reference), uint64 for integer sums and
 * products (wrapping), int64 otherwise; all / any keep 0 / 1. `x_` is the element. */
typedef struct gen_red {
    kiln_op op;
    const char *acc_t, *ident, *simd;
    gx elem, fold, value; /* element as acc_t; a folded with x_; a as value_dt's math value */
    kiln_dtype value_dt;
    bool nan_flag;        /* float max / min in a simd loop: NaN tracked apart */
} gen_red;

static void red_init(gen_red *r, const kiln_node *n) {
    kiln_op op = n->op;
    bool logic = op == KILN_OP_ALL || op == KILN_OP_ANY, fl = is_f(n->in[0]->type->dtype) && !logic;
    bool wide = !fl && (op == KILN_OP_SUM || op == KILN_OP_PROD);
    gx v = var_x(n->in[0]);
    memset(r, 0, sizeof *r);
    r->op = op;
    r->acc_t = fl ? "double" : wide ? "uint64_t" : "int64_t";
    r->elem = logic ? gxf("(int64_t)(%s != 0)", v.s) : gxf("(%s)%s", r->acc_t, v.s);
    r->value_dt = fl ? KILN_F64 : KILN_I64;
    r->value = gxf(wide ? "(int64_t)a" : "a");
    const char *cmp = op == KILN_OP_MAX ? ">" : "<";
    switch (op) {
    case KILN_OP_SUM: r->ident = "0", r->simd = "reduction(+:a)", r->fold = gxf("a + x_"); break;
    case KILN_OP_PROD: r->ident = "1", r->simd = "reduction(*:a)", r->fold = gxf("a * x_"); break;
    case KILN_OP_ALL: r->ident = "1", r->simd = "reduction(&:a)", r->fold = gxf("a & x_"); break;
    case KILN_OP_ANY: r->ident = "0", r->simd = "reduction(|:a)", r->fold = gxf("a | x_"); break;
    default:
        r->ident = fl ? (op == KILN_OP_MAX ? "-INFINITY" : "INFINITY") : (op == KILN_OP_MAX ? "INT64_MIN" : "INT64_MAX");
        r->simd = op == KILN_OP_MAX ? "reduction(max:a)" : "reduction(min:a)";
        r->nan_flag = fl;
        r->fold = gxf("x_ %s a%s ? x_ : a", cmp, fl ? " || x_ != x_" : ""); /* NaN wins, as the reference */
        break;
    }
}

/* ---- loops --------------------------------------------------------------------------------- */
typedef struct gen_out {
    kiln_buf b;
    int n, cap;
    int64_t *v;
    bool oom;
} gen_out;

/* Appends an integer to params; returns its index. */
static int slot(gen_out *o, int64_t v) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 32;
        int64_t *nv = realloc(o->v, sizeof *nv * (size_t)cap);
        if (!nv) {
            o->oom = true;
            return 0;
        }
        o->v = nv, o->cap = cap;
    }
    o->v[o->n] = v;
    return o->n++;
}

/* Emits the decoding of flat index `flat` over the dims below `upto` that are reduced (red) or
 * kept (!red), innermost first: operand k's offset <pre><k> moves by index * stride (only
 * operands of space `only_ctx` when it is >= 0). */
static void emit_decode(gen_plan *p, kiln_buf *b, const char *flat, int upto, bool red, const char *pre, int only_ctx) {
    kiln_buf_printf(b, "{ int64_t rem_ = %s;\n", flat);
    for (int d = upto - 1; d >= 0; d--) {
        if (p->red_dim[d] != red) continue;
        kiln_buf_printf(b, "{ const int64_t i_ = rem_ %% n%d; rem_ /= n%d;\n", d, d);
        for (int k = 0; k < p->n_op; k++)
            if (!p->op[k].zero && (only_ctx < 0 || p->op[k].ctx == only_ctx) && p->op[k].st[d] != 0)
                kiln_buf_printf(b, "%s%d += i_ * s%d_%d;\n", pre, k, k, d);
        kiln_buf_puts(b, "}\n");
    }
    kiln_buf_puts(b, "}\n");
}

/* Element index of operand k: its offset <pre><k>, plus j along the innermost loop. */
static gx index_x(const gen_plan *p, int k, const char *pre, bool inner) {
    const gen_opnd *o = &p->op[k];
    int64_t s = o->st[p->nd - 1];
    if (o->zero) return gxf("0");
    if (!inner || s == 0) return gxf("%s%d", pre, k);
    if (s == 1) return gxf("%s%d + j", pre, k);
    return gxf("%s%d + j * s%d_%d", pre, k, k, p->nd - 1);
}

/* Emits the values of space c: loads of its params, then its nodes in order; the reduction
 * (space 1) is `red_value`. */
static void emit_values(gen_plan *p, kiln_buf *b, int c, const char *pre, bool inner, const gen_red *r) {
    const kiln_function *f = p->f;
    for (int i = 0; i < f->n_params; i++) {
        int k = p->param_op[c][i];
        if (k < 0) continue;
        gx idx = index_x(p, k, pre, inner), el = gxf("p%d[%s]", i, idx.s), ld = load_x(p->op[k].dt, el.s);
        kiln_buf_printf(b, "const %s v%d = %s;\n", math_t(p->op[k].dt), f->params[i]->id, ld.s);
    }
    for (const kiln_node *n = f->body->first; n; n = n->next) {
        if (!p->need[c][n->out->id]) continue;
        if (n == p->red) {
            kiln_dtype od = n->out->type->dtype;
            gx v = conv_x(r->value.s, r->value_dt, od);
            kiln_buf_printf(b, "const %s v%d = %s;\n", math_t(od), n->out->id, v.s);
        } else {
            emit_node(b, n);
        }
    }
}

static void emit_stores(gen_plan *p, kiln_buf *b, bool inner) {
    const kiln_region *body = p->f->body;
    for (int k = 0; k < p->n_op; k++) {
        if (!p->op[k].out) continue;
        int i = p->op[k].buf - p->f->n_params;
        gx idx = index_x(p, k, "o", inner), v = var_x(body->results[i]), st = store_x(p->op[k].dt, v.s);
        kiln_buf_printf(b, "p%d[%s] = %s;\n", p->op[k].buf, idx.s, st.s);
    }
}

/* Declares offsets <pre><k> of the listed operands, starting at <from><k> (or at 0). */
static void emit_offsets(gen_plan *p, kiln_buf *b, const char *pre, const char *from, int only_ctx) {
    for (int k = 0; k < p->n_op; k++) {
        if (p->op[k].zero || (only_ctx >= 0 && p->op[k].ctx != only_ctx)) continue;
        if (from) kiln_buf_printf(b, "int64_t %s%d = %s%d;\n", pre, k, from, k);
        else kiln_buf_printf(b, "int64_t %s%d = 0;\n", pre, k);
    }
}

static int64_t numel_dims(const gen_plan *p, int from, int to, bool red) {
    int64_t n = 1;
    for (int d = from; d < to; d++)
        if (p->red_dim[d] == red) n *= p->dim[d];
    return n;
}

/* The whole function, named @SYM@ until the source is hashed. */
static void render(gen_plan *p, gen_out *o) {
    kiln_buf *b = &o->b;
    const kiln_function *f = p->f;
    kiln_buf_puts(b, PREAMBLE);
    kiln_buf_printf(b, "/* kernel @%s */\nvoid @SYM@(char *const *bufs, const int64_t *params) {\n", f->name);
    for (int i = 0; i < f->n_params; i++)
        if (p->param_op[0][i] >= 0 || (p->red && p->param_op[1][i] >= 0))
            kiln_buf_printf(b, "const %s *restrict p%d = (const %s *)bufs[%d];\n", store_t(f->params[i]->type->dtype), i,
                            store_t(f->params[i]->type->dtype), i);
    for (int k = 0; k < p->n_op; k++)
        if (p->op[k].out)
            kiln_buf_printf(b, "%s *restrict p%d = (%s *)bufs[%d];\n", store_t(p->op[k].dt), p->op[k].buf,
                            store_t(p->op[k].dt), p->op[k].buf);
    for (int d = 0; d < p->nd; d++) kiln_buf_printf(b, "const int64_t n%d = params[%d];\n", d, slot(o, p->dim[d]));
    for (int k = 0; k < p->n_op; k++)
        for (int d = 0; d < p->nd && !p->op[k].zero; d++)
            if (p->op[k].st[d] != 0) kiln_buf_printf(b, "const int64_t s%d_%d = params[%d];\n", k, d, slot(o, p->op[k].st[d]));
    int64_t work = numel_dims(p, 0, p->nd, false) * numel_dims(p, 0, p->nd, true);
    int last = p->nd - 1;
    gen_red r;
    if (p->red) red_init(&r, p->red);
    if (p->row) {
        /* Row reduction: one output element per iteration, the innermost (reduced) dim a simd
         * loop into one accumulator; outer reduced dims decoded per row. */
        int64_t rows = p->dim[last] ? numel_dims(p, 0, last, true) : 0;
        kiln_buf_printf(b, "#pragma omp parallel for schedule(static) if (params[%d] > %d)\n", slot(o, work), GEN_PAR_WORK);
        kiln_buf_printf(b, "for (int64_t t = 0; t < params[%d]; t++) {\n", slot(o, numel_dims(p, 0, p->nd, false)));
        emit_offsets(p, b, "o", NULL, -1);
        emit_decode(p, b, "t", p->nd, false, "o", -1);
        kiln_buf_printf(b, "%s a = %s;\n%s", r.acc_t, r.ident, r.nan_flag ? "int nn = 0;\n" : "");
        kiln_buf_printf(b, "for (int64_t q = 0; q < params[%d]; q++) {\n", slot(o, rows));
        emit_offsets(p, b, "r", "o", 0);
        emit_decode(p, b, "q", last, true, "r", 0);
        kiln_buf_printf(b, "#pragma omp simd %s%s\nfor (int64_t j = 0; j < n%d; j++) {\n", r.simd,
                        r.nan_flag ? " reduction(|:nn)" : "", last);
        emit_values(p, b, 0, "r", true, &r);
        kiln_buf_printf(b, "const %s x_ = %s;\n", r.acc_t, r.elem.s);
        if (r.nan_flag) kiln_buf_printf(b, "a = x_ %s a ? x_ : a;\nnn |= x_ != x_;\n", r.op == KILN_OP_MAX ? ">" : "<");
        else kiln_buf_printf(b, "a = %s;\n", r.fold.s);
        kiln_buf_puts(b, "}\n}\n");
        if (r.nan_flag) kiln_buf_puts(b, "if (nn) a = NAN;\n");
        emit_values(p, b, 1, "o", false, &r);
        emit_stores(p, b, false);
        kiln_buf_puts(b, "}\n}\n");
        return;
    }
    /* Tiles of the innermost (kept) dim; a column reduction accumulates a tile of outputs
     * over every reduced index, vectorized along the tile. */
    int64_t blk = p->red ? GEN_COL_BLOCK : GEN_BLOCK, nb = (p->dim[last] + blk - 1) / blk;
    int64_t tiles = numel_dims(p, 0, last, false) * nb;
    kiln_buf_printf(b, "const int64_t nb = params[%d];\n", slot(o, nb));
    kiln_buf_printf(b, "#pragma omp parallel for schedule(static) if (params[%d] > %d)\n", slot(o, work), GEN_PAR_WORK);
    kiln_buf_printf(b, "for (int64_t t = 0; t < params[%d]; t++) {\n", slot(o, tiles));
    kiln_buf_printf(b, "const int64_t q = t / nb, j0 = (t - q * nb) * %lld, j1 = j0 + %lld < n%d ? j0 + %lld : n%d;\n",
                    (long long)blk, (long long)blk, last, (long long)blk, last);
    emit_offsets(p, b, "o", NULL, -1);
    emit_decode(p, b, "q", last, false, "o", -1);
    if (p->red) {
        kiln_buf_printf(b, "%s acc[%lld];\nfor (int64_t j = j0; j < j1; j++) acc[j - j0] = %s;\n", r.acc_t,
                        (long long)blk, r.ident);
        kiln_buf_printf(b, "for (int64_t q2 = 0; q2 < params[%d]; q2++) {\n", slot(o, numel_dims(p, 0, p->nd, true)));
        emit_offsets(p, b, "r", "o", 0);
        emit_decode(p, b, "q2", last, true, "r", 0);
        kiln_buf_puts(b, "#pragma omp simd\nfor (int64_t j = j0; j < j1; j++) {\n");
        emit_values(p, b, 0, "r", true, &r);
        kiln_buf_printf(b, "const %s x_ = %s;\nconst %s a = acc[j - j0];\nacc[j - j0] = %s;\n}\n}\n", r.acc_t, r.elem.s,
                        r.acc_t, r.fold.s);
    }
    kiln_buf_puts(b, "#pragma omp simd\nfor (int64_t j = j0; j < j1; j++) {\n");
    if (p->red) kiln_buf_printf(b, "const %s a = acc[j - j0];\n", r.acc_t);
    emit_values(p, b, p->red ? 1 : 0, "o", true, p->red ? &r : NULL);
    emit_stores(p, b, true);
    kiln_buf_puts(b, "}\n}\n}\n");
}

/* FNV-1a, 64 bits. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

kiln_status kiln_codegen_c(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out) {
    memset(out, 0, sizeof *out);
    gen_plan p;
    kiln_status s = gen_plan_init(ctx, group, &p);
    if (s != KILN_OK) return s;
    gen_out o = {0};
    render(&p, &o);
    gen_plan_free(&p);
    char *text = kiln_buf_take(&o.b);
    if (!text || o.oom) {
        free(text);
        free(o.v);
        return kiln_error(ctx, KILN_ERR_OOM, "kernel @%s: out of memory", group->name);
    }
    snprintf(out->symbol, sizeof out->symbol, "kiln_gen_%016llx", (unsigned long long)hash_str(text));
    char *at = strstr(text, "@SYM@");
    kiln_buf fb = {0};
    kiln_buf_printf(&fb, "%.*s%s%s", (int)(at - text), text, out->symbol, at + 5);
    free(text);
    out->source = kiln_buf_take(&fb);
    out->params = o.v;
    out->n_params = o.n;
    if (!out->source) {
        kiln_gen_kernel_free(out);
        return kiln_error(ctx, KILN_ERR_OOM, "kernel @%s: out of memory", group->name);
    }
    return KILN_OK;
}

void kiln_gen_kernel_free(kiln_gen_kernel *k) {
    free(k->source);
    free(k->params);
    k->source = NULL;
    k->params = NULL;
}
