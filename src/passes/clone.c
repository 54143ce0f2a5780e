/* clone.c — copying IR bindings (with their nested regions) within or between functions; used by
 * autodiff (the forward copy, recomputed branches) and by inlining. */
#include "passes/passes.h"
#include <string.h>

kiln_var *kiln_clone_var(kiln_cloner *c, kiln_var *v) {
    if (v->kind == KILN_VAR_LITERAL) return v;
    kiln_var *m = v->id < c->n_map ? c->map[v->id] : NULL;
    return m ? m : v; /* unmapped: a value visible where the copy goes */
}

static kiln_status clone_node(kiln_cloner *c, const kiln_node *n, kiln_region *dst, kiln_node *before) {
    kiln_context *ctx = c->dst->module->ctx;
    /* inputs mapped in place (no array on the recursive path over nested regions) */
    kiln_node *k = kiln_node_new(dst, n->op, n->n_in, n->in);
    if (!k) return kiln_error_status(ctx);
    for (int i = 0; i < n->n_in; i++) k->in[i] = kiln_clone_var(c, n->in[i]);
    memcpy(k->attrs, n->attrs, sizeof *k->attrs * (size_t)kiln_op_info_get(n->op)->n_attrs);
    k->callee = n->callee;
    k->line = n->line, k->col = n->col;
    k->out->type = n->out->type;
    k->out->name = n->out->name;
    if (n->out->id < c->n_map) c->map[n->out->id] = k->out;
    if (n->n_loop) {
        k->n_loop = n->n_loop;
        k->loop = kiln_arena_alloc(&c->dst->module->arena, sizeof *k->loop * (size_t)n->n_loop);
        if (!k->loop) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        for (int i = 0; i < n->n_loop; i++) {
            if (!(k->loop[i] = kiln_var_new(c->dst, KILN_VAR_LOOP, n->loop[i]->name))) return kiln_error_status(ctx);
            k->loop[i]->def = k, k->loop[i]->index = i, k->loop[i]->type = n->loop[i]->type;
            if (n->loop[i]->id < c->n_map) c->map[n->loop[i]->id] = k->loop[i];
        }
    }
    k->n_regions = n->n_regions;
    for (int r = 0; r < n->n_regions; r++)
        if (!(k->regions[r] = kiln_region_new(c->dst, k)) || kiln_clone_region_into(c, n->regions[r], k->regions[r], NULL, true))
            return kiln_error_status(ctx);
    kiln_region_insert_before(dst, before, k);
    return KILN_OK;
}

kiln_status kiln_clone_region_into(kiln_cloner *c, const kiln_region *src, kiln_region *dst, kiln_node *before,
                                   bool with_yield) {
    for (const kiln_node *n = src->first; n; n = n->next)
        if (clone_node(c, n, dst, before)) return kiln_error_status(c->dst->module->ctx);
    if (!with_yield || src->n_results < 0) return KILN_OK;
    if (kiln_region_yield(dst, src->n_results, src->results)) return kiln_error_status(c->dst->module->ctx);
    for (int i = 0; i < src->n_results; i++) dst->results[i] = kiln_clone_var(c, src->results[i]); /* in place */
    return KILN_OK;
}
