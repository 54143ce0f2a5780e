/* attention.h — what the attention ops' kernels, gradient rule and CUDA dialect share: the
 * resolved softmax scale and a builder for an attention op carrying another node's attributes. */
#ifndef KILN_ATTENTION_H
#define KILN_ATTENTION_H

#include "ir/ir.h"

/* The `scale` attribute of an attention op, or 1/sqrt(d) when unset (1 for d == 0). */
double kiln_attention_scale(kiln_op op, const kiln_attr *attrs, int64_t d);
/* Emits `op` (an attention op) on in[0..n_in) with node n's `causal` and `scale` attributes. */
kiln_var *kiln_attention_build(kiln_builder *b, kiln_op op, const kiln_node *n, int n_in, kiln_var *const *in);

#endif /* KILN_ATTENTION_H */
