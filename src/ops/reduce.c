/* reduce.c — reductions and scans: shape rules, reference kernels (sum prod max min all any,
 * argmax/argmin, cumsum) and the decompositions of mean, variance, l2norm, logsumexp, sum_to.
 * Kernels accumulate in double (float inputs) or int64 (int and bool inputs). */
#include "ir/ir.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shape rules --------------------------------------------------------------------------- */
/* Sum-like results widen bool and ints to i64 (numpy / torch); floats keep their dtype. */
static kiln_dtype widen_int(kiln_dtype dt) { return kiln_dtype_is_float(dt) ? dt : KILN_I64; }

/* Axis of a single-axis op; a 0-d input takes axis 0 or -1 (as torch). -1 if out of range. */
static int single_axis(int64_t axis, int ndim) {
    if (ndim == 0) return axis == 0 || axis == -1 ? 0 : -1;
    return kiln_norm_axis(axis, ndim);
}

static const kiln_type *fail_axis(kiln_shape_args *a, int64_t axis, const kiln_type *t) {
    char sb[160];
    return kiln_op_fail(a, "axis %lld is out of range for shape %s", (long long)axis,
                        kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
}

/* max / min / argmax / argmin have no identity: reducing an empty axis into a non-empty
 * result is an error (torch and numpy raise too). logsumexp of nothing is -inf (torch). */
static bool fail_if_empty(kiln_shape_args *a, const kiln_type *t, int64_t count, int64_t out_numel) {
    char sb[160];
    if (count > 0 || out_numel == 0) return false;
    kiln_op_fail(a, "reduction over an empty axis of shape %s (the op has no identity)",
                 kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
    return true;
}

const struct kiln_type *kiln_shape_reduce(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    const kiln_attr *axes = kiln_attr_get(a->op, a->attrs, "axes");
    bool keepdims = kiln_attr_bool(a->op, a->attrs, "keepdims"), mask[KILN_MAX_DIMS];
    char sb[160], ab[160];
    int r = kiln_norm_axes(axes, t->ndim, mask);
    if (r < 0) {
        int64_t bad = axes->ints[-1 - r];
        int ax = t->ndim ? kiln_norm_axis(bad, t->ndim) : -1;
        if (ax < 0) return fail_axis(a, bad, t);
        return kiln_op_fail(a, "axis %lld is repeated in axes %s for shape %s", (long long)bad,
                            kiln_shape_str(axes->n, axes->ints, ab, sizeof ab),
                            kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
    }
    int64_t shape[KILN_MAX_DIMS], count = 1, out_numel = 1;
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (mask[i]) count *= t->shape[i];
        else out_numel *= t->shape[i];
        if (!mask[i] || keepdims) shape[nd++] = mask[i] ? 1 : t->shape[i];
    }
    kiln_dtype dt = t->dtype;
    switch (a->op) {
    case KILN_OP_SUM: case KILN_OP_PROD: dt = widen_int(dt); break;
    case KILN_OP_ALL: case KILN_OP_ANY: dt = KILN_BOOL; break;
    case KILN_OP_MAX: case KILN_OP_MIN:
        if (fail_if_empty(a, t, count, out_numel)) return NULL;
        break;
    default: break; /* mean, variance, l2norm: float in, same float out */
    }
    return kiln_type_tensor_a(a->arena, dt, nd, shape);
}

const struct kiln_type *kiln_shape_argreduce(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    bool keepdims = kiln_attr_bool(a->op, a->attrs, "keepdims");
    int64_t shape[KILN_MAX_DIMS], count = 1, out_numel = 1;
    int ax = -1, nd = 0;
    if (axis->set && (ax = single_axis(axis->i, t->ndim)) < 0) return fail_axis(a, axis->i, t);
    for (int i = 0; i < t->ndim; i++) {
        bool reduced = !axis->set || i == ax;
        if (reduced) count *= t->shape[i];
        else out_numel *= t->shape[i];
        if (!reduced || keepdims) shape[nd++] = reduced ? 1 : t->shape[i];
    }
    if (fail_if_empty(a, t, count, out_numel)) return NULL;
    return kiln_type_tensor_a(a->arena, KILN_I64, nd, shape);
}

const struct kiln_type *kiln_shape_cumsum(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    if (single_axis(axis, t->ndim) < 0) return fail_axis(a, axis, t);
    return kiln_type_tensor_a(a->arena, widen_int(t->dtype), t->ndim, t->shape);
}

/* sum_to(x, shape): the target must broadcast to x's shape (numpy rules); keeps x's dtype. */
const struct kiln_type *kiln_shape_sum_to(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    const kiln_attr *s = kiln_attr_get(a->op, a->attrs, "shape");
    char sb[160], tb[160];
    int lead = t->ndim - s->n;
    bool ok = lead >= 0;
    for (int i = 0; ok && i < s->n; i++) ok = s->ints[i] == t->shape[lead + i] || s->ints[i] == 1;
    if (!ok)
        return kiln_op_fail(a, "target shape %s does not broadcast to the input shape %s",
                            kiln_shape_str(s->n, s->ints, sb, sizeof sb), kiln_shape_str(t->ndim, t->shape, tb, sizeof tb));
    return kiln_type_tensor_a(a->arena, t->dtype, s->n, s->ints);
}

/* ---- typed inner loops --------------------------------------------------------------------- */
/* Kernels work on chunks of at most CHUNK elements (or one row when rows are longer), held in
 * 8-byte slots: double when the input is a float, else int64 (wrapping like C). */
#define CHUNK 4096

/* Loads / stores n contiguous elements at element `start` of t from / to such slots; the dtype
 * switch sits outside the loop. Lists: (dtype, C type, conversion). */
#define LOAD_F64_TYPES(X)                                                                       \
    X(KILN_F32, float, (double)) X(KILN_F64, double, (double)) X(KILN_F16, uint16_t, kiln_f16_to_f32) \
    X(KILN_BF16, uint16_t, kiln_bf16_to_f32)
#define INT_TYPES(X)                                                                            \
    X(KILN_I8, int8_t, (int64_t)) X(KILN_U8, uint8_t, (int64_t)) X(KILN_I32, int32_t, (int64_t)) \
    X(KILN_I64, int64_t, (int64_t)) X(KILN_BOOL, uint8_t, 0 !=)
/* The dtypes a float accumulator is stored to: its own float dtype, or bool (all / any). */
static uint16_t to_f16(double v) { return kiln_f32_to_f16((float)v); } /* through float, as kiln_store_f64 */
static uint16_t to_bf16(double v) { return kiln_f32_to_bf16((float)v); }
#define STORE_F64_TYPES(X)                                                                      \
    X(KILN_F32, float, (float)) X(KILN_F64, double, (double)) X(KILN_F16, uint16_t, to_f16)     \
    X(KILN_BF16, uint16_t, to_bf16) X(KILN_BOOL, uint8_t, 0 !=)

#define LOAD_CASE(DT, T, CONV)                                                                  \
    case DT:                                                                                    \
        for (int64_t i = 0; i < n; i++) dst[i] = (SLOT)(CONV(((const T *)t->data)[start + i])); \
        break;
#define STORE_CASE(DT, T, CONV)                                                                 \
    case DT:                                                                                    \
        for (int64_t i = 0; i < n; i++) ((T *)t->data)[start + i] = (T)(CONV(src[i]));          \
        break;

#define SLOT double
static void load_f64(const kiln_tensor *t, int64_t start, int64_t n, SLOT *dst) {
    switch (t->dtype) {
        LOAD_F64_TYPES(LOAD_CASE)
        INT_TYPES(LOAD_CASE)
    default: break;
    }
}
static void store_f64(kiln_tensor *t, int64_t start, int64_t n, const SLOT *src) {
    switch (t->dtype) {
        STORE_F64_TYPES(STORE_CASE)
    default: break;
    }
}
#undef SLOT
#define SLOT int64_t
static void load_i64(const kiln_tensor *t, int64_t start, int64_t n, SLOT *dst) {
    switch (t->dtype) {
        INT_TYPES(LOAD_CASE)
    default: break;
    }
}
static void store_i64(kiln_tensor *t, int64_t start, int64_t n, const SLOT *src) {
    switch (t->dtype) {
        INT_TYPES(STORE_CASE)
    default: break;
    }
}
#undef SLOT

static void load_slots(const kiln_tensor *t, bool fl, int64_t start, int64_t n, void *dst) {
    if (fl) load_f64(t, start, n, dst);
    else load_i64(t, start, n, dst);
}

static void store_slots(kiln_tensor *t, bool fl, int64_t start, int64_t n, const void *src) {
    if (fl) store_f64(t, start, n, src);
    else store_i64(t, start, n, src);
}

/* int64 arithmetic wraps (through uint64) instead of overflowing, like the C narrow types. */
#define ADD_F(x, y) ((x) + (y))
#define MUL_F(x, y) ((x) * (y))
#define ADD_I(x, y) ((int64_t)((uint64_t)(x) + (uint64_t)(y)))
#define MUL_I(x, y) ((int64_t)((uint64_t)(x) * (uint64_t)(y)))
#define NAN_F(x) isnan(x)
#define NAN_I(x) 0

/* acc[0] = EXPR folded over x[0..n) (step 0: one running value in a register), or acc[i] =
 * EXPR elementwise (step 1); EXPR combines the accumulated `a` with the element `v`. */
#define FOLD_LOOPS(T, EXPR)                                                                     \
    if (step == 0) {                                                                            \
        T a = acc[0];                                                                           \
        for (int64_t i = 0; i < n; i++) {                                                       \
            T v = x[i];                                                                         \
            a = (EXPR);                                                                         \
        }                                                                                       \
        acc[0] = a;                                                                             \
    } else {                                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                       \
            T a = acc[i], v = x[i];                                                             \
            acc[i] = (EXPR);                                                                    \
        }                                                                                       \
    }

/* DEFINE_TYPED(S, T, ...) defines, for slot type T:
 *  identity_S, fold_S: the reductions (max / min propagate NaN; all / any keep 0 or 1).
 *  best_S: argmax / argmin over `rows` rows of `inner` columns numbered from r0: best[j], at[j]
 *          take a row's value and number when it beats them; NaN beats every number and the
 *          first NaN stays (torch); ties keep the earlier index.
 *  scan_S: running sums down `rows` rows (last to first when reverse) carried in acc[inner];
 *          each row becomes the sum up to and including it (excluding it when exclusive). */
#define DEFINE_TYPED(S, T, ADD, MUL, ISNAN, LOWEST, HIGHEST)                                    \
    static T identity_##S(kiln_op op) {                                                         \
        switch (op) {                                                                           \
        case KILN_OP_PROD: case KILN_OP_ALL: return 1;                                          \
        case KILN_OP_MAX: return LOWEST;                                                        \
        case KILN_OP_MIN: return HIGHEST;                                                       \
        default: return 0;                                                                      \
        }                                                                                       \
    }                                                                                           \
    static void fold_##S(kiln_op op, T *acc, int64_t step, const T *x, int64_t n) {             \
        switch (op) {                                                                           \
        case KILN_OP_SUM: FOLD_LOOPS(T, ADD(a, v)) break;                                       \
        case KILN_OP_PROD: FOLD_LOOPS(T, MUL(a, v)) break;                                      \
        case KILN_OP_MAX: FOLD_LOOPS(T, v > a || ISNAN(v) ? v : a) break;                       \
        case KILN_OP_MIN: FOLD_LOOPS(T, v < a || ISNAN(v) ? v : a) break;                       \
        case KILN_OP_ALL: FOLD_LOOPS(T, a != 0 && v != 0) break;                                \
        case KILN_OP_ANY: FOLD_LOOPS(T, a != 0 || v != 0) break;                                \
        default: break;                                                                         \
        }                                                                                       \
    }                                                                                           \
    static void best_##S(bool is_max, T *best, int64_t *at, const T *x, int64_t rows, int64_t inner, int64_t r0) { \
        for (int64_t r = 0; r < rows; r++)                                                      \
            for (int64_t j = 0; j < inner; j++) {                                               \
                T v = x[r * inner + j];                                                         \
                if (!ISNAN(best[j]) && (ISNAN(v) || (is_max ? v > best[j] : v < best[j])))      \
                    best[j] = v, at[j] = r0 + r;                                                \
            }                                                                                   \
    }                                                                                           \
    static void scan_##S(T *acc, T *x, int64_t rows, int64_t inner, bool exclusive, bool reverse) { \
        for (int64_t k = 0; k < rows; k++) {                                                    \
            T *row = x + (reverse ? rows - 1 - k : k) * inner;                                  \
            for (int64_t j = 0; j < inner; j++) {                                               \
                T v = row[j];                                                                   \
                row[j] = exclusive ? acc[j] : ADD(acc[j], v);                                   \
                acc[j] = ADD(acc[j], v);                                                        \
            }                                                                                   \
        }                                                                                       \
    }
