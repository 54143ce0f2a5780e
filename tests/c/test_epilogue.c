/* test_epilogue.c — cuBLASLt epilogue patterns: the epilogue pass on training functions (which
 * GEMMs become gemm_epilogue, and that the function computes the same), gemm_epilogue's
 * decomposition against the unfused ops, gelu_backward against finite differences, the cublaslt
 * dialect's supports(); on a GPU, each epilogue through cuBLASLt and a compiled training step. */
#include "cuda_check.h"
#include "compiler/compiler.h"
#include "ops/epilogue.h"
#include "passes/passes.h"
#include "runtime/vm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------------- */
/* A tensor value of `shape` ("2,3") with elements uniform in [-1, 1) from *seed. */
static kiln_value rand_value(kiln_context *ctx, kiln_dtype dt, const char *shape, unsigned *seed) {
    int64_t numel = 1;
    for (const char *s = shape; *s;) {
        char *end;
        numel *= strtoll(s, &end, 10);
        s = *end ? end + 1 : end;
    }
    double *d = malloc(sizeof *d * (size_t)(numel ? numel : 1));
    for (int64_t i = 0; d && i < numel; i++) {
        *seed = *seed * 1103515245u + 12345u;
        d[i] = 2.0 * (double)(*seed >> 8) / (double)(1u << 24) - 1.0;
    }
    kiln_value v = tv(ctx, dt, shape, d);
    free(d);
    return v;
}

/* Whether a and b hold the same leaves bit for bit (NaN equal to NaN); the first difference is
 * reported at file:line as `what`. */
static bool same_at(const char *file, int line, const char *what, kiln_value a, kiln_value b) {
    if (a.kind != b.kind || (a.kind == KILN_VALUE_TUPLE && kiln_value_tuple_size(a) != kiln_value_tuple_size(b))) {
        test_fail(file, line, "%s: the results differ in structure", what);
        return false;
    }
    if (a.kind == KILN_VALUE_TUPLE) {
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            if (!same_at(file, line, what, kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i))) return false;
        return true;
    }
    if (a.kind != KILN_VALUE_TENSOR) return true;
    const kiln_tensor *x = a.tensor, *y = b.tensor;
    if (x->dtype != y->dtype || x->numel != y->numel) {
        test_fail(file, line, "%s: dtypes or sizes differ", what);
        return false;
    }
    for (int64_t i = 0; i < x->numel; i++) {
        double p = kiln_load_f64(x->dtype, x->data, i), q = kiln_load_f64(y->dtype, y->data, i);
        if (p != q && !(isnan(p) && isnan(q))) {
            test_fail(file, line, "%s: element %lld is %.9g, expected %.9g", what, (long long)i, q, p);
            return false;
        }
    }
    return true;
}
#define SAME(what, a, b) same_at(__FILE__, __LINE__, (what), (a), (b))

/* Occurrences of needle in text. */
static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* ---- the pass on training functions ----------------------------------------------------------- */
/* A two-layer MLP's loss with hidden width `hid` in dtype `dt` (rows [4, 3] fold into one GEMM);
 * `act` binds %a from the pre-activation %h ("let %a = relu(%h)"). */
static char *mlp_text(const char *dt, int hid, const char *act) {
    static const char fmt[] =
        "def @loss(%%x: %s[4, 3, 16], %%w1: %s[%d, 16], %%b1: %s[%d], %%w2: %s[8, %d], %%b2: %s[8]) -> %s[] {\n"
        "  let %%h = dense(%%x, %%w1, %%b1)\n"
        "  %s\n"
        "  let %%z = dense(%%a, %%w2, %%b2)\n"
        "  let %%s = multiply(%%z, %%z)\n"
        "  let %%l = mean(%%s)\n"
        "  return %%l\n"
        "}\n";
    size_t n = sizeof fmt + 8 * strlen(dt) + strlen(act) + 64;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, dt, dt, hid, dt, hid, dt, hid, dt, dt, act);
    return s;
}

/* What the pass made of one function. */
typedef struct pass_result {
    int relu, gelu, gelu_aux, dgelu, bgrad; /* gemm_epilogue nodes by epilogue */
    int dense, greater_of_relu;              /* dense nodes left (after dce); masks reading the relu */
} pass_result;

