/* test_cuda_ops.c — the CUDA dialects (cuda, cublaslt): kiln's CUDA kernels compile with NVRTC
 * (no GPU needed), supports / covers decisions, and on a GPU every implemented op run through its
 * CUDA kernel on device buffers against the interpreter's reference kernels on the host. */
#include "cuda_check.h"
#include <stdlib.h>

extern const char kiln_cuda_kernels_src[]; /* cuda_kernels.cu, built into the library */

/* ---- without a GPU --------------------------------------------------------------------------- */
TEST(cuda_kernels_compile_with_nvrtc) {
    char why[512] = "";
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    if (!be) {
        printf("  skip: cuda_kernels_compile_with_nvrtc: %s\n", why);
        return;
    }
    void *image = NULL;
    size_t size = 0;
    int rc = be->nvrtc_compile(kiln_cuda_kernels_src, 90, NULL, 0, &image, &size);
    if (rc) test_fail(__FILE__, __LINE__, "NVRTC on cuda_kernels.cu for sm_90: %s", be->last_error());
    CHECK(size > 0);
    if (image) be->free_image(image);
}

/* The first node of "def @f(PARAMS) { let %out = CALL return %out }" (its module in *m; NULL and a
 * recorded failure if it does not parse). */
static kiln_node *one_node(kiln_context *ctx, const char *params, const char *call, kiln_module **m) {
    char text[1024];
    snprintf(text, sizeof text, "def @f(%s) {\n let %%out = %s\n return %%out\n}\n", params, call);
    *m = kiln_module_parse(ctx, text, "cuda_ops.kir");
    if (!*m) test_fail(__FILE__, __LINE__, "parse %s: %s", call, kiln_error_message(ctx));
    return *m ? kiln_module_function(*m, "f")->body->first : NULL;
}

static void check_covers(int line, const char *params, const char *call, bool impl, bool covered) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m;
    kiln_node *n = one_node(ctx, params, call, &m);
    if (n && (cuda_check_impl(n, -1) != NULL) != impl) test_fail(__FILE__, line, "%s: a CUDA implementation %s", call, impl ? "is missing" : "claims it");
    if (n && kiln_cuda_covers(n) != covered) test_fail(__FILE__, line, "kiln_cuda_covers(%s) is %d", call, !covered);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
#define COVERS(params, call, impl, covered) check_covers(__LINE__, (params), (call), (impl), (covered))

TEST(cuda_supports_and_covers) {
    COVERS("%x: f32[2, 3]", "transpose(%x)", true, true);
    COVERS("%x: bf16[4, 5], %i: i32[3]", "take(%x, %i, axis=0)", true, true);
    COVERS("%x: f32[4, 5], %t: i64[4]", "nll_loss(%x, %t, reduction=\"sum\")", true, true);
    COVERS("%a: f32[2, 3, 4], %b: f32[4, 5]", "matmul(%a, %b)", true, true);
    COVERS("%a: bf16[2, 3, 4], %b: bf16[2, 5, 4]", "batch_matmul(%a, %b, transpose_b=true)", true, true);
    COVERS("%x: f16[2, 3, 4], %w: f16[5, 4], %b: f16[5]", "dense(%x, %w, %b)", true, true);
    COVERS("%x: f32[2, 3], %y: f32[2, 3]", "add(%x, %y)", false, true);   /* generated code */
    COVERS("%a: f64[3, 4], %b: f64[4, 5]", "matmul(%a, %b)", false, false); /* cuBLASLt: f32 / f16 / bf16 */
    COVERS("%a: i32[3, 4], %b: i32[4, 5]", "matmul(%a, %b)", false, false);
    COVERS("%x: f32[2, 0], %w: f32[5, 0], %b: f32[5]", "dense(%x, %w, %b)", false, false); /* empty k with a bias */
    COVERS("%x: f32[1, 3, 8, 8], %w: f32[4, 3, 3, 3]", "conv2d(%x, %w)", true, true); /* cudnn */
    COVERS("%x: f32[6]", "sort(%x)", false, false);
}

TEST(cuda_kernel_without_exec_context_fails) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m;
    kiln_node *n = one_node(ctx, "%x: f32[2, 3]", "transpose(%x)", &m);
    const kiln_dialect_impl *impl = n ? cuda_check_impl(n, -1) : NULL;
    kiln_tensor *x = tt(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}), *y = tt(ctx, KILN_F32, "3,2", (double[]){0, 0, 0, 0, 0, 0});
    CHECK(impl != NULL);
    if (impl && x && y) cuda_check_needs_exec(__FILE__, __LINE__, ctx, impl, n, x, y);
    kiln_tensor_release(x);
    kiln_tensor_release(y);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

