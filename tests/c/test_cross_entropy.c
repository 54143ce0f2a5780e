/* test_cross_entropy.c — the fused cross-entropy: cross_entropy's gradient rule and the
 * cross_entropy_backward composite against autodiff of the old decomposition, finite differences
 * and a double-precision oracle (interpreter); the "cuda" dialect's kernels (NVRTC here; on a GPU
 * against the oracle over shapes, dtypes and attributes, and inside compiled training steps). */
#include "cuda_check.h"
#include "codegen/codegen.h"
#include "passes/passes.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const char kiln_cuda_loss_src[]; /* cuda_loss.cu, built into the library */

static const char *const REDS[3] = {"none", "sum", "mean"};

/* ---- inputs and the oracle ------------------------------------------------------------------ */
static double urand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0;
}

/* A problem: logits [N, C, D] (D: the spatial elements; [C] is N = D = 1), targets [N, D] with
 * every `ignore_every`-th one (0: none, 1: all) set to ignore_index, and the other attributes. */
typedef struct ce_problem {
    int64_t n, c, d, ignore;
    int ignore_every, red; /* red: index into REDS */
    double eps;
} ce_problem;

static const char *attrs_of(const ce_problem *p, char *buf, size_t size) {
    snprintf(buf, size, "reduction=\"%s\", ignore_index=%lld, label_smoothing=%.17g", REDS[p->red], (long long)p->ignore, p->eps);
    return buf;
}

/* Fills x [N*C*D] in [-3, 3), t [N*D] (class indices, some ignored), dl (the loss's adjoint:
 * N*D values for "none", else one) from *seed. */
static void fill(const ce_problem *p, unsigned *seed, kiln_tensor *x, kiln_tensor *t, kiln_tensor *dl) {
    for (int64_t i = 0; i < x->numel; i++) kiln_store_f64(x->dtype, x->data, i, 6 * urand(seed) - 3);
    for (int64_t i = 0; i < t->numel; i++) {
        bool ignored = p->ignore_every && i % p->ignore_every == 0;
        kiln_store_i64(t->dtype, t->data, i, ignored ? p->ignore : (int64_t)(urand(seed) * (double)p->c) % p->c);
    }
    for (int64_t i = 0; i < dl->numel; i++) kiln_store_f64(dl->dtype, dl->data, i, 0.5 + urand(seed));
}

/* torch's cross_entropy with class indices, in double, from the inputs' stored values: the
 * per-target losses (loss[N*D]) and the reduced one (returned), and dx [N*C*D] for the adjoint dl:
 * loss = (1-ε)(lse - x_t) + ε(lse - mean_c x_c), dx = g (softmax - (1-ε)[c == t] - ε/C); ignored
 * targets give 0 and no gradient, a mean divides by the targets kept (NaN loss when none is). */
static double oracle(const ce_problem *p, const kiln_tensor *x, const kiln_tensor *t, const kiln_tensor *dl, double *loss,
                     double *dx) {
    int64_t C = p->c, D = p->d, kept = 0;
    double total = 0;
    for (int64_t k = 0; k < p->n * D; k++) kept += kiln_load_i64(t->dtype, t->data, k) != p->ignore;
    for (int64_t k = 0; k < p->n * D; k++) {
        int64_t tk = kiln_load_i64(t->dtype, t->data, k), base = (k / D) * C * D + k % D; /* x[n, c, d] at base + c D */
        double g = kiln_load_f64(dl->dtype, dl->data, p->red == 0 ? k : 0) / (p->red == 2 ? (double)kept : 1.0);
        double m = -INFINITY, s = 0, sx = 0;
        loss[k] = 0;
        for (int64_t c = 0; c < C; c++) {
            dx[base + c * D] = 0;
            m = fmax(m, kiln_load_f64(x->dtype, x->data, base + c * D));
        }
        if (tk == p->ignore) continue;
        for (int64_t c = 0; c < C; c++) {
            double v = kiln_load_f64(x->dtype, x->data, base + c * D);
            s += exp(v - m), sx += v;
        }
        double lse = m + log(s);
        loss[k] = (1 - p->eps) * (lse - kiln_load_f64(x->dtype, x->data, base + tk * D)) + p->eps * (lse - sx / (double)C);
        total += loss[k];
        for (int64_t c = 0; c < C; c++)
            dx[base + c * D] = g * (exp(kiln_load_f64(x->dtype, x->data, base + c * D) - lse) - (c == tk ? 1 - p->eps : 0) -
                                    p->eps / (double)C);
    }
    return p->red == 0 ? NAN : p->red == 1 ? total : kept ? total / (double)kept : NAN;
}

