/* ops.h — the op table (expanded from ops.def), attributes and their schemas, and the
 * signatures every op's shape rule, reference kernel and decomposition follow. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "core/core.h"

/* ---- the op enum -------------------------------------------------------------------------- */
typedef enum kiln_op {
#define OP(ID, name, nin_min, nin_max, dtypes, cls, flags, amp, shape, kernel, decomp, grad, attrs) \
    KILN_OP_##ID,
#include "ops/ops.def"
#undef OP
    KILN_OP_COUNT
} kiln_op;

/* Accepted dtypes of input 0 (bitmask over kiln_dtype); other inputs are checked by the rule. */
#define DT_(d) (1u << (d))
#define DT_FLOAT (DT_(KILN_F32) | DT_(KILN_F64) | DT_(KILN_F16) | DT_(KILN_BF16))
#define DT_INT (DT_(KILN_I8) | DT_(KILN_U8) | DT_(KILN_I32) | DT_(KILN_I64))
#define DT_NUM (DT_FLOAT | DT_INT)
#define DT_ALL (DT_NUM | DT_(KILN_BOOL))
#define DT_NONE 0u /* no input 0, or a structural op: nothing to check */

/* Fusion class (DESIGN.md): how the compiler may fuse the op. */
typedef enum kiln_op_class {
    KILN_CLASS_ELEMWISE, KILN_CLASS_BROADCAST, KILN_CLASS_INJECTIVE, KILN_CLASS_REDUCE,
    KILN_CLASS_OPAQUE, KILN_CLASS_CONTROL, KILN_CLASS_COUNT
} kiln_op_class;

/* Flags. */
#define F_NONE 0u
#define F_DIFF (1u << 0)      /* differentiable */
#define F_COMPOSITE (1u << 1) /* decomposes into other ops; no kernel of its own */
#define F_RANDOM (1u << 2)    /* draws from the counter-based RNG */
#define F_SIDE (1u << 3)      /* has a side effect: never removed or reordered */

/* Mixed precision rule. */
typedef enum kiln_amp_rule {
    KILN_AMP_LOW,    /* compute in the low-precision dtype (matmul, conv) */
    KILN_AMP_F32,    /* keep float32 (softmax, losses, norms, exp/log, reductions) */
    KILN_AMP_FOLLOW, /* follow the inputs */
    KILN_AMP_COUNT
} kiln_amp_rule;

/* ---- attributes --------------------------------------------------------------------------- */
typedef enum kiln_attr_kind {
    KILN_ATTR_INT, KILN_ATTR_FLOAT, KILN_ATTR_BOOL, KILN_ATTR_INTS, KILN_ATTR_FLOATS,
    KILN_ATTR_STR, KILN_ATTR_DTYPE, KILN_ATTR_TENSOR, KILN_ATTR_KIND_COUNT
} kiln_attr_kind;

/* One attribute value. `set` is false for an optional attribute left out ("none"). */
typedef struct kiln_attr {
    bool set;
    int64_t i;          /* INT; BOOL as 0/1 in b */
    double f;           /* FLOAT */
    bool b;             /* BOOL */
    int n;              /* INTS / FLOATS length */
    int64_t *ints;
    double *floats;
    const char *s;      /* STR */
    kiln_dtype dtype;   /* DTYPE */
    kiln_tensor *tensor;/* TENSOR (owned by the module that holds the node; see kiln_attrs_*) */
} kiln_attr;

/* Parsed from the schema string of ops.def: "name:kind", "name:kind=default", "name:kind?"
 * (optional, no default), and "{a|b|c}" after a str default lists the allowed values. */
typedef struct kiln_attr_spec {
    const char *name;
    kiln_attr_kind kind;
    bool required;      /* no default and not optional */
    kiln_attr dflt;     /* default (set=false for optional-without-default) */
    const char *choices;/* "none|mean|sum" or NULL */
} kiln_attr_spec;

/* ---- what rules and kernels receive ------------------------------------------------------ */
struct kiln_type;

