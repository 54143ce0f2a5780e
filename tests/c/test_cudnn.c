/* test_cudnn.c — the cuDNN part of the CUDA backend and the "cudnn" dialect: without a GPU, the
 * library and its table load (or the test says why not) and supports() decides from shapes; on
 * a GPU, every op through cuDNN on device buffers against the reference kernels on the host, and
 * batch-norm backward through the table against the formula. */
#include "backend/backend_dnn.h"
#include "cuda_check.h"
#include <stdlib.h>

/* ---- without a GPU ---------------------------------------------------------------------------- */
TEST(cudnn_library_loads_or_skips) {
    char why[512] = "", version[64] = "";
    CHECK_STR(kiln_dialect_name(KILN_DIALECT_CUDNN), "cudnn");
    if (!kiln_dialect_available(KILN_DIALECT_CUDNN, why, sizeof why)) CHECK(why[0] != '\0'); /* a reason is given */
    const kiln_backend_dnn *dnn = kiln_cuda_dnn_nogpu(why, sizeof why);
    if (!dnn) {
        printf("  skip: cudnn_library_loads_or_skips: %s\n", why);
        CHECK(why[0] != '\0');
        return;
    }
    /* every entry point resolved (init succeeded) and the version is the one built against */
    CHECK(dnn->version(version, sizeof version) == 0);
    CHECK(strncmp(version, "cuDNN 9.", 8) == 0);
    CHECK(dnn->last_error() != NULL);
    /* the loader returns the same table each time */
    CHECK(kiln_cuda_dnn_nogpu(NULL, 0) == dnn);
}

/* Bad descriptors fail with a message naming the call before any device work. */
TEST(cudnn_rejects_bad_descriptors) {
    char why[512] = "";
    const kiln_backend_dnn *dnn = kiln_cuda_dnn_nogpu(why, sizeof why);
    if (!dnn) {
        printf("  skip: cudnn_rejects_bad_descriptors: %s\n", why);
        return;
    }
    kiln_dnn_conv c = {.dtype = KILN_F32, .n = 1, .c = 3, .h = 8, .w = 8, .k = 4, .r = 3, .s = 3, .oh = 7, .ow = 6,
                       .stride = {1, 1}, .pad = {0, 0}, .dil = {1, 1}, .groups = 1};
    CHECK(dnn->conv_fwd(0, &c, NULL, NULL, NULL) == -1);
    CHECK(strstr(dnn->last_error(), "conv2d forward f32 x[1, 3, 8, 8]") && strstr(dnn->last_error(), "must be 6 x 6"));
    c.oh = c.ow = 6, c.groups = 2;
    CHECK(dnn->conv_bwd_data(0, &c, NULL, NULL, NULL) == -1);
    CHECK(strstr(dnn->last_error(), "groups must divide") != NULL);
    kiln_dnn_pool p = {.dtype = KILN_F64, .mode = KILN_DNN_POOL_MAX, .n = 1, .c = 1, .h = 4, .w = 4, .oh = 2, .ow = 2,
                       .kernel = {2, 2}, .stride = {2, 2}};
    CHECK(dnn->pool_fwd(0, &p, NULL, NULL) == -1);
    CHECK(strstr(dnn->last_error(), "dtype must be f32 or f16") != NULL);
    kiln_dnn_bn b = {.dtype = KILN_F32, .n = 1, .c = 4, .h = 1, .w = 1, .eps = 1e-5};
    CHECK(dnn->bn_train_fwd(0, &b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) == -1);
    CHECK(strstr(dnn->last_error(), "at least 2 values per channel") != NULL);
}

/* The first node of "def @f(PARAMS) { let %y = CALL return %y }" (module in *m). */
static kiln_node *one_node(kiln_context *ctx, const char *params, const char *call, kiln_module **m) {
    char text[1024];
    snprintf(text, sizeof text, "def @f(%s) {\n let %%y = %s\n return %%y\n}\n", params, call);
    *m = kiln_module_parse(ctx, text, "cudnn.kir");
    if (!*m) test_fail(__FILE__, __LINE__, "parse %s: %s", call, kiln_error_message(ctx));
    return *m ? kiln_module_function(*m, "f")->body->first : NULL;
}

