/* elementwise.c — the elementwise ops: shape rules (weak-scalar promotion, numpy broadcasting),
 * reference kernels (unary, clip, threshold, binary, where, cast) dispatched on dtype outside
 * their loops, and the decompositions of gelu, silu and leaky_relu. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>
#include <tgmath.h> /* exp(x) on a float calls expf: one kernel body serves float and double */

/* ==== shape rules ============================================================================ */

static const char *mask_str(unsigned mask) {
    if (mask == DT_INT) return "integer";
    if (mask == DT_NUM) return "numeric (not bool)";
    return "any";
}

/* Checks input i: a tensor or scalar whose dtype is in `mask`. */
static bool check_operand(kiln_shape_args *a, int i, unsigned mask) {
    char tb[256];
    const kiln_type *t = a->in[i];
    if (t->kind == KILN_TYPE_TUPLE)
        kiln_op_fail(a, "input %d is a tuple %s, expected a tensor or scalar", i, kiln_type_cstr(t, tb, sizeof tb));
    else if (!(mask & DT_(t->dtype)))
        kiln_op_fail(a, "input %d is %s; this op takes %s dtypes", i, kiln_type_cstr(t, tb, sizeof tb), mask_str(mask));
    else
        return true;
    return false;
}

/* Category for weak promotion: bool 0 < int 1 < float 2. */
static int category(kiln_dtype dt) { return dt == KILN_BOOL ? 0 : kiln_dtype_is_float(dt) ? 2 : 1; }

/* The dtype of n operands under weak-scalar promotion (torch / NEP 50): tensors promote among
 * themselves; scalars only raise the category (an int tensor plus a float scalar gives f32, a
 * bool tensor plus an int scalar i64). With no tensor operand the result is the promoted scalar
 * dtype (I64 / F64 / BOOL) and *all_scalar is set. */
static kiln_dtype promote_weak(int n, const kiln_type *const *t, bool *all_scalar) {
    int n_tensor = 0, n_scalar = 0;
    kiln_dtype td = KILN_BOOL, sd = KILN_BOOL;
    for (int i = 0; i < n; i++) {
        if (t[i]->kind == KILN_TYPE_SCALAR) sd = n_scalar++ ? kiln_dtype_promote(sd, t[i]->dtype) : t[i]->dtype;
        else td = n_tensor++ ? kiln_dtype_promote(td, t[i]->dtype) : t[i]->dtype;
    }
    *all_scalar = n_tensor == 0;
    if (!n_tensor) return sd;
    if (n_scalar && category(sd) > category(td)) return sd == KILN_F64 ? KILN_F32 : KILN_I64;
    return td;
}

/* Broadcasts the shapes of n operands (scalars count as 0-d); fails naming every operand. */
static bool broadcast_operands(kiln_shape_args *a, int n, const kiln_type *const *t, int *nd, int64_t *shape) {
    *nd = 0;
    for (int i = 0; i < n; i++) {
        int64_t prev[KILN_MAX_DIMS]; /* kiln_broadcast_shapes' input and output may not overlap */
        memcpy(prev, shape, sizeof(int64_t) * (size_t)*nd);
        if (!kiln_broadcast_shapes(*nd, prev, t[i]->ndim, t[i]->shape, nd, shape)) {
            char b0[256], b1[256], b2[256];
            kiln_type_cstr(t[0], b0, sizeof b0);
            kiln_type_cstr(t[1], b1, sizeof b1);
            if (n == 2) kiln_op_fail(a, "cannot broadcast %s with %s", b0, b1);
            else kiln_op_fail(a, "cannot broadcast %s, %s and %s", b0, b1, kiln_type_cstr(t[2], b2, sizeof b2));
            return false;
        }
    }
    return true;
}

