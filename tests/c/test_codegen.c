/* test_codegen.c — generated C kernels against the interpreter: every op kiln_codegen_supports
 * takes in each of its dtypes (batched as multi-output kernels), broadcasting with scalars and
 * literals, reduce groups (row, column, middle, all axes, keepdims), the on-disk cache, and the
 * ulp error of the generated f32 transcendentals against libm in double. */
#include "codegen/codegen.h"
#include "test.h"
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh cache directory (removed by cache_rm). */
static void cache_new(char *dir) {
    strcpy(dir, "/tmp/kiln-cg-XXXXXX");
    if (!mkdtemp(dir)) test_fail(__FILE__, __LINE__, "mkdtemp failed");
}

static void cache_rm(const char *dir) {
    DIR *d = opendir(dir);
    char path[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

/* The path of the only file ending in `ext` in dir (false if not exactly one). */
static bool only_file(const char *dir, const char *ext, char *path, size_t size) {
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name), m = strlen(ext);
        if (n > m && !strcmp(e->d_name + n - m, ext) && !strstr(e->d_name, ".tmp")) {
            snprintf(path, size, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    if (d) closedir(d);
    return found == 1;
}

/* Deterministic inputs: floats in [-3, 3) (quarters, so sums are exact), ints nonzero in
 * [-20, 20] (u8 [1, 40]), bool 0 / 1; a parameter named p* gets [0, 5] (exponents). */
static double input_value(kiln_dtype dt, const char *name, uint32_t *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    uint32_t r = *seed >> 8;
    if (name && name[0] == 'p') return r % 6;
    if (dt == KILN_BOOL) return r & 1;
    if (kiln_dtype_is_float(dt)) return (double)(int)(r % 24) / 4 - 3 + ((r >> 5) % 3) / 16.0;
    int v = (int)(r % 20) + 1;
    return dt == KILN_U8 ? v + (int)((r >> 6) % 20) : ((r >> 7) & 1) ? v : -v;
}

/* Element i of t as double, for messages and tolerant comparison. */
static double elem(const kiln_tensor *t, int64_t i) { return kiln_load_f64(t->dtype, t->data, i); }

/* Machine epsilon of a float dtype. */
static double dtype_eps(kiln_dtype dt) {
    return dt == KILN_F64 ? 0x1p-52 : dt == KILN_F16 ? 0x1p-10 : dt == KILN_BF16 ? 0x1p-7 : 0x1p-23;
}

/* How results must match the interpreter's: bit-identical when tol and ulps are 0, else within
 * tol * (1 + |want|), or within `ulps` epsilons of the result dtype relative to |want| (the f32
 * transcendentals of generated code, kg_expf..., agree with libm's within a few ulp). */
typedef struct cg_tol {
    double tol;
    int ulps;
} cg_tol;

static const cg_tol EXACT = {0, 0};

static void compare(const char *name, int r, const kiln_tensor *want, const kiln_tensor *got, cg_tol t) {
    if (want->dtype != got->dtype || want->numel != got->numel) {
        test_fail(__FILE__, __LINE__, "@%s result %d: dtype/size differ", name, r);
        return;
    }
    size_t es = kiln_dtype_size(want->dtype);
    double ulp = t.ulps * dtype_eps(want->dtype);
    for (int64_t i = 0; i < want->numel; i++) {
        double a = elem(got, i), b = elem(want, i);
        bool same = !memcmp((char *)got->data + i * es, (char *)want->data + i * es, es) ||
                    (isnan(a) && isnan(b) && (t.tol || t.ulps)) || fabs(a - b) <= t.tol * (1 + fabs(b)) ||
                    fabs(a - b) <= ulp * fmax(fabs(b), 0x1p-126);
        if (!same) {
            test_fail(__FILE__, __LINE__, "@%s result %d (%s) element %lld: %.9g, interpreter %.9g", name, r,
                      kiln_dtype_name(want->dtype), (long long)i, a, b);
            return;
        }
    }
}

/* Runs one group function with the interpreter and through its compiled kernel. */
static void run_both(kiln_context *ctx, kiln_function *f, const kiln_gen_kernel *k, kiln_gen_fn fn, cg_tol tol) {
    int np = f->n_params, nr = f->body->n_results;
    kiln_value *in = calloc((size_t)np, sizeof *in);
    kiln_tensor **outs = calloc((size_t)nr, sizeof *outs);
    char **bufs = calloc((size_t)(np + nr), sizeof *bufs);
    union { int64_t i; double f; uint8_t b; } *scal = calloc((size_t)np, sizeof *scal);
    uint32_t seed = 12345;
    for (int i = 0; i < np; i++) {
        const kiln_type *t = f->params[i]->type;
        const char *pname = f->params[i]->name;
        if (t->kind == KILN_TYPE_SCALAR) {
            double v = input_value(t->dtype, pname, &seed) + (t->dtype == KILN_F64 ? 0.3 : 0);
            if (t->dtype == KILN_I64) in[i] = kiln_value_int(scal[i].i = (int64_t)v);
            else if (t->dtype == KILN_F64) in[i] = kiln_value_float(scal[i].f = v);
            else in[i] = kiln_value_bool((scal[i].b = v != 0));
            bufs[i] = (char *)&scal[i];
            continue;
        }
        kiln_tensor *x = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        for (int64_t e = 0; e < x->numel; e++) kiln_store_f64(t->dtype, x->data, e, input_value(t->dtype, pname, &seed));
        in[i] = kiln_value_tensor(x);
        bufs[i] = x->data;
    }
    for (int r = 0; r < nr; r++) {
        const kiln_type *t = f->body->results[r]->type;
        outs[r] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        bufs[np + r] = outs[r]->data;
    }
    kiln_value want = {.kind = KILN_VALUE_NONE};
    CHECK_OK(ctx, kiln_function_run(f, np, in, &want));
    fn(bufs, k->params);
    for (int r = 0; r < nr && want.kind != KILN_VALUE_NONE; r++) {
        kiln_value w = nr == 1 ? want : kiln_value_tuple_get(want, r);
        compare(f->name, r, w.tensor, outs[r], tol);
    }
    kiln_value_release(want);
    release_all(np, in);
    for (int r = 0; r < nr; r++) kiln_tensor_release(outs[r]);
    free(in), free(outs), free(bufs), free(scal);
}

/* Parses `text`, generates and builds every function of it as one library, and checks each
 * against the interpreter. */
static void check_groups(const char *text, cg_tol tol) {
    kiln_context *ctx = kiln_context_new();
    char dir[64];
    cache_new(dir);
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    if (!m) {
        test_fail(__FILE__, __LINE__, "parse: %s", kiln_error_message(ctx));
        kiln_context_free(ctx);
        return;
    }
    int n = kiln_module_function_count(m);
    kiln_gen_kernel *ks = calloc((size_t)n, sizeof *ks);
    kiln_gen_fn *fns = calloc((size_t)n, sizeof *fns);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        kiln_status s = kiln_codegen_c(ctx, kiln_module_function_at(m, i), &ks[i]);
        CHECK_OK(ctx, s);
        ok = s == KILN_OK;
    }
    kiln_jit_lib *lib = NULL;
    if (ok) {
        kiln_status s = kiln_jit_build(ctx, dir, 0, n, ks, fns, &lib);
        CHECK_OK(ctx, s);
        ok = s == KILN_OK;
    }
    for (int i = 0; i < n && ok; i++) run_both(ctx, kiln_module_function_at(m, i), &ks[i], fns[i], tol);
    kiln_jit_lib_free(lib);
    for (int i = 0; i < n; i++) kiln_gen_kernel_free(&ks[i]);
    free(ks), free(fns);
    kiln_module_free(m);
    kiln_context_free(ctx);
    cache_rm(dir);
}

static const char *const ALL_DT[] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "i8", "bool"};

/* Appends one kernel: every op of `ops` applied to `args` as its own result. */
static void add_kernel(kiln_buf *b, const char *name, const char *params, const char *const *ops, int n_ops, const char *args) {
    kiln_buf_printf(b, "kernel @%s(%s) {\n", name, params);
    for (int i = 0; i < n_ops; i++) {
        const char *attrs = strchr(ops[i], '|');
        if (attrs) kiln_buf_printf(b, "  let %%r%d = %.*s(%s, %s)\n", i, (int)(attrs - ops[i]), ops[i], args, attrs + 1);
        else kiln_buf_printf(b, "  let %%r%d = %s(%s)\n", i, ops[i], args);
    }
    kiln_buf_puts(b, "  return ");
    for (int i = 0; i < n_ops; i++) kiln_buf_printf(b, "%s%%r%d", i ? ", " : "", i);
    kiln_buf_puts(b, "\n}\n");
}

TEST(codegen_unary_every_dtype) {
    static const char *const FL[] = {"neg", "abs", "sign", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "relu",
                                     "floor", "ceil", "round", "trunc", "copy", "logical_not",
                                     "clip|min=-1.3, max=2.1", "clip|max=0.5", "threshold|threshold=0.25, value=-7.5"};
    /* the f32 (f16, bf16) transcendentals of generated code are within a few ulp of libm's;
     * f64 keeps libm, bit-identical */
    static const char *const APPROX[] = {"exp", "log", "log2", "tanh", "atan", "sigmoid", "erf"};
    static const char *const IN[] = {"neg", "abs", "sign", "relu", "floor", "ceil", "round", "trunc", "copy",
                                     "logical_not", "clip|min=-4.5, max=7.2", "threshold|threshold=2.5, value=-3.0"};
    static const char *const BO[] = {"copy", "logical_not"};
    kiln_buf b = {0};
    char name[32], params[64];
    for (int d = 0; d < 9; d++) {
        snprintf(name, sizeof name, "u_%s", ALL_DT[d]);
        snprintf(params, sizeof params, "%%x: %s[3, 37]", ALL_DT[d]);
        if (d < 4) add_kernel(&b, name, params, FL, (int)KILN_COUNTOF(FL), "%x");
        else if (d < 8) add_kernel(&b, name, params, IN, (int)KILN_COUNTOF(IN), "%x");
        else add_kernel(&b, name, params, BO, 2, "%x");
    }
    char *text = kiln_buf_take(&b);
    check_groups(text, EXACT);
    free(text);
    for (int d = 0; d < 4; d++) {
        snprintf(name, sizeof name, "ua_%s", ALL_DT[d]);
        snprintf(params, sizeof params, "%%x: %s[3, 37]", ALL_DT[d]);
        add_kernel(&b, name, params, APPROX, (int)KILN_COUNTOF(APPROX), "%x");
    }
    text = kiln_buf_take(&b);
    check_groups(text, (cg_tol){0, 4});
    free(text);
}

TEST(codegen_binary_every_dtype_broadcast) {
    static const char *const FL[] = {"add", "subtract", "multiply", "divide", "floor_divide", "mod", "power",
                                     "maximum", "minimum", "equal", "not_equal", "less", "less_equal", "greater",
                                     "greater_equal", "logical_and", "logical_or", "logical_xor"};
    /* integer floor_divide, mod and power stay on the built-in kernels (they report division by
     * zero and negative exponents), so they are not generated */
    static const char *const IN[] = {"add", "subtract", "multiply", "divide", "maximum",
                                     "minimum", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
                                     "logical_and", "logical_or", "logical_xor", "left_shift", "right_shift"};
    static const char *const BO[] = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
                                     "logical_and", "logical_or", "logical_xor"};
    kiln_buf b = {0};
    char name[32], params[96];
    for (int d = 0; d < 9; d++) {
        snprintf(name, sizeof name, "b_%s", ALL_DT[d]);
        snprintf(params, sizeof params, "%%x: %s[3, 37], %%y: %s[37]", ALL_DT[d], ALL_DT[d]);
        if (d < 4) add_kernel(&b, name, params, FL, (int)KILN_COUNTOF(FL), "%x, %y");
        else if (d < 8) add_kernel(&b, name, params, IN, (int)KILN_COUNTOF(IN), "%x, %y");
        else add_kernel(&b, name, params, BO, (int)KILN_COUNTOF(BO), "%x, %y");
    }
    /* mixed dtypes promote; y broadcast along rows */
    kiln_buf_puts(&b, "kernel @mixed(%x: f16[2, 3, 4], %y: bf16[3, 1], %z: i8[4], %w: u8[2, 1, 4]) {\n"
                      "  let %a = add(%x, %y)\n  let %c = multiply(%z, %w)\n  let %d = subtract(%a, %c)\n"
                      "  let %e = less(%z, %x)\n  let %f = divide(%c, %a)\n  let %g = maximum(%x, %w)\n"
                      "  return %d, %e, %f, %g\n}\n");
    char *text = kiln_buf_take(&b);
    check_groups(text, EXACT);
    free(text);
}

