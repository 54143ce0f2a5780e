/* backend.h — what the core asks of a device backend: memory pools, copies, generated kernels
 * (compile + launch), library calls (GEMM), CUDA graphs. CUDA implements it in libkiln_cuda.so
 * (src/cuda/), loaded at run time by src/backend/loader.c; the core never links CUDA. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "kiln.h"
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever this struct changes; the loader refuses a library built for another. */
#define KILN_BACKEND_ABI 1

typedef struct kiln_backend_module kiln_backend_module; /* compiled kernels (a CUmodule) */
typedef struct kiln_backend_graph kiln_backend_graph;   /* an instantiated captured graph */
typedef void *kiln_backend_fn;                          /* a kernel in a module (a CUfunction) */

/* cuBLASLt epilogues (row-major view: the bias has one value per output column n). */
typedef enum kiln_gemm_epilogue {
    KILN_EPI_NONE,
    KILN_EPI_BIAS,            /* C = A@B + bias */
    KILN_EPI_RELU,            /* C = relu(A@B (+ bias)) */
    KILN_EPI_GELU,            /* C = gelu_tanh(A@B (+ bias)) */
    KILN_EPI_RELU_AUX,        /* as RELU and aux = the ReLU mask (cuBLASLt's bit mask) */
    KILN_EPI_GELU_AUX,        /* as GELU and aux = the pre-activation */
    KILN_EPI_DRELU,           /* C = (A@B) * relu'(aux)  (backward: aux from RELU_AUX) */
    KILN_EPI_DGELU,           /* C = (A@B) * gelu'(aux)  (backward: aux from GELU_AUX) */
    KILN_EPI_BGRAD,           /* C = A@B and bias_grad[i] = sum over k of op(A)[i,k] (one per row m) */
    KILN_EPI_COUNT
} kiln_gemm_epilogue;

/* One (batched) GEMM in row-major terms: C[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * C,
 * op(A) = A^T when trans_a (A stored [k,m]), likewise B. Leading dims are row strides in
 * elements. batch > 1: matrix i starts at base + i*stride (stride 0 broadcasts one matrix). */
typedef struct kiln_gemm_desc {
    kiln_dtype dtype;        /* of A, B and C: F32, F16 or BF16 (accumulation in f32) */
    bool tf32;               /* F32 only: allow TF32 tensor cores */
    bool trans_a, trans_b;
    int64_t m, n, k;
    int64_t lda, ldb, ldc;
    int64_t batch, stride_a, stride_b, stride_c;
    const void *a, *b;
    void *c;
    float alpha, beta;
    kiln_gemm_epilogue epilogue;
    const void *bias;        /* [n], dtype of C (BIAS, RELU, GELU and their AUX forms) */
    void *aux;               /* [m, ld_aux] (the AUX forms write it, DRELU / DGELU read it) */
    int64_t ld_aux;          /* >= n; GELU: elements of C's dtype, a multiple of 8; ReLU mask: bits, of 128 */
    void *bias_grad;         /* BGRAD (batch 1): [m], dtype of C: bias_grad[i] = sum_k op(A)[i,k] */
} kiln_gemm_desc;

/* Every entry returns 0 on success or -1 with a message left for last_error(); none aborts.
 * `dev` is a device ordinal. Work is issued on one stream per device, in order; copies to the
 * host and synchronize() wait for it. */
