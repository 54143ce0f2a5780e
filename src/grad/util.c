/* util.c — helpers shared by the gradient rules: undoing broadcasting, zeros, masks. */
#include "grad/grad.h"

const char *kiln_grad_shape(const kiln_type *t, char *buf, size_t size) {
    return kiln_shape_str(t->kind == KILN_TYPE_TENSOR ? t->ndim : 0, t->shape, buf, size);
}

kiln_var *kiln_grad_unbroadcast(kiln_builder *b, kiln_var *g, const kiln_var *x) {
    if (!g) return NULL;
    const kiln_type *xt = x->type, *gt = g->type;
    char sb[256];
    if (xt->kind == KILN_TYPE_TENSOR && !kiln_type_equal(kiln_type_tensor_a(&b->region->func->module->arena, gt->dtype, xt->ndim, xt->shape), gt))
        g = kiln_build(b, KILN_OP_SUM_TO, 1, &g, "shape=%s", kiln_grad_shape(xt, sb, sizeof sb));
    if (g && g->type->dtype != xt->dtype) g = kiln_build(b, KILN_OP_CAST, 1, &g, "dtype=%s", kiln_dtype_name(xt->dtype));
    return g;
}

kiln_var *kiln_grad_zeros(kiln_builder *b, kiln_var *x) { return kiln_build(b, KILN_OP_ZEROS_LIKE, 1, &x, NULL); }

kiln_var *kiln_grad_mask(kiln_builder *b, kiln_var *cond, kiln_var *g) {
    return kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){cond, g, kiln_build_float(b, 0.0)}, NULL);
}
