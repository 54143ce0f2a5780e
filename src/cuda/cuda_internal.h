/* cuda_internal.h — shared state of the CUDA backend (libkiln_cuda.so): the driver, NVRTC and
 * cuBLASLt entry points resolved with dlsym at run time, per-device state, error reporting.
 * Everything declared here is hidden; the library exports kiln_cuda_backend_entry alone. */
#ifndef KILN_CUDA_INTERNAL_H
#define KILN_CUDA_INTERNAL_H

#include "backend/backend.h"
#include <cublasLt.h>
#include <cuda.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

/* ---- resolved entry points ----
 * X(f) names the function as the header spells it; cuda.h maps several names to versioned
 * symbols (cuMemAlloc -> cuMemAlloc_v2), and the macro-expanded name is both the member and the
 * symbol looked up, so each pointer has exactly the type and ABI of the header's declaration. */
#define KILN_CU_DRIVER_FUNCS(X)                                                                    \
    X(cuGetErrorName) X(cuGetErrorString) X(cuInit) X(cuDeviceGetCount)      \
    X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDeviceTotalMem)                  \
    X(cuDevicePrimaryCtxRetain) X(cuCtxSetCurrent) X(cuStreamCreate) X(cuStreamSynchronize)       \
    X(cuDeviceGetDefaultMemPool) X(cuMemPoolSetAttribute) X(cuMemPoolTrimTo)                      \
    X(cuMemAlloc) X(cuMemFree) X(cuMemAllocAsync) X(cuMemFreeAsync)                               \
    X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuMemcpyDtoDAsync) X(cuMemsetD8Async)             \
    X(cuModuleLoadData) X(cuModuleGetFunction) X(cuModuleUnload) X(cuFuncSetAttribute)            \
    X(cuLaunchKernel) X(cuStreamBeginCapture) X(cuStreamEndCapture) X(cuGraphInstantiateWithFlags) \
    X(cuGraphLaunch) X(cuGraphExecDestroy) X(cuGraphDestroy)

#define KILN_CU_NVRTC_FUNCS(X)                                                                     \
    X(nvrtcGetErrorString) X(nvrtcVersion) X(nvrtcCreateProgram) X(nvrtcDestroyProgram)           \
    X(nvrtcCompileProgram) X(nvrtcGetProgramLogSize) X(nvrtcGetProgramLog) X(nvrtcGetCUBINSize)   \
    X(nvrtcGetCUBIN)

#define KILN_CU_BLASLT_FUNCS(X)                                                                    \
    X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtGetStatusName) X(cublasLtGetStatusString)   \
    X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute)    \
    X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute) \
    X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy)                          \
    X(cublasLtMatmulPreferenceSetAttribute) X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)

#define KILN_CU_MEMBER(f) __typeof__(f) *f;
typedef struct { KILN_CU_DRIVER_FUNCS(KILN_CU_MEMBER) } kiln_cu_driver_api;
typedef struct { KILN_CU_NVRTC_FUNCS(KILN_CU_MEMBER) } kiln_cu_nvrtc_api;
typedef struct { KILN_CU_BLASLT_FUNCS(KILN_CU_MEMBER) } kiln_cu_blaslt_api;

#define KILN_CU_STR_(x) #x
#define KILN_CU_STR(x) KILN_CU_STR_(x)
/* Fills each member of *tbl from handle h (library `lib` named in messages); -1 if one is missing. */
#define KILN_CU_RESOLVE(f)                                                                         \
    if (kiln_cu_sym(h, lib, KILN_CU_STR(f), &sym)) return -1;                                      \
    memcpy(&tbl->f, &sym, sizeof tbl->f);

extern kiln_cu_driver_api kiln_cu_drv; /* valid once init() succeeded */