/* Fails at file:line unless every element of got is within rtol |want| + atol of want (NaN
 * matches NaN); atol = atol_floor + 1e-3 rtol max |want|. */
static void compare(const char *file, int line, const char *what, const kiln_tensor *got, const double *want, double rtol,
                    double atol_floor) {
    double big = 0;
    for (int64_t i = 0; i < got->numel; i++)
        if (isfinite(want[i])) big = fmax(big, fabs(want[i]));
    double atol = atol_floor + 1e-3 * rtol * big;
    for (int64_t i = 0; i < got->numel; i++) {
        double g = kiln_load_f64(got->dtype, got->data, i), w = want[i];
        if (!((isnan(g) && isnan(w)) || fabs(g - w) <= rtol * fabs(w) + atol)) {
            test_fail(file, line, "%s: element %lld of %lld is %.9g, expected %.9g (|diff| %.3g > rtol %g * |expected| + atol %.3g)",
                      what, (long long)i, (long long)got->numel, g, w, fabs(g - w), rtol, atol);
            return;
        }
    }
}

/* ---- interpreter: the rule, the composite and the old path ---------------------------------- */
/* A problem written as IR: x's shape and t's (the spatial dims d1... of D, or [C] alone). */
typedef struct ce_ir_case {
    const char *xs, *ts; /* "[2, 3, 2, 2]", "[2, 2, 2]" */
    int64_t n, c, d;
} ce_ir_case;

static const ce_ir_case IR_CASES[] = {
    {"[5, 4]", "[5]", 5, 4, 1},       {"[9, 3]", "[9]", 9, 3, 1},         {"[6]", "[]", 1, 6, 1},
    {"[2, 3, 2, 2]", "[2, 2, 2]", 2, 3, 4}, {"[3, 5, 4]", "[3, 4]", 3, 5, 4}, {"[1, 1]", "[1]", 1, 1, 1},
};

/* The function @f(x, t, w) = sum(cross_entropy(x, t) * w) in f64 (w: the adjoint dloss). */
static kiln_module *ce_module(kiln_context *ctx, const ce_ir_case *c, const ce_problem *p, const char *tdt) {
    char text[1024], attrs[160];
    snprintf(text, sizeof text,
             "def @f(%%x: f64%s, %%t: %s%s, %%w: f64%s) {\n  let %%y = cross_entropy(%%x, %%t, %s)\n"
             "  let %%z = multiply(%%y, %%w)\n  let %%s = sum(%%z)\n  return %%s\n}\n",
             c->xs, tdt, c->ts, p->red == 0 ? c->ts : "[]", attrs_of(p, attrs, sizeof attrs));
    kiln_module *m = kiln_module_parse(ctx, text, "ce.kir");
    if (!m) test_fail(__FILE__, __LINE__, "parse: %s\n%s", kiln_error_message(ctx), text);
    return m;
}

/* d sum(cross_entropy * w) / dx by autodiff of @f, its cross_entropy decomposed first (the old
 * path) or not (the gradient rule: cross_entropy_backward, which must appear). New reference. */
static kiln_tensor *autodiff_dx(kiln_context *ctx, const ce_ir_case *c, const ce_problem *p, const char *tdt, bool old,
                                kiln_value *in) {
    kiln_module *m = ce_module(ctx, c, p, tdt);
    kiln_function *f = m ? kiln_module_function(m, "f") : NULL;
    kiln_tensor *dx = NULL;
    if (f && old && kiln_pass_decompose(f->body)) test_fail(__FILE__, __LINE__, "decompose: %s", kiln_error_message(ctx));
    kiln_function *g = f ? kiln_autodiff(f, 1, (int[]){0}, "g") : NULL;
    if (f && !g) test_fail(__FILE__, __LINE__, "autodiff: %s", kiln_error_message(ctx));
    if (g && !old) {
        char *text = kiln_module_print(m, 0);
        if (!text || !strstr(text, "cross_entropy_backward(%x, %t, "))
            test_fail(__FILE__, __LINE__, "autodiff did not keep cross_entropy whole:\n%s", text ? text : "(null)");
        kiln_free(text);
    }
    kiln_value out;
    if (g && kiln_function_run(g, 3, in, &out)) test_fail(__FILE__, __LINE__, "run: %s", kiln_error_message(ctx));
    else if (g) {
        dx = kiln_tensor_retain(kiln_value_tuple_get(out, 1).tensor);
        kiln_value_release(out);
    }
    kiln_module_free(m);
    return dx;
}

