/* random.c — counter-based random numbers (Philox4x32-10): random_uniform, random_normal and
 * the composite dropout. The mapping from (key, element index) to a value is specified below
 * exactly, so that every backend reproduces the reference kernels bit for bit. */
#include "ir/ir.h"
#include <float.h>
#include <math.h>

/* ---- the generator ------------------------------------------------------------------------
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011): 10 rounds over a 4-word counter with a 2-word key, the key bumped by the Weyl
 * constants W0, W1 before every round but the first. One round:
 *   (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2   (32x32 -> 64-bit products)
 *   c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
 *
 * How the ops use it. Key: the int input read as int64 (sign-extended), k0 = its low 32 bits,
 * k1 = its high 32 bits. Element i of the result (row-major) belongs to block b = i / 4 and
 * uses word w = i % 4 of the block's output:
 *   hi = philox(counter = (low32(b), high32(b), 0, 0), key)[w]
 *   lo = philox(counter = (low32(b), high32(b), 1, 0), key)[w]   (f64 only)
 * Uniform U_i in [0, 1):
 *   f32, f16, bf16: U_i = (hi >> 8) * 2^-24                       (top 24 bits)
 *   f64:            U_i = (((uint64)hi << 32 | lo) >> 11) * 2^-53  (top 53 bits)
 * random_uniform, f64: v = low + ((high - low) * U_i), each operation rounded in double.
 *   f32, f16, bf16: lo = (float)low, hi = (float)high, v = lo + ((hi - lo) * (float)U_i), each
 *   operation rounded in float (no fused multiply-add), then v is rounded to the dtype
 *   (nearest even). If the stored value is >= high (rounding reached it), it is replaced by
 *   the largest value of the dtype below high. (A low that the dtype cannot represent may
 *   round down below low.)
 * random_normal: Box-Muller on the pair of elements (2p, 2p+1), from U = U_2p, V = U_2p+1 of
 *   the same dtype's uniform stream: r = sqrt(-2 ln(1 - U)), t = 2 pi V,
 *   z_2p = r cos t, z_2p+1 = r sin t; value = mean + std * z, in double (log, sqrt, cos, sin
 *   of the C library: other backends match to within their last-bit differences), then rounded
 *   once to the dtype. An odd-sized result uses only the first half of its last pair. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void kiln_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round) k0 += PHILOX_W0, k1 += PHILOX_W1;
        uint64_t p0 = (uint64_t)PHILOX_M0 * c[0], p1 = (uint64_t)PHILOX_M1 * c[2];
        uint32_t c1 = c[1], c3 = c[3];
        c[0] = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c[1] = (uint32_t)p1;
        c[2] = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c[3] = (uint32_t)p0;
    }
}

/* U_i of elements 4b .. 4b+3 (see above); `wide` for f64. */
static void uniform_block(uint32_t k0, uint32_t k1, uint64_t b, bool wide, double u[4]) {
    uint32_t hi[4] = {(uint32_t)b, (uint32_t)(b >> 32), 0, 0}, lo[4] = {(uint32_t)b, (uint32_t)(b >> 32), 1, 0};
    kiln_philox4x32_10(hi, k0, k1);
    if (wide) kiln_philox4x32_10(lo, k0, k1);
    for (int w = 0; w < 4; w++)
        u[w] = wide ? (double)((((uint64_t)hi[w] << 32) | lo[w]) >> 11) * 0x1p-53 : (double)(hi[w] >> 8) * 0x1p-24;
}

/* ---- shape rules --------------------------------------------------------------------------- */
/* A key: an int scalar or a one-element int tensor. */
static bool key_ok(kiln_shape_args *a, int i) {
    const kiln_type *k = a->in[i];
    char tb[256];
    if (k->kind != KILN_TYPE_TUPLE && kiln_dtype_is_int(k->dtype) && kiln_shape_numel(k->ndim, k->shape) == 1) return true;
    kiln_op_fail(a, "key (input %d) must be an int scalar or a 1-element int tensor, got %s", i, kiln_type_cstr(k, tb, sizeof tb));
    return false;
}

const struct kiln_type *kiln_shape_random(kiln_shape_args *a) {
    const kiln_attr *shape = kiln_attr_get(a->op, a->attrs, "shape");
    kiln_dtype dt = kiln_attr_get(a->op, a->attrs, "dtype")->dtype;
    if (!key_ok(a, 0)) return NULL;
    if (!kiln_dtype_is_float(dt)) return kiln_op_fail(a, "dtype must be a float dtype, got %s", kiln_dtype_name(dt));
    if (shape->n > KILN_MAX_DIMS) return kiln_op_fail(a, "shape has %d dims (at most %d)", shape->n, KILN_MAX_DIMS);
    for (int d = 0; d < shape->n; d++)
        if (shape->ints[d] < 0) return kiln_op_fail(a, "shape dim %d is negative (%lld)", d, (long long)shape->ints[d]);
    if (a->op == KILN_OP_RANDOM_UNIFORM) {
        double low = kiln_attr_float(a->op, a->attrs, "low"), high = kiln_attr_float(a->op, a->attrs, "high");
        if (!isfinite(low) || !isfinite(high) || !(low < high))
            return kiln_op_fail(a, "need finite low < high, got low %g, high %g", low, high);
        if (dt != KILN_F64 && fmax(fabs(low), fabs(high)) > FLT_MAX)
            return kiln_op_fail(a, "low %g and high %g must be finite in f32 for dtype %s", low, high, kiln_dtype_name(dt));
    } else {
        double mean = kiln_attr_float(a->op, a->attrs, "mean"), std = kiln_attr_float(a->op, a->attrs, "std");
        if (!isfinite(mean) || !isfinite(std) || std < 0)
            return kiln_op_fail(a, "need a finite mean and a finite std >= 0, got mean %g, std %g", mean, std);
    }
    return kiln_type_tensor_a(a->arena, dt, shape->n, shape->ints);
}

