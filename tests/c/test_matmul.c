/* test_matmul.c — tests of matmul (every transpose form, 1-D operands, batch broadcasting, float
 * and int dtypes, blocked sizes), the composites batch_matmul and dense, and their error paths.
 * Expected values come from plain triple loops written here. */
#include "test.h"
#include <stdlib.h>

/* Runs an op and checks its tensor result (a function: compound literals hold commas). */
static void check_mm(const char *file, int line, kiln_context *ctx, const char *op, int n, const kiln_value *in,
                     const char *attrs, kiln_dtype dt, const char *shape, const double *expected, double tol) {
    kiln_value r = run_op(ctx, op, n, in, attrs);
    check_tensor(file, line, r, dt, shape, expected, tol);
    kiln_value_release(r);
}
#define CHECK_MM(ctx, op, n, in, attrs, dt, shape, ...) check_mm(__FILE__, __LINE__, ctx, op, n, in, attrs, dt, shape, __VA_ARGS__)

/* An op that must fail type checking with a message containing `sub`. */
#define CHECK_MM_ERR(ctx, op, n, in, attrs, sub)                                                \
    do {                                                                                        \
        kiln_value r_ = {.kind = KILN_VALUE_NONE};                                              \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), (n), (in), (attrs), &r_), KILN_ERR_TYPE, (sub)); \
        kiln_value_release(r_);                                                                 \
    } while (0)

/* Small integers, exact in every dtype; `seed` varies the pattern. */
static void fill(double *d, int n, int seed) {
    for (int i = 0; i < n; i++) d[i] = (double)((i * seed + 3) % 11) - 5;
}

/* c[m][n] = sum_p A(i,p) * B(p,j); A stored [m][k] (or [k][m] when ta), B [k][n] (or [n][k]). */
static void naive_mm(const double *a, bool ta, const double *b, bool tb, int m, int k, int n, double *c) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            c[i * n + j] = s;
        }
}

TEST(matmul_2d_hand_checked) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}),
                        tv(ctx, KILN_F32, "3,2", (double[]){1, -1, 2, 0, 0, 3})};
    /* [1 2 3; 4 5 6] @ [1 -1; 2 0; 0 3] = [5 8; 14 14] */
    CHECK_MM(ctx, "matmul", 2, in, NULL, KILN_F32, "2,2", (double[]){5, 8, 14, 14}, 0);
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(matmul_all_transpose_forms_f32_f64) {
    kiln_context *ctx = kiln_context_new();
    const int m = 3, k = 4, n = 5;
    double a[12], b[20], want[15];
    fill(a, 12, 7);
    fill(b, 20, 5);
    for (int dk = 0; dk < 2; dk++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            kiln_dtype dt = dk ? KILN_F64 : KILN_F32;
            kiln_value in[2] = {tv(ctx, dt, ta ? "4,3" : "3,4", a), tv(ctx, dt, tb ? "5,4" : "4,5", b)};
            char attrs[64];
            snprintf(attrs, sizeof attrs, "transpose_a=%s, transpose_b=%s", ta ? "true" : "false", tb ? "true" : "false");
            naive_mm(a, ta, b, tb, m, k, n, want);
            CHECK_MM(ctx, "matmul", 2, in, attrs, dt, "3,5", want, 0);
            release_all(2, in);
        }
    kiln_context_free(ctx);
}

TEST(matmul_blocked_sizes_match_naive) {
    /* Crosses the GEMM's k and n blocks, with full 4x4 register tiles and cut edge tiles (6 rows,
     * 523 columns), in every transpose form. Small integers keep f32 sums exact. */
    kiln_context *ctx = kiln_context_new();
    const int m = 6, k = 300, n = 523;
    double *a = malloc(sizeof(double) * m * k), *b = malloc(sizeof(double) * k * n), *want = malloc(sizeof(double) * m * n);
    fill(a, m * k, 7);
    fill(b, k * n, 3);
    for (int t = 0; t < 8; t++) {
        bool ta = t & 1, tb = t & 2;
        kiln_dtype dt = t & 4 ? KILN_F64 : KILN_F32;
        kiln_value in[2] = {tv(ctx, dt, ta ? "300,6" : "6,300", a), tv(ctx, dt, tb ? "523,300" : "300,523", b)};
        char attrs[64];
        snprintf(attrs, sizeof attrs, "transpose_a=%s, transpose_b=%s", ta ? "true" : "false", tb ? "true" : "false");
        naive_mm(a, ta, b, tb, m, k, n, want);
        CHECK_MM(ctx, "matmul", 2, in, attrs, dt, "6,523", want, 0);
        release_all(2, in);
    }
    free(a);
    free(b);
    free(want);
    kiln_context_free(ctx);
}

