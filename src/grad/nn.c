/* nn.c — gradient rules of conv2d, conv2d_transpose, the 2-D pools and nll_loss: each other's
 * transposes, the backward primitives of src/ops/nn_grad.c, and a one-hot scatter for the loss. */
#include "grad/grad.h"
#include <stdlib.h>
#include <string.h>

static kiln_status grad_done(kiln_builder *b, kiln_var *const *din, int n) {
    for (int i = 0; i < n; i++)
        if (!din[i]) return kiln_error_status(b->region->func->module->ctx);
    return KILN_OK;
}

/* ---- convolutions ------------------------------------------------------------------------- */
/* The window attributes of a conv node (validated by its shape rule), and their text with
 * padding in its 4-int form. */
typedef struct conv_attrs {
    int64_t stride[2], pad[4], dil[2], groups;
    char text[256];
} conv_attrs;

static void conv_attrs_read(const kiln_node *n, conv_attrs *c) {
    char err[256];
    kiln_window_attr(n->op, n->attrs, "stride", 1, c->stride, err, sizeof err);
    kiln_window_attr(n->op, n->attrs, "padding", 0, c->pad, err, sizeof err);
    kiln_window_attr(n->op, n->attrs, "dilation", 1, c->dil, err, sizeof err);
    c->groups = kiln_attr_int(n->op, n->attrs, "groups");
    snprintf(c->text, sizeof c->text, "stride=[%lld, %lld], padding=[%lld, %lld, %lld, %lld], dilation=[%lld, %lld], groups=%lld",
             (long long)c->stride[0], (long long)c->stride[1], (long long)c->pad[0], (long long)c->pad[1],
             (long long)c->pad[2], (long long)c->pad[3], (long long)c->dil[0], (long long)c->dil[1], (long long)c->groups);
}

static kiln_var *backward_weight(kiln_builder *b, const conv_attrs *c, kiln_var *x, kiln_var *dy, const kiln_type *w) {
    return kiln_build(b, KILN_OP_CONV2D_BACKWARD_WEIGHT, 2, (kiln_var *[]){x, dy}, "%s, kernel=[%lld, %lld]", c->text,
                      (long long)w->shape[2], (long long)w->shape[3]);
}

/* y = conv2d(x, w): dx = conv2d_transpose(dy, w) with output_padding making it x's size (the rows
 * the forward's floor division dropped), dw = conv2d_backward_weight(x, dy). */
kiln_status kiln_grad_conv2d(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *xt = in[0]->type, *wt = in[1]->type, *yt = y->type;
    conv_attrs c;
    conv_attrs_read(n, &c);
    int64_t opad[2];
    for (int i = 0; i < 2; i++) /* x size = (y size - 1) * stride - pads + dilated kernel extent + opad */
        opad[i] = xt->shape[2 + i] - ((yt->shape[2 + i] - 1) * c.stride[i] - c.pad[i] - c.pad[i + 2] +
                                      c.dil[i] * (wt->shape[2 + i] - 1) + 1);
    din[0] = kiln_build(b, KILN_OP_CONV2D_TRANSPOSE, 2, (kiln_var *[]){dy, in[1]}, "%s, output_padding=[%lld, %lld]", c.text,
                        (long long)opad[0], (long long)opad[1]);
    din[1] = backward_weight(b, &c, in[0], dy, wt);
    return grad_done(b, din, 2);
}

/* y = conv2d_transpose(x, w) scatters x through w, so dx = conv2d(dy, w) (cut to x's size where
 * output_padding >= stride let conv2d see extra rows), and dw is conv2d's weight adjoint with
 * the roles swapped: conv2d_backward_weight(dy, x) pairs each x position with the dy taps it
 * fed, giving [C, O/groups, kh, kw] like w. */
kiln_status kiln_grad_conv2d_transpose(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy,
                                       kiln_var **din) {
    const kiln_type *xt = in[0]->type;
    conv_attrs c;
    conv_attrs_read(n, &c);
    kiln_var *dx = kiln_build(b, KILN_OP_CONV2D, 2, (kiln_var *[]){dy, in[1]}, "%s", c.text);
    if (dx && (dx->type->shape[2] != xt->shape[2] || dx->type->shape[3] != xt->shape[3]))
        dx = kiln_build(b, KILN_OP_STRIDED_SLICE, 1, &dx, "begin=[0, 0], end=[%lld, %lld], axes=[2, 3]",
                        (long long)xt->shape[2], (long long)xt->shape[3]);
    din[0] = dx;
    din[1] = backward_weight(b, &c, dy, in[0], in[1]->type);
    return grad_done(b, din, 2);
}

/* ---- pools -------------------------------------------------------------------------------- */
/* Each pool has a backward primitive taking the forward's attributes (same names; the kernel
 * or output_size is required, so the text is never empty), plus input_size for the avg pools
 * (their backward does not read x). Integer max pools take no
 * gradient. */