/* The cudnn implementation of op, or NULL. */
static const kiln_dialect_impl *cudnn_impl(kiln_op op) {
    for (int i = 0; kiln_cudnn_impls[i]; i++)
        if (kiln_cudnn_impls[i]->op == op) return kiln_cudnn_impls[i];
    return NULL;
}

static void check_supports(int line, const char *params, const char *call, bool want) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m;
    kiln_node *n = one_node(ctx, params, call, &m);
    const kiln_dialect_impl *impl = n ? cudnn_impl(n->op) : NULL;
    if (n && (impl && impl->supports(n)) != want) test_fail(__FILE__, line, "cudnn %s %s", want ? "refuses" : "claims", call);
    kiln_module_free(m);
    kiln_context_free(ctx);
}
#define SUPPORTS(params, call) check_supports(__LINE__, (params), (call), true)
#define REFUSES(params, call) check_supports(__LINE__, (params), (call), false)

TEST(cudnn_supports_from_shapes) {
    SUPPORTS("%x: f32[2, 3, 9, 8], %w: f32[4, 3, 3, 3]", "conv2d(%x, %w)");
    SUPPORTS("%x: bf16[2, 3, 224, 224], %w: bf16[64, 3, 7, 7]", "conv2d(%x, %w, stride=[2, 2], padding=[3, 3])");
    SUPPORTS("%x: f16[1, 6, 7, 7], %w: f16[6, 1, 3, 3]", "conv2d(%x, %w, padding=[1, 1], groups=6)");
    SUPPORTS("%x: f32[3, 4, 4, 3], %w: f32[4, 3, 3, 2]", "conv2d_transpose(%x, %w, stride=[2, 3], padding=[1, 2], output_padding=[1, 2])");
    SUPPORTS("%x: f32[2, 3, 9, 8], %dy: f32[2, 4, 7, 6]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3])");
    /* asymmetric padding that changes the size, a dy shorter than conv2d's output, f64, empty */
    REFUSES("%x: f32[2, 4, 10, 9], %w: f32[6, 2, 3, 3]", "conv2d(%x, %w, padding=[2, 1, 0, 1], dilation=[2, 1], groups=2)");
    REFUSES("%x: f32[2, 3, 9, 9], %dy: f32[2, 4, 3, 4]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], stride=[2, 2])");
    REFUSES("%x: f64[2, 3, 9, 8], %w: f64[4, 3, 3, 3]", "conv2d(%x, %w)");
    REFUSES("%x: f32[0, 2, 5, 5], %w: f32[3, 2, 3, 3]", "conv2d(%x, %w)");
    SUPPORTS("%x: f32[2, 3, 9, 9]", "max_pool2d(%x, kernel=[3, 3], stride=[2, 2], padding=[1, 1])");
    SUPPORTS("%x: f16[2, 3, 8, 8]", "avg_pool2d(%x, kernel=[2, 2])");
    SUPPORTS("%x: f32[2, 3, 9, 9], %dy: f32[2, 3, 5, 5]", "max_pool2d_backward(%x, %dy, kernel=[3, 3], stride=[2, 2], padding=[1, 1])");
    SUPPORTS("%dy: f32[2, 3, 5, 5]", "avg_pool2d_backward(%dy, kernel=[3, 3], stride=[2, 2], padding=[1, 1], input_size=[9, 9])");
    REFUSES("%x: f32[2, 3, 9, 9]", "max_pool2d(%x, kernel=[3, 3], dilation=[2, 2])");
    REFUSES("%x: f32[1, 1, 8, 8]", "max_pool2d(%x, kernel=[3, 3], stride=[2, 2], ceil_mode=true)"); /* 4 x 4, cuDNN 3 x 3 */
    REFUSES("%x: i32[2, 3, 8, 8]", "max_pool2d(%x, kernel=[2, 2])");
    REFUSES("%x: bf16[2, 3, 8, 8]", "max_pool2d(%x, kernel=[2, 2])");
    /* counted padding missing at the end: cuDNN would count it */
    REFUSES("%x: f32[1, 1, 6, 6]", "avg_pool2d(%x, kernel=[3, 3], stride=[3, 3], padding=[1, 1, 0, 0])");
    SUPPORTS("%x: f32[1, 1, 6, 6]", "avg_pool2d(%x, kernel=[3, 3], stride=[3, 3], padding=[1, 1, 0, 0], count_include_pad=false)");
    SUPPORTS("%x: f32[4, 3, 5, 5], %g: f32[3], %b: f32[3]", "batch_norm_train(%x, %g, %b)");
    SUPPORTS("%x: f32[8, 5], %g: f32[5], %b: f32[5]", "batch_norm_train(%x, %g, %b)");
    REFUSES("%x: f16[8, 5], %g: f16[5], %b: f16[5]", "batch_norm_train(%x, %g, %b)"); /* cuDNN's vectors are f32 */
    SUPPORTS("%x: f32[2, 7, 3], %g: f32[3], %b: f32[3]", "batch_norm_train(%x, %g, %b, axis=-1)");
    REFUSES("%x: f32[1, 3], %g: f32[3], %b: f32[3]", "batch_norm_train(%x, %g, %b)"); /* one value per channel */
    SUPPORTS("%x: f32[1, 3], %g: f32[3], %b: f32[3], %m: f32[3], %v: f32[3]", "batch_norm_infer(%x, %g, %b, %m, %v)");
    REFUSES("%x: f64[4, 3], %g: f64[3], %b: f64[3]", "batch_norm_train(%x, %g, %b)");
}

