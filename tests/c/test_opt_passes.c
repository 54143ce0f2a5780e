/* test_opt_passes.c — the simplify, fold and cse passes (IR text in, pass applied, printed IR
 * checked, results unchanged in the interpreter, nested regions, cases that must NOT change)
 * and the op cost model (FLOPs and bytes on known shapes). */
#include "test.h"
#include "compiler/compiler.h"
#include "ops/cost.h"
#include "passes/passes.h"
#include <stdlib.h>

/* ---- harness ------------------------------------------------------------------------------ */
/* Deterministic inputs for @f's parameters: small mixed-sign numbers, ints 3, floats 1.5. */
static kiln_value make_input(kiln_context *ctx, const kiln_type *t, int seed) {
    if (t->kind == KILN_TYPE_SCALAR)
        return t->dtype == KILN_I64 ? kiln_value_int(3) : t->dtype == KILN_F64 ? kiln_value_float(1.5) : kiln_value_bool(true);
    kiln_tensor *x = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
    for (int64_t i = 0; x && i < x->numel; i++) {
        int64_t k = (i * 7 + seed * 3) % 11;
        if (kiln_dtype_is_float(t->dtype)) kiln_store_f64(t->dtype, x->data, i, (double)(k - 5) * 0.75);
        else kiln_store_i64(t->dtype, x->data, i, t->dtype == KILN_BOOL ? k % 2 : t->dtype == KILN_U8 ? k : k - 5);
    }
    return kiln_value_tensor(x);
}

static bool value_same(kiln_value a, kiln_value b) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case KILN_VALUE_TENSOR:
        return a.tensor->dtype == b.tensor->dtype && a.tensor->ndim == b.tensor->ndim &&
               !memcmp(a.tensor->shape, b.tensor->shape, sizeof(int64_t) * (size_t)a.tensor->ndim) &&
               !memcmp(a.tensor->data, b.tensor->data, kiln_tensor_nbytes(a.tensor));
    case KILN_VALUE_INT: return a.i == b.i;
    case KILN_VALUE_FLOAT: return a.f == b.f || (a.f != a.f && b.f != b.f);
    case KILN_VALUE_BOOL: return a.b == b.b;
    case KILN_VALUE_TUPLE:
        if (kiln_value_tuple_size(a) != kiln_value_tuple_size(b)) return false;
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            if (!value_same(kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i))) return false;
        return true;
    default: return false;
    }
}

/* Runs f, applies the passes named in `passes` ("decompose,simplify,fold,cse,dce"), checks the
 * IR verifies and f gives bit-identical results; returns the printed IR after (caller frees;
 * NULL after a failure). m stays the caller's. */
static char *apply_to(const char *file, int line, kiln_context *ctx, kiln_module *m, kiln_function *f, const char *passes) {
    kiln_value in[16], before = {0}, after = {0};
    int n = f->n_params;
    for (int i = 0; i < n; i++) in[i] = make_input(ctx, f->params[i]->type, i);
    char *ir = NULL;
    if (kiln_function_run(f, n, in, &before)) {
        test_fail(file, line, "run before: %s", kiln_error_message(ctx));
        goto done;
    }
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 2};
    for (const char *p = passes; *p;) {
        size_t len = strcspn(p, ",");
        kiln_status s = !strncmp(p, "simplify", len)    ? kiln_pass_simplify(&pc, f)
                        : !strncmp(p, "fold", len)      ? kiln_pass_fold(&pc, f)
                        : !strncmp(p, "cse", len)       ? kiln_pass_cse(&pc, f)
                        : !strncmp(p, "decompose", len) ? kiln_pass_decompose_composites(&pc, f)
                                                        : kiln_pass_remove_dead(&pc, f);
        if (s) {
            test_fail(file, line, "pass %.*s: %s", (int)len, p, kiln_error_message(ctx));
            goto done;
        }
        p += len + (p[len] == ',');
    }
    if (kiln_module_verify(m) || kiln_module_infer(m)) {
        test_fail(file, line, "IR after %s does not verify: %s", passes, kiln_error_message(ctx));
        goto done;
    }
    ir = kiln_module_print(m, 0);
    if (kiln_function_run(f, n, in, &after)) test_fail(file, line, "run after: %s\n%s", kiln_error_message(ctx), ir);
    else if (!value_same(before, after)) test_fail(file, line, "results changed by %s:\n%s", passes, ir);