/* Builds mlp_text(dt, hid, act), differentiates it (every parameter), runs the interpreter, runs
 * the epilogue pass with `dialects` allowed, checks that the IR verifies and computes the same
 * bits, and counts what the pass made. */
static pass_result run_pass_at(const char *file, int line, const char *dt, int hid, const char *act, int n_dialects,
                               const kiln_dialect_id *dialects) {
    pass_result r = {0};
    kiln_context *ctx = kiln_context_new();
    char *text = mlp_text(dt, hid, act);
    kiln_module *m = text ? kiln_module_parse(ctx, text, "mlp.kir") : NULL;
    kiln_function *f = m ? kiln_module_function(m, "loss") : NULL;
    kiln_function *g = f ? kiln_autodiff(f, 5, (int[]){0, 1, 2, 3, 4}, "grad") : NULL;
    kiln_value in[5] = {{0}}, before = {.kind = KILN_VALUE_NONE}, after = {.kind = KILN_VALUE_NONE};
    if (!g) {
        test_fail(file, line, "setup of %s: %s", act, kiln_error_message(ctx));
        goto done;
    }
    unsigned seed = 11;
    for (int i = 0; i < 5; i++) in[i] = kiln_value_tensor(random_tensor(ctx, g->params[i]->type, &seed, -0.5, 1));
    if (kiln_function_run(g, 5, in, &before)) {
        test_fail(file, line, "%s before the pass: %s", act, kiln_error_message(ctx));
        goto done;
    }
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 2, .n_dialects = n_dialects};
    memcpy(pc.dialects, dialects, sizeof *dialects * (size_t)n_dialects);
    setenv("KILN_CUDA_EPILOGUES", "1", 1);
    kiln_status ps = kiln_pass_epilogue(&pc, g);
    unsetenv("KILN_CUDA_EPILOGUES");
    if (ps || kiln_module_verify(m) || kiln_pass_dce(g->body)) {
        test_fail(file, line, "%s: the pass: %s", act, kiln_error_message(ctx));
        goto done;
    }
    char *ir = kiln_module_print(m, 0);
    r.relu = count(ir, "epilogue=\"relu\""), r.gelu = count(ir, "epilogue=\"gelu\"");
    r.gelu_aux = count(ir, "epilogue=\"gelu_aux\""), r.dgelu = count(ir, "epilogue=\"dgelu\"");
    r.bgrad = count(ir, "epilogue=\"bgrad\"");
    for (kiln_node *n = g->body->first; n; n = n->next) {
        const kiln_node *src = n->in && n->n_in ? n->in[0]->def : NULL;
        r.dense += n->op == KILN_OP_DENSE;
        r.greater_of_relu += n->op == KILN_OP_GREATER && src && (src->op == KILN_OP_GEMM_EPILOGUE || src->op == KILN_OP_RELU);
    }
    kiln_free(ir);
    if (kiln_function_run(g, 5, in, &after)) test_fail(file, line, "%s after the pass: %s", act, kiln_error_message(ctx));
    else SAME(act, before, after);
done:
    kiln_value_release(before), kiln_value_release(after);
    release_all(5, in);
    free(text);
    kiln_module_free(m);
    kiln_context_free(ctx);
    return r;
}

#define GELU_TANH "let %a = gelu(%h, approximate=\"tanh\")"
static const kiln_dialect_id CUDA_DIALECTS[2] = {KILN_DIALECT_CUBLASLT, KILN_DIALECT_CUDA};
#define run_pass(dt, hid, act) run_pass_at(__FILE__, __LINE__, (dt), (hid), (act), 2, CUDA_DIALECTS)

TEST(epilogue_pass_gelu_mlp_training) {
    /* forward gelu with its pre-activation kept for the backward; the backward's product with w2
     * and gelu' as dgelu; each layer's weight and bias gradients as one bgrad GEMM */
    pass_result r = run_pass("f32", 32, GELU_TANH);
    CHECK_INT(r.gelu_aux, 1);
    CHECK_INT(r.dgelu, 1);
    CHECK_INT(r.bgrad, 2);
    CHECK_INT(r.gelu, 0);
    CHECK_INT(r.dense, 1); /* the second layer has no activation: it stays a dense (bias epilogue) */
    r = run_pass("bf16", 32, GELU_TANH);
    CHECK_INT(r.gelu_aux + r.dgelu + r.bgrad, 4);
}

