/* test_attention.c — the fused attention ops: hand values, the forward and autodiff's backward
 * against the naive softmax(q k^T * scale + mask) v built from kiln ops (f32 / f64 / bf16),
 * finite differences, shape errors, the cost model, and the CUDA kernels (NVRTC here, a GPU
 * run against the reference kernels where one is present: the GEMM path with TF32 off, chunked
 * scratch, and the flash kernels over ragged, causal and cross-attention shapes). */
#include "cuda_check.h"
#include "ops/cost.h"
#include <stdlib.h>

extern const char kiln_cuda_attention_src[]; /* cuda_attention.cu, built into the library */

/* A shape case: leading dims b[0..nb), Tq, Tk, D (of q and k) and Dv (of v). */
typedef struct attn_case {
    int nb;
    int64_t b[2], tq, tk, d, dv;
} attn_case;

static const attn_case CASES[] = {
    {0, {0}, 5, 7, 16, 16},   {1, {3}, 9, 4, 16, 8},        {2, {2, 3}, 6, 6, 64, 64},
    {1, {2}, 70, 130, 16, 16}, {2, {1, 2}, 130, 66, 64, 64},
};

/* "[b..., t, d]" of a case's tensor. */
static const char *case_shape(const attn_case *c, int64_t t, int64_t d, char *buf, size_t size) {
    int64_t s[4];
    for (int i = 0; i < c->nb; i++) s[i] = c->b[i];
    s[c->nb] = t, s[c->nb + 1] = d;
    return kiln_shape_str(c->nb + 2, s, buf, size);
}

/* A module with @f(q, k, v, w) = attention(q, k, v) * w in dtype dt and @g, the same in f64
 * through matmul, where (the causal mask) and softmax. */
static char *naive_module(const attn_case *c, const char *dt, bool causal) {
    char sq[64], sk[64], sv[64], so[64], mask[512] = "let %t2 = copy(%t)";
    case_shape(c, c->tq, c->d, sq, sizeof sq), case_shape(c, c->tk, c->d, sk, sizeof sk);
    case_shape(c, c->tk, c->dv, sv, sizeof sv), case_shape(c, c->tq, c->dv, so, sizeof so);
    if (causal)
        snprintf(mask, sizeof mask, "let %%i = arange(stop=%lld, dtype=i64) let %%ic = reshape(%%i, shape=[%lld, 1]) "
                 "let %%j = arange(stop=%lld, dtype=i64) let %%m = greater(%%j, %%ic) let %%t2 = where(%%m, -inf, %%t)",
                 (long long)c->tq, (long long)c->tq, (long long)c->tk);
    kiln_buf b = {0};
    kiln_buf_printf(&b, "def @f(%%q: %s%s, %%k: %s%s, %%v: %s%s, %%w: %s%s) { let %%o = attention(%%q, %%k, %%v, causal=%s) "
                    "let %%z = multiply(%%o, %%w) return %%z }\n", dt, sq, dt, sk, dt, sv, dt, so, causal ? "true" : "false");
    kiln_buf_printf(&b, "def @g(%%q: f64%s, %%k: f64%s, %%v: f64%s, %%w: f64%s) { let %%s = matmul(%%q, %%k, transpose_b=true) "
                    "let %%t = multiply(%%s, %.17g) %s let %%p = softmax(%%t2) let %%o = matmul(%%p, %%v) "
                    "let %%z = multiply(%%o, %%w) return %%z }\n", sq, sk, sv, so, 1 / sqrt((double)c->d), mask);
    return kiln_buf_take(&b);
}

