/* lexer.c — tokenizer for the IR text format plus the parsers of dtypes, types and attribute
 * values that the module parser, the C API's attribute strings and op schemas share. */
#include "ir/lexer.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.'; }

kiln_status kiln_lex_error(kiln_lexer *lx, const char *fmt, ...) {
    if (lx->failed) return KILN_ERR_PARSE; /* keep the first error */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lx->failed = true;
    return kiln_error(lx->ctx, KILN_ERR_PARSE, "%s:%d:%d: %s", lx->filename ? lx->filename : "<input>",
                      lx->tok.line, lx->tok.col, msg);
}

const char *kiln_tok_describe(const kiln_token *t, char *buf, size_t size) {
    static const char *sigil[] = {[KILN_TOK_VAR] = "%", [KILN_TOK_GLOBAL] = "@"};
    switch (t->kind) {
    case KILN_TOK_EOF: snprintf(buf, size, "end of input"); break;
    case KILN_TOK_PUNCT: snprintf(buf, size, "'%c'", t->punct); break;
    case KILN_TOK_ARROW: snprintf(buf, size, "'->'"); break;
    case KILN_TOK_STRING: snprintf(buf, size, "string \"%.40s\"", t->str ? t->str : ""); break;
    case KILN_TOK_VAR:
    case KILN_TOK_GLOBAL:
        snprintf(buf, size, "'%s%.*s'", sigil[t->kind], (int)(t->len > 60 ? 60 : t->len), t->start);
        break;
    default: snprintf(buf, size, "'%.*s'", (int)(t->len > 60 ? 60 : t->len), t->start); break;
    }
    return buf;
}

static void advance(kiln_lexer *lx, size_t n) {
    for (size_t k = 0; k < n && *lx->p; k++, lx->p++) {
        if (*lx->p == '\n') {
            lx->line++;
            lx->col = 1;
        } else {
            lx->col++;
        }
    }
}

static bool lex_number(kiln_lexer *lx) {
    kiln_token *t = &lx->tok;
    const char *s = lx->p, *q = s;
    if (*q == '-' || *q == '+') q++;
    bool is_float = false;
    while (isdigit((unsigned char)*q)) q++;
    if (*q == '.') {
        is_float = true;
        q++;
        while (isdigit((unsigned char)*q)) q++;
    }
    if ((*q == 'e' || *q == 'E') &&
        (isdigit((unsigned char)q[1]) || ((q[1] == '-' || q[1] == '+') && isdigit((unsigned char)q[2])))) {
        is_float = true;
        q += 2;
        while (isdigit((unsigned char)*q)) q++;
    }
    if (is_name_char(*q) && *q != '.') return kiln_lex_error(lx, "malformed number '%.*s'", (int)(q - s + 1), s), false;
    t->start = s;
    t->len = (size_t)(q - s);
    char tmp[64];
    if (t->len >= sizeof tmp) return kiln_lex_error(lx, "number too long"), false;
    memcpy(tmp, s, t->len);
    tmp[t->len] = 0;
    errno = 0;
    if (is_float) {
        t->kind = KILN_TOK_FLOAT;
        t->f = strtod(tmp, NULL);
    } else {
        t->kind = KILN_TOK_INT;
        t->i = strtoll(tmp, NULL, 10);
        if (errno == ERANGE) return kiln_lex_error(lx, "integer %s out of range", tmp), false;
        t->f = (double)t->i;
    }
    advance(lx, t->len);
    return true;
}

static bool lex_string(kiln_lexer *lx) {
    kiln_token *t = &lx->tok;
    const char *q = lx->p + 1;
    kiln_buf b = {0};
    while (*q && *q != '"' && *q != '\n') {
        char c = *q++;
        if (c == '\\') {
            switch (*q) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            default:
                kiln_buf_free(&b);
                return kiln_lex_error(lx, "unknown escape '\\%c' in string", *q ? *q : ' '), false;
            }
            q++;
        }
        char one[2] = {c, 0};
        kiln_buf_puts(&b, one);
    }
    if (*q != '"') {
        kiln_buf_free(&b);
        return kiln_lex_error(lx, "unterminated string"), false;
    }
    char *s = kiln_buf_take(&b);
    t->kind = KILN_TOK_STRING;
    t->str = kiln_arena_strdup(lx->arena, s ? s : "");
    free(s);
    t->start = lx->p;
    t->len = (size_t)(q + 1 - lx->p);
    advance(lx, t->len);
    return true;
}