DEFINE_TYPED(f64, double, ADD_F, MUL_F, NAN_F, -INFINITY, INFINITY)
DEFINE_TYPED(i64, int64_t, ADD_I, MUL_I, NAN_I, INT64_MIN, INT64_MAX)

/* Reads a 0-d or n-d tensor's shape as [outer, n, inner] around axis `ax` (-1: whole tensor). */
static void split_axis(const kiln_tensor *t, int ax, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = *inner = 1;
    *n = ax < 0 ? t->numel : (t->ndim ? t->shape[ax] : 1);
    for (int i = 0; ax >= 0 && i < t->ndim; i++) {
        if (i < ax) *outer *= t->shape[i];
        if (i > ax) *inner *= t->shape[i];
    }
}

/* Rows of `inner` elements that fit one chunk (at least one). */
static int64_t chunk_rows(int64_t inner) { return inner >= CHUNK ? 1 : CHUNK / inner; }

static kiln_status oom(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory"); }

/* ---- reduce kernel ------------------------------------------------------------------------- */
/* The input's dims with size-1 dims dropped and neighbours of the same kind (reduced or kept)
 * merged; out_stride is the step in the output per index of a dim (0 on reduced dims). */
typedef struct reduce_plan {
    int n;
    int64_t dim[KILN_MAX_DIMS], out_stride[KILN_MAX_DIMS];
    bool red[KILN_MAX_DIMS];
} reduce_plan;

static void plan_init(reduce_plan *p, const kiln_tensor *t, const bool *mask) {
    p->n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1) continue;
        if (p->n && p->red[p->n - 1] == mask[i]) p->dim[p->n - 1] *= t->shape[i];
        else p->dim[p->n] = t->shape[i], p->red[p->n++] = mask[i];
    }
    if (!p->n) p->dim[0] = 1, p->red[0] = false, p->n = 1;
    int64_t s = 1;
    for (int i = p->n - 1; i >= 0; i--) {
        p->out_stride[i] = p->red[i] ? 0 : s;
        if (!p->red[i]) s *= p->dim[i];
    }
}

