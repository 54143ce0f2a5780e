/* lower.c — lowering of a fused group to a loop nest: checks the group's form (elementwise, or
 * one reduction with producers and consumers), collapses dims, assigns strides to params and
 * decides the loop shape (tiles of rows, row reduction, column reduction); render_c.c and
 * render_cuda.c print it. */
#include "codegen/lower.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kiln_status plan_fail(kiln_context *ctx, const kiln_function *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status plan_fail(kiln_context *ctx, const kiln_function *f, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(ctx, KILN_ERR_INTERNAL, "kernel @%s: %s", f->name, msg);
}

/* True if t (a scalar, or a tensor) broadcasts to the shape [nd] without changing it. */
static bool fits(const kiln_type *t, int nd, const int64_t *shape) {
    if (t->kind == KILN_TYPE_SCALAR) return true;
    if (t->kind != KILN_TYPE_TENSOR || t->ndim > nd) return false;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = t->shape[i], s = shape[nd - t->ndim + i];
        if (d != s && d != 1) return false;
    }
    return true;
}

static bool same_shape(const kiln_type *a, const kiln_type *b) {
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* Marks in need[] every var the marked vars depend on, walking back from the last node; the
 * node `stop` (the reduction, in output space) is a leaf. */
static void mark_needed(const kiln_function *f, bool *need, const kiln_node *stop) {
    for (const kiln_node *n = f->body->last; n; n = n->prev) {
        if (n == stop || !need[n->out->id]) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL) need[n->in[i]->id] = true;
    }
}

/* Checks every var needed in space c fits that space's shape and every needed node is an
 * elementwise one the renderer knows (the reduction only as the output space's leaf). */
static kiln_status check_space(kiln_context *ctx, gen_plan *p, int c, int nd, const int64_t *shape) {
    const kiln_function *f = p->f;
    char tb[256], sb[160];
    for (int i = 0; i < f->n_params; i++) {
        const kiln_var *v = f->params[i];
        if (p->need[c][v->id] && !fits(v->type, nd, shape))
            return plan_fail(ctx, f, "parameter %d of type %s does not broadcast to the loop shape %s", i,
                             kiln_type_cstr(v->type, tb, sizeof tb), kiln_shape_str(nd, shape, sb, sizeof sb));
    }
    for (const kiln_node *n = f->body->first; n; n = n->next) {
        if (!p->need[c][n->out->id]) continue;
        if (n == p->red && c == 1) continue;
        if (!kiln_codegen_supports(n) || kiln_op_info_get(n->op)->cls == KILN_CLASS_REDUCE)
            return plan_fail(ctx, f, "op '%s' cannot be generated in this group", kiln_op_info_get(n->op)->name);
        if (!fits(n->out->type, nd, shape))
            return plan_fail(ctx, f, "'%s' result %s does not broadcast to the loop shape %s", kiln_op_info_get(n->op)->name,
                             kiln_type_cstr(n->out->type, tb, sizeof tb), kiln_shape_str(nd, shape, sb, sizeof sb));
    }
    return KILN_OK;
}

/* Strides of a value of type t over the input space [nd]: broadcast over the space's shape
 * (c == 0), or over the reduction's result shape out_shape mapped onto the kept dims (c == 1). */
static void space_strides(const kiln_type *t, int c, int nd, const int64_t *shape, const bool *mask, bool keepdims,
                          int ond, const int64_t *oshape, int64_t *st) {
    int tnd = t->kind == KILN_TYPE_TENSOR ? t->ndim : 0;
    if (c == 0) {
        kiln_broadcast_strides(tnd, t->shape, nd, shape, st);
        return;
    }
    int64_t ost[KILN_MAX_DIMS];
    kiln_broadcast_strides(tnd, t->shape, ond, oshape, ost);
    for (int d = 0, k = 0; d < nd; d++) {
        if (mask[d]) {
            st[d] = 0;
            if (keepdims) k++;
        } else {
            st[d] = ost[k++];
        }
    }
}

static gen_opnd *add_opnd(gen_plan *p, int buf, kiln_dtype dt, bool out, int c) {
    gen_opnd *o = &p->op[p->n_op++];
    memset(o, 0, sizeof *o);
    o->buf = buf, o->dt = dt, o->out = out, o->ctx = c;
    return o;
}

/* Drops size-1 dims and merges neighbours of the same kind along which every operand is
 * contiguous (or broadcast), so same-shape tensors make one long row. */
static void collapse(gen_plan *p, int nd, const int64_t *shape, const bool *mask) {
    int m = 0;
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 1) continue;
        bool merge = m > 0 && p->red_dim[m - 1] == mask[d];
        for (int k = 0; k < p->n_op && merge; k++) merge = p->op[k].st[m - 1] == p->op[k].st[d] * shape[d];
        if (merge) {
            p->dim[m - 1] *= shape[d];
            for (int k = 0; k < p->n_op; k++) p->op[k].st[m - 1] = p->op[k].st[d];
        } else {
            p->dim[m] = shape[d], p->red_dim[m] = mask[d];
            for (int k = 0; k < p->n_op; k++) p->op[k].st[m] = p->op[k].st[d];
            m++;
        }
    }
    bool any_red = false;
    for (int d = 0; d < m; d++) any_red |= p->red_dim[d];
    if (m == 0 || (p->red && !any_red)) { /* one element, or a reduction over nothing */
        p->dim[m] = 1, p->red_dim[m] = p->red != NULL;
        for (int k = 0; k < p->n_op; k++) p->op[k].st[m] = 0;
        m++;
    }
    p->nd = m;
    for (int k = 0; k < p->n_op; k++) {
        p->op[k].zero = true;
        for (int d = 0; d < m; d++) p->op[k].zero &= p->op[k].st[d] == 0;
    }
    /* Row reduction when the innermost dim is reduced (or nothing is kept), else column. */
    p->row = p->red && p->red_dim[m - 1];
}