bool kiln_lex_next(kiln_lexer *lx) {
    if (lx->failed) return false;
    for (;;) { /* skip spaces and comments */
        while (*lx->p && isspace((unsigned char)*lx->p)) advance(lx, 1);
        if (*lx->p != '#') break;
        while (*lx->p && *lx->p != '\n') advance(lx, 1);
    }
    kiln_token *t = &lx->tok;
    memset(t, 0, sizeof *t);
    t->line = lx->line;
    t->col = lx->col;
    t->start = lx->p;
    char c = *lx->p;
    if (!c) {
        t->kind = KILN_TOK_EOF;
        return true;
    }
    if (c == '%' || c == '@') {
        const char *q = lx->p + 1;
        while (is_name_char(*q)) q++;
        if (q == lx->p + 1) return kiln_lex_error(lx, "expected a name after '%c'", c), false;
        t->kind = c == '%' ? KILN_TOK_VAR : KILN_TOK_GLOBAL;
        t->start = lx->p + 1;
        t->len = (size_t)(q - lx->p - 1);
        advance(lx, t->len + 1);
        return true;
    }
    if (c == '-' && lx->p[1] == '>') {
        t->kind = KILN_TOK_ARROW;
        t->len = 2;
        advance(lx, 2);
        return true;
    }
    if (isdigit((unsigned char)c) || ((c == '-' || c == '+') && isdigit((unsigned char)lx->p[1])))
        return lex_number(lx);
    if (c == '-' && !strncmp(lx->p, "-inf", 4) && !is_name_char(lx->p[4])) {
        t->kind = KILN_TOK_FLOAT;
        t->f = -INFINITY;
        t->len = 4;
        advance(lx, 4);
        return true;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        const char *q = lx->p;
        while (is_name_char(*q)) q++;
        t->kind = KILN_TOK_IDENT;
        t->len = (size_t)(q - lx->p);
        advance(lx, t->len);
        return true;
    }
    if (c == '"') return lex_string(lx);
    if (strchr("()[]{},:=", c)) {
        t->kind = KILN_TOK_PUNCT;
        t->punct = c;
        t->len = 1;
        advance(lx, 1);
        return true;
    }
    if (isprint((unsigned char)c)) return kiln_lex_error(lx, "unexpected character '%c'", c), false;
    return kiln_lex_error(lx, "unexpected byte 0x%02x", (unsigned char)c), false;
}

void kiln_lex_init(kiln_lexer *lx, kiln_context *ctx, kiln_arena *arena, const char *src,
                   const char *filename) {
    memset(lx, 0, sizeof *lx);
    lx->ctx = ctx;
    lx->arena = arena;
    lx->filename = filename;
    lx->p = src;
    lx->line = lx->col = 1;
    kiln_lex_next(lx);
}

bool kiln_lex_is(const kiln_lexer *lx, char punct) {
    return lx->tok.kind == KILN_TOK_PUNCT && lx->tok.punct == punct;
}

bool kiln_lex_is_ident(const kiln_lexer *lx, const char *word) {
    return lx->tok.kind == KILN_TOK_IDENT && lx->tok.len == strlen(word) &&
           !strncmp(lx->tok.start, word, lx->tok.len);
}

bool kiln_lex_accept(kiln_lexer *lx, char punct) {
    if (!kiln_lex_is(lx, punct)) return false;
    kiln_lex_next(lx);
    return true;
}

kiln_status kiln_lex_expect(kiln_lexer *lx, char punct, const char *what) {
    if (lx->failed) return KILN_ERR_PARSE;
    if (kiln_lex_accept(lx, punct)) return lx->failed ? KILN_ERR_PARSE : KILN_OK;
    char d[80];
    return kiln_lex_error(lx, "expected %s, found %s", what, kiln_tok_describe(&lx->tok, d, sizeof d));
}