kiln_status kiln_ref_reduce(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *out = a->out[0];
    bool mask[KILN_MAX_DIMS], fl = kiln_dtype_is_float(x->dtype);
    kiln_norm_axes(kiln_attr_get(a->op, a->attrs, "axes"), x->ndim, mask);
    reduce_plan p;
    plan_init(&p, x, mask);
    int64_t last = p.dim[p.n - 1], idx[KILN_MAX_DIMS] = {0}, out_off = 0;
    void *acc = malloc(8 * (size_t)(out->numel ? out->numel : 1)), *buf = malloc(8 * CHUNK);
    if (!acc || !buf) {
        free(acc), free(buf);
        return oom(a);
    }
    for (int64_t i = 0; i < out->numel; i++) {
        if (fl) ((double *)acc)[i] = identity_f64(a->op);
        else ((int64_t *)acc)[i] = identity_i64(a->op);
    }
    /* Walk the input one contiguous row (the last merged dim) at a time, in chunks, keeping
     * the output offset of the row's first element in step with an index counter over the
     * outer dims. */
    int64_t rows = x->numel ? x->numel / last : 0, step = p.red[p.n - 1] ? 0 : 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < last; c += CHUNK) {
            int64_t m = last - c < CHUNK ? last - c : CHUNK;
            load_slots(x, fl, r * last + c, m, buf);
            if (fl) fold_f64(a->op, (double *)acc + out_off + c * step, step, buf, m);
            else fold_i64(a->op, (int64_t *)acc + out_off + c * step, step, buf, m);
        }
        for (int d = p.n - 2; d >= 0; d--) {
            out_off += p.out_stride[d];
            if (++idx[d] < p.dim[d]) break;
            out_off -= p.out_stride[d] * p.dim[d];
            idx[d] = 0;
        }
    }
    store_slots(out, fl, 0, out->numel, acc);
    free(acc), free(buf);
    return KILN_OK;
}