TEST(codegen_cast_where_broadcast_to) {
    kiln_buf b = {0};
    for (int s = 0; s < 9; s++) {
        kiln_buf_printf(&b, "kernel @cast_%s(%%x: %s[5, 7]) {\n", ALL_DT[s], ALL_DT[s]);
        for (int d = 0; d < 9; d++) kiln_buf_printf(&b, "  let %%r%d = cast(%%x, dtype=%s)\n", d, ALL_DT[d]);
        kiln_buf_puts(&b, "  return %r0, %r1, %r2, %r3, %r4, %r5, %r6, %r7, %r8\n}\n");
    }
    for (int d = 0; d < 9; d++)
        kiln_buf_printf(&b, "kernel @where_%s(%%c: bool[5, 1], %%x: %s[7], %%y: %s[5, 7]) {\n"
                            "  let %%r = where(%%c, %%x, %%y)\n  let %%t = broadcast_to(%%x, shape=[2, 5, 7])\n"
                            "  return %%t\n}\n"
                            "kernel @where2_%s(%%c: bool[5, 1], %%x: %s[7], %%y: %s[5, 7]) {\n"
                            "  let %%r = where(%%c, %%x, %%y)\n  let %%s = where(%%c, %%y, 1.5)\n  return %%r, %%s\n}\n",
                        ALL_DT[d], ALL_DT[d], ALL_DT[d], ALL_DT[d], ALL_DT[d], ALL_DT[d]);
    char *text = kiln_buf_take(&b);
    check_groups(text, EXACT);
    free(text);
}

