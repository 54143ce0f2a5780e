/* test_loss.c — nll_loss, cross_entropy (class indices, probabilities, label smoothing, ignore
 * index, K-dim targets), mse_loss and smooth_l1_loss against plain C loops with torch's
 * formulas, in f32 and f64, every reduction; shape, dtype and run-time error paths. */
#include "test.h"

#define MAXN 256

static const char *const REDUCTIONS[] = {"none", "mean", "sum"};

/* Deterministic, irregular test data in about [-3, 3]. */
static void fill(double *x, int64_t n, double seed) {
    for (int64_t i = 0; i < n; i++) x[i] = 3 * sin(1.3 * (double)i + seed) + 0.5 * cos(0.7 * (double)i * seed);
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
    return dt == KILN_F64 ? 1e-12 : dt == KILN_F32 ? 3e-5 : dt == KILN_F16 ? 1e-2 : 5e-2;
}

/* A score tensor's layout: [C] or [N, C, d1, ...] as N x C x D; text of its shape and of the
 * shape without the class axis (the class-index target's). */
typedef struct layout {
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t N, C, D;
    char text[64], target_text[64];
} layout;

static layout make_layout(int ndim, const int64_t *shape) {
    layout l = {.ndim = ndim, .N = 1, .D = 1};
    int cd = ndim >= 2 ? 1 : 0;
    size_t a = 0, b = 0;
    for (int i = 0; i < ndim; i++) {
        l.shape[i] = shape[i];
        a += (size_t)snprintf(l.text + a, sizeof l.text - a, "%s%lld", i ? "," : "", (long long)shape[i]);
        if (i != cd) b += (size_t)snprintf(l.target_text + b, sizeof l.target_text - b, "%s%lld", b ? "," : "", (long long)shape[i]);
        if (i < cd) l.N *= shape[i];
        if (i > cd) l.D *= shape[i];
    }
    l.C = shape[cd];
    return l;
}

/* Class-index targets: every value in [0, C) with some set to `ignore`. */
static void make_targets(const layout *l, int64_t ignore, double *t) {
    for (int64_t k = 0; k < l->N * l->D; k++) {
        int64_t v = (k * 7 + 3) % (l->C + 1);
        t[k] = (double)(v == l->C ? ignore : v);
    }
}

/* Element (n, c, d) of an N x C x D score tensor. */
#define AT(x, l, k, c) (x)[((k) / (l)->D * (l)->C + (c)) * (l)->D + (k) % (l)->D]

/* log_softmax over the class axis. */
static void ref_log_softmax(const layout *l, const double *x, double *lp) {
    for (int64_t k = 0; k < l->N * l->D; k++) {
        double m = -INFINITY, z = 0;
        for (int64_t c = 0; c < l->C; c++) m = fmax(m, AT(x, l, k, c));
        for (int64_t c = 0; c < l->C; c++) z += exp(AT(x, l, k, c) - m);
        for (int64_t c = 0; c < l->C; c++) AT(lp, l, k, c) = AT(x, l, k, c) - m - log(z);
    }
}