TEST(cuda_tf32_switch) {
    bool was = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false);
    CHECK(!kiln_cuda_tf32());
    kiln_cuda_set_tf32(true);
    CHECK(kiln_cuda_tf32());
    kiln_cuda_set_tf32(was);
}

/* ---- on a GPU: each op through its CUDA kernel against the reference ---------------------------- */
/* Runs op on the host (the reference) and through its CUDA kernel on device copies of the inputs. */
static void check_op_cuda_at(int line, kiln_context *ctx, const char *op, int n_in, const kiln_value *in, const char *attrs,
                             double tol) {
    cuda_check_op(__FILE__, line, ctx, -1, op, n_in, in, attrs, tol, false);
}
#define check_op_cuda(ctx, op, n, in, attrs, tol) check_op_cuda_at(__LINE__, (ctx), (op), (n), (in), (attrs), (tol))

/* A tensor value of `shape` ("2,3") with elements uniform in [lo, hi) (ints: floored), from a
 * fixed sequence. */
static kiln_value rnd(kiln_context *ctx, kiln_dtype dt, const char *shape, double lo, double hi) {
    static uint64_t seed = 0x9e3779b97f4a7c15u;
    int64_t numel = 1;
    for (const char *s = shape; *s;) {
        char *end;
        numel *= strtoll(s, &end, 10);
        s = *end ? end + 1 : end;
    }
    double *v = malloc(sizeof(double) * (size_t)(numel ? numel : 1));
    for (int64_t i = 0; v && i < numel; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        double u = lo + (double)(seed >> 11) / 9007199254740992.0 * (hi - lo);
        v[i] = kiln_dtype_is_float(dt) ? u : floor(u);
    }
    kiln_value t = tv(ctx, dt, shape, v);
    free(v);
    return t;
}

/* One op on one set of inputs, each released after. */
static void check_with(int line, kiln_context *ctx, const char *op, int n, kiln_value *in, const char *attrs, double tol) {
    check_op_cuda_at(line, ctx, op, n, in, attrs, tol);
    release_all(n, in);
}
#define CHECK1(op, x, attrs, tol) check_with(__LINE__, ctx, (op), 1, (kiln_value[]){x}, (attrs), (tol))
#define CHECK2(op, x, y, attrs, tol) check_with(__LINE__, ctx, (op), 2, (kiln_value[]){x, y}, (attrs), (tol))
#define CHECK3(op, x, y, z, attrs, tol) check_with(__LINE__, ctx, (op), 3, (kiln_value[]){x, y, z}, (attrs), (tol))
#define CHECK0(op, attrs, tol) check_op_cuda_at(__LINE__, ctx, (op), 0, NULL, (attrs), (tol))

static const kiln_dtype all_dtypes[] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16, KILN_I8, KILN_U8, KILN_I32, KILN_I64, KILN_BOOL};
#define N_DTYPES ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