TEST(matmul_1d_operands) {
    kiln_context *ctx = kiln_context_new();
    kiln_value v = tv(ctx, KILN_F64, "3", (double[]){1, 2, 3});
    kiln_value m = tv(ctx, KILN_F64, "3,2", (double[]){1, 2, 3, 4, 5, 6});
    kiln_value mt = tv(ctx, KILN_F64, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){v, m}), NULL, KILN_F64, "2", (double[]){22, 28}, 0);
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){mt, v}), NULL, KILN_F64, "2", (double[]){14, 32}, 0);
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){v, v}), NULL, KILN_F64, "", (double[]){14}, 0);
    /* transposes apply to the 2-D operand only */
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){v, mt}), "transpose_b=true", KILN_F64, "2", (double[]){14, 32}, 0);
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){m, v}), "transpose_a=true, transpose_b=true", KILN_F64, "2",
             (double[]){22, 28}, 0);
    /* a vector against a batch of matrices: [3] @ [2, 3, 2] -> [2, 2]; [2, 2, 3] @ [3] -> [2, 2] */
    kiln_value bm = tv(ctx, KILN_F64, "2,3,2", (double[]){1, 2, 3, 4, 5, 6, 0, 1, 0, 1, 0, 1});
    kiln_value bmt = tv(ctx, KILN_F64, "2,2,3", (double[]){1, 2, 3, 4, 5, 6, 0, 1, 0, 1, 0, 1});
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){v, bm}), NULL, KILN_F64, "2,2", (double[]){22, 28, 0, 6}, 0);
    CHECK_MM(ctx, "matmul", 2, ((kiln_value[]){bmt, v}), NULL, KILN_F64, "2,2", (double[]){14, 32, 2, 4}, 0);
    release_all(2, (kiln_value[]){bm, bmt});
    release_all(3, (kiln_value[]){v, m, mt});
    kiln_context_free(ctx);
}

TEST(matmul_batch_broadcasting) {
    kiln_context *ctx = kiln_context_new();
    /* a [2, 1, 2, 3] @ b [3, 3, 4] -> [2, 3, 2, 4]; a's dim 1 and b's missing dim broadcast */
    double a[12], b[36], want[48];
    fill(a, 12, 5);
    fill(b, 36, 7);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 4; c++) {
                    double s = 0;
                    for (int p = 0; p < 3; p++) s += a[(i * 2 + r) * 3 + p] * b[(j * 3 + p) * 4 + c];
                    want[((i * 3 + j) * 2 + r) * 4 + c] = s;
                }
    kiln_value in[2] = {tv(ctx, KILN_F32, "2,1,2,3", a), tv(ctx, KILN_F32, "3,3,4", b)};
    CHECK_MM(ctx, "matmul", 2, in, NULL, KILN_F32, "2,3,2,4", want, 0);
    /* a 2-D operand broadcasts against every batch: b [3, 3, 4] @ w [4, 2] */
    double w[8], want2[18];
    fill(w, 8, 3);
    for (int j = 0; j < 9; j++)
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (int p = 0; p < 4; p++) s += b[j * 4 + p] * w[p * 2 + c];
            want2[j * 2 + c] = s;
        }
    kiln_value in2[2] = {in[1], tv(ctx, KILN_F32, "4,2", w)};
    CHECK_MM(ctx, "matmul", 2, in2, NULL, KILN_F32, "3,3,2", want2, 0);
    release_all(2, in);
    kiln_value_release(in2[1]);
    kiln_context_free(ctx);
}

