/* test_fuse.c — the fusion pass: which nodes land in which kernel functions for known programs
 * (MLP layer, softmax, layer norm, Adam), its grouping rules, and that every fused module
 * verifies and computes in the interpreter exactly (bit for bit) what the unfused one does. */
#include "test.h"
#include "compiler/compiler.h"
#include "codegen/codegen.h"
#include "dialects/dialect.h"
#include <stdlib.h>

/* Writes region r's ops: a call as its callee's name, if / while with their regions in braces. */
static void describe_region(kiln_buf *b, const kiln_region *r) {
    for (const kiln_node *n = r->first; n; n = n->next) {
        if (n != r->first) kiln_buf_puts(b, " ");
        kiln_buf_puts(b, n->op == KILN_OP_CALL ? n->callee->name : kiln_op_info_get(n->op)->name);
        for (int k = 0; k < n->n_regions; k++) {
            kiln_buf_puts(b, "{");
            describe_region(b, n->regions[k]);
            kiln_buf_puts(b, "}");
        }
    }
}

/* The module as "f: matmul f.k0 | f.k0 2>1: add relu": each function's ops; a kernel with its
 * parameter and result counts. Caller frees. */
static char *describe(const kiln_module *m) {
    kiln_buf b = {0};
    for (int i = 0; i < m->n_funcs; i++) {
        const kiln_function *f = m->funcs[i];
        kiln_buf_printf(&b, "%s%s", i ? " | " : "", f->name);
        if (f->kernel) kiln_buf_printf(&b, " %d>%d", f->n_params, f->body->n_results);
        kiln_buf_puts(&b, ": ");
        describe_region(&b, f->body);
    }
    return kiln_buf_take(&b);
}

static bool same_shape(const kiln_type *a, const kiln_type *b) {
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof *a->shape * (size_t)a->ndim);
}

/* codegen's contract for kernel k: generated-C ops only, and either (a) every member's result
 * of one shape or (b) one reduction, members before it of its input's shape, members after it
 * and every result of its result's shape. */
static bool kernel_ok(const kiln_function *k) {
    const kiln_node *red = NULL;
    for (const kiln_node *n = k->body->first; n; n = n->next) {
        if (!kiln_codegen_supports(n) || n->impl) return false;
        if (kiln_op_info_get(n->op)->cls == KILN_CLASS_REDUCE) {
            if (red) return false;
            red = n;
        }
    }
    bool past = false; /* at or after the reduction */
    for (const kiln_node *n = k->body->first; n; n = n->next) {
        past |= n == red;
        const kiln_type *want = !red ? k->body->first->out->type : past ? red->out->type : red->in[0]->type;
        if (!same_shape(n->out->type, want)) return false;
    }
    for (int i = 0; i < k->body->n_results; i++)
        if (!same_shape(k->body->results[i]->type, red ? red->out->type : k->body->first->out->type)) return false;
    return true;
}

/* No node that generated C computes is left outside a kernel (nested regions included). */
static bool all_fused(const kiln_region *r) {
    for (const kiln_node *n = r->first; n; n = n->next) {
        if (kiln_codegen_supports(n) && !n->impl) return false;
        for (int k = 0; k < n->n_regions; k++)
            if (!all_fused(n->regions[k])) return false;
    }
    return true;
}

/* Every kernel of m keeps codegen's contract (and kiln_codegen_c lowers it) and every other
 * function is fully fused. */
static void check_kernels(const char *file, int line, const kiln_module *m) {
    for (int i = 0; i < m->n_funcs; i++) {
        const kiln_function *f = m->funcs[i];
        kiln_gen_kernel k;
        if (!f->kernel ? !all_fused(f->body) : !kernel_ok(f))
            test_fail(file, line, "@%s: %s", f->name, f->kernel ? "not a group form codegen accepts" : "a generated-C op is left unfused");
        else if (f->kernel && kiln_codegen_c(m->ctx, f, &k))
            test_fail(file, line, "@%s: codegen: %s", f->name, kiln_error_message(m->ctx));
        else if (f->kernel)
            kiln_gen_kernel_free(&k);
    }
}

