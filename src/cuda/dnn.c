/* dnn.c — cuDNN in the CUDA backend (the kiln_backend_dnn vtable, exported as kiln_cuda_dnn_entry):
 * conv2d forward / data gradient / filter gradient, max and average pooling, batch normalisation,
 * through cuDNN's descriptor API. libcudnn.so.9 is opened with dlopen at init; each device has
 * one handle on its stream, a grown workspace, and a table of convolution plans (descriptors and
 * the heuristic's algorithm) made once per distinct descriptor. */
#define _GNU_SOURCE /* dlinfo */
#include "backend/backend_dnn.h"
#include "cuda/cuda_internal.h"
#include <cudnn.h>
#include <dlfcn.h>
#include <limits.h> /* INT_MAX, PATH_MAX */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest workspace an algorithm may ask for; larger ones are passed over. */
#define DNN_WS_LIMIT ((size_t)512 << 20)

/* ---- the library ---------------------------------------------------------------------------- */
#define KILN_CUDNN_FUNCS(X)                                                                        \
    X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnGetLastErrorString) X(cudnnCreate) X(cudnnDestroy) X(cudnnSetStream) \
    X(cudnnCreateTensorDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnSetTensor4dDescriptor)  \
    X(cudnnCreateFilterDescriptor) X(cudnnDestroyFilterDescriptor) X(cudnnSetFilter4dDescriptor)  \
    X(cudnnCreateConvolutionDescriptor) X(cudnnDestroyConvolutionDescriptor)                      \
    X(cudnnSetConvolution2dDescriptor) X(cudnnSetConvolutionGroupCount) X(cudnnSetConvolutionMathType) \
    X(cudnnGetConvolutionForwardAlgorithm_v7) X(cudnnGetConvolutionBackwardDataAlgorithm_v7)      \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7) X(cudnnGetConvolutionForwardWorkspaceSize)   \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize) X(cudnnGetConvolutionBackwardFilterWorkspaceSize) \
    X(cudnnConvolutionForward) X(cudnnConvolutionBackwardData) X(cudnnConvolutionBackwardFilter)  \
    X(cudnnCreatePoolingDescriptor) X(cudnnDestroyPoolingDescriptor) X(cudnnSetPooling2dDescriptor) \
    X(cudnnPoolingForward) X(cudnnPoolingBackward) X(cudnnDeriveBNTensorDescriptor)               \
    X(cudnnBatchNormalizationForwardTraining) X(cudnnBatchNormalizationForwardInference)          \
    X(cudnnBatchNormalizationBackward) X(cudnnScaleTensor)

typedef struct { KILN_CUDNN_FUNCS(KILN_CU_MEMBER) } cudnn_api;
static cudnn_api dn;
static struct {
    pthread_once_t once;
    int status;
    char why[1024];
} dnnlib = {.once = PTHREAD_ONCE_INIT, .status = -1};

/* libcudnn.so.9 is a shim that dlopens its parts by name when first called and aborts the
 * process if one is missing. It finds them through its RUNPATH ($ORIGIN), which an interposed
 * dlopen (ASan's) defeats; so the parts are loaded here first, from beside the shim or the
 * loader's path, and the shim's dlopen by name then returns them. The first REQUIRED_PARTS hold
 * the functions kiln calls: without one, init fails instead (libcudnn_adv is never called). */
#define REQUIRED_PARTS 3
static int load_parts(void *shim) {
    static const char *const parts[] = {"libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9",
                                        "libcudnn_heuristic.so.9", "libcudnn_engines_runtime_compiled.so.9",
                                        "libcudnn_engines_precompiled.so.9"};
    char dir[PATH_MAX] = "", path[PATH_MAX + 64];
    if (dlinfo(shim, RTLD_DI_ORIGIN, dir)) dir[0] = 0;
    for (int i = 0; i < (int)(sizeof parts / sizeof parts[0]); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, parts[i]);
        /* kept for the process */
        if (!(dir[0] && dlopen(path, RTLD_LAZY | RTLD_LOCAL)) && !dlopen(parts[i], RTLD_LAZY | RTLD_LOCAL) && i < REQUIRED_PARTS)
            return kiln_cu_fail("cuDNN: %s not found beside libcudnn.so.9 (in %s) nor on the loader's path: %s", parts[i],
                                dir[0] ? dir : "?", dlerror());
    }
    return 0;
}

