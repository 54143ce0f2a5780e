/* layout.c — gradient rules of data-movement ops: reshape-like ops, transpose, broadcast_to,
 * and the structural tuple / get. */
#include "grad/grad.h"

kiln_status kiln_grad_reshape(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    char sb[256];
    if (!kiln_type_is_tensor(in[0]->type)) return KILN_OK;
    din[0] = kiln_build(b, KILN_OP_RESHAPE, 1, &dy, "shape=%s", kiln_grad_shape(in[0]->type, sb, sizeof sb));
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

kiln_status kiln_grad_transpose(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    int nd = in[0]->type->ndim;
    int64_t inverse[KILN_MAX_DIMS];
    const kiln_attr *axes = kiln_attr_get(n->op, n->attrs, "axes");
    for (int i = 0; i < nd; i++) {
        int to = axes->set ? kiln_norm_axis(axes->ints[i], nd) : nd - 1 - i;
        inverse[to] = i;
    }
    char sb[256];
    din[0] = kiln_build(b, KILN_OP_TRANSPOSE, 1, &dy, "axes=%s", kiln_shape_str(nd, inverse, sb, sizeof sb));
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

kiln_status kiln_grad_broadcast_to(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!kiln_type_is_tensor(in[0]->type)) return KILN_OK;
    din[0] = kiln_grad_unbroadcast(b, dy, in[0]);
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

kiln_status kiln_grad_tuple(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    for (int i = 0; i < n->n_in; i++) {
        if (in[i]->kind == KILN_VAR_LITERAL || kiln_type_is_scalar(in[i]->type)) continue;
        if (!(din[i] = kiln_build(b, KILN_OP_GET, 1, &dy, "index=%d", i))) return kiln_error_status(b->region->func->module->ctx);
    }
    return KILN_OK;
}

/* The adjoint of a tuple is a tuple: dy where element `index` was taken, zeros elsewhere. */
kiln_status kiln_grad_get(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    const kiln_type *t = in[0]->type;
    int64_t index = kiln_attr_int(n->op, n->attrs, "index");
    kiln_context *ctx = b->region->func->module->ctx;
    kiln_var *small[8], **items = KILN_SCRATCH(small, t->n_elems);
    if (!items) return kiln_error(ctx, KILN_ERR_OOM, "get: out of memory");
    bool ok = true;
    for (int i = 0; ok && i < t->n_elems; i++) {
        if (i == index) {
            items[i] = dy;
            continue;
        }
        kiln_var *e = kiln_build(b, KILN_OP_GET, 1, &in[0], "index=%d", i);
        items[i] = kiln_type_is_tensor(t->elems[i]) ? kiln_grad_zeros(b, e) : e;
        ok = items[i] != NULL;
    }
    din[0] = ok ? kiln_build(b, KILN_OP_TUPLE, t->n_elems, items, NULL) : NULL;
    kiln_scratch_free(items, small);
    return din[0] ? KILN_OK : kiln_error_status(ctx);
}