/* Every IR case x reduction x (ignore_index, label smoothing) x target dtype: the gradient rule's
 * autodiff, cross_entropy_backward run eagerly, autodiff of the old decomposition and the oracle
 * agree; the forward matches the oracle too. */
TEST(cross_entropy_backward_matches_old_path_and_oracle) {
    static const struct { int64_t ignore; int every; double eps; } variants[] = {
        {-100, 0, 0.0}, {-100, 3, 0.0}, {1, 0, 0.1}, {-100, 2, 0.25}, {0, 0, 1.0}, {-100, 1, 0.0}, {-100, 1, 0.1},
    };
    unsigned seed = 2024;
    for (size_t ci = 0; ci < KILN_COUNTOF(IR_CASES); ci++)
        for (int red = 0; red < 3; red++)
            for (size_t vi = 0; vi < KILN_COUNTOF(variants); vi++) {
                const ce_ir_case *c = &IR_CASES[ci];
                ce_problem p = {c->n, c->c, c->d, variants[vi].ignore, variants[vi].every, red, variants[vi].eps};
                const char *tdt = vi % 2 ? "i32" : "i64";
                kiln_context *ctx = kiln_context_new();
                char attrs[160], what[512];
                attrs_of(&p, attrs, sizeof attrs);
                int64_t xs[3] = {p.n, p.c, p.d}, ts[2] = {p.n, p.d}, one = 1;
                kiln_tensor *x = kiln_tensor_new(ctx, KILN_F64, 3, xs), *t = kiln_tensor_new(ctx, vi % 2 ? KILN_I32 : KILN_I64, 2, ts);
                kiln_tensor *w = kiln_tensor_new(ctx, KILN_F64, red ? 1 : 2, red ? &one : ts);
                fill(&p, &seed, x, t, w);
                /* reshape to the IR case's shapes: the data is the same */
                kiln_value in[3] = {kiln_value_tensor(x), kiln_value_tensor(t), kiln_value_tensor(w)}, rs[3];
                const char *shapes[3] = {c->xs, c->ts, red ? "[]" : c->ts};
                for (int i = 0; i < 3; i++) {
                    char sattr[64];
                    snprintf(sattr, sizeof sattr, "shape=%s", shapes[i]);
                    rs[i] = run_op(ctx, "reshape", 1, &in[i], sattr);
                }
                release_all(3, in);
                double *loss = calloc((size_t)(p.n * p.d), sizeof(double)), *dx = calloc((size_t)(p.n * p.c * p.d), sizeof(double));
                double total = oracle(&p, rs[0].tensor, rs[1].tensor, rs[2].tensor, loss, dx);
                kiln_tensor *rule = autodiff_dx(ctx, c, &p, tdt, false, rs), *old = autodiff_dx(ctx, c, &p, tdt, true, rs);
                kiln_value eager = run_op(ctx, "cross_entropy_backward", 3, rs, attrs), fwd = run_op(ctx, "cross_entropy", 2, rs, attrs);
                snprintf(what, sizeof what, "logits f64%s, target %s%s, %s", c->xs, tdt, c->ts, attrs);
                char w2[640];
                if (rule) snprintf(w2, sizeof w2, "%s: autodiff (gradient rule) vs oracle", what), compare(__FILE__, __LINE__, w2, rule, dx, 1e-10, 1e-12);
                if (eager.kind == KILN_VALUE_TENSOR)
                    snprintf(w2, sizeof w2, "%s: cross_entropy_backward vs oracle", what), compare(__FILE__, __LINE__, w2, eager.tensor, dx, 1e-10, 1e-12);
                /* the old path divides 0 by 0 where a mean with label smoothing keeps no target
                 * (NaN gradients; torch and the rule give zeros) */
                int64_t kept = 0;
                for (int64_t k = 0; k < rs[1].tensor->numel; k++) kept += kiln_load_i64(rs[1].tensor->dtype, rs[1].tensor->data, k) != p.ignore;
                bool old_nan = red == 2 && !kept && p.eps > 0;
                if (old && !old_nan)
                    snprintf(w2, sizeof w2, "%s: autodiff of the decomposition vs oracle", what), compare(__FILE__, __LINE__, w2, old, dx, 1e-10, 1e-12);
                if (fwd.kind == KILN_VALUE_TENSOR) {
                    snprintf(w2, sizeof w2, "%s: cross_entropy vs oracle", what);
                    compare(__FILE__, __LINE__, w2, fwd.tensor, red ? &total : loss, 1e-10, 1e-12);
                }
                kiln_tensor_release(rule), kiln_tensor_release(old);
                kiln_value_release(eager), kiln_value_release(fwd);
                release_all(3, rs);
                free(loss), free(dx);
                kiln_context_free(ctx);
            }
}