typedef struct kiln_shape_args {
    kiln_context *ctx;
    kiln_arena *arena;         /* where result types go */
    kiln_op op;
    const kiln_attr *attrs;
    int n_in;
    const struct kiln_type *const *in;
    const char *where;         /* "file.kir:3:5" or "@main" or "eager" */
} kiln_shape_args;
/* Returns the result type, or NULL with the error set (use kiln_op_fail). */
typedef const struct kiln_type *(*kiln_shape_fn)(kiln_shape_args *a);

typedef struct kiln_kernel_args {
    kiln_context *ctx;
    kiln_op op;
    const kiln_attr *attrs;
    int n_in;
    kiln_tensor *const *in;    /* every input as a tensor (scalars arrive as 0-d tensors) */
    int n_out;
    kiln_tensor *const *out;   /* allocated from the inferred type (tuples flattened) */
    const char *where;
} kiln_kernel_args;
/* Fills the outputs; returns KILN_OK or an error (e.g. an index out of range at run time). */
typedef kiln_status (*kiln_kernel_fn)(kiln_kernel_args *a);

struct kiln_builder;
struct kiln_node;
struct kiln_var;
/* Emits primitive ops computing node n from its inputs `in` into builder b; returns the
 * result (a tuple var for multi-output ops) or NULL with the error set. */
typedef struct kiln_var *(*kiln_decompose_fn)(struct kiln_builder *b, const struct kiln_node *n,
                                              struct kiln_var *const *in);

/* Gradient rule (vector-Jacobian product) of a primitive: emits into b the adjoints din[i] of
 * node n's inputs `in` given its result y and the adjoint dy of y (same type as y; for tuple
 * results a tuple var). din[i] stays NULL where no gradient flows (integer inputs, indices).
 * Returns KILN_OK or an error. */
typedef kiln_status (*kiln_grad_fn)(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in,
                                    struct kiln_var *y, struct kiln_var *dy, struct kiln_var **din);

typedef struct kiln_op_info {
    const char *name;
    int nin_min, nin_max;      /* nin_max -1: variadic */
    unsigned dtypes;
    kiln_op_class cls;
    unsigned flags;
    kiln_amp_rule amp;
    kiln_shape_fn shape;       /* NULL for if / while / call (inferred structurally) */
    kiln_kernel_fn kernel;     /* NULL for composites and structural ops */
    kiln_decompose_fn decompose;
    kiln_grad_fn grad;         /* NULL: composites (their decomposition is differentiated) and
                                * non-differentiable ops */
    const char *schema;
    int n_attrs;
    kiln_attr_spec *attrs;     /* parsed from schema */
} kiln_op_info;

const kiln_op_info *kiln_op_info_get(kiln_op op);
/* Index of attribute `name` in op's schema, or -1. */
int kiln_attr_index(kiln_op op, const char *name);
/* The attribute named `name` of a node's attrs (asserts that the schema has it). */
const kiln_attr *kiln_attr_get(kiln_op op, const kiln_attr *attrs, const char *name);
int64_t kiln_attr_int(kiln_op op, const kiln_attr *attrs, const char *name);
double kiln_attr_float(kiln_op op, const kiln_attr *attrs, const char *name);
bool kiln_attr_bool(kiln_op op, const kiln_attr *attrs, const char *name);
const char *kiln_attr_str(kiln_op op, const kiln_attr *attrs, const char *name);
/* Fills attrs with op's defaults. */
void kiln_attrs_default(kiln_op op, kiln_attr *attrs);
/* Prints attributes that differ from the defaults: "axes=[1], keepdims=true". */
void kiln_buf_attrs(kiln_buf *b, kiln_op op, const kiln_attr *attrs);
bool kiln_attr_equal(kiln_attr_kind kind, const kiln_attr *x, const kiln_attr *y);

