/* safetensors.c — huggingface .safetensors files (8-byte header length, JSON header, raw
 * little-endian data) read into and written from kiln tensors. The JSON parser accepts exactly
 * the header's shape and checks every length, offset and product: files are untrusted input. */
#include "core/core.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_HEADER 100000000u /* the reference implementation's limit */

static const struct {
    const char *name;
    kiln_dtype dt;
} ST_DTYPES[] = {
    {"F64", KILN_F64}, {"F32", KILN_F32}, {"F16", KILN_F16}, {"BF16", KILN_BF16}, {"I64", KILN_I64},
    {"I32", KILN_I32}, {"I8", KILN_I8},   {"U8", KILN_U8},   {"BOOL", KILN_BOOL},
};

static const char *st_dtype_name(kiln_dtype dt) {
    for (size_t i = 0; i < KILN_COUNTOF(ST_DTYPES); i++)
        if (ST_DTYPES[i].dt == dt) return ST_DTYPES[i].name;
    return NULL;
}

static kiln_status st_io_error(kiln_context *ctx, const char *path, const char *what) {
    return kiln_error(ctx, KILN_ERR_IO, "safetensors: cannot %s '%s': %s", what, path, strerror(errno));
}

static int st_strcmp_p(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts names (a scratch array) and reports the first name that occurs twice. */
static kiln_status st_check_unique(kiln_context *ctx, const char *path, const char **names, size_t n) {
    if (n > 1) qsort(names, n, sizeof *names, st_strcmp_p);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': duplicate tensor name '%s'", path, names[i]);
    return KILN_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */
/* s as a JSON string literal (quotes, backslashes and control characters escaped; UTF-8 as is). */
static void st_put_string(kiln_buf *b, const char *s) {
    kiln_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') kiln_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20) kiln_buf_printf(b, "\\u%04x", *p);
        else kiln_buf_printf(b, "%c", *p);
    }
    kiln_buf_puts(b, "\"");
}

/* The header JSON, padded with spaces to a multiple of 8 bytes; NULL with the error set. */
static char *st_header(kiln_context *ctx, const char *path, int n, const char *const *names,
                       kiln_tensor *const *tensors, size_t *len) {
    kiln_buf b = {0};
    kiln_buf_puts(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *t = tensors[i];
        const char *dn = st_dtype_name(t->dtype);
        if (!dn) {
            kiln_buf_free(&b);
            kiln_error(ctx, KILN_ERR_UNSUPPORTED, "safetensors: cannot save '%s': tensor '%s' has dtype %s",
                       path, names[i], kiln_dtype_name(t->dtype));
            return NULL;
        }
        kiln_buf_puts(&b, ",");
        st_put_string(&b, names[i]);
        kiln_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", dn);
        for (int d = 0; d < t->ndim; d++) kiln_buf_printf(&b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t nb = kiln_tensor_nbytes(t);
        kiln_buf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                        (unsigned long long)(off + nb));
        off += nb;
    }
    kiln_buf_puts(&b, "}");
    while (!b.oom && b.len % 8) kiln_buf_puts(&b, " ");
    *len = b.len;
    char *text = kiln_buf_take(&b);
    if (!text) kiln_error(ctx, KILN_ERR_OOM, "safetensors: out of memory writing the header of '%s'", path);
    return text;
}

kiln_status kiln_safetensors_save(kiln_context *ctx, const char *path, int n, const char *const *names,
                                  kiln_tensor *const *tensors) {
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: cannot save '%s': bad tensor list (n=%d)", path, n);
    const char **scratch = malloc(sizeof *scratch * (size_t)(n ? n : 1));
    if (!scratch) return kiln_error(ctx, KILN_ERR_OOM, "safetensors: out of memory saving '%s'", path);
    kiln_status s = KILN_OK;
    for (int i = 0; i < n && s == KILN_OK; i++) {
        if (!names[i] || !tensors[i])
            s = kiln_error(ctx, KILN_ERR_VALUE, "safetensors: cannot save '%s': entry %d has a NULL %s", path, i,
                           names[i] ? "tensor" : "name");
        else if (!strcmp(names[i], "__metadata__"))
            s = kiln_error(ctx, KILN_ERR_VALUE, "safetensors: cannot save '%s': '__metadata__' is reserved, not "
                           "a tensor name", path);
        scratch[i] = names[i];
    }
    if (s == KILN_OK) s = st_check_unique(ctx, path, scratch, (size_t)n);
    free(scratch);
    if (s != KILN_OK) return s;

    size_t hlen = 0;
    char *header = st_header(ctx, path, n, names, tensors, &hlen);
    if (!header) return kiln_error_status(ctx);
    unsigned char pre[8];
    for (int i = 0; i < 8; i++) pre[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(header);
        return st_io_error(ctx, path, "create");
    }
    bool ok = fwrite(pre, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++) {
        size_t nb = kiln_tensor_nbytes(tensors[i]);
        ok = nb == 0 || fwrite(tensors[i]->data, 1, nb, f) == nb;
    }
    free(header);
    if (fclose(f) != 0) ok = false;
    if (ok) return KILN_OK;
    s = st_io_error(ctx, path, "write");
    remove(path); /* no half-written file left behind */
    return s;
}

/* ---- header parser ----------------------------------------------------------------------- */
typedef struct st_entry {
    char *name;
    int dtype;          /* kiln_dtype, or -1 when the file names one kiln lacks */
    char dtype_str[24]; /* as written (truncated), for messages */
    int ndim;           /* as written; only the first KILN_MAX_DIMS dims are kept */
    int64_t shape[KILN_MAX_DIMS];
    bool shape_overflow; /* the product of dims overflows int64 */
    uint64_t begin, end;
} st_entry;

typedef struct st_cursor {
    const char *start, *p, *end;
    const char *why; /* first problem found */
    st_entry *entries;
    size_t n, cap;
} st_cursor;

static bool st_fail(st_cursor *c, const char *why) {
    if (!c->why) c->why = why;
    return false;
}

static void st_skip_ws(st_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool st_accept(st_cursor *c, char ch) {
    st_skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool st_expect(st_cursor *c, char ch, const char *why) {
    return st_accept(c, ch) || st_fail(c, why);
}

static int st_hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* One \uXXXX escape (c->p just past the 'u'), a surrogate pair taken whole; the code point. */
static long st_unicode_escape(st_cursor *c) {
    if (c->end - c->p < 4 || st_hex4(c->p) < 0) return st_fail(c, "bad \\u escape"), -1;
    long cp = st_hex4(c->p);
    c->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return st_fail(c, "unpaired low surrogate in \\u escape"), -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int lo = c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u' ? st_hex4(c->p + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return st_fail(c, "unpaired high surrogate in \\u escape"), -1;
        c->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0) return st_fail(c, "NUL characters in strings are not supported"), -1;
    return cp;
}

static size_t st_utf8(long cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
               out[2] = (char)(0x80 | (cp & 0x3F)), 3;
    return out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
           out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F)), 4;
}

