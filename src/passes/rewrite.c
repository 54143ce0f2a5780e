/* rewrite.c — the program-order walk with a substitution map that simplify, fold and cse share
 * (see rewrite.h). Regions nest on an explicit stack: no recursion on depth. */
#include "passes/rewrite.h"
#include <stdlib.h>

typedef struct walk_frame {
    kiln_region *region;
    kiln_node *next;  /* the next node to visit */
    bool entered;
} walk_frame;

static kiln_var *resolve(const kiln_rewriter *rw, kiln_var *v) {
    return v->kind != KILN_VAR_LITERAL && v->id < rw->cap && rw->subst[v->id] ? rw->subst[v->id] : v;
}

kiln_node *kiln_rewrite_def(const kiln_var *v, kiln_op op) {
    return v->kind == KILN_VAR_RESULT && v->def && v->def->op == op ? v->def : NULL;
}

kiln_status kiln_rewrite_replace(kiln_rewriter *rw, kiln_node *n, kiln_var *v) {
    int id = n->out->id;
    if (id >= rw->cap) {
        int cap = rw->f->n_vars > id ? rw->f->n_vars : id + 1;
        kiln_var **s = realloc(rw->subst, sizeof *s * (size_t)cap);
        if (!s) return kiln_error(rw->ctx, KILN_ERR_OOM, "out of memory rewriting @%s", rw->f->name);
        for (int i = rw->cap; i < cap; i++) s[i] = NULL;
        rw->subst = s;
        rw->cap = cap;
    }
    rw->subst[id] = v;
    rw->replaced = true;
    kiln_region_remove(n->parent, n);
    return KILN_OK;
}

static kiln_status push(walk_frame **stack, int *n, int *cap, kiln_region *r, kiln_context *ctx) {
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        walk_frame *s = realloc(*stack, sizeof *s * (size_t)c);
        if (!s) return kiln_error(ctx, KILN_ERR_OOM, "out of memory walking regions");
        *stack = s;
        *cap = c;
    }
    (*stack)[(*n)++] = (walk_frame){r, r->first, false};
    return KILN_OK;
}

kiln_status kiln_rewrite_function(kiln_function *f, const kiln_rewrite_hooks *hooks, void *user) {
    kiln_context *ctx = f->module->ctx;
    kiln_rewriter rw = {f, ctx, user, NULL, 0, false};
    walk_frame *stack = NULL;
    int depth = 0, cap = 0;
    kiln_status s = push(&stack, &depth, &cap, f->body, ctx);
    while (!s && depth > 0) {
        walk_frame *top = &stack[depth - 1];
        kiln_region *r = top->region;
        if (!top->entered) {
            top->entered = true;
            if (hooks->enter && (s = hooks->enter(&rw, r))) break;
        }
        kiln_node *n = top->next;
        if (!n) { /* the region is done: its yield reads through the map too */
            for (int i = 0; i < r->n_results; i++) r->results[i] = resolve(&rw, r->results[i]);
            if (hooks->leave) hooks->leave(&rw, r);
            depth--;
            continue;
        }
        top->next = n->next;
        for (int i = 0; i < n->n_in; i++) n->in[i] = resolve(&rw, n->in[i]);
        rw.replaced = false;
        if ((s = hooks->node(&rw, n))) break;
        if (rw.replaced) continue;
        /* regions[0] on top: it is walked (and left) before regions[1] */
        for (int k = n->n_regions - 1; k >= 0 && !s; k--) s = push(&stack, &depth, &cap, n->regions[k], ctx);
    }
    free(stack);
    free(rw.subst);
    f->liveness_ready = false;
    return s;
}
