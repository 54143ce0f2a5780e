/* test_codegen_cuda.c — generated CUDA kernels (kiln_codegen_cuda): every group form (elementwise
 * with broadcasting in each dtype, row reductions from a few elements to a block per row, column
 * reductions, reductions to a scalar, several results) renders deterministically, compiles with
 * NVRTC (no GPU needed), and on a GPU computes what the interpreter does, aligned or not. */
#include "backend/backend.h"
#include "codegen/codegen.h"
#include "test.h"
#include <stdlib.h>

/* NVRTC without a GPU: NULL (and one "skip:" line) when the backend or NVRTC is missing. */
static const kiln_backend *nvrtc_backend(const char *test) {
    char why[512] = "";
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    char ver[64];
    if (be && be->nvrtc_version(ver, sizeof ver) != 0) {
        snprintf(why, sizeof why, "%s", be->last_error());
        be = NULL;
    }
    if (!be) printf("skip: %s: no NVRTC (%s)\n", test, why);
    return be;
}

/* Deterministic inputs: floats in [-3, 3) on a 1/16 grid (sums stay exact in float), ints
 * nonzero in [-20, 20] (u8 [1, 40]), bool 0 / 1. */
static double input_value(kiln_dtype dt, uint32_t *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    uint32_t r = *seed >> 8;
    if (dt == KILN_BOOL) return r & 1;
    if (kiln_dtype_is_float(dt)) return (double)(int)(r % 24) / 4 - 3 + ((r >> 5) % 3) / 16.0;
    int v = (int)(r % 20) + 1;
    return dt == KILN_U8 ? v + (int)((r >> 6) % 20) : ((r >> 7) & 1) ? v : -v;
}

/* How far the GPU may be from the interpreter (relative to 1 + |want|): CUDA's libm is within
 * 2 ulp, f32 / f16 / bf16 reductions accumulate in float in another order, products may fuse
 * into FMAs; integers and bools exact. */
static double dtype_tol(kiln_dtype dt) {
    switch (dt) {
    case KILN_F32: return 1e-5;
    case KILN_F64: return 1e-12;
    case KILN_F16: return 2e-3;
    case KILN_BF16: return 1.6e-2;
    default: return 0;
    }
}

/* One group on the GPU against the interpreter. `shift` offsets every buffer by one element
 * (misaligned: the kernels' scalar path). */
