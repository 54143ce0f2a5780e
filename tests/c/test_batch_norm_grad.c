/* test_batch_norm_grad.c — batch_norm_train's gradient rule and batch_norm_train_backward: on the
 * interpreter against autodiff of the spelled-out decomposition (the path before the rule) and
 * finite differences; on a GPU both ops through cuDNN against the reference kernels, and a
 * compiled CUDA training step that runs them whole through cuDNN. */
#include "cuda_check.h"
#include "runtime/vm.h"
#include <stdlib.h>

typedef struct bn_case {
    int ndim, axis;
    int64_t shape[4];
} bn_case;

static const bn_case cases[] = {
    {2, 1, {6, 3}},          /* [N, C] (after a linear layer) */
    {4, 1, {4, 3, 2, 2}},    /* NCHW */
    {3, -1, {3, 5, 2}},      /* channels last */
    {3, 0, {3, 4, 2}},       /* channels first, no batch dim before */
    {4, 1, {2, 2, 3, 1}},
};

/* The channel axis of c; into axes "[a, b]" of the reduced axes, into vec the [1, C, 1] shape a
 * [C] vector broadcasts as. */
static int case_dims(const bn_case *c, char *axes, char *vec, size_t size) {
    int ax = c->axis < 0 ? c->axis + c->ndim : c->axis, n = 0;
    int64_t red[4], v[4];
    for (int i = 0; i < c->ndim; i++) {
        if (i != ax) red[n++] = i;
        v[i] = i == ax ? c->shape[ax] : 1;
    }
    kiln_shape_str(n, red, axes, size);
    kiln_shape_str(c->ndim, v, vec, size);
    return ax;
}

/* A module with @new (batch_norm_train) and @old (its decomposition spelled out: mean, biased
 * variance in two passes, rsqrt, affine) returning sum(y * wy) plus, per `uses` bit 1 / 2,
 * sum(mean * wm) and sum(var * wv). */
static void module_text(char *buf, size_t size, const bn_case *c, const char *dt, int uses) {
    char xs[128], axes[128], vec[128], cs[32], loss[512];
    int ax = case_dims(c, axes, vec, sizeof axes);
    snprintf(cs, sizeof cs, "[%lld]", (long long)c->shape[ax]);
    kiln_shape_str(c->ndim, c->shape, xs, sizeof xs);
    snprintf(loss, sizeof loss,
             "  let %%ly = multiply(%%y, %%wy)\n  let %%s0 = sum(%%ly)\n"
             "  let %%lm = multiply(%%m, %%wm)\n  let %%sm = sum(%%lm)\n  let %%s1 = add(%%s0, %%sm)\n"
             "  let %%lv = multiply(%%v, %%wv)\n  let %%sv = sum(%%lv)\n  let %%s2 = add(%%s%d, %%sv)\n"
             "  return %%s%d\n}\n",
             uses & 1 ? 1 : 0, uses & 2 ? 2 : uses & 1 ? 1 : 0);
    char params[512];
    snprintf(params, sizeof params, "%%x: %s%s, %%g: %s%s, %%b: %s%s, %%wy: %s%s, %%wm: %s%s, %%wv: %s%s", dt, xs, dt, cs, dt, cs,
             dt, xs, dt, cs, dt, cs);
    snprintf(buf, size,
             "def @new(%s) {\n"
             "  let %%t = batch_norm_train(%%x, %%g, %%b, axis=%d, eps=0.001)\n"
             "  let %%y = get(%%t, index=0)\n  let %%m = get(%%t, index=1)\n  let %%v = get(%%t, index=2)\n%s"
             "def @old(%s) {\n"
             "  let %%m1 = mean(%%x, axes=%s, keepdims=true)\n  let %%d = subtract(%%x, %%m1)\n  let %%dd = multiply(%%d, %%d)\n"
             "  let %%v1 = mean(%%dd, axes=%s, keepdims=true)\n  let %%ve = add(%%v1, 0.001)\n  let %%r = rsqrt(%%ve)\n"
             "  let %%xh = multiply(%%d, %%r)\n  let %%g1 = reshape(%%g, shape=%s)\n  let %%b1 = reshape(%%b, shape=%s)\n"
             "  let %%y0 = multiply(%%xh, %%g1)\n  let %%y = add(%%y0, %%b1)\n"
             "  let %%m = reshape(%%m1, shape=%s)\n  let %%v = reshape(%%v1, shape=%s)\n%s",
             params, c->axis, loss, params, axes, axes, vec, vec, cs, cs, loss);
}