/* Uniform [-1, 1) values of dtype dt (rounded to it) and their f64 copy. */
static void rand_pair(kiln_context *ctx, kiln_dtype dt, const kiln_type *t, unsigned *seed, kiln_value *x, kiln_value *x64) {
    kiln_tensor *a = kiln_tensor_new(ctx, dt, t->ndim, t->shape), *b = kiln_tensor_new(ctx, KILN_F64, t->ndim, t->shape);
    for (int64_t i = 0; i < a->numel; i++) {
        *seed = *seed * 1103515245u + 12345u;
        kiln_store_f64(dt, a->data, i, (double)(*seed >> 8) / (double)(1u << 23) - 1);
    }
    kiln_convert(KILN_F64, b->data, dt, a->data, a->numel);
    *x = kiln_value_tensor(a), *x64 = kiln_value_tensor(b);
}

/* Whether tensors a and b agree elementwise within tol * (1 + |b|); reports the first miss. */
static bool close_tensors(const char *what, const kiln_tensor *a, const kiln_tensor *b, double tol) {
    if (a->numel != b->numel) {
        test_fail(__FILE__, __LINE__, "%s: %lld elements, expected %lld", what, (long long)a->numel, (long long)b->numel);
        return false;
    }
    for (int64_t i = 0; i < a->numel; i++) {
        double x = kiln_load_f64(a->dtype, a->data, i), y = kiln_load_f64(b->dtype, b->data, i);
        if (!(fabs(x - y) <= tol * (1 + fabs(y)))) {
            test_fail(__FILE__, __LINE__, "%s: element %lld is %.9g, expected %.9g", what, (long long)i, x, y);
            return false;
        }
    }
    return true;
}

/* Runs @f (dtype dt) and @g (f64) of naive_module and their gradients with respect to q, k, v,
 * and compares the fused results with the naive ones. */
