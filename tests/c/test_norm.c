/* test_norm.c — softmax, log_softmax, layer_norm and batch_norm (train / infer) against plain C
 * loops, in f32 and f64, over several axes and ranks; stability on large inputs; error paths. */
#include "test.h"
#include <stdlib.h>

#define MAXN 256

/* Deterministic, irregular test data in about [-3, 3]. */
static void fill(double *x, int64_t n, double seed) {
    for (int64_t i = 0; i < n; i++) x[i] = 3 * sin(1.7 * (double)i + seed) + 0.25 * cos(0.3 * (double)i * seed);
}

/* "2,3,4" for the test helpers; returns the element count. */
static int64_t shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
    int64_t numel = 1;
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim; i++) {
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "", (long long)shape[i]);
        numel *= shape[i];
    }
    return numel;
}

/* outer * n * inner = numel, n = shape[ax]. */
static void split_at(int ndim, const int64_t *shape, int ax, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < ax; i++) *outer *= shape[i];
    for (int i = ax + 1; i < ndim; i++) *inner *= shape[i];
}

/* Rounds data to dt's precision, so that the loops see what the tensor holds. */
static void round_to(kiln_dtype dt, double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double slot;
        kiln_store_f64(dt, &slot, 0, x[i]);
        x[i] = kiln_load_f64(dt, &slot, 0);
    }
}

/* Relative tolerance of results computed in dt. */
static double tol_of(kiln_dtype dt) {
    return dt == KILN_F64 ? 1e-12 : dt == KILN_F32 ? 1e-4 : dt == KILN_F16 ? 1e-2 : 5e-2;
}

/* ---- softmax, log_softmax ----------------------------------------------------------------- */
static void softmax_case(kiln_dtype dt, int ndim, const int64_t *shape, int axis, bool log_) {
    kiln_context *ctx = kiln_context_new();
    char s[64], attrs[32];
    double x[MAXN], want[MAXN];
    int64_t numel = shape_text(ndim, shape, s, sizeof s), outer, inner;
    int ax = axis < 0 ? axis + ndim : axis;
    int64_t n = shape[ax];
    fill(x, numel, 0.5 + axis);
    round_to(dt, x, numel);
    split_at(ndim, shape, ax, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double m = -INFINITY, z = 0;
            for (int64_t k = 0; k < n; k++) m = fmax(m, x[(o * n + k) * inner + j]);
            for (int64_t k = 0; k < n; k++) z += exp(x[(o * n + k) * inner + j] - m);
            for (int64_t k = 0; k < n; k++) {
                double v = x[(o * n + k) * inner + j] - m;
                want[(o * n + k) * inner + j] = log_ ? v - log(z) : exp(v) / z;
            }
        }
    kiln_value in = tv(ctx, dt, s, x);
    snprintf(attrs, sizeof attrs, "axis=%d", axis);
    kiln_value out = run_op(ctx, log_ ? "log_softmax" : "softmax", 1, &in, attrs);
    CHECK_TENSOR(out, dt, s, want, tol_of(dt));
    kiln_value_release(in);
    kiln_value_release(out);
    kiln_context_free(ctx);
}

TEST(softmax_and_log_softmax_over_axes) {
    static const int64_t s2[] = {2, 3}, s3[] = {2, 3, 4}, s1[] = {5};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    for (int d = 0; d < 2; d++)
        for (int lg = 0; lg < 2; lg++) {
            softmax_case(dts[d], 2, s2, -1, lg);
            softmax_case(dts[d], 2, s2, 0, lg);
            softmax_case(dts[d], 3, s3, 1, lg);
            softmax_case(dts[d], 3, s3, -1, lg);
            softmax_case(dts[d], 3, s3, -3, lg);
            softmax_case(dts[d], 1, s1, 0, lg);
        }
    for (int lg = 0; lg < 2; lg++) { /* 16-bit floats: each op rounds its result once */
        softmax_case(KILN_F16, 3, s3, 1, lg);
        softmax_case(KILN_BF16, 2, s2, -1, lg);
    }
}

