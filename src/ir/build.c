/* build.c — creating IR (modules, functions, variables, nodes, regions), the public builder
 * API, and type inference: each node through its op's shape rule, control flow structurally. */
#include "ir/lexer.h"
#include <stdlib.h>
#include <string.h>

#define OOM_NULL(ctx) (kiln_error((ctx), KILN_ERR_OOM, "out of memory building IR"), NULL)

void *kiln_scratch(void *stack, size_t stack_size, size_t n, size_t elem_size) {
    if (n * elem_size <= stack_size) return memset(stack, 0, n * elem_size);
    return calloc(n, elem_size);
}

void kiln_scratch_free(void *p, const void *stack) {
    if (p != stack) free(p);
}

kiln_module *kiln_module_new(kiln_context *ctx) {
    kiln_module *m = calloc(1, sizeof *m);
    if (!m) return OOM_NULL(ctx);
    m->ctx = ctx;
    kiln_arena_init(&m->arena);
    return m;
}

void kiln_module_free(kiln_module *m) {
    if (!m) return;
    kiln_arena_free(&m->arena);
    free(m->funcs);
    free(m);
}

kiln_context *kiln_module_context(const kiln_module *m) { return m->ctx; }
int kiln_module_function_count(const kiln_module *m) { return m->n_funcs; }
kiln_function *kiln_module_function_at(const kiln_module *m, int i) {
    return i >= 0 && i < m->n_funcs ? m->funcs[i] : NULL;
}

kiln_function *kiln_module_function(const kiln_module *m, const char *name) {
    for (int i = 0; i < m->n_funcs; i++)
        if (!strcmp(m->funcs[i]->name, name)) return m->funcs[i];
    return NULL;
}

kiln_region *kiln_region_new(kiln_function *f, kiln_node *owner) {
    kiln_region *r = kiln_arena_alloc(&f->module->arena, sizeof *r);
    if (!r) return OOM_NULL(f->module->ctx);
    r->func = f;
    r->owner = owner;
    r->n_results = -1;
    return r;
}

kiln_function *kiln_function_detached(kiln_module *m, const char *name) {
    kiln_function *f = kiln_arena_alloc(&m->arena, sizeof *f);
    if (!f || !(f->name = kiln_arena_strdup(&m->arena, name))) return OOM_NULL(m->ctx);
    f->module = m;
    if (!(f->body = kiln_region_new(f, NULL))) return NULL;
    return f;
}

void kiln_module_drop_function(kiln_module *m, kiln_function *f) {
    for (int i = 0; i < m->n_funcs; i++)
        if (m->funcs[i] == f) {
            memmove(&m->funcs[i], &m->funcs[i + 1], sizeof *m->funcs * (size_t)(m->n_funcs - i - 1));
            m->n_funcs--;
            return;
        }
}

kiln_function *kiln_function_new(kiln_module *m, const char *name) {
    if (!name || !*name) {
        kiln_error(m->ctx, KILN_ERR_TYPE, "a function needs a name");
        return NULL;
    }
    if (kiln_module_function(m, name)) {
        kiln_error(m->ctx, KILN_ERR_TYPE, "function @%s is defined twice", name);
        return NULL;
    }
    if (m->n_funcs == m->cap_funcs) {
        int cap = m->cap_funcs ? m->cap_funcs * 2 : 8;
        kiln_function **fs = realloc(m->funcs, sizeof *fs * (size_t)cap);
        if (!fs) return OOM_NULL(m->ctx);
        m->funcs = fs;
        m->cap_funcs = cap;
    }
    kiln_function *f = kiln_function_detached(m, name);
    if (!f) return NULL;
    m->funcs[m->n_funcs++] = f;
    return f;
}

kiln_var *kiln_var_new(kiln_function *f, kiln_var_kind kind, const char *name) {
    kiln_var *v = kiln_arena_alloc(&f->module->arena, sizeof *v);
    if (!v) return OOM_NULL(f->module->ctx);
    v->kind = kind;
    v->func = f;
    v->id = f->n_vars++;
    if (name && !(v->name = kiln_arena_strdup(&f->module->arena, name))) return OOM_NULL(f->module->ctx);
    return v;
}

