/* vm_build.c — lowers an optimised IR function to VM code: every tensor / scalar / list leaf of
 * every value gets a slot; nodes become kernel, generated-kernel, copy, jump, list and call
 * instructions; if / while become jumps with copies of the yielded values. */
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    kiln_program *p;
    vm_code *c;
    kiln_context *ctx;
    int **leaves;   /* per var id of c->f: its slots */
    int *n_leaves;
    int loop;       /* innermost enclosing loop, -1 outside */
} builder;

#define GROW(arr, n, cap)                                                                  \
    ((n) < (cap) ? 0 : grow_array((void **)&(arr), &(cap), sizeof *(arr)))

static int grow_array(void **arr, int *cap, size_t elem) {
    int nc = *cap ? *cap * 2 : 16;
    void *na = realloc(*arr, (size_t)nc * elem);
    if (!na) return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

int kiln_vm_leaf_count(const kiln_type *t) {
    if (t->kind != KILN_TYPE_TUPLE) return 1;
    int n = 0;
    for (int i = 0; i < t->n_elems; i++) n += kiln_vm_leaf_count(t->elems[i]);
    return n;
}

/* The leaf types of t in order. */
static void leaf_types(const kiln_type *t, const kiln_type **out, int *n) {
    if (t->kind != KILN_TYPE_TUPLE) {
        out[(*n)++] = t;
        return;
    }
    for (int i = 0; i < t->n_elems; i++) leaf_types(t->elems[i], out, n);
}

static int *ints(builder *b, int n) {
    int *a = kiln_arena_alloc(&b->p->module->arena, sizeof(int) * (size_t)(n ? n : 1));
    if (!a) kiln_error(b->ctx, KILN_ERR_OOM, "out of memory");
    return a;
}

static int new_slot(builder *b, const kiln_type *t, vm_slot_kind kind) {
    vm_code *c = b->c;
    if (GROW(c->slots, c->n_slots, c->cap_slots)) return kiln_error(b->ctx, KILN_ERR_OOM, "out of memory"), -1;
    vm_slot *s = &c->slots[c->n_slots];
    memset(s, 0, sizeof *s);
    s->type = t;
    s->kind = t->kind == KILN_TYPE_LIST ? VM_SLOT_DYNAMIC : kind;
    s->storage = c->n_slots;
    s->first = s->last = -1;
    if (t->kind == KILN_TYPE_TENSOR) {
        s->dtype = t->dtype;
        s->ndim = t->ndim;
        memcpy(s->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        int64_t n = 1;
        for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
        s->bytes = n * (int64_t)kiln_dtype_size(t->dtype);
    } else if (t->kind == KILN_TYPE_SCALAR) {
        s->dtype = t->dtype;
        s->bytes = (int64_t)kiln_dtype_size(t->dtype);
    }
    return c->n_slots++;
}

/* Fresh slots for every leaf of type t. */
static int *new_slots(builder *b, const kiln_type *t, vm_slot_kind kind, int *n) {
    int nl = kiln_vm_leaf_count(t);
    const kiln_type **ts = malloc(sizeof *ts * (size_t)nl);
    int *out = ints(b, nl);
    if (!ts || !out) {
        free(ts);
        if (!out) return NULL;
        kiln_error(b->ctx, KILN_ERR_OOM, "out of memory");
        return NULL;
    }
    int k = 0;
    leaf_types(t, ts, &k);
    for (int i = 0; i < nl; i++)
        if ((out[i] = new_slot(b, ts[i], kind)) < 0) {
            free(ts);
            return NULL;
        }
    free(ts);
    *n = nl;
    return out;
}

/* A literal operand as a constant 0-d slot (the tensor is owned by the program). */
static int literal_slot(builder *b, const kiln_var *v) {
    kiln_program *p = b->p;
    kiln_dtype dt = v->type->dtype;
    kiln_tensor *t = kiln_tensor_new(b->ctx, dt, 0, NULL);
    if (!t || GROW(p->owned, p->n_owned, p->cap_owned)) {
        kiln_tensor_release(t);
        return kiln_error(b->ctx, KILN_ERR_OOM, "out of memory"), -1;
    }
    p->owned[p->n_owned++] = t;
    if (dt == KILN_I64) *(int64_t *)t->data = v->lit.i;
    else if (dt == KILN_F64) *(double *)t->data = v->lit.f;
    else *(uint8_t *)t->data = v->lit.b;
    int s = new_slot(b, v->type, VM_SLOT_CONST);
    if (s >= 0) b->c->slots[s].constant = t;
    return s;
}

/* The slots of a var (a literal gets a fresh constant slot). */
static int *var_slots(builder *b, const kiln_var *v, int *n) {
    if (v->kind == KILN_VAR_LITERAL) {
        int *one = ints(b, 1);
        if (!one || (one[0] = literal_slot(b, v)) < 0) return NULL;
        *n = 1;
        return one;
    }
    *n = b->n_leaves[v->id];
    return b->leaves[v->id];
}

static void set_leaves(builder *b, const kiln_var *v, int *slots, int n) {
    b->leaves[v->id] = slots;
    b->n_leaves[v->id] = n;
}

static int emit(builder *b, vm_op op, const kiln_node *n, int n_in, int *in, int n_out, int *out) {
    vm_code *c = b->c;
    if (GROW(c->instr, c->n_instr, c->cap_instr)) return kiln_error(b->ctx, KILN_ERR_OOM, "out of memory"), -1;
    vm_instr *I = &c->instr[c->n_instr];
    memset(I, 0, sizeof *I);
    I->op = op;
    I->node = n;
    I->n_in = n_in;
    I->in = in;
    I->n_out = n_out;
    I->out = out;
    I->loop = b->loop;
    I->target = -1;
    if (n) {
        char where[256];
        if (!(I->where = kiln_arena_strdup(&b->p->module->arena, kiln_node_where(n, where, sizeof where))))
            return kiln_error(b->ctx, KILN_ERR_OOM, "out of memory"), -1;
    }
    if (n_in + n_out > c->max_operands) c->max_operands = n_in + n_out;
    return c->n_instr++;
}

/* The slots of n vars one after another (tuples flattened; a literal is one constant slot). */
static int *concat_slots(builder *b, int n, kiln_var *const *vars, int *count) {
    int total = 0;
    for (int i = 0; i < n; i++) total += vars[i]->kind == KILN_VAR_LITERAL ? 1 : kiln_vm_leaf_count(vars[i]->type);
    int *all = ints(b, total);
    if (!all) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int nl;
        int *s = var_slots(b, vars[i], &nl);
        if (!s) return NULL;
        memcpy(all + k, s, sizeof(int) * (size_t)nl);
        k += nl;
    }
    *count = total;
    return all;
}

/* The slots of the values a region yields, in order. */
static int *yield_slots(builder *b, const kiln_region *r, int *n) { return concat_slots(b, r->n_results, r->results, n); }

static int emit_copy(builder *b, int n, int *from, int *to) {
    return n ? emit(b, VM_COPY, NULL, n, from, n, to) : 0;
}

static kiln_status build_region(builder *b, const kiln_region *r);

static kiln_status build_if(builder *b, const kiln_node *n) {
    int nc, nout, nt, ne;
    int *cond = var_slots(b, n->in[0], &nc);
    int *out = cond ? new_slots(b, n->out->type, VM_SLOT_ARENA, &nout) : NULL;
    if (!out) return kiln_error_status(b->ctx);
    int jump_else = emit(b, VM_JUMP_UNLESS, n, 1, cond, 0, NULL);
    if (jump_else < 0 || build_region(b, n->regions[0])) return kiln_error_status(b->ctx);
    int *then_res = yield_slots(b, n->regions[0], &nt);
    if (!then_res || emit_copy(b, nt, then_res, out) < 0) return kiln_error_status(b->ctx);
    int jump_end = emit(b, VM_JUMP, n, 0, NULL, 0, NULL);
    if (jump_end < 0) return kiln_error_status(b->ctx);
    b->c->instr[jump_else].target = b->c->n_instr;
    if (build_region(b, n->regions[1])) return kiln_error_status(b->ctx);
    int *else_res = yield_slots(b, n->regions[1], &ne);
    if (!else_res || emit_copy(b, ne, else_res, out) < 0) return kiln_error_status(b->ctx);
    b->c->instr[jump_end].target = b->c->n_instr;
    set_leaves(b, n->out, out, nout);
    return KILN_OK;
}

static bool shares_storage(const vm_code *c, int n, const int *a, int m, const int *bs) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            if (c->slots[a[i]].storage == c->slots[bs[j]].storage) return true;
    return false;
}

