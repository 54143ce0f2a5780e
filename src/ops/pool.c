/* pool.c — 2-D pooling over NCHW inputs with torch semantics: max_pool2d, avg_pool2d and the
 * adaptive pools. Every kernel reduces precomputed row and column windows of each plane. */
#include "ir/ir.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- geometry ----------------------------------------------------------------------------- */
typedef struct pool_geom {
    int64_t n, c, h, w, oh, ow;
    int64_t kernel[2], stride[2], pad[4], dil[2]; /* pad: top, left, bottom, right */
    bool adaptive;
} pool_geom;

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* torch's pooling_output_shape_pad_lr: in ceil mode the last window must start inside the input
 * or the left padding, never wholly in the right padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t pl, int64_t pr, int64_t d, bool ceil_mode) {
    int64_t out = floor_div(in + pl + pr - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + pl) out--;
    return out;
}

/* Fills g from the input shape and the op's attributes; false with a message in err if bad. */
static bool pool_geom_make(kiln_op op, const kiln_attr *attrs, int nx, const int64_t *xs, pool_geom *g, char *err,
                           size_t es) {
    char sx[128];
    kiln_shape_str(nx, xs, sx, sizeof sx);
    memset(g, 0, sizeof *g);
    if (nx != 4 || xs[1] < 1 || xs[2] < 1 || xs[3] < 1) {
        snprintf(err, es, "needs a 4-D input [N, C, H, W] with non-empty C, H, W, got %s", sx);
        return false;
    }
    g->n = xs[0], g->c = xs[1], g->h = xs[2], g->w = xs[3];
    g->adaptive = op == KILN_OP_ADAPTIVE_AVG_POOL2D || op == KILN_OP_ADAPTIVE_MAX_POOL2D;
    if (g->adaptive) {
        int64_t os[2];
        if (!kiln_window_attr(op, attrs, "output_size", 1, os, err, es)) return false;
        g->oh = os[0], g->ow = os[1];
        return true;
    }
    g->dil[0] = g->dil[1] = 1;
    if (!kiln_window_attr(op, attrs, "kernel", 1, g->kernel, err, es) ||
        !kiln_window_attr(op, attrs, "padding", 0, g->pad, err, es) ||
        (kiln_attr_index(op, "dilation") >= 0 && !kiln_window_attr(op, attrs, "dilation", 1, g->dil, err, es)))
        return false;
    if (!kiln_attr_get(op, attrs, "stride")->set) memcpy(g->stride, g->kernel, sizeof g->stride);
    else if (!kiln_window_attr(op, attrs, "stride", 1, g->stride, err, es)) return false;
    for (int i = 0; i < 4; i++)
        if (g->pad[i] > g->kernel[i % 2] / 2) {
            snprintf(err, es, "padding %lld must be at most half the kernel size %lld (padding index %d, input %s)",
                     (long long)g->pad[i], (long long)g->kernel[i % 2], i, sx);
            return false;
        }
    bool ceil_mode = kiln_attr_bool(op, attrs, "ceil_mode");
    g->oh = pool_out_size(g->h, g->kernel[0], g->stride[0], g->pad[0], g->pad[2], g->dil[0], ceil_mode);
    g->ow = pool_out_size(g->w, g->kernel[1], g->stride[1], g->pad[1], g->pad[3], g->dil[1], ceil_mode);
    if (g->oh < 1 || g->ow < 1) {
        snprintf(err, es, "input %s with kernel [%lld, %lld], dilation [%lld, %lld], padding [%lld, %lld, %lld, %lld] "
                 "gives output size %lld x %lld, which is too small", sx, (long long)g->kernel[0],
                 (long long)g->kernel[1], (long long)g->dil[0], (long long)g->dil[1], (long long)g->pad[0],
                 (long long)g->pad[1], (long long)g->pad[2], (long long)g->pad[3], (long long)g->oh, (long long)g->ow);
        return false;
    }
    return true;
}