kiln_var *kiln_function_param(kiln_function *f, const char *name, kiln_type *type) {
    if (!f) return NULL;
    if (!type) {
        kiln_error(f->module->ctx, KILN_ERR_TYPE, "parameter %%%s of @%s has no type", name ? name : "?", f->name);
        return NULL;
    }
    if (f->n_params == KILN_MAX_VALUES) {
        kiln_error(f->module->ctx, KILN_ERR_UNSUPPORTED, "@%s: more than %d parameters", f->name, KILN_MAX_VALUES);
        return NULL;
    }
    if (f->n_params == f->cap_params) {
        int cap = f->cap_params ? f->cap_params * 2 : 8;
        kiln_var **ps = kiln_arena_alloc(&f->module->arena, sizeof *ps * (size_t)cap);
        if (!ps) return OOM_NULL(f->module->ctx);
        if (f->n_params) memcpy(ps, f->params, sizeof *ps * (size_t)f->n_params);
        f->params = ps;
        f->cap_params = cap;
    }
    kiln_var *v = kiln_var_new(f, KILN_VAR_PARAM, name);
    if (!v) return NULL;
    v->type = type;
    v->index = f->n_params;
    f->params[f->n_params++] = v;
    f->infer_state = 0;
    return v;
}

kiln_region *kiln_function_body(kiln_function *f) { return f ? f->body : NULL; }
const char *kiln_function_name(const kiln_function *f) { return f->name; }
int kiln_function_param_count(const kiln_function *f) { return f->n_params; }
const kiln_type *kiln_function_param_type(const kiln_function *f, int i) {
    return i >= 0 && i < f->n_params ? f->params[i]->type : NULL;
}
const kiln_type *kiln_function_return_type(const kiln_function *f) { return f->ret ? f->ret : f->declared_ret; }

static kiln_var *literal(kiln_module *m, kiln_dtype dt) {
    kiln_var *v = kiln_arena_alloc(&m->arena, sizeof *v);
    if (!v || !(v->type = kiln_type_scalar(&m->arena, dt))) return OOM_NULL(m->ctx);
    v->kind = KILN_VAR_LITERAL;
    v->id = -1;
    return v;
}

kiln_var *kiln_lit_int(kiln_module *m, int64_t x) {
    kiln_var *v = literal(m, KILN_I64);
    if (v) v->lit.i = x;
    return v;
}

kiln_var *kiln_lit_float(kiln_module *m, double x) {
    kiln_var *v = literal(m, KILN_F64);
    if (v) v->lit.f = x;
    return v;
}

kiln_var *kiln_lit_bool(kiln_module *m, bool x) {
    kiln_var *v = literal(m, KILN_BOOL);
    if (v) v->lit.b = x;
    return v;
}

const kiln_type *kiln_var_type(const kiln_var *v) { return v->type; }

void kiln_var_set_name(kiln_var *v, const char *name) {
    if (v->func) v->name = name ? kiln_arena_strdup(&v->func->module->arena, name) : NULL;
}

/* ---- nodes and regions ------------------------------------------------------------------- */
kiln_node *kiln_node_new(kiln_region *r, kiln_op op, int n_in, kiln_var *const *in) {
    kiln_module *m = r->func->module;
    const kiln_op_info *info = kiln_op_info_get(op);
    kiln_node *n = kiln_arena_alloc(&m->arena, sizeof *n);
    if (!n) return OOM_NULL(m->ctx);
    n->op = op;
    n->n_in = n_in;
    n->in = kiln_arena_alloc(&m->arena, sizeof *n->in * (size_t)(n_in ? n_in : 1));
    n->attrs = kiln_arena_alloc(&m->arena, sizeof *n->attrs * (size_t)(info->n_attrs ? info->n_attrs : 1));
    if (!n->in || !n->attrs || !(n->out = kiln_var_new(r->func, KILN_VAR_RESULT, NULL))) return OOM_NULL(m->ctx);
    if (n_in) memcpy(n->in, in, sizeof *n->in * (size_t)n_in);
    kiln_attrs_default(op, n->attrs);
    n->out->def = n;
    n->parent = r;
    return n;
}