static void check_vs_naive(const attn_case *c, kiln_dtype dt, bool causal, double tol) {
    kiln_context *ctx = kiln_context_new();
    char *text = naive_module(c, kiln_dtype_name(dt), causal), what[128];
    kiln_module *m = text ? kiln_module_parse(ctx, text, "attention.kir") : NULL;
    if (!m) {
        test_fail(__FILE__, __LINE__, "parse: %s", kiln_error_message(ctx));
        free(text);
        kiln_context_free(ctx);
        return;
    }
    kiln_function *f = kiln_module_function(m, "f"), *g = kiln_module_function(m, "g");
    int wrt[3] = {0, 1, 2};
    kiln_function *df = kiln_autodiff(f, 3, wrt, "df"), *dg = kiln_autodiff(g, 3, wrt, "dg");
    kiln_value in[4], in64[4], rf = {0}, rg = {0};
    unsigned seed = 7u + (unsigned)(c->tq * 31 + c->d) + (causal ? 1000u : 0u);
    for (int i = 0; i < 4; i++) rand_pair(ctx, dt, f->params[i]->type, &seed, &in[i], &in64[i]);
    CHECK(df && dg);
    if (df && dg) {
        CHECK_OK(ctx, kiln_function_run(df, 4, in, &rf));
        CHECK_OK(ctx, kiln_function_run(dg, 4, in64, &rg));
    }
    CHECK(rf.kind == KILN_VALUE_TUPLE && rg.kind == KILN_VALUE_TUPLE);
    for (int i = 0; rf.kind == KILN_VALUE_TUPLE && rg.kind == KILN_VALUE_TUPLE && i < 4; i++) {
        snprintf(what, sizeof what, "%s %s Tq=%lld Tk=%lld D=%lld causal=%d", i ? (const char *[]){"", "dq", "dk", "dv"}[i] : "out",
                 kiln_dtype_name(dt), (long long)c->tq, (long long)c->tk, (long long)c->d, causal);
        close_tensors(what, kiln_value_tuple_get(rf, i).tensor, kiln_value_tuple_get(rg, i).tensor, tol);
    }
    kiln_value_release(rf), kiln_value_release(rg);
    release_all(4, in), release_all(4, in64);
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

TEST(attention_vs_naive) {
    static const kiln_dtype dts[3] = {KILN_F64, KILN_F32, KILN_BF16};
    static const double tols[3] = {1e-10, 1e-5, 1e-2};
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        for (int t = 0; t < 3; t++)
            for (int causal = 0; causal < 2; causal++) check_vs_naive(&CASES[i], dts[t], causal, tols[t]);
}

TEST(attention_values) {
    kiln_context *ctx = kiln_context_new();
    /* q = 0: uniform weights over the keys a row sees (causal: row i sees keys 0..i) */
    kiln_value in[3] = {tv(ctx, KILN_F32, "1,3,2", (double[]){0, 0, 0, 0, 0, 0}), tv(ctx, KILN_F32, "1,3,2", (double[]){1, 2, 3, 4, 5, 6}),
                        tv(ctx, KILN_F32, "1,3,1", (double[]){1, 2, 6})};
    kiln_value r = run_op(ctx, "attention_forward", 3, in, "causal=true");
    if (r.kind == KILN_VALUE_TUPLE) {
        CHECK_TENSOR(kiln_value_tuple_get(r, 0), KILN_F32, "1,3,1", ((double[]){1, 1.5, 3}), 1e-6);
        CHECK_TENSOR(kiln_value_tuple_get(r, 1), KILN_F32, "1,3", ((double[]){0, log(2), log(3)}), 1e-6);
    }
    kiln_value_release(r);
    release_all(3, in);
    /* scale ln 3: scores [ln 3, 0] give weights [3/4, 1/4]; lse = ln 4; f16 computes in f32 */
    in[0] = tv(ctx, KILN_F16, "1,2", (double[]){1, 0}), in[1] = tv(ctx, KILN_F16, "2,2", (double[]){1, 0, 0, 0});
    in[2] = tv(ctx, KILN_F16, "2,1", (double[]){4, 8});
    r = run_op(ctx, "attention_forward", 3, in, "scale=1.0986122886681098");
    if (r.kind == KILN_VALUE_TUPLE) {
        CHECK_TENSOR(kiln_value_tuple_get(r, 0), KILN_F16, "1,1", ((double[]){5}), 1e-3);
        CHECK_TENSOR(kiln_value_tuple_get(r, 1), KILN_F32, "1", ((double[]){log(4)}), 1e-6);
    }
    kiln_value_release(r);
    kiln_value o = run_op(ctx, "attention", 3, in, "scale=1.0986122886681098");
    CHECK_TENSOR(o, KILN_F16, "1,1", ((double[]){5}), 1e-3);
    kiln_value_release(o);
    /* the backward by hand: out = sum p_j v_j, so dv = p * dout and dk, dq follow the softmax */
    kiln_value bw[6] = {tv(ctx, KILN_F64, "1,2", (double[]){1, 0}), tv(ctx, KILN_F64, "2,2", (double[]){1, 0, 0, 0}),
                        tv(ctx, KILN_F64, "2,1", (double[]){4, 8}), tv(ctx, KILN_F64, "1,1", (double[]){5}),
                        tv(ctx, KILN_F64, "1", (double[]){log(4)}), tv(ctx, KILN_F64, "1,1", (double[]){2})};
    r = run_op(ctx, "attention_backward", 6, bw, "scale=1.0986122886681098");
    if (r.kind == KILN_VALUE_TUPLE) {
        /* dS_j = p_j (dout.v_j - dout.out) * scale = [3/4 (8 - 10), 1/4 (16 - 10)] * ln 3 = [-1.5, 1.5] ln 3 */
        double l3 = log(3);
        CHECK_TENSOR(kiln_value_tuple_get(r, 0), KILN_F64, "1,2", ((double[]){-1.5 * l3, 0}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(r, 1), KILN_F64, "2,2", ((double[]){-1.5 * l3, 0, 1.5 * l3, 0}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(r, 2), KILN_F64, "2,1", ((double[]){1.5, 0.5}), 1e-12);
    }
    kiln_value_release(r);
    release_all(6, bw);
    release_all(3, in);
    /* no keys: zeros and a log-sum-exp of -inf */
    in[0] = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}), in[1] = tv(ctx, KILN_F32, "0,3", NULL);
    in[2] = tv(ctx, KILN_F32, "0,2", NULL);
    r = run_op(ctx, "attention_forward", 3, in, "");
    if (r.kind == KILN_VALUE_TUPLE) {
        CHECK_TENSOR(kiln_value_tuple_get(r, 0), KILN_F32, "2,2", ((double[]){0, 0, 0, 0}), 0);
        CHECK(isinf(kiln_load_f64(KILN_F32, kiln_value_tuple_get(r, 1).tensor->data, 0)));
    }
    kiln_value_release(r);
    release_all(3, in);
    kiln_context_free(ctx);
}

TEST(attention_gradcheck) {
    GRADCHECK("def @f(%q: f64[2, 3, 4], %k: f64[2, 5, 4], %v: f64[2, 5, 3], %w: f64[2, 3, 3]) { "
              "let %o = attention(%q, %k, %v) let %z = multiply(%o, %w) return %z }", -0.5);
    GRADCHECK("def @f(%q: f64[4, 2], %k: f64[3, 2], %v: f64[3, 2], %w: f64[4, 2]) { "
              "let %o = attention(%q, %k, %v, causal=true, scale=0.7) let %z = multiply(%o, %w) return %z }", -0.5);
    GRADCHECK("def @f(%q: f64[1, 2, 3, 4], %k: f64[1, 2, 5, 4], %v: f64[1, 2, 5, 4], %w: f64[1, 2, 3, 4]) { "
              "let %o = attention(%q, %k, %v, causal=true) let %z = multiply(%o, %w) return %z }", -0.5);
    /* the log-sum-exp result used too: its adjoint reaches attention_backward as dlse */
    GRADCHECK("def @f(%q: f64[2, 3, 4], %k: f64[2, 3, 4], %v: f64[2, 3, 2], %w: f64[2, 3, 2]) { "
              "let %r = attention_forward(%q, %k, %v, causal=true) let %o = get(%r, index=0) let %l = get(%r, index=1) "
              "let %z = multiply(%o, %w) let %s = sum(%z) let %l2 = multiply(%l, %l) let %t = sum(%l2) "
              "let %u = add(%s, %t) return %u }", -0.5);
}

TEST(attention_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[7] = {tv(ctx, KILN_F32, "2,3", NULL), tv(ctx, KILN_F32, "4,2", NULL), tv(ctx, KILN_F32, "4,2", NULL)}, r = {0};
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention", 3, in, "", &r), KILN_ERR_TYPE,
              "expected q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with equal leading dims, got q f32[2, 3], k f32[4, 2]");
    release_all(3, in);
    in[0] = tv(ctx, KILN_F32, "1,2,3", NULL), in[1] = tv(ctx, KILN_F32, "2,4,3", NULL), in[2] = tv(ctx, KILN_F32, "2,4,3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention_forward", 3, in, "", &r), KILN_ERR_TYPE, "equal leading dims");
    release_all(3, in);
    in[0] = tv(ctx, KILN_F32, "2,3", NULL), in[1] = tv(ctx, KILN_F64, "4,3", NULL), in[2] = tv(ctx, KILN_F32, "4,3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention", 3, in, "", &r), KILN_ERR_TYPE, "q, k and v must have one dtype, got q f32[2, 3] and k f64[4, 3]");
    release_all(3, in);
    in[0] = tv(ctx, KILN_F32, "3", NULL), in[1] = tv(ctx, KILN_F32, "4,3", NULL), in[2] = tv(ctx, KILN_F32, "4,3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention", 3, in, "", &r), KILN_ERR_TYPE, "q is f32[3], expected a tensor [..., T, D]");
    release_all(3, in);
    in[0] = tv(ctx, KILN_I64, "2,3", NULL), in[1] = tv(ctx, KILN_I64, "4,3", NULL), in[2] = tv(ctx, KILN_I64, "4,3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention", 3, in, "", &r), KILN_ERR_TYPE, "attention");
    release_all(3, in);
    /* backward: lse must be [..., Tq] in the compute dtype (f32 for bf16) */
    in[0] = tv(ctx, KILN_BF16, "2,3", NULL), in[1] = tv(ctx, KILN_BF16, "4,3", NULL), in[2] = tv(ctx, KILN_BF16, "4,3", NULL);
    in[3] = tv(ctx, KILN_BF16, "2,3", NULL), in[4] = tv(ctx, KILN_BF16, "2", NULL), in[5] = tv(ctx, KILN_BF16, "2,3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention_backward", 6, in, "", &r), KILN_ERR_TYPE, "lse is bf16[2], expected f32[2]");
    kiln_value_release(in[4]);
    in[4] = tv(ctx, KILN_F32, "2", NULL), in[6] = tv(ctx, KILN_F32, "3", NULL);
    CHECK_ERR(ctx, kiln_op_run(ctx, "attention_backward", 7, in, "", &r), KILN_ERR_TYPE, "dlse is f32[3], expected f32[2]");
    release_all(7, in);
    kiln_context_free(ctx);
}