static const kiln_type *pool_infer(kiln_shape_args *a) {
    char ta[256], err[512];
    const kiln_type *x = a->in[0];
    pool_geom g;
    if (x->kind != KILN_TYPE_TENSOR) return kiln_op_fail(a, "input is %s, expected a tensor", kiln_type_cstr(x, ta, sizeof ta));
    if (!pool_geom_make(a->op, a->attrs, x->ndim, x->shape, &g, err, sizeof err)) return kiln_op_fail(a, "%s", err);
    return kiln_type_tensor_a(a->arena, x->dtype, 4, (int64_t[]){g.n, g.c, g.oh, g.ow});
}

const struct kiln_type *kiln_shape_pool2d(kiln_shape_args *a) { return pool_infer(a); }
const struct kiln_type *kiln_shape_adaptive_pool2d(kiln_shape_args *a) { return pool_infer(a); }

/* ---- windows ------------------------------------------------------------------------------ */
/* Output position o along one axis reads input [start, end) in steps of `step`; `span` is the
 * window's length counting padding (avg_pool2d's divisor when count_include_pad). */
typedef struct pool_win {
    int64_t start, end, step, span;
} pool_win;

static void pool_windows(const pool_geom *g, int axis, int64_t out, pool_win *win) {
    int64_t in = axis ? g->w : g->h;
    for (int64_t o = 0; o < out; o++) {
        pool_win *v = &win[o];
        if (g->adaptive) { /* torch: [floor(o*in/out), ceil((o+1)*in/out)) */
            v->start = o * in / out;
            v->end = ((o + 1) * in + out - 1) / out;
            v->step = 1;
            v->span = v->end - v->start;
            continue;
        }
        int64_t k = g->kernel[axis], d = g->dil[axis], s0 = o * g->stride[axis] - g->pad[axis];
        int64_t e0 = s0 + d * (k - 1) + 1;
        v->span = (s0 + k < in + g->pad[axis + 2] ? s0 + k : in + g->pad[axis + 2]) - s0;
        v->step = d;
        v->start = s0 < 0 ? s0 + (-s0 + d - 1) / d * d : s0; /* first tap inside the input */
        v->end = e0 < in ? e0 : in;
    }
}

/* ---- kernels ------------------------------------------------------------------------------ */
typedef struct pool_plan {
    int64_t planes, h, w, oh, ow;
    const pool_win *rows, *cols;
    bool include_pad;
    int64_t tile[2]; /* > 0: windows are disjoint kh x kw tiles from the origin (stride = kernel,
                      * no padding or dilation: the usual 2x2 pool), indexed directly */
} pool_plan;

/* max over each window; GREATER(v, m) says v replaces the running max m (NaN wins for floats). */
#define POOL_MAX_DEFINE(T, LOWEST, GREATER)                                                         \
    static void pool_max_tiled_##T(const pool_plan *p, const T *x, T *y) {                          \
        int64_t kh = p->tile[0], kw = p->tile[1];                                                   \
        for (int64_t q = 0; q < p->planes; q++, x += p->h * p->w)                                   \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++) {                                            \
                    const T *t = x + oi * kh * p->w + oj * kw;                                      \
                    T m = LOWEST;                                                                   \
                    for (int64_t i = 0; i < kh; i++)                                                \
                        for (int64_t j = 0; j < kw; j++)                                            \
                            if (GREATER(t[i * p->w + j], m)) m = t[i * p->w + j];                  \
                    *y++ = m;                                                                       \
                }                                                                                   \
    }                                                                                               \
    static void pool_max_##T(const pool_plan *p, const T *x, T *y) {                                \
        if (p->tile[0]) return pool_max_tiled_##T(p, x, y);                                        \
        for (int64_t q = 0; q < p->planes; q++, x += p->h * p->w)                                   \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++) {                                            \
                    const pool_win *r = &p->rows[oi], *c = &p->cols[oj];                            \
                    T m = LOWEST;                                                                   \
                    for (int64_t i = r->start; i < r->end; i += r->step)                            \
                        for (int64_t j = c->start; j < c->end; j += c->step)                        \
                            if (GREATER(x[i * p->w + j], m)) m = x[i * p->w + j];                  \
                    *y++ = m;                                                                       \
                }                                                                                   \
    }
