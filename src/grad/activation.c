/* activation.c — gradient rules of composite activations that keep their identity through
 * autodiff: gelu's backward is one gelu_backward node (its decomposition is the derivative), so
 * the compiler can see dense -> gelu and its backward together (passes/epilogue.c). */
#include "grad/grad.h"

kiln_status kiln_grad_gelu(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    (void)y;
    din[0] = kiln_build(b, KILN_OP_GELU_BACKWARD, 2, (kiln_var *[]){in[0], dy}, "approximate=\"%s\"",
                        kiln_attr_str(n->op, n->attrs, "approximate"));
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
