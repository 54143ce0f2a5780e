/* norm.c — normalisation and softmax composites: shape rules and decompositions of layer_norm,
 * batch_norm_train / batch_norm_infer, softmax and log_softmax into reductions and elementwise
 * ops (softmax subtracts the max first, so large inputs stay finite). */
#include "ir/ir.h"
#include <stdio.h>
#include <string.h>



/* Reduction `op` (sum, max, mean) of x over the dims set in mask, kept as size 1 so that the
 * result broadcasts back against x. */
static kiln_var *reduce_kept(kiln_builder *b, kiln_op op, kiln_var *x, const bool *mask, int ndim) {
    int64_t axes[KILN_MAX_DIMS];
    int n = 0;
    char list[256], attrs[288];
    for (int i = 0; i < ndim; i++)
        if (mask[i]) axes[n++] = i;
    snprintf(attrs, sizeof attrs, "axes=%s, keepdims=true", kiln_shape_str(n, axes, list, sizeof list));
    return kiln_build_text(b, op, 1, &x, attrs);
}

static kiln_var *reshape(kiln_builder *b, kiln_var *x, int ndim, const int64_t *shape) {
    char list[256], attrs[288];
    snprintf(attrs, sizeof attrs, "shape=%s", kiln_shape_str(ndim, shape, list, sizeof list));
    return kiln_build_text(b, KILN_OP_RESHAPE, 1, &x, attrs);
}

/* d * rsqrt(var + eps): d is x minus its mean, var the (biased) variance. */
static kiln_var *scale_by_rstd(kiln_builder *b, kiln_var *d, kiln_var *var, double eps) {
    return kiln_build2(b, KILN_OP_MULTIPLY, d, kiln_build1(b, KILN_OP_RSQRT, kiln_build2(b, KILN_OP_ADD, var, kiln_build_float(b, eps))));
}

/* (x - mean) / sqrt(var + eps) over the dims set in mask; the mean and the biased variance,
 * computed in two passes as mean((x - mean)^2), go to *mean and *var with those dims kept. */
static kiln_var *standardize(kiln_builder *b, kiln_var *x, const bool *mask, int ndim, double eps,
                             kiln_var **mean, kiln_var **var) {
    *mean = reduce_kept(b, KILN_OP_MEAN, x, mask, ndim);
    kiln_var *d = kiln_build2(b, KILN_OP_SUBTRACT, x, *mean);
    *var = reduce_kept(b, KILN_OP_MEAN, kiln_build2(b, KILN_OP_MULTIPLY, d, d), mask, ndim);
    return scale_by_rstd(b, d, *var, eps);
}

/* ---- softmax, log_softmax ----------------------------------------------------------------- */
/* The softmax axis of node n over input type t, or -1 with the error set. The shape rule is the
 * shared unary one, so the axis is checked here. A 0-d input takes axis 0 or -1 (as torch): its
 * reductions then run over no dims, so softmax gives 1 and log_softmax 0. */
static int softmax_axis(kiln_builder *b, const kiln_node *n, const kiln_type *t) {
    int64_t axis = kiln_attr_int(n->op, n->attrs, "axis");
    int ax = t->ndim > 0 ? kiln_norm_axis(axis, t->ndim) : axis == 0 || axis == -1 ? 0 : -1;
    if (ax < 0) {
        char where[256], tb[256];
        kiln_error(b->region->func->module->ctx, KILN_ERR_TYPE, "op '%s' at %s: axis %lld is out of range for %s",
                   kiln_op_info_get(n->op)->name, kiln_node_where(n, where, sizeof where), (long long)axis,
                   kiln_type_cstr(t, tb, sizeof tb));
    }
    return ax;
}

/* x - max(x, axis): every entry <= 0, so exp never overflows. */
static kiln_var *shift_by_max(kiln_builder *b, kiln_var *x, int ax, bool *mask) {
    for (int i = 0; i < x->type->ndim; i++) mask[i] = i == ax;
    return kiln_build2(b, KILN_OP_SUBTRACT, x, reduce_kept(b, KILN_OP_MAX, x, mask, x->type->ndim));
}

/* softmax = exp(s) / sum(exp(s)) with s = x - max(x). */
kiln_var *kiln_decompose_softmax(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    bool mask[KILN_MAX_DIMS];
    int ax = softmax_axis(b, n, in[0]->type);
    if (ax < 0) return NULL;
    kiln_var *e = kiln_build1(b, KILN_OP_EXP, shift_by_max(b, in[0], ax, mask));
    return kiln_build2(b, KILN_OP_DIVIDE, e, reduce_kept(b, KILN_OP_SUM, e, mask, in[0]->type->ndim));
}