/* How many nodes of op f's body holds. */
static int count_op(const kiln_function *f, kiln_op op) {
    int n = 0;
    for (const kiln_node *node = f->body->first; node; node = node->next) n += node->op == op;
    return n;
}

/* Largest |a - b| over the tensors of two results, relative to 1 + the largest |a| of each. */
static double result_diff(kiln_value a, kiln_value b) {
    double worst = 0;
    for (int i = 0; i < kiln_value_tuple_size(a); i++) {
        const kiln_tensor *x = kiln_value_tuple_get(a, i).tensor, *y = kiln_value_tuple_get(b, i).tensor;
        if (x->numel != y->numel) return INFINITY;
        double scale = 0, d = 0;
        for (int64_t e = 0; e < x->numel; e++) {
            double u = kiln_load_f64(x->dtype, x->data, e), v = kiln_load_f64(y->dtype, y->data, e);
            scale = fmax(scale, fabs(u));
            d = fmax(d, isnan(u - v) ? INFINITY : fabs(u - v));
        }
        worst = fmax(worst, d / (1 + scale));
    }
    return worst;
}

/* The gradients of @new (the rule: batch_norm_train and batch_norm_train_backward kept whole)
 * and of @old (autodiff through the decomposition) with respect to x, gamma and beta agree. */
static void rule_vs_decomposition(const bn_case *c, kiln_dtype dt, int uses, double tol) {
    char text[4096], what[160], xs[128];
    module_text(text, sizeof text, c, kiln_dtype_name(dt), uses);
    snprintf(what, sizeof what, "%s x%s axis %d, results used: y%s%s", kiln_dtype_name(dt),
             kiln_shape_str(c->ndim, c->shape, xs, sizeof xs), c->axis, uses & 1 ? ", mean" : "", uses & 2 ? ", var" : "");
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "bn.kir");
    const int wrt[] = {0, 1, 2};
    kiln_function *gn = m ? kiln_autodiff(kiln_module_function(m, "new"), 3, wrt, "new_grad") : NULL;
    kiln_function *go = gn ? kiln_autodiff(kiln_module_function(m, "old"), 3, wrt, "old_grad") : NULL;
    if (!go) {
        test_fail(__FILE__, __LINE__, "%s: %s\n%s", what, kiln_error_message(ctx), text);
        kiln_module_free(m);
        kiln_context_free(ctx);
        return;
    }
    if (count_op(gn, KILN_OP_BATCH_NORM_TRAIN) != 1 || count_op(gn, KILN_OP_BATCH_NORM_TRAIN_BACKWARD) != 1)
        test_fail(__FILE__, __LINE__, "%s: autodiff did not keep batch_norm_train whole with one batch_norm_train_backward", what);
    kiln_value in[6], rn = {0}, ro = {0};
    unsigned seed = 99;
    for (int i = 0; i < 6; i++) in[i] = kiln_value_tensor(random_tensor(ctx, gn->params[i]->type, &seed, i == 1 ? 0.5 : -0.5, 0));
    if (kiln_function_run(gn, 6, in, &rn) || kiln_function_run(go, 6, in, &ro))
        test_fail(__FILE__, __LINE__, "%s: run: %s", what, kiln_error_message(ctx));
    else if (!(result_diff(ro, rn) <= tol))
        test_fail(__FILE__, __LINE__, "%s: the gradient rule differs from autodiff of the decomposition by %g (tol %g)", what,
                  result_diff(ro, rn), tol);
    release_all(6, in);
    kiln_value_release(rn), kiln_value_release(ro);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(batch_norm_grad_matches_decomposition) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int uses = 0; uses < 4; uses++) {
            rule_vs_decomposition(&cases[i], KILN_F64, uses, 1e-12);
            rule_vs_decomposition(&cases[i], KILN_F32, uses, 1e-5);
        }
}

TEST(batch_norm_grad_finite_differences) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[4096];
        module_text(text, sizeof text, &cases[i], "f64", 3);
        /* gradcheck differentiates @f: the module's @new under that name */
        char *at = strstr(text, "@new");
        at[1] = 'f', memmove(at + 2, at + 4, strlen(at + 4) + 1);
        GRADCHECK(text, -0.5);
    }
}

