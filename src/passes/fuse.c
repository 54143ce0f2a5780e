/* fuse.c — the fusion pass: groups the nodes generated C computes (no library impl) into
 * `kernel` functions called where their last member was, in the two forms codegen lowers:
 * same-shape elementwise, or one reduction with elementwise producers and consumers. */
#include "codegen/codegen.h"
#include "compiler/compiler.h"
#include "passes/passes.h"
#include <stdlib.h>
#include <string.h>

/* A group's members read at most this many operands in all, so that its call's arguments and
 * its results stay within the IR's limit of 256 per node and per yield. */
#define FUSE_MAX_OPERANDS 256

typedef struct fuse_node {
    int uses;   /* reads of its value in the region (nested regions and the yield included) */
    int group;  /* the group it joined (find() gives the merged one), -1: not fused */
    int next;   /* emitting: next member of its group, -1 at the end */
    bool ext;   /* read outside its group: a result of the group */
} fuse_node;

/* Groups merge (union-find); the fields below `parent` are meaningful on the root. */
typedef struct fuse_group {
    int parent;
    int size;               /* operands its members read (a member counts at least 1) */
    int red;                /* the reduction's node index, -1 for an elementwise group */
    int pending;            /* reads of member values not by members (past ones close it) */
    int dead;               /* members whose value nobody reads */
    const kiln_type *shape; /* shape a new member's result must have: S, or R's result shape */
    bool closed;
    int head, last;         /* emitting: the member list (the call goes where `last` was) */
} fuse_group;

typedef struct fuse_state {
    kiln_pass_ctx *pc;
    kiln_function *f;
    int *idx, n_idx;              /* var id -> index of its node in the current region, or -1 */
    kiln_var **repl;              /* var id -> what replaces a member's value read outside */
    int cap_repl;
    kiln_var **map;               /* cloner map over f's var ids (all NULL between groups) */
    int n_map;
    kiln_node **nodes;            /* the current region's nodes, in order */
    fuse_node *info;
    int n_nodes, cap_nodes, cap_info;
    fuse_group *groups;
    int n_groups, cap_groups;
    kiln_var **args, **outs;      /* of the group being emitted */
    int cap_args, cap_outs;
    kiln_region **work;           /* regions to fuse: f's body, then those nested in fused ones */
    int n_work, cap_work;
} fuse_state;

/* Grows the array whose address is `array` (cap elements of size elem) to hold need elements;
 * false when out of memory. The pointer moves through memcpy: `array` may point to any T *. */
static bool grow(void *array, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p;
    memcpy(&p, array, sizeof p);
    if (!(p = realloc(p, elem * (size_t)c))) return false;
    memcpy(array, &p, sizeof p);
    *cap = c;
    return true;
}

/* Index of the node of the current region defining v, or -1 (literal, param, outer value). */
static int def_index(const fuse_state *s, const kiln_var *v) {
    return v->kind == KILN_VAR_RESULT && v->id < s->n_idx ? s->idx[v->id] : -1;
}

static bool same_shape(const kiln_type *a, const kiln_type *b) {
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof *a->shape * (size_t)a->ndim);
}

/* Visits one read: the slot holding the variable read (an input or a yielded value). */
typedef void (*fuse_use_fn)(fuse_state *s, kiln_var **slot, int user_group);

static void visit_vars(fuse_state *s, int n, kiln_var **vars, int user_group, fuse_use_fn fn) {
    for (int i = 0; i < n; i++) fn(s, &vars[i], user_group);
}

/* Calls fn on every read by node n: its inputs and, for if / while, the inputs and yields of
 * every node inside its regions (a walk with no recursion: it climbs back through each
 * region's owner). */
static void for_each_use(fuse_state *s, kiln_node *n, int user_group, fuse_use_fn fn) {
    visit_vars(s, n->n_in, n->in, user_group, fn);
    kiln_node *x = n;
    int k = 0; /* next region of x to enter */
    for (;;) {
        if (k < x->n_regions) {
            kiln_region *r = x->regions[k];
            if (r->first) {
                x = r->first, k = 0;
                visit_vars(s, x->n_in, x->in, user_group, fn);
            } else {
                visit_vars(s, r->n_results, r->results, user_group, fn);
                k++;
            }
        } else if (x == n) {
            return;
        } else if (x->next) {
            x = x->next, k = 0;
            visit_vars(s, x->n_in, x->in, user_group, fn);
        } else {
            kiln_region *r = x->parent;
            visit_vars(s, r->n_results, r->results, user_group, fn);
            x = r->owner;
            k = x->regions[0] == r ? 1 : 2;
        }
    }
}