const struct kiln_type *kiln_shape_dropout(kiln_shape_args *a) {
    const kiln_type *x = a->in[0];
    char tb[256];
    double rate = kiln_attr_float(a->op, a->attrs, "rate");
    if (x->kind != KILN_TYPE_TENSOR) return kiln_op_fail(a, "input must be a tensor, got %s", kiln_type_cstr(x, tb, sizeof tb));
    if (!key_ok(a, 1)) return NULL;
    if (!(rate >= 0 && rate < 1)) return kiln_op_fail(a, "rate must be in [0, 1), got %g", rate);
    return x;
}

/* ---- kernels ------------------------------------------------------------------------------- */
/* The largest value of dtype dt (a float dtype) below the finite value `high`. */
static double largest_below(kiln_dtype dt, double high) {
    if (dt == KILN_F64) return nextafter(high, -INFINITY);
    if (dt == KILN_F32) {
        float h = (float)high;
        return h < high ? h : nextafterf(h, -INFINITY);
    }
    uint16_t h; /* f16 / bf16: step the bit pattern one unit towards -inf */
    kiln_store_f64(dt, &h, 0, high);
    if (kiln_load_f64(dt, &h, 0) < high) return kiln_load_f64(dt, &h, 0);
    h = (h & 0x8000) ? (uint16_t)(h + 1) : h ? (uint16_t)(h - 1) : 0x8001;
    return kiln_load_f64(dt, &h, 0);
}

/* Fills a->out[0] block by block (4 elements each) from the uniform stream, mapped to the
 * uniform or the normal distribution as specified at the top of the file. */
static kiln_status random_fill(kiln_kernel_args *a, bool normal) {
    kiln_tensor *y = a->out[0];
    kiln_dtype dt = y->dtype;
    bool wide = dt == KILN_F64;
    uint64_t key = (uint64_t)kiln_load_i64(a->in[0]->dtype, a->in[0]->data, 0);
    double p = kiln_attr_float(a->op, a->attrs, normal ? "mean" : "low");
    double q = kiln_attr_float(a->op, a->attrs, normal ? "std" : "high");
    double top = normal ? 0 : largest_below(dt, q);
    float lo = (float)p, span = (float)q - lo; /* uniform, f32 arithmetic */
    for (int64_t i0 = 0; i0 < y->numel; i0 += 4) {
        double u[4], v[4];
        uniform_block((uint32_t)key, (uint32_t)(key >> 32), (uint64_t)i0 / 4, wide, u);
        for (int w = 0; w < 4; w++) {
            if (normal) {
                int e = w & ~1; /* first element of the pair */
                double r = sqrt(-2.0 * log(1.0 - u[e])), t = 6.283185307179586 * u[e + 1]; /* 2 pi */
                v[w] = p + q * (w & 1 ? r * sin(t) : r * cos(t));
            } else if (wide) {
                double d = (q - p) * u[w];
                v[w] = p + d;
            } else {
                float d = span * (float)u[w]; /* separate statements: no contraction to an FMA */
                v[w] = lo + d;
            }
        }
        for (int w = 0; w < 4 && i0 + w < y->numel; w++) {
            kiln_store_f64(dt, y->data, i0 + w, v[w]);
            if (!normal && kiln_load_f64(dt, y->data, i0 + w) >= q) kiln_store_f64(dt, y->data, i0 + w, top);
        }
    }
    return KILN_OK;
}

kiln_status kiln_ref_random_uniform(kiln_kernel_args *a) { return random_fill(a, false); }

kiln_status kiln_ref_random_normal(kiln_kernel_args *a) { return random_fill(a, true); }

/* ---- dropout ------------------------------------------------------------------------------- */
/* mask = random_uniform(key, shape = x.shape) >= rate (f32 uniforms whatever x's dtype, so the
 * mask does not change under mixed precision); y = where(mask, x * (1 / (1 - rate)), 0).
 * rate 0: a copy of x. */
struct kiln_var *kiln_decompose_dropout(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *x = in[0];
    double rate = kiln_attr_float(n->op, n->attrs, "rate");
    char sb[256];
    if (rate == 0) return kiln_build(b, KILN_OP_COPY, 1, &x, NULL);
    kiln_var *u = kiln_build(b, KILN_OP_RANDOM_UNIFORM, 1, &in[1], "shape=%s",
                             kiln_shape_str(x->type->ndim, x->type->shape, sb, sizeof sb));
    kiln_var *mask = kiln_build(b, KILN_OP_GREATER_EQUAL, 2, (kiln_var *[]){u, kiln_build_float(b, rate)}, NULL);
    kiln_var *scaled = kiln_build(b, KILN_OP_MULTIPLY, 2, (kiln_var *[]){x, kiln_build_float(b, 1.0 / (1.0 - rate))}, NULL);
    return kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){mask, scaled, kiln_build_float(b, 0.0)}, NULL);
}