/* batch_norm_train_backward alone: the formula in a loop, channels at axis 1 of [2, 3, 2]. */
TEST(batch_norm_train_backward_matches_formula) {
    kiln_context *ctx = kiln_context_new();
    enum { N = 2, C = 3, K = 2, M = N * K };
    double x[N * C * K], dy[N * C * K], g[C] = {0.5, -1.25, 2}, mean[C] = {0.1, -0.3, 0.7}, invstd[C] = {1.5, 0.8, 2.5};
    double dx[N * C * K], dg[C] = {0}, db[C] = {0};
    for (int i = 0; i < N * C * K; i++) x[i] = sin(i * 1.3) + 0.2 * i, dy[i] = cos(i * 0.7);
    for (int i = 0; i < N * C * K; i++) {
        int c = i / K % C;
        db[c] += dy[i], dg[c] += dy[i] * (x[i] - mean[c]) * invstd[c];
    }
    for (int i = 0; i < N * C * K; i++) {
        int c = i / K % C;
        double xhat = (x[i] - mean[c]) * invstd[c];
        dx[i] = g[c] * invstd[c] / M * (M * dy[i] - db[c] - xhat * dg[c]);
    }
    kiln_dtype dts[] = {KILN_F64, KILN_F32};
    for (int d = 0; d < 2; d++) {
        kiln_value in[5] = {tv(ctx, dts[d], "2,3,2", x), tv(ctx, dts[d], "3", g), tv(ctx, dts[d], "3", mean),
                            tv(ctx, dts[d], "3", invstd), tv(ctx, dts[d], "2,3,2", dy)};
        kiln_value r = run_op(ctx, "batch_norm_train_backward", 5, in, "axis=1");
        double tol = dts[d] == KILN_F64 ? 1e-12 : 1e-5;
        if (r.kind == KILN_VALUE_TUPLE) {
            CHECK_TENSOR(kiln_value_tuple_get(r, 0), dts[d], "2,3,2", dx, tol);
            CHECK_TENSOR(kiln_value_tuple_get(r, 1), dts[d], "3", dg, tol);
            CHECK_TENSOR(kiln_value_tuple_get(r, 2), dts[d], "3", db, tol);
        }
        kiln_value_release(r);
        release_all(5, in);
    }
    kiln_context_free(ctx);
}

TEST(batch_norm_train_backward_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "4,3", NULL), c3 = tv(ctx, KILN_F32, "3", NULL), c4 = tv(ctx, KILN_F32, "4", NULL);
    kiln_value d3 = tv(ctx, KILN_F64, "3", NULL), dy = tv(ctx, KILN_F32, "3,4", NULL), out = {0};
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train_backward", 5, (kiln_value[]){x, c3, c3, c3, dy}, NULL, &out), KILN_ERR_TYPE,
              "dy is f32[3, 4], expected f32[4, 3] (x's shape of x f32[4, 3])");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train_backward", 5, (kiln_value[]){x, c3, c4, c3, x}, NULL, &out), KILN_ERR_TYPE,
              "mean is f32[4], expected f32[3]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "batch_norm_train_backward", 5, (kiln_value[]){x, c3, c3, d3, x}, NULL, &out), KILN_ERR_TYPE,
              "invstd is f64[3], expected f32[3]");
    CHECK_OK(ctx, kiln_op_run(ctx, "batch_norm_train_backward", 5, (kiln_value[]){x, c4, c4, c4, x}, "axis=0", &out));
    kiln_value_release(out);
    release_all(5, (kiln_value[]){x, c3, c4, d3, dy});
    kiln_context_free(ctx);
}

/* ---- cuDNN ----------------------------------------------------------------------------------- */
/* The first node of "def @f(PARAMS) { let %y = CALL return %y }" takes the cudnn dialect or not. */
static void cudnn_takes(int line, const char *params, const char *call, bool want) {
    char text[512];
    snprintf(text, sizeof text, "def @f(%s) {\n let %%y = %s\n return %%y\n}\n", params, call);
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "cudnn.kir");
    const kiln_node *n = m ? kiln_module_function(m, "f")->body->first : NULL;
    if (!n) test_fail(__FILE__, line, "parse %s: %s", call, kiln_error_message(ctx));
    else if ((cuda_check_impl(n, KILN_DIALECT_CUDNN) != NULL) != want)
        test_fail(__FILE__, line, "cudnn %s %s", want ? "refuses" : "claims", call);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(batch_norm_grad_cudnn_supports) {
    const char *p4 = "%x: f32[8, 64, 14, 14], %g: f32[64], %m: f32[64], %s: f32[64], %dy: f32[8, 64, 14, 14]";
    cudnn_takes(__LINE__, p4, "batch_norm_train_backward(%x, %g, %m, %s, %dy)", true);
    cudnn_takes(__LINE__, "%x: f32[32, 16], %g: f32[16], %m: f32[16], %s: f32[16], %dy: f32[32, 16]",
                "batch_norm_train_backward(%x, %g, %m, %s, %dy)", true);
    cudnn_takes(__LINE__, "%x: f32[2, 7, 3], %g: f32[3], %m: f32[3], %s: f32[3], %dy: f32[2, 7, 3]",
                "batch_norm_train_backward(%x, %g, %m, %s, %dy, axis=-1)", true);
    /* cuDNN's vectors are f32 (f16 x would need f32 gamma); no f64; one value per channel */
    cudnn_takes(__LINE__, "%x: f16[8, 5], %g: f16[5], %m: f16[5], %s: f16[5], %dy: f16[8, 5]",
                "batch_norm_train_backward(%x, %g, %m, %s, %dy)", false);
    cudnn_takes(__LINE__, "%x: f64[8, 5], %g: f64[5], %m: f64[5], %s: f64[5], %dy: f64[8, 5]",
                "batch_norm_train_backward(%x, %g, %m, %s, %dy)", false);
    cudnn_takes(__LINE__, "%x: f32[1, 5], %g: f32[5], %m: f32[5], %s: f32[5], %dy: f32[1, 5]",
                "batch_norm_train_backward(%x, %g, %m, %s, %dy)", false);
}