void kiln_region_append(kiln_region *r, kiln_node *n) {
    n->parent = r;
    n->prev = r->last;
    n->next = NULL;
    if (r->last) r->last->next = n;
    else r->first = n;
    r->last = n;
}

void kiln_region_insert_before(kiln_region *r, kiln_node *before, kiln_node *n) {
    if (!before) return kiln_region_append(r, n);
    n->parent = r;
    n->next = before;
    n->prev = before->prev;
    if (before->prev) before->prev->next = n;
    else r->first = n;
    before->prev = n;
}

void kiln_region_remove(kiln_region *r, kiln_node *n) {
    if (n->prev) n->prev->next = n->next;
    else r->first = n->next;
    if (n->next) n->next->prev = n->prev;
    else r->last = n->prev;
    n->prev = n->next = NULL;
}

const char *kiln_node_where(const kiln_node *n, char *buf, size_t size) {
    const kiln_module *m = n->parent->func->module;
    if (n->line > 0) snprintf(buf, size, "%s:%d:%d", m->filename ? m->filename : "<input>", n->line, n->col);
    else snprintf(buf, size, "@%s", n->parent->func->name);
    return buf;
}

/* ---- type inference ---------------------------------------------------------------------- */
static kiln_status infer_function(kiln_function *f);

static kiln_status node_fail(const kiln_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kiln_status node_fail(const kiln_node *n, const char *fmt, ...) {
    char where[256], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(n->parent->func->module->ctx, KILN_ERR_TYPE, "op '%s' at %s: %s",
                      kiln_op_info_get(n->op)->name, kiln_node_where(n, where, sizeof where), msg);
}

static kiln_status infer_region(kiln_region *r) {
    for (kiln_node *n = r->first; n; n = n->next)
        if (kiln_node_infer(n)) return kiln_error_status(r->func->module->ctx);
    return KILN_OK;
}

/* The tuple type of vars' types (NULL if one is untyped, or on OOM). Its element array is
 * built in the module's arena: no stack array on inference's recursive path. */
static const kiln_type *types_tuple(kiln_module *m, int n, kiln_var *const *vars) {
    kiln_type *t = kiln_arena_alloc(&m->arena, sizeof *t);
    const kiln_type **elems = kiln_arena_alloc(&m->arena, sizeof *elems * (size_t)(n ? n : 1));
    if (!t || !elems) return NULL;
    for (int i = 0; i < n; i++)
        if (!(elems[i] = vars[i]->type)) return NULL;
    t->kind = KILN_TYPE_TUPLE;
    t->n_elems = n;
    t->elems = elems;
    return t;
}

/* The type a region's yield produces: one value is itself, several a tuple. */
static const kiln_type *region_result_type(kiln_region *r) {
    if (r->n_results < 0 || r->n_results > KILN_MAX_VALUES) return NULL;
    if (r->n_results == 1) return r->results[0]->type;
    return types_tuple(r->func->module, r->n_results, r->results);
}

static kiln_status infer_if(kiln_node *n) {
    char tb[256], eb[256];
    const kiln_type *c = n->in[0]->type;
    bool ok = c && ((c->kind == KILN_TYPE_SCALAR && c->dtype == KILN_BOOL) ||
                    (c->kind == KILN_TYPE_TENSOR && c->dtype == KILN_BOOL && c->ndim == 0));
    if (!ok) return node_fail(n, "condition must be bool or bool[], got %s", kiln_type_cstr(c, tb, sizeof tb));
    for (int i = 0; i < 2; i++) {
        if (infer_region(n->regions[i])) return KILN_ERR_TYPE;
        if (n->regions[i]->n_results < 0) return node_fail(n, "%s branch does not yield", i ? "else" : "then");
    }
    const kiln_type *t = region_result_type(n->regions[0]), *e = region_result_type(n->regions[1]);
    if (!kiln_type_equal(t, e))
        return node_fail(n, "branches yield different types: then %s, else %s", kiln_type_cstr(t, tb, sizeof tb),
                         kiln_type_cstr(e, eb, sizeof eb));
    n->out->type = t;
    return KILN_OK;
}

static kiln_status infer_while(kiln_node *n) {
    char tb[256], eb[256];
    for (int i = 0; i < n->n_loop; i++) n->loop[i]->type = n->in[i]->type;
    kiln_region *cond = n->regions[0], *body = n->regions[1];
    if (infer_region(cond)) return KILN_ERR_TYPE;
    const kiln_type *c = region_result_type(cond);
    if (cond->n_results != 1 || !c || c->dtype != KILN_BOOL || !(c->kind == KILN_TYPE_SCALAR || (c->kind == KILN_TYPE_TENSOR && c->ndim == 0)))
        return node_fail(n, "cond region must yield one bool or bool[], got %s", kiln_type_cstr(c, tb, sizeof tb));
    if (infer_region(body)) return KILN_ERR_TYPE;
    if (body->n_results != n->n_loop)
        return node_fail(n, "body yields %d values for %d loop variables", body->n_results, n->n_loop);
    for (int i = 0; i < n->n_loop; i++)
        if (!kiln_type_equal(body->results[i]->type, n->loop[i]->type))
            return node_fail(n, "loop variable %d starts as %s but the body yields %s", i,
                             kiln_type_cstr(n->loop[i]->type, tb, sizeof tb),
                             kiln_type_cstr(body->results[i]->type, eb, sizeof eb));
    if (n->n_loop == 1) n->out->type = n->loop[0]->type;
    else if (n->n_loop > KILN_MAX_VALUES) return node_fail(n, "more than %d loop variables", KILN_MAX_VALUES);
    else if (!(n->out->type = types_tuple(n->parent->func->module, n->n_loop, n->loop)))
        return kiln_error(n->parent->func->module->ctx, KILN_ERR_OOM, "out of memory inferring types");
    return KILN_OK;
}

static kiln_status infer_call(kiln_node *n) {
    kiln_function *g = n->callee;
    char tb[256], eb[256];
    if (n->n_in != g->n_params)
        return node_fail(n, "@%s takes %d arguments, got %d", g->name, g->n_params, n->n_in);
    for (int i = 0; i < n->n_in; i++)
        if (!kiln_type_equal(n->in[i]->type, g->params[i]->type))
            return node_fail(n, "argument %d of @%s must be %s, got %s", i, g->name,
                             kiln_type_cstr(g->params[i]->type, tb, sizeof tb), kiln_type_cstr(n->in[i]->type, eb, sizeof eb));
    /* A callee with a declared return type is known by it (kiln_module_infer checks its body
     * on its own); otherwise infer the callee first, once it is complete. */
    if (g->infer_state == 0 && g->body->n_results >= 0 && !g->declared_ret) {
        kiln_module *m = g->module;
        if (m->infer_depth >= 256)
            return node_fail(n, "call chain deeper than 256 functions whose types are not yet known; declare @%s's return type", g->name);
        m->infer_depth++;
        kiln_status s = infer_function(g);
        m->infer_depth--;
        if (s) return KILN_ERR_TYPE;
    }
    const kiln_type *rt = g->ret ? g->ret : g->declared_ret;
    if (!rt)
        return node_fail(n, "@%s is called recursively before its return type is known; declare it with '-> type'", g->name);
    n->out->type = rt;
    return KILN_OK;
}

kiln_status kiln_node_infer(kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    kiln_context *ctx = n->parent->func->module->ctx;
    char where[256], tb[256];
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i]->type) return node_fail(n, "input %d has no type yet", i);
    if (n->op == KILN_OP_CALL) return infer_call(n);
    if (n->op == KILN_OP_IF) return infer_if(n);
    if (n->op == KILN_OP_WHILE) return infer_while(n);
    if (n->n_in < info->nin_min || (info->nin_max >= 0 && n->n_in > info->nin_max)) {
        if (info->nin_max < 0) return node_fail(n, "takes at least %d inputs, got %d", info->nin_min, n->n_in);
        if (info->nin_min == info->nin_max) return node_fail(n, "takes %d inputs, got %d", info->nin_min, n->n_in);
        return node_fail(n, "takes %d to %d inputs, got %d", info->nin_min, info->nin_max, n->n_in);
    }
    if (info->dtypes != DT_NONE && n->n_in > 0) {
        const kiln_type *t = n->in[0]->type;
        if (t->kind == KILN_TYPE_TUPLE) return node_fail(n, "input 0 is a tuple %s, expected a tensor", kiln_type_cstr(t, tb, sizeof tb));
        if (!(info->dtypes & DT_(t->dtype)))
            return node_fail(n, "input 0 has dtype %s, which this op does not take", kiln_type_cstr(t, tb, sizeof tb));
    }
    if (n->n_in > KILN_MAX_VALUES) return node_fail(n, "more than %d inputs", KILN_MAX_VALUES);
    const kiln_type *small[8], **in = KILN_SCRATCH(small, n->n_in);
    if (!in) return kiln_error(ctx, KILN_ERR_OOM, "out of memory inferring types");
    for (int i = 0; i < n->n_in; i++) in[i] = n->in[i]->type;
    kiln_shape_args a = {ctx, &n->parent->func->module->arena, n->op, n->attrs, n->n_in, in,
                         kiln_node_where(n, where, sizeof where)};
    const kiln_type *t = info->shape(&a);
    kiln_scratch_free(in, small);
    if (!t) return kiln_error_status(ctx) ? kiln_error_status(ctx) : node_fail(n, "shape rule failed");
    n->out->type = t;
    return KILN_OK;
}

