/* render_c.c — prints a planned group (lower.h) as one C function: the C preamble (16-bit float
 * conversions, the same arithmetic as src/core/dtype.c; vectorizable f32 transcendentals) plus
 * the shared one (render.h), per-element expressions in registers, and the loop nest (inner
 * loops `omp simd`). */
#include "codegen/render.h"
#include <stdlib.h>
#include <string.h>

#define GEN_BLOCK 8192      /* elements of the innermost dim per tile of an elementwise loop */
#define GEN_COL_BLOCK 256   /* output columns a column reduction accumulates at once */
#define GEN_PAR_WORK 32768  /* elements from which the outer loop runs in parallel */

/* Guarded, so several kernels concatenate into one translation unit; GEN_PREAMBLE_COMMON and
 * "#endif" follow. Copies of the reference arithmetic: generated code must round and wrap
 * exactly as the interpreter does, except the f32 transcendentals (kg_expf...), which agree
 * with it within a few ulp. */
static const char PREAMBLE[] =
    "#ifndef KILN_GEN_PREAMBLE\n"
    "#define KILN_GEN_PREAMBLE\n"
    "#include <stdint.h>\n#include <string.h>\n#include <math.h>\n"
    "#define KG_FN static inline\n"
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
    ;

static const gen_target C_TARGET = {"restrict", "bufs", "params", "int64_t"};

/* Where a loop reads operand k: its offset <pre><k>, plus j along the innermost loop. */
typedef struct c_at {
    const char *pre;
    bool inner;
} c_at;

static gx c_elem(const gen_plan *p, int k, const void *arg) {
    const c_at *at = arg;
    const gen_opnd *o = &p->op[k];
    int64_t s = o->st[p->nd - 1];
    if (o->zero) return gxf("p%d[0]", o->buf);
    if (!at->inner || s == 0) return gxf("p%d[%s%d]", o->buf, at->pre, k);
    if (s == 1) return gxf("p%d[%s%d + j]", o->buf, at->pre, k);
    return gxf("p%d[%s%d + j * s%d_%d]", o->buf, at->pre, k, k, p->nd - 1);
}