TEST(cudnn_kernel_without_exec_context_fails) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m;
    kiln_node *n = one_node(ctx, "%x: f32[1, 1, 4, 4]", "max_pool2d(%x, kernel=[2, 2])", &m);
    kiln_tensor *x = kiln_tensor_new(ctx, KILN_F32, 4, (int64_t[]){1, 1, 4, 4}), *y = kiln_tensor_new(ctx, KILN_F32, 4, (int64_t[]){1, 1, 2, 2});
    const kiln_dialect_impl *impl = n ? cudnn_impl(n->op) : NULL;
    CHECK(impl != NULL);
    if (impl && x && y) cuda_check_needs_exec(__FILE__, __LINE__, ctx, impl, n, x, y);
    kiln_tensor_release(x);
    kiln_tensor_release(y);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

/* ---- on a GPU ------------------------------------------------------------------------------------ */
/* The backend and cuDNN with a GPU, or NULL after printing why `test` skips. */
static const kiln_backend *gpu(const char *test, const kiln_backend_dnn **dnn) {
    char why[512] = "";
    const kiln_backend *be = kiln_cuda_backend(why, sizeof why);
    *dnn = be ? kiln_cuda_dnn(why, sizeof why) : NULL;
    if (!*dnn) printf("  skip: %s: %s\n", test, why);
    return *dnn ? be : NULL;
}

/* A tensor value of `shape` ("2,3") with elements from a fixed sequence: uniform in [lo, hi), or
 * (distinct) a permutation of lo + (hi - lo) * k / numel, so that pool windows hold no ties. */
static kiln_value rnd(kiln_context *ctx, kiln_dtype dt, const char *shape, double lo, double hi, bool distinct) {
    static uint64_t seed = 0x2545f4914f6cdd1du;
    int64_t numel = 1;
    for (const char *s = shape; *s;) {
        char *end;
        numel *= strtoll(s, &end, 10);
        s = *end ? end + 1 : end;
    }
    double *v = malloc(sizeof(double) * (size_t)(numel ? numel : 1));
    for (int64_t i = 0; v && i < numel; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        v[i] = distinct ? lo + (hi - lo) * (double)((i * 7919) % numel) / (double)numel
                        : lo + (hi - lo) * (double)(seed >> 11) / 9007199254740992.0;
    }
    kiln_value t = v ? tv(ctx, dt, shape, v) : (kiln_value){.kind = KILN_VALUE_NONE};
    free(v);
    return t;
}

