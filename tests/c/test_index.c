/* test_index.c — take (all modes, flattened and per axis), embedding, gather, scatter (none / add),
 * gather_nd (batch_dims 0 and 1, ONNX examples) and one_hot (axis variants) against hand-checked
 * values over several dtypes; negative indices; every error path. */
#include "test.h"

/* Runs an op that must fail; returns its status (the message stays in ctx). */
static kiln_status try_op(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs) {
    kiln_value out = {.kind = KILN_VALUE_NONE};
    kiln_status s = kiln_op_run(ctx, op, n, in, attrs, &out);
    kiln_value_release(out);
    return s;
}

/* Runs op on inputs, checks the result, and releases inputs and result. */
static void expect(kiln_context *ctx, const char *op, int n, kiln_value *in, const char *attrs, kiln_dtype dt,
                   const char *shape, const double *want) {
    kiln_value out = run_op(ctx, op, n, in, attrs);
    CHECK_TENSOR(out, dt, shape, want, 0);
    kiln_value_release(out);
    release_all(n, in);
}

/* x[i][j] = 10 i + j, shape [3, 4]. */
static kiln_value grid(kiln_context *ctx, kiln_dtype dt) {
    return tv(ctx, dt, "3,4", (double[]){0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23});
}

/* ---- take ---------------------------------------------------------------------------------- */
TEST(take_flattened_and_per_axis) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "2,2", (double[]){0, 5, -1, 11})}, NULL,
           KILN_F32, "2,2", (double[]){0, 11, 23, 23});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "2", (double[]){2, -3})}, "axis=0",
           KILN_F32, "2,4", (double[]){20, 21, 22, 23, 0, 1, 2, 3});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_I64), tv(ctx, KILN_I32, "2", (double[]){3, 0})}, "axis=1",
           KILN_I64, "3,2", (double[]){3, 0, 13, 10, 23, 20});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F64), tv(ctx, KILN_U8, "2,1", (double[]){1, 2})}, "axis=-1",
           KILN_F64, "3,2,1", (double[]){1, 2, 11, 12, 21, 22});
    /* A scalar index (int value or 0-d tensor) drops the axis. */
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), kiln_value_int(1)}, "axis=0", KILN_F32, "4",
           (double[]){10, 11, 12, 13});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I8, "", (double[]){-2})}, "axis=1", KILN_F32, "3",
           (double[]){2, 12, 22});
    /* Empty indices. */
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "0", NULL)}, "axis=1", KILN_F32, "3,0",
           (double[]){0});
    kiln_context_free(ctx);
}

TEST(take_dtypes) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "take", 2, (kiln_value[]){tv(ctx, KILN_I64, "3", (double[]){5, -7, 9}), tv(ctx, KILN_U8, "3", (double[]){2, 2, 0})},
           NULL, KILN_I64, "3", (double[]){9, 9, 5});
    expect(ctx, "take", 2, (kiln_value[]){tv(ctx, KILN_BOOL, "4", (double[]){1, 0, 1, 1}), tv(ctx, KILN_I32, "2", (double[]){1, 3})},
           NULL, KILN_BOOL, "2", (double[]){0, 1});
    expect(ctx, "take", 2, (kiln_value[]){tv(ctx, KILN_F16, "2,2", (double[]){0.5, 1.5, -2, 4}), tv(ctx, KILN_I64, "1", (double[]){1})},
           "axis=0", KILN_F16, "1,2", (double[]){-2, 4});
    expect(ctx, "take", 2, (kiln_value[]){tv(ctx, KILN_BF16, "2", (double[]){0.25, 8}), tv(ctx, KILN_I64, "3", (double[]){1, 0, -1})},
           NULL, KILN_BF16, "3", (double[]){8, 0.25, 8});
    expect(ctx, "take", 2, (kiln_value[]){tv(ctx, KILN_I8, "2", (double[]){-128, 127}), tv(ctx, KILN_I64, "2", (double[]){1, 0})}, NULL,
           KILN_I8, "2", (double[]){127, -128});
    kiln_context_free(ctx);
}