/* Finite differences through the gradient rule (GRADCHECK's integer targets are 0 or 1). */
TEST(cross_entropy_gradcheck) {
    for (int red = 0; red < 3; red++) {
        char text[512];
        const char *w = red ? "[]" : "[6]";
        snprintf(text, sizeof text, "def @f(%%x: f64[6, 3], %%t: i64[6], %%w: f64%s) { let %%y = cross_entropy(%%x, %%t, "
                 "reduction=\"%s\", label_smoothing=0.3) let %%z = multiply(%%y, %%w) let %%s = sum(%%z) return %%s }", w, REDS[red]);
        GRADCHECK(text, -0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[8, 4], %%t: i32[8]) { let %%y = cross_entropy(%%x, %%t, reduction=\"%s\", "
                 "ignore_index=0, label_smoothing=0.05) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", REDS[red]);
        GRADCHECK(text, -1.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[5], %%t: i64[]) { let %%y = cross_entropy(%%x, %%t, reduction=\"%s\") "
                 "let %%z = exp(%%y) let %%s = sum(%%z) return %%s }", REDS[red]);
        GRADCHECK(text, 0.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 4, 3], %%t: i64[2, 3]) { let %%y = cross_entropy(%%x, %%t, reduction=\"%s\", "
                 "ignore_index=1, label_smoothing=0.2) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", REDS[red]);
        GRADCHECK(text, -0.5);
        /* probability targets: both inputs get gradients through primitives */
        snprintf(text, sizeof text, "def @f(%%x: f64[3, 5], %%p: f64[3, 5]) { let %%y = cross_entropy(%%x, %%p, reduction=\"%s\", "
                 "label_smoothing=0.2) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", REDS[red]);
        GRADCHECK(text, 0.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 3, 2], %%p: f64[2, 3, 2]) { let %%y = cross_entropy(%%x, %%p, "
                 "reduction=\"%s\") let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", REDS[red]);
        GRADCHECK(text, 0.0);
    }
}

TEST(cross_entropy_backward_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}), t = tv(ctx, KILN_I64, "2", (double[]){0, 2});
    kiln_value d0 = tv(ctx, KILN_F32, "", (double[]){1}), d2 = tv(ctx, KILN_F32, "2", (double[]){1, 1});
    kiln_value d64 = tv(ctx, KILN_F64, "", (double[]){1}), probs = tv(ctx, KILN_F32, "2,3", (double[]){0, 0, 1, 1, 0, 0});
    kiln_value out = {0};
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, t, d2}, NULL, &out), KILN_ERR_TYPE,
              "op 'cross_entropy_backward' at @eager: dloss is f32[2], expected f32[] (the type of cross_entropy's result for reduction \"mean\")");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, t, d0}, "reduction=\"none\"", &out),
              KILN_ERR_TYPE, "dloss is f32[], expected f32[2]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, t, d64}, "reduction=\"sum\"", &out),
              KILN_ERR_TYPE, "dloss is f64[], expected f32[]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, probs, d0}, NULL, &out), KILN_ERR_TYPE,
              "target is f32[2, 3], expected an int tensor of class indices");
    CHECK_ERR(ctx, kiln_op_run(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, t, d0}, "label_smoothing=-0.5", &out),
              KILN_ERR_TYPE, "label_smoothing -0.5 is not in [0, 1]");
    kiln_value ok = run_op(ctx, "cross_entropy_backward", 3, (kiln_value[]){x, t, d2}, "reduction=\"none\"");
    CHECK(ok.kind == KILN_VALUE_TENSOR && ok.tensor->dtype == KILN_F32 && ok.tensor->ndim == 2);
    kiln_value_release(ok);
    release_all(6, (kiln_value[]){x, t, d0, d2, d64, probs});
    kiln_context_free(ctx);
}

/* ---- compiled training steps ---------------------------------------------------------------- */
/* @f(x, w, t) = cross_entropy(x @ w, t) in dtype dt and its gradient (wrt x and w), compiled for
 * device ("cpu" or "cuda"), against the interpreter; the program listing has cross_entropy_backward
 * kept whole exactly when `fused`. */
