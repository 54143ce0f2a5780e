/* loss.c — losses with torch semantics: nll_loss (a primitive with a reference kernel), and the
 * composites cross_entropy (class indices or probabilities, label smoothing), its gradient
 * cross_entropy_backward, mse_loss and smooth_l1_loss, as shape rules plus decompositions. */
#include "ir/ir.h"
#include <math.h>
#include <string.h>


/* The class axis of an input of ndim dims: [C] or [N, C, d1, ...]. */
static int class_axis(int ndim) { return ndim >= 2 ? 1 : 0; }

/* The result type of a loss: per element of `shape` for reduction "none", else 0-d. */
static const kiln_type *loss_type(kiln_shape_args *a, kiln_dtype dt, int ndim, const int64_t *shape) {
    bool none = !strcmp(kiln_attr_str(a->op, a->attrs, "reduction"), "none");
    const kiln_type *t = kiln_type_tensor_a(a->arena, dt, none ? ndim : 0, shape);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* ---- nll_loss ----------------------------------------------------------------------------- */
/* Checks input 0 (log-probabilities or logits, [C] or [N, C, d1, ...]) and writes the shape of
 * its class-index target (logp's shape without the class axis) to *ndim / shape. */
static bool check_scores(kiln_shape_args *a, const char *name, int *ndim, int64_t *shape) {
    const kiln_type *x = a->in[0];
    char xb[256];
    if (x->kind != KILN_TYPE_TENSOR || x->ndim < 1) {
        kiln_op_fail(a, "%s is %s, expected a tensor [C] or [N, C, d1, ...]", name, kiln_type_cstr(x, xb, sizeof xb));
        return false;
    }
    int cd = class_axis(x->ndim);
    *ndim = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != cd) shape[(*ndim)++] = x->shape[i];
    return true;
}

/* A class-index target: an int tensor of the given shape. */
static bool check_index_target(kiln_shape_args *a, const char *name, int ndim, const int64_t *shape) {
    const kiln_type *x = a->in[0], *t = a->in[1];
    if (t->kind == KILN_TYPE_TENSOR && kiln_dtype_is_int(t->dtype) && t->ndim == ndim &&
        (ndim == 0 || !memcmp(t->shape, shape, sizeof(int64_t) * (size_t)ndim)))
        return true;
    char xb[256], tb[256], sb[128];
    if (t->kind != KILN_TYPE_TENSOR || !kiln_dtype_is_int(t->dtype))
        kiln_op_fail(a, "target is %s, expected an int tensor of class indices", kiln_type_cstr(t, tb, sizeof tb));
    else
        kiln_op_fail(a, "target is %s, expected shape %s for %s %s ([N] or [N, d1, ...] for [N, C] or [N, C, d1, ...])",
                     kiln_type_cstr(t, tb, sizeof tb), kiln_shape_str(ndim, shape, sb, sizeof sb), name,
                     kiln_type_cstr(x, xb, sizeof xb));
    return false;
}

const kiln_type *kiln_shape_nll_loss(kiln_shape_args *a) {
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    if (!check_scores(a, "logp", &ndim, shape) || !check_index_target(a, "logp", ndim, shape)) return NULL;
    return loss_type(a, a->in[0]->dtype, ndim, shape);
}

/* loss[n, d] = -logp[n, target[n, d], d], 0 where target == ignore_index; "mean" divides the
 * sum by the number of targets not ignored (nan when all are). Work is one load per target,
 * so elements are read through the generic dtype helpers. */
kiln_status kiln_ref_nll_loss(kiln_kernel_args *a) {
    const kiln_tensor *lp = a->in[0], *tg = a->in[1];
    kiln_tensor *out = a->out[0];
    int cd = class_axis(lp->ndim);
    int64_t C = lp->shape[cd], D = 1; /* D: elements per (n, class) pair, the d1... dims */
    for (int i = cd + 1; i < lp->ndim; i++) D *= lp->shape[i];
    int64_t ignore = kiln_attr_int(a->op, a->attrs, "ignore_index");
    const char *red = kiln_attr_str(a->op, a->attrs, "reduction");
    bool none = !strcmp(red, "none");
    double total = 0;
    int64_t count = 0;
    for (int64_t k = 0; k < tg->numel; k++) {
        int64_t t = kiln_load_i64(tg->dtype, tg->data, k);
        double loss = 0;
        if (t != ignore) {
            if (t < 0 || t >= C)
                return kiln_kernel_fail(a, KILN_ERR_VALUE, "target %lld at flat index %lld is out of range for %lld classes "
                                        "(expected 0 <= target < %lld or ignore_index %lld)",
                                        (long long)t, (long long)k, (long long)C, (long long)C, (long long)ignore);
            loss = -kiln_load_f64(lp->dtype, lp->data, ((k / D) * C + t) * D + k % D);
            total += loss;
            count++;
        }
        if (none) kiln_store_f64(out->dtype, out->data, k, loss);
    }
    if (!none) kiln_store_f64(out->dtype, out->data, 0, !strcmp(red, "sum") ? total : count ? total / (double)count : NAN);
    return KILN_OK;
}

