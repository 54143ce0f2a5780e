/* conv.c — 2-D convolution (im2col + GEMM), transposed convolution (GEMM + col2im), bias_add
 * (a composite), and the reader of the window attributes conv and pool ops share. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>

bool kiln_window_attr(kiln_op op, const kiln_attr *attrs, const char *name, int64_t min, int64_t *out,
                      char *err, size_t err_size) {
    const kiln_attr *v = kiln_attr_get(op, attrs, name);
    bool pad = !strcmp(name, "padding");
    bool ok = v->n == 2 || (pad && v->n == 4);
    for (int i = 0; ok && i < v->n; i++) ok = v->ints[i] >= min;
    if (!ok) {
        char got[128];
        kiln_shape_str(v->n, v->ints, got, sizeof got);
        if (pad) snprintf(err, err_size, "padding must be [h, w] or [top, left, bottom, right] >= 0, got %s", got);
        else snprintf(err, err_size, "%s must be 2 ints >= %lld, got %s", name, (long long)min, got);
        return false;
    }
    if (pad && v->n == 2) { /* [h, w] -> [top, left, bottom, right] */
        out[0] = out[2] = v->ints[0];
        out[1] = out[3] = v->ints[1];
    } else {
        memcpy(out, v->ints, sizeof(int64_t) * (size_t)v->n);
    }
    return true;
}

/* ---- geometry ----------------------------------------------------------------------------- */
/* conv2d:           x[n, c, h, w] * w[o, c/groups, kh, kw]  -> y[n, o, oh, ow]
 * conv2d_transpose: x[n, c, h, w] * w[c, o/groups, kh, kw]  -> y[n, o, oh, ow]
 * Both pair "small" position i (conv: output, transpose: input) with "big" position
 * i*stride - pad_before + k*dilation (conv: input, transpose: output) for kernel tap k. */
typedef struct conv_geom {
    int64_t n, c, h, w, o, oh, ow, kh, kw;
    int64_t groups, cg, og;     /* channels per group: input, output */
    int64_t stride[2], dil[2], pad[4], opad[2];
} conv_geom;

/* Fills g from the operand shapes and attributes; false with a message in err on a bad
 * combination. One function serves the shape rules and (for their strides) the kernels. */
