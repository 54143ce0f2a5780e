/* test_reduce.c — tests of the reductions and scans: sum prod max min all any (axes, keepdims,
 * dtypes, size-0 dims, 0-d, NaN), argmax/argmin, cumsum, the composites mean, variance, l2norm,
 * logsumexp and sum_to, and every error path of their shape rules. */
#include "test.h"
#include <stdlib.h>

/* Runs a one-input op and checks its tensor result (a function: compound literals in the
 * arguments hold commas that a nested macro would split). */
static void check_op(const char *file, int line, kiln_context *ctx, const char *op, kiln_value x, const char *attrs,
                     kiln_dtype dt, const char *shape, const double *expected, double tol) {
    kiln_value r = run_op(ctx, op, 1, &x, attrs);
    check_tensor(file, line, r, dt, shape, expected, tol);
    kiln_value_release(r);
}
#define CHECK_OP(ctx, op, x, attrs, dt, shape, ...) check_op(__FILE__, __LINE__, ctx, op, x, attrs, dt, shape, __VA_ARGS__)

/* A one-input op that must fail type checking with a message containing `sub`. */
#define CHECK_OP_ERR(ctx, op, x, attrs, sub)                                                    \
    do {                                                                                        \
        kiln_value r_ = {.kind = KILN_VALUE_NONE};                                              \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), 1, &(x), (attrs), &r_), KILN_ERR_TYPE, (sub)); \
        kiln_value_release(r_);                                                                 \
    } while (0)

TEST(reduce_sum_axes_keepdims_f32_f64) {
    kiln_context *ctx = kiln_context_new();
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F64 : KILN_F32;
        kiln_value x = tv(ctx, dt, "2,3", (double[]){1, 2, 3, 4, 5, 6});
        CHECK_OP(ctx, "sum", x, "", dt, "", (double[]){21}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[0]", dt, "3", (double[]){5, 7, 9}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[1]", dt, "2", (double[]){6, 15}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[-1]", dt, "2", (double[]){6, 15}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[-2, 1]", dt, "", (double[]){21}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[1], keepdims=true", dt, "2,1", (double[]){6, 15}, 0);
        CHECK_OP(ctx, "sum", x, "keepdims=true", dt, "1,1", (double[]){21}, 0);
        CHECK_OP(ctx, "sum", x, "axes=[]", dt, "2,3", (double[]){1, 2, 3, 4, 5, 6}, 0); /* numpy: nothing */
        CHECK_OP(ctx, "prod", x, "axes=[0]", dt, "3", (double[]){4, 10, 18}, 0);
        CHECK_OP(ctx, "prod", x, "", dt, "", (double[]){720}, 0);
        CHECK_OP(ctx, "max", x, "axes=[1]", dt, "2", (double[]){3, 6}, 0);
        CHECK_OP(ctx, "min", x, "axes=[0], keepdims=true", dt, "1,3", (double[]){1, 2, 3}, 0);
        kiln_value_release(x);
    }
    kiln_context_free(ctx);
}

TEST(reduce_sum_non_adjacent_axes) {
    kiln_context *ctx = kiln_context_new();
    double d[24];
    for (int i = 0; i < 24; i++) d[i] = i; /* x[i][j][k] = 12i + 4j + k */
    kiln_value x = tv(ctx, KILN_F32, "2,3,4", d);
    CHECK_OP(ctx, "sum", x, "axes=[0, 2]", KILN_F32, "3", (double[]){60, 92, 124}, 0);
    CHECK_OP(ctx, "sum", x, "axes=[2, -3]", KILN_F32, "3", (double[]){60, 92, 124}, 0);
    CHECK_OP(ctx, "sum", x, "axes=[0, 2], keepdims=true", KILN_F32, "1,3,1", (double[]){60, 92, 124}, 0);
    CHECK_OP(ctx, "sum", x, "axes=[1]", KILN_F32, "2,4", (double[]){12, 15, 18, 21, 48, 51, 54, 57}, 0);
    CHECK_OP(ctx, "max", x, "axes=[0, 2]", KILN_F32, "3", (double[]){15, 19, 23}, 0);
    CHECK_OP(ctx, "min", x, "axes=[1]", KILN_F32, "2,4", (double[]){0, 1, 2, 3, 12, 13, 14, 15}, 0);
    kiln_value_release(x);
    kiln_context_free(ctx);
}

