/* test_codegen_cuda.c — generated CUDA kernels (kiln_codegen_cuda): every group form (elementwise
 * with broadcasting in each dtype, row reductions from a few elements to a block per row, column
 * reductions, reductions to a scalar, split reductions, several results) renders
 * deterministically, compiles with NVRTC (no GPU needed), and on a GPU computes what the
 * interpreter does, aligned or not; split reductions also inside a program (batched, graphed). */
#include "backend/backend.h"
#include "codegen/codegen.h"
#include "runtime/vm.h"
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

/* The results of a launch, downloaded: one malloc'd host buffer per result. */
static char **download(const kiln_backend *be, void **dev, const size_t *bytes, const size_t *es, int np, int nr, int shift) {
    char **got = calloc((size_t)nr, sizeof *got);
    for (int r = 0; r < nr; r++) {
        got[r] = malloc(bytes[np + r] + 1);
        if (bytes[np + r] && be->copy_d2h(0, got[r], (char *)dev[np + r] + shift * es[np + r], bytes[np + r]) != 0)
            test_fail(__FILE__, __LINE__, "download: %s", be->last_error());
    }
    return got;
}

static void free_results(char **got, int nr) {
    for (int r = 0; got && r < nr; r++) free(got[r]);
    free(got);
}

/* One group on the GPU against the interpreter. `shift` offsets every buffer by one element
 * (misaligned: the kernels' scalar path). A split reduction also gets its counters (zeroed) and
 * its scratch (filled with NaN bytes: the kernel must not read what it did not write) and runs
 * twice: the second launch must find the counters reset and give the same bits (partials
 * combine in a fixed order), and the counters must end zero. */
