/* cse.c — common-subexpression elimination: a node with the op, inputs and attributes of an
 * earlier one that dominates it (same region or an enclosing one) reads that one instead. A
 * scoped hash table: entries made in a nested region go when the walk leaves it. */
#include "compiler/compiler.h"
#include "passes/rewrite.h"
#include <stdlib.h>
#include <string.h>

typedef struct cse_entry {
    kiln_node *node;
    uint64_t hash;
    int next; /* next entry of the bucket, -1 at the end */
} cse_entry;

typedef struct cse_table {
    cse_entry *entries; /* in insertion order: a region's entries are the newest when it ends */
    int n, cap;
    int *buckets;       /* power-of-two count; entry index or -1 */
    int n_buckets;
    int *scopes;        /* entry count when each open region began */
    int n_scopes, cap_scopes;
} cse_table;

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t mix_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static bool tensor_same(const kiln_tensor *s, const kiln_tensor *t) {
    return s->dtype == t->dtype && s->ndim == t->ndim && !memcmp(s->shape, t->shape, sizeof(int64_t) * (size_t)s->ndim) &&
           !memcmp(s->data, t->data, kiln_tensor_nbytes(s));
}

/* Constants with equal data are one value, so tensor attributes compare by contents. */
static bool attr_same(kiln_attr_kind kind, const kiln_attr *x, const kiln_attr *y) {
    if (kind == KILN_ATTR_TENSOR && x->set && y->set) return tensor_same(x->tensor, y->tensor);
    return kiln_attr_equal(kind, x, y);
}

static uint64_t attr_hash(uint64_t h, kiln_attr_kind kind, const kiln_attr *a) {
    h = mix(h, a->set);
    if (!a->set) return h;
    switch (kind) {
    case KILN_ATTR_INT: return mix(h, (uint64_t)a->i);
    case KILN_ATTR_BOOL: return mix(h, a->b);
    case KILN_ATTR_DTYPE: return mix(h, a->dtype);
    case KILN_ATTR_FLOAT: return a->f == 0 ? mix(h, 0) : mix_bytes(h, &a->f, sizeof a->f); /* 0.0 == -0.0 */
    case KILN_ATTR_INTS: return mix_bytes(mix(h, (uint64_t)a->n), a->ints, sizeof(int64_t) * (size_t)a->n);
    case KILN_ATTR_STR: return mix_bytes(h, a->s, strlen(a->s));
    case KILN_ATTR_TENSOR: return mix_bytes(mix(h, a->tensor->dtype), a->tensor->data, kiln_tensor_nbytes(a->tensor));
    default: return h; /* floats lists: compared, not hashed */
    }
}

static bool input_same(const kiln_var *a, const kiln_var *b) {
    if (a == b) return true;
    return a->kind == KILN_VAR_LITERAL && b->kind == KILN_VAR_LITERAL && a->type->dtype == b->type->dtype &&
           !memcmp(&a->lit, &b->lit, sizeof a->lit);
}

static uint64_t input_hash(uint64_t h, const kiln_var *v) {
    if (v->kind != KILN_VAR_LITERAL) return mix(h, (uint64_t)v->id);
    return mix_bytes(mix(h, 0x4c4954u + v->type->dtype), &v->lit, sizeof v->lit);
}

/* Nodes cse may merge: pure ops (random ones too: the counter-based RNG makes them a function
 * of their key), not control flow, calls or lists. */
static bool mergeable(const kiln_node *n) {
    switch (n->op) {
    case KILN_OP_IF: case KILN_OP_WHILE: case KILN_OP_CALL:
    case KILN_OP_LIST_NEW: case KILN_OP_LIST_PUSH: case KILN_OP_LIST_POP: case KILN_OP_LIST_LENGTH: return false;
    default: return n->out->type && !(kiln_op_info_get(n->op)->flags & F_SIDE);
    }
}

static uint64_t node_hash(const kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    uint64_t h = mix(mix(0, n->op), (uint64_t)n->n_in);
    for (int i = 0; i < n->n_in; i++) h = input_hash(h, n->in[i]);
    for (int k = 0; k < info->n_attrs; k++) h = attr_hash(h, info->attrs[k].kind, &n->attrs[k]);
    return h;
}

