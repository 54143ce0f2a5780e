/* dialect.h — library implementations of ops (dialects) and how dispatch picks one: each
 * implementation names its op, dialect and priority, says which nodes it supports, and has a
 * kernel with the reference kernels' signature (kiln_kernel_args). */
#ifndef KILN_DIALECT_H
#define KILN_DIALECT_H

#include "ir/ir.h"

/* "c" is always available: generated C kernels for fusable ops, the built-in C (reference)
 * kernels for the rest. Library dialects load their library at first use (dlopen). */
/* CPU dialects: c, blas, dnnl. CUDA dialects (a program compiled for a CUDA device takes only
 * these; docs/cuda.md): cuda (generated CUDA kernels and kiln's own CUDA kernels), cublaslt,
 * cudnn. */
typedef enum kiln_dialect_id {
    KILN_DIALECT_C, KILN_DIALECT_BLAS, KILN_DIALECT_DNNL, KILN_DIALECT_CUDA, KILN_DIALECT_CUBLASLT, KILN_DIALECT_CUDNN,
    KILN_DIALECT_COUNT
} kiln_dialect_id;

typedef struct kiln_dialect_impl {
    kiln_op op;
    kiln_dialect_id dialect;
    int priority;                              /* higher wins among allowed dialects */
    bool (*supports)(const kiln_node *n);      /* dtypes / attributes / shapes it handles */
    kiln_kernel_fn kernel;
} kiln_dialect_impl;

const char *kiln_dialect_name(kiln_dialect_id d);
/* -1 if unknown. */
int kiln_dialect_from_name(const char *name, size_t len);
/* Loads the dialect's library once (thread-safe); false with a reason in why (may be NULL). */
bool kiln_dialect_available(kiln_dialect_id d, char *why, size_t why_size);
/* The highest-priority implementation of node n among the allowed dialects, or NULL (the "c"
 * dialect: generated or built-in C). */
const kiln_dialect_impl *kiln_dialect_pick(const kiln_node *n, int n_allowed, const kiln_dialect_id *allowed);

/* The implementations each library dialect registers (dialects/blas.c, dialects/dnnl.c);
 * NULL-terminated arrays. */
extern const kiln_dialect_impl *const kiln_blas_impls[];
extern const kiln_dialect_impl *const kiln_dnnl_impls[];
bool kiln_blas_load(char *why, size_t why_size);
bool kiln_dnnl_load(char *why, size_t why_size);

#endif /* KILN_DIALECT_H */
