/* test_layout.c — shape and layout ops (reshape family, transpose, broadcast_to, concatenate /
 * split / stack, strided_slice, pad, repeat, tile, reverse, resize2d) over several dtypes, with
 * hand-checked results, Python slicing edge cases, bit-exact data movement and every error path. */
#include "test.h"
#include <stdint.h>
#include <stdlib.h>

static const kiln_dtype DTS[] = {KILN_F32, KILN_I64, KILN_BOOL, KILN_F16};
#define FOR_DTYPES for (size_t k_ = 0; k_ < KILN_COUNTOF(DTS); k_++) for (kiln_dtype dt = DTS[k_], *once_ = &dt; once_; once_ = NULL)

/* Element i of the test input of dtype dt: distinct exact values (a 1-in-3 pattern for bool). */
static double val(kiln_dtype dt, int64_t i) {
    if (dt == KILN_BOOL) return (double)(i % 3 == 1);
    return dt == KILN_I64 ? (double)(i * 3 - 7) : (double)(i * 3 - 7) / 2;
}

static int shape_numel(const char *s) {
    int n = 1;
    while (s && *s) {
        n *= (int)strtol(s, (char **)&s, 10);
        while (*s == ',' || *s == ' ') s++;
    }
    return n;
}

/* A tensor of dtype dt and shape with element i = val(dt, i). */
static kiln_value iota(kiln_context *ctx, kiln_dtype dt, const char *shape) {
    int n = shape_numel(shape);
    double *d = malloc(sizeof(double) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) d[i] = val(dt, i);
    kiln_value v = tv(ctx, dt, shape, d);
    free(d);
    return v;
}

/* Checks that result v (dtype dt, shape) holds input elements idx[0], idx[1], ... of an iota. */
static void check_idx(const char *file, int line, kiln_value v, kiln_dtype dt, const char *shape, const int *idx) {
    int n = shape_numel(shape);
    double *e = malloc(sizeof(double) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) e[i] = val(dt, idx[i]);
    check_tensor(file, line, v, dt, shape, e, 0);
    free(e);
    kiln_value_release(v);
}
#define CHECK_IDX(v, dt, shape, ...) check_idx(__FILE__, __LINE__, (v), (dt), (shape), (const int[]){__VA_ARGS__})
#define CHECK_EMPTY(v, dt, shape) check_idx(__FILE__, __LINE__, (v), (dt), (shape), (const int[]){0})

/* Runs op on one input, releases the input, returns the result. */
static kiln_value op1(kiln_context *ctx, const char *op, kiln_value x, const char *attrs) {
    kiln_value y = run_op(ctx, op, 1, &x, attrs);
    kiln_value_release(x);
    return y;
}

/* Runs op expecting a type error whose message contains sub; releases the inputs. */
#define CHECK_OP_FAILS(ctx, op, n, in, attrs, sub)                                                 \
    do {                                                                                       \
        kiln_value out_ = {.kind = KILN_VALUE_NONE};                                           \
        CHECK_ERR(ctx, kiln_op_run(ctx, op, n, in, attrs, &out_), KILN_ERR_TYPE, sub);         \
        kiln_value_release(out_);                                                              \
        release_all(n, in);                                                                    \
    } while (0)

static void expect_fail(kiln_context *ctx, const char *op, kiln_value x, const char *attrs, const char *sub) {
    CHECK_OP_FAILS(ctx, op, 1, &x, attrs, sub);
}

/* ---- reshape, expand_dims, squeeze, batch_flatten ------------------------------------------ */
TEST(layout_reshape) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "reshape", iota(ctx, dt, "2,3"), "shape=[3, 2]"), dt, "3,2", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "reshape", iota(ctx, dt, "2,3"), "shape=[-1]"), dt, "6", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "reshape", iota(ctx, dt, "2,3"), "shape=[3, -1, 1]"), dt, "3,2,1", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "reshape", iota(ctx, dt, ""), "shape=[1, 1]"), dt, "1,1", 0);
        CHECK_IDX(op1(ctx, "reshape", iota(ctx, dt, "1"), "shape=[]"), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "reshape", iota(ctx, dt, "0,3"), "shape=[3, -1]"), dt, "3,0");
    }
    /* scalar operands act as 0-d tensors of their dtype (int -> i64, float -> f64) */
    kiln_value y = op1(ctx, "reshape", kiln_value_int(5), "shape=[1, 1]");
    CHECK_TENSOR(y, KILN_I64, "1,1", ((double[]){5}), 0);
    kiln_value_release(y);
    kiln_value sc[2] = {kiln_value_float(1.5), kiln_value_float(-2)};
    y = run_op(ctx, "stack", 2, sc, "");
    CHECK_TENSOR(y, KILN_F64, "2", ((double[]){1.5, -2}), 0);
    kiln_value_release(y);
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "2,3"), "shape=[4, -1]", "cannot reshape f32[2, 3] (6 elements) into [4, -1]");
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "2,3"), "shape=[4, 2]", "into [4, 2]");
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "2,3"), "shape=[-1, -1]", "only one -1");
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "2,3"), "shape=[-2, -3]", "dim 0 is -2");
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "0,3"), "shape=[-1, 0]", "cannot reshape f32[0, 3]");
    expect_fail(ctx, "reshape", iota(ctx, KILN_F32, "1"), "shape=[1, 1, 1, 1, 1, 1, 1, 1, 1]", "more than 8 dims");
    kiln_context_free(ctx);
}