static int load_cudnn(void) {
    static const char *const names[] = {"libcudnn.so.9", "libcudnn.so"};
    void *h = kiln_cu_dlopen(names, 2, NULL, 0);
    if (!h || load_parts(h)) return -1;
    const char *lib = "libcudnn";
    void *sym;
    cudnn_api *tbl = &dn;
    KILN_CUDNN_FUNCS(KILN_CU_RESOLVE)
    size_t v = dn.cudnnGetVersion();
    if (v / 10000 != CUDNN_MAJOR)
        return kiln_cu_fail("cuDNN: the loaded library is version %zu.%zu.%zu; kiln was built for cuDNN %d", v / 10000,
                            v / 100 % 100, v % 100, CUDNN_MAJOR);
    return 0;
}

static void load_once(void) {
    dnnlib.status = load_cudnn();
    if (dnnlib.status) kiln_cu_save_error(dnnlib.why, sizeof dnnlib.why);
}

static int dnn_init(void) {
    pthread_once(&dnnlib.once, load_once);
    return dnnlib.status ? kiln_cu_fail("%s", dnnlib.why) : 0;
}

static int dnn_version(char *buf, size_t size) {
    if (dnn_init()) return -1;
    size_t v = dn.cudnnGetVersion();
    snprintf(buf, size, "cuDNN %zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
    return 0;
}

/* 0 if s is success, else -1 with "cuDNN: <what>: CUDNN_STATUS_... (cuDNN's last message)". */
static int dn_check(cudnnStatus_t s, const char *what, const char *step) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    char detail[512] = "";
    dn.cudnnGetLastErrorString(detail, sizeof detail);
    return kiln_cu_fail("cuDNN: %s: %s: %s%s%s", what, step, dn.cudnnGetErrorString(s), detail[0] ? " (" : "",
                        detail[0] ? detail : "");
}
/* The message names the failing call. */
#define DN_CALL(what, f, ...) dn_check(dn.f(__VA_ARGS__), (what), #f)