TEST(softmax_stable_on_large_inputs) {
    kiln_context *ctx = kiln_context_new();
    double e = exp(1.0);
    kiln_value in[3] = {tv(ctx, KILN_F32, "2", (double[]){1000, 1001}), tv(ctx, KILN_F64, "2,3", (double[]){1e4, 1e4, 1e4, -1e4, 0, -1e4}),
                        tv(ctx, KILN_F32, "3", (double[]){-1000, -1001, -1002})};
    kiln_value out[6] = {run_op(ctx, "softmax", 1, &in[0], NULL), run_op(ctx, "log_softmax", 1, &in[0], NULL),
                         run_op(ctx, "softmax", 1, &in[1], "axis=1"), run_op(ctx, "log_softmax", 1, &in[1], "axis=1"),
                         run_op(ctx, "softmax", 1, &in[2], NULL), run_op(ctx, "log_softmax", 1, &in[2], NULL)};
    CHECK_TENSOR(out[0], KILN_F32, "2", ((double[]){1 / (1 + e), e / (1 + e)}), 1e-6);
    CHECK_TENSOR(out[1], KILN_F32, "2", ((double[]){-log1p(e), -log1p(1 / e)}), 1e-6);
    CHECK_TENSOR(out[2], KILN_F64, "2,3", ((double[]){1. / 3, 1. / 3, 1. / 3, 0, 1, 0}), 1e-15);
    CHECK_TENSOR(out[3], KILN_F64, "2,3", ((double[]){-log(3.0), -log(3.0), -log(3.0), -1e4, 0, -1e4}), 1e-15);
    double z = 1 + 1 / e + 1 / (e * e);
    CHECK_TENSOR(out[4], KILN_F32, "3", ((double[]){1 / z, 1 / (e * z), 1 / (e * e * z)}), 1e-6);
    CHECK_TENSOR(out[5], KILN_F32, "3", ((double[]){-log(z), -1 - log(z), -2 - log(z)}), 1e-6);
    release_all(3, in);
    release_all(6, out);
    kiln_context_free(ctx);
}

TEST(softmax_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}), out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "softmax", 1, &in, "axis=2", &out), KILN_ERR_TYPE, "axis 2 is out of range for f32[2, 3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "log_softmax", 1, &in, "axis=-3", &out), KILN_ERR_TYPE, "op 'log_softmax'");
    kiln_value_release(in);
    in = tv(ctx, KILN_I32, "2", (double[]){1, 2});
    CHECK_ERR(ctx, kiln_op_run(ctx, "softmax", 1, &in, NULL, &out), KILN_ERR_TYPE, "softmax");
    kiln_value_release(in);
    kiln_context_free(ctx);
}

/* A 0-d input takes axis 0 or -1, as in torch: softmax 1, log_softmax 0. */
TEST(softmax_of_0d) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in = tv(ctx, KILN_F32, "", (double[]){2.5}), out[3], bad;
    out[0] = run_op(ctx, "softmax", 1, &in, "axis=0");
    out[1] = run_op(ctx, "log_softmax", 1, &in, "axis=-1");
    out[2] = run_op(ctx, "softmax", 1, &in, NULL);
    CHECK_TENSOR(out[0], KILN_F32, "", ((double[]){1}), 0);
    CHECK_TENSOR(out[1], KILN_F32, "", ((double[]){0}), 0);
    CHECK_TENSOR(out[2], KILN_F32, "", ((double[]){1}), 0);
    CHECK_ERR(ctx, kiln_op_run(ctx, "softmax", 1, &in, "axis=1", &bad), KILN_ERR_TYPE, "axis 1 is out of range for f32[]");
    kiln_value_release(in);
    release_all(3, out);
    kiln_context_free(ctx);
}

/* ---- layer_norm --------------------------------------------------------------------------- */
/* layer_norm of x (shape, axis) with n_params of gamma, beta, against a loop. */
static void layer_norm_case(kiln_dtype dt, int ndim, const int64_t *shape, int axis, int n_params) {
    kiln_context *ctx = kiln_context_new();
    char s[64], ps[64], attrs[64];
    double x[MAXN], g[MAXN], bt[MAXN], want[MAXN], eps = 1e-3;
    int ax = axis < 0 ? axis + ndim : axis;
    int64_t numel = shape_text(ndim, shape, s, sizeof s), inner = shape_text(ndim - ax, shape + ax, ps, sizeof ps);
    int64_t outer = numel / inner;
    fill(x, numel, 1.0);
    fill(g, inner, 2.0);
    fill(bt, inner, 3.0);
    round_to(dt, x, numel);
    round_to(dt, g, inner);
    round_to(dt, bt, inner);
    for (int64_t o = 0; o < outer; o++) {
        const double *r = x + o * inner;
        double m = 0, v = 0;
        for (int64_t j = 0; j < inner; j++) m += r[j] / (double)inner;
        for (int64_t j = 0; j < inner; j++) v += (r[j] - m) * (r[j] - m) / (double)inner;
        for (int64_t j = 0; j < inner; j++)
            want[o * inner + j] = (r[j] - m) / sqrt(v + eps) * (n_params > 0 ? g[j] : 1) + (n_params > 1 ? bt[j] : 0);
    }
    kiln_value in[3] = {tv(ctx, dt, s, x), tv(ctx, dt, ps, g), tv(ctx, dt, ps, bt)};
    snprintf(attrs, sizeof attrs, "axis=%d, eps=0.001", axis);
    kiln_value out = run_op(ctx, "layer_norm", 1 + n_params, in, attrs);
    CHECK_TENSOR(out, dt, s, want, tol_of(dt));
    release_all(3, in);
    kiln_value_release(out);
    kiln_context_free(ctx);
}