TEST(layout_expand_dims_squeeze) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, "2,3"), "axis=0"), dt, "1,2,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, "2,3"), "axis=2"), dt, "2,3,1", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, "2,3"), "axis=-1"), dt, "2,3,1", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, "2,3"), "axis=-2, num=2"), dt, "2,1,1,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, "2,3"), "axis=-3"), dt, "1,2,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "expand_dims", iota(ctx, dt, ""), "axis=0, num=2"), dt, "1,1", 0);
        CHECK_IDX(op1(ctx, "squeeze", iota(ctx, dt, "1,2,1,3,1"), ""), dt, "2,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "squeeze", iota(ctx, dt, "1,2,1,3,1"), "axes=[-1, 0]"), dt, "2,1,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "squeeze", iota(ctx, dt, "1,1"), ""), dt, "", 0);
        CHECK_IDX(op1(ctx, "squeeze", iota(ctx, dt, ""), ""), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "squeeze", iota(ctx, dt, "1,0,1"), ""), dt, "0");
    }
    expect_fail(ctx, "expand_dims", iota(ctx, KILN_F32, "2,3"), "axis=3", "axis 3 out of range [-3, 2] for f32[2, 3]");
    expect_fail(ctx, "expand_dims", iota(ctx, KILN_F32, "2,3"), "axis=-4", "axis -4 out of range");
    expect_fail(ctx, "expand_dims", iota(ctx, KILN_F32, "2,3"), "axis=0, num=7", "more than 8 dims");
    expect_fail(ctx, "squeeze", iota(ctx, KILN_F32, "1,2,1"), "axes=[1]", "cannot squeeze axis 1 of size 2 in f32[1, 2, 1]");
    expect_fail(ctx, "squeeze", iota(ctx, KILN_F32, "1,2,1"), "axes=[3]", "axis 3 out of range");
    expect_fail(ctx, "squeeze", iota(ctx, KILN_F32, "1,2,1"), "axes=[0, -3]", "repeated");
    kiln_context_free(ctx);
}

TEST(layout_batch_flatten) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "batch_flatten", iota(ctx, dt, "2,3,2"), ""), dt, "2,6", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
        CHECK_IDX(op1(ctx, "batch_flatten", iota(ctx, dt, "3"), ""), dt, "3,1", 0, 1, 2);
        CHECK_EMPTY(op1(ctx, "batch_flatten", iota(ctx, dt, "0,2,3"), ""), dt, "0,6");
    }
    expect_fail(ctx, "batch_flatten", iota(ctx, KILN_F32, ""), "", "no batch dim");
    kiln_context_free(ctx);
}

/* ---- transpose, swap_axis ------------------------------------------------------------------ */
TEST(layout_transpose) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "transpose", iota(ctx, dt, "2,3"), ""), dt, "3,2", 0, 3, 1, 4, 2, 5);
        /* [2,3,2] element (a,b,c) at 6a+2b+c; axes [1,0,2] -> out (b,a,c) */
        CHECK_IDX(op1(ctx, "transpose", iota(ctx, dt, "2,3,2"), "axes=[1, 0, 2]"), dt, "3,2,2", 0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11);
        CHECK_IDX(op1(ctx, "transpose", iota(ctx, dt, "2,3,2"), "axes=[-1, 0, -2]"), dt, "2,2,3", 0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11);
        CHECK_IDX(op1(ctx, "transpose", iota(ctx, dt, "2,3,2"), ""), dt, "2,3,2", 0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11);
        CHECK_IDX(op1(ctx, "transpose", iota(ctx, dt, ""), ""), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "transpose", iota(ctx, dt, "0,3"), ""), dt, "3,0");
        CHECK_IDX(op1(ctx, "swap_axis", iota(ctx, dt, "2,3,2"), "axis1=0, axis2=2"), dt, "2,3,2", 0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11);
        CHECK_IDX(op1(ctx, "swap_axis", iota(ctx, dt, "2,3"), "axis1=-1, axis2=0"), dt, "3,2", 0, 3, 1, 4, 2, 5);
        CHECK_IDX(op1(ctx, "swap_axis", iota(ctx, dt, "2,3"), "axis1=1, axis2=1"), dt, "2,3", 0, 1, 2, 3, 4, 5);
    }
    /* an inner run kept whole by the permutation: [2,2,3] with axes [1,0,2] */
    CHECK_IDX(op1(ctx, "transpose", iota(ctx, KILN_F32, "2,2,3"), "axes=[1, 0, 2]"), KILN_F32, "2,2,3", 0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11);
    expect_fail(ctx, "transpose", iota(ctx, KILN_F32, "2,3"), "axes=[0, 0]", "axes [0, 0] are not a permutation of the 2 dims of f32[2, 3]");
    expect_fail(ctx, "transpose", iota(ctx, KILN_F32, "2,3"), "axes=[0]", "not a permutation");
    expect_fail(ctx, "transpose", iota(ctx, KILN_F32, "2,3"), "axes=[0, 2]", "not a permutation");
    expect_fail(ctx, "transpose", iota(ctx, KILN_F32, "2,3"), "axes=[1, 0, 2]", "not a permutation");
    expect_fail(ctx, "swap_axis", iota(ctx, KILN_F32, "2,3"), "axis1=0, axis2=2", "axes 0 and 2: out of range for f32[2, 3]");
    kiln_context_free(ctx);
}