static bool conv_geom_make(kiln_op op, const kiln_attr *attrs, int nx, const int64_t *xs, int nw, const int64_t *ws,
                           conv_geom *g, char *err, size_t es) {
    bool tr = op == KILN_OP_CONV2D_TRANSPOSE;
    char sx[128], sw[128];
    kiln_shape_str(nx, xs, sx, sizeof sx);
    kiln_shape_str(nw, ws, sw, sizeof sw);
    memset(g, 0, sizeof *g);
    if (nx != 4 || nw != 4) {
        snprintf(err, es, "needs 4-D input [N, C, H, W] and 4-D weight [%s, kH, kW], got %s and %s",
                 tr ? "C, O/groups" : "O, C/groups", sx, sw);
        return false;
    }
    for (int i = 0; i < 4; i++)
        if (ws[i] < 1 || (i && xs[i] < 1)) {
            snprintf(err, es, "input %s and weight %s must have non-empty dims (the batch may be 0)", sx, sw);
            return false;
        }
    if (!kiln_window_attr(op, attrs, "stride", 1, g->stride, err, es) ||
        !kiln_window_attr(op, attrs, "dilation", 1, g->dil, err, es) ||
        !kiln_window_attr(op, attrs, "padding", 0, g->pad, err, es) ||
        (tr && !kiln_window_attr(op, attrs, "output_padding", 0, g->opad, err, es)))
        return false;
    g->groups = kiln_attr_int(op, attrs, "groups");
    g->n = xs[0], g->c = xs[1], g->h = xs[2], g->w = xs[3], g->kh = ws[2], g->kw = ws[3];
    if (g->groups < 1 || g->c % g->groups) {
        snprintf(err, es, "groups=%lld must be >= 1 and divide the %lld input channels of %s", (long long)g->groups,
                 (long long)g->c, sx);
        return false;
    }
    g->cg = g->c / g->groups;
    if (tr) {
        g->og = ws[1], g->o = ws[1] * g->groups;
        if (ws[0] != g->c) {
            snprintf(err, es, "weight %s must have %lld input channels (dim 0) to match input %s", sw, (long long)g->c, sx);
            return false;
        }
    } else {
        g->o = ws[0], g->og = ws[0] / g->groups;
        if (ws[1] != g->cg || ws[0] % g->groups) {
            snprintf(err, es, "input %s has %lld channels, so with groups=%lld weight %s needs dim 1 = %lld and dim 0 "
                     "divisible by %lld", sx, (long long)g->c, (long long)g->groups, sw, (long long)g->cg,
                     (long long)g->groups);
            return false;
        }
    }
    int64_t ext_h = g->dil[0] * (g->kh - 1) + 1, ext_w = g->dil[1] * (g->kw - 1) + 1; /* dilated kernel */
    if (tr) {
        for (int i = 0; i < 2; i++)
            if (g->opad[i] >= g->stride[i] && g->opad[i] >= g->dil[i]) {
                snprintf(err, es, "output_padding %lld must be smaller than stride %lld or dilation %lld (dim %d)",
                         (long long)g->opad[i], (long long)g->stride[i], (long long)g->dil[i], i);
                return false;
            }
        g->oh = (g->h - 1) * g->stride[0] - g->pad[0] - g->pad[2] + ext_h + g->opad[0];
        g->ow = (g->w - 1) * g->stride[1] - g->pad[1] - g->pad[3] + ext_w + g->opad[1];
        if (g->oh < 1 || g->ow < 1) {
            snprintf(err, es, "input %s, weight %s with stride [%lld, %lld], padding [%lld, %lld, %lld, %lld], "
                     "dilation [%lld, %lld] give a non-positive output size %lld x %lld", sx, sw,
                     (long long)g->stride[0], (long long)g->stride[1], (long long)g->pad[0], (long long)g->pad[1],
                     (long long)g->pad[2], (long long)g->pad[3], (long long)g->dil[0], (long long)g->dil[1],
                     (long long)g->oh, (long long)g->ow);
            return false;
        }
    } else {
        int64_t ph = g->h + g->pad[0] + g->pad[2], pw = g->w + g->pad[1] + g->pad[3];
        if (ext_h > ph || ext_w > pw) {
            snprintf(err, es, "kernel %lld x %lld with dilation [%lld, %lld] (extent %lld x %lld) is larger than the "
                     "padded input %lld x %lld (input %s, weight %s)", (long long)g->kh, (long long)g->kw,
                     (long long)g->dil[0], (long long)g->dil[1], (long long)ext_h, (long long)ext_w, (long long)ph,
                     (long long)pw, sx, sw);
            return false;
        }
        g->oh = (ph - ext_h) / g->stride[0] + 1;
        g->ow = (pw - ext_w) / g->stride[1] + 1;
    }
    return true;
}

static const kiln_type *conv_infer(kiln_shape_args *a) {
    char ta[256], tb[256], err[512];
    const kiln_type *x = a->in[0], *w = a->in[1];
    if (w->kind != KILN_TYPE_TENSOR || x->kind != KILN_TYPE_TENSOR || w->dtype != x->dtype)
        return kiln_op_fail(a, "input and weight must be tensors of one dtype, got %s and %s",
                            kiln_type_cstr(x, ta, sizeof ta), kiln_type_cstr(w, tb, sizeof tb));
    conv_geom g;
    if (!conv_geom_make(a->op, a->attrs, x->ndim, x->shape, w->ndim, w->shape, &g, err, sizeof err))
        return kiln_op_fail(a, "%s", err);
    return kiln_type_tensor_a(a->arena, x->dtype, 4, (int64_t[]){g.n, g.o, g.oh, g.ow});
}