TEST(epilogue_pass_relu_mlp_training) {
    /* relu's backward mask greater(h, 0) reads relu(h) > 0 instead: no aux, h unread */
    pass_result r = run_pass("f32", 32, "let %a = relu(%h)");
    CHECK_INT(r.relu, 1);
    CHECK_INT(r.bgrad, 2);
    CHECK_INT(r.dgelu + r.gelu_aux, 0);
    CHECK_INT(r.dense, 1);
    CHECK_INT(r.greater_of_relu, 1);
}

TEST(epilogue_pass_leaves_what_cublaslt_cannot_do) {
    /* the erf gelu: cuBLASLt's is the tanh form; the weight gradients still become bgrad */
    pass_result r = run_pass("f32", 32, "let %a = gelu(%h)");
    CHECK_INT(r.gelu + r.gelu_aux + r.dgelu, 0);
    CHECK_INT(r.bgrad, 2);
    CHECK_INT(r.dense, 2);
    /* a hidden width of 12: the aux (ld_aux = 12) is no multiple of 8, so no gelu_aux nor dgelu */
    r = run_pass("f32", 12, GELU_TANH);
    CHECK_INT(r.gelu_aux + r.dgelu + r.gelu, 0);
    CHECK_INT(r.dense, 2);
    /* f64 has no cuBLASLt GEMM */
    r = run_pass("f64", 32, GELU_TANH);
    CHECK_INT(r.gelu_aux + r.dgelu + r.bgrad, 0);
    /* the pre-activation read elsewhere than by relu's masks: relu would need it materialised */
    r = run_pass("f32", 32, "let %r = relu(%h)\n  let %a = add(%r, %h)");
    CHECK_INT(r.relu, 0);
    /* CPU dialects: the pass does nothing */
    kiln_dialect_id cpu[2] = {KILN_DIALECT_BLAS, KILN_DIALECT_C};
    r = run_pass_at(__FILE__, __LINE__, "f32", 32, GELU_TANH, 2, cpu);
    CHECK_INT(r.gelu_aux + r.dgelu + r.bgrad + r.relu + r.gelu, 0);
    CHECK_INT(r.dense, 2);
}