/* ---- broadcast_to -------------------------------------------------------------------------- */
TEST(layout_broadcast_to) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "broadcast_to", iota(ctx, dt, "3"), "shape=[2, 3]"), dt, "2,3", 0, 1, 2, 0, 1, 2);
        CHECK_IDX(op1(ctx, "broadcast_to", iota(ctx, dt, "2,1"), "shape=[2, 3]"), dt, "2,3", 0, 0, 0, 1, 1, 1);
        CHECK_IDX(op1(ctx, "broadcast_to", iota(ctx, dt, "2,1"), "shape=[2, 2, 3]"), dt, "2,2,3", 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1);
        CHECK_IDX(op1(ctx, "broadcast_to", iota(ctx, dt, ""), "shape=[2, 2]"), dt, "2,2", 0, 0, 0, 0);
        CHECK_IDX(op1(ctx, "broadcast_to", iota(ctx, dt, "2,3"), "shape=[2, 3]"), dt, "2,3", 0, 1, 2, 3, 4, 5);
        CHECK_EMPTY(op1(ctx, "broadcast_to", iota(ctx, dt, "1"), "shape=[0]"), dt, "0");
        CHECK_EMPTY(op1(ctx, "broadcast_to", iota(ctx, dt, "0"), "shape=[3, 0]"), dt, "3,0");
    }
    expect_fail(ctx, "broadcast_to", iota(ctx, KILN_F32, "2,3"), "shape=[3, 3]", "cannot broadcast f32[2, 3] to [3, 3]");
    expect_fail(ctx, "broadcast_to", iota(ctx, KILN_F32, "2,3"), "shape=[3]", "cannot broadcast f32[2, 3] to [3]");
    expect_fail(ctx, "broadcast_to", iota(ctx, KILN_F32, "3"), "shape=[-1, 3]", "cannot broadcast");
    expect_fail(ctx, "broadcast_to", iota(ctx, KILN_F32, "0"), "shape=[2]", "cannot broadcast f32[0] to [2]");
    kiln_context_free(ctx);
}

/* ---- concatenate, split, stack ------------------------------------------------------------- */
TEST(layout_concatenate) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        /* iota inputs share indices, so each output element names its source index */
        kiln_value in[3] = {iota(ctx, dt, "2,2"), iota(ctx, dt, "2,1"), iota(ctx, dt, "2,3")};
        CHECK_IDX(run_op(ctx, "concatenate", 3, in, "axis=1"), dt, "2,6", 0, 1, 0, 0, 1, 2, 2, 3, 1, 3, 4, 5);
        CHECK_IDX(run_op(ctx, "concatenate", 3, in, "axis=-1"), dt, "2,6", 0, 1, 0, 0, 1, 2, 2, 3, 1, 3, 4, 5);
        release_all(3, in);
        kiln_value r[3] = {iota(ctx, dt, "1,2"), iota(ctx, dt, "0,2"), iota(ctx, dt, "2,2")};
        CHECK_IDX(run_op(ctx, "concatenate", 3, r, ""), dt, "3,2", 0, 1, 0, 1, 2, 3);
        CHECK_IDX(run_op(ctx, "concatenate", 1, r, "axis=0"), dt, "1,2", 0, 1);
        CHECK_EMPTY(run_op(ctx, "concatenate", 1, r + 1, "axis=-2"), dt, "0,2");
        release_all(3, r);
    }
    kiln_value a[2] = {iota(ctx, KILN_F32, "2,2"), iota(ctx, KILN_F16, "2,2")};
    CHECK_OP_FAILS(ctx, "concatenate", 2, a, "", "input 1 is f16[2, 2], input 0 is f32[2, 2]");
    kiln_value b[2] = {iota(ctx, KILN_F32, "2,2"), iota(ctx, KILN_F32, "3,3")};
    CHECK_OP_FAILS(ctx, "concatenate", 2, b, "axis=1", "input 1 is f32[3, 3], input 0 is f32[2, 2]: dtypes and all dims but axis 1 must match");
    kiln_value c[2] = {iota(ctx, KILN_F32, "2,2"), iota(ctx, KILN_F32, "2")};
    CHECK_OP_FAILS(ctx, "concatenate", 2, c, "", "input 1 is f32[2]");
    kiln_value d[2] = {iota(ctx, KILN_F32, ""), iota(ctx, KILN_F32, "")};
    CHECK_OP_FAILS(ctx, "concatenate", 2, d, "", "cannot concatenate 0-d");
    kiln_value e[1] = {iota(ctx, KILN_F32, "2")};
    CHECK_OP_FAILS(ctx, "concatenate", 1, e, "axis=1", "axis 1 out of range");
    kiln_context_free(ctx);
}

TEST(layout_split) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        kiln_value x = iota(ctx, dt, "2,4");
        kiln_value s = run_op(ctx, "split", 1, &x, "sections=2, axis=1");
        CHECK_INT(kiln_value_tuple_size(s), 2);
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 0)), dt, "2,2", 0, 1, 4, 5);
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 1)), dt, "2,2", 2, 3, 6, 7);
        kiln_value_release(s);
        s = run_op(ctx, "split", 1, &x, "sizes=[1, 0, 3], axis=-1");
        CHECK_INT(kiln_value_tuple_size(s), 3);
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 0)), dt, "2,1", 0, 4);
        CHECK_EMPTY(kiln_value_retain(kiln_value_tuple_get(s, 1)), dt, "2,0");
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 2)), dt, "2,3", 1, 2, 3, 5, 6, 7);
        kiln_value_release(s);
        s = run_op(ctx, "split", 1, &x, "sections=2");
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 0)), dt, "1,4", 0, 1, 2, 3);
        CHECK_IDX(kiln_value_retain(kiln_value_tuple_get(s, 1)), dt, "1,4", 4, 5, 6, 7);
        kiln_value_release(s);
        kiln_value_release(x);
        x = iota(ctx, dt, "0,3");
        s = run_op(ctx, "split", 1, &x, "sections=3");
        CHECK_INT(kiln_value_tuple_size(s), 3);
        CHECK_EMPTY(kiln_value_retain(kiln_value_tuple_get(s, 2)), dt, "0,3");
        kiln_value_release(s);
        kiln_value_release(x);
    }
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sections=3, axis=1", "3 sections do not divide axis 1 (size 4) of f32[2, 4]");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sections=0", "0 sections do not divide");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sizes=[1, 2], axis=1", "sizes [1, 2] do not sum to axis 1 (size 4) of f32[2, 4]");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sizes=[5, -1], axis=1", "do not sum");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sizes=[2, -1], axis=0", "do not sum");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sections=2, sizes=[1, 1]", "exactly one of sections and sizes");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "", "exactly one of sections and sizes");
    expect_fail(ctx, "split", iota(ctx, KILN_F32, "2,4"), "sections=2, axis=2", "axis 2 out of range");
    kiln_context_free(ctx);
}

