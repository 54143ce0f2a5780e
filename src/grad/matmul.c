/* matmul.c — gradient rules of matmul (numpy semantics with optional transposes: 1-D operands
 * are lifted to matrices, the adjoints are products with the other operand, and batch
 * broadcasting is undone by summing) and of dense (x @ w^T + b, kept whole by autodiff). */
#include "grad/grad.h"

static kiln_var *mm(kiln_builder *b, kiln_var *x, kiln_var *y, bool tx, bool ty) {
    return kiln_build(b, KILN_OP_MATMUL, 2, (kiln_var *[]){x, y}, "transpose_a=%s, transpose_b=%s", tx ? "true" : "false",
                      ty ? "true" : "false");
}

static kiln_var *reshape_to(kiln_builder *b, kiln_var *v, int nd, const int64_t *shape) {
    char sb[256];
    return kiln_build(b, KILN_OP_RESHAPE, 1, &v, "shape=%s", kiln_shape_str(nd, shape, sb, sizeof sb));
}

kiln_status kiln_grad_matmul(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    kiln_var *A = in[0], *B = in[1];
    const kiln_type *at = A->type, *bt = B->type;
    if (!kiln_dtype_is_float(at->dtype)) return KILN_OK;
    bool ta = kiln_attr_bool(n->op, n->attrs, "transpose_a") && at->ndim >= 2;
    bool tb = kiln_attr_bool(n->op, n->attrs, "transpose_b") && bt->ndim >= 2;
    /* matrices: A [.., m, k] (or [.., k, m] when ta), B [.., k, n] (or [.., n, k]) */
    int64_t a2[KILN_MAX_DIMS], b2[KILN_MAX_DIMS], z2[KILN_MAX_DIMS];
    int an = at->ndim, bn = bt->ndim, zn;
    if (an == 1) a2[0] = 1, a2[1] = at->shape[0], an = 2;
    else for (int i = 0; i < an; i++) a2[i] = at->shape[i];
    if (bn == 1) b2[0] = bt->shape[0], b2[1] = 1, bn = 2;
    else for (int i = 0; i < bn; i++) b2[i] = bt->shape[i];
    if (!kiln_broadcast_shapes(an - 2, a2, bn - 2, b2, &zn, z2)) return KILN_ERR_INTERNAL;
    z2[zn++] = ta ? a2[an - 1] : a2[an - 2];
    z2[zn++] = tb ? b2[bn - 2] : b2[bn - 1];
    kiln_var *A2 = at->ndim == 1 ? reshape_to(b, A, an, a2) : A;
    kiln_var *B2 = bt->ndim == 1 ? reshape_to(b, B, bn, b2) : B;
    kiln_var *G = reshape_to(b, dy, zn, z2), *gA, *gB;
    /* z = op(A) op(B): d op(A) = G op(B)^T, d op(B) = op(A)^T G, then undo each op. A shared
     * 2-D B with a batched A (a linear layer on [batch, time, features]): the batch folds into
     * the rows, so dB is one GEMM over all of them instead of a GEMM per batch and a sum. */
    if (bn == 2 && an > 2 && !ta) {
        int64_t rows = 1, af[2], gf[2];
        for (int i = 0; i < an - 1; i++) rows *= a2[i];
        af[0] = gf[0] = rows, af[1] = a2[an - 1], gf[1] = z2[zn - 1];
        kiln_var *Af = reshape_to(b, A2, 2, af), *Gf = reshape_to(b, G, 2, gf);
        gA = tb ? mm(b, G, B2, false, false) : mm(b, G, B2, false, true);
        gB = tb ? mm(b, Gf, Af, true, false) : mm(b, Af, Gf, true, false);
    } else if (!ta && !tb) gA = mm(b, G, B2, false, true), gB = mm(b, A2, G, true, false);
    else if (!ta && tb) gA = mm(b, G, B2, false, false), gB = mm(b, G, A2, true, false);
    else if (ta && !tb) gA = mm(b, B2, G, false, true), gB = mm(b, A2, G, false, false);
    else gA = mm(b, B2, G, true, true), gB = mm(b, G, A2, true, true);
    gA = kiln_grad_unbroadcast(b, gA, A2), gB = kiln_grad_unbroadcast(b, gB, B2);
    din[0] = gA && at->ndim == 1 ? reshape_to(b, gA, 1, at->shape) : gA;
    din[1] = gB && bt->ndim == 1 ? reshape_to(b, gB, 1, bt->shape) : gB;
    return din[0] && din[1] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

/* dense: y[.., n] = x[.., k] w[n, k]^T + b[n]. dx = dy w; with the leading dims folded into
 * rows, dw = dy^T x and db = the column sums of dy. */
kiln_status kiln_grad_dense(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    (void)y;
    const kiln_type *xt = in[0]->type, *wt = in[1]->type;
    int64_t rows = 1;
    for (int i = 0; i < xt->ndim - 1; i++) rows *= xt->shape[i];
    int64_t xf[2] = {rows, xt->shape[xt->ndim - 1]}, gf[2] = {rows, wt->shape[0]};
    kiln_var *X = xt->ndim == 2 ? in[0] : reshape_to(b, in[0], 2, xf);
    kiln_var *G = xt->ndim == 2 ? dy : reshape_to(b, dy, 2, gf);
    din[0] = mm(b, dy, in[1], false, false);
    din[1] = mm(b, G, X, true, false);
    if (n->n_in > 2) din[2] = kiln_build(b, KILN_OP_SUM, 1, &G, "axes=[0]");
    return din[0] && din[1] && (n->n_in < 3 || din[2]) ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