static void run_gpu(const kiln_backend *be, kiln_context *ctx, kiln_function *f, const kiln_gen_kernel *k,
                    kiln_backend_fn fn, int shift) {
    int np = f->n_params, nr = f->body->n_results, nb = np + nr, extra = k->scratch_bytes ? 2 : 0;
    kiln_value *in = calloc((size_t)np, sizeof *in);
    void **dev = calloc((size_t)nb + 2, sizeof *dev);
    size_t *bytes = calloc((size_t)nb, sizeof *bytes), *es = calloc((size_t)nb, sizeof *es);
    int na = nb + extra + (k->n_params > 0 ? k->n_params : 1);
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
    if (ok && extra) {
        ok = (dev[nb] = be->alloc(0, k->counter_bytes)) && (dev[nb + 1] = be->alloc(0, k->scratch_bytes)) &&
             be->memset_d(0, dev[nb], 0, k->counter_bytes) == 0 && be->memset_d(0, dev[nb + 1], 0xff, k->scratch_bytes) == 0;
        argbuf[nb] = (int64_t)(intptr_t)dev[nb], argbuf[nb + 1] = (int64_t)(intptr_t)dev[nb + 1];
    }
    if (!ok) test_fail(__FILE__, __LINE__, "@%s: device buffers: %s", f->name, be->last_error());
    for (int i = 0; i < k->n_params; i++) argbuf[nb + extra + i] = k->params[i];
    void *args[1] = {argbuf};
    char **first = NULL, **got = NULL;
    for (int launch = 0; launch < (extra ? 2 : 1) && ok; launch++) {
        if (be->launch(0, fn, k->grid, k->block, k->shared_bytes, args) != 0 || be->synchronize(0) != 0) {
            test_fail(__FILE__, __LINE__, "@%s: launch %d: %s", f->name, launch, be->last_error());
            ok = false;
            break;
        }
        free_results(first, nr);
        first = got;
        got = download(be, dev, bytes, es, np, nr, shift);
    }
    for (int r = 0; r < nr && first && got; r++)
        if (memcmp(first[r], got[r], bytes[np + r]))
            test_fail(__FILE__, __LINE__, "@%s (shift %d) result %d: a second launch of the split reduction gives other bits",
                      f->name, shift, r);
    if (ok && extra) {
        unsigned *cnt = malloc(k->counter_bytes);
        if (be->copy_d2h(0, cnt, dev[nb], k->counter_bytes) != 0) test_fail(__FILE__, __LINE__, "@%s: counters: %s", f->name, be->last_error());
        for (size_t c = 0; c < k->counter_bytes / sizeof *cnt; c++)
            if (cnt[c]) {
                test_fail(__FILE__, __LINE__, "@%s: split counter %zu is %u after the launches (want 0)", f->name, c, cnt[c]);
                break;
            }
        free(cnt);
    }
    kiln_value want = {.kind = KILN_VALUE_NONE};
    if (ok) CHECK_OK(ctx, kiln_function_run(f, np, in, &want));
    for (int r = 0; r < nr && ok && got && want.kind != KILN_VALUE_NONE; r++) {
        const kiln_tensor *w = (nr == 1 ? want : kiln_value_tuple_get(want, r)).tensor;
        double tol = dtype_tol(w->dtype);
        for (int64_t e = 0; e < w->numel; e++) {
            double a = kiln_load_f64(w->dtype, got[r], e), b = kiln_load_f64(w->dtype, w->data, e);
            if (a == b || (isnan(a) && isnan(b)) || fabs(a - b) <= tol * (1 + fabs(b))) continue;
            test_fail(__FILE__, __LINE__, "@%s (shift %d) result %d (%s) element %lld: GPU %.9g, interpreter %.9g", f->name,
                      shift, r, kiln_dtype_name(w->dtype), (long long)e, a, b);
            break;
        }
    }
    free_results(first, nr);
    free_results(got, nr);
    kiln_value_release(want);
    release_all(np, in);
    for (int i = 0; i < nb + 2; i++)
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

/* ---- split reductions: few outputs over long reductions, several blocks per output ---------- */

/* Groups with their split: outs = the outputs split (column tiles of up to 32 columns, or rows),
 * width = partials per output and part (the tile's columns; 1 for rows); outs 0 = not split. */
static const struct split_case {
    const char *text;
    int64_t outs, width;
} SPLIT[] = {
    /* bias gradients of GPT-2 (batch 16 x 1024, 768 wide): 24 column tiles */
    {"kernel @bias_f32(%g: f32[16384, 768]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n", 24, 32},
    {"kernel @bias_f16(%g: f16[16384, 768]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n", 24, 32},
    /* layer-norm weight gradient [16, 1024, 768] -> [1, 1, 768], elementwise consumers */
    {"kernel @ln_grads(%dy: f32[16, 1024, 768], %xh: f32[16, 1024, 768], %w: f32[1, 1, 768]) {\n"
     "  let %p = multiply(%dy, %xh)\n  let %s = sum(%p, axes=[0, 1], keepdims=true)\n  let %u = multiply(%s, %w)\n"
     "  let %n = subtract(%w, %u)\n  return %s, %n\n}\n", 24, 32},
    {"kernel @ln_f16(%dy: f16[16, 1024, 768]) {\n  let %c = cast(%dy, dtype=f32)\n"
     "  let %s = sum(%c, axes=[0, 1], keepdims=true)\n  let %h = cast(%s, dtype=f16)\n  return %h\n}\n", 24, 32},
    {"kernel @colmax_f16(%x: f16[16384, 768]) {\n  let %m = max(%x, axes=[0])\n  return %m\n}\n", 24, 32},
    {"kernel @colmean(%x: f32[16384, 768]) {\n  let %s = sum(%x, axes=[0])\n  let %m = divide(%s, 16384.0)\n"
     "  return %m\n}\n", 24, 32},
    /* narrow tiles, integers, f64, NaN (0 / 0) winning a max, a kept dim outside the reduced one */
    {"kernel @colmin_f64(%x: f64[50000, 3]) {\n  let %m = min(%x, axes=[0])\n  return %m\n}\n", 1, 4},
    {"kernel @colsum_i32(%x: i32[20000, 16]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n", 1, 16},
    {"kernel @colnan(%x: f32[4096, 64]) {\n  let %d = divide(%x, %x)\n  let %m = max(%d, axes=[0])\n  return %m\n}\n", 2,
     32},
    {"kernel @colmid(%x: f32[3, 4096, 40]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n", 6, 32},
    /* a column and a row of 100000 ([100000, 1] drops its size-1 dim: the row form too), two columns */
    {"kernel @tall(%x: f32[100000, 1]) {\n  let %s = sum(%x, axes=[0])\n  let %m = divide(%s, 100000.0)\n"
     "  return %s, %m\n}\n", 1, 1},
    {"kernel @tall_max_f16(%x: f16[100000, 1]) {\n  let %m = max(%x, axes=[0])\n  return %m\n}\n", 1, 1},
    {"kernel @tall2(%x: f16[100000, 2]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n", 1, 2},
    {"kernel @wide(%x: f32[1, 100000]) {\n  let %s = sum(%x, axes=[1])\n  let %m = divide(%s, 100000.0)\n"
     "  return %s, %m\n}\n", 1, 1},
    {"kernel @wide_max_f16(%x: f16[1, 100000]) {\n  let %m = max(%x, axes=[1])\n  return %m\n}\n", 1, 1},
    /* to a scalar: a gradient norm, a max, a mean (of f16) */
    {"kernel @norm(%x: f32[16384, 768]) {\n  let %q = multiply(%x, %x)\n  let %s = sum(%q)\n  let %n = sqrt(%s)\n"
     "  return %s, %n\n}\n", 1, 1},
    {"kernel @scalar_max_f16(%x: f16[16384, 768]) {\n  let %m = max(%x)\n  return %m\n}\n", 1, 1},
    {"kernel @scalar_mean_f16(%x: f16[16384, 768]) {\n  let %c = cast(%x, dtype=f32)\n  let %s = sum(%c)\n"
     "  let %m = divide(%s, 12582912.0)\n  let %h = cast(%m, dtype=f16)\n  return %h\n}\n", 1, 1},
    /* a few long rows; rows reduced over two separate dims */
    {"kernel @rows4(%x: f32[4, 300000]) {\n  let %s = sum(%x, axes=[1], keepdims=true)\n  return %s\n}\n", 4, 1},
    {"kernel @ends(%x: f32[64, 8, 2048]) {\n  let %s = sum(%x, axes=[0, 2])\n  return %s\n}\n", 8, 1},
    /* not split: tiny, many column tiles over few rows, many rows */
    {"kernel @small_col(%x: f32[3, 5]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n", 0, 0},
    {"kernel @small_row(%x: f32[3, 5]) {\n  let %s = sum(%x, axes=[1])\n  let %m = divide(%s, 5.0)\n  return %m\n}\n", 0, 0},
    {"kernel @col_many(%x: f32[64, 4096]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n", 0, 0},
    {"kernel @rows_many(%x: f32[1000, 5000]) {\n  let %s = max(%x, axes=[1])\n  return %s\n}\n", 0, 0},
};
#define N_SPLIT (int)(sizeof SPLIT / sizeof *SPLIT)

static size_t round256(int64_t n) { return (size_t)(n + 255) / 256 * 256; }

/* The geometry (no GPU needed): a split kernel runs `parts` blocks of 256 per output (a grid of
 * outs x parts, enough to fill an H100's 132 SMs where the reduction is long enough: 16 elements
 * per thread at least), takes counters (4 bytes per output) and scratch (8-byte partials) as
 * two more bufs; the others take none. Every source, and its _multi variant (horizontal
 * batching), compiles with NVRTC for sm_90 in one translation unit as a program's do. */
TEST(codegen_cuda_split_geometry) {
    kiln_context *ctx = kiln_context_new();
    kiln_buf all = {0};
    for (int i = 0; i < N_SPLIT; i++) {
        kiln_module *m = kiln_module_parse(ctx, SPLIT[i].text, "split.kir");
        kiln_gen_kernel k = {0};
        if (!m) {
            test_fail(__FILE__, __LINE__, "case %d: parse: %s", i, kiln_error_message(ctx));
            continue;
        }
        const kiln_function *f = kiln_module_function_at(m, 0);
        CHECK_OK(ctx, kiln_codegen_cuda(ctx, f, &k));
        int64_t outs = SPLIT[i].outs, parts = outs ? k.grid[0] / outs : 0;
        if (outs) {
            if (!(k.block[0] == 256 && k.grid[0] == outs * parts && parts >= 2 &&
                  k.counter_bytes == round256(outs * 4) && k.scratch_bytes == round256(outs * parts * SPLIT[i].width * 8) &&
                  strstr(k.source, "atomicAdd(cnt_")))
                test_fail(__FILE__, __LINE__, "@%s: want a split over %lld outputs: grid %u block %u counters %zu scratch %zu",
                          f->name, (long long)outs, k.grid[0], k.block[0], k.counter_bytes, k.scratch_bytes);
        } else if (k.counter_bytes || k.scratch_bytes || strstr(k.source, "atomicAdd")) {
            test_fail(__FILE__, __LINE__, "@%s: split, though its outputs are many or its reductions short", f->name);
        }
        char want_args[160];
        snprintf(want_args, sizeof want_args, "struct %s_args { char *bufs[%d];", k.symbol,
                 f->n_params + f->body->n_results + (outs ? 2 : 0));
        CHECK(strstr(k.source, want_args) != NULL);
        char *multi = kiln_codegen_cuda_multi(&k, 3);
        CHECK(multi != NULL);
        if (multi && !strstr(all.data ? all.data : "", k.symbol)) { /* a kernel once (e.g. [1, n] and [n, 1] are one) */
            kiln_buf_puts(&all, k.source);
            kiln_buf_puts(&all, multi);
        }
        free(multi);
        kiln_gen_kernel_free(&k);
        kiln_module_free(m);
    }
    /* GPT-2's [16384, 768] bias gradient: 24 tiles alone were 24 blocks; split, at least 2 per SM */
    kiln_module *m = kiln_module_parse(ctx, SPLIT[0].text, "split.kir");
    kiln_gen_kernel k = {0};
    CHECK_OK(ctx, kiln_codegen_cuda(ctx, kiln_module_function_at(m, 0), &k));
    CHECK(k.grid[0] >= 2 * 132 && k.grid[0] <= 1056);
    kiln_gen_kernel_free(&k);
    kiln_module_free(m);
    char *text = kiln_buf_take(&all);
    const kiln_backend *be = text ? nvrtc_backend("codegen_cuda_split_geometry") : NULL;
    void *img = NULL;
    size_t size = 0;
    if (be && be->nvrtc_compile(text, 90, NULL, 0, &img, &size) != 0)
        test_fail(__FILE__, __LINE__, "NVRTC (split kernels and their _multi variants): %s", be->last_error());
    if (img) be->free_image(img);
    free(text);
    kiln_context_free(ctx);
}

/* Each case on the GPU against the interpreter, aligned and misaligned, launched twice on the
 * same counters and scratch (run_gpu): the second launch gives the same bits, the counters end
 * zero. Without a GPU the sources only compile. */
TEST(codegen_cuda_split_reductions) {
    kiln_buf b = {0};
    for (int i = 0; i < N_SPLIT; i++) kiln_buf_puts(&b, SPLIT[i].text);
    char *text = kiln_buf_take(&b);
    check_cuda("codegen_cuda_split_reductions", text);
    free(text);
}

/* Largest |a - b| / (1 + |b|) over two host tensors of one dtype and size (inf if they differ). */
static double tensor_diff(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->dtype != b->dtype || a->numel != b->numel) return INFINITY;
    double worst = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = kiln_load_f64(a->dtype, a->data, i), y = kiln_load_f64(b->dtype, b->data, i);
        if (!(x == y)) worst = fmax(worst, isnan(x) || isnan(y) ? INFINITY : fabs(x - y) / (1 + fabs(y)));
    }
    return worst;
}