/* Every subset of axes of a 5-d tensor (with a size-1 dim) against a direct computation. */
TEST(reduce_every_axis_subset_matches_naive) {
    kiln_context *ctx = kiln_context_new();
    const int64_t shape[5] = {3, 1, 4, 2, 5};
    enum { N = 120 };
    double d[N], want_sum[N], want_max[N];
    for (int i = 0; i < N; i++) d[i] = (double)((i * 37) % N) - 50;
    kiln_value x = tv(ctx, KILN_F64, "3,1,4,2,5", d);
    for (int m = 0; m < 32; m++) {
        char attrs[64] = "axes=[", oshape[64] = "";
        int64_t ostride[5], s = 1;
        for (int a = 4; a >= 0; a--) {
            ostride[a] = (m >> a) & 1 ? 0 : s;
            if (!((m >> a) & 1)) s *= shape[a];
        }
        for (int a = 0; a < 5; a++) {
            if ((m >> a) & 1) snprintf(attrs + strlen(attrs), sizeof attrs - strlen(attrs), "%s%d", attrs[6] ? ", " : "", a);
            else snprintf(oshape + strlen(oshape), sizeof oshape - strlen(oshape), "%s%lld", oshape[0] ? "," : "", (long long)shape[a]);
        }
        strcat(attrs, "]");
        for (int o = 0; o < s; o++) want_sum[o] = 0, want_max[o] = -INFINITY;
        for (int i = 0; i < N; i++) {
            int64_t rem = i, off = 0;
            for (int a = 4; a >= 0; a--) off += (rem % shape[a]) * ostride[a], rem /= shape[a];
            want_sum[off] += d[i];
            if (d[i] > want_max[off]) want_max[off] = d[i];
        }
        CHECK_OP(ctx, "sum", x, attrs, KILN_F64, oshape, want_sum, 0);
        CHECK_OP(ctx, "max", x, attrs, KILN_F64, oshape, want_max, 0);
    }
    kiln_value_release(x);
    kiln_context_free(ctx);
}

TEST(reduce_int_and_bool_dtypes) {
    kiln_context *ctx = kiln_context_new();
    kiln_value i32 = tv(ctx, KILN_I32, "2,2", (double[]){1, -2, 3, 4});
    kiln_value u8 = tv(ctx, KILN_U8, "2", (double[]){200, 100});
    kiln_value i8 = tv(ctx, KILN_I8, "3", (double[]){-2, 3, 4});
    kiln_value bl = tv(ctx, KILN_BOOL, "2,2", (double[]){1, 0, 1, 1});
    CHECK_OP(ctx, "sum", i32, "", KILN_I64, "", (double[]){6}, 0);
    CHECK_OP(ctx, "sum", i32, "axes=[0]", KILN_I64, "2", (double[]){4, 2}, 0);
    CHECK_OP(ctx, "sum", u8, "", KILN_I64, "", (double[]){300}, 0); /* widened: no u8 wrap */
    CHECK_OP(ctx, "prod", i8, "", KILN_I64, "", (double[]){-24}, 0);
    CHECK_OP(ctx, "sum", bl, "", KILN_I64, "", (double[]){3}, 0);
    CHECK_OP(ctx, "max", i32, "axes=[1]", KILN_I32, "2", (double[]){1, 4}, 0);
    CHECK_OP(ctx, "min", i32, "", KILN_I32, "", (double[]){-2}, 0);
    CHECK_OP(ctx, "max", u8, "", KILN_U8, "", (double[]){200}, 0);
    CHECK_OP(ctx, "min", bl, "axes=[1]", KILN_BOOL, "2", (double[]){0, 1}, 0);
    CHECK_OP(ctx, "all", bl, "axes=[1]", KILN_BOOL, "2", (double[]){0, 1}, 0);
    CHECK_OP(ctx, "any", bl, "axes=[0]", KILN_BOOL, "2", (double[]){1, 1}, 0);
    CHECK_OP(ctx, "all", i32, "", KILN_BOOL, "", (double[]){1}, 0);
    kiln_value zeros = tv(ctx, KILN_I64, "3", (double[]){0, 0, 0});
    CHECK_OP(ctx, "any", zeros, "", KILN_BOOL, "", (double[]){0}, 0);
    /* int64 compares and sums exactly beyond 2^53 (a double accumulator would not) */
    kiln_tensor *big = kiln_tensor_new(ctx, KILN_I64, 1, (int64_t[]){2});
    ((int64_t *)big->data)[0] = 9007199254740993;
    ((int64_t *)big->data)[1] = 9007199254740992;
    kiln_value bv = kiln_value_tensor(big), r = run_op(ctx, "max", 1, &bv, "");
    CHECK(r.kind == KILN_VALUE_TENSOR && ((int64_t *)r.tensor->data)[0] == 9007199254740993);
    kiln_value_release(r);
    r = run_op(ctx, "sum", 1, &bv, "");
    CHECK(r.kind == KILN_VALUE_TENSOR && ((int64_t *)r.tensor->data)[0] == 18014398509481985);
    kiln_value_release(r);
    release_all(6, (kiln_value[]){i32, u8, i8, bl, zeros, bv});
    kiln_context_free(ctx);
}