/* Runs kiln_pass_fuse on m's @f and checks that the module verifies. */
static kiln_status fuse_f(kiln_context *ctx, kiln_module *m, kiln_pass_ctx *pc) {
    *pc = (kiln_pass_ctx){.ctx = ctx, .module = m, .opt_level = 2};
    kiln_status s = kiln_pass_fuse(pc, kiln_module_function(m, "f"));
    return s ? s : kiln_module_verify(m);
}

/* Inputs for f's parameters: floats in [0.25, 1.75), small ints, alternating bools. */
static kiln_value make_input(kiln_context *ctx, const kiln_type *t, int p) {
    if (t->kind == KILN_TYPE_SCALAR)
        return t->dtype == KILN_BOOL ? kiln_value_bool(p % 2 == 0) : t->dtype == KILN_I64 ? kiln_value_int(3) : kiln_value_float(0.5);
    int64_t numel = 1;
    char shape[128] = "";
    for (int d = 0; d < t->ndim; d++) {
        numel *= t->shape[d];
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "", (long long)t->shape[d]);
    }
    double *data = malloc(sizeof *data * (size_t)(numel ? numel : 1));
    for (int64_t i = 0; i < numel; i++)
        data[i] = t->dtype == KILN_BOOL ? (double)((i + p) % 2)
                  : kiln_dtype_is_float(t->dtype) ? 0.25 + 1.5 * fabs(sin(1.3 * (double)i + 0.7 * p)) : (double)((i * 7 + p) % 5);
    kiln_value v = tv(ctx, t->dtype, shape, data);
    free(data);
    return v;
}

/* Bit-for-bit equality of two results (tensors, scalars, tuples of them). */
static bool same_value(kiln_value a, kiln_value b) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case KILN_VALUE_TENSOR:
        return kiln_tensor_dtype(a.tensor) == kiln_tensor_dtype(b.tensor) && kiln_tensor_ndim(a.tensor) == kiln_tensor_ndim(b.tensor) &&
               !memcmp(kiln_tensor_shape(a.tensor), kiln_tensor_shape(b.tensor), sizeof(int64_t) * (size_t)kiln_tensor_ndim(a.tensor)) &&
               !memcmp(kiln_tensor_data(a.tensor), kiln_tensor_data(b.tensor), kiln_tensor_nbytes(a.tensor));
    case KILN_VALUE_TUPLE:
        if (kiln_value_tuple_size(a) != kiln_value_tuple_size(b)) return false;
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            if (!same_value(kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i))) return false;
        return true;
    case KILN_VALUE_INT: return a.i == b.i;
    case KILN_VALUE_FLOAT: return !memcmp(&a.f, &b.f, sizeof a.f);
    case KILN_VALUE_BOOL: return a.b == b.b;
    default: return true;
    }
}

/* Fuses `text`'s @f, checks the structure against `expect` (describe's form) and the
 * interpreter's results against the unfused module's; returns kiln_pass_ctx.n_kernels. */
#define CHECK_FUSE(text, expect) check_fuse(__FILE__, __LINE__, (text), (expect), NULL)
static int check_fuse(const char *file, int line, const char *text, const char *expect, void (*edit)(kiln_module *)) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m0 = kiln_module_parse(ctx, text, "t.kir"), *m1 = kiln_module_parse(ctx, text, "t.kir");
    kiln_pass_ctx pc = {0};
    if (!m0 || !m1) {
        test_fail(file, line, "parse: %s", kiln_error_message(ctx));
        goto done;
    }
    if (edit) edit(m0), edit(m1);
    if (fuse_f(ctx, m1, &pc)) {
        test_fail(file, line, "fuse: %s", kiln_error_message(ctx));
        goto done;
    }
    char *got = describe(m1);
    if (!got || strcmp(got, expect)) {
        char *ir = kiln_module_print(m1, KILN_PRINT_TYPES);
        test_fail(file, line, "fused to \"%s\", expected \"%s\"\n%s", got ? got : "(null)", expect, ir ? ir : "");
        kiln_free(ir);
    }
    free(got);
    check_kernels(file, line, m1);
    kiln_function *f0 = kiln_module_function(m0, "f"), *f1 = kiln_module_function(m1, "f");
    kiln_value in[16], out0 = {0}, out1 = {0};
    int n = f0->n_params;
    for (int i = 0; i < n; i++) in[i] = make_input(ctx, f0->params[i]->type, i);
    if (kiln_function_run(f0, n, in, &out0) || kiln_function_run(f1, n, in, &out1))
        test_fail(file, line, "run: %s", kiln_error_message(ctx));
    else if (!same_value(out0, out1))
        test_fail(file, line, "the fused @f computes other results than the original");
    kiln_value_release(out0);
    kiln_value_release(out1);
    release_all(n, in);
