/* test_dialects.c — the blas and dnnl dialects against the reference kernels: each case parses a
 * one-op function, runs the library kernel and the reference kernel on the same random inputs
 * and compares; plus supports() refusals. A missing library skips its tests with a message. */
#include "dialects/dialect.h"
#include "test.h"
#include <stdlib.h>

/* LeakSanitizer (clang 14, glibc 2.36) crashes at exit scanning the dynamic TLS of libdnnl's
 * OpenMP worker threads; under ASan the dialects run on one OpenMP thread (set before any test
 * loads the libraries; an explicit OMP_NUM_THREADS wins). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(TEST_ASAN)
__attribute__((constructor)) static void one_omp_thread(void) { setenv("OMP_NUM_THREADS", "1", 0); }
#endif

/* Whether dialect d is loaded; prints why the caller skips if not. */
static bool have(kiln_dialect_id d, const char *test) {
    char why[256] = "";
    if (kiln_dialect_available(d, why, sizeof why)) return true;
    printf("  skip %s: dialect %s unavailable: %s\n", test, kiln_dialect_name(d), why);
    return false;
}

/* "def @f(PARAMS) { let %y = CALL return %y }" parsed; NULL (failure recorded) if it fails. */
static kiln_module *one_op(kiln_context *ctx, const char *params, const char *call) {
    char text[1024];
    snprintf(text, sizeof text, "def @f(%s) {\n let %%y = %s\n return %%y\n}\n", params, call);
    kiln_module *m = kiln_module_parse(ctx, text, "dialect.kir");
    if (!m) test_fail(__FILE__, __LINE__, "parse %s: %s", call, kiln_error_message(ctx));
    return m;
}

/* The implementation dialect d picks for the op of `call` (NULL: none). */
static const kiln_dialect_impl *pick(kiln_context *ctx, kiln_dialect_id d, const char *params, const char *call) {
    kiln_module *m = one_op(ctx, params, call);
    const kiln_dialect_impl *impl = m ? kiln_dialect_pick(kiln_module_function(m, "f")->body->first, 1, &d) : NULL;
    kiln_module_free(m);
    return impl;
}

/* Runs `call` through dialect d's kernel and the reference kernel on inputs uniform in [-1, 1)
 * (levels > 0: rounded down to multiples of 1/levels, so that pool windows hold ties) and checks
 * they agree within tol relative to the largest reference element. */
static void same_as_ref(int line, kiln_dialect_id d, const char *params, const char *call, double tol, int levels) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = one_op(ctx, params, call);
    if (!m) {
        kiln_context_free(ctx);
        return;
    }
    kiln_node *n = kiln_module_function(m, "f")->body->first;
    const kiln_dialect_impl *const *list = d == KILN_DIALECT_BLAS ? kiln_blas_impls : kiln_dnnl_impls, *impl = NULL;
    for (int i = 0; list[i]; i++)
        if (list[i]->op == n->op) impl = list[i];
    kiln_tensor *in[2] = {NULL, NULL}, *out[2] = {NULL, NULL};
    /* dnnl's pools and 1-channel weight gradients decline for speed on few CPUs; their kernels
     * must still match */
    bool for_speed = d == KILN_DIALECT_DNNL && (n->op == KILN_OP_MAX_POOL2D || n->op == KILN_OP_AVG_POOL2D ||
                                                n->op == KILN_OP_MAX_POOL2D_BACKWARD || n->op == KILN_OP_AVG_POOL2D_BACKWARD ||
                                                n->op == KILN_OP_CONV2D_BACKWARD_WEIGHT);
    if (!impl || (!impl->supports(n) && !for_speed)) {
        test_fail(__FILE__, line, "dialect %s does not support %s", kiln_dialect_name(d), call);
        goto done;
    }
    uint64_t seed = 0x9e3779b97f4a7c15u * (uint64_t)(line + 1);
    for (int i = 0; i < n->n_in; i++) {
        const kiln_type *t = n->in[i]->type;
        in[i] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        for (int64_t e = 0; in[i] && e < in[i]->numel; e++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            double v = (double)(seed >> 11) / 4503599627370496.0 - 1.0;
            kiln_store_f64(t->dtype, in[i]->data, e, levels ? floor(v * levels) / levels : v);
        }
    }
    for (int k = 0; k < 2; k++) out[k] = kiln_tensor_new(ctx, n->out->type->dtype, n->out->type->ndim, n->out->type->shape);
    if (!in[0] || (n->n_in > 1 && !in[1]) || !out[0] || !out[1]) {
        test_fail(__FILE__, line, "%s: out of memory", call);
        goto done;
    }
    for (int k = 0; k < 2; k++) {
        kiln_kernel_args a = {ctx, n->op, n->attrs, n->n_in, in, 1, &out[k], "test"};
        kiln_status s = k ? impl->kernel(&a) : kiln_op_info_get(n->op)->kernel(&a);
        if (s != KILN_OK) {
            test_fail(__FILE__, line, "%s (%s): %s", call, k ? kiln_dialect_name(d) : "ref", kiln_error_message(ctx));
            goto done;
        }
    }
    double scale = 0;
    for (int64_t e = 0; e < out[0]->numel; e++) scale = fmax(scale, fabs(kiln_load_f64(out[0]->dtype, out[0]->data, e)));
    for (int64_t e = 0; e < out[0]->numel; e++) {
        double want = kiln_load_f64(out[0]->dtype, out[0]->data, e), got = kiln_load_f64(out[1]->dtype, out[1]->data, e);
        if (!(fabs(got - want) <= tol * (1 + scale))) {
            test_fail(__FILE__, line, "%s %s: element %lld is %.9g, reference %.9g", kiln_dialect_name(d), call,
                      (long long)e, got, want);
            break;
        }
    }
