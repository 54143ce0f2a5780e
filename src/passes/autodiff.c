/* autodiff.c — reverse-mode automatic differentiation of an IR function: clone the forward
 * computation, decompose composites, then walk the bindings backwards applying each op's
 * gradient rule (ops.def) and summing adjoints of values used more than once. */
#include "passes/passes.h"
#include <stdlib.h>
#include <string.h>

typedef struct clone_state {
    kiln_function *dst;
    kiln_var **map; /* by source var id */
} clone_state;

static kiln_var *mapped(clone_state *cs, kiln_var *v) { return v->kind == KILN_VAR_LITERAL ? v : cs->map[v->id]; }

static kiln_status clone_region(clone_state *cs, const kiln_region *src, kiln_region *dst);

/* Copies node n (with nested regions) to the end of dst. */
static kiln_status clone_node(clone_state *cs, const kiln_node *n, kiln_region *dst) {
    kiln_context *ctx = cs->dst->module->ctx;
    kiln_var *in[256];
    if (n->n_in > 256) return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: more than 256 inputs");
    for (int i = 0; i < n->n_in; i++) in[i] = mapped(cs, n->in[i]);
    kiln_node *c = kiln_node_new(dst, n->op, n->n_in, in);
    if (!c) return kiln_error_status(ctx);
    memcpy(c->attrs, n->attrs, sizeof *c->attrs * (size_t)kiln_op_info_get(n->op)->n_attrs);
    c->callee = n->callee;
    c->line = n->line, c->col = n->col;
    c->out->type = n->out->type;
    c->out->name = n->out->name;
    cs->map[n->out->id] = c->out;
    if (n->n_loop) {
        c->n_loop = n->n_loop;
        c->loop = kiln_arena_alloc(&cs->dst->module->arena, sizeof *c->loop * (size_t)n->n_loop);
        if (!c->loop) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        for (int i = 0; i < n->n_loop; i++) {
            if (!(c->loop[i] = kiln_var_new(cs->dst, KILN_VAR_LOOP, n->loop[i]->name))) return kiln_error_status(ctx);
            c->loop[i]->def = c, c->loop[i]->index = i, c->loop[i]->type = n->loop[i]->type;
            cs->map[n->loop[i]->id] = c->loop[i];
        }
    }
    c->n_regions = n->n_regions;
    for (int k = 0; k < n->n_regions; k++)
        if (!(c->regions[k] = kiln_region_new(cs->dst, c)) || clone_region(cs, n->regions[k], c->regions[k]))
            return kiln_error_status(ctx);
    kiln_region_append(dst, c);
    return KILN_OK;
}

static kiln_status clone_region(clone_state *cs, const kiln_region *src, kiln_region *dst) {
    for (const kiln_node *n = src->first; n; n = n->next)
        if (clone_node(cs, n, dst)) return kiln_error_status(cs->dst->module->ctx);
    if (src->n_results < 0) return KILN_OK;
    kiln_var *res[256];
    if (src->n_results > 256) return kiln_error(cs->dst->module->ctx, KILN_ERR_UNSUPPORTED, "autodiff: more than 256 results");
    for (int i = 0; i < src->n_results; i++) res[i] = mapped(cs, src->results[i]);
    return kiln_region_yield(dst, src->n_results, res);
}

/* adj[v] += g (tuples elementwise). */
static kiln_status accumulate(kiln_builder *b, kiln_var **adj, kiln_var *v, kiln_var *g) {
    if (v->kind == KILN_VAR_LITERAL || !g) return KILN_OK;
    kiln_var *old = adj[v->id];
    if (!old) {
        adj[v->id] = g;
        return KILN_OK;
    }
    if (v->type->kind == KILN_TYPE_TUPLE) {
        kiln_var *items[256];
        int n = v->type->n_elems;
        if (n > 256) return kiln_error(b->region->func->module->ctx, KILN_ERR_UNSUPPORTED, "autodiff: tuple of more than 256");
        for (int i = 0; i < n; i++) {
            kiln_var *x = kiln_build(b, KILN_OP_GET, 1, &old, "index=%d", i), *y = kiln_build(b, KILN_OP_GET, 1, &g, "index=%d", i);
            items[i] = kiln_type_is_tensor(v->type->elems[i]) ? kiln_build2(b, KILN_OP_ADD, x, y) : x;
        }
        adj[v->id] = kiln_build(b, KILN_OP_TUPLE, n, items, NULL);
    } else {
        adj[v->id] = kiln_build2(b, KILN_OP_ADD, old, g);
    }
    return adj[v->id] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

static bool float_valued(const kiln_type *t) {
    if (t->kind == KILN_TYPE_TUPLE) {
        for (int i = 0; i < t->n_elems; i++)
            if (float_valued(t->elems[i])) return true;
        return false;
    }
    return t->kind == KILN_TYPE_TENSOR && kiln_dtype_is_float(t->dtype);
}

/* Whether node n reads a value that depends on the differentiated parameters: through its
 * inputs, or from inside its regions (if / while bodies read outer values directly). */
static bool reads_needed(const kiln_node *n, const bool *needs) {
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->kind != KILN_VAR_LITERAL && needs[n->in[i]->id]) return true;
    for (int k = 0; k < n->n_regions; k++) {
        const kiln_region *r = n->regions[k];
        for (const kiln_node *c = r->first; c; c = c->next)
            if (reads_needed(c, needs)) return true;
        for (int i = 0; i < r->n_results; i++)
            if (r->results[i]->kind != KILN_VAR_LITERAL && needs[r->results[i]->id]) return true;
    }
    return false;
}

