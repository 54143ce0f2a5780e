/* index.c — gradient rules of the ops that select, move or duplicate elements: concatenate,
 * split, strided_slice, pad, repeat, tile, reverse, resize2d, take, gather, gather_nd, scatter,
 * sort and topk. Where no existing op transposes the forward map, a backward primitive of
 * src/ops/index_grad.c does (its attributes: the forward's, plus the forward input's shape). */
#include "grad/grad.h"
#include <stdlib.h>
#include <string.h>

static kiln_status status(kiln_builder *b, const kiln_var *v) {
    return v ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

/* Whether x is a value a gradient flows to: a float tensor that is not a literal. */
static bool takes_grad(const kiln_var *x) {
    return x->kind != KILN_VAR_LITERAL && kiln_type_is_tensor(x->type) && kiln_dtype_is_float(x->type->dtype);
}

/* The backward primitive `bop` of node n (input x): inputs dy and, when not NULL, the indices;
 * attributes those of n followed by shape = x's shape. */
static kiln_var *backward_prim(kiln_builder *b, const kiln_node *n, kiln_op bop, kiln_var *dy, kiln_var *indices,
                               const kiln_var *x) {
    kiln_buf attrs = {0};
    char sb[256];
    kiln_buf_attrs(&attrs, n->op, n->attrs);
    char *s = kiln_buf_take(&attrs);
    if (!s) {
        kiln_error(b->region->func->module->ctx, KILN_ERR_OOM, "autodiff: out of memory");
        return NULL;
    }
    kiln_var *in[2] = {dy, indices};
    kiln_var *r = kiln_build(b, bop, indices ? 2 : 1, in, "%s%sshape=%s", s, *s ? ", " : "", kiln_grad_shape(x->type, sb, sizeof sb));
    free(s);
    return r;
}

static kiln_var *reshape(kiln_builder *b, kiln_var *v, int nd, const int64_t *shape) {
    char sb[256];
    return kiln_build(b, KILN_OP_RESHAPE, 1, &v, "shape=%s", kiln_shape_str(nd, shape, sb, sizeof sb));
}

/* scatter(zeros_like(x), indices, g, axis, reduce=add): g added at the positions a gather along
 * `axis` with these indices reads from. */
static kiln_var *scatter_add(kiln_builder *b, kiln_var *x, kiln_var *indices, kiln_var *g, int64_t axis) {
    kiln_var *in[3] = {kiln_grad_zeros(b, x), indices, g};
    return kiln_build(b, KILN_OP_SCATTER, 3, in, "axis=%lld, reduce=\"add\"", (long long)axis);
}

/* ---- concatenate, split: the slices of dy, the concatenation of the parts' adjoints -------- */
kiln_status kiln_grad_concatenate(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    int ax = kiln_norm_axis(kiln_attr_int(n->op, n->attrs, "axis"), y->type->ndim);
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = in[i]->type->shape[ax];
        if (takes_grad(in[i]) &&
            !(din[i] = kiln_build(b, KILN_OP_STRIDED_SLICE, 1, &dy, "begin=[%lld], end=[%lld], axes=[%d]", (long long)off,
                                  (long long)(off + len), ax)))
            return status(b, NULL);
        off += len;
    }
    return KILN_OK;
}

kiln_status kiln_grad_split(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    int k = y->type->n_elems;
    if (!takes_grad(in[0])) return KILN_OK;
    if (!k) return status(b, din[0] = kiln_grad_zeros(b, in[0]));
    kiln_var **parts = kiln_arena_alloc(&b->region->func->module->arena, sizeof *parts * (size_t)k);
    if (!parts) return kiln_error(b->region->func->module->ctx, KILN_ERR_OOM, "autodiff: out of memory");
    for (int i = 0; i < k; i++)
        if (!(parts[i] = kiln_build(b, KILN_OP_GET, 1, &dy, "index=%d", i))) return status(b, NULL);
    din[0] = kiln_build(b, KILN_OP_CONCATENATE, k, parts, "axis=%lld", (long long)kiln_attr_int(n->op, n->attrs, "axis"));
    return status(b, din[0]);
}

