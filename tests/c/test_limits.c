/* test_limits.c — IR far wider than 256 values (KILN_MAX_VALUES): 1000 parameters and results
 * (parse, print round trip, inference, interpreter, VM, donation), a call of 600 arguments, a
 * while of 300 loop variables (also differentiated) and autodiff over 800 parameters. */
#include "test.h"
#include <stdlib.h>

/* `%<prefix>0: f32[2], %<prefix>1: f32[2], ...` (n entries, `type` each) or, with type NULL,
 * `%<prefix>0, %<prefix>1, ...`. */
static void names(kiln_buf *b, const char *prefix, int n, const char *type) {
    for (int i = 0; i < n; i++) kiln_buf_printf(b, "%s%%%s%d%s%s", i ? ", " : "", prefix, i, type ? ": " : "", type ? type : "");
}

/* n tensors of dt and shape {len}: element k of tensor i is i + k / 4 + base. */
static kiln_value *ramps(kiln_context *ctx, kiln_dtype dt, int n, int len, double base) {
    kiln_value *v = calloc((size_t)n, sizeof *v);
    for (int i = 0; i < n; i++) {
        kiln_tensor *t = kiln_tensor_new(ctx, dt, 1, (int64_t[]){len});
        for (int k = 0; k < len; k++) kiln_store_f64(dt, t->data, k, i + k / 4.0 + base);
        v[i] = kiln_value_tensor(t);
    }
    return v;
}

static void release_free(int n, kiln_value *v) {
    release_all(n, v);
    free(v);
}

/* Two values are the same flat tuple of tensors / scalars with identical elements. */
static void check_same(kiln_value a, kiln_value b) {
    CHECK_INT(a.kind, KILN_VALUE_TUPLE);
    CHECK_INT(b.kind, KILN_VALUE_TUPLE);
    if (a.kind != KILN_VALUE_TUPLE || b.kind != KILN_VALUE_TUPLE) return;
    CHECK_INT(kiln_value_tuple_size(a), kiln_value_tuple_size(b));
    int bad = -1;
    for (int i = 0; i < kiln_value_tuple_size(a) && i < kiln_value_tuple_size(b) && bad < 0; i++) {
        kiln_value x = kiln_value_tuple_get(a, i), y = kiln_value_tuple_get(b, i);
        if (x.kind != y.kind) bad = i;
        else if (x.kind == KILN_VALUE_INT && x.i != y.i) bad = i;
        else if (x.kind == KILN_VALUE_TENSOR && (x.tensor->numel != y.tensor->numel || x.tensor->dtype != y.tensor->dtype ||
                                                 memcmp(x.tensor->data, y.tensor->data, (size_t)x.tensor->numel * kiln_dtype_size(x.tensor->dtype))))
            bad = i;
    }
    if (bad >= 0) test_fail(__FILE__, __LINE__, "element %d differs", bad);
}

/* Compiles f (with the donation pairs given) and runs it on in. */
static kiln_value run_vm(kiln_context *ctx, kiln_function *f, int n_in, const kiln_value *in, int n_donate, const int (*donate)[2]) {
    kiln_compile_options o = kiln_compile_defaults();
    o.n_donate = n_donate;
    o.donate = donate;
    kiln_program *p = NULL;
    kiln_value out = {.kind = KILN_VALUE_NONE};
    CHECK_OK(ctx, kiln_compile(f, &o, &p));
    if (p) CHECK_OK(ctx, kiln_program_run(p, n_in, in, &out));
    kiln_program_free(p);
    return out;
}

/* f compiled and run on the VM gives the interpreter's result `want`, bit for bit; releases want. */
static void vm_matches(kiln_context *ctx, kiln_function *f, int n_in, const kiln_value *in, kiln_value want) {
    kiln_value got = run_vm(ctx, f, n_in, in, 0, NULL);
    check_same(want, got);
    release_all(1, &got);
    release_all(1, &want);
}

