/* decompose.c — the decompose pass: replaces the composite ops of a region (nested ones too, as
 * they appear) by their decompositions into primitives, in place. A caller may keep some:
 * autodiff keeps composites that have a gradient rule (dense), the compiler those a library
 * dialect implements whole (dense as one GEMM with its bias as the epilogue). */
#include "passes/passes.h"

void kiln_replace_uses(kiln_region *r, kiln_node *from, const kiln_var *old, kiln_var *new) {
    for (kiln_node *n = from; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == old) n->in[i] = new;
        for (int k = 0; k < n->n_regions; k++) kiln_replace_uses(n->regions[k], n->regions[k]->first, old, new);
    }
    for (int i = 0; i < r->n_results; i++)
        if (r->results[i] == old) r->results[i] = new;
}

kiln_status kiln_pass_decompose_except(kiln_region *r, bool (*keep)(const kiln_node *n, void *arg), void *arg) {
    kiln_context *ctx = r->func->module->ctx;
    kiln_node *n = r->first;
    while (n) {
        const kiln_op_info *info = kiln_op_info_get(n->op);
        if (!(info->flags & F_COMPOSITE) || (keep && keep(n, arg))) {
            for (int k = 0; k < n->n_regions; k++)
                if (kiln_pass_decompose_except(n->regions[k], keep, arg)) return kiln_error_status(ctx);
            n = n->next;
            continue;
        }
        kiln_node *prev = n->prev;
        kiln_builder b = {r, n, n->line, n->col};
        kiln_var *v = info->decompose(&b, n, n->in);
        if (!v) {
            char where[256];
            return kiln_error_status(ctx) ? kiln_error_status(ctx)
                                          : kiln_error(ctx, KILN_ERR_INTERNAL, "decompose: op '%s' at %s failed", info->name,
                                                       kiln_node_where(n, where, sizeof where));
        }
        kiln_replace_uses(r, n->next, n->out, v);
        kiln_region_remove(r, n);
        n = prev ? prev->next : r->first; /* the expansion's first node: composites inside expand too */
    }
    r->func->liveness_ready = false;
    return KILN_OK;
}

kiln_status kiln_pass_decompose(kiln_region *r) { return kiln_pass_decompose_except(r, NULL, NULL); }