/* A random f32 tensor of the given shape with values in [lo, lo + 1). */
static kiln_value random_f32(kiln_context *ctx, int ndim, const int64_t *shape, unsigned *seed, double lo) {
    kiln_type t = {.kind = KILN_TYPE_TENSOR, .dtype = KILN_F32, .ndim = ndim};
    memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
    return kiln_value_tensor(random_tensor(ctx, &t, seed, lo, 0));
}

/* batch_norm_train and batch_norm_train_backward (from the forward's statistics, as the rule
 * passes them) through the cudnn dialect on the device against the reference kernels. */
TEST(batch_norm_grad_cudnn_matches_reference) {
    if (!cuda_check_gpu("batch_norm_grad_cudnn_matches_reference")) return;
    static const struct { int ndim, axis; int64_t shape[4]; double eps; } gc[] = {
        {4, 1, {8, 64, 14, 14}, 1e-5}, /* a ResNet stage */
        {2, 1, {32, 16}, 1e-5},        /* [N, C] as N, C, 1, 1 */
        {3, -1, {2, 7, 3}, 1e-5},      /* channels last as [14, 3, 1, 1] */
        {4, 1, {4, 6, 5, 5}, 0.1},
    };
    kiln_context *ctx = kiln_context_new();
    unsigned seed = 5;
    for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++) {
        int ax = gc[i].axis < 0 ? gc[i].axis + gc[i].ndim : gc[i].axis;
        const int64_t *c = &gc[i].shape[ax];
        char fwd[64], bwd[32];
        snprintf(fwd, sizeof fwd, "axis=%d, eps=%g", gc[i].axis, gc[i].eps);
        snprintf(bwd, sizeof bwd, "axis=%d", gc[i].axis);
        kiln_value in[3] = {random_f32(ctx, gc[i].ndim, gc[i].shape, &seed, -0.5), random_f32(ctx, 1, c, &seed, 0.5),
                            random_f32(ctx, 1, c, &seed, -0.5)};
        kiln_value dy = random_f32(ctx, gc[i].ndim, gc[i].shape, &seed, -0.5);
        cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUDNN, "batch_norm_train", 3, in, fwd, 1e-4, true);
        kiln_value st = run_op(ctx, "batch_norm_train", 3, in, fwd);
        if (st.kind == KILN_VALUE_TUPLE) {
            kiln_tensor *var = kiln_value_tuple_get(st, 2).tensor, *invstd = kiln_tensor_new(ctx, KILN_F32, 1, c);
            for (int64_t k = 0; invstd && k < *c; k++)
                ((float *)invstd->data)[k] = (float)(1 / sqrt(((float *)var->data)[k] + gc[i].eps));
            kiln_value bw[5] = {in[0], in[1], kiln_value_tuple_get(st, 1), kiln_value_tensor(invstd), dy};
            cuda_check_op(__FILE__, __LINE__, ctx, KILN_DIALECT_CUDNN, "batch_norm_train_backward", 5, bw, bwd, 1e-4, true);
            kiln_value_release(bw[3]);
        }
        kiln_value_release(st), kiln_value_release(dy);
        release_all(3, in);
    }
    kiln_context_free(ctx);
}