/* log_softmax = s - log(sum(exp(s))) with s = x - max(x). */
kiln_var *kiln_decompose_log_softmax(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    bool mask[KILN_MAX_DIMS];
    int ax = softmax_axis(b, n, in[0]->type);
    if (ax < 0) return NULL;
    kiln_var *s = shift_by_max(b, in[0], ax, mask);
    kiln_var *lse = kiln_build1(b, KILN_OP_LOG, reduce_kept(b, KILN_OP_SUM, kiln_build1(b, KILN_OP_EXP, s), mask, in[0]->type->ndim));
    return kiln_build2(b, KILN_OP_SUBTRACT, s, lse);
}

/* ---- layer_norm --------------------------------------------------------------------------- */
/* Input i of a norm op must be a tensor of x's dtype and the given shape. */
static bool check_param(kiln_shape_args *a, int i, const char *name, int ndim, const int64_t *shape, const char *what) {
    const kiln_type *x = a->in[0], *p = a->in[i];
    if (p->kind == KILN_TYPE_TENSOR && p->dtype == x->dtype && p->ndim == ndim &&
        (ndim == 0 || !memcmp(p->shape, shape, sizeof(int64_t) * (size_t)ndim)))
        return true;
    char pb[256], xb[256], sb[128];
    kiln_op_fail(a, "%s is %s, expected %s%s (%s of x %s)", name, kiln_type_cstr(p, pb, sizeof pb),
                 kiln_dtype_name(x->dtype), kiln_shape_str(ndim, shape, sb, sizeof sb), what, kiln_type_cstr(x, xb, sizeof xb));
    return false;
}

/* x must be a tensor of at least min_ndim dims with `axis` in range; returns the axis or -1. */
static int check_x_axis(kiln_shape_args *a, int min_ndim) {
    const kiln_type *x = a->in[0];
    char xb[256];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    if (x->kind != KILN_TYPE_TENSOR || x->ndim < min_ndim) {
        kiln_op_fail(a, "x is %s, expected a tensor of at least %d dims", kiln_type_cstr(x, xb, sizeof xb), min_ndim);
        return -1;
    }
    int ax = kiln_norm_axis(axis, x->ndim);
    if (ax < 0) kiln_op_fail(a, "axis %lld is out of range for x %s", (long long)axis, kiln_type_cstr(x, xb, sizeof xb));
    return ax;
}

/* layer_norm(x[, gamma[, beta]]): normalises over dims [axis, ndim) (torch's normalized_shape =
 * x.shape[axis:]); gamma and beta have that shape. */
const kiln_type *kiln_shape_layer_norm(kiln_shape_args *a) {
    static const char *names[] = {"x", "gamma", "beta"};
    int ax = check_x_axis(a, 1);
    if (ax < 0) return NULL;
    const kiln_type *x = a->in[0];
    for (int i = 1; i < a->n_in; i++)
        if (!check_param(a, i, names[i], x->ndim - ax, x->shape + ax, "x.shape[axis:]")) return NULL;
    return x;
}

kiln_var *kiln_decompose_layer_norm(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *t = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), t->ndim);
    bool mask[KILN_MAX_DIMS];
    kiln_var *mean, *var;
    for (int i = 0; i < t->ndim; i++) mask[i] = i >= ax;
    kiln_var *y = standardize(b, in[0], mask, t->ndim, kiln_attr_float(n->op, n->attrs, "eps"), &mean, &var);
    /* gamma and beta have shape x.shape[axis:]: numpy broadcasting aligns them on the right */
    if (n->n_in > 1) y = kiln_build2(b, KILN_OP_MULTIPLY, y, in[1]);
    if (n->n_in > 2) y = kiln_build2(b, KILN_OP_ADD, y, in[2]);
    return y;
}

/* ---- batch_norm --------------------------------------------------------------------------- */
/* x [..., C at axis, ...] of at least 2 dims; inputs 1 .. n_vec - 1 (called names[i]) are [C]
 * of x's dtype. */
static int check_batch_norm(kiln_shape_args *a, const char *const *names, int n_vec) {
    int ax = check_x_axis(a, 2);
    for (int i = 1; ax >= 0 && i < n_vec; i++)
        if (!check_param(a, i, names[i], 1, &a->in[0]->shape[ax], "[C] = x.shape[axis]")) return -1;
    return ax;
}

static const char *const bn_forward_names[] = {"x", "gamma", "beta", "running_mean", "running_var"};