TEST(reduce_f16_bf16_accumulate_wide) {
    kiln_context *ctx = kiln_context_new();
    double ones[4096];
    for (int i = 0; i < 4096; i++) ones[i] = 1;
    kiln_value h = tv(ctx, KILN_F16, "4096", ones); /* f16 accumulation would stall at 2048 */
    CHECK_OP(ctx, "sum", h, "", KILN_F16, "", (double[]){4096}, 0);
    kiln_value h2 = tv(ctx, KILN_F16, "2,2", (double[]){0.1, 0.2, 0.3, 0.4});
    CHECK_OP(ctx, "sum", h2, "axes=[1]", KILN_F16, "2", (double[]){0.3, 0.7}, 2e-3);
    CHECK_OP(ctx, "max", h2, "", KILN_F16, "", (double[]){0.4}, 1e-3);
    kiln_value b = tv(ctx, KILN_BF16, "4", (double[]){1, 2, 3, 4.5});
    CHECK_OP(ctx, "sum", b, "", KILN_BF16, "", (double[]){10.5}, 1e-2);
    CHECK_OP(ctx, "max", b, "", KILN_BF16, "", (double[]){4.5}, 0);
    CHECK_OP(ctx, "min", b, "keepdims=true", KILN_BF16, "1", (double[]){1}, 0);
    release_all(3, (kiln_value[]){h, h2, b});
    kiln_context_free(ctx);
}

TEST(reduce_nan_and_inf) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, NAN, 3, -INFINITY, -INFINITY, 2});
    CHECK_OP(ctx, "max", x, "axes=[1]", KILN_F32, "2", (double[]){NAN, 2}, 0);
    CHECK_OP(ctx, "min", x, "axes=[1]", KILN_F32, "2", (double[]){NAN, -INFINITY}, 0);
    CHECK_OP(ctx, "max", x, "axes=[0]", KILN_F32, "3", (double[]){1, NAN, 3}, 0);
    CHECK_OP(ctx, "sum", x, "axes=[1]", KILN_F32, "2", (double[]){NAN, -INFINITY}, 0);
    CHECK_OP(ctx, "any", x, "axes=[0]", KILN_BOOL, "3", (double[]){1, 1, 1}, 0); /* nan and -inf are true */
    kiln_value y = tv(ctx, KILN_F64, "3", (double[]){-INFINITY, -INFINITY, NAN});
    CHECK_OP(ctx, "max", y, "", KILN_F64, "", (double[]){NAN}, 0); /* NaN last still wins */
    kiln_value z = tv(ctx, KILN_F64, "2", (double[]){-INFINITY, -INFINITY});
    CHECK_OP(ctx, "max", z, "", KILN_F64, "", (double[]){-INFINITY}, 0);
    CHECK_OP(ctx, "all", z, "", KILN_BOOL, "", (double[]){1}, 0);
    kiln_value w = tv(ctx, KILN_F32, "2", (double[]){0, 0.5});
    CHECK_OP(ctx, "all", w, "", KILN_BOOL, "", (double[]){0}, 0);
    CHECK_OP(ctx, "any", w, "", KILN_BOOL, "", (double[]){1}, 0);
    release_all(4, (kiln_value[]){x, y, z, w});
    kiln_context_free(ctx);
}

