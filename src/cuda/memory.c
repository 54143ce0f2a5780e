/* memory.c — device memory of each device: the page-unit pool (cuMemAlloc'd blocks, sizes rounded
 * to a page unit, freed blocks cached by size and reused) and no pool (cuMemAllocAsync on the
 * device's stream: the driver's stream-ordered pool), switchable at run time, with statistics.
 *
 * Page units: a request of at most 1 MiB is rounded up to a power of two of at least 512 bytes,
 * a larger one to a multiple of 2 MiB (the driver's own allocation granularity). A freed block is
 * cached and serves the next request of the same rounded size, LIFO; trim() (and a failed
 * cuMemAlloc, once) returns the cache to the driver. Device memory cannot hold a header, so a
 * table keyed by pointer (open addressing, linear probing) records each live block's size and
 * pool. All work of a device runs on its one stream, so a block freed on the host may be handed
 * out again at once: later work is ordered after the work that used it. */
#include "cuda/cuda_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_MAX ((size_t)1 << 20)
#define SMALL_MIN ((size_t)512)
#define LARGE_UNIT ((size_t)2 << 20)

void kiln_cu_memory_setup(kiln_cu_memory *mem) {
    memset(mem, 0, sizeof *mem);
    pthread_mutex_init(&mem->lock, NULL);
    const char *env = getenv("KILN_MEMORY_POOL"); /* same default as the host pool */
    mem->kind = env && strcmp(env, "none") == 0 ? KILN_POOL_NONE : KILN_POOL_PAGE;
}

/* The page-unit size of a request; 0 if it cannot be represented. */
static size_t page_round(size_t bytes) {
    if (bytes <= SMALL_MAX) {
        size_t r = SMALL_MIN;
        while (r < bytes) r <<= 1;
        return r;
    }
    if (bytes > SIZE_MAX - LARGE_UNIT) return 0;
    return (bytes + LARGE_UNIT - 1) / LARGE_UNIT * LARGE_UNIT;
}

/* ---- live blocks: ptr -> block (ptr 0 marks an empty slot; capacity a power of two) ---- */
static size_t home_slot(uintptr_t p, size_t cap) {
    return (size_t)(((uint64_t)p >> 8) * UINT64_C(0x9E3779B97F4A7C15) >> 17) & (cap - 1);
}

static void live_put(kiln_cu_block *tab, size_t cap, kiln_cu_block b) {
    size_t i = home_slot(b.ptr, cap);
    while (tab[i].ptr) i = (i + 1) & (cap - 1);
    tab[i] = b;
}

static int live_insert(kiln_cu_memory *m, kiln_cu_block b) {
    if ((m->live_n + 1) * 4 > m->live_cap * 3) {
        size_t cap = m->live_cap ? m->live_cap * 2 : 256;
        kiln_cu_block *tab = calloc(cap, sizeof *tab);
        if (!tab) return kiln_cu_fail("CUDA: out of host memory for the device allocation table");
        for (size_t i = 0; i < m->live_cap; i++)
            if (m->live[i].ptr) live_put(tab, cap, m->live[i]);
        free(m->live);
        m->live = tab;
        m->live_cap = cap;
    }
    live_put(m->live, m->live_cap, b);
    m->live_n++;
    return 0;
}

/* Removes p's entry into *out; false if p is not live. Deletion shifts later entries of the
 * probe run back so that no lookup stops early at the emptied slot. */
static bool live_remove(kiln_cu_memory *m, uintptr_t p, kiln_cu_block *out) {
    if (!m->live_cap) return false;
    size_t mask = m->live_cap - 1, i = home_slot(p, m->live_cap);
    while (m->live[i].ptr != p) {
        if (!m->live[i].ptr) return false;
        i = (i + 1) & mask;
    }
    *out = m->live[i];
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!m->live[j].ptr) break;
        size_t k = home_slot(m->live[j].ptr, m->live_cap);
        /* entry j may move to the hole i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            m->live[i] = m->live[j];
            i = j;
        }
    }
    m->live[i].ptr = 0;
    m->live_n--;
    return true;
}

/* ---- the page pool's cache ---- */
/* Returns every cached block to the driver (after the stream's work that may still use them). */
static int release_cached(kiln_cu_device *d) {
    kiln_cu_memory *m = &d->mem;
    if (!m->cached_n) return 0;
    if (kiln_cu_check(kiln_cu_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize before trimming (device %d)",
                      d->ordinal))
        return -1;
    while (m->cached_n) {
        kiln_cu_block b = m->cached[--m->cached_n];
        m->stats.bytes_reserved -= (int64_t)b.reserved;
        if (kiln_cu_check(kiln_cu_drv.cuMemFree((CUdeviceptr)b.ptr), "cuMemFree(%zu bytes, device %d)", b.reserved,
                          d->ordinal))
            return -1;
    }
    return 0;
}

/* A page-pool block for b->bytes: a cached one of the same rounded size, else a new one. */
static int page_alloc(kiln_cu_device *d, kiln_cu_block *b) {
    kiln_cu_memory *m = &d->mem;
    size_t size = page_round(b->bytes);
    if (!size) return kiln_cu_fail("CUDA: cannot allocate %zu bytes on device %d: size too large", b->bytes, d->ordinal);
    b->reserved = size;
    for (size_t i = m->cached_n; i-- > 0;) {
        if (m->cached[i].reserved == size) {
            b->ptr = m->cached[i].ptr;
            m->cached[i] = m->cached[--m->cached_n];
            m->stats.n_reused++;
            return 0;
        }
    }
    CUdeviceptr p = 0;
    CUresult r = kiln_cu_drv.cuMemAlloc(&p, size);
    if (r == CUDA_ERROR_OUT_OF_MEMORY && m->cached_n) { /* give the cache back and try once more */
        if (release_cached(d)) return -1;
        r = kiln_cu_drv.cuMemAlloc(&p, size);
    }
    if (kiln_cu_check(r, "cuMemAlloc(%zu bytes for a %zu-byte request, device %d)", size, b->bytes, d->ordinal))
        return -1;
    b->ptr = (uintptr_t)p;
    m->stats.bytes_reserved += (int64_t)size;
    return 0;
}

