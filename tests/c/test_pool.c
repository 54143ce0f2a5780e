/* test_pool.c — tests of max_pool2d (stride, padding, dilation, ceil_mode, ints, NaN),
 * avg_pool2d (count_include_pad, ceil_mode), the adaptive pools (non-divisible sizes) and every
 * error path. The oracle walks each window's kernel taps directly. */
#include "test.h"
#include <stdlib.h>

typedef struct pool_case {
    int64_t x[4];
    int64_t k[2], s[2], pad[4], dil[2], out[2]; /* out: the expected output size (torch's rule) */
    bool include_pad;
    const char *attrs;
} pool_case;

/* Direct pooling: tap (ki, kj) of output (i, j) reads row i*s - top + ki*d. A tap counts toward
 * avg's padded divisor when it lies in [-top, H + bottom) (torch clips windows there). */
static void direct_pool(const pool_case *c, bool is_max, const double *x, double *y) {
    int64_t H = c->x[2], W = c->x[3];
    for (int64_t q = 0; q < c->x[0] * c->x[1]; q++, x += H * W)
        for (int64_t i = 0; i < c->out[0]; i++)
            for (int64_t j = 0; j < c->out[1]; j++) {
                double m = -INFINITY, s = 0;
                int64_t inside = 0, rows = 0, cols = 0;
                for (int64_t ki = 0; ki < c->k[0]; ki++) {
                    int64_t h = i * c->s[0] - c->pad[0] + ki * c->dil[0];
                    rows += h < H + c->pad[2];
                    for (int64_t kj = 0; kj < c->k[1]; kj++) {
                        int64_t v = j * c->s[1] - c->pad[1] + kj * c->dil[1];
                        if (ki == 0) cols += v < W + c->pad[3];
                        if (h < 0 || h >= H || v < 0 || v >= W) continue;
                        double e = x[h * W + v];
                        m = (e > m || isnan(e)) ? e : m;
                        s += e;
                        inside++;
                    }
                }
                *y++ = is_max ? m : s / (double)(c->include_pad ? rows * cols : inside);
            }
}

static const char *shape_text(const int64_t *s, char *buf, size_t size) {
    snprintf(buf, size, "%lld,%lld,%lld,%lld", (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3]);
    return buf;
}

/* Runs op on x of shape c->x, dtype dt, and compares with `want` (or the oracle when NULL). */
static void check_pool(const char *file, int line, kiln_context *ctx, const char *op, const pool_case *c, kiln_dtype dt,
                       const double *x, const double *want, double tol) {
    int64_t ys[4] = {c->x[0], c->x[1], c->out[0], c->out[1]};
    double *y = malloc(sizeof(double) * 4096);
    if (!want) direct_pool(c, strstr(op, "max") != NULL, x, y);
    char sx[64], sy[64];
    kiln_value in = tv(ctx, dt, shape_text(c->x, sx, sizeof sx), x);
    kiln_value r = run_op(ctx, op, 1, &in, c->attrs);
    check_tensor(file, line, r, dt, shape_text(ys, sy, sizeof sy), want ? want : y, tol);
    kiln_value_release(r);
    kiln_value_release(in);
    free(y);
}
#define CHECK_POOL(ctx, op, c, dt, x, want, tol) check_pool(__FILE__, __LINE__, ctx, op, c, dt, x, want, tol)

#define CHECK_OP_ERR(ctx, op, x, attrs, sub)                                                    \
    do {                                                                                        \
        kiln_value r_ = {.kind = KILN_VALUE_NONE};                                              \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), 1, &(x), (attrs), &r_), KILN_ERR_TYPE, (sub)); \
        kiln_value_release(r_);                                                                 \
    } while (0)

static double *pattern(int n) {
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) d[i] = (double)((i * 7 + 2) % 17) - 8;
    return d;
}

