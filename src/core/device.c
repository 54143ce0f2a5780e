/* device.c — devices ("cpu", "cuda:N"), tensors on them, copies between them and the per-device
 * memory pools, on top of the CUDA backend (src/backend/loader.c) when it is available. */
#include "backend/backend.h"
#include "core/core.h"
#include <stdlib.h>
#include <string.h>

/* The backend for device d, or NULL with an error naming why CUDA is unavailable. */
static const kiln_backend *backend_for(kiln_context *ctx, kiln_device d, const char *what) {
    char why[600];
    const kiln_backend *be = kiln_cuda_backend(why, sizeof why);
    if (!be) {
        kiln_error(ctx, KILN_ERR_UNSUPPORTED, "%s: CUDA is unavailable: %s", what, why);
        return NULL;
    }
    if (d.index < 0 || d.index >= be->device_count()) {
        kiln_error(ctx, KILN_ERR_VALUE, "%s: no device cuda:%d (%d CUDA device%s)", what, d.index, be->device_count(),
                   be->device_count() == 1 ? "" : "s");
        return NULL;
    }
    return be;
}

bool kiln_cuda_available(char *why, size_t why_size) { return kiln_cuda_backend(why, why_size) != NULL; }

int kiln_cuda_device_count(void) {
    const kiln_backend *be = kiln_cuda_backend(NULL, 0);
    return be ? be->device_count() : 0;
}

kiln_status kiln_device_parse(kiln_context *ctx, const char *name, kiln_device *out) {
    *out = (kiln_device){KILN_DEVICE_CPU, 0};
    if (!name || !strcmp(name, "cpu")) return KILN_OK;
    if (strncmp(name, "cuda", 4) != 0 || (name[4] && name[4] != ':'))
        return kiln_error(ctx, KILN_ERR_VALUE, "device '%s': expected \"cpu\", \"cuda\" or \"cuda:N\"", name);
    int index = 0;
    if (name[4] == ':') {
        char *end;
        long v = strtol(name + 5, &end, 10);
        if (end == name + 5 || *end || v < 0 || v > 1 << 20)
            return kiln_error(ctx, KILN_ERR_VALUE, "device '%s': expected \"cuda:N\" with N a device number", name);
        index = (int)v;
    }
    kiln_device d = {KILN_DEVICE_CUDA, index};
    char what[80];
    snprintf(what, sizeof what, "device '%s'", name);
    if (!backend_for(ctx, d, what)) return kiln_error_status(ctx);
    *out = d;
    return KILN_OK;
}

const char *kiln_device_str(kiln_device d, char *buf, size_t size) {
    if (d.type == KILN_DEVICE_CPU) snprintf(buf, size, "cpu");
    else snprintf(buf, size, "cuda:%d", d.index);
    return buf;
}

kiln_status kiln_device_describe(kiln_context *ctx, kiln_device d, char *buf, size_t size) {
    if (d.type == KILN_DEVICE_CPU) {
        snprintf(buf, size, "cpu");
        return KILN_OK;
    }
    const kiln_backend *be = backend_for(ctx, d, "kiln_device_describe");
    if (!be) return kiln_error_status(ctx);
    if (be->device_describe(d.index, buf, size))
        return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "cuda:%d: %s", d.index, be->last_error());
    return KILN_OK;
}

kiln_status kiln_device_synchronize(kiln_context *ctx, kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) return KILN_OK;
    const kiln_backend *be = backend_for(ctx, d, "kiln_device_synchronize");
    if (!be) return kiln_error_status(ctx);
    if (be->synchronize(d.index)) return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "cuda:%d: %s", d.index, be->last_error());
    return KILN_OK;
}

kiln_device kiln_tensor_device(const kiln_tensor *t) { return t->device; }

/* release_arg of a device tensor is the tensor itself (its device and data). */
static void device_release(void *arg) {
    kiln_tensor *t = arg;
    const kiln_backend *be = kiln_cuda_backend(NULL, 0);
    if (be) be->free(t->device.index, t->data);
}

kiln_tensor *kiln_tensor_new_on(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape, kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) return kiln_tensor_new(ctx, dt, ndim, shape);
    const kiln_backend *be = backend_for(ctx, d, "kiln_tensor_new_on");
    if (!be) return NULL;
    kiln_tensor *t = kiln_tensor_wrap(ctx, dt, ndim, shape, NULL, NULL, NULL);
    if (!t) return NULL;
    size_t bytes = kiln_tensor_nbytes(t);
    t->data = be->alloc(d.index, bytes ? bytes : 1);
    if (!t->data) {
        char sb[160];
        kiln_error(ctx, KILN_ERR_OOM, "tensor %s%s on cuda:%d: %s", kiln_dtype_name(dt), kiln_shape_str(ndim, shape, sb, sizeof sb),
                   d.index, be->last_error());
        free(t);
        return NULL;
    }
    t->device = d;
    t->release = device_release;
    t->release_arg = t;
    return t;
}