static cudnnDataType_t dn_type(kiln_dtype dt) {
    return dt == KILN_F16 ? CUDNN_DATA_HALF : dt == KILN_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* ---- devices: handle, workspace, plans (each device's state is used under its lock) -------- */
typedef struct conv_key {
    int64_t dir, dtype, tf32, n, c, h, w, k, r, s, oh, ow, stride[2], pad[2], dil[2], groups;
} conv_key;

typedef struct conv_plan {
    conv_key key;
    uint64_t hash;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int algo;            /* of the direction's algorithm enum */
    size_t ws_bytes;
} conv_plan;

typedef struct dnn_dev {
    pthread_mutex_t lock;
    cudnnHandle_t handle; /* NULL until the first call */
    void *ws;             /* from the backend's allocator */
    size_t ws_bytes;
    conv_plan **plans;
    size_t n_plans, cap_plans;
} dnn_dev;

static struct {
    pthread_mutex_t lock;
    int count;
    dnn_dev *devs;
} dnn_devs = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A call's device: context current, handle bound to the device's stream; returned LOCKED (the
 * caller unlocks with dev_leave). NULL with the reason. */
static dnn_dev *dev_enter(int dev, const char *what) {
    if (dnn_init()) return NULL;
    kiln_cu_device *cd = kiln_cu_enter(dev);
    if (!cd) return NULL;
    pthread_mutex_lock(&dnn_devs.lock);
    if (!dnn_devs.devs) {
        int n = kiln_cu_device_count();
        dnn_devs.devs = calloc((size_t)(n > 0 ? n : 1), sizeof *dnn_devs.devs);
        for (int i = 0; dnn_devs.devs && i < n; i++) pthread_mutex_init(&dnn_devs.devs[i].lock, NULL);
        if (dnn_devs.devs) dnn_devs.count = n;
    }
    dnn_dev *d = dev < dnn_devs.count ? &dnn_devs.devs[dev] : NULL;
    pthread_mutex_unlock(&dnn_devs.lock);
    if (!d) {
        kiln_cu_fail("cuDNN: %s: out of host memory for the device table", what);
        return NULL;
    }
    pthread_mutex_lock(&d->lock);
    if (!d->handle) { /* made once, on the device's one stream (cudaStream_t is CUstream) */
        cudnnHandle_t h = NULL;
        if (DN_CALL(what, cudnnCreate, &h) || DN_CALL(what, cudnnSetStream, h, (cudaStream_t)cd->stream)) {
            if (h) dn.cudnnDestroy(h);
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        d->handle = h;
    }
    return d;
}

static void dev_leave(dnn_dev *d) { pthread_mutex_unlock(&d->lock); }

/* At least `bytes` of device workspace (grown, never shrunk; work on the device's one stream
 * is ordered, so the old block may be freed at once). NULL with the reason; bytes 0 gives NULL
 * without error only when nothing was ever needed, so callers test `bytes && !p`. */
static void *workspace(dnn_dev *d, int dev, size_t bytes, const char *what) {
    if (bytes <= d->ws_bytes) return d->ws;
    void *p = kiln_cu_alloc(dev, bytes);
    if (!p) {
        char why[512];
        kiln_cu_save_error(why, sizeof why);
        kiln_cu_fail("cuDNN: %s: workspace of %zu bytes: %s", what, bytes, why);
        return NULL;
    }
    kiln_cu_free(dev, d->ws);
    d->ws = p;
    d->ws_bytes = bytes;
    return p;
}

/* ---- descriptors ---------------------------------------------------------------------------- */
static bool fits_int(int n, const int64_t *v) {
    for (int i = 0; i < n; i++)
        if (v[i] < 0 || v[i] > INT_MAX) return false;
    return true;
}

static int tensor_desc(cudnnTensorDescriptor_t *t, kiln_dtype dt, int64_t n, int64_t c, int64_t h, int64_t w,
                       const char *what) {
    if (DN_CALL(what, cudnnCreateTensorDescriptor, t)) {
        *t = NULL;
        return -1;
    }
    return DN_CALL(what, cudnnSetTensor4dDescriptor, *t, CUDNN_TENSOR_NCHW, dn_type(dt), (int)n, (int)c, (int)h, (int)w);
}

static void tensor_free(cudnnTensorDescriptor_t t) {
    if (t) dn.cudnnDestroyTensorDescriptor(t);
}

static const char *dtype_name(kiln_dtype dt) {
    return dt == KILN_F32 ? "f32" : dt == KILN_F16 ? "f16" : dt == KILN_BF16 ? "bf16" : "unsupported dtype";
}

/* The output size of a window along one axis (cuDNN's: the same padding on both sides). */
static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
    int64_t span = in + 2 * pad - ((k - 1) * dil + 1);
    return span < 0 || stride < 1 ? -1 : span / stride + 1;
}

/* ---- convolutions --------------------------------------------------------------------------- */
enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER };
static const char *const conv_dir_names[] = {"conv2d forward", "conv2d data gradient", "conv2d filter gradient"};

static void conv_describe(int dir, const kiln_dnn_conv *c, char *buf, size_t size) {
    snprintf(buf, size,
             "%s %s%s x[%lld, %lld, %lld, %lld] w[%lld, %lld, %lld, %lld] y[%lld, %lld, %lld, %lld] stride [%lld, %lld] "
             "pad [%lld, %lld] dilation [%lld, %lld] groups %lld",
             conv_dir_names[dir], dtype_name(c->dtype), c->tf32 ? " (tf32)" : "", (long long)c->n, (long long)c->c,
             (long long)c->h, (long long)c->w, (long long)c->k, (long long)(c->groups > 0 ? c->c / c->groups : 0),
             (long long)c->r, (long long)c->s, (long long)c->n, (long long)c->k, (long long)c->oh, (long long)c->ow,
             (long long)c->stride[0], (long long)c->stride[1], (long long)c->pad[0], (long long)c->pad[1],
             (long long)c->dil[0], (long long)c->dil[1], (long long)c->groups);
}

static int conv_validate(const kiln_dnn_conv *c, const char *what) {
    if (c->dtype != KILN_F32 && c->dtype != KILN_F16 && c->dtype != KILN_BF16)
        return kiln_cu_fail("cuDNN: %s: dtype must be f32, f16 or bf16", what);
    int64_t dims[] = {c->n, c->c, c->h, c->w, c->k, c->r, c->s, c->oh, c->ow, c->stride[0], c->stride[1],
                      c->dil[0], c->dil[1], c->groups};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] < 1 || dims[i] > INT_MAX) return kiln_cu_fail("cuDNN: %s: sizes, strides, dilations and groups must be in [1, 2^31)", what);
    if (!fits_int(2, c->pad)) return kiln_cu_fail("cuDNN: %s: padding must be in [0, 2^31)", what);
    if (c->c % c->groups || c->k % c->groups)
        return kiln_cu_fail("cuDNN: %s: groups must divide the input and output channels", what);
    int64_t oh = window_out(c->h, c->r, c->stride[0], c->pad[0], c->dil[0]);
    int64_t ow = window_out(c->w, c->s, c->stride[1], c->pad[1], c->dil[1]);
    if (oh != c->oh || ow != c->ow)
        return kiln_cu_fail("cuDNN: %s: the output must be %lld x %lld for this input, kernel and window", what,
                            (long long)oh, (long long)ow);
    return 0;
}