/* ---- cross_entropy ------------------------------------------------------------------------ */
/* logits [C] or [N, C, d1, ...]; target: class indices (int, logits' shape without the class
 * axis) or probabilities (logits' type). */
const kiln_type *kiln_shape_cross_entropy(kiln_shape_args *a) {
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    double eps = kiln_attr_float(a->op, a->attrs, "label_smoothing");
    const kiln_type *x = a->in[0], *t = a->in[1];
    char xb[256], tb[256];
    if (!check_scores(a, "logits", &ndim, shape)) return NULL;
    if (!(eps >= 0 && eps <= 1)) return kiln_op_fail(a, "label_smoothing %g is not in [0, 1]", eps);
    if (t->kind == KILN_TYPE_TENSOR && kiln_dtype_is_float(t->dtype)) {
        if (!kiln_type_equal(t, x))
            return kiln_op_fail(a, "probability target is %s, expected the logits' type %s",
                                kiln_type_cstr(t, tb, sizeof tb), kiln_type_cstr(x, xb, sizeof xb));
    } else if (!check_index_target(a, "logits", ndim, shape)) {
        return NULL;
    }
    return loss_type(a, x->dtype, ndim, shape);
}

/* Reduces per-element losses as `reduction` says, dividing a mean by `count` (a var). */
static kiln_var *reduce_loss(kiln_builder *b, kiln_var *loss, const char *red, kiln_var *count) {
    if (!strcmp(red, "none")) return loss;
    kiln_var *sum = kiln_build1(b, KILN_OP_SUM, loss);
    return !strcmp(red, "sum") ? sum : kiln_build2(b, KILN_OP_DIVIDE, sum, count);
}

/* torch's cross_entropy. With s = log_softmax(logits, class axis) and ε = label_smoothing:
 * class indices: (1-ε) * nll_loss(s, target) + ε/C * L, L the same reduction of -sum_c s over
 * targets not ignored (zero at ignored ones; mean divides by their count);
 * probabilities p: p' = (1-ε) p + ε/C, loss = -sum_c p' s, a mean divides by N * d1 * .... */
kiln_var *kiln_decompose_cross_entropy(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int cd = class_axis(x->ndim);
    double C = (double)x->shape[cd], eps = kiln_attr_float(n->op, n->attrs, "label_smoothing");
    const char *red = kiln_attr_str(n->op, n->attrs, "reduction");
    long long ignore = (long long)kiln_attr_int(n->op, n->attrs, "ignore_index");
    char attrs[96], class_axes[32];
    snprintf(attrs, sizeof attrs, "axis=%d", cd);
    snprintf(class_axes, sizeof class_axes, "axes=[%d]", cd);
    kiln_var *s = kiln_build_text(b, KILN_OP_LOG_SOFTMAX, 1, &in[0], attrs);
    kiln_var *target = in[1];
    if (kiln_dtype_is_int(target->type->dtype)) {
        snprintf(attrs, sizeof attrs, "reduction=\"%s\", ignore_index=%lld", red, ignore);
        kiln_var *nll = kiln_build_text(b, KILN_OP_NLL_LOSS, 2, (kiln_var *[]){s, target}, attrs);
        if (eps == 0) return nll;
        kiln_var *ne = kiln_build2(b, KILN_OP_NOT_EQUAL, target, kiln_build_int(b, ignore));
        snprintf(attrs, sizeof attrs, "dtype=%s", kiln_dtype_name(x->dtype));
        kiln_var *keep = kiln_build_text(b, KILN_OP_CAST, 1, &ne, attrs);
        kiln_var *sum_s = kiln_build2(b, KILN_OP_MULTIPLY, kiln_build_text(b, KILN_OP_SUM, 1, &s, class_axes), keep);
        kiln_var *smooth = reduce_loss(b, sum_s, red, kiln_build1(b, KILN_OP_SUM, keep)); /* = -L */
        return kiln_build2(b, KILN_OP_SUBTRACT, kiln_build2(b, KILN_OP_MULTIPLY, nll, kiln_build_float(b, 1 - eps)),
                   kiln_build2(b, KILN_OP_MULTIPLY, smooth, kiln_build_float(b, eps / C)));
    }
    if (eps > 0)
        target = kiln_build2(b, KILN_OP_ADD, kiln_build2(b, KILN_OP_MULTIPLY, target, kiln_build_float(b, 1 - eps)), kiln_build_float(b, eps / C));
    kiln_var *prod = kiln_build2(b, KILN_OP_MULTIPLY, target, s);
    int64_t count = 1;
    for (int i = 0; i < x->ndim; i++)
        if (i != cd) count *= x->shape[i];
    kiln_var *per = kiln_build1(b, KILN_OP_NEG, kiln_build_text(b, KILN_OP_SUM, 1, &prod, class_axes));
    return reduce_loss(b, per, red, kiln_build_float(b, (double)count));
}

