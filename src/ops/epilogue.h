/* epilogue.h — the epilogues of gemm_epilogue (ops/epilogue.c): one GEMM with the activation or
 * reduction cuBLASLt applies to its result, as the epilogue pass makes them (passes/epilogue.c)
 * and the cublaslt dialect runs them (dialects/cublaslt.c). */
#ifndef KILN_OPS_EPILOGUE_H
#define KILN_OPS_EPILOGUE_H

#include "ir/ir.h"

/* gemm_epilogue(a, b, c?) with p = op(a) @ op(b) (a [.., k] or, with transpose_a, [k, m]; b 2-D):
 *   relu      relu(p + c)                  c: the bias [n], optional
 *   gelu      gelu_tanh(p + c)             c: the bias [n], optional
 *   gelu_aux  (gelu_tanh(p + c), p + c)    the pre-activation too, for the backward
 *   dgelu     gelu_backward(c, p, tanh)    c: the pre-activation, shaped like p
 *   bgrad     (p, the row sums of op(a))   a 2-D; no c (a weight gradient and its bias's)
 * The ReLU backward needs no form of its own: relu'(h) = (relu(h) > 0), so the pass reads the
 * mask off the forward's output and cuBLASLt's bit-mask aux (RELU_AUX / DRELU) stays out of the
 * IR (its bit layout is cuBLASLt's own; expressing it in primitives would gain nothing). */
typedef enum kiln_epilogue {
    KILN_EPILOGUE_RELU,
    KILN_EPILOGUE_GELU,
    KILN_EPILOGUE_GELU_AUX,
    KILN_EPILOGUE_DGELU,
    KILN_EPILOGUE_BGRAD,
    KILN_EPILOGUE_COUNT
} kiln_epilogue;

/* "relu", "gelu", ... */
const char *kiln_epilogue_name(kiln_epilogue e);
/* The epilogue of a gemm_epilogue node's attributes; KILN_EPILOGUE_COUNT if unknown. */
kiln_epilogue kiln_epilogue_of(const kiln_attr *attrs);

#endif /* KILN_OPS_EPILOGUE_H */