TEST(layout_stack) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        kiln_value in[2] = {iota(ctx, dt, "2,2"), iota(ctx, dt, "2,2")};
        CHECK_IDX(run_op(ctx, "stack", 2, in, ""), dt, "2,2,2", 0, 1, 2, 3, 0, 1, 2, 3);
        CHECK_IDX(run_op(ctx, "stack", 2, in, "axis=1"), dt, "2,2,2", 0, 1, 0, 1, 2, 3, 2, 3);
        CHECK_IDX(run_op(ctx, "stack", 2, in, "axis=-1"), dt, "2,2,2", 0, 0, 1, 1, 2, 2, 3, 3);
        CHECK_IDX(run_op(ctx, "stack", 1, in, "axis=-3"), dt, "1,2,2", 0, 1, 2, 3);
        release_all(2, in);
        kiln_value s[3] = {iota(ctx, dt, ""), iota(ctx, dt, ""), iota(ctx, dt, "")};
        CHECK_IDX(run_op(ctx, "stack", 3, s, ""), dt, "3", 0, 0, 0);
        release_all(3, s);
    }
    kiln_value a[2] = {iota(ctx, KILN_F32, "2,2"), iota(ctx, KILN_F32, "2,3")};
    CHECK_OP_FAILS(ctx, "stack", 2, a, "", "input 1 is f32[2, 3], input 0 is f32[2, 2]: stacked tensors must have one type");
    kiln_value b[2] = {iota(ctx, KILN_F32, "2"), iota(ctx, KILN_I64, "2")};
    CHECK_OP_FAILS(ctx, "stack", 2, b, "", "input 1 is i64[2]");
    kiln_value c[1] = {iota(ctx, KILN_F32, "2")};
    CHECK_OP_FAILS(ctx, "stack", 1, c, "axis=2", "axis 2 out of range [-2, 1] for f32[2]");
    kiln_context_free(ctx);
}

/* ---- strided_slice ------------------------------------------------------------------------- */
TEST(layout_strided_slice_python) {
    kiln_context *ctx = kiln_context_new();
    /* x = [0, 1, 2, 3, 4]; each case is the Python slice in the comment */
    static const struct { const char *attrs, *shape; int n, idx[5]; } cases[] = {
        {"begin=[1], end=[4]", "3", 3, {1, 2, 3}},                               /* x[1:4] */
        {"begin=[-1], end=[-6], strides=[-1]", "5", 5, {4, 3, 2, 1, 0}},         /* x[::-1] */
        {"begin=[-2], end=[100]", "2", 2, {3, 4}},                               /* x[-2:100] */
        {"begin=[10], end=[20]", "0", 0, {0}},                                   /* x[10:20] */
        {"begin=[-10], end=[2]", "2", 2, {0, 1}},                                /* x[-10:2] */
        {"begin=[4], end=[0], strides=[-2]", "2", 2, {4, 2}},                    /* x[4:0:-2] */
        {"begin=[3], end=[-10], strides=[-1]", "4", 4, {3, 2, 1, 0}},            /* x[3:-10:-1] */
        {"begin=[5], end=[0], strides=[-1]", "4", 4, {4, 3, 2, 1}},              /* x[5:0:-1] */
        {"begin=[100], end=[-100], strides=[-3]", "2", 2, {4, 1}},               /* x[100:-100:-3] */
        {"begin=[0], end=[5], strides=[3]", "2", 2, {0, 3}},                     /* x[0:5:3] */
        {"begin=[2], end=[2]", "0", 0, {0}},                                     /* x[2:2] */
        {"begin=[3], end=[1]", "0", 0, {0}},                                     /* x[3:1] */
        {"begin=[1], end=[3], strides=[-1]", "0", 0, {0}},                       /* x[1:3:-1] */
        {"begin=[-1], end=[-6], strides=[-2]", "3", 3, {4, 2, 0}},               /* x[-1:-6:-2] */
        {"begin=[-1], end=[-1], strides=[-1]", "0", 0, {0}},                     /* x[-1:-1:-1] */
        {"begin=[0], end=[-1], strides=[-1]", "0", 0, {0}},                      /* x[0:-1:-1] */
        {"begin=[-1], end=[-5], strides=[-4]", "1", 1, {4}},                     /* x[-1:-5:-4] */
        {"begin=[1], end=[5], strides=[10]", "1", 1, {1}},                       /* x[1:5:10] */
        {"begin=[-9223372036854775807], end=[9223372036854775807], strides=[2]", "3", 3, {0, 2, 4}},
        {"begin=[9223372036854775807], end=[-9223372036854775807], strides=[-9223372036854775807]", "1", 1, {4}},
    };
    for (size_t c = 0; c < KILN_COUNTOF(cases); c++)
        FOR_DTYPES check_idx(__FILE__, __LINE__, op1(ctx, "strided_slice", iota(ctx, dt, "5"), cases[c].attrs), dt, cases[c].shape, cases[c].idx);
    kiln_context_free(ctx);
}