/* Scalar parameters (int / float / bool 0-d buffers) and literals with weak promotion. */
TEST(codegen_scalars_and_literals) {
    check_groups("kernel @s1(%x: f16[4, 5], %s: float, %n: int, %b: bool) {\n"
                 "  let %a = add(%x, %s)\n  let %c = multiply(%a, 2.5)\n  let %d = less(%x, %s)\n"
                 "  let %e = where(%b, %c, %n)\n  let %f = add(%e, 1)\n  let %g = where(%d, 0.1, %s)\n"
                 "  return %c, %d, %e, %f, %g\n}\n"
                 "kernel @s2(%x: i32[33], %s: float, %n: int) {\n"
                 "  let %a = add(%x, 1.5)\n  let %c = multiply(%x, %n)\n  let %d = greater(%x, %s)\n"
                 "  let %e = subtract(%n, %x)\n"
                 "  return %a, %c, %d, %e\n}\n"
                 "kernel @s3(%x: bool[6], %n: int, %y: bf16[2, 6]) {\n"
                 "  let %c = logical_and(%x, true)\n  let %d = where(%c, %y, -2)\n"
                 "  let %e = cast(%n, dtype=f16)\n  let %f = add(%d, %e)\n"
                 "  return %d, %f\n}\n"
                 "kernel @s4(%x: f64[1000, 70], %s: float) {\n"
                 "  let %a = multiply(%x, %s)\n  let %c = tanh(%a)\n  let %d = add(%c, 1.0)\n  return %d\n}\n",
                 EXACT);
}

