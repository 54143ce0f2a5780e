/* test_memory_pool.c — tests of the tensor memory pools (src/core/pool.c): page rounding, reuse
 * of freed blocks, switching pools with live blocks, statistics, the cache limit, tensors
 * allocated through the pool, and many threads allocating at once. */
#include "test.h"
#include <pthread.h>
#include <stdint.h>

#define PAGE 4096
#define HDR 64 /* the block header in front of the data, counted in bytes_reserved */

/* Starts a test from a known state: the given pool, no cached blocks; returns the stats. */
static kiln_memory_stats pool_begin(kiln_pool_kind kind) {
    kiln_memory_set_pool(kind);
    kiln_memory_trim();
    kiln_memory_reset_peak();
    kiln_memory_stats s;
    kiln_memory_get_stats(&s);
    return s;
}

/* Ends a test: back to the page pool (the default) with nothing cached. */
static void pool_end(void) {
    kiln_memory_set_pool(KILN_POOL_PAGE);
    kiln_memory_trim();
}

static kiln_memory_stats stats_now(void) {
    kiln_memory_stats s;
    kiln_memory_get_stats(&s);
    return s;
}

TEST(mem_page_pool_rounds_to_pages_and_reuses) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    CHECK_INT(s0.pool, KILN_POOL_PAGE);
    char *a = kiln_mem_alloc(1);
    CHECK(a && (uintptr_t)a % 64 == 0);
    s = stats_now();
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 1);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, HDR + PAGE);
    CHECK_INT(s.n_allocs - s0.n_allocs, 1);
    CHECK_INT(s.n_reused - s0.n_reused, 0);
    a[PAGE - 1] = 1; /* the whole page is usable */
    kiln_mem_free(a);
    s = stats_now();
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, HDR + PAGE); /* cached, not returned */
    CHECK_INT(s.n_frees - s0.n_frees, 1);

    char *b = kiln_mem_alloc(PAGE); /* one page: the same size class */
    CHECK(b == a);
    char *c = kiln_mem_alloc(PAGE + 1); /* two pages: a new block */
    CHECK(c && c != a && (uintptr_t)c % 64 == 0);
    s = stats_now();
    CHECK_INT(s.n_reused - s0.n_reused, 1);
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 2 * PAGE + 1);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 2 * HDR + 3 * PAGE);

    /* freed blocks of one size come back last-freed first */
    char *d = kiln_mem_alloc(10);
    kiln_mem_free(b);
    kiln_mem_free(d);
    CHECK(kiln_mem_alloc(100) == d);
    CHECK(kiln_mem_alloc(PAGE) == b);
    char *z = kiln_mem_alloc(0); /* a valid one-page block */
    CHECK(z != NULL && z != b && z != d);
    kiln_mem_free(NULL);
    kiln_mem_free(b);
    kiln_mem_free(c);
    kiln_mem_free(d);
    kiln_mem_free(z);
    s = stats_now();
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.n_allocs - s0.n_allocs, 7);
    CHECK_INT(s.n_frees - s0.n_frees, 7);
    CHECK_INT(s.n_reused - s0.n_reused, 3);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 4 * HDR + 5 * PAGE); /* a, c (2 pages), d, z cached */
    kiln_memory_trim();
    CHECK_INT(stats_now().bytes_reserved, s0.bytes_reserved);
    pool_end();
}

TEST(mem_no_pool_allocates_directly) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_NONE), s;
    CHECK_INT(s0.pool, KILN_POOL_NONE);
    char *a = kiln_mem_alloc(100);
    CHECK(a && (uintptr_t)a % 64 == 0);
    s = stats_now();
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 100);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, HDR + 128); /* rounded to 64 bytes only */
    kiln_mem_free(a);
    char *b = kiln_mem_alloc(100);
    kiln_mem_free(b);
    s = stats_now();
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.bytes_reserved, s0.bytes_reserved);
    CHECK_INT(s.n_allocs - s0.n_allocs, 2);
    CHECK_INT(s.n_frees - s0.n_frees, 2);
    CHECK_INT(s.n_reused - s0.n_reused, 0);
    pool_end();
}

TEST(mem_switching_pools_keeps_live_blocks) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    char *p = kiln_mem_alloc(5000); /* page pool: 2 pages */
    memset(p, 7, 5000);
    kiln_memory_set_pool(KILN_POOL_NONE);
    char *n = kiln_mem_alloc(5000); /* no pool: 5056 bytes */
    memset(n, 9, 5000);
    CHECK_INT(stats_now().pool, KILN_POOL_NONE);
    CHECK(p[4999] == 7 && n[4999] == 9);
    kiln_mem_free(p); /* goes back to the page pool's cache though the current pool is none */
    s = stats_now();
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 2 * HDR + 2 * PAGE + 5056);
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 5000);
    kiln_memory_set_pool(KILN_POOL_PAGE);
    char *q = kiln_mem_alloc(8000); /* reuses p's 2-page block */
    CHECK(q == p);
    CHECK_INT(stats_now().n_reused - s0.n_reused, 1);
    kiln_mem_free(n); /* back to the system though the current pool is page */
    s = stats_now();
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, HDR + 2 * PAGE);
    kiln_memory_set_pool(KILN_POOL_NONE);
    kiln_mem_free(q); /* cached by the page pool */
    s = stats_now();
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, HDR + 2 * PAGE);
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    kiln_memory_trim();
    CHECK_INT(stats_now().bytes_reserved, s0.bytes_reserved);
    pool_end();
}