/* A scalar of dtype dt when all_scalar, else a tensor of dt and the given shape. */
static const kiln_type *result_type(kiln_shape_args *a, bool all_scalar, kiln_dtype dt, int nd, const int64_t *shape) {
    const kiln_type *t = all_scalar ? kiln_type_scalar(a->arena, dt) : kiln_type_tensor_a(a->arena, dt, nd, shape);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* Binary ops: both inputs within the op's dtype mask, broadcast, promoted; `dt` receives the
 * promoted dtype. Returns NULL after an error. */
static const kiln_type *binary_type(kiln_shape_args *a, bool *all_scalar, kiln_dtype *dt) {
    unsigned mask = kiln_op_info_get(a->op)->dtypes;
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    if (!check_operand(a, 0, mask) || !check_operand(a, 1, mask) || !broadcast_operands(a, 2, a->in, &nd, shape))
        return NULL;
    *dt = promote_weak(2, a->in, all_scalar);
    return result_type(a, *all_scalar, *dt, nd, shape);
}

const struct kiln_type *kiln_shape_unary(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    return result_type(a, t->kind == KILN_TYPE_SCALAR, t->dtype, t->ndim, t->shape);
}

const struct kiln_type *kiln_shape_logical_not(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    return result_type(a, t->kind == KILN_TYPE_SCALAR, KILN_BOOL, t->ndim, t->shape);
}

const struct kiln_type *kiln_shape_binary(kiln_shape_args *a) {
    bool all_scalar;
    kiln_dtype dt;
    return binary_type(a, &all_scalar, &dt);
}

/* True division: integer and bool operands give f32 (a float scalar when both are scalars). */
const struct kiln_type *kiln_shape_divide(kiln_shape_args *a) {
    bool all_scalar;
    kiln_dtype dt;
    const kiln_type *t = binary_type(a, &all_scalar, &dt);
    if (!t || kiln_dtype_is_float(dt)) return t;
    return result_type(a, all_scalar, all_scalar ? KILN_F64 : KILN_F32, t->ndim, t->shape);
}

const struct kiln_type *kiln_shape_compare(kiln_shape_args *a) {
    bool all_scalar;
    kiln_dtype dt;
    const kiln_type *t = binary_type(a, &all_scalar, &dt);
    return t ? result_type(a, all_scalar, KILN_BOOL, t->ndim, t->shape) : NULL;
}

/* where(cond, x, y): cond is bool; x and y promote with weak scalars; all three broadcast. */
const struct kiln_type *kiln_shape_where(kiln_shape_args *a) {
    char tb[256];
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    if (a->in[0]->dtype != KILN_BOOL)
        return kiln_op_fail(a, "condition must be bool, got %s", kiln_type_cstr(a->in[0], tb, sizeof tb));
    if (!check_operand(a, 1, DT_ALL) || !check_operand(a, 2, DT_ALL) || !broadcast_operands(a, 3, a->in, &nd, shape))
        return NULL;
    bool values_scalar;
    kiln_dtype dt = promote_weak(2, a->in + 1, &values_scalar);
    bool all_scalar = values_scalar && a->in[0]->kind == KILN_TYPE_SCALAR;
    /* Scalar values under a tensor condition make a tensor of their category's default dtype. */
    if (values_scalar && !all_scalar && dt == KILN_F64) dt = KILN_F32;
    return result_type(a, all_scalar, dt, nd, shape);
}

/* cast: the same shape in attribute `dtype`; a scalar becomes a 0-d tensor. */
const struct kiln_type *kiln_shape_cast(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    return result_type(a, false, kiln_attr_get(a->op, a->attrs, "dtype")->dtype, t->ndim, t->shape);
}

/* ==== kernels: per-dtype element access ===================================================== */
/* Each dtype has a storage type and a math type: 16-bit floats compute in float and round once
 * on store; ints and bool compute in int64 and wrap on store like C. ld_X / st_X convert. */
#define EW_FLOAT_DTYPES(X) X(F32, float, float) X(F64, double, double) X(F16, uint16_t, float) X(BF16, uint16_t, float)
#define EW_INT_DTYPES(X) X(I8, int8_t, int64_t) X(U8, uint8_t, int64_t) X(I32, int32_t, int64_t) X(I64, int64_t, int64_t)
#define EW_ALL_DTYPES(X) EW_FLOAT_DTYPES(X) EW_INT_DTYPES(X) X(BOOL, uint8_t, int64_t)

#define DEFINE_LDST(SUF, T, M, LOAD, STORE)                                                     \
    static inline M ld_##SUF(T v) { return LOAD; }                                              \
    static inline T st_##SUF(M v) { return STORE; }
DEFINE_LDST(F32, float, float, v, v)
DEFINE_LDST(F64, double, double, v, v)
DEFINE_LDST(F16, uint16_t, float, kiln_f16_to_f32(v), kiln_f32_to_f16(v))
DEFINE_LDST(BF16, uint16_t, float, kiln_bf16_to_f32(v), kiln_f32_to_bf16(v))
DEFINE_LDST(I8, int8_t, int64_t, v, (int8_t)v)
DEFINE_LDST(U8, uint8_t, int64_t, v, (uint8_t)v)
DEFINE_LDST(I32, int32_t, int64_t, v, (int32_t)v)
DEFINE_LDST(I64, int64_t, int64_t, v, v)
DEFINE_LDST(BOOL, uint8_t, int64_t, v != 0, (uint8_t)(v != 0))

/* t's elements as dtype dt: t's own buffer when it has that dtype, else a converted copy left in
 * *tmp for the caller to free. NULL when out of memory. */
static const void *ew_as(const kiln_tensor *t, kiln_dtype dt, void **tmp) {
    *tmp = NULL;
    if (t->dtype == dt) return t->data;
    *tmp = malloc((size_t)(t->numel ? t->numel : 1) * kiln_dtype_size(dt));
    if (*tmp) kiln_convert(dt, *tmp, t->dtype, t->data, t->numel);
    return *tmp;
}

/* Run-time failures of the typed kernels. */
enum { EW_OK, EW_DIV_ZERO, EW_NEG_POW, EW_NO_KERNEL };

static kiln_status ew_fail(kiln_kernel_args *a, int err) {
    switch (err) {
    case EW_OK: return KILN_OK;
    case EW_DIV_ZERO: return kiln_kernel_fail(a, KILN_ERR_VALUE, "integer division by zero");
    case EW_NEG_POW: return kiln_kernel_fail(a, KILN_ERR_VALUE, "integer raised to a negative power");
    default: return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "no kernel for dtype %s", kiln_dtype_name(a->out[0]->dtype));
    }
}

