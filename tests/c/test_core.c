/* test_core.c — tests of the core: dtype conversions and promotion, tensors and values, the
 * op table and attribute parsing, the builder's errors, and the interpreter on control flow. */
#include "test.h"
#include "ir/lexer.h"
#include <stdlib.h>

TEST(f16_round_to_nearest_even) {
    CHECK_INT(kiln_f32_to_f16(1.0f), 0x3c00);
    CHECK_INT(kiln_f32_to_f16(-2.0f), 0xc000);
    CHECK_INT(kiln_f32_to_f16(65504.0f), 0x7bff);          /* largest half */
    CHECK_INT(kiln_f32_to_f16(65520.0f), 0x7c00);          /* rounds up to inf */
    CHECK_INT(kiln_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* halfway: even (down) */
    CHECK_INT(kiln_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* halfway: even (up) */
    CHECK_INT(kiln_f32_to_f16(5.9604645e-08f), 0x0001);    /* smallest subnormal */
    CHECK_INT(kiln_f32_to_f16(2.9802322e-08f), 0x0000);    /* half of it: ties to even 0 */
    CHECK_INT(kiln_f32_to_f16(INFINITY), 0x7c00);
    CHECK((kiln_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (kiln_f32_to_f16(NAN) & 0x3ff));
    CHECK(kiln_f16_to_f32(0x3555) == 0.333251953125f);
    CHECK(kiln_f16_to_f32(0x0001) == 5.9604645e-08f);
    CHECK(isnan(kiln_f16_to_f32(0x7e00)));
    /* every half value survives a round trip through float */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
        if (kiln_f32_to_f16(kiln_f16_to_f32((uint16_t)h)) != h) {
            test_fail(__FILE__, __LINE__, "half 0x%04x does not round-trip", h);
            break;
        }
    }
}

TEST(bf16_round_to_nearest_even) {
    CHECK_INT(kiln_f32_to_bf16(1.0f), 0x3f80);
    CHECK_INT(kiln_f32_to_bf16(1.00390625f), 0x3f80);  /* halfway 0x3f808000: even (down) */
    CHECK_INT(kiln_f32_to_bf16(1.01171875f), 0x3f82);  /* halfway 0x3f818000: even (up) */
    CHECK_INT(kiln_f32_to_bf16(1.0078125f + 1e-6f), 0x3f81);
    CHECK(kiln_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(isnan(kiln_bf16_to_f32(kiln_f32_to_bf16(NAN))));
    CHECK(kiln_bf16_to_f32(kiln_f32_to_bf16(-INFINITY)) == -INFINITY);
}

TEST(dtype_names_sizes_promotion) {
    CHECK_STR(kiln_dtype_name(KILN_BF16), "bf16");
    CHECK_INT(kiln_dtype_from_name("float16"), KILN_F16);
    CHECK_INT(kiln_dtype_from_name("i64"), KILN_I64);
    CHECK_INT(kiln_dtype_from_name("f128"), -1);
    CHECK_INT(kiln_dtype_size(KILN_F64), 8);
    CHECK_INT(kiln_dtype_size(KILN_BOOL), 1);
    CHECK_INT(kiln_dtype_promote(KILN_I32, KILN_F16), KILN_F16);
    CHECK_INT(kiln_dtype_promote(KILN_F16, KILN_BF16), KILN_F32);
    CHECK_INT(kiln_dtype_promote(KILN_I8, KILN_U8), KILN_I32);
    CHECK_INT(kiln_dtype_promote(KILN_BOOL, KILN_U8), KILN_U8);
    CHECK_INT(kiln_dtype_promote(KILN_I64, KILN_F32), KILN_F32);
    CHECK_INT(kiln_dtype_promote(KILN_F64, KILN_F32), KILN_F64);
}

TEST(casts_between_all_dtypes) {
    kiln_context *ctx = kiln_context_new();
    double src[] = {-2.5, -1, 0, 1, 2.5, 127, 300};
    kiln_tensor *f64 = tt(ctx, KILN_F64, "7", src);
    for (int d = 0; d < KILN_DTYPE_COUNT; d++) {
        kiln_tensor *c = kiln_tensor_cast(ctx, f64, (kiln_dtype)d);
        CHECK(c != NULL);
        CHECK_INT(c->numel, 7);
        for (int i = 0; i < 7; i++) {
            double got = kiln_load_f64((kiln_dtype)d, c->data, i), want;
            switch (d) {
            case KILN_BOOL: want = src[i] != 0; break;
            case KILN_I8: want = (int8_t)(int64_t)src[i]; break; /* C conversion: truncate, wrap */
            case KILN_U8: want = (uint8_t)(int64_t)src[i]; break;
            case KILN_I32: case KILN_I64: want = (double)(int64_t)src[i]; break;
            default: want = src[i]; break;
            }
            CHECK_NEAR(got, want, 0);
        }
        kiln_tensor_release(c);
    }
    /* f32 -> f16 -> f32 keeps representable values, rounds the rest to nearest even */
    kiln_tensor *f32 = tt(ctx, KILN_F32, "2", (double[]){0.1, 1.0 + 1.0 / 2048});
    kiln_tensor *h = kiln_tensor_cast(ctx, f32, KILN_F16);
    CHECK_INT(((uint16_t *)h->data)[0], 0x2e66);
    CHECK_INT(((uint16_t *)h->data)[1], 0x3c00);
    kiln_tensor_release(h);
    kiln_tensor_release(f32);
    kiln_tensor_release(f64);
    kiln_context_free(ctx);
}

TEST(tensor_alignment_shapes_and_errors) {
    kiln_context *ctx = kiln_context_new();
    int64_t shape[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    kiln_tensor *t = kiln_tensor_new(ctx, KILN_F32, 8, shape);
    CHECK(t && ((uintptr_t)kiln_tensor_data(t) % 64) == 0);
    CHECK_INT(kiln_tensor_numel(t), 16);
    CHECK_INT(kiln_tensor_nbytes(t), 64);
    kiln_tensor_release(t);
    int64_t zero[2] = {3, 0};
    t = kiln_tensor_new(ctx, KILN_I64, 2, zero);
    CHECK(t && kiln_tensor_numel(t) == 0);
    kiln_tensor_release(t);
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(kiln_tensor_new(ctx, KILN_F32, 9, nine) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "at most 8"));
    int64_t neg[1] = {-1};
    CHECK(kiln_tensor_new(ctx, KILN_F32, 1, neg) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "invalid shape [-1]"));
    int64_t huge[2] = {INT64_MAX / 2, 4};
    CHECK(kiln_tensor_new(ctx, KILN_F32, 2, huge) == NULL);
    kiln_context_free(ctx);
}

static int wrap_released;
static void on_release(void *arg) { wrap_released += *(int *)arg; }

TEST(tensor_wrap_and_values) {
    kiln_context *ctx = kiln_context_new();
    float data[4] = {1, 2, 3, 4};
    int one = 1;
    wrap_released = 0;
    kiln_tensor *t = kiln_tensor_wrap(ctx, KILN_F32, 1, (int64_t[]){4}, data, on_release, &one);
    CHECK(kiln_tensor_data(t) == data);
    kiln_value v = kiln_value_tensor(t);
    kiln_value items[3] = {v, kiln_value_int(7), kiln_value_float(0.5)};
    kiln_value tup = kiln_value_tuple(ctx, 3, items);
    kiln_value_release(v); /* the tuple still holds the tensor */
    CHECK_INT(wrap_released, 0);
    CHECK_INT(kiln_value_tuple_size(tup), 3);
    CHECK_INT(kiln_value_tuple_get(tup, 1).i, 7);
    CHECK(kiln_value_tuple_get(tup, 5).kind == KILN_VALUE_NONE);
    kiln_value_release(tup);
    CHECK_INT(wrap_released, 1);
    kiln_context_free(ctx);
}

TEST(op_table_is_consistent) {
    char line[512];
    CHECK(kiln_op_count() > 100);
    for (int op = 0; op < kiln_op_count(); op++) {
        const kiln_op_info *info = kiln_op_info_get((kiln_op)op);
        CHECK_INT(kiln_op_from_name(info->name), op);
        bool structural = info->cls == KILN_CLASS_CONTROL;
        if (info->flags & F_COMPOSITE) CHECK(info->decompose && !info->kernel);
        else if (!structural) CHECK(info->kernel && !info->decompose);
        if (!structural || op == KILN_OP_TUPLE || op == KILN_OP_GET || op == KILN_OP_CONSTANT) CHECK(info->shape != NULL);
        CHECK(strstr(kiln_op_describe(op, line, sizeof line), info->name) == line);
    }
    CHECK_INT(kiln_op_from_name("no_such_op"), -1);
    const kiln_op_info *sum = kiln_op_info_get(KILN_OP_SUM);
    CHECK_INT(sum->n_attrs, 2);
    CHECK(!sum->attrs[0].required && !sum->attrs[0].dflt.set);
    CHECK(sum->attrs[1].kind == KILN_ATTR_BOOL && sum->attrs[1].dflt.set && !sum->attrs[1].dflt.b);
    const kiln_op_info *nll = kiln_op_info_get(KILN_OP_NLL_LOSS);
    CHECK_STR(nll->attrs[0].dflt.s, "mean");
    CHECK_STR(nll->attrs[0].choices, "none|mean|sum");
    CHECK_INT(nll->attrs[1].dflt.i, -100);
}

TEST(attribute_strings_parse_and_fail_clearly) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "main");
    kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 2, (int64_t[]){2, 3}));
    kiln_region *r = kiln_function_body(f);
    kiln_attr attrs[8];
    kiln_lexer lx;
    kiln_lex_init(&lx, ctx, &m->arena, "kernel=[2, 2], ceil_mode=true", "t");
    CHECK_OK(ctx, kiln_parse_attr_list(&lx, KILN_OP_MAX_POOL2D, attrs, 0));
    CHECK_INT(attrs[0].n, 2);
    CHECK(!attrs[1].set);     /* stride: optional, absent */
    CHECK_INT(attrs[2].ints[0], 0); /* padding default */
    CHECK(attrs[4].b);
    kiln_buf b = {0};
    kiln_buf_attrs(&b, KILN_OP_MAX_POOL2D, attrs);
    char *s = kiln_buf_take(&b);
    CHECK_STR(s, "kernel=[2, 2], ceil_mode=true");
    free(s);
    CHECK(kiln_emit(r, "sum", 1, &x, "axis=1") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "op 'sum' has no attribute 'axis' (it has: axes, keepdims)"));
    CHECK(kiln_emit(r, "sum", 1, &x, "keepdims=3") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "attribute 'keepdims' of op 'sum': expected true or false"));
    CHECK(kiln_emit(r, "nll_loss", 2, (kiln_var *[]){x, x}, "reduction=\"avg\"") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "must be one of none|mean|sum, not \"avg\""));
    CHECK(kiln_emit(r, "reshape", 1, &x, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "op 'reshape' needs attribute 'shape'"));
    CHECK(kiln_emit(r, "frobnicate", 1, &x, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "unknown op 'frobnicate'"));
    CHECK(kiln_emit(r, "sum", 1, &x, "axes=[1") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "attributes:1:6: attribute 'axes' of op 'sum': expected ',' or ']'"));
    CHECK(kiln_emit(r, "sum", 2, (kiln_var *[]){x, x}, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "takes 1 inputs, got 2"));
    CHECK(kiln_emit(r, "exp", 1, (kiln_var *[]){kiln_lit_int(m, 1)}, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "op 'exp' at @main: input 0 has dtype int"));
    kiln_error_clear(ctx);
    CHECK(kiln_emit(r, "add", 2, (kiln_var *[]){x, NULL}, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "input 1 is NULL"));
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(builder_rejects_bad_structure) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "main");
    CHECK(kiln_function_new(m, "main") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "@main is defined twice"));
    kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 1, (int64_t[]){3}));
    kiln_region *r = kiln_function_body(f);
    CHECK_OK(ctx, kiln_region_yield(r, 1, &x));
    CHECK(kiln_emit(r, "copy", 1, &x, NULL) == NULL);
    CHECK(strstr(kiln_error_message(ctx), "already yielded"));
    /* an if whose condition is not bool */
    kiln_function *g = kiln_function_new(m, "g");
    kiln_var *y = kiln_function_param(g, "y", kiln_type_tensor(m, KILN_F32, 1, (int64_t[]){3}));
    kiln_node *n = kiln_emit_if(kiln_function_body(g), y);
    kiln_region_yield(kiln_node_region(n, 0), 1, &y);
    kiln_region_yield(kiln_node_region(n, 1), 1, &y);
    kiln_var *res = kiln_node_result(n);
    CHECK(res == NULL);
    CHECK(strstr(kiln_error_message(ctx), "condition must be bool or bool[], got f32[3]"));
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* def @main(%n: int) -> int: sum of 0..n-1 by a while loop, doubled if n > 3 (an if). */
static kiln_function *build_loop(kiln_module *m) {
    kiln_function *f = kiln_function_new(m, "main");
    kiln_var *n = kiln_function_param(f, "n", kiln_type_int(m));
    kiln_region *r = kiln_function_body(f);
    kiln_var *init[2] = {kiln_lit_int(m, 0), kiln_lit_int(m, 0)};
    kiln_node *w = kiln_emit_while(r, 2, init, (const char *[]){"i", "acc"});
    kiln_var *i = kiln_node_loop_var(w, 0), *acc = kiln_node_loop_var(w, 1);
    kiln_var *c = kiln_emit(kiln_node_region(w, 0), "less", 2, (kiln_var *[]){i, n}, NULL);
    kiln_region_yield(kiln_node_region(w, 0), 1, &c);
    kiln_region *body = kiln_node_region(w, 1);
    kiln_var *next[2] = {kiln_emit(body, "add", 2, (kiln_var *[]){i, kiln_lit_int(m, 1)}, NULL),
                         kiln_emit(body, "add", 2, (kiln_var *[]){acc, i}, NULL)};
    kiln_region_yield(body, 2, next);
    kiln_var *res = kiln_node_result(w);
    kiln_var *total = kiln_emit(r, "get", 1, &res, "index=1");
    kiln_var *big = kiln_emit(r, "greater", 2, (kiln_var *[]){n, kiln_lit_int(m, 3)}, NULL);
    kiln_node *br = kiln_emit_if(r, big);
    kiln_var *twice = kiln_emit(kiln_node_region(br, 0), "multiply", 2, (kiln_var *[]){total, kiln_lit_int(m, 2)}, NULL);
    kiln_region_yield(kiln_node_region(br, 0), 1, &twice);
    kiln_region_yield(kiln_node_region(br, 1), 1, &total);
    kiln_var *out = kiln_node_result(br);
    kiln_region_yield(r, 1, &out);
    return f;
}

