/* index_grad.c — backward primitives of the indexing and layout ops (strided_slice, take,
 * gather_nd, pad, resize2d): dx = the transpose of the forward's linear map applied to dy, with
 * contributions to one input element added up. Shape rule and reference kernels. */
#include "ops/layout.h"
#include <stdlib.h>
#include <string.h>

/* The forward op of a backward primitive. Every backward schema is the forward's followed by
 * "shape:ints", so its attribute array read through the forward's schema is the forward's. */
static kiln_op forward_op(kiln_op op) {
    switch (op) {
    case KILN_OP_STRIDED_SLICE_BACKWARD: return KILN_OP_STRIDED_SLICE;
    case KILN_OP_TAKE_BACKWARD: return KILN_OP_TAKE;
    case KILN_OP_GATHER_ND_BACKWARD: return KILN_OP_GATHER_ND;
    case KILN_OP_PAD_BACKWARD: return KILN_OP_PAD;
    default: return KILN_OP_RESIZE2D;
    }
}

/* Result: a tensor of dy's dtype and the `shape` attribute; the forward's shape rule applied to
 * such an input (and the indices) must give dy's type. */
const struct kiln_type *kiln_shape_index_backward(kiln_shape_args *a) {
    const kiln_attr *shape = kiln_attr_get(a->op, a->attrs, "shape");
    const kiln_type *dy = a->in[0], *in[2] = {NULL, a->n_in > 1 ? a->in[1] : NULL};
    char sb[256], tb[256], ub[256];
    kiln_shape_str(shape->n, shape->ints, sb, sizeof sb);
    if (dy->kind != KILN_TYPE_TENSOR) return kiln_op_fail(a, "dy must be a tensor, got %s", kiln_type_cstr(dy, tb, sizeof tb));
    bool ok = true;
    for (int d = 0; ok && d < shape->n; d++) ok = shape->ints[d] >= 0;
    if (!ok) return kiln_op_fail(a, "input shape %s has a negative dim", sb);
    if (!(in[0] = kiln_layout_result(a, dy->dtype, shape->n, shape->ints))) return NULL;
    kiln_shape_args fa = *a;
    fa.op = forward_op(a->op);
    fa.in = in;
    const kiln_type *y = kiln_op_info_get(fa.op)->shape(&fa);
    if (!y) return NULL;
    if (!kiln_type_equal(y, dy))
        return kiln_op_fail(a, "dy %s is not the %s result %s of an input of shape %s", kiln_type_cstr(dy, tb, sizeof tb),
                            kiln_op_info_get(fa.op)->name, kiln_type_cstr(y, ub, sizeof ub), sb);
    return in[0];
}

/* ---- accumulation in the compute type of dx ------------------------------------------------ */
/* dy read as, and dx accumulated in, ct (f32 for f32 / f16 / bf16, f64 for f64); dx is
 * rounded once at the end (acc_end). */
typedef struct acc_buf {
    kiln_dtype ct;
    const void *g;
    void *acc, *own_g, *own_acc;
} acc_buf;

static kiln_status acc_begin(kiln_kernel_args *a, acc_buf *ab) {
    kiln_tensor *dx = a->out[0];
    ab->ct = kiln_acc_dtype(dx->dtype);
    ab->g = kiln_data_as(a->in[0], ab->ct, true, &ab->own_g);
    ab->acc = kiln_data_as(dx, ab->ct, false, &ab->own_acc);
    if (!ab->g || !ab->acc) {
        free(ab->own_g), free(ab->own_acc);
        return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    }
    memset(ab->acc, 0, (size_t)dx->numel * kiln_dtype_size(ab->ct));
    return KILN_OK;
}

static void acc_end(kiln_kernel_args *a, acc_buf *ab) {
    if (ab->own_acc) kiln_convert(a->out[0]->dtype, a->out[0]->data, ab->ct, ab->acc, a->out[0]->numel);
    free(ab->own_g), free(ab->own_acc);
}

/* ---- strided_slice, take, gather_nd, pad: scatter-add through the forward's index map ------- */
/* The forward kernel run on iota (each element holds its own flat index) over the leading
 * `split` dims of x gives, for each row of dy, the row of x it was copied from (-1: none, a
 * constant pad); rows are the trailing dims of x from `split` on, moved whole:
 *   dx[map[r] * inner + i] += dy[r * inner + i]. */
#define SCATTER_ROWS(NAME, T)                                                                           \
    static void NAME(T *dx, const T *dy, const int64_t *map, int64_t rows, int64_t inner) {              \
        for (int64_t r = 0; r < rows; r++)                                                              \
            if (map[r] >= 0)                                                                            \
                for (int64_t i = 0; i < inner; i++) dx[map[r] * inner + i] += dy[r * inner + i];        \
    }
SCATTER_ROWS(scatter_rows_f32, float)
SCATTER_ROWS(scatter_rows_f64, double)
#undef SCATTER_ROWS