/* ---- argmax / argmin ----------------------------------------------------------------------- */
/* Per outer index: the [n, inner] slab in chunks of whole rows, keeping the best value and its
 * row for each of the `inner` columns (row 0 starts them). */
kiln_status kiln_ref_argreduce(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    bool fl = kiln_dtype_is_float(x->dtype), is_max = a->op == KILN_OP_ARGMAX;
    int64_t outer, n, inner, *at = a->out[0]->data;
    split_axis(x, axis->set ? single_axis(axis->i, x->ndim) : -1, &outer, &n, &inner);
    if (!n || !a->out[0]->numel) return KILN_OK;
    int64_t R = chunk_rows(inner);
    void *best = malloc(8 * (size_t)inner), *buf = malloc(8 * (size_t)(R * inner));
    if (!best || !buf) {
        free(best), free(buf);
        return oom(a);
    }
    for (int64_t o = 0; o < outer; o++) {
        int64_t *at_o = at + o * inner;
        for (int64_t r0 = 0; r0 < n; r0 += R) {
            int64_t m = n - r0 < R ? n - r0 : R, skip = 0;
            load_slots(x, fl, (o * n + r0) * inner, m * inner, buf);
            if (r0 == 0) {
                memcpy(best, buf, 8 * (size_t)inner);
                memset(at_o, 0, sizeof *at_o * (size_t)inner);
                skip = 1;
            }
            if (fl) best_f64(is_max, best, at_o, (double *)buf + skip * inner, m - skip, inner, r0 + skip);
            else best_i64(is_max, best, at_o, (int64_t *)buf + skip * inner, m - skip, inner, r0 + skip);
        }
    }
    free(best), free(buf);
    return KILN_OK;
}

