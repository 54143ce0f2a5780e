/* conv_geom.h — the geometry of conv2d, conv2d_transpose and conv2d_backward_weight as the
 * library dialects see it: one direct convolution from a "big" image to "small" positions. */
#ifndef KILN_DIALECT_CONV_GEOM_H
#define KILN_DIALECT_CONV_GEOM_H

#include "ir/ir.h"

/* Small position i pairs with big position i*stride - pad_before + k*dil for kernel tap k, and
 * the weight is always [sc, bc/groups, kh, kw]:
 *   conv2d(x[n, bc, bh, bw], w) -> [n, sc, sh, sw]
 *   conv2d_transpose(x[n, sc, sh, sw], w) -> [n, bc, bh, bw]   (conv2d's data gradient)
 *   conv2d_backward_weight(x[n, bc, bh, bw], dy[n, sc, sh, sw]) -> w's shape */
typedef struct kiln_conv_geom {
    int64_t n, groups;
    int64_t bc, bh, bw;   /* big side: channels, height, width */
    int64_t sc, sh, sw;   /* small side */
    int64_t kh, kw, stride[2], dil[2], pad[4]; /* pad: top, left, bottom, right */
} kiln_conv_geom;

/* Reads g from the shapes of input 0, input 1 and the result (all 4-D, already checked by the
 * shape rule) and the attributes; false if an attribute is malformed. */
bool kiln_conv_geom_read(kiln_op op, const kiln_attr *attrs, const int64_t *in0, const int64_t *in1,
                         const int64_t *out, kiln_conv_geom *g);
/* Same from a node's types: false unless its operands and result are 4-D tensors of dtype dt. */
bool kiln_conv_geom_of_node(const kiln_node *n, kiln_dtype dt, kiln_conv_geom *g);

#endif /* KILN_DIALECT_CONV_GEOM_H */