done:
    kiln_module_free(m0);
    kiln_module_free(m1);
    kiln_context_free(ctx);
    return pc.n_kernels;
}

TEST(fuse_mlp_layer) {
    /* matmul is no generated-C op: it stays; bias add + relu become one kernel */
    CHECK_INT(CHECK_FUSE("def @f(%x: f32[4, 3], %w: f32[3, 5], %b: f32[5]) {\n let %h = matmul(%x, %w)\n"
                         " let %a = add(%h, %b)\n let %y = relu(%a)\n return %y\n}",
                         "f: matmul f.k0 | f.k0 2>1: add relu"),
              1);
}

TEST(fuse_softmax_from_primitives) {
    /* max | x - m, exp (exp is read by sum and divide, so sum cannot absorb it) | sum | divide */
    CHECK_FUSE("def @f(%x: f32[4, 6]) {\n let %m = max(%x, axes=[1], keepdims=true)\n let %d = subtract(%x, %m)\n"
               " let %e = exp(%d)\n let %s = sum(%e, axes=[1], keepdims=true)\n let %y = divide(%e, %s)\n return %y\n}",
               "f: f.k0 f.k1 f.k2 f.k3 | f.k0 1>1: max | f.k1 2>1: subtract exp | f.k2 1>1: sum | f.k3 2>1: divide");
    /* a reduction absorbs producers read by nothing else, and takes consumers of its result shape */
    CHECK_FUSE("def @f(%x: f32[4, 6], %y: f32[4, 6], %w: f32[4]) {\n let %d = subtract(%x, %y)\n let %q = multiply(%d, %d)\n"
               " let %s = sum(%q, axes=[1])\n let %r = sqrt(%s)\n let %z = multiply(%r, %w)\n return %z\n}",
               "f: f.k0 | f.k0 3>1: subtract multiply sum sqrt multiply");
}

TEST(fuse_layer_norm_from_primitives) {
    /* c * c is recomputed in the variance's kernel (c stays in memory for the normalisation),
     * so the sum absorbs it and c - m is the only result of its kernel */
    CHECK_FUSE("def @f(%x: f32[4, 8], %g: f32[8], %b: f32[8]) {\n"
               " let %mu = sum(%x, axes=[1], keepdims=true)\n let %m = divide(%mu, 8.0)\n"
               " let %c = subtract(%x, %m)\n let %sq = multiply(%c, %c)\n"
               " let %vs = sum(%sq, axes=[1], keepdims=true)\n let %v = divide(%vs, 8.0)\n let %ve = add(%v, 1e-05)\n"
               " let %r = rsqrt(%ve)\n let %n = multiply(%c, %r)\n let %y1 = multiply(%n, %g)\n let %y = add(%y1, %b)\n"
               " return %y\n}",
               "f: f.k0 f.k1 f.k2 f.k3 | f.k0 1>1: sum divide | f.k1 2>1: subtract"
               " | f.k2 1>1: multiply sum divide add rsqrt | f.k3 4>1: multiply multiply add");
}