/* while: loop slots get the initial values; the condition and the body run between a loop
 * head and a jump back; the body's results are copied into the loop slots (through
 * temporaries when a result shares memory with a loop slot: a parallel assignment). */
static kiln_status build_while(builder *b, const kiln_node *n) {
    vm_code *c = b->c;
    int total = 0;
    for (int i = 0; i < n->n_loop; i++) total += kiln_vm_leaf_count(n->loop[i]->type);
    int *loop = ints(b, total), *init = ints(b, total);
    if (!loop || !init) return kiln_error_status(b->ctx);
    int k = 0;
    for (int i = 0; i < n->n_loop; i++) {
        int nl, ni;
        int *s = new_slots(b, n->loop[i]->type, VM_SLOT_ARENA, &nl);
        int *iv = s ? var_slots(b, n->in[i], &ni) : NULL;
        if (!iv) return kiln_error_status(b->ctx);
        memcpy(loop + k, s, sizeof(int) * (size_t)nl);
        memcpy(init + k, iv, sizeof(int) * (size_t)nl);
        set_leaves(b, n->loop[i], s, nl);
        k += nl;
    }
    if (emit_copy(b, total, init, loop) < 0 || GROW(c->loops, c->n_loops, c->cap_loops))
        return kiln_error_status(b->ctx) ? kiln_error_status(b->ctx) : kiln_error(b->ctx, KILN_ERR_OOM, "out of memory");
    int id = c->n_loops++;
    c->loops[id] = (vm_loop){c->n_instr, -1, b->loop};
    b->loop = id;
    int ncond, nres;
    if (build_region(b, n->regions[0])) return kiln_error_status(b->ctx);
    int *cond = yield_slots(b, n->regions[0], &ncond);
    int exit = cond ? emit(b, VM_JUMP_UNLESS, n, 1, cond, 0, NULL) : -1;
    if (exit < 0 || build_region(b, n->regions[1])) return kiln_error_status(b->ctx);
    int *res = yield_slots(b, n->regions[1], &nres);
    if (!res) return kiln_error_status(b->ctx);
    if (shares_storage(c, nres, res, total, loop)) {
        int *tmp = ints(b, total);
        if (!tmp) return kiln_error_status(b->ctx);
        for (int i = 0; i < total; i++)
            if ((tmp[i] = new_slot(b, c->slots[loop[i]].type, VM_SLOT_ARENA)) < 0) return kiln_error_status(b->ctx);
        if (emit_copy(b, total, res, tmp) < 0) return kiln_error_status(b->ctx);
        res = tmp;
    }
    if (emit_copy(b, total, res, loop) < 0) return kiln_error_status(b->ctx);
    int back = emit(b, VM_JUMP, n, 0, NULL, 0, NULL);
    if (back < 0) return kiln_error_status(b->ctx);
    c->instr[back].target = c->loops[id].start;
    c->loops[id].end = back;
    c->instr[exit].target = c->n_instr;
    b->loop = c->loops[id].parent;
    set_leaves(b, n->out, loop, total);
    return KILN_OK;
}

