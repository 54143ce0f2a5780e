/* create.c — the creation ops: full (kernel) with its composites zeros, ones, full_like,
 * zeros_like, ones_like, and arange (numpy.arange): shape rules, kernels, decompositions. */
#include "ir/ir.h"
#include <math.h>
#include <string.h>

/* ---- full and its composites ---------------------------------------------------------------- */
/* full / zeros / ones: a tensor of `shape` and `dtype`. */
const struct kiln_type *kiln_shape_full(kiln_shape_args *a) {
    const kiln_attr *shape = kiln_attr_get(a->op, a->attrs, "shape");
    if (shape->n > KILN_MAX_DIMS) return kiln_op_fail(a, "shape has %d dims (at most %d)", shape->n, KILN_MAX_DIMS);
    for (int d = 0; d < shape->n; d++)
        if (shape->ints[d] < 0) return kiln_op_fail(a, "shape dim %d is negative (%lld)", d, (long long)shape->ints[d]);
    return kiln_type_tensor_a(a->arena, kiln_attr_get(a->op, a->attrs, "dtype")->dtype, shape->n, shape->ints);
}

/* full_like / zeros_like / ones_like: x's shape; dtype unset = x's dtype. */
const struct kiln_type *kiln_shape_full_like(kiln_shape_args *a) {
    const kiln_type *x = a->in[0];
    const kiln_attr *dt = kiln_attr_get(a->op, a->attrs, "dtype");
    return kiln_type_tensor_a(a->arena, dt->set ? dt->dtype : x->dtype, x->ndim, x->shape);
}

/* Writes `value` (converted to the output dtype) into every element: one store, then the
 * filled prefix is copied onto the rest, doubling each time. */
kiln_status kiln_ref_full(kiln_kernel_args *a) {
    kiln_tensor *y = a->out[0];
    size_t total = (size_t)y->numel * kiln_dtype_size(y->dtype), done = kiln_dtype_size(y->dtype);
    if (!y->numel) return KILN_OK;
    kiln_store_f64(y->dtype, y->data, 0, kiln_attr_float(a->op, a->attrs, "value"));
    for (char *p = y->data; done < total; done *= 2) memcpy(p + done, p, done < total - done ? done : total - done);
    return KILN_OK;
}

/* full(shape=t.shape, value=v, dtype=t.dtype) for a node whose result type is t ("%.17g"
 * reads back as the same double). */
static kiln_var *build_full(kiln_builder *b, const kiln_type *t, double v) {
    char sb[256];
    return kiln_build(b, KILN_OP_FULL, 0, NULL, "shape=%s, value=%.17g, dtype=%s", kiln_shape_str(t->ndim, t->shape, sb, sizeof sb),
                      v, kiln_dtype_name(t->dtype));
}

struct kiln_var *kiln_decompose_zeros(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)in;
    return build_full(b, n->out->type, 0.0);
}

struct kiln_var *kiln_decompose_ones(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)in;
    return build_full(b, n->out->type, 1.0);
}

struct kiln_var *kiln_decompose_full_like(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)in;
    return build_full(b, n->out->type, kiln_attr_float(n->op, n->attrs, "value"));
}

struct kiln_var *kiln_decompose_zeros_like(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)in;
    return build_full(b, n->out->type, 0.0);
}

struct kiln_var *kiln_decompose_ones_like(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)in;
    return build_full(b, n->out->type, 1.0);
}

/* ---- arange -------------------------------------------------------------------------------- */
typedef struct arange_spec {
    double start, stop, step;
    kiln_dtype dtype;
    bool integral; /* start, stop and step are all whole numbers below 2^53 in magnitude */
} arange_spec;

/* A whole number small enough (|v| < 2^53) for exact int64 arithmetic in the kernel. */
static bool whole(double v) { return floor(v) == v && fabs(v) < 9007199254740992.0; }

static arange_spec arange_read(kiln_op op, const kiln_attr *attrs) {
    arange_spec s = {kiln_attr_float(op, attrs, "start"), kiln_attr_float(op, attrs, "stop"),
                     kiln_attr_float(op, attrs, "step"), KILN_F32, false};
    s.integral = whole(s.start) && whole(s.stop) && whole(s.step);
    const kiln_attr *dt = kiln_attr_get(op, attrs, "dtype");
    s.dtype = dt->set ? dt->dtype : s.integral ? KILN_I64 : KILN_F32;
    return s;
}

/* numpy's length: ceil((stop - start) / step), at least 0. dtype unset: i64 when start, stop
 * and step are all whole numbers (below 2^53), else f32. */
const struct kiln_type *kiln_shape_arange(kiln_shape_args *a) {
    arange_spec s = arange_read(a->op, a->attrs);
    if (!isfinite(s.start) || !isfinite(s.stop) || !isfinite(s.step))
        return kiln_op_fail(a, "start, stop and step must be finite (got %g, %g, %g)", s.start, s.stop, s.step);
    if (s.step == 0) return kiln_op_fail(a, "step must not be 0");
    if (s.dtype == KILN_BOOL) return kiln_op_fail(a, "dtype bool is not supported");
    double len = ceil((s.stop - s.start) / s.step);
    if (!(len < 9007199254740992.0)) /* 2^53, also catches an overflowed (inf) quotient */
        return kiln_op_fail(a, "length %g is too large (start %g, stop %g, step %g)", len, s.start, s.stop, s.step);
    int64_t n = len > 0 ? (int64_t)len : 0;
    return kiln_type_tensor_a(a->arena, s.dtype, 1, &n);
}

/* y[i] = start + i * step: exact int64 arithmetic for whole-number attributes and an int dtype,
 * else computed in double and rounded once to the dtype. */
kiln_status kiln_ref_arange(kiln_kernel_args *a) {
    arange_spec s = arange_read(a->op, a->attrs);
    kiln_tensor *y = a->out[0];
    if (s.integral && kiln_dtype_is_int(y->dtype)) {
        int64_t start = (int64_t)s.start, step = (int64_t)s.step;
        for (int64_t i = 0; i < y->numel; i++) kiln_store_i64(y->dtype, y->data, i, start + i * step);
    } else {
        for (int64_t i = 0; i < y->numel; i++) kiln_store_f64(y->dtype, y->data, i, s.start + (double)i * s.step);
    }
    return KILN_OK;
}
