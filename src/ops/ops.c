/* ops.c — the op table built from ops.def: metadata, parsed attribute schemas, attribute
 * accessors and printing, and the error helpers shape rules and kernels use. */
#include "ir/lexer.h"
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static kiln_op_info OPS[KILN_OP_COUNT] = {
#define OP(ID, name, nin_min, nin_max, dtypes, cls, flags, amp, shape, kernel, decomp, grad, attrs) \
    {#name, nin_min, nin_max, dtypes, cls, flags, amp, kiln_shape_##shape, kiln_ref_##kernel,  \
     kiln_decompose_##decomp, kiln_grad_##grad, attrs, 0, NULL},
#include "ops/ops.def"
#undef OP
};

/* "none" entries of ops.def: real symbols so the table expands uniformly; replaced by NULL. */
const struct kiln_type *kiln_shape_none(kiln_shape_args *a) { (void)a; return NULL; }
kiln_status kiln_ref_none(kiln_kernel_args *a) { (void)a; return KILN_ERR_INTERNAL; }
struct kiln_var *kiln_decompose_none(struct kiln_builder *b, const struct kiln_node *n,
                                     struct kiln_var *const *in) {
    (void)b, (void)n, (void)in;
    return NULL;
}
kiln_status kiln_grad_none(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in,
                           struct kiln_var *y, struct kiln_var *dy, struct kiln_var **din) {
    (void)b, (void)n, (void)in, (void)y, (void)dy, (void)din;
    return KILN_ERR_INTERNAL;
}

static kiln_arena schema_arena;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static kiln_attr_kind kind_from_name(const char *s, size_t n) {
    static const char *names[KILN_ATTR_KIND_COUNT] = {"int", "float", "bool", "ints", "floats", "str", "dtype", "tensor"};
    for (int k = 0; k < KILN_ATTR_KIND_COUNT; k++)
        if (strlen(names[k]) == n && !strncmp(names[k], s, n)) return (kiln_attr_kind)k;
    return KILN_ATTR_KIND_COUNT;
}

/* Parses "name:kind[=default|?][{a|b}]" entries. A malformed schema is a bug in ops.def. */
static void parse_schema(kiln_op_info *info) {
    kiln_context ctx = {0};
    const char *p = info->schema;
    int n = 0;
    for (const char *q = p; *q; q++) n += *q == ':';
    info->attrs = kiln_arena_alloc(&schema_arena, sizeof(kiln_attr_spec) * (size_t)(n ? n : 1));
    info->n_attrs = n;
    for (int k = 0; k < n; k++) {
        kiln_attr_spec *spec = &info->attrs[k];
        while (*p == ' ' || *p == ',') p++;
        const char *colon = strchr(p, ':');
        spec->name = kiln_arena_strndup(&schema_arena, p, (size_t)(colon - p));
        p = colon + 1;
        size_t klen = strcspn(p, "=?,");
        spec->kind = kind_from_name(p, klen);
        assert(spec->kind != KILN_ATTR_KIND_COUNT && "ops.def: unknown attribute kind");
        p += klen;
        if (*p == '?') {
            p++;
        } else if (*p == '=') {
            p++;
            const char *end = p;
            int depth = 0;
            while (*end && (depth || (*end != ',' && *end != '{'))) {
                depth += *end == '[';
                depth -= *end == ']';
                end++;
            }
            char text[128];
            snprintf(text, sizeof text, spec->kind == KILN_ATTR_STR ? "\"%.*s\"" : "%.*s", (int)(end - p), p);
            kiln_lexer lx;
            kiln_lex_init(&lx, &ctx, &schema_arena, text, "ops.def");
            kiln_status s = kiln_parse_attr_value(&lx, spec->kind, &spec->dflt);
            assert(s == KILN_OK && "ops.def: bad default");
            (void)s;
            p = end;
            if (*p == '{') {
                const char *close = strchr(p, '}');
                spec->choices = kiln_arena_strndup(&schema_arena, p + 1, (size_t)(close - p - 1));
                p = close + 1;
            }
        } else {
            spec->required = true;
        }
    }
}

static void table_init(void) {
    kiln_arena_init(&schema_arena);
    for (int op = 0; op < KILN_OP_COUNT; op++) {
        kiln_op_info *info = &OPS[op];
        if (info->shape == kiln_shape_none) info->shape = NULL;
        if (info->kernel == kiln_ref_none) info->kernel = NULL;
        if (info->decompose == kiln_decompose_none) info->decompose = NULL;
        if (info->grad == kiln_grad_none) info->grad = NULL;
        parse_schema(info);
    }
}

const kiln_op_info *kiln_op_info_get(kiln_op op) {
    pthread_once(&table_once, table_init);
    return &OPS[op];
}

int kiln_op_count(void) { return KILN_OP_COUNT; }

const char *kiln_op_name(int op) { return op >= 0 && op < KILN_OP_COUNT ? OPS[op].name : NULL; }

int kiln_op_from_name(const char *name) {
    for (int op = 0; op < KILN_OP_COUNT; op++)
        if (!strcmp(OPS[op].name, name)) return op;
    return -1;
}

int kiln_attr_index(kiln_op op, const char *name) {
    const kiln_op_info *info = kiln_op_info_get(op);
    for (int k = 0; k < info->n_attrs; k++)
        if (!strcmp(info->attrs[k].name, name)) return k;
    return -1;
}

const kiln_attr *kiln_attr_get(kiln_op op, const kiln_attr *attrs, const char *name) {
    int k = kiln_attr_index(op, name);
    assert(k >= 0 && "attribute not in the op's schema");
    return &attrs[k];
}

int64_t kiln_attr_int(kiln_op op, const kiln_attr *attrs, const char *name) { return kiln_attr_get(op, attrs, name)->i; }
double kiln_attr_float(kiln_op op, const kiln_attr *attrs, const char *name) { return kiln_attr_get(op, attrs, name)->f; }
bool kiln_attr_bool(kiln_op op, const kiln_attr *attrs, const char *name) { return kiln_attr_get(op, attrs, name)->b; }
const char *kiln_attr_str(kiln_op op, const kiln_attr *attrs, const char *name) { return kiln_attr_get(op, attrs, name)->s; }

void kiln_attrs_default(kiln_op op, kiln_attr *attrs) {
    const kiln_op_info *info = kiln_op_info_get(op);
    for (int k = 0; k < info->n_attrs; k++) attrs[k] = info->attrs[k].dflt;
}

bool kiln_attr_equal(kiln_attr_kind kind, const kiln_attr *x, const kiln_attr *y) {
    if (x->set != y->set) return false;
    if (!x->set) return true;
    switch (kind) {
    case KILN_ATTR_INT: return x->i == y->i;
    case KILN_ATTR_FLOAT: return x->f == y->f || (x->f != x->f && y->f != y->f);
    case KILN_ATTR_BOOL: return x->b == y->b;
    case KILN_ATTR_INTS: return x->n == y->n && (!x->n || !memcmp(x->ints, y->ints, sizeof(int64_t) * (size_t)x->n));
    case KILN_ATTR_FLOATS: return x->n == y->n && (!x->n || !memcmp(x->floats, y->floats, sizeof(double) * (size_t)x->n));
    case KILN_ATTR_STR: return !strcmp(x->s, y->s);
    case KILN_ATTR_DTYPE: return x->dtype == y->dtype;
    case KILN_ATTR_TENSOR: return x->tensor == y->tensor;
    default: return false;
    }
}

static void buf_attr_value(kiln_buf *b, kiln_attr_kind kind, const kiln_attr *a) {
    switch (kind) {
    case KILN_ATTR_INT: kiln_buf_printf(b, "%lld", (long long)a->i); break;
    case KILN_ATTR_FLOAT: kiln_buf_double(b, a->f); break;
    case KILN_ATTR_BOOL: kiln_buf_puts(b, a->b ? "true" : "false"); break;
    case KILN_ATTR_INTS:
    case KILN_ATTR_FLOATS:
        kiln_buf_puts(b, "[");
        for (int i = 0; i < a->n; i++) {
            if (i) kiln_buf_puts(b, ", ");
            if (kind == KILN_ATTR_INTS) kiln_buf_printf(b, "%lld", (long long)a->ints[i]);
            else kiln_buf_double(b, a->floats[i]);
        }
        kiln_buf_puts(b, "]");
        break;
    case KILN_ATTR_STR:
        kiln_buf_puts(b, "\"");
        for (const char *c = a->s; *c; c++) {
            if (*c == '"' || *c == '\\') kiln_buf_printf(b, "\\%c", *c);
            else if (*c == '\n') kiln_buf_puts(b, "\\n");
            else if (*c == '\t') kiln_buf_puts(b, "\\t");
            else kiln_buf_printf(b, "%c", *c);
        }
        kiln_buf_puts(b, "\"");
        break;
    case KILN_ATTR_DTYPE: kiln_buf_puts(b, kiln_dtype_name(a->dtype)); break;
    case KILN_ATTR_TENSOR: {
        const kiln_tensor *t = a->tensor;
        char sb[160];
        kiln_buf_printf(b, "%s%s{", kiln_dtype_name(t->dtype), kiln_shape_str(t->ndim, t->shape, sb, sizeof sb));
        for (int64_t i = 0; i < t->numel; i++) {
            if (i) kiln_buf_puts(b, ", ");
            if (t->dtype == KILN_BOOL) kiln_buf_puts(b, kiln_load_i64(t->dtype, t->data, i) ? "true" : "false");
            else if (kiln_dtype_is_float(t->dtype)) kiln_buf_double(b, kiln_load_f64(t->dtype, t->data, i));
            else kiln_buf_printf(b, "%lld", (long long)kiln_load_i64(t->dtype, t->data, i));
        }
        kiln_buf_puts(b, "}");
        break;
    }
    default: break;
    }
}

void kiln_buf_attrs(kiln_buf *b, kiln_op op, const kiln_attr *attrs) {
    const kiln_op_info *info = kiln_op_info_get(op);
    bool first = true;
    for (int k = 0; k < info->n_attrs; k++) {
        const kiln_attr_spec *spec = &info->attrs[k];
        if (!attrs[k].set || (!spec->required && kiln_attr_equal(spec->kind, &attrs[k], &spec->dflt))) continue;
        kiln_buf_printf(b, "%s%s=", first ? "" : ", ", spec->name);
        buf_attr_value(b, spec->kind, &attrs[k]);
        first = false;
    }
}

static const char *dtypes_str(unsigned mask, char *buf, size_t size) {
    if (mask == DT_NONE) return "-";
    if (mask == DT_ALL) return "all";
    if (mask == DT_NUM) return "float,int";
    if (mask == DT_FLOAT) return "float";
    if (mask == DT_INT) return "int";
    size_t len = 0;
    buf[0] = 0;
    for (int d = 0; d < KILN_DTYPE_COUNT && len < size; d++)
        if (mask & DT_(d)) len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "," : "", kiln_dtype_name((kiln_dtype)d));
    return buf;
}

