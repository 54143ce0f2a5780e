/* norm.c — gradient rule of batch_norm_train: one batch_norm_train_backward (cuDNN on CUDA, its
 * decomposition elsewhere) from the forward's statistics, plus the share of dx that adjoints of
 * the mean and variance results bring where those results are used. */
#include "grad/grad.h"

/* Element i of tuple t: the operand itself when t is a tuple node (the adjoint tuples autodiff
 * assembles), else a get. */
static kiln_var *part(kiln_builder *b, kiln_var *t, int i) {
    if (t->def && t->def->op == KILN_OP_TUPLE) return t->def->in[i];
    return kiln_build(b, KILN_OP_GET, 1, &t, "index=%d", i);
}

/* The zeros autodiff gives an unused result's adjoint (kiln_grad_zeros). */
static bool known_zero(const kiln_var *v) { return v && v->def && v->def->op == KILN_OP_ZEROS_LIKE; }

static kiln_var *reshape(kiln_builder *b, kiln_var *v, int ndim, const int64_t *shape) {
    char sb[256];
    return kiln_build(b, KILN_OP_RESHAPE, 1, &v, "shape=%s", kiln_shape_str(ndim, shape, sb, sizeof sb));
}

/* y = (out, mean, var) of x [.., C at axis, ..], M values per channel:
 *   mean = sum x / M, var = sum (x - mean)^2 / M, invstd = 1 / sqrt(var + eps),
 *   out = gamma * (x - mean) * invstd + beta.
 * batch_norm_train_backward gives out's share of dx, dgamma and dbeta. The mean's and the
 * variance's adjoints add dmean / M + dvar * 2 (x - mean) / M to dx (var's path through the mean
 * vanishes as sum (x - mean) = 0) and reach neither gamma nor beta. */
kiln_status kiln_grad_batch_norm_train(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy,
                                       kiln_var **din) {
    kiln_context *ctx = b->region->func->module->ctx;
    const kiln_type *xt = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), xt->ndim);
    kiln_var *mean = part(b, y, 1), *var = part(b, y, 2);
    kiln_var *eps = kiln_build_float(b, kiln_attr_float(n->op, n->attrs, "eps"));
    kiln_var *invstd = kiln_build1(b, KILN_OP_RSQRT, kiln_build2(b, KILN_OP_ADD, var, eps));
    kiln_var *g = kiln_build(b, KILN_OP_BATCH_NORM_TRAIN_BACKWARD, 5, (kiln_var *[]){in[0], in[1], mean, invstd, part(b, dy, 0)},
                             "axis=%d", ax);
    for (int i = 0; g && i < 3; i++) din[i] = kiln_build(b, KILN_OP_GET, 1, &g, "index=%d", i);
    kiln_var *dmean = part(b, dy, 1), *dvar = part(b, dy, 2);
    if (din[0] && dmean && dvar && (!known_zero(dmean) || !known_zero(dvar))) {
        int64_t shape[KILN_MAX_DIMS], m = 1; /* [1, .., C, .., 1] */
        for (int i = 0; i < xt->ndim; i++) {
            shape[i] = i == ax ? xt->shape[ax] : 1;
            if (i != ax) m *= xt->shape[i];
        }
        kiln_var *centred = kiln_build2(b, KILN_OP_SUBTRACT, in[0], reshape(b, mean, xt->ndim, shape));
        kiln_var *dv2 = kiln_build2(b, KILN_OP_MULTIPLY, reshape(b, dvar, xt->ndim, shape), kiln_build_float(b, 2.0));
        kiln_var *sum = kiln_build2(b, KILN_OP_ADD, reshape(b, dmean, xt->ndim, shape),
                                    kiln_build2(b, KILN_OP_MULTIPLY, dv2, centred));
        din[0] = kiln_build2(b, KILN_OP_ADD, din[0], kiln_build2(b, KILN_OP_MULTIPLY, sum, kiln_build_float(b, 1.0 / (double)m)));
    }
    return din[0] && din[1] && din[2] ? KILN_OK : kiln_error_status(ctx);
}