TEST(layer_norm_matches_loop) {
    static const int64_t s3[] = {2, 3, 4}, s2[] = {3, 5};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    for (int d = 0; d < 2; d++)
        for (int np = 0; np <= 2; np++) {
            layer_norm_case(dts[d], 3, s3, -1, np);
            layer_norm_case(dts[d], 3, s3, -2, np);
            layer_norm_case(dts[d], 3, s3, 0, np);
            layer_norm_case(dts[d], 2, s2, 1, np);
        }
    layer_norm_case(KILN_BF16, 3, s3, -1, 2);
    layer_norm_case(KILN_F16, 3, s3, -2, 2);
}

TEST(layer_norm_default_eps_and_constant_rows) {
    kiln_context *ctx = kiln_context_new();
    /* a constant row normalises to 0 (var 0, eps keeps it finite); [1, 3]: mean 2, var 1 */
    kiln_value in = tv(ctx, KILN_F64, "2,2", (double[]){5, 5, 1, 3});
    kiln_value out = run_op(ctx, "layer_norm", 1, &in, NULL);
    double r = 1 / sqrt(1 + 1e-5);
    CHECK_TENSOR(out, KILN_F64, "2,2", ((double[]){0, 0, -r, r}), 1e-14);
    kiln_value_release(in);
    kiln_value_release(out);
    kiln_context_free(ctx);
}

TEST(layer_norm_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[3] = {tv(ctx, KILN_F32, "2,3,4", NULL), tv(ctx, KILN_F32, "3", NULL), tv(ctx, KILN_F64, "4", NULL)}, out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 2, in, NULL, &out), KILN_ERR_TYPE,
              "gamma is f32[3], expected f32[4] (x.shape[axis:] of x f32[2, 3, 4])");
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 2, (kiln_value[]){in[0], in[2]}, NULL, &out), KILN_ERR_TYPE,
              "gamma is f64[4], expected f32[4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 2, in, "axis=-2", &out), KILN_ERR_TYPE, "expected f32[3, 4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 1, in, "axis=3", &out), KILN_ERR_TYPE,
              "op 'layer_norm' at @eager: axis 3 is out of range for x f32[2, 3, 4]");
    kiln_value g = tv(ctx, KILN_F32, "4", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 3, (kiln_value[]){in[0], g, in[1]}, NULL, &out), KILN_ERR_TYPE, "beta is f32[3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "layer_norm", 1, (kiln_value[]){kiln_value_float(1.0)}, NULL, &out), KILN_ERR_TYPE,
              "x is float, expected a tensor");
    kiln_value_release(g);
    release_all(3, in);
    kiln_context_free(ctx);
}

