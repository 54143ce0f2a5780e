/* verify.c — the IR verifier: structure (links, arity, regions, if / while / call shape),
 * scoping (every use after its definition, in the same or an enclosing region) and types
 * (present, and equal to what each op's rule infers again). Never changes the IR's meaning. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>

enum { UNDEFINED, LIVE, ENDED }; /* state of a variable during the walk */

typedef struct verifier {
    kiln_module *m;
    kiln_function *f;
    unsigned char *state; /* by var id */
    int node_index;       /* nodes of f seen so far */
    int at;               /* index of the node being checked, for messages */
} verifier;

/* "verify: @f: <msg>", or with a node: "verify: @f: node 3 'add' (result %a) at f.kir:2:5: <msg>". */
static kiln_status fail(verifier *vf, const kiln_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static kiln_status fail(verifier *vf, const kiln_node *n, const char *fmt, ...) {
    char msg[2048], head[512] = "", where[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) {
        const char *name = n->out && n->out->name ? n->out->name : NULL;
        char result[128];
        if (name) snprintf(result, sizeof result, "%%%.80s", name);
        else snprintf(result, sizeof result, "id %d", n->out ? n->out->id : -1);
        snprintf(head, sizeof head, "node %d '%s' (result %s)", vf->at, kiln_op_info_get(n->op)->name, result);
        if (n->line > 0 && n->parent && n->parent->func)
            snprintf(head + strlen(head), sizeof head - strlen(head), " at %s", kiln_node_where(n, where, sizeof where));
        strcat(head, ": ");
    }
    return kiln_error(vf->m->ctx, KILN_ERR_TYPE, "verify: @%s: %s%s", vf->f->name, head, msg);
}

/* `v` (`what`: "input 1", "yield value 0") is usable here: a literal, or a variable of this
 * function that is defined and whose region is still open. */
static kiln_status check_use(verifier *vf, const kiln_node *n, const kiln_var *v, const char *what) {
    if (!v) return fail(vf, n, "%s is NULL", what);
    if (v->kind == KILN_VAR_LITERAL) {
        if (!kiln_type_is_scalar(v->type)) return fail(vf, n, "%s is a literal without a scalar type", what);
        return KILN_OK;
    }
    if (v->func != vf->f || v->id < 0 || v->id >= vf->f->n_vars)
        return fail(vf, n, "%s belongs to another function", what);
    if (!v->type) return fail(vf, n, "%s has no type", what);
    if (vf->state[v->id] == UNDEFINED) return fail(vf, n, "%s is used before it is defined", what);
    if (vf->state[v->id] == ENDED) return fail(vf, n, "%s is used outside the region that defines it", what);
    return KILN_OK;
}

/* `v` is defined here (a node's result, a loop variable). */
static kiln_status define(verifier *vf, const kiln_node *n, kiln_var *v, kiln_var_kind kind, const char *what) {
    if (!v) return fail(vf, n, "%s is NULL", what);
    if (v->kind != kind || v->def != n) return fail(vf, n, "%s is not linked back to this node", what);
    if (v->func != vf->f || v->id < 0 || v->id >= vf->f->n_vars) return fail(vf, n, "%s belongs to another function", what);
    if (vf->state[v->id] != UNDEFINED) return fail(vf, n, "%s is defined twice", what);
    vf->state[v->id] = LIVE;
    return KILN_OK;
}

/* Whether a region's yield has type t (one value: itself; several: a tuple of them). */
static bool yields_type(const kiln_region *r, const kiln_type *t) {
    if (r->n_results == 1) return kiln_type_equal(r->results[0]->type, t);
    if (!t || t->kind != KILN_TYPE_TUPLE || t->n_elems != r->n_results) return false;
    for (int i = 0; i < r->n_results; i++)
        if (!kiln_type_equal(r->results[i]->type, t->elems[i])) return false;
    return true;
}

static bool is_bool_scalar(const kiln_type *t) {
    return t && t->dtype == KILN_BOOL && (t->kind == KILN_TYPE_SCALAR || (t->kind == KILN_TYPE_TENSOR && t->ndim == 0));
}

static kiln_status verify_region(verifier *vf, kiln_region *r, kiln_node *owner);

/* Arity, links and regions of node n, by kind of op. */
static kiln_status verify_structure(verifier *vf, kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    int want_regions = n->op == KILN_OP_IF || n->op == KILN_OP_WHILE ? 2 : 0;
    if (n->n_regions != want_regions) return fail(vf, n, "has %d regions, expected %d", n->n_regions, want_regions);
    if ((n->op == KILN_OP_CALL) != (n->callee != NULL)) return fail(vf, n, n->callee ? "a callee on a non-call" : "call without a callee");
    if (n->op != KILN_OP_WHILE && n->n_loop) return fail(vf, n, "loop variables on a non-while node");
    if (n->op == KILN_OP_CALL) {
        bool listed = false;
        for (int i = 0; i < vf->m->n_funcs && !listed; i++) listed = vf->m->funcs[i] == n->callee;
        if (!listed) return fail(vf, n, "callee @%s is not a function of this module", n->callee->name);
        if (n->n_in != n->callee->n_params)
            return fail(vf, n, "@%s takes %d arguments, got %d", n->callee->name, n->callee->n_params, n->n_in);
    } else if (n->op == KILN_OP_WHILE) {
        if (n->n_in != n->n_loop) return fail(vf, n, "%d initial values for %d loop variables", n->n_in, n->n_loop);
    } else if (n->n_in < info->nin_min || (info->nin_max >= 0 && n->n_in > info->nin_max)) {
        return fail(vf, n, "has %d inputs; the op table allows %d to %d", n->n_in, info->nin_min, info->nin_max);
    }
    if (info->n_attrs && !n->attrs) return fail(vf, n, "has no attributes array");
    for (int i = 0; i < info->n_attrs; i++)
        if (info->attrs[i].required && !n->attrs[i].set) return fail(vf, n, "attribute '%s' is missing", info->attrs[i].name);
    for (int i = 0; i < want_regions; i++)
        if (!n->regions[i] || n->regions[i]->owner != n) return fail(vf, n, "region %d is missing or not owned by the node", i);
    return KILN_OK;
}

/* The node's result type against its inputs: structural for if / while / call, else the op's
 * shape rule run again (the rule's own error, if it fails, is reported). */
static kiln_status verify_type(verifier *vf, kiln_node *n) {
    char a[256], b[256], c[256];
    const kiln_type *t = n->out->type;
    if (n->op == KILN_OP_IF) {
        if (!is_bool_scalar(n->in[0]->type)) return fail(vf, n, "condition is %s, not bool", kiln_type_cstr(n->in[0]->type, a, sizeof a));
        for (int i = 0; i < 2; i++)
            if (!t || !yields_type(n->regions[i], t))
                return fail(vf, n, "%s branch does not yield the node's type %s", i ? "else" : "then", kiln_type_cstr(t, a, sizeof a));
        return KILN_OK;
    }
    if (n->op == KILN_OP_WHILE) {
        kiln_region *cond = n->regions[0], *body = n->regions[1];
        if (cond->n_results != 1 || !is_bool_scalar(cond->results[0]->type))
            return fail(vf, n, "cond region must yield one bool");
        if (body->n_results != n->n_loop)
            return fail(vf, n, "body yields %d values for %d loop variables", body->n_results, n->n_loop);
        for (int i = 0; i < n->n_loop; i++)
            if (!kiln_type_equal(n->loop[i]->type, n->in[i]->type) || !kiln_type_equal(body->results[i]->type, n->in[i]->type))
                return fail(vf, n, "loop variable %d is %s but starts as %s and the body yields %s", i,
                            kiln_type_cstr(n->loop[i]->type, a, sizeof a), kiln_type_cstr(n->in[i]->type, b, sizeof b),
                            kiln_type_cstr(body->results[i]->type, c, sizeof c));
        if (!t || !yields_type(body, t)) return fail(vf, n, "result type %s is not that of the loop variables", kiln_type_cstr(t, a, sizeof a));
        return KILN_OK;
    }
    if (n->op == KILN_OP_CALL) {
        const kiln_function *g = n->callee;
        for (int i = 0; i < n->n_in; i++)
            if (!kiln_type_equal(n->in[i]->type, g->params[i]->type))
                return fail(vf, n, "argument %d is %s, @%s takes %s", i, kiln_type_cstr(n->in[i]->type, a, sizeof a), g->name,
                            kiln_type_cstr(g->params[i]->type, b, sizeof b));
        const kiln_type *rt = g->ret ? g->ret : g->declared_ret;
        if (!t || !kiln_type_equal(rt, t))
            return fail(vf, n, "result is %s but @%s returns %s", kiln_type_cstr(t, a, sizeof a), g->name, kiln_type_cstr(rt, b, sizeof b));
        return KILN_OK;
    }
    kiln_var *out = n->out;
    const kiln_type *saved = out->type;
    if (!saved) return fail(vf, n, "the result has no type");
    kiln_status s = kiln_node_infer(n); /* sets out->type: put the recorded type back */
    const kiln_type *again = out->type;
    out->type = saved;
    if (s) return fail(vf, n, "type inference fails: %s", kiln_error_message(vf->m->ctx));
    if (!kiln_type_equal(saved, again))
        return fail(vf, n, "has type %s but its inputs give %s", kiln_type_cstr(saved, a, sizeof a), kiln_type_cstr(again, b, sizeof b));
    return KILN_OK;
}

static kiln_status verify_node(verifier *vf, kiln_node *n) {
    char what[48];
    int index = vf->at = ++vf->node_index;
    if (!n->out) return fail(vf, n, "has no result variable");
    if (verify_structure(vf, n)) return KILN_ERR_TYPE;
    for (int i = 0; i < n->n_in; i++) {
        snprintf(what, sizeof what, "input %d", i);
        if (check_use(vf, n, n->in[i], what)) return KILN_ERR_TYPE;
    }
    for (int i = 0; i < n->n_loop; i++) {
        snprintf(what, sizeof what, "loop variable %d", i);
        if (define(vf, n, n->loop[i], KILN_VAR_LOOP, what)) return KILN_ERR_TYPE;
        if (n->loop[i]->index != i) return fail(vf, n, "loop variable %d has index %d", i, n->loop[i]->index);
    }
    for (int i = 0; i < n->n_regions; i++)
        if (verify_region(vf, n->regions[i], n)) return KILN_ERR_TYPE;
    vf->at = index;
    for (int i = 0; i < n->n_loop; i++) vf->state[n->loop[i]->id] = ENDED;
    if (define(vf, n, n->out, KILN_VAR_RESULT, "the result")) return KILN_ERR_TYPE;
    return verify_type(vf, n);
}

/* Nodes in order (linked both ways, parented here), then the yield; a nested region's
 * variables end with it. */
static kiln_status verify_region(verifier *vf, kiln_region *r, kiln_node *owner) {
    char what[48];
    if (!r) return fail(vf, owner, "a region is NULL");
    if (r->func != vf->f || r->owner != owner) return fail(vf, owner, "a region is not linked to its owner");
    const kiln_node *prev = NULL;
    int owner_at = vf->at;
    for (kiln_node *n = r->first; n; prev = n, n = n->next) {
        if (n->parent != r || n->prev != prev) return fail(vf, n, "the node list of its region is broken");
        if (verify_node(vf, n)) return KILN_ERR_TYPE;
    }
    vf->at = owner_at;
    if (r->last != prev) return fail(vf, owner, "a region's last node is not the end of its list");
    if (r->n_results < 0)
        return owner ? fail(vf, owner, "region %d does not end in yield", r == owner->regions[1]) : fail(vf, NULL, "the body has no return");
    for (int i = 0; i < r->n_results; i++) {
        snprintf(what, sizeof what, "%s value %d", owner ? "yield" : "return", i);
        if (check_use(vf, owner, r->results[i], what)) return KILN_ERR_TYPE;
    }
    if (owner)
        for (const kiln_node *n = r->first; n; n = n->next) vf->state[n->out->id] = ENDED;
    return KILN_OK;
}

static kiln_status verify_function(verifier *vf) {
    kiln_function *f = vf->f;
    char a[256], b[256];
    for (int i = 0; i < f->n_params; i++) {
        const kiln_var *v = f->params[i];
        if (!v || v->kind != KILN_VAR_PARAM || v->func != f || v->index != i || v->id < 0 || v->id >= f->n_vars)
            return fail(vf, NULL, "parameter %d is malformed", i);
        if (!v->type) return fail(vf, NULL, "parameter %d has no type", i);
        vf->state[v->id] = LIVE;
    }
    if (!f->body || f->body->owner) return fail(vf, NULL, "the body region is missing or has an owner");
    if (verify_region(vf, f->body, NULL)) return KILN_ERR_TYPE;
    const kiln_type *rt = f->ret ? f->ret : f->declared_ret;
    if (rt && !yields_type(f->body, rt))
        return fail(vf, NULL, "returns values that do not have its return type %s", kiln_type_cstr(rt, a, sizeof a));
    if (f->ret && f->declared_ret && !kiln_type_equal(f->ret, f->declared_ret))
        return fail(vf, NULL, "is declared to return %s but returns %s", kiln_type_cstr(f->declared_ret, a, sizeof a),
                    kiln_type_cstr(f->ret, b, sizeof b));
    return KILN_OK;
}

kiln_status kiln_module_verify(kiln_module *m) {
    for (int i = 0; i < m->n_funcs; i++) {
        verifier vf = {m, m->funcs[i], calloc((size_t)(m->funcs[i]->n_vars ? m->funcs[i]->n_vars : 1), 1), 0, 0};
        if (!vf.state) return kiln_error(m->ctx, KILN_ERR_OOM, "out of memory verifying @%s", vf.f->name);
        kiln_status s = verify_function(&vf);
        free(vf.state);
        if (s) return s;
    }
    return KILN_OK;
}
