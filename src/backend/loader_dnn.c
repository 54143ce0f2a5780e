/* loader_dnn.c — finds the cuDNN vtable (kiln_cuda_dnn_entry) in the loaded CUDA backend and
 * loads cuDNN through it once, keeping the reason when either is missing. */
#include "backend/backend_dnn.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static struct {
    pthread_once_t once;
    const kiln_backend_dnn *dnn; /* NULL if unavailable */
    char why[512];
} dnn = {.once = PTHREAD_ONCE_INIT};

static void load_once(void) {
    const kiln_backend *be = kiln_cuda_backend_nogpu(dnn.why, sizeof dnn.why);
    void *h = be ? kiln_cuda_backend_handle() : NULL;
    if (!be || !h) return; /* why already says why the backend did not load */
    kiln_backend_dnn_get_fn get = (kiln_backend_dnn_get_fn)(uintptr_t)dlsym(h, KILN_CUDA_DNN_SYMBOL);
    const kiln_backend_dnn *t = get ? get() : NULL;
    if (!t || t->abi != KILN_BACKEND_DNN_ABI)
        snprintf(dnn.why, sizeof dnn.why, "the CUDA backend %s", t ? "has a cuDNN table of another kiln version (ABI mismatch)"
                                                                   : "was built without cuDNN (" KILN_CUDA_DNN_SYMBOL " missing)");
    else if (t->init()) snprintf(dnn.why, sizeof dnn.why, "%s", t->last_error());
    else dnn.dnn = t;
}

/* The GPU is checked first, so that a machine without one never loads cuDNN. */
static const kiln_backend_dnn *get(bool need_gpu, char *why, size_t why_size) {
    char gpu_why[512];
    const char *reason = need_gpu && !kiln_cuda_backend(gpu_why, sizeof gpu_why) ? gpu_why : NULL;
    if (!reason) {
        pthread_once(&dnn.once, load_once);
        if (!dnn.dnn) reason = dnn.why;
    }
    if (reason) {
        if (why && why_size) snprintf(why, why_size, "%s", reason);
        return NULL;
    }
    return dnn.dnn;
}

const kiln_backend_dnn *kiln_cuda_dnn(char *why, size_t why_size) { return get(true, why, why_size); }
const kiln_backend_dnn *kiln_cuda_dnn_nogpu(char *why, size_t why_size) { return get(false, why, why_size); }