const struct kiln_type *kiln_shape_conv2d(kiln_shape_args *a) { return conv_infer(a); }
const struct kiln_type *kiln_shape_conv2d_transpose(kiln_shape_args *a) { return conv_infer(a); }

/* ---- kernels ------------------------------------------------------------------------------ */
/* Visits the [ch*kh*kw, sh*sw] column matrix against a [ch, bh, bw] image: `ci` indexes the
 * column matrix, `ii` the image and `inside` says whether the tap falls inside the image. */
#define IM2COL_LOOP(g, ch, sh, sw, bh, bw, BODY)                                                    \
    for (int64_t c_ = 0, ci = 0; c_ < (ch); c_++)                                                   \
        for (int64_t ki_ = 0; ki_ < (g)->kh; ki_++)                                                 \
            for (int64_t kj_ = 0; kj_ < (g)->kw; kj_++)                                             \
                for (int64_t i_ = 0; i_ < (sh); i_++) {                                             \
                    int64_t y_ = i_ * (g)->stride[0] - (g)->pad[0] + ki_ * (g)->dil[0];            \
                    for (int64_t j_ = 0; j_ < (sw); j_++, ci++) {                                   \
                        int64_t x_ = j_ * (g)->stride[1] - (g)->pad[1] + kj_ * (g)->dil[1];        \
                        bool inside = y_ >= 0 && y_ < (bh) && x_ >= 0 && x_ < (bw);                \
                        int64_t ii = (c_ * (bh) + y_) * (bw) + x_;                                  \
                        BODY;                                                                       \
                    }                                                                               \
                }

/* conv_fwd: per image and group, col = im2col(x) then y = w_g[og, cg*kh*kw] @ col.
 * conv_bwd (transpose): col = w_g^T @ x_g, w_g viewed [cg, og*kh*kw]; then y += col2im(col). */
#define CONV_DEFINE(T, DT)                                                                          \
    static void conv_fwd_##T(const conv_geom *g, const T *x, const T *w, T *y, T *col) {            \
        int64_t kk = g->cg * g->kh * g->kw, hw = g->h * g->w, ohw = g->oh * g->ow;                  \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t q = 0; q < g->groups; q++) {                                              \
                const T *img = x + (n * g->c + q * g->cg) * hw;                                    \
                IM2COL_LOOP(g, g->cg, g->oh, g->ow, g->h, g->w, col[ci] = inside ? img[ii] : 0)    \
                kiln_gemm(DT, g->og, ohw, kk, w + q * g->og * kk, kk, 1, col, ohw, 1,              \
                          y + (n * g->o + q * g->og) * ohw, ohw);                                  \
            }                                                                                      \
    }                                                                                              \
    static void conv_bwd_##T(const conv_geom *g, const T *x, const T *w, T *y, T *col) {            \
        int64_t kk = g->og * g->kh * g->kw, hw = g->h * g->w, ohw = g->oh * g->ow;                  \
        memset(y, 0, sizeof(T) * (size_t)(g->n * g->o * ohw));                                     \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t q = 0; q < g->groups; q++) {                                              \
                kiln_gemm(DT, kk, hw, g->cg, w + q * g->cg * kk, 1, kk, x + (n * g->c + q * g->cg) * hw, \
                          hw, 1, col, hw);                                                         \
                T *img = y + (n * g->o + q * g->og) * ohw;                                         \
                IM2COL_LOOP(g, g->og, g->h, g->w, g->oh, g->ow, if (inside) img[ii] += col[ci])    \
            }                                                                                      \
    }
CONV_DEFINE(float, KILN_F32)
CONV_DEFINE(double, KILN_F64)

