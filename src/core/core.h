/* core.h — internals shared by every part of kiln: the arena, the context and its error state,
 * the tensor and tuple layouts, dtype helpers. Not part of the public API (that is kiln.h). */
#ifndef KILN_CORE_H
#define KILN_CORE_H

#include "kiln.h"
#include <stdarg.h>
#include <stdio.h>

#define KILN_ALIGN 64
#define KILN_ERROR_MAX 4096
#define KILN_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- arena: bump allocation in chunks, freed all at once --------------------------------- */
typedef struct kiln_arena_chunk kiln_arena_chunk;
typedef struct kiln_arena_cleanup kiln_arena_cleanup;
typedef struct kiln_arena {
    kiln_arena_chunk *head;
    size_t used, cap; /* within head */
    size_t total;     /* bytes reserved over all chunks */
    kiln_arena_cleanup *cleanups;
} kiln_arena;

void kiln_arena_init(kiln_arena *a);
void kiln_arena_free(kiln_arena *a);
void *kiln_arena_alloc(kiln_arena *a, size_t size);      /* zeroed, 16-byte aligned; NULL on OOM */
char *kiln_arena_strdup(kiln_arena *a, const char *s);
char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n);
/* Runs fn(arg) when the arena is freed (last registered, first run); e.g. releases a tensor
 * that an IR attribute holds. Returns false on OOM (fn is then not registered). */
bool kiln_arena_on_free(kiln_arena *a, void (*fn)(void *), void *arg);

/* ---- memory pools (pool.c; public controls in kiln.h): tensor data and the VM arena ------- */
/* 64-byte aligned, uninitialized; from the current pool (kiln_memory_set_pool). NULL on OOM. */
void *kiln_mem_alloc(size_t bytes);
/* Returns p (NULL is a no-op) to the pool it came from, whatever the current pool is. */
void kiln_mem_free(void *p);
/* Page pool: a freed block that would make the cache exceed `bytes` goes back to the system
 * (default 4 GiB). Returns the previous limit. */
size_t kiln_mem_set_cache_limit(size_t bytes);

/* ---- context ----------------------------------------------------------------------------- */
struct kiln_context {
    kiln_status status;
    char message[KILN_ERROR_MAX];
    int call_depth_limit; /* interpreter recursion bound */
};

/* Sets the error (first line of the message) and returns `s`. */
kiln_status kiln_error(kiln_context *ctx, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
kiln_status kiln_verror(kiln_context *ctx, kiln_status s, const char *fmt, va_list ap);

/* ---- growable string buffer (printer, messages) ------------------------------------------ */
typedef struct kiln_buf {
    char *data;
    size_t len, cap;
    bool oom;
} kiln_buf;
void kiln_buf_printf(kiln_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kiln_buf_puts(kiln_buf *b, const char *s);
char *kiln_buf_take(kiln_buf *b); /* malloc'd, NUL-terminated; NULL if any append failed */
void kiln_buf_free(kiln_buf *b);
/* Shortest text that reads back as the same double ("1.0", "0.1", "1e-05", "inf", "nan"). */
void kiln_buf_double(kiln_buf *b, double v);

/* ---- tensors and tuples ------------------------------------------------------------------ */
struct kiln_tensor {
    int refcount;
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t numel;
    void *data;              /* host memory, or device memory when device is not the CPU */
    kiln_device device;      /* zero: the CPU */
    void (*release)(void *); /* frees data (aligned free, or a wrapper's deleter) */
    void *release_arg;
};

struct kiln_tuple {
    int refcount;
    int n;
    kiln_value items[];
};

/* Product of dims; -1 if it overflows int64. */
int64_t kiln_shape_numel(int ndim, const int64_t *shape);
/* "[2, 3]" into buf. */
const char *kiln_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
/* New tensor with the same dtype/shape as `t`, data copied. */
kiln_tensor *kiln_tensor_copy(kiln_context *ctx, const kiln_tensor *t);

/* ---- dtype helpers ----------------------------------------------------------------------- */
/* Element i of a tensor buffer read as double / int64, and written from them (rounding to
 * nearest even for 16-bit floats, C conversion semantics for ints, != 0 for bool). */
double kiln_load_f64(kiln_dtype dt, const void *data, int64_t i);
int64_t kiln_load_i64(kiln_dtype dt, const void *data, int64_t i);
void kiln_store_f64(kiln_dtype dt, void *data, int64_t i, double v);
void kiln_store_i64(kiln_dtype dt, void *data, int64_t i, int64_t v);
/* Converts n elements between dtypes (src and dst may not overlap). */
void kiln_convert(kiln_dtype dst_dt, void *dst, kiln_dtype src_dt, const void *src, int64_t n);
/* The dtype two tensor dtypes promote to (torch-style: bool < ints < floats; f16+bf16 -> f32;
 * i8+u8 -> i32). */
kiln_dtype kiln_dtype_promote(kiln_dtype a, kiln_dtype b);

#endif /* KILN_CORE_H */