TEST(cuda_layout_ops_match_reference) {
    if (!cuda_check_gpu("cuda_layout_ops_match_reference")) return;
    kiln_context *ctx = kiln_context_new();
    for (int k = 0; k < N_DTYPES; k++) { /* raw element moves: every dtype (sizes 1, 2, 4, 8) */
        kiln_dtype dt = all_dtypes[k];
        CHECK1("transpose", rnd(ctx, dt, "3,5", -50, 50), NULL, 0);
        CHECK1("transpose", rnd(ctx, dt, "2,3,4,6", -50, 50), "axes=[0, 2, 1, 3]", 0);
        CHECK1("concatenate", rnd(ctx, dt, "2,3", -50, 50), "axis=1", 0);
        CHECK2("concatenate", rnd(ctx, dt, "2,3,4", -50, 50), rnd(ctx, dt, "2,1,4", -50, 50), "axis=1", 0);
    }
    CHECK1("transpose", rnd(ctx, KILN_F32, "4,6,8", -1, 1), "axes=[2, 0, 1]", 0);
    CHECK1("transpose", rnd(ctx, KILN_F16, "2,4,16,8", -1, 1), "axes=[0, 2, 1, 3]", 0); /* attention heads */
    CHECK1("transpose", rnd(ctx, KILN_F32, "2,24,3,64", -1, 1), "axes=[0, 2, 1, 3]", 0); /* runs of 256 B: 16-byte moves */
    CHECK1("transpose", rnd(ctx, KILN_F64, "3,2,5,2", -1, 1), "axes=[2, 1, 0, 3]", 0);  /* runs of 2 f64: 16-byte moves */
    CHECK1("transpose", rnd(ctx, KILN_F32, "33,65", -1, 1), "axes=[1, 0]", 0);
    CHECK1("reverse", rnd(ctx, KILN_F32, "3,4,5", -1, 1), "axes=[0, 2]", 0);
    CHECK1("reverse", rnd(ctx, KILN_BF16, "7", -1, 1), "axes=[-1]", 0);
    CHECK1("strided_slice", rnd(ctx, KILN_F32, "6,8", -1, 1), "begin=[1, -1], end=[5, -8], strides=[2, -2]", 0);
    CHECK1("strided_slice", rnd(ctx, KILN_I64, "4,5,6", -99, 99), "begin=[1], end=[4], axes=[2]", 0);
    CHECK1("strided_slice", rnd(ctx, KILN_F16, "5,6", -1, 1), "begin=[0, 5], end=[5, 0], strides=[1, -1]", 0);
    CHECK1("strided_slice", rnd(ctx, KILN_F32, "4,6", -1, 1), "begin=[3], end=[3], axes=[0]", 0); /* empty */
    CHECK3("concatenate", rnd(ctx, KILN_F32, "1,3,4", -1, 1), rnd(ctx, KILN_F32, "2,3,4", -1, 1), rnd(ctx, KILN_F32, "3,3,4", -1, 1),
           "axis=0", 0);
    CHECK3("concatenate", rnd(ctx, KILN_F32, "2,3,1", -1, 1), rnd(ctx, KILN_F32, "2,3,2", -1, 1), rnd(ctx, KILN_F32, "2,3,5", -1, 1),
           "axis=-1", 0);
    CHECK1("split", rnd(ctx, KILN_F32, "6,4", -1, 1), "sections=3, axis=0", 0);
    CHECK1("split", rnd(ctx, KILN_U8, "2,7", 0, 200), "sizes=[2, 0, 5], axis=1", 0);
    CHECK1("tile", rnd(ctx, KILN_F32, "2,3", -1, 1), "reps=[2, 1, 3]", 0);
    CHECK1("tile", rnd(ctx, KILN_I32, "3", -9, 9), "reps=[2]", 0);
    CHECK1("repeat", rnd(ctx, KILN_F32, "2,3", -1, 1), "repeats=3, axis=1", 0);
    CHECK1("repeat", rnd(ctx, KILN_F16, "2,3", -1, 1), "repeats=2", 0);
    CHECK1("pad", rnd(ctx, KILN_F32, "3,4", -1, 1), "pad_width=[1, 2, 0, 3], value=1.5", 0);
    CHECK1("pad", rnd(ctx, KILN_BF16, "3,4", -1, 1), "pad_width=[2, 2, 1, 3], mode=\"reflect\"", 0);
    CHECK1("pad", rnd(ctx, KILN_I32, "2,3,2", -9, 9), "pad_width=[1, 0, 2, 2, 0, 1], mode=\"edge\"", 0);
    CHECK1("reshape", rnd(ctx, KILN_F32, "2,6", -1, 1), "shape=[3, -1]", 0);
    CHECK1("expand_dims", rnd(ctx, KILN_F64, "2,3", -1, 1), "axis=1", 0);
    CHECK1("squeeze", rnd(ctx, KILN_BOOL, "2,1,3", 0, 2), NULL, 0);
    kiln_context_free(ctx);
}