/* ---- strided_slice, pad, resize2d ---------------------------------------------------------- */
kiln_status kiln_grad_strided_slice(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = backward_prim(b, n, KILN_OP_STRIDED_SLICE_BACKWARD, dy, NULL, in[0]));
}

/* Constant padding: dy's interior. Reflect / edge: the border elements also add to the input
 * elements they copy (pad_backward). */
kiln_status kiln_grad_pad(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *xt = in[0]->type;
    if (!takes_grad(in[0])) return KILN_OK;
    if (xt->ndim == 0) return status(b, din[0] = dy);
    if (strcmp(kiln_attr_str(n->op, n->attrs, "mode"), "constant"))
        return status(b, din[0] = backward_prim(b, n, KILN_OP_PAD_BACKWARD, dy, NULL, in[0]));
    const int64_t *pw = kiln_attr_get(n->op, n->attrs, "pad_width")->ints;
    int64_t begin[KILN_MAX_DIMS], end[KILN_MAX_DIMS];
    char bb[256], eb[256];
    for (int d = 0; d < xt->ndim; d++) {
        begin[d] = pw[2 * d];
        end[d] = pw[2 * d] + xt->shape[d];
    }
    din[0] = kiln_build(b, KILN_OP_STRIDED_SLICE, 1, &dy, "begin=%s, end=%s", kiln_shape_str(xt->ndim, begin, bb, sizeof bb),
                        kiln_shape_str(xt->ndim, end, eb, sizeof eb));
    return status(b, din[0]);
}

kiln_status kiln_grad_resize2d(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = backward_prim(b, n, KILN_OP_RESIZE2D_BACKWARD, dy, NULL, in[0]));
}

/* ---- repeat, tile: sum the copies; reverse: reverse back ----------------------------------- */
/* repeat puts `repeats` copies right after each element of the axis (of the flattened input when
 * the axis is unset): dy viewed as [outer, dim, repeats, inner], summed over the copies. */
kiln_status kiln_grad_repeat(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *xt = in[0]->type;
    const kiln_attr *axis = kiln_attr_get(n->op, n->attrs, "axis");
    if (!takes_grad(in[0])) return KILN_OK;
    int ax = axis->set ? kiln_norm_axis(axis->i, xt->ndim) : 0;
    int64_t view[4] = {1, kiln_shape_numel(xt->ndim, xt->shape), kiln_attr_int(n->op, n->attrs, "repeats"), 1};
    if (axis->set) {
        view[0] = kiln_shape_numel(ax, xt->shape);
        view[1] = xt->shape[ax];
        view[3] = kiln_shape_numel(xt->ndim - ax - 1, xt->shape + ax + 1);
    }
    kiln_var *g = reshape(b, dy, 4, view);
    if (g) g = kiln_build(b, KILN_OP_SUM, 1, &g, "axes=[2]");
    return status(b, din[0] = g ? reshape(b, g, xt->ndim, xt->shape) : NULL);
}

/* Output dim i of tile is (copy, input index) row-major (reps and shape aligned at the right):
 * per tiled dim, dy viewed as [outer, reps_i, dim_i, inner] and summed over the copies. */
kiln_status kiln_grad_tile(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *xt = in[0]->type;
    const kiln_attr *reps = kiln_attr_get(n->op, n->attrs, "reps");
    if (!takes_grad(in[0])) return KILN_OK;
    int nd = y->type->ndim;
    int64_t cur[KILN_MAX_DIMS];
    memcpy(cur, y->type->shape, sizeof(int64_t) * (size_t)nd);
    kiln_var *g = dy;
    for (int i = 0; g && i < nd; i++) {
        int j = i - (nd - reps->n), k = i - (nd - xt->ndim);
        int64_t r = j < 0 ? 1 : reps->ints[j], dim = k < 0 ? 1 : xt->shape[k];
        if (r == 1) continue;
        int64_t view[4] = {kiln_shape_numel(i, cur), r, dim, kiln_shape_numel(nd - i - 1, cur + i + 1)};
        if ((g = reshape(b, g, 4, view))) g = kiln_build(b, KILN_OP_SUM, 1, &g, "axes=[1]");
        cur[i] = dim;
    }
    return status(b, din[0] = g ? reshape(b, g, xt->ndim, xt->shape) : NULL);
}

