/* test_ir_text.c — the IR text format: round trips of every example in tests/ir/ (byte-identical
 * reprint, structurally equal IR), names, literals, constants, recursion, size and nesting
 * limits, every parse error with its position, and verifier failures on hand-broken IR. */
#include "test.h"
#include <stdlib.h>

static const char *const EXAMPLES[] = {"basics", "literals", "names", "nested", "recursion"};

static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, fp) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(fp);
    return s;
}

static kiln_module *parse_example(kiln_context *ctx, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "tests/ir/%s.kir", name);
    char *text = read_text(path);
    if (!text) {
        test_fail(__FILE__, __LINE__, "cannot read %s", path);
        return NULL;
    }
    kiln_module *m = kiln_module_parse(ctx, text, path);
    if (!m) test_fail(__FILE__, __LINE__, "parse of %s: %s", path, kiln_error_message(ctx));
    free(text);
    return m;
}

/* ---- structural equality (names aside) --------------------------------------------------- */
typedef struct { const kiln_var **map; int n; } var_map; /* var id in a -> var in b */

static bool attr_same(kiln_attr_kind kind, const kiln_attr *x, const kiln_attr *y) {
    if (kind != KILN_ATTR_TENSOR || !x->set || !y->set) return kiln_attr_equal(kind, x, y);
    const kiln_tensor *s = x->tensor, *t = y->tensor;
    return s->dtype == t->dtype && s->ndim == t->ndim && s->numel == t->numel &&
           !memcmp(s->shape, t->shape, sizeof(int64_t) * (size_t)s->ndim) &&
           !memcmp(s->data, t->data, kiln_tensor_nbytes(s));
}

static bool var_same(var_map *vm, const kiln_var *a, const kiln_var *b) {
    if (a->kind != b->kind || !kiln_type_equal(a->type, b->type)) return false;
    if (a->kind == KILN_VAR_LITERAL) return !memcmp(&a->lit, &b->lit, sizeof a->lit);
    if (a->id < 0 || a->id >= vm->n) return false;
    if (!vm->map[a->id]) vm->map[a->id] = b; /* first sight: a definition */
    return vm->map[a->id] == b;
}

static bool region_same(var_map *vm, const kiln_region *a, const kiln_region *b) {
    const kiln_node *x = a->first, *y = b->first;
    for (; x && y; x = x->next, y = y->next) {
        const kiln_op_info *info = kiln_op_info_get(x->op);
        if (x->op != y->op || x->n_in != y->n_in || x->n_loop != y->n_loop || x->n_regions != y->n_regions) return false;
        if ((x->callee || y->callee) && (!x->callee || !y->callee || strcmp(x->callee->name, y->callee->name))) return false;
        for (int i = 0; i < x->n_in; i++)
            if (!var_same(vm, x->in[i], y->in[i])) return false;
        for (int i = 0; i < info->n_attrs; i++)
            if (!attr_same(info->attrs[i].kind, &x->attrs[i], &y->attrs[i])) return false;
        for (int i = 0; i < x->n_loop; i++)
            if (!var_same(vm, x->loop[i], y->loop[i])) return false;
        for (int i = 0; i < x->n_regions; i++)
            if (!region_same(vm, x->regions[i], y->regions[i])) return false;
        if (!var_same(vm, x->out, y->out)) return false;
    }
    if (x || y || a->n_results != b->n_results) return false;
    for (int i = 0; i < a->n_results; i++)
        if (!var_same(vm, a->results[i], b->results[i])) return false;
    return true;
}

static bool module_same(const kiln_module *a, const kiln_module *b) {
    if (a->n_funcs != b->n_funcs) return false;
    for (int k = 0; k < a->n_funcs; k++) {
        const kiln_function *f = a->funcs[k], *g = b->funcs[k];
        if (strcmp(f->name, g->name) || f->n_params != g->n_params || !kiln_type_equal(f->ret, g->ret)) return false;
        var_map vm = {calloc((size_t)f->n_vars + 1, sizeof *vm.map), f->n_vars};
        bool same = vm.map != NULL;
        for (int i = 0; same && i < f->n_params; i++) same = var_same(&vm, f->params[i], g->params[i]);
        same = same && region_same(&vm, f->body, g->body);
        free(vm.map);
        if (!same) return false;
    }
    return true;
}

/* parse(print(m)) must verify, be structurally equal to m and print byte-identically, with and
 * without types. Returns print(m) (caller frees). */
