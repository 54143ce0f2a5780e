/* slice.c — strided_slice (Python slicing per axis) and pad (constant / reflect / edge): shape
 * rules and reference kernels, both built on the strided copy engine of layout.h. */
#include "ops/layout.h"
#include <string.h>

/* ---- strided_slice ------------------------------------------------------------------------- */
/* Python's slice(begin, end, step).indices(len) for step != 0: the first index taken, and the
 * number of elements taken (returned). */
static int64_t slice_axis(int64_t len, int64_t begin, int64_t end, int64_t step, int64_t *start) {
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? len : len - 1;
    int64_t b = begin < 0 ? begin + len : begin, e = end < 0 ? end + len : end;
    b = b < lower ? lower : b > upper ? upper : b;
    e = e < lower ? lower : e > upper ? upper : e;
    *start = b;
    if (step > 0) return b < e ? (e - b - 1) / step + 1 : 0;
    return e < b ? (e - b + 1) / step + 1 : 0; /* both negative: truncation is floor of |.|/|step| */
}

/* Per dim of an nd-dim input: first index, step and count of a strided_slice. Untouched dims
 * take everything. Returns NULL, or a message on bad attributes (written into msg). */
static const char *slice_plan(kiln_op op, const kiln_attr *attrs, int nd, const int64_t *shape, int64_t *start,
                              int64_t *step, int64_t *count, char *msg, size_t size) {
    const kiln_attr *begin = kiln_attr_get(op, attrs, "begin"), *end = kiln_attr_get(op, attrs, "end");
    const kiln_attr *strides = kiln_attr_get(op, attrs, "strides"), *axes = kiln_attr_get(op, attrs, "axes");
    int n = begin->n;
    bool seen[KILN_MAX_DIMS] = {false};
    if (end->n != n || (strides->set && strides->n != n) || (axes->set && axes->n != n)) {
        snprintf(msg, size, "begin, end, strides and axes must have one length (%d, %d, %d, %d)", n, end->n,
                 strides->set ? strides->n : n, axes->set ? axes->n : n);
        return msg;
    }
    if (!axes->set && n > nd) {
        snprintf(msg, size, "%d begin values for %d dims", n, nd);
        return msg;
    }
    for (int d = 0; d < nd; d++) {
        start[d] = 0;
        step[d] = 1;
        count[d] = shape[d];
    }
    for (int i = 0; i < n; i++) {
        int ax = axes->set ? kiln_norm_axis(axes->ints[i], nd) : i;
        int64_t st = strides->set ? strides->ints[i] : 1;
        if (ax < 0 || ax >= nd || seen[ax]) {
            snprintf(msg, size, "axis %lld out of range or repeated", (long long)axes->ints[i]);
            return msg;
        }
        if (st == 0) {
            snprintf(msg, size, "stride 0 on axis %d", ax);
            return msg;
        }
        seen[ax] = true;
        count[ax] = slice_axis(shape[ax], begin->ints[i], end->ints[i], st, &start[ax]);
        step[ax] = count[ax] > 1 ? st : 1; /* |st| < len here, so st × stride cannot overflow */
    }
    return NULL;
}

const struct kiln_type *kiln_shape_strided_slice(kiln_shape_args *a) {
    char tb[256], msg[512];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS], count[KILN_MAX_DIMS];
    if (slice_plan(a->op, a->attrs, x->ndim, x->shape, start, step, count, msg, sizeof msg))
        return kiln_op_fail(a, "%s (input %s)", msg, kiln_type_cstr(x, tb, sizeof tb));
    return kiln_layout_result(a, x->dtype, x->ndim, count);
}

kiln_status kiln_ref_strided_slice(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    char msg[512];
    int64_t start[KILN_MAX_DIMS], step[KILN_MAX_DIMS], count[KILN_MAX_DIMS], sstr[KILN_MAX_DIMS], soff = 0;
    slice_plan(a->op, a->attrs, x->ndim, x->shape, start, step, count, msg, sizeof msg);
    kiln_contig_strides(x->ndim, x->shape, sstr);
    for (int d = 0; d < x->ndim; d++) {
        if (count[d]) soff += start[d] * sstr[d];
        sstr[d] *= step[d];
    }
    kiln_gather_view(a->out[0], x, x->ndim, count, soff, sstr);
    return KILN_OK;
}

/* ---- pad ----------------------------------------------------------------------------------- */
typedef enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE } pad_mode;