/* The index of kernel function g among the program's generated kernels (added if new). */
static int gen_index(builder *b, kiln_function *g) {
    kiln_program *p = b->p;
    for (int i = 0; i < p->n_gens; i++)
        if (p->gen_funcs[i] == g) return i;
    if (GROW(p->gen_funcs, p->n_gens, p->cap_gens)) return kiln_error(b->ctx, KILN_ERR_OOM, "out of memory"), -1;
    p->gen_funcs[p->n_gens] = g;
    return p->n_gens++;
}

/* All the input slots of a node (one leaf per input for kernels; tuples flattened for calls). */
static int *input_slots(builder *b, const kiln_node *n, int *count) { return concat_slots(b, n->n_in, n->in, count); }

static bool is_reshape(kiln_op op) { return op == KILN_OP_RESHAPE || op == KILN_OP_EXPAND_DIMS || op == KILN_OP_SQUEEZE; }

static kiln_status build_node(builder *b, const kiln_node *n) {
    vm_code *c = b->c;
    char where[256];
    int n_in, n_out;
    int *in, *out;
    switch (n->op) {
    case KILN_OP_TUPLE:
        if (!(in = input_slots(b, n, &n_in))) return kiln_error_status(b->ctx);
        set_leaves(b, n->out, in, n_in);
        return KILN_OK;
    case KILN_OP_GET: {
        const kiln_type *t = n->in[0]->type;
        int skip = 0, idx = (int)n->attrs[0].i;
        for (int i = 0; i < idx; i++) skip += kiln_vm_leaf_count(t->elems[i]);
        set_leaves(b, n->out, b->leaves[n->in[0]->id] + skip, kiln_vm_leaf_count(t->elems[idx]));
        return KILN_OK;
    }
    case KILN_OP_CONSTANT: {
        int *s = ints(b, 1);
        if (!s || (s[0] = new_slot(b, n->out->type, VM_SLOT_CONST)) < 0) return kiln_error_status(b->ctx);
        c->slots[s[0]].constant = n->attrs[0].tensor;
        set_leaves(b, n->out, s, 1);
        return KILN_OK;
    }
    case KILN_OP_IF: return build_if(b, n);
    case KILN_OP_WHILE: return build_while(b, n);
    default: break;
    }
    if (!(in = input_slots(b, n, &n_in)) || !(out = new_slots(b, n->out->type, VM_SLOT_ARENA, &n_out)))
        return kiln_error_status(b->ctx);
    set_leaves(b, n->out, out, n_out);
    const kiln_op_info *info = kiln_op_info_get(n->op);
    int at;
    switch (n->op) {
    case KILN_OP_CALL:
        if (n->callee->kernel) {
            int g = gen_index(b, n->callee);
            if (g < 0 || (at = emit(b, VM_GEN, n, n_in, in, n_out, out)) < 0) return kiln_error_status(b->ctx);
            c->instr[at].gen = g;
            return KILN_OK;
        } else {
            vm_code *callee;
            if (kiln_vm_build(b->p, n->callee, &callee) || (at = emit(b, VM_CALL, n, n_in, in, n_out, out)) < 0)
                return kiln_error_status(b->ctx);
            c->instr[at].callee = callee;
            return KILN_OK;
        }
    case KILN_OP_LIST_NEW: return emit(b, VM_LIST_NEW, n, 0, NULL, n_out, out) < 0 ? kiln_error_status(b->ctx) : KILN_OK;
    case KILN_OP_LIST_PUSH: return emit(b, VM_LIST_PUSH, n, n_in, in, n_out, out) < 0 ? kiln_error_status(b->ctx) : KILN_OK;
    case KILN_OP_LIST_LENGTH: return emit(b, VM_LIST_LENGTH, n, n_in, in, n_out, out) < 0 ? kiln_error_status(b->ctx) : KILN_OK;
    case KILN_OP_LIST_POP:
        for (int i = 1; i < n_out; i++) c->slots[out[i]].kind = VM_SLOT_DYNAMIC; /* the popped element */
        return emit(b, VM_LIST_POP, n, n_in, in, n_out, out) < 0 ? kiln_error_status(b->ctx) : KILN_OK;
    default: break;
    }
    if (!info->kernel && !n->impl)
        return kiln_error(b->ctx, KILN_ERR_INTERNAL, "op '%s' at %s: no kernel reaches the VM (composites are decomposed)",
                          info->name, kiln_node_where(n, where, sizeof where));
    vm_slot *src = &c->slots[c->slots[in[0]].storage];
    if (is_reshape(n->op) && src->kind != VM_SLOT_DYNAMIC) { /* a view, no instruction */
        c->slots[out[0]].kind = VM_SLOT_ALIAS;
        c->slots[out[0]].storage = c->slots[in[0]].storage;
        return KILN_OK;
    }
    if ((at = emit(b, VM_KERNEL, n, n_in, in, n_out, out)) < 0) return kiln_error_status(b->ctx);
    c->instr[at].kernel = n->impl ? n->impl->kernel : info->kernel;
    c->instr[at].host = b->p->be && !n->impl; /* CUDA: no CUDA kernel, the reference one on host copies */
    return KILN_OK;
}