static void count_use(fuse_state *s, kiln_var **slot, int user_group) {
    (void)user_group;
    int i = def_index(s, *slot);
    if (i >= 0) s->info[i].uses++;
}

static void replace_use(fuse_state *s, kiln_var **slot, int user_group) {
    (void)user_group;
    if (def_index(s, *slot) >= 0 && s->repl[(*slot)->id]) *slot = s->repl[(*slot)->id];
}

static int find(fuse_state *s, int g) {
    while (s->groups[g].parent != g) { /* path halving */
        s->groups[g].parent = s->groups[s->groups[g].parent].parent;
        g = s->groups[g].parent;
    }
    return g;
}

/* The merged group of the node defining v in the current region, or -1. */
static int group_of(fuse_state *s, const kiln_var *v) {
    int i = def_index(s, v);
    return i >= 0 && s->info[i].group >= 0 ? find(s, s->info[i].group) : -1;
}

/* A read by a node of group user_group (-1: unfused, or the region's yield): inside the value's
 * own group it is internal; otherwise the value becomes a group result and its group closes, so
 * that the group's call (placed at its last member) comes before this read. */
static void note_use(fuse_state *s, kiln_var **slot, int user_group) {
    const kiln_var *v = *slot;
    int g = group_of(s, v);
    if (g < 0) return;
    if (g == user_group) {
        s->groups[g].pending--;
    } else {
        s->info[def_index(s, v)].ext = true;
        s->groups[g].closed = true;
    }
}

/* Reduction n may absorb elementwise group g when every value of g is read (none is a result
 * of the input's shape) and, apart from members, only by n. */
static bool absorbable(fuse_state *s, int g, const kiln_node *n) {
    int by_n = 0;
    for (int j = 0; j < n->n_in; j++) by_n += group_of(s, n->in[j]) == g;
    return s->groups[g].dead == 0 && s->groups[g].pending == by_n;
}

static int operands(const kiln_node *n) { return n->n_in > 0 ? n->n_in : 1; }

/* Group g takes members reading `size` more operands. */
static bool open_for(const fuse_state *s, int g, int size) {
    return !s->groups[g].closed && s->groups[g].size + size <= FUSE_MAX_OPERANDS;
}

static void add_member(fuse_state *s, int g, int i) {
    fuse_group *G = &s->groups[g];
    s->info[i].group = g;
    G->size += operands(s->nodes[i]);
    G->pending += s->info[i].uses;
    G->dead += s->info[i].uses == 0;
}

/* Merges open elementwise group h into g (both of one shape, not yet read outside). */
static void merge(fuse_state *s, int g, int h) {
    fuse_group *G = &s->groups[g], *H = &s->groups[h];
    H->parent = g;
    G->size += H->size;
    G->pending += H->pending;
    G->dead += H->dead;
}

/* Puts fusable node i into a group: an elementwise node joins the first open group producing
 * one of its inputs whose shape is its result's, and merges the other open elementwise groups
 * of that shape it reads; a reduction absorbs the open elementwise group producing its input
 * when absorbable; otherwise the node starts a group. Returns the group, -1 when out of memory. */
static int join(fuse_state *s, int i) {
    const kiln_node *n = s->nodes[i];
    bool red = kiln_op_info_get(n->op)->cls == KILN_CLASS_REDUCE;
    int g = -1, size = operands(n);
    if (red) {
        int h = group_of(s, n->in[0]);
        if (h >= 0 && open_for(s, h, size) && s->groups[h].red < 0 && absorbable(s, h, n)) {
            s->groups[h].red = i;
            s->groups[h].shape = n->out->type;
            g = h;
        }
    } else {
        for (int j = 0; j < n->n_in; j++) {
            int h = group_of(s, n->in[j]);
            if (h < 0 || h == g || !open_for(s, h, size) || !same_shape(n->out->type, s->groups[h].shape)) continue;
            if (g < 0) g = h;
            else if (s->groups[h].red < 0 && s->groups[g].red < 0 && open_for(s, g, size + s->groups[h].size)) merge(s, g, h);
        }
    }
    if (g < 0) {
        if (!grow(&s->groups, &s->cap_groups, s->n_groups + 1, sizeof *s->groups)) return -1;
        g = s->n_groups++;
        s->groups[g] = (fuse_group){g, 0, red ? i : -1, 0, 0, n->out->type, false, -1, -1};
    }
    add_member(s, g, i);
    return g;
}