TEST(fuse_adam_update_is_one_kernel) {
    /* the groups started by m*0.9, g*0.1, g*g, v*0.999 merge where their values meet */
    CHECK_INT(CHECK_FUSE("def @f(%p: f32[6], %g: f32[6], %m: f32[6], %v: f32[6]) {\n"
                         " let %m1a = multiply(%m, 0.9)\n let %m1b = multiply(%g, 0.1)\n let %m1 = add(%m1a, %m1b)\n"
                         " let %g2 = multiply(%g, %g)\n let %v1a = multiply(%v, 0.999)\n let %v1b = multiply(%g2, 0.001)\n"
                         " let %v1 = add(%v1a, %v1b)\n let %mh = divide(%m1, 0.1)\n let %vh = divide(%v1, 0.001)\n"
                         " let %sq = sqrt(%vh)\n let %den = add(%sq, 1e-08)\n let %u = divide(%mh, %den)\n"
                         " let %st = multiply(%u, 0.001)\n let %p1 = subtract(%p, %st)\n return %p1, %m1, %v1\n}",
                         "f: f.k0 get get get | f.k0 4>3: multiply multiply add multiply multiply multiply add divide divide"
                         " sqrt add divide multiply subtract"),
              1);
}

TEST(fuse_closes_a_group_read_between_members) {
    /* matmul reads exp's value before `add` could join: exp's group is closed (its call must
     * precede the matmul), so the adds form a second kernel */
    CHECK_FUSE("def @f(%x: f32[4], %w: f32[4, 4]) {\n let %a = exp(%x)\n let %m = matmul(%w, %a)\n"
               " let %b = add(%a, 1.0)\n let %c = add(%b, %m)\n return %c\n}",
               "f: f.k0 matmul f.k1 | f.k0 1>1: exp | f.k1 2>1: add add");
    /* read after the last member: one kernel with two results (a tuple taken apart with get);
     * b is not recomputed in f.k1: x, its chain's leaf, is read for the last time before (a
     * parameter may give its buffer to a result once read) */
    CHECK_FUSE("def @f(%x: f32[4], %w: f32[4, 4]) {\n let %a = exp(%x)\n let %b = add(%a, 1.0)\n"
               " let %m = matmul(%w, %a)\n let %c = multiply(%m, %b)\n return %c\n}",
               "f: f.k0 get get matmul f.k1 | f.k0 1>2: exp add | f.k1 2>1: multiply");
    /* an unfused op between members that does not read the group changes nothing */
    CHECK_FUSE("def @f(%x: f32[4], %w: f32[4, 4]) {\n let %a = exp(%x)\n let %m = matmul(%w, %x)\n"
               " let %b = add(%a, %m)\n return %b\n}",
               "f: matmul f.k0 | f.k0 2>1: exp add");
}

TEST(fuse_reduction_with_producers_read_elsewhere) {
    /* d is also returned: the producers stay a kernel of their own; the sum's kernel recomputes
     * q from d (in memory anyway) instead of reading q */
    CHECK_FUSE("def @f(%x: f32[4, 6], %y: f32[4, 6]) {\n let %d = subtract(%x, %y)\n let %q = multiply(%d, %d)\n"
               " let %s = sum(%q, axes=[1])\n let %r = sqrt(%s)\n return %r, %d\n}",
               "f: f.k0 f.k1 | f.k0 2>1: subtract | f.k1 1>1: multiply sum sqrt");
    /* a full reduction to 0-d with a consumer; then a second reduction starts a new group */
    CHECK_FUSE("def @f(%x: f32[3, 5]) {\n let %e = exp(%x)\n let %s = sum(%e)\n let %h = multiply(%s, 0.5)\n"
               " let %t = prod(%h)\n return %t\n}",
               "f: f.k0 f.k1 | f.k0 1>1: exp sum multiply | f.k1 1>1: prod");
    /* a consumer of another shape than the reduction's result starts a new group */
    CHECK_FUSE("def @f(%x: f32[3, 5]) {\n let %s = max(%x, axes=[0])\n let %y = subtract(%x, %s)\n"
               " let %z = abs(%y)\n return %z\n}",
               "f: f.k0 f.k1 | f.k0 1>1: max | f.k1 2>1: subtract abs");
}