/* Reductions of each form, with producers (incl. broadcast params) and consumers. */
TEST(codegen_reduce_groups) {
    check_groups(
        /* row: softmax-like pieces, multi-output, consumer param in the result's space */
        "kernel @row(%x: f32[6, 300], %b: f32[300], %c: f32[6, 1]) {\n"
        "  let %a = subtract(%x, %b)\n  let %e = exp(%a)\n  let %s = sum(%e, axes=[1], keepdims=true)\n"
        "  let %l = log(%s)\n  let %d = add(%l, %c)\n  return %s, %d\n}\n"
        "kernel @rowmax(%x: f32[17, 129]) {\n  let %m = max(%x, axes=[-1])\n  let %n = neg(%m)\n  return %m, %n\n}\n"
        /* column: bias gradient */
        "kernel @col(%g: f32[500, 70], %w: f32[70]) {\n  let %s = sum(%g, axes=[0])\n  let %t = multiply(%s, %w)\n"
        "  return %s, %t\n}\n"
        "kernel @colbig(%g: f64[64, 600]) {\n  let %s = min(%g, axes=[0], keepdims=true)\n  return %s\n}\n"
        /* middle axis, and outer+inner axes together */
        "kernel @mid(%x: f32[4, 50, 33], %y: f32[4, 1, 33]) {\n  let %a = multiply(%x, %y)\n"
        "  let %s = sum(%a, axes=[1], keepdims=true)\n  let %d = divide(%s, %y)\n  return %d\n}\n"
        "kernel @ends(%x: f64[5, 6, 7]) {\n  let %s = prod(%x, axes=[0, 2])\n  return %s\n}\n"
        "kernel @allax(%x: f32[7, 9], %k: float) {\n  let %a = multiply(%x, %k)\n  let %s = sum(%a)\n"
        "  let %m = multiply(%s, 0.5)\n  return %m\n}\n"
        "kernel @nothing(%x: f32[3, 4]) {\n  let %s = sum(%x, axes=[])\n  return %s\n}\n"
        /* dtypes: halves accumulate in double, ints in int64, bool through all / any */
        "kernel @h16(%x: f16[8, 40]) {\n  let %s = sum(%x, axes=[1])\n  return %s\n}\n"
        "kernel @hb16(%x: bf16[8, 40]) {\n  let %m = max(%x, axes=[0])\n  return %m\n}\n"
        "kernel @ints(%x: i32[9, 13]) {\n  let %s = sum(%x, axes=[1])\n  let %t = add(%s, 1)\n  return %t\n}\n"
        "kernel @u8p(%x: u8[9, 13]) {\n  let %s = prod(%x, axes=[0])\n  return %s\n}\n"
        "kernel @i8min(%x: i8[9, 13]) {\n  let %s = min(%x, axes=[1], keepdims=true)\n  return %s\n}\n"
        "kernel @anyall(%x: f32[10, 12]) {\n  let %c = greater(%x, 1.0)\n  let %a = any(%c, axes=[1])\n"
        "  let %n = logical_not(%a)\n  return %n\n}\n"
        "kernel @allb(%x: bool[10, 12]) {\n  let %a = all(%x, axes=[0])\n  return %a\n}\n"
        "kernel @empty(%x: f32[0, 5]) {\n  let %s = sum(%x, axes=[0])\n  return %s\n}\n",
        (cg_tol){1e-6, 0});
}