/* @f(%x0..%x999: f32[4]) -> 1000 results: y_i = x_i * 2 + sum(concatenate(x_0..x_999)). */
TEST(limits_thousand_params_and_results) {
    enum { N = 1000 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @f(");
    names(&b, "x", N, "f32[4]");
    kiln_buf_puts(&b, ") -> (");
    for (int i = 0; i < N; i++) kiln_buf_puts(&b, i ? ", f32[4]" : "f32[4]");
    kiln_buf_puts(&b, ") {\n  let %all = concatenate(");
    names(&b, "x", N, NULL);
    kiln_buf_puts(&b, ", axis=0)\n  let %s = sum(%all)\n");
    for (int i = 0; i < N; i++) kiln_buf_printf(&b, "  let %%d%d = multiply(%%x%d, 2.0)\n  let %%y%d = add(%%d%d, %%s)\n", i, i, i, i);
    kiln_buf_puts(&b, "  return ");
    names(&b, "y", N, NULL);
    kiln_buf_puts(&b, "\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "wide.kir");
    CHECK(m);
    if (!m) {
        printf("%s\n", kiln_error_message(ctx));
        free(text);
        kiln_context_free(ctx);
        return;
    }
    /* printing and parsing round-trip exactly */
    char *p1 = kiln_module_print(m, KILN_PRINT_TYPES);
    kiln_module *m2 = kiln_module_parse(ctx, p1, "printed.kir");
    CHECK(m2);
    char *p2 = m2 ? kiln_module_print(m2, KILN_PRINT_TYPES) : NULL;
    CHECK(p2 && !strcmp(p1, p2));
    CHECK_OK(ctx, kiln_module_verify(m));
    kiln_function *f = kiln_module_function(m, "f");
    const kiln_type *rt = kiln_function_return_type(f);
    CHECK(rt && kiln_type_kind_of(rt) == 2 && kiln_type_tuple_size(rt) == N);
    CHECK_INT(kiln_function_param_count(f), N);

    kiln_value *in = ramps(ctx, KILN_F32, N, 4, 0), want, got;
    double total = 0; /* sum of every x: 4 * sum(i) + N * (0 + 1 + 2 + 3) / 4 */
    for (int i = 0; i < N; i++) total += 4.0 * i + 1.5;
    CHECK_OK(ctx, kiln_function_run(f, N, in, &want));
    CHECK_INT(kiln_value_tuple_size(want), N);
    bool ok = true;
    for (int i = 0; i < N && want.kind == KILN_VALUE_TUPLE; i++) {
        const kiln_tensor *y = kiln_value_tuple_get(want, i).tensor;
        for (int k = 0; k < 4; k++) ok &= fabs(((float *)y->data)[k] - (2 * (i + k / 4.0) + total)) <= 1e-4 * total;
    }
    CHECK(ok);
    got = run_vm(ctx, f, N, in, 0, NULL);
    check_same(want, got);
    kiln_value_release(got);

    /* every output donated to its input: the inputs hold the results afterwards */
    int (*pairs)[2] = calloc(N, sizeof *pairs);
    for (int i = 0; i < N; i++) pairs[i][0] = pairs[i][1] = i;
    got = run_vm(ctx, f, N, in, N, (const int(*)[2])pairs);
    check_same(want, got);
    kiln_value inputs = kiln_value_tuple(ctx, N, in);
    check_same(want, inputs);
    kiln_value_release(inputs);
    kiln_value_release(got);
    kiln_value_release(want);
    free(pairs);
    release_free(N, in);
    kiln_free(p1);
    kiln_free(p2);
    free(text);
    kiln_module_free(m2);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* @main(%a0..%a599: f32[2]) calls @g with all 600, which sums them pairwise in a chain. */
TEST(limits_call_with_600_arguments) {
    enum { N = 600 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @g(");
    names(&b, "a", N, "f32[2]");
    kiln_buf_puts(&b, ") {\n  let %s0 = copy(%a0)\n");
    for (int i = 1; i < N; i++) kiln_buf_printf(&b, "  let %%s%d = add(%%s%d, %%a%d)\n", i, i - 1, i);
    kiln_buf_printf(&b, "  return %%s%d, %%a%d\n}\ndef @main(", N - 1, N - 1);
    names(&b, "x", N, "f32[2]");
    kiln_buf_puts(&b, ") {\n  let %r = @g(");
    names(&b, "x", N, NULL);
    kiln_buf_puts(&b, ")\n  return %r\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "call.kir");
    CHECK(m);
    if (m) {
        kiln_function *f = kiln_module_function(m, "main");
        kiln_value *in = ramps(ctx, KILN_F32, N, 2, 0), want;
        CHECK_OK(ctx, kiln_function_run(f, N, in, &want));
        CHECK_TENSOR(kiln_value_tuple_get(want, 0), KILN_F32, "2", ((double[]){N * (N - 1) / 2.0, N * (N - 1) / 2.0 + N / 4.0}), 1e-6);
        vm_matches(ctx, f, N, in, want);
        release_free(N, in);
    }
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

/* @w(%x0..%x299: f64[3]): a while of 301 loop variables (a counter and v_k = x_k + 1, three
 * times) returning them all; then the gradient of sum(v_0 * v_1) + sum(v_299) through the loop
 * for all 300 (a few `get`s: the adjoint of each is a whole tuple of the loop's width). */
TEST(limits_while_with_300_loop_variables) {
    enum { N = 300 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @w(");
    names(&b, "x", N, "f64[3]");
    kiln_buf_puts(&b, ") {\n  let %r = while (%i = 0");
    for (int k = 0; k < N; k++) kiln_buf_printf(&b, ", %%v%d = %%x%d", k, k);
    kiln_buf_puts(&b, ") cond {\n    let %c = less(%i, 3)\n    yield %c\n  } do {\n    let %j = add(%i, 1)\n");
    for (int k = 0; k < N; k++) kiln_buf_printf(&b, "    let %%u%d = add(%%v%d, 1.0)\n", k, k);
    kiln_buf_puts(&b, "    yield %j, ");
    names(&b, "u", N, NULL);
    kiln_buf_puts(&b, "\n  }\n  return %r\n}\n");
    /* @loss: sum(v_0 * v_1) + sum(v_299) */
    kiln_buf_puts(&b, "def @loss(");
    names(&b, "x", N, "f64[3]");
    kiln_buf_puts(&b, ") {\n  let %r = @w(");
    names(&b, "x", N, NULL);
    kiln_buf_printf(&b, ")\n  let %%g0 = get(%%r, index=1)\n  let %%g1 = get(%%r, index=2)\n  let %%p = multiply(%%g0, %%g1)\n"
                        "  let %%g2 = get(%%r, index=%d)\n  let %%s1 = sum(%%p)\n  let %%s2 = sum(%%g2)\n  let %%t = add(%%s1, %%s2)\n"
                        "  return %%t\n}\n", N);
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "while.kir");
    CHECK(m);
    if (!m) printf("%s\n", kiln_error_message(ctx));
    if (m) {
        kiln_function *w = kiln_module_function(m, "w");
        kiln_value *in = ramps(ctx, KILN_F64, N, 3, 0), want;
        CHECK_OK(ctx, kiln_function_run(w, N, in, &want));
        CHECK_INT(kiln_value_tuple_size(want), N + 1);
        CHECK_INT(kiln_value_tuple_get(want, 0).i, 3);
        CHECK_TENSOR(kiln_value_tuple_get(want, N), KILN_F64, "3", ((double[]){N + 2, N + 2.25, N + 2.5}), 0);
        vm_matches(ctx, w, N, in, want);

        /* d loss / d x_0 = v_1, d / d x_1 = v_0, d / d x_299 = 1, the others 0 */
        int *wrt = malloc(sizeof *wrt * N);
        for (int k = 0; k < N; k++) wrt[k] = k;
        kiln_function *g = kiln_autodiff(kiln_module_function(m, "loss"), N, wrt, "dloss");
        CHECK(g);
        if (g) {
            CHECK_OK(ctx, kiln_function_run(g, N, in, &want));
            CHECK_INT(kiln_value_tuple_size(want), N + 1);
            CHECK_TENSOR(kiln_value_tuple_get(want, 1), KILN_F64, "3", ((double[]){4, 4.25, 4.5}), 1e-12);
            CHECK_TENSOR(kiln_value_tuple_get(want, 2), KILN_F64, "3", ((double[]){3, 3.25, 3.5}), 1e-12);
            CHECK_TENSOR(kiln_value_tuple_get(want, 3), KILN_F64, "3", ((double[]){0, 0, 0}), 0);
            CHECK_TENSOR(kiln_value_tuple_get(want, N), KILN_F64, "3", ((double[]){1, 1, 1}), 1e-12);
            vm_matches(ctx, g, N, in, want);
        } else {
            printf("%s\n", kiln_error_message(ctx));
        }
        free(wrt);
        release_free(N, in);
    }
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

/* Gradients of sum(concatenate(x_i * w_i)) over 400 pairs (800 parameters): dx_i = w_i, dw_i = x_i. */
TEST(limits_autodiff_800_parameters) {
    enum { N = 400 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @f(");
    names(&b, "x", N, "f64[3]");
    kiln_buf_puts(&b, ", ");
    names(&b, "w", N, "f64[3]");
    kiln_buf_puts(&b, ") {\n");
    for (int i = 0; i < N; i++) kiln_buf_printf(&b, "  let %%p%d = multiply(%%x%d, %%w%d)\n", i, i, i);
    kiln_buf_puts(&b, "  let %c = concatenate(");
    names(&b, "p", N, NULL);
    kiln_buf_puts(&b, ")\n  let %l = sum(%c)\n  return %l\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "grad.kir");
    CHECK(m);
    if (m) {
        int *wrt = malloc(sizeof *wrt * 2 * N);
        for (int i = 0; i < 2 * N; i++) wrt[i] = i;
        kiln_function *g = kiln_autodiff(kiln_module_function(m, "f"), 2 * N, wrt, "df");
        CHECK(g);
        kiln_value *xs = ramps(ctx, KILN_F64, N, 3, 0), *ws = ramps(ctx, KILN_F64, N, 3, 0.5);
        kiln_value *in = malloc(sizeof *in * 2 * N), want;
        memcpy(in, xs, sizeof *in * N);
        memcpy(in + N, ws, sizeof *in * N);
        if (g) {
            CHECK_OK(ctx, kiln_function_run(g, 2 * N, in, &want));
            CHECK_INT(kiln_value_tuple_size(want), 2 * N + 1);
            bool ok = true;
            for (int i = 0; i < N; i++)
                for (int k = 0; k < 3; k++) {
                    const kiln_tensor *dx = kiln_value_tuple_get(want, 1 + i).tensor, *dw = kiln_value_tuple_get(want, 1 + N + i).tensor;
                    ok &= ((double *)dx->data)[k] == ((double *)ws[i].tensor->data)[k];
                    ok &= ((double *)dw->data)[k] == ((double *)xs[i].tensor->data)[k];
                }
            CHECK(ok);
            vm_matches(ctx, g, 2 * N, in, want);
        } else {
            printf("%s\n", kiln_error_message(ctx));
        }
        free(wrt);
        free(in);
        release_free(N, xs);
        release_free(N, ws);
    }
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

/* Past KILN_MAX_VALUES: clear errors naming the limit, not truncation. */
TEST(limits_beyond_max_values) {
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @f(%x: f32[]) {\n  let %t = tuple(");
    for (int i = 0; i <= KILN_MAX_VALUES; i++) kiln_buf_puts(&b, i ? ", %x" : "%x");
    kiln_buf_puts(&b, ")\n  return %t\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_error_clear(ctx);
    CHECK(!kiln_module_parse(ctx, text, "big.kir"));
    CHECK(strstr(kiln_error_message(ctx), "more than 65536 operands"));
    free(text);
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "f");
    kiln_var *x = kiln_function_param(f, "x", kiln_type_float(m));
    kiln_var **xs = malloc(sizeof *xs * (KILN_MAX_VALUES + 1));
    for (int i = 0; i <= KILN_MAX_VALUES; i++) xs[i] = x;
    kiln_error_clear(ctx);
    CHECK(!kiln_emit(kiln_function_body(f), "tuple", KILN_MAX_VALUES + 1, xs, NULL));
    CHECK(strstr(kiln_error_message(ctx), "65537 values (at most 65536)"));
    free(xs);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
