/* matmul.c — STUB: shape rules, reference kernels and decompositions of the matmul ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_matmul(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_batch_matmul(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_dense(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_matmul(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
struct kiln_var *kiln_decompose_batch_matmul(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_dense(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