static kiln_status build_one(kiln_context *ctx, const char *dir, const char *text, kiln_gen_kernel *k, kiln_gen_fn *fn,
                             kiln_jit_lib **lib) {
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    kiln_status s = m ? kiln_codegen_c(ctx, kiln_module_function_at(m, 0), k) : KILN_ERR_PARSE;
    if (s == KILN_OK) s = kiln_jit_build(ctx, dir, 0, 1, k, fn, lib);
    kiln_module_free(m);
    return s;
}

TEST(codegen_cache_hit_corrupt_and_stale) {
    kiln_context *ctx = kiln_context_new();
    char dir[64], so[512], so2[512];
    struct stat st0, st1;
    cache_new(dir);
    const char *text = "kernel @k(%x: f32[4]) {\n let %y = add(%x, 1.0)\n return %y\n}\n";
    kiln_gen_kernel k = {0}, k2 = {0};
    kiln_gen_fn fn = NULL;
    kiln_jit_lib *lib = NULL;
    CHECK_OK(ctx, build_one(ctx, dir, text, &k, &fn, &lib));
    kiln_jit_lib_free(lib);
    CHECK(only_file(dir, ".so", so, sizeof so));
    CHECK(stat(so, &st0) == 0);
    /* a second build of the same source loads the cached object: same file, no compiler */
    CHECK_OK(ctx, kiln_jit_build(ctx, dir, 0, 1, &k, &fn, &lib));
    CHECK(stat(so, &st1) == 0 && st1.st_ino == st0.st_ino && st1.st_mtime == st0.st_mtime);
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    char *bufs[2] = {(char *)x, (char *)y};
    if (fn) fn(bufs, k.params);
    CHECK(y[0] == 2 && y[3] == 5);
    kiln_jit_lib_free(lib);
    /* a corrupt entry is rebuilt */
    FILE *fp = fopen(so, "w");
    if (fp) fputs("not a shared object", fp), fclose(fp);
    CHECK_OK(ctx, kiln_jit_build(ctx, dir, 0, 1, &k, &fn, &lib));
    CHECK(stat(so, &st1) == 0 && st1.st_ino != st0.st_ino);
    y[0] = 0;
    if (fn) fn(bufs, k.params);
    CHECK(y[0] == 2);
    kiln_jit_lib_free(lib);
    /* a stale entry (another library's object under this name: its key differs) is rebuilt */
    char dir2[64];
    cache_new(dir2);
    CHECK_OK(ctx, build_one(ctx, dir2, "kernel @k(%x: f32[4]) {\n let %y = add(%x, 2.0)\n return %y\n}\n", &k2, &fn, &lib));
    kiln_jit_lib_free(lib);
    CHECK(only_file(dir2, ".so", so2, sizeof so2));
    CHECK(rename(so2, so) == 0);
    CHECK(stat(so, &st0) == 0);
    CHECK_OK(ctx, kiln_jit_build(ctx, dir, 0, 1, &k, &fn, &lib));
    CHECK(stat(so, &st1) == 0 && st1.st_ino != st0.st_ino);
    y[0] = 0;
    if (fn) fn(bufs, k.params);
    CHECK(y[0] == 2);
    kiln_jit_lib_free(lib);
    kiln_gen_kernel_free(&k);
    kiln_gen_kernel_free(&k2);
    cache_rm(dir);
    cache_rm(dir2);
    kiln_context_free(ctx);
}

