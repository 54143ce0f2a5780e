/* random.c — STUB: shape rules, reference kernels and decompositions of the random ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_random(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_dropout(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_random_uniform(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_random_normal(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
struct kiln_var *kiln_decompose_dropout(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