static void compiled_agrees(const char *file, int line, const char *device, const char *dt, int64_t n, int64_t k, int64_t c,
                            const char *attrs, bool fused, double tol) {
    kiln_context *ctx = kiln_context_new();
    char text[1024];
    snprintf(text, sizeof text,
             "def @f(%%x: %s[%lld, %lld], %%w: %s[%lld, %lld], %%t: i64[%lld]) {\n  let %%z = matmul(%%x, %%w)\n"
             "  let %%l = cross_entropy(%%z, %%t, %s)\n  let %%s = sum(%%l)\n  return %%s\n}\n",
             dt, (long long)n, (long long)k, dt, (long long)k, (long long)c, (long long)n, attrs);
    kiln_module *m = kiln_module_parse(ctx, text, "step.kir");
    kiln_function *g = m ? kiln_autodiff(kiln_module_function(m, "f"), 2, (int[]){0, 1}, "g") : NULL;
    kiln_program *p = NULL;
    kiln_value in[3] = {{0}}, want = {0}, got = {0};
    if (!g) {
        test_fail(file, line, "setup: %s", kiln_error_message(ctx));
        goto done;
    }
    unsigned seed = 5;
    for (int i = 0; i < 3; i++) in[i] = kiln_value_tensor(random_tensor(ctx, g->params[i]->type, &seed, -0.5, 1 << 30));
    for (int64_t i = 0; i < n; i++) /* targets in [0, C), every 5th ignored (ignore_index -100) */
        kiln_store_i64(KILN_I64, in[2].tensor->data, i, i % 5 == 4 ? -100 : kiln_load_i64(KILN_I64, in[2].tensor->data, i) % c);
    kiln_compile_options o = kiln_compile_defaults();
    o.device = device;
    if (kiln_function_run(g, 3, in, &want)) {
        test_fail(file, line, "interpreter: %s", kiln_error_message(ctx));
        goto done;
    }
    if (kiln_compile(g, &o, &p)) {
        test_fail(file, line, "compile for %s: %s", device, kiln_error_message(ctx));
        goto done;
    }
    char *listing = kiln_program_print(p);
    if (!listing || (strstr(listing, "cross_entropy_backward(") != NULL) != fused)
        test_fail(file, line, "%s %s: cross_entropy_backward should %sbe kept whole in:\n%s", device, attrs, fused ? "" : "not ",
                  listing ? listing : "(null)");
    kiln_free(listing);
    for (int run = 0; run < 2; run++) {
        if (kiln_program_run(p, 3, in, &got)) {
            test_fail(file, line, "run on %s: %s", device, kiln_error_message(ctx));
            break;
        }
        for (int j = 0; j < 3; j++) {
            kiln_tensor *h = kiln_tensor_to(ctx, kiln_value_tuple_get(got, j).tensor, (kiln_device){KILN_DEVICE_CPU, 0});
            const kiln_tensor *w = kiln_value_tuple_get(want, j).tensor;
            double *wd = malloc(sizeof(double) * (size_t)(w->numel ? w->numel : 1));
            for (int64_t e = 0; e < w->numel; e++) wd[e] = kiln_load_f64(w->dtype, w->data, e);
            char what[512];
            snprintf(what, sizeof what, "%s %s [%lld, %lld] x [%lld, %lld] %s, run %d, result %d (0 loss, 1 dx, 2 dw) vs the interpreter",
                     device, dt, (long long)n, (long long)k, (long long)k, (long long)c, attrs, run, j);
            if (h) compare(file, line, what, h, wd, tol, tol * 1e-3);
            else test_fail(file, line, "%s: copy to host: %s", what, kiln_error_message(ctx));
            free(wd);
            kiln_tensor_release(h);
        }
        kiln_value_release(got);
        got = (kiln_value){0};
    }
done:
    kiln_program_free(p);
    kiln_value_release(want);
    release_all(3, in);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* On the CPU the backward decomposes and fuses like the rest; the numbers stay the interpreter's. */
TEST(cross_entropy_cpu_compiled_step) {
    for (int red = 0; red < 3; red++) {
        char attrs[128];
        snprintf(attrs, sizeof attrs, "reduction=\"%s\", label_smoothing=0.1", REDS[red]);
        compiled_agrees(__FILE__, __LINE__, "cpu", "f32", 12, 8, 37, attrs, false, 1e-5);
    }
}

/* ---- CUDA ------------------------------------------------------------------------------------- */
TEST(cross_entropy_cuda_compiles_with_nvrtc) {
    char why[512] = "";
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    if (!be) {
        printf("  skip: cross_entropy_cuda_compiles_with_nvrtc: %s\n", why);
        return;
    }
    void *image = NULL;
    size_t size = 0;
    if (be->nvrtc_compile(kiln_cuda_loss_src, 90, NULL, 0, &image, &size))
        test_fail(__FILE__, __LINE__, "NVRTC on cuda_loss.cu for sm_90: %s", be->last_error());
    CHECK(size > 0);
    if (image) be->free_image(image);
}

TEST(cross_entropy_cuda_supports) {
    static const struct { const char *op, *params; bool ok; } cases[] = {
        {"cross_entropy", "%x: f32[16, 50304], %t: i64[16]", true},
        {"cross_entropy", "%x: bf16[3, 5], %t: i32[3]", true},
        {"cross_entropy", "%x: f16[7], %t: i64[]", true},
        {"cross_entropy", "%x: f32[0, 5], %t: i64[0]", false},       /* empty: the host */
        {"cross_entropy", "%x: f64[3, 5], %t: i64[3]", false},        /* decomposed: generated kernels */
        {"cross_entropy", "%x: f32[2, 5, 3], %t: i64[2, 3]", false},  /* spatial dims: decomposed */
        {"cross_entropy", "%x: f32[3, 5], %t: f32[3, 5]", false},     /* probability targets: decomposed */
        {"cross_entropy", "%x: f32[3, 0], %t: i64[3]", false},        /* no classes: the host */
        {"cross_entropy_backward", "%x: f32[16, 50304], %t: i64[16], %d: f32[]", true},
        {"cross_entropy_backward", "%x: f16[4], %t: u8[], %d: f16[]", true},
        {"cross_entropy_backward", "%x: f32[2, 5, 3], %t: i64[2, 3], %d: f32[]", false},
    };
    for (size_t i = 0; i < KILN_COUNTOF(cases); i++) {
        kiln_context *ctx = kiln_context_new();
        char text[512];
        snprintf(text, sizeof text, "def @f(%s) { let %%r = %s(%%x, %%t%s) return %%r }", cases[i].params, cases[i].op,
                 strstr(cases[i].params, "%d") ? ", %d" : "");
        kiln_module *m = kiln_module_parse(ctx, text, "supports.kir");
        if (!m) test_fail(__FILE__, __LINE__, "parse %s: %s", text, kiln_error_message(ctx));
        else if ((cuda_check_impl(kiln_module_function(m, "f")->body->first, KILN_DIALECT_CUDA) != NULL) != cases[i].ok)
            test_fail(__FILE__, __LINE__, "%s(%s): the cuda dialect should %stake it", cases[i].op, cases[i].params, cases[i].ok ? "" : "not ");
        kiln_module_free(m);
        kiln_context_free(ctx);
    }
}

/* Runs the cuda implementation of op on node-shaped device copies of the host inputs; the result
 * copied back (new reference), or NULL after a test failure naming `what`. */
static kiln_tensor *gpu_run(const char *what, kiln_context *ctx, const char *op, int n_in, kiln_tensor *const *in, const char *attrs) {
    const kiln_device gpu = {KILN_DEVICE_CUDA, 0}, cpu = {KILN_DEVICE_CPU, 0};
    const kiln_backend *be = kiln_cuda_backend(NULL, 0);
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "f");
    kiln_var *params[3];
    kiln_tensor *din[3] = {NULL}, *dout = NULL, *host = NULL;
    for (int i = 0; i < n_in; i++) params[i] = kiln_function_param(f, i ? i == 1 ? "t" : "d" : "x", kiln_type_tensor(m, in[i]->dtype, in[i]->ndim, in[i]->shape));
    kiln_var *r = kiln_emit(kiln_function_body(f), op, n_in, params, attrs);
    const kiln_node *n = r ? kiln_function_body(f)->first : NULL;
    const kiln_dialect_impl *impl = n ? cuda_check_impl(n, KILN_DIALECT_CUDA) : NULL;
    if (!impl || impl->dialect != KILN_DIALECT_CUDA) {
        test_fail(__FILE__, __LINE__, "%s: no cuda implementation takes it (%s)", what, r ? "supports() is false" : kiln_error_message(ctx));
        goto done;
    }
    const kiln_type *ot = kiln_var_type(r);
    for (int i = 0; i < n_in; i++)
        if (!(din[i] = kiln_tensor_to(ctx, in[i], gpu))) {
            test_fail(__FILE__, __LINE__, "%s: device input %d: %s", what, i, kiln_error_message(ctx));
            goto done;
        }
    if (!(dout = kiln_tensor_new_on(ctx, ot->dtype, ot->ndim, ot->shape, gpu))) {
        test_fail(__FILE__, __LINE__, "%s: device output: %s", what, kiln_error_message(ctx));
        goto done;
    }
    /* poison the output: every element must be written */
    if (be->memset_d(0, dout->data, 0x7f, kiln_tensor_nbytes(dout))) {
        test_fail(__FILE__, __LINE__, "%s: memset: %s", what, be->last_error());
        goto done;
    }
    char *cache = kiln_jit_cache_dir(NULL);
    kiln_cuda_exec exec = {be, 0, cache, 0};
    const kiln_cuda_exec *outer = kiln_cuda_exec_get();
    kiln_cuda_exec_set(&exec);
    kiln_kernel_args a = {ctx, n->op, n->attrs, n_in, din, 1, &dout, "test"};
    kiln_status s = impl->kernel(&a);
    kiln_cuda_exec_set(outer);
    free(cache);
    if (s != KILN_OK || be->synchronize(0)) {
        test_fail(__FILE__, __LINE__, "%s: cuda kernel: %s", what, s != KILN_OK ? kiln_error_message(ctx) : be->last_error());
        goto done;
    }
    if (!(host = kiln_tensor_to(ctx, dout, cpu))) test_fail(__FILE__, __LINE__, "%s: reading the result: %s", what, kiln_error_message(ctx));
done:
    for (int i = 0; i < n_in; i++) kiln_tensor_release(din[i]);
    kiln_tensor_release(dout);
    kiln_module_free(m);
    return host;
}

