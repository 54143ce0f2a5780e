/* npy.c — NumPy .npy files (format 1.0 / 2.0 / 3.0, little-endian, C order) read into and written
 * from kiln tensors. The header parser is strict and bounds-checked: files are untrusted input. */
#include "core/core.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER (1u << 20) /* a real header is ~120 bytes; refuse absurd lengths */

/* NumPy type codes (without the byte-order character) of the dtypes kiln shares with NumPy. */
static const struct {
    char code[3];
    kiln_dtype dt;
} NPY_DTYPES[] = {
    {"f4", KILN_F32}, {"f8", KILN_F64}, {"f2", KILN_F16}, {"i1", KILN_I8},
    {"u1", KILN_U8},  {"i4", KILN_I32}, {"i8", KILN_I64}, {"b1", KILN_BOOL},
};

/* ---- header dict parser: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } ----- */
typedef struct npy_cursor {
    const char *p, *end;
    const char *why; /* first problem found */
} npy_cursor;

static bool npy_fail(npy_cursor *c, const char *why) {
    if (!c->why) c->why = why;
    return false;
}

static void npy_skip_ws(npy_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool npy_accept(npy_cursor *c, char ch) {
    npy_skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool npy_expect(npy_cursor *c, char ch, const char *why) {
    return npy_accept(c, ch) || npy_fail(c, why);
}

/* A quoted Python string without escapes, copied into out (truncated strings are an error). */
static bool npy_string(npy_cursor *c, char *out, size_t cap) {
    npy_skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return npy_fail(c, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\') return npy_fail(c, "escapes in strings are not supported");
        if (n + 1 >= cap) return npy_fail(c, "string too long");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return npy_fail(c, "unterminated string");
    c->p++;
    out[n] = 0;
    return true;
}

static bool npy_word(npy_cursor *c, const char *w) {
    npy_skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n)) return false;
    c->p += n;
    return true;
}

/* A non-negative dimension (Python 2 files may write "3L"). */
static bool npy_dim(npy_cursor *c, int64_t *out) {
    npy_skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return npy_fail(c, "shape must hold non-negative integers");
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int d = *c->p++ - '0';
        if (v > (INT64_MAX - d) / 10) return npy_fail(c, "shape dimension overflows int64");
        v = v * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *out = v;
    return true;
}

/* "(2, 3)", "(3,)" or "()". */
static bool npy_shape(npy_cursor *c, int *ndim, int64_t *shape) {
    if (!npy_expect(c, '(', "shape must be a tuple")) return false;
    *ndim = 0;
    while (!npy_accept(c, ')')) {
        if (*ndim == KILN_MAX_DIMS) return npy_fail(c, "too many dimensions (kiln supports at most 8)");
        if (!npy_dim(c, &shape[(*ndim)++])) return false;
        if (!npy_accept(c, ',')) return npy_expect(c, ')', "expected ',' or ')' in shape");
    }
    return true;
}

typedef struct npy_header {
    char descr[16];
    bool fortran;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
} npy_header;

/* Parses the dict; every one of the three keys exactly once, nothing else, then padding. */
static bool npy_parse_dict(npy_cursor *c, npy_header *h) {
    enum { DESCR = 1, FORTRAN = 2, SHAPE = 4 };
    int seen = 0;
    if (!npy_expect(c, '{', "header is not a dict")) return false;
    while (!npy_accept(c, '}')) {
        char key[32];
        int bit;
        if (!npy_string(c, key, sizeof key)) return false;
        if (!npy_expect(c, ':', "expected ':' after a key")) return false;
        if (!strcmp(key, "descr")) {
            bit = DESCR;
            npy_skip_ws(c);
            if (c->p < c->end && *c->p == '[') return npy_fail(c, "structured dtypes are not supported");
            if (!npy_string(c, h->descr, sizeof h->descr)) return false;
        } else if (!strcmp(key, "fortran_order")) {
            bit = FORTRAN;
            if (npy_word(c, "True")) h->fortran = true;
            else if (npy_word(c, "False")) h->fortran = false;
            else return npy_fail(c, "fortran_order must be True or False");
        } else if (!strcmp(key, "shape")) {
            bit = SHAPE;
            if (!npy_shape(c, &h->ndim, h->shape)) return false;
        } else {
            return npy_fail(c, "unknown key in header dict");
        }
        if (seen & bit) return npy_fail(c, "duplicate key in header dict");
        seen |= bit;
        if (!npy_accept(c, ',')) {
            if (!npy_expect(c, '}', "expected ',' or '}' in header dict")) return false;
            break;
        }
    }
    if (seen != (DESCR | FORTRAN | SHAPE)) return npy_fail(c, "header dict lacks 'descr', 'fortran_order' or 'shape'");
    npy_skip_ws(c);
    return c->p == c->end || npy_fail(c, "unexpected text after the header dict");
}

/* Maps a descr such as '<f4' to a dtype; sets an error naming the problem if kiln can't hold it. */
static bool npy_descr_dtype(kiln_context *ctx, const char *path, const char *descr, kiln_dtype *dt) {
    char order = descr[0];
    const char *code = order ? descr + 1 : descr;
    for (size_t i = 0; i < KILN_COUNTOF(NPY_DTYPES); i++) {
        if (strcmp(code, NPY_DTYPES[i].code)) continue;
        bool one_byte = kiln_dtype_size(NPY_DTYPES[i].dt) == 1;
        if (order == '<' || order == '=' || (one_byte && (order == '|' || order == '>'))) {
            *dt = NPY_DTYPES[i].dt;
            return true;
        }
        if (order == '>') {
            kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': big-endian data ('%s') is not supported; save it with "
                       "arr.astype('<%s')", path, descr, code);
            return false;
        }
        break;
    }
    if (!strcmp(code, "O"))
        kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': object arrays ('%s') are not supported", path, descr);
    else
        kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': unsupported dtype '%s' (kiln reads <f4 <f8 <f2 |i1 |u1 <i4 "
                   "<i8 |b1)", path, descr);
    return false;
}

