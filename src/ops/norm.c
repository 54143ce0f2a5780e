/* norm.c — STUB: shape rules, reference kernels and decompositions of the norm ops (to be written). */
#include "ir/ir.h"

const struct kiln_type *kiln_shape_batch_norm_train(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_batch_norm_infer(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
const struct kiln_type *kiln_shape_layer_norm(kiln_shape_args *a) { return kiln_op_fail(a, "not implemented"); }
struct kiln_var *kiln_decompose_batch_norm_train(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_batch_norm_infer(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_layer_norm(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_softmax(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
struct kiln_var *kiln_decompose_log_softmax(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) { (void)b; (void)n; (void)in; return NULL; }
