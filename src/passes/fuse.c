/* fuse.c — the fusion pass: groups the nodes generated C computes (no library impl) into
 * `kernel` functions called where their last member was, in the two forms codegen lowers:
 * same-shape elementwise, or one reduction with elementwise producers and consumers.
 *
 * Rematerialization: once a region's groups are formed, a value V of group G read by other
 * groups (e.g. the forward's tanh, read again by autodiff's backward) is recomputed inside each
 * such reader H instead of being a result of G, when that is cheap and frees memory traffic:
 * - every read of V outside G is an input of a fused node H (no yield, nested region or
 *   unfused node reads it) in an elementwise group, or H is its group's reduction, and V has
 *   the shape H's group computes in (H's result; a reduction's input), so the copies join H;
 * - V's producer chain is copied up to leaves that are free at H: literals, values of H's
 *   group, values from outside a nested region, or values that stay in memory anyway
 *   (parameters, unfused results, group results not recomputed themselves) whose last read is
 *   at or after H — so no live range grows (nor does a donated parameter's buffer stay taken
 *   past its last read); the chain holds only same-shaped cheap elementwise nodes
 *   (no reduction, no transcendental function such as exp or tanh, nothing broadcast up to a
 *   larger shape) and at most FUSE_REMAT_MAX of them;
 * - a value that fails for one of its readers stays a result of G (the others then may use it
 *   as a leaf): the plan is recomputed until stable.
 * The copies go right before their first reader in each group (shared by its later readers;
 * copies for a reduction join no other group, so that it absorbs them), producers left unread
 * are removed and the region is grouped again. Copies compute the same
 * ops on the same values, so results are bit-identical. */
#include "codegen/codegen.h"
#include "compiler/compiler.h"
#include "passes/passes.h"
#include <stdlib.h>
#include <string.h>

/* A group's members read at most this many operands in all (a node reading more stays alone),
 * which keeps generated kernels' argument lists short. Each member reads at least one, so this
 * also bounds a group's results (the arrays of emit_group) and an elementwise copy's inputs. */
#define FUSE_MAX_OPERANDS 256
/* At most this many nodes recompute one value for one reader. */
#define FUSE_REMAT_MAX 16

