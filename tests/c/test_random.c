/* test_random.c — Philox4x32-10 known answers, the documented (key, index) -> value mapping of
 * random_uniform / random_normal bit for bit, determinism, statistics, ranges, dropout, and
 * every error path. */
#include "test.h"
#include <stdlib.h>

static kiln_status try_op(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs) {
    kiln_value out = {.kind = KILN_VALUE_NONE};
    kiln_status s = kiln_op_run(ctx, op, n, in, attrs, &out);
    kiln_value_release(out);
    return s;
}

/* ---- the generator ------------------------------------------------------------------------- */
static void philox_kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, const uint32_t *want) {
    uint32_t c[4] = {c0, c1, c2, c3};
    kiln_philox4x32_10(c, k0, k1);
    for (int i = 0; i < 4; i++) CHECK_INT(c[i], want[i]);
}

/* Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds). */
TEST(philox_known_answers) {
    philox_kat(0, 0, 0, 0, 0, 0, (uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    philox_kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
               (uint32_t[]){0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    philox_kat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
               (uint32_t[]){0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

/* Key 0, block 0 is the first known answer: the f64 uniforms carry the words' 32 bits whole,
 * the f32 ones their top 24 bits. */
TEST(random_uniform_exposes_philox_words) {
    kiln_context *ctx = kiln_context_new();
    static const uint32_t words[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    kiln_value key = kiln_value_int(0);
    kiln_value d = run_op(ctx, "random_uniform", 1, &key, "shape=[4], dtype=f64");
    kiln_value f = run_op(ctx, "random_uniform", 1, &key, "shape=[2, 2]");
    CHECK_TENSOR(f, KILN_F32, "2,2", ((double[]){(words[0] >> 8) * 0x1p-24, (words[1] >> 8) * 0x1p-24, (words[2] >> 8) * 0x1p-24,
                                                (words[3] >> 8) * 0x1p-24}), 0);
    if (d.kind == KILN_VALUE_TENSOR)
        for (int i = 0; i < 4; i++) CHECK_INT((uint64_t)(((const double *)d.tensor->data)[i] * 0x1p32), words[i]);
    release_all(2, (kiln_value[]){d, f});
    kiln_context_free(ctx);
}

/* The U_i of the spec in random.c, recomputed here from the generator. */
static double spec_uniform(uint64_t key, int64_t i, bool wide) {
    uint64_t b = (uint64_t)i / 4;
    uint32_t hi[4] = {(uint32_t)b, (uint32_t)(b >> 32), 0, 0}, lo[4] = {(uint32_t)b, (uint32_t)(b >> 32), 1, 0};
    kiln_philox4x32_10(hi, (uint32_t)key, (uint32_t)(key >> 32));
    kiln_philox4x32_10(lo, (uint32_t)key, (uint32_t)(key >> 32));
    uint32_t h = hi[i % 4], l = lo[i % 4];
    return wide ? (double)((((uint64_t)h << 32) | l) >> 11) * 0x1p-53 : (double)(h >> 8) * 0x1p-24;
}

TEST(random_uniform_follows_the_spec) {
    kiln_context *ctx = kiln_context_new();
    const int64_t key = 0x123456789abLL;
    kiln_value k = kiln_value_int(key);
    kiln_value f = run_op(ctx, "random_uniform", 1, &k, "shape=[3, 5], low=-2, high=3");
    kiln_value d = run_op(ctx, "random_uniform", 1, &k, "shape=[7], dtype=f64, low=-2, high=3");
    kiln_value h = run_op(ctx, "random_uniform", 1, &k, "shape=[9], dtype=bf16");
    double wf[15], wd[7], wh[9];
    for (int i = 0; i < 15; i++) {
        float span = 3.0f - -2.0f, p = span * (float)spec_uniform((uint64_t)key, i, false);
        wf[i] = -2.0f + p;
    }
    for (int i = 0; i < 7; i++) wd[i] = -2.0 + 5.0 * spec_uniform((uint64_t)key, i, true);
    for (int i = 0; i < 9; i++) {
        wh[i] = kiln_bf16_to_f32(kiln_f32_to_bf16((float)spec_uniform((uint64_t)key, i, false)));
        if (wh[i] >= 1) wh[i] = 1 - 0x1p-8; /* the largest bf16 below 1 */
    }
    CHECK_TENSOR(f, KILN_F32, "3,5", wf, 0);
    CHECK_TENSOR(d, KILN_F64, "7", wd, 0);
    CHECK_TENSOR(h, KILN_BF16, "9", wh, 0);
    release_all(3, (kiln_value[]){f, d, h});
    kiln_context_free(ctx);
}

TEST(random_normal_follows_the_spec) {
    kiln_context *ctx = kiln_context_new();
    const int64_t key = -5;
    kiln_value k = tv(ctx, KILN_I32, "1", (double[]){(double)key});
    kiln_value d = run_op(ctx, "random_normal", 1, &k, "shape=[7], dtype=f64, mean=1, std=2");
    kiln_value f = run_op(ctx, "random_normal", 1, &k, "shape=[5]");
    double wd[7], wf[5];
    for (int i = 0; i < 7; i++) {
        int e = i & ~1;
        for (int wide = 0; wide < 2; wide++) {
            double u = spec_uniform((uint64_t)key, e, wide), v = spec_uniform((uint64_t)key, e + 1, wide);
            double r = sqrt(-2 * log(1 - u)), t = 6.283185307179586 * v, z = i & 1 ? r * sin(t) : r * cos(t);
            if (wide) wd[i] = 1 + 2 * z;
            else if (i < 5) wf[i] = (float)z;
        }
    }
    CHECK_TENSOR(d, KILN_F64, "7", wd, 1e-15);
    CHECK_TENSOR(f, KILN_F32, "5", wf, 1e-7);
    release_all(3, (kiln_value[]){k, d, f});
    kiln_context_free(ctx);
}

/* ---- determinism --------------------------------------------------------------------------- */
static bool same_bytes(kiln_value a, kiln_value b) {
    return a.kind == KILN_VALUE_TENSOR && b.kind == KILN_VALUE_TENSOR && a.tensor->numel == b.tensor->numel &&
           !memcmp(a.tensor->data, b.tensor->data, kiln_tensor_nbytes(a.tensor));
}

static int64_t count_equal(kiln_value a, kiln_value b) {
    int64_t n = 0;
    for (int64_t i = 0; a.kind == KILN_VALUE_TENSOR && b.kind == KILN_VALUE_TENSOR && i < a.tensor->numel; i++)
        n += kiln_load_f64(a.tensor->dtype, a.tensor->data, i) == kiln_load_f64(b.tensor->dtype, b.tensor->data, i);
    return n;
}

TEST(random_is_deterministic_per_key) {
    kiln_context *ctx = kiln_context_new();
    const char *ops[] = {"random_uniform", "random_normal"};
    for (int o = 0; o < 2; o++) {
        kiln_value k7 = kiln_value_int(7), k7t = tv(ctx, KILN_I64, "", (double[]){7}), k7u = tv(ctx, KILN_U8, "1", (double[]){7});
        kiln_value k8 = kiln_value_int(8), khi = kiln_value_int(7 + (1LL << 32));
        kiln_value a = run_op(ctx, ops[o], 1, &k7, "shape=[64, 3]");
        kiln_value b = run_op(ctx, ops[o], 1, &k7t, "shape=[64, 3]");
        kiln_value c = run_op(ctx, ops[o], 1, &k7u, "shape=[64, 3]");
        kiln_value d = run_op(ctx, ops[o], 1, &k8, "shape=[64, 3]");
        kiln_value e = run_op(ctx, ops[o], 1, &khi, "shape=[64, 3]");
        kiln_value g = run_op(ctx, ops[o], 1, &k7, "shape=[10]"); /* a prefix of the same stream */
        CHECK(same_bytes(a, b));
        CHECK(same_bytes(a, c));
        CHECK(count_equal(a, d) < 3);
        CHECK(count_equal(a, e) < 3);
        if (a.kind == KILN_VALUE_TENSOR && g.kind == KILN_VALUE_TENSOR)
            CHECK(!memcmp(a.tensor->data, g.tensor->data, kiln_tensor_nbytes(g.tensor)));
        release_all(8, (kiln_value[]){k7t, k7u, a, b, c, d, e, g});
    }
    kiln_context_free(ctx);
}

/* ---- statistics and ranges ----------------------------------------------------------------- */
static void moments(kiln_value v, double *mean, double *std, double *lo, double *hi) {
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    if (v.kind != KILN_VALUE_TENSOR) return;
    int64_t n = v.tensor->numel;
    for (int64_t i = 0; i < n; i++) {
        double x = kiln_load_f64(v.tensor->dtype, v.tensor->data, i);
        s += x, s2 += x * x;
        *lo = fmin(*lo, x), *hi = fmax(*hi, x);
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

TEST(random_uniform_statistics_and_range) {
    kiln_context *ctx = kiln_context_new();
    kiln_value k = kiln_value_int(2024);
    double m, sd, lo, hi;
    kiln_value u = run_op(ctx, "random_uniform", 1, &k, "shape=[100000]");
    moments(u, &m, &sd, &lo, &hi);
    CHECK_NEAR(m, 0.5, 0.01);
    CHECK_NEAR(sd, sqrt(1.0 / 12), 0.01);
    CHECK(lo >= 0 && lo < 1e-3 && hi < 1 && hi > 1 - 1e-3);
    static const char *cases[] = {"shape=[100000], dtype=f64, low=-2, high=3", "shape=[100000], dtype=f16, low=1, high=2",
                                  "shape=[100000], dtype=bf16", "shape=[100000], dtype=bf16, low=-1, high=0"};
    static const double lows[] = {-2, 1, 0, -1}, highs[] = {3, 2, 1, 0};
    for (int c = 0; c < 4; c++) {
        kiln_value r = run_op(ctx, "random_uniform", 1, &k, cases[c]);
        moments(r, &m, &sd, &lo, &hi);
        CHECK_NEAR(m, (lows[c] + highs[c]) / 2, 0.01);
        CHECK(lo >= lows[c] && hi < highs[c]);
        CHECK(hi > highs[c] - 0.01 && lo < lows[c] + 0.01);
        kiln_value_release(r);
    }
    kiln_value_release(u);
    kiln_context_free(ctx);
}

TEST(random_normal_statistics) {
    kiln_context *ctx = kiln_context_new();
    kiln_value k = kiln_value_int(99);
    double m, sd, lo, hi;
    kiln_value z = run_op(ctx, "random_normal", 1, &k, "shape=[100000]");
    moments(z, &m, &sd, &lo, &hi);
    CHECK(fabs(m) < 0.02);
    CHECK_NEAR(sd, 1, 0.02);
    CHECK(lo < -3.5 && hi > 3.5 && lo > -9 && hi < 9);
    kiln_value w = run_op(ctx, "random_normal", 1, &k, "shape=[1000, 100], dtype=f64, mean=3, std=0.5");
    moments(w, &m, &sd, &lo, &hi);
    CHECK_NEAR(m, 3, 0.01);
    CHECK_NEAR(sd, 0.5, 0.02);
    kiln_value c = run_op(ctx, "random_normal", 1, &k, "shape=[3], dtype=bf16, mean=-1.5, std=0");
    CHECK_TENSOR(c, KILN_BF16, "3", ((double[]){-1.5, -1.5, -1.5}), 0);
    kiln_value e = run_op(ctx, "random_normal", 1, &k, "shape=[0, 4]");
    CHECK_TENSOR(e, KILN_F32, "0,4", (double[]){0}, 0);
    release_all(4, (kiln_value[]){z, w, c, e});
    kiln_context_free(ctx);
}

TEST(random_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value k = kiln_value_int(1), kf = tv(ctx, KILN_F32, "", (double[]){1}), k2 = tv(ctx, KILN_I64, "2", (double[]){1, 2});
    kiln_value kb = kiln_value_bool(true);
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[2], low=1, high=1"), KILN_ERR_TYPE,
              "op 'random_uniform' at @eager: need finite low < high, got low 1, high 1");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[2], high=inf"), KILN_ERR_TYPE, "need finite low < high");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[2], low=-1e+39, dtype=bf16"), KILN_ERR_TYPE,
              "low -1e+39 and high 1 must be finite in f32 for dtype bf16");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[2], dtype=i32"), KILN_ERR_TYPE, "dtype must be a float dtype, got i32");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[2, -2]"), KILN_ERR_TYPE, "shape dim 1 is negative (-2)");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k, "shape=[1, 1, 1, 1, 1, 1, 1, 1, 1]"), KILN_ERR_TYPE, "shape has 9 dims");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &k2, "shape=[2]"), KILN_ERR_TYPE,
              "key (input 0) must be an int scalar or a 1-element int tensor, got i64[2]");
    CHECK_ERR(ctx, try_op(ctx, "random_uniform", 1, &kf, "shape=[2]"), KILN_ERR_TYPE, "f32");
    CHECK_ERR(ctx, try_op(ctx, "random_normal", 1, &kb, "shape=[2]"), KILN_ERR_TYPE, "bool");
    CHECK_ERR(ctx, try_op(ctx, "random_normal", 1, &k, "shape=[2], std=-1"), KILN_ERR_TYPE,
              "need a finite mean and a finite std >= 0, got mean 0, std -1");
    CHECK_ERR(ctx, try_op(ctx, "random_normal", 1, &k, "shape=[2], mean=nan"), KILN_ERR_TYPE, "need a finite mean");
    CHECK_ERR(ctx, try_op(ctx, "random_normal", 1, &k, NULL), KILN_ERR_TYPE, "needs attribute 'shape'");
    release_all(2, (kiln_value[]){kf, k2});
    kiln_context_free(ctx);
}

