/* pool.c — STUB: shape rules, reference kernels and decompositions of the pool ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_pool2d(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_adaptive_pool2d(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_max_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_avg_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_adaptive_avg_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_adaptive_max_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