/* Sets a KILN_ERR_TYPE error "op 'name' at WHERE: <message>" and returns NULL. */
const struct kiln_type *kiln_op_fail(kiln_shape_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Same for kernels: "op 'name' at WHERE: <message>", returns `s`. */
kiln_status kiln_kernel_fail(kiln_kernel_args *a, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Normalises an axis in [-ndim, ndim) to [0, ndim); -1 if out of range. */
int kiln_norm_axis(int64_t axis, int ndim);
/* Axes attribute (optional ints; unset = all axes) to a mask over ndim dims. Returns the number
 * of axes, or -1-i when axes[i] is out of range or repeated. */
int kiln_norm_axes(const kiln_attr *axes, int ndim, bool *mask);
/* numpy broadcasting of two shapes; false if incompatible. */
bool kiln_broadcast_shapes(int na, const int64_t *a, int nb, const int64_t *b, int *n_out, int64_t *out);
/* Element strides (0 on broadcast dims) of a contiguous input of in_shape read at out_shape. */
void kiln_broadcast_strides(int n_in, const int64_t *in_shape, int n_out, const int64_t *out_shape, int64_t *strides);
/* Whether a pool's windows are disjoint kh x kw tiles from the origin inside an h x w input
 * giving oh x ow outputs (stride = kernel, no padding or dilation: the usual 2x2 pool). */
bool kiln_pool_tiles(const int64_t *kernel, const int64_t *stride, const int64_t *dil, const int64_t *pad, int64_t h,
                     int64_t w, int64_t oh, int64_t ow);
/* Philox4x32-10 (random.c): replaces counter c by its encryption under key (k0, k1). */
void kiln_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1);

/* ---- dense kernels shared by the matmul, conv and pool families (matmul.c, conv.c) -------- */
/* The dtype such kernels compute in: f32 for f16 / bf16 / f32, f64, i64 for ints and bool. */
kiln_dtype kiln_acc_dtype(kiln_dtype dt);
/* t's data as dtype dt: t->data itself when t has that dtype, else a malloc'd buffer stored in
 * *owned too (filled with t's converted elements when `convert`); caller frees *owned. NULL on OOM. */
void *kiln_data_as(const kiln_tensor *t, kiln_dtype dt, bool convert, void **owned);
/* C[m, n] = A[m, k] @ B[k, n] in dtype dt (f32, f64 or i64, wrapping): A(i, p) is a[i*sam + p*sak],
 * B(p, j) is b[p*sbk + j*sbn], C is row-major with row stride ldc. The one GEMM of the ref kernels. */
void kiln_gemm(kiln_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t sam, int64_t sak,
               const void *b, int64_t sbk, int64_t sbn, void *c, int64_t ldc);
/* A 2-D window attribute of conv / pool ops: `name` must hold 2 ints >= min, or for "padding"
 * [h, w] or [top, left, bottom, right] >= 0, stored as 4. False with a message in err if not. */
bool kiln_window_attr(kiln_op op, const kiln_attr *attrs, const char *name, int64_t min, int64_t *out,
                      char *err, size_t err_size);

/* ---- every rule, kernel and decomposition named in ops.def -------------------------------- */
/* Column `shape` X names kiln_shape_X, `kernel` X names kiln_ref_X, `decomp` X names
 * kiln_decompose_X, `grad` X names kiln_grad_X; "none" marks an absent entry (NULL in the table). */
#define OP(ID, name, nin_min, nin_max, dtypes, cls, flags, amp, shape, kernel, decomp, grad, attrs) \
    const struct kiln_type *kiln_shape_##shape(kiln_shape_args *a);                            \
    kiln_status kiln_ref_##kernel(kiln_kernel_args *a);                                        \
    struct kiln_var *kiln_decompose_##decomp(struct kiln_builder *b, const struct kiln_node *n, \
                                             struct kiln_var *const *in);                     \
    kiln_status kiln_grad_##grad(struct kiln_builder *b, const struct kiln_node *n,            \
                                 struct kiln_var *const *in, struct kiln_var *y,               \
                                 struct kiln_var *dy, struct kiln_var **din);
#include "ops/ops.def"
#undef OP

#endif /* KILN_OPS_H */