static kiln_status infer_function(kiln_function *f) {
    kiln_context *ctx = f->module->ctx;
    f->infer_state = 1;
    if (infer_region(f->body)) {
        f->infer_state = 0;
        return kiln_error_status(ctx);
    }
    if (f->body->n_results < 0) {
        f->infer_state = 0;
        return kiln_error(ctx, KILN_ERR_TYPE, "function @%s has no return", f->name);
    }
    const kiln_type *rt = region_result_type(f->body);
    char a[256], b[256];
    if (f->declared_ret && !kiln_type_equal(rt, f->declared_ret)) {
        f->infer_state = 0;
        return kiln_error(ctx, KILN_ERR_TYPE, "function @%s is declared to return %s but returns %s", f->name,
                          kiln_type_cstr(f->declared_ret, a, sizeof a), kiln_type_cstr(rt, b, sizeof b));
    }
    f->ret = rt;
    f->infer_state = 2;
    return KILN_OK;
}

kiln_status kiln_module_infer(kiln_module *m) {
    for (int i = 0; i < m->n_funcs; i++) m->funcs[i]->infer_state = 0;
    for (int i = 0; i < m->n_funcs; i++)
        if (m->funcs[i]->infer_state == 0 && infer_function(m->funcs[i])) return kiln_error_status(m->ctx);
    return KILN_OK;
}

