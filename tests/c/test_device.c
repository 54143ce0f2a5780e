/* test_device.c — devices and programs compiled for CUDA: without a GPU, parsing devices, the
 * "CUDA is unavailable" errors and dialect/device mismatches; with one, tensors copied both
 * ways, a training step (forward, autodiff, update) on the GPU against the interpreter, ops run
 * on the host inside a CUDA program, donation in place, CUDA graph replay and memory pools. */
#include "test.h"
#include "runtime/vm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The GPU, or NULL after printing why this test skips. */
static bool have_gpu(const char *test) {
    char why[600];
    if (kiln_cuda_available(why, sizeof why)) return true;
    printf("  skip %s: no CUDA: %s\n", test, why);
    return false;
}

TEST(device_parse_and_unavailable) {
    kiln_context *ctx = kiln_context_new();
    kiln_device d = {KILN_DEVICE_CUDA, 3};
    CHECK_OK(ctx, kiln_device_parse(ctx, "cpu", &d));
    CHECK(d.type == KILN_DEVICE_CPU);
    CHECK_OK(ctx, kiln_device_parse(ctx, NULL, &d));
    char buf[64];
    CHECK_STR(kiln_device_str(d, buf, sizeof buf), "cpu");
    CHECK_STR(kiln_device_str((kiln_device){KILN_DEVICE_CUDA, 2}, buf, sizeof buf), "cuda:2");
    CHECK_ERR(ctx, kiln_device_parse(ctx, "gpu", &d), KILN_ERR_VALUE, "expected \"cpu\", \"cuda\" or \"cuda:N\"");
    CHECK_ERR(ctx, kiln_device_parse(ctx, "cuda:x", &d), KILN_ERR_VALUE, "cuda:N");
    char why[600];
    if (!kiln_cuda_available(why, sizeof why)) {
        CHECK(why[0] != 0);
        CHECK(kiln_cuda_device_count() == 0);
        CHECK_ERR(ctx, kiln_device_parse(ctx, "cuda", &d), KILN_ERR_UNSUPPORTED, "CUDA is unavailable: ");
        CHECK(strstr(kiln_error_message(ctx), why) != NULL);
        kiln_memory_stats s;
        CHECK_ERR(ctx, kiln_device_memory_get_stats(ctx, (kiln_device){KILN_DEVICE_CUDA, 0}, &s), KILN_ERR_UNSUPPORTED,
                  "CUDA is unavailable");
        CHECK(kiln_tensor_new_on(ctx, KILN_F32, 1, (int64_t[]){4}, (kiln_device){KILN_DEVICE_CUDA, 0}) == NULL);
        CHECK(strstr(kiln_error_message(ctx), "CUDA is unavailable") != NULL);
    } else {
        CHECK(kiln_cuda_device_count() > 0);
        CHECK_ERR(ctx, kiln_device_parse(ctx, "cuda:999", &d), KILN_ERR_VALUE, "no device cuda:999");
    }
    /* host tensors: to(cpu) is the same tensor; copy_into checks shapes */
    kiln_tensor *a = kiln_tensor_from_data(ctx, KILN_F32, 1, (int64_t[]){2}, (float[]){1, 2});
    kiln_tensor *b = kiln_tensor_new(ctx, KILN_F32, 1, (int64_t[]){3});
    kiln_tensor *same = kiln_tensor_to(ctx, a, (kiln_device){KILN_DEVICE_CPU, 0});
    CHECK(same == a);
    CHECK(kiln_tensor_device(a).type == KILN_DEVICE_CPU);
    CHECK_ERR(ctx, kiln_tensor_copy_into(ctx, b, a), KILN_ERR_TYPE, "dtype and shape must match");
    kiln_tensor_release(same), kiln_tensor_release(a), kiln_tensor_release(b);
    kiln_context_free(ctx);
}

static const char *const MLP_STEP =
    "def @loss(%x: f32[8, 16], %w1: f32[32, 16], %b1: f32[32], %w2: f32[4, 32], %b2: f32[4], %y: i64[8]) -> f32[] {\n"
    "  let %a = dense(%x, %w1, %b1)\n"
    "  let %h = relu(%a)\n"
    "  let %z = dense(%h, %w2, %b2)\n"
    "  let %l = cross_entropy(%z, %y)\n"
    "  return %l\n"
    "}\n";