/* A new kernel function "<f>.k<N>" (N counts on past names already taken). */
static kiln_function *new_kernel(fuse_state *s) {
    kiln_module *m = s->pc->module;
    size_t size = strlen(s->f->name) + 32;
    char *name = malloc(size);
    if (!name) {
        kiln_error(m->ctx, KILN_ERR_OOM, "fuse: out of memory");
        return NULL;
    }
    do snprintf(name, size, "%s.k%d", s->f->name, s->pc->n_kernels++);
    while (kiln_module_function(m, name));
    kiln_function *k = kiln_function_new(m, name);
    free(name);
    if (k) k->kernel = true;
    return k;
}

/* Replaces group g's members in region r by a call of a new kernel function computing them:
 * its parameters are the values the members read from outside the group (literals stay inline),
 * its results the members' values read outside (or by nobody); the call sits where the last
 * member was and several results come back as a tuple taken apart with `get` (s->repl says
 * which value stands for each result). */
static kiln_status emit_group(fuse_state *s, kiln_region *r, int g) {
    kiln_context *ctx = s->pc->ctx;
    const fuse_group *G = &s->groups[g];
    int n_args = 0, n_outs = 0, old_map = s->n_map;
    if (!grow(&s->map, &s->n_map, s->f->n_vars, sizeof *s->map))
        return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
    memset(s->map + old_map, 0, sizeof *s->map * (size_t)(s->n_map - old_map));
    kiln_function *k = new_kernel(s);
    kiln_region *moved = kiln_region_new(s->f, NULL); /* the members, out of r */
    if (!k || !moved) return kiln_error_status(ctx);
    kiln_node *last = s->nodes[G->last], *after = last->next;
    for (int i = G->head; i >= 0; i = s->info[i].next) {
        kiln_node *n = s->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            replace_use(s, &n->in[j], -1); /* a result of a group emitted before */
            kiln_var *v = n->in[j];
            int d = def_index(s, v);
            if (v->kind == KILN_VAR_LITERAL || (d >= 0 && s->info[d].group == g) || s->map[v->id]) continue;
            if (!grow(&s->args, &s->cap_args, n_args + 1, sizeof *s->args) ||
                !(s->map[v->id] = kiln_function_param(k, v->name, (kiln_type *)v->type)))
                return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
            s->args[n_args++] = v;
        }
        if (s->info[i].ext || s->info[i].uses == 0) {
            if (!grow(&s->outs, &s->cap_outs, n_outs + 1, sizeof *s->outs))
                return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
            s->outs[n_outs++] = n->out;
        }
        kiln_region_remove(r, n);
        kiln_region_append(moved, n);
    }
    kiln_cloner c = {k, s->map, s->n_map};
    if (kiln_clone_region_into(&c, moved, k->body, NULL, false)) return kiln_error_status(ctx);
    const kiln_type *types[FUSE_MAX_OPERANDS];
    kiln_var *res[FUSE_MAX_OPERANDS];
    for (int j = 0; j < n_outs; j++) types[j] = (res[j] = kiln_clone_var(&c, s->outs[j]))->type;
    if (kiln_region_yield(k->body, n_outs, res)) return kiln_error_status(ctx);
    k->ret = n_outs == 1 ? types[0] : kiln_type_tuple_a(&s->pc->module->arena, n_outs, types);
    k->infer_state = 2;
    if (!k->ret) return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
    for (int j = 0; j < n_args; j++) s->map[s->args[j]->id] = NULL;
    for (const kiln_node *n = moved->first; n; n = n->next) s->map[n->out->id] = NULL;

    kiln_node *call = kiln_node_new(r, KILN_OP_CALL, n_args, s->args);
    if (!call) return kiln_error_status(ctx);
    call->callee = k;
    call->line = last->line, call->col = last->col;
    kiln_region_insert_before(r, after, call);
    if (kiln_node_infer(call)) return kiln_error_status(ctx);
    kiln_builder b = {r, after, last->line, last->col};
    for (int j = 0; j < n_outs; j++) {
        kiln_var *v = n_outs == 1 ? call->out : kiln_build(&b, KILN_OP_GET, 1, &call->out, "index=%d", j);
        if (!v) return kiln_error_status(ctx);
        v->name = s->outs[j]->name;
        s->repl[s->outs[j]->id] = v;
    }
    return KILN_OK;
}