TEST(layout_strided_slice_nd) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        /* x[3,4] element (r,c) at 4r+c */
        CHECK_IDX(op1(ctx, "strided_slice", iota(ctx, dt, "3,4"), "begin=[1], end=[3]"), dt, "2,4", 4, 5, 6, 7, 8, 9, 10, 11);
        CHECK_IDX(op1(ctx, "strided_slice", iota(ctx, dt, "3,4"), "begin=[1], end=[3], axes=[1]"), dt, "3,2", 1, 2, 5, 6, 9, 10);
        CHECK_IDX(op1(ctx, "strided_slice", iota(ctx, dt, "3,4"), "begin=[-1, -1], end=[-4, -5], strides=[-2, -3]"), dt, "2,2", 11, 8, 3, 0);
        CHECK_IDX(op1(ctx, "strided_slice", iota(ctx, dt, "3,4"), "begin=[-1, 0], end=[-5, 9], strides=[-1, 2], axes=[-1, 0]"), dt, "2,4",
                  3, 2, 1, 0, 11, 10, 9, 8);
        CHECK_EMPTY(op1(ctx, "strided_slice", iota(ctx, dt, "3,4"), "begin=[2], end=[1], axes=[1]"), dt, "3,0");
        CHECK_EMPTY(op1(ctx, "strided_slice", iota(ctx, dt, "0,4"), "begin=[-1], end=[-9], strides=[-1]"), dt, "0,4");
        CHECK_IDX(op1(ctx, "strided_slice", iota(ctx, dt, ""), "begin=[], end=[]"), dt, "", 0);
    }
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3,4"), "begin=[0], end=[2], strides=[0]", "stride 0 on axis 0 (input f32[3, 4])");
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3,4"), "begin=[0, 1], end=[2]", "must have one length");
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3,4"), "begin=[0], end=[2], strides=[1, 1]", "must have one length");
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3,4"), "begin=[0, 0], end=[2, 2], axes=[1, -1]", "axis -1 out of range or repeated");
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3,4"), "begin=[0], end=[2], axes=[2]", "axis 2 out of range");
    expect_fail(ctx, "strided_slice", iota(ctx, KILN_F32, "3"), "begin=[0, 0], end=[1, 1]", "2 begin values for 1 dims");
    kiln_context_free(ctx);
}

/* ---- pad ----------------------------------------------------------------------------------- */
TEST(layout_pad) {
    kiln_context *ctx = kiln_context_new();
    kiln_value y = op1(ctx, "pad", tv(ctx, KILN_F32, "3", (double[]){1, 2, 3}), "pad_width=[1, 2], value=9.0");
    CHECK_TENSOR(y, KILN_F32, "6", ((double[]){9, 1, 2, 3, 9, 9}), 0);
    kiln_value_release(y);
    y = op1(ctx, "pad", tv(ctx, KILN_F32, "3", (double[]){1, 2, 3}), "pad_width=[2, 2], mode=\"reflect\"");
    CHECK_TENSOR(y, KILN_F32, "7", ((double[]){3, 2, 1, 2, 3, 2, 1}), 0);
    kiln_value_release(y);
    y = op1(ctx, "pad", tv(ctx, KILN_F32, "3", (double[]){1, 2, 3}), "pad_width=[2, 1], mode=\"edge\"");
    CHECK_TENSOR(y, KILN_F32, "6", ((double[]){1, 1, 1, 2, 3, 3}), 0);
    kiln_value_release(y);
    FOR_DTYPES {
        /* x[2,3] = indices 0..5 */
        CHECK_IDX(op1(ctx, "pad", iota(ctx, dt, "2,3"), "pad_width=[1, 1, 2, 1], mode=\"reflect\""), dt, "4,6",
                  5, 4, 3, 4, 5, 4, 2, 1, 0, 1, 2, 1, 5, 4, 3, 4, 5, 4, 2, 1, 0, 1, 2, 1);
        CHECK_IDX(op1(ctx, "pad", iota(ctx, dt, "2,3"), "pad_width=[1, 1, 2, 1], mode=\"edge\""), dt, "4,6",
                  0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 2, 2, 3, 3, 3, 4, 5, 5, 3, 3, 3, 4, 5, 5);
        CHECK_IDX(op1(ctx, "pad", iota(ctx, dt, "2,3"), "pad_width=[0, 0, 0, 0], mode=\"reflect\""), dt, "2,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "pad", iota(ctx, dt, ""), "pad_width=[], mode=\"edge\""), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "pad", iota(ctx, dt, "0,2"), "pad_width=[0, 0, 1, 1], mode=\"reflect\""), dt, "0,4");
    }
    /* constant value in each dtype (converted like a store: bool != 0, ints truncated) */
    y = op1(ctx, "pad", tv(ctx, KILN_I64, "2,1", (double[]){4, 5}), "pad_width=[0, 1, 1, 0], value=7.0");
    CHECK_TENSOR(y, KILN_I64, "3,2", ((double[]){7, 4, 7, 5, 7, 7}), 0);
    kiln_value_release(y);
    y = op1(ctx, "pad", tv(ctx, KILN_BOOL, "1", (double[]){0}), "pad_width=[1, 1], value=1.0");
    CHECK_TENSOR(y, KILN_BOOL, "3", ((double[]){1, 0, 1}), 0);
    kiln_value_release(y);
    y = op1(ctx, "pad", tv(ctx, KILN_F16, "0", NULL), "pad_width=[2, 1], value=-1.5");
    CHECK_TENSOR(y, KILN_F16, "3", ((double[]){-1.5, -1.5, -1.5}), 0);
    kiln_value_release(y);
    y = op1(ctx, "pad", tv(ctx, KILN_F32, "0,2", NULL), "pad_width=[0, 0, 3, 0]");
    CHECK_EMPTY(y, KILN_F32, "0,5");
    expect_fail(ctx, "pad", iota(ctx, KILN_F32, "3"), "pad_width=[3, 0], mode=\"reflect\"", "reflect pad_width [3, 0] needs pads smaller than dim 0 (size 3) of f32[3]");
    expect_fail(ctx, "pad", iota(ctx, KILN_F32, "2,3"), "pad_width=[0, 0, 1, 3], mode=\"reflect\"", "smaller than dim 1");
    expect_fail(ctx, "pad", iota(ctx, KILN_F32, "2,3"), "pad_width=[1, 1]", "pad_width [1, 1] needs 2 entries per dim of f32[2, 3]");
    expect_fail(ctx, "pad", iota(ctx, KILN_F32, "3"), "pad_width=[-1, 0]", "negative");
    expect_fail(ctx, "pad", iota(ctx, KILN_F32, "0"), "pad_width=[1, 0], mode=\"edge\"", "edge pad of empty dim 0");
    kiln_context_free(ctx);
}