TEST(matmul_int_dtypes_wrap) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {tv(ctx, KILN_I32, "2,2", (double[]){1, -2, 3, 4}), tv(ctx, KILN_I32, "2,2", (double[]){5, 6, 7, -8})};
    CHECK_MM(ctx, "matmul", 2, in, NULL, KILN_I32, "2,2", (double[]){-9, 22, 43, -14}, 0);
    CHECK_MM(ctx, "matmul", 2, in, "transpose_a=true", KILN_I32, "2,2", (double[]){26, -18, 18, -44}, 0);
    release_all(2, in);
    /* i8: 100*1 + 100*1 = 200 wraps to -56; u8 300 -> 44 */
    kiln_value i8[2] = {tv(ctx, KILN_I8, "1,2", (double[]){100, 100}), tv(ctx, KILN_I8, "2", (double[]){1, 1})};
    CHECK_MM(ctx, "matmul", 2, i8, NULL, KILN_I8, "1", (double[]){-56}, 0);
    release_all(2, i8);
    kiln_value u8[2] = {tv(ctx, KILN_U8, "1,2", (double[]){150, 150}), tv(ctx, KILN_U8, "2,1", (double[]){1, 1})};
    CHECK_MM(ctx, "matmul", 2, u8, NULL, KILN_U8, "1,1", (double[]){44}, 0);
    release_all(2, u8);
    /* i64 products that overflow wrap (no UB) */
    kiln_value i64[2] = {tv(ctx, KILN_I64, "1,1", (double[]){4611686018427387904.0}), tv(ctx, KILN_I64, "1,1", (double[]){4})};
    CHECK_MM(ctx, "matmul", 2, i64, NULL, KILN_I64, "1,1", (double[]){0}, 0);
    release_all(2, i64);
    kiln_context_free(ctx);
}

TEST(matmul_f16_bf16) {
    kiln_context *ctx = kiln_context_new();
    double a[12], b[20], want[15];
    for (int i = 0; i < 12; i++) a[i] = 0.1 * (i % 5) - 0.2;
    for (int i = 0; i < 20; i++) b[i] = 0.3 - 0.05 * (i % 7);
    naive_mm(a, false, b, false, 3, 4, 5, want);
    kiln_dtype dts[2] = {KILN_F16, KILN_BF16};
    for (int d = 0; d < 2; d++) {
        kiln_value in[2] = {tv(ctx, dts[d], "3,4", a), tv(ctx, dts[d], "4,5", b)};
        CHECK_MM(ctx, "matmul", 2, in, NULL, dts[d], "3,5", want, 2e-2);
        release_all(2, in);
    }
    kiln_context_free(ctx);
}

TEST(matmul_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value a = tv(ctx, KILN_F32, "2,3", NULL), b = tv(ctx, KILN_F32, "4,5", NULL), d = tv(ctx, KILN_F64, "3,5", NULL);
    kiln_value s = tv(ctx, KILN_F32, "", (double[]){1}), v4 = tv(ctx, KILN_F32, "4", NULL);
    kiln_value ba = tv(ctx, KILN_F32, "2,2,3", NULL), bb = tv(ctx, KILN_F32, "3,3,5", NULL);
    kiln_value ib = tv(ctx, KILN_I32, "3,5", NULL);
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, b}), NULL, "shapes f32[2, 3] and f32[4, 5] do not match");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, b}), NULL, "contracted dim 1 of a has size 3, contracted dim 0 of b has size 4");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, a}), NULL, "(transpose_a=false, transpose_b=false): contracted dim 1 of a has size 3, contracted dim 0 of b has size 2");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, b}), "transpose_a=true", "contracted dim 0 of a has size 2");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, b}), "transpose_b=true", "contracted dim 1 of b has size 5");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, d}), NULL, "one dtype, got f32[2, 3] and f64[3, 5]");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, ib}), NULL, "got f32[2, 3] and i32[3, 5]");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){s, a}), NULL, "0-d tensors cannot be multiplied");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, v4}), NULL, "contracted dim 0 of b has size 4");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){a, kiln_value_float(2.0)}), NULL, "input 1 is float, expected a tensor");
    CHECK_MM_ERR(ctx, "matmul", 2, ((kiln_value[]){ba, bb}), NULL, "batch dims of f32[2, 2, 3] and f32[3, 3, 5] do not broadcast");
    CHECK_MM_ERR(ctx, "matmul", 1, &a, NULL, "takes 2 inputs");
    release_all(8, (kiln_value[]){a, b, d, s, v4, ba, bb, ib});
    kiln_context_free(ctx);
}

