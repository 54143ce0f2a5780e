/* driver.c — the CUDA driver, loaded with dlopen (libcuda.so.1): errors, library search, init,
 * devices (primary context + one non-blocking stream each), copies, modules and launches. */
#include "cuda/cuda_internal.h"
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_cu_driver_api kiln_cu_drv;

/* ---- errors ---- */
static _Thread_local char err_buf[16384];

const char *kiln_cu_last_error(void) { return err_buf[0] ? err_buf : "no error"; }

int kiln_cu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

void kiln_cu_save_error(char *dst, size_t size) {
    size_t n = strnlen(err_buf, size - 1);
    memcpy(dst, err_buf, n);
    dst[n] = 0;
}

int kiln_cu_check(CUresult r, const char *fmt, ...) {
    if (r == CUDA_SUCCESS) return 0;
    const char *name = NULL, *desc = NULL;
    if (kiln_cu_drv.cuGetErrorName) kiln_cu_drv.cuGetErrorName(r, &name);
    if (kiln_cu_drv.cuGetErrorString) kiln_cu_drv.cuGetErrorString(r, &desc);
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (name) return kiln_cu_fail("CUDA: %s: %s (%s)", what, name, desc ? desc : "no description");
    return kiln_cu_fail("CUDA: %s: error %d", what, (int)r);
}

/* ---- libraries ---- */
void *kiln_cu_dlopen(const char *const *names, int n, char *dir, size_t size) {
    const char *dirs = getenv("KILN_CUDA_LIBS");
    char tried[2048] = "", last[1024] = "", path[4096];
    if (dir && size) dir[0] = 0;
    for (int i = 0; i < n; i++) {
        for (const char *d = dirs; d && *d;) {
            const char *end = strchr(d, ':');
            size_t len = end ? (size_t)(end - d) : strlen(d);
            if (len) {
                snprintf(path, sizeof path, "%.*s/%s", (int)len, d, names[i]);
                void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (h) {
                    if (dir && size) snprintf(dir, size, "%.*s", (int)len, d);
                    return h;
                }
                snprintf(last, sizeof last, "%s", dlerror());
            }
            d = end ? end + 1 : NULL;
        }
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        snprintf(last, sizeof last, "%s", dlerror());
        size_t t = strlen(tried);
        snprintf(tried + t, sizeof tried - t, "%s%s", t ? ", " : "", names[i]);
    }
    kiln_cu_fail("%s not found (searched $KILN_CUDA_LIBS=%s, then the loader's default path; last error: %s)",
                 tried, dirs ? dirs : "(unset)", last);
    return NULL;
}

int kiln_cu_sym(void *h, const char *lib, const char *sym, void **out) {
    *out = dlsym(h, sym);
    return *out ? 0 : kiln_cu_fail("%s: missing function %s", lib, sym);
}

/* ---- init ---- */
static struct {
    pthread_once_t once;
    pthread_mutex_t lock;         /* device setup */
    int status;                   /* init's result */
    char why[1024];               /* init's failure */
    int count;
    kiln_cu_device *devs;
} g = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER, .status = -1};

static int load_driver(void) {
    static const char *const names[] = {"libcuda.so.1", "libcuda.so"};
    void *h = kiln_cu_dlopen(names, 2, NULL, 0);
    if (!h) return -1;
    const char *lib = "libcuda.so.1";
    void *sym;
    kiln_cu_driver_api *tbl = &kiln_cu_drv;
    KILN_CU_DRIVER_FUNCS(KILN_CU_RESOLVE)
    return 0;
}

static int init_driver(void) {
    if (load_driver()) return -1;
    if (kiln_cu_check(kiln_cu_drv.cuInit(0), "cuInit")) return -1;
    int count = 0;
    if (kiln_cu_check(kiln_cu_drv.cuDeviceGetCount(&count), "cuDeviceGetCount")) return -1;
    if (count <= 0) return kiln_cu_fail("CUDA: no CUDA device (the driver loaded and reports 0 devices)");
    g.devs = calloc((size_t)count, sizeof *g.devs);
    if (!g.devs) return kiln_cu_fail("CUDA: out of host memory for %d devices", count);
    for (int i = 0; i < count; i++) {
        kiln_cu_device *d = &g.devs[i];
        d->ordinal = i;
        if (kiln_cu_check(kiln_cu_drv.cuDeviceGet(&d->dev, i), "cuDeviceGet(%d)", i)) return -1;
        kiln_cu_memory_setup(&d->mem);
        pthread_mutex_init(&d->gemm_lock, NULL);
    }
    g.count = count;
    return 0;
}