/* ---- public builder ---------------------------------------------------------------------- */
static bool inputs_typed(const kiln_node *n) {
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i]->type) return false;
    return true;
}

/* Appends a finished node; infers its type when it can. On failure removes it again. */
static kiln_var *finish(kiln_region *r, kiln_node *n, kiln_node *before) {
    kiln_region_insert_before(r, before, n);
    r->func->liveness_ready = false;
    if (inputs_typed(n) && (n->op != KILN_OP_CALL || n->callee->ret || n->callee->declared_ret ||
                            n->callee->body->n_results >= 0)) {
        if (kiln_node_infer(n)) {
            kiln_region_remove(r, n);
            return NULL;
        }
    }
    return n->out;
}

static kiln_status check_open(kiln_region *r) {
    if (!r) return KILN_ERR_TYPE;
    if (r->n_results >= 0)
        return kiln_error(r->func->module->ctx, KILN_ERR_TYPE, "@%s: emitting into a region that has already yielded", r->func->name);
    return KILN_OK;
}

static bool check_inputs(kiln_region *r, const char *what, int n_in, kiln_var *const *in) {
    kiln_context *ctx = r->func->module->ctx;
    if (n_in < 0 || n_in > KILN_MAX_VALUES) {
        kiln_error(ctx, KILN_ERR_UNSUPPORTED, "%s in @%s: %d values (at most %d)", what, r->func->name, n_in, KILN_MAX_VALUES);
        return false;
    }
    for (int i = 0; i < n_in; i++)
        if (!in || !in[i]) { /* keep the error of the failed call that produced the NULL */
            if (ctx->status == KILN_OK)
                kiln_error(ctx, KILN_ERR_TYPE, "%s in @%s: input %d is NULL", what, r->func->name, i);
            return false;
        }
    return true;
}