TEST(take_modes) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "3", (double[]){-5, 1, 9})}, "axis=1, mode=\"clip\"",
           KILN_F32, "3,3", (double[]){0, 1, 3, 10, 11, 13, 20, 21, 23});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "3", (double[]){-5, 4, 9})}, "axis=1, mode=\"wrap\"",
           KILN_F32, "3,3", (double[]){3, 0, 1, 13, 10, 11, 23, 20, 21});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "2", (double[]){-13, 100})}, "mode=\"clip\"",
           KILN_F32, "2", (double[]){0, 23});
    expect(ctx, "take", 2, (kiln_value[]){grid(ctx, KILN_F32), tv(ctx, KILN_I64, "2", (double[]){-13, 25})}, "mode=\"wrap\"",
           KILN_F32, "2", (double[]){23, 1});
    kiln_context_free(ctx);
}

TEST(take_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = grid(ctx, KILN_F32), empty = tv(ctx, KILN_F32, "0", NULL);
    kiln_value i4 = tv(ctx, KILN_I64, "1", (double[]){4}), im5 = tv(ctx, KILN_I64, "1", (double[]){-5});
    kiln_value i12 = tv(ctx, KILN_I64, "1", (double[]){12}), i0 = tv(ctx, KILN_I64, "1", (double[]){0});
    kiln_value fidx = tv(ctx, KILN_F32, "1", (double[]){0}), bidx = tv(ctx, KILN_BOOL, "1", (double[]){1});
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, i4}, "axis=1"), KILN_ERR_VALUE, "index 4 is out of range for axis 1 of size 4");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, im5}, "axis=-1"), KILN_ERR_VALUE, "index -5 is out of range for axis 1 of size 4");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, i12}, NULL), KILN_ERR_VALUE,
              "index 12 is out of range for the flattened input of size 12");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, i4}, "axis=0"), KILN_ERR_VALUE, "op 'take' at");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){empty, i0}, "mode=\"wrap\""), KILN_ERR_VALUE,
              "cannot take index 0 from an empty axis");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, fidx}, NULL), KILN_ERR_TYPE, "indices (input 1) must be an int tensor, got f32[1]");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, bidx}, NULL), KILN_ERR_TYPE, "must be an int tensor");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, kiln_value_float(1.0)}, NULL), KILN_ERR_TYPE, "must be an int tensor");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, i0}, "axis=2"), KILN_ERR_TYPE, "axis 2 is out of range for input f32[3, 4]");
    CHECK_ERR(ctx, try_op(ctx, "take", 2, (kiln_value[]){x, i0}, "mode=\"nearest\""), KILN_ERR_PARSE, "nearest");
    release_all(8, (kiln_value[]){x, empty, i4, im5, i12, i0, fidx, bidx});
    kiln_context_free(ctx);
}

TEST(embedding_rows) {
    kiln_context *ctx = kiln_context_new();
    kiln_value w = tv(ctx, KILN_F32, "4,2", (double[]){0, 1, 10, 11, 20, 21, 30, 31});
    kiln_value idx = tv(ctx, KILN_I64, "2,3", (double[]){3, 0, 1, -1, 2, 2});
    kiln_value out = run_op(ctx, "embedding", 2, (kiln_value[]){w, idx}, NULL);
    CHECK_TENSOR(out, KILN_F32, "2,3,2", ((double[]){30, 31, 0, 1, 10, 11, 30, 31, 20, 21, 20, 21}), 0);
    kiln_value bad = tv(ctx, KILN_I32, "2", (double[]){1, 4}), fidx = tv(ctx, KILN_F64, "1", (double[]){1});
    CHECK_ERR(ctx, try_op(ctx, "embedding", 2, (kiln_value[]){w, bad}, NULL), KILN_ERR_VALUE,
              "index 4 is out of range for axis 0 of size 4");
    CHECK_ERR(ctx, try_op(ctx, "embedding", 2, (kiln_value[]){w, fidx}, NULL), KILN_ERR_TYPE, "op 'embedding'");
    release_all(5, (kiln_value[]){w, idx, out, bad, fidx});
    kiln_context_free(ctx);
}