/* ---- repeat, tile, reverse ----------------------------------------------------------------- */
TEST(layout_repeat_tile) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "repeat", iota(ctx, dt, "2,2"), "repeats=2"), dt, "8", 0, 0, 1, 1, 2, 2, 3, 3);
        CHECK_IDX(op1(ctx, "repeat", iota(ctx, dt, "2,2"), "repeats=2, axis=0"), dt, "4,2", 0, 1, 0, 1, 2, 3, 2, 3);
        CHECK_IDX(op1(ctx, "repeat", iota(ctx, dt, "2,2"), "repeats=3, axis=-1"), dt, "2,6", 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3);
        CHECK_IDX(op1(ctx, "repeat", iota(ctx, dt, ""), "repeats=3"), dt, "3", 0, 0, 0);
        CHECK_EMPTY(op1(ctx, "repeat", iota(ctx, dt, "2,2"), "repeats=0, axis=1"), dt, "2,0");
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, "2,3"), "reps=[2]"), dt, "2,6", 0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5);
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, "2,3"), "reps=[2, 1]"), dt, "4,3", 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, "2"), "reps=[2, 2]"), dt, "2,4", 0, 1, 0, 1, 0, 1, 0, 1);
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, "1,2"), "reps=[2, 1, 2]"), dt, "2,1,4", 0, 1, 0, 1, 0, 1, 0, 1);
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, ""), "reps=[3]"), dt, "3", 0, 0, 0);
        CHECK_IDX(op1(ctx, "tile", iota(ctx, dt, ""), "reps=[]"), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "tile", iota(ctx, dt, "2,3"), "reps=[0, 1]"), dt, "0,3");
    }
    expect_fail(ctx, "repeat", iota(ctx, KILN_F32, "2"), "repeats=-1", "repeats -1 is negative (input f32[2])");
    expect_fail(ctx, "repeat", iota(ctx, KILN_F32, "2"), "repeats=2, axis=1", "axis 1 out of range for f32[2]");
    expect_fail(ctx, "repeat", iota(ctx, KILN_F32, ""), "repeats=2, axis=0", "axis 0 out of range for f32[]");
    expect_fail(ctx, "tile", iota(ctx, KILN_F32, "2"), "reps=[-1]", "bad reps [-1] for f32[2]");
    expect_fail(ctx, "tile", iota(ctx, KILN_F32, "2"), "reps=[1, 1, 1, 1, 1, 1, 1, 1, 1]", "bad reps");
    expect_fail(ctx, "tile", iota(ctx, KILN_F32, "4"), "reps=[4611686018427387904]", "too large");
    kiln_context_free(ctx);
}

TEST(layout_reverse) {
    kiln_context *ctx = kiln_context_new();
    FOR_DTYPES {
        CHECK_IDX(op1(ctx, "reverse", iota(ctx, dt, "2,3"), "axes=[0]"), dt, "2,3", 3, 4, 5, 0, 1, 2);
        CHECK_IDX(op1(ctx, "reverse", iota(ctx, dt, "2,3"), "axes=[-1]"), dt, "2,3", 2, 1, 0, 5, 4, 3);
        CHECK_IDX(op1(ctx, "reverse", iota(ctx, dt, "2,3"), "axes=[1, 0]"), dt, "2,3", 5, 4, 3, 2, 1, 0);
        CHECK_IDX(op1(ctx, "reverse", iota(ctx, dt, "2,3"), "axes=[]"), dt, "2,3", 0, 1, 2, 3, 4, 5);
        CHECK_IDX(op1(ctx, "reverse", iota(ctx, dt, ""), "axes=[]"), dt, "", 0);
        CHECK_EMPTY(op1(ctx, "reverse", iota(ctx, dt, "0,3"), "axes=[0, 1]"), dt, "0,3");
    }
    expect_fail(ctx, "reverse", iota(ctx, KILN_F32, "2,3"), "axes=[0, -2]", "axis -2 out of range or repeated for f32[2, 3]");
    expect_fail(ctx, "reverse", iota(ctx, KILN_F32, "2,3"), "axes=[2]", "axis 2 out of range");
    kiln_context_free(ctx);
}

