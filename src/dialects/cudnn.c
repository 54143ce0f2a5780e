/* cudnn.c — the "cudnn" dialect (core side, no CUDA headers): conv2d, its data gradient
 * (conv2d_transpose) and weight gradient, max / avg pooling and their backwards, batch_norm_train,
 * its backward and batch_norm_infer, on NCHW device tensors through the backend's cuDNN table
 * (backend_dnn.h).
 * supports() reads only shapes and attributes, so dispatch asks no library. */
#include "backend/backend_dnn.h"
#include "dialects/conv_geom.h"
#include "dialects/cuda_dialect.h"
#include <string.h>

bool kiln_cudnn_load(char *why, size_t why_size) { return kiln_cuda_dnn(why, why_size) != NULL; }

static bool fits_int(int64_t v) { return v >= 1 && v <= 0x7fffffff; }

/* cuDNN pads both sides by the same amount: the output size it computes from the leading pad. */
static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
    int64_t span = in + 2 * pad - ((k - 1) * dil + 1);
    return span < 0 ? -1 : span / stride + 1;
}

/* ---- convolutions --------------------------------------------------------------------------- */
/* The cuDNN call of a conv op from its operand shapes (in1: input 1, out: the result) and dtype:
 * x is the big side, y the small side (conv_geom.h). False where cuDNN's symmetric padding gives
 * another size than the op's (asymmetric padding that matters, conv2d_backward_weight's short
 * dy), or a size is empty or too large. */
static bool conv_desc(kiln_op op, const kiln_attr *attrs, const int64_t *in0, const int64_t *in1, const int64_t *out,
                      kiln_dtype dt, kiln_dnn_conv *c) {
    kiln_conv_geom g;
    if (!kiln_conv_geom_read(op, attrs, in0, in1, out, &g)) return false;
    *c = (kiln_dnn_conv){.dtype = dt, .tf32 = dt == KILN_F32 && kiln_cuda_tf32(), .n = g.n, .c = g.bc, .h = g.bh, .w = g.bw,
                         .k = g.sc, .r = g.kh, .s = g.kw, .oh = g.sh, .ow = g.sw, .groups = g.groups};
    for (int i = 0; i < 2; i++) c->stride[i] = g.stride[i], c->pad[i] = g.pad[i], c->dil[i] = g.dil[i];
    int64_t sizes[] = {c->n, c->c, c->h, c->w, c->k, c->r, c->s, c->oh, c->ow};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!fits_int(sizes[i])) return false;
    return window_out(c->h, c->r, c->stride[0], c->pad[0], c->dil[0]) == c->oh &&
           window_out(c->w, c->s, c->stride[1], c->pad[1], c->dil[1]) == c->ow;
}

static bool float_dtype(kiln_dtype dt, bool bf16) { return dt == KILN_F32 || dt == KILN_F16 || (bf16 && dt == KILN_BF16); }

static bool conv_supports(const kiln_node *n) {
    const kiln_type *t = n->out->type;
    kiln_conv_geom g;
    kiln_dnn_conv c;
    return t && t->kind == KILN_TYPE_TENSOR && float_dtype(t->dtype, true) && kiln_conv_geom_of_node(n, t->dtype, &g) &&
           conv_desc(n->op, n->attrs, n->in[0]->type->shape, n->in[1]->type->shape, t->shape, t->dtype, &c);
}

/* ---- pooling -------------------------------------------------------------------------------- */
static bool is_max_pool(kiln_op op) { return op == KILN_OP_MAX_POOL2D || op == KILN_OP_MAX_POOL2D_BACKWARD; }

/* The cuDNN pool of a pool op from its operand shapes: x the pooled input (max_pool2d_backward's
 * input 0, avg_pool2d_backward's result), y the pooled output. False where cuDNN differs from the
 * reference kernel: dilation, ceil_mode or asymmetric padding changing the output size, or (with
 * padding counted) a last window reaching past the declared trailing padding. */
