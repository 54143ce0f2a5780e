/* codegen.h — generated kernels: a fused group (a `kernel` function of fusable ops) is lowered
 * to a loop nest and rendered as C; sources are compiled by the system compiler into a shared
 * object, cached on disk by source hash and loaded with dlopen. */
#ifndef KILN_CODEGEN_H
#define KILN_CODEGEN_H

#include "ir/ir.h"

/* Every generated kernel is one C function
 *     void SYMBOL(char *const *bufs, const int64_t *params)
 * bufs: data pointers of the group function's parameters in order (a scalar parameter is a 0-d
 * buffer: int -> int64_t, float -> double, bool -> uint8_t) followed by one per result;
 * params: integers (sizes, strides) the lowering computed, passed back at every call. */
typedef void (*kiln_gen_fn)(char *const *bufs, const int64_t *params);
/* The VM may pass an elementwise kernel an output buffer equal to an input of the same shape
 * (a donated output computed in place): kernels read every input element into a local before
 * they store the outputs of that element, so this is safe although buffers are `restrict`. */

typedef struct kiln_gen_kernel {
    char *source;          /* malloc'd C source defining `symbol` (plus static helpers) */
    char symbol[64];       /* unique for the source (derived from its hash) */
    int n_params;
    int64_t *params;       /* malloc'd */
    /* CUDA only (kiln_codegen_cuda): the launch geometry for these params. */
    unsigned grid[3], block[3];
    size_t shared_bytes;
    /* CUDA split reductions (render_cuda.c), else 0: the kernel takes two more bufs after the
     * results: counter_bytes of device memory that is zero before every launch (the kernel
     * leaves it zero), then scratch_bytes the kernel overwrites. Multiples of 256. */
    size_t counter_bytes, scratch_bytes;
} kiln_gen_kernel;

/* True if generated C can compute node n (a primitive of class ELEMWISE / BROADCAST / REDUCE
 * or a cast, with dtypes the renderer handles). The fusion pass groups only such nodes. */
bool kiln_codegen_supports(const kiln_node *n);
/* Lowers one group function (params = inputs, results = outputs) to C. Groups the fusion pass
 * forms: (a) elementwise/broadcast ops whose results all have one shape S; (b) one reduction
 * with elementwise producers (of its input's shape) and elementwise consumers (of its result's
 * shape), every result of the reduction's result shape. Anything else is an internal error. */
kiln_status kiln_codegen_c(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out);
void kiln_gen_kernel_free(kiln_gen_kernel *k);

/* The same group rendered as CUDA C++ (render_cuda.c), from the same loop plan (lower.h), for
 * NVRTC. The kernel is
 *     extern "C" __global__ void SYMBOL(SYMBOL_args args)
 *     struct SYMBOL_args { char *bufs[NB]; long long params[NP]; }   (NB, NP >= 1; padded)
 * taking by value the bufs (device pointers, same order as the C kernel's) and the params:
 * one launch argument, laid out as the C kernel's two arrays back to back. The source is
 * self-contained (no includes; f16 and bf16 conversions are inline PTX and bit operations).
 * grid/block/shared_bytes in *out say how to launch it; a split reduction's bufs end with its
 * counters and scratch (counter_bytes, scratch_bytes). */
kiln_status kiln_codegen_cuda(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out);
/* The same kernel over up to n_items argument blocks at once (horizontal batching, e.g. an
 * optimizer's update of many parameters in one launch): `extern "C" __global__ void
 * SYMBOL_multi(SYMBOL_multi_args)` holding `SYMBOL_args items[n_items]`, blockIdx.y picking the
 * item; launched with grid.y = the items used and grid.x the largest item's grid. Every kernel
 * form loops over its own sizes (grid-stride), so any grid.x serves; each item of a split
 * reduction has its own counters and scratch. malloc'd; NULL on OOM. */
char *kiln_codegen_cuda_multi(const kiln_gen_kernel *k, int n_items);

/* A loaded shared object of generated kernels. */
typedef struct kiln_jit_lib kiln_jit_lib;
/* Compiles n kernels as one translation unit with the system C compiler ($CC or cc; -O3
 * -march=native -fopenmp -fno-math-errno -fno-trapping-math -fPIC -shared), cached as
 * <cache_dir>/<hash>.so (a corrupt or stale entry is detected and rebuilt), and resolves fns[i] for kernels[i]. debug >= 2 prints the
 * source. A compiler failure returns an error with the source file's path and the compiler's
 * message. */
kiln_status kiln_jit_build(kiln_context *ctx, const char *cache_dir, int debug, int n,
                           const kiln_gen_kernel *kernels, kiln_gen_fn *fns, kiln_jit_lib **lib);
void kiln_jit_lib_free(kiln_jit_lib *lib);
/* The cache directory: dir if set, else $KILN_CACHE_DIR, else $HOME/.cache/kiln (malloc'd). */
char *kiln_jit_cache_dir(const char *dir);

#endif /* KILN_CODEGEN_H */
