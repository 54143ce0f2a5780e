/* dce.c — dead-code elimination: removes bindings whose results nothing reads (nested regions
 * included), unless the op has a side effect. One backward walk per region, so chains of dead
 * bindings go in a single pass. */
#include "passes/passes.h"
#include <stdlib.h>

/* Counts every read of a variable in r (inputs, nested regions, yields). */
static void count_uses(const kiln_region *r, int *uses) {
    for (const kiln_node *n = r->first; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL) uses[n->in[i]->id]++;
        for (int k = 0; k < n->n_regions; k++) count_uses(n->regions[k], uses);
    }
    for (int i = 0; i < r->n_results; i++)
        if (r->results[i]->kind != KILN_VAR_LITERAL) uses[r->results[i]->id]++;
}

static void sweep_region(kiln_region *r, int *uses) {
    for (kiln_node *n = r->last, *prev; n; n = prev) {
        prev = n->prev;
        bool side = kiln_op_info_get(n->op)->flags & F_SIDE;
        if (uses[n->out->id] || side || n->op == KILN_OP_CALL) {
            for (int k = 0; k < n->n_regions; k++) sweep_region(n->regions[k], uses);
            continue;
        }
        /* dead: its reads no longer count (nested regions included) */
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL) uses[n->in[i]->id]--;
        for (int k = 0; k < n->n_regions; k++) {
            int *inner = calloc((size_t)r->func->n_vars, sizeof *inner);
            if (!inner) continue; /* out of memory: keeping the counts high only keeps code */
            count_uses(n->regions[k], inner);
            for (int v = 0; v < r->func->n_vars; v++) uses[v] -= inner[v];
            free(inner);
        }
        kiln_region_remove(r, n);
    }
}

kiln_status kiln_pass_dce(kiln_region *r) {
    int *uses = calloc((size_t)(r->func->n_vars ? r->func->n_vars : 1), sizeof *uses);
    if (!uses) return kiln_error(r->func->module->ctx, KILN_ERR_OOM, "dce: out of memory");
    count_uses(r, uses);
    sweep_region(r, uses);
    free(uses);
    r->func->liveness_ready = false;
    return KILN_OK;
}
