/* cost.h — the cost model of one IR node: floating-point operations and bytes moved, for the
 * analysis (kiln analyze) and the profiler's roofline columns. */
#ifndef KILN_COST_H
#define KILN_COST_H

#include "ir/ir.h"

/* Floating-point operations of node n (types must be inferred; 0 where unknown):
 *   matmul 2*M*N*K (times the batch), conv2d 2*N*Cout*Ho*Wo*(Cin/groups)*kh*kw, conv2d_transpose
 *   and conv2d_backward_weight the conv they differentiate; pools output * window (adaptive:
 *   one per input element), their backwards the same; elementwise and broadcast ops 1 per output
 *   element (transcendentals too), random draws 1 per element; reductions and cumsum 1 per input
 *   element; nll_loss 1 per target element; cast, copy, layout, indexing and creation 0 (their
 *   accumulating backwards 1 per dy element, bilinear resize 8 per output element); sorts
 *   n*ceil(log2(axis length)) comparisons; attention_forward 4*Tq*Tk*D per batch entry (masks
 *   ignored), attention_backward 2.5 times that. Composites: the sum over their decomposition. call:
 *   the sum over the callee's body (a fused kernel's too; a recursive call adds 0); if: the larger
 *   branch; while: ONE iteration (cond + body), as the trip count is unknown. */
double kiln_node_flops(const kiln_node *n);

/* Bytes read and written by node n: the sizes of its tensor inputs plus its tensor results
 * (tuples counted element by element; scalars and structural ops such as constant, tuple, get
 * move nothing). A call of a `kernel` function is one kernel: its inputs and results; a call of
 * an ordinary function, if and while follow the rule of kiln_node_flops over their bodies. */
int64_t kiln_node_bytes(const kiln_node *n);

#endif /* KILN_COST_H */