/* ---- scalar math helpers ------------------------------------------------------------------- */
/* int64 arithmetic wraps (through uint64: signed overflow would be undefined in C). */
static inline int64_t i_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static inline int64_t i_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static inline int64_t i_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }
static inline int64_t i_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

/* Floor division and Python's modulo (the result takes the divisor's sign). A divisor of -1 is
 * taken apart so INT64_MIN / -1 wraps instead of trapping. */
static inline int64_t i_floordiv(int64_t x, int64_t y, int *err) {
    if (y == 0) return *err = EW_DIV_ZERO, 0;
    if (y == -1) return i_neg(x);
    int64_t q = x / y;
    return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
}

static inline int64_t i_mod(int64_t x, int64_t y, int *err) {
    if (y == 0) return *err = EW_DIV_ZERO, 0;
    if (y == -1) return 0;
    int64_t r = x % y;
    return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;
}

/* Exponentiation by squaring, wrapping; 0^0 = 1. */
static inline int64_t i_pow(int64_t x, int64_t y, int *err) {
    if (y < 0) return *err = EW_NEG_POW, 0;
    uint64_t r = 1, b = (uint64_t)x;
    for (; y; y >>= 1, b *= b)
        if (y & 1) r *= b;
    return (int64_t)r;
}

/* Shifts by a negative amount or by 64 or more give what shifting one bit at a time would. */
static inline int64_t i_shl(int64_t x, int64_t y) { return y < 0 || y >= 64 ? 0 : (int64_t)((uint64_t)x << y); }
static inline int64_t i_shr(int64_t x, int64_t y) { return y < 0 || y >= 64 ? (x < 0 ? -1 : 0) : x >> y; }

static int64_t sat_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

/* Python's float modulo and floor division (CPython's float_divmod): the quotient is computed
 * from x - fmod(x, y), which is exact, so floor never rounds the wrong way. */
#define DEFINE_FLOAT_MATH(M)                                                                    \
    static inline M f_mod_##M(M x, M y) {                                                       \
        M r = fmod(x, y);                                                                       \
        if (r != 0 && (r < 0) != (y < 0)) return r + y;                                         \
        return r != 0 ? r : copysign((M)0, y);                                                  \
    }                                                                                           \
    static inline M f_floordiv_##M(M x, M y) {                                                  \
        if (y == 0) return x / y;                                                               \
        M mod = fmod(x, y), div = (x - mod) / y;                                                \
        if (mod != 0 && (y < 0) != (mod < 0)) div -= 1;                                         \
        if (div == 0) return copysign((M)0, x / y);                                             \
        M fl = floor(div);                                                                      \
        return div - fl > (M)0.5 ? fl + 1 : fl;                                                 \
    }
DEFINE_FLOAT_MATH(float)
DEFINE_FLOAT_MATH(double)

