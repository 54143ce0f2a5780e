/* resize.c — resize2d of NCHW tensors (nearest / bilinear) with the index and weight formulas of
 * torch.nn.functional.interpolate given an output size: shape rule and reference kernel. */
#include "ops/layout.h"
#include <stdlib.h>
#include <string.h>

const struct kiln_type *kiln_shape_resize2d(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *size = kiln_attr_get(a->op, a->attrs, "size");
    kiln_type_cstr(x, tb, sizeof tb);
    if (x->ndim != 4) return kiln_op_fail(a, "input %s is not 4-d (NCHW)", tb);
    if (size->n != 2 || size->ints[0] < 1 || size->ints[1] < 1)
        return kiln_op_fail(a, "size %s must be two positive dims [H, W]", kiln_shape_str(size->n, size->ints, sb, sizeof sb));
    if (x->shape[2] < 1 || x->shape[3] < 1) return kiln_op_fail(a, "input %s has an empty spatial dim", tb);
    int64_t out[4] = {x->shape[0], x->shape[1], size->ints[0], size->ints[1]};
    return kiln_layout_result(a, x->dtype, 4, out);
}

/* Nearest: source index floor(dst * in / out), computed exactly in integers. */
static void nearest_index(int64_t in, int64_t out, int64_t *idx) {
    for (int64_t o = 0; o < out; o++) idx[o] = o * in / out;
}

/* Copies out[p, y, x] = in[p, iy[y], ix[x]] for every plane p; elements of ES bytes. */
#define NEAREST(ES)                                                                              \
    for (int64_t p = 0; p < planes; p++)                                                         \
        for (int64_t y = 0; y < oh; y++) {                                                       \
            const char *row = src + ((p * ih + iy[y]) * iw) * (ES);                              \
            char *dst_row = dst + ((p * oh + y) * ow) * (ES);                                    \
            for (int64_t x = 0; x < ow; x++) memcpy(dst_row + x * (ES), row + ix[x] * (ES), (ES)); \
        }                                                                                        \
    break
static void resize_nearest(char *dst, const char *src, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                           const int64_t *iy, const int64_t *ix, size_t es) {
    switch (es) {
    case 2: NEAREST(2);
    case 4: NEAREST(4);
    default: NEAREST(8);
    }
}
#undef NEAREST

/* Bilinear in compute type T (float for f32 and the 16-bit floats, double for f64). Source
 * coordinate of output index o:
 *   align_corners:  o * (in - 1) / (out - 1)          (0 when out == 1)
 *   otherwise:      max((o + 0.5) * in / out - 0.5, 0)
 * then i0 = floor(src), i1 = min(i0 + 1, in - 1), weight of i1 = src - i0. */
#define BILINEAR(T, NAME)                                                                                      \
    static void NAME(T *dst, const T *src, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow,     \
                     bool align, int64_t *i0, T *l1) {                                                          \
        int64_t in[2] = {ih, iw}, out[2] = {oh, ow}, *j0[2] = {i0, i0 + oh};                                   \
        T *w1[2] = {l1, l1 + oh};                                                                               \
        for (int ax = 0; ax < 2; ax++) {                                                                        \
            T scale = align ? (out[ax] > 1 ? (T)(in[ax] - 1) / (T)(out[ax] - 1) : (T)0) : (T)in[ax] / (T)out[ax]; \
            for (int64_t o = 0; o < out[ax]; o++) {                                                             \
                T s = align ? scale * (T)o : scale * ((T)o + (T)0.5) - (T)0.5;                                  \
                if (s < 0) s = 0;                                                                               \
                int64_t k = (int64_t)s;                                                                         \
                if (k > in[ax] - 1) k = in[ax] - 1;                                                             \
                j0[ax][o] = k;                                                                                  \
                w1[ax][o] = s - (T)k;                                                                           \
            }                                                                                                   \
        }                                                                                                       \
        for (int64_t p = 0; p < planes; p++)                                                                    \
            for (int64_t y = 0; y < oh; y++) {                                                                  \
                int64_t y0 = j0[0][y], y1 = y0 + (y0 < ih - 1);                                                \
                const T *r0 = src + (p * ih + y0) * iw, *r1 = src + (p * ih + y1) * iw;                         \
                T ly = w1[0][y];                                                                                \
                for (int64_t x = 0; x < ow; x++) {                                                              \
                    int64_t x0 = j0[1][x], x1 = x0 + (x0 < iw - 1);                                             \
                    T lx = w1[1][x];                                                                            \
                    dst[(p * oh + y) * ow + x] = ((T)1 - ly) * (((T)1 - lx) * r0[x0] + lx * r0[x1]) +            \
                                                 ly * (((T)1 - lx) * r1[x0] + lx * r1[x1]);                     \
                }                                                                                               \
            }                                                                                                   \
    }
BILINEAR(float, bilinear_f32)
BILINEAR(double, bilinear_f64)
#undef BILINEAR

kiln_status kiln_ref_resize2d(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *y = a->out[0];
    int64_t planes = x->shape[0] * x->shape[1], ih = x->shape[2], iw = x->shape[3], oh = y->shape[2], ow = y->shape[3];
    bool bilinear = !strcmp(kiln_attr_str(a->op, a->attrs, "mode"), "bilinear");
    bool align = kiln_attr_bool(a->op, a->attrs, "align_corners");
    bool half = x->dtype == KILN_F16 || x->dtype == KILN_BF16; /* computed in f32, rounded once */
    size_t n_in = half && bilinear ? (size_t)x->numel : 0, n_out = half && bilinear ? (size_t)y->numel : 0;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(oh + ow));
    void *weights = malloc(sizeof(double) * (size_t)(oh + ow)); /* T per output row / column */
    float *tmp_in = malloc(sizeof(float) * (n_in + 1)), *tmp_out = malloc(sizeof(float) * (n_out + 1));
    kiln_status s = KILN_OK;
    if (!idx || !weights || !tmp_in || !tmp_out) {
        s = kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    } else if (!bilinear) {
        nearest_index(ih, oh, idx);
        nearest_index(iw, ow, idx + oh);
        resize_nearest(y->data, x->data, planes, ih, iw, oh, ow, idx, idx + oh, kiln_dtype_size(x->dtype));
    } else if (x->dtype == KILN_F64) {
        bilinear_f64(y->data, x->data, planes, ih, iw, oh, ow, align, idx, weights);
    } else if (x->dtype == KILN_F32) {
        bilinear_f32(y->data, x->data, planes, ih, iw, oh, ow, align, idx, weights);
    } else {
        kiln_convert(KILN_F32, tmp_in, x->dtype, x->data, x->numel);
        bilinear_f32(tmp_out, tmp_in, planes, ih, iw, oh, ow, align, idx, weights);
        kiln_convert(y->dtype, y->data, KILN_F32, tmp_out, y->numel);
    }
    free(idx);
    free(weights);
    free(tmp_in);
    free(tmp_out);
    return s;
}