/* The whole function, named @SYM@ until the source is hashed. */
static void render(gen_plan *p, gen_out *o) {
    kiln_buf *b = &o->b;
    const gen_target *T = &C_TARGET;
    kiln_buf_puts(b, PREAMBLE);
    kiln_buf_puts(b, GEN_PREAMBLE_COMMON);
    kiln_buf_printf(b, "#endif\n/* kernel @%s */\nvoid @SYM@(char *const *bufs, const int64_t *params) {\n", p->f->name);
    gen_emit_header(p, o, T);
    int64_t work = gen_numel_dims(p, 0, p->nd, false) * gen_numel_dims(p, 0, p->nd, true);
    int last = p->nd - 1;
    const c_at in_r = {"r", true}, in_o = {"o", true}, at_o = {"o", false};
    gen_red r;
    if (p->red) gen_red_init(&r, p->red, false);
    if (p->row) {
        /* Row reduction: one output element per iteration, the innermost (reduced) dim a simd
         * loop into one accumulator; outer reduced dims decoded per row. */
        int64_t rows = p->dim[last] ? gen_numel_dims(p, 0, last, true) : 0;
        kiln_buf_printf(b, "#pragma omp parallel for schedule(static) if (params[%d] > %d)\n", gen_slot(o, work), GEN_PAR_WORK);
        kiln_buf_printf(b, "for (int64_t t = 0; t < params[%d]; t++) {\n", gen_slot(o, gen_numel_dims(p, 0, p->nd, false)));
        gen_emit_offsets(p, b, T, "o", NULL, -1);
        gen_emit_decode(p, b, T, "t", p->nd, false, "o", -1);
        kiln_buf_printf(b, "%s a = %s;\n%s", r.acc_t, r.ident, r.nan_flag ? "int nn = 0;\n" : "");
        kiln_buf_printf(b, "for (int64_t q = 0; q < params[%d]; q++) {\n", gen_slot(o, rows));
        gen_emit_offsets(p, b, T, "r", "o", 0);
        gen_emit_decode(p, b, T, "q", last, true, "r", 0);
        kiln_buf_printf(b, "#pragma omp simd %s%s\nfor (int64_t j = 0; j < n%d; j++) {\n", r.simd,
                        r.nan_flag ? " reduction(|:nn)" : "", last);
        gen_emit_values(p, b, 0, c_elem, &in_r, &r);
        kiln_buf_printf(b, "const %s x_ = %s;\n", r.acc_t, r.elem.s);
        if (r.nan_flag) kiln_buf_printf(b, "a = x_ %s a ? x_ : a;\nnn |= x_ != x_;\n", r.op == KILN_OP_MAX ? ">" : "<");
        else kiln_buf_printf(b, "a = %s;\n", r.fold.s);
        kiln_buf_puts(b, "}\n}\n");
        if (r.nan_flag) kiln_buf_puts(b, "if (nn) a = NAN;\n");
        gen_emit_values(p, b, 1, c_elem, &at_o, &r);
        gen_emit_stores(p, b, c_elem, &at_o);
        kiln_buf_puts(b, "}\n}\n");
        return;
    }
    /* Tiles of the innermost (kept) dim; a column reduction accumulates a tile of outputs
     * over every reduced index, vectorized along the tile. */
    int64_t blk = p->red ? GEN_COL_BLOCK : GEN_BLOCK, nb = (p->dim[last] + blk - 1) / blk;
    int64_t tiles = gen_numel_dims(p, 0, last, false) * nb;
    kiln_buf_printf(b, "const int64_t nb = params[%d];\n", gen_slot(o, nb));
    kiln_buf_printf(b, "#pragma omp parallel for schedule(static) if (params[%d] > %d)\n", gen_slot(o, work), GEN_PAR_WORK);
    kiln_buf_printf(b, "for (int64_t t = 0; t < params[%d]; t++) {\n", gen_slot(o, tiles));
    kiln_buf_printf(b, "const int64_t q = t / nb, j0 = (t - q * nb) * %lld, j1 = j0 + %lld < n%d ? j0 + %lld : n%d;\n",
                    (long long)blk, (long long)blk, last, (long long)blk, last);
    gen_emit_offsets(p, b, T, "o", NULL, -1);
    gen_emit_decode(p, b, T, "q", last, false, "o", -1);
    if (p->red) {
        kiln_buf_printf(b, "%s acc[%lld];\nfor (int64_t j = j0; j < j1; j++) acc[j - j0] = %s;\n", r.acc_t,
                        (long long)blk, r.ident);
        kiln_buf_printf(b, "for (int64_t q2 = 0; q2 < params[%d]; q2++) {\n", gen_slot(o, gen_numel_dims(p, 0, p->nd, true)));
        gen_emit_offsets(p, b, T, "r", "o", 0);
        gen_emit_decode(p, b, T, "q2", last, true, "r", 0);
        kiln_buf_puts(b, "#pragma omp simd\nfor (int64_t j = j0; j < j1; j++) {\n");
        gen_emit_values(p, b, 0, c_elem, &in_r, &r);
        kiln_buf_printf(b, "const %s x_ = %s;\nconst %s a = acc[j - j0];\nacc[j - j0] = %s;\n}\n}\n", r.acc_t, r.elem.s,
                        r.acc_t, r.fold.s);
    }
    kiln_buf_puts(b, "#pragma omp simd\nfor (int64_t j = j0; j < j1; j++) {\n");
    if (p->red) kiln_buf_printf(b, "const %s a = acc[j - j0];\n", r.acc_t);
    gen_emit_values(p, b, p->red ? 1 : 0, c_elem, &in_o, p->red ? &r : NULL);
    gen_emit_stores(p, b, c_elem, &in_o);
    kiln_buf_puts(b, "}\n}\n}\n");
}

kiln_status kiln_codegen_c(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out) {
    memset(out, 0, sizeof *out);
    gen_plan p;
    kiln_status s = gen_plan_init(ctx, group, &p);
    if (s != KILN_OK) return s;
    gen_out o = {0};
    render(&p, &o);
    gen_plan_free(&p);
    return gen_finish(ctx, group, &o, "kiln_gen_", out);
}

void kiln_gen_kernel_free(kiln_gen_kernel *k) {
    free(k->source);
    free(k->params);
    k->source = NULL;
    k->params = NULL;
}