static bool pool_desc(kiln_op op, const kiln_attr *attrs, const int64_t *in0, const int64_t *in1, const int64_t *out,
                      kiln_dtype dt, kiln_dnn_pool *p) {
    char err[256];
    int64_t kernel[2], stride[2], pad[4], dil[2] = {1, 1};
    if (!kiln_window_attr(op, attrs, "kernel", 1, kernel, err, sizeof err) ||
        !kiln_window_attr(op, attrs, "padding", 0, pad, err, sizeof err) ||
        (is_max_pool(op) && !kiln_window_attr(op, attrs, "dilation", 1, dil, err, sizeof err)))
        return false;
    if (!kiln_attr_get(op, attrs, "stride")->set) memcpy(stride, kernel, sizeof stride);
    else if (!kiln_window_attr(op, attrs, "stride", 1, stride, err, sizeof err)) return false;
    const int64_t *x = op == KILN_OP_AVG_POOL2D_BACKWARD ? out : in0;
    const int64_t *y = op == KILN_OP_AVG_POOL2D_BACKWARD ? in0 : op == KILN_OP_MAX_POOL2D_BACKWARD ? in1 : out;
    bool include = !is_max_pool(op) && kiln_attr_bool(op, attrs, "count_include_pad");
    *p = (kiln_dnn_pool){.dtype = dt,
                         .mode = is_max_pool(op) ? KILN_DNN_POOL_MAX : include ? KILN_DNN_POOL_AVG_INCLUDE : KILN_DNN_POOL_AVG_EXCLUDE,
                         .n = x[0], .c = x[1], .h = x[2], .w = x[3], .oh = y[2], .ow = y[3]};
    for (int i = 0; i < 2; i++) {
        p->kernel[i] = kernel[i], p->stride[i] = stride[i], p->pad[i] = pad[i];
        /* windows end at most at in + pad[i] (cuDNN's size); counted padding must exist there */
        if (dil[i] != 1 || (include && pad[i + 2] < pad[i])) return false;
    }
    int64_t sizes[] = {p->n, p->c, p->h, p->w, p->oh, p->ow};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!fits_int(sizes[i])) return false;
    return window_out(p->h, kernel[0], stride[0], pad[0], 1) == p->oh && window_out(p->w, kernel[1], stride[1], pad[1], 1) == p->ow;
}

/* Every operand and the result 4-D tensors of the result's dtype (f32 or f16). */
static bool pool_supports(const kiln_node *n) {
    const kiln_type *t = n->out->type;
    if (!t || t->kind != KILN_TYPE_TENSOR || !float_dtype(t->dtype, false) || t->ndim != 4) return false;
    for (int i = 0; i < n->n_in; i++) {
        const kiln_type *u = n->in[i]->type;
        if (u->kind != KILN_TYPE_TENSOR || u->dtype != t->dtype || u->ndim != 4) return false;
    }
    kiln_dnn_pool p;
    return pool_desc(n->op, n->attrs, n->in[0]->type->shape, n->n_in > 1 ? n->in[1]->type->shape : NULL, t->shape, t->dtype, &p);
}

/* ---- batch normalisation -------------------------------------------------------------------- */
/* x [d0, .., C at axis, .., dk] as cuDNN's [prod(before), C, prod(after), 1] (a 2-D [N, C] as
 * [N, C, 1, 1]). The backward takes the forward's mean and 1 / sqrt(var + eps), so cuDNN reads
 * no eps there (0 = CUDNN_BN_MIN_EPSILON). */
static bool bn_desc(kiln_op op, const kiln_attr *attrs, int ndim, const int64_t *shape, kiln_dtype dt, kiln_dnn_bn *b) {
    int ax = kiln_norm_axis(kiln_attr_int(op, attrs, "axis"), ndim);
    if (ax < 0) return false;
    *b = (kiln_dnn_bn){.dtype = dt, .n = 1, .c = shape[ax], .h = 1, .w = 1,
                       .eps = op == KILN_OP_BATCH_NORM_TRAIN_BACKWARD ? 0 : kiln_attr_float(op, attrs, "eps")};
    for (int i = 0; i < ndim; i++) {
        if (i < ax) b->n *= shape[i];
        else if (i > ax) b->h *= shape[i];
    }
    bool training = op != KILN_OP_BATCH_NORM_INFER;
    return fits_int(b->n) && fits_int(b->c) && fits_int(b->h) && (!training || b->n * b->h >= 2) && b->eps >= 0;
}

/* f32 x and parameters (cuDNN's parameter vectors are f32; AMP keeps batch norm in f32) and
 * statistics over at least 2 values. */
static bool bn_supports(const kiln_node *n) {
    const kiln_type *x = n->in[0]->type;
    if (x->kind != KILN_TYPE_TENSOR || x->dtype != KILN_F32 || !n->out->type) return false;
    for (int i = 1; i < n->n_in; i++)
        if (n->in[i]->type->kind != KILN_TYPE_TENSOR || n->in[i]->type->dtype != KILN_F32) return false;
    kiln_dnn_bn b;
    return bn_desc(n->op, n->attrs, x->ndim, x->shape, x->dtype, &b);
}

