/* types.c — IR types: tensors (dtype + static shape), scalars (int, float, bool) and tuples;
 * construction in an arena, equality and text form. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>

const kiln_type *kiln_type_scalar(kiln_arena *a, kiln_dtype dt) {
    kiln_type *t = kiln_arena_alloc(a, sizeof *t);
    if (!t) return NULL;
    t->kind = KILN_TYPE_SCALAR;
    t->dtype = dt;
    return t;
}

const kiln_type *kiln_type_tensor_a(kiln_arena *a, kiln_dtype dt, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > KILN_MAX_DIMS) return NULL;
    kiln_type *t = kiln_arena_alloc(a, sizeof *t);
    if (!t) return NULL;
    t->kind = KILN_TYPE_TENSOR;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    return t;
}

const kiln_type *kiln_type_tuple_a(kiln_arena *a, int n, const kiln_type *const *elems) {
    kiln_type *t = kiln_arena_alloc(a, sizeof *t);
    const kiln_type **e = kiln_arena_alloc(a, sizeof *e * (size_t)(n ? n : 1));
    if (!t || !e) return NULL;
    t->kind = KILN_TYPE_TUPLE;
    t->n_elems = n;
    if (n) memcpy(e, elems, sizeof *e * (size_t)n);
    t->elems = e;
    return t;
}

const kiln_type *kiln_type_list_a(kiln_arena *a, const kiln_type *elem) {
    const kiln_type *t = kiln_type_tuple_a(a, 1, &elem);
    if (t) ((kiln_type *)t)->kind = KILN_TYPE_LIST;
    return t;
}

bool kiln_type_equal(const kiln_type *a, const kiln_type *b) {
    if (a == b) return true;
    if (!a || !b || a->kind != b->kind) return false;
    switch (a->kind) {
    case KILN_TYPE_SCALAR: return a->dtype == b->dtype;
    case KILN_TYPE_TENSOR:
        return a->dtype == b->dtype && a->ndim == b->ndim &&
               (!a->ndim || !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim));
    case KILN_TYPE_TUPLE:
    case KILN_TYPE_LIST:
        if (a->n_elems != b->n_elems) return false;
        for (int i = 0; i < a->n_elems; i++)
            if (!kiln_type_equal(a->elems[i], b->elems[i])) return false;
        return true;
    }
    return false;
}

bool kiln_type_is_tensor(const kiln_type *t) { return t && t->kind == KILN_TYPE_TENSOR; }
bool kiln_type_is_scalar(const kiln_type *t) { return t && t->kind == KILN_TYPE_SCALAR; }

void kiln_buf_type(kiln_buf *b, const kiln_type *t) {
    if (!t) return kiln_buf_puts(b, "?");
    switch (t->kind) {
    case KILN_TYPE_SCALAR:
        kiln_buf_puts(b, t->dtype == KILN_I64 ? "int" : t->dtype == KILN_F64 ? "float" : "bool");
        break;
    case KILN_TYPE_TENSOR:
        kiln_buf_printf(b, "%s[", kiln_dtype_name(t->dtype));
        for (int i = 0; i < t->ndim; i++) kiln_buf_printf(b, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        kiln_buf_puts(b, "]");
        break;
    case KILN_TYPE_LIST:
        kiln_buf_puts(b, "list(");
        kiln_buf_type(b, t->elems[0]);
        kiln_buf_puts(b, ")");
        break;
    case KILN_TYPE_TUPLE:
        kiln_buf_puts(b, "(");
        for (int i = 0; i < t->n_elems; i++) {
            if (i) kiln_buf_puts(b, ", ");
            kiln_buf_type(b, t->elems[i]);
        }
        kiln_buf_puts(b, ")");
        break;
    }
}

const char *kiln_type_cstr(const kiln_type *t, char *buf, size_t size) {
    kiln_buf b = {0};
    kiln_buf_type(&b, t);
    char *s = kiln_buf_take(&b);
    snprintf(buf, size, "%s", s ? s : "?");
    kiln_buf_free(&b);
    free(s);
    return buf;
}

char *kiln_type_str(const kiln_type *t) {
    kiln_buf b = {0};
    kiln_buf_type(&b, t);
    return kiln_buf_take(&b);
}

kiln_type *kiln_type_tensor(kiln_module *m, kiln_dtype dt, int ndim, const int64_t *shape) {
    return (kiln_type *)kiln_type_tensor_a(&m->arena, dt, ndim, shape);
}
kiln_type *kiln_type_int(kiln_module *m) { return (kiln_type *)kiln_type_scalar(&m->arena, KILN_I64); }
kiln_type *kiln_type_float(kiln_module *m) { return (kiln_type *)kiln_type_scalar(&m->arena, KILN_F64); }
kiln_type *kiln_type_bool(kiln_module *m) { return (kiln_type *)kiln_type_scalar(&m->arena, KILN_BOOL); }
kiln_type *kiln_type_tuple(kiln_module *m, int n, kiln_type *const *elems) {
    return (kiln_type *)kiln_type_tuple_a(&m->arena, n, (const kiln_type *const *)elems);
}

int kiln_type_kind_of(const kiln_type *t) { return (int)t->kind; }
kiln_dtype kiln_type_dtype(const kiln_type *t) { return t->dtype; }
int kiln_type_ndim(const kiln_type *t) { return t->kind == KILN_TYPE_TENSOR ? t->ndim : 0; }
const int64_t *kiln_type_shape(const kiln_type *t) { return t->shape; }
int kiln_type_tuple_size(const kiln_type *t) { return t->kind == KILN_TYPE_TUPLE ? t->n_elems : -1; }
const kiln_type *kiln_type_tuple_elem(const kiln_type *t, int i) {
    return t->kind == KILN_TYPE_TUPLE && i >= 0 && i < t->n_elems ? t->elems[i] : NULL;
}
