/* epilogue.c — gemm_epilogue (a GEMM with cuBLASLt's activation / bias-gradient epilogues, see
 * epilogue.h) and gelu_backward (gelu's gradient rule emits it, so the backward of dense -> gelu
 * is recognisable): shape rules and decompositions into primitives. */
#include "ops/epilogue.h"
#include <math.h>
#include <string.h>

static const char *const names[KILN_EPILOGUE_COUNT] = {"relu", "gelu", "gelu_aux", "dgelu", "bgrad"};

const char *kiln_epilogue_name(kiln_epilogue e) { return e >= 0 && e < KILN_EPILOGUE_COUNT ? names[e] : "?"; }

kiln_epilogue kiln_epilogue_of(const kiln_attr *attrs) {
    const char *s = kiln_attr_str(KILN_OP_GEMM_EPILOGUE, attrs, "epilogue");
    int e = 0;
    while (e < KILN_EPILOGUE_COUNT && strcmp(names[e], s)) e++;
    return (kiln_epilogue)e;
}

/* ---- gemm_epilogue -------------------------------------------------------------------------- */
const struct kiln_type *kiln_shape_gemm_epilogue(kiln_shape_args *a) {
    char t0[256], t1[256], t2[256];
    kiln_epilogue e = kiln_epilogue_of(a->attrs);
    if (e == KILN_EPILOGUE_COUNT)
        return kiln_op_fail(a, "epilogue '%s' is not one of relu, gelu, gelu_aux, dgelu, bgrad",
                            kiln_attr_str(a->op, a->attrs, "epilogue"));
    for (int i = 0; i < a->n_in; i++)
        if (a->in[i]->kind != KILN_TYPE_TENSOR || a->in[i]->dtype != a->in[0]->dtype)
            return kiln_op_fail(a, "operand %d is %s: every operand must be a tensor of a's dtype %s", i,
                                kiln_type_cstr(a->in[i], t0, sizeof t0), kiln_dtype_name(a->in[0]->dtype));
    const kiln_type *x = a->in[0], *w = a->in[1];
    bool ta = kiln_attr_bool(a->op, a->attrs, "transpose_a"), tb = kiln_attr_bool(a->op, a->attrs, "transpose_b");
    if (x->ndim < 2 || w->ndim != 2 || ((ta || e == KILN_EPILOGUE_BGRAD) && x->ndim != 2))
        return kiln_op_fail(a, "needs a [..., k] (2-D with transpose_a or bgrad) and b 2-D, got %s and %s",
                            kiln_type_cstr(x, t0, sizeof t0), kiln_type_cstr(w, t1, sizeof t1));
    int64_t k = ta ? x->shape[0] : x->shape[x->ndim - 1], n = tb ? w->shape[0] : w->shape[1];
    if (k != (tb ? w->shape[1] : w->shape[0]))
        return kiln_op_fail(a, "contracted dims differ: a %s, b %s (transpose_a=%d, transpose_b=%d)",
                            kiln_type_cstr(x, t0, sizeof t0), kiln_type_cstr(w, t1, sizeof t1), ta, tb);
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    if (ta) shape[0] = x->shape[1];
    shape[x->ndim - 1] = n;
    const kiln_type *out = kiln_type_tensor_a(a->arena, x->dtype, x->ndim, shape);
    const kiln_type *c = a->n_in > 2 ? a->in[2] : NULL;
    bool bias_ok = !c || (c->ndim == 1 && c->shape[0] == n);
    if (e == KILN_EPILOGUE_DGELU && (!c || !kiln_type_equal(c, out)))
        return kiln_op_fail(a, "dgelu needs the pre-activation %s as operand 2, got %s", kiln_type_cstr(out, t0, sizeof t0),
                            c ? kiln_type_cstr(c, t1, sizeof t1) : "none");
    if (e == KILN_EPILOGUE_BGRAD && c) return kiln_op_fail(a, "bgrad takes no operand 2");
    if (e != KILN_EPILOGUE_DGELU && !bias_ok)
        return kiln_op_fail(a, "bias %s must be [%lld] (b is %s)", kiln_type_cstr(c, t2, sizeof t2), (long long)n,
                            kiln_type_cstr(w, t1, sizeof t1));
    if (e == KILN_EPILOGUE_GELU_AUX) return kiln_type_tuple_a(a->arena, 2, (const kiln_type *[]){out, out});
    if (e != KILN_EPILOGUE_BGRAD) return out;
    const kiln_type *bg = kiln_type_tensor_a(a->arena, x->dtype, 1, &shape[0]);
    return kiln_type_tuple_a(a->arena, 2, (const kiln_type *[]){out, bg});
}

