/* cost.c — FLOPs and bytes of IR nodes (see cost.h): a formula per primitive, and one walk for
 * control flow, calls and composites shared by both measures. */
#include "ops/cost.h"
#include <math.h>
#include <string.h>

/* Calls nest at most this deep in one estimate; a function already being measured (recursion)
 * counts 0. */
#define COST_MAX_CALLS 64

typedef struct cost_walk {
    bool bytes;                                    /* measuring bytes, else FLOPs */
    const kiln_function *active[COST_MAX_CALLS];   /* callees being measured */
    int n_active;
} cost_walk;

static double elems(const kiln_type *t) {
    if (!t) return 0;
    switch (t->kind) {
    case KILN_TYPE_TENSOR: return (double)kiln_shape_numel(t->ndim, t->shape);
    case KILN_TYPE_SCALAR: return 1;
    case KILN_TYPE_TUPLE: {
        double n = 0;
        for (int i = 0; i < t->n_elems; i++) n += elems(t->elems[i]);
        return n;
    }
    default: return 0;
    }
}

static double tensor_bytes(const kiln_type *t) {
    if (!t) return 0;
    if (t->kind == KILN_TYPE_TENSOR) return elems(t) * (double)kiln_dtype_size(t->dtype);
    double n = 0;
    for (int i = 0; t->kind == KILN_TYPE_TUPLE && i < t->n_elems; i++) n += tensor_bytes(t->elems[i]);
    return n;
}

static double in_elems(const kiln_node *n, int i) { return i < n->n_in ? elems(n->in[i]->type) : 0; }
static int64_t dim(const kiln_var *v, int i) { return v->type->kind == KILN_TYPE_TENSOR && i < v->type->ndim ? v->type->shape[i] : 1; }

static double window(const kiln_node *n, const char *name) {
    const kiln_attr *k = kiln_attr_get(n->op, n->attrs, name);
    return k->set && k->n >= 2 ? (double)(k->ints[0] * k->ints[1]) : 1;
}

static double log2_axis(const kiln_node *n) {
    const kiln_type *t = n->in[0]->type;
    int ax = t->kind == KILN_TYPE_TENSOR ? kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), t->ndim) : -1;
    double len = ax >= 0 ? (double)t->shape[ax] : 1;
    return len > 1 ? ceil(log2(len)) : 1;
}

static bool bilinear(const kiln_node *n) { return !strcmp(kiln_attr_str(n->op, n->attrs, "mode"), "bilinear"); }

/* FLOPs of a primitive (no regions, no callee, not composite). */
static double primitive_flops(const kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    double out = elems(n->out->type);
    switch (n->op) {
    case KILN_OP_CAST:
    case KILN_OP_COPY: return 0;
    case KILN_OP_MATMUL: { /* out [.., M, N]; K is a's contracted dim */
        const kiln_var *a = n->in[0];
        int nd = a->type->ndim;
        int64_t k = nd >= 2 && kiln_attr_bool(n->op, n->attrs, "transpose_a") ? dim(a, nd - 2) : dim(a, nd - 1);
        return 2 * out * (double)k;
    }
    case KILN_OP_CONV2D: /* w [O, C/groups, kh, kw] */
        return 2 * out * (double)(dim(n->in[1], 1) * dim(n->in[1], 2) * dim(n->in[1], 3));
    case KILN_OP_CONV2D_TRANSPOSE: /* the conv2d from y to x: w [C, O/groups, kh, kw] */
        return 2 * in_elems(n, 0) * (double)(dim(n->in[1], 1) * dim(n->in[1], 2) * dim(n->in[1], 3));
    case KILN_OP_CONV2D_BACKWARD_WEIGHT: /* (x, dy) -> dw [O, C/groups, kh, kw]: the forward's count */
        return 2 * in_elems(n, 1) * (double)(dim(n->out, 1) * dim(n->out, 2) * dim(n->out, 3));
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_AVG_POOL2D: return out * window(n, "kernel");
    case KILN_OP_MAX_POOL2D_BACKWARD: return in_elems(n, 1) * window(n, "kernel");
    case KILN_OP_AVG_POOL2D_BACKWARD: return in_elems(n, 0) * window(n, "kernel");
    case KILN_OP_ADAPTIVE_AVG_POOL2D:
    case KILN_OP_ADAPTIVE_MAX_POOL2D: return in_elems(n, 0);
    case KILN_OP_ADAPTIVE_AVG_POOL2D_BACKWARD:
    case KILN_OP_ADAPTIVE_MAX_POOL2D_BACKWARD: return out;
    case KILN_OP_NLL_LOSS: return in_elems(n, 1);
    case KILN_OP_CUMSUM: return in_elems(n, 0);
    case KILN_OP_SCATTER: return strcmp(kiln_attr_str(n->op, n->attrs, "reduce"), "add") ? 0 : in_elems(n, 2);
    case KILN_OP_TAKE_BACKWARD:
    case KILN_OP_GATHER_ND_BACKWARD: return in_elems(n, 0);
    case KILN_OP_RESIZE2D: return bilinear(n) ? 8 * out : 0; /* 4 taps, a multiply and an add each */
    case KILN_OP_RESIZE2D_BACKWARD: return in_elems(n, 0) * (bilinear(n) ? 8 : 1);
    case KILN_OP_RANDOM_UNIFORM:
    case KILN_OP_RANDOM_NORMAL: return out;
    case KILN_OP_ATTENTION_FORWARD: /* q k^T and P v: 4 * Tq * Tk * D per batch entry (q has batch * Tq * D) */
        return 4 * in_elems(n, 0) * (double)dim(n->in[1], n->in[1]->type->ndim - 2);
    case KILN_OP_ATTENTION_BACKWARD: /* recomputed q k^T, dout v^T, dS k, dS^T q, P^T dout: 2.5 forwards */
        return 10 * in_elems(n, 0) * (double)dim(n->in[1], n->in[1]->type->ndim - 2);
    case KILN_OP_SORT:
    case KILN_OP_ARGSORT:
    case KILN_OP_TOPK: return in_elems(n, 0) * log2_axis(n);
    default: break;
    }
    switch (info->cls) {
    case KILN_CLASS_ELEMWISE:
    case KILN_CLASS_BROADCAST: return out;
    case KILN_CLASS_REDUCE: return in_elems(n, 0);
    default: return 0; /* layout, indexing, creation, structure */
    }
}

