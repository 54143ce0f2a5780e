/* tensor.c — reference-counted contiguous host tensors (64-byte aligned) and runtime values
 * (tensor, int, float, bool or tuple). */
#include "core/core.h"
#include <stdlib.h>
#include <string.h>

int64_t kiln_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

const char *kiln_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
    return buf;
}

static kiln_tensor *tensor_header(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape) {
    char sb[128];
    if ((unsigned)dt >= KILN_DTYPE_COUNT) {
        kiln_error(ctx, KILN_ERR_TYPE, "tensor: unknown dtype %d", (int)dt);
        return NULL;
    }
    if (ndim < 0 || ndim > KILN_MAX_DIMS) {
        kiln_error(ctx, KILN_ERR_TYPE, "tensor: %d dimensions (at most %d)", ndim, KILN_MAX_DIMS);
        return NULL;
    }
    int64_t numel = kiln_shape_numel(ndim, shape);
    if (numel < 0 || numel > (int64_t)(SIZE_MAX / 2 / kiln_dtype_size(dt))) {
        kiln_error(ctx, KILN_ERR_TYPE, "tensor: invalid shape %s", kiln_shape_str(ndim, shape, sb, sizeof sb));
        return NULL;
    }
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        kiln_error(ctx, KILN_ERR_OOM, "tensor: out of memory");
        return NULL;
    }
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->numel = numel;
    return t;
}

kiln_tensor *kiln_tensor_new(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape) {
    kiln_tensor *t = tensor_header(ctx, dt, ndim, shape);
    if (!t) return NULL;
    size_t bytes = (size_t)t->numel * kiln_dtype_size(dt);
    size_t rounded = (bytes + KILN_ALIGN - 1) / KILN_ALIGN * KILN_ALIGN;
    t->data = kiln_mem_alloc(bytes); /* pool blocks hold at least `rounded` (and >= 64) bytes */
    if (!t->data) {
        free(t);
        kiln_error(ctx, KILN_ERR_OOM, "tensor: out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(t->data, 0, rounded ? rounded : KILN_ALIGN);
    t->release = kiln_mem_free;
    t->release_arg = t->data;
    return t;
}

kiln_tensor *kiln_tensor_from_data(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape,
                                   const void *data) {
    kiln_tensor *t = kiln_tensor_new(ctx, dt, ndim, shape);
    if (t && t->numel) memcpy(t->data, data, kiln_tensor_nbytes(t));
    return t;
}

kiln_tensor *kiln_tensor_wrap(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape,
                              void *data, void (*release)(void *), void *release_arg) {
    kiln_tensor *t = tensor_header(ctx, dt, ndim, shape);
    if (!t) return NULL;
    t->data = data;
    t->release = release;
    t->release_arg = release_arg;
    return t;
}

kiln_tensor *kiln_tensor_copy(kiln_context *ctx, const kiln_tensor *t) {
    return kiln_tensor_from_data(ctx, t->dtype, t->ndim, t->shape, t->data);
}

kiln_tensor *kiln_tensor_cast(kiln_context *ctx, const kiln_tensor *t, kiln_dtype dt) {
    kiln_tensor *r = kiln_tensor_new(ctx, dt, t->ndim, t->shape);
    if (r) kiln_convert(dt, r->data, t->dtype, t->data, t->numel);
    return r;
}

kiln_tensor *kiln_tensor_retain(kiln_tensor *t) {
    if (t) t->refcount++;
    return t;
}

void kiln_tensor_release(kiln_tensor *t) {
    if (!t || --t->refcount > 0) return;
    if (t->release) t->release(t->release_arg);
    free(t);
}

kiln_dtype kiln_tensor_dtype(const kiln_tensor *t) { return t->dtype; }
int kiln_tensor_ndim(const kiln_tensor *t) { return t->ndim; }
const int64_t *kiln_tensor_shape(const kiln_tensor *t) { return t->shape; }
int64_t kiln_tensor_numel(const kiln_tensor *t) { return t->numel; }
size_t kiln_tensor_nbytes(const kiln_tensor *t) { return (size_t)t->numel * kiln_dtype_size(t->dtype); }
void *kiln_tensor_data(const kiln_tensor *t) { return t->data; }

/* ---- values ------------------------------------------------------------------------------ */
kiln_value kiln_value_tensor(kiln_tensor *t) { return (kiln_value){.kind = KILN_VALUE_TENSOR, .tensor = t}; }
kiln_value kiln_value_int(int64_t i) { return (kiln_value){.kind = KILN_VALUE_INT, .i = i}; }
kiln_value kiln_value_float(double f) { return (kiln_value){.kind = KILN_VALUE_FLOAT, .f = f}; }
kiln_value kiln_value_bool(bool b) { return (kiln_value){.kind = KILN_VALUE_BOOL, .b = b}; }

kiln_value kiln_value_tuple(kiln_context *ctx, int n, const kiln_value *items) {
    kiln_tuple *t = malloc(sizeof *t + sizeof(kiln_value) * (size_t)(n > 0 ? n : 0));
    if (!t) {
        kiln_error(ctx, KILN_ERR_OOM, "tuple: out of memory");
        return (kiln_value){.kind = KILN_VALUE_NONE};
    }
    t->refcount = 1;
    t->n = n;
    for (int i = 0; i < n; i++) t->items[i] = kiln_value_retain(items[i]);
    return (kiln_value){.kind = KILN_VALUE_TUPLE, .tuple = t};
}

int kiln_value_tuple_size(kiln_value v) { return v.kind == KILN_VALUE_TUPLE ? v.tuple->n : -1; }

kiln_value kiln_value_tuple_get(kiln_value v, int i) {
    if (v.kind != KILN_VALUE_TUPLE || i < 0 || i >= v.tuple->n) return (kiln_value){.kind = KILN_VALUE_NONE};
    return v.tuple->items[i];
}

kiln_value kiln_value_retain(kiln_value v) {
    if (v.kind == KILN_VALUE_TENSOR) kiln_tensor_retain(v.tensor);
    else if (v.kind == KILN_VALUE_TUPLE) v.tuple->refcount++;
    return v;
}

void kiln_value_release(kiln_value v) {
    if (v.kind == KILN_VALUE_TENSOR) {
        kiln_tensor_release(v.tensor);
    } else if (v.kind == KILN_VALUE_TUPLE && --v.tuple->refcount == 0) {
        for (int i = 0; i < v.tuple->n; i++) kiln_value_release(v.tuple->items[i]);
        free(v.tuple);
    }
}