/* Caches a freed page-pool block (or returns it to the driver if the cache cannot grow). */
static int page_free(kiln_cu_device *d, kiln_cu_block b) {
    kiln_cu_memory *m = &d->mem;
    if (m->cached_n == m->cached_cap) {
        size_t cap = m->cached_cap ? m->cached_cap * 2 : 64;
        kiln_cu_block *c = realloc(m->cached, cap * sizeof *c);
        if (!c) {
            m->stats.bytes_reserved -= (int64_t)b.reserved;
            return kiln_cu_check(kiln_cu_drv.cuMemFree((CUdeviceptr)b.ptr), "cuMemFree(%zu bytes, device %d)",
                                 b.reserved, d->ordinal);
        }
        m->cached = c;
        m->cached_cap = cap;
    }
    m->cached[m->cached_n++] = b;
    return 0;
}

/* ---- entries ---- */
void *kiln_cu_alloc(int dev, size_t bytes) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return NULL;
    kiln_cu_memory *m = &d->mem;
    pthread_mutex_lock(&m->lock);
    kiln_cu_block b = {.bytes = bytes, .pool = m->kind};
    int rc;
    if (b.pool == KILN_POOL_PAGE) {
        rc = page_alloc(d, &b);
    } else {
        CUdeviceptr p = 0;
        b.reserved = bytes ? bytes : 1;
        rc = kiln_cu_check(kiln_cu_drv.cuMemAllocAsync(&p, b.reserved, d->stream),
                           "cuMemAllocAsync(%zu bytes, device %d)", bytes, dev);
        b.ptr = (uintptr_t)p;
        if (!rc) m->stats.bytes_reserved += (int64_t)b.reserved;
    }
    if (!rc && live_insert(m, b)) {
        rc = -1;
        if (b.pool == KILN_POOL_PAGE) page_free(d, b);
        else if (!kiln_cu_drv.cuMemFreeAsync((CUdeviceptr)b.ptr, d->stream)) m->stats.bytes_reserved -= (int64_t)b.reserved;
    }
    if (!rc) {
        m->stats.n_allocs++;
        m->stats.bytes_in_use += (int64_t)bytes;
        if (m->stats.bytes_in_use > m->stats.peak_bytes) m->stats.peak_bytes = m->stats.bytes_in_use;
    }
    pthread_mutex_unlock(&m->lock);
    return rc ? NULL : (void *)b.ptr;
}

/* free() returns nothing, so a failure is also reported on stderr. */
void kiln_cu_free(int dev, void *p) {
    if (!p) return;
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) {
        fprintf(stderr, "kiln cuda: free(%p) on device %d: %s\n", p, dev, kiln_cu_last_error());
        return;
    }
    kiln_cu_memory *m = &d->mem;
    pthread_mutex_lock(&m->lock);
    kiln_cu_block b;
    int rc;
    if (!live_remove(m, (uintptr_t)p, &b)) {
        rc = kiln_cu_fail("CUDA: free(%p) on device %d: not a live allocation of this device", p, dev);
    } else {
        m->stats.n_frees++;
        m->stats.bytes_in_use -= (int64_t)b.bytes;
        if (b.pool == KILN_POOL_PAGE) {
            rc = page_free(d, b);
        } else {
            m->stats.bytes_reserved -= (int64_t)b.reserved;
            rc = kiln_cu_check(kiln_cu_drv.cuMemFreeAsync((CUdeviceptr)b.ptr, d->stream),
                               "cuMemFreeAsync(%zu bytes, device %d)", b.bytes, dev);
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (rc) fprintf(stderr, "kiln cuda: %s\n", kiln_cu_last_error());
}

int kiln_cu_set_pool(int dev, kiln_pool_kind kind) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (kind != KILN_POOL_PAGE && kind != KILN_POOL_NONE) return kiln_cu_fail("CUDA: unknown pool kind %d", (int)kind);
    pthread_mutex_lock(&d->mem.lock);
    d->mem.kind = kind;
    pthread_mutex_unlock(&d->mem.lock);
    return 0;
}

int kiln_cu_get_stats(int dev, kiln_memory_stats *s) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    pthread_mutex_lock(&d->mem.lock);
    *s = d->mem.stats;
    s->pool = d->mem.kind;
    pthread_mutex_unlock(&d->mem.lock);
    return 0;
}

int kiln_cu_reset_peak(int dev) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    pthread_mutex_lock(&d->mem.lock);
    d->mem.stats.peak_bytes = d->mem.stats.bytes_in_use;
    pthread_mutex_unlock(&d->mem.lock);
    return 0;
}

/* The page pool's cache goes back to the driver, and the driver's pool releases what it keeps. */
int kiln_cu_trim(int dev) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    pthread_mutex_lock(&d->mem.lock);
    int rc = release_cached(d);
    if (!rc && d->pool)
        rc = kiln_cu_check(kiln_cu_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize before trimming (device %d)", dev) ||
                     kiln_cu_check(kiln_cu_drv.cuMemPoolTrimTo(d->pool, 0), "cuMemPoolTrimTo(device %d)", dev)
                 ? -1
                 : 0;
    pthread_mutex_unlock(&d->mem.lock);
    return rc;
}