/* ---- errors (thread-local message; every failing entry returns -1 or NULL after setting it) ---- */
const char *kiln_cu_last_error(void);
int kiln_cu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 0 if r is CUDA_SUCCESS, else -1 with "<what>: CUDA_ERROR_NAME (description)". */
int kiln_cu_check(CUresult r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies this thread's message into dst (truncated to size), e.g. to replay a failed one-time load. */
void kiln_cu_save_error(char *dst, size_t size);

/* ---- libraries ---- */
/* dlopen the first of names[] found in a directory of $KILN_CUDA_LIBS, then on the default
 * path; NULL with the reason set (every name and directory tried, the last dlerror). dir (size
 * bytes, may be NULL) receives the directory it was found in, "" for the default path. */
void *kiln_cu_dlopen(const char *const *names, int n, char *dir, size_t size);
/* *out = dlsym(h, sym); -1 with "<lib>: missing function <sym>" if absent. */
int kiln_cu_sym(void *h, const char *lib, const char *sym, void **out);

/* ---- devices ---- */
/* Page-unit pool and stream-ordered ("none") allocations of one device (memory.c). */
typedef struct kiln_cu_block {
    uintptr_t ptr;
    size_t bytes;     /* requested */
    size_t reserved;  /* held from the driver: the page-rounded size, or `bytes` for the none pool */
    kiln_pool_kind pool;
} kiln_cu_block;

typedef struct kiln_cu_memory {
    pthread_mutex_t lock;
    kiln_pool_kind kind;
    kiln_cu_block *live;          /* open-addressing table keyed by ptr (0 = empty slot) */
    size_t live_cap, live_n;
    kiln_cu_block *cached;        /* the page pool's free blocks */
    size_t cached_n, cached_cap;
    kiln_memory_stats stats;
} kiln_cu_memory;

typedef struct kiln_cu_gemm_state kiln_cu_gemm_state; /* blaslt.c */

typedef struct kiln_cu_device {
    int ordinal;
    bool ready;                   /* context + stream made (read with acquire ordering) */
    CUdevice dev;
    CUcontext ctx;                /* the device's primary context */
    CUstream stream;              /* all work of this device is issued here, in order */
    CUmemoryPool pool;            /* the driver's default stream-ordered pool (NULL if unsupported) */
    kiln_cu_memory mem;
    pthread_mutex_t gemm_lock;
    kiln_cu_gemm_state *gemm;     /* made at the first gemm */
} kiln_cu_device;

/* The device, set up on first use (primary context, stream, pools) and made current on this
 * thread; NULL with the reason set (not initialised, ordinal out of range, driver error). */
kiln_cu_device *kiln_cu_enter(int dev);

/* ---- entries of the vtable, one group per file ---- */
int kiln_cu_init(void);
int kiln_cu_device_count(void);
int kiln_cu_device_describe(int dev, char *buf, size_t size);
int kiln_cu_device_arch(int dev);
int kiln_cu_copy_h2d(int dev, void *dst, const void *src, size_t bytes);
int kiln_cu_copy_d2h(int dev, void *dst, const void *src, size_t bytes);
int kiln_cu_copy_d2d(int dev, void *dst, const void *src, size_t bytes);
int kiln_cu_memset(int dev, void *dst, int byte, size_t bytes);
int kiln_cu_synchronize(int dev);
int kiln_cu_module_load(int dev, const void *image, kiln_backend_module **out);
int kiln_cu_module_get(kiln_backend_module *m, const char *symbol, kiln_backend_fn *out);
void kiln_cu_module_free(kiln_backend_module *m);
int kiln_cu_launch(int dev, kiln_backend_fn fn, const unsigned grid[3], const unsigned block[3], size_t shared_bytes,
                   void **args);

void kiln_cu_memory_setup(kiln_cu_memory *mem);
void *kiln_cu_alloc(int dev, size_t bytes);
void kiln_cu_free(int dev, void *p);
int kiln_cu_set_pool(int dev, kiln_pool_kind kind);
int kiln_cu_get_stats(int dev, kiln_memory_stats *s);
int kiln_cu_reset_peak(int dev);
int kiln_cu_trim(int dev);

int kiln_cu_nvrtc_compile(const char *source, int arch, const char *cache_dir, int debug, void **image,
                          size_t *size);
void kiln_cu_free_image(void *image);
int kiln_cu_nvrtc_version(char *buf, size_t size);

int kiln_cu_gemm(int dev, const kiln_gemm_desc *g);

int kiln_cu_graph_begin(int dev);
int kiln_cu_graph_end(int dev, kiln_backend_graph **out);
int kiln_cu_graph_launch(int dev, kiln_backend_graph *g);
void kiln_cu_graph_free(kiln_backend_graph *g);

#pragma GCC visibility pop

#endif /* KILN_CUDA_INTERNAL_H */
