/* elementwise.c — STUB: shape rules, reference kernels and decompositions of the elementwise ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_unary(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_logical_not(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_binary(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_divide(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_compare(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_where(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_cast(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_unary(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_clip(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_threshold(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_binary(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_where(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_cast(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
struct kiln_var *kiln_decompose_gelu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_silu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_leaky_relu(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