struct kiln_var *kiln_decompose_gemm_epilogue(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_epilogue e = kiln_epilogue_of(n->attrs);
    bool ta = kiln_attr_bool(n->op, n->attrs, "transpose_a");
    kiln_var *p = kiln_build(b, KILN_OP_MATMUL, 2, in, "transpose_a=%s, transpose_b=%s", ta ? "true" : "false",
                             kiln_attr_bool(n->op, n->attrs, "transpose_b") ? "true" : "false");
    if (p && n->n_in > 2 && e != KILN_EPILOGUE_DGELU) p = kiln_build2(b, KILN_OP_ADD, p, in[2]);
    if (!p) return NULL;
    kiln_var *parts[2] = {p, p};
    switch (e) {
    case KILN_EPILOGUE_RELU: return kiln_build1(b, KILN_OP_RELU, p);
    case KILN_EPILOGUE_GELU: return kiln_build(b, KILN_OP_GELU, 1, &p, "approximate=\"tanh\"");
    case KILN_EPILOGUE_GELU_AUX: parts[0] = kiln_build(b, KILN_OP_GELU, 1, &p, "approximate=\"tanh\""); break;
    case KILN_EPILOGUE_DGELU:
        return kiln_build(b, KILN_OP_GELU_BACKWARD, 2, (kiln_var *[]){in[2], p}, "approximate=\"tanh\"");
    case KILN_EPILOGUE_BGRAD: parts[1] = kiln_build(b, KILN_OP_SUM, 1, in, "axes=[%d]", ta ? 0 : 1); break;
    default: return NULL;
    }
    return parts[0] && parts[1] ? kiln_build(b, KILN_OP_TUPLE, 2, parts, NULL) : NULL;
}

/* ---- gelu_backward -------------------------------------------------------------------------- */
static kiln_var *mulc(kiln_builder *b, kiln_var *x, double c) { return kiln_build2(b, KILN_OP_MULTIPLY, x, kiln_build_float(b, c)); }
static kiln_var *addc(kiln_builder *b, kiln_var *x, double c) { return kiln_build2(b, KILN_OP_ADD, x, kiln_build_float(b, c)); }
static kiln_var *mul(kiln_builder *b, kiln_var *x, kiln_var *y) { return kiln_build2(b, KILN_OP_MULTIPLY, x, y); }

/* gelu_backward(x, dy) = dy gelu'(x):
 *   exact: gelu = x Phi(x), gelu' = Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi);
 *   tanh:  gelu = 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3),
 *          gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
struct kiln_var *kiln_decompose_gelu_backward(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *x = in[0], *x2 = mul(b, x, x), *d;
    const double c = sqrt(2.0 / 3.14159265358979323846);
    if (!strcmp(kiln_attr_str(n->op, n->attrs, "approximate"), "tanh")) {
        kiln_var *t = kiln_build1(b, KILN_OP_TANH, mulc(b, mul(b, x, addc(b, mulc(b, x2, 0.044715), 1.0)), c));
        kiln_var *sech2 = kiln_build2(b, KILN_OP_SUBTRACT, kiln_build_float(b, 1.0), mul(b, t, t));
        kiln_var *du = mulc(b, addc(b, mulc(b, x2, 3 * 0.044715), 1.0), 0.5 * c);
        d = kiln_build2(b, KILN_OP_ADD, mulc(b, addc(b, t, 1.0), 0.5), mul(b, x, mul(b, sech2, du)));
    } else {
        kiln_var *cdf = mulc(b, addc(b, kiln_build1(b, KILN_OP_ERF, mulc(b, x, 0.70710678118654752440)), 1.0), 0.5);
        kiln_var *pdf = mulc(b, kiln_build1(b, KILN_OP_EXP, mulc(b, x2, -0.5)), 0.39894228040143267794); /* 1/sqrt(2 pi) */
        d = kiln_build2(b, KILN_OP_ADD, cdf, mul(b, x, pdf));
    }
    return mul(b, in[1], d);
}