static bool node_same(const kiln_node *a, const kiln_node *b) {
    const kiln_op_info *info = kiln_op_info_get(a->op);
    if (a->op != b->op || a->n_in != b->n_in || a->impl != b->impl || !kiln_type_equal(a->out->type, b->out->type))
        return false;
    for (int i = 0; i < a->n_in; i++)
        if (!input_same(a->in[i], b->in[i])) return false;
    for (int k = 0; k < info->n_attrs; k++)
        if (!attr_same(info->attrs[k].kind, &a->attrs[k], &b->attrs[k])) return false;
    return true;
}

/* Rebuilds the bucket chains for a table of `count` buckets (older entries deeper in chains,
 * so a region's entries are always at the heads when it ends). */
static kiln_status rehash(cse_table *t, int count, kiln_context *ctx) {
    int *b = malloc(sizeof *b * (size_t)count);
    if (!b) return kiln_error(ctx, KILN_ERR_OOM, "cse: out of memory");
    for (int i = 0; i < count; i++) b[i] = -1;
    for (int e = 0; e < t->n; e++) {
        int slot = (int)(t->entries[e].hash & (uint64_t)(count - 1));
        t->entries[e].next = b[slot];
        b[slot] = e;
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = count;
    return KILN_OK;
}

static kiln_status insert(cse_table *t, kiln_node *n, uint64_t h, kiln_context *ctx) {
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 64;
        cse_entry *e = realloc(t->entries, sizeof *e * (size_t)cap);
        if (!e) return kiln_error(ctx, KILN_ERR_OOM, "cse: out of memory");
        t->entries = e;
        t->cap = cap;
    }
    t->entries[t->n++] = (cse_entry){n, h, -1};
    if (t->n * 2 > t->n_buckets) return rehash(t, t->n_buckets ? t->n_buckets * 2 : 128, ctx);
    int slot = (int)(h & (uint64_t)(t->n_buckets - 1));
    t->entries[t->n - 1].next = t->buckets[slot];
    t->buckets[slot] = t->n - 1;
    return KILN_OK;
}

static kiln_status cse_visit(kiln_rewriter *rw, kiln_node *n) {
    cse_table *t = rw->user;
    if (!mergeable(n)) return KILN_OK;
    uint64_t h = node_hash(n);
    if (t->n_buckets)
        for (int e = t->buckets[h & (uint64_t)(t->n_buckets - 1)]; e >= 0; e = t->entries[e].next)
            if (t->entries[e].hash == h && node_same(t->entries[e].node, n))
                return kiln_rewrite_replace(rw, n, t->entries[e].node->out);
    return insert(t, n, h, rw->ctx);
}

static kiln_status cse_enter(kiln_rewriter *rw, kiln_region *r) {
    (void)r;
    cse_table *t = rw->user;
    if (t->n_scopes == t->cap_scopes) {
        int cap = t->cap_scopes ? t->cap_scopes * 2 : 16;
        int *s = realloc(t->scopes, sizeof *s * (size_t)cap);
        if (!s) return kiln_error(rw->ctx, KILN_ERR_OOM, "cse: out of memory");
        t->scopes = s;
        t->cap_scopes = cap;
    }
    t->scopes[t->n_scopes++] = t->n;
    return KILN_OK;
}

/* Drops the region's entries, newest first: each is the head of its bucket by then. */
static void cse_leave(kiln_rewriter *rw, kiln_region *r) {
    (void)r;
    cse_table *t = rw->user;
    int keep = t->scopes[--t->n_scopes];
    for (; t->n > keep; t->n--) {
        cse_entry *e = &t->entries[t->n - 1];
        t->buckets[e->hash & (uint64_t)(t->n_buckets - 1)] = e->next;
    }
}

kiln_status kiln_pass_cse(kiln_pass_ctx *pc, kiln_function *f) {
    (void)pc;
    static const kiln_rewrite_hooks hooks = {cse_visit, cse_enter, cse_leave};
    cse_table t = {0};
    kiln_status s = kiln_rewrite_function(f, &hooks, &t);
    free(t.entries);
    free(t.buckets);
    free(t.scopes);
    return s;
}