TEST(epilogue_pass_forward_only) {
    /* inference: gelu(dense) with nothing else reading the pre-activation is plain gelu, any width */
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @f(%x: f32[5, 16], %w: f32[12, 16], %b: f32[12]) -> f32[5, 12] {\n"
                                       "  let %h = dense(%x, %w, %b)\n"
                                       "  let %y = gelu(%h, approximate=\"tanh\")\n"
                                       "  return %y\n"
                                       "}\n"
                                       "def @v(%x: f32[16], %w: f32[12, 16]) -> f32[12] {\n" /* a vector: no GEMM of rows */
                                       "  let %h = dense(%x, %w)\n"
                                       "  let %y = relu(%h)\n"
                                       "  return %y\n"
                                       "}\n",
                                       "fwd.kir");
    kiln_function *f = m ? kiln_module_function(m, "f") : NULL;
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 2, .n_dialects = 2};
    memcpy(pc.dialects, CUDA_DIALECTS, sizeof CUDA_DIALECTS);
    CHECK(f != NULL);
    if (f) {
        CHECK_OK(ctx, kiln_pass_epilogue(&pc, f)); /* opt-in: without KILN_CUDA_EPILOGUES=1 nothing changes */
        CHECK(f->body->first && f->body->first->op == KILN_OP_DENSE);
        setenv("KILN_CUDA_EPILOGUES", "1", 1);
        CHECK_OK(ctx, kiln_pass_epilogue(&pc, f));
        CHECK_OK(ctx, kiln_pass_dce(f->body));
        CHECK(f->body->first && f->body->first->op == KILN_OP_GEMM_EPILOGUE && !f->body->first->next);
        CHECK(f->body->results[0] == f->body->first->out);
        kiln_function *v = kiln_module_function(m, "v");
        CHECK_OK(ctx, kiln_pass_epilogue(&pc, v));
        CHECK(v->body->first && v->body->first->op == KILN_OP_DENSE);
        unsetenv("KILN_CUDA_EPILOGUES");
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(epilogue_pass_is_in_the_pipeline) {
    int at = -1, dec = -1;
    for (int i = 0; i < kiln_n_passes; i++) {
        if (!strcmp(kiln_passes[i].name, "epilogue")) at = i;
        if (!strcmp(kiln_passes[i].name, "decompose") && dec < 0) dec = i;
    }
    CHECK(at >= 0 && at < dec);
}

/* ---- gemm_epilogue's decomposition and shape rule ---------------------------------------------- */
/* gemm_epilogue(in; attrs) against `want` computed by the unfused ops, bit for bit. */
static void same_as_unfused(const char *file, int line, kiln_context *ctx, int n_in, const kiln_value *in,
                            const char *attrs, kiln_value want) {
    kiln_value got = run_op(ctx, "gemm_epilogue", n_in, in, attrs);
    if (got.kind == KILN_VALUE_NONE) test_fail(file, line, "gemm_epilogue(%s): %s", attrs, kiln_error_message(ctx));
    else same_at(file, line, attrs, want, got);
    kiln_value_release(got);
    kiln_value_release(want);
}

/* tuple(a, b), releasing a and b. */
static kiln_value pair(kiln_context *ctx, kiln_value a, kiln_value b) {
    kiln_value t = kiln_value_tuple(ctx, 2, (kiln_value[]){a, b});
    kiln_value_release(a), kiln_value_release(b);
    return t;
}

TEST(epilogue_op_matches_unfused_ops) {
    kiln_context *ctx = kiln_context_new();
    unsigned seed = 5;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_BF16 : KILN_F32;
        kiln_value x = rand_value(ctx, dt, "2,3,8", &seed), w = rand_value(ctx, dt, "16,8", &seed);
        kiln_value bias = rand_value(ctx, dt, "16", &seed);
        kiln_value h = run_op(ctx, "dense", 3, (kiln_value[]){x, w, bias}, NULL), h0 = run_op(ctx, "dense", 2, (kiln_value[]){x, w}, NULL);
        same_as_unfused(__FILE__, __LINE__, ctx, 3, (kiln_value[]){x, w, bias}, "epilogue=\"relu\", transpose_b=true",
                        run_op(ctx, "relu", 1, &h, NULL));
        same_as_unfused(__FILE__, __LINE__, ctx, 2, (kiln_value[]){x, w}, "epilogue=\"gelu\", transpose_b=true",
                        run_op(ctx, "gelu", 1, &h0, "approximate=\"tanh\""));
        kiln_value h_copy = run_op(ctx, "copy", 1, &h, NULL);
        same_as_unfused(__FILE__, __LINE__, ctx, 3, (kiln_value[]){x, w, bias}, "epilogue=\"gelu_aux\", transpose_b=true",
                        pair(ctx, run_op(ctx, "gelu", 1, &h, "approximate=\"tanh\""), h_copy));
        /* dgelu: dy [2, 3, 8] @ w2 [8, 16] times gelu'(h) */
        kiln_value dy = rand_value(ctx, dt, "2,3,8", &seed), w2 = rand_value(ctx, dt, "8,16", &seed);
        kiln_value dz = run_op(ctx, "matmul", 2, (kiln_value[]){dy, w2}, NULL);
        same_as_unfused(__FILE__, __LINE__, ctx, 3, (kiln_value[]){dy, w2, h}, "epilogue=\"dgelu\"",
                        run_op(ctx, "gelu_backward", 2, (kiln_value[]){h, dz}, "approximate=\"tanh\""));
        /* bgrad: G [6, 5] (rows, out), X [6, 7] -> (G^T X, column sums of G) */
        kiln_value G = rand_value(ctx, dt, "6,5", &seed), X = rand_value(ctx, dt, "6,7", &seed);
        same_as_unfused(__FILE__, __LINE__, ctx, 2, (kiln_value[]){G, X}, "epilogue=\"bgrad\", transpose_a=true",
                        pair(ctx, run_op(ctx, "matmul", 2, (kiln_value[]){G, X}, "transpose_a=true"),
                             run_op(ctx, "sum", 1, &G, "axes=[0]")));
        release_all(10, (kiln_value[]){x, w, bias, h, h0, dy, w2, dz, G, X});
    }
    kiln_context_free(ctx);
}