done:
    for (int k = 0; k < 2; k++) kiln_tensor_release(in[k]), kiln_tensor_release(out[k]);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
#define SAME(d, params, call) same_as_ref(__LINE__, (d), (params), (call), 1e-4, 0)
#define SAME_TIES(d, params, call) same_as_ref(__LINE__, (d), (params), (call), 1e-4, 2)

/* supports() must refuse `call` (no implementation picked). */
static void refused(int line, kiln_dialect_id d, const char *params, const char *call) {
    kiln_context *ctx = kiln_context_new();
    if (pick(ctx, d, params, call)) test_fail(__FILE__, line, "dialect %s claims %s", kiln_dialect_name(d), call);
    kiln_context_free(ctx);
}
#define REFUSED(d, params, call) refused(__LINE__, (d), (params), (call))

/* ---- names and loading ---------------------------------------------------------------------- */
TEST(dialect_names_and_reasons) {
    CHECK_STR(kiln_dialect_name(KILN_DIALECT_BLAS), "blas");
    CHECK_INT(kiln_dialect_from_name("dnnl", 4), KILN_DIALECT_DNNL);
    CHECK_INT(kiln_dialect_from_name("cuda", 4), KILN_DIALECT_CUDA);
    CHECK_INT(kiln_dialect_from_name("tpu", 3), -1);
    CHECK(kiln_dialect_available(KILN_DIALECT_C, NULL, 0));
    for (int d = KILN_DIALECT_BLAS; d < KILN_DIALECT_COUNT; d++) {
        char why[256] = "";
        if (!kiln_dialect_available((kiln_dialect_id)d, why, sizeof why)) CHECK(why[0] != '\0'); /* a reason is given */
    }
}