TEST(interpreter_runs_while_and_if) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = build_loop(m);
    CHECK_OK(ctx, kiln_module_infer(m));
    struct { int64_t n, want; } cases[] = {{0, 0}, {1, 0}, {3, 3}, {4, 12}, {100, 9900}};
    for (size_t k = 0; k < KILN_COUNTOF(cases); k++) {
        kiln_value in = kiln_value_int(cases[k].n), out;
        CHECK_OK(ctx, kiln_function_run(f, 1, &in, &out));
        CHECK(out.kind == KILN_VALUE_INT);
        CHECK_INT(out.i, cases[k].want);
    }
    kiln_value bad = kiln_value_float(1.0), out;
    CHECK_ERR(ctx, kiln_function_run(f, 1, &bad, &out), KILN_ERR_VALUE, "input 0 (%n) must be int, got float");
    CHECK_ERR(ctx, kiln_function_run(f, 0, NULL, &out), KILN_ERR_VALUE, "@main takes 1 inputs, got 0");
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* Mutual recursion: is_even(n) = n == 0 ? true : is_odd(n - 1), and the other way round. */
TEST(interpreter_runs_mutual_recursion) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *fs[2] = {kiln_function_new(m, "is_even"), kiln_function_new(m, "is_odd")};
    kiln_var *ns[2];
    for (int k = 0; k < 2; k++) {
        ns[k] = kiln_function_param(fs[k], "n", kiln_type_int(m));
        fs[k]->declared_ret = kiln_type_bool(m);
    }
    for (int k = 0; k < 2; k++) {
        kiln_region *r = kiln_function_body(fs[k]);
        kiln_var *zero = kiln_emit(r, "equal", 2, (kiln_var *[]){ns[k], kiln_lit_int(m, 0)}, NULL);
        kiln_node *br = kiln_emit_if(r, zero);
        kiln_var *base = kiln_lit_bool(m, k == 0);
        kiln_region_yield(kiln_node_region(br, 0), 1, &base);
        kiln_region *els = kiln_node_region(br, 1);
        kiln_var *prev = kiln_emit(els, "subtract", 2, (kiln_var *[]){ns[k], kiln_lit_int(m, 1)}, NULL);
        kiln_var *rec = kiln_emit_call(els, fs[1 - k], 1, &prev);
        kiln_region_yield(els, 1, &rec);
        kiln_var *out = kiln_node_result(br);
        kiln_region_yield(r, 1, &out);
    }
    CHECK_OK(ctx, kiln_module_infer(m));
    for (int64_t n = 0; n < 7; n++) {
        kiln_value in = kiln_value_int(n), out;
        CHECK_OK(ctx, kiln_function_run(fs[0], 1, &in, &out));
        CHECK(out.kind == KILN_VALUE_BOOL && out.b == (n % 2 == 0));
    }
    kiln_value in = kiln_value_int(-1), out; /* never reaches 0: bounded by the depth limit */
    CHECK_ERR(ctx, kiln_function_run(fs[0], 1, &in, &out), KILN_ERR_VALUE, "call depth exceeds");
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(interpreter_tensor_loop_frees_as_it_goes) {
    /* x <- x * 2 + 1 ten times on a tensor; result checked, ASan checks that nothing leaks */
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "main");
    kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 1, (int64_t[]){3}));
    kiln_region *r = kiln_function_body(f);
    kiln_node *w = kiln_emit_while(r, 2, (kiln_var *[]){kiln_lit_int(m, 0), x}, NULL);
    kiln_var *i = kiln_node_loop_var(w, 0), *v = kiln_node_loop_var(w, 1);
    kiln_var *c = kiln_emit(kiln_node_region(w, 0), "less", 2, (kiln_var *[]){i, kiln_lit_int(m, 10)}, NULL);
    kiln_region_yield(kiln_node_region(w, 0), 1, &c);
    kiln_region *body = kiln_node_region(w, 1);
    kiln_var *d = kiln_emit(body, "multiply", 2, (kiln_var *[]){v, kiln_lit_float(m, 2.0)}, NULL);
    kiln_var *next[2] = {kiln_emit(body, "add", 2, (kiln_var *[]){i, kiln_lit_int(m, 1)}, NULL),
                         kiln_emit(body, "add", 2, (kiln_var *[]){d, kiln_lit_float(m, 1.0)}, NULL)};
    kiln_region_yield(body, 2, next);
    kiln_var *res = kiln_node_result(w);
    kiln_var *y = kiln_emit(r, "get", 1, &res, "index=1");
    kiln_region_yield(r, 1, &y);
    kiln_value in = tv(ctx, KILN_F32, "3", (double[]){0, 1, -1}), out;
    CHECK_OK(ctx, kiln_function_run(f, 1, &in, &out));
    CHECK_TENSOR(out, KILN_F32, "3", ((double[]){1023, 2047, -1}), 0);
    kiln_value_release(out);
    kiln_value_release(in);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(eager_op_run_reports_shape_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {tv(ctx, KILN_F32, "2,3", NULL), tv(ctx, KILN_F32, "4", NULL)}, out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "add", 2, in, NULL, &out), KILN_ERR_TYPE, "f32[2, 3]");
    CHECK(strstr(kiln_error_message(ctx), "f32[4]"));
    CHECK_ERR(ctx, kiln_op_run(ctx, "nope", 2, in, NULL, &out), KILN_ERR_TYPE, "unknown op 'nope'");
    release_all(2, in);
    kiln_context_free(ctx);
}