static bool same_device(kiln_device a, kiln_device b) {
    return a.type == b.type && (a.type == KILN_DEVICE_CPU || a.index == b.index);
}

kiln_status kiln_tensor_copy_into(kiln_context *ctx, kiln_tensor *dst, const kiln_tensor *src) {
    if (dst->dtype != src->dtype || dst->ndim != src->ndim ||
        (dst->ndim && memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)dst->ndim))) {
        char a[160], b[160];
        return kiln_error(ctx, KILN_ERR_TYPE, "kiln_tensor_copy_into: %s%s from %s%s: dtype and shape must match",
                          kiln_dtype_name(dst->dtype), kiln_shape_str(dst->ndim, dst->shape, a, sizeof a),
                          kiln_dtype_name(src->dtype), kiln_shape_str(src->ndim, src->shape, b, sizeof b));
    }
    size_t bytes = kiln_tensor_nbytes(dst);
    if (!bytes || dst->data == src->data) return KILN_OK;
    bool dh = dst->device.type == KILN_DEVICE_CPU, sh = src->device.type == KILN_DEVICE_CPU;
    if (dh && sh) {
        memcpy(dst->data, src->data, bytes);
        return KILN_OK;
    }
    kiln_device d = dh ? src->device : dst->device;
    const kiln_backend *be = backend_for(ctx, d, "kiln_tensor_copy_into");
    if (!be) return kiln_error_status(ctx);
    int rc;
    if (dh) rc = be->copy_d2h(d.index, dst->data, src->data, bytes);
    else if (sh) rc = be->copy_h2d(d.index, dst->data, src->data, bytes);
    else if (same_device(dst->device, src->device)) rc = be->copy_d2d(d.index, dst->data, src->data, bytes);
    else { /* between two GPUs: through the host */
        void *tmp = malloc(bytes);
        rc = !tmp || be->copy_d2h(src->device.index, tmp, src->data, bytes) || be->copy_h2d(d.index, dst->data, tmp, bytes);
        free(tmp);
    }
    if (rc) return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "kiln_tensor_copy_into: %s", be->last_error());
    return KILN_OK;
}

kiln_tensor *kiln_tensor_to(kiln_context *ctx, kiln_tensor *t, kiln_device d) {
    if (same_device(t->device, d)) return kiln_tensor_retain(t);
    kiln_tensor *r = kiln_tensor_new_on(ctx, t->dtype, t->ndim, t->shape, d);
    if (r && kiln_tensor_copy_into(ctx, r, t)) {
        kiln_tensor_release(r);
        return NULL;
    }
    return r;
}

/* ---- per-device memory pools ---- */
static const kiln_backend *pool_backend(kiln_context *ctx, kiln_device d) { return backend_for(ctx, d, "device memory"); }

#define POOL_CALL(call)                                                                                   \
    do {                                                                                                  \
        const kiln_backend *be = pool_backend(ctx, d);                                                    \
        if (!be) return kiln_error_status(ctx);                                                           \
        if (call) return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "cuda:%d memory: %s", d.index, be->last_error()); \
        return KILN_OK;                                                                                   \
    } while (0)

kiln_status kiln_device_memory_set_pool(kiln_context *ctx, kiln_device d, kiln_pool_kind kind) {
    if (d.type == KILN_DEVICE_CPU) {
        kiln_memory_set_pool(kind);
        return KILN_OK;
    }
    POOL_CALL(be->set_pool(d.index, kind));
}

kiln_status kiln_device_memory_get_stats(kiln_context *ctx, kiln_device d, kiln_memory_stats *s) {
    if (d.type == KILN_DEVICE_CPU) {
        kiln_memory_get_stats(s);
        return KILN_OK;
    }
    POOL_CALL(be->get_stats(d.index, s));
}

kiln_status kiln_device_memory_reset_peak(kiln_context *ctx, kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) {
        kiln_memory_reset_peak();
        return KILN_OK;
    }
    POOL_CALL(be->reset_peak(d.index));
}

kiln_status kiln_device_memory_trim(kiln_context *ctx, kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) {
        kiln_memory_trim();
        return KILN_OK;
    }
    POOL_CALL(be->trim(d.index));
}