/* ---- blas ----------------------------------------------------------------------------------- */
/* Matmul cases shared by blas and dnnl (f64 cases are blas's only). */
static const struct { const char *params, *call; } mm_cases[] = {
        {"%a: f32[5, 7], %b: f32[7, 3]", "matmul(%a, %b)"},
        {"%a: f32[7, 5], %b: f32[7, 3]", "matmul(%a, %b, transpose_a=true)"},
        {"%a: f32[5, 7], %b: f32[3, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[7, 5], %b: f32[3, 7]", "matmul(%a, %b, transpose_a=true, transpose_b=true)"},
        {"%a: f32[7], %b: f32[7, 3]", "matmul(%a, %b)"},
        {"%a: f32[5, 7], %b: f32[7]", "matmul(%a, %b)"},
        {"%a: f32[7], %b: f32[7]", "matmul(%a, %b)"},
        {"%a: f32[7], %b: f32[3, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[2, 3, 5, 7], %b: f32[7, 4]", "matmul(%a, %b)"},            /* folded into one GEMM */
        {"%a: f32[2, 3, 7, 5], %b: f32[7, 4]", "matmul(%a, %b, transpose_a=true)"},
        {"%a: f32[2, 1, 5, 7], %b: f32[3, 7, 4]", "matmul(%a, %b)"},         /* both broadcast */
        {"%a: f32[5, 7], %b: f32[4, 3, 4, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[3, 5, 7], %b: f32[7]", "matmul(%a, %b)"},
        {"%a: f32[7], %b: f32[2, 7, 3]", "matmul(%a, %b)"},
        {"%a: f32[4, 0], %b: f32[0, 3]", "matmul(%a, %b)"},                  /* empty contraction: zeros */
        {"%a: f32[0, 5, 7], %b: f32[7, 3]", "matmul(%a, %b)"},
        {"%a: f32[64, 300], %b: f32[300, 130]", "matmul(%a, %b)"},
        {"%a: f64[3, 5, 7], %b: f64[3, 4, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[2, 3, 5, 7], %b: f32[1, 3, 4, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[3, 1, 7, 5], %b: f32[3, 2, 4, 7]", "matmul(%a, %b, transpose_a=true, transpose_b=true)"},
        {"%a: f32[2, 5, 7], %b: f32[1, 7, 3]", "matmul(%a, %b)"},              /* b's batch dim of 1 */
        {"%a: f32[1, 5, 7], %b: f32[7, 3]", "matmul(%a, %b)"},
        {"%a: f32[2, 4, 16, 8], %b: f32[2, 4, 16, 8]", "matmul(%a, %b, transpose_b=true)"}, /* attention */
        {"%a: f32[2, 4, 16, 16], %b: f32[2, 4, 16, 8]", "matmul(%a, %b, transpose_a=true)"},
        {"%a: f32[5, 0], %b: f32[3, 0]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f32[2, 0, 7], %b: f32[2, 7, 3]", "matmul(%a, %b)"},
        {"%a: f32[2, 5, 7], %b: f32[2, 7, 0]", "matmul(%a, %b)"},
        {"%a: f32[0], %b: f32[0]", "matmul(%a, %b)"},
        {"%a: f32[128, 300], %b: f32[300, 10]", "matmul(%a, %b)"},
        {"%a: f64[3, 5, 7], %b: f64[3, 4, 7]", "matmul(%a, %b, transpose_b=true)"},
        {"%a: f64[2, 7, 5], %b: f64[1, 7, 3]", "matmul(%a, %b, transpose_a=true)"},
};

TEST(blas_matmul_matches_reference) {
    if (!have(KILN_DIALECT_BLAS, "blas_matmul_matches_reference")) return;
    for (size_t i = 0; i < sizeof mm_cases / sizeof mm_cases[0]; i++) SAME(KILN_DIALECT_BLAS, mm_cases[i].params, mm_cases[i].call);
}

/* Convolution cases shared by blas and dnnl (dnnl: false where it must refuse: an empty batch, a
 * dy smaller than conv2d's output needing negative padding). */