/* ---- dropout ------------------------------------------------------------------------------- */
TEST(dropout_keeps_and_scales) {
    kiln_context *ctx = kiln_context_new();
    enum { N = 20000 };
    double *ones = malloc(sizeof(double) * N);
    for (int i = 0; i < N; i++) ones[i] = 1;
    kiln_value x = tv(ctx, KILN_F32, "20000", ones), k = kiln_value_int(11);
    kiln_value y = run_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=0.3");
    kiln_value y2 = run_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=0.3");
    kiln_value u = run_op(ctx, "random_uniform", 1, &k, "shape=[20000]");
    CHECK(same_bytes(y, y2));
    if (y.kind == KILN_VALUE_TENSOR && u.kind == KILN_VALUE_TENSOR) {
        const float *yv = y.tensor->data, *uv = u.tensor->data;
        int kept = 0, agree = 0;
        bool scaled = true;
        for (int i = 0; i < N; i++) {
            kept += yv[i] != 0;
            agree += (yv[i] != 0) == (uv[i] >= 0.3f);
            if (yv[i] != 0 && fabs(yv[i] - 1 / 0.7) > 1e-6) scaled = false;
        }
        CHECK(kept > 0.68 * N && kept < 0.72 * N);
        CHECK_INT(agree, N); /* the mask is random_uniform(key) >= rate */
        CHECK(scaled);
    } else {
        CHECK(false);
    }
    /* rate 0 copies; bf16 input keeps its dtype. */
    kiln_value z = run_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=0");
    CHECK_TENSOR(z, KILN_F32, "20000", ones, 0);
    kiln_value xh = tv(ctx, KILN_BF16, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    kiln_value k5 = tv(ctx, KILN_I64, "1", (double[]){5});
    kiln_value yh = run_op(ctx, "dropout", 2, (kiln_value[]){xh, k5}, "rate=0.5");
    if (yh.kind == KILN_VALUE_TENSOR) {
        CHECK_INT(yh.tensor->dtype, KILN_BF16);
        for (int i = 0; i < 6; i++) {
            double v = kiln_load_f64(KILN_BF16, yh.tensor->data, i);
            CHECK(v == 0 || v == 2 * (i + 1));
        }
    } else {
        CHECK(false);
    }
    release_all(8, (kiln_value[]){x, y, y2, u, z, xh, k5, yh});
    free(ones);
    kiln_context_free(ctx);
}

TEST(dropout_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "4", NULL), xi = tv(ctx, KILN_I32, "4", NULL), k = kiln_value_int(1);
    kiln_value kf = tv(ctx, KILN_F32, "1", NULL);
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=1"), KILN_ERR_TYPE,
              "op 'dropout' at @eager: rate must be in [0, 1), got 1");
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=-0.1"), KILN_ERR_TYPE, "rate must be in [0, 1), got -0.1");
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){x, k}, "rate=nan"), KILN_ERR_TYPE, "rate must be in [0, 1)");
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){xi, k}, NULL), KILN_ERR_TYPE, "i32");
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){x, kf}, NULL), KILN_ERR_TYPE,
              "key (input 1) must be an int scalar or a 1-element int tensor, got f32[1]");
    CHECK_ERR(ctx, try_op(ctx, "dropout", 2, (kiln_value[]){kiln_value_float(1), k}, NULL), KILN_ERR_TYPE, "input must be a tensor");
    release_all(3, (kiln_value[]){x, xi, kf});
    kiln_context_free(ctx);
}