/* ---- bit-exact data movement --------------------------------------------------------------- */
/* f16 bit patterns NaN with payloads, -0, subnormal, inf, 1.0 through every movement kernel. */
TEST(layout_bit_exact) {
    kiln_context *ctx = kiln_context_new();
    static const uint16_t bits[6] = {0x7e01, 0xfc01, 0x8000, 0x0001, 0x7c00, 0x3c00};
    static const struct { const char *op, *attrs; int n; int idx[12]; } cases[] = {
        {"transpose", "", 6, {0, 3, 1, 4, 2, 5}},
        {"reverse", "axes=[0, 1]", 6, {5, 4, 3, 2, 1, 0}},
        {"strided_slice", "begin=[-1], end=[-4], strides=[-2], axes=[1]", 4, {2, 0, 5, 3}},
        {"tile", "reps=[1, 2]", 12, {0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}},
        {"repeat", "repeats=2", 12, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}},
        {"pad", "pad_width=[0, 0, 1, 1], mode=\"reflect\"", 10, {1, 0, 1, 2, 1, 4, 3, 4, 5, 4}},
        {"broadcast_to", "shape=[2, 2, 3]", 12, {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}},
        {"reshape", "shape=[3, 2]", 6, {0, 1, 2, 3, 4, 5}},
        {"resize2d", "size=[2, 6]", 12, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}},
    };
    for (size_t c = 0; c < KILN_COUNTOF(cases); c++) {
        bool r4 = !strcmp(cases[c].op, "resize2d");
        int64_t shape[4] = {1, 1, 2, 3};
        kiln_value x = kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F16, r4 ? 4 : 2, r4 ? shape : shape + 2, bits));
        kiln_value y = op1(ctx, cases[c].op, x, cases[c].attrs);
        CHECK(y.kind == KILN_VALUE_TENSOR && kiln_tensor_numel(y.tensor) == cases[c].n);
        if (y.kind != KILN_VALUE_TENSOR) continue;
        const uint16_t *got = kiln_tensor_data(y.tensor);
        for (int i = 0; i < cases[c].n; i++)
            if (got[i] != bits[cases[c].idx[i]])
                test_fail(__FILE__, __LINE__, "%s: element %d is 0x%04x, expected 0x%04x", cases[c].op, i, got[i], bits[cases[c].idx[i]]);
        kiln_value_release(y);
    }
    /* an f32 NaN payload through concatenate and split */
    uint32_t nan = 0x7fc12345u, one = 0x3f800000u;
    int64_t s1 = 1;
    kiln_value in[2] = {kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 1, &s1, &nan)),
                        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 1, &s1, &one))};
    kiln_value y = run_op(ctx, "concatenate", 2, in, "");
    kiln_value parts = run_op(ctx, "split", 1, &y, "sections=2");
    uint32_t got[2];
    memcpy(got, kiln_tensor_data(y.tensor), sizeof got);
    CHECK(got[0] == nan && got[1] == one);
    memcpy(got, kiln_tensor_data(kiln_value_tuple_get(parts, 0).tensor), sizeof got[0]);
    CHECK(got[0] == nan);
    kiln_value_release(parts);
    kiln_value_release(y);
    release_all(2, in);
    kiln_context_free(ctx);
}

/* ---- resize2d ------------------------------------------------------------------------------ */
/* torch.nn.functional.interpolate(size=...) written out plainly, in double. */
static double ref_resize(const double *x, int ih, int iw, int oh, int ow, int y, int xo, bool bilinear, bool align) {
    if (!bilinear) return x[(int)floor((double)y * ih / oh) * iw + (int)floor((double)xo * iw / ow)];
    double src[2];
    int in[2] = {ih, iw}, out[2] = {oh, ow}, o[2] = {y, xo}, i0[2], i1[2];
    for (int a = 0; a < 2; a++) {
        if (align) src[a] = out[a] > 1 ? o[a] * (double)(in[a] - 1) / (out[a] - 1) : 0;
        else src[a] = fmax((o[a] + 0.5) * in[a] / out[a] - 0.5, 0);
        i0[a] = (int)floor(src[a]);
        i1[a] = i0[a] + 1 < in[a] ? i0[a] + 1 : in[a] - 1;
        src[a] -= i0[a];
    }
    double top = (1 - src[1]) * x[i0[0] * iw + i0[1]] + src[1] * x[i0[0] * iw + i1[1]];
    double bottom = (1 - src[1]) * x[i1[0] * iw + i0[1]] + src[1] * x[i1[0] * iw + i1[1]];
    return (1 - src[0]) * top + src[0] * bottom;
}

static void check_resize(kiln_context *ctx, kiln_dtype dt, int ih, int iw, int oh, int ow, bool bilinear, bool align, double tol) {
    char shape[64], attrs[128], oshape[64];
    int n = 2 * ih * iw;
    double *x = malloc(sizeof(double) * (size_t)n), *e = malloc(sizeof(double) * (size_t)(2 * oh * ow));
    for (int i = 0; i < n; i++) x[i] = (double)((i * 7) % 11) - 3.25; /* exact in f16 */
    for (int p = 0; p < 2; p++)
        for (int y = 0; y < oh; y++)
            for (int xo = 0; xo < ow; xo++) e[(p * oh + y) * ow + xo] = ref_resize(x + p * ih * iw, ih, iw, oh, ow, y, xo, bilinear, align);
    snprintf(shape, sizeof shape, "1,2,%d,%d", ih, iw);
    snprintf(oshape, sizeof oshape, "1,2,%d,%d", oh, ow);
    snprintf(attrs, sizeof attrs, "size=[%d, %d], mode=\"%s\", align_corners=%s", oh, ow, bilinear ? "bilinear" : "nearest", align ? "true" : "false");
    kiln_value y = op1(ctx, "resize2d", tv(ctx, dt, shape, x), attrs);
    check_tensor(__FILE__, __LINE__, y, dt, oshape, e, tol);
    kiln_value_release(y);
    free(x);
    free(e);
}