/* Split reductions inside a program on the GPU (the VM gives them counters and scratch): two
 * bias gradients of one kernel batched into one launch (each item with its own counters and
 * scratch), an f16 mean over two dims, a squared norm to a scalar; captured as a CUDA graph at
 * the second run and replayed. Every run matches the interpreter and repeats the first bit for
 * bit (the counters were reset by the launch before). */
TEST(codegen_cuda_split_in_program) {
    char why[512] = "";
    if (!kiln_cuda_backend(why, sizeof why)) {
        printf("skip: codegen_cuda_split_in_program: no GPU (%s)\n", why);
        return;
    }
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(
        ctx,
        "def @f(%a: f32[16384, 768], %b: f32[16384, 768], %h: f16[16, 1024, 768]) -> (f32[768], f32[768], f16[768], f32[]) {\n"
        "  let %sa = sum(%a, axes=[0])\n  let %sb = sum(%b, axes=[0])\n  let %m = mean(%h, axes=[0, 1])\n"
        "  let %q = multiply(%a, %a)\n  let %n = sum(%q)\n  let %r = sqrt(%n)\n  return %sa, %sb, %m, %r\n}\n",
        "split.kir");
    kiln_function *f = m ? kiln_module_function(m, "f") : NULL;
    CHECK(f != NULL);
    kiln_value in[3], want = {.kind = KILN_VALUE_NONE}, first[4] = {{0}};
    unsigned seed = 11;
    for (int i = 0; f && i < 3; i++) in[i] = kiln_value_tensor(random_tensor(ctx, f->params[i]->type, &seed, -0.5, 4));
    kiln_compile_options o = kiln_compile_defaults();
    o.device = "cuda";
    o.cuda_graph = true;
    kiln_program *p = NULL;
    if (f) CHECK_OK(ctx, kiln_function_run(f, 3, in, &want));
    if (f) CHECK_OK(ctx, kiln_compile(f, &o, &p));
    int batched = 0;
    for (int i = 0; p && i < p->main->n_instr; i++) {
        const vm_instr *I = &p->main->instr[i];
        if (I->op == VM_GEN && I->n_multi > 1 && p->gens[I->gen].scratch_bytes) batched = I->n_multi;
    }
    if (p && batched != 2) test_fail(__FILE__, __LINE__, "the two bias gradients are not one batched split launch");
    for (int run = 0; p && want.kind == KILN_VALUE_TUPLE && run < 4; run++) {
        kiln_value got;
        if (kiln_program_run(p, 3, in, &got)) {
            test_fail(__FILE__, __LINE__, "run %d: %s", run, kiln_error_message(ctx));
            break;
        }
        for (int r = 0; r < 4; r++) {
            kiln_tensor *host = kiln_tensor_to(ctx, kiln_value_tuple_get(got, r).tensor, (kiln_device){KILN_DEVICE_CPU, 0});
            const kiln_tensor *w = kiln_value_tuple_get(want, r).tensor;
            double d = host ? tensor_diff(host, w) : INFINITY, tol = w->dtype == KILN_F16 ? 2e-3 : 1e-5;
            if (!(d <= tol)) test_fail(__FILE__, __LINE__, "run %d result %d differs from the interpreter by %g", run, r, d);
            if (run == 0) first[r] = kiln_value_tensor(host);
            else {
                if (host && first[r].tensor && memcmp(host->data, first[r].tensor->data, kiln_tensor_nbytes(host)))
                    test_fail(__FILE__, __LINE__, "run %d result %d: other bits than the first run", run, r);
                kiln_tensor_release(host);
            }
        }
        kiln_value_release(got);
    }
    if (p && p->graph_ok && !p->graph) test_fail(__FILE__, __LINE__, "no CUDA graph was captured");
    release_all(4, first);
    kiln_value_release(want);
    if (f) release_all(3, in);
    kiln_program_free(p);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* The rendered text: stable, self-contained, and of the expected form per group. */
TEST(codegen_cuda_source_structure) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx,
                                       "kernel @ew(%x: f32[64, 96], %b: f32[96]) {\n  let %a = add(%x, %b)\n  return %a\n}\n"
                                       "kernel @ew9(%x: f32[7, 9]) {\n  let %a = exp(%x)\n  return %a\n}\n"
                                       "kernel @row(%x: f32[64, 300]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n"
                                       "kernel @rowbig(%x: f32[4, 5000]) {\n  let %s = max(%x, axes=[1])\n  return %s\n}\n"
                                       "kernel @col(%g: f32[4096, 96]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n"
                                       "kernel @colw(%g: f32[64, 4096]) {\n  let %s = sum(%g, axes=[0])\n  return %s\n}\n"
                                       "kernel @all(%g: f32[512, 512]) {\n  let %s = sum(%g)\n  return %s\n}\n",
                                       "t.kir");
    CHECK(m != NULL);
    static const struct { const char *has, *lacks; unsigned block; } WANT[] = {
        {"kg_pack<float, 4>", "__shfl_xor_sync", 256},
        {"for (uint32_t t = t0; t < total; t += step)", "kg_pack<float", 256},
        {"__shfl_xor_sync(0xffffffffu, a, 16)", "__shared__", 256},
        {"__shared__ double red_[8]", "kg_pack<", 256},
        {"atomicAdd(cnt_ + t, 1u)", "__shfl_xor_sync", 256},  /* 3 column tiles: split */
        {"__shared__ double red_[1024]", "atomicAdd", 1024},     /* 128 tiles, 64 rows: one block each */
        {"atomicAdd(cnt_ + row, 1u)", "red_[1024]", 256},       /* one row of 262144: split */
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
                 f->n_params + f->body->n_results + (k.scratch_bytes ? 2 : 0), k.n_params > 0 ? k.n_params : 1);
        CHECK((k.counter_bytes > 0) == (strstr(k.source, "atomicAdd") != NULL) && (k.counter_bytes > 0) == (k.scratch_bytes > 0));
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