#define GREATER_NAN(v, m) ((v) > (m) || isnan(v))
#define GREATER_INT(v, m) ((v) > (m))
POOL_MAX_DEFINE(float, -INFINITY, GREATER_NAN)
POOL_MAX_DEFINE(double, -INFINITY, GREATER_NAN)
POOL_MAX_DEFINE(int64_t, INT64_MIN, GREATER_INT)

/* mean over each window (windows of avg pools have step 1). */
#define POOL_AVG_DEFINE(T)                                                                          \
    static void pool_avg_##T(const pool_plan *p, const T *x, T *y) {                                \
        for (int64_t q = 0; q < p->planes; q++, x += p->h * p->w)                                   \
            for (int64_t oi = 0; oi < p->oh; oi++)                                                  \
                for (int64_t oj = 0; oj < p->ow; oj++) {                                            \
                    const pool_win *r = &p->rows[oi], *c = &p->cols[oj];                            \
                    T s = 0;                                                                        \
                    for (int64_t i = r->start; i < r->end; i++)                                     \
                        for (int64_t j = c->start; j < c->end; j++) s += x[i * p->w + j];           \
                    int64_t div = p->include_pad ? r->span * c->span : (r->end - r->start) * (c->end - c->start); \
                    *y++ = s / (T)div;                                                              \
                }                                                                                   \
    }
POOL_AVG_DEFINE(float)
POOL_AVG_DEFINE(double)

static kiln_status pool_run(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *out = a->out[0];
    bool is_max = a->op == KILN_OP_MAX_POOL2D || a->op == KILN_OP_ADAPTIVE_MAX_POOL2D;
    pool_geom g;
    char err[512];
    if (!pool_geom_make(a->op, a->attrs, x->ndim, x->shape, &g, err, sizeof err))
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "%s", err);
    /* max is exact in any float type (f32 for f32 / f16 / bf16, f64 for f64) and i64; means
     * accumulate in f32 (f64 for f64) */
    kiln_dtype acc = kiln_dtype_is_float(out->dtype) ? kiln_acc_dtype(out->dtype) : is_max ? KILN_I64 : kiln_acc_dtype(out->dtype);
    pool_plan p = {g.n * g.c, g.h, g.w, g.oh, g.ow, NULL, NULL,
                   a->op == KILN_OP_AVG_POOL2D && kiln_attr_bool(a->op, a->attrs, "count_include_pad"), {0, 0}};
    if (!g.adaptive && kiln_pool_tiles(g.kernel, g.stride, g.dil, g.pad, g.h, g.w, g.oh, g.ow))
        p.tile[0] = g.kernel[0], p.tile[1] = g.kernel[1];
    pool_win *win = malloc(sizeof(pool_win) * (size_t)(g.oh + g.ow));
    void *own_x, *own_y, *dx = kiln_data_as(x, acc, true, &own_x), *dy = kiln_data_as(out, acc, false, &own_y);
    kiln_status s = KILN_OK;
    if (!win || !dx || !dy) {
        s = kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    } else {
        pool_windows(&g, 0, g.oh, win);
        pool_windows(&g, 1, g.ow, win + g.oh);
        p.rows = win, p.cols = win + g.oh;
        if (acc == KILN_F64) (is_max ? pool_max_double : pool_avg_double)(&p, dx, dy);
        else if (acc == KILN_I64) pool_max_int64_t(&p, dx, dy);
        else (is_max ? pool_max_float : pool_avg_float)(&p, dx, dy);
        if (own_y) kiln_convert(out->dtype, out->data, acc, own_y, out->numel);
    }
    free(win);
    free(own_x);
    free(own_y);
    return s;
}

kiln_status kiln_ref_max_pool2d(kiln_kernel_args *a) { return pool_run(a); }
kiln_status kiln_ref_avg_pool2d(kiln_kernel_args *a) { return pool_run(a); }
kiln_status kiln_ref_adaptive_avg_pool2d(kiln_kernel_args *a) { return pool_run(a); }
kiln_status kiln_ref_adaptive_max_pool2d(kiln_kernel_args *a) { return pool_run(a); }