/* ---- unary kernels (flat loops: input and output have the same shape) ---------------------- */
/* Parameters of clip and threshold, in both float and integer form. */
typedef struct ew_params {
    double lo, hi, thr, val;
    int64_t ilo, ihi, ival;
} ew_params;

/* Stores EXPR (of the loaded element X) into every output element, converted by STORE. */
#define UN_LOOP(SUF, TO, STORE, EXPR)                                                           \
    for (int64_t i_ = 0; i_ < n; i_++) {                                                        \
        const math_t X = ld_##SUF(x[i_]);                                                       \
        ((TO *)out)[i_] = STORE(EXPR);                                                          \
    }                                                                                           \
    return EW_OK
#define UN_CASE(OP, SUF, EXPR) case KILN_OP_##OP: UN_LOOP(SUF, elem_t, st_##SUF, EXPR)
#define UN_NOT_CASE(SUF) case KILN_OP_LOGICAL_NOT: UN_LOOP(SUF, uint8_t, st_BOOL, X == 0)

#define DEFINE_UNARY_FLOAT(SUF, T, M)                                                           \
    static int unary_##SUF(kiln_op op, const ew_params *p, const void *xv, void *out, int64_t n) { \
        typedef T elem_t;                                                                       \
        typedef M math_t;                                                                       \
        const elem_t *x = xv;                                                                   \
        const math_t lo = (math_t)p->lo, hi = (math_t)p->hi, thr = (math_t)p->thr, val = (math_t)p->val; \
        switch (op) {                                                                           \
            UN_CASE(NEG, SUF, -X);                                                              \
            UN_CASE(ABS, SUF, fabs(X));                                                         \
            UN_CASE(SIGN, SUF, isnan(X) ? X : (math_t)((X > 0) - (X < 0)));                       \
            UN_CASE(EXP, SUF, exp(X));                                                          \
            UN_CASE(LOG, SUF, log(X));                                                          \
            UN_CASE(LOG2, SUF, log2(X));                                                        \
            UN_CASE(SQRT, SUF, sqrt(X));                                                        \
            UN_CASE(RSQRT, SUF, 1 / sqrt(X));                                                   \
            UN_CASE(RECIPROCAL, SUF, 1 / X);                                                    \
            UN_CASE(SIN, SUF, sin(X));                                                          \
            UN_CASE(COS, SUF, cos(X));                                                          \
            UN_CASE(TANH, SUF, tanh(X));                                                        \
            UN_CASE(ATAN, SUF, atan(X));                                                        \
            UN_CASE(SIGMOID, SUF, 1 / (1 + exp(-X)));                                           \
            UN_CASE(RELU, SUF, X > 0 || isnan(X) ? X : 0);                                        \
            UN_CASE(ERF, SUF, erf(X));                                                          \
            UN_CASE(FLOOR, SUF, floor(X));                                                      \
            UN_CASE(CEIL, SUF, ceil(X));                                                        \
            UN_CASE(ROUND, SUF, rint(X)); /* default rounding mode: half to even */             \
            UN_CASE(TRUNC, SUF, trunc(X));                                                      \
            UN_CASE(CLIP, SUF, X < lo ? lo : X > hi ? hi : X);                                  \
            UN_CASE(THRESHOLD, SUF, X <= thr ? val : X); /* NaN stays NaN, as in torch */        \
            UN_NOT_CASE(SUF);                                                                   \
        default: return EW_NO_KERNEL;                                                           \
        }                                                                                       \
    }

#define DEFINE_UNARY_INT(SUF, T, M)                                                             \
    static int unary_##SUF(kiln_op op, const ew_params *p, const void *xv, void *out, int64_t n) { \
        typedef T elem_t;                                                                       \
        typedef M math_t;                                                                       \
        const elem_t *x = xv;                                                                   \
        switch (op) {                                                                           \
            UN_CASE(NEG, SUF, i_neg(X));                                                        \
            UN_CASE(ABS, SUF, X < 0 ? i_neg(X) : X);                                            \
            UN_CASE(SIGN, SUF, (X > 0) - (X < 0));                                              \
            UN_CASE(RELU, SUF, X > 0 ? X : 0);                                                  \
        case KILN_OP_FLOOR: case KILN_OP_CEIL: case KILN_OP_ROUND:                              \
            UN_CASE(TRUNC, SUF, X);                                                             \
            UN_CASE(CLIP, SUF, X < p->ilo ? p->ilo : X > p->ihi ? p->ihi : X);                  \
            UN_CASE(THRESHOLD, SUF, (double)X <= p->thr ? p->ival : X);                         \
            UN_NOT_CASE(SUF);                                                                   \
        default: return EW_NO_KERNEL;                                                           \
        }                                                                                       \
    }