static char *check_round_trip(kiln_context *ctx, kiln_module *m, const char *what) {
    char *out = NULL;
    CHECK_OK(ctx, kiln_module_verify(m));
    for (int flags = 0; flags <= KILN_PRINT_TYPES; flags += KILN_PRINT_TYPES) {
        char *p1 = kiln_module_print(m, flags);
        kiln_module *m2 = p1 ? kiln_module_parse(ctx, p1, what) : NULL;
        if (!m2) {
            test_fail(__FILE__, __LINE__, "%s: reparse failed: %s\n%s", what, kiln_error_message(ctx), p1 ? p1 : "");
            free(p1);
            continue;
        }
        char *p2 = kiln_module_print(m2, flags);
        if (!p2 || strcmp(p1, p2)) test_fail(__FILE__, __LINE__, "%s: reprint differs:\n%s---\n%s", what, p1, p2 ? p2 : "");
        if (!module_same(m, m2)) test_fail(__FILE__, __LINE__, "%s: reparsed IR differs (flags %d)", what, flags);
        CHECK_OK(ctx, kiln_module_verify(m2));
        free(p2);
        kiln_module_free(m2);
        if (flags) free(p1);
        else out = p1;
    }
    return out;
}

TEST(ir_text_examples_round_trip) {
    kiln_context *ctx = kiln_context_new();
    for (size_t i = 0; i < KILN_COUNTOF(EXAMPLES); i++) {
        kiln_module *m = parse_example(ctx, EXAMPLES[i]);
        if (!m) continue;
        free(check_round_trip(ctx, m, EXAMPLES[i]));
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
}

TEST(ir_text_print_types) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = parse_example(ctx, "basics");
    if (m) {
        char *s = kiln_module_print(m, KILN_PRINT_TYPES), *plain = kiln_module_print(m, 0);
        CHECK(strstr(s, "def @main(%x: f32[2, 3], %n: int, %flag: bool) -> (f32[2, 3], f32[2]) {\n  let %a: f32[2, 3] = add(%x, 1.0)\n"));
        CHECK(strstr(s, "  let %s: f32[2] = sum(%b, axes=[1])\n"));
        CHECK(strstr(s, "  let %w: (int, f32[2, 3]) = while (%i = 0, %acc = %x) cond {\n    let %more: bool = less(%i, %n)\n"));
        CHECK(strstr(s, "  let %tu: (f32[2, 3], f32[2, 3]) = tuple(%a, %b)\n"));
        CHECK(strstr(plain, "  let %b = exp(%a)\n  let %s = sum(%b, axes=[1])\n  let %c = @helper(%b, %n)\n"));
        CHECK(strstr(plain, "  } else {\n    yield %b\n  }\n"));
        CHECK(strstr(plain, "  } do {\n    let %i2 = add(%i, 1)\n"));
        CHECK(!strchr(plain, '#')); /* comments are not kept */
        free(s);
        free(plain);
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
}

/* Numbered names are renumbered, kept names stay, reused ones get a suffix. */
TEST(ir_text_names_renumbered) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = parse_example(ctx, "names");
    if (m) {
        char *s = kiln_module_print(m, 0);
        CHECK_STR(s, "def @names(%x: f32[3], %0: f32[3]) -> f32[3] {\n"
                     "  let %sum.1 = add(%x, %0)\n"
                     "  let %1 = exp(%sum.1)\n"
                     "  let %r = if (true) {\n"
                     "    let %t = neg(%1)\n"
                     "    yield %t\n"
                     "  } else {\n"
                     "    let %t_1 = abs(%1)\n"
                     "    yield %t_1\n"
                     "  }\n"
                     "  return %r\n"
                     "}\n");
        CHECK(m->funcs[0]->params[1]->name == NULL);
        free(s);
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
}

/* Builder-made names: duplicates suffixed around taken names, odd characters replaced, unnamed
 * and all-digit names numbered in definition order. */
TEST(ir_text_names_from_builder) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "main");
    int64_t two = 2;
    kiln_var *x = kiln_function_param(f, "t", kiln_type_tensor(m, KILN_F32, 1, &two));
    kiln_region *body = kiln_function_body(f);
    kiln_var *v[6];
    const char *names[6] = {"t", "t_1", NULL, "a b", "5", "t"};
    kiln_var *prev = x;
    for (int i = 0; i < 6; i++) {
        v[i] = prev = kiln_emit(body, "neg", 1, &prev, NULL);
        if (!v[i]) break;
        kiln_var_set_name(v[i], names[i]);
    }
    CHECK_OK(ctx, kiln_region_yield(body, 1, &prev));
    CHECK_OK(ctx, kiln_module_infer(m));
    char *s = kiln_module_print(m, 0);
    CHECK_STR(s, "def @main(%t: f32[2]) -> f32[2] {\n"
                 "  let %t_2 = neg(%t)\n"
                 "  let %t_1 = neg(%t_2)\n"
                 "  let %0 = neg(%t_1)\n"
                 "  let %a_b = neg(%0)\n"
                 "  let %1 = neg(%a_b)\n"
                 "  let %t_3 = neg(%1)\n"
                 "  return %t_3\n"
                 "}\n");
    free(s);
    free(check_round_trip(ctx, m, "builder names"));
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(ir_text_literals_and_constants) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = parse_example(ctx, "literals");
    if (m) {
        const kiln_region *body = m->funcs[0]->body;
        CHECK_INT(body->n_results, 8);
        if (body->n_results == 8) {
            kiln_var *const *r = body->results;
            CHECK(r[0]->lit.i == INT64_MAX && r[1]->lit.i == INT64_MIN);
            CHECK(isinf(r[2]->lit.f) && r[2]->lit.f > 0 && isinf(r[3]->lit.f) && r[3]->lit.f < 0);
            CHECK(isnan(r[4]->lit.f));
            CHECK(r[5]->lit.f == 0 && signbit(r[5]->lit.f));
            CHECK(r[6]->lit.b && !r[7]->lit.b);
        }
        /* tensor constants: one per dtype */
        static const struct { const char *name; kiln_dtype dt; double first, last; } consts[] = {
            {"f32", KILN_F32, 1.0, 3.4028234663852886e+38}, {"f64", KILN_F64, 0.1, 5e-324},
            {"f16", KILN_F16, 1.0, INFINITY}, {"bf16", KILN_BF16, 1.0, -3.0}, {"i8", KILN_I8, -128, 127},
            {"u8", KILN_U8, 0, 255}, {"i32", KILN_I32, -2147483648.0, 2147483647.0}, {"bools", KILN_BOOL, 1, 1}};
        int found = 0;
        for (const kiln_node *n = body->first; n; n = n->next) {
            if (n->op != KILN_OP_CONSTANT) continue;
            const kiln_tensor *t = n->attrs[0].tensor;
            for (size_t k = 0; k < KILN_COUNTOF(consts); k++) {
                if (strcmp(n->out->name, consts[k].name)) continue;
                found++;
                CHECK_INT(t->dtype, consts[k].dt);
                CHECK(kiln_load_f64(t->dtype, t->data, 0) == consts[k].first);
                CHECK(kiln_load_f64(t->dtype, t->data, t->numel - 1) == consts[k].last);
            }
            if (!strcmp(n->out->name, "i64")) {
                found++;
                CHECK(kiln_load_i64(KILN_I64, t->data, 0) == INT64_MIN && kiln_load_i64(KILN_I64, t->data, 1) == INT64_MAX);
            }
        }
        CHECK_INT(found, 9);
        char *s = kiln_module_print(m, 0);
        CHECK(strstr(s, "let %a = add(%x, -0.0)\n  let %b = multiply(%a, 1e-05)\n  let %c = add(%b, 1.5e+300)\n"));
        CHECK(strstr(s, "tuple(%c, inf, -inf, nan, 0.1, 1, -2)"));
        CHECK(strstr(s, "constant(value=f64[3]{0.1, -0.0, 5e-324})"));
        CHECK(strstr(s, "constant(value=f16[3]{1.0, 65504.0, inf})"));
        CHECK(strstr(s, "return 9223372036854775807, -9223372036854775808, inf, -inf, nan, -0.0, true, false\n"));
        free(s);
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
}