static pad_mode read_mode(kiln_op op, const kiln_attr *attrs) {
    const char *m = kiln_attr_str(op, attrs, "mode");
    return !strcmp(m, "reflect") ? PAD_REFLECT : !strcmp(m, "edge") ? PAD_EDGE : PAD_CONSTANT;
}

const struct kiln_type *kiln_shape_pad(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *pw = kiln_attr_get(a->op, a->attrs, "pad_width");
    pad_mode mode = read_mode(a->op, a->attrs);
    kiln_type_cstr(x, tb, sizeof tb);
    kiln_shape_str(pw->n, pw->ints, sb, sizeof sb);
    if (pw->n != 2 * x->ndim) return kiln_op_fail(a, "pad_width %s needs 2 entries per dim of %s", sb, tb);
    int64_t out[KILN_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        int64_t before = pw->ints[2 * d], after = pw->ints[2 * d + 1], dim = x->shape[d];
        if (before < 0 || after < 0) return kiln_op_fail(a, "pad_width %s is negative (input %s)", sb, tb);
        if (mode == PAD_REFLECT && (before >= dim || after >= dim) && (before || after))
            return kiln_op_fail(a, "reflect pad_width %s needs pads smaller than dim %d (size %lld) of %s", sb, d, (long long)dim, tb);
        if (mode == PAD_EDGE && dim == 0 && (before || after))
            return kiln_op_fail(a, "edge pad of empty dim %d of %s", d, tb);
        if (before > INT64_MAX - dim - after) return kiln_op_fail(a, "pad_width %s makes %s too large", sb, tb);
        out[d] = dim + before + after;
    }
    return kiln_layout_result(a, x->dtype, x->ndim, out);
}

/* Output index j of a padded dim (before, dim) to the index it copies: reflect mirrors about the
 * first / last element without repeating it, edge repeats that element. */
static int64_t pad_source(pad_mode mode, int64_t j, int64_t before, int64_t dim) {
    int64_t first = before, last = before + dim - 1;
    if (mode == PAD_EDGE) return j < first ? first : last;
    return j < first ? 2 * first - j : 2 * last - j;
}

/* Fills n elements of es bytes with the first one, doubling the filled prefix each step. */
static void fill_repeat(char *p, int64_t n, size_t es) {
    for (int64_t done = 1; done < n; done *= 2)
        memcpy(p + done * (int64_t)es, p, (size_t)(done < n - done ? done : n - done) * es);
}

/* Copies the input into the interior, then (reflect / edge) fills the borders axis by axis as
 * numpy does: the slab for pad index j along axis d spans all of axes < d (already padded) and
 * the interior of axes > d, and is copied from the slab at pad_source(j) of the output itself. */
kiln_status kiln_ref_pad(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    kiln_tensor *y = a->out[0];
    const int64_t *pw = kiln_attr_get(a->op, a->attrs, "pad_width")->ints;
    pad_mode mode = read_mode(a->op, a->attrs);
    size_t es = kiln_dtype_size(y->dtype);
    int nd = y->ndim;
    int64_t cs[KILN_MAX_DIMS], xs[KILN_MAX_DIMS], interior = 0;
    if (!y->numel) return KILN_OK;
    if (mode == PAD_CONSTANT) {
        kiln_store_f64(y->dtype, y->data, 0, kiln_attr_float(a->op, a->attrs, "value"));
        fill_repeat(y->data, y->numel, es);
    }
    kiln_contig_strides(nd, y->shape, cs);
    kiln_contig_strides(nd, x->shape, xs);
    for (int d = 0; d < nd; d++) interior += pw[2 * d] * cs[d];
    kiln_strided_copy(y->data, interior, cs, x->data, 0, xs, nd, x->shape, es);
    if (mode == PAD_CONSTANT) return KILN_OK;
    for (int d = 0; d < nd; d++) {
        int64_t slab[KILN_MAX_DIMS], base = 0, before = pw[2 * d], dim = x->shape[d];
        for (int e = 0; e < nd; e++) slab[e] = e < d ? y->shape[e] : e == d ? 1 : x->shape[e];
        for (int e = d + 1; e < nd; e++) base += pw[2 * e] * cs[e];
        for (int64_t j = 0; j < y->shape[d]; j++) {
            if (j == before) j += dim; /* skip the interior */
            if (j >= y->shape[d]) break;
            kiln_strided_copy(y->data, base + j * cs[d], cs, y->data, base + pad_source(mode, j, before, dim) * cs[d], cs, nd, slab, es);
        }
    }
    return KILN_OK;
}