TEST(cuda_index_ops_match_reference) {
    if (!cuda_check_gpu("cuda_index_ops_match_reference")) return;
    kiln_context *ctx = kiln_context_new();
    kiln_dtype fl[] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16};
    double half_tol[] = {1e-6, 1e-12, 2e-3, 1.6e-2};
    CHECK2("take", rnd(ctx, KILN_F32, "5,3", -1, 1), tv(ctx, KILN_I64, "2,2", (double[]){0, -1, 4, -5}), "axis=0", 0);
    CHECK2("take", rnd(ctx, KILN_I8, "2,5,3", -9, 9), tv(ctx, KILN_I32, "4", (double[]){7, -8, 2, 12}), "axis=1, mode=\"wrap\"", 0);
    CHECK2("take", rnd(ctx, KILN_F16, "2,5", -1, 1), tv(ctx, KILN_U8, "3", (double[]){9, 0, 4}), "axis=-1, mode=\"clip\"", 0);
    CHECK2("take", rnd(ctx, KILN_F32, "3,4", -1, 1), tv(ctx, KILN_I64, "5", (double[]){11, 0, -12, 5, 3}), NULL, 0);
    CHECK2("take", rnd(ctx, KILN_F32, "3,4", -1, 1), kiln_value_int(-2), "axis=0", 0);
    CHECK2("gather", rnd(ctx, KILN_F32, "3,4", -1, 1), tv(ctx, KILN_I64, "2,4", (double[]){0, 2, 1, -1, 2, 2, 0, 1}), "axis=0", 0);
    CHECK2("gather", rnd(ctx, KILN_I64, "3,4", -99, 99), tv(ctx, KILN_I32, "3,2", (double[]){3, 0, 1, 1, 2, 0}), "axis=1", 0);
    CHECK3("scatter", rnd(ctx, KILN_F32, "3,4", -1, 1), tv(ctx, KILN_I64, "2,4", (double[]){0, 2, 1, 0, 2, 0, 2, 1}),
           rnd(ctx, KILN_F32, "2,4", -1, 1), "axis=0", 0);
    CHECK3("scatter", rnd(ctx, KILN_F32, "3,4", -1, 1), tv(ctx, KILN_I64, "3,3", (double[]){0, 0, 1, 3, 3, 3, 2, 1, 2}),
           rnd(ctx, KILN_F32, "3,3", -1, 1), "axis=1, reduce=\"add\"", 1e-6);
    CHECK3("scatter", rnd(ctx, KILN_I8, "2,3", -9, 9), tv(ctx, KILN_I64, "2,2", (double[]){1, 1, 0, 0}), rnd(ctx, KILN_I8, "2,2", -9, 9),
           "axis=1, reduce=\"add\"", 0);
    CHECK3("scatter", rnd(ctx, KILN_BF16, "4", -1, 1), tv(ctx, KILN_I64, "3", (double[]){2, 2, 3}), rnd(ctx, KILN_BF16, "3", -1, 1),
           "axis=0, reduce=\"add\"", 1.6e-2);
    CHECK2("gather_nd", rnd(ctx, KILN_F32, "3,4,2", -1, 1), tv(ctx, KILN_I64, "2,2", (double[]){0, 3, 2, -1}), NULL, 0);
    CHECK2("gather_nd", rnd(ctx, KILN_F16, "2,3,4", -1, 1), tv(ctx, KILN_I64, "2,2,1", (double[]){2, 0, 1, 1}), "batch_dims=1", 0);
    CHECK1("one_hot", tv(ctx, KILN_I64, "2,3", (double[]){0, 3, -1, 5, -6, 2}), "depth=5", 0);
    CHECK1("one_hot", tv(ctx, KILN_I32, "2,3", (double[]){1, 0, 2, 2, 1, 0}), "depth=3, axis=0, on_value=2.0, off_value=-1.0, dtype=bf16", 0);
    for (int k = 0; k < 4; k++) {
        kiln_dtype dt = fl[k];
        CHECK2("take_backward", rnd(ctx, dt, "4,3", -1, 1), tv(ctx, KILN_I64, "4", (double[]){1, 3, 1, 1}), "axis=0, shape=[5, 3]",
               half_tol[k]);
        CHECK2("take_backward", rnd(ctx, dt, "2,2,2", -1, 1), tv(ctx, KILN_I64, "2,2", (double[]){0, -1, 3, 3}), "axis=1, shape=[2, 4]",
               half_tol[k]);
        CHECK2("gather_nd_backward", rnd(ctx, dt, "3,2", -1, 1), tv(ctx, KILN_I64, "3,2", (double[]){0, 1, 2, 0, 0, 1}),
               "shape=[3, 2, 2]", half_tol[k]);
        CHECK1("strided_slice_backward", rnd(ctx, dt, "2,3", -1, 1), "begin=[1, -1], end=[5, -8], strides=[2, -2], shape=[6, 6]", 0);
        CHECK1("pad_backward", rnd(ctx, dt, "5,6", -1, 1), "pad_width=[1, 1, 2, 0], shape=[3, 4]", 0);
        CHECK1("pad_backward", rnd(ctx, dt, "6,7", -1, 1), "pad_width=[2, 1, 1, 2], mode=\"reflect\", shape=[3, 4]", half_tol[k]);
        CHECK1("pad_backward", rnd(ctx, dt, "6,7", -1, 1), "pad_width=[2, 1, 1, 2], mode=\"edge\", shape=[3, 4]", half_tol[k]);
    }
    kiln_context_free(ctx);
}