TEST(reduce_size_zero_dims) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "0,3", NULL);
    CHECK_OP(ctx, "sum", x, "axes=[0]", KILN_F32, "3", (double[]){0, 0, 0}, 0);
    CHECK_OP(ctx, "sum", x, "", KILN_F32, "", (double[]){0}, 0);
    CHECK_OP(ctx, "prod", x, "axes=[0]", KILN_F32, "3", (double[]){1, 1, 1}, 0);
    CHECK_OP(ctx, "all", x, "axes=[0]", KILN_BOOL, "3", (double[]){1, 1, 1}, 0);
    CHECK_OP(ctx, "any", x, "axes=[0], keepdims=true", KILN_BOOL, "1,3", (double[]){0, 0, 0}, 0);
    CHECK_OP(ctx, "sum", x, "axes=[1]", KILN_F32, "0", NULL, 0);
    CHECK_OP(ctx, "max", x, "axes=[1]", KILN_F32, "0", NULL, 0); /* nothing to produce: fine */
    CHECK_OP_ERR(ctx, "max", x, "axes=[0]", "empty axis of shape [0, 3]");
    CHECK_OP_ERR(ctx, "min", x, "", "empty axis");
    CHECK_OP(ctx, "logsumexp", x, "axes=[0]", KILN_F32, "3", (double[]){-INFINITY, -INFINITY, -INFINITY}, 0);
    CHECK_OP(ctx, "logsumexp", x, "keepdims=true", KILN_F32, "1,1", (double[]){-INFINITY}, 0);
    kiln_value i = tv(ctx, KILN_I32, "2,0", NULL);
    CHECK_OP(ctx, "sum", i, "axes=[1]", KILN_I64, "2", (double[]){0, 0}, 0);
    CHECK_OP(ctx, "prod", i, "axes=[1]", KILN_I64, "2", (double[]){1, 1}, 0);
    release_all(2, (kiln_value[]){x, i});
    kiln_context_free(ctx);
}

TEST(reduce_zero_d_and_scalars) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "", (double[]){3.5});
    CHECK_OP(ctx, "sum", x, "", KILN_F32, "", (double[]){3.5}, 0);
    CHECK_OP(ctx, "max", x, "keepdims=true", KILN_F32, "", (double[]){3.5}, 0);
    CHECK_OP(ctx, "all", x, "", KILN_BOOL, "", (double[]){1}, 0);
    CHECK_OP_ERR(ctx, "sum", x, "axes=[0]", "axis 0 is out of range for shape []");
    kiln_value f = kiln_value_float(2.5), i = kiln_value_int(-3), b = kiln_value_bool(true);
    CHECK_OP(ctx, "sum", f, "", KILN_F64, "", (double[]){2.5}, 0);
    CHECK_OP(ctx, "prod", i, "", KILN_I64, "", (double[]){-3}, 0);
    CHECK_OP(ctx, "sum", b, "", KILN_I64, "", (double[]){1}, 0);
    CHECK_OP(ctx, "any", b, "", KILN_BOOL, "", (double[]){1}, 0);
    kiln_value_release(x);
    kiln_context_free(ctx);
}