done:
    release_all(n, in);
    kiln_value_release(before);
    kiln_value_release(after);
    return ir;
}

/* The same for @f of IR text. */
#define APPLY(ctx, text, passes) apply(__FILE__, __LINE__, (ctx), (text), (passes))
static char *apply(const char *file, int line, kiln_context *ctx, const char *text, const char *passes) {
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    if (!m) {
        test_fail(file, line, "parse: %s", kiln_error_message(ctx));
        return NULL;
    }
    char *ir = apply_to(file, line, ctx, m, kiln_module_function(m, "f"), passes);
    kiln_module_free(m);
    return ir;
}

/* Occurrences of s in text. */
static int count(const char *text, const char *s) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, s)); p += strlen(s)) n++;
    return n;
}

#define CHECK_HAS(ir, s) do { if (!(ir) || !strstr((ir), (s))) test_fail(__FILE__, __LINE__, "IR lacks \"%s\":\n%s", (s), (ir) ? (ir) : "(none)"); } while (0)
#define CHECK_LACKS(ir, s) do { if ((ir) && strstr((ir), (s))) test_fail(__FILE__, __LINE__, "IR still has \"%s\":\n%s", (s), (ir)); } while (0)
#define CHECK_COUNT(ir, s, n) do { if (count((ir), (s)) != (n)) test_fail(__FILE__, __LINE__, "IR has %d x \"%s\", expected %d:\n%s", count((ir), (s)), (s), (n), (ir) ? (ir) : "(none)"); } while (0)