TEST(mem_stats_peak_and_reset) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    kiln_memory_reset_peak();
    CHECK_INT(stats_now().peak_bytes, s0.bytes_in_use);
    void *a = kiln_mem_alloc(1000), *b = kiln_mem_alloc(3000);
    kiln_mem_free(a);
    void *c = kiln_mem_alloc(500);
    s = stats_now();
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 3500);
    CHECK_INT(s.peak_bytes - s0.bytes_in_use, 4000);
    kiln_memory_reset_peak();
    CHECK_INT(stats_now().peak_bytes - s0.bytes_in_use, 3500);
    kiln_mem_free(b);
    kiln_mem_free(c);
    s = stats_now();
    CHECK_INT(s.peak_bytes - s0.bytes_in_use, 3500);
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.n_allocs - s0.n_allocs, 3);
    CHECK_INT(s.n_frees - s0.n_frees, 3);
    CHECK_INT(s.n_reused - s0.n_reused, 1); /* c took a's page */
    pool_end();
}

TEST(mem_cache_limit_sends_excess_to_the_system) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    size_t old = kiln_mem_set_cache_limit(2 * (HDR + PAGE));
    CHECK(old >= (size_t)1 << 30);
    void *a = kiln_mem_alloc(1), *b = kiln_mem_alloc(1), *c = kiln_mem_alloc(1);
    kiln_mem_free(a);
    kiln_mem_free(b);
    kiln_mem_free(c); /* the cache is full: c goes back */
    s = stats_now();
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 2 * (HDR + PAGE));
    CHECK(kiln_mem_alloc(1) == b);
    CHECK(kiln_mem_alloc(1) == a);
    CHECK_INT(stats_now().n_reused - s0.n_reused, 2);
    kiln_mem_free(a);
    kiln_mem_free(b);
    CHECK_INT(kiln_mem_set_cache_limit(old), 2 * (HDR + PAGE));
    pool_end();
}

TEST(mem_tensors_use_the_pool) {
    kiln_context *ctx = kiln_context_new();
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    int64_t shape[2] = {10, 30};
    kiln_tensor *t = kiln_tensor_new(ctx, KILN_F32, 2, shape);
    CHECK(t != NULL);
    float *data = kiln_tensor_data(t);
    s = stats_now();
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 1200);
    CHECK_INT(s.n_allocs - s0.n_allocs, 1);
    for (int i = 0; i < 300; i++) data[i] = 1.5f;
    kiln_tensor_release(t);
    /* a tensor of another shape in the same page class reuses the block, zeroed again */
    kiln_tensor *u = kiln_tensor_new(ctx, KILN_F64, 1, (int64_t[]){500});
    CHECK(kiln_tensor_data(u) == (void *)data);
    const double *ud = kiln_tensor_data(u);
    bool zero = true;
    for (int i = 0; i < 500; i++) zero = zero && ud[i] == 0;
    CHECK(zero);
    /* wrapped memory is the caller's: not counted */
    static float ext[4];
    kiln_tensor *w = kiln_tensor_wrap(ctx, KILN_F32, 1, (int64_t[]){4}, ext, NULL, NULL);
    s = stats_now();
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 4000);
    CHECK_INT(s.n_reused - s0.n_reused, 1);
    kiln_tensor_release(w);
    kiln_tensor_release(u);
    CHECK_INT(stats_now().bytes_in_use, s0.bytes_in_use);
    kiln_context_free(ctx);
    pool_end();
}

/* ---- many threads --------------------------------------------------------------------------- */
#define MT_THREADS 8
#define MT_ITERS 3000
#define MT_LIVE 16

/* Each thread keeps up to MT_LIVE blocks of pseudo-random sizes, filled with its own byte,
 * and checks them when freeing; thread 1 also flips the pool back and forth. */
static void *mt_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned char *live[MT_LIVE] = {0};
    size_t size[MT_LIVE] = {0};
    uint32_t rng = 12345u + (uint32_t)id * 7919u;
    intptr_t bad = 0;
    for (int it = 0; it < MT_ITERS; it++) {
        rng = rng * 1664525u + 1013904223u;
        int k = (int)(rng >> 8) % MT_LIVE;
        if (live[k]) {
            for (size_t i = 0; i < size[k]; i += 97) bad += live[k][i] != (unsigned char)id;
            kiln_mem_free(live[k]);
        }
        size[k] = (rng >> 12) % (3 * PAGE) + 1;
        live[k] = kiln_mem_alloc(size[k]);
        if (!live[k]) return (void *)(intptr_t)1;
        memset(live[k], id, size[k]);
        if (id == 1 && it % 100 == 0) kiln_memory_set_pool(it % 200 ? KILN_POOL_NONE : KILN_POOL_PAGE);
    }
    for (int k = 0; k < MT_LIVE; k++) kiln_mem_free(live[k]);
    return (void *)bad;
}

TEST(mem_many_threads_allocate_concurrently) {
    kiln_memory_stats s0 = pool_begin(KILN_POOL_PAGE), s;
    pthread_t th[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++) CHECK(pthread_create(&th[i], NULL, mt_worker, (void *)(intptr_t)(i + 1)) == 0);
    for (int i = 0; i < MT_THREADS; i++) {
        void *bad = NULL;
        pthread_join(th[i], &bad);
        CHECK_INT((intptr_t)bad, 0);
    }
    s = stats_now();
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.n_allocs - s0.n_allocs, MT_THREADS * MT_ITERS);
    CHECK_INT(s.n_frees - s0.n_frees, MT_THREADS * MT_ITERS);
    CHECK(s.n_reused - s0.n_reused > 0);
    CHECK(s.peak_bytes - s0.bytes_in_use <= (int64_t)MT_THREADS * MT_LIVE * 3 * PAGE);
    kiln_memory_trim();
    CHECK_INT(stats_now().bytes_reserved, s0.bytes_reserved);
    pool_end();
}