kiln_status gen_plan_init(kiln_context *ctx, const kiln_function *f, gen_plan *p) {
    memset(p, 0, sizeof *p);
    p->f = f;
    const kiln_region *body = f->body;
    if (body->n_results < 1) return plan_fail(ctx, f, "the group has no results");
    for (const kiln_node *n = body->first; n; n = n->next) {
        if (!n->out->type) return plan_fail(ctx, f, "untyped node '%s'", kiln_op_info_get(n->op)->name);
        if (kiln_op_info_get(n->op)->cls != KILN_CLASS_REDUCE) continue;
        if (p->red) return plan_fail(ctx, f, "more than one reduction in a group");
        p->red = n;
    }
    const kiln_type *rt = body->results[0]->type;
    for (int i = 0; i < body->n_results; i++) {
        const kiln_type *t = body->results[i]->type;
        if (body->results[i]->kind == KILN_VAR_LITERAL || !t || t->kind != KILN_TYPE_TENSOR || !same_shape(t, rt))
            return plan_fail(ctx, f, "result %d is not a tensor of the first result's shape", i);
    }
    size_t nv = (size_t)f->n_vars + 1, np = (size_t)f->n_params;
    p->op = calloc(2 * np + (size_t)body->n_results + 1, sizeof *p->op);
    for (int c = 0; c < 2; c++) {
        p->need[c] = calloc(nv, sizeof(bool));
        p->param_op[c] = malloc((np + 1) * sizeof(int));
    }
    if (!p->op || !p->need[0] || !p->need[1] || !p->param_op[0] || !p->param_op[1]) {
        gen_plan_free(p);
        return kiln_error(ctx, KILN_ERR_OOM, "kernel @%s: out of memory", f->name);
    }
    /* Spaces: elementwise groups have one (c = 0, the results' shape); a reduction has its
     * input's space (c = 0, producers) and its result's space (c = 1, consumers). */
    int oc = p->red ? 1 : 0, nd, ond = rt->ndim;
    const int64_t *shape, *oshape = rt->shape;
    bool mask[KILN_MAX_DIMS] = {false}, keepdims = false;
    if (p->red) {
        const kiln_type *it = p->red->in[0]->type;
        if (it->kind != KILN_TYPE_TENSOR) {
            gen_plan_free(p);
            return plan_fail(ctx, f, "the reduction's input is not a tensor");
        }
        nd = it->ndim, shape = it->shape;
        kiln_norm_axes(kiln_attr_get(p->red->op, p->red->attrs, "axes"), nd, mask);
        keepdims = kiln_attr_bool(p->red->op, p->red->attrs, "keepdims");
        if (!same_shape(p->red->out->type, rt)) {
            gen_plan_free(p);
            return plan_fail(ctx, f, "results do not have the reduction's result shape");
        }
        if (p->red->in[0]->kind != KILN_VAR_LITERAL) p->need[0][p->red->in[0]->id] = true;
        mark_needed(f, p->need[0], NULL);
    } else {
        nd = ond, shape = oshape;
    }
    for (int i = 0; i < body->n_results; i++) p->need[oc][body->results[i]->id] = true;
    mark_needed(f, p->need[oc], p->red);
    kiln_status s = check_space(ctx, p, 0, nd, shape);
    if (s == KILN_OK && p->red) s = check_space(ctx, p, 1, ond, oshape);
    if (s == KILN_OK && p->red && p->need[0][p->red->out->id])
        s = plan_fail(ctx, f, "the reduction's result feeds its own input");
    if (s != KILN_OK) {
        gen_plan_free(p);
        return s;
    }
    /* Operands: each param per space it is used in, then the results. */
    for (int c = 0; c <= oc; c++)
        for (int i = 0; i < f->n_params; i++) {
            p->param_op[c][i] = -1;
            const kiln_var *v = f->params[i];
            if (!p->need[c][v->id]) continue;
            p->param_op[c][i] = p->n_op;
            gen_opnd *o = add_opnd(p, i, v->type->dtype, false, c);
            space_strides(v->type, c, nd, shape, mask, keepdims, ond, oshape, o->st);
        }
    for (int i = 0; i < body->n_results; i++) {
        const kiln_type *t = body->results[i]->type;
        gen_opnd *o = add_opnd(p, f->n_params + i, t->dtype, true, oc);
        space_strides(t, oc, nd, shape, mask, keepdims, ond, oshape, o->st);
    }
    collapse(p, nd, shape, mask);
    return KILN_OK;
}

void gen_plan_free(gen_plan *p) {
    free(p->op);
    for (int c = 0; c < 2; c++) {
        free(p->need[c]);
        free(p->param_op[c]);
    }
    memset(p, 0, sizeof *p);
}