/* One problem in dtype dt on the GPU: the forward and the backward against the oracle. */
static void check_gpu_problem(const ce_problem *p, kiln_dtype dt, unsigned seed) {
    kiln_context *ctx = kiln_context_new();
    int64_t xs[2] = {p->n, p->c}, one = 1;
    int nd = p->n ? 2 : 1; /* n == 0 here means a [C] input: one row */
    ce_problem q = *p;
    q.n = p->n ? p->n : 1;
    kiln_tensor *x = kiln_tensor_new(ctx, dt, nd, nd == 2 ? xs : &xs[1]), *t = kiln_tensor_new(ctx, KILN_I64, nd - 1, xs);
    kiln_tensor *dl = q.red ? kiln_tensor_new(ctx, dt, 0, &one) : kiln_tensor_new(ctx, dt, nd - 1, xs);
    fill(&q, &seed, x, t, dl);
    double *loss = calloc((size_t)q.n, sizeof(double)), *dx = calloc((size_t)(q.n * q.c), sizeof(double));
    double total = oracle(&q, x, t, dl, loss, dx);
    /* f32 computes in f32 (a row's log-sum-exp over up to 50k classes); f16 / bf16 round the
     * result once (half an ulp: 2^-11, 2^-8 relative) and f16 has subnormals below 6e-5 */
    double rtol = dt == KILN_F32 ? 2e-5 : dt == KILN_F16 ? 1.5e-3 : 1e-2, floor_ = dt == KILN_F16 ? 6e-8 : 1e-12;
    char attrs[160], what[512], shape[64];
    attrs_of(&q, attrs, sizeof attrs);
    kiln_shape_str(x->ndim, x->shape, shape, sizeof shape);
    snprintf(what, sizeof what, "cross_entropy(%s%s, %s; every %dth target ignored) on the GPU vs the f64 oracle",
             kiln_dtype_name(dt), shape, attrs, p->ignore_every);
    kiln_tensor *fwd = gpu_run(what, ctx, "cross_entropy", 2, (kiln_tensor *[]){x, t}, attrs);
    if (fwd) compare(__FILE__, __LINE__, what, fwd, q.red ? &total : loss, rtol, floor_);
    char bwhat[560];
    snprintf(bwhat, sizeof bwhat, "%s: backward (dlogits)", what);
    kiln_tensor *bwd = gpu_run(bwhat, ctx, "cross_entropy_backward", 3, (kiln_tensor *[]){x, t, dl}, attrs);
    if (bwd) compare(__FILE__, __LINE__, bwhat, bwd, dx, rtol, floor_);
    kiln_tensor_release(fwd), kiln_tensor_release(bwd);
    kiln_tensor_release(x), kiln_tensor_release(t), kiln_tensor_release(dl);
    free(loss), free(dx);
    kiln_context_free(ctx);
}