static void run_gpu(const kiln_backend *be, kiln_context *ctx, kiln_function *f, const kiln_gen_kernel *k,
                    kiln_backend_fn fn, int shift) {
    int np = f->n_params, nr = f->body->n_results, nb = np + nr;
    kiln_value *in = calloc((size_t)np, sizeof *in);
    void **dev = calloc((size_t)nb, sizeof *dev);
    size_t *bytes = calloc((size_t)nb, sizeof *bytes), *es = calloc((size_t)nb, sizeof *es);
    int na = nb + (k->n_params > 0 ? k->n_params : 1);
    int64_t *argbuf = calloc((size_t)na, sizeof *argbuf); /* kiln_args: bufs then params, 8 bytes each */
    uint32_t seed = 777;
    bool ok = true;
    for (int i = 0; i < nb && ok; i++) {
        const kiln_type *t = i < np ? f->params[i]->type : f->body->results[i - np]->type;
        es[i] = t->kind == KILN_TYPE_SCALAR ? 8 : kiln_dtype_size(t->dtype);
        if (i < np && t->kind == KILN_TYPE_SCALAR) {
            double v = input_value(t->dtype == KILN_F64 ? KILN_F32 : t->dtype == KILN_I64 ? KILN_I32 : KILN_BOOL, &seed);
            union { int64_t i; double f; uint8_t b; } s = {0};
            if (t->dtype == KILN_I64) in[i] = kiln_value_int(s.i = (int64_t)v);
            else if (t->dtype == KILN_F64) in[i] = kiln_value_float(s.f = v + 0.3);
            else in[i] = kiln_value_bool((s.b = v != 0));
            bytes[i] = 8;
            dev[i] = be->alloc(0, 8 + 16);
            ok = dev[i] && be->copy_h2d(0, (char *)dev[i] + shift * 8, &s, 8) == 0;
        } else {
            int64_t n = t->kind == KILN_TYPE_TENSOR ? 1 : 0;
            for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
            bytes[i] = (size_t)n * es[i];
            dev[i] = be->alloc(0, bytes[i] + 16);
            ok = dev[i] != NULL;
            if (ok && i < np) {
                kiln_tensor *x = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
                for (int64_t e = 0; e < x->numel; e++) kiln_store_f64(t->dtype, x->data, e, input_value(t->dtype, &seed));
                in[i] = kiln_value_tensor(x);
                ok = bytes[i] == 0 || be->copy_h2d(0, (char *)dev[i] + shift * es[i], x->data, bytes[i]) == 0;
            }
        }
        argbuf[i] = dev[i] ? (int64_t)(intptr_t)((char *)dev[i] + shift * es[i]) : 0;
    }
    if (!ok) test_fail(__FILE__, __LINE__, "@%s: device buffers: %s", f->name, be->last_error());
    for (int i = 0; i < k->n_params; i++) argbuf[nb + i] = k->params[i];
    void *args[1] = {argbuf};
    if (ok && (be->launch(0, fn, k->grid, k->block, k->shared_bytes, args) != 0 || be->synchronize(0) != 0)) {
        test_fail(__FILE__, __LINE__, "@%s: launch: %s", f->name, be->last_error());
        ok = false;
    }
    kiln_value want = {.kind = KILN_VALUE_NONE};
    if (ok) CHECK_OK(ctx, kiln_function_run(f, np, in, &want));
    for (int r = 0; r < nr && ok && want.kind != KILN_VALUE_NONE; r++) {
        const kiln_tensor *w = (nr == 1 ? want : kiln_value_tuple_get(want, r)).tensor;
        char *got = malloc(bytes[np + r] + 1);
        if (bytes[np + r] && be->copy_d2h(0, got, (char *)dev[np + r] + shift * es[np + r], bytes[np + r]) != 0)
            test_fail(__FILE__, __LINE__, "@%s: download: %s", f->name, be->last_error());
        double tol = dtype_tol(w->dtype);
        for (int64_t e = 0; e < w->numel; e++) {
            double a = kiln_load_f64(w->dtype, got, e), b = kiln_load_f64(w->dtype, w->data, e);
            if (a == b || (isnan(a) && isnan(b)) || fabs(a - b) <= tol * (1 + fabs(b))) continue;
            test_fail(__FILE__, __LINE__, "@%s (shift %d) result %d (%s) element %lld: GPU %.9g, interpreter %.9g", f->name,
                      shift, r, kiln_dtype_name(w->dtype), (long long)e, a, b);
            break;
        }
        free(got);
    }
    kiln_value_release(want);
    release_all(np, in);
    for (int i = 0; i < nb; i++)
        if (dev[i]) be->free(0, dev[i]);
    free(in), free(dev), free(bytes), free(es), free(argbuf);
}

/* Renders every function of `text` (twice: the source must not change), compiles it with NVRTC
 * for sm_90 and, on a GPU, for the device, and runs it aligned and misaligned against the
 * interpreter. */
