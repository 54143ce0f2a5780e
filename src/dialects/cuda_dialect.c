/* cuda_dialect.c — the CUDA dialects' shared core side: the per-thread execution context their
 * kernels run in, whether the dialects can load, which nodes CUDA computes (kiln_cuda_covers),
 * the TF32 switch, and the error helpers of their kernels. */
#include "dialects/cuda_dialect.h"
#include "codegen/codegen.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


static _Thread_local kiln_cuda_exec exec_cur;
static _Thread_local bool exec_set;

void kiln_cuda_exec_set(const kiln_cuda_exec *e) {
    exec_set = e != NULL;
    if (e) exec_cur = *e;
}

const kiln_cuda_exec *kiln_cuda_exec_get(void) { return exec_set ? &exec_cur : NULL; }

bool kiln_cuda_dialect_load(char *why, size_t why_size) { return kiln_cuda_backend(why, why_size) != NULL; }

/* Whether an implementation in the NULL-terminated list takes node n. */
static bool listed(const kiln_dialect_impl *const *list, const kiln_node *n) {
    for (int i = 0; list[i]; i++)
        if (list[i]->op == n->op && list[i]->supports(n)) return true;
    return false;
}

bool kiln_cuda_covers(const kiln_node *n) {
    return listed(kiln_cuda_impls, n) || listed(kiln_cublaslt_impls, n) || listed(kiln_cudnn_impls, n) ||
           kiln_codegen_supports(n);
}

/* -1 until read from the environment. */
static atomic_int tf32_state = -1;

bool kiln_cuda_tf32(void) {
    int s = atomic_load(&tf32_state);
    if (s < 0) {
        const char *v = getenv("KILN_CUDA_TF32");
        int expected = -1;
        atomic_compare_exchange_strong(&tf32_state, &expected, !(v && !strcmp(v, "0")));
        s = atomic_load(&tf32_state);
    }
    return s != 0;
}

void kiln_cuda_set_tf32(bool on) { atomic_store(&tf32_state, on); }

const kiln_cuda_exec *kiln_cuda_exec_for(kiln_kernel_args *a) {
    const kiln_cuda_exec *e = kiln_cuda_exec_get();
    if (!e) kiln_kernel_fail(a, KILN_ERR_INTERNAL, "a CUDA kernel ran without a CUDA device context (kiln_cuda_exec_set)");
    else if (e->dev < 0 || e->dev >= KILN_CUDA_MAX_DEVICES) kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "cuda:%d: device index out of range", e->dev);
    else return e;
    return NULL;
}

/* "f32[2, 3]" of t into buf. */
static const char *tensor_str(const kiln_tensor *t, char *buf, size_t size) {
    char sb[160];
    snprintf(buf, size, "%s%s", kiln_dtype_name(t->dtype), kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
    return buf;
}

kiln_status kiln_cuda_fail(kiln_kernel_args *a, const kiln_cuda_exec *e, const char *what) {
    char in[400] = "", out[200] = "";
    for (int i = 0, n = 0; i < a->n_in && n < (int)sizeof in - 1; i++) {
        char tb[200];
        n += snprintf(in + n, sizeof in - (size_t)n, "%s%s", i ? ", " : "", tensor_str(a->in[i], tb, sizeof tb));
    }
    if (a->n_out) tensor_str(a->out[0], out, sizeof out);
    return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "cuda:%d: %s (%s -> %s): %s", e->dev, what, in, out, e->be->last_error());
}

static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;

void *kiln_cuda_scratch_get(kiln_kernel_args *a, const kiln_cuda_exec *e, kiln_cuda_scratch *s, size_t bytes, size_t cap) {
    pthread_mutex_lock(&scratch_lock);
    struct kiln_cuda_scratch_block *d = &s->devices[e->dev];
    if (d->bytes < bytes) {
        size_t grown = 2 * d->bytes < cap ? 2 * d->bytes : cap;
        grown = grown > bytes ? grown : bytes;
        void *blk = e->be->alloc(e->dev, grown);
        if (!blk && grown > bytes) blk = e->be->alloc(e->dev, grown = bytes);
        if (blk) d->p = blk, d->bytes = grown; /* the old block stays allocated (cuda_dialect.h) */
    }
    void *p = d->bytes >= bytes ? d->p : NULL;
    pthread_mutex_unlock(&scratch_lock);
    if (!p) {
        char what[128];
        snprintf(what, sizeof what, "allocating %s (%zu bytes)", s->what, bytes);
        kiln_cuda_fail(a, e, what);
    }
    return p;
}

static pthread_mutex_t source_lock = PTHREAD_MUTEX_INITIALIZER;

kiln_status kiln_cuda_source_kernel(kiln_kernel_args *a, const kiln_cuda_exec *e, kiln_cuda_source *src, int k,
                                    kiln_backend_fn *fn) {
    const kiln_backend *be = e->be;
    char failed[160] = "";
    pthread_mutex_lock(&source_lock);
    struct kiln_cuda_source_device *d = &src->devices[e->dev];
    if (!(*fn = d->fn ? d->fn[k] : NULL)) {
        if (!d->mod) {
            void *image = NULL;
            size_t size = 0;
            if (be->nvrtc_compile(src->text, be->device_arch(e->dev), e->cache_dir, e->debug, &image, &size))
                snprintf(failed, sizeof failed, "compiling %s", src->file);
            else if (be->module_load(e->dev, image, &d->mod))
                snprintf(failed, sizeof failed, "loading %s", src->file), d->mod = NULL;
            if (image) be->free_image(image);
        }
        if (!failed[0] && !d->fn && !(d->fn = calloc((size_t)src->n_kernels, sizeof *d->fn)))
            snprintf(failed, sizeof failed, "%s: out of memory", src->file);
        if (!failed[0] && be->module_get(d->mod, src->kernel_names[k], &d->fn[k]))
            snprintf(failed, sizeof failed, "%s: kernel %s", src->file, src->kernel_names[k]);
        *fn = failed[0] ? NULL : d->fn[k];
    }
    pthread_mutex_unlock(&source_lock);
    return failed[0] ? kiln_cuda_fail(a, e, failed) : KILN_OK;
}
