/* loader.c — finds and loads the CUDA backend (libkiln_cuda.so) once, and says why it is
 * unavailable when it is: the library, the driver, NVRTC or a GPU missing. */
#define _GNU_SOURCE
#include "backend/backend.h"
#include "core/core.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    pthread_once_t once;
    const kiln_backend *be;   /* loaded (NULL if the library is missing) */
    void *handle;             /* its dlopen handle (for the optional entries, loader_dnn.c) */
    bool gpu;                 /* init() succeeded */
    char why_lib[512];        /* why the library did not load */
    char why_gpu[512];        /* why init() failed */
} cuda = {.once = PTHREAD_ONCE_INIT};

/* dlopen(path) and the entry point; false with the reason appended to why. */
static bool try_load(const char *path, char *why, size_t size) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        size_t n = strlen(why);
        snprintf(why + n, size - n, "%s%s", n ? "; " : "", dlerror());
        return false;
    }
    kiln_backend_get_fn get = (kiln_backend_get_fn)(uintptr_t)dlsym(h, KILN_CUDA_BACKEND_SYMBOL);
    const kiln_backend *be = get ? get() : NULL;
    if (!be || be->abi != KILN_BACKEND_ABI) {
        size_t n = strlen(why);
        snprintf(why + n, size - n, "%s%s: %s", n ? "; " : "", path,
                 be ? "built for another version of kiln (ABI mismatch)" : "not a kiln CUDA backend");
        dlclose(h);
        return false;
    }
    cuda.be = be;
    cuda.handle = h;
    return true;
}

static void load_once(void) {
    const char *env = getenv("KILN_CUDA_BACKEND");
    if (env && *env) {
        try_load(env, cuda.why_lib, sizeof cuda.why_lib);
    } else {
        /* next to the library (or executable) this code is in, then the loader's path */
        Dl_info info;
        char path[4096];
        bool found = false;
        if (dladdr((void *)(uintptr_t)load_once, &info) && info.dli_fname) {
            const char *slash = strrchr(info.dli_fname, '/');
            int dir = slash ? (int)(slash - info.dli_fname) : 0;
            snprintf(path, sizeof path, "%.*s%slibkiln_cuda.so", dir, info.dli_fname, slash ? "/" : "");
            found = try_load(path, cuda.why_lib, sizeof cuda.why_lib);
        }
        if (!found) try_load("libkiln_cuda.so", cuda.why_lib, sizeof cuda.why_lib);
    }
    if (cuda.be) {
        cuda.why_lib[0] = 0;
        if (cuda.be->init() == 0) cuda.gpu = true;
        else snprintf(cuda.why_gpu, sizeof cuda.why_gpu, "%s", cuda.be->last_error());
    }
}

static const kiln_backend *get(bool need_gpu, char *why, size_t why_size) {
    pthread_once(&cuda.once, load_once);
    const char *reason = NULL;
    if (!cuda.be) reason = cuda.why_lib;
    else if (need_gpu && !cuda.gpu) reason = cuda.why_gpu;
    if (reason) {
        if (why && why_size) snprintf(why, why_size, "%s", reason);
        return NULL;
    }
    return cuda.be;
}

const kiln_backend *kiln_cuda_backend(char *why, size_t why_size) { return get(true, why, why_size); }
const kiln_backend *kiln_cuda_backend_nogpu(char *why, size_t why_size) { return get(false, why, why_size); }

void *kiln_cuda_backend_handle(void) {
    pthread_once(&cuda.once, load_once);
    return cuda.handle;
}
