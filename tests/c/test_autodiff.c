/* test_autodiff.c — reverse-mode autodiff against central finite differences in float64, op by
 * op (through the gradient rules and through decomposed composites), plus its error paths. */
#include "test.h"


TEST(grad_unary_ops) {
    static const char *ops[] = {"neg", "abs", "exp", "log", "log2", "sqrt", "rsqrt", "reciprocal", "sin", "cos",
                                "tanh", "atan", "sigmoid", "relu", "erf", "copy", "gelu", "silu", "leaky_relu"};
    for (size_t i = 0; i < KILN_COUNTOF(ops); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 3], %%w: f64[2, 3]) {\n let %%y = %s(%%x)\n let %%z = multiply(%%y, %%w)\n"
                                    " let %%s = sum(%%z)\n return %%s\n}\n", ops[i]);
        GRADCHECK(text, 0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[4], %%w: f64[4]) {\n let %%y = %s(%%x)\n let %%z = multiply(%%y, %%w)\n"
                                    " let %%s = sum(%%z)\n return %%s\n}\n", ops[i]);
        if (strcmp(ops[i], "log") && strcmp(ops[i], "log2") && strcmp(ops[i], "sqrt") && strcmp(ops[i], "rsqrt") && strcmp(ops[i], "abs") &&
            strcmp(ops[i], "relu") && strcmp(ops[i], "leaky_relu"))
            GRADCHECK(text, -0.5); /* negative inputs where the op allows them and is smooth there */
    }
    GRADCHECK("def @f(%x: f64[5]) { let %y = clip(%x, min=0.8, max=1.2) let %s = sum(%y) return %s }", 0.5);
    GRADCHECK("def @f(%x: f64[5]) { let %y = threshold(%x, threshold=1.0, value=-3.0) let %s = sum(%y) return %s }", 0.5);
}

TEST(grad_binary_ops_with_broadcasting) {
    static const char *ops[] = {"add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "mod"};
    for (size_t i = 0; i < KILN_COUNTOF(ops); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 3], %%y: f64[3], %%w: f64[2, 3]) {\n let %%z = %s(%%x, %%y)\n"
                                    " let %%v = multiply(%%z, %%w)\n let %%s = sum(%%v)\n return %%s\n}\n", ops[i]);
        GRADCHECK(text, 0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 1], %%y: f64[1, 3]) {\n let %%z = %s(%%y, %%x)\n let %%s = sum(%%z)\n return %%s\n}\n", ops[i]);
        GRADCHECK(text, 0.5);
    }
    GRADCHECK("def @f(%x: f64[3]) { let %y = multiply(%x, 2.5) let %z = add(%y, %x) let %s = sum(%z) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[3], %y: f64[3]) { let %c = less(%x, %y) let %z = where(%c, %x, %y) let %s = sum(%z) return %s }", 0.0);
}

TEST(grad_reductions_and_layout) {
    GRADCHECK("def @f(%x: f64[2, 3, 4], %w: f64[2, 4]) { let %y = sum(%x, axes=[1]) let %z = multiply(%y, %w) let %s = sum(%z) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 3, 4], %w: f64[2, 1, 4]) { let %y = max(%x, axes=[1], keepdims=true) let %z = multiply(%y, %w) let %s = sum(%z) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 3]) { let %y = prod(%x, axes=[0]) let %s = sum(%y) return %s }", 0.5);
    GRADCHECK("def @f(%x: f64[2, 3], %w: f64[2, 3]) { let %y = cumsum(%x, axis=1) let %z = multiply(%y, %w) let %s = sum(%z) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 3], %w: f64[3]) { let %m = mean(%x, axes=[0]) let %v = variance(%x, axes=[0], correction=1) "
              "let %a = multiply(%m, %w) let %b = add(%a, %v) let %s = sum(%b) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 3], %w: f64[3, 2]) { let %t = transpose(%x) let %r = reshape(%t, shape=[3, 2]) "
              "let %z = multiply(%r, %w) let %b = broadcast_to(%z, shape=[4, 3, 2]) let %s = sum(%b) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2], %y: f64[3]) { let %t = tuple(%x, %y) let %a = get(%t, index=1) let %b = get(%t, index=1) "
              "let %c = multiply(%a, %b) let %s = sum(%c) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 3], %w: f64[2, 3]) { let %y = softmax(%x, axis=1) let %l = log_softmax(%x, axis=0) "
              "let %a = multiply(%y, %w) let %b = add(%a, %l) let %s = sum(%b) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[2, 4], %g: f64[4], %b: f64[4], %w: f64[2, 4]) { let %y = layer_norm(%x, %g, %b) "
              "let %z = multiply(%y, %w) let %s = sum(%z) return %s }", 0.0);
}