/* N x C x dtype x label smoothing x reduction, with ignored targets (ignore_index -100 or an
 * in-range class), vector loads (C * size % 16 == 0) and not (C = 1, 5, 50257). */
TEST(cross_entropy_cuda_vs_oracle) {
    if (!cuda_check_gpu("cross_entropy_cuda_vs_oracle")) return;
    static const int64_t ns[] = {1, 7, 300}, cs[] = {1, 5, 1000, 50257, 50304};
    static const kiln_dtype dts[] = {KILN_F32, KILN_F16, KILN_BF16};
    unsigned seed = 1;
    for (size_t ni = 0; ni < KILN_COUNTOF(ns); ni++)
        for (size_t ci = 0; ci < KILN_COUNTOF(cs); ci++)
            for (size_t di = 0; di < KILN_COUNTOF(dts); di++)
                for (int e = 0; e < 2; e++)
                    for (int red = 0; red < 3; red++) {
                        bool in_range = (ni + ci + red) % 2 && cs[ci] > 1; /* ignore_index a class (0) or -100 */
                        ce_problem p = {ns[ni], cs[ci], 1, in_range ? 0 : -100, in_range ? 0 : 4, red, e ? 0.1 : 0.0};
                        check_gpu_problem(&p, dts[di], seed++);
                    }
    /* a [C] input; every target ignored (a mean is NaN, its gradient zeros) */
    for (int red = 0; red < 3; red++) {
        check_gpu_problem(&(ce_problem){0, 1000, 1, -100, 0, red, 0.1}, KILN_BF16, seed++);
        check_gpu_problem(&(ce_problem){7, 64, 1, -100, 1, red, 0.1}, KILN_F32, seed++);
        check_gpu_problem(&(ce_problem){7, 64, 1, -100, 1, red, 0.0}, KILN_F16, seed++);
    }
}