TEST(fuse_broadcasting_inputs_and_dtypes) {
    /* inputs of any broadcastable shape; a cast and a comparison keep the shape; ints and bools */
    CHECK_FUSE("def @f(%x: f32[4, 1], %y: f32[1, 5], %k: i32[5]) {\n let %a = add(%x, %y)\n let %b = multiply(%a, %k)\n"
               " let %c = cast(%b, dtype=f16)\n let %g = greater(%c, 1.0)\n let %w = where(%g, %c, %x)\n return %w, %g\n}",
               "f: f.k0 get get | f.k0 3>2: add multiply cast greater where");
    CHECK_FUSE("def @f(%x: i64[6], %y: i64[6]) {\n let %a = add(%x, %y)\n let %b = multiply(%a, 3)\n"
               " let %c = less(%b, 10)\n let %d = any(%c)\n return %d\n}",
               "f: f.k0 | f.k0 2>1: add multiply less any");
}

static const kiln_dialect_impl fake_impl = {KILN_OP_ADD, KILN_DIALECT_BLAS, 1, NULL, NULL};

/* Gives the first `add` of @f a library implementation, as dispatch would. */
static void claim_add(kiln_module *m) {
    for (kiln_node *n = kiln_module_function(m, "f")->body->first; n; n = n->next)
        if (n->op == KILN_OP_ADD) {
            n->impl = &fake_impl;
            return;
        }
}

TEST(fuse_leaves_library_nodes_alone) {
    check_fuse(__FILE__, __LINE__,
               "def @f(%x: f32[4], %y: f32[4]) {\n let %a = exp(%x)\n let %b = add(%a, %y)\n let %c = relu(%b)\n"
               " let %d = neg(%c)\n return %d\n}",
               "f: f.k0 add f.k1 | f.k0 1>1: exp | f.k1 1>1: relu neg", claim_add);
}

TEST(fuse_inside_if_and_while) {
    /* each region forms its own groups; values from outside are kernel parameters; a group value
     * read inside a nested region is read by the if / while node (the group closes before it);
     * region yields of group values are kernel results; scalar ops are never fused */
    CHECK_FUSE("def @f(%x: f32[4], %c: bool, %n: int) {\n let %a = exp(%x)\n let %a2 = add(%a, 1.0)\n"
               " let %y = if (%c) {\n  let %b = multiply(%a, 2.0)\n  let %d = add(%b, %x)\n  yield %d\n"
               " } else {\n  let %e = neg(%a2)\n  yield %e\n }\n"
               " let %w = while (%i = 0, %acc = %y) cond {\n  let %more = less(%i, %n)\n  yield %more\n"
               " } do {\n  let %i2 = add(%i, 1)\n  let %t = multiply(%acc, 0.5)\n  let %u = add(%t, %a)\n  yield %i2, %u\n }\n"
               " let %r = get(%w, index=1)\n let %z = subtract(%r, %a2)\n return %z\n}",
               "f: f.k0 get get if{f.k2}{f.k3} while{less}{add f.k4} get f.k1 | f.k0 1>2: exp add | f.k1 2>1: subtract"
               " | f.k2 2>1: multiply add | f.k3 1>1: neg | f.k4 2>1: multiply add");
}

