/* simplify.c — algebraic simplification: identities (x+0, x*1, x/1, x**1, neg(neg(x)), no-op
 * casts, copies, reshapes, transposes, broadcasts and empty reductions) replace a node by an
 * operand only when the operand's type is the node's own; integer x*0 becomes zeros. */
#include "compiler/compiler.h"
#include "passes/rewrite.h"
#include <string.h>

/* v's value when every element of it is known to be one number: a literal, a constant tensor
 * of equal elements, or full / zeros / ones (the value as stored in its dtype). */
static bool splat(const kiln_var *v, double *out) {
    if (v->kind == KILN_VAR_LITERAL) {
        *out = v->type->dtype == KILN_I64 ? (double)v->lit.i : v->type->dtype == KILN_F64 ? v->lit.f : (double)v->lit.b;
        return true;
    }
    if (v->kind != KILN_VAR_RESULT || !v->def) return false;
    const kiln_node *d = v->def;
    if (d->op == KILN_OP_CONSTANT) {
        const kiln_tensor *t = d->attrs[0].tensor;
        if (t->numel < 1) return false;
        double x = kiln_load_f64(t->dtype, t->data, 0);
        for (int64_t i = 1; i < t->numel; i++)
            if (kiln_load_f64(t->dtype, t->data, i) != x) return false;
        *out = x;
        return x == x;
    }
    double x;
    if (d->op == KILN_OP_FULL) x = kiln_attr_float(d->op, d->attrs, "value");
    else if (d->op == KILN_OP_ZEROS || d->op == KILN_OP_ONES) x = d->op == KILN_OP_ONES;
    else return false;
    kiln_dtype dt = kiln_attr_get(d->op, d->attrs, "dtype")->dtype;
    char cell[8];
    kiln_store_f64(dt, cell, 0, x); /* full(value=0.5, dtype=i32) holds 0 */
    *out = kiln_load_f64(dt, cell, 0);
    return true;
}

static bool is_splat(const kiln_var *v, double want) {
    double x;
    return splat(v, &x) && x == want;
}

/* x may stand for n's result only when it has exactly n's type (no broadcast, no promotion). */
static kiln_var *if_same_type(const kiln_node *n, kiln_var *x) {
    return kiln_type_equal(x->type, n->out->type) ? x : NULL;
}

/* Binary identities: x+0, 0+x, x-0, x*1, 1*x, x/1, x**1. */
static kiln_var *binary_identity(const kiln_node *n) {
    kiln_var *a = n->in[0], *b = n->in[1], *r = NULL;
    switch (n->op) {
    case KILN_OP_ADD:
        if (is_splat(b, 0)) r = if_same_type(n, a);
        if (!r && is_splat(a, 0)) r = if_same_type(n, b);
        return r;
    case KILN_OP_MULTIPLY:
        if (is_splat(b, 1)) r = if_same_type(n, a);
        if (!r && is_splat(a, 1)) r = if_same_type(n, b);
        return r;
    case KILN_OP_SUBTRACT: return is_splat(b, 0) ? if_same_type(n, a) : NULL;
    case KILN_OP_DIVIDE:
    case KILN_OP_POWER: return is_splat(b, 1) ? if_same_type(n, a) : NULL;
    default: return NULL;
    }
}

/* Integer x*0 (either side): zeros of the result type into *out. Not for floats: NaN*0 and
 * inf*0 are NaN. */
static kiln_status integer_times_zero(kiln_node *n, kiln_var **out) {
    const kiln_type *t = n->out->type;
    if (n->op != KILN_OP_MULTIPLY || !kiln_dtype_is_int(t->dtype) || (!is_splat(n->in[0], 0) && !is_splat(n->in[1], 0)))
        return KILN_OK;
    kiln_module *m = n->parent->func->module;
    char shape[KILN_MAX_DIMS * 24 + 4];
    kiln_builder b = {n->parent, n, n->line, n->col};
    *out = t->kind == KILN_TYPE_SCALAR ? kiln_lit_int(m, 0)
                                       : kiln_build(&b, KILN_OP_FULL, 0, NULL, "shape=%s, value=0.0, dtype=%s",
                                                    kiln_shape_str(t->ndim, t->shape, shape, sizeof shape),
                                                    kiln_dtype_name(t->dtype));
    return *out ? KILN_OK : kiln_error_status(m->ctx);
}

static bool reshape_like(kiln_op op) {
    return op == KILN_OP_RESHAPE || op == KILN_OP_EXPAND_DIMS || op == KILN_OP_SQUEEZE;
}

/* reshape, expand_dims and squeeze only relabel the dims of contiguous data: a chain of them
 * that lands on its source's type is the source; a reshape of one reads the chain's source. */