TEST(reduce_axis_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    CHECK_OP_ERR(ctx, "sum", x, "axes=[2]", "axis 2 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "max", x, "axes=[-3]", "axis -3 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "prod", x, "axes=[1, -1]", "axis -1 is repeated in axes [1, -1] for shape [2, 3]");
    CHECK_OP_ERR(ctx, "all", x, "axes=[0, 0]", "axis 0 is repeated");
    CHECK_OP_ERR(ctx, "mean", x, "axes=[5]", "op 'mean'");
    CHECK_OP_ERR(ctx, "argmax", x, "axis=2", "axis 2 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "cumsum", x, "axis=-3", "axis -3 is out of range for shape [2, 3]");
    kiln_value i = tv(ctx, KILN_I32, "2", (double[]){1, 2});
    CHECK_OP_ERR(ctx, "mean", i, "", "does not take"); /* mean is float-only */
    release_all(2, (kiln_value[]){x, i});
    kiln_context_free(ctx);
}

TEST(argmax_argmin) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 5, 5, 7, 2, 7});
    CHECK_OP(ctx, "argmax", x, "axis=1", KILN_I64, "2", (double[]){1, 0}, 0); /* ties: first */
    CHECK_OP(ctx, "argmin", x, "axis=1", KILN_I64, "2", (double[]){0, 1}, 0);
    CHECK_OP(ctx, "argmax", x, "axis=0", KILN_I64, "3", (double[]){1, 0, 1}, 0);
    CHECK_OP(ctx, "argmin", x, "axis=-2, keepdims=true", KILN_I64, "1,3", (double[]){0, 1, 0}, 0);
    CHECK_OP(ctx, "argmax", x, "", KILN_I64, "", (double[]){3}, 0); /* flattened */
    CHECK_OP(ctx, "argmin", x, "keepdims=true", KILN_I64, "1,1", (double[]){0}, 0);
    kiln_value n = tv(ctx, KILN_F64, "5", (double[]){1, NAN, 3, NAN, -INFINITY});
    CHECK_OP(ctx, "argmax", n, "", KILN_I64, "", (double[]){1}, 0); /* NaN wins, first NaN */
    CHECK_OP(ctx, "argmin", n, "axis=0", KILN_I64, "", (double[]){1}, 0);
    kiln_value h = tv(ctx, KILN_F16, "2,2", (double[]){0.5, -1, 2, 2});
    CHECK_OP(ctx, "argmax", h, "axis=1", KILN_I64, "2", (double[]){0, 0}, 0);
    kiln_tensor *big = kiln_tensor_new(ctx, KILN_I64, 1, (int64_t[]){3});
    ((int64_t *)big->data)[0] = 9007199254740992;
    ((int64_t *)big->data)[1] = 9007199254740993; /* equal as doubles */
    ((int64_t *)big->data)[2] = -1;
    kiln_value bv = kiln_value_tensor(big);
    CHECK_OP(ctx, "argmax", bv, "", KILN_I64, "", (double[]){1}, 0);
    CHECK_OP(ctx, "argmin", bv, "", KILN_I64, "", (double[]){2}, 0);
    kiln_value b = tv(ctx, KILN_BOOL, "3", (double[]){0, 1, 1});
    CHECK_OP(ctx, "argmax", b, "", KILN_I64, "", (double[]){1}, 0);
    kiln_value s = tv(ctx, KILN_F32, "", (double[]){4});
    CHECK_OP(ctx, "argmax", s, "", KILN_I64, "", (double[]){0}, 0);
    CHECK_OP(ctx, "argmin", s, "axis=-1", KILN_I64, "", (double[]){0}, 0);
    kiln_value e = tv(ctx, KILN_F32, "2,0", NULL);
    CHECK_OP(ctx, "argmax", e, "axis=0", KILN_I64, "0", NULL, 0);
    CHECK_OP_ERR(ctx, "argmax", e, "axis=1", "empty axis of shape [2, 0]");
    CHECK_OP_ERR(ctx, "argmin", e, "", "empty axis");
    release_all(7, (kiln_value[]){x, n, h, bv, b, s, e});
    kiln_context_free(ctx);
}

