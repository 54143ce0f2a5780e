/* dispatch.c — the dialect registry and the dispatch pass: every primitive node gets the
 * highest-priority available library implementation among the allowed dialects, or stays on
 * C (generated kernels after fusion, built-in kernels otherwise). */
#include "compiler/compiler.h"
#include "dialects/cuda_dialect.h"
#include <pthread.h>
#include <string.h>

static const char *const dialect_names[KILN_DIALECT_COUNT] = {"c", "blas", "dnnl", "cuda", "cublaslt", "cudnn"};

const char *kiln_dialect_name(kiln_dialect_id d) { return d >= 0 && d < KILN_DIALECT_COUNT ? dialect_names[d] : "?"; }

int kiln_dialect_from_name(const char *name, size_t len) {
    for (int d = 0; d < KILN_DIALECT_COUNT; d++)
        if (strlen(dialect_names[d]) == len && !strncmp(dialect_names[d], name, len)) return d;
    return -1;
}

/* Each library loads once; the outcome and its reason are kept. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded[KILN_DIALECT_COUNT];
static char load_why[KILN_DIALECT_COUNT][256];

static void load_all(void) {
    loaded[KILN_DIALECT_C] = true;
    loaded[KILN_DIALECT_BLAS] = kiln_blas_load(load_why[KILN_DIALECT_BLAS], sizeof load_why[0]);
    loaded[KILN_DIALECT_DNNL] = kiln_dnnl_load(load_why[KILN_DIALECT_DNNL], sizeof load_why[0]);
    loaded[KILN_DIALECT_CUDA] = kiln_cuda_dialect_load(load_why[KILN_DIALECT_CUDA], sizeof load_why[0]);
    loaded[KILN_DIALECT_CUBLASLT] = kiln_cuda_dialect_load(load_why[KILN_DIALECT_CUBLASLT], sizeof load_why[0]);
    loaded[KILN_DIALECT_CUDNN] = kiln_cudnn_load(load_why[KILN_DIALECT_CUDNN], sizeof load_why[0]);
}

bool kiln_dialect_available(kiln_dialect_id d, char *why, size_t why_size) {
    if (d < 0 || d >= KILN_DIALECT_COUNT) return false;
    pthread_once(&load_once, load_all);
    if (!loaded[d] && why && why_size) snprintf(why, why_size, "%s", load_why[d]);
    return loaded[d];
}

static const kiln_dialect_impl *const *impls_of(kiln_dialect_id d) {
    switch (d) {
    case KILN_DIALECT_BLAS: return kiln_blas_impls;
    case KILN_DIALECT_DNNL: return kiln_dnnl_impls;
    case KILN_DIALECT_CUDA: return kiln_cuda_impls;
    case KILN_DIALECT_CUBLASLT: return kiln_cublaslt_impls;
    case KILN_DIALECT_CUDNN: return kiln_cudnn_impls;
    default: return NULL;
    }
}

const kiln_dialect_impl *kiln_dialect_pick(const kiln_node *n, int n_allowed, const kiln_dialect_id *allowed) {
    const kiln_dialect_impl *best = NULL;
    for (int k = 0; k < n_allowed; k++) {
        const kiln_dialect_impl *const *list = impls_of(allowed[k]);
        if (!list || !kiln_dialect_available(allowed[k], NULL, 0)) continue;
        for (int i = 0; list[i]; i++)
            if (list[i]->op == n->op && (!best || list[i]->priority > best->priority) && list[i]->supports(n))
                best = list[i];
    }
    return best;
}

static kiln_status dispatch_region(kiln_pass_ctx *pc, kiln_region *r) {
    for (kiln_node *n = r->first; n; n = n->next) {
        for (int k = 0; k < n->n_regions; k++)
            if (dispatch_region(pc, n->regions[k])) return kiln_error_status(pc->ctx);
        const kiln_op_info *info = kiln_op_info_get(n->op);
        n->impl = info->kernel || (info->flags & F_COMPOSITE) ? kiln_dialect_pick(n, pc->n_dialects, pc->dialects) : NULL;
    }
    return KILN_OK;
}

kiln_status kiln_pass_dispatch(kiln_pass_ctx *pc, kiln_function *f) { return dispatch_region(pc, f->body); }
