/* index.c — the indexing ops: take (numpy.take) and its composite embedding, gather
 * (torch.gather), gather_nd (ONNX GatherND), scatter (torch scatter / scatter_add, out of place)
 * and one_hot (ONNX OneHot): shape rules and reference kernels. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers ------------------------------------------------------------------------ */
enum { MODE_RAISE, MODE_CLIP, MODE_WRAP };

/* An index input: an int tensor or an int scalar (bool and float are refused). */
static bool is_index_type(const kiln_type *t) {
    return t->kind != KILN_TYPE_TUPLE && kiln_dtype_is_int(t->dtype);
}

static const kiln_type *index_fail(kiln_shape_args *a, int i) {
    char tb[256];
    return kiln_op_fail(a, "indices (input %d) must be an int tensor, got %s", i, kiln_type_cstr(a->in[i], tb, sizeof tb));
}

/* The indices as a malloc'd int64 array (the caller frees it); NULL with the error set on OOM. */
static int64_t *index_copy(kiln_kernel_args *a, const kiln_tensor *t) {
    int64_t *p = malloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    if (!p) {
        kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for %lld indices", (long long)t->numel);
        return NULL;
    }
    kiln_convert(KILN_I64, p, t->dtype, t->data, t->numel);
    return p;
}

/* Index v into an axis of size n: raise keeps [-n, n) (negatives count from the end, as in
 * numpy), clip clamps to [0, n-1], wrap takes v mod n. -1 when v cannot be resolved. */
static int64_t resolve_index(int64_t v, int64_t n, int mode) {
    if (n <= 0) return -1;
    switch (mode) {
    case MODE_CLIP: return v < 0 ? 0 : v >= n ? n - 1 : v;
    case MODE_WRAP: return ((v % n) + n) % n;
    default: return v < -n || v >= n ? -1 : v < 0 ? v + n : v;
    }
}

static kiln_status index_range_fail(kiln_kernel_args *a, int64_t v, int axis, int64_t n) {
    if (n == 0) return kiln_kernel_fail(a, KILN_ERR_VALUE, "cannot take index %lld from an empty axis", (long long)v);
    if (axis < 0)
        return kiln_kernel_fail(a, KILN_ERR_VALUE, "index %lld is out of range for the flattened input of size %lld",
                                (long long)v, (long long)n);
    return kiln_kernel_fail(a, KILN_ERR_VALUE, "index %lld is out of range for axis %d of size %lld", (long long)v, axis,
                            (long long)n);
}

/* t's indices resolved into an axis of size n (see resolve_index) as a malloc'd array the caller
 * frees; NULL with the error set when one is out of range, or on OOM. */
static int64_t *resolved_indices(kiln_kernel_args *a, const kiln_tensor *t, int64_t n, int mode, int axis) {
    int64_t *p = index_copy(a, t);
    for (int64_t i = 0; p && i < t->numel; i++) {
        int64_t r = resolve_index(p[i], n, mode);
        if (r < 0) {
            index_range_fail(a, p[i], axis, n);
            free(p);
            return NULL;
        }
        p[i] = r;
    }
    return p;
}

static int64_t prod(const int64_t *shape, int from, int to) {
    int64_t p = 1;
    for (int d = from; d < to; d++) p *= shape[d];
    return p;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

/* Offset, in a tensor with element strides `strides`, of the element whose coordinates are
 * those of flat index i of shape `ishape`; dim `skip` (-1: none) contributes nothing. */
static int64_t offset_of(int ndim, const int64_t *ishape, const int64_t *strides, int64_t i, int skip) {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t c = i % ishape[d];
        i /= ishape[d];
        if (d != skip) off += c * strides[d];
    }
    return off;
}

/* ---- take / embedding ---------------------------------------------------------------------- */
/* Result of take: x.shape[:axis] + indices.shape + x.shape[axis+1:]; indices.shape when the
 * axis is unset (x flattened). */