TEST(max_pool2d_hand_checked) {
    kiln_context *ctx = kiln_context_new();
    double x[16];
    for (int i = 0; i < 16; i++) x[i] = i;
    pool_case c = {{1, 1, 4, 4}, {2, 2}, {2, 2}, {0}, {1, 1}, {2, 2}, false, "kernel=[2, 2]"};
    CHECK_POOL(ctx, "max_pool2d", &c, KILN_F32, x, ((double[]){5, 7, 13, 15}), 0);
    CHECK_POOL(ctx, "avg_pool2d", &c, KILN_F32, x, ((double[]){2.5, 4.5, 10.5, 12.5}), 0);
    /* padding 1, stride 2: windows [-1, 0], [1, 2], [3, 4] */
    pool_case p = {{1, 1, 4, 4}, {2, 2}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {3, 3}, true, "kernel=[2, 2], padding=[1, 1]"};
    CHECK_POOL(ctx, "max_pool2d", &p, KILN_F32, x, ((double[]){0, 2, 3, 8, 10, 11, 12, 14, 15}), 0);
    /* count_include_pad: the corner window holds x[0] and three pads -> 0 / 4 */
    CHECK_POOL(ctx, "avg_pool2d", &p, KILN_F32, x, ((double[]){0, 0.75, 0.75, 3, 7.5, 4.5, 3, 6.75, 3.75}), 0);
    kiln_context_free(ctx);
}

TEST(max_pool2d_stride_padding_dilation_ceil) {
    kiln_context *ctx = kiln_context_new();
    const pool_case cases[] = {
        {{2, 3, 5, 7}, {3, 2}, {3, 2}, {0}, {1, 1}, {1, 3}, false, "kernel=[3, 2]"},
        {{1, 2, 6, 5}, {3, 3}, {1, 2}, {1, 1, 1, 1}, {1, 1}, {6, 3}, false, "kernel=[3, 3], stride=[1, 2], padding=[1, 1]"},
        {{1, 2, 7, 7}, {3, 2}, {1, 1}, {0}, {2, 3}, {3, 4}, false, "kernel=[3, 2], stride=[1, 1], dilation=[2, 3]"},
        {{1, 1, 8, 8}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {2, 2}, {3, 3}, false, "kernel=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[2, 2]"},
        /* ceil_mode adds a partial last window: 5 -> 3 */
        {{1, 2, 5, 5}, {2, 2}, {2, 2}, {0}, {1, 1}, {3, 3}, false, "kernel=[2, 2], ceil_mode=true"},
        /* ceil_mode but the extra window would start in the right padding: 3 stays 2 */
        {{1, 1, 3, 3}, {2, 2}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {2, 2}, false, "kernel=[2, 2], padding=[1, 1], ceil_mode=true"},
        {{1, 1, 4, 6}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {3, 4}, false, "kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=true"},
        /* asymmetric [top, left, bottom, right] padding */
        {{1, 2, 5, 5}, {3, 2}, {2, 1}, {1, 0, 0, 1}, {1, 1}, {2, 5}, false, "kernel=[3, 2], stride=[2, 1], padding=[1, 0, 0, 1]"},
    };
    for (size_t i = 0; i < KILN_COUNTOF(cases); i++) {
        double *x = pattern((int)(cases[i].x[0] * cases[i].x[1] * cases[i].x[2] * cases[i].x[3]));
        CHECK_POOL(ctx, "max_pool2d", &cases[i], KILN_F32, x, NULL, 0);
        CHECK_POOL(ctx, "max_pool2d", &cases[i], KILN_F64, x, NULL, 0);
        CHECK_POOL(ctx, "max_pool2d", &cases[i], KILN_I32, x, NULL, 0);
        CHECK_POOL(ctx, "max_pool2d", &cases[i], KILN_BF16, x, NULL, 0);
        free(x);
    }
    kiln_context_free(ctx);
}

TEST(max_pool2d_int_and_nan) {
    kiln_context *ctx = kiln_context_new();
    pool_case c = {{1, 1, 2, 4}, {2, 2}, {2, 2}, {0}, {1, 1}, {1, 2}, false, "kernel=[2, 2]"};
    CHECK_POOL(ctx, "max_pool2d", &c, KILN_I8, ((double[]){-128, -100, 5, -7, -120, -128, 6, 127}), ((double[]){-100, 127}), 0);
    CHECK_POOL(ctx, "max_pool2d", &c, KILN_I64, ((double[]){-5, -6, 1e15, 3, -7, -8, 2, 4}), ((double[]){-5, 1e15}), 0);
    CHECK_POOL(ctx, "max_pool2d", &c, KILN_F32, ((double[]){1, NAN, 2, 3, 4, 0, -INFINITY, -INFINITY}), ((double[]){NAN, 3}), 0);
    kiln_context_free(ctx);
}

