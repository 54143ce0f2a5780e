/* conv_geom.c — reads the geometry of a conv node or kernel call for the library dialects. */
#include "dialects/conv_geom.h"
#include <string.h>

bool kiln_conv_geom_read(kiln_op op, const kiln_attr *attrs, const int64_t *in0, const int64_t *in1,
                         const int64_t *out, kiln_conv_geom *g) {
    char err[256];
    memset(g, 0, sizeof *g);
    if (!kiln_window_attr(op, attrs, "stride", 1, g->stride, err, sizeof err) ||
        !kiln_window_attr(op, attrs, "dilation", 1, g->dil, err, sizeof err) ||
        !kiln_window_attr(op, attrs, "padding", 0, g->pad, err, sizeof err))
        return false;
    g->groups = kiln_attr_int(op, attrs, "groups");
    const int64_t *big = op == KILN_OP_CONV2D_TRANSPOSE ? out : in0;
    const int64_t *small = op == KILN_OP_CONV2D ? out : op == KILN_OP_CONV2D_TRANSPOSE ? in0 : in1;
    const int64_t *w = op == KILN_OP_CONV2D_BACKWARD_WEIGHT ? out : in1;
    g->n = big[0], g->bc = big[1], g->bh = big[2], g->bw = big[3];
    g->sc = small[1], g->sh = small[2], g->sw = small[3];
    g->kh = w[2], g->kw = w[3];
    return g->groups >= 1 && g->bc % g->groups == 0 && g->sc % g->groups == 0;
}

bool kiln_conv_geom_of_node(const kiln_node *n, kiln_dtype dt, kiln_conv_geom *g) {
    const kiln_type *t[3] = {n->n_in == 2 ? n->in[0]->type : NULL, n->n_in == 2 ? n->in[1]->type : NULL, n->out->type};
    for (int i = 0; i < 3; i++)
        if (!t[i] || t[i]->kind != KILN_TYPE_TENSOR || t[i]->dtype != dt || t[i]->ndim != 4) return false;
    return kiln_conv_geom_read(n->op, n->attrs, t[0]->shape, t[1]->shape, t[2]->shape, g);
}
