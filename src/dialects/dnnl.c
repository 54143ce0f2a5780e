/* dnnl.c — the oneDNN dialect (libdnnl, loaded at run time). */
#include "dialects/dialect.h"

const kiln_dialect_impl *const kiln_dnnl_impls[] = {NULL};

bool kiln_dnnl_load(char *why, size_t why_size) {
    snprintf(why, why_size, "not built yet");
    return false;
}