EW_FLOAT_DTYPES(DEFINE_UNARY_FLOAT)
EW_INT_DTYPES(DEFINE_UNARY_INT)

static int unary_BOOL(kiln_op op, const ew_params *p, const void *xv, void *out, int64_t n) {
    typedef int64_t math_t;
    const uint8_t *x = xv;
    (void)p;
    switch (op) {
        UN_NOT_CASE(BOOL);
    default: return EW_NO_KERNEL;
    }
}

/* Runs a unary op from a->in[0] into a->out[0] (same shape; copy keeps the dtype). */
static kiln_status run_unary(kiln_kernel_args *a, const ew_params *p) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *y = a->out[0];
    if (a->op == KILN_OP_COPY) {
        kiln_convert(y->dtype, y->data, x->dtype, x->data, x->numel);
        return KILN_OK;
    }
    int err = EW_NO_KERNEL;
    switch (x->dtype) {
#define EW_UNARY_DISPATCH(SUF, T, M) case KILN_##SUF: err = unary_##SUF(a->op, p, x->data, y->data, x->numel); break;
        EW_ALL_DTYPES(EW_UNARY_DISPATCH)
#undef EW_UNARY_DISPATCH
    default: break;
    }
    return ew_fail(a, err);
}

kiln_status kiln_ref_unary(kiln_kernel_args *a) {
    ew_params p = {0};
    return run_unary(a, &p);
}

/* torch.clamp: min(max(x, min), max), so min > max gives max everywhere. Integer tensors clamp
 * to the integers inside the bounds (ceil(min), floor(max)). */
kiln_status kiln_ref_clip(kiln_kernel_args *a) {
    const kiln_attr *mn = kiln_attr_get(a->op, a->attrs, "min"), *mx = kiln_attr_get(a->op, a->attrs, "max");
    ew_params p = {.lo = mn->set ? mn->f : -INFINITY, .hi = mx->set ? mx->f : INFINITY};
    if (p.lo > p.hi) p.lo = p.hi;
    p.ilo = sat_i64(ceil(p.lo));
    p.ihi = sat_i64(floor(p.hi));
    if (p.ilo > p.ihi) p.ilo = p.ihi;
    return run_unary(a, &p);
}

/* y = x <= threshold ? value : x (torch.nn.functional.threshold). */
kiln_status kiln_ref_threshold(kiln_kernel_args *a) {
    ew_params p = {.thr = kiln_attr_float(a->op, a->attrs, "threshold"), .val = kiln_attr_float(a->op, a->attrs, "value")};
    p.ival = sat_i64(p.val);
    return run_unary(a, &p);
}

/* ---- broadcasting iterator ------------------------------------------------------------------ */
/* Walks the output in rows: dims are merged where every input is contiguous (or broadcast)
 * across them, so same-shape inputs form one row and tensor ⊕ scalar one row with stride 0. */
#define EW_MAX_IN 3
typedef struct ew_iter {
    int nd, n_in;
    int64_t shape[KILN_MAX_DIMS];              /* merged output dims; the last is the row */
    int64_t stride[EW_MAX_IN][KILN_MAX_DIMS];  /* element strides of each input; 0 = broadcast */
    int64_t rows, inner;                       /* rows of `inner` elements */
} ew_iter;

static void ew_iter_init(ew_iter *it, int n_in, kiln_tensor *const *in, const kiln_tensor *out) {
    int64_t st[EW_MAX_IN][KILN_MAX_DIMS];
    for (int k = 0; k < n_in; k++) kiln_broadcast_strides(in[k]->ndim, in[k]->shape, out->ndim, out->shape, st[k]);
    it->n_in = n_in;
    it->nd = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1) continue; /* a size-1 dim never moves an index */
        int p = it->nd - 1;
        bool merge = p >= 0;
        for (int k = 0; k < n_in && merge; k++) merge = it->stride[k][p] == st[k][d] * out->shape[d];
        if (!merge) {
            p = it->nd++;
            it->shape[p] = 1;
        }
        it->shape[p] *= out->shape[d];
        for (int k = 0; k < n_in; k++) it->stride[k][p] = st[k][d];
    }
    if (!it->nd) { /* 0-d or all size-1 dims: one element */
        it->nd = 1;
        it->shape[0] = 1;
        for (int k = 0; k < n_in; k++) it->stride[k][0] = 0;
    }
    it->inner = it->shape[it->nd - 1];
    it->rows = it->inner ? out->numel / it->inner : 0;
}