TEST(cumsum_axis_exclusive_reverse) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    CHECK_OP(ctx, "cumsum", x, "axis=1", KILN_F32, "2,3", (double[]){1, 3, 6, 4, 9, 15}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=-1", KILN_F32, "2,3", (double[]){1, 3, 6, 4, 9, 15}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=0", KILN_F32, "2,3", (double[]){1, 2, 3, 5, 7, 9}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=1, exclusive=true", KILN_F32, "2,3", (double[]){0, 1, 3, 0, 4, 9}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=1, reverse=true", KILN_F32, "2,3", (double[]){6, 5, 3, 15, 11, 6}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=1, exclusive=true, reverse=true", KILN_F32, "2,3", (double[]){5, 3, 0, 11, 6, 0}, 0);
    CHECK_OP(ctx, "cumsum", x, "axis=0, exclusive=true", KILN_F32, "2,3", (double[]){0, 0, 0, 1, 2, 3}, 0);
    kiln_value d = tv(ctx, KILN_F64, "4", (double[]){0.5, NAN, 1, 2});
    CHECK_OP(ctx, "cumsum", d, "axis=0", KILN_F64, "4", (double[]){0.5, NAN, NAN, NAN}, 0);
    kiln_value i = tv(ctx, KILN_I32, "3", (double[]){5, -2, 7});
    CHECK_OP(ctx, "cumsum", i, "axis=0", KILN_I64, "3", (double[]){5, 3, 10}, 0);
    kiln_value b = tv(ctx, KILN_BOOL, "4", (double[]){1, 1, 0, 1});
    CHECK_OP(ctx, "cumsum", b, "axis=0", KILN_I64, "4", (double[]){1, 2, 2, 3}, 0);
    kiln_value h = tv(ctx, KILN_BF16, "3", (double[]){1, 2, 4});
    CHECK_OP(ctx, "cumsum", h, "axis=0, reverse=true", KILN_BF16, "3", (double[]){7, 6, 4}, 0);
    kiln_value s = tv(ctx, KILN_F32, "", (double[]){2});
    CHECK_OP(ctx, "cumsum", s, "axis=0", KILN_F32, "", (double[]){2}, 0);
    CHECK_OP(ctx, "cumsum", s, "axis=0, exclusive=true", KILN_F32, "", (double[]){0}, 0);
    kiln_value e = tv(ctx, KILN_F32, "2,0", NULL);
    CHECK_OP(ctx, "cumsum", e, "axis=1", KILN_F32, "2,0", NULL, 0);
    CHECK_OP_ERR(ctx, "cumsum", x, "axis=2", "axis 2 is out of range for shape [2, 3]");
    release_all(7, (kiln_value[]){x, d, i, b, h, s, e});
    kiln_context_free(ctx);
}

/* Inputs larger than the kernels' 4096-element chunks, along and across the reduced axis. */
TEST(reduce_kernels_span_chunks) {
    kiln_context *ctx = kiln_context_new();
    enum { N = 10000 };
    static double d[2 * N], col[2], cs[2 * N];
    for (int i = 0; i < 2 * N; i++) d[i] = i % 7 == 0 ? 2 : 1; /* 2858 twos among the first N */
    d[2 * 7777 + 1] = 50, d[2 * 9999] = -3;
    kiln_value x = tv(ctx, KILN_F32, "10000,2", d), flat = tv(ctx, KILN_F64, "20000", d);
    kiln_value wide = tv(ctx, KILN_I32, "2,10000", d);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < N; i++) s0 += d[2 * i], s1 += d[2 * i + 1];
    CHECK_OP(ctx, "sum", x, "axes=[0]", KILN_F32, "2", (double[]){s0, s1}, 1e-6);
    CHECK_OP(ctx, "sum", flat, "", KILN_F64, "", (double[]){s0 + s1}, 0);
    double w0 = 0, w1 = 0;
    for (int i = 0; i < N; i++) w0 += d[i], w1 += d[N + i];
    CHECK_OP(ctx, "sum", wide, "axes=[1]", KILN_I64, "2", (double[]){w0, w1}, 0);
    CHECK_OP(ctx, "argmax", x, "axis=0", KILN_I64, "2", (double[]){0, 7777}, 0);
    CHECK_OP(ctx, "argmin", x, "axis=0", KILN_I64, "2", (double[]){9999, 0}, 0);
    CHECK_OP(ctx, "argmax", flat, "", KILN_I64, "", (double[]){2 * 7777 + 1}, 0);
    CHECK_OP(ctx, "argmin", wide, "axis=1", KILN_I64, "2", (double[]){1, 9998}, 0); /* -3 at 19998 */
    /* reverse exclusive cumsum down axis 0: row i holds the sum of rows after i */
    col[0] = col[1] = 0;
    for (int i = N - 1; i >= 0; i--)
        for (int j = 0; j < 2; j++) cs[2 * i + j] = col[j], col[j] += d[2 * i + j];
    CHECK_OP(ctx, "cumsum", x, "axis=0, exclusive=true, reverse=true", KILN_F32, "10000,2", cs, 0);
    release_all(3, (kiln_value[]){x, flat, wide});
    kiln_context_free(ctx);
}

