/* reduce.c — STUB: shape rules, reference kernels and decompositions of the reduce ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_reduce(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_argreduce(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_cumsum(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_sum_to(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_reduce(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_argreduce(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_cumsum(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
struct kiln_var *kiln_decompose_mean(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_variance(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_l2norm(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_logsumexp(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_sum_to(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
