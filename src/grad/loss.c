/* loss.c — gradient rule of cross_entropy: class-index targets give one cross_entropy_backward
 * (a composite a library may run whole: one pass over the logits); probability targets are
 * differentiated here through primitives, the targets too. */
#include "grad/grad.h"
#include <string.h>

/* With s = log_softmax(x) over the class axis, ε = label_smoothing, C classes and per-element
 * loss l = -sum_c p'_c s_c where p' = (1-ε) p + ε/C (probability targets p):
 *   dx = g (softmax(x) sum_c p'_c - p'),  dp = -(1-ε) g s,
 * g = dy broadcast along the class axis ("none"), dy ("sum"), dy / (N d1 ...) ("mean"). */
static kiln_status grad_probabilities(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *dy, kiln_var **din) {
    const kiln_type *x = in[0]->type;
    int cd = x->ndim >= 2 ? 1 : 0;
    double C = (double)x->shape[cd], eps = kiln_attr_float(n->op, n->attrs, "label_smoothing");
    const char *red = kiln_attr_str(n->op, n->attrs, "reduction");
    kiln_var *g = dy;
    if (!strcmp(red, "none")) g = kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &g, "axis=%d", cd);
    int64_t count = 1; /* losses averaged by "mean" */
    for (int i = 0; i < x->ndim; i++)
        if (i != cd) count *= x->shape[i];
    if (!strcmp(red, "mean")) g = kiln_build2(b, KILN_OP_DIVIDE, g, kiln_build_float(b, (double)count));
    kiln_var *s = kiln_build(b, KILN_OP_LOG_SOFTMAX, 1, &in[0], "axis=%d", cd);
    kiln_var *pt = in[1];
    if (eps > 0) pt = kiln_build2(b, KILN_OP_ADD, kiln_build2(b, KILN_OP_MULTIPLY, pt, kiln_build_float(b, 1 - eps)), kiln_build_float(b, eps / C));
    kiln_var *mass = kiln_build(b, KILN_OP_SUM, 1, &pt, "axes=[%d], keepdims=true", cd);
    kiln_var *q = kiln_build2(b, KILN_OP_SUBTRACT, kiln_build2(b, KILN_OP_MULTIPLY, kiln_build1(b, KILN_OP_EXP, s), mass), pt);
    din[0] = kiln_build2(b, KILN_OP_MULTIPLY, q, g);
    din[1] = kiln_build2(b, KILN_OP_MULTIPLY, kiln_build2(b, KILN_OP_MULTIPLY, s, kiln_build_float(b, eps - 1)), g);
    return din[0] && din[1] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

/* y = cross_entropy(x, target): dx = cross_entropy_backward(x, target, dy) with the node's
 * attributes; an index target gets no gradient. */
kiln_status kiln_grad_cross_entropy(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy,
                                    kiln_var **din) {
    (void)y;
    if (kiln_dtype_is_float(in[1]->type->dtype)) return grad_probabilities(b, n, in, dy, din);
    din[0] = kiln_build(b, KILN_OP_CROSS_ENTROPY_BACKWARD, 3, (kiln_var *[]){in[0], in[1], dy},
                        "reduction=\"%s\", ignore_index=%lld, label_smoothing=%.17g", kiln_attr_str(n->op, n->attrs, "reduction"),
                        (long long)kiln_attr_int(n->op, n->attrs, "ignore_index"), kiln_attr_float(n->op, n->attrs, "label_smoothing"));
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