/* ---- cumsum -------------------------------------------------------------------------------- */
/* Per outer index: chunks of whole rows (taken from the end when reverse) replaced by their
 * running sums, which acc carries from chunk to chunk. */
kiln_status kiln_ref_cumsum(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *out = a->out[0];
    bool fl = kiln_dtype_is_float(x->dtype), exclusive = kiln_attr_bool(a->op, a->attrs, "exclusive"),
         reverse = kiln_attr_bool(a->op, a->attrs, "reverse");
    int64_t outer, n, inner;
    split_axis(x, single_axis(kiln_attr_int(a->op, a->attrs, "axis"), x->ndim), &outer, &n, &inner);
    if (!x->numel) return KILN_OK;
    int64_t R = chunk_rows(inner);
    void *acc = malloc(8 * (size_t)inner), *buf = malloc(8 * (size_t)(R * inner));
    if (!acc || !buf) {
        free(acc), free(buf);
        return oom(a);
    }
    for (int64_t o = 0; o < outer; o++) {
        memset(acc, 0, 8 * (size_t)inner); /* 0.0 and 0 share the all-zero bit pattern */
        for (int64_t c = 0; c < n; c += R) {
            int64_t m = n - c < R ? n - c : R, start = (o * n + (reverse ? n - c - m : c)) * inner;
            load_slots(x, fl, start, m * inner, buf);
            if (fl) scan_f64(acc, buf, m, inner, exclusive, reverse);
            else scan_i64(acc, buf, m, inner, exclusive, reverse);
            store_slots(out, fl, start, m * inner, buf);
        }
    }
    free(acc), free(buf);
    return KILN_OK;
}