TEST(codegen_compiler_errors) {
    kiln_context *ctx = kiln_context_new();
    char dir[64], src[512];
    cache_new(dir);
    kiln_gen_kernel bad = {.source = "this is not C;\n", .symbol = "kiln_gen_bad"};
    kiln_gen_fn fn;
    kiln_jit_lib *lib = NULL;
    CHECK_ERR(ctx, kiln_jit_build(ctx, dir, 0, 1, &bad, &fn, &lib), KILN_ERR_INTERNAL, "failed");
    CHECK(lib == NULL);
    CHECK(only_file(dir, ".c", src, sizeof src) && strstr(kiln_error_message(ctx), src));
    CHECK(strstr(kiln_error_message(ctx), "error") != NULL);
    /* a missing compiler */
    const char *old = getenv("CC");
    char *saved = old ? strdup(old) : NULL;
    setenv("CC", "/nonexistent/kiln-cc", 1);
    CHECK_ERR(ctx, kiln_jit_build(ctx, dir, 0, 1, &bad, &fn, &lib), KILN_ERR_UNSUPPORTED, "cannot run the C compiler");
    if (saved) setenv("CC", saved, 1);
    else unsetenv("CC");
    free(saved);
    /* groups outside the two forms are refused with a message naming the kernel */
    kiln_module *m = kiln_module_parse(ctx, "kernel @two(%x: f32[3, 4]) {\n let %a = sum(%x, axes=[0])\n"
                                            " let %b = sum(%a)\n return %b\n}\n", "t.kir");
    kiln_gen_kernel k;
    CHECK_ERR(ctx, kiln_codegen_c(ctx, kiln_module_function_at(m, 0), &k), KILN_ERR_INTERNAL, "kernel @two");
    kiln_module_free(m);
    char *dflt = kiln_jit_cache_dir("/x/y");
    CHECK_STR(dflt, "/x/y");
    free(dflt);
    cache_rm(dir);
    kiln_context_free(ctx);
}

/* Error of got in units of the f32 ulp at the exact value ref (subnormal ulp below 2^-126);
 * NaN / inf / signed zero must match exactly (else a huge error). */