static kiln_status backward(kiln_function *g, kiln_node *last_forward, kiln_var *loss, bool *needs, kiln_var **adj) {
    kiln_context *ctx = g->module->ctx;
    kiln_builder b = {g->body, NULL, 0, 0};
    adj[loss->id] = kiln_build(&b, KILN_OP_ONES_LIKE, 1, &loss, NULL);
    if (!adj[loss->id]) return kiln_error_status(ctx);
    for (kiln_node *n = last_forward; n; n = n->prev) {
        kiln_var *dy = adj[n->out->id];
        if (!dy || !reads_needed(n, needs)) continue;
        const kiln_op_info *info = kiln_op_info_get(n->op);
        char where[256];
        if (!info->grad) {
            if (n->n_regions || n->op == KILN_OP_CALL)
                return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: op '%s' at %s: differentiating through control flow and calls is not supported yet",
                                  info->name, kiln_node_where(n, where, sizeof where));
            return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: op '%s' at %s %s",
                              info->name, kiln_node_where(n, where, sizeof where),
                              info->flags & F_DIFF ? "has no gradient rule yet" : "is not differentiable, and a gradient flows through it");
        }
        b.line = n->line, b.col = n->col;
        kiln_var *din[256] = {0};
        if (info->grad(&b, n, n->in, n->out, dy, din)) {
            return kiln_error_status(ctx) ? kiln_error_status(ctx)
                                          : kiln_error(ctx, KILN_ERR_INTERNAL, "autodiff: gradient rule of '%s' at %s failed",
                                                       info->name, kiln_node_where(n, where, sizeof where));
        }
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL && needs[n->in[i]->id] && accumulate(&b, adj, n->in[i], din[i]))
                return kiln_error_status(ctx);
    }
    return KILN_OK;
}

kiln_function *kiln_autodiff(kiln_function *f, int n_wrt, const int *wrt, const char *name) {
    kiln_module *m = f->module;
    kiln_context *ctx = m->ctx;
    if (f->infer_state != 2 && kiln_module_infer(m)) return NULL;
    if (f->body->n_results < 1) {
        kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s returns nothing to differentiate", f->name);
        return NULL;
    }
    for (int i = 0; i < n_wrt; i++)
        if (wrt[i] < 0 || wrt[i] >= f->n_params || !float_valued(f->params[wrt[i]]->type)) {
            kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s: parameter %d is not a floating-point tensor of the function", f->name, wrt[i]);
            return NULL;
        }
    kiln_function *g = kiln_function_new(m, name);
    if (!g) return NULL;
    clone_state cs = {g, calloc((size_t)(f->n_vars ? f->n_vars : 1), sizeof(kiln_var *))};
    kiln_var **adj = NULL;
    bool *needs = NULL;
    kiln_function *result = NULL;
    if (!cs.map) goto oom;
    for (int i = 0; i < f->n_params; i++)
        if (!(cs.map[f->params[i]->id] = kiln_function_param(g, f->params[i]->name, (kiln_type *)f->params[i]->type))) goto done;
    /* the forward part, yielding f's results for now so that decomposition keeps them current */
    if (clone_region(&cs, f->body, g->body) || kiln_pass_decompose(g->body)) goto done;
    kiln_var *loss = g->body->results[0];
    g->body->n_results = -1;
    char tb[256];
    if (!kiln_type_is_tensor(loss->type) || !kiln_dtype_is_float(loss->type->dtype)) {
        kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s: the value to differentiate (its first result) must be a floating-point tensor, not %s",
                   f->name, kiln_type_cstr(loss->type, tb, sizeof tb));
        goto done;
    }
    kiln_node *last_forward = g->body->last;
    /* which values depend on the chosen parameters (ids of g, decomposition included) */
    needs = calloc((size_t)g->n_vars, sizeof *needs);
    adj = calloc((size_t)g->n_vars, sizeof *adj);
    if (!needs || !adj) goto oom;
    for (int i = 0; i < n_wrt; i++) needs[g->params[wrt[i]]->id] = true;
    for (kiln_node *n = g->body->first; n; n = n->next)
        if (reads_needed(n, needs)) needs[n->out->id] = true;
    if (backward(g, last_forward, loss, needs, adj)) goto done;
    kiln_var *outs[257];
    if (n_wrt > 256) {
        kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: more than 256 parameters");
        goto done;
    }
    kiln_builder b = {g->body, NULL, 0, 0};
    outs[0] = loss;
    for (int i = 0; i < n_wrt; i++) {
        kiln_var *p = g->params[wrt[i]];
        outs[1 + i] = adj[p->id] ? adj[p->id] : kiln_grad_zeros(&b, p);
        if (!outs[1 + i]) goto done;
    }
    if (kiln_region_yield(g->body, 1 + n_wrt, outs)) goto done;
    g->infer_state = 0;
    if (kiln_module_infer(m)) goto done;
    result = g;
    goto done;
oom:
    kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
done:
    if (!result) kiln_module_drop_function(m, g);
    free(cs.map);
    free(adj);
    free(needs);
    return result;
}