kiln_var *kiln_emit(kiln_region *r, const char *op_name, int n_in, kiln_var *const *in, const char *attrs) {
    if (!r) return NULL;
    kiln_context *ctx = r->func->module->ctx;
    int op = kiln_op_from_name(op_name ? op_name : "");
    if (op < 0) {
        kiln_error(ctx, KILN_ERR_TYPE, "unknown op '%s' (kiln ops lists them)", op_name ? op_name : "(null)");
        return NULL;
    }
    if (op == KILN_OP_IF || op == KILN_OP_WHILE || op == KILN_OP_CALL) {
        kiln_error(ctx, KILN_ERR_TYPE, "op '%s': use kiln_emit_%s", op_name, op_name);
        return NULL;
    }
    if (check_open(r) || !check_inputs(r, op_name, n_in, in)) return NULL;
    kiln_node *n = kiln_node_new(r, (kiln_op)op, n_in, in);
    if (!n) return NULL;
    if (attrs) {
        kiln_lexer lx;
        kiln_lex_init(&lx, ctx, &r->func->module->arena, attrs, "attributes");
        if (lx.failed || kiln_parse_attr_list(&lx, (kiln_op)op, n->attrs, 0)) return NULL;
    } else {
        const kiln_op_info *info = kiln_op_info_get((kiln_op)op);
        for (int k = 0; k < info->n_attrs; k++)
            if (info->attrs[k].required) {
                kiln_error(ctx, KILN_ERR_TYPE, "op '%s' needs attribute '%s'", op_name, info->attrs[k].name);
                return NULL;
            }
    }
    return finish(r, n, NULL);
}

kiln_var *kiln_emit_call(kiln_region *r, kiln_function *callee, int n_in, kiln_var *const *in) {
    if (!callee) return NULL;
    if (check_open(r) || !check_inputs(r, "call", n_in, in)) return NULL;
    if (callee->module != r->func->module) {
        kiln_error(r->func->module->ctx, KILN_ERR_TYPE, "call of @%s: callee is in another module", callee->name);
        return NULL;
    }
    kiln_node *n = kiln_node_new(r, KILN_OP_CALL, n_in, in);
    if (!n) return NULL;
    n->callee = callee;
    return finish(r, n, NULL);
}

kiln_node *kiln_emit_if(kiln_region *r, kiln_var *cond) {
    if (check_open(r) || !check_inputs(r, "if", 1, &cond)) return NULL;
    kiln_node *n = kiln_node_new(r, KILN_OP_IF, 1, &cond);
    if (!n) return NULL;
    n->n_regions = 2;
    if (!(n->regions[0] = kiln_region_new(r->func, n)) || !(n->regions[1] = kiln_region_new(r->func, n))) return NULL;
    kiln_region_append(r, n);
    return n;
}