/* ---- cross_entropy_backward ---------------------------------------------------------------
 * The gradient of cross_entropy with class-index targets with respect to the logits, kept whole
 * so that a library can run it in one pass over the logits (dialect "cuda"). */
const kiln_type *kiln_shape_cross_entropy_backward(kiln_shape_args *a) {
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    double eps = kiln_attr_float(a->op, a->attrs, "label_smoothing");
    if (!check_scores(a, "logits", &ndim, shape) || !check_index_target(a, "logits", ndim, shape)) return NULL;
    if (!(eps >= 0 && eps <= 1)) return kiln_op_fail(a, "label_smoothing %g is not in [0, 1]", eps);
    const kiln_type *want = loss_type(a, a->in[0]->dtype, ndim, shape), *d = a->in[2];
    char db[256], wb[256];
    if (want && !kiln_type_equal(d, want))
        return kiln_op_fail(a, "dloss is %s, expected %s (the type of cross_entropy's result for reduction \"%s\")",
                            kiln_type_cstr(d, db, sizeof db), kiln_type_cstr(want, wb, sizeof wb),
                            kiln_attr_str(a->op, a->attrs, "reduction"));
    return want ? a->in[0] : NULL;
}

/* With p = softmax(logits) over the class axis, ε = label_smoothing and C classes:
 *   dlogits = g * (p - (1-ε) [class == target] - ε/C), zero where target == ignore_index,
 * g = dloss (per target for "none", one value for "sum"), dloss / (targets not ignored) for
 * "mean". softmax comes as exp(log_softmax): the forward's log_softmax on the same logits
 * decomposes into the same ops, so CSE shares its max and sum of exponentials. The class
 * comparison with arange (not one_hot) keeps everything elementwise, so it fuses. */
kiln_var *kiln_decompose_cross_entropy_backward(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int cd = class_axis(x->ndim);
    double C = (double)x->shape[cd], eps = kiln_attr_float(n->op, n->attrs, "label_smoothing");
    kiln_var *target = in[1], *g = in[2];
    kiln_var *p = kiln_build1(b, KILN_OP_EXP, kiln_build(b, KILN_OP_LOG_SOFTMAX, 1, &in[0], "axis=%d", cd));
    kiln_var *keep = kiln_build2(b, KILN_OP_NOT_EQUAL, target, kiln_build_int(b, kiln_attr_int(n->op, n->attrs, "ignore_index")));
    if (!strcmp(kiln_attr_str(n->op, n->attrs, "reduction"), "mean")) {
        kiln_var *count = kiln_build1(b, KILN_OP_SUM, kiln_build(b, KILN_OP_CAST, 1, &keep, "dtype=%s", kiln_dtype_name(x->dtype)));
        g = kiln_build2(b, KILN_OP_DIVIDE, g, count);
    }
    /* where, not a product with keep: a mean over no kept targets divides by zero */
    g = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){keep, g, kiln_build_float(b, 0.0)}, NULL);
    g = kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &g, "axis=%d", cd);
    /* [C] along the class axis: [C, 1, ...] before the spatial dims of [N, C, d1, ...] */
    kiln_var *classes = kiln_build(b, KILN_OP_ARANGE, 0, NULL, "stop=%lld, dtype=%s", (long long)x->shape[cd],
                                   kiln_dtype_name(target->type->dtype));
    if (x->ndim > 2) {
        int64_t cshape[KILN_MAX_DIMS];
        char sb[256];
        for (int i = 0; i < x->ndim - 1; i++) cshape[i] = i ? 1 : x->shape[cd];
        classes = kiln_build(b, KILN_OP_RESHAPE, 1, &classes, "shape=%s", kiln_shape_str(x->ndim - 1, cshape, sb, sizeof sb));
    }
    kiln_var *hot = kiln_build2(b, KILN_OP_EQUAL, kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &target, "axis=%d", cd), classes);
    kiln_var *on = kiln_build2(b, KILN_OP_SUBTRACT, p, kiln_build_float(b, 1 - eps + eps / C));
    kiln_var *off = eps > 0 ? kiln_build2(b, KILN_OP_SUBTRACT, p, kiln_build_float(b, eps / C)) : p;
    kiln_var *q = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){hot, on, off}, NULL);
    return kiln_build2(b, KILN_OP_MULTIPLY, q, g);
}