TEST(avg_pool2d_count_include_pad_ceil) {
    kiln_context *ctx = kiln_context_new();
    const pool_case cases[] = {
        {{2, 2, 5, 6}, {2, 3}, {2, 3}, {0}, {1, 1}, {2, 2}, true, "kernel=[2, 3]"},
        {{1, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {3, 3}, true, "kernel=[3, 3], stride=[2, 2], padding=[1, 1]"},
        {{1, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {3, 3}, false, "kernel=[3, 3], stride=[2, 2], padding=[1, 1], count_include_pad=false"},
        /* ceil_mode: the last window runs past the right padding, so its padded size shrinks */
        {{1, 1, 6, 6}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {4, 4}, true, "kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=true"},
        {{1, 1, 6, 6}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {4, 4}, false, "kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=true, count_include_pad=false"},
        {{1, 1, 5, 5}, {2, 2}, {2, 2}, {0}, {1, 1}, {3, 3}, true, "kernel=[2, 2], ceil_mode=true"},
        {{1, 1, 4, 5}, {2, 3}, {1, 2}, {0, 1, 1, 0}, {1, 1}, {4, 2}, true, "kernel=[2, 3], stride=[1, 2], padding=[0, 1, 1, 0]"},
    };
    for (size_t i = 0; i < KILN_COUNTOF(cases); i++) {
        double *x = pattern((int)(cases[i].x[0] * cases[i].x[1] * cases[i].x[2] * cases[i].x[3]));
        CHECK_POOL(ctx, "avg_pool2d", &cases[i], KILN_F64, x, NULL, 1e-12);
        CHECK_POOL(ctx, "avg_pool2d", &cases[i], KILN_F32, x, NULL, 1e-6);
        CHECK_POOL(ctx, "avg_pool2d", &cases[i], KILN_F16, x, NULL, 1e-2);
        free(x);
    }
    /* one hand-checked ceil-mode corner: 3x3 input, kernel 2, stride 2, ceil -> 2x2; the last
     * window covers one column, so it divides by 2 (rows) x 1 (cols) */
    pool_case c = {{1, 1, 3, 3}, {2, 2}, {2, 2}, {0}, {1, 1}, {2, 2}, true, "kernel=[2, 2], ceil_mode=true"};
    CHECK_POOL(ctx, "avg_pool2d", &c, KILN_F32, ((double[]){1, 2, 3, 4, 5, 6, 7, 8, 9}), ((double[]){3, 4.5, 7.5, 9}), 0);
    kiln_context_free(ctx);
}

TEST(adaptive_pools_non_divisible) {
    kiln_context *ctx = kiln_context_new();
    /* rows 5 -> 3: [0, 2), [1, 4), [3, 5); cols 4 -> 2: [0, 2), [2, 4) */
    double x[20];
    for (int i = 0; i < 20; i++) x[i] = i;
    kiln_value in = tv(ctx, KILN_F32, "1,1,5,4", x);
    kiln_value r = run_op(ctx, "adaptive_avg_pool2d", 1, &in, "output_size=[3, 2]");
    CHECK_TENSOR(r, KILN_F32, "1,1,3,2", ((double[]){2.5, 4.5, 8.5, 10.5, 14.5, 16.5}), 1e-6);
    kiln_value_release(r);
    r = run_op(ctx, "adaptive_max_pool2d", 1, &in, "output_size=[3, 2]");
    CHECK_TENSOR(r, KILN_F32, "1,1,3,2", ((double[]){5, 7, 13, 15, 17, 19}), 0);
    kiln_value_release(r);
    /* output larger than the input: cols 4 -> 5 give [0, 1), [0, 2), [1, 3), [2, 4), [3, 4) */
    r = run_op(ctx, "adaptive_avg_pool2d", 1, &in, "output_size=[1, 5]");
    CHECK_TENSOR(r, KILN_F32, "1,1,1,5", ((double[]){8, 8.5, 9.5, 10.5, 11}), 1e-6);
    kiln_value_release(r);
    r = run_op(ctx, "adaptive_avg_pool2d", 1, &in, "output_size=[1, 1]"); /* global average */
    CHECK_TENSOR(r, KILN_F32, "1,1,1,1", ((double[]){9.5}), 1e-6);
    kiln_value_release(r);
    kiln_value_release(in);
    /* 7 -> 3 ([0, 3), [2, 5), [4, 7)) on several planes, ints for the max */
    double y[2 * 7 * 1];
    for (int i = 0; i < 14; i++) y[i] = (i * 3) % 8 - 3; /* [-3 0 3 -2 1 4 -1], [2 -3 0 3 -2 1 4] */
    kiln_value yi = tv(ctx, KILN_I32, "2,1,7,1", y), yf = tv(ctx, KILN_F64, "2,1,7,1", y);
    r = run_op(ctx, "adaptive_max_pool2d", 1, &yi, "output_size=[3, 1]");
    CHECK_TENSOR(r, KILN_I32, "2,1,3,1", ((double[]){3, 3, 4, 2, 3, 4}), 0);
    kiln_value_release(r);
    r = run_op(ctx, "adaptive_avg_pool2d", 1, &yf, "output_size=[3, 1]");
    CHECK_TENSOR(r, KILN_F64, "2,1,3,1", ((double[]){0, 2.0 / 3, 4.0 / 3, -1.0 / 3, 1.0 / 3, 1}), 1e-12);
    kiln_value_release(r);
    release_all(2, (kiln_value[]){yi, yf});
    kiln_context_free(ctx);
}

TEST(pool_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "1,2,4,4", NULL), x3 = tv(ctx, KILN_F32, "2,4,4", NULL);
    kiln_value xi = tv(ctx, KILN_I32, "1,2,4,4", NULL), e = tv(ctx, KILN_F32, "1,2,0,4", NULL);
    CHECK_OP_ERR(ctx, "max_pool2d", x3, "kernel=[2, 2]", "needs a 4-D input [N, C, H, W] with non-empty C, H, W, got [2, 4, 4]");
    CHECK_OP_ERR(ctx, "avg_pool2d", e, "kernel=[2, 2]", "got [1, 2, 0, 4]");
    CHECK_OP_ERR(ctx, "adaptive_avg_pool2d", x3, "output_size=[2, 2]", "needs a 4-D input");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[0, 2]", "kernel must be 2 ints >= 1, got [0, 2]");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[2]", "kernel must be 2 ints >= 1, got [2]");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[2, 2], stride=[0, 1]", "stride must be 2 ints >= 1, got [0, 1]");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[2, 2], dilation=[1, 0]", "dilation must be 2 ints >= 1");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[2, 2], padding=[1, 2]", "padding 2 must be at most half the kernel size 2 (padding index 1");
    CHECK_OP_ERR(ctx, "avg_pool2d", x, "kernel=[3, 3], padding=[0, 0, 2, 0]", "padding 2 must be at most half the kernel size 3 (padding index 2");
    CHECK_OP_ERR(ctx, "avg_pool2d", x, "kernel=[2, 2], padding=[1, 1, 1]", "padding must be [h, w] or [top, left, bottom, right]");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[5, 2]", "gives output size 0 x 2, which is too small");
    CHECK_OP_ERR(ctx, "max_pool2d", x, "kernel=[2, 2], dilation=[4, 1]", "dilation [4, 1]");
    CHECK_OP_ERR(ctx, "avg_pool2d", xi, "kernel=[2, 2]", "input 0 has dtype i32[1, 2, 4, 4]");
    CHECK_OP_ERR(ctx, "adaptive_avg_pool2d", xi, "output_size=[2, 2]", "input 0 has dtype i32");
    CHECK_OP_ERR(ctx, "adaptive_max_pool2d", x, "output_size=[0, 2]", "output_size must be 2 ints >= 1, got [0, 2]");
    CHECK_OP_ERR(ctx, "adaptive_max_pool2d", x, "output_size=[2, 2, 2]", "got [2, 2, 2]");
    release_all(4, (kiln_value[]){x, x3, xi, e});
    kiln_context_free(ctx);
}