/* A JSON string, decoded into a malloc'd NUL-terminated copy (NULL on error or OOM). The decoded
 * text is never longer than the quoted source, which bounds the allocation. */
static char *st_string(st_cursor *c) {
    st_skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return st_fail(c, "expected a string"), NULL;
    const char *q = ++c->p;
    while (q < c->end && *q != '"') q += *q == '\\' ? 2 : 1;
    if (q >= c->end) return st_fail(c, "unterminated string"), NULL;
    char *out = malloc((size_t)(q - c->p) + 1), *o = out;
    if (!out) return st_fail(c, "out of memory"), NULL;
    while (*c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) {
            st_fail(c, "control character in string");
            break;
        }
        if (ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        char e = *c->p++;
        const char *simple = strchr("\"\\/bfnrt", e), *value = "\"\\/\b\f\n\r\t";
        if (e && simple) {
            *o++ = value[simple - "\"\\/bfnrt"];
        } else if (e == 'u') {
            long cp = st_unicode_escape(c);
            if (cp < 0) break;
            o += st_utf8(cp, o);
        } else {
            st_fail(c, "bad escape in string");
            break;
        }
    }
    if (c->why) {
        free(out);
        return NULL;
    }
    c->p++;
    *o = 0;
    return out;
}

/* A non-negative JSON integer (no sign, fraction, exponent or leading zeros) up to INT64_MAX. */
static bool st_uint(st_cursor *c, uint64_t *out) {
    st_skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return st_fail(c, "expected a non-negative integer");
    if (*c->p == '0' && c->end - c->p > 1 && c->p[1] >= '0' && c->p[1] <= '9')
        return st_fail(c, "leading zeros in an integer");
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p++ - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10) return st_fail(c, "integer overflows int64");
        v = v * 10 + d;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
        return st_fail(c, "expected an integer, not a fraction");
    *out = v;
    return true;
}