static const kiln_type *take_type(kiln_shape_args *a, bool has_axis, int64_t axis) {
    const kiln_type *x = a->in[0], *ind = a->in[1];
    char tb[256];
    if (!is_index_type(ind)) return index_fail(a, 1);
    if (!has_axis) return kiln_type_tensor_a(a->arena, x->dtype, ind->ndim, ind->shape);
    int ax = kiln_norm_axis(axis, x->ndim);
    if (ax < 0 || x->ndim == 0)
        return kiln_op_fail(a, "axis %lld is out of range for input %s", (long long)axis, kiln_type_cstr(x, tb, sizeof tb));
    int nd = x->ndim - 1 + ind->ndim;
    if (nd > KILN_MAX_DIMS) return kiln_op_fail(a, "result would have %d dims (at most %d)", nd, KILN_MAX_DIMS);
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)ax);
    memcpy(shape + ax, ind->shape, sizeof(int64_t) * (size_t)ind->ndim);
    memcpy(shape + ax + ind->ndim, x->shape + ax + 1, sizeof(int64_t) * (size_t)(x->ndim - ax - 1));
    return kiln_type_tensor_a(a->arena, x->dtype, nd, shape);
}

const struct kiln_type *kiln_shape_take(kiln_shape_args *a) {
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    return take_type(a, axis->set, axis->i);
}

const struct kiln_type *kiln_shape_embedding(kiln_shape_args *a) { return take_type(a, true, 0); }

kiln_status kiln_ref_take(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *ind = a->in[1];
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    const char *mode_s = kiln_attr_str(a->op, a->attrs, "mode");
    int mode = !strcmp(mode_s, "clip") ? MODE_CLIP : !strcmp(mode_s, "wrap") ? MODE_WRAP : MODE_RAISE;
    int ax = axis->set ? kiln_norm_axis(axis->i, x->ndim) : -1;
    /* x viewed as [outer, n, inner]; the result as [outer, m, inner] (m indices). */
    int64_t outer = ax < 0 ? 1 : prod(x->shape, 0, ax), n = ax < 0 ? x->numel : x->shape[ax];
    int64_t inner = ax < 0 ? 1 : prod(x->shape, ax + 1, x->ndim), m = ind->numel;
    int64_t *pos = resolved_indices(a, ind, n, mode, ax);
    if (!pos) return kiln_error_status(a->ctx);
    size_t blk = (size_t)inner * kiln_dtype_size(x->dtype);
    char *dst = a->out[0]->data;
    const char *src = x->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++, dst += blk) memcpy(dst, src + (size_t)(o * n + pos[j]) * blk, blk);
    free(pos);
    return KILN_OK;
}

struct kiln_var *kiln_decompose_embedding(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    (void)n;
    return kiln_build(b, KILN_OP_TAKE, 2, in, "axis=0");
}

/* ---- gather / scatter ---------------------------------------------------------------------- */
/* Checks the index tensor of gather / scatter against x (same ndim; every dim but the axis no
 * larger than x's) and returns the normalised axis, or -1 with the error set. */
static int along_axis_check(kiln_shape_args *a, const kiln_type *x, const kiln_type *ind) {
    char xb[256], ib[256];
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    if (!is_index_type(ind)) return index_fail(a, 1), -1;
    int ax = kiln_norm_axis(axis, x->ndim);
    if (ax < 0 || x->ndim == 0)
        return kiln_op_fail(a, "axis %lld is out of range for input %s", (long long)axis, kiln_type_cstr(x, xb, sizeof xb)), -1;
    if (ind->ndim != x->ndim)
        return kiln_op_fail(a, "indices %s must have as many dims as input %s", kiln_type_cstr(ind, ib, sizeof ib),
                            kiln_type_cstr(x, xb, sizeof xb)), -1;
    for (int d = 0; d < x->ndim; d++)
        if (d != ax && ind->shape[d] > x->shape[d])
            return kiln_op_fail(a, "indices %s are larger than input %s in dim %d", kiln_type_cstr(ind, ib, sizeof ib),
                                kiln_type_cstr(x, xb, sizeof xb), d), -1;
    return ax;
}

