/* grad.h — helpers shared by the gradient rules in src/grad: emitting through a builder with
 * NULL-propagation, and reducing a broadcast adjoint back to an input's shape and dtype. */
#ifndef KILN_GRAD_H
#define KILN_GRAD_H

#include "ir/ir.h"

/* The adjoint `g` (shaped like a broadcast result) reduced to var x's shape (sum over broadcast
 * axes) and cast to x's dtype; g itself when nothing needs doing. NULL on error. */
kiln_var *kiln_grad_unbroadcast(kiln_builder *b, kiln_var *g, const kiln_var *x);
/* "[2, 3]" of a tensor type, for attribute strings. */
const char *kiln_grad_shape(const kiln_type *t, char *buf, size_t size);
/* zeros shaped like var x (x's dtype). */
kiln_var *kiln_grad_zeros(kiln_builder *b, kiln_var *x);
/* where(cond, g, 0) */
kiln_var *kiln_grad_mask(kiln_builder *b, kiln_var *cond, kiln_var *g);

#endif
