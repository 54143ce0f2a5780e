/* inline.c — the inlining pass: each call is replaced by a copy of the callee's body with its
 * parameters bound to the arguments (so autodiff and fusion see one function). A call that
 * would recurse (its callee is already being inlined on this path) is left in place. */
#include "passes/passes.h"
#include <stdlib.h>

#define KILN_INLINE_DEPTH 64

static bool on_stack(kiln_function *f, kiln_function **stack, int depth) {
    for (int i = 0; i < depth; i++)
        if (stack[i] == f) return true;
    return false;
}

/* Copies callee's body before call node n; returns the value standing for the call's result. */
static kiln_var *inline_call(kiln_region *r, kiln_node *n) {
    kiln_function *callee = n->callee;
    kiln_context *ctx = r->func->module->ctx;
    kiln_cloner c = {r->func, calloc((size_t)(callee->n_vars ? callee->n_vars : 1), sizeof(kiln_var *)), callee->n_vars};
    if (!c.map) {
        kiln_error(ctx, KILN_ERR_OOM, "inline: out of memory");
        return NULL;
    }
    for (int i = 0; i < callee->n_params; i++) c.map[callee->params[i]->id] = n->in[i];
    kiln_var *result = NULL;
    if (!kiln_clone_region_into(&c, callee->body, r, n, false)) {
        kiln_builder b = {r, n, n->line, n->col};
        if (callee->body->n_results == 1) {
            result = kiln_clone_var(&c, callee->body->results[0]);
        } else {
            int k = callee->body->n_results;
            kiln_var *small[8], **items = KILN_SCRATCH(small, k);
            for (int i = 0; items && i < k; i++) items[i] = kiln_clone_var(&c, callee->body->results[i]);
            result = items ? kiln_build(&b, KILN_OP_TUPLE, k, items, NULL) : (kiln_error(ctx, KILN_ERR_OOM, "inline: out of memory"), NULL);
            kiln_scratch_free(items, small);
        }
    }
    free(c.map);
    return result;
}

/* Inlines the calls among nodes [from, to) of r and inside their regions; `stack` holds the
 * functions being inlined on this path (a call to one of them is recursion: left alone). */
static kiln_status inline_range(kiln_region *r, kiln_node *from, kiln_node *to, kiln_function **stack, int depth) {
    kiln_context *ctx = r->func->module->ctx;
    for (kiln_node *n = from; n != to;) {
        kiln_node *next = n->next;
        for (int k = 0; k < n->n_regions; k++)
            if (inline_range(n->regions[k], n->regions[k]->first, NULL, stack, depth)) return kiln_error_status(ctx);
        if (n->op == KILN_OP_CALL && !on_stack(n->callee, stack, depth) && depth < KILN_INLINE_DEPTH) {
            kiln_node *prev = n->prev;
            kiln_var *v = inline_call(r, n);
            if (!v) return kiln_error_status(ctx);
            kiln_replace_uses(r, next, n->out, v);
            kiln_region_remove(r, n);
            stack[depth] = n->callee;
            if (inline_range(r, prev ? prev->next : r->first, next, stack, depth + 1)) return kiln_error_status(ctx);
        }
        n = next;
    }
    r->func->liveness_ready = false;
    return KILN_OK;
}

kiln_status kiln_pass_inline(kiln_region *r) {
    kiln_function *stack[KILN_INLINE_DEPTH + 1] = {r->func};
    return inline_range(r, r->first, NULL, stack, 1);
}