static kiln_status build_region(builder *b, const kiln_region *r) {
    for (const kiln_node *n = r->first; n; n = n->next)
        if (build_node(b, n)) return kiln_error_status(b->ctx);
    return KILN_OK;
}

kiln_status kiln_vm_build(kiln_program *p, kiln_function *f, vm_code **out) {
    for (int i = 0; i < p->n_codes; i++)
        if (p->codes[i]->f == f) {
            *out = p->codes[i];
            return KILN_OK;
        }
    vm_code *c = calloc(1, sizeof *c);
    if (!c || GROW(p->codes, p->n_codes, p->cap_codes)) {
        free(c);
        return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
    }
    c->f = f;
    p->codes[p->n_codes++] = c; /* registered first: a recursive call finds it */
    *out = c;
    builder b = {p, c, p->ctx, calloc((size_t)f->n_vars + 1, sizeof(int *)), calloc((size_t)f->n_vars + 1, sizeof(int)), -1};
    kiln_status s = KILN_OK;
    if (!b.leaves || !b.n_leaves) {
        s = kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
        goto done;
    }
    int total = 0;
    for (int i = 0; i < f->n_params; i++) total += kiln_vm_leaf_count(f->params[i]->type);
    if (!(c->in = ints(&b, total))) goto fail;
    c->n_in = 0;
    for (int i = 0; i < f->n_params; i++) {
        int nl;
        int *sl = new_slots(&b, f->params[i]->type, VM_SLOT_INPUT, &nl);
        if (!sl) goto fail;
        for (int k = 0; k < nl; k++) {
            vm_slot *s0 = &c->slots[sl[k]];
            if (s0->type->kind == KILN_TYPE_SCALAR) s0->kind = VM_SLOT_ARENA; /* scalars are copied in */
            s0->input = c->n_in;
            c->in[c->n_in++] = sl[k];
        }
        set_leaves(&b, f->params[i], sl, nl);
    }
    if (build_region(&b, f->body)) goto fail;
    if (!(c->out = yield_slots(&b, f->body, &c->n_out))) goto fail;
    c->ready = true;
    goto done;
fail:
    s = kiln_error_status(p->ctx) ? kiln_error_status(p->ctx) : KILN_ERR_INTERNAL;
done:
    free(b.leaves);
    free(b.n_leaves);
    return s;
}