/* "[2, 3]" into the entry's shape (product checked for overflow). */
static bool st_shape(st_cursor *c, st_entry *e) {
    if (!st_expect(c, '[', "shape must be an array")) return false;
    int64_t numel = 1;
    while (!st_accept(c, ']')) {
        uint64_t d;
        if (e->ndim > 0 && !st_expect(c, ',', "expected ',' or ']' in shape")) return false;
        if (!st_uint(c, &d)) return false;
        if (e->ndim < KILN_MAX_DIMS) e->shape[e->ndim] = (int64_t)d;
        if (e->ndim < 64) e->ndim++; /* more than KILN_MAX_DIMS is reported after parsing */
        if (d && numel > INT64_MAX / (int64_t)d) e->shape_overflow = true;
        else numel *= (int64_t)d;
    }
    return true;
}

static bool st_offsets(st_cursor *c, st_entry *e) {
    return st_expect(c, '[', "data_offsets must be an array") && st_uint(c, &e->begin) &&
           st_expect(c, ',', "data_offsets must hold two integers") && st_uint(c, &e->end) &&
           st_expect(c, ']', "data_offsets must hold two integers");
}

/* {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}: each key once, nothing else. */
static bool st_tensor_info(st_cursor *c, st_entry *e) {
    enum { DTYPE = 1, SHAPE = 2, OFFSETS = 4 };
    int seen = 0;
    if (!st_expect(c, '{', "a tensor's entry must be an object")) return false;
    for (bool first = true; !st_accept(c, '}'); first = false) {
        if (!first && !st_expect(c, ',', "expected ',' or '}' in a tensor's entry")) return false;
        char *key = st_string(c);
        if (!key) return false;
        int bit = !strcmp(key, "dtype") ? DTYPE : !strcmp(key, "shape") ? SHAPE : !strcmp(key, "data_offsets") ? OFFSETS : 0;
        free(key);
        if (!bit) return st_fail(c, "unknown key in a tensor's entry (expected dtype, shape, data_offsets)");
        if (seen & bit) return st_fail(c, "duplicate key in a tensor's entry");
        seen |= bit;
        if (!st_expect(c, ':', "expected ':' after a key")) return false;
        if (bit == DTYPE) {
            char *d = st_string(c);
            if (!d) return false;
            e->dtype = -1;
            for (size_t i = 0; i < KILN_COUNTOF(ST_DTYPES); i++)
                if (!strcmp(d, ST_DTYPES[i].name)) e->dtype = (int)ST_DTYPES[i].dt;
            snprintf(e->dtype_str, sizeof e->dtype_str, "%s", d);
            free(d);
        } else if (!(bit == SHAPE ? st_shape(c, e) : st_offsets(c, e))) {
            return false;
        }
    }
    return seen == (DTYPE | SHAPE | OFFSETS) || st_fail(c, "a tensor's entry lacks dtype, shape or data_offsets");
}

/* "__metadata__": {"key": "value", ...} — checked, then dropped (kiln keeps no metadata). */
static bool st_metadata(st_cursor *c) {
    if (!st_expect(c, '{', "__metadata__ must be an object")) return false;
    for (bool first = true; !st_accept(c, '}'); first = false) {
        if (!first && !st_expect(c, ',', "expected ',' or '}' in __metadata__")) return false;
        char *k = st_string(c);
        free(k);
        if (!k || !st_expect(c, ':', "expected ':' after a key")) return false;
        st_skip_ws(c);
        if (c->p < c->end && *c->p != '"') return st_fail(c, "__metadata__ values must be strings");
        char *v = st_string(c);
        free(v);
        if (!v) return false;
    }
    return true;
}