/* ---- composites (they emit elementwise and layout ops written elsewhere) ----------------- */
TEST(mean_variance_l2norm) {
    kiln_context *ctx = kiln_context_new();
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F64 : KILN_F32;
        kiln_value x = tv(ctx, dt, "2,3", (double[]){1, 2, 3, 4, 5, 6});
        CHECK_OP(ctx, "mean", x, "", dt, "", (double[]){3.5}, 1e-6);
        CHECK_OP(ctx, "mean", x, "axes=[1]", dt, "2", (double[]){2, 5}, 1e-6);
        CHECK_OP(ctx, "mean", x, "axes=[0], keepdims=true", dt, "1,3", (double[]){2.5, 3.5, 4.5}, 1e-6);
        CHECK_OP(ctx, "variance", x, "axes=[1]", dt, "2", (double[]){2.0 / 3, 2.0 / 3}, 1e-6);
        CHECK_OP(ctx, "variance", x, "axes=[-1], correction=1", dt, "2", (double[]){1, 1}, 1e-6);
        CHECK_OP(ctx, "variance", x, "", dt, "", (double[]){17.5 / 6}, 1e-6);
        CHECK_OP(ctx, "variance", x, "correction=1, keepdims=true", dt, "1,1", (double[]){3.5}, 1e-6);
        CHECK_OP(ctx, "l2norm", x, "axes=[0]", dt, "3", (double[]){sqrt(17), sqrt(29), sqrt(45)}, 1e-6);
        kiln_value_release(x);
    }
    kiln_value y = tv(ctx, KILN_F32, "2,2", (double[]){3, 4, 6, 8});
    CHECK_OP(ctx, "l2norm", y, "axes=[1]", KILN_F32, "2", (double[]){5, 10}, 1e-6);
    CHECK_OP(ctx, "l2norm", y, "axes=[1], keepdims=true", KILN_F32, "2,1", (double[]){5, 10}, 1e-6);
    CHECK_OP(ctx, "l2norm", y, "", KILN_F32, "", (double[]){sqrt(125)}, 1e-6);
    kiln_value h = tv(ctx, KILN_F16, "4", (double[]){1, 2, 3, 4});
    CHECK_OP(ctx, "mean", h, "", KILN_F16, "", (double[]){2.5}, 1e-3);
    CHECK_OP(ctx, "variance", h, "", KILN_F16, "", (double[]){1.25}, 1e-3);
    kiln_value e = tv(ctx, KILN_F32, "0", NULL);
    CHECK_OP(ctx, "mean", e, "", KILN_F32, "", (double[]){NAN}, 0); /* torch: nan */
    release_all(3, (kiln_value[]){y, h, e});
    kiln_context_free(ctx);
}

