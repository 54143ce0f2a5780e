/* attention.c — gradient rule of attention_forward: one attention_backward call, which
 * recomputes the probabilities from the saved log-sum-exp (the forward keeps q, k, v, out, lse). */
#include "grad/grad.h"
#include "ops/attention.h"

/* y = (out, lse), dy = (dout, dlse): dlse is zeros unless the log-sum-exp itself is used. */
kiln_status kiln_grad_attention_forward(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy,
                                        kiln_var **din) {
    kiln_var *args[7] = {in[0], in[1], in[2]};
    for (int i = 0; i < 2; i++) {
        args[3 + i] = kiln_build(b, KILN_OP_GET, 1, &y, "index=%d", i);
        args[5 + i] = kiln_build(b, KILN_OP_GET, 1, &dy, "index=%d", i);
    }
    kiln_var *g = args[3] && args[4] && args[5] && args[6] ? kiln_attention_build(b, KILN_OP_ATTENTION_BACKWARD, n, 7, args) : NULL;
    for (int i = 0; g && i < 3; i++)
        if (!(din[i] = kiln_build(b, KILN_OP_GET, 1, &g, "index=%d", i))) return kiln_error_status(b->region->func->module->ctx);
    return g ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
