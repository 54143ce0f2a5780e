/* test_vm.c — the compiled program against the interpreter (every opt level, control flow,
 * recursion, lists), the memory plan (arena sizes of known programs, donation in place, no
 * allocation after the first run), the analysis, the printed program and compile errors. */
#include "test.h"
#include "runtime/vm.h"
#include <math.h>
#include <string.h>

/* Every leaf of a and b equal within tol (relative to 1 + |a|). */
static bool same_values(kiln_value a, kiln_value b, double tol) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case KILN_VALUE_TUPLE:
        if (kiln_value_tuple_size(a) != kiln_value_tuple_size(b)) return false;
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            if (!same_values(kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i), tol)) return false;
        return true;
    case KILN_VALUE_TENSOR:
        if (a.tensor->dtype != b.tensor->dtype || a.tensor->numel != b.tensor->numel) return false;
        for (int64_t i = 0; i < a.tensor->numel; i++) {
            double x = kiln_load_f64(a.tensor->dtype, a.tensor->data, i), y = kiln_load_f64(b.tensor->dtype, b.tensor->data, i);
            if (!(x == y || fabs(x - y) <= tol * (1 + fabs(x)))) return false;
        }
        return true;
    case KILN_VALUE_INT: return a.i == b.i;
    case KILN_VALUE_FLOAT: return fabs(a.f - b.f) <= tol * (1 + fabs(a.f));
    case KILN_VALUE_BOOL: return a.b == b.b;
    default: return true;
    }
}

/* Parses text, runs @fn in the interpreter and compiled at opt levels 0..2 (twice each: the
 * second run reuses the instance), and checks the results agree. */
static void vm_agrees(const char *file, int line, const char *text, const char *fn, int n, const kiln_value *in, double tol) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "vm.kir");
    if (!m) {
        test_fail(file, line, "parse: %s", kiln_error_message(ctx));
        kiln_context_free(ctx);
        return;
    }
    kiln_function *f = kiln_module_function(m, fn);
    kiln_value want;
    if (kiln_function_run(f, n, in, &want)) test_fail(file, line, "interpreter: %s", kiln_error_message(ctx));
    for (int level = 0; level <= 2; level++) {
        kiln_compile_options o = kiln_compile_defaults();
        o.opt_level = level;
        kiln_program *p;
        if (kiln_compile(f, &o, &p)) {
            test_fail(file, line, "compile -O%d: %s", level, kiln_error_message(ctx));
            continue;
        }
        for (int rep = 0; rep < 2; rep++) {
            kiln_value got;
            if (kiln_program_run(p, n, in, &got)) {
                test_fail(file, line, "VM -O%d: %s", level, kiln_error_message(ctx));
                break;
            }
            if (!same_values(want, got, tol)) test_fail(file, line, "VM -O%d run %d differs from the interpreter", level, rep);
            kiln_value_release(got);
        }
        kiln_program_free(p);
    }
    kiln_value_release(want);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
#define VM_AGREES(text, fn, n, in, tol) vm_agrees(__FILE__, __LINE__, (text), (fn), (n), (in), (tol))

static kiln_value ramp(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape, double scale) {
    kiln_tensor *t = kiln_tensor_new(ctx, dt, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) kiln_store_f64(t->dtype, t->data, i, scale * sin(0.37 * (double)i + 0.1));
    return kiln_value_tensor(t);
}

TEST(vm_mlp_matches_interpreter) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[4] = {ramp(ctx, KILN_F32, 2, (int64_t[]){8, 16}, 1), ramp(ctx, KILN_F32, 2, (int64_t[]){32, 16}, 0.3),
                        ramp(ctx, KILN_F32, 1, (int64_t[]){32}, 0.1), ramp(ctx, KILN_F32, 2, (int64_t[]){32, 4}, 0.3)};
    VM_AGREES("def @mlp(%x: f32[8, 16], %w1: f32[32, 16], %b1: f32[32], %w2: f32[32, 4]) {\n"
              "  let %h = dense(%x, %w1, %b1)\n  let %a = gelu(%h)\n  let %o = matmul(%a, %w2)\n"
              "  let %p = softmax(%o)\n  let %s = sum(%p, axes=[1])\n  return %p, %s\n}\n",
              "mlp", 4, in, 1e-5);
    release_all(4, in);
    kiln_context_free(ctx);
}

