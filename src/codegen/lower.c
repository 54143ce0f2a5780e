/* lower.c — lowering of fused groups to C (stub until written). */
#include "codegen/codegen.h"
#include <stdlib.h>

kiln_status kiln_codegen_c(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out) {
    (void)out;
    return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "kernel @%s: code generation is not written yet", group->name);
}

void kiln_gen_kernel_free(kiln_gen_kernel *k) {
    free(k->source);
    free(k->params);
}