TEST(cuda_misc_ops_match_reference) {
    if (!cuda_check_gpu("cuda_misc_ops_match_reference")) return;
    kiln_context *ctx = kiln_context_new();
    const char *reds[] = {"none", "mean", "sum"};
    for (int r = 0; r < 3; r++) {
        char at[96];
        snprintf(at, sizeof at, "reduction=\"%s\", ignore_index=2", reds[r]);
        CHECK2("nll_loss", rnd(ctx, KILN_F32, "6,5", -3, 0), tv(ctx, KILN_I64, "6", (double[]){0, 2, 4, 1, 2, 3}), at, 1e-6);
        CHECK2("nll_loss", rnd(ctx, KILN_F16, "2,4,3", -3, 0), tv(ctx, KILN_I32, "2,3", (double[]){0, 3, 1, 2, 2, 1}), at, 2e-3);
        CHECK2("nll_loss", rnd(ctx, KILN_F64, "4", -3, 0), tv(ctx, KILN_I64, "", (double[]){3}), at, 1e-12);
        CHECK2("nll_loss", rnd(ctx, KILN_F32, "3,4", -3, 0), tv(ctx, KILN_I64, "3", (double[]){2, 2, 2}), at, 1e-6); /* all ignored */
    }
    CHECK2("nll_loss", rnd(ctx, KILN_F32, "600,7", -3, 0), rnd(ctx, KILN_I64, "600", 0, 7), "ignore_index=3", 1e-6); /* many targets */
    CHECK0("full", "shape=[3, 5], value=2.5", 0);
    CHECK0("full", "shape=[4], value=-3.0, dtype=i32", 0);
    CHECK0("full", "shape=[2, 2], value=1.0, dtype=bool", 0);
    CHECK0("full", "shape=[1000], value=0.0, dtype=bf16", 0);
    CHECK0("arange", "start=2.0, stop=20.0, step=3.0", 0);
    CHECK0("arange", "start=0.5, stop=-2.0, step=-0.25", 1e-7);
    CHECK0("arange", "stop=7.0, dtype=f16", 0);
    CHECK1("cumsum", rnd(ctx, KILN_F32, "3,5", -1, 1), "axis=1", 1e-6);
    CHECK1("cumsum", rnd(ctx, KILN_F32, "4,3,2", -1, 1), "axis=1, exclusive=true, reverse=true", 1e-6);
    CHECK1("cumsum", rnd(ctx, KILN_I32, "4,3", -50, 50), "axis=0", 0);
    CHECK1("cumsum", rnd(ctx, KILN_BOOL, "6", 0, 2), "axis=0, reverse=true", 0);
    CHECK1("argmax", tv(ctx, KILN_F32, "2,4", (double[]){1, 3, 3, 0, NAN, 2, NAN, 9}), "axis=1", 0);
    CHECK1("argmin", tv(ctx, KILN_F32, "2,4", (double[]){1, 3, 0, 0, 5, 2, 7, 2}), "axis=0, keepdims=true", 0);
    CHECK1("argmax", rnd(ctx, KILN_I8, "3,700", -120, 120), "axis=1", 0);
    CHECK1("argmin", rnd(ctx, KILN_BF16, "5,4,3", -1, 1), NULL, 0);
    CHECK1("argmax", rnd(ctx, KILN_I64, "1000,3", -5, 5), "axis=0", 0); /* many ties */
    /* adaptive average pooling: ResNet's global pool, and uneven, overlapping windows (5 -> 3, 9 -> 4, 8 -> 3) */
    CHECK1("adaptive_avg_pool2d", rnd(ctx, KILN_F32, "4,6,7,7", -1, 1), "output_size=[1, 1]", 1e-6);
    CHECK1("adaptive_avg_pool2d", rnd(ctx, KILN_F32, "2,3,5,7", -1, 1), "output_size=[3, 2]", 1e-6);
    CHECK1("adaptive_avg_pool2d", rnd(ctx, KILN_BF16, "1,3,9,4", -1, 1), "output_size=[4, 4]", 1e-2);
    CHECK1("adaptive_avg_pool2d_backward", rnd(ctx, KILN_F32, "4,6,1,1", -1, 1), "output_size=[1, 1], input_size=[7, 7]", 1e-6);
    CHECK1("adaptive_avg_pool2d_backward", rnd(ctx, KILN_F32, "2,3,3,2", -1, 1), "output_size=[3, 2], input_size=[5, 7]", 1e-6);
    CHECK1("adaptive_avg_pool2d_backward", rnd(ctx, KILN_F16, "1,3,2,3", -1, 1), "output_size=[2, 3], input_size=[7, 8]", 2e-3);
    kiln_context_free(ctx);
}