TEST(grad_prod_and_power_at_zero) {
    /* exact zeros (x times a 0/1 int mask): gradients stay finite (prod's rule was prod / x) */
    GRADCHECK("def @f(%x: f64[3, 4], %m: i64[3, 4]) { let %z = multiply(%x, %m) let %y = prod(%z, axes=[1]) "
              "let %s = sum(%y) return %s }", 0.5);
    GRADCHECK("def @f(%x: f64[3, 4], %m: i64[3, 4]) { let %z = multiply(%x, %m) let %y = power(%z, 0.0) "
              "let %s = sum(%y) return %s }", 0.5);
    /* d prod / d x_i = product of the others: at a row's only zero, 0 beside it or with two zeros */
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, "def @f(%x: f64[3, 3]) { let %y = prod(%x, axes=[1]) let %s = sum(%y) return %s }", "t.kir");
    kiln_function *g = m ? kiln_autodiff(kiln_module_function(m, "f"), 1, (int[]){0}, "f_grad") : NULL;
    CHECK(g != NULL);
    if (g) {
        kiln_value x = tv(ctx, KILN_F64, "3,3", (double[]){0, 2, 3, 0, 0, 2, 1, 2, 3}), out;
        CHECK_OK(ctx, kiln_function_run(g, 1, &x, &out));
        CHECK_TENSOR(kiln_value_tuple_get(out, 1), KILN_F64, "3,3", ((double[]){6, 0, 0, 0, 0, 0, 6, 3, 2}), 0);
        kiln_value_release(out);
        kiln_value_release(x);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(grad_through_a_composite_result) {
    /* the differentiated value is itself a composite (decomposed away before the sweep) */
    GRADCHECK("def @f(%x: f64[5, 4], %w: f64[3, 4], %b: f64[3], %y: f64[5, 3]) { let %o = dense(%x, %w, %b) let %l = mse_loss(%o, %y) return %l }", -0.5);
    GRADCHECK("def @f(%x: f64[2, 3]) { let %l = logsumexp(%x, axes=[1]) return %l }", -0.5);
}

TEST(grad_through_if_and_calls) {
    /* the taken branch decides the gradient; both branches are exercised by the sign of x */
    for (int k = 0; k < 2; k++) {
        GRADCHECK("def @f(%x: f64[3], %w: f64[3]) {\n"
                  "  let %t = sum(%x)\n  let %c = greater(%t, 0.0)\n"
                  "  let %y = if (%c) { let %e = exp(%x) let %m = multiply(%e, %w) yield %m } else { let %q = multiply(%x, %x) yield %q }\n"
                  "  let %z = multiply(%y, %w)\n  let %s = sum(%z)\n  return %s\n}\n", k ? -1.5 : 0.5);
    }
    /* nested if, a branch yielding an outer value directly, several results */
    GRADCHECK("def @f(%x: f64[2], %y: f64[2]) {\n"
              "  let %t = sum(%x)\n  let %c = greater(%t, 0.0)\n"
              "  let %r = if (%c) {\n"
              "    let %u = sum(%y)\n    let %d = less(%u, 100.0)\n"
              "    let %in = if (%d) { let %p = multiply(%x, %y) yield %p } else { yield %y }\n"
              "    yield %in, %x\n"
              "  } else { yield %y, %y }\n"
              "  let %a = get(%r, index=0)\n  let %b = get(%r, index=1)\n  let %m = multiply(%a, %b)\n  let %s = sum(%m)\n  return %s\n}\n", 0.5);
    /* calls are inlined, including calls inside the callee and a function called twice */
    GRADCHECK("def @f(%x: f64[3], %w: f64[3]) {\n  let %a = @g(%x, %w)\n  let %b = @g(%a, %x)\n  let %s = sum(%b)\n  return %s\n}\n"
              "def @g(%p: f64[3], %q: f64[3]) -> f64[3] {\n  let %h = @h(%p)\n  let %m = multiply(%h, %q)\n  return %m\n}\n"
              "def @h(%v: f64[3]) -> f64[3] {\n  let %t = tanh(%v)\n  return %t\n}\n", -0.5);
}

TEST(grad_through_while_loops) {
    /* a fixed trip count; the loop variable feeds itself and an outer value each iteration */
    GRADCHECK("def @f(%x: f64[3], %w: f64[3]) {\n"
              "  let %r = while (%i = 0, %v = %x) cond { let %c = less(%i, 4) yield %c } do {\n"
              "    let %m = multiply(%v, %w)\n    let %t = tanh(%m)\n    let %u = add(%t, %v)\n    let %i2 = add(%i, 1)\n    yield %i2, %u\n  }\n"
              "  let %y = get(%r, index=1)\n  let %s = sum(%y)\n  return %s\n}\n", -0.5);
    /* a data-dependent trip count, two float loop variables, an if inside the body */
    GRADCHECK("def @f(%x: f64[2], %w: f64[2]) {\n"
              "  let %r = while (%v = %x, %a = %w) cond { let %s = sum(%v) let %c = less(%s, 20.0) yield %c } do {\n"
              "    let %t = sum(%v)\n    let %g = greater(%t, 5.0)\n"
              "    let %n = if (%g) { let %p = multiply(%v, 1.25) yield %p } else { let %q = multiply(%v, %a) let %q2 = add(%q, 1.0) yield %q2 }\n"
              "    let %a2 = multiply(%a, 0.9)\n    yield %n, %a2\n  }\n"
              "  let %y = get(%r, index=0)\n  let %b = get(%r, index=1)\n  let %z = multiply(%y, %b)\n  let %s = sum(%z)\n  return %s\n}\n", 0.5);
    /* nested loops, and a loop that runs zero times */
    GRADCHECK("def @f(%x: f64[2], %w: f64[2]) {\n"
              "  let %r = while (%i = 0, %v = %x) cond { let %c = less(%i, 2) yield %c } do {\n"
              "    let %in = while (%j = 0, %u = %v) cond { let %d = less(%j, 3) yield %d } do {\n"
              "      let %e = multiply(%u, %w)\n      let %s = sin(%e)\n      let %j2 = add(%j, 1)\n      yield %j2, %s\n    }\n"
              "    let %u2 = get(%in, index=1)\n    let %i2 = add(%i, 1)\n    yield %i2, %u2\n  }\n"
              "  let %z = while (%k = 0, %q = %w) cond { let %c0 = less(%k, 0) yield %c0 } do { let %k2 = add(%k, 1) yield %k2, %x }\n"
              "  let %y = get(%r, index=1)\n  let %q2 = get(%z, index=1)\n  let %m = multiply(%y, %q2)\n  let %s = sum(%m)\n  return %s\n}\n", -0.5);
}

TEST(list_ops_and_saved_loop_state_round_trip) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%x: f64[2]) -> (int, f64[2]) {\n"
        "  let %l: list(f64[2]) = list_new(%x)\n  let %a = list_push(%l, %x)\n  let %y = multiply(%x, 2.0)\n"
        "  let %b = list_push(%a, %y)\n  let %p = list_pop(%b)\n  let %rest = get(%p, index=0)\n  let %last = get(%p, index=1)\n"
        "  let %n = list_length(%rest)\n  return %n, %last\n}\n"
        "def @empty(%x: f64[2]) { let %l = list_new(%x) let %p = list_pop(%l) let %v = get(%p, index=1) return %v }\n"
        "def @g(%x: f64[3], %w: f64[3]) {\n"
        "  let %r = while (%i = 0, %v = %x) cond { let %c = less(%i, 3) yield %c } do {\n"
        "    let %m = multiply(%v, %w)\n    let %i2 = add(%i, 1)\n    yield %i2, %m\n  }\n"
        "  let %y = get(%r, index=1)\n  let %s = sum(%y)\n  return %s\n}\n", "lists.kir");
    CHECK(m != NULL);
    if (!m) return kiln_context_free(ctx);
    kiln_value in = tv(ctx, KILN_F64, "2", (double[]){1.5, -2}), out;
    CHECK_OK(ctx, kiln_function_run(kiln_module_function(m, "f"), 1, &in, &out));
    CHECK_INT(kiln_value_tuple_get(out, 0).i, 1);
    CHECK_TENSOR(kiln_value_tuple_get(out, 1), KILN_F64, "2", ((double[]){3, -4}), 0);
    kiln_value_release(out);
    CHECK_ERR(ctx, kiln_function_run(kiln_module_function(m, "empty"), 1, &in, &out), KILN_ERR_VALUE,
              "op 'list_pop' at lists.kir:12:57: the list is empty");
    kiln_value_release(in);
    /* the state-saving rewrite prints, parses back and verifies */
    CHECK(kiln_autodiff(kiln_module_function(m, "g"), 2, (int[]){0, 1}, "g_grad") != NULL);
    for (int flags = 0; flags < 2; flags++) {
        char *text = kiln_module_print(m, flags);
        CHECK(strstr(text, "list_push(") && strstr(text, "list_pop("));
        kiln_module *again = kiln_module_parse(ctx, text, "again.kir");
        CHECK(again != NULL);
        if (again) {
            char *text2 = kiln_module_print(again, flags);
            CHECK_STR(text2, text);
            CHECK_OK(ctx, kiln_module_verify(again));
            kiln_free(text2);
            kiln_module_free(again);
        }
        kiln_free(text);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(grad_matmul_forms) {
    static const char *forms[] = {
        "def @f(%a: f64[2, 3], %b: f64[3, 4]) { let %c = matmul(%a, %b) let %s = sum(%c) return %s }",
        "def @f(%a: f64[3, 2], %b: f64[3, 4]) { let %c = matmul(%a, %b, transpose_a=true) let %s = sum(%c) return %s }",
        "def @f(%a: f64[2, 3], %b: f64[4, 3]) { let %c = matmul(%a, %b, transpose_b=true) let %s = sum(%c) return %s }",
        "def @f(%a: f64[3, 2], %b: f64[4, 3]) { let %c = matmul(%a, %b, transpose_a=true, transpose_b=true) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%a: f64[3], %b: f64[3, 4]) { let %c = matmul(%a, %b) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%a: f64[2, 3], %b: f64[3]) { let %c = matmul(%a, %b) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%a: f64[2, 2, 3], %b: f64[3, 4]) { let %c = matmul(%a, %b) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%a: f64[2, 1, 2, 3], %b: f64[3, 3, 2]) { let %c = matmul(%a, %b) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%x: f64[2, 3], %w: f64[4, 3], %b: f64[4]) { let %y = dense(%x, %w, %b) let %z = tanh(%y) let %s = sum(%z) return %s }",
        /* a shared 2-D weight under a batched input: the weight's gradient folds the batch */
        "def @f(%a: f64[2, 3, 4], %b: f64[5, 4]) { let %c = matmul(%a, %b, transpose_b=true) let %d = multiply(%c, %c) let %s = sum(%d) return %s }",
        "def @f(%x: f64[2, 2, 3], %w: f64[4, 3], %b: f64[4]) { let %y = dense(%x, %w, %b) let %z = tanh(%y) let %s = sum(%z) return %s }",
    };
    for (size_t i = 0; i < KILN_COUNTOF(forms); i++) GRADCHECK(forms[i], -0.5);
}

TEST(autodiff_output_shape_and_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
        "def @f(%x: f64[3], %i: i64[2]) { let %t = floor(%x) let %s = sum(%t) return %s }\n"
        "def @g(%x: f64[3]) { let %a = argmax(%x) return %a }\n"
        "def @h(%x: f64[3], %n: int) -> f64[] { let %y = @h(%x, %n) return %y }\n"
        "def @k(%x: f64[3], %y: f64[3]) { let %s = sum(%x) return %s }\n", "ad.kir");
    CHECK(m != NULL);
    if (!m) return kiln_context_free(ctx);
    int w0 = 0, w1 = 1;
    CHECK(kiln_autodiff(kiln_module_function(m, "f"), 1, &w0, "f_grad") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "autodiff: op 'floor' at ad.kir:1:43 is not differentiable, and a gradient flows through it"));
    CHECK(kiln_autodiff(kiln_module_function(m, "f"), 1, &w1, "f_grad2") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "parameter 1 is not a floating-point tensor"));
    CHECK(kiln_autodiff(kiln_module_function(m, "g"), 1, &w0, "g_grad") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "must be a floating-point tensor, not i64[]"));
    CHECK(kiln_autodiff(kiln_module_function(m, "h"), 1, &w0, "h_grad") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "autodiff: call of @h at ad.kir:3:"));
    CHECK(strstr(kiln_error_message(ctx), "differentiating through recursive calls is not supported"));
    /* a parameter the loss does not depend on gets zeros */
    kiln_function *kg = kiln_autodiff(kiln_module_function(m, "k"), 2, (int[]){0, 1}, "k_grad");
    CHECK(kg != NULL);
    if (kg) {
        char *text = kiln_module_print(m, 0);
        CHECK(strstr(text, "def @k_grad(%x: f64[3], %y: f64[3]) -> (f64[], f64[3], f64[3])"));
        /* dead-code elimination leaves only what the results need: sum, its backward, zeros */
        CHECK(strstr(text, "def @k_grad(%x: f64[3], %y: f64[3]) -> (f64[], f64[3], f64[3]) {\n"
                           "  let %s = sum(%x)\n  let %0 = ones_like(%s)\n  let %1 = reshape(%0, shape=[1])\n"
                           "  let %2 = broadcast_to(%1, shape=[3])\n  let %3 = zeros_like(%y)\n  return %s, %2, %3\n}"));
        kiln_free(text);
        kiln_value in[2] = {tv(ctx, KILN_F64, "3", (double[]){1, 2, 3}), tv(ctx, KILN_F64, "3", (double[]){4, 5, 6})}, out;
        CHECK_OK(ctx, kiln_function_run(kg, 2, in, &out));
        CHECK_TENSOR(kiln_value_tuple_get(out, 0), KILN_F64, "", ((double[]){6}), 0);
        CHECK_TENSOR(kiln_value_tuple_get(out, 1), KILN_F64, "3", ((double[]){1, 1, 1}), 0);
        CHECK_TENSOR(kiln_value_tuple_get(out, 2), KILN_F64, "3", ((double[]){0, 0, 0}), 0);
        kiln_value_release(out);
        release_all(2, in);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(autodiff_passes_other_results_through) {
    /* results after the loss (like batch-norm running statistics) come after the gradients,
     * undifferentiated: %r2 shares %m with the loss but adds no gradient (d/dr is zero), and
     * %p, a while loop on the gradient path, stays current through the state-saving rewrite */
    static const char *text =
        "def @f(%x: f64[3], %w: f64[3], %r: f64[3], %k: i64[]) {\n"
        "  let %m = multiply(%x, %w)\n  let %s = sum(%m)\n  let %r2 = add(%r, %m)\n"
        "  let %p = while (%v = %w) cond { let %t = sum(%v) let %c = less(%t, 100.0) yield %c } do {\n"
        "    let %v2 = multiply(%v, 2.0)\n    yield %v2\n  }\n"
        "  let %q = sum(%p)\n  let %l = add(%s, %q)\n  let %k2 = add(%k, 1)\n  return %l, %r2, %p, %k2\n}\n";
    GRADCHECK(text, -0.5);
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "aux.kir");
    kiln_function *g = m ? kiln_autodiff(kiln_module_function(m, "f"), 3, (int[]){0, 1, 2}, "f_grad") : NULL;
    CHECK(g != NULL);
    if (g) {
        char *sig = kiln_module_print(m, 0);
        CHECK(strstr(sig, "def @f_grad(%x: f64[3], %w: f64[3], %r: f64[3], %k: i64[]) -> "
                          "(f64[], f64[3], f64[3], f64[3], f64[3], f64[3], i64[])"));
        kiln_free(sig);
        kiln_value in[4] = {tv(ctx, KILN_F64, "3", (double[]){0.5, -1, 2}), tv(ctx, KILN_F64, "3", (double[]){1, 2, 3}),
                            tv(ctx, KILN_F64, "3", (double[]){1, 1, 1}), tv(ctx, KILN_I64, "", (double[]){4})}, out;
        CHECK_OK(ctx, kiln_function_run(g, 4, in, &out));
        /* sum(w) = 6 doubles 5 times to 192: p = 32 w, loss = x.w + 192 = 196.5, dw = x + 32 */
        CHECK_TENSOR(kiln_value_tuple_get(out, 0), KILN_F64, "", ((double[]){196.5}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(out, 1), KILN_F64, "3", ((double[]){1, 2, 3}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(out, 2), KILN_F64, "3", ((double[]){32.5, 31, 34}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(out, 3), KILN_F64, "3", ((double[]){0, 0, 0}), 0);
        CHECK_TENSOR(kiln_value_tuple_get(out, 4), KILN_F64, "3", ((double[]){1.5, -1, 7}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(out, 5), KILN_F64, "3", ((double[]){32, 64, 96}), 1e-12);
        CHECK_TENSOR(kiln_value_tuple_get(out, 6), KILN_I64, "", ((double[]){5}), 0);
        kiln_value_release(out);
        release_all(4, in);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}