TEST(fuse_kernel_names_count_on) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, "def @f(%x: f32[3]) {\n let %a = exp(%x)\n let %s = sum(%a)\n let %m = max(%x)\n"
                                            " let %b = add(%s, %m)\n return %b\n}", "t.kir");
    kiln_pass_ctx pc = {.ctx = ctx, .module = m, .opt_level = 2, .dialects = {KILN_DIALECT_C}, .n_kernels = 5};
    CHECK_OK(ctx, kiln_pass_fuse(&pc, kiln_module_function(m, "f")));
    CHECK_OK(ctx, kiln_module_verify(m));
    char *got = describe(m);
    /* add joins exp + sum (a consumer of the 0-d result) and closes max's group: max runs first */
    CHECK_STR(got, "f: f.k5 f.k6 | f.k5 1>1: max | f.k6 2>1: exp sum add");
    free(got);
    CHECK_INT(pc.n_kernels, 7);
    /* fusing again leaves a fused function as it is (its calls are no generated-C ops) */
    CHECK_OK(ctx, kiln_pass_fuse(&pc, kiln_module_function(m, "f")));
    CHECK_OK(ctx, kiln_pass_fuse(&pc, kiln_module_function(m, "f.k5")));
    CHECK_INT(kiln_module_function_count(m), 3);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(fuse_in_the_pass_pipeline) {
    /* composites decomposed first (gelu, layer_norm, softmax), then dispatch and fusion: the
     * result matches the interpreter on the original */
    static const char *text = "def @f(%x: f32[8, 16], %w: f32[16, 32], %b: f32[32], %g: f32[32], %e: f32[32]) {\n"
                              " let %h = matmul(%x, %w)\n let %a = add(%h, %b)\n let %y = gelu(%a)\n"
                              " let %n = layer_norm(%y, %g, %e)\n let %s = softmax(%n, axis=1)\n return %s\n}";
    kiln_context *ctx = kiln_context_new();
    kiln_module *m0 = kiln_module_parse(ctx, text, "t.kir"), *m1 = kiln_module_parse(ctx, text, "t.kir");
    kiln_function *f0 = kiln_module_function(m0, "f"), *f1 = kiln_module_function(m1, "f");
    kiln_pass_ctx pc = {.ctx = ctx, .module = m1, .opt_level = 2, .n_dialects = 1, .dialects = {KILN_DIALECT_C}};
    CHECK_OK(ctx, kiln_passes_run(&pc, f1));
    CHECK_OK(ctx, kiln_module_verify(m1));
    CHECK(pc.n_kernels >= 4);
    check_kernels(__FILE__, __LINE__, m1);
    kiln_value in[5], out0 = {0}, out1 = {0};
    for (int i = 0; i < 5; i++) in[i] = make_input(ctx, f0->params[i]->type, i);
    CHECK_OK(ctx, kiln_function_run(f0, 5, in, &out0));
    CHECK_OK(ctx, kiln_function_run(f1, 5, in, &out1));
    if (out0.kind == KILN_VALUE_TENSOR && out1.kind == KILN_VALUE_TENSOR) {
        const float *a = kiln_tensor_data(out0.tensor), *b = kiln_tensor_data(out1.tensor);
        for (int i = 0; i < 8 * 32; i++) CHECK_NEAR(b[i], a[i], 1e-5);
    } else {
        CHECK(false);
    }
    kiln_value_release(out0);
    kiln_value_release(out1);
    release_all(5, in);
    kiln_module_free(m0);
    kiln_module_free(m1);
    kiln_context_free(ctx);
}

TEST(fuse_scalars_dead_values_and_the_operand_limit) {
    /* a float scalar parameter is a kernel parameter; an int scalar op is not fused */
    CHECK_FUSE("def @f(%x: f32[5], %lr: float, %k: int) {\n let %k2 = add(%k, 1)\n let %a = multiply(%x, %lr)\n"
               " let %b = add(%a, %k2)\n return %b\n}",
               "f: add f.k0 | f.k0 3>1: multiply add");
    /* a value nobody reads is still a result (its group computes what the original did) */
    CHECK_FUSE("def @f(%x: f32[5]) {\n let %a = exp(%x)\n let %b = neg(%x)\n return %b\n}",
               "f: f.k0 f.k1 | f.k0 1>1: exp | f.k1 1>1: neg");
    /* exp and 300 chained binary adds: at most 256 operands per group, so exp + 127 adds, 128
     * adds, 45 adds */
    kiln_buf b = {0}, e = {0};
    kiln_buf_puts(&b, "def @f(%x: f32[3]) {\n let %v0 = exp(%x)\n");
    kiln_buf_puts(&e, "f: f.k0 f.k1 f.k2 | f.k0 1>1: exp");
    for (int i = 1; i <= 300; i++) {
        kiln_buf_printf(&b, " let %%v%d = add(%%v%d, %%x)\n", i, i - 1);
        kiln_buf_puts(&e, i == 128 ? " | f.k1 2>1: add" : i == 256 ? " | f.k2 2>1: add" : " add");
    }
    kiln_buf_puts(&b, " return %v300\n}");
    char *text = kiln_buf_take(&b), *expect = kiln_buf_take(&e);
    CHECK_INT(check_fuse(__FILE__, __LINE__, text, expect, NULL), 3);
    free(text);
    free(expect);
}

