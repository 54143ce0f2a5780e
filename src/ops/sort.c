/* sort.c — sort, argsort and topk along one axis: shape rules and reference kernels. Every
 * line is sorted by a stable merge sort of indices over order-preserving uint64 keys. */
#include "ir/ir.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Axis of a sort op; a 0-d input takes axis 0 or -1 (as torch). -1 if out of range. */
static int sort_axis(int64_t axis, int ndim) {
    if (ndim == 0) return axis == 0 || axis == -1 ? 0 : -1;
    return kiln_norm_axis(axis, ndim);
}

static const kiln_type *check_axis(kiln_shape_args *a, const kiln_type *t, int *ax) {
    char sb[160];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    if ((*ax = sort_axis(axis, t->ndim)) < 0)
        return kiln_op_fail(a, "axis %lld is out of range for shape %s", (long long)axis,
                            kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
    return t;
}

const struct kiln_type *kiln_shape_argsort(kiln_shape_args *a) {
    const kiln_type *t = a->in[0];
    int ax;
    if (!check_axis(a, t, &ax)) return NULL;
    return kiln_type_tensor_a(a->arena, KILN_I64, t->ndim, t->shape);
}

/* topk -> (values: input dtype, indices: i64), dim `axis` replaced by k. */
const struct kiln_type *kiln_shape_topk(kiln_shape_args *a) {
    const kiln_type *t = a->in[0], *elems[2];
    int ax;
    char sb[160];
    if (!check_axis(a, t, &ax)) return NULL;
    int64_t k = kiln_attr_int(a->op, a->attrs, "k"), dim = t->ndim ? t->shape[ax] : 1, shape[KILN_MAX_DIMS];
    if (k < 0 || k > dim || (t->ndim == 0 && k != 1))
        return kiln_op_fail(a, "k = %lld is out of range for axis %d of shape %s (size %lld)", (long long)k, ax,
                            kiln_shape_str(t->ndim, t->shape, sb, sizeof sb), (long long)dim);
    memcpy(shape, t->shape, sizeof shape);
    if (t->ndim) shape[ax] = k;
    if (!(elems[0] = kiln_type_tensor_a(a->arena, t->dtype, t->ndim, shape)) ||
        !(elems[1] = kiln_type_tensor_a(a->arena, KILN_I64, t->ndim, shape)))
        return kiln_op_fail(a, "out of memory");
    return kiln_type_tuple_a(a->arena, 2, elems);
}

/* ---- kernels ------------------------------------------------------------------------------- */
/* Unsigned keys that order like the values: ints with the sign bit flipped; floats by their
 * bits (negatives inverted), -0 as +0, and every NaN above +inf (so NaN sorts last ascending,
 * first descending, and counts as the largest for topk, as in torch). */
static uint64_t key_f64(double v) {
    uint64_t u;
    if (isnan(v)) return UINT64_MAX;
    if (v == 0) v = 0.0;
    memcpy(&u, &v, sizeof u);
    return (u >> 63) ? ~u : u | (UINT64_C(1) << 63);
}

static uint64_t key_i64(int64_t v) { return (uint64_t)v ^ (UINT64_C(1) << 63); }

/* Stable bottom-up merge sort of idx[0..n) by key[idx[i]], ascending or descending; tmp holds
 * n entries of scratch. Equal keys keep their order (lower index first). */
static void merge_sort(const uint64_t *key, int64_t *idx, int64_t *tmp, int64_t n, bool desc) {
    int64_t *src = idx, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                uint64_t ki = key[src[i]], kj = key[src[j]];
                dst[o++] = (desc ? kj > ki : kj < ki) ? src[j++] : src[i++];
            }
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        int64_t *s = src;
        src = dst, dst = s;
    }
    if (src != idx) memcpy(idx, src, sizeof *idx * (size_t)n);
}

/* Sorts every line of x along `axis` and writes its first `k` entries: values (same dtype as
 * x) into vals and indices into inds, either may be NULL. */
static kiln_status sort_lines(kiln_kernel_args *a, int64_t axis, bool desc, int64_t k, kiln_tensor *vals,
                              kiln_tensor *inds) {
    const kiln_tensor *x = a->in[0];
    int ax = sort_axis(axis, x->ndim);
    if (ax < 0) {
        char sb[160];
        return kiln_kernel_fail(a, KILN_ERR_TYPE, "axis %lld is out of range for shape %s", (long long)axis,
                                kiln_shape_str(x->ndim, x->shape, sb, sizeof sb));
    }
    if (vals && vals->dtype != x->dtype)
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "values output is %s for a %s input", kiln_dtype_name(vals->dtype),
                                kiln_dtype_name(x->dtype));
    int64_t outer = 1, inner = 1, n = x->ndim ? x->shape[ax] : 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < ax) outer *= x->shape[i];
        if (i > ax) inner *= x->shape[i];
    }
    if (!x->numel) return KILN_OK;
    /* Keys of the whole input (converted once), then per line: gather, sort, scatter. */
    bool fl = kiln_dtype_is_float(x->dtype);
    uint64_t *keys = malloc(sizeof *keys * (size_t)x->numel), *line = malloc(sizeof *line * (size_t)n);
    int64_t *idx = malloc(sizeof *idx * (size_t)n), *tmp = malloc(sizeof *tmp * (size_t)n);
    if (!keys || !line || !idx || !tmp) {
        free(keys), free(line), free(idx), free(tmp);
        return kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory");
    }
    kiln_convert(fl ? KILN_F64 : KILN_I64, keys, x->dtype, x->data, x->numel);
    for (int64_t i = 0; i < x->numel; i++) {
        double d;
        int64_t v;
        if (fl) memcpy(&d, &keys[i], sizeof d), keys[i] = key_f64(d);
        else memcpy(&v, &keys[i], sizeof v), keys[i] = key_i64(v);
    }
    size_t esz = kiln_dtype_size(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < inner; c++) {
            int64_t base = o * n * inner + c, obase = o * k * inner + c;
            for (int64_t j = 0; j < n; j++) line[j] = keys[base + j * inner], idx[j] = j;
            merge_sort(line, idx, tmp, n, desc);
            for (int64_t j = 0; j < k; j++) {
                int64_t dst = obase + j * inner;
                if (inds) ((int64_t *)inds->data)[dst] = idx[j];
                if (vals)
                    memcpy((char *)vals->data + (size_t)dst * esz, (const char *)x->data + (size_t)(base + idx[j] * inner) * esz, esz);
            }
        }
    free(keys), free(line), free(idx), free(tmp);
    return KILN_OK;
}

/* sort (values) and argsort (indices). The sort shape rule is the shared unary one, so the
 * axis is checked here. */
kiln_status kiln_ref_sort(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    int ax = sort_axis(axis, x->ndim);
    int64_t n = ax >= 0 && x->ndim ? x->shape[ax] : 1;
    bool desc = kiln_attr_bool(a->op, a->attrs, "descending"), is_sort = a->op == KILN_OP_SORT;
    return sort_lines(a, axis, desc, n, is_sort ? a->out[0] : NULL, is_sort ? NULL : a->out[0]);
}

/* topk: largest = descending order; `sorted` = false still returns sorted order (any order is
 * allowed then). */
kiln_status kiln_ref_topk(kiln_kernel_args *a) {
    return sort_lines(a, kiln_attr_int(a->op, a->attrs, "axis"), kiln_attr_bool(a->op, a->attrs, "largest"),
                      kiln_attr_int(a->op, a->attrs, "k"), a->out[0], a->out[1]);
}