/* op through the cudnn dialect on the device against the reference, within tol of each result's
 * largest magnitude. */
static void same_as_ref(int line, kiln_context *ctx, const char *op, int n_in, const kiln_value *in, const char *attrs,
                        double tol) {
    cuda_check_op(__FILE__, line, ctx, KILN_DIALECT_CUDNN, op, n_in, in, attrs, tol, true);
}

/* Convolution cases: x shape, w shape (dy shape for the weight gradient) and attributes. */
static const struct { const char *x, *w, *attrs; } conv_cases[] = {
    {"2,3,9,8", "4,3,3,3", NULL},
    {"3,3,9,8", "4,3,3,2", "stride=[2, 3], padding=[1, 2]"},
    {"2,4,11,10", "6,2,3,3", "dilation=[2, 3], padding=[2, 3], groups=2"},
    {"2,8,7,7", "8,1,3,3", "padding=[1, 1], groups=8"},             /* depthwise */
    {"2,16,8,8", "32,16,1,1", NULL},                                /* 1x1 */
    {"2,3,32,32", "16,3,7,7", "stride=[2, 2], padding=[3, 3]"},      /* ResNet stem */
    {"2,8,14,14", "16,8,3,3", "stride=[2, 2], padding=[1, 1]"},
};

/* conv2d, conv2d_transpose and conv2d_backward_weight of each case in dtype dt within tol. */
static void conv_family(int line, kiln_dtype dt, double tol) {
    kiln_context *ctx = kiln_context_new();
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const char *attrs = conv_cases[i].attrs ? conv_cases[i].attrs : "";
        kiln_value x = rnd(ctx, dt, conv_cases[i].x, -1, 1, false), w = rnd(ctx, dt, conv_cases[i].w, -1, 1, false), y = {0};
        if (kiln_op_run(ctx, "conv2d", 2, (kiln_value[]){x, w}, attrs, &y) != KILN_OK) {
            test_fail(__FILE__, line, "conv2d case %zu: %s", i, kiln_error_message(ctx));
            release_all(2, (kiln_value[]){x, w});
            continue;
        }
        char shape[128], bw[256];
        const int64_t *ys = y.tensor->shape, *ws = w.tensor->shape;
        snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld", (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3]);
        kiln_value dy = rnd(ctx, dt, shape, -1, 1, false);
        snprintf(bw, sizeof bw, "kernel=[%lld, %lld]%s%s", (long long)ws[2], (long long)ws[3], conv_cases[i].attrs ? ", " : "", attrs);
        same_as_ref(line, ctx, "conv2d", 2, (kiln_value[]){x, w}, attrs, tol);
        /* conv2d's data gradient (without output_padding: rows a stride dropped stay dropped) */
        same_as_ref(line, ctx, "conv2d_transpose", 2, (kiln_value[]){dy, w}, attrs, tol);
        same_as_ref(line, ctx, "conv2d_backward_weight", 2, (kiln_value[]){x, dy}, bw, tol);
        release_all(4, (kiln_value[]){x, w, y, dy});
    }
    kiln_context_free(ctx);
}

TEST(cudnn_conv_matches_reference) {
    const kiln_backend_dnn *dnn;
    if (!gpu("cudnn_conv_matches_reference", &dnn)) return;
    bool was = kiln_cuda_tf32();
    kiln_cuda_set_tf32(false);
    conv_family(__LINE__, KILN_F32, 1e-4);
    kiln_cuda_set_tf32(true);
    conv_family(__LINE__, KILN_F32, 5e-3);
    kiln_cuda_set_tf32(was);
    conv_family(__LINE__, KILN_F16, 5e-3);
    conv_family(__LINE__, KILN_BF16, 3e-2);
}