TEST(ir_text_comments_and_layout) {
    kiln_context *ctx = kiln_context_new();
    const char *text = "# leading comment\n"
                       "def @f(%x: int)->int{#after brace\n"
                       "let %y=add(%x,1)# no spaces needed\n"
                       "  # a comment line\n"
                       "return %y}   # trailing\n# last line without newline";
    kiln_module *m = kiln_module_parse(ctx, text, "c.kir");
    CHECK(m != NULL);
    if (m) {
        char *s = kiln_module_print(m, 0);
        CHECK_STR(s, "def @f(%x: int) -> int {\n  let %y = add(%x, 1)\n  return %y\n}\n");
        free(s);
        kiln_module_free(m);
    }
    m = kiln_module_parse(ctx, "  # nothing but a comment\n", "empty.kir");
    CHECK(m && m->n_funcs == 0);
    char *s = m ? kiln_module_print(m, 0) : NULL;
    CHECK_STR(s, "");
    free(s);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(ir_text_mutual_recursion_runs) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = parse_example(ctx, "recursion");
    if (m) {
        for (int k = 0; k < 5; k++) {
            kiln_value in = kiln_value_int(k), out;
            CHECK_OK(ctx, kiln_function_run(kiln_module_function(m, "is_even"), 1, &in, &out));
            CHECK(out.kind == KILN_VALUE_BOOL && out.b == (k % 2 == 0));
        }
        kiln_module_free(m);
    }
    /* a call to a function defined later, no recursion: no declared type needed */
    m = kiln_module_parse(ctx, "def @a(%x: int) {\n  let %y = @b(%x)\n  return %y\n}\n"
                               "def @b(%x: int) {\n  return %x\n}\n", "later.kir");
    CHECK(m && kiln_type_is_scalar(m->funcs[0]->ret));
    if (m) free(check_round_trip(ctx, m, "later"));
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* Empty returns and yields, zero loop variables, functions without parameters. */
TEST(ir_text_empty_forms) {
    kiln_context *ctx = kiln_context_new();
    const char *text = "def @f() -> () {\n"
                       "  let %t = tuple()\n"
                       "  let %w = while () cond {\n"
                       "    yield false\n"
                       "  } do {\n"
                       "    yield\n"
                       "  }\n"
                       "  return\n"
                       "}\n";
    kiln_module *m = kiln_module_parse(ctx, text, "empty.kir");
    if (!m) test_fail(__FILE__, __LINE__, "%s", kiln_error_message(ctx));
    char *s = m ? check_round_trip(ctx, m, "empty forms") : NULL;
    CHECK_STR(s, text);
    free(s);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* 100k bindings in one function: no recursion on the length of a region. */
TEST(ir_text_long_function) {
    enum { N = 100000 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @long(%v0: f32[2]) -> f32[2] {\n");
    for (int i = 1; i <= N; i++) kiln_buf_printf(&b, "  let %%v%d = add(%%v%d, 1.0)\n", i, i - 1);
    kiln_buf_printf(&b, "  return %%v%d\n}\n", N);
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "long.kir");
    CHECK(m != NULL);
    if (m) {
        char *s = kiln_module_print(m, 0);
        CHECK_STR(s, text);
        CHECK_OK(ctx, kiln_module_verify(m));
        free(s);
        kiln_module_free(m);
    }
    free(text);
    kiln_context_free(ctx);
}

/* 20k sibling ifs reuse %t in both branches: the printer's suffixes must stay linear-time. */
TEST(ir_text_many_duplicate_names) {
    enum { N = 20000 };
    kiln_context *ctx = kiln_context_new();
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @dups(%x: f32[2]) -> f32[2] {\n");
    for (int i = 0; i < N; i++)
        kiln_buf_printf(&b, "  let %%r%d = if (true) {\n    let %%t = neg(%%x)\n    yield %%t\n  } else {\n"
                            "    let %%t = abs(%%x)\n    yield %%t\n  }\n", i);
    kiln_buf_puts(&b, "  return %x\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "dups.kir");
    CHECK(m != NULL);
    if (m) {
        char *s = check_round_trip(ctx, m, "dups");
        CHECK(s && strstr(s, "    let %t_1 = abs(%x)\n") && strstr(s, "    let %t_39999 = abs(%x)\n    yield %t_39999\n"));
        free(s);
        kiln_module_free(m);
    }
    free(text);
    kiln_context_free(ctx);
}

/* `depth` ifs nested in each other's then branch. */
static char *nested_ifs(int depth) {
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @deep() -> int {\n");
    for (int i = 0; i < depth; i++) kiln_buf_printf(&b, "let %%r%d = if (true) {\n", i);
    kiln_buf_puts(&b, "yield 1\n");
    for (int i = depth - 1; i >= 0; i--) kiln_buf_printf(&b, "} else {\nyield 2\n}\n%s %%r%d\n", i ? "yield" : "return", i);
    kiln_buf_puts(&b, "}\n");
    return kiln_buf_take(&b);
}

TEST(ir_text_nesting_limit) {
    kiln_context *ctx = kiln_context_new();
    char *ok = nested_ifs(256), *deep = nested_ifs(257);
    kiln_module *m = kiln_module_parse(ctx, ok, "deep.kir");
    if (!m) test_fail(__FILE__, __LINE__, "%s", kiln_error_message(ctx));
    else free(check_round_trip(ctx, m, "deep"));
    kiln_module_free(m);
    CHECK(kiln_module_parse(ctx, deep, "deep.kir") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "deep.kir:258:23: regions nested more than 256 deep"));
    free(ok);
    free(deep);
    /* tuple and list types nest too, with their own bound (found by the fuzzer: list(...) used
     * to restart the count) */
    const char *openers[] = {"(", "list(", "(list("};
    for (int k = 0; k < 3; k++) {
        kiln_buf b = {0};
        kiln_buf_puts(&b, "def @t(%x: ");
        for (int i = 0; i < 20000; i++) kiln_buf_puts(&b, openers[k]);
        char *text = kiln_buf_take(&b);
        CHECK(kiln_module_parse(ctx, text, "t.kir") == NULL);
        CHECK(strstr(kiln_error_message(ctx), "types nested more than 64 deep"));
        free(text);
    }
    /* 64 levels parse */
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @t(%x: ");
    for (int i = 0; i < 63; i++) kiln_buf_puts(&b, "list(");
    kiln_buf_puts(&b, "f32[2]");
    for (int i = 0; i < 63; i++) kiln_buf_puts(&b, ")");
    kiln_buf_puts(&b, ") {\n  return %x\n}\n");
    char *text = kiln_buf_take(&b);
    m = kiln_module_parse(ctx, text, "t.kir");
    if (!m) test_fail(__FILE__, __LINE__, "%s", kiln_error_message(ctx));
    kiln_module_free(m);
    free(text);
    kiln_context_free(ctx);
}

/* Every ```kir block of docs/ir.md parses and round-trips; a block without comments is already
 * in printed form. */
TEST(ir_text_docs_examples) {
    kiln_context *ctx = kiln_context_new();
    char *doc = read_text("docs/ir.md");
    CHECK(doc != NULL);
    int blocks = 0;
    for (char *p = doc; p && (p = strstr(p, "```kir\n"));) {
        p += 7;
        char *end = strstr(p, "```");
        if (!end) break;
        *end = 0;
        blocks++;
        kiln_module *m = kiln_module_parse(ctx, p, "docs/ir.md");
        if (!m) {
            test_fail(__FILE__, __LINE__, "docs block %d: %s", blocks, kiln_error_message(ctx));
        } else {
            char *s = check_round_trip(ctx, m, "docs");
            if (!strchr(p, '#')) CHECK_STR(s, p);
            free(s);
            kiln_module_free(m);
        }
        p = end + 3;
    }
    CHECK(blocks >= 6);
    free(doc);
    kiln_context_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------------ */
static void check_parse_error(int line, const char *text, kiln_status want, const char *sub) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "e.kir");
    if (m) {
        test_fail(__FILE__, line, "parsed, expected the error \"%s\"", sub);
        kiln_module_free(m);
    } else if (kiln_error_status(ctx) != want || !strstr(kiln_error_message(ctx), sub)) {
        test_fail(__FILE__, line, "error (%s) \"%s\", expected (%s) \"%s\"", kiln_status_name(kiln_error_status(ctx)),
                  kiln_error_message(ctx), kiln_status_name(want), sub);
    }
    kiln_context_free(ctx);
}
#define PARSE_ERR(text, st, sub) check_parse_error(__LINE__, (text), (st), (sub))
#define F2 "def @f(%x: f32[2], %n: int, %c: bool) {\n" /* a header for one-line bodies */

TEST(ir_text_errors_ops_and_attributes) {
    PARSE_ERR(F2 "  let %a = ad(%x, 1.0)\n  return %a\n}", KILN_ERR_PARSE,
              "e.kir:2:12: unknown op 'ad' (did you mean 'add'? `kiln ops` lists every op)");
    PARSE_ERR(F2 "  let %a = frobnicate(%x)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:12: unknown op 'frobnicate' (`kiln ops`");
    PARSE_ERR(F2 "  let %a = sum(%x, axis=[0])\n  return %a\n}", KILN_ERR_PARSE,
              "e.kir:2:20: op 'sum' has no attribute 'axis' (it has: axes, keepdims)");
    PARSE_ERR(F2 "  let %a = sum(%x, axes=0)\n  return %a\n}", KILN_ERR_PARSE,
              "e.kir:2:25: attribute 'axes' of op 'sum': expected '[' starting a list, found '0'");
    PARSE_ERR(F2 "  let %a = sum(%x, keepdims=1)\n  return %a\n}", KILN_ERR_PARSE,
              "e.kir:2:29: attribute 'keepdims' of op 'sum': expected true or false, found '1'");
    PARSE_ERR(F2 "  let %t = tuple(%x)\n  let %a = get(%t)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:3:18: op 'get' needs attribute 'index'");
    PARSE_ERR(F2 "  let %a = add(%x %x)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:19: expected ',' or ')' after an operand, found '%x'");
    PARSE_ERR(F2 "  let %a = add(%x, )\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:20: expected an operand (a %variable or a literal), found ')'");
    PARSE_ERR(F2 "  let %a = call(%x)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:12: a call is written @function(arguments)");
    PARSE_ERR(F2 "  let %a = add(%x)\n  return %a\n}", KILN_ERR_TYPE, "op 'add' at e.kir:2:12: takes 2 inputs, got 1");
    PARSE_ERR(F2 "  let %k = constant(value=f32[1000000000]{1.0})\n  return %k\n}", KILN_ERR_PARSE,
              "tensor literal needs 1000000000 values, more than the rest of the input holds");
    PARSE_ERR(F2 "  let %k = constant(value=f32[2]{1.0})\n  return %k\n}", KILN_ERR_PARSE, "tensor literal has 1 values, its shape needs 2");
}

TEST(ir_text_errors_scopes) {
    PARSE_ERR(F2 "  let %a = add(%y, 1.0)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:16: undefined variable %y");
    PARSE_ERR(F2 "  let %a = add(%a, 1.0)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:16: undefined variable %a");
    PARSE_ERR(F2 "  let %a = neg(%x)\n  let %a = neg(%x)\n  return %a\n}", KILN_ERR_PARSE,
              "e.kir:3:7: variable %a is defined twice (first at 2:7)");
    PARSE_ERR(F2 "  let %x = neg(%x)\n  return %x\n}", KILN_ERR_PARSE, "e.kir:2:7: variable %x is defined twice (first at 1:8)");
    PARSE_ERR("def @f(%x: int, %x: int) {\n  return %x\n}", KILN_ERR_PARSE, "e.kir:1:17: variable %x is defined twice (first at 1:8)");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    let %t = neg(%x)\n    yield %t\n  } else {\n    yield %x\n  }\n"
                 "  let %u = exp(%t)\n  return %u\n}", KILN_ERR_PARSE,
              "e.kir:8:16: variable %t is used outside its scope (defined at 3:9 in a region that has ended)");
    PARSE_ERR(F2 "  let %w = while (%i = 0) cond {\n    yield %c\n  } do {\n    yield %i\n  }\n  return %i\n}", KILN_ERR_PARSE,
              "e.kir:7:10: variable %i is used outside its scope (defined at 2:19");
    PARSE_ERR(F2 "  let %w = while (%n = 0) cond {\n    yield %c\n  } do {\n    yield %n\n  }\n  return %w\n}", KILN_ERR_PARSE,
              "e.kir:2:19: variable %n is defined twice (first at 1:20)");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    yield %r\n  } else {\n    yield 1\n  }\n  return %r\n}", KILN_ERR_PARSE,
              "e.kir:3:11: undefined variable %r");
}