/* ---- a compiled training step -------------------------------------------------------------- */
/* Two batch norms, NCHW and [N, C], in one loss. */
static const char BN_STEP[] =
    "def @f(%x: f32[8, 16, 6, 6], %g: f32[16], %b: f32[16], %g2: f32[576], %b2: f32[576], %w: f32[8, 576]) {\n"
    "  let %t = batch_norm_train(%x, %g, %b)\n  let %y = get(%t, index=0)\n  let %r = relu(%y)\n"
    "  let %h = reshape(%r, shape=[8, 576])\n  let %t2 = batch_norm_train(%h, %g2, %b2)\n  let %y2 = get(%t2, index=0)\n"
    "  let %z = multiply(%y2, %w)\n  let %s = sum(%z)\n  return %s\n}\n";

/* The gradient of BN_STEP compiled for `device` agrees with the interpreter; on CUDA both batch
 * norms and both backwards run whole through cuDNN (on the CPU they are decomposed and fused). */
static void compiled_step(const char *device) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, BN_STEP, "bn_step.kir");
    const int wrt[] = {0, 1, 2, 3, 4};
    kiln_function *g = m ? kiln_autodiff(kiln_module_function(m, "f"), 5, wrt, "grad") : NULL;
    kiln_compile_options o = kiln_compile_defaults();
    o.device = device;
    kiln_program *p = NULL;
    kiln_value in[6], want = {0}, got = {0};
    unsigned seed = 11;
    for (int i = 0; g && i < 6; i++) /* gammas in [0.5, 1.5), the rest in [-0.5, 0.5) */
        in[i] = kiln_value_tensor(random_tensor(ctx, g->params[i]->type, &seed, i == 1 || i == 3 ? 0.5 : -0.5, 0));
    if (!g || kiln_function_run(g, 6, in, &want) || kiln_compile(g, &o, &p) || kiln_program_run(p, 6, in, &got)) {
        test_fail(__FILE__, __LINE__, "BN step on %s: %s", device, kiln_error_message(ctx));
    } else {
        const kiln_device cpu = {KILN_DEVICE_CPU, 0};
        for (int i = 0; i < kiln_value_tuple_size(want); i++) {
            kiln_tensor *w = kiln_value_tuple_get(want, i).tensor, *h = kiln_tensor_to(ctx, kiln_value_tuple_get(got, i).tensor, cpu);
            double scale = 0;
            for (int64_t e = 0; e < w->numel; e++) scale = fmax(scale, fabs(((float *)w->data)[e]));
            for (int64_t e = 0; h && e < w->numel; e++)
                if (!(fabs(((float *)h->data)[e] - ((float *)w->data)[e]) <= 1e-4 * (1 + scale))) {
                    test_fail(__FILE__, __LINE__, "BN step on %s: result %d element %lld is %.9g, the interpreter's %.9g", device, i,
                              (long long)e, ((float *)h->data)[e], ((float *)w->data)[e]);
                    break;
                }
            kiln_tensor_release(h);
        }
        int whole[2] = {0, 0}; /* forward, backward instructions through cuDNN */
        for (int i = 0; i < p->main->n_instr; i++) {
            const vm_instr *in_ = &p->main->instr[i];
            kiln_op op = in_->node ? in_->node->op : KILN_OP_COUNT;
            if (op != KILN_OP_BATCH_NORM_TRAIN && op != KILN_OP_BATCH_NORM_TRAIN_BACKWARD) continue;
            const kiln_dialect_impl *impl = p->be ? cuda_check_impl(in_->node, KILN_DIALECT_CUDNN) : NULL;
            if (in_->op == VM_KERNEL && !in_->host && impl && in_->kernel == impl->kernel)
                whole[op == KILN_OP_BATCH_NORM_TRAIN_BACKWARD]++;
            else test_fail(__FILE__, __LINE__, "BN step on %s: %s at instruction %d %s", device, kiln_op_info_get(op)->name, i,
                           p->be ? "does not run through the cudnn dialect" : "was not decomposed");
        }
        if (p->be && (whole[0] != 2 || whole[1] != 2))
            test_fail(__FILE__, __LINE__, "BN step on %s: %d batch_norm_train and %d batch_norm_train_backward ran through cuDNN, "
                      "expected 2 and 2 (dispatch decomposed them?)", device, whole[0], whole[1]);
    }
    kiln_value_release(want), kiln_value_release(got);
    for (int i = 0; g && i < 6; i++) kiln_value_release(in[i]);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(batch_norm_grad_compiled_step_cpu) { compiled_step("cpu"); }

TEST(batch_norm_grad_compiled_step_cuda) {
    char why[600];
    if (!cuda_check_gpu("batch_norm_grad_compiled_step_cuda")) return;
    if (!kiln_dialect_available(KILN_DIALECT_CUDNN, why, sizeof why)) {
        printf("  skip: batch_norm_grad_compiled_step_cuda: cuDNN unavailable: %s\n", why);
        return;
    }
    compiled_step("cuda");
}
