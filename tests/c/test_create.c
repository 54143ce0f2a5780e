/* test_create.c — full, zeros, ones, full_like, zeros_like, ones_like and arange across dtypes
 * (empty and 0-d shapes, int/float/negative-step/empty aranges) and their error paths. */
#include "test.h"

static kiln_status try_op(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs) {
    kiln_value out = {.kind = KILN_VALUE_NONE};
    kiln_status s = kiln_op_run(ctx, op, n, in, attrs, &out);
    kiln_value_release(out);
    return s;
}

/* Runs a creation op (inputs borrowed) and checks its result. */
static void expect(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs, kiln_dtype dt,
                   const char *shape, const double *want, double tol) {
    kiln_value out = run_op(ctx, op, n, in, attrs);
    CHECK_TENSOR(out, dt, shape, want, tol);
    kiln_value_release(out);
}

TEST(full_dtypes_and_shapes) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "full", 0, NULL, "shape=[2, 3], value=2.5", KILN_F32, "2,3", (double[]){2.5, 2.5, 2.5, 2.5, 2.5, 2.5}, 0);
    expect(ctx, "full", 0, NULL, "shape=[3], value=7, dtype=i64", KILN_I64, "3", (double[]){7, 7, 7}, 0);
    expect(ctx, "full", 0, NULL, "shape=[2], value=-3.7, dtype=i32", KILN_I32, "2", (double[]){-3, -3}, 0);
    expect(ctx, "full", 0, NULL, "shape=[2], value=2, dtype=bool", KILN_BOOL, "2", (double[]){1, 1}, 0);
    expect(ctx, "full", 0, NULL, "shape=[2], value=0.1, dtype=f16", KILN_F16, "2", (double[]){0.0999755859375, 0.0999755859375}, 0);
    expect(ctx, "full", 0, NULL, "shape=[1, 1, 1], value=-inf, dtype=bf16", KILN_BF16, "1,1,1", (double[]){-INFINITY}, 0);
    expect(ctx, "full", 0, NULL, "shape=[], value=4, dtype=u8", KILN_U8, "", (double[]){4}, 0);
    expect(ctx, "full", 0, NULL, "shape=[2, 0], value=1", KILN_F32, "2,0", (double[]){0}, 0);
    /* An odd, larger size exercises the doubling copy. */
    double want[1001];
    for (int i = 0; i < 1001; i++) want[i] = 0.1;
    expect(ctx, "full", 0, NULL, "shape=[7, 11, 13], value=0.1, dtype=f64", KILN_F64, "7,11,13", want, 0);
    kiln_context_free(ctx);
}

TEST(zeros_and_ones) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "zeros", 0, NULL, "shape=[2, 2]", KILN_F32, "2,2", (double[]){0, 0, 0, 0}, 0);
    expect(ctx, "ones", 0, NULL, "shape=[3]", KILN_F32, "3", (double[]){1, 1, 1}, 0);
    expect(ctx, "ones", 0, NULL, "shape=[2], dtype=i8", KILN_I8, "2", (double[]){1, 1}, 0);
    expect(ctx, "zeros", 0, NULL, "shape=[], dtype=bool", KILN_BOOL, "", (double[]){0}, 0);
    expect(ctx, "ones", 0, NULL, "shape=[1, 2], dtype=bf16", KILN_BF16, "1,2", (double[]){1, 1}, 0);
    kiln_context_free(ctx);
}

TEST(full_like_family) {
    kiln_context *ctx = kiln_context_new();
    kiln_value xi = tv(ctx, KILN_I32, "2,2", (double[]){1, 2, 3, 4}), xb = tv(ctx, KILN_BOOL, "3", (double[]){1, 0, 1});
    kiln_value xh = tv(ctx, KILN_F16, "1,2", (double[]){5, 6});
    expect(ctx, "full_like", 1, &xi, "value=3.5", KILN_I32, "2,2", (double[]){3, 3, 3, 3}, 0);
    expect(ctx, "full_like", 1, &xi, "value=3.5, dtype=f64", KILN_F64, "2,2", (double[]){3.5, 3.5, 3.5, 3.5}, 0);
    expect(ctx, "zeros_like", 1, &xb, NULL, KILN_BOOL, "3", (double[]){0, 0, 0}, 0);
    expect(ctx, "ones_like", 1, &xb, NULL, KILN_BOOL, "3", (double[]){1, 1, 1}, 0);
    expect(ctx, "ones_like", 1, &xh, "dtype=i64", KILN_I64, "1,2", (double[]){1, 1}, 0);
    expect(ctx, "zeros_like", 1, &xh, NULL, KILN_F16, "1,2", (double[]){0, 0}, 0);
    expect(ctx, "full_like", 1, &xh, "value=-1e+300, dtype=f64", KILN_F64, "1,2", (double[]){-1e300, -1e300}, 0);
    expect(ctx, "full_like", 1, &xh, "value=0.1", KILN_F16, "1,2", (double[]){0.0999755859375, 0.0999755859375}, 0);
    release_all(3, (kiln_value[]){xi, xb, xh});
    kiln_context_free(ctx);
}

