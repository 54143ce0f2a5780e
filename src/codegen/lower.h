/* lower.h — internal: the loop-nest plan of one fused group (lower.c), which render_c.c prints
 * as C and render_cuda.c as CUDA (sharing render.h). */
#ifndef KILN_CODEGEN_LOWER_H
#define KILN_CODEGEN_LOWER_H

#include "codegen/codegen.h"

/* One buffer as the loops see it: a parameter in one space, or a result. */
typedef struct gen_opnd {
    int buf;                    /* index into the kernel's bufs */
    kiln_dtype dt;
    bool out;                   /* a result (written) */
    bool zero;                  /* every stride 0: one element, read once */
    int ctx;                    /* space: 0 = input (producers / elementwise), 1 = reduction result */
    int64_t st[KILN_MAX_DIMS];  /* element strides over the plan's dims */
} gen_opnd;

/* Dims are the collapsed dims of the input space (for a reduction: its input's shape), each kept
 * or reduced. Elementwise groups and column reductions (innermost dim kept) run tiles of the
 * innermost dim; row reductions (innermost dim reduced) one output element per iteration. */
typedef struct gen_plan {
    const kiln_function *f;
    const kiln_node *red;        /* the reduction, or NULL */
    int nd;
    int64_t dim[KILN_MAX_DIMS];
    bool red_dim[KILN_MAX_DIMS];
    bool row;
    int n_op;
    gen_opnd *op;
    int *param_op[2];            /* [space][param index] -> operand, -1 if unused there */
    bool *need[2];               /* [space][var id]: computed in that space */
} gen_plan;

kiln_status gen_plan_init(kiln_context *ctx, const kiln_function *f, gen_plan *p);
void gen_plan_free(gen_plan *p);

#endif /* KILN_CODEGEN_LOWER_H */