TEST(epilogue_op_shape_errors) {
    kiln_context *ctx = kiln_context_new();
    unsigned seed = 3;
    kiln_value x = rand_value(ctx, KILN_F32, "4,8", &seed), w = rand_value(ctx, KILN_F32, "16,8", &seed);
    kiln_value b = rand_value(ctx, KILN_F32, "8", &seed), x64 = rand_value(ctx, KILN_F64, "4,8", &seed), out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "gemm_epilogue", 2, (kiln_value[]){x, w}, "epilogue=\"silu\"", &out), KILN_ERR_TYPE,
              "epilogue 'silu' is not one of relu, gelu, gelu_aux, dgelu, bgrad");
    CHECK_ERR(ctx, kiln_op_run(ctx, "gemm_epilogue", 2, (kiln_value[]){x, w}, "epilogue=\"gelu\"", &out), KILN_ERR_TYPE,
              "contracted dims differ");
    CHECK_ERR(ctx, kiln_op_run(ctx, "gemm_epilogue", 2, (kiln_value[]){x, w}, "epilogue=\"dgelu\", transpose_b=true", &out),
              KILN_ERR_TYPE, "dgelu needs the pre-activation f32[4, 16] as operand 2");
    CHECK_ERR(ctx, kiln_op_run(ctx, "gemm_epilogue", 3, (kiln_value[]){x, w, b}, "epilogue=\"relu\", transpose_b=true", &out),
              KILN_ERR_TYPE, "bias f32[8] must be [16]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "gemm_epilogue", 2, (kiln_value[]){x64, w}, "epilogue=\"relu\", transpose_b=true", &out),
              KILN_ERR_TYPE, "every operand must be a tensor of a's dtype f64");
    release_all(4, (kiln_value[]){x, w, b, x64});
    kiln_context_free(ctx);
}

/* ---- gelu_backward ------------------------------------------------------------------------------ */
TEST(gelu_backward_matches_finite_differences) {
    kiln_context *ctx = kiln_context_new();
    static const double xs[] = {-4, -2.5, -1, -0.3, 0, 0.2, 0.9, 1.7, 3.5, 6};
    enum { N = sizeof xs / sizeof xs[0] };
    double dys[N];
    for (int i = 0; i < N; i++) dys[i] = 0.5 + 0.1 * i;
    for (int form = 0; form < 2; form++) {
        const char *attrs = form ? "approximate=\"tanh\"" : "approximate=\"none\"";
        double plus[N], minus[N], want[N];
        const double h = 1e-6;
        for (int i = 0; i < N; i++) plus[i] = xs[i] + h, minus[i] = xs[i] - h;
        kiln_value x = tv(ctx, KILN_F64, "10", xs), dy = tv(ctx, KILN_F64, "10", dys);
        kiln_value xp = tv(ctx, KILN_F64, "10", plus), xm = tv(ctx, KILN_F64, "10", minus);
        kiln_value yp = run_op(ctx, "gelu", 1, &xp, attrs), ym = run_op(ctx, "gelu", 1, &xm, attrs);
        kiln_value got = run_op(ctx, "gelu_backward", 2, (kiln_value[]){x, dy}, attrs);
        CHECK(yp.kind == KILN_VALUE_TENSOR && ym.kind == KILN_VALUE_TENSOR);
        for (int i = 0; i < N && yp.tensor && ym.tensor; i++)
            want[i] = dys[i] * (((double *)yp.tensor->data)[i] - ((double *)ym.tensor->data)[i]) / (2 * h);
        CHECK_TENSOR(got, KILN_F64, "10", want, 1e-7);
        release_all(7, (kiln_value[]){x, dy, xp, xm, yp, ym, got});
    }
    kiln_context_free(ctx);
}

TEST(gelu_gradient_rule_keeps_gelu_whole) {
    GRADCHECK("def @f(%x: f64[3, 4]) { let %y = gelu(%x, approximate=\"tanh\") let %s = multiply(%y, %x) return %s }", -2.0);
    GRADCHECK("def @f(%x: f64[3, 4]) { let %y = gelu(%x) let %s = multiply(%y, %y) return %s }", -0.5);
    /* the backward reads as one gelu_backward node */
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, "def @f(%x: f32[6]) { let %y = gelu(%x, approximate=\"tanh\") return %y }", "g.kir");
    kiln_function *g = m ? kiln_autodiff(kiln_module_function(m, "f"), 1, (int[]){0}, "g") : NULL;
    char *text = g ? kiln_module_print(m, 0) : NULL;
    CHECK(text && strstr(text, "gelu_backward(%x, ") && strstr(text, "approximate=\"tanh\")"));
    kiln_free(text);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* ---- the cublaslt dialect's supports() (no GPU needed) ----------------------------------------- */