/* ---- mse_loss, smooth_l1_loss ------------------------------------------------------------- */
/* pred and target: float tensors of one shape (torch would broadcast with a warning; kiln asks
 * for equal shapes); the result has their promoted dtype. */
const kiln_type *kiln_shape_pointwise_loss(kiln_shape_args *a) {
    const kiln_type *p = a->in[0], *t = a->in[1];
    char pb[256], tb[256];
    if (p->kind != KILN_TYPE_TENSOR || t->kind != KILN_TYPE_TENSOR || !kiln_dtype_is_float(t->dtype))
        return kiln_op_fail(a, "pred %s and target %s must be float tensors", kiln_type_cstr(p, pb, sizeof pb),
                            kiln_type_cstr(t, tb, sizeof tb));
    if (p->ndim != t->ndim || (p->ndim && memcmp(p->shape, t->shape, sizeof(int64_t) * (size_t)p->ndim)))
        return kiln_op_fail(a, "pred %s and target %s must have the same shape (kiln does not broadcast losses)",
                            kiln_type_cstr(p, pb, sizeof pb), kiln_type_cstr(t, tb, sizeof tb));
    if (a->op == KILN_OP_SMOOTH_L1_LOSS && !(kiln_attr_float(a->op, a->attrs, "beta") >= 0))
        return kiln_op_fail(a, "beta %g must be >= 0", kiln_attr_float(a->op, a->attrs, "beta"));
    return loss_type(a, kiln_dtype_promote(p->dtype, t->dtype), p->ndim, p->shape);
}

/* Reduces pointwise losses: a mean over every element. */
static kiln_var *reduce_pointwise(kiln_builder *b, const kiln_node *n, kiln_var *loss) {
    const char *red = kiln_attr_str(n->op, n->attrs, "reduction");
    return !strcmp(red, "mean") ? kiln_build1(b, KILN_OP_MEAN, loss) : reduce_loss(b, loss, red, NULL);
}

/* (pred - target)^2 */
kiln_var *kiln_decompose_mse_loss(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    kiln_var *d = kiln_build2(b, KILN_OP_SUBTRACT, in[0], in[1]);
    return reduce_pointwise(b, n, kiln_build2(b, KILN_OP_MULTIPLY, d, d));
}

/* z = |pred - target|: 0.5 z^2 / beta where z < beta, else z - 0.5 beta; beta = 0 is l1. */
kiln_var *kiln_decompose_smooth_l1_loss(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    double beta = kiln_attr_float(n->op, n->attrs, "beta");
    kiln_var *z = kiln_build1(b, KILN_OP_ABS, kiln_build2(b, KILN_OP_SUBTRACT, in[0], in[1]));
    if (beta > 0) {
        kiln_var *quad = kiln_build2(b, KILN_OP_MULTIPLY, kiln_build2(b, KILN_OP_MULTIPLY, z, z), kiln_build_float(b, 0.5 / beta));
        kiln_var *lin = kiln_build2(b, KILN_OP_SUBTRACT, z, kiln_build_float(b, 0.5 * beta));
        z = kiln_build_text(b, KILN_OP_WHERE, 3, (kiln_var *[]){kiln_build2(b, KILN_OP_LESS, z, kiln_build_float(b, beta)), quad, lin}, NULL);
    }
    return reduce_pointwise(b, n, z);
}