kiln_status kiln_ref_index_backward(kiln_kernel_args *a) {
    const kiln_tensor *dy = a->in[0];
    kiln_tensor *dx = a->out[0];
    kiln_op fwd = forward_op(a->op);
    const kiln_op_info *info = kiln_op_info_get(fwd);
    kiln_attr attrs[8]; /* the forward's attributes (at most 4), adjusted below */
    memcpy(attrs, a->attrs, sizeof *attrs * (size_t)info->n_attrs);
    int split = dx->ndim;
    if (fwd == KILN_OP_TAKE && attrs[kiln_attr_index(fwd, "axis")].set) {
        /* take along an axis moves whole rows of the dims after it: iota over dims up to it */
        kiln_attr *axis = &attrs[kiln_attr_index(fwd, "axis")];
        split = kiln_norm_axis(axis->i, dx->ndim) + 1;
        axis->i = split - 1;
    } else if (fwd == KILN_OP_GATHER_ND) {
        split = (int)(attrs[kiln_attr_index(fwd, "batch_dims")].i + a->in[1]->shape[a->in[1]->ndim - 1]);
    } else if (fwd == KILN_OP_PAD) {
        attrs[kiln_attr_index(fwd, "value")].f = -1.0; /* constant padding reads no input */
    }
    kiln_tensor *iota = kiln_tensor_new(a->ctx, KILN_I64, split, dx->shape);
    kiln_tensor *map_t = kiln_tensor_new(a->ctx, KILN_I64, dy->ndim - (dx->ndim - split), dy->shape);
    kiln_status s = iota && map_t ? KILN_OK : kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    if (!s) {
        for (int64_t i = 0; i < iota->numel; i++) ((int64_t *)iota->data)[i] = i;
        kiln_tensor *fin[2] = {iota, a->n_in > 1 ? a->in[1] : NULL};
        kiln_kernel_args fa = {a->ctx, fwd, attrs, a->n_in, fin, 1, &map_t, a->where};
        s = info->kernel(&fa);
    }
    acc_buf ab;
    if (!s && !(s = acc_begin(a, &ab))) {
        const int64_t *map = map_t->data;
        int64_t rows = map_t->numel, inner = kiln_shape_numel(dx->ndim - split, dx->shape + split);
        if (ab.ct == KILN_F64) scatter_rows_f64(ab.acc, ab.g, map, rows, inner);
        else scatter_rows_f32(ab.acc, ab.g, map, rows, inner);
        acc_end(a, &ab);
    }
    if (iota) kiln_tensor_release(iota);
    if (map_t) kiln_tensor_release(map_t);
    return s;
}

/* ---- resize2d ------------------------------------------------------------------------------ */
/* Taps of output index o along one axis, with the formulas of resize.c: nearest reads
 * floor(o * in / out); bilinear reads i0 = floor(src) with weight 1 - l and i0 + 1 (clamped)
 * with weight l = src - i0, where src = o * (in - 1) / (out - 1) with align_corners (0 when
 * out == 1), else max((o + 0.5) * in / out - 0.5, 0). */
static void resize_taps(bool bilinear, bool align, int64_t in, int64_t out, int64_t *i0, double *l) {
    double scale = align ? (out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0) : (double)in / (double)out;
    for (int64_t o = 0; o < out; o++) {
        if (!bilinear) {
            i0[o] = o * in / out;
            l[o] = 0;
            continue;
        }
        double s = align ? scale * (double)o : scale * ((double)o + 0.5) - 0.5;
        if (s < 0) s = 0;
        int64_t k = (int64_t)s;
        i0[o] = k > in - 1 ? in - 1 : k;
        l[o] = s - (double)i0[o];
    }
}

/* dx[p, y_a, x_b] += wy_a * wx_b * dy[p, y, x] over the taps a, b (one each for nearest);
 * iy / ly and ix / lx hold the first tap and weight l of each output row / column. */
#define RESIZE_BACK(NAME, T)                                                                                   \
    static void NAME(T *dx, const T *dy, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int taps, \
                     const int64_t *iy, const double *ly, const int64_t *ix, const double *lx) {               \
        for (int64_t p = 0; p < planes; p++)                                                                   \
            for (int64_t y = 0; y < oh; y++) {                                                                 \
                int64_t ys[2] = {iy[y], iy[y] + (iy[y] < ih - 1)};                                             \
                double wy[2] = {1 - ly[y], ly[y]};                                                             \
                for (int64_t x = 0; x < ow; x++) {                                                             \
                    int64_t xs[2] = {ix[x], ix[x] + (ix[x] < iw - 1)};                                         \
                    double wx[2] = {1 - lx[x], lx[x]}, g = (double)dy[(p * oh + y) * ow + x];                  \
                    for (int u = 0; u < taps; u++)                                                             \
                        for (int v = 0; v < taps; v++) dx[(p * ih + ys[u]) * iw + xs[v]] += (T)(wy[u] * wx[v] * g); \
                }                                                                                              \
            }                                                                                                  \
    }
RESIZE_BACK(resize_back_f32, float)
RESIZE_BACK(resize_back_f64, double)

kiln_status kiln_ref_resize2d_backward(kiln_kernel_args *a) {
    const kiln_tensor *dy = a->in[0];
    kiln_tensor *dx = a->out[0];
    int64_t planes = dx->shape[0] * dx->shape[1], ih = dx->shape[2], iw = dx->shape[3], oh = dy->shape[2], ow = dy->shape[3];
    bool bilinear = !strcmp(kiln_attr_str(a->op, a->attrs, "mode"), "bilinear");
    int taps = bilinear ? 2 : 1;
    int64_t *iy = malloc(sizeof(int64_t) * (size_t)(oh + ow));
    double *ly = malloc(sizeof(double) * (size_t)(oh + ow));
    acc_buf ab;
    kiln_status s = iy && ly ? acc_begin(a, &ab) : kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    if (!s) {
        int64_t *ix = iy + oh;
        double *lx = ly + oh;
        bool align = kiln_attr_bool(a->op, a->attrs, "align_corners");
        resize_taps(bilinear, align, ih, oh, iy, ly);
        resize_taps(bilinear, align, iw, ow, ix, lx);
        if (ab.ct == KILN_F64) resize_back_f64(ab.acc, ab.g, planes, ih, iw, oh, ow, taps, iy, ly, ix, lx);
        else resize_back_f32(ab.acc, ab.g, planes, ih, iw, oh, ow, taps, iy, ly, ix, lx);
        acc_end(a, &ab);
    }
    free(iy);
    free(ly);
    return s;
}