static kiln_status conv_run(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *w = a->in[1];
    kiln_tensor *out = a->out[0];
    bool tr = a->op == KILN_OP_CONV2D_TRANSPOSE;
    conv_geom g;
    char err[512];
    if (!conv_geom_make(a->op, a->attrs, x->ndim, x->shape, w->ndim, w->shape, &g, err, sizeof err))
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "%s", err);
    kiln_dtype acc = kiln_acc_dtype(out->dtype);
    /* im2col matrix of one group: conv [cg*kh*kw, oh*ow], transpose [og*kh*kw, h*w] */
    size_t ncol = (size_t)((tr ? g.og * g.h * g.w : g.cg * g.oh * g.ow) * g.kh * g.kw);
    void *own_x, *own_w, *own_y, *col = malloc(ncol * kiln_dtype_size(acc));
    void *dx = kiln_data_as(x, acc, true, &own_x), *dw = kiln_data_as(w, acc, true, &own_w);
    void *dy = kiln_data_as(out, acc, false, &own_y);
    kiln_status s = KILN_OK;
    if (!col || !dx || !dw || !dy) {
        s = kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for a %zu-element im2col buffer", ncol);
    } else {
        if (acc == KILN_F32) (tr ? conv_bwd_float : conv_fwd_float)(&g, dx, dw, dy, col);
        else (tr ? conv_bwd_double : conv_fwd_double)(&g, dx, dw, dy, col);
        if (own_y) kiln_convert(out->dtype, out->data, acc, own_y, out->numel);
    }
    free(col);
    free(own_x);
    free(own_w);
    free(own_y);
    return s;
}

kiln_status kiln_ref_conv2d(kiln_kernel_args *a) { return conv_run(a); }
kiln_status kiln_ref_conv2d_transpose(kiln_kernel_args *a) { return conv_run(a); }

/* ---- bias_add(x, b[x.shape[axis]], axis) = x + b broadcast along axis ---------------------- */
const struct kiln_type *kiln_shape_bias_add(kiln_shape_args *a) {
    char tx[256], tb[256];
    const kiln_type *x = a->in[0], *b = a->in[1];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    int ax = kiln_norm_axis(axis, x->ndim);
    if (x->kind != KILN_TYPE_TENSOR || b->kind != KILN_TYPE_TENSOR || x->dtype != b->dtype)
        return kiln_op_fail(a, "input and bias must be tensors of one dtype, got %s and %s",
                            kiln_type_cstr(x, tx, sizeof tx), kiln_type_cstr(b, tb, sizeof tb));
    if (ax < 0)
        return kiln_op_fail(a, "axis %lld is out of range for input %s", (long long)axis, kiln_type_cstr(x, tx, sizeof tx));
    if (b->ndim != 1 || b->shape[0] != x->shape[ax])
        return kiln_op_fail(a, "bias %s must be 1-D of size %lld (dim %d of input %s)", kiln_type_cstr(b, tb, sizeof tb),
                            (long long)x->shape[ax], ax, kiln_type_cstr(x, tx, sizeof tx));
    return x;
}

struct kiln_var *kiln_decompose_bias_add(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    const kiln_type *x = in[0]->type;
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), x->ndim);
    kiln_var *bias = in[1];
    if (ax < x->ndim - 1) { /* b[c] -> b[c, 1, ..., 1] with one 1 per dim after axis */
        char shape[256];
        int len = snprintf(shape, sizeof shape, "shape=[%lld", (long long)x->shape[ax]);
        for (int i = ax + 1; i < x->ndim; i++) len += snprintf(shape + len, sizeof shape - (size_t)len, ", 1");
        snprintf(shape + len, sizeof shape - (size_t)len, "]");
        if (!(bias = kiln_build(b, KILN_OP_RESHAPE, 1, &bias, "%s", shape))) return NULL;
    }
    return kiln_build(b, KILN_OP_ADD, 2, (kiln_var *[]){in[0], bias}, NULL);
}
