/* blas.c — the BLAS dialect (OpenBLAS, loaded at run time). */
#include "dialects/dialect.h"

const kiln_dialect_impl *const kiln_blas_impls[] = {NULL};

bool kiln_blas_load(char *why, size_t why_size) {
    snprintf(why, why_size, "not built yet");
    return false;
}