TEST(logsumexp_stable) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "3", (double[]){1, 2, 3});
    CHECK_OP(ctx, "logsumexp", x, "", KILN_F32, "", (double[]){3.40760596444438}, 1e-6);
    kiln_value y = tv(ctx, KILN_F64, "2,2", (double[]){0, 0, 1000, 1000}); /* exp(1000) overflows */
    CHECK_OP(ctx, "logsumexp", y, "axes=[1]", KILN_F64, "2", (double[]){0.69314718055994531, 1000 + 0.69314718055994531}, 1e-12);
    CHECK_OP(ctx, "logsumexp", y, "axes=[-1], keepdims=true", KILN_F64, "2,1", (double[]){0.69314718055994531, 1000 + 0.69314718055994531}, 1e-12);
    CHECK_OP(ctx, "logsumexp", y, "axes=[0]", KILN_F64, "2", (double[]){1000, 1000}, 1e-12);
    kiln_value z = tv(ctx, KILN_F32, "2,2", (double[]){-INFINITY, -INFINITY, INFINITY, 1});
    CHECK_OP(ctx, "logsumexp", z, "axes=[1]", KILN_F32, "2", (double[]){-INFINITY, INFINITY}, 0);
    kiln_value h = tv(ctx, KILN_F16, "2", (double[]){-INFINITY, -INFINITY});
    CHECK_OP(ctx, "logsumexp", h, "", KILN_F16, "", (double[]){-INFINITY}, 0);
    CHECK_OP_ERR(ctx, "logsumexp", x, "axes=[1]", "axis 1 is out of range");
    release_all(4, (kiln_value[]){x, y, z, h});
    kiln_context_free(ctx);
}

TEST(sum_to_reverses_broadcasting) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    CHECK_OP(ctx, "sum_to", x, "shape=[3]", KILN_F32, "3", (double[]){5, 7, 9}, 0);
    CHECK_OP(ctx, "sum_to", x, "shape=[1, 3]", KILN_F32, "1,3", (double[]){5, 7, 9}, 0);
    CHECK_OP(ctx, "sum_to", x, "shape=[2, 1]", KILN_F32, "2,1", (double[]){6, 15}, 0);
    CHECK_OP(ctx, "sum_to", x, "shape=[1]", KILN_F32, "1", (double[]){21}, 0);
    CHECK_OP(ctx, "sum_to", x, "shape=[]", KILN_F32, "", (double[]){21}, 0);
    CHECK_OP(ctx, "sum_to", x, "shape=[2, 3]", KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}, 0);
    kiln_value i = tv(ctx, KILN_I32, "2,2,1", (double[]){1, 2, 3, 4});
    CHECK_OP(ctx, "sum_to", i, "shape=[2, 1]", KILN_I32, "2,1", (double[]){4, 6}, 0);
    CHECK_OP(ctx, "sum_to", i, "shape=[2, 2, 1]", KILN_I32, "2,2,1", (double[]){1, 2, 3, 4}, 0);
    CHECK_OP_ERR(ctx, "sum_to", x, "shape=[4]", "target shape [4] does not broadcast to the input shape [2, 3]");
    CHECK_OP_ERR(ctx, "sum_to", x, "shape=[1, 2, 3]", "does not broadcast");
    CHECK_OP_ERR(ctx, "sum_to", x, "shape=[3, 1]", "does not broadcast");
    release_all(2, (kiln_value[]){x, i});
    kiln_context_free(ctx);
}

/* Composites also decompose inside a built function (the path compiled code takes). */
TEST(reduce_composite_in_module) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "main");
    kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 2, (int64_t[]){2, 2}));
    kiln_var *s = kiln_emit(kiln_function_body(f), "mean", 1, &x, "axes=[0]");
    CHECK(s != NULL);
    kiln_var *t = kiln_emit(kiln_function_body(f), "sum_to", 1, &s, "shape=[1]");
    CHECK(t != NULL);
    CHECK_OK(ctx, kiln_region_yield(kiln_function_body(f), 1, &t));
    kiln_value in = tv(ctx, KILN_F32, "2,2", (double[]){1, 2, 3, 4}), out = {.kind = KILN_VALUE_NONE};
    CHECK_OK(ctx, kiln_function_run(f, 1, &in, &out));
    CHECK_TENSOR(out, KILN_F32, "1", (double[]){5}, 1e-6);
    release_all(2, (kiln_value[]){in, out});
    kiln_module_free(m);
    kiln_context_free(ctx);
}