static void check_cuda(const char *test, const char *text) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    if (!m) {
        test_fail(__FILE__, __LINE__, "parse: %s", kiln_error_message(ctx));
        kiln_context_free(ctx);
        return;
    }
    const kiln_backend *be = nvrtc_backend(test);
    char why[512] = "";
    const kiln_backend *gpu = be ? kiln_cuda_backend(why, sizeof why) : NULL;
    if (be && !gpu) printf("skip: %s on the GPU: %s\n", test, why);
    for (int i = 0; i < kiln_module_function_count(m); i++) {
        kiln_function *f = kiln_module_function_at(m, i);
        kiln_gen_kernel k = {0}, k2 = {0};
        CHECK_OK(ctx, kiln_codegen_cuda(ctx, f, &k));
        CHECK_OK(ctx, kiln_codegen_cuda(ctx, f, &k2));
        if (!k.source || !k2.source) goto next;
        CHECK(!strcmp(k.source, k2.source) && !strcmp(k.symbol, k2.symbol) && k.n_params == k2.n_params);
        CHECK(k.block[0] >= 1 && k.block[0] <= 1024 && k.grid[0] >= 1 && k.block[1] == 1 && k.grid[1] == 1);
        if (!be) goto next;
        void *img = NULL;
        size_t size = 0;
        if (be->nvrtc_compile(k.source, 90, NULL, 0, &img, &size) != 0) {
            static bool shown; /* the first failing source, for NVRTC's line numbers */
            test_fail(__FILE__, __LINE__, "@%s: NVRTC: %s%s%s", f->name, be->last_error(), shown ? "" : "\n",
                      shown ? "" : k.source);
            shown = true;
            goto next;
        }
        CHECK(size > 0);
        be->free_image(img);
        if (!gpu) goto next;
        img = NULL;
        kiln_backend_module *mod = NULL;
        kiln_backend_fn fn = NULL;
        if (gpu->nvrtc_compile(k.source, gpu->device_arch(0), NULL, 0, &img, &size) != 0 ||
            gpu->module_load(0, img, &mod) != 0 || gpu->module_get(mod, k.symbol, &fn) != 0) {
            test_fail(__FILE__, __LINE__, "@%s: load: %s", f->name, gpu->last_error());
        } else {
            run_gpu(gpu, ctx, f, &k, fn, 0);
            run_gpu(gpu, ctx, f, &k, fn, 1);
        }
        if (img) gpu->free_image(img);
        if (mod) gpu->module_free(mod);
    next:
        kiln_gen_kernel_free(&k);
        kiln_gen_kernel_free(&k2);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* An elementwise chain with broadcasting (rows, columns, a scalar, literals) in dtype dt. */
static void add_chain(kiln_buf *b, const char *dt, const char *shape, const char *col, const char *row) {
    kiln_buf_printf(b,
                    "kernel @chain_%s_%s(%%x: %s[%s], %%b: %s[%s], %%c: %s[%s], %%s: float) {\n"
                    "  let %%a = add(%%x, %%b)\n  let %%m = multiply(%%a, %%c)\n  let %%t = tanh(%%m)\n"
                    "  let %%g = sigmoid(%%a)\n  let %%d = subtract(%%t, %%s)\n  let %%r = maximum(%%d, %%g)\n"
                    "  let %%e = exp(%%c)\n  let %%q = divide(%%r, %%e)\n  let %%h = multiply(%%q, 0.5)\n"
                    "  return %%h, %%t\n}\n",
                    dt, col, dt, shape, dt, row, dt, col);
}

TEST(codegen_cuda_elementwise_float) {
    static const char *const DT[] = {"f32", "f16", "bf16", "f64"};
    kiln_buf b = {0};
    for (int d = 0; d < 4; d++) {
        add_chain(&b, DT[d], "64, 96", "96", "64, 1");   /* vectorizable */
        add_chain(&b, DT[d], "7, 9", "9", "7, 1");       /* 9 columns: scalar loop only */
    }
    add_chain(&b, "f32", "1000, 1024", "1024", "1000, 1"); /* a grid-stride loop of many rounds */
    kiln_buf_puts(&b, "kernel @bcast3(%x: f32[4, 1, 6], %y: f32[5, 6], %z: f16[4, 5, 1]) {\n"
                      "  let %a = add(%x, %y)\n  let %c = multiply(%a, %z)\n  let %e = erf(%c)\n"
                      "  let %l = log(%e)\n  let %f = floor(%c)\n  return %c, %l, %f\n}\n");
    char *text = kiln_buf_take(&b);
    check_cuda("codegen_cuda_elementwise_float", text);
    free(text);
}

TEST(codegen_cuda_elementwise_int_bool) {
    check_cuda("codegen_cuda_elementwise_int_bool",
               "kernel @ints(%x: i32[33, 40], %y: i32[40], %f: f32[33, 1], %n: int) {\n"
               "  let %a = add(%x, %y)\n  let %c = greater(%a, 3)\n  let %l = less_equal(%x, %f)\n"
               "  let %o = logical_or(%c, %l)\n  let %w = where(%o, %a, %y)\n  let %m = multiply(%w, %n)\n"
               "  let %s = right_shift(%m, 1)\n  let %k = cast(%o, dtype=i32)\n  let %h = cast(%f, dtype=i64)\n"
               "  let %z = subtract(%k, %h)\n  return %w, %o, %s, %z\n}\n"
               "kernel @bools(%p: bool[16, 64], %q: bool[64], %u: u8[16, 64], %k: i8[16, 1], %flag: bool) {\n"
               "  let %x = logical_xor(%p, %q)\n  let %w = where(%x, %u, %k)\n  let %e = equal(%w, %k)\n"
               "  let %n = logical_not(%e)\n  let %a = logical_and(%n, %flag)\n  let %c = cast(%w, dtype=f16)\n"
               "  return %a, %w, %c\n}\n"
               "kernel @i64mix(%x: i64[3, 5], %y: u8[5], %z: bf16[3, 1]) {\n"
               "  let %a = minimum(%x, %y)\n  let %m = multiply(%a, %z)\n  let %g = greater_equal(%m, %x)\n"
               "  return %a, %m, %g\n}\n");
}

TEST(codegen_cuda_row_reductions) {
    static const struct { int rows, len; } SZ[] = {{37, 5}, {64, 300}, {8, 2000}, {3, 10000}};
    kiln_buf b = {0};
    for (int i = 0; i < 4; i++)
        kiln_buf_printf(&b,
                        /* softmax pieces: the max, then sum(exp(x - max)) with log-sum-exp as a consumer */
                        "kernel @rmax_%d(%%x: f32[%d, %d]) {\n  let %%m = max(%%x, axes=[-1], keepdims=true)\n"
                        "  return %%m\n}\n"
                        "kernel @rsum_%d(%%x: f32[%d, %d], %%m: f32[%d, 1]) {\n  let %%d = subtract(%%x, %%m)\n"
                        "  let %%e = exp(%%d)\n  let %%s = sum(%%e, axes=[1], keepdims=true)\n  let %%l = log(%%s)\n"
                        "  let %%z = add(%%l, %%m)\n  return %%s, %%z\n}\n",
                        i, SZ[i].rows, SZ[i].len, i, SZ[i].rows, SZ[i].len, SZ[i].rows);
    /* layer norm statistics: mean, then the variance about it and rsqrt(var + eps) */
    kiln_buf_puts(&b, "kernel @ln_mean(%x: f32[48, 768]) {\n  let %s = sum(%x, axes=[1], keepdims=true)\n"
                      "  let %m = divide(%s, 768.0)\n  return %m\n}\n"
                      "kernel @ln_var(%x: f32[48, 768], %m: f32[48, 1], %g: f32[768]) {\n  let %d = subtract(%x, %m)\n"
                      "  let %q = multiply(%d, %d)\n  let %s = sum(%q, axes=[1], keepdims=true)\n"
                      "  let %v = divide(%s, 768.0)\n  let %e = add(%v, 0.00001)\n  let %r = rsqrt(%e)\n  return %v, %r\n}\n"
                      /* cross-entropy pieces in f16 input, bf16, f64, ints, bool; several reduced dims */
                      "kernel @h16(%x: f16[20, 50]) {\n  let %c = cast(%x, dtype=f32)\n  let %s = sum(%c, axes=[1])\n"
                      "  let %n = neg(%s)\n  return %n\n}\n"
                      "kernel @hb16(%x: bf16[8, 40]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n"
                      "kernel @ends(%x: f64[5, 6, 7]) {\n  let %s = prod(%x, axes=[0, 2])\n  return %s\n}\n"
                      "kernel @i64sum(%x: i64[9, 1300]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n"
                      "kernel @i8min(%x: i8[9, 13]) {\n  let %s = min(%x, axes=[1], keepdims=true)\n  return %s\n}\n"
                      "kernel @anyrow(%x: f32[10, 12]) {\n  let %c = greater(%x, 1.0)\n  let %a = any(%c, axes=[1])\n"
                      "  let %n = logical_not(%a)\n  return %n\n}\n"
                      "kernel @nothing(%x: f32[3, 4]) {\n  let %s = sum(%x, axes=[])\n  return %s\n}\n"
                      "kernel @norows(%x: f32[0, 5]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n");
    char *text = kiln_buf_take(&b);
    check_cuda("codegen_cuda_row_reductions", text);
    free(text);
}

TEST(codegen_cuda_column_and_scalar_reductions) {
    check_cuda("codegen_cuda_column_and_scalar_reductions",
               /* bias gradients: few columns over many rows, and many columns */
               "kernel @bias_grad(%g: f32[4096, 96]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n"
               "kernel @col_small(%g: f32[300, 5], %w: f32[5]) {\n  let %a = multiply(%g, %g)\n"
               "  let %s = sum(%a, axes=[0])\n  let %t = multiply(%s, %w)\n  return %s, %t\n}\n"
               "kernel @col_many(%x: f64[20, 3000]) {\n  let %s = min(%x, axes=[0], keepdims=true)\n  return %s\n}\n"
               "kernel @col_mid(%x: f32[4, 50, 33], %y: f32[4, 1, 33]) {\n  let %a = multiply(%x, %y)\n"
               "  let %s = sum(%a, axes=[1], keepdims=true)\n  let %d = divide(%s, %y)\n  return %d\n}\n"
               "kernel @col_int(%x: i32[100, 70]) {\n  let %s = sum(%x, axes=[0])\n  let %t = add(%s, 1)\n  return %t\n}\n"
               "kernel @col_bool(%x: bool[10, 12]) {\n  let %a = all(%x, axes=[0])\n  return %a\n}\n"
               "kernel @col_h(%x: bf16[64, 40]) {\n  let %m = max(%x, axes=[0])\n  return %m\n}\n"
               "kernel @col_empty(%x: f32[0, 5]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n"
               /* to a scalar */
               "kernel @scalar(%x: f32[333, 77], %k: float) {\n  let %a = multiply(%x, %k)\n  let %s = sum(%a)\n"
               "  let %m = multiply(%s, 0.5)\n  return %m\n}\n"
               "kernel @scalar_max(%x: f32[100000]) {\n  let %m = max(%x)\n  let %n = neg(%m)\n  return %m, %n\n}\n");
}

TEST(codegen_cuda_several_results) {
    check_cuda("codegen_cuda_several_results",
               "kernel @multi(%x: f32[128, 64], %y: f16[64]) {\n  let %a = relu(%x)\n  let %b = cast(%a, dtype=f16)\n"
               "  let %c = greater(%x, %y)\n  let %d = cast(%x, dtype=bf16)\n  let %e = add(%b, %y)\n"
               "  return %a, %b, %c, %d, %e\n}\n"
               "kernel @inplace_like(%x: f32[256], %g: f32[256], %lr: float) {\n  let %u = multiply(%g, %lr)\n"
               "  let %n = subtract(%x, %u)\n  let %q = multiply(%g, %g)\n  return %n, %q\n}\n");
}

/* The rendered text: stable, self-contained, and of the expected form per group. */
TEST(codegen_cuda_source_structure) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "kernel @ew(%x: f32[64, 96], %b: f32[96]) {\n  let %a = add(%x, %b)\n  return %a\n}\n"
                                       "kernel @ew9(%x: f32[7, 9]) {\n  let %a = exp(%x)\n  return %a\n}\n"
                                       "kernel @row(%x: f32[64, 300]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n"
                                       "kernel @rowbig(%x: f32[4, 5000]) {\n  let %s = max(%x, axes=[1])\n  return %s\n}\n"
                                       "kernel @col(%g: f32[4096, 96]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n",
                                       "t.kir");
    CHECK(m != NULL);
    static const struct { const char *has, *lacks; unsigned block; } WANT[] = {
        {"kg_pack<float, 4>", "__shfl_xor_sync", 256},
        {"for (uint32_t t = t0; t < total; t += step)", "kg_pack<float", 256},
        {"__shfl_xor_sync(0xffffffffu, a, 16)", "__shared__", 256},
        {"__shared__ double red_[8]", "kg_pack<", 256},
        {"__shared__ double red_[1024]", "__shfl_xor_sync", 1024},
    };
    for (int i = 0; m && i < kiln_module_function_count(m); i++) {
        kiln_gen_kernel k = {0};
        CHECK_OK(ctx, kiln_codegen_cuda(ctx, kiln_module_function_at(m, i), &k));
        if (!k.source) continue;
        if (!strstr(k.source, WANT[i].has) || strstr(k.source, WANT[i].lacks))
            test_fail(__FILE__, __LINE__, "kernel %d: want \"%s\" and no \"%s\" in\n%s", i, WANT[i].has, WANT[i].lacks, k.source);
        CHECK(strstr(k.source, "extern \"C\" __global__ void") && strstr(k.source, k.symbol));
        CHECK(!strncmp(k.symbol, "kiln_cu_", 8) && !strstr(k.source, "#include"));
        CHECK_INT(k.block[0], WANT[i].block);
        char want_args[160];
        const kiln_function *f = kiln_module_function_at(m, i);
        snprintf(want_args, sizeof want_args, "struct %s_args { char *bufs[%d]; long long params[%d]; };", k.symbol,
                 f->n_params + f->body->n_results, k.n_params > 0 ? k.n_params : 1);
        CHECK(strstr(k.source, want_args) != NULL);
        kiln_gen_kernel_free(&k);
    }
    /* groups outside the two forms are refused, naming the kernel */
    kiln_module *bad = kiln_module_parse(ctx, "kernel @two(%x: f32[3, 4]) {\n let %a = sum(%x, axes=[0])\n"
                                              " let %b = sum(%a)\n return %b\n}\n", "t.kir");
    kiln_gen_kernel k;
    CHECK_ERR(ctx, kiln_codegen_cuda(ctx, kiln_module_function_at(bad, 0), &k), KILN_ERR_INTERNAL, "kernel @two");
    kiln_module_free(bad);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