kiln_status kiln_grad_reverse(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_attr *axes = kiln_attr_get(n->op, n->attrs, "axes");
    char sb[256];
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = kiln_build(b, KILN_OP_REVERSE, 1, &dy, "axes=%s", kiln_shape_str(axes->n, axes->ints, sb, sizeof sb)));
}

/* ---- take, gather, gather_nd, scatter ------------------------------------------------------ */
/* Repeated indices add up (take_backward, gather_nd_backward, scatter with reduce=add). */
kiln_status kiln_grad_take(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = backward_prim(b, n, KILN_OP_TAKE_BACKWARD, dy, in[1], in[0]));
}

kiln_status kiln_grad_gather(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = scatter_add(b, in[0], in[1], dy, kiln_attr_int(n->op, n->attrs, "axis")));
}

kiln_status kiln_grad_gather_nd(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    return status(b, din[0] = backward_prim(b, n, KILN_OP_GATHER_ND_BACKWARD, dy, in[1], in[0]));
}

/* scatter(x, indices, src): reduce=none overwrites, so x's adjoint is dy with the written
 * positions zeroed, and src reads dy there (gather; zero-padded to src's shape where src is
 * larger than the indices). With a repeated index only the last write lands, yet every writer
 * gets the gradient (as torch). reduce=add: x's adjoint is dy itself. */
kiln_status kiln_grad_scatter(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    int64_t axis = kiln_attr_int(n->op, n->attrs, "axis");
    bool add = !strcmp(kiln_attr_str(n->op, n->attrs, "reduce"), "add");
    kiln_var *x = in[0], *ind = in[1], *src = in[2];
    if (takes_grad(x)) {
        kiln_var *zin[3] = {dy, ind, kiln_grad_zeros(b, src)};
        din[0] = add ? dy : kiln_build(b, KILN_OP_SCATTER, 3, zin, "axis=%lld", (long long)axis);
        if (!din[0]) return status(b, NULL);
    }
    if (takes_grad(src)) {
        const kiln_type *st = src->type, *it = ind->type;
        kiln_var *g = kiln_build(b, KILN_OP_GATHER, 2, (kiln_var *[]){dy, ind}, "axis=%lld", (long long)axis);
        int64_t pw[2 * KILN_MAX_DIMS];
        bool grow = false;
        for (int d = 0; d < st->ndim; d++) {
            pw[2 * d] = 0;
            pw[2 * d + 1] = st->shape[d] - it->shape[d];
            grow |= pw[2 * d + 1] != 0;
        }
        char sb[512];
        if (g && grow) g = kiln_build(b, KILN_OP_PAD, 1, &g, "pad_width=%s", kiln_shape_str(2 * st->ndim, pw, sb, sizeof sb));
        if (!(din[2] = g)) return status(b, NULL);
    }
    return KILN_OK;
}

/* ---- sort, topk: the values' adjoint goes back to the positions they came from ------------- */
kiln_status kiln_grad_sort(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    int64_t axis = kiln_attr_int(n->op, n->attrs, "axis");
    if (!takes_grad(in[0])) return KILN_OK;
    if (in[0]->type->ndim == 0) return status(b, din[0] = dy);
    kiln_var *order = kiln_build(b, KILN_OP_ARGSORT, 1, &in[0], "axis=%lld, descending=%s", (long long)axis,
                                 kiln_attr_bool(n->op, n->attrs, "descending") ? "true" : "false");
    return status(b, din[0] = order ? scatter_add(b, in[0], order, dy, axis) : NULL);
}

kiln_status kiln_grad_topk(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!takes_grad(in[0])) return KILN_OK;
    kiln_var *dv = kiln_build(b, KILN_OP_GET, 1, &dy, "index=0"), *ind = kiln_build(b, KILN_OP_GET, 1, &y, "index=1");
    if (!dv || !ind) return status(b, NULL);
    if (in[0]->type->ndim == 0) return status(b, din[0] = dv);
    return status(b, din[0] = scatter_add(b, in[0], ind, dv, kiln_attr_int(n->op, n->attrs, "axis")));
}