static const struct { const char *params, *call; bool dnnl; } conv_cases[] = {
    {"%x: f32[2, 3, 9, 8], %w: f32[4, 3, 3, 3]", "conv2d(%x, %w)", true},
    {"%x: f32[3, 3, 9, 8], %w: f32[4, 3, 3, 2]", "conv2d(%x, %w, stride=[2, 3], padding=[1, 2])", true},
    {"%x: f32[2, 4, 10, 9], %w: f32[6, 2, 3, 3]", "conv2d(%x, %w, padding=[2, 1, 0, 1], dilation=[2, 1], groups=2)", true},
    {"%x: f32[1, 6, 7, 7], %w: f32[6, 1, 3, 3]", "conv2d(%x, %w, padding=[1, 1], groups=6)", true},        /* depthwise */
    {"%x: f32[5, 1, 12, 12], %w: f32[6, 1, 5, 5]", "conv2d(%x, %w, padding=[2, 2])", true},                /* LeNet conv1 */
    {"%x: f32[2, 3, 8, 8], %w: f32[2, 3, 1, 1]", "conv2d(%x, %w, stride=[2, 2])", true},
    {"%x: f32[2, 2, 11, 10], %w: f32[3, 2, 3, 3]", "conv2d(%x, %w, stride=[2, 2], dilation=[2, 3], padding=[1, 2])", true},
    {"%x: f32[0, 2, 5, 5], %w: f32[3, 2, 3, 3]", "conv2d(%x, %w)", false},
    /* conv2d_transpose as conv2d's data gradient (output_padding restores dropped rows) */
    {"%x: f32[2, 4, 7, 6], %w: f32[4, 3, 3, 3]", "conv2d_transpose(%x, %w)", true},
    {"%x: f32[3, 4, 4, 3], %w: f32[4, 3, 3, 2]", "conv2d_transpose(%x, %w, stride=[2, 3], padding=[1, 2], output_padding=[1, 2])", true},
    {"%x: f32[2, 6, 5, 8], %w: f32[6, 2, 3, 3]", "conv2d_transpose(%x, %w, padding=[2, 1, 0, 1], dilation=[2, 1], groups=2)", true},
    {"%x: f32[1, 6, 7, 7], %w: f32[6, 1, 3, 3]", "conv2d_transpose(%x, %w, padding=[1, 1], groups=6)", true},
    {"%x: f32[5, 6, 12, 12], %w: f32[6, 1, 5, 5]", "conv2d_transpose(%x, %w, padding=[2, 2])", true},
    {"%x: f32[2, 3, 5, 5], %w: f32[3, 2, 3, 3]", "conv2d_transpose(%x, %w, stride=[2, 2], dilation=[2, 3], padding=[1, 2], output_padding=[0, 1])", true},
    /* conv2d_backward_weight, including a dy smaller than conv2d's output */
    {"%x: f32[2, 3, 9, 8], %dy: f32[2, 4, 7, 6]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3])", true},
    {"%x: f32[3, 3, 9, 8], %dy: f32[3, 4, 5, 3]", "conv2d_backward_weight(%x, %dy, kernel=[3, 2], stride=[2, 3], padding=[1, 2])", true},
    {"%x: f32[2, 4, 10, 9], %dy: f32[2, 6, 8, 8]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], padding=[2, 1, 0, 1], dilation=[2, 1], groups=2)", true},
    {"%x: f32[1, 6, 7, 7], %dy: f32[1, 6, 7, 7]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], padding=[1, 1], groups=6)", true},
    {"%x: f32[5, 1, 12, 12], %dy: f32[5, 6, 12, 12]", "conv2d_backward_weight(%x, %dy, kernel=[5, 5], padding=[2, 2])", true},
    {"%x: f32[2, 3, 9, 9], %dy: f32[2, 4, 3, 4]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], stride=[2, 2])", false},
    {"%x: f32[0, 2, 5, 5], %dy: f32[0, 3, 3, 3]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3])", false},
};

TEST(blas_conv_matches_reference) {
    if (!have(KILN_DIALECT_BLAS, "blas_conv_matches_reference")) return;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        SAME(KILN_DIALECT_BLAS, conv_cases[i].params, conv_cases[i].call);
    /* many images in more than one chunk of column matrices */
    SAME(KILN_DIALECT_BLAS, "%x: f32[3, 64, 60, 60], %w: f32[16, 64, 3, 3]", "conv2d(%x, %w, padding=[1, 1])");
    SAME(KILN_DIALECT_BLAS, "%x: f32[3, 16, 60, 60], %w: f32[16, 32, 3, 3]", "conv2d_transpose(%x, %w, padding=[1, 1])");
    SAME(KILN_DIALECT_BLAS, "%x: f32[3, 64, 60, 60], %dy: f32[3, 16, 60, 60]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], padding=[1, 1])");
}

TEST(blas_refuses_other_dtypes) {
    if (!have(KILN_DIALECT_BLAS, "blas_refuses_other_dtypes")) return;
    REFUSED(KILN_DIALECT_BLAS, "%a: f16[5, 7], %b: f16[7, 3]", "matmul(%a, %b)");
    REFUSED(KILN_DIALECT_BLAS, "%a: i32[5, 7], %b: i32[7, 3]", "matmul(%a, %b)");
    REFUSED(KILN_DIALECT_BLAS, "%a: bf16[5, 7], %b: bf16[7, 3]", "matmul(%a, %b)");
    REFUSED(KILN_DIALECT_BLAS, "%x: f64[2, 3, 9, 8], %w: f64[4, 3, 3, 3]", "conv2d(%x, %w)");
    REFUSED(KILN_DIALECT_BLAS, "%x: f16[2, 3, 9, 8], %w: f16[4, 3, 3, 3]", "conv2d(%x, %w)");
    REFUSED(KILN_DIALECT_BLAS, "%x: f64[2, 4, 7, 6], %w: f64[4, 3, 3, 3]", "conv2d_transpose(%x, %w)");
    REFUSED(KILN_DIALECT_BLAS, "%x: f64[2, 3, 9, 8], %dy: f64[2, 4, 7, 6]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3])");
    REFUSED(KILN_DIALECT_BLAS, "%x: f32[2, 3, 8, 8]", "max_pool2d(%x, kernel=[2, 2])"); /* no pools in blas */
}

