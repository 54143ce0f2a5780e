/* reduce.c — gradient rules of reductions and scans: sum (broadcast back), max/min (to the
 * maxima, ties share evenly as torch.amax), prod, cumsum (reverse cumsum). */
#include "grad/grad.h"

/* dy of a reduction, reshaped with the reduced axes kept (size 1) and broadcast to x's shape. */
static kiln_var *expand_back(kiln_builder *b, const kiln_node *n, kiln_var *x, kiln_var *v) {
    const kiln_type *xt = x->type;
    bool mask[KILN_MAX_DIMS];
    int64_t kept[KILN_MAX_DIMS];
    char sb[256];
    kiln_norm_axes(kiln_attr_get(n->op, n->attrs, "axes"), xt->ndim, mask);
    for (int i = 0; i < xt->ndim; i++) kept[i] = mask[i] ? 1 : xt->shape[i];
    v = kiln_build(b, KILN_OP_RESHAPE, 1, &v, "shape=%s", kiln_shape_str(xt->ndim, kept, sb, sizeof sb));
    return kiln_build(b, KILN_OP_BROADCAST_TO, 1, &v, "shape=%s", kiln_grad_shape(xt, sb, sizeof sb));
}

/* v reduced by `op` over node n's axes (all when unset) with the reduced axes kept (size 1). */
static kiln_var *reduce_kept(kiln_builder *b, kiln_op op, const kiln_node *n, kiln_var *v) {
    char axes[256];
    const kiln_attr *ax = kiln_attr_get(n->op, n->attrs, "axes");
    return ax->set ? kiln_build(b, op, 1, &v, "axes=%s, keepdims=true", kiln_shape_str(ax->n, ax->ints, axes, sizeof axes))
                   : kiln_build(b, op, 1, &v, "keepdims=true");
}

/* d prod / d x_i = product of the other elements, safe with zeros (as torch): with no zero in
 * the group it is p / x_i (p: product of the nonzero elements), at a group's only zero it is
 * p, and everything else is 0 (two zeros or more, or x_i != 0 next to a zero). */
static kiln_var *prod_others(kiln_builder *b, const kiln_node *n, kiln_var *x) {
#define F(v) kiln_build_float(b, (v))
    kiln_var *zero = kiln_build2(b, KILN_OP_EQUAL, x, F(0.0));
    kiln_var *safe = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){zero, F(1.0), x}, NULL);
    kiln_var *p = reduce_kept(b, KILN_OP_PROD, n, safe);
    kiln_var *zf = kiln_build(b, KILN_OP_CAST, 1, &zero, "dtype=%s", kiln_dtype_name(x->type->dtype));
    kiln_var *count = reduce_kept(b, KILN_OP_SUM, n, zf);
    kiln_var *at_zero = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){kiln_build2(b, KILN_OP_EQUAL, count, F(1.0)), p, F(0.0)}, NULL);
    kiln_var *elsewhere = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){kiln_build2(b, KILN_OP_EQUAL, count, F(0.0)),
                                                                        kiln_build2(b, KILN_OP_DIVIDE, p, safe), F(0.0)}, NULL);
    return kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){zero, at_zero, elsewhere}, NULL);
#undef F
}

kiln_status kiln_grad_reduce(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    kiln_var *x = in[0];
    if (!kiln_type_is_tensor(x->type) || !kiln_dtype_is_float(x->type->dtype)) return KILN_OK;
    kiln_var *g = expand_back(b, n, x, dy), *yb = expand_back(b, n, x, y);
    switch (n->op) {
    case KILN_OP_SUM: break;
    case KILN_OP_PROD: g = kiln_build2(b, KILN_OP_MULTIPLY, g, prod_others(b, n, x)); break;
    case KILN_OP_MAX:
    case KILN_OP_MIN: {
        kiln_var *hit = kiln_build(b, KILN_OP_CAST, 1, (kiln_var *[]){kiln_build2(b, KILN_OP_EQUAL, x, yb)}, "dtype=%s",
                                   kiln_dtype_name(x->type->dtype));
        g = kiln_build2(b, KILN_OP_MULTIPLY, g, kiln_build2(b, KILN_OP_DIVIDE, hit, reduce_kept(b, KILN_OP_SUM, n, hit)));
        break;
    }
    default: return KILN_ERR_INTERNAL;
    }
    din[0] = g;
    return g ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

kiln_status kiln_grad_cumsum(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!kiln_dtype_is_float(in[0]->type->dtype)) return KILN_OK;
    din[0] = kiln_build(b, KILN_OP_CUMSUM, 1, &dy, "axis=%lld, exclusive=%s, reverse=%s",
                        (long long)kiln_attr_int(n->op, n->attrs, "axis"),
                        kiln_attr_bool(n->op, n->attrs, "exclusive") ? "true" : "false",
                        kiln_attr_bool(n->op, n->attrs, "reverse") ? "false" : "true");
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