kiln_status kiln_parse_dtype(kiln_lexer *lx, kiln_dtype *out) {
    char d[80], name[16];
    if (lx->tok.kind == KILN_TOK_IDENT && lx->tok.len < sizeof name) {
        memcpy(name, lx->tok.start, lx->tok.len);
        name[lx->tok.len] = 0;
        int dt = kiln_dtype_from_name(name);
        if (dt >= 0) {
            *out = (kiln_dtype)dt;
            return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
        }
    }
    return kiln_lex_error(lx, "expected a dtype (f32, f64, f16, bf16, i8, u8, i32, i64, bool), found %s",
                          kiln_tok_describe(&lx->tok, d, sizeof d));
}

/* "[2, 3]" after a dtype. */
static kiln_status parse_shape(kiln_lexer *lx, int *ndim, int64_t *shape) {
    if (kiln_lex_expect(lx, '[', "'[' starting a shape")) return KILN_ERR_PARSE;
    *ndim = 0;
    while (!kiln_lex_is(lx, ']')) {
        if (*ndim == KILN_MAX_DIMS) return kiln_lex_error(lx, "more than %d dimensions", KILN_MAX_DIMS);
        if (lx->tok.kind != KILN_TOK_INT || lx->tok.i < 0) {
            char d[80];
            return kiln_lex_error(lx, "expected a dimension size (integer >= 0), found %s",
                                  kiln_tok_describe(&lx->tok, d, sizeof d));
        }
        shape[(*ndim)++] = lx->tok.i;
        if (!kiln_lex_next(lx)) return KILN_ERR_PARSE;
        if (!kiln_lex_is(lx, ']') && kiln_lex_expect(lx, ',', "',' or ']' in a shape")) return KILN_ERR_PARSE;
    }
    if (kiln_shape_numel(*ndim, shape) < 0) return kiln_lex_error(lx, "shape has too many elements");
    return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
}

/* Tuple and list types recurse; `depth` bounds their nesting so hostile input cannot exhaust the
 * stack (each level keeps a few element pointers there; longer tuples grow on the heap). The
 * limits are above what ops produce (KILN_MAX_VALUES elements: the most a node or region takes;
 * autodiff nests lists of tuples a few levels). */
#define MAX_TYPE_NESTING 64
static kiln_status parse_type_at(kiln_lexer *lx, const kiln_type **out, int depth);

/* The elements of a tuple type after its '(' (consumed), through its ')'. */
static kiln_status parse_tuple_type(kiln_lexer *lx, const kiln_type **out, int depth) {
    const kiln_type *small[8], **elems = small;
    int n = 0, cap = (int)KILN_COUNTOF(small);
    kiln_status s = KILN_OK;
    while (!s && !kiln_lex_is(lx, ')')) {
        if (n == KILN_MAX_VALUES) {
            s = kiln_lex_error(lx, "tuple type with more than %d elements", KILN_MAX_VALUES);
            break;
        }
        if (n == cap) { /* double, off the stack */
            const kiln_type **g = malloc(sizeof *g * (size_t)cap * 2);
            if (!g) {
                s = kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
                break;
            }
            memcpy(g, elems, sizeof *g * (size_t)n);
            if (elems != small) free(elems);
            elems = g, cap *= 2;
        }
        if (parse_type_at(lx, &elems[n++], depth + 1)) s = KILN_ERR_PARSE;
        else if (!kiln_lex_is(lx, ')') && kiln_lex_expect(lx, ',', "',' or ')' in a tuple type")) s = KILN_ERR_PARSE;
    }
    if (!s && !kiln_lex_next(lx)) s = KILN_ERR_PARSE;
    if (!s && !(*out = kiln_type_tuple_a(lx->arena, n, elems))) s = kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
    if (elems != small) free(elems);
    return s;
}

