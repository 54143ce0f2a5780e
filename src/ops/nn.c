/* nn.c — STUB: shape rules, reference kernels and decompositions of the nn ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_matmul(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_batch_matmul(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_dense(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_conv2d(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_conv2d_transpose(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_bias_add(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_pool2d(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_adaptive_pool2d(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_batch_norm_train(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_batch_norm_infer(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_layer_norm(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_nll_loss(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_cross_entropy(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_pointwise_loss(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
kiln_status kiln_ref_matmul(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_conv2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_conv2d_transpose(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_max_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_avg_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_adaptive_avg_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_adaptive_max_pool2d(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
kiln_status kiln_ref_nll_loss(kiln_kernel_args *a) { return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "not implemented"); }
struct kiln_var *kiln_decompose_batch_matmul(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_dense(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_bias_add(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_batch_norm_train(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_batch_norm_infer(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_layer_norm(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_softmax(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_log_softmax(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_cross_entropy(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_mse_loss(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_smooth_l1_loss(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