const struct kiln_type *kiln_shape_gather(kiln_shape_args *a) {
    if (along_axis_check(a, a->in[0], a->in[1]) < 0) return NULL;
    return kiln_type_tensor_a(a->arena, a->in[0]->dtype, a->in[1]->ndim, a->in[1]->shape);
}

/* y[c] = x[c with c[axis] = indices[c]] for every coordinate c of indices. */
kiln_status kiln_ref_gather(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *ind = a->in[1];
    int ax = kiln_norm_axis(kiln_attr_int(a->op, a->attrs, "axis"), x->ndim);
    size_t es = kiln_dtype_size(x->dtype);
    int64_t xs[KILN_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xs);
    int64_t *idx = resolved_indices(a, ind, x->shape[ax], MODE_RAISE, ax);
    if (!idx) return kiln_error_status(a->ctx);
    for (int64_t i = 0; i < ind->numel; i++) {
        int64_t r = idx[i];
        int64_t off = offset_of(ind->ndim, ind->shape, xs, i, ax) + r * xs[ax];
        memcpy((char *)a->out[0]->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    }
    free(idx);
    return KILN_OK;
}

const struct kiln_type *kiln_shape_scatter(kiln_shape_args *a) {
    const kiln_type *x = a->in[0], *ind = a->in[1], *src = a->in[2];
    char xb[256], sb[256];
    if (along_axis_check(a, x, ind) < 0) return NULL;
    if (src->kind != KILN_TYPE_TENSOR || src->dtype != x->dtype || src->ndim != x->ndim)
        return kiln_op_fail(a, "src %s must be a tensor of the dtype and ndim of input %s", kiln_type_cstr(src, sb, sizeof sb),
                            kiln_type_cstr(x, xb, sizeof xb));
    for (int d = 0; d < x->ndim; d++)
        if (ind->shape[d] > src->shape[d])
            return kiln_op_fail(a, "indices are larger than src %s in dim %d", kiln_type_cstr(src, sb, sizeof sb), d);
    return x;
}

/* *d += *s for one element of each dtype (ints wrap; f16/bf16 add in float, round once). */
#define ADD_INT(name, T) \
    static void name(void *d, const void *s) { *(T *)d = (T)((uint64_t) * (T *)d + (uint64_t) * (const T *)s); }
#define ADD_FLOAT(name, T) \
    static void name(void *d, const void *s) { *(T *)d += *(const T *)s; }
#define ADD_HALF(name, to_f32, from_f32) \
    static void name(void *d, const void *s) { *(uint16_t *)d = from_f32(to_f32(*(uint16_t *)d) + to_f32(*(const uint16_t *)s)); }
ADD_INT(add_i8, int8_t)
ADD_INT(add_u8, uint8_t)
ADD_INT(add_i32, int32_t)
ADD_INT(add_i64, int64_t)
ADD_FLOAT(add_f32, float)
ADD_FLOAT(add_f64, double)
ADD_HALF(add_f16, kiln_f16_to_f32, kiln_f32_to_f16)
ADD_HALF(add_bf16, kiln_bf16_to_f32, kiln_f32_to_bf16)
static void add_bool(void *d, const void *s) { *(uint8_t *)d = *(uint8_t *)d || *(const uint8_t *)s; }
#undef ADD_INT
#undef ADD_FLOAT
#undef ADD_HALF

static void (*const add_fns[KILN_DTYPE_COUNT])(void *, const void *) = {
    [KILN_F32] = add_f32, [KILN_F64] = add_f64, [KILN_F16] = add_f16, [KILN_BF16] = add_bf16, [KILN_I8] = add_i8,
    [KILN_U8] = add_u8,   [KILN_I32] = add_i32, [KILN_I64] = add_i64, [KILN_BOOL] = add_bool,
};

/* y = copy of x; then y[c with c[axis] = indices[c]] = src[c] (reduce=add: += src[c]) for
 * every coordinate c of indices, in order (a repeated index keeps the last write). */
kiln_status kiln_ref_scatter(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *ind = a->in[1], *src = a->in[2];
    char *y = a->out[0]->data;
    int ax = kiln_norm_axis(kiln_attr_int(a->op, a->attrs, "axis"), x->ndim);
    bool add = !strcmp(kiln_attr_str(a->op, a->attrs, "reduce"), "add");
    void (*add_fn)(void *, const void *) = add_fns[x->dtype];
    size_t es = kiln_dtype_size(x->dtype);
    int64_t xs[KILN_MAX_DIMS], ss[KILN_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xs);
    contiguous_strides(src->ndim, src->shape, ss);
    memcpy(y, x->data, (size_t)x->numel * es);
    int64_t *idx = resolved_indices(a, ind, x->shape[ax], MODE_RAISE, ax);
    if (!idx) return kiln_error_status(a->ctx);
    for (int64_t i = 0; i < ind->numel; i++) {
        int64_t r = idx[i];
        char *d = y + (size_t)(offset_of(ind->ndim, ind->shape, xs, i, ax) + r * xs[ax]) * es;
        const char *s = (const char *)src->data + (size_t)offset_of(ind->ndim, ind->shape, ss, i, -1) * es;
        if (add) add_fn(d, s);
        else memcpy(d, s, es);
    }
    free(idx);
    return KILN_OK;
}

/* ---- gather_nd (ONNX GatherND) ------------------------------------------------------------- */
/* x rank r, indices rank q, b = batch_dims: x.shape[:b] == indices.shape[:b]; the last dim of
 * indices, k in [1, r-b], holds coordinates into x.shape[b:b+k]. Result: indices.shape[:-1] +
 * x.shape[b+k:]. */
const struct kiln_type *kiln_shape_gather_nd(kiln_shape_args *a) {
    const kiln_type *x = a->in[0], *ind = a->in[1];
    char xb[256], ib[256];
    int64_t b = kiln_attr_int(a->op, a->attrs, "batch_dims");
    if (!is_index_type(ind)) return index_fail(a, 1);
    kiln_type_cstr(x, xb, sizeof xb);
    kiln_type_cstr(ind, ib, sizeof ib);
    if (ind->ndim < 1) return kiln_op_fail(a, "indices %s must have at least 1 dim", ib);
    if (b < 0 || b >= x->ndim || b >= ind->ndim)
        return kiln_op_fail(a, "batch_dims %lld must be in [0, min(ndim of input %s, ndim of indices %s))", (long long)b, xb, ib);
    for (int d = 0; d < b; d++)
        if (x->shape[d] != ind->shape[d])
            return kiln_op_fail(a, "batch dim %d differs between input %s and indices %s", d, xb, ib);
    int64_t k = ind->shape[ind->ndim - 1];
    if (k < 1 || k > x->ndim - b)
        return kiln_op_fail(a, "the last dim of indices %s must be in [1, %lld] for input %s with batch_dims %lld", ib,
                            (long long)(x->ndim - b), xb, (long long)b);
    int nd = ind->ndim - 1 + x->ndim - (int)(b + k);
    if (nd > KILN_MAX_DIMS) return kiln_op_fail(a, "result would have %d dims (at most %d)", nd, KILN_MAX_DIMS);
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, ind->shape, sizeof(int64_t) * (size_t)(ind->ndim - 1));
    memcpy(shape + ind->ndim - 1, x->shape + b + k, sizeof(int64_t) * (size_t)(x->ndim - b - k));
    return kiln_type_tensor_a(a->arena, x->dtype, nd, shape);
}