static kiln_status parse_type_at(kiln_lexer *lx, const kiln_type **out, int depth) {
    if (kiln_lex_accept(lx, '(')) {
        if (depth >= MAX_TYPE_NESTING)
            return kiln_lex_error(lx, "types nested more than %d deep", MAX_TYPE_NESTING);
        return parse_tuple_type(lx, out, depth);
    }
    if (kiln_lex_is_ident(lx, "list")) { /* list(T) */
        const kiln_type *elem;
        if (depth >= MAX_TYPE_NESTING)
            return kiln_lex_error(lx, "types nested more than %d deep", MAX_TYPE_NESTING);
        if (!kiln_lex_next(lx) || kiln_lex_expect(lx, '(', "'(' after list") || parse_type_at(lx, &elem, depth + 1) ||
            kiln_lex_expect(lx, ')', "')' closing list(...)"))
            return KILN_ERR_PARSE;
        *out = kiln_type_list_a(lx->arena, elem);
        return *out ? KILN_OK : kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
    }
    static const struct { const char *word; kiln_dtype dt; } scalars[] = {
        {"int", KILN_I64}, {"float", KILN_F64}};
    for (size_t k = 0; k < KILN_COUNTOF(scalars); k++)
        if (kiln_lex_is_ident(lx, scalars[k].word)) {
            *out = kiln_type_scalar(lx->arena, scalars[k].dt);
            return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
        }
    kiln_dtype dt;
    if (kiln_parse_dtype(lx, &dt)) return KILN_ERR_PARSE;
    if (dt == KILN_BOOL && !kiln_lex_is(lx, '[')) { /* bare `bool` is the scalar type */
        *out = kiln_type_scalar(lx->arena, KILN_BOOL);
        return KILN_OK;
    }
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    if (parse_shape(lx, &ndim, shape)) return KILN_ERR_PARSE;
    *out = kiln_type_tensor_a(lx->arena, dt, ndim, shape);
    return *out ? KILN_OK : kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
}

kiln_status kiln_parse_type(kiln_lexer *lx, const kiln_type **out) { return parse_type_at(lx, out, 0); }

