/* nn_grad.c — backward primitives of convolution and pooling (used by src/grad/nn.c):
 * conv2d_backward_weight and the max / avg / adaptive pool backwards. Shape rules check the
 * operands against the forward op's own shape rule; reference kernels loop over the windows. */
#include "ir/ir.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shape rules -------------------------------------------------------------------------- */
/* The result type of forward op `fwd` on inputs (x, w) (w NULL for pools), with the attributes
 * `fwd`'s schema shares with a->op copied by name (the rest at their defaults). Errors name the
 * forward op and say which backward op asked. */
static const kiln_type *forward_type(kiln_shape_args *a, kiln_op fwd, const kiln_type *x, const kiln_type *w) {
    const kiln_op_info *info = kiln_op_info_get(fwd);
    kiln_attr attrs[16];
    char where[256];
    kiln_attrs_default(fwd, attrs);
    for (int k = 0; k < info->n_attrs; k++) {
        int i = kiln_attr_index(a->op, info->attrs[k].name);
        if (i >= 0) attrs[k] = a->attrs[i];
    }
    snprintf(where, sizeof where, "%s (checking the operands of %s)", a->where ? a->where : "?", kiln_op_info_get(a->op)->name);
    kiln_shape_args f = {a->ctx, a->arena, fwd, attrs, w ? 2 : 1, (const kiln_type *[]){x, w}, where};
    return info->shape(&f);
}

/* Operand `i` as a 4-D float tensor of dtype dt (dt < 0: any float dtype); NULL with an error. */
static const kiln_type *operand4(kiln_shape_args *a, int i, const char *name, int dt) {
    const kiln_type *t = a->in[i];
    char tb[256];
    if (t->kind == KILN_TYPE_TENSOR && t->ndim == 4 && kiln_dtype_is_float(t->dtype) && (dt < 0 || (int)t->dtype == dt))
        return t;
    if (dt < 0) return kiln_op_fail(a, "%s is %s, expected a 4-D float tensor", name, kiln_type_cstr(t, tb, sizeof tb));
    return kiln_op_fail(a, "%s is %s, expected a 4-D %s tensor", name, kiln_type_cstr(t, tb, sizeof tb),
                        kiln_dtype_name((kiln_dtype)dt));
}

/* conv2d_backward_weight(x[N, C, H, W], dy[N, O, oh, ow]) -> dw[O, C/groups, kh, kw]: the weight
 * adjoint of conv2d(x, w) with these attributes. dy may be smaller than conv2d's output (then
 * the missing positions count as zero): conv2d_transpose's weight adjoint uses that. */
const struct kiln_type *kiln_shape_conv2d_backward_weight(kiln_shape_args *a) {
    char err[256], tx[256], td[256], sk[64];
    int64_t k[2];
    const kiln_type *x = operand4(a, 0, "input", -1), *dy = x ? operand4(a, 1, "dy", (int)x->dtype) : NULL;
    if (!dy) return NULL;
    if (!kiln_window_attr(a->op, a->attrs, "kernel", 1, k, err, sizeof err)) return kiln_op_fail(a, "%s", err);
    int64_t groups = kiln_attr_int(a->op, a->attrs, "groups");
    int64_t cg = groups >= 1 && x->shape[1] % groups == 0 ? x->shape[1] / groups : x->shape[1]; /* else conv2d objects */
    int64_t ws[4] = {dy->shape[1], cg, k[0], k[1]};
    const kiln_type *w = kiln_type_tensor_a(a->arena, x->dtype, 4, ws);
    const kiln_type *y = forward_type(a, KILN_OP_CONV2D, x, w);
    if (!y) return NULL;
    if (dy->shape[0] != y->shape[0] || dy->shape[2] > y->shape[2] || dy->shape[3] > y->shape[3])
        return kiln_op_fail(a, "dy %s does not fit conv2d's output %s for input %s and kernel %s",
                            kiln_type_cstr(dy, td, sizeof td), kiln_type_cstr(y, tx, sizeof tx),
                            kiln_type_cstr(x, err, sizeof err), kiln_shape_str(2, k, sk, sizeof sk));
    return w;
}

/* Pool backwards take the forward's attributes; max pools: (x, dy) -> dx shaped like x; avg
 * pools: (dy) -> dx of shape [N, C, input_size]. dy must have the forward's result type. */