kiln_status kiln_ref_gather_nd(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *ind = a->in[1];
    int b = (int)kiln_attr_int(a->op, a->attrs, "batch_dims"), k = (int)ind->shape[ind->ndim - 1];
    /* x as [batch, block] with block = x.shape[b:] holding [.., slice]; indices as
     * [batch, tuples, k]. */
    int64_t batch = prod(x->shape, 0, b), tuples = prod(ind->shape, b, ind->ndim - 1);
    int64_t slice = prod(x->shape, b + k, x->ndim), block = prod(x->shape, b, x->ndim);
    size_t es = kiln_dtype_size(x->dtype), sz = (size_t)slice * es;
    int64_t *idx = index_copy(a, ind);
    if (!idx) return KILN_ERR_OOM;
    char *dst = a->out[0]->data;
    for (int64_t bi = 0; bi < batch; bi++)
        for (int64_t t = 0; t < tuples; t++, dst += sz) {
            const int64_t *tp = idx + (bi * tuples + t) * k;
            int64_t off = 0;
            for (int j = 0; j < k; j++) {
                int64_t n = x->shape[b + j], r = resolve_index(tp[j], n, MODE_RAISE);
                if (r < 0) {
                    kiln_status s = index_range_fail(a, tp[j], b + j, n);
                    free(idx);
                    return s;
                }
                off = off * n + r;
            }
            memcpy(dst, (const char *)x->data + (size_t)(bi * block + off * slice) * es, sz);
        }
    free(idx);
    return KILN_OK;
}