TEST(device_compile_errors_without_cuda) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, MLP_STEP, "mlp.kir");
    CHECK(m != NULL);
    kiln_function *f = kiln_module_function(m, "loss");
    kiln_compile_options o = kiln_compile_defaults();
    kiln_program *p = NULL;
    o.dialects = "cuda";
    CHECK_ERR(ctx, kiln_compile(f, &o, &p), KILN_ERR_VALUE, "dialect 'cuda' runs on CUDA; this program runs on the CPU");
    char why[600];
    if (!kiln_cuda_available(why, sizeof why)) {
        o = kiln_compile_defaults();
        o.device = "cuda";
        CHECK_ERR(ctx, kiln_compile(f, &o, &p), KILN_ERR_UNSUPPORTED, "CUDA is unavailable");
    } else {
        o = kiln_compile_defaults();
        o.device = "cuda";
        o.dialects = "blas";
        CHECK_ERR(ctx, kiln_compile(f, &o, &p), KILN_ERR_VALUE, "dialect 'blas' runs on the CPU; this program runs on CUDA");
    }
    CHECK(p == NULL);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* ---- with a GPU ---- */
/* A copy of v with every tensor on the host. */
static kiln_value to_host(kiln_context *ctx, kiln_value v) {
    if (v.kind == KILN_VALUE_TENSOR) return kiln_value_tensor(kiln_tensor_to(ctx, v.tensor, (kiln_device){KILN_DEVICE_CPU, 0}));
    if (v.kind != KILN_VALUE_TUPLE) return v;
    kiln_value parts[64];
    int n = kiln_value_tuple_size(v);
    for (int i = 0; i < n && i < 64; i++) parts[i] = to_host(ctx, kiln_value_tuple_get(v, i));
    kiln_value r = kiln_value_tuple(ctx, n, parts);
    for (int i = 0; i < n && i < 64; i++) kiln_value_release(parts[i]);
    return r;
}

/* Largest |a - b| / (1 + |a|) over the leaves (inf when the structures differ). */
static double max_rel_diff(kiln_value a, kiln_value b) {
    if (a.kind != b.kind) return INFINITY;
    double worst = 0;
    switch (a.kind) {
    case KILN_VALUE_TUPLE:
        if (kiln_value_tuple_size(a) != kiln_value_tuple_size(b)) return INFINITY;
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            worst = fmax(worst, max_rel_diff(kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i)));
        return worst;
    case KILN_VALUE_TENSOR:
        if (a.tensor->numel != b.tensor->numel || a.tensor->dtype != b.tensor->dtype) return INFINITY;
        for (int64_t i = 0; i < a.tensor->numel; i++) {
            double x = kiln_load_f64(a.tensor->dtype, a.tensor->data, i), y = kiln_load_f64(b.tensor->dtype, b.tensor->data, i);
            if (!(x == y)) worst = fmax(worst, isnan(x) || isnan(y) ? INFINITY : fabs(x - y) / (1 + fabs(x)));
        }
        return worst;
    case KILN_VALUE_FLOAT: return fabs(a.f - b.f) / (1 + fabs(a.f));
    case KILN_VALUE_INT: return a.i == b.i ? 0 : INFINITY;
    case KILN_VALUE_BOOL: return a.b == b.b ? 0 : INFINITY;
    default: return 0;
    }
}

/* Compiles @fn of text for cuda (options o, device set here), runs it `runs` times on random
 * inputs and compares every run with the interpreter on the host (relative tol). */
static void cuda_agrees(const char *file, int line, const char *text, const char *fn, bool grad, bool graph, double tol) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "cuda.kir");
    kiln_function *f = m ? kiln_module_function(m, fn) : NULL;
    if (f && grad) {
        int wrt[16], n_wrt = 0;
        for (int i = 0; i < f->n_params && n_wrt < 16; i++)
            if (kiln_dtype_is_float(f->params[i]->type->dtype)) wrt[n_wrt++] = i;
        f = kiln_autodiff(f, n_wrt, wrt, "grad");
    }
    if (!f) {
        test_fail(file, line, "setup: %s", kiln_error_message(ctx));
        kiln_module_free(m);
        kiln_context_free(ctx);
        return;
    }
    kiln_value in[16];
    unsigned seed = 7;
    for (int i = 0; i < f->n_params; i++) in[i] = kiln_value_tensor(random_tensor(ctx, f->params[i]->type, &seed, -0.5, 4));
    kiln_value want;
    kiln_compile_options o = kiln_compile_defaults();
    o.device = "cuda";
    o.cuda_graph = graph;
    kiln_program *p = NULL;
    if (kiln_function_run(f, f->n_params, in, &want)) test_fail(file, line, "interpreter: %s", kiln_error_message(ctx));
    else if (kiln_compile(f, &o, &p)) test_fail(file, line, "compile for cuda: %s", kiln_error_message(ctx));
    else {
        for (int run = 0; run < 4; run++) {
            kiln_value got;
            if (kiln_program_run(p, f->n_params, in, &got)) {
                test_fail(file, line, "run %d on cuda: %s", run, kiln_error_message(ctx));
                break;
            }
            kiln_value host = to_host(ctx, got);
            double d = max_rel_diff(want, host);
            if (!(d <= tol)) test_fail(file, line, "run %d on cuda differs from the interpreter by %g (tol %g)", run, d, tol);
            kiln_value_release(host), kiln_value_release(got);
        }
        if (graph && !p->graph && p->graph_ok) test_fail(file, line, "cuda_graph: no graph was captured");
    }
    kiln_program_free(p);
    kiln_value_release(want);
    for (int i = 0; i < f->n_params; i++) kiln_value_release(in[i]);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(device_cuda_mlp_step) {
    if (!have_gpu("device_cuda_mlp_step")) return;
    setenv("KILN_CUDA_TF32", "0", 1);
    cuda_agrees(__FILE__, __LINE__, MLP_STEP, "loss", false, false, 1e-4);
    cuda_agrees(__FILE__, __LINE__, MLP_STEP, "loss", true, false, 1e-4);
    cuda_agrees(__FILE__, __LINE__, MLP_STEP, "loss", true, true, 1e-4); /* replayed as a CUDA graph */
}