/* ---- decompositions ------------------------------------------------------------------------ */
/* "axes=[0, 2], keepdims=true" (axes left out when unset = all) for a reduce op to emit. */
static const char *reduce_attrs(const kiln_attr *axes, bool keepdims, char *buf, size_t size) {
    char ab[160];
    if (axes->set) snprintf(buf, size, "axes=%s, keepdims=%s", kiln_shape_str(axes->n, axes->ints, ab, sizeof ab),
                            keepdims ? "true" : "false");
    else snprintf(buf, size, "keepdims=%s", keepdims ? "true" : "false");
    return buf;
}

/* Emits reduce op `op` over node n's axes with the given keepdims. */
static kiln_var *emit_reduce(kiln_builder *b, const kiln_node *n, kiln_op op, kiln_var *x, bool keepdims) {
    char at[256];
    return kiln_build(b, op, 1, &x, "%s", reduce_attrs(kiln_attr_get(n->op, n->attrs, "axes"), keepdims, at, sizeof at));
}

/* Number of elements each output element of reduce node n gathers. */
static int64_t reduced_count(const kiln_node *n, const kiln_var *x) {
    bool mask[KILN_MAX_DIMS];
    int64_t count = 1;
    kiln_norm_axes(kiln_attr_get(n->op, n->attrs, "axes"), x->type->ndim, mask);
    for (int i = 0; i < x->type->ndim; i++)
        if (mask[i]) count *= x->type->shape[i];
    return count;
}

static kiln_var *emit2(kiln_builder *b, kiln_op op, kiln_var *x, kiln_var *y) {
    kiln_var *in[2] = {x, y};
    return kiln_build(b, op, 2, in, NULL);
}

/* x * (1 / d): a weak float scalar keeps x's float dtype; d = 0 gives inf (0 * inf = nan, as
 * torch's mean of nothing). */
static kiln_var *emit_scale(kiln_builder *b, kiln_var *x, int64_t d) {
    return emit2(b, KILN_OP_MULTIPLY, x, kiln_build_float(b, d > 0 ? 1.0 / (double)d : INFINITY));
}

static kiln_var *emit_reshape(kiln_builder *b, kiln_var *x, int ndim, const int64_t *shape) {
    char sb[160];
    return kiln_build(b, KILN_OP_RESHAPE, 1, &x, "shape=%s", kiln_shape_str(ndim, shape, sb, sizeof sb));
}

struct kiln_var *kiln_decompose_mean(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    bool keepdims = kiln_attr_bool(n->op, n->attrs, "keepdims");
    kiln_var *s = emit_reduce(b, n, KILN_OP_SUM, in[0], keepdims);
    return s ? emit_scale(b, s, reduced_count(n, in[0])) : NULL;
}

/* variance = sum((x - mean(x))^2) / (count - correction); the divisor is clamped at 0 (torch). */
struct kiln_var *kiln_decompose_variance(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    bool keepdims = kiln_attr_bool(n->op, n->attrs, "keepdims");
    int64_t count = reduced_count(n, in[0]), correction = kiln_attr_int(n->op, n->attrs, "correction");
    kiln_var *s = emit_reduce(b, n, KILN_OP_SUM, in[0], true);
    kiln_var *m = s ? emit_scale(b, s, count) : NULL;
    kiln_var *d = m ? emit2(b, KILN_OP_SUBTRACT, in[0], m) : NULL;
    kiln_var *sq = d ? emit2(b, KILN_OP_MULTIPLY, d, d) : NULL;
    kiln_var *ss = sq ? emit_reduce(b, n, KILN_OP_SUM, sq, keepdims) : NULL;
    return ss ? emit_scale(b, ss, count - correction) : NULL;
}