/* ---- simplify ----------------------------------------------------------------------------- */
TEST(simplify_arithmetic_identities) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 3]) { let %a = add(%x, 0.0) let %b = add(0, %a) let %c = subtract(%b, 0) "
                          "let %d = multiply(%c, 1.0) let %e = multiply(1, %d) let %g = divide(%e, 1.0) "
                          "let %h = power(%g, 1) let %k = exp(%h) return %k }", "simplify");
    CHECK_HAS(ir, "exp(%x)");
    CHECK_COUNT(ir, "let", 1);
    free(ir);
    /* identity operands as tensors: a constant of equal elements and full / ones of the same type */
    ir = APPLY(ctx, "def @f(%x: f32[3]) { let %z = constant(value=f32[3]{0.0, 0.0, 0.0}) let %a = add(%z, %x) "
                    "let %o = full(shape=[3], value=1.0) let %b = multiply(%a, %o) let %k = exp(%b) return %k }", "simplify,dce");
    CHECK_HAS(ir, "exp(%x)");
    CHECK_COUNT(ir, "let", 1);
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_keeps_type_changing_identities) {
    kiln_context *ctx = kiln_context_new();
    /* broadcast: f32[3] + zeros f32[2, 3] is f32[2, 3]; promotion: i32 + 0.0 is f32, f16 * ones(f32) is f32;
     * weak float scalar on an int tensor; int / 1 is float; a non-splat constant */
    char *ir = APPLY(ctx, "def @f(%x: f32[3], %i: i32[3], %h: f16[3]) { let %z = full(shape=[2, 3], value=0.0) "
                          "let %a = add(%x, %z) let %b = add(%i, 0.0) let %o = full(shape=[3], value=1.0) "
                          "let %c = multiply(%h, %o) let %d = divide(%i, 1) let %k = constant(value=f32[3]{0.0, 1.0, 0.0}) "
                          "let %e = add(%x, %k) let %t = tuple(%a, %b, %c, %d, %e) return %t }", "simplify");
    CHECK_COUNT(ir, "add(", 3);
    CHECK_COUNT(ir, "multiply(", 1);
    CHECK_COUNT(ir, "divide(", 1);
    free(ir);
    /* x * 0 on floats stays (NaN, inf); x - 0 on the left (0 - x) is not an identity */
    ir = APPLY(ctx, "def @f(%x: f32[3]) { let %a = multiply(%x, 0.0) let %b = subtract(0.0, %x) "
                    "let %c = divide(1.0, %x) let %t = tuple(%a, %b, %c) return %t }", "simplify");
    CHECK_HAS(ir, "multiply(%x, 0.0)");
    CHECK_HAS(ir, "subtract(0.0, %x)");
    CHECK_HAS(ir, "divide(1.0, %x)");
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_integer_times_zero) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%i: i32[2, 3], %n: int) { let %a = multiply(%i, 0) let %b = multiply(0, %n) "
                          "let %c = add(%a, %b) return %c }", "simplify,dce");
    CHECK_HAS(ir, "full(shape=[2, 3], value=0.0, dtype=i32)");
    CHECK_HAS(ir, "return %0"); /* then zeros + 0 is the zeros */
    CHECK_COUNT(ir, "let", 1);
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_involutions_casts_copies) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[4], %b: bool[4], %i: i32[4]) { let %n1 = neg(%x) let %n2 = neg(%n1) "
                          "let %l1 = logical_not(%b) let %l2 = logical_not(%l1) let %c = cast(%n2, dtype=f32) "
                          "let %d = copy(%c) let %m1 = logical_not(%i) let %m2 = logical_not(%m1) "
                          "let %e = cast(%x, dtype=f64) let %t = tuple(%d, %l2, %m2, %e) return %t }", "simplify,dce");
    CHECK_HAS(ir, "tuple(%x, %b, %m2, %e)"); /* not(not(int)) is bool: stays; a real cast stays */
    CHECK_COUNT(ir, "logical_not(", 2);
    CHECK_LACKS(ir, "neg(");
    CHECK_LACKS(ir, "copy(");
    CHECK_COUNT(ir, "cast(", 1);
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_layout_identities) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 3]) { let %a = reshape(%x, shape=[2, 3]) let %b = transpose(%a, axes=[0, 1]) "
                          "let %c = broadcast_to(%b, shape=[2, 3]) let %d = expand_dims(%c, axis=0) "
                          "let %e = squeeze(%d, axes=[0]) let %r1 = reshape(%e, shape=[6]) let %r2 = reshape(%r1, shape=[2, 3]) "
                          "let %t1 = transpose(%r2) let %t2 = transpose(%t1) let %s = sum(%t2, axes=[]) "
                          "let %m = mean(%s, axes=[]) let %y = exp(%m) return %y }", "simplify,dce");
    CHECK_HAS(ir, "exp(%x)");
    CHECK_COUNT(ir, "let", 1);
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_merges_reshapes_and_transposes) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 3, 4]) { let %a = reshape(%x, shape=[6, 4]) let %b = reshape(%a, shape=[4, -1]) "
                          "let %t1 = transpose(%x, axes=[1, 0, 2]) let %t2 = transpose(%t1, axes=[0, 2, 1]) "
                          "let %u = tuple(%b, %t2) return %u }", "simplify,dce");
    CHECK_HAS(ir, "reshape(%x, shape=[4, -1])");
    CHECK_HAS(ir, "transpose(%x, axes=[1, 2, 0])");
    CHECK_COUNT(ir, "let", 3);
    free(ir);
    /* what must stay: a real transpose, broadcast_to a bigger shape, sum over all axes, a squeeze
     * that does not undo the expand_dims */
    ir = APPLY(ctx, "def @f(%x: f32[3, 3], %v: f32[3]) { let %a = transpose(%x) let %b = broadcast_to(%v, shape=[2, 3]) "
                    "let %s = sum(%x) let %e = expand_dims(%v, axis=0) let %q = squeeze(%e) let %k = sum(%x, axes=[0]) "
                    "let %t = tuple(%a, %b, %s, %k, %q) return %t }", "simplify,dce");
    CHECK_HAS(ir, "transpose(%x)");
    CHECK_HAS(ir, "broadcast_to(%v");
    CHECK_HAS(ir, "sum(%x)");
    CHECK_HAS(ir, "sum(%x, axes=[0])");
    CHECK_HAS(ir, "tuple(%a, %b, %s, %k, %v)"); /* squeeze(expand_dims(v)) has v's type: v */
    free(ir);
    kiln_context_free(ctx);
}