/* Attention-like: transposes, batched matmul, softmax, an embedding lookup and its gradient. */
TEST(device_cuda_attention_step) {
    if (!have_gpu("device_cuda_attention_step")) return;
    setenv("KILN_CUDA_TF32", "0", 1);
    const char *text =
        "def @f(%emb: f32[10, 8], %idx: i64[2, 6], %wq: f32[8, 8]) -> f32[] {\n"
        "  let %x = take(%emb, %idx, axis=0)\n"
        "  let %q = matmul(%x, %wq)\n"
        "  let %s = matmul(%q, %x, transpose_b=true)\n"
        "  let %p = softmax(%s, axis=-1)\n"
        "  let %o = matmul(%p, %x)\n"
        "  let %t = transpose(%o, axes=[0, 2, 1])\n"
        "  let %t2 = multiply(%t, %t)\n"
        "  let %r = sum(%t2)\n"
        "  return %r\n"
        "}\n";
    cuda_agrees(__FILE__, __LINE__, text, "f", true, false, 1e-4);
    cuda_agrees(__FILE__, __LINE__, text, "f", true, true, 1e-4);
}

/* An op without a CUDA kernel (sort) runs on the host inside the CUDA program; a while loop
 * reads its condition from the device. */
TEST(device_cuda_host_fallback_and_control_flow) {
    if (!have_gpu("device_cuda_host_fallback_and_control_flow")) return;
    const char *text =
        "def @f(%x: f32[4, 5]) -> f32[4, 5] {\n"
        "  let %s = sort(%x, axis=-1)\n"
        "  let %r = while (%i = 0, %a = %s) cond {\n"
        "    let %go = less(%i, 3)\n"
        "    yield %go\n"
        "  } do {\n"
        "    let %i2 = add(%i, 1)\n"
        "    let %a2 = multiply(%a, 1.5)\n"
        "    yield %i2, %a2\n"
        "  }\n"
        "  let %o = get(%r, index=1)\n"
        "  return %o\n"
        "}\n";
    cuda_agrees(__FILE__, __LINE__, text, "f", false, true, 1e-6);
}

/* Donation on the GPU: the parameter (a device tensor) is updated in place; a host input is
 * staged and gets its new value back. */