TEST(attention_cost) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%q: f32[2, 3, 5, 16], %k: f32[2, 3, 7, 16], %v: f32[2, 3, 7, 16], %l: f32[2, 3, 5]) {\n"
        "  let %r = attention_forward(%q, %k, %v, causal=true)\n"
        "  let %o = get(%r, index=0)\n"
        "  let %g = attention_backward(%q, %k, %v, %o, %l, %o)\n"
        "  let %a = attention(%q, %k, %v)\n"
        "  return %g, %a\n}\n", "cost.kir");
    CHECK(m != NULL);
    if (m) {
        const kiln_node *fwd = kiln_module_function(m, "f")->body->first, *bwd = fwd->next->next, *comp = bwd->next;
        double flops = 4.0 * 2 * 3 * 5 * 7 * 16;
        CHECK_NEAR(kiln_node_flops(fwd), flops, 1e-12);
        CHECK_NEAR(kiln_node_flops(bwd), 2.5 * flops, 1e-12);
        CHECK_NEAR(kiln_node_flops(comp), flops, 1e-12);
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
}

/* ---- CUDA ------------------------------------------------------------------------------------ */
TEST(attention_cuda_compiles_with_nvrtc) {
    char why[512] = "";
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    if (!be) {
        printf("  skip: attention_cuda_compiles_with_nvrtc: %s\n", why);
        return;
    }
    void *image = NULL;
    size_t size = 0;
    if (be->nvrtc_compile(kiln_cuda_attention_src, 90, NULL, 0, &image, &size))
        test_fail(__FILE__, __LINE__, "NVRTC on cuda_attention.cu for sm_90: %s", be->last_error());
    CHECK(size > 0);
    if (image) be->free_image(image);
}