/* Ops with several inputs and results (attention): every result of dialect d's kernel against
 * the reference kernel's, on inputs uniform in [-1, 1). */
static void same_results_as_ref(int line, kiln_dialect_id d, const char *params, const char *call, double tol) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = one_op(ctx, params, call);
    kiln_node *n = m ? kiln_module_function(m, "f")->body->first : NULL;
    const kiln_dialect_impl *impl = n ? kiln_dialect_pick(n, 1, &d) : NULL;
    kiln_tensor *in[8] = {NULL}, *out[2][4] = {{NULL}};
    const kiln_type *ot = n ? n->out->type : NULL;
    int n_out = ot && ot->kind == KILN_TYPE_TUPLE ? ot->n_elems : 1;
    if (n && !impl) test_fail(__FILE__, line, "dialect %s does not support %s", kiln_dialect_name(d), call);
    uint64_t seed = 0x9e3779b97f4a7c15u * (uint64_t)(line + 1);
    for (int i = 0; impl && i < n->n_in; i++) {
        const kiln_type *t = n->in[i]->type;
        in[i] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        for (int64_t e = 0; e < in[i]->numel; e++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            kiln_store_f64(t->dtype, in[i]->data, e, (double)(seed >> 11) / 4503599627370496.0 - 1.0);
        }
    }
    for (int k = 0; impl && k < 2; k++) {
        for (int j = 0; j < n_out; j++) {
            const kiln_type *t = n_out > 1 ? ot->elems[j] : ot;
            out[k][j] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        }
        kiln_kernel_args a = {ctx, n->op, n->attrs, n->n_in, in, n_out, out[k], "test"};
        if ((k ? impl->kernel(&a) : kiln_op_info_get(n->op)->kernel(&a)) != KILN_OK)
            test_fail(__FILE__, line, "%s (%s): %s", call, k ? kiln_dialect_name(d) : "ref", kiln_error_message(ctx));
    }
    for (int j = 0; impl && j < n_out; j++) {
        const kiln_tensor *want = out[0][j], *got = out[1][j];
        double scale = 0;
        for (int64_t e = 0; e < want->numel; e++) scale = fmax(scale, fabs(kiln_load_f64(want->dtype, want->data, e)));
        for (int64_t e = 0; e < want->numel; e++) {
            double w = kiln_load_f64(want->dtype, want->data, e), g = kiln_load_f64(got->dtype, got->data, e);
            if (!(fabs(g - w) <= tol * (1 + scale))) {
                test_fail(__FILE__, line, "%s %s: result %d element %lld is %.9g, reference %.9g", kiln_dialect_name(d), call, j,
                          (long long)e, g, w);
                break;
            }
        }
    }
    for (int i = 0; i < 8; i++) kiln_tensor_release(in[i]);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) kiln_tensor_release(out[k][j]);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(blas_attention_matches_reference) {
    if (!have(KILN_DIALECT_BLAS, "blas_attention_matches_reference")) return;
    const char *fwd = "%q: f32[2, 3, 70, 16], %k: f32[2, 3, 90, 16], %v: f32[2, 3, 90, 8]";
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, fwd, "attention_forward(%q, %k, %v)", 1e-5);
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, fwd, "attention_forward(%q, %k, %v, causal=true, scale=0.3)", 1e-5);
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, "%q: f64[5, 16], %k: f64[7, 16], %v: f64[7, 4]",
                        "attention_forward(%q, %k, %v, causal=true)", 1e-12);
    const char *bwd = "%q: f32[2, 70, 16], %k: f32[2, 90, 16], %v: f32[2, 90, 8], %o: f32[2, 70, 8], %l: f32[2, 70], "
                      "%do: f32[2, 70, 8], %dl: f32[2, 70]";
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, bwd, "attention_backward(%q, %k, %v, %o, %l, %do, %dl, causal=true)", 1e-5);
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, bwd, "attention_backward(%q, %k, %v, %o, %l, %do)", 1e-5);
    same_results_as_ref(__LINE__, KILN_DIALECT_BLAS, "%q: bf16[3, 16], %k: bf16[3, 16], %v: bf16[3, 16]",
                        "attention_forward(%q, %k, %v)", 1e-2);
}