TEST(device_cuda_donation_and_pools) {
    if (!have_gpu("device_cuda_donation_and_pools")) return;
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @step(%w: f32[64], %g: f32[64]) -> (f32[], f32[64]) {\n"
                                       "  let %s = sum(%w)\n"
                                       "  let %d = multiply(%g, 0.5)\n"
                                       "  let %n = subtract(%w, %d)\n"
                                       "  return %s, %n\n"
                                       "}\n",
                                       "step.kir");
    kiln_function *f = kiln_module_function(m, "step");
    kiln_compile_options o = kiln_compile_defaults();
    o.device = "cuda";
    o.n_donate = 1;
    o.donate = (const int[][2]){{1, 0}};
    kiln_program *p = NULL;
    CHECK_OK(ctx, kiln_compile(f, &o, &p));
    if (!p) {
        kiln_module_free(m);
        kiln_context_free(ctx);
        return;
    }
    kiln_device gpu = {KILN_DEVICE_CUDA, 0}, cpu = {KILN_DEVICE_CPU, 0};
    float w0[64], g0[64];
    for (int i = 0; i < 64; i++) w0[i] = (float)i, g0[i] = 1.0f;
    kiln_tensor *wh = kiln_tensor_from_data(ctx, KILN_F32, 1, (int64_t[]){64}, w0);
    kiln_tensor *g = kiln_tensor_from_data(ctx, KILN_F32, 1, (int64_t[]){64}, g0);
    kiln_tensor *wd = kiln_tensor_to(ctx, wh, gpu);
    CHECK(wd && kiln_tensor_device(wd).type == KILN_DEVICE_CUDA);
    for (int run = 0; p && wd && run < 3; run++) {
        kiln_value out;
        CHECK_OK(ctx, kiln_program_run(p, 2, (kiln_value[]){kiln_value_tensor(wd), kiln_value_tensor(g)}, &out));
        if (out.kind != KILN_VALUE_TUPLE) break;
        CHECK(kiln_value_tuple_get(out, 1).tensor == wd); /* updated in place */
        kiln_value_release(out);
    }
    kiln_tensor *back = wd ? kiln_tensor_to(ctx, wd, cpu) : NULL;
    for (int i = 0; back && i < 64; i++) CHECK_NEAR(((float *)back->data)[i], i - 1.5, 1e-6);
    /* the same program with the parameter on the host: staged, and written back */
    kiln_value out;
    CHECK_OK(ctx, kiln_program_run(p, 2, (kiln_value[]){kiln_value_tensor(wh), kiln_value_tensor(g)}, &out));
    CHECK(out.kind == KILN_VALUE_TUPLE && kiln_value_tuple_get(out, 1).tensor == wh);
    CHECK_NEAR(((float *)wh->data)[10], 9.5, 1e-6);
    kiln_value_release(out);
    /* pools: an allocation shows in the stats; the page pool reuses a freed block */
    kiln_memory_stats s0, s1, s2;
    CHECK_OK(ctx, kiln_device_memory_set_pool(ctx, gpu, KILN_POOL_PAGE));
    CHECK_OK(ctx, kiln_device_memory_get_stats(ctx, gpu, &s0));
    kiln_tensor *big = kiln_tensor_new_on(ctx, KILN_F32, 1, (int64_t[]){1 << 20}, gpu);
    CHECK_OK(ctx, kiln_device_memory_get_stats(ctx, gpu, &s1));
    CHECK(s1.bytes_in_use >= s0.bytes_in_use + (4 << 20));
    kiln_tensor_release(big);
    big = kiln_tensor_new_on(ctx, KILN_F32, 1, (int64_t[]){1 << 20}, gpu);
    CHECK_OK(ctx, kiln_device_memory_get_stats(ctx, gpu, &s2));
    CHECK(s2.n_reused > s1.n_reused);
    kiln_tensor_release(big);
    CHECK_OK(ctx, kiln_device_memory_set_pool(ctx, gpu, KILN_POOL_NONE));
    big = kiln_tensor_new_on(ctx, KILN_F32, 1, (int64_t[]){1 << 20}, gpu);
    CHECK(big != NULL);
    kiln_tensor_release(big);
    CHECK_OK(ctx, kiln_device_memory_set_pool(ctx, gpu, KILN_POOL_PAGE));
    char desc[256];
    CHECK_OK(ctx, kiln_device_describe(ctx, gpu, desc, sizeof desc));
    printf("  cuda:0 = %s\n", desc);
    kiln_tensor_release(back), kiln_tensor_release(wd), kiln_tensor_release(wh), kiln_tensor_release(g);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* Horizontal batching: independent updates of several parameters by one generated kernel run as
 * one launch of its _multi variant; results match the interpreter. */
TEST(device_cuda_multi_tensor_update) {
    if (!have_gpu("device_cuda_multi_tensor_update")) return;
    const char *text =
        "def @f(%a: f32[100], %b: f32[36, 5], %c: f32[4096], %ga: f32[100], %gb: f32[36, 5], %gc: f32[4096]) "
        "-> (f32[100], f32[36, 5], f32[4096]) {\n"
        "  let %sa = multiply(%ga, 0.1)\n  let %na = subtract(%a, %sa)\n"
        "  let %sb = multiply(%gb, 0.1)\n  let %nb = subtract(%b, %sb)\n"
        "  let %sc = multiply(%gc, 0.1)\n  let %nc = subtract(%c, %sc)\n"
        "  return %na, %nb, %nc\n"
        "}\n";
    cuda_agrees(__FILE__, __LINE__, text, "f", false, false, 1e-6);
    cuda_agrees(__FILE__, __LINE__, text, "f", false, true, 1e-6);
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "multi.kir");
    kiln_compile_options o = kiln_compile_defaults();
    o.device = "cuda";
    o.n_donate = 3;
    o.donate = (const int[][2]){{0, 0}, {1, 1}, {2, 2}};
    kiln_program *p = NULL;
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "f"), &o, &p));
    int most = 0;
    for (int i = 0; p && i < p->main->n_instr; i++)
        if (p->main->instr[i].n_multi > most) most = p->main->instr[i].n_multi;
    CHECK_INT(most, 3);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