TEST(attention_cuda_supports) {
    static const struct { const char *params; bool ok; } cases[] = {
        {"%q: f32[2, 5, 64], %k: f32[2, 7, 64], %v: f32[2, 7, 64]", true},
        {"%q: bf16[5, 128], %k: bf16[7, 128], %v: bf16[7, 128]", true},
        {"%q: f16[1, 2, 5, 8], %k: f16[1, 2, 7, 8], %v: f16[1, 2, 7, 8]", true},
        {"%q: f32[5, 256], %k: f32[7, 256], %v: f32[7, 256]", true},
        {"%q: f32[5, 16], %k: f32[7, 16], %v: f32[7, 8]", true},
        {"%q: f64[5, 64], %k: f64[7, 64], %v: f64[7, 64]", false}, /* the reference kernel */
        {"%q: f32[5, 16], %k: f32[0, 16], %v: f32[0, 16]", false}, /* no keys: the host */
        {"%q: f32[0, 5, 16], %k: f32[0, 7, 16], %v: f32[0, 7, 16]", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_context *ctx = kiln_context_new();
        char text[512];
        snprintf(text, sizeof text, "def @f(%s) { let %%r = attention_forward(%%q, %%k, %%v) return %%r }", cases[i].params);
        kiln_module *m = kiln_module_parse(ctx, text, "supports.kir");
        CHECK(m != NULL);
        if (m && (cuda_check_impl(kiln_module_function(m, "f")->body->first, KILN_DIALECT_CUDA) != NULL) != cases[i].ok)
            test_fail(__FILE__, __LINE__, "supports(%s) should be %d", cases[i].params, cases[i].ok);
        kiln_module_free(m);
        kiln_context_free(ctx);
    }
}

/* attention_forward and attention_backward (with a dlse) on the GPU against the reference kernels
 * (tolerance per element, or with tol_of_max relative to each result's largest magnitude). */
static void check_cuda_case(const attn_case *c, kiln_dtype dt, bool causal, double tol, bool tol_of_max) {
    kiln_context *ctx = kiln_context_new();
    char sq[64], sk[64], sv[64], so[64], sl[64], text[1024];
    case_shape(c, c->tq, c->d, sq, sizeof sq), case_shape(c, c->tk, c->d, sk, sizeof sk);
    case_shape(c, c->tk, c->dv, sv, sizeof sv), case_shape(c, c->tq, c->dv, so, sizeof so);
    int64_t rows[3] = {c->b[0], c->b[1], 0}; /* the log-sum-exp's [b..., Tq] */
    rows[c->nb] = c->tq;
    kiln_shape_str(c->nb + 1, rows, sl, sizeof sl);
    const char *n = kiln_dtype_name(dt), *cs = causal ? "true" : "false";
    snprintf(text, sizeof text, "def @f(%%q: %s%s, %%k: %s%s, %%v: %s%s, %%do: %s%s, %%dl: f32%s) {\n"
             "  let %%r = attention_forward(%%q, %%k, %%v, causal=%s)\n  let %%o = get(%%r, index=0)\n  let %%l = get(%%r, index=1)\n"
             "  let %%g = attention_backward(%%q, %%k, %%v, %%o, %%l, %%do, %%dl, causal=%s)\n  return %%g\n}\n",
             n, sq, n, sk, n, sv, n, so, sl, cs, cs);
    kiln_module *m = kiln_module_parse(ctx, text, "cuda_attention.kir");
    kiln_function *f = m ? kiln_module_function(m, "f") : NULL;
    if (!f) {
        test_fail(__FILE__, __LINE__, "parse: %s\n%s", kiln_error_message(ctx), text);
        kiln_context_free(ctx);
        return;
    }
    unsigned seed = 99u + (unsigned)c->tq;
    kiln_value in[5], in64[5], fw = {0};
    for (int i = 0; i < 5; i++) rand_pair(ctx, i == 4 ? KILN_F32 : dt, f->params[i]->type, &seed, &in[i], &in64[i]);
    char attrs[32];
    snprintf(attrs, sizeof attrs, "causal=%s", cs);
    CHECK_OK(ctx, kiln_op_run(ctx, "attention_forward", 3, in, attrs, &fw));
    cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUDA, "attention_forward", 3, in, attrs, tol, tol_of_max);
    if (fw.kind == KILN_VALUE_TUPLE) {
        kiln_value bin[7] = {in[0], in[1], in[2], kiln_value_tuple_get(fw, 0), kiln_value_tuple_get(fw, 1), in[3], in[4]};
        cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUDA, "attention_backward", 7, bin, attrs, tol, tol_of_max);
    }
    kiln_value_release(fw);
    release_all(5, in), release_all(5, in64);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(attention_cuda_vs_reference) {
    if (!cuda_check_gpu("attention_cuda_vs_reference")) return;
    static const attn_case gpu_cases[] = {
        {0, {0}, 5, 7, 16, 16}, {1, {3}, 9, 4, 32, 32}, {2, {2, 3}, 6, 6, 64, 64}, {1, {2}, 70, 130, 16, 16},
        {2, {1, 2}, 130, 66, 128, 128}, {1, {3}, 33, 33, 24, 24}, {2, {1, 2}, 1024, 1024, 64, 64},
        {1, {2}, 40, 50, 256, 256}, {1, {3}, 70, 60, 32, 16},
    };
    static const kiln_dtype dts[3] = {KILN_F32, KILN_BF16, KILN_F16};
    static const double tols[3] = {2e-4, 2e-2, 5e-3};
    bool tf32 = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false); /* f32 through the GEMM path in full f32 for the tight tolerance (f16 / bf16: flash) */
    for (size_t i = 0; i < sizeof gpu_cases / sizeof gpu_cases[0]; i++)
        for (int t = 0; t < 3; t++)
            for (int causal = 0; causal < 2; causal++) check_cuda_case(&gpu_cases[i], dts[t], causal, tols[t], false);
    /* a 1 MiB scratch bound: chunks of 3 of the 6 matrices, and chunks of one matrix over the bound */
    static const attn_case chunked[] = {{1, {6}, 200, 150, 32, 32}, {1, {2}, 600, 520, 16, 16}};
    setenv("KILN_CUDA_ATTENTION_SCRATCH_MB", "1", 1);
    for (size_t i = 0; i < sizeof chunked / sizeof chunked[0]; i++)
        for (int t = 0; t < 3; t++) check_cuda_case(&chunked[i], dts[t], true, tols[t], false);
    unsetenv("KILN_CUDA_ATTENTION_SCRATCH_MB");
    /* TF32 tensor cores (10-bit mantissas) for f32: a looser tolerance */
    kiln_cuda_set_tf32(true);
    for (int causal = 0; causal < 2; causal++) check_cuda_case(&gpu_cases[6], KILN_F32, causal, 1e-2, false);
    kiln_cuda_set_tf32(tf32);
}