static double ulp_error(float got, double ref) {
    float rf = (float)ref;
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0 : INFINITY;
    if (isinf(rf) || isinf(got) || ref == 0) return got == rf && signbit(got) == signbit(rf) ? 0 : INFINITY;
    int ex;
    frexp(fabs(ref), &ex);
    return fabs((double)got - ref) / ldexp(1, (ex < -125 ? -125 : ex) - 24);
}

static double sigmoid_ref(double x) { return 1 / (1 + exp(-x)); }

/* Accuracy of the generated f32 transcendentals: 2^20 inputs (special values, a sweep of every
 * exponent and sign with mixed mantissas, and a dense sweep of [-12, 12]) through one generated
 * kernel, against the libm double result rounded, within the bounds render_c.c claims. */
TEST(codegen_transcendental_ulp) {
    static const struct { const char *op; double (*ref)(double); double max_ulp; } FN[] = {
        {"exp", exp, 1.5}, {"log", log, 1.5}, {"log2", log2, 2}, {"tanh", tanh, 2},
        {"sigmoid", sigmoid_ref, 3}, {"erf", erf, 2}, {"atan", atan, 2.5},
    };
    enum { N = 1 << 20, NF = (int)KILN_COUNTOF(FN) };
    static const float SPECIAL[] = {0.0f,      -0.0f,     INFINITY,  -INFINITY,  NAN,        1.0f,       -1.0f,
                                    88.72283f, 88.72284f, 89.0f,     -87.33655f, -103.972f,  -103.973f,  -104.0f,
                                    -150.0f,   0x1p-149f, 0x1p-126f, -0x1p-149f, 0x1.fffffep127f, 9.0f, -9.0f,
                                    3.9f,      4.0f,      0.921875f, 0.625f,     0.4142135f, 2.4142137f};
    kiln_context *ctx = kiln_context_new();
    char dir[64];
    cache_new(dir);
    kiln_buf b = {0};
    kiln_buf_printf(&b, "kernel @acc(%%x: f32[%d]) {\n", N);
    for (int i = 0; i < NF; i++) kiln_buf_printf(&b, "  let %%r%d = %s(%%x)\n", i, FN[i].op);
    kiln_buf_puts(&b, "  return %r0, %r1, %r2, %r3, %r4, %r5, %r6\n}\n");
    char *text = kiln_buf_take(&b);
    kiln_module *m = kiln_module_parse(ctx, text, "t.kir");
    kiln_gen_kernel k = {0};
    kiln_gen_fn fn = NULL;
    kiln_jit_lib *lib = NULL;
    CHECK(m != NULL);
    if (m) CHECK_OK(ctx, kiln_codegen_c(ctx, kiln_module_function_at(m, 0), &k));
    if (k.source) CHECK_OK(ctx, kiln_jit_build(ctx, dir, 0, 1, &k, &fn, &lib));
    float *x = malloc(sizeof *x * N * (NF + 1));
    char *bufs[NF + 1];
    int ns = (int)KILN_COUNTOF(SPECIAL);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)i * 8192u + (((uint32_t)i * 2654435761u) >> 19); /* every exponent, both signs */
        float v = (float)((double)i / N * 24 - 12);                                /* odd i: [-12, 12) */
        if (i < ns) x[i] = SPECIAL[i];
        else if (i % 2 == 0) memcpy(&x[i], &u, 4);
        else x[i] = v;
    }
    for (int i = 0; i <= NF; i++) bufs[i] = (char *)(x + (size_t)i * N);
    if (fn) fn(bufs, k.params);
    for (int f = 0; f < NF && fn; f++) {
        const float *y = x + (size_t)(f + 1) * N;
        double worst = 0;
        int at = 0;
        for (int i = 0; i < N; i++) {
            double e = ulp_error(y[i], FN[f].ref(x[i]));
            if (!(e <= worst)) worst = e, at = i;
        }
        if (!(worst <= FN[f].max_ulp))
            test_fail(__FILE__, __LINE__, "%s(%a) = %a: %.3g ulp from %.9g (bound %.3g)", FN[f].op, x[at],
                      y[at], worst, FN[f].ref(x[at]), FN[f].max_ulp);
    }
    free(x);
    free(text);
    kiln_jit_lib_free(lib);
    kiln_gen_kernel_free(&k);
    kiln_module_free(m);
    cache_rm(dir);
    kiln_context_free(ctx);
}