const char *kiln_op_describe(int op, char *buf, size_t size) {
    static const char *classes[KILN_CLASS_COUNT] = {"elemwise", "broadcast", "injective", "reduce", "opaque", "control"};
    if (op < 0 || op >= KILN_OP_COUNT) {
        snprintf(buf, size, "?");
        return buf;
    }
    const kiln_op_info *info = kiln_op_info_get((kiln_op)op);
    char arity[32], dts[96];
    if (info->nin_max < 0) snprintf(arity, sizeof arity, "%d+", info->nin_min);
    else if (info->nin_min == info->nin_max) snprintf(arity, sizeof arity, "%d", info->nin_min);
    else snprintf(arity, sizeof arity, "%d-%d", info->nin_min, info->nin_max);
    snprintf(buf, size, "%-20s inputs=%-3s dtypes=%-10s class=%-9s%s%s  %s", info->name, arity,
             dtypes_str(info->dtypes, dts, sizeof dts), classes[info->cls],
             info->flags & F_COMPOSITE ? " composite" : "", info->flags & F_DIFF ? " diff" : "",
             info->schema);
    return buf;
}

const struct kiln_type *kiln_op_fail(kiln_shape_args *a, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error(a->ctx, KILN_ERR_TYPE, "op '%s' at %s: %s", kiln_op_info_get(a->op)->name, a->where, msg);
    return NULL;
}

kiln_status kiln_kernel_fail(kiln_kernel_args *a, kiln_status s, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(a->ctx, s, "op '%s' at %s: %s", kiln_op_info_get(a->op)->name, a->where, msg);
}

int kiln_norm_axis(int64_t axis, int ndim) {
    if (axis < -ndim || axis >= (ndim ? ndim : 1)) return -1;
    return (int)(axis < 0 ? axis + ndim : axis);
}
