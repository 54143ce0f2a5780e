/* autodiff.c — reverse-mode automatic differentiation of an IR function: copy the forward
 * computation, inline calls, decompose composites, then walk the bindings backwards applying
 * each op's gradient rule (ops.def) and summing the adjoints of values used more than once.
 * An `if` is differentiated branch-wise: a backward `if` on the same condition recomputes the
 * taken branch and sweeps it, yielding the adjoints of the outer values the branches read. */
#include "passes/passes.h"
#include <stdlib.h>
#include <string.h>

typedef struct ad_state {
    kiln_function *g;
    bool *needs;      /* by var id: depends on the differentiated parameters */
    int cap;
} ad_state;

/* Adjoints by var id; grown as passes add variables. A tuple's adjoint may also have pending
 * parts: its elements' adjoints (NULL: zero, an array in the arena) gathered from the `get`s of
 * it, made into one tuple when it is read (adj_settle). Through the get's gradient rule, each
 * of n gets of an n-tuple would build an n-tuple: n^2 nodes for a wide while or call. */
typedef struct adj_map {
    kiln_var **v;
    kiln_var ***parts;
    int cap;
} adj_map;

static void adj_free(adj_map *am) {
    free(am->v);
    free(am->parts);
}

/* Grows `needs` (and `adj` when given) to the function's current variable count. */
static kiln_status ad_grow(ad_state *ad, adj_map *adj) {
    int n = ad->g->n_vars;
    kiln_context *ctx = ad->g->module->ctx;
    if (n > ad->cap) {
        bool *needs = realloc(ad->needs, sizeof *needs * (size_t)n);
        if (!needs) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
        memset(needs + ad->cap, 0, sizeof *needs * (size_t)(n - ad->cap));
        ad->needs = needs;
        ad->cap = n;
    }
    if (adj && n > adj->cap) {
        kiln_var **a = realloc(adj->v, sizeof *a * (size_t)n);
        if (a) adj->v = a;
        kiln_var ***p = a ? realloc(adj->parts, sizeof *p * (size_t)n) : NULL;
        if (!p) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
        adj->parts = p;
        memset(a + adj->cap, 0, sizeof *a * (size_t)(n - adj->cap));
        memset(p + adj->cap, 0, sizeof *p * (size_t)(n - adj->cap));
        adj->cap = n;
    }
    return KILN_OK;
}

static bool needed(const ad_state *ad, const kiln_var *v) {
    return v->kind != KILN_VAR_LITERAL && v->id < ad->cap && ad->needs[v->id];
}

/* Whether node n reads a value that depends on the differentiated parameters: through its
 * inputs, or from inside its regions (branches read outer values directly). */
static bool reads_needed(const ad_state *ad, const kiln_node *n) {
    for (int i = 0; i < n->n_in; i++)
        if (needed(ad, n->in[i])) return true;
    for (int k = 0; k < n->n_regions; k++) {
        const kiln_region *r = n->regions[k];
        for (const kiln_node *c = r->first; c; c = c->next)
            if (reads_needed(ad, c)) return true;
        for (int i = 0; i < r->n_results; i++)
            if (needed(ad, r->results[i])) return true;
    }
    return false;
}

/* Marks the results of r's nodes that depend on needed values (forward order). */
static void mark_needs(ad_state *ad, kiln_region *r) {
    for (kiln_node *n = r->first; n; n = n->next) {
        for (int k = 0; k < n->n_regions; k++) mark_needs(ad, n->regions[k]);
        if (reads_needed(ad, n) && n->out->id < ad->cap) ad->needs[n->out->id] = true;
    }
}

/* A zeroed array of n var pointers in m's arena. The lists below are as long as a node's operands
 * (up to KILN_MAX_VALUES) and the sweep recurses over nested regions: they stay off the stack. */
static kiln_var **ad_vars(kiln_module *m, int n) {
    kiln_var **a = kiln_arena_alloc(&m->arena, sizeof *a * (size_t)(n > 0 ? n : 1));
    if (!a) kiln_error(m->ctx, KILN_ERR_OOM, "autodiff: out of memory");
    return a;
}

/* A list of vars growing in the module's arena. */
typedef struct var_list {
    kiln_var **v;
    int n, cap;
} var_list;