/* ---- gather -------------------------------------------------------------------------------- */
TEST(gather_axis_0_and_1) {
    kiln_context *ctx = kiln_context_new();
    /* torch.gather(t, 1, [[0, 0], [1, 0]]) on [[1, 2], [3, 4]] is [[1, 1], [4, 3]]. */
    expect(ctx, "gather", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,2", (double[]){1, 2, 3, 4}), tv(ctx, KILN_I64, "2,2", (double[]){0, 0, 1, 0})},
           "axis=1", KILN_F32, "2,2", (double[]){1, 1, 4, 3});
    expect(ctx, "gather", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,2", (double[]){1, 2, 3, 4}), tv(ctx, KILN_I64, "2,2", (double[]){0, 1, 1, 0})},
           "axis=0", KILN_F32, "2,2", (double[]){1, 4, 3, 2});
    /* Indices smaller than x off the axis; a negative index counts from the end. */
    expect(ctx, "gather", 2,
           (kiln_value[]){tv(ctx, KILN_I64, "3,3", (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8}), tv(ctx, KILN_I32, "2,2", (double[]){2, 1, 0, -1})},
           "axis=0", KILN_I64, "2,2", (double[]){6, 4, 0, 7});
    /* Larger than x along the axis. */
    expect(ctx, "gather", 2,
           (kiln_value[]){tv(ctx, KILN_BOOL, "2,3", (double[]){0, 1, 1, 1, 0, 0}), tv(ctx, KILN_I64, "2,4", (double[]){2, 0, 0, 1, 0, -3, 1, 2})},
           "axis=-1", KILN_BOOL, "2,4", (double[]){1, 0, 0, 1, 1, 1, 0, 0});
    expect(ctx, "gather", 2, (kiln_value[]){tv(ctx, KILN_F16, "3", (double[]){0.5, -1, 2}), tv(ctx, KILN_U8, "4", (double[]){2, 2, 1, 0})},
           "axis=0", KILN_F16, "4", (double[]){2, 2, -1, 0.5});
    kiln_context_free(ctx);
}

TEST(gather_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", NULL), i1 = tv(ctx, KILN_I64, "2", NULL), big = tv(ctx, KILN_I64, "3,1", NULL);
    kiln_value oob = tv(ctx, KILN_I64, "1,1", (double[]){3}), f = tv(ctx, KILN_F32, "1,1", NULL);
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, i1}, "axis=0"), KILN_ERR_TYPE,
              "indices i64[2] must have as many dims as input f32[2, 3]");
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, big}, "axis=1"), KILN_ERR_TYPE,
              "indices i64[3, 1] are larger than input f32[2, 3] in dim 0");
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, oob}, "axis=1"), KILN_ERR_VALUE, "index 3 is out of range for axis 1 of size 3");
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, oob}, "axis=-3"), KILN_ERR_TYPE, "axis -3 is out of range");
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, f}, "axis=0"), KILN_ERR_TYPE, "must be an int tensor");
    CHECK_ERR(ctx, try_op(ctx, "gather", 2, (kiln_value[]){x, oob}, NULL), KILN_ERR_TYPE, "needs attribute 'axis'");
    release_all(5, (kiln_value[]){x, i1, big, oob, f});
    kiln_context_free(ctx);
}

/* ---- scatter ------------------------------------------------------------------------------- */
TEST(scatter_axis_0_and_1) {
    kiln_context *ctx = kiln_context_new();
    /* torch: zeros(3, 5).scatter_(0, [[0, 1, 2, 0]], arange(1, 11).reshape(2, 5)). */
    expect(ctx, "scatter", 3,
           (kiln_value[]){tv(ctx, KILN_F32, "3,5", NULL), tv(ctx, KILN_I64, "1,4", (double[]){0, 1, 2, 0}),
                          tv(ctx, KILN_F32, "2,5", (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10})},
           "axis=0", KILN_F32, "3,5", (double[]){1, 0, 0, 4, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0});
    /* Axis 1, a repeated index: the last write wins; reduce=add sums. */
    double x8[] = {1, 2, 3, 4, 5, 6, 7, 8}, i4[] = {0, 3, 1, 1}, s4[] = {10, 20, 30, 40};
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_I64, "2,4", x8), tv(ctx, KILN_I32, "2,2", i4), tv(ctx, KILN_I64, "2,2", s4)},
           "axis=1", KILN_I64, "2,4", (double[]){10, 2, 3, 20, 5, 40, 7, 8});
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_I64, "2,4", x8), tv(ctx, KILN_I32, "2,2", i4), tv(ctx, KILN_I64, "2,2", s4)},
           "axis=1, reduce=\"add\"", KILN_I64, "2,4", (double[]){11, 2, 3, 24, 5, 76, 7, 8});
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_F64, "2,4", x8), tv(ctx, KILN_I64, "2,2", (double[]){-1, -4, 1, 1}),
                                             tv(ctx, KILN_F64, "2,2", (double[]){0.5, 0.25, 1, 2})},
           "axis=-1, reduce=\"add\"", KILN_F64, "2,4", (double[]){1.25, 2, 3, 4.5, 5, 9, 7, 8});
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_F16, "2", (double[]){0.5, 1}), tv(ctx, KILN_I64, "3", (double[]){1, 1, -2}),
                                             tv(ctx, KILN_F16, "3", (double[]){0.25, 0.25, 2})},
           "axis=0, reduce=\"add\"", KILN_F16, "2", (double[]){2.5, 1.5});
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_BOOL, "3", (double[]){0, 0, 1}), tv(ctx, KILN_I64, "2", (double[]){0, 0}),
                                             tv(ctx, KILN_BOOL, "2", (double[]){1, 0})},
           "axis=0, reduce=\"add\"", KILN_BOOL, "3", (double[]){1, 0, 1});
    expect(ctx, "scatter", 3, (kiln_value[]){tv(ctx, KILN_I8, "2", (double[]){120, 0}), tv(ctx, KILN_I64, "1", (double[]){0}),
                                             tv(ctx, KILN_I8, "1", (double[]){10})},
           "axis=0, reduce=\"add\"", KILN_I8, "2", (double[]){-126, 0});
    kiln_context_free(ctx);
}