/* Advances the N-d counter over the outer dims, moving each input's offset. */
static void ew_iter_next(const ew_iter *it, int64_t *idx, int64_t *off) {
    for (int d = it->nd - 2; d >= 0; d--) {
        for (int k = 0; k < it->n_in; k++) off[k] += it->stride[k][d];
        if (++idx[d] < it->shape[d]) return;
        for (int k = 0; k < it->n_in; k++) off[k] -= it->stride[k][d] * it->shape[d];
        idx[d] = 0;
    }
}

/* Runs the body once per row with off_[k] (row start of input k) and o_ (row start of the
 * output) in scope. */
#define EW_ROWS(it, ...)                                                                        \
    do {                                                                                        \
        int64_t idx_[KILN_MAX_DIMS] = {0}, off_[EW_MAX_IN] = {0};                               \
        for (int64_t r_ = 0, o_ = 0; r_ < (it)->rows; r_++, o_ += (it)->inner) {                \
            __VA_ARGS__                                                                         \
            ew_iter_next(it, idx_, off_);                                                       \
        }                                                                                       \
    } while (0)

/* ---- binary kernels ------------------------------------------------------------------------ */
/* Stores EXPR (of the loaded operands X and Y) into the output, converted by STORE; the loop
 * over a row is plain indexing when both inputs are contiguous along it. */
#define BIN_LOOP(SUF, TO, STORE, EXPR)                                                          \
    do {                                                                                        \
        const int64_t n_ = it->inner, sx_ = it->stride[0][it->nd - 1], sy_ = it->stride[1][it->nd - 1]; \
        EW_ROWS(it, const elem_t *xr_ = x + off_[0]; const elem_t *yr_ = y + off_[1];           \
                TO *or_ = (TO *)out + o_;                                                       \
                if (sx_ == 1 && sy_ == 1) {                                                     \
                    for (int64_t j_ = 0; j_ < n_; j_++) {                                       \
                        const math_t X = ld_##SUF(xr_[j_]), Y = ld_##SUF(yr_[j_]);              \
                        or_[j_] = STORE(EXPR);                                                  \
                    }                                                                           \
                } else {                                                                        \
                    for (int64_t j_ = 0; j_ < n_; j_++) {                                       \
                        const math_t X = ld_##SUF(xr_[j_ * sx_]), Y = ld_##SUF(yr_[j_ * sy_]);  \
                        or_[j_] = STORE(EXPR);                                                  \
                    }                                                                           \
                });                                                                             \
    } while (0)
#define BIN_CASE(OP, SUF, EXPR) case KILN_OP_##OP: BIN_LOOP(SUF, elem_t, st_##SUF, EXPR); return err
#define BIN_BOOL_CASE(OP, SUF, EXPR) case KILN_OP_##OP: BIN_LOOP(SUF, uint8_t, st_BOOL, EXPR); return err

/* Comparisons and logical ops: the same in every dtype, with a bool output. */
#define BIN_LOGIC_CASES(SUF)                                                                    \
    BIN_BOOL_CASE(EQUAL, SUF, X == Y);                                                          \
    BIN_BOOL_CASE(NOT_EQUAL, SUF, X != Y);                                                      \
    BIN_BOOL_CASE(LESS, SUF, X < Y);                                                            \
    BIN_BOOL_CASE(LESS_EQUAL, SUF, X <= Y);                                                     \
    BIN_BOOL_CASE(GREATER, SUF, X > Y);                                                         \
    BIN_BOOL_CASE(GREATER_EQUAL, SUF, X >= Y);                                                  \
    BIN_BOOL_CASE(LOGICAL_AND, SUF, X != 0 && Y != 0);                                          \
    BIN_BOOL_CASE(LOGICAL_OR, SUF, X != 0 || Y != 0);                                           \
    BIN_BOOL_CASE(LOGICAL_XOR, SUF, (X != 0) != (Y != 0))

#define BIN_SIGNATURE(SUF) \
    static int binary_##SUF(kiln_op op, const ew_iter *it, const void *xv, const void *yv, void *out)
