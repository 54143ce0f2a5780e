/* context.c — the context (error state) and the growable string buffer used for messages and
 * the printer. */
#include "core/core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

kiln_context *kiln_context_new(void) {
    /* OpenMP (generated kernels, oneDNN) shares the cores with other thread pools (OpenBLAS,
     * the host framework): idle OpenMP threads sleep instead of spinning, unless the user chose
     * otherwise. Read by libgomp when it loads, which happens after this (dlopen). */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    kiln_context *ctx = calloc(1, sizeof *ctx);
    if (ctx) ctx->call_depth_limit = 1000;
    return ctx;
}

void kiln_context_free(kiln_context *ctx) { free(ctx); }

const char *kiln_error_message(const kiln_context *ctx) { return ctx->message; }
kiln_status kiln_error_status(const kiln_context *ctx) { return ctx->status; }

void kiln_error_clear(kiln_context *ctx) {
    ctx->status = KILN_OK;
    ctx->message[0] = 0;
}

kiln_status kiln_verror(kiln_context *ctx, kiln_status s, const char *fmt, va_list ap) {
    ctx->status = s;
    vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    return s;
}

kiln_status kiln_error(kiln_context *ctx, kiln_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kiln_verror(ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

const char *kiln_status_name(kiln_status s) {
    static const char *names[KILN_STATUS_COUNT] = {
        "ok", "parse error", "type error", "value error", "unsupported", "out of memory",
        "i/o error", "internal error"};
    return (unsigned)s < KILN_STATUS_COUNT ? names[s] : "unknown status";
}

void kiln_free(void *p) { free(p); }

static bool buf_reserve(kiln_buf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void kiln_buf_printf(kiln_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kiln_buf_puts(kiln_buf *b, const char *s) {
    size_t n = strlen(s);
    if (!buf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

char *kiln_buf_take(kiln_buf *b) {
    if (!buf_reserve(b, 0)) {
        kiln_buf_free(b);
        return NULL;
    }
    b->data[b->len] = 0;
    char *d = b->data;
    memset(b, 0, sizeof *b);
    return d;
}

void kiln_buf_free(kiln_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void kiln_buf_double(kiln_buf *b, double v) {
    if (isnan(v)) return kiln_buf_puts(b, "nan");
    if (isinf(v)) return kiln_buf_puts(b, v < 0 ? "-inf" : "inf");
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (!strpbrk(tmp, ".en")) strcat(tmp, ".0");
    kiln_buf_puts(b, tmp);
}