static kiln_status var_list_push(kiln_module *m, var_list *l, kiln_var *v) {
    if (l->n == l->cap) {
        kiln_var **a = ad_vars(m, l->cap ? l->cap * 2 : 8);
        if (!a) return KILN_ERR_OOM;
        if (l->n) memcpy(a, l->v, sizeof *a * (size_t)l->n);
        l->v = a;
        l->cap = l->cap ? l->cap * 2 : 8;
    }
    l->v[l->n++] = v;
    return KILN_OK;
}

/* adj[v] += g (tuples elementwise). */
static kiln_status accumulate(kiln_builder *b, adj_map *am, kiln_var *v, kiln_var *g) {
    kiln_var **adj = am->v;
    if (v->kind == KILN_VAR_LITERAL || !g) return KILN_OK;
    kiln_var *old = adj[v->id];
    if (!old) {
        adj[v->id] = g;
        return KILN_OK;
    }
    if (v->type->kind == KILN_TYPE_TUPLE) {
        int n = v->type->n_elems;
        kiln_var **items = ad_vars(b->region->func->module, n);
        if (!items) return KILN_ERR_OOM;
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

/* The pending part `index` of tuple t's adjoint += g (scalar elements keep their first value,
 * as accumulate does). */
static kiln_status accumulate_part(kiln_builder *b, adj_map *am, kiln_var *t, int index, kiln_var *g) {
    kiln_module *m = b->region->func->module;
    if (!am->parts[t->id] && !(am->parts[t->id] = ad_vars(m, t->type->n_elems))) return KILN_ERR_OOM;
    kiln_var **p = &am->parts[t->id][index];
    *p = !*p ? g : kiln_type_is_tensor(t->type->elems[index]) ? kiln_build2(b, KILN_OP_ADD, *p, g) : *p;
    return *p ? KILN_OK : kiln_error_status(m->ctx);
}

/* Folds v's pending parts into its adjoint (as the get's gradient rule would: zeros for the
 * tensor elements without one, the value itself for the others). Call before reading adj[v]. */
static kiln_status adj_settle(kiln_builder *b, adj_map *am, kiln_var *v) {
    kiln_var **parts = v->kind == KILN_VAR_LITERAL || v->id >= am->cap ? NULL : am->parts[v->id];
    if (!parts) return KILN_OK;
    am->parts[v->id] = NULL;
    const kiln_type *t = v->type;
    kiln_module *m = b->region->func->module;
    kiln_var **items = ad_vars(m, t->n_elems);
    if (!items) return KILN_ERR_OOM;
    for (int i = 0; i < t->n_elems; i++) {
        if ((items[i] = parts[i])) continue;
        kiln_var *e = kiln_build(b, KILN_OP_GET, 1, &v, "index=%d", i);
        if (!(items[i] = e && kiln_type_is_tensor(t->elems[i]) ? kiln_grad_zeros(b, e) : e)) return kiln_error_status(m->ctx);
    }
    kiln_var *g = kiln_build(b, KILN_OP_TUPLE, t->n_elems, items, NULL);
    return g ? accumulate(b, am, v, g) : kiln_error_status(m->ctx);
}

static bool float_valued(const kiln_type *t) {
    if (t->kind == KILN_TYPE_TUPLE) {
        for (int i = 0; i < t->n_elems; i++)
            if (float_valued(t->elems[i])) return true;
        return false;
    }
    return t->kind == KILN_TYPE_TENSOR && kiln_dtype_is_float(t->dtype);
}

/* Outer values (defined outside node n) read inside n's regions that need a gradient, each
 * listed once. */
static kiln_status outer_reads(const ad_state *ad, const kiln_region *r, const kiln_node *owner, var_list *out) {
    for (const kiln_node *c = r->first; c; c = c->next) {
        for (int i = 0; i < c->n_in; i++) {
            kiln_var *v = c->in[i];
            if (!needed(ad, v) || !float_valued(v->type)) continue;
            bool inside = false; /* defined within owner's regions? */
            for (const kiln_node *d = v->def; d && !inside; d = d->parent->owner) inside = d == owner;
            bool seen = false;
            for (int k = 0; k < out->n; k++) seen |= out->v[k] == v;
            if (!inside && !seen && var_list_push(ad->g->module, out, v)) return KILN_ERR_OOM;
        }
        for (int k = 0; k < c->n_regions; k++)
            if (outer_reads(ad, c->regions[k], owner, out)) return KILN_ERR_OOM;
    }
    for (int i = 0; i < r->n_results; i++) {
        kiln_var *v = r->results[i];
        bool inside = false, seen = false;
        for (const kiln_node *d = v->kind == KILN_VAR_RESULT ? v->def : NULL; d && !inside; d = d->parent->owner) inside = d == owner;
        for (int k = 0; k < out->n; k++) seen |= out->v[k] == v;
        if (needed(ad, v) && float_valued(v->type) && !inside && !seen && var_list_push(ad->g->module, out, v)) return KILN_ERR_OOM;
    }
    return KILN_OK;
}

static kiln_status sweep(ad_state *ad, kiln_region *r, kiln_node *last, adj_map *adj);

/* The backward of `if` node n given its adjoint dy: a backward `if` whose branches recompute
 * the forward branch, sweep it from dy, and yield the adjoints of the outer values read. */
static kiln_status backward_if(ad_state *ad, kiln_builder *b, kiln_node *n, kiln_var *dy, adj_map *adj) {
    kiln_context *ctx = ad->g->module->ctx;
    var_list ol = {NULL, 0, 0};
    for (int k = 0; k < 2; k++)
        if (outer_reads(ad, n->regions[k], n, &ol)) return KILN_ERR_OOM;
    kiln_var **outer = ol.v;
    int n_outer = ol.n;
    if (!n_outer) return KILN_OK;
    kiln_node *bif = kiln_emit_if(b->region, n->in[0]);
    if (!bif) return kiln_error_status(ctx);
    for (int k = 0; k < 2; k++) {
        kiln_region *br = bif->regions[k];
        kiln_cloner c = {ad->g, calloc((size_t)ad->g->n_vars, sizeof(kiln_var *)), ad->g->n_vars};
        if (!c.map) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
        kiln_status s = kiln_clone_region_into(&c, n->regions[k], br, NULL, false);
        int nr = n->regions[k]->n_results;
        kiln_var **res = ad_vars(ad->g->module, nr), **ys = ad_vars(ad->g->module, n_outer);
        if (!res || !ys) s = KILN_ERR_OOM;
        for (int i = 0; i < nr && !s; i++) res[i] = kiln_clone_var(&c, n->regions[k]->results[i]);
        free(c.map);
        if (s || ad_grow(ad, NULL)) return kiln_error_status(ctx);
        mark_needs(ad, br);
        adj_map local = {NULL, NULL, 0};
        kiln_builder lb = {br, NULL, n->line, n->col};
        kiln_node *last = br->last;
        s = ad_grow(ad, &local);
        for (int i = 0; i < nr && !s; i++) {
            kiln_var *d = nr == 1 ? dy : kiln_build(&lb, KILN_OP_GET, 1, &dy, "index=%d", i);
            if (!d || ad_grow(ad, &local)) s = kiln_error_status(ctx);
            else s = accumulate(&lb, &local, res[i], d);
        }
        if (!s) s = sweep(ad, br, last, &local);
        if (!s) s = ad_grow(ad, &local);
        for (int i = 0; i < n_outer && !s; i++) {
            if ((s = adj_settle(&lb, &local, outer[i]))) break;
            kiln_var *a = local.v[outer[i]->id];
            ys[i] = a ? a : kiln_grad_zeros(&lb, outer[i]);
            if (!ys[i]) s = kiln_error_status(ctx);
        }
        adj_free(&local);
        if (s || kiln_region_yield(br, n_outer, ys)) return kiln_error_status(ctx);
    }
    kiln_var *res = kiln_node_result(bif);
    if (!res) return kiln_error_status(ctx);
    for (int i = 0; i < n_outer; i++) {
        kiln_var *g = n_outer == 1 ? res : kiln_build(b, KILN_OP_GET, 1, &res, "index=%d", i);
        if (ad_grow(ad, adj) || accumulate(b, adj, outer[i], g)) return kiln_error_status(ctx);
    }
    return KILN_OK;
}

/* ---- while loops ------------------------------------------------------------------------- */
/* Rewrites while node w (on the gradient path) so that it also carries a list of its loop
 * variables' values at the start of every iteration: while (vars..., saved = list_new(...)) with
 * the body pushing tuple(vars...) first. Uses of w's result are rewired; returns the new node. */
static kiln_node *save_iterations(ad_state *ad, kiln_node *w) {
    kiln_function *g = ad->g;
    kiln_context *ctx = g->module->ctx;
    kiln_region *r = w->parent;
    int k = w->n_loop;
    kiln_builder b = {r, w, w->line, w->col};
    kiln_var **init = ad_vars(g->module, k + 1), **next = ad_vars(g->module, k + 1), **parts = ad_vars(g->module, k);
    if (!init || !next || !parts) return NULL;
    for (int i = 0; i < k; i++) init[i] = w->in[i];
    kiln_var *example = kiln_build(&b, KILN_OP_TUPLE, k, init, NULL);
    if (!example || !(init[k] = kiln_build(&b, KILN_OP_LIST_NEW, 1, &example, NULL))) return NULL;
    int yielded = r->n_results; /* r may be a loop body that already yields: open it briefly */
    r->n_results = -1;
    kiln_node *w2 = kiln_emit_while(r, k + 1, init, NULL);
    r->n_results = yielded;
    if (!w2) return NULL;
    kiln_region_remove(r, w2); /* kiln_emit_while appends: put it where w is */
    kiln_region_insert_before(r, w, w2);
    w2->line = w->line, w2->col = w->col;
    kiln_cloner c = {g, calloc((size_t)g->n_vars, sizeof(kiln_var *)), g->n_vars};
    if (!c.map) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory"), NULL;
    for (int i = 0; i < k; i++) c.map[w->loop[i]->id] = w2->loop[i];
    kiln_builder bb = {w2->regions[1], NULL, w->line, w->col};
    kiln_var *state = kiln_build(&bb, KILN_OP_TUPLE, k, w2->loop, NULL);
    kiln_var *pushed = state ? kiln_build2(&bb, KILN_OP_LIST_PUSH, w2->loop[k], state) : NULL;
    kiln_status s = pushed ? kiln_clone_region_into(&c, w->regions[0], w2->regions[0], NULL, true) : KILN_ERR_OOM;
    if (!s) s = kiln_clone_region_into(&c, w->regions[1], w2->regions[1], NULL, false);
    for (int i = 0; i < k && !s; i++) next[i] = kiln_clone_var(&c, w->regions[1]->results[i]);
    free(c.map);
    next[k] = pushed;
    if (s || kiln_region_yield(w2->regions[1], k + 1, next) || !kiln_node_result(w2)) return NULL;
    /* the old result: the first k loop values of the new loop */
    b.before = w;
    kiln_var *res = w2->out, *old;
    for (int i = 0; i < k; i++)
        if (!(parts[i] = kiln_build(&b, KILN_OP_GET, 1, &res, "index=%d", i))) return NULL;
    old = k == 1 ? parts[0] : kiln_build(&b, KILN_OP_TUPLE, k, parts, NULL);
    if (!old) return NULL;
    kiln_replace_uses(r, w->next, w->out, old);
    kiln_region_remove(r, w);
    return w2;
}

/* Rewrites every while loop of r (inner ones first) that reads a needed value. */
static kiln_status save_all_iterations(ad_state *ad, kiln_region *r) {
    kiln_context *ctx = ad->g->module->ctx;
    for (kiln_node *n = r->first; n; n = n->next) {
        for (int k = 0; k < n->n_regions; k++)
            if (save_all_iterations(ad, n->regions[k])) return kiln_error_status(ctx);
        if (n->op == KILN_OP_WHILE && reads_needed(ad, n) && !(n = save_iterations(ad, n))) return kiln_error_status(ctx);
    }
    return KILN_OK;
}

/* The backward of a state-saving while w (see save_iterations) given its adjoint dy: a loop
 * that pops the saved states last first, recomputes one iteration of the body from each and
 * sweeps it, carrying the adjoints of the float loop variables and of the outer values read. */
static kiln_status backward_while(ad_state *ad, kiln_builder *b, kiln_node *w, kiln_var *dy, adj_map *adj) {
    kiln_function *g = ad->g;
    kiln_context *ctx = g->module->ctx;
    int k = w->n_loop - 1; /* the last loop variable is the saved-state list */
    int *fl = kiln_arena_alloc(&g->module->arena, sizeof *fl * (size_t)(k + 1)), nf = 0;
    if (!fl) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
    for (int i = 0; i < k; i++)
        if (float_valued(w->loop[i]->type) && w->loop[i]->type->kind == KILN_TYPE_TENSOR) fl[nf++] = i;
    var_list ol = {NULL, 0, 0};
    for (int r = 0; r < 2; r++)
        if (outer_reads(ad, w->regions[r], w, &ol)) return KILN_ERR_OOM;
    kiln_var **outer = ol.v;
    int n_outer = ol.n;
    /* loop variables of the backward loop: the float adjoints, the saved list, the outer adjoints */
    kiln_var **init = ad_vars(g->module, nf + 1 + n_outer), **next = ad_vars(g->module, nf + 1 + n_outer);
    kiln_var **state = ad_vars(g->module, k), **res = ad_vars(g->module, k);
    if (!init || !next || !state || !res) return KILN_ERR_OOM;
    int m = 0;
    for (int j = 0; j < nf; j++)
        if (!(init[m++] = kiln_build(b, KILN_OP_GET, 1, &dy, "index=%d", fl[j]))) return kiln_error_status(ctx);
    kiln_var *wres = w->out;
    if (!(init[m++] = kiln_build(b, KILN_OP_GET, 1, &wres, "index=%d", k))) return kiln_error_status(ctx);
    for (int j = 0; j < n_outer; j++)
        if (!(init[m++] = kiln_grad_zeros(b, outer[j]))) return kiln_error_status(ctx);
    kiln_node *bw = kiln_emit_while(b->region, m, init, NULL);
    if (!bw) return kiln_error_status(ctx);
    kiln_var **lv = bw->loop, *saved = lv[nf];
    /* cond: anything left to pop */
    kiln_builder cb = {bw->regions[0], NULL, w->line, w->col};
    kiln_var *len = kiln_build1(&cb, KILN_OP_LIST_LENGTH, saved);
    kiln_var *more = len ? kiln_build2(&cb, KILN_OP_GREATER, len, kiln_build_int(&cb, 0)) : NULL;
    if (!more || kiln_region_yield(bw->regions[0], 1, &more)) return kiln_error_status(ctx);
    /* body: pop a state, recompute the iteration from it, sweep it */
    kiln_region *body = bw->regions[1];
    kiln_builder lb = {body, NULL, w->line, w->col};
    kiln_var *popped = kiln_build1(&lb, KILN_OP_LIST_POP, saved);
    kiln_var *rest = popped ? kiln_build(&lb, KILN_OP_GET, 1, &popped, "index=0") : NULL;
    kiln_var *st = popped ? kiln_build(&lb, KILN_OP_GET, 1, &popped, "index=1") : NULL;
    if (!rest || !st) return kiln_error_status(ctx);
    kiln_cloner c = {g, calloc((size_t)g->n_vars, sizeof(kiln_var *)), g->n_vars};
    if (!c.map) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
    kiln_status s = KILN_OK;
    for (int i = 0; i < k && !s; i++) {
        state[i] = kiln_build(&lb, KILN_OP_GET, 1, &st, "index=%d", i);
        if (!state[i]) s = kiln_error_status(ctx);
        else c.map[w->loop[i]->id] = state[i];
    }
    /* the forward body without its list push: the nodes after the push, cloned */
    kiln_region *fb = w->regions[1];
    kiln_node *first_real = fb->first->next->next; /* tuple(state), list_push */
    kiln_region view = *fb;
    view.first = first_real;
    if (!s) s = kiln_clone_region_into(&c, &view, body, NULL, false);
    for (int i = 0; i < k && !s; i++) res[i] = kiln_clone_var(&c, fb->results[i]);
    free(c.map);
    if (s || ad_grow(ad, NULL)) return kiln_error_status(ctx);
    for (int j = 0; j < nf; j++) ad->needs[state[fl[j]]->id] = true;
    mark_needs(ad, body);
    adj_map local = {NULL, NULL, 0};
    kiln_node *last = body->last;
    s = ad_grow(ad, &local);
    for (int j = 0; j < nf && !s; j++) s = accumulate(&lb, &local, res[fl[j]], lv[j]);
    if (!s) s = sweep(ad, body, last, &local);
    if (!s) s = ad_grow(ad, &local);
    int q = 0;
    for (int j = 0; j < nf && !s; j++) {
        if ((s = adj_settle(&lb, &local, state[fl[j]]))) break;
        kiln_var *a = local.v[state[fl[j]]->id];
        if (!(next[q++] = a ? a : kiln_grad_zeros(&lb, state[fl[j]]))) s = kiln_error_status(ctx);
    }
    next[q++] = rest;
    for (int j = 0; j < n_outer && !s; j++) {
        if ((s = adj_settle(&lb, &local, outer[j]))) break;
        kiln_var *a = local.v[outer[j]->id], *acc = lv[nf + 1 + j];
        if (!(next[q++] = a ? kiln_build2(&lb, KILN_OP_ADD, acc, a) : acc)) s = kiln_error_status(ctx);
    }
    adj_free(&local);
    if (s || kiln_region_yield(body, q, next)) return kiln_error_status(ctx);
    kiln_var *out = kiln_node_result(bw);
    if (!out || ad_grow(ad, adj)) return kiln_error_status(ctx);
    /* adjoints of the initial values and of the outer values */
    for (int j = 0; j < nf; j++) {
        kiln_var *a = m == 1 ? out : kiln_build(b, KILN_OP_GET, 1, &out, "index=%d", j);
        if (!a || ad_grow(ad, adj) || (needed(ad, w->in[fl[j]]) && accumulate(b, adj, w->in[fl[j]], a))) return kiln_error_status(ctx);
    }
    for (int j = 0; j < n_outer; j++) {
        kiln_var *a = kiln_build(b, KILN_OP_GET, 1, &out, "index=%d", nf + 1 + j);
        if (!a || ad_grow(ad, adj) || accumulate(b, adj, outer[j], a)) return kiln_error_status(ctx);
    }
    return KILN_OK;
}

/* Walks r's bindings from `last` back to the first, turning adjoints of results into adjoints
 * of inputs; backward ops go to the end of r. */
static kiln_status sweep(ad_state *ad, kiln_region *r, kiln_node *last, adj_map *adj) {
    kiln_context *ctx = ad->g->module->ctx;
    kiln_builder b = {r, NULL, 0, 0};
    for (kiln_node *n = last; n; n = n->prev) {
        b.line = n->line, b.col = n->col;
        if (ad_grow(ad, adj) || adj_settle(&b, adj, n->out)) return kiln_error_status(ctx);
        kiln_var *dy = adj->v[n->out->id];
        if (!dy || !reads_needed(ad, n)) continue;
        const kiln_op_info *info = kiln_op_info_get(n->op);
        char where[256];
        if (n->op == KILN_OP_GET && n->in[0]->type->kind == KILN_TYPE_TUPLE) { /* see adj_map */
            if (needed(ad, n->in[0]) && (ad_grow(ad, adj) || accumulate_part(&b, adj, n->in[0], (int)n->attrs[0].i, dy)))
                return kiln_error_status(ctx);
            continue;
        }
        if (n->op == KILN_OP_IF || n->op == KILN_OP_WHILE) {
            if ((n->op == KILN_OP_IF ? backward_if : backward_while)(ad, &b, n, dy, adj)) return kiln_error_status(ctx);
            continue;
        }
        if (!info->grad) {
            if (n->op == KILN_OP_CALL)
                return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: call of @%s at %s: differentiating through recursive calls is not supported",
                                  n->callee->name, kiln_node_where(n, where, sizeof where));
            return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: op '%s' at %s %s", info->name, kiln_node_where(n, where, sizeof where),
                              info->flags & F_DIFF ? "has no gradient rule yet" : "is not differentiable, and a gradient flows through it");
        }
        kiln_var *din_s[8], **din = KILN_SCRATCH(din_s, n->n_in); /* heap when long: sweep recurses */
        if (!din) return kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
        kiln_status s = info->grad(&b, n, n->in, n->out, dy, din);
        if (s && !kiln_error_status(ctx))
            kiln_error(ctx, KILN_ERR_INTERNAL, "autodiff: gradient rule of '%s' at %s failed", info->name, kiln_node_where(n, where, sizeof where));
        if (!s) s = ad_grow(ad, adj);
        for (int i = 0; i < n->n_in && !s; i++)
            if (needed(ad, n->in[i])) s = accumulate(&b, adj, n->in[i], din[i]);
        kiln_scratch_free(din, din_s);
        if (s) return kiln_error_status(ctx);
    }
    return KILN_OK;
}