static st_entry *st_push(st_cursor *c) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        st_entry *e = realloc(c->entries, cap * sizeof *e);
        if (!e) return st_fail(c, "out of memory"), NULL;
        c->entries = e, c->cap = cap;
    }
    st_entry *e = &c->entries[c->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* The whole header: {"name": {...}, "__metadata__": {...}} then only padding. */
static bool st_parse_header(st_cursor *c) {
    bool seen_meta = false;
    if (!st_expect(c, '{', "header is not a JSON object")) return false;
    for (bool first = true; !st_accept(c, '}'); first = false) {
        if (!first && !st_expect(c, ',', "expected ',' or '}' in the header object")) return false;
        char *name = st_string(c);
        if (!name) return false;
        if (!strcmp(name, "__metadata__")) {
            free(name);
            if (seen_meta) return st_fail(c, "duplicate __metadata__");
            seen_meta = true;
            if (!st_expect(c, ':', "expected ':' after a key") || !st_metadata(c)) return false;
            continue;
        }
        st_entry *e = st_push(c);
        if (!e) {
            free(name);
            return false;
        }
        e->name = name;
        if (!st_expect(c, ':', "expected ':' after a key") || !st_tensor_info(c, e)) return false;
    }
    st_skip_ws(c);
    return c->p == c->end || st_fail(c, "unexpected text after the header object");
}

/* ---- loading ----------------------------------------------------------------------------- */
static int st_offset_cmp(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Checks each entry's dtype, shape and size, then that the data regions tile the buffer exactly
 * (in offset order, as the reference implementation requires). */
static kiln_status st_validate(kiln_context *ctx, const char *path, st_entry *es, size_t n, uint64_t buf_len) {
    char sb[128];
    for (size_t i = 0; i < n; i++) {
        st_entry *e = &es[i];
        if (e->dtype < 0)
            return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "safetensors: '%s': tensor '%s' has dtype '%s', which kiln "
                              "does not support (F64 F32 F16 BF16 I64 I32 I8 U8 BOOL)", path, e->name, e->dtype_str);
        if (e->ndim > KILN_MAX_DIMS)
            return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "safetensors: '%s': tensor '%s' has %s%d dimensions; kiln "
                              "supports at most %d", path, e->name, e->ndim >= 64 ? ">= " : "", e->ndim, KILN_MAX_DIMS);
        int64_t numel = kiln_shape_numel(e->ndim, e->shape);
        uint64_t size = kiln_dtype_size((kiln_dtype)e->dtype);
        if (e->shape_overflow || numel < 0 || (uint64_t)numel > (uint64_t)INT64_MAX / size)
            return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': tensor '%s' has shape %s, which is too large",
                              path, e->name, kiln_shape_str(e->ndim, e->shape, sb, sizeof sb));
        if (e->end < e->begin || e->end - e->begin != (uint64_t)numel * size)
            return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': tensor '%s' (%s %s) needs %llu bytes but its "
                              "data_offsets [%llu, %llu] span %lld", path, e->name, e->dtype_str,
                              kiln_shape_str(e->ndim, e->shape, sb, sizeof sb), (unsigned long long)numel * size,
                              (unsigned long long)e->begin, (unsigned long long)e->end,
                              (long long)e->end - (long long)e->begin);
        if (e->end > buf_len)
            return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': tensor '%s' data_offsets [%llu, %llu] run past "
                              "the end of the data (%llu bytes; truncated file?)", path, e->name,
                              (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)buf_len);
    }
    st_entry **order = malloc(sizeof *order * (n ? n : 1));
    if (!order) return kiln_error(ctx, KILN_ERR_OOM, "safetensors: out of memory loading '%s'", path);
    for (size_t i = 0; i < n; i++) order[i] = &es[i];
    if (n > 1) qsort(order, n, sizeof *order, st_offset_cmp);
    kiln_status s = KILN_OK;
    uint64_t at = 0;
    for (size_t i = 0; i < n && s == KILN_OK; i++) {
        if (order[i]->begin != at)
            s = kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': tensor '%s' data_offsets [%llu, %llu] %s byte %llu "
                           "(tensor data must be contiguous, without gaps or overlaps)", path, order[i]->name,
                           (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end,
                           order[i]->begin > at ? "leave a gap after" : "overlap before", (unsigned long long)at);
        at = order[i]->end;
    }
    free(order);
    if (s == KILN_OK && at != buf_len)
        s = kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': tensor data ends at byte %llu but the file holds %llu "
                       "data bytes", path, (unsigned long long)at, (unsigned long long)buf_len);
    return s;
}