/* Whether cublaslt takes gemm_epilogue(params; attrs). */
static bool cublaslt_takes(const char *params, const char *call) {
    kiln_context *ctx = kiln_context_new();
    char text[512];
    snprintf(text, sizeof text, "def @f(%s) {\n  let %%r = %s\n  return %%r\n}\n", params, call);
    kiln_module *m = kiln_module_parse(ctx, text, "s.kir");
    kiln_node *n = m && !kiln_module_infer(m) ? kiln_module_function(m, "f")->body->first : NULL;
    const kiln_dialect_impl *impl = NULL;
    for (int i = 0; n && kiln_cublaslt_impls[i]; i++)
        if (kiln_cublaslt_impls[i]->op == KILN_OP_GEMM_EPILOGUE) impl = kiln_cublaslt_impls[i];
    bool ok = impl && impl->supports(n);
    if (!n) test_fail(__FILE__, __LINE__, "%s: %s", call, kiln_error_message(ctx));
    kiln_module_free(m);
    kiln_context_free(ctx);
    return ok;
}

TEST(epilogue_cublaslt_supports) {
    CHECK(cublaslt_takes("%x: f32[2, 3, 8], %w: f32[16, 8], %b: f32[16]",
                         "gemm_epilogue(%x, %w, %b, epilogue=\"gelu_aux\", transpose_b=true)"));
    CHECK(cublaslt_takes("%x: bf16[4, 8], %w: bf16[12, 8]", "gemm_epilogue(%x, %w, epilogue=\"gelu\", transpose_b=true)"));
    CHECK(!cublaslt_takes("%x: f32[4, 8], %w: f32[12, 8]", "gemm_epilogue(%x, %w, epilogue=\"gelu_aux\", transpose_b=true)"));
    CHECK(!cublaslt_takes("%x: f32[4, 8], %w: f32[8, 12], %h: f32[4, 12]", "gemm_epilogue(%x, %w, %h, epilogue=\"dgelu\")"));
    CHECK(cublaslt_takes("%x: f16[4, 8], %w: f16[8, 16], %h: f16[4, 16]", "gemm_epilogue(%x, %w, %h, epilogue=\"dgelu\")"));
    CHECK(cublaslt_takes("%g: f32[6, 5], %x: f32[6, 7]", "gemm_epilogue(%g, %x, epilogue=\"bgrad\", transpose_a=true)"));
    CHECK(!cublaslt_takes("%g: f32[5, 6], %x: f32[6, 7]", "gemm_epilogue(%g, %x, epilogue=\"bgrad\")"));
    CHECK(!cublaslt_takes("%x: f64[4, 8], %w: f64[16, 8]", "gemm_epilogue(%x, %w, epilogue=\"relu\", transpose_b=true)"));
    CHECK(!cublaslt_takes("%x: f32[0, 8], %w: f32[16, 8]", "gemm_epilogue(%x, %w, epilogue=\"relu\", transpose_b=true)"));
}