/* GELU (tanh form) forward with the backward autodiff makes of it, as in a transformer's MLP. */
static const char *gelu_fwd_bwd = "def @f(%x: f32[4, 8], %w: f32[8, 8], %g: f32[4, 8]) {\n"
                                  " let %h = matmul(%x, %w)\n let %h2 = multiply(%h, %h)\n let %h3 = multiply(%h2, %h)\n"
                                  " let %k = multiply(%h3, 0.044715)\n let %i = add(%h, %k)\n let %z = multiply(%i, 0.7978845608028654)\n"
                                  " let %t = tanh(%z)\n let %t1 = add(%t, 1.0)\n let %hh = multiply(%h, 0.5)\n let %y = multiply(%hh, %t1)\n"
                                  " let %o = matmul(%y, %w)\n let %dy = matmul(%g, %w)\n"
                                  " let %a = multiply(%dy, %t1)\n let %b = multiply(%dy, %hh)\n let %a2 = multiply(%a, 0.5)\n"
                                  " let %tt = multiply(%t, %t)\n let %u = subtract(1.0, %tt)\n let %c = multiply(%b, %u)\n"
                                  " let %dz = multiply(%c, 0.7978845608028654)\n let %d = add(%a2, %dz)\n let %e = multiply(%dz, 0.044715)\n"
                                  " let %e1 = multiply(%e, %h)\n let %e2 = multiply(%e, %h2)\n let %d2 = add(%d, %e2)\n"
                                  " let %e3 = multiply(%e1, %h)\n let %dx = add(%d2, %e3)\n return %dx, %o\n}";

TEST(fuse_recomputes_gelu_values_in_the_backward) {
    /* the backward's kernel reads h (in memory anyway: the matmul's result, read there) and t
     * (tanh is not recomputed) and recomputes h*h, 1 + t and h/2 instead of reading them: the
     * forward's kernel writes 2 results instead of 5 */
    CHECK_FUSE(gelu_fwd_bwd, "f: matmul f.k0 get get matmul matmul f.k1 | f.k0 1>2: multiply multiply multiply add multiply tanh"
                             " add multiply multiply | f.k1 3>1: add multiply multiply multiply multiply multiply subtract"
                             " multiply multiply add multiply multiply multiply multiply add multiply add");
}

/* t = x @ w; a = OP(t) read by its own kernel (b) and, after the matmul m, by c; t read at
 * the end when `live`, a also returned when `returned`. */
static char *remat_leaf_text(const char *op, bool live, bool returned) {
    kiln_buf b = {0};
    kiln_buf_printf(&b, "def @f(%%x: f32[4, 4], %%w: f32[4, 4]) {\n let %%t = matmul(%%x, %%w)\n let %%a = %s(%%t)\n"
                        " let %%b = neg(%%a)\n let %%m = matmul(%%b, %%w)\n let %%c = multiply(%%m, %%a)\n"
                        " let %%r = %s\n return %%r%s\n}",
                    op, live ? "add(%c, %t)" : "neg(%c)", returned ? ", %a" : "");
    return kiln_buf_take(&b);
}

