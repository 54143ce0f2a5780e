/* supports.c — which nodes generated C computes: the fusable primitives (elementwise,
 * broadcast, casts and the plain reductions) on tensors of any kiln dtype. */
#include "codegen/codegen.h"

bool kiln_codegen_supports(const kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    if (!info->kernel || (info->flags & (F_RANDOM | F_SIDE)) || !n->out->type || n->out->type->kind != KILN_TYPE_TENSOR)
        return false;
    /* integer division and powers can fail at run time (by zero, negative exponent): the
     * built-in kernels report those, a generated kernel cannot */
    bool int_result = n->out->type->dtype != KILN_BOOL && !(DT_FLOAT & DT_(n->out->type->dtype));
    if (int_result && (n->op == KILN_OP_FLOOR_DIVIDE || n->op == KILN_OP_MOD || n->op == KILN_OP_POWER)) return false;
    switch (info->cls) {
    case KILN_CLASS_ELEMWISE:
    case KILN_CLASS_BROADCAST: return true;
    case KILN_CLASS_REDUCE:
        return n->op == KILN_OP_SUM || n->op == KILN_OP_PROD || n->op == KILN_OP_MAX || n->op == KILN_OP_MIN ||
               n->op == KILN_OP_ALL || n->op == KILN_OP_ANY;
    default: return false;
    }
}
