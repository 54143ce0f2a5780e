/* cuda_check.h — the CUDA dialect test helper (cuda_check.c): one op through a CUDA
 * implementation on the device against the reference kernel on the host. */
#ifndef KILN_TEST_CUDA_CHECK_H
#define KILN_TEST_CUDA_CHECK_H

#include "test.h"
#include "dialects/cuda_dialect.h"

#define CUDA_CHECK_MAX 16 /* inputs or results of the op */

/* The GPU backend, or NULL after printing "skip: <test>: <why>". */
const kiln_backend *cuda_check_gpu(const char *test);
/* The highest-priority CUDA implementation (of `dialect`, or any CUDA dialect when -1) taking n. */
const kiln_dialect_impl *cuda_check_impl(const kiln_node *n, int dialect);
/* Runs op(in; attrs) through kiln_op_run on the host and through cuda_check_impl on device copies
 * of the inputs, and fails the test at file:line naming op, input types, attrs, dialect, result
 * and element where a value differs by more than tol * (1 + |reference|), or, with tol_of_max,
 * tol * (1 + the largest |reference| of that result). NaN matches NaN. Needs a GPU. */
void cuda_check_op(const char *file, int line, kiln_context *ctx, int dialect, const char *op, int n_in,
                   const kiln_value *in, const char *attrs, double tol, bool tol_of_max);

/* impl's kernel on node n (input x, output y, host tensors) run with no kiln_cuda_exec set fails
 * with KILN_ERR_INTERNAL "without a CUDA device context" instead of touching a device. */
void cuda_check_needs_exec(const char *file, int line, kiln_context *ctx, const kiln_dialect_impl *impl,
                           const kiln_node *n, kiln_tensor *x, kiln_tensor *y);

#endif