TEST(ir_text_errors_structure) {
    PARSE_ERR(F2 "  let %a = neg(%x)\n}", KILN_ERR_PARSE, "e.kir:3:1: missing 'return' at the end of @f");
    PARSE_ERR(F2 "  let %r = if (%c) {\n  } else {\n    yield 1\n  }\n  return %r\n}", KILN_ERR_PARSE,
              "e.kir:3:3: missing 'yield' at the end of a region");
    PARSE_ERR(F2 "  yield %x\n}", KILN_ERR_PARSE, "e.kir:2:3: a function body ends with 'return', not 'yield'");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    return 1\n  } else {\n    yield 1\n  }\n  return %r\n}", KILN_ERR_PARSE,
              "e.kir:3:5: 'return' only ends a function body; a nested region ends with 'yield'");
    PARSE_ERR(F2 "  return %x\n  let %a = neg(%x)\n}", KILN_ERR_PARSE, "e.kir:3:3: expected ',' or '}' after an operand, found 'let'");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    yield 1, 2\n  } else {\n    yield 1\n  }\n  return %r\n}", KILN_ERR_PARSE,
              "e.kir:5:5: the branches of an if yield different numbers of values: then 2, else 1");
    PARSE_ERR(F2 "  let %w = while (%i = 0, %j = 1) cond {\n    yield %c\n  } do {\n    yield %i\n  }\n  return %w\n}", KILN_ERR_PARSE,
              "e.kir:5:5: the body of a while yields 1 values for 2 loop variables");
    PARSE_ERR(F2 "  let %w = while (%i = 0) cond {\n    yield %c, %c\n  } do {\n    yield %i\n  }\n  return %w\n}", KILN_ERR_PARSE,
              "e.kir:3:5: the cond region of a while yields 2 values; it must yield one bool");
    PARSE_ERR(F2 "  let %w = while (%i = 0) {\n    yield %c\n  }\n  return %w\n}", KILN_ERR_PARSE,
              "e.kir:2:27: expected 'cond' after the loop variables, found '{'");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    yield 1\n  }\n  return %r\n}", KILN_ERR_PARSE, "e.kir:5:3: expected 'else' after the then branch, found 'return'");
    PARSE_ERR(F2 "  let %a = @nope(%x)\n  return %a\n}", KILN_ERR_PARSE, "e.kir:2:12: unknown function @nope");
    PARSE_ERR("def @f() {\n  return 1\n}\ndef @f() {\n  return 2\n}", KILN_ERR_PARSE, "e.kir:4:5: function @f is defined twice (first at 1:5)");
    PARSE_ERR("let %a = neg(1)", KILN_ERR_PARSE, "e.kir:1:1: expected 'def' or 'kernel' at the top level, found 'let'");
    PARSE_ERR("def @f() {\n  return 1\n", KILN_ERR_PARSE, "e.kir:3:1: the body of @f (line 1) is not closed with '}'");
    PARSE_ERR("def f() {\n}", KILN_ERR_PARSE, "e.kir:1:5: expected a function name @name after 'def', found 'f'");
    PARSE_ERR("def @f(%x) {\n}", KILN_ERR_PARSE, "e.kir:1:10: expected ':' and the parameter's type, found ')'");
    PARSE_ERR("def @f(%x: f32[2, -1]) {\n}", KILN_ERR_PARSE, "e.kir:1:19: expected a dimension size (integer >= 0), found '-1'");
    PARSE_ERR("def @f() {\n  let %s = tuple(\"x)\n}", KILN_ERR_PARSE, "e.kir:2:18: unterminated string");
    PARSE_ERR("def @f() {\n  let %s = $\n}", KILN_ERR_PARSE, "e.kir:2:12: unexpected character '$'");
    PARSE_ERR("def @f() {\n  let %s = neg(99999999999999999999)\n}", KILN_ERR_PARSE, "e.kir:2:16: integer 99999999999999999999 out of range");
    PARSE_ERR("def @f() {\n  let = neg(1)\n}", KILN_ERR_PARSE, "e.kir:2:7: expected a %name after 'let', found '='");
    PARSE_ERR("def @f() {\n  let %a = %b\n}", KILN_ERR_PARSE, "e.kir:2:12: expected an op, @function, 'if' or 'while' after '=', found '%b'");
    kiln_context *ctx = kiln_context_new();
    CHECK(kiln_module_parse(ctx, NULL, "null.kir") == NULL);
    CHECK(strstr(kiln_error_message(ctx), "null.kir: no text to parse"));
    kiln_context_free(ctx);
}