/* ---- dnnl ----------------------------------------------------------------------------------- */
TEST(dnnl_matmul_matches_reference) {
    if (!have(KILN_DIALECT_DNNL, "dnnl_matmul_matches_reference")) return;
    for (size_t i = 0; i < sizeof mm_cases / sizeof mm_cases[0]; i++)
        if (strstr(mm_cases[i].params, "f64")) REFUSED(KILN_DIALECT_DNNL, mm_cases[i].params, mm_cases[i].call);
        else SAME(KILN_DIALECT_DNNL, mm_cases[i].params, mm_cases[i].call);
    SAME(KILN_DIALECT_DNNL, mm_cases[0].params, mm_cases[0].call); /* the cached primitive again */
    /* a large GEMM with a transposed a is blas's (dnnl's jit GEMM is slower there) */
    REFUSED(KILN_DIALECT_DNNL, "%a: f32[1024, 256], %b: f32[1024, 768]", "matmul(%a, %b, transpose_a=true)");
    kiln_context *ctx = kiln_context_new();
    kiln_dialect_id both[] = {KILN_DIALECT_BLAS, KILN_DIALECT_DNNL};
    kiln_module *m = one_op(ctx, "%a: f32[8, 128, 256], %b: f32[256, 768]", "matmul(%a, %b)");
    const kiln_dialect_impl *impl = m ? kiln_dialect_pick(kiln_module_function(m, "f")->body->first, 2, both) : NULL;
    CHECK(impl && impl->dialect == KILN_DIALECT_DNNL); /* dnnl outranks blas where it takes matmul */
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(dnnl_conv_matches_reference) {
    if (!have(KILN_DIALECT_DNNL, "dnnl_conv_matches_reference")) return;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        if (conv_cases[i].dnnl) SAME(KILN_DIALECT_DNNL, conv_cases[i].params, conv_cases[i].call);
        else REFUSED(KILN_DIALECT_DNNL, conv_cases[i].params, conv_cases[i].call);
    /* the cached primitive serves a second run of the same shape */
    SAME(KILN_DIALECT_DNNL, conv_cases[0].params, conv_cases[0].call);
}

TEST(dnnl_pools_match_reference) {
    if (!have(KILN_DIALECT_DNNL, "dnnl_pools_match_reference")) return;
    static const char *const pools[] = {
        "kernel=[2, 2]",
        "kernel=[3, 3], stride=[2, 2]",
        "kernel=[3, 2], stride=[2, 1], padding=[1, 1]",
        "kernel=[3, 3], stride=[2, 2], padding=[1, 0, 0, 1]",
        "kernel=[3, 3], stride=[2, 2], ceil_mode=true",
        "kernel=[2, 3], stride=[2, 2], padding=[1, 1], ceil_mode=true",
        "kernel=[2, 2], stride=[1, 1]",
    };
    char call[256], params[64];
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
        snprintf(params, sizeof params, "%%x: f32[2, 3, 9, 8]");
        snprintf(call, sizeof call, "max_pool2d(%%x, %s)", pools[i]);
        SAME(KILN_DIALECT_DNNL, params, call);
        SAME_TIES(KILN_DIALECT_DNNL, params, call);
        for (int inc = 0; inc < 2; inc++) {
            snprintf(call, sizeof call, "avg_pool2d(%%x, %s, count_include_pad=%s)", pools[i], inc ? "true" : "false");
            /* count_include_pad with ceil_mode windows past the padding has no dnnl equivalent */
            if (inc && strstr(pools[i], "ceil")) REFUSED(KILN_DIALECT_DNNL, params, call);
            else SAME(KILN_DIALECT_DNNL, params, call);
        }
    }
    SAME(KILN_DIALECT_DNNL, "%x: f32[2, 3, 9, 8]", "max_pool2d(%x, kernel=[2, 2], dilation=[2, 2], padding=[1, 1])");
    SAME(KILN_DIALECT_DNNL, "%x: f32[64, 6, 28, 28]", "max_pool2d(%x, kernel=[2, 2])");
}