static kiln_status npy_io_error(kiln_context *ctx, const char *path, const char *what) {
    return kiln_error(ctx, KILN_ERR_IO, "npy: cannot %s '%s': %s", what, path, strerror(errno));
}

static uint32_t npy_le(const unsigned char *b, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* Reads the preamble and header of an open file; on success *data_off is where data starts. */
static kiln_status npy_read_header(kiln_context *ctx, const char *path, FILE *f, npy_header *h, long *data_off) {
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (ferror(f)) return npy_io_error(ctx, path, "read");
    if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN))
        return kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': not a .npy file (bad magic)", path);
    int major = pre[6], lensize = major == 1 ? 2 : 4;
    if (got == 10 && (major < 1 || major > 3))
        return kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': unsupported format version %d.%d", path, major, pre[7]);
    if (got < 10 || (lensize == 4 && fread(pre + 10, 1, 2, f) != 2))
        return kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': truncated preamble", path);
    uint32_t hlen = npy_le(pre + 8, lensize);
    if (hlen > NPY_MAX_HEADER)
        return kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': header length %u is too large", path, (unsigned)hlen);
    char *text = malloc(hlen ? hlen : 1);
    if (!text) return kiln_error(ctx, KILN_ERR_OOM, "npy: '%s': out of memory", path);
    kiln_status s = KILN_OK;
    if (fread(text, 1, hlen, f) != hlen) {
        s = kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': truncated header (%u bytes declared)", path, (unsigned)hlen);
    } else {
        npy_cursor c = {text, text + hlen, NULL};
        memset(h, 0, sizeof *h);
        if (!npy_parse_dict(&c, h))
            s = kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': malformed header at byte %ld: %s", path,
                           (long)(c.p - text) + 8 + lensize, c.why);
    }
    free(text);
    *data_off = 8 + lensize + (long)hlen;
    return s;
}