/* (x's type, [C], [C]) for channels at axis ax. */
static const kiln_type *bn_triple(kiln_shape_args *a, int ax) {
    const kiln_type *x = a->in[0], *c = kiln_type_tensor_a(a->arena, x->dtype, 1, &x->shape[ax]);
    const kiln_type *t = c ? kiln_type_tuple_a(a->arena, 3, (const kiln_type *[]){x, c, c}) : NULL;
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* batch_norm_train -> (y, batch mean [C], biased batch variance [C]). */
const kiln_type *kiln_shape_batch_norm_train(kiln_shape_args *a) {
    int ax = check_batch_norm(a, bn_forward_names, a->n_in);
    return ax < 0 ? NULL : bn_triple(a, ax);
}

const kiln_type *kiln_shape_batch_norm_infer(kiln_shape_args *a) {
    return check_batch_norm(a, bn_forward_names, a->n_in) < 0 ? NULL : a->in[0];
}

/* batch_norm_train_backward(x, gamma, mean, invstd, dy) -> (dx, dgamma, dbeta): mean and
 * invstd = 1 / sqrt(var + eps) are the forward's batch statistics, dy is shaped like x. */
const kiln_type *kiln_shape_batch_norm_train_backward(kiln_shape_args *a) {
    static const char *const names[] = {"x", "gamma", "mean", "invstd"};
    int ax = check_batch_norm(a, names, 4);
    if (ax < 0 || !check_param(a, 4, "dy", a->in[0]->ndim, a->in[0]->shape, "x's shape")) return NULL;
    return bn_triple(a, ax);
}

/* Reshapes a [C] vector to [1, .., C, .., 1] (C at axis ax) so that it broadcasts against x. */
static kiln_var *per_channel(kiln_builder *b, kiln_var *v, const kiln_type *x, int ax) {
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = i == ax ? x->shape[ax] : 1;
    return reshape(b, v, x->ndim, shape);
}

/* y * gamma + beta with [C] gamma and beta placed at axis ax. */
static kiln_var *affine(kiln_builder *b, kiln_var *y, kiln_var *const *in, int ax) {
    const kiln_type *x = in[0]->type;
    y = kiln_build2(b, KILN_OP_MULTIPLY, y, per_channel(b, in[1], x, ax));
    return kiln_build2(b, KILN_OP_ADD, y, per_channel(b, in[2], x, ax));
}

kiln_var *kiln_decompose_batch_norm_train(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), x->ndim);
    bool mask[KILN_MAX_DIMS];
    kiln_var *mean, *var;
    for (int i = 0; i < x->ndim; i++) mask[i] = i != ax;
    kiln_var *y = affine(b, standardize(b, in[0], mask, x->ndim, kiln_attr_float(n->op, n->attrs, "eps"), &mean, &var), in, ax);
    mean = reshape(b, mean, 1, &x->shape[ax]);
    var = reshape(b, var, 1, &x->shape[ax]);
    return kiln_build_text(b, KILN_OP_TUPLE, 3, (kiln_var *[]){y, mean, var}, NULL);
}

/* With xhat = (x - mean) * invstd and M values per channel (sums over all but the channel axis):
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * invstd * (dy - (dbeta + xhat * dgamma) / M)
 * (y = gamma * xhat + beta, and the batch statistics in xhat depend on every x of the channel:
 * d xhat_j / d x_i = invstd * (delta_ij - 1/M - xhat_i xhat_j / M)). */
kiln_var *kiln_decompose_batch_norm_train_backward(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), x->ndim);
    bool mask[KILN_MAX_DIMS];
    int64_t m = 1;
    for (int i = 0; i < x->ndim; i++) {
        mask[i] = i != ax;
        if (i != ax) m *= x->shape[i];
    }
    kiln_var *dy = in[4], *invstd = per_channel(b, in[3], x, ax);
    kiln_var *xhat = kiln_build2(b, KILN_OP_MULTIPLY, kiln_build2(b, KILN_OP_SUBTRACT, in[0], per_channel(b, in[2], x, ax)), invstd);
    kiln_var *dbeta = reduce_kept(b, KILN_OP_SUM, dy, mask, x->ndim);
    kiln_var *dgamma = reduce_kept(b, KILN_OP_SUM, kiln_build2(b, KILN_OP_MULTIPLY, dy, xhat), mask, x->ndim);
    kiln_var *shared = kiln_build2(b, KILN_OP_ADD, dbeta, kiln_build2(b, KILN_OP_MULTIPLY, xhat, dgamma));
    kiln_var *centred = kiln_build2(b, KILN_OP_SUBTRACT, dy,
                                    kiln_build2(b, KILN_OP_MULTIPLY, shared, kiln_build_float(b, 1.0 / (double)m)));
    kiln_var *dx = kiln_build2(b, KILN_OP_MULTIPLY, kiln_build2(b, KILN_OP_MULTIPLY, per_channel(b, in[1], x, ax), invstd), centred);
    kiln_var *out[3] = {dx, reshape(b, dgamma, 1, &x->shape[ax]), reshape(b, dbeta, 1, &x->shape[ax])};
    return kiln_build_text(b, KILN_OP_TUPLE, 3, out, NULL);
}

/* (x - running_mean) / sqrt(running_var + eps) * gamma + beta. */
kiln_var *kiln_decompose_batch_norm_infer(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), x->ndim);
    kiln_var *d = kiln_build2(b, KILN_OP_SUBTRACT, in[0], per_channel(b, in[3], x, ax));
    kiln_var *y = scale_by_rstd(b, d, per_channel(b, in[4], x, ax), kiln_attr_float(n->op, n->attrs, "eps"));
    return affine(b, y, in, ax);
}