const struct kiln_type *kiln_shape_pool2d_backward(kiln_shape_args *a) {
    char err[256], tx[256], td[256];
    bool is_max = a->op == KILN_OP_MAX_POOL2D_BACKWARD || a->op == KILN_OP_ADAPTIVE_MAX_POOL2D_BACKWARD;
    bool adaptive = a->op == KILN_OP_ADAPTIVE_AVG_POOL2D_BACKWARD || a->op == KILN_OP_ADAPTIVE_MAX_POOL2D_BACKWARD;
    kiln_op fwd = is_max ? (adaptive ? KILN_OP_ADAPTIVE_MAX_POOL2D : KILN_OP_MAX_POOL2D)
                         : (adaptive ? KILN_OP_ADAPTIVE_AVG_POOL2D : KILN_OP_AVG_POOL2D);
    if (is_max && !operand4(a, 0, "input", -1)) return NULL;
    const kiln_type *x, *dy = operand4(a, is_max, "dy", is_max ? (int)a->in[0]->dtype : -1);
    if (!dy) return NULL;
    if (is_max) {
        x = a->in[0];
    } else {
        int64_t hw[2];
        if (!kiln_window_attr(a->op, a->attrs, "input_size", 1, hw, err, sizeof err)) return kiln_op_fail(a, "%s", err);
        x = kiln_type_tensor_a(a->arena, dy->dtype, 4, (int64_t[]){dy->shape[0], dy->shape[1], hw[0], hw[1]});
    }
    const kiln_type *y = forward_type(a, fwd, x, NULL);
    if (!y) return NULL;
    if (!kiln_type_equal(y, dy))
        return kiln_op_fail(a, "dy is %s, but %s of input %s gives %s", kiln_type_cstr(dy, td, sizeof td),
                            kiln_op_info_get(fwd)->name, kiln_type_cstr(x, tx, sizeof tx), kiln_type_cstr(y, err, sizeof err));
    return x;
}

/* ---- conv2d_backward_weight kernel -------------------------------------------------------- */
/* The small positions i in [0, n) whose tap i*s + off lands inside [0, size): [*lo, *hi). */
static void tap_range(int64_t off, int64_t s, int64_t size, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s, h = size - off <= 0 ? 0 : (size - off - 1) / s + 1;
    *lo = l;
    *hi = h < n ? h : n;
}

typedef struct bw_geom {
    int64_t n, c, h, w, o, oh, ow, kh, kw, groups, cg, og;
    int64_t stride[2], pad[4], dil[2];
} bw_geom;

/* dw[o, c, ki, kj] = sum over n, (i, j) of dy[n, o, i, j] * x[n, q*cg + c, i*s0 - top + ki*d0,
 * j*s1 - left + kj*d1] (q = o's group; taps outside x read zero); accumulated in T. */
#define BW_DEFINE(T)                                                                                \
    static void conv_bw_##T(const bw_geom *g, const T *x, const T *dy, T *dw) {                     \
        memset(dw, 0, sizeof(T) * (size_t)(g->o * g->cg * g->kh * g->kw));                          \
        for (int64_t n = 0; n < g->n; n++)                                                         \
            for (int64_t o = 0; o < g->o; o++) {                                                   \
                const T *dyp = dy + (n * g->o + o) * g->oh * g->ow;                                \
                for (int64_t c = 0; c < g->cg; c++) {                                              \
                    const T *xp = x + (n * g->c + o / g->og * g->cg + c) * g->h * g->w;            \
                    T *wp = dw + (o * g->cg + c) * g->kh * g->kw;                                  \
                    for (int64_t ki = 0; ki < g->kh; ki++) {                                       \
                        int64_t offh = ki * g->dil[0] - g->pad[0], i0, i1;                         \
                        tap_range(offh, g->stride[0], g->h, g->oh, &i0, &i1);                      \
                        for (int64_t kj = 0; kj < g->kw; kj++) {                                   \
                            int64_t offw = kj * g->dil[1] - g->pad[1], j0, j1;                     \
                            tap_range(offw, g->stride[1], g->w, g->ow, &j0, &j1);                  \
                            T s = 0;                                                               \
                            for (int64_t i = i0; i < i1; i++) {                                    \
                                const T *xr = xp + (i * g->stride[0] + offh) * g->w + offw;        \
                                for (int64_t j = j0; j < j1; j++) s += dyp[i * g->ow + j] * xr[j * g->stride[1]]; \
                            }                                                                      \
                            wp[ki * g->kw + kj] += s;                                              \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }
BW_DEFINE(float)
BW_DEFINE(double)

/* Converts the inputs to the accumulation dtype, runs f32 / f64 `run` and stores the output. */
typedef void (*acc_run_fn)(const void *plan, kiln_dtype acc, void *const *in, void *out);
static kiln_status run_in_acc(kiln_kernel_args *a, const void *plan, acc_run_fn run) {
    kiln_tensor *out = a->out[0];
    kiln_dtype acc = kiln_acc_dtype(out->dtype);
    void *owned[3] = {NULL, NULL, NULL}, *data[2] = {NULL, NULL};
    bool ok = true;
    for (int i = 0; i < a->n_in; i++) ok = ok && (data[i] = kiln_data_as(a->in[i], acc, true, &owned[i]));
    void *y = ok ? kiln_data_as(out, acc, false, &owned[2]) : NULL;
    if (y) {
        run(plan, acc, data, y);
        if (owned[2]) kiln_convert(out->dtype, out->data, acc, owned[2], out->numel);
    }
    for (int i = 0; i < 3; i++) free(owned[i]);
    return y ? KILN_OK : kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory converting %lld elements", (long long)out->numel);
}

static void conv_bw_run(const void *plan, kiln_dtype acc, void *const *in, void *out) {
    if (acc == KILN_F32) conv_bw_float(plan, in[0], in[1], out);
    else conv_bw_double(plan, in[0], in[1], out);
}

kiln_status kiln_ref_conv2d_backward_weight(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *dy = a->in[1];
    const kiln_tensor *dw = a->out[0];
    char err[256];
    bw_geom g = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3], .o = dy->shape[1],
                 .oh = dy->shape[2], .ow = dy->shape[3], .kh = dw->shape[2], .kw = dw->shape[3],
                 .groups = kiln_attr_int(a->op, a->attrs, "groups"), .cg = dw->shape[1]};
    g.og = g.o / g.groups;
    if (!kiln_window_attr(a->op, a->attrs, "stride", 1, g.stride, err, sizeof err) ||
        !kiln_window_attr(a->op, a->attrs, "padding", 0, g.pad, err, sizeof err) ||
        !kiln_window_attr(a->op, a->attrs, "dilation", 1, g.dil, err, sizeof err))
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "%s", err);
    return run_in_acc(a, &g, conv_bw_run);
}