kiln_tensor *kiln_npy_load(kiln_context *ctx, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        npy_io_error(ctx, path, "open");
        return NULL;
    }
    kiln_tensor *t = NULL;
    npy_header h;
    long off = 0;
    kiln_dtype dt;
    struct stat st;
    char sb[128];
    if (npy_read_header(ctx, path, f, &h, &off) != KILN_OK || !npy_descr_dtype(ctx, path, h.descr, &dt)) goto done;
    if (h.fortran) {
        kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': fortran_order arrays are not supported; save "
                   "np.ascontiguousarray(arr)", path);
        goto done;
    }
    int64_t numel = kiln_shape_numel(h.ndim, h.shape);
    if (numel < 0 || numel > INT64_MAX / (int64_t)kiln_dtype_size(dt)) {
        kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': shape %s is too large", path,
                   kiln_shape_str(h.ndim, h.shape, sb, sizeof sb));
        goto done;
    }
    int64_t nbytes = numel * (int64_t)kiln_dtype_size(dt);
    if (fstat(fileno(f), &st)) {
        npy_io_error(ctx, path, "stat");
        goto done;
    }
    if ((int64_t)st.st_size - off != nbytes) {
        kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': header says %s %s (%lld data bytes) but the file holds %lld",
                   path, kiln_dtype_name(dt), kiln_shape_str(h.ndim, h.shape, sb, sizeof sb), (long long)nbytes,
                   (long long)st.st_size - off);
        goto done;
    }
    t = kiln_tensor_new(ctx, dt, h.ndim, h.shape);
    if (!t) goto done;
    if (fread(t->data, 1, (size_t)nbytes, f) != (size_t)nbytes) {
        if (ferror(f)) npy_io_error(ctx, path, "read");
        else kiln_error(ctx, KILN_ERR_VALUE, "npy: '%s': truncated data", path);
        kiln_tensor_release(t);
        t = NULL;
        goto done;
    }
    if (dt == KILN_BOOL) { /* kiln bools are 0 or 1; NumPy may hold any non-zero byte */
        unsigned char *b = t->data;
        for (int64_t i = 0; i < numel; i++) b[i] = b[i] != 0;
    }
done:
    fclose(f);
    return t;
}

kiln_status kiln_npy_save(kiln_context *ctx, const char *path, const kiln_tensor *t) {
    const char *code = NULL;
    for (size_t i = 0; i < KILN_COUNTOF(NPY_DTYPES); i++)
        if (NPY_DTYPES[i].dt == t->dtype) code = NPY_DTYPES[i].code;
    if (!code)
        return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "npy: cannot save '%s': %s has no NumPy dtype; cast it to "
                          "f32 first (kiln_tensor_cast)", path, kiln_dtype_name(t->dtype));
    /* Header: the dict, padded with spaces and a final '\n' so the data starts 64-byte aligned. */
    char header[512];
    int n = snprintf(header, sizeof header, "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
                     kiln_dtype_size(t->dtype) == 1 ? '|' : '<', code);
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(header + n, sizeof header - (size_t)n, "%lld%s", (long long)t->shape[i],
                      t->ndim == 1 ? "," : i + 1 < t->ndim ? ", " : "");
    n += snprintf(header + n, sizeof header - (size_t)n, "), }");
    int total = (10 + n + 1 + KILN_ALIGN - 1) / KILN_ALIGN * KILN_ALIGN, hlen = total - 10;
    memset(header + n, ' ', (size_t)(hlen - n - 1));
    header[hlen - 1] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};

    FILE *f = fopen(path, "wb");
    if (!f) return npy_io_error(ctx, path, "create");
    size_t nbytes = kiln_tensor_nbytes(t);
    bool ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(header, 1, (size_t)hlen, f) == (size_t)hlen &&
              (nbytes == 0 || fwrite(t->data, 1, nbytes, f) == nbytes);
    if (fclose(f) != 0) ok = false;
    if (ok) return KILN_OK;
    kiln_status s = npy_io_error(ctx, path, "write");
    remove(path); /* no half-written file left behind */
    return s;
}