/* Composites with a gradient rule of their own (dense) stay whole through autodiff, so a
 * library can run them whole (a GEMM with its bias as the epilogue). */
static bool has_grad_rule(const kiln_node *n, void *arg) {
    (void)arg;
    return kiln_op_info_get(n->op)->grad != NULL;
}

kiln_function *kiln_autodiff(kiln_function *f, int n_wrt, const int *wrt, const char *name) {
    kiln_module *m = f->module;
    kiln_context *ctx = m->ctx;
    if (f->infer_state != 2 && kiln_module_infer(m)) return NULL;
    if (f->body->n_results < 1) {
        kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s returns nothing to differentiate", f->name);
        return NULL;
    }
    int n_res = f->body->n_results; /* the loss, then results passed through */
    if (n_wrt < 0 || n_wrt > KILN_MAX_VALUES - n_res) {
        kiln_error(ctx, KILN_ERR_UNSUPPORTED, "autodiff: %d parameters to differentiate and %d results (the result holds the "
                   "results and a gradient each: at most %d values)", n_wrt, n_res, KILN_MAX_VALUES);
        return NULL;
    }
    for (int i = 0; i < n_wrt; i++)
        if (wrt[i] < 0 || wrt[i] >= f->n_params || !float_valued(f->params[wrt[i]]->type)) {
            kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s: parameter %d is not a floating-point tensor of the function", f->name, wrt[i]);
            return NULL;
        }
    kiln_function *g = kiln_function_new(m, name);
    if (!g) return NULL;
    kiln_cloner c = {g, calloc((size_t)(f->n_vars ? f->n_vars : 1), sizeof(kiln_var *)), f->n_vars};
    ad_state ad = {g, NULL, 0};
    adj_map adj = {NULL, NULL, 0};
    kiln_function *result = NULL;
    char tb[256];
    if (!c.map) {
        kiln_error(ctx, KILN_ERR_OOM, "autodiff: out of memory");
        goto done;
    }
    for (int i = 0; i < f->n_params; i++)
        if (!(c.map[f->params[i]->id] = kiln_function_param(g, f->params[i]->name, (kiln_type *)f->params[i]->type))) goto done;
    /* the forward part, yielding f's results for now so that the passes keep them current */
    if (kiln_clone_region_into(&c, f->body, g->body, NULL, true) || kiln_pass_inline(g->body) || kiln_pass_decompose_except(g->body, has_grad_rule, NULL))
        goto done;
    kiln_var *loss = g->body->results[0];
    if (!kiln_type_is_tensor(loss->type) || !kiln_dtype_is_float(loss->type->dtype)) {
        kiln_error(ctx, KILN_ERR_TYPE, "autodiff: @%s: the value to differentiate (its first result) must be a floating-point tensor, not %s",
                   f->name, kiln_type_cstr(loss->type, tb, sizeof tb));
        goto done;
    }
    if (ad_grow(&ad, &adj)) goto done;
    for (int i = 0; i < n_wrt; i++) ad.needs[g->params[wrt[i]]->id] = true;
    mark_needs(&ad, g->body);
    if (save_all_iterations(&ad, g->body) || ad_grow(&ad, &adj)) goto done;
    mark_needs(&ad, g->body);
    /* f's results stayed yielded through the rewrites above, which kept them current. The
     * results after the first (e.g. batch-norm running statistics) pass through: the sweep
     * starts from the loss alone, so no gradient flows from them. */
    kiln_var **outs = ad_vars(m, n_wrt + n_res);
    if (!outs) goto done;
    loss = outs[0] = g->body->results[0];
    memcpy(outs + 1 + n_wrt, g->body->results + 1, sizeof *outs * (size_t)(n_res - 1));
    g->body->n_results = -1;
    kiln_node *last_forward = g->body->last;
    kiln_builder b = {g->body, NULL, 0, 0};
    if (!(adj.v[loss->id] = kiln_build(&b, KILN_OP_ONES_LIKE, 1, &loss, NULL))) goto done;
    if (sweep(&ad, g->body, last_forward, &adj) || ad_grow(&ad, &adj)) goto done;
    for (int i = 0; i < n_wrt; i++) {
        kiln_var *p = g->params[wrt[i]];
        if (adj_settle(&b, &adj, p) || !(outs[1 + i] = adj.v[p->id] ? adj.v[p->id] : kiln_grad_zeros(&b, p))) goto done;
    }
    if (kiln_region_yield(g->body, n_wrt + n_res, outs) || kiln_pass_dce(g->body)) goto done;
    g->infer_state = 0;
    if (kiln_module_infer(m)) goto done;
    result = g;
done:
    if (!result) kiln_module_drop_function(m, g);
    free(c.map);
    adj_free(&adj);
    free(ad.needs);
    return result;
}