/* ---- pool backward kernels ---------------------------------------------------------------- */
/* One output position's window along one axis: taps start, start + step, ... < end (all inside
 * the input); span is its length counting padding (avg_pool2d's divisor with count_include_pad).
 * The same windows as the forward kernels in pool.c (torch's). */
typedef struct bwin {
    int64_t start, end, step, span;
} bwin;

typedef struct pool_bplan {
    int64_t planes, h, w, oh, ow;
    bwin *rows, *cols;
    bool include_pad;
    int64_t tile[2]; /* > 0: windows are disjoint kh x kw tiles from the origin (stride = kernel,
                      * no padding or dilation: the usual 2x2 pool), indexed directly */
} pool_bplan;

/* Windows of `out` positions over an input of length `in` (a non-adaptive pool's kernel k,
 * stride s, dilation d and paddings pl / pr; adaptive: [floor(o*in/out), ceil((o+1)*in/out))). */
static void bwindows(bool adaptive, int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t pl, int64_t pr,
                     bwin *win) {
    for (int64_t o = 0; o < out; o++) {
        bwin *v = &win[o];
        if (adaptive) {
            v->start = o * in / out, v->end = ((o + 1) * in + out - 1) / out, v->step = 1;
            v->span = v->end - v->start;
            continue;
        }
        int64_t s0 = o * s - pl, e0 = s0 + d * (k - 1) + 1;
        v->span = (s0 + k < in + pr ? s0 + k : in + pr) - s0;
        v->step = d;
        v->start = s0 < 0 ? s0 + (-s0 + d - 1) / d * d : s0;
        v->end = e0 < in ? e0 : in;
    }
}

/* max: dy goes to the first maximum of each window in row-major order (the last NaN if any,
 * as torch); avg: dy / divisor goes to every tap. dx accumulates. */