TEST(full_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2", NULL);
    CHECK_ERR(ctx, try_op(ctx, "full", 0, NULL, "shape=[2, -1], value=1"), KILN_ERR_TYPE, "op 'full' at @eager: shape dim 1 is negative (-1)");
    CHECK_ERR(ctx, try_op(ctx, "zeros", 0, NULL, "shape=[1, 1, 1, 1, 1, 1, 1, 1, 1]"), KILN_ERR_TYPE, "shape has 9 dims (at most 8)");
    CHECK_ERR(ctx, try_op(ctx, "ones", 0, NULL, "shape=[-3]"), KILN_ERR_TYPE, "op 'ones'");
    CHECK_ERR(ctx, try_op(ctx, "full", 0, NULL, "value=1"), KILN_ERR_PARSE, "needs attribute 'shape'");
    CHECK_ERR(ctx, try_op(ctx, "full_like", 1, &x, "value=1, dtype=f128"), KILN_ERR_PARSE, "f128");
    kiln_value_release(x);
    kiln_context_free(ctx);
}

TEST(arange_values) {
    kiln_context *ctx = kiln_context_new();
    expect(ctx, "arange", 0, NULL, "stop=5", KILN_I64, "5", (double[]){0, 1, 2, 3, 4}, 0);
    expect(ctx, "arange", 0, NULL, "start=1, stop=2, step=0.25", KILN_F32, "4", (double[]){1, 1.25, 1.5, 1.75}, 0);
    expect(ctx, "arange", 0, NULL, "start=5, stop=0, step=-2", KILN_I64, "3", (double[]){5, 3, 1}, 0);
    expect(ctx, "arange", 0, NULL, "start=1, stop=0, step=-0.3", KILN_F32, "4", (double[]){1, 0.7, 0.4, 0.1}, 1e-6);
    expect(ctx, "arange", 0, NULL, "start=-3, stop=3, step=2.5", KILN_F32, "3", (double[]){-3, -0.5, 2}, 0);
    expect(ctx, "arange", 0, NULL, "start=3, stop=3", KILN_I64, "0", (double[]){0}, 0);
    expect(ctx, "arange", 0, NULL, "start=5, stop=0", KILN_I64, "0", (double[]){0}, 0);
    expect(ctx, "arange", 0, NULL, "start=0, stop=5, step=-1", KILN_I64, "0", (double[]){0}, 0);
    expect(ctx, "arange", 0, NULL, "stop=3, dtype=f64", KILN_F64, "3", (double[]){0, 1, 2}, 0);
    expect(ctx, "arange", 0, NULL, "stop=7, step=3, dtype=i32", KILN_I32, "3", (double[]){0, 3, 6}, 0);
    expect(ctx, "arange", 0, NULL, "start=0.5, stop=2, dtype=f16", KILN_F16, "2", (double[]){0.5, 1.5}, 0);
    expect(ctx, "arange", 0, NULL, "start=-2, stop=2, dtype=i8", KILN_I8, "4", (double[]){-2, -1, 0, 1}, 0);
    /* Whole numbers from 2^53 up are not exact in int64 arithmetic here: float result. */
    expect(ctx, "arange", 0, NULL, "start=9007199254740992, stop=9007199254740994, step=2", KILN_F32, "1",
           (double[]){9007199254740992.0}, 0);
    /* Large int64 values stay exact. */
    expect(ctx, "arange", 0, NULL, "start=4503599627370495, stop=4503599627370498", KILN_I64, "3",
           (double[]){4503599627370495.0, 4503599627370496.0, 4503599627370497.0}, 0);
    kiln_context_free(ctx);
}

TEST(arange_errors) {
    kiln_context *ctx = kiln_context_new();
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "stop=3, step=0"), KILN_ERR_TYPE, "op 'arange' at @eager: step must not be 0");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "stop=3, dtype=bool"), KILN_ERR_TYPE, "dtype bool is not supported");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "stop=1e300"), KILN_ERR_TYPE, "length 1e+300 is too large");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "start=-1e308, stop=1e308, step=1e-300"), KILN_ERR_TYPE, "is too large");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "stop=inf"), KILN_ERR_TYPE, "must be finite");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "stop=nan"), KILN_ERR_TYPE, "must be finite");
    CHECK_ERR(ctx, try_op(ctx, "arange", 0, NULL, "start=1"), KILN_ERR_PARSE, "needs attribute 'stop'");
    kiln_context_free(ctx);
}