TEST(simplify_in_nested_regions) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[4], %n: int, %c: bool) {\n"
                          "  let %w = while (%i = 0, %v = %x) cond {\n    let %go = less(%i, %n)\n    yield %go\n"
                          "  } do {\n    let %r = if (%c) {\n      let %a = add(%v, 0.0)\n      let %a2 = multiply(%a, 0.5)\n"
                          "      yield %a2\n    } else {\n      let %b = neg(%v)\n      let %b2 = neg(%b)\n      yield %b2\n    }\n"
                          "    let %i2 = add(%i, 1)\n    let %i3 = multiply(%i2, 1)\n    yield %i3, %r\n  }\n  return %w\n}\n",
                     "simplify,dce");
    CHECK_HAS(ir, "multiply(%v, 0.5)");
    CHECK_HAS(ir, "yield %v");
    CHECK_HAS(ir, "yield %i2, %r");
    CHECK_LACKS(ir, "neg(");
    free(ir);
    kiln_context_free(ctx);
}

/* ---- fold --------------------------------------------------------------------------------- */
TEST(fold_scalars_and_tensors) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[3]) { let %a = add(1, 2) let %b = multiply(%a, 2.5) let %p = less(%a, 4) "
                          "let %y = add(%x, %b) let %t = tuple(%y, %p) return %t }", "fold,dce");
    CHECK_HAS(ir, "add(%x, 7.5)");
    CHECK_HAS(ir, "tuple(%y, true)");
    CHECK_COUNT(ir, "let", 2);
    free(ir);
    ir = APPLY(ctx, "def @f(%x: f32[2]) { let %k = constant(value=f32[2]{1.0, 2.0}) let %e = exp(%k) "
                    "let %s = add(%e, %k) let %m = sum(%s) let %y = multiply(%x, %m) return %y }", "fold,dce");
    CHECK_HAS(ir, "let %m = constant(value=f32[]{"); /* sum gives a 0-d tensor: a constant */
    CHECK_HAS(ir, "multiply(%x, %m)");
    CHECK_COUNT(ir, "let", 2);
    free(ir);
    kiln_context_free(ctx);
}

TEST(fold_creation_ops_within_limit) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 3]) { let %a = full(shape=[2, 3], value=2.0) let %r = arange(stop=3.0) "
                          "let %b = add(%a, %r) let %y = multiply(%x, %b) return %y }", "fold,dce");
    CHECK_HAS(ir, "constant(value=f32[2, 3]{2.0, 3.0, 4.0, 2.0, 3.0, 4.0})");
    CHECK_COUNT(ir, "let", 2);
    free(ir);
    /* too big to inline (> 65536 new elements): full, and a broadcast of a folded scalar */
    ir = APPLY(ctx, "def @f(%x: f32[]) { let %a = full(shape=[300, 300], value=1.0) let %k = constant(value=f32[]{2.0}) "
                    "let %b = broadcast_to(%k, shape=[300, 300]) let %c = add(%a, %b) let %s = sum(%c) "
                    "let %y = multiply(%x, %s) return %y }", "fold");
    CHECK_HAS(ir, "full(shape=[300, 300]");
    CHECK_HAS(ir, "broadcast_to(");
    free(ir);
    kiln_context_free(ctx);
}