/* Reduces per-element losses: none keeps them, sum adds, mean divides the sum by `count`. */
static int reduce_ref(const char *red, const double *per, int64_t n, double count, double *want) {
    if (!strcmp(red, "none")) {
        memcpy(want, per, sizeof(double) * (size_t)n);
        return 1;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += per[i];
    want[0] = !strcmp(red, "sum") ? s : s / count;
    return 0;
}

/* Runs op on (x, target) and checks against want (per-element for "none", else 0-d). */
static void check_loss(kiln_context *ctx, const char *op, kiln_value *in, const char *attrs, kiln_dtype dt, bool none,
                       const char *none_shape, const double *want) {
    kiln_value out = run_op(ctx, op, 2, in, attrs);
    CHECK_TENSOR(out, dt, none ? none_shape : "", want, tol_of(dt));
    kiln_value_release(out);
}

/* ---- nll_loss ----------------------------------------------------------------------------- */
static void nll_case(kiln_dtype dt, kiln_dtype tdt, int ndim, const int64_t *shape, int64_t ignore) {
    kiln_context *ctx = kiln_context_new();
    layout l = make_layout(ndim, shape);
    double x[MAXN], t[MAXN], per[MAXN], want[MAXN];
    fill(x, l.N * l.C * l.D, 0.3);
    round_to(dt, x, l.N * l.C * l.D);
    make_targets(&l, ignore, t);
    double count = 0;
    for (int64_t k = 0; k < l.N * l.D; k++) {
        bool ign = (int64_t)t[k] == ignore;
        per[k] = ign ? 0 : -AT(x, &l, k, (int64_t)t[k]);
        count += !ign;
    }
    kiln_value in[2] = {tv(ctx, dt, l.text, x), tv(ctx, tdt, l.target_text, t)};
    for (int r = 0; r < 3; r++) {
        char attrs[96];
        snprintf(attrs, sizeof attrs, "reduction=\"%s\", ignore_index=%lld", REDUCTIONS[r], (long long)ignore);
        bool none = reduce_ref(REDUCTIONS[r], per, l.N * l.D, count, want);
        check_loss(ctx, "nll_loss", in, attrs, dt, none, l.target_text, want);
    }
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(nll_loss_reductions_ignore_and_kdim) {
    static const int64_t s2[] = {4, 5}, s4[] = {2, 3, 2, 2}, s1[] = {5}, s3[] = {3, 4, 5};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    for (int d = 0; d < 2; d++) {
        nll_case(dts[d], KILN_I64, 2, s2, -100);
        nll_case(dts[d], KILN_I32, 4, s4, -100);
        nll_case(dts[d], KILN_I64, 1, s1, -100);
        nll_case(dts[d], KILN_U8, 3, s3, 2); /* an in-range ignore_index */
        nll_case(dts[d], KILN_I8, 2, s2, -1);
    }
    nll_case(KILN_BF16, KILN_I64, 4, s4, -100);
    nll_case(KILN_F16, KILN_I32, 2, s2, -100);
}

TEST(nll_loss_by_hand) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {tv(ctx, KILN_F32, "3,2", (double[]){-1, -2, -3, -4, -5, -6}), tv(ctx, KILN_I64, "3", (double[]){1, -100, 0})};
    kiln_value out[3] = {run_op(ctx, "nll_loss", 2, in, NULL), run_op(ctx, "nll_loss", 2, in, "reduction=\"sum\""),
                         run_op(ctx, "nll_loss", 2, in, "reduction=\"none\"")};
    CHECK_TENSOR(out[0], KILN_F32, "", ((double[]){3.5}), 1e-7);
    CHECK_TENSOR(out[1], KILN_F32, "", ((double[]){7}), 1e-7);
    CHECK_TENSOR(out[2], KILN_F32, "3", ((double[]){2, 0, 5}), 1e-7);
    release_all(3, out);
    kiln_value_release(in[1]);
    in[1] = tv(ctx, KILN_I64, "3", (double[]){-100, -100, -100});
    out[0] = run_op(ctx, "nll_loss", 2, in, NULL); /* every target ignored: 0 / 0 as in torch */
    CHECK_TENSOR(out[0], KILN_F32, "", ((double[]){NAN}), 0);
    release_all(2, in);
    kiln_value_release(out[0]);
    kiln_context_free(ctx);
}

TEST(nll_loss_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value lp = tv(ctx, KILN_F32, "3,4", NULL), out;
    kiln_value bad[] = {tv(ctx, KILN_F32, "3", NULL), tv(ctx, KILN_I64, "4", NULL), tv(ctx, KILN_BOOL, "3", NULL),
                        tv(ctx, KILN_I64, "3", (double[]){0, 4, 1}), tv(ctx, KILN_I32, "3", (double[]){0, 1, -1})};
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[0]}, NULL, &out), KILN_ERR_TYPE,
              "op 'nll_loss' at @eager: target is f32[3], expected an int tensor of class indices");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[1]}, NULL, &out), KILN_ERR_TYPE,
              "target is i64[4], expected shape [3] for logp f32[3, 4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[2]}, NULL, &out), KILN_ERR_TYPE, "target is bool[3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[3]}, NULL, &out), KILN_ERR_VALUE,
              "target 4 at flat index 1 is out of range for 4 classes");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[4]}, "reduction=\"none\"", &out), KILN_ERR_VALUE,
              "target -1 at flat index 2 is out of range for 4 classes");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){kiln_value_float(1.0), bad[1]}, NULL, &out), KILN_ERR_TYPE,
              "logp is float, expected a tensor");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){bad[1], bad[1]}, NULL, &out), KILN_ERR_TYPE, "input 0 has dtype");
    CHECK_ERR(ctx, kiln_op_run(ctx, "nll_loss", 2, (kiln_value[]){lp, bad[3]}, "reduction=\"avg\"", &out), KILN_ERR_PARSE, "");
    kiln_value_release(lp);
    release_all(5, bad);
    kiln_context_free(ctx);
}