TEST(scatter_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", NULL), idx = tv(ctx, KILN_I64, "2,2", (double[]){0, 1, 2, 3});
    kiln_value s64 = tv(ctx, KILN_F64, "2,2", NULL), s_small = tv(ctx, KILN_F32, "2,1", NULL), s = tv(ctx, KILN_F32, "2,2", NULL);
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, s64}, "axis=1"), KILN_ERR_TYPE,
              "src f64[2, 2] must be a tensor of the dtype and ndim of input f32[2, 3]");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, s_small}, "axis=1"), KILN_ERR_TYPE,
              "indices are larger than src f32[2, 1] in dim 1");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, kiln_value_float(1)}, "axis=1"), KILN_ERR_TYPE, "must be a tensor");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, s}, "axis=1"), KILN_ERR_VALUE, "index 3 is out of range for axis 1 of size 3");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, s}, "axis=0"), KILN_ERR_VALUE, "index 2 is out of range for axis 0 of size 2");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, s, s}, "axis=0"), KILN_ERR_TYPE, "indices (input 1) must be an int tensor");
    CHECK_ERR(ctx, try_op(ctx, "scatter", 3, (kiln_value[]){x, idx, s}, "axis=0, reduce=\"mul\""), KILN_ERR_PARSE, "mul");
    release_all(5, (kiln_value[]){x, idx, s64, s_small, s});
    kiln_context_free(ctx);
}

/* ---- gather_nd ----------------------------------------------------------------------------- */
TEST(gather_nd_onnx_examples) {
    kiln_context *ctx = kiln_context_new();
    double d22[] = {0, 1, 2, 3}, d222[] = {0, 1, 2, 3, 4, 5, 6, 7};
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_I32, "2,2", d22), tv(ctx, KILN_I64, "2,2", (double[]){0, 0, 1, 1})}, NULL,
           KILN_I32, "2", (double[]){0, 3});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_I32, "2,2", d22), tv(ctx, KILN_I64, "2,1", (double[]){1, 0})}, NULL,
           KILN_I32, "2,2", (double[]){2, 3, 0, 1});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,2,2", d222), tv(ctx, KILN_I64, "2,2", (double[]){0, 1, 1, 0})},
           "batch_dims=0", KILN_F32, "2,2", (double[]){2, 3, 4, 5});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,2,2", d222), tv(ctx, KILN_I32, "2,1,2", (double[]){0, 1, 1, 0})}, NULL,
           KILN_F32, "2,1,2", (double[]){2, 3, 4, 5});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,2,2", d222), tv(ctx, KILN_I64, "2,1", (double[]){1, 0})},
           "batch_dims=1", KILN_F32, "2,2", (double[]){2, 3, 4, 5});
    /* batch_dims=1 with full coordinates: one element per batch row; negative indices. */
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_BOOL, "2,2,2", (double[]){0, 0, 0, 1, 1, 0, 0, 0}),
                                               tv(ctx, KILN_I64, "2,2", (double[]){-1, -1, 0, 0})},
           "batch_dims=1", KILN_BOOL, "2", (double[]){1, 1});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_I64, "2,2", d22), tv(ctx, KILN_U8, "1,2", (double[]){1, 0})}, NULL,
           KILN_I64, "1", (double[]){2});
    expect(ctx, "gather_nd", 2, (kiln_value[]){tv(ctx, KILN_F64, "2,2", d22), tv(ctx, KILN_I64, "1,2", (double[]){-1, -2})}, NULL,
           KILN_F64, "1", (double[]){2});
    kiln_context_free(ctx);
}