struct kiln_var *kiln_decompose_l2norm(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *sq = emit2(b, KILN_OP_MULTIPLY, in[0], in[0]);
    kiln_var *s = sq ? emit_reduce(b, n, KILN_OP_SUM, sq, kiln_attr_bool(n->op, n->attrs, "keepdims")) : NULL;
    return s ? kiln_build(b, KILN_OP_SQRT, 1, &s, NULL) : NULL;
}

/* logsumexp = log(sum(exp(x - m))) + m with m = max(x) clamped to the dtype's finite range, so
 * that rows of -inf give -inf and rows holding +inf give +inf instead of nan (inf - inf). */
struct kiln_var *kiln_decompose_logsumexp(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    static const double finite_max[KILN_DTYPE_COUNT] = {[KILN_F32] = FLT_MAX, [KILN_F64] = DBL_MAX,
                                                        [KILN_F16] = 65504.0, [KILN_BF16] = 3.3895313892515355e38};
    double big = finite_max[in[0]->type->dtype];
    const kiln_type *t = n->out->type;
    char sb[160];
    if (reduced_count(n, in[0]) == 0) /* log of an empty sum (the max below would have no identity) */
        return kiln_build(b, KILN_OP_FULL, 0, NULL, "shape=%s, value=-inf, dtype=%s",
                          kiln_shape_str(t->ndim, t->shape, sb, sizeof sb), kiln_dtype_name(t->dtype));
    kiln_var *m = emit_reduce(b, n, KILN_OP_MAX, in[0], true);
    if (!m || !(m = kiln_build(b, KILN_OP_CLIP, 1, &m, "min=%.17g, max=%.17g", -big, big))) return NULL;
    kiln_var *d = emit2(b, KILN_OP_SUBTRACT, in[0], m);
    kiln_var *e = d ? kiln_build(b, KILN_OP_EXP, 1, &d, NULL) : NULL;
    kiln_var *s = e ? emit_reduce(b, n, KILN_OP_SUM, e, true) : NULL;
    kiln_var *l = s ? kiln_build(b, KILN_OP_LOG, 1, &s, NULL) : NULL;
    kiln_var *r = l ? emit2(b, KILN_OP_ADD, l, m) : NULL;
    if (!r || kiln_attr_bool(n->op, n->attrs, "keepdims")) return r;
    return emit_reshape(b, r, t->ndim, t->shape);
}

/* sum_to: sum over the leading extra axes and the axes where the target has 1 (keepdims), then
 * reshape to the target; an int input's i64 sum is cast back to its dtype. */
struct kiln_var *kiln_decompose_sum_to(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    const kiln_type *t = in[0]->type, *rt = n->out->type;
    int lead = t->ndim - rt->ndim, n_axes = 0;
    int64_t axes[KILN_MAX_DIMS];
    char ab[160];
    for (int i = 0; i < t->ndim; i++)
        if (i < lead || (rt->shape[i - lead] == 1 && t->shape[i] != 1)) axes[n_axes++] = i;
    if (!n_axes) return in[0]; /* no leading axes and no 1s to sum into: same shape */
    kiln_var *x = in[0], *s = kiln_build(b, KILN_OP_SUM, 1, &x, "axes=%s, keepdims=true",
                                          kiln_shape_str(n_axes, axes, ab, sizeof ab));
    if (s && lead) s = emit_reshape(b, s, rt->ndim, rt->shape);
    if (s && s->type->dtype != rt->dtype) s = kiln_build(b, KILN_OP_CAST, 1, &s, "dtype=%s", kiln_dtype_name(rt->dtype));
    return s;
}