/* ---- cross_entropy ------------------------------------------------------------------------ */
/* Class-index targets: torch's (1-ε) nll + ε/C * (-sum_c logp), zero at ignored targets, a
 * mean over the targets not ignored. */
static void ce_index_case(kiln_dtype dt, int ndim, const int64_t *shape, double eps) {
    kiln_context *ctx = kiln_context_new();
    layout l = make_layout(ndim, shape);
    int64_t nx = l.N * l.C * l.D, nt = l.N * l.D, ignore = 1;
    double x[MAXN], lp[MAXN], t[MAXN], per[MAXN], want[MAXN], count = 0;
    fill(x, nx, 0.9);
    round_to(dt, x, nx);
    make_targets(&l, ignore, t); /* ignore_index 1 is also a class: those targets drop out */
    ref_log_softmax(&l, x, lp);
    for (int64_t k = 0; k < nt; k++) {
        double all = 0;
        for (int64_t c = 0; c < l.C; c++) all -= AT(lp, &l, k, c);
        bool ign = (int64_t)t[k] == ignore;
        per[k] = ign ? 0 : (1 - eps) * -AT(lp, &l, k, (int64_t)t[k]) + eps / (double)l.C * all;
        count += !ign;
    }
    kiln_value in[2] = {tv(ctx, dt, l.text, x), tv(ctx, KILN_I64, l.target_text, t)};
    for (int r = 0; r < 3; r++) {
        char attrs[128];
        snprintf(attrs, sizeof attrs, "reduction=\"%s\", ignore_index=1, label_smoothing=%.17g", REDUCTIONS[r], eps);
        bool none = reduce_ref(REDUCTIONS[r], per, nt, count, want);
        check_loss(ctx, "cross_entropy", in, attrs, dt, none, l.target_text, want);
    }
    release_all(2, in);
    kiln_context_free(ctx);
}

/* Probability targets: p' = (1-ε) p + ε/C, loss -sum_c p' logp, a mean over N * d1 * .... */
static void ce_prob_case(kiln_dtype dt, int ndim, const int64_t *shape, double eps) {
    kiln_context *ctx = kiln_context_new();
    layout l = make_layout(ndim, shape);
    int64_t nx = l.N * l.C * l.D, nt = l.N * l.D;
    double x[MAXN], lp[MAXN], p[MAXN], per[MAXN], want[MAXN];
    fill(x, nx, 1.1);
    fill(p, nx, 2.3);
    for (int64_t i = 0; i < nx; i++) p[i] = exp(p[i]) / 30; /* positive; rows need not sum to 1 */
    round_to(dt, x, nx);
    round_to(dt, p, nx);
    ref_log_softmax(&l, x, lp);
    for (int64_t k = 0; k < nt; k++) {
        per[k] = 0;
        for (int64_t c = 0; c < l.C; c++) per[k] -= ((1 - eps) * AT(p, &l, k, c) + eps / (double)l.C) * AT(lp, &l, k, c);
    }
    kiln_value in[2] = {tv(ctx, dt, l.text, x), tv(ctx, dt, l.text, p)};
    for (int r = 0; r < 3; r++) {
        char attrs[128];
        snprintf(attrs, sizeof attrs, "reduction=\"%s\", label_smoothing=%.17g", REDUCTIONS[r], eps);
        bool none = reduce_ref(REDUCTIONS[r], per, nt, (double)nt, want);
        check_loss(ctx, "cross_entropy", in, attrs, dt, none, l.target_text, want);
    }
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(cross_entropy_class_indices) {
    static const int64_t s2[] = {6, 4}, s4[] = {2, 3, 2, 2}, s1[] = {5};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    double eps[] = {0, 0.1, 0.35};
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < 3; e++) {
            ce_index_case(dts[d], 2, s2, eps[e]);
            ce_index_case(dts[d], 4, s4, eps[e]);
            ce_index_case(dts[d], 1, s1, eps[e]);
        }
    ce_index_case(KILN_F16, 4, s4, 0.1);
}