TEST(fold_skips_random_and_failing_kernels) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[3]) { let %r = random_uniform(7, shape=[3]) let %y = add(%x, %r) return %y }", "fold");
    CHECK_HAS(ir, "random_uniform(7");
    free(ir);
    /* a run-time error stays a run-time error: the node is left for the interpreter */
    kiln_module *m = kiln_module_parse(ctx, "def @f() { let %k = constant(value=f32[2]{1.0, 2.0}) "
                                            "let %i = constant(value=i64[1]{5}) let %t = take(%k, %i) return %t }", "t.kir");
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 1};
    CHECK_OK(ctx, kiln_pass_fold(&pc, kiln_module_function(m, "f")));
    ir = kiln_module_print(m, 0);
    CHECK_HAS(ir, "take(%k, %i)");
    free(ir);
    kiln_value out;
    CHECK_ERR(ctx, kiln_function_run(kiln_module_function(m, "f"), 0, NULL, &out), KILN_ERR_VALUE, "take");
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(fold_tuples_and_nested_regions) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2]) { let %k = constant(value=f32[4]{1.0, 2.0, 3.0, 4.0}) "
                          "let %s = split(%k, sections=2) let %b = get(%s, index=1) let %y = add(%x, %b) return %y }", "fold,dce");
    CHECK_HAS(ir, "constant(value=f32[2]{3.0, 4.0})");
    CHECK_LACKS(ir, "split(");
    CHECK_LACKS(ir, "get(");
    free(ir);
    ir = APPLY(ctx, "def @f(%x: f32[2], %n: int) {\n  let %w = while (%i = 0, %v = %x) cond {\n"
                    "    let %lim = multiply(2, 2)\n    let %go = less(%i, %lim)\n    yield %go\n  } do {\n"
                    "    let %k = constant(value=f32[2]{1.0, -1.0})\n    let %h = multiply(%k, 0.5)\n"
                    "    let %v2 = add(%v, %h)\n    let %i2 = add(%i, 1)\n    yield %i2, %v2\n  }\n  return %w\n}\n",
               "fold,dce");
    CHECK_HAS(ir, "less(%i, 4)");
    CHECK_HAS(ir, "constant(value=f32[2]{0.5, -0.5})");
    CHECK_LACKS(ir, "multiply(");
    free(ir);
    kiln_context_free(ctx);
}

/* ---- cse ---------------------------------------------------------------------------------- */
TEST(cse_merges_equal_nodes) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 3], %k: int) { let %a = exp(%x) let %b = exp(%x) let %c = add(%a, 1.0) "
                          "let %d = add(%b, 1.0) let %s0 = sum(%c, axes=[0]) let %s1 = sum(%d, axes=[1]) let %s2 = sum(%d, axes=[0]) "
                          "let %r1 = random_normal(%k, shape=[3]) let %r2 = random_normal(%k, shape=[3]) "
                          "let %r3 = random_normal(%k, shape=[3], std=2.0) let %q1 = constant(value=f32[3]{1.0, 2.0, 3.0}) "
                          "let %q2 = constant(value=f32[3]{1.0, 2.0, 3.0}) let %e1 = add(%s0, %r1) let %e2 = add(%s2, %r2) "
                          "let %e3 = add(%q1, %r3) let %e4 = add(%q2, %r3) let %t = tuple(%e1, %e2, %s1, %e3, %e4) return %t }",
                     "cse,dce");
    CHECK_COUNT(ir, "exp(", 1);
    CHECK_COUNT(ir, "add(", 3);          /* c = d, e1 = e2, e3 = e4 */
    CHECK_COUNT(ir, "sum(", 2);          /* axes=[0] and axes=[1] differ */
    CHECK_COUNT(ir, "random_normal(", 2); /* std differs */
    CHECK_COUNT(ir, "constant(", 1);
    CHECK_HAS(ir, "tuple(%e1, %e1, %s1, %e3, %e3)");
    free(ir);
    /* never merged: calls, control flow, different literals (0.0 and -0.0 too) */
    ir = APPLY(ctx, "def @g(%y: f32[2]) { let %z = neg(%y) return %z }\n"
                    "def @f(%x: f32[2], %c: bool) { let %a = @g(%x) let %b = @g(%x) let %i1 = if (%c) { yield %a } else { yield %b } "
                    "let %i2 = if (%c) { yield %a } else { yield %b } let %m = multiply(%x, 0.0) let %n = multiply(%x, -0.0) "
                    "let %t = tuple(%i1, %i2, %m, %n) return %t }", "cse");
    CHECK_COUNT(ir, "@g(%x)", 2);
    CHECK_COUNT(ir, "if (", 2);
    CHECK_COUNT(ir, "multiply(", 2);
    free(ir);
    kiln_context_free(ctx);
}

