/* decompose.c — the decompose pass: replaces the composite ops of a region (nested ones too, as
 * they appear) by their decompositions into primitives, in place. A caller may keep some:
 * autodiff keeps composites that have a gradient rule (dense), the compiler those a library
 * dialect implements whole (dense as one GEMM with its bias as the epilogue). */
#include "passes/passes.h"
#include <stdlib.h>
#include <string.h>

void kiln_replace_uses(kiln_region *r, kiln_node *from, const kiln_var *old, kiln_var *new) {
    for (kiln_node *n = from; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == old) n->in[i] = new;
        for (int k = 0; k < n->n_regions; k++) kiln_replace_uses(n->regions[k], n->regions[k]->first, old, new);
    }
    for (int i = 0; i < r->n_results; i++)
        if (r->results[i] == old) r->results[i] = new;
}

/* Replacements made so far, by var id (a decomposed node's result -> its expansion's): applied
 * to each node's inputs as the walk reaches it, so the pass stays linear in the region's size. */
typedef struct renames {
    kiln_var **to;
    int cap;
} renames;

static kiln_var *renamed(const renames *m, kiln_var *v) {
    while (v && v->id >= 0 && v->id < m->cap && m->to[v->id]) v = m->to[v->id];
    return v;
}

static bool rename_var(renames *m, const kiln_var *old, kiln_var *new) {
    if (old->id >= m->cap) {
        int cap = m->cap ? m->cap : 256;
        while (cap <= old->id) cap *= 2;
        kiln_var **to = realloc(m->to, sizeof *to * (size_t)cap);
        if (!to) return false;
        memset(to + m->cap, 0, sizeof *to * (size_t)(cap - m->cap));
        m->to = to, m->cap = cap;
    }
    m->to[old->id] = new;
    return true;
}

static kiln_status decompose_region(kiln_region *r, bool (*keep)(const kiln_node *n, void *arg), void *arg, renames *m) {
    kiln_context *ctx = r->func->module->ctx;
    kiln_node *n = r->first;
    while (n) {
        for (int i = 0; i < n->n_in; i++) n->in[i] = renamed(m, n->in[i]);
        const kiln_op_info *info = kiln_op_info_get(n->op);
        if (!(info->flags & F_COMPOSITE) || (keep && keep(n, arg))) {
            for (int k = 0; k < n->n_regions; k++)
                if (decompose_region(n->regions[k], keep, arg, m)) return kiln_error_status(ctx);
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
        if (!rename_var(m, n->out, v)) return kiln_error(ctx, KILN_ERR_OOM, "decompose: out of memory");
        kiln_region_remove(r, n);
        n = prev ? prev->next : r->first; /* the expansion's first node: composites inside expand too */
    }
    for (int i = 0; i < r->n_results; i++) r->results[i] = renamed(m, r->results[i]);
    return KILN_OK;
}

kiln_status kiln_pass_decompose_except(kiln_region *r, bool (*keep)(const kiln_node *n, void *arg), void *arg) {
    renames m = {0};
    kiln_status s = decompose_region(r, keep, arg, &m);
    free(m.to);
    r->func->liveness_ready = false;
    return s;
}

kiln_status kiln_pass_decompose(kiln_region *r) { return kiln_pass_decompose_except(r, NULL, NULL); }