/* ---- the kernel ----------------------------------------------------------------------------- */
/* Runs a's op on the current CUDA device (tensors hold device pointers). */
static kiln_status cudnn_kernel(kiln_kernel_args *a) {
    const kiln_cuda_exec *e = kiln_cuda_exec_for(a);
    char why[512];
    const kiln_backend_dnn *dnn = e ? kiln_cuda_dnn(why, sizeof why) : NULL;
    if (!e) return kiln_error_status(a->ctx);
    if (!dnn) return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "cudnn: unavailable: %s", why);
    kiln_tensor *const *in = a->in, *const *out = a->out;
    const int64_t *s1 = a->n_in > 1 ? in[1]->shape : NULL;
    kiln_dtype dt = in[0]->dtype;
    int rc, dev = e->dev;
    kiln_dnn_conv c;
    kiln_dnn_pool p;
    kiln_dnn_bn b;
    switch (a->op) {
    case KILN_OP_CONV2D:
    case KILN_OP_CONV2D_TRANSPOSE:
    case KILN_OP_CONV2D_BACKWARD_WEIGHT:
        if (!conv_desc(a->op, a->attrs, in[0]->shape, s1, out[0]->shape, dt, &c)) goto unsupported;
        rc = a->op == KILN_OP_CONV2D             ? dnn->conv_fwd(dev, &c, in[0]->data, in[1]->data, out[0]->data)
             : a->op == KILN_OP_CONV2D_TRANSPOSE ? dnn->conv_bwd_data(dev, &c, in[0]->data, in[1]->data, out[0]->data)
                                                 : dnn->conv_bwd_filter(dev, &c, in[0]->data, in[1]->data, out[0]->data);
        break;
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_AVG_POOL2D:
        if (!pool_desc(a->op, a->attrs, in[0]->shape, s1, out[0]->shape, dt, &p)) goto unsupported;
        rc = dnn->pool_fwd(dev, &p, in[0]->data, out[0]->data);
        break;
    case KILN_OP_MAX_POOL2D_BACKWARD: /* (x, dy) -> dx */
    case KILN_OP_AVG_POOL2D_BACKWARD: /* (dy) -> dx */
        if (!pool_desc(a->op, a->attrs, in[0]->shape, s1, out[0]->shape, dt, &p)) goto unsupported;
        rc = a->op == KILN_OP_MAX_POOL2D_BACKWARD ? dnn->pool_bwd(dev, &p, in[0]->data, NULL, in[1]->data, out[0]->data)
                                                  : dnn->pool_bwd(dev, &p, NULL, NULL, in[0]->data, out[0]->data);
        break;
    case KILN_OP_BATCH_NORM_TRAIN: /* (x, gamma, beta) -> (y, mean, var) */
    case KILN_OP_BATCH_NORM_INFER: /* (x, gamma, beta, running_mean, running_var) -> y */
    case KILN_OP_BATCH_NORM_TRAIN_BACKWARD: /* (x, gamma, mean, invstd, dy) -> (dx, dgamma, dbeta) */
        if (!bn_desc(a->op, a->attrs, in[0]->ndim, in[0]->shape, dt, &b)) goto unsupported;
        if (a->op == KILN_OP_BATCH_NORM_TRAIN)
            rc = dnn->bn_train_fwd(dev, &b, in[0]->data, in[1]->data, in[2]->data, out[0]->data, out[1]->data, out[2]->data,
                                   NULL, NULL);
        else if (a->op == KILN_OP_BATCH_NORM_INFER)
            rc = dnn->bn_infer_fwd(dev, &b, in[0]->data, in[1]->data, in[2]->data, in[3]->data, in[4]->data, out[0]->data);
        else /* mean and invstd as cuDNN's saved statistics: no pass over x to recompute them */
            rc = dnn->bn_bwd(dev, &b, in[0]->data, in[4]->data, in[1]->data, in[2]->data, in[3]->data, out[0]->data,
                             out[1]->data, out[2]->data);
        break;
    default:
        goto unsupported;
    }
    return rc ? kiln_cuda_fail(a, e, kiln_op_info_get(a->op)->name) : KILN_OK;
unsupported:
    return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "cudnn: these shapes and attributes are not supported");
}

/* Priority 20: above kiln's own CUDA kernels (10) and generated code. */
#define CUDNN_IMPL(name, OP, supports) \
    static const kiln_dialect_impl name = {KILN_OP_##OP, KILN_DIALECT_CUDNN, 20, supports, cudnn_kernel};
CUDNN_IMPL(cudnn_conv2d, CONV2D, conv_supports)
CUDNN_IMPL(cudnn_conv2d_t, CONV2D_TRANSPOSE, conv_supports)
CUDNN_IMPL(cudnn_conv2d_bw, CONV2D_BACKWARD_WEIGHT, conv_supports)
CUDNN_IMPL(cudnn_max_pool, MAX_POOL2D, pool_supports)
CUDNN_IMPL(cudnn_avg_pool, AVG_POOL2D, pool_supports)
CUDNN_IMPL(cudnn_max_pool_bw, MAX_POOL2D_BACKWARD, pool_supports)
CUDNN_IMPL(cudnn_avg_pool_bw, AVG_POOL2D_BACKWARD, pool_supports)
CUDNN_IMPL(cudnn_bn_train, BATCH_NORM_TRAIN, bn_supports)
CUDNN_IMPL(cudnn_bn_infer, BATCH_NORM_INFER, bn_supports)
CUDNN_IMPL(cudnn_bn_train_bw, BATCH_NORM_TRAIN_BACKWARD, bn_supports)
#undef CUDNN_IMPL
const kiln_dialect_impl *const kiln_cudnn_impls[] = {&cudnn_conv2d,      &cudnn_conv2d_t,    &cudnn_conv2d_bw,
                                                     &cudnn_max_pool,    &cudnn_avg_pool,    &cudnn_max_pool_bw,
                                                     &cudnn_avg_pool_bw, &cudnn_bn_train,    &cudnn_bn_infer,
                                                     &cudnn_bn_train_bw, NULL};