static void init_once(void) {
    g.status = init_driver();
    if (g.status) kiln_cu_save_error(g.why, sizeof g.why);
}

int kiln_cu_init(void) {
    pthread_once(&g.once, init_once);
    return g.status ? kiln_cu_fail("%s", g.why) : 0;
}

int kiln_cu_device_count(void) { return g.status ? 0 : g.count; }

/* The device's ordinal checked (no context needed); NULL with the reason. */
static kiln_cu_device *device_of(int dev) {
    if (g.status) {
        kiln_cu_fail("CUDA backend not initialised%s%s", g.why[0] ? ": " : " (init() not called)", g.why);
        return NULL;
    }
    if (dev < 0 || dev >= g.count) {
        kiln_cu_fail("CUDA: device %d out of range (%d device%s)", dev, g.count, g.count == 1 ? "" : "s");
        return NULL;
    }
    return &g.devs[dev];
}

/* The primary context, the stream and the stream-ordered pool's release threshold. */
static int setup_device(kiln_cu_device *d) {
    int i = d->ordinal;
    if (kiln_cu_check(kiln_cu_drv.cuDevicePrimaryCtxRetain(&d->ctx, d->dev), "cuDevicePrimaryCtxRetain(device %d)", i) ||
        kiln_cu_check(kiln_cu_drv.cuCtxSetCurrent(d->ctx), "cuCtxSetCurrent(device %d)", i) ||
        kiln_cu_check(kiln_cu_drv.cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate(device %d)", i))
        return -1;
    /* keep freed memory in the driver's pool instead of returning it at every synchronization */
    int pools = 0;
    if (kiln_cu_check(kiln_cu_drv.cuDeviceGetAttribute(&pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, d->dev),
                      "cuDeviceGetAttribute(MEMORY_POOLS_SUPPORTED, device %d)", i))
        return -1;
    if (pools) {
        cuuint64_t threshold = UINT64_MAX;
        if (kiln_cu_check(kiln_cu_drv.cuDeviceGetDefaultMemPool(&d->pool, d->dev), "cuDeviceGetDefaultMemPool(device %d)", i) ||
            kiln_cu_check(kiln_cu_drv.cuMemPoolSetAttribute(d->pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold),
                          "cuMemPoolSetAttribute(RELEASE_THRESHOLD, device %d)", i))
            return -1;
    }
    return 0;
}

kiln_cu_device *kiln_cu_enter(int dev) {
    kiln_cu_device *d = device_of(dev);
    if (!d) return NULL;
    if (!__atomic_load_n(&d->ready, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&g.lock);
        int rc = d->ready ? 0 : setup_device(d);
        if (!rc) __atomic_store_n(&d->ready, true, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&g.lock);
        if (rc) return NULL;
    }
    if (kiln_cu_check(kiln_cu_drv.cuCtxSetCurrent(d->ctx), "cuCtxSetCurrent(device %d)", dev)) return NULL;
    return d;
}

static int attribute(kiln_cu_device *d, CUdevice_attribute a, const char *name, int *out) {
    return kiln_cu_check(kiln_cu_drv.cuDeviceGetAttribute(out, a, d->dev), "cuDeviceGetAttribute(%s, device %d)", name,
                         d->ordinal);
}

int kiln_cu_device_arch(int dev) {
    kiln_cu_device *d = device_of(dev);
    int major, minor;
    if (!d || attribute(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR", &major) ||
        attribute(d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR", &minor))
        return -1;
    return major * 10 + minor;
}

int kiln_cu_device_describe(int dev, char *buf, size_t size) {
    kiln_cu_device *d = device_of(dev);
    char name[256];
    int sms, arch = kiln_cu_device_arch(dev);
    size_t mem;
    if (!d || arch < 0 ||
        kiln_cu_check(kiln_cu_drv.cuDeviceGetName(name, (int)sizeof name, d->dev), "cuDeviceGetName(device %d)", dev) ||
        attribute(d, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "MULTIPROCESSOR_COUNT", &sms) ||
        kiln_cu_check(kiln_cu_drv.cuDeviceTotalMem(&mem, d->dev), "cuDeviceTotalMem(device %d)", dev))
        return -1;
    snprintf(buf, size, "%s, sm_%d, %d SMs, %.1f GiB", name, arch, sms, (double)mem / (1024.0 * 1024 * 1024));
    return 0;
}

/* ---- copies ---- */
/* Source may be pageable, so the copy is finished (stream synchronized) before returning. */
int kiln_cu_copy_h2d(int dev, void *dst, const void *src, size_t bytes) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (!bytes) return 0;
    return kiln_cu_check(kiln_cu_drv.cuMemcpyHtoDAsync((CUdeviceptr)dst, src, bytes, d->stream),
                         "cuMemcpyHtoDAsync(%zu bytes, device %d)", bytes, dev) ||
                   kiln_cu_check(kiln_cu_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize after a %zu-byte "
                                 "host-to-device copy (device %d)", bytes, dev)
               ? -1
               : 0;
}

int kiln_cu_copy_d2h(int dev, void *dst, const void *src, size_t bytes) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (!bytes) return 0;
    return kiln_cu_check(kiln_cu_drv.cuMemcpyDtoHAsync(dst, (CUdeviceptr)src, bytes, d->stream),
                         "cuMemcpyDtoHAsync(%zu bytes, device %d)", bytes, dev) ||
                   kiln_cu_check(kiln_cu_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize after a %zu-byte "
                                 "device-to-host copy (device %d)", bytes, dev)
               ? -1
               : 0;
}

int kiln_cu_copy_d2d(int dev, void *dst, const void *src, size_t bytes) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (!bytes) return 0;
    return kiln_cu_check(kiln_cu_drv.cuMemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, d->stream),
                         "cuMemcpyDtoDAsync(%zu bytes, device %d)", bytes, dev);
}

int kiln_cu_memset(int dev, void *dst, int byte, size_t bytes) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (!bytes) return 0;
    return kiln_cu_check(kiln_cu_drv.cuMemsetD8Async((CUdeviceptr)dst, (unsigned char)byte, bytes, d->stream),
                         "cuMemsetD8Async(%zu bytes, device %d)", bytes, dev);
}