/* ---- on a GPU ----------------------------------------------------------------------------------- */
/* Each epilogue through cuBLASLt against the reference (the decomposition on the host). */
TEST(epilogue_cuda_each_epilogue) {
    if (!cuda_check_gpu("epilogue_cuda_each_epilogue")) return;
    kiln_context *ctx = kiln_context_new();
    bool tf32 = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false);
    unsigned seed = 21;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_BF16 : KILN_F32;
        /* f32: cuBLASLt's gelu' is its own approximation, 1e-4 from the formula */
        double tol = d ? 3e-2 : 2e-4;
        kiln_value x = rand_value(ctx, dt, "4,6,40", &seed), w = rand_value(ctx, dt, "64,40", &seed);
        kiln_value b = rand_value(ctx, dt, "64", &seed), h = rand_value(ctx, dt, "4,6,64", &seed);
        kiln_value dy = rand_value(ctx, dt, "4,6,32", &seed), w2 = rand_value(ctx, dt, "32,64", &seed);
        kiln_value G = rand_value(ctx, dt, "48,32", &seed), X = rand_value(ctx, dt, "48,40", &seed);
        static const char *const fwd[] = {"epilogue=\"relu\", transpose_b=true", "epilogue=\"gelu\", transpose_b=true",
                                          "epilogue=\"gelu_aux\", transpose_b=true"};
        for (int e = 0; e < 3; e++) {
            cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUBLASLT, "gemm_epilogue", 3, (kiln_value[]){x, w, b}, fwd[e], tol, false);
            cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUBLASLT, "gemm_epilogue", 2, (kiln_value[]){x, w}, fwd[e], tol, false);
        }
        cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUBLASLT, "gemm_epilogue", 3, (kiln_value[]){dy, w2, h},
                      "epilogue=\"dgelu\"", tol, false);
        cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUBLASLT, "gemm_epilogue", 2, (kiln_value[]){G, X},
                      "epilogue=\"bgrad\", transpose_a=true", tol, true);
        release_all(8, (kiln_value[]){x, w, b, h, dy, w2, G, X});
    }
    kiln_cuda_set_tf32(tf32);
    kiln_context_free(ctx);
}

/* A dense-gelu-dense training step compiled for CUDA: the program holds the epilogue GEMMs on
 * cublaslt, and its results match the interpreter (KILN_VM_CHECK's comparison). */
TEST(epilogue_cuda_training_step) {
    if (!cuda_check_gpu("epilogue_cuda_training_step")) return;
    kiln_context *ctx = kiln_context_new();
    bool tf32 = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false);
    char *text = mlp_text("f32", 32, GELU_TANH);
    kiln_module *m = text ? kiln_module_parse(ctx, text, "mlp.kir") : NULL;
    kiln_function *f = m ? kiln_module_function(m, "loss") : NULL;
    kiln_function *g = f ? kiln_autodiff(f, 5, (int[]){0, 1, 2, 3, 4}, "grad") : NULL;
    kiln_value in[5] = {{0}}, want = {.kind = KILN_VALUE_NONE};
    kiln_program *p = NULL;
    kiln_compile_options o = kiln_compile_defaults();
    o.device = "cuda";
    unsigned seed = 13;
    for (int i = 0; g && i < 5; i++) in[i] = kiln_value_tensor(random_tensor(ctx, g->params[i]->type, &seed, -0.5, 1));
    if (!g || kiln_function_run(g, 5, in, &want)) test_fail(__FILE__, __LINE__, "setup: %s", kiln_error_message(ctx));
    else if (setenv("KILN_CUDA_EPILOGUES", "1", 1) || kiln_compile(g, &o, &p))
        test_fail(__FILE__, __LINE__, "compile for cuda: %s", kiln_error_message(ctx));
    else {
        char *listing = kiln_program_print(p);
        static const char *const need[] = {"epilogue=\"gelu_aux\", transpose_b=true)  # cublaslt",
                                           "epilogue=\"dgelu\")  # cublaslt",
                                           "epilogue=\"bgrad\", transpose_a=true)  # cublaslt"};
        for (int i = 0; i < 3; i++)
            if (!listing || !strstr(listing, need[i]))
                test_fail(__FILE__, __LINE__, "the compiled program lacks `%s`:\n%s", need[i], listing ? listing : "(none)");
        kiln_free(listing);
        const char *old = getenv("KILN_VM_CHECK_DEVICE");
        char *keep = old ? strdup(old) : NULL;
        setenv("KILN_VM_CHECK_DEVICE", "cuda", 1);
        if (kiln_vm_check(g, 5, in, want))
            test_fail(__FILE__, __LINE__, "cuda vs the interpreter: %s", kiln_error_message(ctx));
        if (keep) setenv("KILN_VM_CHECK_DEVICE", keep, 1);
        else unsetenv("KILN_VM_CHECK_DEVICE");
        free(keep);
    }
    unsetenv("KILN_CUDA_EPILOGUES");
    kiln_program_free(p);
    kiln_value_release(want);
    release_all(5, in);
    free(text);
    kiln_module_free(m);
    kiln_cuda_set_tf32(tf32);
    kiln_context_free(ctx);
}