/* A number (int or float token, inf, nan), true/false. */
static kiln_status parse_number(kiln_lexer *lx, double *f, bool *is_int, int64_t *i) {
    *is_int = false;
    if (lx->tok.kind == KILN_TOK_INT) {
        *is_int = true;
        *i = lx->tok.i;
        *f = lx->tok.f;
    } else if (lx->tok.kind == KILN_TOK_FLOAT) {
        *f = lx->tok.f;
    } else if (kiln_lex_is_ident(lx, "inf")) {
        *f = INFINITY;
    } else if (kiln_lex_is_ident(lx, "nan")) {
        *f = NAN;
    } else if (kiln_lex_is_ident(lx, "true") || kiln_lex_is_ident(lx, "false")) {
        *is_int = true;
        *i = kiln_lex_is_ident(lx, "true");
        *f = (double)*i;
    } else {
        char d[80];
        return kiln_lex_error(lx, "expected a number, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
    }
    return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
}

static void release_tensor(void *t) { kiln_tensor_release(t); }

/* "f32[2]{1.0, 2.0}" */
static kiln_status parse_tensor_literal(kiln_lexer *lx, kiln_attr *out) {
    kiln_dtype dt;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    if (kiln_parse_dtype(lx, &dt) || parse_shape(lx, &ndim, shape)) return KILN_ERR_PARSE;
    /* Each value takes at least one character: refuse a shape the rest of the text cannot fill
     * before allocating it (a hostile "f32[1000000000]{" must not allocate 4 GB). */
    int64_t need = kiln_shape_numel(ndim, shape);
    if ((int64_t)strnlen(lx->p, (size_t)need) < need)
        return kiln_lex_error(lx, "tensor literal needs %lld values, more than the rest of the input holds", (long long)need);
    kiln_tensor *t = kiln_tensor_new(lx->ctx, dt, ndim, shape);
    if (!t) return kiln_error_status(lx->ctx);
    if (!kiln_arena_on_free(lx->arena, release_tensor, t)) {
        kiln_tensor_release(t);
        return kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
    }
    out->tensor = t;
    if (kiln_lex_expect(lx, '{', "'{' starting tensor data")) return KILN_ERR_PARSE;
    int64_t n = 0;
    while (!kiln_lex_is(lx, '}')) {
        double f;
        int64_t i = 0;
        bool is_int;
        if (n == t->numel) return kiln_lex_error(lx, "more than %lld values for a tensor of that shape", (long long)t->numel);
        if (parse_number(lx, &f, &is_int, &i)) return KILN_ERR_PARSE;
        if (is_int && !kiln_dtype_is_float(dt)) kiln_store_i64(dt, t->data, n, i);
        else kiln_store_f64(dt, t->data, n, f);
        n++;
        if (!kiln_lex_is(lx, '}') && kiln_lex_expect(lx, ',', "',' or '}' in tensor data")) return KILN_ERR_PARSE;
    }
    if (n != t->numel)
        return kiln_lex_error(lx, "tensor literal has %lld values, its shape needs %lld", (long long)n, (long long)t->numel);
    return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
}

kiln_status kiln_parse_attr_value(kiln_lexer *lx, kiln_attr_kind kind, kiln_attr *out) {
    char d[80];
    double f;
    int64_t i;
    bool is_int;
    out->set = true;
    switch (kind) {
    case KILN_ATTR_INT:
        if (lx->tok.kind != KILN_TOK_INT) return kiln_lex_error(lx, "expected an integer, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
        out->i = lx->tok.i;
        return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
    case KILN_ATTR_FLOAT:
        if (kiln_lex_is_ident(lx, "true") || kiln_lex_is_ident(lx, "false"))
            return kiln_lex_error(lx, "expected a number, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
        if (parse_number(lx, &f, &is_int, &i)) return KILN_ERR_PARSE;
        out->f = f;
        return KILN_OK;
    case KILN_ATTR_BOOL:
        if (!kiln_lex_is_ident(lx, "true") && !kiln_lex_is_ident(lx, "false"))
            return kiln_lex_error(lx, "expected true or false, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
        out->b = kiln_lex_is_ident(lx, "true");
        out->i = out->b;
        return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
    case KILN_ATTR_INTS:
    case KILN_ATTR_FLOATS: {
        if (kiln_lex_expect(lx, '[', "'[' starting a list")) return KILN_ERR_PARSE;
        int cap = 8, n = 0;
        int64_t *ints = kiln_arena_alloc(lx->arena, sizeof(int64_t) * (size_t)cap);
        double *floats = kiln_arena_alloc(lx->arena, sizeof(double) * (size_t)cap);
        while (!kiln_lex_is(lx, ']')) {
            if (!ints || !floats) return kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
            if (n == 4096) return kiln_lex_error(lx, "list longer than 4096 values");
            if (n == cap) {
                int64_t *ni = kiln_arena_alloc(lx->arena, sizeof(int64_t) * (size_t)cap * 2);
                double *nf = kiln_arena_alloc(lx->arena, sizeof(double) * (size_t)cap * 2);
                if (!ni || !nf) return kiln_error(lx->ctx, KILN_ERR_OOM, "out of memory");
                memcpy(ni, ints, sizeof(int64_t) * (size_t)n);
                memcpy(nf, floats, sizeof(double) * (size_t)n);
                ints = ni, floats = nf, cap *= 2;
            }
            if (kind == KILN_ATTR_INTS && lx->tok.kind != KILN_TOK_INT)
                return kiln_lex_error(lx, "expected an integer in the list, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
            if (parse_number(lx, &f, &is_int, &i)) return KILN_ERR_PARSE;
            ints[n] = i;
            floats[n] = f;
            n++;
            if (!kiln_lex_is(lx, ']') && kiln_lex_expect(lx, ',', "',' or ']' in a list")) return KILN_ERR_PARSE;
        }
        out->n = n;
        if (kind == KILN_ATTR_INTS) out->ints = ints;
        else out->floats = floats;
        return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
    }
    case KILN_ATTR_STR:
        if (lx->tok.kind != KILN_TOK_STRING) return kiln_lex_error(lx, "expected a string, found %s", kiln_tok_describe(&lx->tok, d, sizeof d));
        out->s = lx->tok.str;
        return kiln_lex_next(lx) ? KILN_OK : KILN_ERR_PARSE;
    case KILN_ATTR_DTYPE: return kiln_parse_dtype(lx, &out->dtype);
    case KILN_ATTR_TENSOR: return parse_tensor_literal(lx, out);
    default: return kiln_lex_error(lx, "internal: unknown attribute kind %d", (int)kind);
    }
}

kiln_status kiln_parse_attr_list(kiln_lexer *lx, kiln_op op, kiln_attr *attrs, char end) {
    const kiln_op_info *info = kiln_op_info_get(op);
    kiln_attrs_default(op, attrs);
    bool given[64] = {0};
    char d[80];
    while (end ? !kiln_lex_is(lx, end) : lx->tok.kind != KILN_TOK_EOF) {
        if (lx->failed) return KILN_ERR_PARSE;
        if (lx->tok.kind != KILN_TOK_IDENT)
            return kiln_lex_error(lx, "expected an attribute name of op '%s', found %s", info->name,
                                  kiln_tok_describe(&lx->tok, d, sizeof d));
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)lx->tok.len, lx->tok.start);
        int k = kiln_attr_index(op, name);
        if (k < 0) {
            kiln_buf names = {0};
            for (int j = 0; j < info->n_attrs; j++) kiln_buf_printf(&names, "%s%s", j ? ", " : "", info->attrs[j].name);
            char *list = kiln_buf_take(&names);
            kiln_lex_error(lx, "op '%s' has no attribute '%s' (it has: %s)", info->name, name,
                           list && *list ? list : "none");
            free(list);
            return KILN_ERR_PARSE;
        }
        if (given[k]) return kiln_lex_error(lx, "attribute '%s' given twice", name);
        given[k] = true;
        if (!kiln_lex_next(lx) || kiln_lex_expect(lx, '=', "'=' after the attribute name")) return KILN_ERR_PARSE;
        const kiln_attr_spec *spec = &info->attrs[k];
        memset(&attrs[k], 0, sizeof attrs[k]);
        int line = lx->tok.line, col = lx->tok.col;
        if (kiln_parse_attr_value(lx, spec->kind, &attrs[k])) {
            /* prefix which attribute was being read */
            char msg[KILN_ERROR_MAX];
            snprintf(msg, sizeof msg, "%s", kiln_error_message(lx->ctx));
            char *tail = strstr(msg, ": ");
            return kiln_error(lx->ctx, KILN_ERR_PARSE, "%s:%d:%d: attribute '%s' of op '%s': %s",
                              lx->filename ? lx->filename : "<input>", line, col, name, info->name,
                              tail ? tail + 2 : msg);
        }
        if (spec->choices) {
            bool ok = false;
            const char *c = spec->choices;
            size_t len = strlen(attrs[k].s);
            while (*c) {
                const char *bar = strchr(c, '|');
                size_t clen = bar ? (size_t)(bar - c) : strlen(c);
                if (clen == len && !strncmp(c, attrs[k].s, len)) ok = true;
                c += clen + (bar ? 1 : 0);
            }
            if (!ok)
                return kiln_error(lx->ctx, KILN_ERR_PARSE, "%s:%d:%d: attribute '%s' of op '%s' must be one of %s, not \"%s\"",
                                  lx->filename ? lx->filename : "<input>", line, col, name, info->name,
                                  spec->choices, attrs[k].s);
        }
        if (!kiln_lex_is(lx, end ? end : 0) && lx->tok.kind != KILN_TOK_EOF &&
            kiln_lex_expect(lx, ',', "',' between attributes"))
            return KILN_ERR_PARSE;
    }
    for (int k = 0; k < info->n_attrs; k++)
        if (info->attrs[k].required && !given[k])
            return kiln_lex_error(lx, "op '%s' needs attribute '%s'", info->name, info->attrs[k].name);
    return lx->failed ? KILN_ERR_PARSE : KILN_OK;
}