TEST(ir_text_errors_types) {
    PARSE_ERR(F2 "  let %a: f32[3] = add(%x, 1.0)\n  return %a\n}", KILN_ERR_TYPE, "e.kir:2:11: %a declared f32[3] but inferred f32[2]");
    PARSE_ERR(F2 "  let %t: (f32[2], int) = tuple(%x, %c)\n  return %t\n}", KILN_ERR_TYPE,
              "e.kir:2:11: %t declared (f32[2], int) but inferred (f32[2], bool)");
    PARSE_ERR("def @f(%x: f32[2], %y: f32[3]) {\n  let %a = add(%x, %y)\n  return %a\n}", KILN_ERR_TYPE, "op 'add' at e.kir:2:12:");
    PARSE_ERR(F2 "  let %a = exp(%n)\n  return %a\n}", KILN_ERR_TYPE, "op 'exp' at e.kir:2:12:");
    PARSE_ERR("def @f(%x: f32[2]) -> f32[3] {\n  return %x\n}", KILN_ERR_TYPE,
              "e.kir:1:5: function @f is declared to return f32[3] but returns f32[2]");
    PARSE_ERR("def @f(%n: int) {\n  let %r = @f(%n)\n  return %r\n}", KILN_ERR_TYPE,
              "op 'call' at e.kir:2:12: @f is called recursively before its return type is known; declare it with '-> type'");
    PARSE_ERR("def @f(%n: int) -> int {\n  return %n\n}\ndef @g() {\n  let %r = @f(1.5)\n  return %r\n}", KILN_ERR_TYPE,
              "op 'call' at e.kir:5:12: argument 0 of @f must be int, got float");
    PARSE_ERR(F2 "  let %r = if (%n) {\n    yield 1\n  } else {\n    yield 2\n  }\n  return %r\n}", KILN_ERR_TYPE,
              "op 'if' at e.kir:2:12: condition must be bool or bool[], got int");
    PARSE_ERR(F2 "  let %r = if (%c) {\n    yield 1\n  } else {\n    yield 2.0\n  }\n  return %r\n}", KILN_ERR_TYPE,
              "op 'if' at e.kir:2:12: branches yield different types: then int, else float");
    PARSE_ERR(F2 "  let %w = while (%i = 0) cond {\n    yield %i\n  } do {\n    yield %i\n  }\n  return %w\n}", KILN_ERR_TYPE,
              "op 'while' at e.kir:2:12: cond region must yield one bool or bool[], got int");
}