kiln_node *kiln_emit_while(kiln_region *r, int n_loop, kiln_var *const *init, const char *const *names) {
    if (check_open(r) || !check_inputs(r, "while", n_loop, init)) return NULL;
    kiln_node *n = kiln_node_new(r, KILN_OP_WHILE, n_loop, init);
    if (!n) return NULL;
    n->n_regions = 2;
    n->n_loop = n_loop;
    n->loop = kiln_arena_alloc(&r->func->module->arena, sizeof *n->loop * (size_t)(n_loop ? n_loop : 1));
    if (!n->loop) return OOM_NULL(r->func->module->ctx);
    for (int i = 0; i < n_loop; i++) {
        if (!(n->loop[i] = kiln_var_new(r->func, KILN_VAR_LOOP, names ? names[i] : NULL))) return NULL;
        n->loop[i]->def = n;
        n->loop[i]->index = i;
        n->loop[i]->type = init[i]->type;
    }
    if (!(n->regions[0] = kiln_region_new(r->func, n)) || !(n->regions[1] = kiln_region_new(r->func, n))) return NULL;
    kiln_region_append(r, n);
    return n;
}

/* The accessors and emitters accept NULL (from an earlier failed call) and return NULL, so a
 * chain of builder calls can be checked once at the end; the first error stays in the context. */
kiln_region *kiln_node_region(kiln_node *n, int i) { return n && i >= 0 && i < n->n_regions ? n->regions[i] : NULL; }
kiln_var *kiln_node_loop_var(kiln_node *n, int i) { return n && i >= 0 && i < n->n_loop ? n->loop[i] : NULL; }

kiln_var *kiln_node_result(kiln_node *n) {
    if (!n) return NULL;
    if (!n->out->type && inputs_typed(n) && kiln_node_infer(n)) return NULL;
    return n->out;
}

kiln_status kiln_region_yield(kiln_region *r, int n, kiln_var *const *vals) {
    if (!r) return KILN_ERR_TYPE;
    kiln_context *ctx = r->func->module->ctx;
    if (check_open(r)) return kiln_error_status(ctx);
    if (!check_inputs(r, "yield", n, vals)) return kiln_error_status(ctx);
    r->results = kiln_arena_alloc(&r->func->module->arena, sizeof *r->results * (size_t)(n ? n : 1));
    if (!r->results) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    if (n) memcpy(r->results, vals, sizeof *r->results * (size_t)n);
    r->n_results = n;
    r->func->liveness_ready = false;
    return KILN_OK;
}

/* ---- internal builder -------------------------------------------------------------------- */
kiln_var *kiln_build(kiln_builder *b, kiln_op op, int n_in, kiln_var *const *in, const char *fmt, ...) {
    kiln_region *r = b->region;
    kiln_context *ctx = r->func->module->ctx;
    if (!check_inputs(r, kiln_op_info_get(op)->name, n_in, in)) return NULL;
    kiln_node *n = kiln_node_new(r, op, n_in, in);
    if (!n) return NULL;
    n->line = b->line;
    n->col = b->col;
    if (fmt) {
        char text[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        kiln_lexer lx;
        kiln_lex_init(&lx, ctx, &r->func->module->arena, text, "attributes");
        if (lx.failed || kiln_parse_attr_list(&lx, op, n->attrs, 0)) return NULL;
    }
    return finish(r, n, b->before);
}

kiln_var *kiln_build_text(kiln_builder *b, kiln_op op, int n_in, kiln_var *const *in, const char *attrs) {
    return attrs ? kiln_build(b, op, n_in, in, "%s", attrs) : kiln_build(b, op, n_in, in, NULL);
}

kiln_var *kiln_build1(kiln_builder *b, kiln_op op, kiln_var *x) { return kiln_build(b, op, 1, &x, NULL); }

kiln_var *kiln_build2(kiln_builder *b, kiln_op op, kiln_var *x, kiln_var *y) {
    return kiln_build(b, op, 2, (kiln_var *[]){x, y}, NULL);
}

kiln_var *kiln_build_float(kiln_builder *b, double v) { return kiln_lit_float(b->region->func->module, v); }
kiln_var *kiln_build_int(kiln_builder *b, int64_t v) { return kiln_lit_int(b->region->func->module, v); }
