/* util.c — helpers shared by shape rules and reference kernels: numpy broadcasting, axis-list
 * normalisation, and the structural ops' rules (tuple, get, constant). */
#include "ir/ir.h"
#include <string.h>

bool kiln_broadcast_shapes(int na, const int64_t *a, int nb, const int64_t *b, int *n_out, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)], db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    *n_out = n;
    return true;
}

void kiln_broadcast_strides(int n_in, const int64_t *in_shape, int n_out, const int64_t *out_shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = n_out - 1; i >= 0; i--) {
        int k = i - (n_out - n_in);
        if (k < 0) {
            strides[i] = 0;
            continue;
        }
        strides[i] = (in_shape[k] == 1 && out_shape[i] != 1) ? 0 : s;
        s *= in_shape[k];
    }
}

int kiln_norm_axes(const kiln_attr *axes, int ndim, bool *mask) {
    memset(mask, 0, sizeof(bool) * KILN_MAX_DIMS);
    if (!axes->set) {
        for (int i = 0; i < ndim; i++) mask[i] = true;
        return ndim;
    }
    int count = 0;
    for (int i = 0; i < axes->n; i++) {
        int ax = kiln_norm_axis(axes->ints[i], ndim);
        if (ax < 0 || (ndim == 0 && ax == 0) || mask[ax]) return -1 - i;
        mask[ax] = true;
        count++;
    }
    return count;
}

const struct kiln_type *kiln_shape_tuple(kiln_shape_args *a) {
    const kiln_type *t = kiln_type_tuple_a(a->arena, a->n_in, a->in);
    return t ? t : kiln_op_fail(a, "out of memory");
}

const struct kiln_type *kiln_shape_get(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *t = a->in[0];
    int64_t i = kiln_attr_int(a->op, a->attrs, "index");
    if (t->kind != KILN_TYPE_TUPLE) return kiln_op_fail(a, "input is %s, not a tuple", kiln_type_cstr(t, tb, sizeof tb));
    if (i < 0 || i >= t->n_elems)
        return kiln_op_fail(a, "index %lld out of range for %s", (long long)i, kiln_type_cstr(t, tb, sizeof tb));
    return t->elems[i];
}

const struct kiln_type *kiln_shape_constant(kiln_shape_args *a) {
    const kiln_tensor *t = kiln_attr_get(a->op, a->attrs, "value")->tensor;
    return kiln_type_tensor_a(a->arena, t->dtype, t->ndim, t->shape);
}

/* list_new(x): an empty list of x's type (x gives only the type). */
const struct kiln_type *kiln_shape_list_new(kiln_shape_args *a) {
    const kiln_type *t = kiln_type_list_a(a->arena, a->in[0]);
    return t ? t : kiln_op_fail(a, "out of memory");
}

static bool is_list(kiln_shape_args *a, const kiln_type *t) {
    char tb[256];
    if (t->kind == KILN_TYPE_LIST) return true;
    kiln_op_fail(a, "input 0 is %s, not a list", kiln_type_cstr(t, tb, sizeof tb));
    return false;
}

const struct kiln_type *kiln_shape_list_push(kiln_shape_args *a) {
    char lb[256], xb[256];
    if (!is_list(a, a->in[0])) return NULL;
    if (!kiln_type_equal(a->in[0]->elems[0], a->in[1]))
        return kiln_op_fail(a, "cannot push %s onto %s", kiln_type_cstr(a->in[1], xb, sizeof xb), kiln_type_cstr(a->in[0], lb, sizeof lb));
    return a->in[0];
}

/* list_pop(l) -> (l without its last element, the last element); empty: a run-time error. */
const struct kiln_type *kiln_shape_list_pop(kiln_shape_args *a) {
    if (!is_list(a, a->in[0])) return NULL;
    const kiln_type *parts[2] = {a->in[0], a->in[0]->elems[0]};
    const kiln_type *t = kiln_type_tuple_a(a->arena, 2, parts);
    return t ? t : kiln_op_fail(a, "out of memory");
}

const struct kiln_type *kiln_shape_list_length(kiln_shape_args *a) {
    if (!is_list(a, a->in[0])) return NULL;
    return kiln_type_scalar(a->arena, KILN_I64);
}

bool kiln_pool_tiles(const int64_t *kernel, const int64_t *stride, const int64_t *dil, const int64_t *pad, int64_t h,
                     int64_t w, int64_t oh, int64_t ow) {
    return stride[0] == kernel[0] && stride[1] == kernel[1] && dil[0] == 1 && dil[1] == 1 && !pad[0] && !pad[1] &&
           !pad[2] && !pad[3] && oh * kernel[0] <= h && ow * kernel[1] <= w;
}