/* ---- verifier ---------------------------------------------------------------------------- */
/* def @main(%x: f32[2], %c: bool) with an if whose then branch defines %t = neg(%x). */
typedef struct { kiln_context *ctx; kiln_module *m; kiln_function *f; kiln_var *x, *c, *t; kiln_node *if_node; } fixture;

static fixture make_fixture(void) {
    fixture fx = {kiln_context_new(), NULL, NULL, NULL, NULL, NULL, NULL};
    int64_t two = 2;
    fx.m = kiln_module_new(fx.ctx);
    fx.f = kiln_function_new(fx.m, "main");
    fx.x = kiln_function_param(fx.f, "x", kiln_type_tensor(fx.m, KILN_F32, 1, &two));
    fx.c = kiln_function_param(fx.f, "c", kiln_type_bool(fx.m));
    fx.if_node = kiln_emit_if(kiln_function_body(fx.f), fx.c);
    fx.t = kiln_emit(kiln_node_region(fx.if_node, 0), "neg", 1, &fx.x, NULL);
    kiln_var_set_name(fx.t, "t");
    return fx;
}

static void finish_if(fixture *fx) {
    kiln_region_yield(kiln_node_region(fx->if_node, 0), 1, &fx->t);
    kiln_region_yield(kiln_node_region(fx->if_node, 1), 1, &fx->x);
    kiln_node_result(fx->if_node);
}