/* Forms region r's groups in one walk over its nodes, then replaces each by its call; queues
 * the regions nested in r. */
static kiln_status fuse_region(fuse_state *s, kiln_region *r) {
    kiln_context *ctx = s->pc->ctx;
    int old_idx = s->n_idx, old_repl = s->cap_repl;
    if (!grow(&s->idx, &s->n_idx, s->f->n_vars, sizeof *s->idx) || !grow(&s->repl, &s->cap_repl, s->n_idx, sizeof *s->repl))
        return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
    for (int i = old_idx; i < s->n_idx; i++) s->idx[i] = -1;
    memset(s->repl + old_repl, 0, sizeof *s->repl * (size_t)(s->cap_repl - old_repl));
    s->n_nodes = s->n_groups = 0;
    for (kiln_node *n = r->first; n; n = n->next) {
        if (!grow(&s->nodes, &s->cap_nodes, s->n_nodes + 1, sizeof *s->nodes) ||
            !grow(&s->info, &s->cap_info, s->n_nodes + 1, sizeof *s->info) ||
            !grow(&s->work, &s->cap_work, s->n_work + n->n_regions, sizeof *s->work))
            return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
        for (int k = 0; k < n->n_regions; k++) s->work[s->n_work++] = n->regions[k];
        s->info[s->n_nodes] = (fuse_node){0, -1, -1, false};
        s->idx[n->out->id] = s->n_nodes;
        s->nodes[s->n_nodes++] = n;
    }
    for (int i = 0; i < s->n_nodes; i++) for_each_use(s, s->nodes[i], -1, count_use);
    visit_vars(s, r->n_results, r->results, -1, count_use);
    kiln_status st = KILN_OK;
    for (int i = 0; i < s->n_nodes && !st; i++) {
        kiln_node *n = s->nodes[i];
        int g = -1;
        if (kiln_codegen_supports(n) && !n->impl && (g = join(s, i)) < 0) st = kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
        for_each_use(s, n, g, note_use);
    }
    visit_vars(s, r->n_results, r->results, -1, note_use);
    for (int i = 0; i < s->n_nodes; i++) { /* member lists of the merged groups, in region order */
        if (s->info[i].group < 0) continue;
        int g = s->info[i].group = find(s, s->info[i].group);
        if (s->groups[g].head < 0) s->groups[g].head = i;
        else s->info[s->groups[g].last].next = i;
        s->groups[g].last = i;
    }
    for (int i = 0; i < s->n_nodes && !st; i++) /* in the order of the calls: kernel names follow it */
        if (s->info[i].group >= 0 && s->groups[s->info[i].group].last == i) st = emit_group(s, r, s->info[i].group);
    for (kiln_node *n = r->first; n && !st; n = n->next) for_each_use(s, n, -1, replace_use);
    if (!st) visit_vars(s, r->n_results, r->results, -1, replace_use);
    for (int i = 0; i < s->n_nodes; i++) {
        s->idx[s->nodes[i]->out->id] = -1;
        s->repl[s->nodes[i]->out->id] = NULL;
    }
    return st;
}

kiln_status kiln_pass_fuse(kiln_pass_ctx *pc, kiln_function *f) {
    if (f->kernel) return KILN_OK;
    fuse_state s = {.pc = pc, .f = f};
    kiln_status st = KILN_OK;
    if (!grow(&s.work, &s.cap_work, 1, sizeof *s.work)) return kiln_error(pc->ctx, KILN_ERR_OOM, "fuse: out of memory");
    s.work[s.n_work++] = f->body;
    for (int w = 0; w < s.n_work && !st; w++) st = fuse_region(&s, s.work[w]); /* outer regions first */
    f->liveness_ready = false;
    free(s.idx);
    free(s.repl);
    free(s.map);
    free(s.nodes);
    free(s.info);
    free(s.groups);
    free(s.args);
    free(s.outs);
    free(s.work);
    return st;
}