#define BIN_LOCALS(T, M)                                                                        \
    typedef T elem_t;                                                                           \
    typedef M math_t;                                                                           \
    const elem_t *x = xv, *y = yv;                                                              \
    int err = EW_OK

/* maximum / minimum propagate NaN (torch), unlike C's fmax / fmin. */
#define DEFINE_BINARY_FLOAT(SUF, T, M)                                                          \
    BIN_SIGNATURE(SUF) {                                                                        \
        BIN_LOCALS(T, M);                                                                       \
        switch (op) {                                                                           \
            BIN_CASE(ADD, SUF, X + Y);                                                          \
            BIN_CASE(SUBTRACT, SUF, X - Y);                                                     \
            BIN_CASE(MULTIPLY, SUF, X * Y);                                                     \
            BIN_CASE(DIVIDE, SUF, X / Y);                                                       \
            BIN_CASE(FLOOR_DIVIDE, SUF, f_floordiv_##M(X, Y));                                  \
            BIN_CASE(MOD, SUF, f_mod_##M(X, Y));                                                \
            BIN_CASE(POWER, SUF, pow(X, Y));                                                    \
            BIN_CASE(MAXIMUM, SUF, isnan(X) ? X : isnan(Y) ? Y : X > Y ? X : Y);                    \
            BIN_CASE(MINIMUM, SUF, isnan(X) ? X : isnan(Y) ? Y : X < Y ? X : Y);                    \
            BIN_LOGIC_CASES(SUF);                                                               \
        default: return EW_NO_KERNEL;                                                           \
        }                                                                                       \
    }

#define DEFINE_BINARY_INT(SUF, T, M)                                                            \
    BIN_SIGNATURE(SUF) {                                                                        \
        BIN_LOCALS(T, M);                                                                       \
        switch (op) {                                                                           \
            BIN_CASE(ADD, SUF, i_add(X, Y));                                                    \
            BIN_CASE(SUBTRACT, SUF, i_sub(X, Y));                                               \
            BIN_CASE(MULTIPLY, SUF, i_mul(X, Y));                                               \
            BIN_CASE(FLOOR_DIVIDE, SUF, i_floordiv(X, Y, &err));                                \
            BIN_CASE(MOD, SUF, i_mod(X, Y, &err));                                              \
            BIN_CASE(POWER, SUF, i_pow(X, Y, &err));                                            \
            BIN_CASE(MAXIMUM, SUF, X > Y ? X : Y);                                              \
            BIN_CASE(MINIMUM, SUF, X < Y ? X : Y);                                              \
            BIN_CASE(LEFT_SHIFT, SUF, i_shl(X, Y));                                             \
            BIN_CASE(RIGHT_SHIFT, SUF, i_shr(X, Y));                                            \
            BIN_LOGIC_CASES(SUF);                                                               \
        default: return EW_NO_KERNEL;                                                           \
        }                                                                                       \
    }

EW_FLOAT_DTYPES(DEFINE_BINARY_FLOAT)
EW_INT_DTYPES(DEFINE_BINARY_INT)

BIN_SIGNATURE(BOOL) {
    BIN_LOCALS(uint8_t, int64_t);
    switch (op) {
        BIN_LOGIC_CASES(BOOL);
    default: return EW_NO_KERNEL;
    }
}

static bool is_logic_op(kiln_op op) { return kiln_op_info_get(op)->shape == kiln_shape_compare; }

/* Arithmetic computes in the output dtype; comparisons and logical ops in the promoted dtype of
 * the inputs (a float scalar compared with an f16 tensor compares in f64, exactly). Inputs of
 * another dtype are converted first. */
kiln_status kiln_ref_binary(kiln_kernel_args *a) {
    kiln_tensor *out = a->out[0];
    kiln_dtype cd = is_logic_op(a->op) ? kiln_dtype_promote(a->in[0]->dtype, a->in[1]->dtype) : out->dtype;
    void *tx, *ty;
    const void *x = ew_as(a->in[0], cd, &tx), *y = ew_as(a->in[1], cd, &ty);
    int err = EW_NO_KERNEL;
    if (!x || !y) {
        free(tx);
        free(ty);
        return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    }
    ew_iter it;
    ew_iter_init(&it, 2, a->in, out);
    switch (cd) {
#define EW_BINARY_DISPATCH(SUF, T, M) case KILN_##SUF: err = binary_##SUF(a->op, &it, x, y, out->data); break;
        EW_ALL_DTYPES(EW_BINARY_DISPATCH)
#undef EW_BINARY_DISPATCH
    default: break;
    }
    free(tx);
    free(ty);
    return ew_fail(a, err);
}

/* ---- where: a byte copy by element size, after converting x and y to the output dtype ------- */
#define WHERE_LOOP(T)                                                                           \
    do {                                                                                        \
        const uint8_t *c = cv;                                                                  \
        const T *x = xv, *y = yv;                                                               \
        const int64_t n_ = it.inner, sc_ = it.stride[0][it.nd - 1], sx_ = it.stride[1][it.nd - 1], \
                      sy_ = it.stride[2][it.nd - 1];                                            \
        EW_ROWS(&it, const uint8_t *cr_ = c + off_[0]; const T *xr_ = x + off_[1];              \
                const T *yr_ = y + off_[2]; T *or_ = (T *)out->data + o_;                       \
                for (int64_t j_ = 0; j_ < n_; j_++) or_[j_] = cr_[j_ * sc_] ? xr_[j_ * sx_] : yr_[j_ * sy_];); \
    } while (0)

kiln_status kiln_ref_where(kiln_kernel_args *a) {
    kiln_tensor *out = a->out[0];
    void *tx, *ty;
    const void *cv = a->in[0]->data, *xv = ew_as(a->in[1], out->dtype, &tx), *yv = ew_as(a->in[2], out->dtype, &ty);
    if (!xv || !yv) {
        free(tx);
        free(ty);
        return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    }
    ew_iter it;
    ew_iter_init(&it, 3, a->in, out);
    switch (kiln_dtype_size(out->dtype)) {
    case 1: WHERE_LOOP(uint8_t); break;
    case 2: WHERE_LOOP(uint16_t); break;
    case 4: WHERE_LOOP(uint32_t); break;
    default: WHERE_LOOP(uint64_t); break;
    }
    free(tx);
    free(ty);
    return KILN_OK;
}

kiln_status kiln_ref_cast(kiln_kernel_args *a) {
    kiln_convert(a->out[0]->dtype, a->out[0]->data, a->in[0]->dtype, a->in[0]->data, a->in[0]->numel);
    return KILN_OK;
}

/* ==== decompositions ========================================================================= */
static kiln_var *op1(kiln_builder *b, kiln_op op, kiln_var *x) { return kiln_build(b, op, 1, (kiln_var *[]){x}, NULL); }
static kiln_var *op2(kiln_builder *b, kiln_op op, kiln_var *x, kiln_var *y) {
    return kiln_build(b, op, 2, (kiln_var *[]){x, y}, NULL);
}
static kiln_var *op2c(kiln_builder *b, kiln_op op, kiln_var *x, double c) { return op2(b, op, x, kiln_build_float(b, c)); }

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), or with approximate="tanh"
 *         = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
struct kiln_var *kiln_decompose_gelu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *x = in[0], *inner;
    if (!strcmp(kiln_attr_str(n->op, n->attrs, "approximate"), "tanh")) {
        kiln_var *x3 = op2(b, KILN_OP_MULTIPLY, op2(b, KILN_OP_MULTIPLY, x, x), x);
        kiln_var *poly = op2(b, KILN_OP_ADD, x, op2c(b, KILN_OP_MULTIPLY, x3, 0.044715));
        inner = op1(b, KILN_OP_TANH, op2c(b, KILN_OP_MULTIPLY, poly, sqrt(2.0 / 3.14159265358979323846)));
    } else {
        inner = op1(b, KILN_OP_ERF, op2c(b, KILN_OP_MULTIPLY, x, 0.70710678118654752440)); /* 1/sqrt(2) */
    }
    return op2(b, KILN_OP_MULTIPLY, op2c(b, KILN_OP_MULTIPLY, x, 0.5), op2c(b, KILN_OP_ADD, inner, 1.0));
}

/* silu(x) = x sigmoid(x). */
struct kiln_var *kiln_decompose_silu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)n;
    return op2(b, KILN_OP_MULTIPLY, in[0], op1(b, KILN_OP_SIGMOID, in[0]));
}

/* leaky_relu(x) = where(x > 0, x, alpha x). */
struct kiln_var *kiln_decompose_leaky_relu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *x = in[0], *pos = op2c(b, KILN_OP_GREATER, x, 0.0);
    kiln_var *neg = op2c(b, KILN_OP_MULTIPLY, x, kiln_attr_float(n->op, n->attrs, "alpha"));
    return kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){pos, x, neg}, NULL);
}