TEST(layout_resize2d) {
    kiln_context *ctx = kiln_context_new();
    /* hand-checked: [[0, 1], [2, 3]] */
    kiln_value y = op1(ctx, "resize2d", tv(ctx, KILN_F32, "1,1,2,2", (double[]){0, 1, 2, 3}), "size=[3, 3], mode=\"bilinear\", align_corners=true");
    CHECK_TENSOR(y, KILN_F32, "1,1,3,3", ((double[]){0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3}), 1e-7);
    kiln_value_release(y);
    /* align_corners=false: source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 per axis */
    y = op1(ctx, "resize2d", tv(ctx, KILN_F32, "1,1,2,2", (double[]){0, 1, 2, 3}), "size=[4, 4], mode=\"bilinear\"");
    CHECK_TENSOR(y, KILN_F32, "1,1,4,4",
                 ((double[]){0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3}), 1e-7);
    kiln_value_release(y);
    y = op1(ctx, "resize2d", tv(ctx, KILN_F32, "1,1,2,2", (double[]){0, 1, 2, 3}), "size=[3, 5]");
    CHECK_TENSOR(y, KILN_F32, "1,1,3,5", ((double[]){0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3}), 0);
    kiln_value_release(y);
    static const int sizes[][4] = {{3, 5, 7, 4}, {2, 2, 5, 3}, {4, 4, 3, 2}, {3, 4, 1, 1}, {5, 3, 5, 3}, {1, 1, 3, 2}, {4, 6, 8, 12}};
    for (size_t s = 0; s < KILN_COUNTOF(sizes); s++)
        for (int mode = 0; mode < 3; mode++) {
            bool bilinear = mode > 0, align = mode == 2;
            const int *z = sizes[s];
            check_resize(ctx, KILN_F32, z[0], z[1], z[2], z[3], bilinear, align, 1e-6);
            check_resize(ctx, KILN_F64, z[0], z[1], z[2], z[3], bilinear, align, 1e-12);
            check_resize(ctx, KILN_F16, z[0], z[1], z[2], z[3], bilinear, align, 2e-3);
            check_resize(ctx, KILN_BF16, z[0], z[1], z[2], z[3], bilinear, align, 1e-2);
        }
    y = op1(ctx, "resize2d", tv(ctx, KILN_F32, "0,3,2,2", NULL), "size=[3, 3], mode=\"bilinear\"");
    CHECK_EMPTY(y, KILN_F32, "0,3,3,3");
    expect_fail(ctx, "resize2d", iota(ctx, KILN_F32, "2,2"), "size=[3, 3]", "input f32[2, 2] is not 4-d (NCHW)");
    expect_fail(ctx, "resize2d", iota(ctx, KILN_F32, "1,1,2,2"), "size=[3]", "size [3] must be two positive dims");
    expect_fail(ctx, "resize2d", iota(ctx, KILN_F32, "1,1,2,2"), "size=[0, 3]", "must be two positive dims");
    expect_fail(ctx, "resize2d", iota(ctx, KILN_F32, "1,1,0,2"), "size=[2, 3]", "empty spatial dim");
    expect_fail(ctx, "resize2d", iota(ctx, KILN_I64, "1,1,2,2"), "size=[2, 3]", "i64");
    kiln_context_free(ctx);
}

/* ---- through the IR: composites expand, split yields a tuple ------------------------------- */
TEST(layout_ir_types) {
    kiln_context *ctx = kiln_context_new();
    const char *src = "def @main(%x: f16[2, 6]) {\n"
                      "  let %s = split(%x, sizes=[1, 5], axis=-1)\n"
                      "  let %a = get(%s, index=1)\n"
                      "  let %b = stack(%a, %a, axis=1)\n"
                      "  let %c = swap_axis(%b, axis1=0, axis2=-1)\n"
                      "  let %d = batch_flatten(%c)\n"
                      "  return %d\n"
                      "}\n";
    kiln_module *m = kiln_module_parse(ctx, src, "layout.kir");
    CHECK(m != NULL);
    if (m) {
        char *t = kiln_type_str((kiln_type *)kiln_function_return_type(kiln_module_function(m, "main")));
        CHECK_STR(t, "f16[5, 4]");
        kiln_free(t);
        kiln_value x = iota(ctx, KILN_F16, "2,6"), y = {.kind = KILN_VALUE_NONE};
        CHECK_OK(ctx, kiln_function_run(kiln_module_function(m, "main"), 1, &x, &y));
        /* a = x[:, 1:6] (2x5); b[i, j, k] = a[i, k]; c[k, j, i] = a[i, k]; flattened per k */
        if (y.kind == KILN_VALUE_TENSOR)
            CHECK_IDX(kiln_value_retain(y), KILN_F16, "5,4", 1, 7, 1, 7, 2, 8, 2, 8, 3, 9, 3, 9, 4, 10, 4, 10, 5, 11, 5, 11);
        kiln_value_release(y);
        kiln_value_release(x);
        kiln_module_free(m);
    }
    m = kiln_module_parse(ctx, "def @f(%x: f32[2, 3]) {\n  let %y = reshape(%x, shape=[4])\n  return %y\n}\n", "bad.kir");
    CHECK(m == NULL);
    CHECK(strstr(kiln_error_message(ctx), "op 'reshape' at bad.kir:2:") != NULL);
    CHECK(strstr(kiln_error_message(ctx), "cannot reshape f32[2, 3] (6 elements) into [4]") != NULL);
    m = kiln_module_parse(ctx, "def @f(%x: f32[2]) {\n  let %t = tuple(%x, %x)\n  let %y = concatenate(%x, %t)\n  return %y\n}\n", "tup.kir");
    CHECK(m == NULL);
    CHECK(strstr(kiln_error_message(ctx), "input 1 is (f32[2], f32[2]), not a tensor") != NULL);
    kiln_context_free(ctx);
}
