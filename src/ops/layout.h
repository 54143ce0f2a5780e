/* layout.h — the strided copy engine shared by the layout ops' kernels (layout.c, slice.c):
 * every transpose, broadcast, slice, flip, tile, concatenation and pad is one or more copies
 * between strided views of contiguous buffers. */
#ifndef KILN_OPS_LAYOUT_H
#define KILN_OPS_LAYOUT_H

#include "ir/ir.h"

/* Most dims a view passed to kiln_strided_copy may have (tile pairs every dim with a repeat). */
#define KILN_VIEW_DIMS (2 * KILN_MAX_DIMS)

/* Row-major element strides of a shape. */
void kiln_contig_strides(int nd, const int64_t *shape, int64_t *strides);
/* For every index i over `shape` (nd <= KILN_VIEW_DIMS dims):
 *   dst[doff + sum i_k*dstr_k] = src[soff + sum i_k*sstr_k],  elements of es bytes.
 * Offsets and strides count elements; source strides may be 0 (broadcast) or negative (flip).
 * Adjacent dims that are contiguous on both sides are merged, and unit-stride inner runs are
 * copied with memcpy. dst and src may be the same buffer if the two views do not overlap. */
void kiln_strided_copy(void *dst, int64_t doff, const int64_t *dstr, const void *src, int64_t soff,
                       const int64_t *sstr, int nd, const int64_t *shape, size_t es);
/* Fills the contiguous output `out` from a view of `in` (shape nd dims, which enumerates out's
 * elements in order): out[k] = in[soff + i(k)·sstr]. */
void kiln_gather_view(kiln_tensor *out, const kiln_tensor *in, int nd, const int64_t *shape, int64_t soff,
                      const int64_t *sstr);
/* Input i of a shape rule as an array type (a scalar counts as 0-d); fails on a tuple. */
const kiln_type *kiln_layout_input(kiln_shape_args *a, int i);
/* A tensor result type; fails if it has more than KILN_MAX_DIMS dims or over 2^63 elements. */
const kiln_type *kiln_layout_result(kiln_shape_args *a, kiln_dtype dt, int nd, const int64_t *shape);

#endif /* KILN_OPS_LAYOUT_H */
