/* layout.c — shape rules, reference kernels and decompositions of the layout ops that move whole
 * tensors (reshape family, transpose, broadcast_to, concatenate / split / stack, tile, repeat,
 * reverse), and the strided copy engine all layout kernels share (layout.h). */
#include "ops/layout.h"
#include <string.h>

/* ---- the strided copy engine --------------------------------------------------------------- */
void kiln_contig_strides(int nd, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

/* One inner run of n elements: memcpy when both sides are unit-stride, else an element loop
 * whose element size is a compile-time constant (so each copy is one move, bit-exact). */
#define COPY_RUN(ES)                                                                             \
    for (int64_t i = 0; i < n; i++) memcpy(d + i * ds * (ES), s + i * ss * (ES), (ES));          \
    break
static void copy_run(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, size_t es) {
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1: COPY_RUN(1);
    case 2: COPY_RUN(2);
    case 4: COPY_RUN(4);
    default: COPY_RUN(8);
    }
}
#undef COPY_RUN

void kiln_strided_copy(void *dst, int64_t doff, const int64_t *dstr, const void *src, int64_t soff,
                       const int64_t *sstr, int nd, const int64_t *shape, size_t es) {
    int64_t sh[KILN_VIEW_DIMS], ds[KILN_VIEW_DIMS], ss[KILN_VIEW_DIMS], idx[KILN_VIEW_DIMS] = {0};
    int n = 0;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 0) return;
        if (shape[i] == 1) continue;
        /* dims (outer, inner) merge into one when outer's stride is inner's stride × extent */
        if (n && ds[n - 1] == dstr[i] * shape[i] && ss[n - 1] == sstr[i] * shape[i]) {
            sh[n - 1] *= shape[i];
            ds[n - 1] = dstr[i];
            ss[n - 1] = sstr[i];
            continue;
        }
        sh[n] = shape[i];
        ds[n] = dstr[i];
        ss[n] = sstr[i];
        n++;
    }
    int64_t e = (int64_t)es, run = n ? sh[n - 1] : 1, rd = n ? ds[n - 1] : 1, rs = n ? ss[n - 1] : 1;
    for (;;) {
        copy_run((char *)dst + doff * e, rd, (const char *)src + soff * e, rs, run, es);
        int k = n - 2;
        for (; k >= 0; k--) { /* odometer over the outer dims */
            doff += ds[k];
            soff += ss[k];
            if (++idx[k] < sh[k]) break;
            doff -= ds[k] * sh[k];
            soff -= ss[k] * sh[k];
            idx[k] = 0;
        }
        if (k < 0) return;
    }
}

void kiln_gather_view(kiln_tensor *out, const kiln_tensor *in, int nd, const int64_t *shape, int64_t soff,
                      const int64_t *sstr) {
    int64_t dstr[KILN_VIEW_DIMS];
    kiln_contig_strides(nd, shape, dstr);
    kiln_strided_copy(out->data, 0, dstr, in->data, soff, sstr, nd, shape, kiln_dtype_size(out->dtype));
}

/* ---- shared rule helpers ------------------------------------------------------------------- */
const kiln_type *kiln_layout_input(kiln_shape_args *a, int i) {
    char tb[256];
    const kiln_type *t = a->in[i];
    if (t->kind == KILN_TYPE_TUPLE) return kiln_op_fail(a, "input %d is %s, not a tensor", i, kiln_type_cstr(t, tb, sizeof tb));
    return t;
}