/* ---- batch_norm --------------------------------------------------------------------------- */
/* batch_norm_train (checking y, mean, var) and batch_norm_infer on x of `shape`, channels at axis. */
static void batch_norm_case(kiln_dtype dt, int ndim, const int64_t *shape, int axis) {
    kiln_context *ctx = kiln_context_new();
    char s[64], cs[16], attrs[64];
    double x[MAXN], g[16], bt[16], rm[16], rv[16], mean[16] = {0}, var[16] = {0}, y[MAXN], yi[MAXN], eps = 1e-3;
    int ax = axis < 0 ? axis + ndim : axis;
    int64_t numel = shape_text(ndim, shape, s, sizeof s), C = shape_text(1, shape + ax, cs, sizeof cs), outer, inner;
    split_at(ndim, shape, ax, &outer, &inner);
    double per = (double)(numel / C);
    fill(x, numel, 1.5);
    fill(g, C, 2.5);
    fill(bt, C, 3.5);
    fill(rm, C, 4.5);
    for (int64_t c = 0; c < C; c++) rv[c] = 0.5 + (double)c;
    round_to(dt, x, numel);
    round_to(dt, g, C);
    round_to(dt, bt, C);
    round_to(dt, rm, C);
    for (int64_t i = 0; i < numel; i++) mean[(i / inner) % C] += x[i] / per;
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = (i / inner) % C;
        var[c] += (x[i] - mean[c]) * (x[i] - mean[c]) / per;
    }
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = (i / inner) % C;
        y[i] = (x[i] - mean[c]) / sqrt(var[c] + eps) * g[c] + bt[c];
        yi[i] = (x[i] - rm[c]) / sqrt(rv[c] + eps) * g[c] + bt[c];
    }
    kiln_value in[5] = {tv(ctx, dt, s, x), tv(ctx, dt, cs, g), tv(ctx, dt, cs, bt), tv(ctx, dt, cs, rm), tv(ctx, dt, cs, rv)};
    snprintf(attrs, sizeof attrs, "axis=%d, eps=0.001", axis);
    double tol = tol_of(dt);
    kiln_value tr = run_op(ctx, "batch_norm_train", 3, in, attrs);
    CHECK_INT(kiln_value_tuple_size(tr), 3);
    if (kiln_value_tuple_size(tr) == 3) {
        CHECK_TENSOR(kiln_value_tuple_get(tr, 0), dt, s, y, tol);
        CHECK_TENSOR(kiln_value_tuple_get(tr, 1), dt, cs, mean, tol);
        CHECK_TENSOR(kiln_value_tuple_get(tr, 2), dt, cs, var, tol);
    }
    kiln_value inf = run_op(ctx, "batch_norm_infer", 5, in, attrs);
    CHECK_TENSOR(inf, dt, s, yi, tol);
    release_all(5, in);
    kiln_value_release(tr);
    kiln_value_release(inf);
    kiln_context_free(ctx);
}

TEST(batch_norm_train_and_infer_match_loop) {
    static const int64_t s2[] = {4, 3}, s4[] = {2, 3, 2, 2}, s3[] = {2, 2, 3};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    for (int d = 0; d < 2; d++) {
        batch_norm_case(dts[d], 2, s2, 1);
        batch_norm_case(dts[d], 4, s4, 1);
        batch_norm_case(dts[d], 3, s3, -1); /* channels last */
    }
    batch_norm_case(KILN_F16, 4, s4, 1);
}

TEST(batch_norm_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3,4", NULL), c3 = tv(ctx, KILN_F32, "3", NULL), c4 = tv(ctx, KILN_F32, "4", NULL),
               d3 = tv(ctx, KILN_F64, "3", NULL), x1 = tv(ctx, KILN_F32, "3", NULL), out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train", 3, (kiln_value[]){x, c4, c3}, NULL, &out), KILN_ERR_TYPE,
              "gamma is f32[4], expected f32[3] ([C] = x.shape[axis] of x f32[2, 3, 4])");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train", 3, (kiln_value[]){x, c3, d3}, NULL, &out), KILN_ERR_TYPE,
              "beta is f64[3], expected f32[3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train", 3, (kiln_value[]){x1, c3, c3}, NULL, &out), KILN_ERR_TYPE,
              "x is f32[3], expected a tensor of at least 2 dims");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train", 3, (kiln_value[]){x, c3, c3}, "axis=3", &out), KILN_ERR_TYPE,
              "axis 3 is out of range for x f32[2, 3, 4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_infer", 5, (kiln_value[]){x, c3, c3, c3, c4}, NULL, &out), KILN_ERR_TYPE,
              "running_var is f32[4], expected f32[3]");
    CHECK_OK(ctx, kiln_op_run(ctx, "batch_norm_infer", 5, (kiln_value[]){x, c4, c4, c4, c4}, "axis=-1", &out));
    kiln_value_release(out);
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_infer", 5, (kiln_value[]){x, c3, c3, d3, c3}, NULL, &out), KILN_ERR_TYPE,
              "running_mean is f64[3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_infer", 3, (kiln_value[]){x, c3, c3}, NULL, &out), KILN_ERR_TYPE, "takes 5 inputs");
    release_all(5, (kiln_value[]){x, c3, c4, d3, x1});
    kiln_context_free(ctx);
}