/* matmul cases: operand shapes and attributes. */
static const struct { const char *a, *b, *attrs; } mm_cases[] = {
    {"5,7", "7,3", NULL},
    {"7,5", "7,3", "transpose_a=true"},
    {"5,7", "3,7", "transpose_b=true"},
    {"7,5", "3,7", "transpose_a=true, transpose_b=true"},
    {"7", "7,3", NULL},
    {"5,7", "7", NULL},
    {"7", "7", NULL},
    {"2,3,5,7", "1,3,7,4", NULL},                          /* a broadcast batch dim of b */
    {"2,1,5,7", "1,3,4,7", "transpose_b=true"},            /* batch dims broadcast both ways: a loop */
    {"3,1,7,5", "3,2,4,7", "transpose_a=true, transpose_b=true"},
    {"4,5,7", "7,3", NULL},                                /* a 2-D weight: folded into m */
    {"4,7,5", "7,3", "transpose_a=true"},                  /* not foldable: stride-0 batch of b */
    {"5,7", "2,7,3", NULL},                                /* stride-0 batch of a */
    {"2,4,16,8", "2,4,16,8", "transpose_b=true"},          /* attention scores */
    {"2,0,7", "2,7,3", NULL},
    {"5,0", "0,3", NULL},
    {"64,96", "96,80", NULL},
};

TEST(cuda_matmul_matches_reference) {
    if (!cuda_check_gpu("cuda_matmul_matches_reference")) return;
    kiln_context *ctx = kiln_context_new();
    bool tf32 = kiln_cuda_tf32();
    kiln_dtype dts[] = {KILN_F32, KILN_F32, KILN_F16, KILN_BF16};
    double tols[] = {1e-5, 5e-3, 1e-2, 3e-2};
    for (int k = 0; k < 4; k++) {
        kiln_cuda_set_tf32(k == 1); /* f32 exact, then with TF32 tensor cores */
        for (size_t i = 0; i < sizeof mm_cases / sizeof mm_cases[0]; i++)
            CHECK2("matmul", rnd(ctx, dts[k], mm_cases[i].a, -1, 1), rnd(ctx, dts[k], mm_cases[i].b, -1, 1), mm_cases[i].attrs, tols[k]);
        CHECK2("batch_matmul", rnd(ctx, dts[k], "3,5,7", -1, 1), rnd(ctx, dts[k], "3,4,7", -1, 1), "transpose_b=true", tols[k]);
        CHECK3("dense", rnd(ctx, dts[k], "2,3,24", -1, 1), rnd(ctx, dts[k], "40,24", -1, 1), rnd(ctx, dts[k], "40", -1, 1), NULL, tols[k]);
        CHECK2("dense", rnd(ctx, dts[k], "6,24", -1, 1), rnd(ctx, dts[k], "10,24", -1, 1), NULL, tols[k]);
    }
    kiln_cuda_set_tf32(tf32);
    kiln_context_free(ctx);
}

TEST(cuda_dialects_are_picked) {
    if (!cuda_check_gpu("cuda_dialects_are_picked")) return;
    kiln_context *ctx = kiln_context_new();
    kiln_dialect_id both[2] = {KILN_DIALECT_CUDA, KILN_DIALECT_CUBLASLT}, cpu = KILN_DIALECT_BLAS;
    kiln_module *m;
    kiln_node *n = one_node(ctx, "%a: f32[4, 8], %b: f32[8, 3]", "matmul(%a, %b)", &m);
    const kiln_dialect_impl *impl = n ? kiln_dialect_pick(n, 2, both) : NULL;
    CHECK(impl && impl->dialect == KILN_DIALECT_CUBLASLT);
    CHECK(!n || !kiln_dialect_pick(n, 1, both)); /* cuda alone has no matmul */
    CHECK(!n || !kiln_dialect_pick(n, 1, &cpu) || kiln_dialect_pick(n, 1, &cpu)->dialect == KILN_DIALECT_BLAS);
    kiln_module_free(m);
    n = one_node(ctx, "%x: f32[4, 8], %i: i64[3]", "take(%x, %i, axis=0)", &m);
    impl = n ? kiln_dialect_pick(n, 2, both) : NULL;
    CHECK(impl && impl->dialect == KILN_DIALECT_CUDA);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