TEST(cross_entropy_probabilities) {
    static const int64_t s2[] = {3, 4}, s3[] = {2, 3, 4}, s1[] = {4};
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    double eps[] = {0, 0.2};
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < 2; e++) {
            ce_prob_case(dts[d], 2, s2, eps[e]);
            ce_prob_case(dts[d], 3, s3, eps[e]);
            ce_prob_case(dts[d], 1, s1, eps[e]);
        }
    ce_prob_case(KILN_BF16, 3, s3, 0.2);
}

TEST(cross_entropy_by_hand) {
    kiln_context *ctx = kiln_context_new();
    /* uniform logits: the loss is log C whatever the target; large logits stay finite */
    kiln_value in[3] = {tv(ctx, KILN_F32, "2,2", (double[]){0, 0, 1000, 0}), tv(ctx, KILN_I64, "2", (double[]){1, 0}),
                        tv(ctx, KILN_I64, "2", (double[]){1, 1})};
    kiln_value out[2] = {run_op(ctx, "cross_entropy", 2, in, "reduction=\"none\""),
                         run_op(ctx, "cross_entropy", 2, (kiln_value[]){in[0], in[2]}, "reduction=\"none\"")};
    CHECK_TENSOR(out[0], KILN_F32, "2", ((double[]){log(2.0), 0}), 1e-6);
    CHECK_TENSOR(out[1], KILN_F32, "2", ((double[]){log(2.0), 1000}), 1e-6);
    release_all(3, in);
    release_all(2, out);
    kiln_context_free(ctx);
}

TEST(cross_entropy_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "3,4", NULL), out;
    kiln_value bad[] = {tv(ctx, KILN_F64, "3,4", NULL), tv(ctx, KILN_F32, "4,3", NULL), tv(ctx, KILN_I64, "4", NULL),
                        tv(ctx, KILN_BOOL, "3", NULL), tv(ctx, KILN_I64, "3", (double[]){0, 1, 7})};
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[0]}, NULL, &out), KILN_ERR_TYPE,
              "probability target is f64[3, 4], expected the logits' type f32[3, 4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[1]}, NULL, &out), KILN_ERR_TYPE,
              "probability target is f32[4, 3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[2]}, NULL, &out), KILN_ERR_TYPE,
              "op 'cross_entropy' at @eager: target is i64[4], expected shape [3] for logits f32[3, 4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[3]}, NULL, &out), KILN_ERR_TYPE,
              "target is bool[3], expected an int tensor of class indices");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[4]}, "label_smoothing=1.5", &out), KILN_ERR_TYPE,
              "label_smoothing 1.5 is not in [0, 1]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy", 2, (kiln_value[]){x, bad[4]}, NULL, &out), KILN_ERR_VALUE,
              "target 7 at flat index 2 is out of range for 4 classes");
    kiln_value_release(x);
    release_all(5, bad);
    kiln_context_free(ctx);
}