/* ---- one_hot (ONNX OneHot) ----------------------------------------------------------------- */
const struct kiln_type *kiln_shape_one_hot(kiln_shape_args *a) {
    const kiln_type *ind = a->in[0];
    char tb[256];
    int64_t depth = kiln_attr_int(a->op, a->attrs, "depth"), axis = kiln_attr_int(a->op, a->attrs, "axis");
    if (depth < 1) return kiln_op_fail(a, "depth must be positive, got %lld", (long long)depth);
    int ax = kiln_norm_axis(axis, ind->ndim + 1);
    if (ax < 0)
        return kiln_op_fail(a, "axis %lld is out of range for a result of %d dims from indices %s", (long long)axis,
                            ind->ndim + 1, kiln_type_cstr(ind, tb, sizeof tb));
    if (ind->ndim + 1 > KILN_MAX_DIMS) return kiln_op_fail(a, "result would have %d dims (at most %d)", ind->ndim + 1, KILN_MAX_DIMS);
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, ind->shape, sizeof(int64_t) * (size_t)ax);
    shape[ax] = depth;
    memcpy(shape + ax + 1, ind->shape + ax, sizeof(int64_t) * (size_t)(ind->ndim - ax));
    return kiln_type_tensor_a(a->arena, kiln_attr_get(a->op, a->attrs, "dtype")->dtype, ind->ndim + 1, shape);
}

/* y[.., d, ..] (d at `axis`) = on_value where index == d, else off_value. A negative index
 * counts from the end (index + depth); one still out of [0, depth) gives a row of off_value. */
kiln_status kiln_ref_one_hot(kiln_kernel_args *a) {
    const kiln_tensor *ind = a->in[0];
    kiln_tensor *y = a->out[0];
    int64_t depth = kiln_attr_int(a->op, a->attrs, "depth");
    int ax = kiln_norm_axis(kiln_attr_int(a->op, a->attrs, "axis"), ind->ndim + 1);
    size_t es = kiln_dtype_size(y->dtype);
    uint64_t on = 0, off = 0; /* one element of the result dtype each, in their first bytes */
    kiln_store_f64(y->dtype, &on, 0, kiln_attr_float(a->op, a->attrs, "on_value"));
    kiln_store_f64(y->dtype, &off, 0, kiln_attr_float(a->op, a->attrs, "off_value"));
    int64_t *idx = index_copy(a, ind);
    if (!idx) return KILN_ERR_OOM;
    /* y as [outer, depth, inner]; indices as [outer, inner]. */
    int64_t outer = prod(ind->shape, 0, ax), inner = prod(ind->shape, ax, ind->ndim);
    char *p = y->data;
    if (off == 0) memset(p, 0, (size_t)y->numel * es);
    else
        for (int64_t k = 0; k < y->numel; k++) memcpy(p + k * (int64_t)es, &off, es);
    for (int64_t o = 0; o < outer; o++) /* then one `on` per index that names a class */
        for (int64_t i = 0; i < inner; i++) {
            int64_t v = idx[o * inner + i], d = v < 0 ? v + depth : v;
            if (d >= 0 && d < depth) memcpy(p + ((o * depth + d) * inner + i) * (int64_t)es, &on, es);
        }
    free(idx);
    return KILN_OK;
}