TEST(cse_respects_region_scopes) {
    kiln_context *ctx = kiln_context_new();
    /* the outer exp dominates both branches; the branches' own sin do not see each other, and
     * the sin after the if does not reuse a branch's */
    char *ir = APPLY(ctx, "def @f(%x: f32[3], %c: bool) {\n  let %a = exp(%x)\n  let %r = if (%c) {\n"
                          "    let %b = exp(%x)\n    let %s1 = sin(%b)\n    yield %s1\n  } else {\n"
                          "    let %s2 = sin(%a)\n    let %s3 = sin(%a)\n    let %p = add(%s2, %s3)\n    yield %p\n  }\n"
                          "  let %s4 = sin(%a)\n  let %t = tuple(%r, %s4)\n  return %t\n}\n", "cse");
    CHECK_COUNT(ir, "exp(", 1);
    CHECK_HAS(ir, "let %s1 = sin(%a)");
    CHECK_HAS(ir, "add(%s2, %s2)");
    CHECK_COUNT(ir, "sin(", 3);
    free(ir);
    /* a while body reuses an invariant computed before the loop; its cond's nodes are not seen by the body */
    ir = APPLY(ctx, "def @f(%x: f32[3], %n: int) {\n  let %h = multiply(%x, 0.5)\n"
                    "  let %w = while (%i = 0, %v = %x) cond {\n    let %m = add(%n, 1)\n    let %go = less(%i, %m)\n    yield %go\n"
                    "  } do {\n    let %h2 = multiply(%x, 0.5)\n    let %m2 = add(%n, 1)\n    let %v2 = add(%v, %h2)\n"
                    "    let %i2 = add(%i, %m2)\n    yield %i2, %v2\n  }\n  return %w\n}\n", "cse,dce");
    CHECK_HAS(ir, "add(%v, %h)");
    CHECK_COUNT(ir, "add(%n, 1)", 2);
    free(ir);
    kiln_context_free(ctx);
}

TEST(cse_long_chain_is_linear) {
    /* 2 x 20000 bindings in two identical chains: one hash-table walk, no recursion on depth */
    kiln_context *ctx = kiln_context_new();
    enum { N = 20000 };
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @f(%x: f32[2]) {\n let %a0 = neg(%x)\n let %b0 = neg(%x)\n");
    for (int i = 1; i < N; i++) kiln_buf_printf(&b, " let %%a%d = sin(%%a%d)\n let %%b%d = sin(%%b%d)\n", i, i - 1, i, i - 1);
    kiln_buf_printf(&b, " let %%t = add(%%a%d, %%b%d)\n return %%t\n}\n", N - 1, N - 1);
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 1};
    kiln_function *f = kiln_module_function(m, "f");
    CHECK_OK(ctx, kiln_pass_cse(&pc, f));
    CHECK_OK(ctx, kiln_pass_remove_dead(&pc, f));
    int nodes = 0;
    for (kiln_node *n = f->body->first; n; n = n->next) nodes++;
    CHECK_INT(nodes, N + 1);
    CHECK(f->body->last->in[0] == f->body->last->in[1]);
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

TEST(opt_passes_together) {
    kiln_context *ctx = kiln_context_new();
    char *ir = APPLY(ctx, "def @f(%x: f32[2, 2], %c: bool) {\n  let %one = full(shape=[2, 2], value=1.0)\n"
                          "  let %k = subtract(%one, 1.0)\n  let %a = add(%x, %k)\n  let %r = if (%c) {\n"
                          "    let %e1 = exp(%x)\n    yield %e1\n  } else {\n    let %e2 = exp(%a)\n    let %e3 = exp(%x)\n"
                          "    let %p = add(%e2, %e3)\n    yield %p\n  }\n  return %r\n}\n", "fold,simplify,cse,dce");
    CHECK_HAS(ir, "add(%e2, %e2)");
    CHECK_COUNT(ir, "let", 4);
    free(ir);
    kiln_context_free(ctx);
}

/* The whole middle of the pipeline over an autodiff result (an MLP's loss and gradients). */
TEST(opt_passes_on_autodiff_output) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%x: f32[4, 3], %w1: f32[3, 5], %b1: f32[5], %w2: f32[5, 2], %t: f32[4, 2]) {\n"
        "  let %h = matmul(%x, %w1)\n  let %hb = add(%h, %b1)\n  let %a = gelu(%hb)\n  let %o = matmul(%a, %w2)\n"
        "  let %l = cross_entropy(%o, %t)\n  return %l\n}\n", "t.kir");
    kiln_function *g = kiln_autodiff(kiln_module_function(m, "f"), 3, (int[]){1, 2, 3}, "g");
    CHECK(g != NULL);
    int before = 0, after = 0;
    CHECK_OK(ctx, kiln_pass_decompose(g->body));
    for (kiln_node *n = g->body->first; n; n = n->next) before++;
    char *ir = apply_to(__FILE__, __LINE__, ctx, m, g, "simplify,fold,cse,dce");
    for (kiln_node *n = g->body->first; n; n = n->next) after++;
    CHECK(after < before);
    free(ir);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* ---- cost model --------------------------------------------------------------------------- */