/* Bytes of a node as one kernel: tensor inputs and results. */
static double boundary_bytes(const kiln_node *n) {
    switch (n->op) {
    case KILN_OP_CONSTANT: case KILN_OP_TUPLE: case KILN_OP_GET: case KILN_OP_LIST_NEW:
    case KILN_OP_LIST_PUSH: case KILN_OP_LIST_POP: case KILN_OP_LIST_LENGTH: return 0;
    default: break;
    }
    double b = tensor_bytes(n->out->type);
    for (int i = 0; i < n->n_in; i++) b += tensor_bytes(n->in[i]->type);
    return b;
}

static double node_cost(cost_walk *w, const kiln_node *n);

static double region_cost(cost_walk *w, const kiln_region *r) {
    double c = 0;
    for (const kiln_node *n = r->first; n; n = n->next) c += node_cost(w, n);
    return c;
}

static double call_cost(cost_walk *w, const kiln_function *g) {
    if (w->n_active == COST_MAX_CALLS) return 0;
    for (int i = 0; i < w->n_active; i++)
        if (w->active[i] == g) return 0;
    w->active[w->n_active++] = g;
    double c = region_cost(w, g->body);
    w->n_active--;
    return c;
}

/* A composite's FLOPs: its decomposition built into a scratch module and measured. */
static double composite_flops(cost_walk *w, const kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    kiln_context *ctx = n->parent->func->module->ctx;
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *g = m ? kiln_function_detached(m, info->name) : NULL;
    double c = 0;
    bool ok = g != NULL;
    for (int i = 0; ok && i < n->n_in; i++) ok = kiln_function_param(g, NULL, (kiln_type *)n->in[i]->type) != NULL;
    kiln_builder b = {g ? g->body : NULL, NULL, n->line, n->col};
    if (ok && info->decompose(&b, n, g->params)) c = call_cost(w, g);
    else kiln_error_clear(ctx); /* an estimate: a node that cannot expand counts 0 */
    kiln_module_free(m);
    return c;
}

static double node_cost(cost_walk *w, const kiln_node *n) {
    if (!n->out->type) return 0;
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i]->type) return 0;
    switch (n->op) {
    case KILN_OP_IF: {
        double a = region_cost(w, n->regions[0]), b = region_cost(w, n->regions[1]);
        return a > b ? a : b;
    }
    case KILN_OP_WHILE: return region_cost(w, n->regions[0]) + region_cost(w, n->regions[1]);
    case KILN_OP_CALL: return w->bytes && n->callee->kernel ? boundary_bytes(n) : call_cost(w, n->callee);
    default: break;
    }
    if (w->bytes) return boundary_bytes(n);
    return kiln_op_info_get(n->op)->flags & F_COMPOSITE ? composite_flops(w, n) : primitive_flops(n);
}

double kiln_node_flops(const kiln_node *n) {
    cost_walk w = {.bytes = false};
    return node_cost(&w, n);
}

int64_t kiln_node_bytes(const kiln_node *n) {
    cost_walk w = {.bytes = true};
    return (int64_t)node_cost(&w, n);
}