/* ---- mse_loss, smooth_l1_loss ------------------------------------------------------------- */
/* beta < 0 selects mse_loss. */
static void pointwise_case(kiln_dtype dt, double beta) {
    kiln_context *ctx = kiln_context_new();
    double p[24], t[24], per[24], want[24];
    fill(p, 24, 0.4);
    fill(t, 24, 1.9);
    round_to(dt, p, 24);
    round_to(dt, t, 24);
    for (int i = 0; i < 24; i++) {
        double z = fabs(p[i] - t[i]);
        per[i] = beta < 0 ? z * z : z < beta ? 0.5 * z * z / beta : z - 0.5 * beta;
    }
    kiln_value in[2] = {tv(ctx, dt, "2,3,4", p), tv(ctx, dt, "2,3,4", t)};
    for (int r = 0; r < 3; r++) {
        char attrs[96];
        if (beta < 0) snprintf(attrs, sizeof attrs, "reduction=\"%s\"", REDUCTIONS[r]);
        else snprintf(attrs, sizeof attrs, "reduction=\"%s\", beta=%.17g", REDUCTIONS[r], beta);
        bool none = reduce_ref(REDUCTIONS[r], per, 24, 24, want);
        check_loss(ctx, beta < 0 ? "mse_loss" : "smooth_l1_loss", in, attrs, dt, none, "2,3,4", want);
    }
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(mse_and_smooth_l1_losses) {
    kiln_dtype dts[] = {KILN_F32, KILN_F64};
    double betas[] = {-1, 1.0, 0.5, 2.5, 0.0};
    for (int d = 0; d < 2; d++)
        for (int b = 0; b < 5; b++) pointwise_case(dts[d], betas[b]);
    pointwise_case(KILN_F16, -1);
    pointwise_case(KILN_BF16, 0.5);
}

TEST(pointwise_losses_by_hand) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[3] = {tv(ctx, KILN_F32, "2", (double[]){1, 2}), tv(ctx, KILN_F32, "2", (double[]){1.5, 4}),
                        tv(ctx, KILN_F64, "2", (double[]){1.5, 4})};
    kiln_value out[4] = {run_op(ctx, "mse_loss", 2, in, NULL), run_op(ctx, "smooth_l1_loss", 2, in, "reduction=\"none\""),
                         run_op(ctx, "smooth_l1_loss", 2, in, "reduction=\"sum\", beta=0"),
                         run_op(ctx, "mse_loss", 2, (kiln_value[]){in[0], in[2]}, "reduction=\"sum\"")};
    CHECK_TENSOR(out[0], KILN_F32, "", ((double[]){(0.25 + 4) / 2}), 1e-7);
    CHECK_TENSOR(out[1], KILN_F32, "2", ((double[]){0.125, 1.5}), 1e-7);
    CHECK_TENSOR(out[2], KILN_F32, "", ((double[]){2.5}), 1e-7);
    CHECK_TENSOR(out[3], KILN_F64, "", ((double[]){4.25}), 1e-15); /* f32 with f64 promotes */
    release_all(3, in);
    release_all(4, out);
    kiln_context_free(ctx);
}

TEST(pointwise_loss_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value p = tv(ctx, KILN_F32, "2,3", NULL), out;
    kiln_value bad[] = {tv(ctx, KILN_F32, "3,2", NULL), tv(ctx, KILN_I64, "2,3", NULL), tv(ctx, KILN_F32, "2,3", NULL)};
    CHECK_ERR(ctx, kiln_op_run(ctx, "mse_loss", 2, (kiln_value[]){p, bad[0]}, NULL, &out), KILN_ERR_TYPE,
              "op 'mse_loss' at @eager: pred f32[2, 3] and target f32[3, 2] must have the same shape");
    CHECK_ERR(ctx, kiln_op_run(ctx, "smooth_l1_loss", 2, (kiln_value[]){p, bad[0]}, NULL, &out), KILN_ERR_TYPE, "same shape");
    CHECK_ERR(ctx, kiln_op_run(ctx, "mse_loss", 2, (kiln_value[]){p, bad[1]}, NULL, &out), KILN_ERR_TYPE,
              "pred f32[2, 3] and target i64[2, 3] must be float tensors");
    CHECK_ERR(ctx, kiln_op_run(ctx, "smooth_l1_loss", 2, (kiln_value[]){p, bad[2]}, "beta=-1", &out), KILN_ERR_TYPE,
              "beta -1 must be >= 0");
    CHECK_ERR(ctx, kiln_op_run(ctx, "mse_loss", 2, (kiln_value[]){bad[1], bad[1]}, NULL, &out), KILN_ERR_TYPE, "input 0 has dtype");
    CHECK_ERR(ctx, kiln_op_run(ctx, "mse_loss", 2, (kiln_value[]){p, kiln_value_float(1.0)}, NULL, &out), KILN_ERR_TYPE,
              "target float must be float tensors");
    kiln_value_release(p);
    release_all(3, bad);
    kiln_context_free(ctx);
}