TEST(vm_control_flow_calls_and_tuples) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[3] = {ramp(ctx, KILN_F32, 2, (int64_t[]){2, 3}, 1), kiln_value_int(3), kiln_value_bool(true)};
    const char *text = "def @main(%x: f32[2, 3], %n: int, %flag: bool) {\n"
                       "  let %a = add(%x, 1.0)\n  let %c = @helper(%a, %n)\n"
                       "  let %r = if (%flag) {\n    let %t = neg(%c)\n    yield %t, %a\n  } else {\n    yield %a, %c\n  }\n"
                       "  let %w = while (%i = 0, %acc = %x) cond {\n    let %more = less(%i, %n)\n    yield %more\n"
                       "  } do {\n    let %i2 = add(%i, 1)\n    let %acc2 = multiply(%acc, 2.0)\n    let %acc3 = exp(%acc2)\n"
                       "    let %acc4 = tanh(%acc3)\n    yield %i2, %acc4\n  }\n"
                       "  let %k = constant(value=f32[3]{1.0, 2.0, 3.0})\n  let %s = add(%a, %k)\n"
                       "  return %r, %w, %s\n}\n"
                       "def @helper(%y: f32[2, 3], %m: int) {\n  let %z = multiply(%y, %m)\n  return %z\n}\n";
    VM_AGREES(text, "main", 3, in, 1e-6);
    in[2] = kiln_value_bool(false);
    in[1] = kiln_value_int(0);
    VM_AGREES(text, "main", 3, in, 1e-6);
    /* a loop whose carried values swap places every iteration (a parallel assignment) */
    kiln_value v4[2] = {ramp(ctx, KILN_F32, 1, (int64_t[]){4}, 1), ramp(ctx, KILN_F32, 1, (int64_t[]){4}, 2)};
    VM_AGREES("def @swap(%x: f32[4], %y: f32[4]) {\n  let %w = while (%i = 0, %a = %x, %b = %y) cond {\n"
              "    let %c = less(%i, 3)\n    yield %c\n  } do {\n    let %j = add(%i, 1)\n    yield %j, %b, %a\n  }\n"
              "  return %w\n}\n",
              "swap", 2, v4, 0);
    release_all(2, v4);
    release_all(1, in);
    kiln_context_free(ctx);
}

TEST(vm_recursion_and_loop_gradients) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {ramp(ctx, KILN_F64, 1, (int64_t[]){5}, 1), kiln_value_int(6)};
    VM_AGREES("def @pow(%x: f64[5], %n: int) -> f64[5] {\n  let %z = less_equal(%n, 0)\n  let %r = if (%z) {\n"
              "    let %o = ones_like(%x)\n    yield %o\n  } else {\n    let %m = subtract(%n, 1)\n"
              "    let %p = @pow(%x, %m)\n    let %q = multiply(%p, %x)\n    yield %q\n  }\n  return %r\n}\n",
              "pow", 2, in, 1e-12);
    /* the gradient of a loop saves its states in a list and pops them in a backward loop */
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @f(%x: f64[5], %n: int) {\n  let %w = while (%i = 0, %a = %x) cond {\n"
                                       "    let %c = less(%i, %n)\n    yield %c\n  } do {\n    let %j = add(%i, 1)\n"
                                       "    let %b = sin(%a)\n    let %d = multiply(%b, %a)\n    yield %j, %d\n  }\n"
                                       "  let %y = get(%w, index=1)\n  let %s = sum(%y)\n  return %s\n}\n",
                                       "loop.kir");
    CHECK(m != NULL);
    kiln_function *g = kiln_autodiff(kiln_module_function(m, "f"), 1, (int[]){0}, "df");
    CHECK(g != NULL);
    char *text = kiln_module_print(m, 0);
    VM_AGREES(text, "df", 2, in, 1e-12);
    kiln_free(text);
    kiln_module_free(m);
    release_all(1, in);
    kiln_context_free(ctx);
}