/* The flash kernels (TF32 on, the default; f16 / bf16 always) against the reference kernels on
 * the host, over batches of 1 and 3 heads, ragged tiles (T = 1, 17, 100, 257), D = 16 / 64 /
 * 128, causal or not, Tq < Tk and Tq > Tk. Tolerance relative to each result's largest
 * magnitude: TF32 keeps 10 mantissa bits (rounding ~5e-4 per operand, products of up to 257
 * terms), so f32 gets 1e-2; f16 / bf16 results are also rounded to the dtype (bf16: 8 bits), so
 * 1e-2 and 2e-2. The reference computes f32 / f16 / bf16 in f32 (its own error ~1e-6 is far
 * below these). */
TEST(attention_cuda_flash) {
    if (!cuda_check_gpu("attention_cuda_flash")) return;
    static const attn_case cases[] = {
        {1, {1}, 1, 1, 16, 16},      {1, {3}, 17, 17, 16, 16},    {1, {1}, 64, 64, 64, 64},    {1, {3}, 100, 100, 64, 64},
        {1, {1}, 257, 257, 128, 128}, {1, {3}, 17, 100, 64, 64},   {1, {1}, 100, 17, 128, 128}, {1, {3}, 257, 64, 16, 16},
        {1, {1}, 64, 257, 128, 128}, {1, {3}, 1, 100, 128, 128},  {1, {3}, 100, 1, 64, 64},    {2, {1, 3}, 257, 257, 64, 64},
    };
    static const kiln_dtype dts[3] = {KILN_F32, KILN_F16, KILN_BF16};
    static const double tols[3] = {1e-2, 1e-2, 2e-2};
    bool tf32 = kiln_cuda_tf32();
    kiln_cuda_set_tf32(true);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++)
            for (int causal = 0; causal < 2; causal++) check_cuda_case(&cases[i], dts[t], causal, tols[t], true);
    kiln_cuda_set_tf32(tf32);
}