static void plan_destroy(conv_plan *p) {
    tensor_free(p->xd);
    tensor_free(p->yd);
    if (p->wd) dn.cudnnDestroyFilterDescriptor(p->wd);
    if (p->cd) dn.cudnnDestroyConvolutionDescriptor(p->cd);
    free(p);
}

/* One heuristic result of any direction. */
typedef struct algo_perf {
    int algo;
    cudnnStatus_t status;
    cudnnMathType_t math;
} algo_perf;

#define PERF_COPY(arr, n, out)                                                                     \
    for (int i_ = 0; i_ < (n); i_++) (out)[i_] = (algo_perf){(int)(arr)[i_].algo, (arr)[i_].status, (arr)[i_].mathType};

/* cuDNN's heuristic ranking of the direction's algorithms into out (at most 8); the count. */
static int conv_heuristics(cudnnHandle_t h, const conv_plan *p, algo_perf *out, const char *what) {
    int n = 0, rc;
    switch (p->key.dir) {
    case CONV_FWD: {
        cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        rc = DN_CALL(what, cudnnGetConvolutionForwardAlgorithm_v7, h, p->xd, p->wd, p->cd, p->yd,
                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, r);
        if (!rc) PERF_COPY(r, n, out)
        break;
    }
    case CONV_BWD_DATA: {
        cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        rc = DN_CALL(what, cudnnGetConvolutionBackwardDataAlgorithm_v7, h, p->wd, p->yd, p->cd, p->xd,
                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, r);
        if (!rc) PERF_COPY(r, n, out)
        break;
    }
    default: {
        cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        rc = DN_CALL(what, cudnnGetConvolutionBackwardFilterAlgorithm_v7, h, p->xd, p->yd, p->cd, p->wd,
                     CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, r);
        if (!rc) PERF_COPY(r, n, out)
        break;
    }
    }
    return rc ? -1 : n;
}

/* The workspace p's algorithm needs (cudnnStatus_t; size in *bytes). */
static cudnnStatus_t conv_ws_size(cudnnHandle_t h, const conv_plan *p, int algo, size_t *bytes) {
    switch (p->key.dir) {
    case CONV_FWD:
        return dn.cudnnGetConvolutionForwardWorkspaceSize(h, p->xd, p->wd, p->cd, p->yd, (cudnnConvolutionFwdAlgo_t)algo, bytes);
    case CONV_BWD_DATA:
        return dn.cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->wd, p->yd, p->cd, p->xd, (cudnnConvolutionBwdDataAlgo_t)algo,
                                                               bytes);
    default:
        return dn.cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->xd, p->yd, p->cd, p->wd,
                                                                 (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
    }
}

/* Descriptors of p and the first algorithm of the heuristic that cuDNN supports here within
 * DNN_WS_LIMIT. Exact f32 (no tf32) keeps FMA math and skips tensor-op algorithms; f32 with tf32
 * and the 16-bit types take the math type the heuristic names. */