#define POOL_BW_DEFINE(T)                                                                           \
    static void max_bw_tiled_##T(const pool_bplan *p, const T *x, const T *dy, T *dx) {             \
        int64_t kh = p->tile[0], kw = p->tile[1];                                                   \
        for (int64_t q = 0; q < p->planes; q++, x += p->h * p->w, dx += p->h * p->w)                \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++, dy++) {                                      \
                    int64_t at = oi * kh * p->w + oj * kw, best = at;                               \
                    for (int64_t i = 0; i < kh; i++)                                                \
                        for (int64_t j = 0; j < kw; j++) {                                          \
                            int64_t e = at + i * p->w + j;                                          \
                            if (x[e] > x[best] || isnan(x[e])) best = e;                            \
                        }                                                                           \
                    dx[best] = *dy;                                                                 \
                }                                                                                   \
    }                                                                                               \
    static void max_bw_##T(const pool_bplan *p, const T *x, const T *dy, T *dx) {                   \
        if (p->tile[0]) return max_bw_tiled_##T(p, x, dy, dx);                                     \
        for (int64_t q = 0; q < p->planes; q++, x += p->h * p->w, dx += p->h * p->w)                \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++, dy++) {                                      \
                    const bwin *r = &p->rows[oi], *c = &p->cols[oj];                                \
                    int64_t best = -1;                                                              \
                    for (int64_t i = r->start; i < r->end; i += r->step)                            \
                        for (int64_t j = c->start; j < c->end; j += c->step) {                      \
                            int64_t e = i * p->w + j;                                               \
                            if (best < 0 || x[e] > x[best] || isnan(x[e])) best = e;                \
                        }                                                                           \
                    if (best >= 0) dx[best] += *dy;                                                 \
                }                                                                                   \
    }                                                                                               \
    static void avg_bw_##T(const pool_bplan *p, const T *dy, T *dx) {                               \
        for (int64_t q = 0; q < p->planes; q++, dx += p->h * p->w)                                  \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++, dy++) {                                      \
                    const bwin *r = &p->rows[oi], *c = &p->cols[oj];                                \
                    int64_t div = p->include_pad ? r->span * c->span : (r->end - r->start) * (c->end - c->start); \
                    T g = *dy / (T)div;                                                             \
                    for (int64_t i = r->start; i < r->end; i++)                                     \
                        for (int64_t j = c->start; j < c->end; j++) dx[i * p->w + j] += g;          \
                }                                                                                   \
    }
POOL_BW_DEFINE(float)
POOL_BW_DEFINE(double)

static void pool_bw_run(const void *plan, kiln_dtype acc, void *const *in, void *out) {
    const pool_bplan *p = plan;
    memset(out, 0, kiln_dtype_size(acc) * (size_t)(p->planes * p->h * p->w));
    bool is_max = in[1] != NULL;
    if (acc == KILN_F32) is_max ? max_bw_float(p, in[0], in[1], out) : avg_bw_float(p, in[0], out);
    else is_max ? max_bw_double(p, in[0], in[1], out) : avg_bw_double(p, in[0], out);
}

static kiln_status pool_bw(kiln_kernel_args *a) {
    const kiln_tensor *dy = a->in[a->n_in - 1], *dx = a->out[0];
    bool adaptive = a->op == KILN_OP_ADAPTIVE_AVG_POOL2D_BACKWARD || a->op == KILN_OP_ADAPTIVE_MAX_POOL2D_BACKWARD;
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, pad[4] = {0, 0, 0, 0};
    char err[256];
    if (!adaptive) {
        bool ok = kiln_window_attr(a->op, a->attrs, "kernel", 1, k, err, sizeof err) &&
                  kiln_window_attr(a->op, a->attrs, "padding", 0, pad, err, sizeof err) &&
                  (kiln_attr_index(a->op, "dilation") < 0 || kiln_window_attr(a->op, a->attrs, "dilation", 1, d, err, sizeof err));
        if (ok && !kiln_attr_get(a->op, a->attrs, "stride")->set) memcpy(s, k, sizeof s);
        else ok = ok && kiln_window_attr(a->op, a->attrs, "stride", 1, s, err, sizeof err);
        if (!ok) return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "%s", err);
    }
    pool_bplan p = {dx->shape[0] * dx->shape[1], dx->shape[2], dx->shape[3], dy->shape[2], dy->shape[3], NULL, NULL,
                    a->op == KILN_OP_AVG_POOL2D_BACKWARD && kiln_attr_bool(a->op, a->attrs, "count_include_pad"), {0, 0}};
    bwin *win = malloc(sizeof(bwin) * (size_t)(p.oh + p.ow));
    if (!win) return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for %lld pooling windows", (long long)(p.oh + p.ow));
    p.rows = win, p.cols = win + p.oh;
    if (!adaptive && kiln_pool_tiles(k, s, d, pad, p.h, p.w, p.oh, p.ow))
        p.tile[0] = k[0], p.tile[1] = k[1];
    bwindows(adaptive, p.h, p.oh, k[0], s[0], d[0], pad[0], pad[2], p.rows);
    bwindows(adaptive, p.w, p.ow, k[1], s[1], d[1], pad[1], pad[3], p.cols);
    kiln_status st = run_in_acc(a, &p, pool_bw_run);
    free(win);
    return st;
}

kiln_status kiln_ref_max_pool2d_backward(kiln_kernel_args *a) { return pool_bw(a); }
kiln_status kiln_ref_avg_pool2d_backward(kiln_kernel_args *a) { return pool_bw(a); }
kiln_status kiln_ref_adaptive_avg_pool2d_backward(kiln_kernel_args *a) { return pool_bw(a); }
kiln_status kiln_ref_adaptive_max_pool2d_backward(kiln_kernel_args *a) { return pool_bw(a); }