/* Pool cases: x shape and attributes (max and avg take the same windows). */
static const struct { const char *x, *attrs; bool avg_only; } pool_cases[] = {
    {"2,3,9,9", "kernel=[3, 3], stride=[2, 2], padding=[1, 1]", false}, /* ResNet's max pool */
    {"2,3,8,8", "kernel=[2, 2]", false},
    {"1,4,7,6", "kernel=[3, 2], stride=[2, 1], padding=[1, 1]", false},
    {"2,3,9,9", "kernel=[3, 3], stride=[2, 2], padding=[1, 1], count_include_pad=false", true},
    {"2,16,7,7", "kernel=[7, 7]", false}, /* global average */
};

static void pool_family(int line, kiln_dtype dt, double tol) {
    kiln_context *ctx = kiln_context_new();
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        const char *attrs = pool_cases[i].attrs;
        kiln_value x = rnd(ctx, dt, pool_cases[i].x, -1, 1, true), y = {0};
        for (int avg = pool_cases[i].avg_only; avg < 2; avg++) {
            const char *fwd = avg ? "avg_pool2d" : "max_pool2d";
            same_as_ref(line, ctx, fwd, 1, &x, attrs, tol);
            if (kiln_op_run(ctx, fwd, 1, &x, attrs, &y) != KILN_OK) {
                test_fail(__FILE__, line, "%s case %zu: %s", fwd, i, kiln_error_message(ctx));
                continue;
            }
            const int64_t *ys = y.tensor->shape;
            char shape[128], bw[256];
            snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld", (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3]);
            kiln_value dy = rnd(ctx, dt, shape, -1, 1, false);
            if (avg) {
                snprintf(bw, sizeof bw, "%s, input_size=[%lld, %lld]", attrs, (long long)x.tensor->shape[2], (long long)x.tensor->shape[3]);
                same_as_ref(line, ctx, "avg_pool2d_backward", 1, &dy, bw, tol);
            } else {
                same_as_ref(line, ctx, "max_pool2d_backward", 2, (kiln_value[]){x, dy}, attrs, tol);
            }
            release_all(2, (kiln_value[]){y, dy});
        }
        kiln_value_release(x);
    }
    kiln_context_free(ctx);
}

TEST(cudnn_pool_matches_reference) {
    const kiln_backend_dnn *dnn;
    if (!gpu("cudnn_pool_matches_reference", &dnn)) return;
    pool_family(__LINE__, KILN_F32, 1e-5);
    pool_family(__LINE__, KILN_F16, 2e-3);
}

TEST(cudnn_batch_norm_matches_reference) {
    const kiln_backend_dnn *dnn;
    if (!gpu("cudnn_batch_norm_matches_reference", &dnn)) return;
    static const struct { const char *x, *c, *attrs; } cases[] = {
        {"4,3,5,5", "3", NULL}, {"8,5", "5", NULL}, {"2,7,3", "3", "axis=-1"}, {"2,6,4,4", "6", "eps=0.1"}};
    kiln_context *ctx = kiln_context_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_value in[5] = {rnd(ctx, KILN_F32, cases[i].x, -1, 2, false), rnd(ctx, KILN_F32, cases[i].c, 0.5, 1.5, false),
                            rnd(ctx, KILN_F32, cases[i].c, -0.5, 0.5, false), rnd(ctx, KILN_F32, cases[i].c, -0.2, 0.2, false),
                            rnd(ctx, KILN_F32, cases[i].c, 0.5, 1.5, false)};
        same_as_ref(__LINE__, ctx, "batch_norm_train", 3, in, cases[i].attrs, 1e-4);
        same_as_ref(__LINE__, ctx, "batch_norm_infer", 5, in, cases[i].attrs, 1e-4);
        release_all(5, in);
    }
    kiln_context_free(ctx);
}

/* bn_train_fwd's saved statistics and bn_bwd (with and without them) through the table, f32
 * [n, c, h, w], against the formulas in double:
 *   invstd = 1 / sqrt(var + eps), xhat = (x - mean) * invstd, dbeta = sum dy,
 *   dgamma = sum dy * xhat, dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma). */