static void free_fixture(fixture *fx) {
    kiln_module_free(fx->m);
    kiln_context_free(fx->ctx);
}

TEST(ir_text_verify_accepts_valid_ir) {
    fixture fx = make_fixture();
    finish_if(&fx);
    kiln_var *r = kiln_node_result(fx.if_node);
    CHECK_OK(fx.ctx, kiln_region_yield(kiln_function_body(fx.f), 1, &r));
    CHECK_OK(fx.ctx, kiln_module_infer(fx.m));
    free(check_round_trip(fx.ctx, fx.m, "fixture"));
    free_fixture(&fx);
}

TEST(ir_text_verify_scope_and_order) {
    fixture fx = make_fixture();
    finish_if(&fx);
    kiln_region *body = kiln_function_body(fx.f);
    kiln_var *u = kiln_emit(body, "exp", 1, &fx.t, NULL); /* %t's branch has ended */
    CHECK_OK(fx.ctx, kiln_region_yield(body, 1, &u));
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE,
              "verify: @main: node 3 'exp' (result id 4): input 0 is used outside the region that defines it");
    free_fixture(&fx);

    fx = make_fixture();
    finish_if(&fx);
    body = kiln_function_body(fx.f);
    kiln_var *a = kiln_emit(body, "neg", 1, &fx.x, NULL);
    kiln_var *b = kiln_emit(body, "exp", 1, &a, NULL);
    kiln_var_set_name(b, "b");
    CHECK_OK(fx.ctx, kiln_region_yield(body, 1, &b));
    kiln_node *bn = b->def; /* move %b before its input */
    kiln_region_remove(body, bn);
    kiln_region_insert_before(body, a->def, bn);
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "@main: node 3 'exp' (result %b): input 0 is used before it is defined");
    free_fixture(&fx);
}

