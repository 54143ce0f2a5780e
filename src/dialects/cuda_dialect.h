/* cuda_dialect.h — the CUDA dialects on the core's side (no CUDA headers): kiln's own CUDA
 * kernels for ops generated code does not cover ("cuda"), cuBLASLt GEMMs ("cublaslt"), and the
 * per-thread device context their kernels run in. Kernels get kiln_kernel_args whose tensors
 * hold device pointers, and enqueue work on the device's stream through the backend. */
#ifndef KILN_CUDA_DIALECT_H
#define KILN_CUDA_DIALECT_H

#include "backend/backend.h"
#include "dialects/dialect.h"

/* Where CUDA dialect kernels run: set by the VM around a program's run (thread-local). */
typedef struct kiln_cuda_exec {
    const kiln_backend *be;
    int dev;
    const char *cache_dir;   /* NVRTC image cache (kiln_jit_cache_dir) */
    int debug;
} kiln_cuda_exec;
void kiln_cuda_exec_set(const kiln_cuda_exec *e); /* NULL clears */
const kiln_cuda_exec *kiln_cuda_exec_get(void);   /* NULL outside a CUDA run */

/* NULL-terminated implementation lists (dialects/cuda_ops.c, dialects/cublaslt.c). */
extern const kiln_dialect_impl *const kiln_cuda_impls[];
/* attention_forward / attention_backward of dialect "cuda" (dialects/cuda_attention.c), in kiln_cuda_impls. */
extern const kiln_dialect_impl kiln_cuda_attention_forward_impl, kiln_cuda_attention_backward_impl;
/* cross_entropy / cross_entropy_backward of dialect "cuda" (dialects/cuda_loss.c), in kiln_cuda_impls. */
extern const kiln_dialect_impl kiln_cuda_cross_entropy_impl, kiln_cuda_cross_entropy_backward_impl;
extern const kiln_dialect_impl *const kiln_cublaslt_impls[];
extern const kiln_dialect_impl *const kiln_cudnn_impls[]; /* dialects/cudnn.c */
/* cuDNN's table loads (kiln_cuda_dnn: a GPU and libcudnn); false with the reason otherwise. */
bool kiln_cudnn_load(char *why, size_t why_size);
/* Available when the CUDA backend loads with a GPU; false with the reason otherwise. */
bool kiln_cuda_dialect_load(char *why, size_t why_size);

/* Whether a primitive has a CUDA implementation in some CUDA dialect or in generated CUDA
 * (kiln_codegen_supports). A node with none runs on the host: the VM copies its inputs to
 * the host, runs the reference kernel and copies its results back (printed `# host`). */
bool kiln_cuda_covers(const kiln_node *n);

/* TF32 tensor cores for f32 matmuls (cublaslt), process-wide, like torch's allow_tf32: on
 * unless the environment has KILN_CUDA_TF32=0 (read at first use); the setter overrides it. */
bool kiln_cuda_tf32(void);
void kiln_cuda_set_tf32(bool on);

/* For the dialects' kernels (cuda_dialect.c): the exec context, or NULL with the error set when
 * a kernel runs outside a CUDA run; and a device failure naming the device, the step `what`,
 * the operand types and the backend's last_error(). */
const kiln_cuda_exec *kiln_cuda_exec_for(kiln_kernel_args *a);
kiln_status kiln_cuda_fail(kiln_kernel_args *a, const kiln_cuda_exec *e, const char *what);

/* Declares e, the exec context of kernel args a, or returns the error (kiln_cuda_exec_for). */
#define KILN_CUDA_EXEC(a, e)                                                \
    const kiln_cuda_exec *e = kiln_cuda_exec_for(a);                        \
    if (!e) return kiln_error_status((a)->ctx)

/* Device ordinals the dialects' kernels accept (kiln_cuda_exec_for checks). */
#define KILN_CUDA_MAX_DEVICES 64

/* A kernel family's scratch: one device block per device, grown on demand and kept, so a later
 * call of the same sizes allocates nothing and a CUDA graph may capture it after a warm-up run.
 * A block grown out of is never freed (a graph captured earlier may still use it); growth at
 * least doubles (up to a cap), so the blocks add up to about twice the largest. Calls on a device
 * share its block safely because the backend issues all work of a device on one stream. Define
 * one as `static kiln_cuda_scratch s = {.what = "the attention scratch"};`. */
typedef struct kiln_cuda_scratch {
    const char *what; /* for messages */
    struct kiln_cuda_scratch_block { void *p; size_t bytes; } devices[KILN_CUDA_MAX_DEVICES];
} kiln_cuda_scratch;
/* At least `bytes` of s on e's device (growing to min(2x, cap) when that can be had), or NULL
 * with the error set. Thread-safe. */
void *kiln_cuda_scratch_get(kiln_kernel_args *a, const kiln_cuda_exec *e, kiln_cuda_scratch *s, size_t bytes, size_t cap);

/* A CUDA source of the dialects' own kernels (an embedded .cu file): compiled with NVRTC (disk
 * cached) and loaded once per device at first use; its kernels are looked up by name once. */
typedef struct kiln_cuda_source {
    const char *file;                 /* "cuda_kernels.cu", for messages */
    const char *text;
    int n_kernels;
    const char *const *kernel_names;
    struct kiln_cuda_source_device {
        kiln_backend_module *mod;     /* loaded for the life of the process */
        kiln_backend_fn *fn;          /* n_kernels, resolved at first use */
    } devices[KILN_CUDA_MAX_DEVICES];
} kiln_cuda_source;
/* Kernel k of src on e's device, or an error naming the op (kiln_cuda_fail). Thread-safe. */
kiln_status kiln_cuda_source_kernel(kiln_kernel_args *a, const kiln_cuda_exec *e, kiln_cuda_source *src, int k,
                                    kiln_backend_fn *fn);

#endif /* KILN_CUDA_DIALECT_H */