TEST(vm_memory_plan_reuses_buffers) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @chain(%x: f32[1024]) {\n  let %a = exp(%x)\n  let %b = sin(%a)\n"
                                       "  let %c = cos(%b)\n  let %d = tanh(%c)\n  return %d\n}\n",
                                       "chain.kir");
    kiln_compile_options o = kiln_compile_defaults();
    o.opt_level = 0; /* no fusion: four kernels, but only two buffers are ever live at once */
    kiln_program *p;
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "chain"), &o, &p));
    kiln_analysis a;
    CHECK_OK(ctx, kiln_program_analyze(p, &a));
    CHECK_INT(a.arena_bytes, 2 * 4096);
    CHECK_INT(a.n_instructions, 4);
    int64_t peak = 0;
    for (int i = 0; i < a.n_steps; i++) peak = a.high_water[i] > peak ? a.high_water[i] : peak;
    CHECK_INT(peak, a.arena_bytes);
    CHECK_INT(a.live_bytes[0], 4096);
    CHECK_INT(a.live_bytes[1], 2 * 4096);
    CHECK_NEAR(a.flops, 4 * 1024, 0);
    char *listing = kiln_program_print(p);
    CHECK(strstr(listing, "arena 8192 bytes") != NULL);
    kiln_free(listing);
    kiln_program_free(p);
    o.opt_level = 2; /* fused: one kernel, its result the only buffer */
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "chain"), &o, &p));
    CHECK_OK(ctx, kiln_program_analyze(p, &a));
    CHECK_INT(a.n_kernels, 1);
    CHECK_INT(a.arena_bytes, 4096);
    listing = kiln_program_print(p);
    CHECK(strstr(listing, "kernel @chain.k0") != NULL);
    kiln_free(listing);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(vm_donation_updates_in_place_without_allocating) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @step(%w: f32[256], %x: f32[256]) {\n  let %g = multiply(%w, %x)\n"
                                       "  let %u = multiply(%g, 0.5)\n  let %w2 = subtract(%w, %u)\n  let %l = sum(%g)\n"
                                       "  return %l, %w2\n}\n",
                                       "step.kir");
    kiln_function *f = kiln_module_function(m, "step");
    kiln_value in[2] = {ramp(ctx, KILN_F32, 1, (int64_t[]){256}, 1), ramp(ctx, KILN_F32, 1, (int64_t[]){256}, 1)};
    kiln_value want;
    CHECK_OK(ctx, kiln_function_run(f, 2, in, &want));
    kiln_compile_options o = kiln_compile_defaults();
    o.n_donate = 1;
    o.donate = (const int[][2]){{1, 0}};
    kiln_program *p;
    CHECK_OK(ctx, kiln_compile(f, &o, &p));
    kiln_value got;
    CHECK_OK(ctx, kiln_program_run(p, 2, in, &got));
    CHECK(same_values(want, got, 1e-6));
    CHECK(kiln_value_tuple_get(got, 1).tensor == in[0].tensor); /* the new weights are the old tensor */
    kiln_value_release(got);
    char *listing = kiln_program_print(p);
    CHECK(strstr(listing, "output 1 -> input 0 (in place)") != NULL);
    kiln_free(listing);
    kiln_memory_stats before, after;
    kiln_memory_get_stats(&before);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(ctx, kiln_program_run(p, 2, in, &got));
        kiln_value_release(got);
    }
    kiln_memory_get_stats(&after);
    CHECK_INT(after.n_allocs, before.n_allocs + 3); /* per run only the loss handed back; none inside */
    kiln_program_free(p);
    kiln_value_release(want);
    release_all(2, in);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(vm_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, "def @f(%x: f32[3]) {\n  let %y = exp(%x)\n  return %y\n}\n", "e.kir");
    kiln_function *f = kiln_module_function(m, "f");
    kiln_compile_options o = kiln_compile_defaults();
    kiln_program *p;
    o.dialects = "c,tpu";
    CHECK_ERR(ctx, kiln_compile(f, &o, &p), KILN_ERR_VALUE, "unknown dialect 'tpu'");
    o.dialects = "c";
    o.n_donate = 1;
    o.donate = (const int[][2]){{0, 3}};
    CHECK_ERR(ctx, kiln_compile(f, &o, &p), KILN_ERR_VALUE, "donation {output 0, input 3} out of range");
    CHECK_OK(ctx, kiln_compile(f, NULL, &p));
    kiln_value bad = ramp(ctx, KILN_F32, 1, (int64_t[]){4}, 1), out;
    CHECK_ERR(ctx, kiln_program_run(p, 1, &bad, &out), KILN_ERR_VALUE, "@f: input 0 (%x) must be f32[3], got f32[4]");
    CHECK_ERR(ctx, kiln_program_run(p, 0, NULL, &out), KILN_ERR_VALUE, "@f takes 1 inputs, got 0");
    kiln_value_release(bad);
    kiln_program_free(p);
    /* run-time kernel errors keep the op and place */
    kiln_module *m2 = kiln_module_parse(ctx, "def @g(%x: f32[3], %i: i64[2]) {\n  let %y = take(%x, %i)\n  return %y\n}\n", "g.kir");
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m2, "g"), NULL, &p));
    kiln_value args[2] = {ramp(ctx, KILN_F32, 1, (int64_t[]){3}, 1), tv(ctx, KILN_I64, "2", (double[]){0, 7})};
    CHECK_ERR(ctx, kiln_program_run(p, 2, args, &out), KILN_ERR_VALUE, "op 'take' at g.kir:2:");
    release_all(2, args);
    kiln_program_free(p);
    kiln_module_free(m2);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* A known model: an MLP's forward is two library matmuls and two fused kernels (bias + relu,
 * bias), and its four buffers fit in 2 KiB (each dies right after its one reader). */