const kiln_type *kiln_layout_result(kiln_shape_args *a, kiln_dtype dt, int nd, const int64_t *shape) {
    char sb[256];
    if (nd > KILN_MAX_DIMS) return kiln_op_fail(a, "result would have %d dims (at most %d)", nd, KILN_MAX_DIMS);
    if (kiln_shape_numel(nd, shape) < 0)
        return kiln_op_fail(a, "result shape %s has too many elements", kiln_shape_str(nd, shape, sb, sizeof sb));
    const kiln_type *t = kiln_type_tensor_a(a->arena, dt, nd, shape);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* An attribute axis for inserting dims, in [-ndim-1, ndim], normalised; -1 if out of range. */
static int insert_axis(int64_t axis, int ndim) {
    if (axis < -ndim - 1 || axis > ndim) return -1;
    return (int)(axis < 0 ? axis + ndim + 1 : axis);
}

/* ---- reshape, expand_dims, squeeze, batch_flatten ------------------------------------------ */
const struct kiln_type *kiln_shape_reshape(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *s = kiln_attr_get(a->op, a->attrs, "shape");
    const char *want = kiln_shape_str(s->n, s->ints, sb, sizeof sb);
    kiln_type_cstr(x, tb, sizeof tb);
    if (s->n > KILN_MAX_DIMS) return kiln_op_fail(a, "cannot reshape %s into %s: more than %d dims", tb, want, KILN_MAX_DIMS);
    int64_t out[KILN_MAX_DIMS], numel = kiln_shape_numel(x->ndim, x->shape);
    int infer = -1;
    for (int i = 0; i < s->n; i++) {
        out[i] = s->ints[i];
        if (out[i] == -1 && infer < 0) {
            infer = i;
            out[i] = 1;
        } else if (out[i] < 0) {
            return kiln_op_fail(a, "cannot reshape %s into %s: dim %d is %lld (only one -1 is allowed)", tb, want, i,
                                (long long)out[i]);
        }
    }
    int64_t known = kiln_shape_numel(s->n, out);
    if (infer >= 0) {
        if (known <= 0 || numel % known)
            return kiln_op_fail(a, "cannot reshape %s (%lld elements) into %s", tb, (long long)numel, want);
        out[infer] = numel / known;
    } else if (known != numel) {
        return kiln_op_fail(a, "cannot reshape %s (%lld elements) into %s", tb, (long long)numel, want);
    }
    return kiln_layout_result(a, x->dtype, s->n, out);
}

const struct kiln_type *kiln_shape_expand_dims(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis"), num = kiln_attr_int(a->op, a->attrs, "num");
    int ax = insert_axis(axis, x->ndim);
    if (ax < 0)
        return kiln_op_fail(a, "axis %lld out of range [%d, %d] for %s", (long long)axis, -x->ndim - 1, x->ndim,
                            kiln_type_cstr(x, tb, sizeof tb));
    if (num < 0 || x->ndim + num > KILN_MAX_DIMS)
        return kiln_op_fail(a, "num %lld: %s would get more than %d dims", (long long)num, kiln_type_cstr(x, tb, sizeof tb),
                            KILN_MAX_DIMS);
    int64_t out[KILN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i <= x->ndim; i++) {
        if (i == ax)
            for (int k = 0; k < num; k++) out[n++] = 1;
        if (i < x->ndim) out[n++] = x->shape[i];
    }
    return kiln_layout_result(a, x->dtype, n, out);
}

/* The op's "axes" attribute over x as a mask; false (error set) if one is out of range or repeated. */
static bool axes_mask(kiln_shape_args *a, const kiln_type *x, bool *mask) {
    char tb[256];
    const kiln_attr *axes = kiln_attr_get(a->op, a->attrs, "axes");
    int r = kiln_norm_axes(axes, x->ndim, mask);
    if (r >= 0) return true;
    kiln_op_fail(a, "axis %lld out of range or repeated for %s", (long long)axes->ints[-1 - r], kiln_type_cstr(x, tb, sizeof tb));
    return false;
}

const struct kiln_type *kiln_shape_squeeze(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    bool mask[KILN_MAX_DIMS];
    if (!x || !axes_mask(a, x, mask)) return NULL;
    const kiln_attr *axes = kiln_attr_get(a->op, a->attrs, "axes");
    int64_t out[KILN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (mask[i] && x->shape[i] == 1) continue;
        if (mask[i] && axes->set)
            return kiln_op_fail(a, "cannot squeeze axis %d of size %lld in %s", i, (long long)x->shape[i],
                                kiln_type_cstr(x, tb, sizeof tb));
        out[n++] = x->shape[i];
    }
    return kiln_layout_result(a, x->dtype, n, out);
}

/* reshape, expand_dims and squeeze keep the row-major order: the data is copied as is. */
kiln_status kiln_ref_reshape(kiln_kernel_args *a) {
    size_t nbytes = kiln_tensor_nbytes(a->out[0]);
    if (nbytes) memcpy(a->out[0]->data, a->in[0]->data, nbytes);
    return KILN_OK;
}

const struct kiln_type *kiln_shape_batch_flatten(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    if (x->ndim < 1) return kiln_op_fail(a, "input %s has no batch dim", kiln_type_cstr(x, tb, sizeof tb));
    int64_t out[2] = {x->shape[0], kiln_shape_numel(x->ndim - 1, x->shape + 1)};
    return kiln_layout_result(a, x->dtype, 2, out);
}

/* batch_flatten(x) = reshape(x, [N, rest]) (rest given explicitly: -1 is ambiguous when N = 0). */
struct kiln_var *kiln_decompose_batch_flatten(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    const kiln_type *t = n->out->type;
    return kiln_build(b, KILN_OP_RESHAPE, 1, in, "shape=[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
}

/* ---- transpose, swap_axis ------------------------------------------------------------------ */
/* The permutation of a transpose node's axes attribute (unset = reversed dims); -1 if valid,
 * else the index of the first bad entry. */
static int read_perm(const kiln_attr *axes, int nd, int *perm) {
    bool seen[KILN_MAX_DIMS] = {false};
    if (!axes->set) {
        for (int i = 0; i < nd; i++) perm[i] = nd - 1 - i;
        return -1;
    }
    for (int i = 0; i < axes->n; i++) {
        int ax = i < nd ? kiln_norm_axis(axes->ints[i], nd) : -1;
        if (ax < 0 || ax >= nd || seen[ax]) return i;
        seen[ax] = true;
        perm[i] = ax;
    }
    return axes->n == nd ? -1 : axes->n;
}

const struct kiln_type *kiln_shape_transpose(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *axes = kiln_attr_get(a->op, a->attrs, "axes");
    int perm[KILN_MAX_DIMS];
    if (read_perm(axes, x->ndim, perm) >= 0)
        return kiln_op_fail(a, "axes %s are not a permutation of the %d dims of %s", kiln_shape_str(axes->n, axes->ints, sb, sizeof sb),
                            x->ndim, kiln_type_cstr(x, tb, sizeof tb));
    int64_t out[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) out[i] = x->shape[perm[i]];
    return kiln_layout_result(a, x->dtype, x->ndim, out);
}

kiln_status kiln_ref_transpose(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    int perm[KILN_MAX_DIMS];
    int64_t cs[KILN_MAX_DIMS], sstr[KILN_MAX_DIMS];
    read_perm(kiln_attr_get(a->op, a->attrs, "axes"), x->ndim, perm);
    kiln_contig_strides(x->ndim, x->shape, cs);
    for (int i = 0; i < x->ndim; i++) sstr[i] = cs[perm[i]];
    kiln_gather_view(a->out[0], x, x->ndim, a->out[0]->shape, 0, sstr);
    return KILN_OK;
}

/* swap_axis's permutation (identity with axis1 and axis2 exchanged); false if out of range. */
static bool swap_perm(kiln_op op, const kiln_attr *attrs, int nd, int64_t *perm) {
    int a1 = kiln_norm_axis(kiln_attr_int(op, attrs, "axis1"), nd), a2 = kiln_norm_axis(kiln_attr_int(op, attrs, "axis2"), nd);
    if (a1 < 0 || a2 < 0 || a1 >= nd || a2 >= nd) return false;
    for (int i = 0; i < nd; i++) perm[i] = i;
    perm[a1] = a2;
    perm[a2] = a1;
    return true;
}

const struct kiln_type *kiln_shape_swap_axis(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t perm[KILN_MAX_DIMS], out[KILN_MAX_DIMS];
    if (!swap_perm(a->op, a->attrs, x->ndim, perm))
        return kiln_op_fail(a, "axes %lld and %lld: out of range for %s", (long long)kiln_attr_int(a->op, a->attrs, "axis1"),
                            (long long)kiln_attr_int(a->op, a->attrs, "axis2"), kiln_type_cstr(x, tb, sizeof tb));
    for (int i = 0; i < x->ndim; i++) out[i] = x->shape[perm[i]];
    return kiln_layout_result(a, x->dtype, x->ndim, out);
}

/* swap_axis(x) = transpose(x, identity permutation with the two axes exchanged). */
struct kiln_var *kiln_decompose_swap_axis(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    char pb[256];
    int64_t perm[KILN_MAX_DIMS];
    int nd = in[0]->type->ndim;
    swap_perm(n->op, n->attrs, nd, perm);
    return kiln_build(b, KILN_OP_TRANSPOSE, 1, in, "axes=%s", kiln_shape_str(nd, perm, pb, sizeof pb));
}

/* ---- broadcast_to -------------------------------------------------------------------------- */
const struct kiln_type *kiln_shape_broadcast_to(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *s = kiln_attr_get(a->op, a->attrs, "shape");
    bool ok = s->n >= x->ndim && s->n <= KILN_MAX_DIMS;
    for (int i = 0; ok && i < s->n; i++) {
        int k = i - (s->n - x->ndim); /* numpy aligns the trailing dims */
        ok = s->ints[i] >= 0 && (k < 0 || x->shape[k] == s->ints[i] || x->shape[k] == 1);
    }
    if (!ok)
        return kiln_op_fail(a, "cannot broadcast %s to %s", kiln_type_cstr(x, tb, sizeof tb), kiln_shape_str(s->n, s->ints, sb, sizeof sb));
    return kiln_layout_result(a, x->dtype, s->n, s->ints);
}

kiln_status kiln_ref_broadcast_to(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *y = a->out[0];
    int64_t sstr[KILN_MAX_DIMS];
    kiln_broadcast_strides(x->ndim, x->shape, y->ndim, y->shape, sstr);
    kiln_gather_view(a->out[0], x, y->ndim, y->shape, 0, sstr);
    return KILN_OK;
}

/* ---- concatenate, split, stack ------------------------------------------------------------- */
/* Copies an [outer, chunk] block between buffers whose rows are dld / sld elements apart. */
static void copy_block(void *dst, int64_t doff, int64_t dld, const void *src, int64_t soff, int64_t sld, int64_t outer,
                       int64_t chunk, size_t es) {
    int64_t shape[2] = {outer, chunk}, dstr[2] = {dld, 1}, sstr[2] = {sld, 1};
    kiln_strided_copy(dst, doff, dstr, src, soff, sstr, 2, shape, es);
}

/* Elements before and after `axis` (row-major). */
static void outer_inner(const kiln_tensor *t, int axis, int64_t *outer, int64_t *inner) {
    *outer = kiln_shape_numel(axis, t->shape);
    *inner = kiln_shape_numel(t->ndim - axis - 1, t->shape + axis + 1);
}

const struct kiln_type *kiln_shape_concatenate(kiln_shape_args *a) {
    char tb[256], ub[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    int ax = kiln_norm_axis(axis, x->ndim);
    if (x->ndim == 0) return kiln_op_fail(a, "cannot concatenate 0-d input %s", kiln_type_cstr(x, tb, sizeof tb));
    if (ax < 0) return kiln_op_fail(a, "axis %lld out of range for %s", (long long)axis, kiln_type_cstr(x, tb, sizeof tb));
    int64_t out[KILN_MAX_DIMS];
    memcpy(out, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    out[ax] = 0;
    for (int i = 0; i < a->n_in; i++) {
        const kiln_type *t = kiln_layout_input(a, i);
        if (!t) return NULL;
        bool same = t->dtype == x->dtype && t->ndim == x->ndim;
        for (int d = 0; same && d < x->ndim; d++) same = d == ax || t->shape[d] == x->shape[d];
        if (!same)
            return kiln_op_fail(a, "input %d is %s, input 0 is %s: dtypes and all dims but axis %d must match", i,
                                kiln_type_cstr(t, tb, sizeof tb), kiln_type_cstr(x, ub, sizeof ub), ax);
        out[ax] += t->shape[ax];
    }
    return kiln_layout_result(a, x->dtype, x->ndim, out);
}

kiln_status kiln_ref_concatenate(kiln_kernel_args *a) {
    kiln_tensor *y = a->out[0];
    int ax = kiln_norm_axis(kiln_attr_int(a->op, a->attrs, "axis"), y->ndim);
    int64_t outer, inner, off = 0;
    outer_inner(y, ax, &outer, &inner);
    for (int i = 0; i < a->n_in; i++) {
        int64_t chunk = a->in[i]->shape[ax] * inner; /* input i fills columns [off, off + chunk) */
        copy_block(y->data, off, y->shape[ax] * inner, a->in[i]->data, 0, chunk, outer, chunk, kiln_dtype_size(y->dtype));
        off += chunk;
    }
    return KILN_OK;
}

/* Size of part k of a split along a dim of length dim (attributes already checked). */
static int64_t split_part(const kiln_attr *sections, const kiln_attr *sizes, int64_t dim, int k) {
    return sections->set ? dim / sections->i : sizes->ints[k];
}

const struct kiln_type *kiln_shape_split(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *sections = kiln_attr_get(a->op, a->attrs, "sections"), *sizes = kiln_attr_get(a->op, a->attrs, "sizes");
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    int ax = kiln_norm_axis(axis, x->ndim);
    kiln_type_cstr(x, tb, sizeof tb);
    if (ax < 0 || x->ndim == 0) return kiln_op_fail(a, "axis %lld out of range for %s", (long long)axis, tb);
    if (sections->set == sizes->set) return kiln_op_fail(a, "give exactly one of sections and sizes (input %s)", tb);
    int64_t dim = x->shape[ax], n = sections->set ? sections->i : sizes->n, sum = 0;
    if (sections->set && (n < 1 || dim % n))
        return kiln_op_fail(a, "%lld sections do not divide axis %d (size %lld) of %s", (long long)n, ax, (long long)dim, tb);
    bool ok = true;
    for (int k = 0; sizes->set && ok && k < n; k++) ok = sizes->ints[k] >= 0 && (sum += sizes->ints[k]) <= dim;
    if (sizes->set && (!ok || sum != dim))
        return kiln_op_fail(a, "sizes %s do not sum to axis %d (size %lld) of %s", kiln_shape_str(sizes->n, sizes->ints, sb, sizeof sb),
                            ax, (long long)dim, tb);
    if (n > INT32_MAX) return kiln_op_fail(a, "%lld parts are too many", (long long)n);
    const kiln_type **parts = kiln_arena_alloc(a->arena, sizeof *parts * (size_t)(n ? n : 1));
    if (!parts) return kiln_op_fail(a, "out of memory");
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    for (int k = 0; k < n; k++) {
        shape[ax] = split_part(sections, sizes, dim, k);
        if (!(parts[k] = kiln_layout_result(a, x->dtype, x->ndim, shape))) return NULL;
    }
    const kiln_type *t = kiln_type_tuple_a(a->arena, (int)n, parts);
    return t ? t : kiln_op_fail(a, "out of memory");
}

kiln_status kiln_ref_split(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    const kiln_attr *sections = kiln_attr_get(a->op, a->attrs, "sections"), *sizes = kiln_attr_get(a->op, a->attrs, "sizes");
    int ax = kiln_norm_axis(kiln_attr_int(a->op, a->attrs, "axis"), x->ndim);
    int64_t outer, inner, off = 0;
    outer_inner(x, ax, &outer, &inner);
    for (int k = 0; k < a->n_out; k++) {
        int64_t chunk = split_part(sections, sizes, x->shape[ax], k) * inner; /* part k: columns [off, off + chunk) */
        copy_block(a->out[k]->data, 0, chunk, x->data, off, x->shape[ax] * inner, outer, chunk, kiln_dtype_size(x->dtype));
        off += chunk;
    }
    return KILN_OK;
}

const struct kiln_type *kiln_shape_stack(kiln_shape_args *a) {
    char tb[256], ub[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t axis = kiln_attr_int(a->op, a->attrs, "axis");
    int ax = insert_axis(axis, x->ndim);
    if (ax < 0)
        return kiln_op_fail(a, "axis %lld out of range [%d, %d] for %s", (long long)axis, -x->ndim - 1, x->ndim,
                            kiln_type_cstr(x, tb, sizeof tb));
    for (int i = 1; i < a->n_in; i++) {
        const kiln_type *t = kiln_layout_input(a, i);
        if (!t) return NULL;
        bool same = t->dtype == x->dtype && t->ndim == x->ndim;
        for (int d = 0; same && d < x->ndim; d++) same = t->shape[d] == x->shape[d];
        if (!same)
            return kiln_op_fail(a, "input %d is %s, input 0 is %s: stacked tensors must have one type", i,
                                kiln_type_cstr(t, tb, sizeof tb), kiln_type_cstr(x, ub, sizeof ub));
    }
    int64_t out[KILN_MAX_DIMS + 1];
    for (int i = 0, n = 0; i <= x->ndim; i++) {
        if (i == ax) out[n++] = a->n_in;
        if (i < x->ndim) out[n++] = x->shape[i];
    }
    return kiln_layout_result(a, x->dtype, x->ndim + 1, out);
}

/* stack(x_0..x_n-1, axis) = concatenate(expand_dims(x_i, axis), axis). */
struct kiln_var *kiln_decompose_stack(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    int nd = in[0]->type->ndim, ax = insert_axis(kiln_attr_int(n->op, n->attrs, "axis"), nd);
    kiln_var **parts = kiln_arena_alloc(&b->region->func->module->arena, sizeof *parts * (size_t)n->n_in);
    if (!parts) {
        kiln_error(b->region->func->module->ctx, KILN_ERR_OOM, "op 'stack': out of memory");
        return NULL;
    }
    for (int i = 0; i < n->n_in; i++)
        if (!(parts[i] = kiln_build(b, KILN_OP_EXPAND_DIMS, 1, &in[i], "axis=%d", ax))) return NULL;
    return kiln_build(b, KILN_OP_CONCATENATE, n->n_in, parts, "axis=%d", ax);
}

/* ---- tile, repeat, reverse ----------------------------------------------------------------- */
/* numpy.tile aligns reps and the shape at the right, padding the shorter one with 1s. */
static int tile_dims(const kiln_attr *reps, int nd, const int64_t *shape, int64_t *in_shape, int64_t *r) {
    int n = reps->n > nd ? reps->n : nd;
    for (int i = 0; i < n; i++) {
        int k = i - (n - nd), j = i - (n - reps->n);
        in_shape[i] = k < 0 ? 1 : shape[k];
        r[i] = j < 0 ? 1 : reps->ints[j];
    }
    return n;
}

const struct kiln_type *kiln_shape_tile(kiln_shape_args *a) {
    char tb[256], sb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    const kiln_attr *reps = kiln_attr_get(a->op, a->attrs, "reps");
    bool ok = reps->n <= KILN_MAX_DIMS;
    for (int i = 0; ok && i < reps->n; i++) ok = reps->ints[i] >= 0;
    if (!ok) return kiln_op_fail(a, "bad reps %s for %s", kiln_shape_str(reps->n, reps->ints, sb, sizeof sb), kiln_type_cstr(x, tb, sizeof tb));
    int64_t in_shape[KILN_MAX_DIMS], r[KILN_MAX_DIMS], out[KILN_MAX_DIMS];
    int n = tile_dims(reps, x->ndim, x->shape, in_shape, r);
    for (int i = 0; i < n; i++) {
        if (in_shape[i] && r[i] > INT64_MAX / in_shape[i])
            return kiln_op_fail(a, "reps %s make %s too large", kiln_shape_str(reps->n, reps->ints, sb, sizeof sb), kiln_type_cstr(x, tb, sizeof tb));
        out[i] = in_shape[i] * r[i];
    }
    return kiln_layout_result(a, x->dtype, n, out);
}

/* Output dim i of tile is the pair (repeat r_i, input index) in row-major order, so the output
 * is the view [r_0, d_0, r_1, d_1, ...] of the input with strides [0, s_0, 0, s_1, ...]. */
kiln_status kiln_ref_tile(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    int64_t in_shape[KILN_MAX_DIMS], r[KILN_MAX_DIMS], cs[KILN_MAX_DIMS], shape[KILN_VIEW_DIMS], sstr[KILN_VIEW_DIMS];
    int n = tile_dims(kiln_attr_get(a->op, a->attrs, "reps"), x->ndim, x->shape, in_shape, r);
    kiln_contig_strides(n, in_shape, cs);
    for (int i = 0; i < n; i++) {
        shape[2 * i] = r[i];
        sstr[2 * i] = 0;
        shape[2 * i + 1] = in_shape[i];
        sstr[2 * i + 1] = cs[i];
    }
    kiln_gather_view(a->out[0], x, 2 * n, shape, 0, sstr);
    return KILN_OK;
}

const struct kiln_type *kiln_shape_repeat(kiln_shape_args *a) {
    char tb[256];
    const kiln_type *x = kiln_layout_input(a, 0);
    if (!x) return NULL;
    int64_t r = kiln_attr_int(a->op, a->attrs, "repeats"), numel = kiln_shape_numel(x->ndim, x->shape);
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    kiln_type_cstr(x, tb, sizeof tb);
    if (r < 0) return kiln_op_fail(a, "repeats %lld is negative (input %s)", (long long)r, tb);
    int ax = axis->set ? kiln_norm_axis(axis->i, x->ndim) : 0;
    if (axis->set && (ax < 0 || x->ndim == 0)) return kiln_op_fail(a, "axis %lld out of range for %s", (long long)axis->i, tb);
    int64_t out[KILN_MAX_DIMS];
    int n = axis->set ? x->ndim : 1;
    if (axis->set) memcpy(out, x->shape, sizeof(int64_t) * (size_t)n);
    else out[0] = numel;
    if (out[ax] && r > INT64_MAX / out[ax]) return kiln_op_fail(a, "repeats %lld make %s too large", (long long)r, tb);
    out[ax] *= r;
    return kiln_layout_result(a, x->dtype, n, out);
}

/* The output is the input viewed with an extra dim of size `repeats` and stride 0 right after
 * the axis (the flattened input when axis is unset). */
kiln_status kiln_ref_repeat(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    const kiln_attr *axis = kiln_attr_get(a->op, a->attrs, "axis");
    int64_t shape[KILN_MAX_DIMS + 1], sstr[KILN_MAX_DIMS + 1], cs[KILN_MAX_DIMS];
    int nd = axis->set ? x->ndim : 1, ax = axis->set ? kiln_norm_axis(axis->i, x->ndim) : 0;
    if (axis->set) {
        memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
        kiln_contig_strides(nd, shape, cs);
    } else {
        shape[0] = x->numel;
        cs[0] = 1;
    }
    for (int i = nd; i > ax; i--) shape[i] = shape[i - 1];
    for (int i = 0, k = 0; i <= nd; i++) sstr[i] = i == ax + 1 ? 0 : cs[k++];
    shape[ax + 1] = kiln_attr_int(a->op, a->attrs, "repeats");
    kiln_gather_view(a->out[0], x, nd + 1, shape, 0, sstr);
    return KILN_OK;
}

const struct kiln_type *kiln_shape_reverse(kiln_shape_args *a) {
    const kiln_type *x = kiln_layout_input(a, 0);
    bool mask[KILN_MAX_DIMS];
    if (!x || !axes_mask(a, x, mask)) return NULL;
    return kiln_layout_result(a, x->dtype, x->ndim, x->shape);
}

/* A flipped dim starts at its last element and walks back: negative stride. */
kiln_status kiln_ref_reverse(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0];
    bool mask[KILN_MAX_DIMS];
    int64_t sstr[KILN_MAX_DIMS], soff = 0;
    kiln_norm_axes(kiln_attr_get(a->op, a->attrs, "axes"), x->ndim, mask);
    kiln_contig_strides(x->ndim, x->shape, sstr);
    for (int i = 0; i < x->ndim; i++)
        if (mask[i]) {
            soff += (x->shape[i] - 1) * sstr[i];
            sstr[i] = -sstr[i];
        }
    kiln_gather_view(a->out[0], x, x->ndim, x->shape, soff, sstr);
    return KILN_OK;
}