typedef struct fuse_node {
    int uses;   /* reads of its value in the region (nested regions and the yield included) */
    int group;  /* the group it joined (find() gives the merged one), -1: not fused */
    int next;   /* emitting: next member of its group, -1 at the end */
    bool ext;   /* read outside its group: a result of the group */
    int reads;  /* rematerializing: reads by members of its group or by possible readers H */
    int seen;   /* rematerializing: stamp of the last chain walk that took it */
    bool cand;  /* rematerializing: its value is to be recomputed by its readers outside */
    bool far;   /* rematerializing: read by a possible reader H (outside its group) */
    bool retry; /* rematerializing: dropped after a chain through another candidate */
    bool dropped; /* rematerializing: lost a read (removed once nothing reads it) */
    bool fresh; /* a copy made for a reduction: joins only groups of such copies, so that the
                 * reduction can absorb them */
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
    kiln_region *region;          /* the region being fused */
    int *idx, n_idx;              /* var id -> index of its node in the current region, or -1 */
    int *last, n_last;            /* var id -> base + index of the last node of the region reading
                                   * it (base + n_nodes: the yield); below base: not read there */
    int base;                     /* grows past every index of the scans before */
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
    int *made, cap_made;          /* rematerializing: nodes copied for the current group */
    kiln_var **fresh;             /* rematerializing: values of the copies made for reductions */
    int n_fresh, cap_fresh;
    int stamp;                    /* rematerializing: chain walks so far */
    bool via;                     /* rematerializing: the last walk went through a candidate */
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

/* Visits one read: the slot holding the variable read (an input or a yielded value); `user` is
 * the reading node's group when grouping, its index when counting. */
typedef void (*fuse_use_fn)(fuse_state *s, kiln_var **slot, int user);

static void visit_vars(fuse_state *s, int n, kiln_var **vars, int user, fuse_use_fn fn) {
    for (int i = 0; i < n; i++) fn(s, &vars[i], user);
}

/* Calls fn on every read by node n: its inputs and, for if / while, the inputs and yields of
 * every node inside its regions (a walk with no recursion: it climbs back through each
 * region's owner). */
static void for_each_use(fuse_state *s, kiln_node *n, int user, fuse_use_fn fn) {
    visit_vars(s, n->n_in, n->in, user, fn);
    kiln_node *x = n;
    int k = 0; /* next region of x to enter */
    for (;;) {
        if (k < x->n_regions) {
            kiln_region *r = x->regions[k];
            if (r->first) {
                x = r->first, k = 0;
                visit_vars(s, x->n_in, x->in, user, fn);
            } else {
                visit_vars(s, r->n_results, r->results, user, fn);
                k++;
            }
        } else if (x == n) {
            return;
        } else if (x->next) {
            x = x->next, k = 0;
            visit_vars(s, x->n_in, x->in, user, fn);
        } else {
            kiln_region *r = x->parent;
            visit_vars(s, r->n_results, r->results, user, fn);
            x = r->owner;
            k = x->regions[0] == r ? 1 : 2;
        }
    }
}

static void count_use(fuse_state *s, kiln_var **slot, int user) {
    int i = def_index(s, *slot);
    if (i >= 0) s->info[i].uses++;
    if ((*slot)->kind != KILN_VAR_LITERAL) s->last[(*slot)->id] = s->base + user; /* reads come in region order */
}

static void replace_use(fuse_state *s, kiln_var **slot, int user) {
    (void)user;
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
            if (h >= 0 && s->info[i].fresh && !s->info[def_index(s, n->in[j])].fresh) continue;
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

/* Forgets the current region's nodes (s->idx and s->repl entries of their values). */
static void forget_nodes(fuse_state *s) {
    for (int i = 0; i < s->n_nodes; i++) {
        s->idx[s->nodes[i]->out->id] = -1;
        s->repl[s->nodes[i]->out->id] = NULL;
    }
}

/* Lists region r's nodes in s->nodes and counts the reads of each value. */
static kiln_status scan_region(fuse_state *s, kiln_region *r) {
    int old_idx = s->n_idx, old_repl = s->cap_repl, old_last = s->n_last;
    if (!grow(&s->idx, &s->n_idx, s->f->n_vars, sizeof *s->idx) || !grow(&s->repl, &s->cap_repl, s->n_idx, sizeof *s->repl) ||
        !grow(&s->last, &s->n_last, s->n_idx, sizeof *s->last))
        return kiln_error(s->pc->ctx, KILN_ERR_OOM, "fuse: out of memory");
    for (int i = old_idx; i < s->n_idx; i++) s->idx[i] = -1;
    for (int i = old_last; i < s->n_last; i++) s->last[i] = -1;
    memset(s->repl + old_repl, 0, sizeof *s->repl * (size_t)(s->cap_repl - old_repl));
    s->base += s->n_nodes + 2; /* older entries of s->last fall below it */
    s->region = r;
    s->n_nodes = 0;
    for (kiln_node *n = r->first; n; n = n->next) {
        if (!grow(&s->nodes, &s->cap_nodes, s->n_nodes + 1, sizeof *s->nodes) ||
            !grow(&s->info, &s->cap_info, s->n_nodes + 1, sizeof *s->info))
            return kiln_error(s->pc->ctx, KILN_ERR_OOM, "fuse: out of memory");
        s->info[s->n_nodes] = (fuse_node){.group = -1, .next = -1};
        s->idx[n->out->id] = s->n_nodes;
        s->nodes[s->n_nodes++] = n;
    }
    for (int i = 0; i < s->n_nodes; i++) for_each_use(s, s->nodes[i], i, count_use);
    visit_vars(s, r->n_results, r->results, s->n_nodes, count_use);
    for (int i = 0; i < s->n_fresh; i++) s->info[def_index(s, s->fresh[i])].fresh = true;
    s->n_fresh = 0;
    return KILN_OK;
}

/* Forms the groups of the scanned region in one walk over its nodes and links each merged
 * group's members in region order. */
static kiln_status form_groups(fuse_state *s, kiln_region *r) {
    s->n_groups = 0;
    for (int i = 0; i < s->n_nodes; i++) {
        kiln_node *n = s->nodes[i];
        int g = -1;
        if (kiln_codegen_supports(n) && !n->impl && (g = join(s, i)) < 0) return kiln_error(s->pc->ctx, KILN_ERR_OOM, "fuse: out of memory");
        for_each_use(s, n, g, note_use);
    }
    visit_vars(s, r->n_results, r->results, -1, note_use);
    for (int i = 0; i < s->n_nodes; i++) {
        if (s->info[i].group < 0) continue;
        int g = s->info[i].group = find(s, s->info[i].group);
        if (s->groups[g].head < 0) s->groups[g].head = i;
        else s->info[s->groups[g].last].next = i;
        s->groups[g].last = i;
    }
    return KILN_OK;
}

static bool is_reduction(const kiln_node *n) { return kiln_op_info_get(n->op)->cls == KILN_CLASS_REDUCE; }

/* Node n is cheap enough to compute twice: no reduction, no transcendental function (measured
 * on the GPT step, recomputing tanh / exp cost more time than the traffic it saved). */
static bool remat_cheap(const kiln_node *n) {
    switch (n->op) {
    case KILN_OP_EXP: case KILN_OP_LOG: case KILN_OP_LOG2: case KILN_OP_SIN: case KILN_OP_COS: case KILN_OP_TANH:
    case KILN_OP_ATAN: case KILN_OP_SIGMOID: case KILN_OP_ERF: case KILN_OP_GELU: case KILN_OP_SILU: case KILN_OP_POWER:
        return false;
    default:
        return !is_reduction(n);
    }
}

/* The shape values recomputed for fused node h must have to join its group: its input's for a
 * reduction, else its result's. */
static const kiln_type *remat_shape(const fuse_state *s, int h) {
    const kiln_node *n = s->nodes[h];
    return is_reduction(n) ? n->in[0]->type : n->out->type;
}

/* Node h, outside the group of node d, may read d's value recomputed: it is in an elementwise
 * group or its group's reduction, and d's value has the shape the copies need. */
static bool remat_reader(const fuse_state *s, int h, int d) {
    int g = s->info[h].group;
    return g >= 0 && g != s->info[d].group && (s->groups[g].red < 0 || s->groups[g].red == h) &&
           same_shape(s->nodes[d]->out->type, remat_shape(s, h));
}

/* Node d's value may be recomputed: a fused elementwise value read outside its group, and only
 * by possible readers (see remat_reader); counted by remat_candidates. */
static bool remat_eligible(const fuse_state *s, int d) {
    const fuse_node *D = &s->info[d];
    return D->far && D->reads == D->uses && remat_cheap(s->nodes[d]);
}

/* Marks the candidates: the eligible values. */
static void remat_candidates(fuse_state *s) {
    for (int h = 0; h < s->n_nodes; h++) {
        const kiln_node *n = s->nodes[h];
        for (int j = 0; j < n->n_in; j++) {
            int d = def_index(s, n->in[j]);
            if (d < 0 || s->info[d].group < 0) continue;
            bool far = remat_reader(s, h, d);
            s->info[d].far |= far;
            s->info[d].reads += far || s->info[h].group == s->info[d].group;
        }
    }
    for (int d = 0; d < s->n_nodes; d++) s->info[d].cand = remat_eligible(s, d);
}

/* Value v may be read by copies placed before node h: a literal, a value of h's group, a value
 * from outside the region if the region is nested (live while its owner runs), or a value that
 * stays in memory anyway (a parameter, an unfused result, a group's result not to be recomputed)
 * whose last read is at or after h. */
static bool remat_free(const fuse_state *s, const kiln_var *v, int h) {
    if (v->kind == KILN_VAR_LITERAL) return true;
    int d = def_index(s, v);
    bool later = s->last[v->id] >= s->base + h;
    if (d < 0) return s->region != s->f->body || later;
    const fuse_node *D = &s->info[d];
    return D->group == s->info[h].group || (!D->cand && (D->group < 0 || D->ext) && later);
}

/* Walks the producers node h needs to recompute node p's value, up to leaves free at h (see the
 * head comment); chain[] gets them (p first), *n_chain their count; s->via says whether it
 * went through another candidate. False when some producer is neither a free leaf nor
 * copyable, or more than FUSE_REMAT_MAX would be copied. */
static bool remat_chain(fuse_state *s, int p, int h, int *chain, int *n_chain) {
    const kiln_type *shape = remat_shape(s, h);
    int stack[FUSE_REMAT_MAX], top = 0, n = 0;
    s->info[p].seen = ++s->stamp;
    s->via = false;
    stack[top++] = p;
    while (top) {
        int q = stack[--top];
        const kiln_node *x = s->nodes[q];
        chain[n++] = q;
        for (int j = 0; j < x->n_in; j++) {
            if (remat_free(s, x->in[j], h)) continue;
            int d = def_index(s, x->in[j]);
            if (d >= 0 && s->info[d].seen == s->stamp) continue;
            if (d < 0 || s->info[d].group < 0 || !remat_cheap(s->nodes[d]) || !same_shape(s->nodes[d]->out->type, shape) ||
                n + top >= FUSE_REMAT_MAX)
                return false;
            s->info[d].seen = s->stamp;
            s->via |= s->info[d].cand;
            stack[top++] = d;
        }
    }
    *n_chain = n;
    return true;
}

/* One pass over the reads of candidates outside their group: true when every candidate works
 * for all its readers. With drop, a candidate failing for a reader stops being one (and the
 * pass goes on), else the pass stops at the first failure. */
static bool remat_sweep(fuse_state *s, bool drop) {
    int chain[FUSE_REMAT_MAX], n;
    bool ok = true;
    for (int h = 0; h < s->n_nodes; h++)
        for (int j = 0; j < s->nodes[h]->n_in; j++) {
            int d = def_index(s, s->nodes[h]->in[j]);
            if (d < 0 || !s->info[d].cand || s->info[d].group == s->info[h].group || remat_chain(s, d, h, chain, &n)) continue;
            if (!drop) return false;
            s->info[d].cand = ok = false;
            s->info[d].retry |= s->via;
        }
    return ok;
}

/* Drops the candidates some reader cannot recompute until every remaining one works for all
 * its readers; then tries again each one dropped after a chain through another candidate
 * (dropped later, that one may now be a leaf), keeping it when the whole plan still works.
 * True when some candidate remains. */
static bool remat_plan(fuse_state *s) {
    while (!remat_sweep(s, true)) continue;
    bool any = false;
    for (int d = 0; d < s->n_nodes; d++) {
        if (!s->info[d].cand && s->info[d].retry) {
            s->info[d].cand = true;
            s->info[d].cand = remat_sweep(s, false);
        }
        any |= s->info[d].cand;
    }
    return any;
}

/* Copies node x (an elementwise primitive) before `before` in r, its inputs through s->map;
 * counts its reads of the region's values; a copy for a reduction is listed as fresh. */
static kiln_status remat_copy(fuse_state *s, kiln_region *r, const kiln_node *x, kiln_node *before) {
    if (!grow(&s->fresh, &s->cap_fresh, s->n_fresh + 1, sizeof *s->fresh)) return kiln_error(s->pc->ctx, KILN_ERR_OOM, "fuse: out of memory");
    kiln_cloner c = {s->f, s->map, s->n_map};
    kiln_var *in[FUSE_MAX_OPERANDS];
    for (int j = 0; j < x->n_in; j++) {
        in[j] = kiln_clone_var(&c, x->in[j]);
        int d = def_index(s, in[j]);
        if (d >= 0) s->info[d].uses++;
    }
    kiln_node *k = kiln_node_new(r, x->op, x->n_in, in);
    if (!k) return kiln_error_status(s->pc->ctx);
    memcpy(k->attrs, x->attrs, sizeof *k->attrs * (size_t)kiln_op_info_get(x->op)->n_attrs);
    k->line = x->line, k->col = x->col;
    k->out->type = x->out->type;
    k->out->name = x->out->name;
    s->map[x->out->id] = k->out;
    if (is_reduction(before)) s->fresh[s->n_fresh++] = k->out;
    kiln_region_insert_before(r, before, k);
    return KILN_OK;
}

/* Recomputes the planned candidates in their readers' groups: walks each group's members,
 * copies the chains a member needs before it (reusing the copies an earlier member of the
 * group made) and points its reads at the copies; then removes the producers nothing reads
 * any more. Sets *changed when it copied anything. */
static kiln_status remat_region(fuse_state *s, kiln_region *r, bool *changed) {
    *changed = false;
    remat_candidates(s);
    if (!remat_plan(s)) return KILN_OK;
    kiln_context *ctx = s->pc->ctx;
    int old_map = s->n_map, chain[FUSE_REMAT_MAX], n;
    if (!grow(&s->map, &s->n_map, s->f->n_vars, sizeof *s->map)) return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
    memset(s->map + old_map, 0, sizeof *s->map * (size_t)(s->n_map - old_map));
    for (int g = 0; g < s->n_groups; g++) {
        if (s->groups[g].parent != g) continue;
        int n_made = 0;
        for (int h = s->groups[g].head; h >= 0; h = s->info[h].next) {
            kiln_node *x = s->nodes[h];
            for (int j = 0; j < x->n_in; j++) {
                int d = def_index(s, x->in[j]);
                if (d < 0 || !s->info[d].cand || s->info[d].group == g) continue;
                remat_chain(s, d, h, chain, &n); /* succeeds: the plan is stable */
                for (int a = 1; a < n; a++) /* insertion sort: copies in region order */
                    for (int b = a; b > 0 && chain[b - 1] > chain[b]; b--) {
                        int t = chain[b];
                        chain[b] = chain[b - 1], chain[b - 1] = t;
                    }
                for (int k = 0; k < n; k++) {
                    const kiln_node *y = s->nodes[chain[k]];
                    if (s->map[y->out->id]) continue;
                    if (!grow(&s->made, &s->cap_made, n_made + 1, sizeof *s->made)) return kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
                    s->made[n_made++] = chain[k];
                    if (remat_copy(s, r, y, x)) return kiln_error_status(ctx);
                }
                s->info[d].uses--;
                s->info[d].dropped = true;
                x->in[j] = s->map[x->in[j]->id];
                *changed = true;
            }
        }
        for (int k = 0; k < n_made; k++) s->map[s->nodes[s->made[k]]->out->id] = NULL;
    }
    for (int i = s->n_nodes - 1; i >= 0; i--) { /* producers read no more, consumers first */
        kiln_node *x = s->nodes[i];
        if (!s->info[i].dropped || s->info[i].uses || s->info[i].group < 0) continue;
        for (int j = 0; j < x->n_in; j++) {
            int d = def_index(s, x->in[j]);
            if (d >= 0) s->info[d].uses--, s->info[d].dropped = true;
        }
        kiln_region_remove(r, x);
    }
    return KILN_OK;
}

/* Groups region r's nodes, recomputes cheap values in their readers' groups (grouping again
 * when that changed the region), then replaces each group by its call; queues the regions
 * nested in r. */
static kiln_status fuse_region(fuse_state *s, kiln_region *r) {
    kiln_context *ctx = s->pc->ctx;
    bool changed = false;
    kiln_status st = scan_region(s, r);
    if (!st) st = form_groups(s, r);
    if (!st) st = remat_region(s, r, &changed);
    if (!st && changed) {
        forget_nodes(s);
        st = scan_region(s, r);
        if (!st) st = form_groups(s, r);
    }
    for (int i = 0; i < s->n_nodes && !st; i++) {
        kiln_node *n = s->nodes[i];
        if (!grow(&s->work, &s->cap_work, s->n_work + n->n_regions, sizeof *s->work)) st = kiln_error(ctx, KILN_ERR_OOM, "fuse: out of memory");
        for (int k = 0; k < n->n_regions && !st; k++) s->work[s->n_work++] = n->regions[k];
    }
    for (int i = 0; i < s->n_nodes && !st; i++) /* in the order of the calls: kernel names follow it */
        if (s->info[i].group >= 0 && s->groups[s->info[i].group].last == i) st = emit_group(s, r, s->info[i].group);
    for (kiln_node *n = r->first; n && !st; n = n->next) for_each_use(s, n, -1, replace_use);
    if (!st) visit_vars(s, r->n_results, r->results, -1, replace_use);
    forget_nodes(s);
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
    free(s.last);
    free(s.repl);
    free(s.map);
    free(s.nodes);
    free(s.info);
    free(s.groups);
    free(s.args);
    free(s.outs);
    free(s.work);
    free(s.made);
    free(s.fresh);
    return st;
}