TEST(batch_matmul_composite) {
    kiln_context *ctx = kiln_context_new();
    double a[12], b[12], want[8];
    fill(a, 12, 5);
    fill(b, 12, 7);
    for (int t = 0; t < 2; t++) naive_mm(a + 6 * t, false, b + 6 * t, true, 2, 3, 2, want + 4 * t);
    kiln_value in[2] = {tv(ctx, KILN_F32, "2,2,3", a), tv(ctx, KILN_F32, "2,2,3", b)};
    CHECK_MM(ctx, "batch_matmul", 2, in, "transpose_b=true", KILN_F32, "2,2,2", want, 0);
    kiln_value m2 = tv(ctx, KILN_F32, "3,2", NULL), b3 = tv(ctx, KILN_F32, "3,3,2", NULL);
    CHECK_MM_ERR(ctx, "batch_matmul", 2, ((kiln_value[]){in[0], m2}), NULL, "3-D operands [batch, rows, cols] with equal batch, got f32[2, 2, 3] and f32[3, 2]");
    CHECK_MM_ERR(ctx, "batch_matmul", 2, ((kiln_value[]){in[0], b3}), NULL, "equal batch, got f32[2, 2, 3] and f32[3, 3, 2]");
    CHECK_MM_ERR(ctx, "batch_matmul", 2, in, NULL, "contracted dim 2 of a has size 3, contracted dim 1 of b has size 2");
    release_all(2, in);
    release_all(2, (kiln_value[]){m2, b3});
    kiln_context_free(ctx);
}

TEST(dense_composite) {
    kiln_context *ctx = kiln_context_new();
    /* torch.nn.functional.linear: y = x @ w^T + b, x [2, 2, 3], w [4, 3], b [4] */
    double x[12], w[12], bias[4] = {0.5, -1, 2, 0}, want[16], want_nb[16];
    fill(x, 12, 5);
    fill(w, 12, 7);
    naive_mm(x, false, w, true, 4, 3, 4, want_nb);
    for (int i = 0; i < 16; i++) want[i] = want_nb[i] + bias[i % 4];
    kiln_value in[3] = {tv(ctx, KILN_F32, "2,2,3", x), tv(ctx, KILN_F32, "4,3", w), tv(ctx, KILN_F32, "4", bias)};
    CHECK_MM(ctx, "dense", 3, in, NULL, KILN_F32, "2,2,4", want, 0);
    CHECK_MM(ctx, "dense", 2, in, NULL, KILN_F32, "2,2,4", want_nb, 0);
    kiln_value x1 = tv(ctx, KILN_F32, "3", x); /* a single feature vector */
    CHECK_MM(ctx, "dense", 3, ((kiln_value[]){x1, in[1], in[2]}), NULL, KILN_F32, "4", want, 0);
    kiln_value w2 = tv(ctx, KILN_F32, "4,2", NULL), w3 = tv(ctx, KILN_F32, "1,4,3", NULL), b5 = tv(ctx, KILN_F32, "5", NULL);
    kiln_value xi = tv(ctx, KILN_I32, "2,3", NULL), wd = tv(ctx, KILN_F64, "4,3", NULL);
    CHECK_MM_ERR(ctx, "dense", 2, ((kiln_value[]){in[0], w2}), NULL, "x f32[2, 2, 3] has 3 input features (last dim), weight f32[4, 2] has 2 (dim 1)");
    CHECK_MM_ERR(ctx, "dense", 2, ((kiln_value[]){in[0], w3}), NULL, "weight [out, in], got f32[2, 2, 3] and f32[1, 4, 3]");
    CHECK_MM_ERR(ctx, "dense", 3, ((kiln_value[]){in[0], in[1], b5}), NULL, "bias f32[5] must be [4] to match weight f32[4, 3]");
    CHECK_MM_ERR(ctx, "dense", 2, ((kiln_value[]){in[0], wd}), NULL, "one dtype, got f32[2, 2, 3] and f64[4, 3]");
    CHECK_MM_ERR(ctx, "dense", 2, ((kiln_value[]){xi, in[1]}), NULL, "input 0 has dtype i32[2, 3]");
    release_all(3, in);
    release_all(6, (kiln_value[]){x1, w2, w3, b5, xi, wd});
    kiln_context_free(ctx);
}
