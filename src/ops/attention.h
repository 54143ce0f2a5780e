/* attention.h — what the attention ops' kernels, gradient rule and dialects share: the resolved
 * softmax scale, a builder for an attention op carrying another node's attributes, and the CPU
 * kernels over a GEMM of the caller's choice. */
#ifndef KILN_ATTENTION_H
#define KILN_ATTENTION_H

#include "ir/ir.h"
#include "ops/ops.h"

/* The `scale` attribute of an attention op, or 1/sqrt(d) when unset (1 for d == 0). */
double kiln_attention_scale(kiln_op op, const kiln_attr *attrs, int64_t d);
/* Emits `op` (an attention op) on in[0..n_in) with node n's `causal` and `scale` attributes. */
kiln_var *kiln_attention_build(kiln_builder *b, kiln_op op, const kiln_node *n, int n_in, kiln_var *const *in);

/* The CPU kernels of attention_forward / attention_backward (blocks of query rows: GEMMs and row
 * loops; the reference kernels pass kiln_gemm, the blas dialect sgemm / dgemm). gemm computes
 * c[i, j] = sum_l a[i*sam + l*sak] b[l*sbk + j*sbn] (c row-major, ldc) in dt (f32 or f64). */
typedef void (*kiln_attention_gemm)(kiln_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t sam,
                                    int64_t sak, const void *b, int64_t sbk, int64_t sbn, void *c, int64_t ldc);
kiln_status kiln_attention_forward_with(kiln_kernel_args *a, kiln_attention_gemm gemm);
kiln_status kiln_attention_backward_with(kiln_kernel_args *a, kiln_attention_gemm gemm);

#endif /* KILN_ATTENTION_H */
