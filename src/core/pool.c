/* pool.c — process-wide memory pools for tensor data: a page pool (sizes rounded up to whole
 * 4 KiB pages, freed blocks cached by page count and reused LIFO) and no pool (straight to the
 * system), switchable at run time, with statistics. Thread-safe through one mutex. */
#include "core/core.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define POOL_PAGE 4096
#define POOL_HEADER KILN_ALIGN /* the header sits in front of the data, keeping it 64-byte aligned */
#define POOL_DEFAULT_CACHE_LIMIT ((size_t)4 << 30)

/* Every block is [header | capacity bytes]; the header says which pool it came from and its
 * size, so a block returns to its own pool whatever the current pool is. */
typedef struct pool_block {
    struct pool_block *next; /* next cached block of the same page count (page pool free list) */
    size_t bytes;            /* requested size (counted in bytes_in_use while live) */
    size_t capacity;         /* usable bytes after the header: whole pages, or rounded to 64 */
    kiln_pool_kind kind;
} pool_block;
_Static_assert(sizeof(pool_block) <= POOL_HEADER, "pool block header must fit in 64 bytes");

/* Free list of one size class: blocks of `pages` pages, most recently freed first. */
typedef struct pool_bin {
    size_t pages;
    pool_block *head;
} pool_bin;

static struct {
    pthread_mutex_t lock;
    kiln_pool_kind kind;
    pool_bin *bins; /* sorted by pages; bins stay once created (an empty list is cheap) */
    size_t nbins, capbins;
    size_t cached;      /* bytes (header included) of blocks in the free lists */
    size_t cache_limit; /* a freed block that would push `cached` above this goes to the system */
    kiln_memory_stats stats;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cache_limit = POOL_DEFAULT_CACHE_LIMIT};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Default pool from $KILN_MEMORY_POOL ("page" or "none"; anything else means page). */
static void pool_init(void) {
    const char *env = getenv("KILN_MEMORY_POOL");
    pool.kind = env && strcmp(env, "none") == 0 ? KILN_POOL_NONE : KILN_POOL_PAGE;
}

/* Takes the lock after making sure the default pool has been read from the environment. */
static void pool_lock(void) {
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.lock);
}

static void pool_unlock(void) { pthread_mutex_unlock(&pool.lock); }

/* Index of the bin for `pages`, or of where it would be inserted (binary search). */
static size_t bin_find(size_t pages) {
    size_t lo = 0, hi = pool.nbins;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pool.bins[mid].pages < pages) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The bin for `pages`, created if missing; NULL on OOM. Locked. */
static pool_bin *bin_get(size_t pages) {
    size_t i = bin_find(pages);
    if (i < pool.nbins && pool.bins[i].pages == pages) return &pool.bins[i];
    if (pool.nbins == pool.capbins) {
        size_t cap = pool.capbins ? pool.capbins * 2 : 16;
        pool_bin *bins = realloc(pool.bins, cap * sizeof *bins);
        if (!bins) return NULL;
        pool.bins = bins;
        pool.capbins = cap;
    }
    memmove(&pool.bins[i + 1], &pool.bins[i], (pool.nbins - i) * sizeof *pool.bins);
    pool.nbins++;
    pool.bins[i] = (pool_bin){.pages = pages, .head = NULL};
    return &pool.bins[i];
}

static size_t block_total(const pool_block *b) { return POOL_HEADER + b->capacity; }

/* Records a block handed out (locked). */
static void *block_hand_out(pool_block *b, size_t bytes, bool reused) {
    b->bytes = bytes;
    b->next = NULL;
    pool.stats.n_allocs++;
    pool.stats.n_reused += reused;
    pool.stats.bytes_in_use += (int64_t)bytes;
    if (pool.stats.bytes_in_use > pool.stats.peak_bytes) pool.stats.peak_bytes = pool.stats.bytes_in_use;
    return (char *)b + POOL_HEADER;
}

void *kiln_mem_alloc(size_t bytes) {
    if (bytes > SIZE_MAX / 2) return NULL;
    pool_lock();
    kiln_pool_kind kind = pool.kind;
    size_t capacity;
    if (kind == KILN_POOL_PAGE) {
        size_t pages = bytes ? (bytes + POOL_PAGE - 1) / POOL_PAGE : 1;
        capacity = pages * POOL_PAGE;
        size_t i = bin_find(pages);
        if (i < pool.nbins && pool.bins[i].pages == pages && pool.bins[i].head) {
            pool_block *b = pool.bins[i].head;
            pool.bins[i].head = b->next;
            pool.cached -= block_total(b);
            void *p = block_hand_out(b, bytes, true);
            pool_unlock();
            return p;
        }
    } else {
        capacity = bytes ? (bytes + KILN_ALIGN - 1) / KILN_ALIGN * KILN_ALIGN : KILN_ALIGN;
    }
    pool_unlock();
    pool_block *b = aligned_alloc(KILN_ALIGN, POOL_HEADER + capacity);
    if (!b) return NULL;
    b->capacity = capacity;
    b->kind = kind;
    pool_lock();
    pool.stats.bytes_reserved += (int64_t)block_total(b);
    void *p = block_hand_out(b, bytes, false);
    pool_unlock();
    return p;
}

void kiln_mem_free(void *p) {
    if (!p) return;
    pool_block *b = (pool_block *)((char *)p - POOL_HEADER);
    size_t total = block_total(b);
    pool_lock();
    pool.stats.n_frees++;
    pool.stats.bytes_in_use -= (int64_t)b->bytes;
    if (b->kind == KILN_POOL_PAGE && pool.cached + total <= pool.cache_limit) {
        pool_bin *bin = bin_get(b->capacity / POOL_PAGE);
        if (bin) {
            b->next = bin->head;
            bin->head = b;
            pool.cached += total;
            pool_unlock();
            return;
        }
    }
    pool.stats.bytes_reserved -= (int64_t)total;
    pool_unlock();
    free(b);
}

size_t kiln_mem_set_cache_limit(size_t bytes) {
    pool_lock();
    size_t old = pool.cache_limit;
    pool.cache_limit = bytes;
    pool_unlock();
    return old;
}

void kiln_memory_set_pool(kiln_pool_kind kind) {
    pool_lock();
    pool.kind = kind == KILN_POOL_NONE ? KILN_POOL_NONE : KILN_POOL_PAGE;
    pool_unlock();
}

void kiln_memory_get_stats(kiln_memory_stats *s) {
    pool_lock();
    *s = pool.stats;
    s->pool = pool.kind;
    pool_unlock();
}

void kiln_memory_reset_peak(void) {
    pool_lock();
    pool.stats.peak_bytes = pool.stats.bytes_in_use;
    pool_unlock();
}

void kiln_memory_trim(void) {
    pool_lock();
    pool_block *all = NULL; /* the cached blocks, chained, freed after unlocking */
    for (size_t i = 0; i < pool.nbins; i++) {
        while (pool.bins[i].head) {
            pool_block *b = pool.bins[i].head;
            pool.bins[i].head = b->next;
            pool.stats.bytes_reserved -= (int64_t)block_total(b);
            b->next = all;
            all = b;
        }
    }
    free(pool.bins);
    pool.bins = NULL;
    pool.nbins = pool.capbins = 0;
    pool.cached = 0;
    pool_unlock();
    while (all) {
        pool_block *next = all->next;
        free(all);
        all = next;
    }
}