static kiln_node *node_named(kiln_region *r, const char *name) {
    for (kiln_node *n = r->first; n; n = n->next)
        if (n->out->name && !strcmp(n->out->name, name)) return n;
    return NULL;
}

TEST(cost_flops_of_known_shapes) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%a: f32[2, 3, 4], %b: f32[2, 4, 5], %x: f32[1, 3, 8, 8], %w: f32[4, 3, 3, 3], %v: f32[4, 4], %u: f32[4], "
        "%lp: f32[6, 10], %tg: i64[6], %h: f16[2, 3]) {\n"
        "  let %mm = matmul(%a, %b)\n  let %mt = matmul(%b, %a, transpose_a=true, transpose_b=true)\n"
        "  let %mv = matmul(%u, %v)\n  let %cv = conv2d(%x, %w, padding=[1, 1])\n"
        "  let %ct = conv2d_transpose(%cv, %w, padding=[1, 1])\n"
        "  let %cw = conv2d_backward_weight(%x, %cv, padding=[1, 1], kernel=[3, 3])\n"
        "  let %gw = conv2d(%x, %w, padding=[1, 1], groups=1)\n"
        "  let %mp = max_pool2d(%x, kernel=[2, 2])\n  let %ap = avg_pool2d(%x, kernel=[3, 3], stride=[1, 1])\n"
        "  let %ex = exp(%a)\n  let %ad = add(%a, %u)\n  let %sm = sum(%a, axes=[1])\n  let %am = argmax(%a)\n"
        "  let %cs = cast(%a, dtype=f16)\n  let %rs = reshape(%a, shape=[24])\n  let %tr = transpose(%a)\n"
        "  let %nl = nll_loss(%lp, %tg)\n  let %mn = mean(%a, axes=[2])\n  let %cp = copy(%h)\n"
        "  let %t = tuple(%mm, %mt, %mv, %cv, %ct, %cw, %gw, %mp, %ap, %ex, %ad, %sm, %am, %cs, %rs, %tr, %nl, %mn, %cp)\n"
        "  return %t\n}\n", "t.kir");
    CHECK(m != NULL);
    kiln_region *r = kiln_module_function(m, "f")->body;
    CHECK_NEAR(kiln_node_flops(node_named(r, "mm")), 2.0 * 2 * 3 * 5 * 4, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "mt")), 2.0 * 2 * 5 * 3 * 4, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "mv")), 2.0 * 4 * 4, 0);
    double conv = 2.0 * 1 * 4 * 8 * 8 * 3 * 3 * 3;
    CHECK_NEAR(kiln_node_flops(node_named(r, "cv")), conv, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "ct")), conv, 0); /* the conv it is the adjoint of */
    CHECK_NEAR(kiln_node_flops(node_named(r, "cw")), conv, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "mp")), 3.0 * 4 * 4 * 4, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "ap")), 3.0 * 6 * 6 * 9, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "ex")), 24, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "ad")), 24, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "sm")), 24, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "am")), 24, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "cs")), 0, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "rs")), 0, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "tr")), 0, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "nl")), 6, 0);
    CHECK_NEAR(kiln_node_flops(node_named(r, "mn")), 24 + 6, 0); /* sum + one scale per output */
    CHECK_NEAR(kiln_node_flops(node_named(r, "t")), 0, 0);
    /* bytes: inputs + results */
    CHECK_INT(kiln_node_bytes(node_named(r, "mm")), 4 * (24 + 40 + 30));
    CHECK_INT(kiln_node_bytes(node_named(r, "ad")), 4 * (24 + 4 + 24));
    CHECK_INT(kiln_node_bytes(node_named(r, "cs")), 4 * 24 + 2 * 24);
    CHECK_INT(kiln_node_bytes(node_named(r, "am")), 4 * 24 + 8);
    CHECK_INT(kiln_node_bytes(node_named(r, "cp")), 2 * 6 * 2);
    CHECK_INT(kiln_node_bytes(node_named(r, "t")), 0);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(cost_control_flow_calls_and_composites) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%x: f32[4, 8], %c: bool, %n: int) {\n"
        "  let %k = @g(%x)\n  let %r = if (%c) {\n    let %e = exp(%x)\n    yield %e\n  } else {\n"
        "    let %e1 = exp(%x)\n    let %e2 = sin(%e1)\n    yield %e2\n  }\n"
        "  let %w = while (%i = 0, %v = %x) cond {\n    let %go = less(%i, %n)\n    yield %go\n  } do {\n"
        "    let %v2 = multiply(%v, 2.0)\n    let %i2 = add(%i, 1)\n    yield %i2, %v2\n  }\n"
        "  let %s = softmax(%x)\n  let %rec = @rec(%x, %n)\n  let %t = tuple(%k, %r, %w, %s, %rec)\n  return %t\n}\n"
        "kernel @g(%y: f32[4, 8]) {\n  let %a = exp(%y)\n  let %b = add(%a, %y)\n  return %b\n}\n"
        "def @rec(%y: f32[4, 8], %m: int) -> f32[4, 8] {\n  let %z = neg(%y)\n  let %p = greater(%m, 0)\n"
        "  let %o = if (%p) {\n    let %m1 = subtract(%m, 1)\n    let %q = @rec(%z, %m1)\n    yield %q\n  } else {\n    yield %z\n  }\n"
        "  return %o\n}\n", "t.kir");
    CHECK(m != NULL);
    kiln_function *f = kiln_module_function(m, "f");
    kiln_region *r = f->body;
    CHECK_NEAR(kiln_node_flops(node_named(r, "k")), 64, 0);          /* the kernel's body */
    CHECK_INT(kiln_node_bytes(node_named(r, "k")), 2 * 32 * 4);      /* one kernel: x in, result out */
    CHECK_NEAR(kiln_node_flops(node_named(r, "r")), 64, 0);          /* the larger branch */
    CHECK_NEAR(kiln_node_flops(node_named(r, "w")), 32 + 1 + 1, 0);  /* one iteration: cond + body */
    CHECK_NEAR(kiln_node_flops(node_named(r, "rec")), 32 + 1 + 1, 0); /* the recursive call counts 0 */
    /* a composite counts as its decomposition does after the decompose pass */
    double composite = kiln_node_flops(node_named(r, "s"));
    CHECK(composite > 4 * 8 * 3);
    CHECK_OK(ctx, kiln_pass_decompose(r));
    double sum = 0;
    for (kiln_node *n = r->first; n; n = n->next)
        if (n->op != KILN_OP_CALL && n->op != KILN_OP_IF && n->op != KILN_OP_WHILE) sum += kiln_node_flops(n);
    CHECK_NEAR(sum, composite, 0);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* KILN_SKIP_PASSES names optimizations the pipeline leaves out (here cse: the two equal exps
 * stay two instructions); required passes cannot be skipped. */
TEST(skip_passes_by_name) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, "def @f(%x: f32[4]) {\n  let %a = exp(%x)\n  let %b = exp(%x)\n"
                                            "  let %c = add(%a, %b)\n  return %c\n}\n", "skip.kir");
    CHECK(m != NULL);
    int exps[2] = {0, 0};
    for (int skip = 0; m && skip < 2; skip++) {
        if (skip) setenv("KILN_SKIP_PASSES", "fold,cse,dispatch", 1);
        kiln_compile_options o = {.opt_level = 1};
        kiln_program *p = NULL;
        CHECK_OK(ctx, kiln_compile(kiln_module_function(m, "f"), &o, &p));
        char *text = p ? kiln_program_print(p) : NULL;
        exps[skip] = text ? count(text, "exp(") : -1;
        kiln_free(text);
        kiln_program_free(p);
        unsetenv("KILN_SKIP_PASSES");
    }
    CHECK_INT(exps[0], 1);
    CHECK_INT(exps[1], 2);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