TEST(vm_known_model_kernels_and_arena) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @mlp(%x: f32[8, 20], %w1: f32[20, 32], %b1: f32[32], %w2: f32[32, 5], %b2: f32[5]) {\n"
                                       "  let %m1 = matmul(%x, %w1)\n  let %a = add(%m1, %b1)\n  let %h = relu(%a)\n"
                                       "  let %m2 = matmul(%h, %w2)\n  let %y = add(%m2, %b2)\n  return %y\n}\n",
                                       "mlp.kir");
    kiln_program *p;
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "mlp"), NULL, &p));
    kiln_analysis a;
    CHECK_OK(ctx, kiln_program_analyze(p, &a));
    CHECK_INT(a.n_instructions, 4);
    CHECK_INT(a.n_kernels, 2);
    CHECK_INT(a.arena_bytes, 2048); /* m1 @0, h @1024, m2 @0 (m1 is dead), y @192 */
    CHECK_NEAR(a.flops, 2.0 * 8 * 20 * 32 + 2 * 8 * 32 + 2.0 * 8 * 32 * 5 + 8 * 5, 0);
    char *text = kiln_program_print(p);
    CHECK(strstr(text, "kernel @mlp.k0(") && strstr(text, "kernel @mlp.k1(") && !strstr(text, "kernel @mlp.k2("));
    kiln_free(text);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* A library op with its epilogue: dense stays whole when BLAS implements it (one GEMM into rows
 * that start as the bias); under dialects "c" it decomposes into matmul + a fused bias add. */