typedef struct kiln_backend {
    int abi;                                   /* KILN_BACKEND_ABI */
    const char *name;                          /* "cuda" */
    /* The message of the last failure on this thread (never NULL). */
    const char *(*last_error)(void);

    /* Loads the driver and finds devices: 0 if usable; -1 (the reason in last_error) if not. */
    int (*init)(void);
    int (*device_count)(void);
    /* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.2 GiB" into buf. */
    int (*device_describe)(int dev, char *buf, size_t size);
    /* Compute capability as major*10 + minor (90 for sm_90). */
    int (*device_arch)(int dev);

    /* ---- memory: per-device pools (page-unit pool, or none: the driver's stream-ordered
     * allocator cuMemAllocAsync), switchable at run time; blocks return to the pool they came
     * from. 256-byte aligned. NULL on failure. */
    void *(*alloc)(int dev, size_t bytes);
    void (*free)(int dev, void *p);
    int (*set_pool)(int dev, kiln_pool_kind kind);
    int (*get_stats)(int dev, kiln_memory_stats *s);
    int (*reset_peak)(int dev);
    int (*trim)(int dev);                      /* returns the page pool's cached blocks */

    /* ---- copies and sync ---- */
    int (*copy_h2d)(int dev, void *dst, const void *src, size_t bytes);  /* returns when src may be reused */
    int (*copy_d2h)(int dev, void *dst, const void *src, size_t bytes);  /* synchronous */
    int (*copy_d2d)(int dev, void *dst, const void *src, size_t bytes);  /* stream-ordered */
    int (*memset_d)(int dev, void *dst, int byte, size_t bytes);         /* stream-ordered */
    int (*synchronize)(int dev);

    /* ---- generated kernels (NVRTC) ---- */
    /* Compiles CUDA C++ source for arch (e.g. 90 -> sm_90) to a cubin. Needs NVRTC only, no
     * GPU (CI runs it). *image is malloc'd (free with free_image); on a compile error -1, and
     * last_error holds NVRTC's log with the source's line numbers. Cached on disk as
     * <cache_dir>/<hash>.cubin when cache_dir is not NULL (corrupt entries are rebuilt). */
    int (*nvrtc_compile)(const char *source, int arch, const char *cache_dir, int debug, void **image,
                         size_t *size);
    void (*free_image)(void *image);
    /* "NVRTC 13.0" into buf, or -1 with the reason (library not found). */
    int (*nvrtc_version)(char *buf, size_t size);
    int (*module_load)(int dev, const void *image, kiln_backend_module **out);
    int (*module_get)(kiln_backend_module *m, const char *symbol, kiln_backend_fn *out);
    void (*module_free)(kiln_backend_module *m);
    /* args[i] points at the i-th kernel parameter's value (cuLaunchKernel's convention). */
    int (*launch)(int dev, kiln_backend_fn fn, const unsigned grid[3], const unsigned block[3], size_t shared_bytes,
                  void **args);

    /* ---- libraries ---- */
    int (*gemm)(int dev, const kiln_gemm_desc *g);

    /* ---- CUDA graphs: capture the device's stream between begin and end, replay ---- */
    int (*graph_begin)(int dev);
    int (*graph_end)(int dev, kiln_backend_graph **out);  /* instantiates; out NULL if capture failed */
    int (*graph_launch)(int dev, kiln_backend_graph *g);
    void (*graph_free)(kiln_backend_graph *g);
} kiln_backend;

/* The one symbol libkiln_cuda.so exports: const kiln_backend *kiln_cuda_backend_entry(void). */
typedef const kiln_backend *(*kiln_backend_get_fn)(void);
#define KILN_CUDA_BACKEND_SYMBOL "kiln_cuda_backend_entry"

/* ---- the core's side (loader.c) ---- */
/* The CUDA backend, loaded and initialised once: NULL if unavailable, with the reason (which
 * library is missing, no device, driver error) in why. Search: $KILN_CUDA_BACKEND, then
 * libkiln_cuda.so next to libkiln (same directory), then the loader's default path. */
const kiln_backend *kiln_cuda_backend(char *why, size_t why_size);
/* The backend with only NVRTC required (no GPU): for compiling generated kernels in CI. */
const kiln_backend *kiln_cuda_backend_nogpu(char *why, size_t why_size);
/* The loaded library's dlopen handle (NULL if it did not load), for its optional entries. */
void *kiln_cuda_backend_handle(void);

#endif /* KILN_BACKEND_H */