TEST(ir_text_verify_structure) {
    fixture fx = make_fixture();
    finish_if(&fx);
    kiln_region *body = kiln_function_body(fx.f);
    kiln_var *a = kiln_emit(body, "add", 2, (kiln_var *[]){fx.x, fx.x}, NULL);
    CHECK_OK(fx.ctx, kiln_region_yield(body, 1, &a));
    CHECK_OK(fx.ctx, kiln_module_verify(fx.m));
    a->def->n_in = 1; /* arity */
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "node 3 'add' (result id 4): has 1 inputs; the op table allows 2 to 2");
    a->def->n_in = 2;
    int64_t three = 3;
    const kiln_type *saved = a->type;
    a->type = kiln_type_tensor(fx.m, KILN_F32, 1, &three); /* type */
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "'add' (result id 4): has type f32[3] but its inputs give f32[2]");
    a->type = NULL;
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "'add' (result id 4): the result has no type");
    a->type = saved;
    body->n_results = -1; /* no return */
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "verify: @main: the body has no return");
    free_fixture(&fx);

    fx = make_fixture(); /* an if whose else branch never yields */
    kiln_region_yield(kiln_node_region(fx.if_node, 0), 1, &fx.t);
    CHECK_OK(fx.ctx, kiln_region_yield(kiln_function_body(fx.f), 1, &fx.x));
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "node 1 'if' (result id 2): region 1 does not end in yield");
    free_fixture(&fx);
}

TEST(ir_text_verify_while_and_call) {
    fixture fx = make_fixture();
    finish_if(&fx);
    kiln_region *body = kiln_function_body(fx.f);
    kiln_node *w = kiln_emit_while(body, 2, (kiln_var *[]){kiln_lit_int(fx.m, 0), fx.x}, (const char *[]){"i", "v"});
    kiln_region_yield(kiln_node_region(w, 0), 1, &fx.c);
    kiln_var *i = kiln_node_loop_var(w, 0);
    kiln_region_yield(kiln_node_region(w, 1), 1, &i); /* one value for two loop variables */
    CHECK_OK(fx.ctx, kiln_region_yield(body, 1, &fx.x));
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "node 3 'while' (result id 4): body yields 1 values for 2 loop variables");
    free_fixture(&fx);

    fx = make_fixture();
    finish_if(&fx);
    body = kiln_function_body(fx.f);
    kiln_function *g = kiln_function_new(fx.m, "g");
    kiln_var *p = kiln_function_param(g, "p", kiln_type_int(fx.m));
    kiln_region_yield(kiln_function_body(g), 1, &p);
    kiln_var *r = kiln_emit_call(body, g, 1, (kiln_var *[]){kiln_lit_int(fx.m, 3)});
    CHECK_OK(fx.ctx, kiln_region_yield(body, 1, &r));
    CHECK_OK(fx.ctx, kiln_module_infer(fx.m));
    CHECK_OK(fx.ctx, kiln_module_verify(fx.m));
    r->def->in[0] = fx.x; /* wrong argument type */
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "node 3 'call' (result id 4): argument 0 is f32[2], @g takes int");
    r->def->n_in = 0;
    CHECK_ERR(fx.ctx, kiln_module_verify(fx.m), KILN_ERR_TYPE, "@g takes 1 arguments, got 0");
    free_fixture(&fx);
}