TEST(dnnl_pool_backwards_match_reference) {
    if (!have(KILN_DIALECT_DNNL, "dnnl_pool_backwards_match_reference")) return;
    /* (input size, dy size, attributes): dy has the forward's result shape */
    static const struct { const char *x, *dy, *attrs; bool avg_inc_ok; } cases[] = {
        {"2, 3, 9, 8", "2, 3, 4, 4", "kernel=[2, 2]", true},
        {"2, 3, 9, 8", "2, 3, 4, 3", "kernel=[3, 3], stride=[2, 2]", true},
        {"2, 3, 9, 8", "2, 3, 5, 9", "kernel=[3, 2], stride=[2, 1], padding=[1, 1]", true},
        {"2, 3, 9, 8", "2, 3, 4, 4", "kernel=[3, 3], stride=[2, 2], ceil_mode=true", false},
        {"2, 3, 9, 8", "2, 3, 5, 5", "kernel=[2, 3], stride=[2, 2], padding=[1, 1], ceil_mode=true", false},
        {"2, 3, 9, 8", "2, 3, 8, 7", "kernel=[2, 2], stride=[1, 1]", true},
    };
    char params[128], call[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(params, sizeof params, "%%x: f32[%s], %%dy: f32[%s]", cases[i].x, cases[i].dy);
        snprintf(call, sizeof call, "max_pool2d_backward(%%x, %%dy, %s)", cases[i].attrs);
        SAME(KILN_DIALECT_DNNL, params, call);
        SAME_TIES(KILN_DIALECT_DNNL, params, call); /* dy goes to the first maximum, as the reference's */
        snprintf(params, sizeof params, "%%dy: f32[%s]", cases[i].dy);
        for (int inc = 0; inc < 2; inc++) {
            snprintf(call, sizeof call, "avg_pool2d_backward(%%dy, %s, count_include_pad=%s, input_size=[9, 8])",
                     cases[i].attrs, inc ? "true" : "false");
            if (inc && !cases[i].avg_inc_ok) REFUSED(KILN_DIALECT_DNNL, params, call);
            else SAME(KILN_DIALECT_DNNL, params, call);
        }
    }
    SAME(KILN_DIALECT_DNNL, "%x: f32[2, 3, 9, 8], %dy: f32[2, 3, 5, 4]",
         "max_pool2d_backward(%x, %dy, kernel=[2, 2], dilation=[2, 2], padding=[1, 1])");
    SAME(KILN_DIALECT_DNNL, "%x: f32[64, 16, 10, 10], %dy: f32[64, 16, 5, 5]", "max_pool2d_backward(%x, %dy, kernel=[2, 2])");
}

TEST(dnnl_refuses_other_dtypes) {
    if (!have(KILN_DIALECT_DNNL, "dnnl_refuses_other_dtypes")) return;
    REFUSED(KILN_DIALECT_DNNL, "%x: f64[2, 3, 9, 8], %w: f64[4, 3, 3, 3]", "conv2d(%x, %w)");
    REFUSED(KILN_DIALECT_DNNL, "%x: bf16[2, 3, 9, 8], %w: bf16[4, 3, 3, 3]", "conv2d(%x, %w)");
    REFUSED(KILN_DIALECT_DNNL, "%x: f64[2, 4, 7, 6], %w: f64[4, 3, 3, 3]", "conv2d_transpose(%x, %w)");
    REFUSED(KILN_DIALECT_DNNL, "%x: f64[2, 3, 9, 8], %dy: f64[2, 4, 7, 6]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3])");
    REFUSED(KILN_DIALECT_DNNL, "%x: f64[2, 3, 8, 8]", "max_pool2d(%x, kernel=[2, 2])");
    REFUSED(KILN_DIALECT_DNNL, "%x: i32[2, 3, 8, 8]", "max_pool2d(%x, kernel=[2, 2])");
    REFUSED(KILN_DIALECT_DNNL, "%x: f16[2, 3, 8, 8]", "avg_pool2d(%x, kernel=[2, 2])");
    REFUSED(KILN_DIALECT_DNNL, "%dy: f64[2, 3, 4, 4]", "avg_pool2d_backward(%dy, kernel=[2, 2], input_size=[8, 8])");
    REFUSED(KILN_DIALECT_DNNL, "%a: f64[5, 7], %b: f64[7, 3]", "matmul(%a, %b)");
    REFUSED(KILN_DIALECT_DNNL, "%a: f16[5, 7], %b: f16[7, 3]", "matmul(%a, %b)");
    REFUSED(KILN_DIALECT_DNNL, "%x: f32[2, 3, 8, 8]", "adaptive_avg_pool2d(%x, output_size=[2, 2])");
}