kiln_status kiln_grad_pool2d(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *xt = in[0]->type;
    if (!kiln_dtype_is_float(xt->dtype)) return KILN_OK;
    kiln_op bw;
    switch (n->op) {
    case KILN_OP_MAX_POOL2D: bw = KILN_OP_MAX_POOL2D_BACKWARD; break;
    case KILN_OP_AVG_POOL2D: bw = KILN_OP_AVG_POOL2D_BACKWARD; break;
    case KILN_OP_ADAPTIVE_AVG_POOL2D: bw = KILN_OP_ADAPTIVE_AVG_POOL2D_BACKWARD; break;
    case KILN_OP_ADAPTIVE_MAX_POOL2D: bw = KILN_OP_ADAPTIVE_MAX_POOL2D_BACKWARD; break;
    default: return KILN_ERR_INTERNAL;
    }
    bool is_max = n->op == KILN_OP_MAX_POOL2D || n->op == KILN_OP_ADAPTIVE_MAX_POOL2D;
    kiln_buf attrs = {0};
    kiln_buf_attrs(&attrs, n->op, n->attrs);
    if (!is_max) kiln_buf_printf(&attrs, ", input_size=[%lld, %lld]", (long long)xt->shape[2], (long long)xt->shape[3]);
    char *text = kiln_buf_take(&attrs);
    if (!text) return kiln_error(b->region->func->module->ctx, KILN_ERR_OOM, "autodiff: out of memory for the attributes of %s",
                                 kiln_op_info_get(bw)->name);
    din[0] = is_max ? kiln_build_text(b, bw, 2, (kiln_var *[]){in[0], dy}, text) : kiln_build_text(b, bw, 1, &dy, text);
    free(text);
    return grad_done(b, din, 1);
}

/* ---- nll_loss ----------------------------------------------------------------------------- */
/* loss[k] = -logp[k, target[k]] (class axis 1, or 0 for a [C] input) where target[k] is not
 * ignore_index. dlogp = where(target == class, w, 0) along the class axis, w = -dy * keep
 * (keep: 1 where not ignored), divided by the kept count for "mean". The comparison with
 * arange(C) (not one_hot) keeps the gradient elementwise, so it fuses with the softmax's; an
 * out-of-range ignore_index matches no class, keep zeroes an in-range one. */
kiln_status kiln_grad_nll_loss(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *lt = in[0]->type;
    const char *dt = kiln_dtype_name(lt->dtype), *red = kiln_attr_str(n->op, n->attrs, "reduction");
    int cd = lt->ndim >= 2 ? 1 : 0;
    kiln_var *target = in[1];
    kiln_var *ignore = kiln_build_int(b, kiln_attr_int(n->op, n->attrs, "ignore_index"));
    kiln_var *ne = kiln_build2(b, KILN_OP_NOT_EQUAL, target, ignore);
    kiln_var *keep = kiln_build(b, KILN_OP_CAST, 1, &ne, "dtype=%s", dt);
    kiln_var *g = kiln_build1(b, KILN_OP_NEG, dy);
    if (!strcmp(red, "mean")) g = kiln_build2(b, KILN_OP_DIVIDE, g, kiln_build1(b, KILN_OP_SUM, keep));
    kiln_var *w = kiln_build2(b, KILN_OP_MULTIPLY, g, keep);
    w = kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &w, "axis=%d", cd);
    kiln_var *classes = kiln_build(b, KILN_OP_ARANGE, 0, NULL, "stop=%lld, dtype=%s", (long long)lt->shape[cd],
                                   kiln_dtype_name(target->type->dtype));
    if (cd == 1 && lt->ndim > 2) { /* [C, 1, ...]: the class axis before the spatial ones */
        char shape[160];
        int len = snprintf(shape, sizeof shape, "shape=[%lld", (long long)lt->shape[cd]);
        for (int d = 2; d < lt->ndim && len < (int)sizeof shape - 8; d++) len += snprintf(shape + len, sizeof shape - (size_t)len, ", 1");
        snprintf(shape + len, sizeof shape - (size_t)len, "]");
        classes = kiln_build(b, KILN_OP_RESHAPE, 1, &classes, "%s", shape);
    }
    kiln_var *t = kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &target, "axis=%d", cd);
    kiln_var *hot = kiln_build2(b, KILN_OP_EQUAL, t, classes);
    din[0] = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){hot, w, kiln_build_float(b, 0.0)}, NULL);
    return grad_done(b, din, 1);
}

/* ---- softmax, log_softmax ----------------------------------------------------------------- */
/* Their own rules, from the result y (autodiff keeps them whole): the decomposition's max is a
 * shift that cancels, and differentiating through it would cost four passes over x.
 *   softmax:     dx = y * (dy - sum(dy * y))
 *   log_softmax: dx = dy - exp(y) * sum(dy)          (sums along the axis, kept as 1) */
static kiln_var *axis_sum(kiln_builder *b, const kiln_node *n, kiln_var *v) {
    return kiln_build(b, KILN_OP_SUM, 1, &v, "axes=[%lld], keepdims=true", (long long)kiln_attr_int(n->op, n->attrs, "axis"));
}

kiln_status kiln_grad_softmax(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    (void)in;
    kiln_var *s = axis_sum(b, n, kiln_build2(b, KILN_OP_MULTIPLY, dy, y));
    din[0] = kiln_build2(b, KILN_OP_MULTIPLY, y, kiln_build2(b, KILN_OP_SUBTRACT, dy, s));
    return grad_done(b, din, 1);
}

kiln_status kiln_grad_log_softmax(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy,
                                  kiln_var **din) {
    (void)in;
    kiln_var *s = axis_sum(b, n, dy);
    din[0] = kiln_build2(b, KILN_OP_SUBTRACT, dy, kiln_build2(b, KILN_OP_MULTIPLY, kiln_build1(b, KILN_OP_EXP, y), s));
    return grad_done(b, din, 1);
}