TEST(fuse_does_not_recompute_from_dead_values) {
    static const struct {
        const char *op;
        bool live, returned;
        const char *expect;
    } cases[] = {
        /* a's chain leads to t, read for the last time by abs: recomputing would keep t alive */
        {"abs", false, false, "f: matmul f.k0 get get matmul f.k1 | f.k0 1>2: abs neg | f.k1 2>1: multiply neg"},
        /* t read again after c: abs(t) is recomputed in c's kernel, a is no result */
        {"abs", true, false, "f: matmul f.k0 matmul f.k1 | f.k0 1>1: abs neg | f.k1 2>1: abs multiply add"},
        /* a value also returned (or read by an unfused node) is not recomputed */
        {"abs", true, true, "f: matmul f.k0 get get matmul f.k1 | f.k0 1>2: abs neg | f.k1 3>1: multiply add"},
        /* nor is a transcendental function */
        {"exp", true, false, "f: matmul f.k0 get get matmul f.k1 | f.k0 1>2: exp neg | f.k1 3>1: multiply add"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = remat_leaf_text(cases[i].op, cases[i].live, cases[i].returned);
        check_fuse(__FILE__, __LINE__, text, cases[i].expect, NULL);
        free(text);
    }
}

TEST(fuse_never_recomputes_reductions) {
    /* v = exp(s) is read by c's kernel, but its chain reaches the sum: v stays a result */
    CHECK_FUSE("def @f(%x: f32[4, 6], %w: f32[4, 4]) {\n let %s = sum(%x, axes=[1], keepdims=true)\n let %v = exp(%s)\n let %u = neg(%v)\n"
               " let %m = matmul(%w, %u)\n let %c = multiply(%m, %v)\n let %r = add(%c, %x)\n return %r\n}",
               "f: f.k0 get get matmul f.k1 f.k2 | f.k0 1>2: sum exp neg | f.k1 2>1: multiply | f.k2 2>1: add");
    /* nor is the reduction's own value, read by a later kernel (t, its input, is read later) */
    CHECK_FUSE("def @f(%x: f32[4, 6], %w: f32[4, 4]) {\n let %t = matmul(%w, %x)\n let %s = sum(%t, axes=[1], keepdims=true)\n"
               " let %u = neg(%s)\n let %m = matmul(%w, %u)\n let %c = multiply(%m, %s)\n let %r = add(%c, %t)\n return %r\n}",
               "f: matmul f.k0 get get matmul f.k1 f.k2 | f.k0 1>2: sum neg | f.k1 2>1: multiply | f.k2 2>1: add");
}

/* A chain of n adds from t = x @ w, read by c after the matmul m; t is read again at the end. */
static char *remat_chain_text(int n) {
    kiln_buf b = {0};
    kiln_buf_puts(&b, "def @f(%x: f32[4, 4], %w: f32[4, 4]) {\n let %t = matmul(%x, %w)\n let %a0 = add(%t, 1.0)\n");
    for (int i = 1; i < n; i++) kiln_buf_printf(&b, " let %%a%d = add(%%a%d, 1.0)\n", i, i - 1);
    kiln_buf_printf(&b, " let %%b = neg(%%a%d)\n let %%m = matmul(%%b, %%w)\n let %%c = multiply(%%m, %%a%d)\n"
                        " let %%r = add(%%c, %%t)\n return %%r\n}", n - 1, n - 1);
    return kiln_buf_take(&b);
}

TEST(fuse_caps_recomputed_chains) {
    for (int n = 15; n <= 16; n++) { /* the chain recomputed is the n adds: at most 16 */
        char *text = remat_chain_text(n);
        kiln_buf e = {0};
        kiln_buf_puts(&e, "f: matmul f.k0 matmul f.k1 | f.k0 1>1:");
        for (int i = 0; i < n; i++) kiln_buf_puts(&e, " add");
        kiln_buf_puts(&e, " neg | f.k1 2>1:");
        for (int i = 0; i < n; i++) kiln_buf_puts(&e, " add");
        kiln_buf_puts(&e, " multiply add");
        char *expect = kiln_buf_take(&e);
        CHECK_INT(check_fuse(__FILE__, __LINE__, text, expect, NULL), 2);
        free(text);
        free(expect);
    }
    char *text = remat_chain_text(17); /* 17: too long, a16 stays a result */
    kiln_buf e = {0};
    kiln_buf_puts(&e, "f: matmul f.k0 get get matmul f.k1 | f.k0 1>2:");
    for (int i = 0; i < 17; i++) kiln_buf_puts(&e, " add");
    kiln_buf_puts(&e, " neg | f.k1 3>1: multiply add");
    char *expect = kiln_buf_take(&e);
    CHECK_FUSE(text, expect);
    free(text);
    free(expect);
}