/* A target outside [0, C) cannot raise from a kernel: its loss and its gradient row are NaN. */
TEST(cross_entropy_cuda_target_out_of_range) {
    if (!cuda_check_gpu("cross_entropy_cuda_target_out_of_range")) return;
    kiln_context *ctx = kiln_context_new();
    kiln_tensor *x = tt(ctx, KILN_F32, "3,4", (double[]){1, 2, 3, 4, 1, 1, 1, 1, 0, 0, 0, 9});
    kiln_tensor *t = tt(ctx, KILN_I64, "3", (double[]){2, 7, -100}), *dl = tt(ctx, KILN_F32, "3", (double[]){1, 1, 1});
    kiln_tensor *loss = gpu_run("out of range: forward", ctx, "cross_entropy", 2, (kiln_tensor *[]){x, t}, "reduction=\"none\"");
    kiln_tensor *dx = gpu_run("out of range: backward", ctx, "cross_entropy_backward", 3, (kiln_tensor *[]){x, t, dl}, "reduction=\"none\"");
    if (loss) {
        const float *l = loss->data;
        CHECK(isfinite(l[0]) && isnan(l[1]) && l[2] == 0);
    }
    if (dx) {
        const float *g = dx->data;
        for (int j = 0; j < 4; j++) CHECK(isfinite(g[j]) && isnan(g[4 + j]) && g[8 + j] == 0);
    }
    kiln_tensor_release(loss), kiln_tensor_release(dx);
    kiln_tensor_release(x), kiln_tensor_release(t), kiln_tensor_release(dl);
    kiln_context_free(ctx);
}

/* Training steps compiled for CUDA: cross_entropy and cross_entropy_backward stay whole (the
 * listing shows them) and agree with the interpreter. */
TEST(cross_entropy_cuda_compiled_step) {
    if (!cuda_check_gpu("cross_entropy_cuda_compiled_step")) return;
    bool tf32 = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false);
    for (int red = 0; red < 3; red++)
        for (int e = 0; e < 2; e++) {
            char attrs[128];
            snprintf(attrs, sizeof attrs, "reduction=\"%s\", label_smoothing=%s", REDS[red], e ? "0.1" : "0.0");
            compiled_agrees(__FILE__, __LINE__, "cuda", "f32", 64, 32, 1000, attrs, true, 1e-4);
        }
    compiled_agrees(__FILE__, __LINE__, "cuda", "f32", 96, 16, 5003, "reduction=\"mean\"", true, 1e-4);
    kiln_cuda_set_tf32(tf32);
}
