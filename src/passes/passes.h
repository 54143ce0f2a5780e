/* passes.h — transformations of IR functions: decompose (composites into primitives) and
 * autodiff (reverse-mode gradients). */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"

kiln_status kiln_pass_decompose(kiln_region *r);
/* zeros shaped like var x (from grad/grad.h, also used here). */
kiln_var *kiln_grad_zeros(kiln_builder *b, kiln_var *x);

#endif