TEST(vm_dense_bias_epilogue) {
    char why[256];
    if (!kiln_dialect_available(KILN_DIALECT_BLAS, why, sizeof why)) {
        printf("  vm_dense_bias_epilogue: skipped (%s)\n", why);
        return;
    }
    kiln_context *ctx = kiln_context_new();
    const char *text = "def @f(%x: f32[2, 3, 8], %w: f32[5, 8], %b: f32[5]) {\n  let %y = dense(%x, %w, %b)\n"
                       "  let %r = relu(%y)\n  return %r\n}\n";
    kiln_value in[3] = {ramp(ctx, KILN_F32, 3, (int64_t[]){2, 3, 8}, 1), ramp(ctx, KILN_F32, 2, (int64_t[]){5, 8}, 0.5),
                        ramp(ctx, KILN_F32, 1, (int64_t[]){5}, 0.2)};
    VM_AGREES(text, "f", 3, in, 1e-5);
    kiln_module *m = kiln_module_parse(ctx, text, "dense.kir");
    kiln_program *p;
    kiln_compile_options o = kiln_compile_defaults();
    for (int d = 0; d < 2; d++) { /* oneDNN's matmul with a bias argument; BLAS's GEMM into bias rows */
        const char *lib = d ? "blas" : "dnnl";
        if (!kiln_dialect_available(d ? KILN_DIALECT_BLAS : KILN_DIALECT_DNNL, NULL, 0)) continue;
        char want[64], list[16];
        snprintf(list, sizeof list, "%s,c", lib);
        snprintf(want, sizeof want, "= dense(%%x, %%w, %%b)  # %s", lib);
        o.dialects = list;
        CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "f"), &o, &p));
        char *listing = kiln_program_print(p);
        CHECK(strstr(listing, want) != NULL);
        kiln_free(listing);
        kiln_value got, want_v;
        CHECK_OK(ctx, kiln_program_run(p, 3, in, &got));
        CHECK_OK(ctx, kiln_function_run(kiln_module_function(m, "f"), 3, in, &want_v));
        CHECK(same_values(want_v, got, 1e-5));
        kiln_value_release(got);
        kiln_value_release(want_v);
        kiln_program_free(p);
    }
    o.dialects = "c";
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "f"), &o, &p));
    char *listing = kiln_program_print(p);
    CHECK(strstr(listing, "dense(") == NULL && strstr(listing, "matmul(") != NULL);
    kiln_free(listing);
    kiln_program_free(p);
    release_all(3, in);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* Results that are inputs, constants or literals come back without copies or surprises. */
TEST(vm_results_that_are_inputs_or_constants) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "def @f(%x: f32[3], %n: int) {\n  let %k = constant(value=f32[2]{1.0, 2.0})\n"
                                       "  let %r = reshape(%x, shape=[3, 1])\n  return %x, %k, %n, %r, 2.5\n}\n",
                                       "id.kir");
    kiln_program *p;
    CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "f"), NULL, &p));
    kiln_value in[2] = {ramp(ctx, KILN_F32, 1, (int64_t[]){3}, 1), kiln_value_int(7)}, out;
    CHECK_OK(ctx, kiln_program_run(p, 2, in, &out));
    CHECK(kiln_value_tuple_get(out, 0).tensor == in[0].tensor);
    CHECK_TENSOR(kiln_value_tuple_get(out, 1), KILN_F32, "2", ((double[]){1, 2}), 0);
    CHECK_INT(kiln_value_tuple_get(out, 2).i, 7);
    CHECK(kiln_value_tuple_get(out, 3).tensor->ndim == 2 && kiln_value_tuple_get(out, 3).tensor != in[0].tensor);
    CHECK(kiln_value_tuple_get(out, 4).kind == KILN_VALUE_FLOAT && kiln_value_tuple_get(out, 4).f == 2.5);
    kiln_value_release(out);
    release_all(1, in);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