/* Reads the header of an open file into c (entries parsed, not validated); *buf_len = data bytes. */
static kiln_status st_read_header(kiln_context *ctx, const char *path, FILE *f, st_cursor *c, char **text,
                                  uint64_t *hlen_out, uint64_t *buf_len) {
    struct stat st;
    if (fstat(fileno(f), &st)) return st_io_error(ctx, path, "stat");
    unsigned char pre[8];
    if (fread(pre, 1, 8, f) != 8) {
        if (ferror(f)) return st_io_error(ctx, path, "read");
        return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': truncated file (%lld bytes; the header length "
                          "alone takes 8)", path, (long long)st.st_size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | pre[i];
    if (hlen > ST_MAX_HEADER)
        return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': header length %llu is too large (limit %u)", path,
                          (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > (uint64_t)st.st_size - 8)
        return kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': truncated header (%llu bytes declared, %lld in the "
                          "file)", path, (unsigned long long)hlen, (long long)st.st_size - 8);
    *text = malloc(hlen ? hlen : 1);
    if (!*text) return kiln_error(ctx, KILN_ERR_OOM, "safetensors: '%s': out of memory", path);
    if (fread(*text, 1, hlen, f) != hlen) return st_io_error(ctx, path, "read");
    c->start = c->p = *text;
    c->end = *text + hlen;
    if (!st_parse_header(c))
        return kiln_error(ctx, c->why && !strcmp(c->why, "out of memory") ? KILN_ERR_OOM : KILN_ERR_VALUE,
                          "safetensors: '%s': malformed header at byte %lld: %s", path,
                          (long long)(c->p - c->start) + 8, c->why);
    *hlen_out = hlen;
    *buf_len = (uint64_t)st.st_size - 8 - hlen;
    return KILN_OK;
}

/* Creates the tensors of validated entries, reading each one's bytes. */
static kiln_status st_read_tensors(kiln_context *ctx, const char *path, FILE *f, const st_entry *es, size_t n,
                                   long data_at, kiln_tensor **out) {
    for (size_t i = 0; i < n; i++) {
        const st_entry *e = &es[i];
        out[i] = kiln_tensor_new(ctx, (kiln_dtype)e->dtype, e->ndim, e->shape);
        if (!out[i]) return kiln_error_status(ctx);
        size_t nb = kiln_tensor_nbytes(out[i]);
        if (nb == 0) continue;
        if (fseek(f, data_at + (long)e->begin, SEEK_SET) || fread(out[i]->data, 1, nb, f) != nb)
            return ferror(f) ? st_io_error(ctx, path, "read")
                             : kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': truncated data", path);
        if (e->dtype == KILN_BOOL) { /* kiln bools are 0 or 1 */
            unsigned char *b = out[i]->data;
            for (size_t j = 0; j < nb; j++) b[j] = b[j] != 0;
        }
    }
    return KILN_OK;
}

kiln_status kiln_safetensors_load(kiln_context *ctx, const char *path, int *n_out, char ***names_out,
                                  kiln_tensor ***tensors_out) {
    *n_out = 0;
    *names_out = NULL;
    *tensors_out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return st_io_error(ctx, path, "open");
    st_cursor c = {0};
    char *text = NULL, **names = NULL;
    kiln_tensor **tensors = NULL;
    const char **scratch = NULL;
    uint64_t hlen = 0, buf_len = 0;
    kiln_status s = st_read_header(ctx, path, f, &c, &text, &hlen, &buf_len);
    if (s == KILN_OK && c.n > (size_t)INT32_MAX)
        s = kiln_error(ctx, KILN_ERR_VALUE, "safetensors: '%s': too many tensors (%zu)", path, c.n);
    if (s == KILN_OK) {
        scratch = malloc(sizeof *scratch * (c.n ? c.n : 1));
        names = calloc(c.n ? c.n : 1, sizeof *names);
        tensors = calloc(c.n ? c.n : 1, sizeof *tensors);
        if (!scratch || !names || !tensors) s = kiln_error(ctx, KILN_ERR_OOM, "safetensors: '%s': out of memory", path);
    }
    if (s == KILN_OK) {
        for (size_t i = 0; i < c.n; i++) scratch[i] = c.entries[i].name;
        s = st_check_unique(ctx, path, scratch, c.n);
    }
    if (s == KILN_OK) s = st_validate(ctx, path, c.entries, c.n, buf_len);
    if (s == KILN_OK) s = st_read_tensors(ctx, path, f, c.entries, c.n, (long)(8 + hlen), tensors);
    for (size_t i = 0; i < c.n; i++) {
        if (s == KILN_OK) names[i] = c.entries[i].name; /* ownership moves to the caller */
        else free(c.entries[i].name), kiln_tensor_release(tensors ? tensors[i] : NULL);
    }
    if (s == KILN_OK) {
        *n_out = (int)c.n;
        *names_out = names;
        *tensors_out = tensors;
    } else {
        free(names);
        free(tensors);
    }
    free(scratch);
    free(c.entries);
    free(text);
    fclose(f);
    return s;
}
