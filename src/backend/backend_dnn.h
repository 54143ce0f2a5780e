/* backend_dnn.h — the CUDA backend's second vtable: cuDNN convolutions, pooling and batch
 * normalisation on NCHW device tensors. libkiln_cuda.so implements it (src/cuda/dnn.c) and
 * exports it as kiln_cuda_dnn_entry; the core finds it with kiln_cuda_dnn (loader_dnn.c). */
#ifndef KILN_BACKEND_DNN_H
#define KILN_BACKEND_DNN_H

#include "backend/backend.h"

/* Bumped whenever these structs change; the loader refuses a library built for another. */
#define KILN_BACKEND_DNN_ABI 1

/* One 2-D convolution y = conv(x, w), NCHW, as every direction sees it:
 *   x [n, c, h, w], w [k, c / groups, r, s], y [n, k, oh, ow];
 * output position i reads input i*stride - pad + tap*dil (the same pad before and after, so
 * oh = (h + 2*pad - ((r - 1)*dil + 1)) / stride + 1; every size >= 1). */
typedef struct kiln_dnn_conv {
    kiln_dtype dtype;        /* of x, w and y: F32, F16 or BF16 (accumulation in f32) */
    bool tf32;               /* F32 only: allow TF32 tensor cores */
    int64_t n, c, h, w;
    int64_t k, r, s;
    int64_t oh, ow;
    int64_t stride[2], pad[2], dil[2], groups;
} kiln_dnn_conv;

typedef enum kiln_dnn_pool_mode {
    KILN_DNN_POOL_MAX,           /* NaN propagates */
    KILN_DNN_POOL_AVG_INCLUDE,   /* divides by the window's size, padding included */
    KILN_DNN_POOL_AVG_EXCLUDE,   /* divides by the number of input elements in the window */
} kiln_dnn_pool_mode;

/* A 2-D pool x [n, c, h, w] -> y [n, c, oh, ow] with oh = (h + 2*pad - kernel) / stride + 1. */
typedef struct kiln_dnn_pool {
    kiln_dtype dtype;        /* F32 or F16 */
    kiln_dnn_pool_mode mode;
    int64_t n, c, h, w, oh, ow;
    int64_t kernel[2], stride[2], pad[2];
} kiln_dnn_pool;

/* Batch normalisation of x viewed as [n, c, h, w] per channel c (statistics over n, h, w): any
 * normalised axis maps to it as [prod(dims before), C, prod(dims after), 1]. The [c] vectors
 * (gamma, beta, mean, var, their gradients and the saved statistics) are f32. */
typedef struct kiln_dnn_bn {
    kiln_dtype dtype;        /* of x, y, dy, dx: F32 or F16 */
    int64_t n, c, h, w;      /* n * h * w >= 2 for training */
    double eps;
} kiln_dnn_bn;

/* Every entry returns 0 on success or -1 with a message left for last_error() (the main
 * backend's, per thread); none aborts. Pointers are device memory on device `dev`; work is
 * enqueued on the device's stream (the main backend's synchronize waits for it). */
typedef struct kiln_backend_dnn {
    int abi;                                   /* KILN_BACKEND_DNN_ABI */
    const char *(*last_error)(void);
    /* Loads cuDNN (no GPU needed): 0, or -1 with the reason (library missing, symbol missing). */
    int (*init)(void);
    /* "cuDNN 9.13.0" into buf; -1 if the library did not load. */
    int (*version)(char *buf, size_t size);

    /* ---- convolutions (algorithm chosen by cuDNN's heuristics once per descriptor) ---- */
    int (*conv_fwd)(int dev, const kiln_dnn_conv *c, const void *x, const void *w, void *y);
    int (*conv_bwd_data)(int dev, const kiln_dnn_conv *c, const void *dy, const void *w, void *dx);
    int (*conv_bwd_filter)(int dev, const kiln_dnn_conv *c, const void *x, const void *dy, void *dw);

    /* ---- pooling ---- */
    int (*pool_fwd)(int dev, const kiln_dnn_pool *p, const void *x, void *y);
    /* dx from dy; the max pool needs x and y (y NULL: recomputed from x), the average pools
     * read neither (both may be NULL). */
    int (*pool_bwd)(int dev, const kiln_dnn_pool *p, const void *x, const void *y, const void *dy, void *dx);

    /* ---- batch normalisation ---- */
    /* Training forward: y = gamma * (x - mean) * invstd + beta with the batch's mean and biased
     * variance var (written to mean / var); save_mean and save_invstd = 1 / sqrt(var + eps) are
     * written when not NULL (both or neither), for bn_bwd. */
    int (*bn_train_fwd)(int dev, const kiln_dnn_bn *b, const void *x, const void *gamma, const void *beta, void *y,
                        void *mean, void *var, void *save_mean, void *save_invstd);
    /* Inference forward from running statistics mean / var. */
    int (*bn_infer_fwd)(int dev, const kiln_dnn_bn *b, const void *x, const void *gamma, const void *beta,
                        const void *mean, const void *var, void *y);
    /* Backward of the training forward: dx, dgamma, dbeta from dy; save_mean / save_invstd from
     * bn_train_fwd (both NULL: recomputed from x). */
    int (*bn_bwd)(int dev, const kiln_dnn_bn *b, const void *x, const void *dy, const void *gamma,
                  const void *save_mean, const void *save_invstd, void *dx, void *dgamma, void *dbeta);
} kiln_backend_dnn;

/* The symbol libkiln_cuda.so exports: const kiln_backend_dnn *kiln_cuda_dnn_entry(void). */
typedef const kiln_backend_dnn *(*kiln_backend_dnn_get_fn)(void);
#define KILN_CUDA_DNN_SYMBOL "kiln_cuda_dnn_entry"

/* ---- the core's side (loader_dnn.c) ---- */
/* cuDNN on the CUDA backend, loaded once: NULL with the reason in why when the backend has no
 * GPU (kiln_cuda_backend), lacks the entry, or cuDNN does not load. */
const kiln_backend_dnn *kiln_cuda_dnn(char *why, size_t why_size);
/* Same with only the libraries required (no GPU): for CI checks of the library and symbols. */
const kiln_backend_dnn *kiln_cuda_dnn_nogpu(char *why, size_t why_size);

#endif /* KILN_BACKEND_DNN_H */