static kiln_var *reshape_chain(kiln_node *n) {
    kiln_var *x = n->in[0];
    if (if_same_type(n, x)) return x;
    kiln_node *d = x->kind == KILN_VAR_RESULT ? x->def : NULL;
    if (!d || !reshape_like(d->op)) return NULL;
    if (if_same_type(n, d->in[0])) return d->in[0];
    if (n->op == KILN_OP_RESHAPE) n->in[0] = d->in[0]; /* its shape attribute holds either way */
    return NULL;
}

/* A transpose's permutation (axes unset: reversed dims) into p. */
static void transpose_perm(const kiln_node *n, int ndim, int64_t *p) {
    const kiln_attr *axes = kiln_attr_get(n->op, n->attrs, "axes");
    for (int i = 0; i < ndim; i++) p[i] = axes->set ? (axes->ints[i] + ndim) % ndim : ndim - 1 - i;
}

/* transpose with identity axes is its input; transpose(transpose(x, p), q) is transpose(x, r)
 * with r[i] = p[q[i]], or x itself when r is the identity. */
static kiln_var *transpose_identity(kiln_node *n) {
    int nd = n->out->type->ndim;
    int64_t q[KILN_MAX_DIMS], p[KILN_MAX_DIMS], r[KILN_MAX_DIMS];
    transpose_perm(n, nd, q);
    kiln_var *x = n->in[0];
    kiln_node *inner = kiln_rewrite_def(x, KILN_OP_TRANSPOSE);
    if (inner) transpose_perm(inner, nd, p);
    for (int i = 0; i < nd; i++) r[i] = inner ? p[q[i]] : q[i];
    bool identity = true;
    for (int i = 0; i < nd; i++) identity &= r[i] == i;
    if (!inner) return identity ? x : NULL;
    if (identity) return inner->in[0];
    int64_t *axes = kiln_arena_alloc(&n->parent->func->module->arena, sizeof *axes * (size_t)(nd ? nd : 1));
    if (!axes) return NULL; /* out of memory: the node just stays */
    memcpy(axes, r, sizeof *axes * (size_t)nd);
    n->attrs[kiln_attr_index(n->op, "axes")] = (kiln_attr){.set = true, .n = nd, .ints = axes};
    n->in[0] = inner->in[0];
    return NULL;
}

/* A reduction over axes=[] (given explicitly) reduces nothing. */
static kiln_var *empty_reduction(const kiln_node *n) {
    switch (n->op) {
    case KILN_OP_SUM: case KILN_OP_MEAN: case KILN_OP_PROD: case KILN_OP_MAX: case KILN_OP_MIN:
    case KILN_OP_ALL: case KILN_OP_ANY: break;
    default: return NULL;
    }
    const kiln_attr *axes = kiln_attr_get(n->op, n->attrs, "axes");
    return axes->set && axes->n == 0 ? if_same_type(n, n->in[0]) : NULL;
}

/* The value n reduces to, or NULL (n may have been edited in place). */
static kiln_var *simplify_node(kiln_node *n) {
    switch (n->op) {
    case KILN_OP_NEG:
    case KILN_OP_LOGICAL_NOT: { /* involutions */
        kiln_node *inner = kiln_rewrite_def(n->in[0], n->op);
        return inner ? if_same_type(n, inner->in[0]) : NULL;
    }
    case KILN_OP_CAST:
    case KILN_OP_COPY:
    case KILN_OP_BROADCAST_TO: return if_same_type(n, n->in[0]);
    case KILN_OP_RESHAPE:
    case KILN_OP_EXPAND_DIMS:
    case KILN_OP_SQUEEZE: return reshape_chain(n);
    case KILN_OP_TRANSPOSE: return transpose_identity(n);
    case KILN_OP_ADD:
    case KILN_OP_SUBTRACT:
    case KILN_OP_MULTIPLY:
    case KILN_OP_DIVIDE:
    case KILN_OP_POWER: return binary_identity(n);
    default: return empty_reduction(n);
    }
}

static kiln_status simplify_visit(kiln_rewriter *rw, kiln_node *n) {
    if (!n->out->type || (kiln_op_info_get(n->op)->flags & F_SIDE)) return KILN_OK;
    kiln_var *v = simplify_node(n);
    if (!v && integer_times_zero(n, &v)) return kiln_error_status(rw->ctx);
    return v ? kiln_rewrite_replace(rw, n, v) : KILN_OK;
}

kiln_status kiln_pass_simplify(kiln_pass_ctx *pc, kiln_function *f) {
    (void)pc;
    static const kiln_rewrite_hooks hooks = {simplify_visit, NULL, NULL};
    return kiln_rewrite_function(f, &hooks, NULL);
}