TEST(gather_nd_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,2", NULL), x3 = tv(ctx, KILN_F32, "3,2", NULL);
    kiln_value oob = tv(ctx, KILN_I64, "1,2", (double[]){0, 2}), k3 = tv(ctx, KILN_I64, "1,3", NULL);
    kiln_value i0d = tv(ctx, KILN_I64, "", NULL), ib = tv(ctx, KILN_I64, "2,1", NULL), f = tv(ctx, KILN_F32, "1,2", NULL);
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, oob}, NULL), KILN_ERR_VALUE, "index 2 is out of range for axis 1 of size 2");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, k3}, NULL), KILN_ERR_TYPE,
              "the last dim of indices i64[1, 3] must be in [1, 2] for input f32[2, 2]");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, i0d}, NULL), KILN_ERR_TYPE, "must have at least 1 dim");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, ib}, "batch_dims=2"), KILN_ERR_TYPE, "batch_dims 2 must be in [0, min(");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, ib}, "batch_dims=-1"), KILN_ERR_TYPE, "batch_dims -1");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x3, ib}, "batch_dims=1"), KILN_ERR_TYPE,
              "batch dim 0 differs between input f32[3, 2] and indices i64[2, 1]");
    CHECK_ERR(ctx, try_op(ctx, "gather_nd", 2, (kiln_value[]){x, f}, NULL), KILN_ERR_TYPE, "must be an int tensor");
    release_all(7, (kiln_value[]){x, x3, oob, k3, i0d, ib, f});
    kiln_context_free(ctx);
}

/* ---- one_hot ------------------------------------------------------------------------------- */
TEST(one_hot_axes_and_dtypes) {
    kiln_context *ctx = kiln_context_new();
    double idx[] = {0, 2, -1, 3, -4};
    /* -1 counts from the end (2); 3 and -4 are out of range: rows of off_value. */
    expect(ctx, "one_hot", 1, (kiln_value[]){tv(ctx, KILN_I64, "5", idx)}, "depth=3", KILN_F32, "5,3",
           (double[]){1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0});
    expect(ctx, "one_hot", 1, (kiln_value[]){tv(ctx, KILN_I32, "5", idx)}, "depth=3, axis=0", KILN_F32, "3,5",
           (double[]){1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0});
    expect(ctx, "one_hot", 1, (kiln_value[]){tv(ctx, KILN_I64, "2,2", (double[]){0, 1, 2, 0})},
           "depth=3, axis=1, on_value=5, off_value=-1, dtype=i32", KILN_I32, "2,3,2",
           (double[]){5, -1, -1, 5, -1, -1, -1, 5, -1, -1, 5, -1});
    expect(ctx, "one_hot", 1, (kiln_value[]){tv(ctx, KILN_U8, "2,2", (double[]){0, 1, 2, 0})}, "depth=3, axis=-3, dtype=bool",
           KILN_BOOL, "3,2,2", (double[]){1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0});
    expect(ctx, "one_hot", 1, (kiln_value[]){kiln_value_int(1)}, "depth=2, dtype=f16, on_value=0.5", KILN_F16, "2", (double[]){0, 0.5});
    kiln_context_free(ctx);
}

TEST(one_hot_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value i = tv(ctx, KILN_I64, "3", NULL), f = tv(ctx, KILN_F32, "3", NULL);
    CHECK_ERR(ctx, try_op(ctx, "one_hot", 1, &i, "depth=0"), KILN_ERR_TYPE, "depth must be positive, got 0");
    CHECK_ERR(ctx, try_op(ctx, "one_hot", 1, &i, "depth=2, axis=2"), KILN_ERR_TYPE,
              "axis 2 is out of range for a result of 2 dims from indices i64[3]");
    CHECK_ERR(ctx, try_op(ctx, "one_hot", 1, &i, "depth=2, axis=-3"), KILN_ERR_TYPE, "axis -3 is out of range");
    CHECK_ERR(ctx, try_op(ctx, "one_hot", 1, &f, "depth=2"), KILN_ERR_TYPE, "f32");
    CHECK_ERR(ctx, try_op(ctx, "one_hot", 1, &i, NULL), KILN_ERR_TYPE, "needs attribute 'depth'");
    release_all(2, (kiln_value[]){i, f});
    kiln_context_free(ctx);
}