int kiln_cu_synchronize(int dev) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    return kiln_cu_check(kiln_cu_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize(device %d)", dev);
}

/* ---- modules and launches ---- */
struct kiln_backend_module {
    int dev;
    CUmodule mod;
};

int kiln_cu_module_load(int dev, const void *image, kiln_backend_module **out) {
    *out = NULL;
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    kiln_backend_module *m = calloc(1, sizeof *m);
    if (!m) return kiln_cu_fail("CUDA: out of host memory loading a module");
    m->dev = dev;
    if (kiln_cu_check(kiln_cu_drv.cuModuleLoadData(&m->mod, image), "cuModuleLoadData(device %d)", dev)) {
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int kiln_cu_module_get(kiln_backend_module *m, const char *symbol, kiln_backend_fn *out) {
    *out = NULL;
    if (!kiln_cu_enter(m->dev)) return -1;
    CUfunction f;
    if (kiln_cu_check(kiln_cu_drv.cuModuleGetFunction(&f, m->mod, symbol), "cuModuleGetFunction(\"%s\")", symbol))
        return -1;
    *out = (kiln_backend_fn)f;
    return 0;
}

void kiln_cu_module_free(kiln_backend_module *m) {
    if (!m) return;
    if (kiln_cu_enter(m->dev)) kiln_cu_check(kiln_cu_drv.cuModuleUnload(m->mod), "cuModuleUnload(device %d)", m->dev);
    free(m);
}

int kiln_cu_launch(int dev, kiln_backend_fn fn, const unsigned grid[3], const unsigned block[3], size_t shared_bytes,
                   void **args) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    CUfunction f = (CUfunction)fn;
    /* more than the default 48 KiB of dynamic shared memory must be asked for per function */
    if (shared_bytes > 48 * 1024 &&
        kiln_cu_check(kiln_cu_drv.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shared_bytes),
                      "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES = %zu, device %d)", shared_bytes, dev))
        return -1;
    return kiln_cu_check(kiln_cu_drv.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                                                    (unsigned)shared_bytes, d->stream, args, NULL),
                         "cuLaunchKernel(grid %ux%ux%u, block %ux%ux%u, %zu shared bytes, device %d)", grid[0], grid[1],
                         grid[2], block[0], block[1], block[2], shared_bytes, dev);
}