static int plan_fill(cudnnHandle_t h, conv_plan *p, const kiln_dnn_conv *c, const char *what) {
    bool exact = c->dtype == KILN_F32 && !c->tf32;
    if (tensor_desc(&p->xd, c->dtype, c->n, c->c, c->h, c->w, what) ||
        tensor_desc(&p->yd, c->dtype, c->n, c->k, c->oh, c->ow, what))
        return -1;
    if (DN_CALL(what, cudnnCreateFilterDescriptor, &p->wd) || DN_CALL(what, cudnnCreateConvolutionDescriptor, &p->cd))
        return -1;
    cudnnMathType_t base = exact ? CUDNN_FMA_MATH : c->dtype == KILN_F32 ? CUDNN_DEFAULT_MATH : CUDNN_TENSOR_OP_MATH;
    if (DN_CALL(what, cudnnSetFilter4dDescriptor, p->wd, dn_type(c->dtype), CUDNN_TENSOR_NCHW, (int)c->k,
                (int)(c->c / c->groups), (int)c->r, (int)c->s) ||
        DN_CALL(what, cudnnSetConvolution2dDescriptor, p->cd, (int)c->pad[0], (int)c->pad[1], (int)c->stride[0],
                (int)c->stride[1], (int)c->dil[0], (int)c->dil[1], CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ||
        DN_CALL(what, cudnnSetConvolutionGroupCount, p->cd, (int)c->groups) ||
        DN_CALL(what, cudnnSetConvolutionMathType, p->cd, base))
        return -1;
    algo_perf perf[8];
    int n = conv_heuristics(h, p, perf, what);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (exact && (perf[i].math == CUDNN_TENSOR_OP_MATH || perf[i].math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue;
        cudnnMathType_t math = exact ? CUDNN_FMA_MATH : perf[i].math;
        size_t bytes = 0;
        if (dn.cudnnSetConvolutionMathType(p->cd, math) != CUDNN_STATUS_SUCCESS ||
            conv_ws_size(h, p, perf[i].algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > DNN_WS_LIMIT)
            continue;
        p->algo = perf[i].algo;
        p->ws_bytes = bytes;
        return 0;
    }
    return kiln_cu_fail("cuDNN: %s: no algorithm (%d candidates from the heuristic, none usable within a %zu-MiB workspace%s)",
                        what, n, DNN_WS_LIMIT >> 20, exact ? " without tf32" : "");
}

static uint64_t key_hash(const conv_key *k) {
    const unsigned char *s = (const unsigned char *)k;
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* The plan of (dir, c), made and kept if new; NULL with the reason. */
static conv_plan *plan_get(dnn_dev *d, int dir, const kiln_dnn_conv *c, const char *what) {
    conv_key key = {dir, c->dtype, c->dtype == KILN_F32 && c->tf32, c->n, c->c, c->h, c->w, c->k, c->r, c->s, c->oh, c->ow,
                    {c->stride[0], c->stride[1]}, {c->pad[0], c->pad[1]}, {c->dil[0], c->dil[1]}, c->groups};
    uint64_t hash = key_hash(&key);
    for (size_t i = 0; i < d->n_plans; i++)
        if (d->plans[i]->hash == hash && !memcmp(&d->plans[i]->key, &key, sizeof key)) return d->plans[i];
    if (d->n_plans == d->cap_plans) {
        size_t cap = d->cap_plans ? d->cap_plans * 2 : 32;
        conv_plan **t = realloc(d->plans, cap * sizeof *t);
        if (!t) {
            kiln_cu_fail("cuDNN: %s: out of host memory for the plan table", what);
            return NULL;
        }
        d->plans = t;
        d->cap_plans = cap;
    }
    conv_plan *p = calloc(1, sizeof *p);
    if (!p) {
        kiln_cu_fail("cuDNN: %s: out of host memory for a plan", what);
        return NULL;
    }
    p->key = key;
    p->hash = hash;
    if (plan_fill(d->handle, p, c, what)) {
        plan_destroy(p);
        return NULL;
    }
    d->plans[d->n_plans++] = p;
    return p;
}

/* Runs direction dir: fwd (x=a, w=b) -> y, data (dy=a, w=b) -> dx, filter (x=a, dy=b) -> dw. */
static int conv_run(int dev, int dir, const kiln_dnn_conv *c, const void *a, const void *b, void *out) {
    char what[512];
    conv_describe(dir, c, what, sizeof what);
    if (conv_validate(c, what)) return -1;
    dnn_dev *d = dev_enter(dev, what);
    if (!d) return -1;
    conv_plan *p = plan_get(d, dir, c, what);
    void *ws = p ? workspace(d, dev, p->ws_bytes, what) : NULL;
    int rc = -1;
    const float one = 1.0f, zero = 0.0f;
    if (p && (ws || !p->ws_bytes)) {
        if (dir == CONV_FWD)
            rc = DN_CALL(what, cudnnConvolutionForward, d->handle, &one, p->xd, a, p->wd, b, p->cd,
                         (cudnnConvolutionFwdAlgo_t)p->algo, ws, p->ws_bytes, &zero, p->yd, out);
        else if (dir == CONV_BWD_DATA)
            rc = DN_CALL(what, cudnnConvolutionBackwardData, d->handle, &one, p->wd, b, p->yd, a, p->cd,
                         (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->ws_bytes, &zero, p->xd, out);
        else
            rc = DN_CALL(what, cudnnConvolutionBackwardFilter, d->handle, &one, p->xd, a, p->yd, b, p->cd,
                         (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->ws_bytes, &zero, p->wd, out);
    }
    dev_leave(d);
    return rc;
}

static int dnn_conv_fwd(int dev, const kiln_dnn_conv *c, const void *x, const void *w, void *y) {
    return conv_run(dev, CONV_FWD, c, x, w, y);
}
static int dnn_conv_bwd_data(int dev, const kiln_dnn_conv *c, const void *dy, const void *w, void *dx) {
    return conv_run(dev, CONV_BWD_DATA, c, dy, w, dx);
}
static int dnn_conv_bwd_filter(int dev, const kiln_dnn_conv *c, const void *x, const void *dy, void *dw) {
    return conv_run(dev, CONV_BWD_FILTER, c, x, dy, dw);
}

/* ---- pooling -------------------------------------------------------------------------------- */
static const char *const pool_mode_names[] = {"max_pool2d", "avg_pool2d (padding counted)", "avg_pool2d (padding not counted)"};

/* The descriptors of a pool call, made per call (host-side structs, cheap). */
typedef struct pool_descs {
    cudnnTensorDescriptor_t xd, yd;
    cudnnPoolingDescriptor_t pd;
} pool_descs;

static void pool_descs_free(pool_descs *s) {
    tensor_free(s->xd);
    tensor_free(s->yd);
    if (s->pd) dn.cudnnDestroyPoolingDescriptor(s->pd);
}

/* Validates p and makes its descriptors (what: the call described, filled here). */
static int pool_prepare(const kiln_dnn_pool *p, const char *dir, pool_descs *s, char *what, size_t what_size) {
    memset(s, 0, sizeof *s);
    int mode = p->mode >= KILN_DNN_POOL_MAX && p->mode <= KILN_DNN_POOL_AVG_EXCLUDE ? (int)p->mode : 0;
    snprintf(what, what_size, "%s %s %s x[%lld, %lld, %lld, %lld] y[%lld, %lld, %lld, %lld] kernel [%lld, %lld] stride [%lld, %lld] pad [%lld, %lld]",
             pool_mode_names[mode], dir, dtype_name(p->dtype), (long long)p->n, (long long)p->c, (long long)p->h,
             (long long)p->w, (long long)p->n, (long long)p->c, (long long)p->oh, (long long)p->ow,
             (long long)p->kernel[0], (long long)p->kernel[1], (long long)p->stride[0], (long long)p->stride[1],
             (long long)p->pad[0], (long long)p->pad[1]);
    if (p->dtype != KILN_F32 && p->dtype != KILN_F16) return kiln_cu_fail("cuDNN: %s: dtype must be f32 or f16", what);
    if (mode != (int)p->mode) return kiln_cu_fail("cuDNN: %s: unknown pool mode %d", what, (int)p->mode);
    int64_t dims[] = {p->n, p->c, p->h, p->w, p->oh, p->ow, p->kernel[0], p->kernel[1], p->stride[0], p->stride[1]};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] < 1 || dims[i] > INT_MAX) return kiln_cu_fail("cuDNN: %s: sizes, kernel and stride must be in [1, 2^31)", what);
    if (!fits_int(2, p->pad) || p->pad[0] >= p->kernel[0] || p->pad[1] >= p->kernel[1])
        return kiln_cu_fail("cuDNN: %s: padding must be in [0, kernel)", what);
    int64_t oh = window_out(p->h, p->kernel[0], p->stride[0], p->pad[0], 1);
    int64_t ow = window_out(p->w, p->kernel[1], p->stride[1], p->pad[1], 1);
    if (oh != p->oh || ow != p->ow)
        return kiln_cu_fail("cuDNN: %s: the output must be %lld x %lld for this input and window", what, (long long)oh,
                            (long long)ow);
    static const cudnnPoolingMode_t modes[] = {CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                               CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING};
    if (tensor_desc(&s->xd, p->dtype, p->n, p->c, p->h, p->w, what) ||
        tensor_desc(&s->yd, p->dtype, p->n, p->c, p->oh, p->ow, what))
        return -1;
    if (DN_CALL(what, cudnnCreatePoolingDescriptor, &s->pd)) return -1;
    return DN_CALL(what, cudnnSetPooling2dDescriptor, s->pd, modes[mode], CUDNN_PROPAGATE_NAN, (int)p->kernel[0],
                   (int)p->kernel[1], (int)p->pad[0], (int)p->pad[1], (int)p->stride[0], (int)p->stride[1]);
}

static int dnn_pool_fwd(int dev, const kiln_dnn_pool *p, const void *x, void *y) {
    char what[512];
    pool_descs s;
    int rc = pool_prepare(p, "forward", &s, what, sizeof what);
    dnn_dev *d = rc ? NULL : dev_enter(dev, what);
    if (d) {
        const float one = 1.0f, zero = 0.0f;
        rc = DN_CALL(what, cudnnPoolingForward, d->handle, s.pd, &one, s.xd, x, &zero, s.yd, y);
        dev_leave(d);
    } else {
        rc = -1;
    }
    pool_descs_free(&s);
    return rc;
}

static int dnn_pool_bwd(int dev, const kiln_dnn_pool *p, const void *x, const void *y, const void *dy, void *dx) {
    char what[512];
    pool_descs s;
    int rc = pool_prepare(p, "backward", &s, what, sizeof what);
    bool is_max = p->mode == KILN_DNN_POOL_MAX;
    if (!rc && is_max && !x) rc = kiln_cu_fail("cuDNN: %s: the max pool's backward needs x", what);
    dnn_dev *d = rc ? NULL : dev_enter(dev, what);
    if (d) {
        const float one = 1.0f, zero = 0.0f;
        if (!is_max) { /* the average's gradient reads neither x nor y: any buffers of their shapes */
            x = dx;
            y = dy;
        } else if (!y) { /* the forward's result into the workspace */
            size_t bytes = (size_t)(p->n * p->c * p->oh * p->ow) * (p->dtype == KILN_F32 ? 4 : 2);
            void *ws = workspace(d, dev, bytes, what);
            y = ws;
            rc = ws ? DN_CALL(what, cudnnPoolingForward, d->handle, s.pd, &one, s.xd, x, &zero, s.yd, ws) : -1;
        }
        if (!rc) rc = DN_CALL(what, cudnnPoolingBackward, d->handle, s.pd, &one, s.yd, y, s.yd, dy, s.xd, x, &zero, s.xd, dx);
        dev_leave(d);
    } else {
        rc = -1;
    }
    pool_descs_free(&s);
    return rc;
}

/* ---- batch normalisation -------------------------------------------------------------------- */
/* Every call uses CUDNN_BATCHNORM_SPATIAL, deliberately: SPATIAL_PERSISTENT can be faster, but on
 * NCHW it may reduce through scaled integer atomics whose narrower range overflows to Inf / NaN
 * for large finite inputs where SPATIAL stays finite (cuDNN's documentation; PyTorch keeps NCHW
 * on SPATIAL after accuracy losses in ResNeXt training). */
static const cudnnBatchNormMode_t bn_mode = CUDNN_BATCHNORM_SPATIAL;

/* A batch-norm call: x's descriptor and the derived f32 [1, c, 1, 1] one of the vectors. */
typedef struct bn_call {
    dnn_dev *d;
    cudnnTensorDescriptor_t xd, bnd;
    char what[384];
} bn_call;

static void bn_end(bn_call *k) {
    tensor_free(k->xd);
    tensor_free(k->bnd);
    if (k->d) dev_leave(k->d);
}

/* Validates b, enters the device and makes the descriptors; -1 with the reason (bn_end cleans up
 * either way). training: the statistics need n*h*w >= 2; saved: the two saved-statistics
 * pointers, both or neither. */
static int bn_begin(bn_call *k, int dev, const kiln_dnn_bn *b, const char *dir, bool training, const void *const saved[2]) {
    memset(k, 0, sizeof *k);
    snprintf(k->what, sizeof k->what, "batch_norm %s %s x[%lld, %lld, %lld, %lld] eps %g", dir, dtype_name(b->dtype),
             (long long)b->n, (long long)b->c, (long long)b->h, (long long)b->w, b->eps);
    if (b->dtype != KILN_F32 && b->dtype != KILN_F16) return kiln_cu_fail("cuDNN: %s: dtype must be f32 or f16", k->what);
    int64_t dims[] = {b->n, b->c, b->h, b->w};
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > INT_MAX) return kiln_cu_fail("cuDNN: %s: sizes must be in [1, 2^31)", k->what);
    if (training && b->n * b->h * b->w < 2)
        return kiln_cu_fail("cuDNN: %s: training statistics need at least 2 values per channel", k->what);
    if (!(b->eps >= CUDNN_BN_MIN_EPSILON)) return kiln_cu_fail("cuDNN: %s: eps must be >= %g", k->what, CUDNN_BN_MIN_EPSILON);
    if (saved && !saved[0] != !saved[1]) return kiln_cu_fail("cuDNN: %s: give both saved statistics or neither", k->what);
    if (!(k->d = dev_enter(dev, k->what))) return -1;
    if (tensor_desc(&k->xd, b->dtype, b->n, b->c, b->h, b->w, k->what) || DN_CALL(k->what, cudnnCreateTensorDescriptor, &k->bnd))
        return -1;
    return DN_CALL(k->what, cudnnDeriveBNTensorDescriptor, k->bnd, k->xd, bn_mode);
}

static int dnn_bn_train_fwd(int dev, const kiln_dnn_bn *b, const void *x, const void *gamma, const void *beta, void *y,
                            void *mean, void *var, void *save_mean, void *save_invstd) {
    bn_call k;
    int rc = bn_begin(&k, dev, b, "training forward", true, (const void *[]){save_mean, save_invstd});
    if (!rc) {
        /* the batch statistics come out as running statistics updated with factor 1 from zeros:
         * running mean = the mean, running variance = the unbiased variance, scaled to the
         * biased one by (M - 1) / M */
        double m = (double)(b->n * b->h * b->w);
        const float one = 1.0f, zero = 0.0f, unbias = (float)((m - 1) / m);
        size_t bytes = (size_t)b->c * sizeof(float);
        rc = kiln_cu_memset(dev, mean, 0, bytes) || kiln_cu_memset(dev, var, 0, bytes) ||
             DN_CALL(k.what, cudnnBatchNormalizationForwardTraining, k.d->handle, bn_mode, &one, &zero, k.xd, x,
                     k.xd, y, k.bnd, gamma, beta, 1.0, mean, var, b->eps, save_mean, save_invstd) ||
             DN_CALL(k.what, cudnnScaleTensor, k.d->handle, k.bnd, var, &unbias)
                 ? -1
                 : 0;
    }
    bn_end(&k);
    return rc;
}

static int dnn_bn_infer_fwd(int dev, const kiln_dnn_bn *b, const void *x, const void *gamma, const void *beta,
                            const void *mean, const void *var, void *y) {
    bn_call k;
    int rc = bn_begin(&k, dev, b, "inference forward", false, NULL);
    const float one = 1.0f, zero = 0.0f;
    if (!rc)
        rc = DN_CALL(k.what, cudnnBatchNormalizationForwardInference, k.d->handle, bn_mode, &one, &zero, k.xd, x,
                     k.xd, y, k.bnd, gamma, beta, mean, var, b->eps);
    bn_end(&k);
    return rc;
}

static int dnn_bn_bwd(int dev, const kiln_dnn_bn *b, const void *x, const void *dy, const void *gamma,
                      const void *save_mean, const void *save_invstd, void *dx, void *dgamma, void *dbeta) {
    bn_call k;
    int rc = bn_begin(&k, dev, b, "backward", true, (const void *[]){save_mean, save_invstd});
    const float one = 1.0f, zero = 0.0f;
    if (!rc)
        rc = DN_CALL(k.what, cudnnBatchNormalizationBackward, k.d->handle, bn_mode, &one, &zero, &one, &zero,
                     k.xd, x, k.xd, dy, k.xd, dx, k.bnd, gamma, dgamma, dbeta, b->eps, save_mean, save_invstd);
    bn_end(&k);
    return rc;
}

/* ---- the vtable ----------------------------------------------------------------------------- */
static const kiln_backend_dnn dnn_table = {
    .abi = KILN_BACKEND_DNN_ABI,
    .last_error = kiln_cu_last_error,
    .init = dnn_init,
    .version = dnn_version,
    .conv_fwd = dnn_conv_fwd,
    .conv_bwd_data = dnn_conv_bwd_data,
    .conv_bwd_filter = dnn_conv_bwd_filter,
    .pool_fwd = dnn_pool_fwd,
    .pool_bwd = dnn_pool_bwd,
    .bn_train_fwd = dnn_bn_train_fwd,
    .bn_infer_fwd = dnn_bn_infer_fwd,
    .bn_bwd = dnn_bn_bwd,
};

__attribute__((visibility("default"))) const kiln_backend_dnn *kiln_cuda_dnn_entry(void);
const kiln_backend_dnn *kiln_cuda_dnn_entry(void) { return &dnn_table; }