TEST(cudnn_batch_norm_backward_matches_formula) {
    const kiln_backend_dnn *dnn;
    const kiln_backend *be = gpu("cudnn_batch_norm_backward_matches_formula", &dnn);
    if (!be) return;
    enum { N = 3, C = 4, H = 5, W = 6, M = N * H * W, X = N * C * H * W };
    const double eps = 1e-5;
    static float x[X], dy[X], gamma[C], beta[C], got_dx[X], got_c[4][C];
    for (int i = 0; i < X; i++) x[i] = (float)sin(i * 0.37) * 2 + 0.5f, dy[i] = (float)cos(i * 0.11);
    for (int c = 0; c < C; c++) gamma[c] = 0.5f + 0.25f * (float)c, beta[c] = 0.1f * (float)c;
    double mean[C] = {0}, var[C] = {0}, invstd[C], dbeta[C] = {0}, dgamma[C] = {0};
    for (int i = 0; i < X; i++) mean[i / (H * W) % C] += x[i] / (double)M;
    for (int i = 0; i < X; i++) var[i / (H * W) % C] += (x[i] - mean[i / (H * W) % C]) * (x[i] - mean[i / (H * W) % C]) / M;
    for (int c = 0; c < C; c++) invstd[c] = 1 / sqrt(var[c] + eps);
    for (int i = 0; i < X; i++) {
        int c = i / (H * W) % C;
        dbeta[c] += dy[i];
        dgamma[c] += dy[i] * (x[i] - mean[c]) * invstd[c];
    }
    /* device buffers: x, dy, y, dx, gamma, beta, mean, var, save_mean, save_invstd, dgamma, dbeta */
    size_t big = sizeof x, small = sizeof gamma;
    void *b[12] = {NULL};
    bool ok = true;
    for (int i = 0; i < 12; i++) ok = ok && (b[i] = be->alloc(0, i < 4 ? big : small)) != NULL;
    ok = ok && !be->copy_h2d(0, b[0], x, big) && !be->copy_h2d(0, b[1], dy, big) && !be->copy_h2d(0, b[4], gamma, small) &&
         !be->copy_h2d(0, b[5], beta, small);
    kiln_dnn_bn desc = {.dtype = KILN_F32, .n = N, .c = C, .h = H, .w = W, .eps = eps};
    for (int saved = 1; ok && saved >= 0; saved--) {
        ok = !dnn->bn_train_fwd(0, &desc, b[0], b[4], b[5], b[2], b[6], b[7], b[8], b[9]) &&
             !dnn->bn_bwd(0, &desc, b[0], b[1], b[4], saved ? b[8] : NULL, saved ? b[9] : NULL, b[3], b[10], b[11]) &&
             !be->copy_d2h(0, got_dx, b[3], big) && !be->copy_d2h(0, got_c[0], b[6], small) &&
             !be->copy_d2h(0, got_c[1], b[9], small) && !be->copy_d2h(0, got_c[2], b[10], small) &&
             !be->copy_d2h(0, got_c[3], b[11], small);
        if (!ok) break;
        for (int c = 0; c < C; c++) {
            CHECK_NEAR(got_c[0][c], mean[c], 1e-5);
            CHECK_NEAR(got_c[1][c], invstd[c], 1e-4);
            CHECK_NEAR(got_c[2][c], dgamma[c], 1e-4);
            CHECK_NEAR(got_c[3][c], dbeta[c], 1e-4);
        }
        for (int i = 0; i < X; i++) {
            int c = i / (H * W) % C;
            double xhat = (x[i] - mean[c]) * invstd[c];
            CHECK_NEAR(got_dx[i], gamma[c] * invstd[c] / M * (M * dy[i] - dbeta[c] - xhat * dgamma[c]), 1e-4);
        }
    }
    if (!ok) test_fail(__FILE__, __LINE__, "batch-norm through the table: %s", dnn->last_error());
    for (int i = 0; i < 12; i++) be->free(0, b[i]);
}
