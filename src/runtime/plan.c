/* plan.c — the static memory plan: liveness of every buffer over the ordered instructions
 * (a value read inside a loop it was made before lives to the loop's end), outputs donated
 * into their inputs' buffers where that is safe, and one arena offset per remaining buffer
 * (largest first, lowest free offset among buffers live at the same time). */
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static int root(const vm_code *c, int s) { return c->slots[s].storage; }

static void see_def(vm_code *c, int s, int at) {
    vm_slot *r = &c->slots[root(c, s)];
    if (r->first < 0 || at < r->first) r->first = at;
}

/* A read (or write) at instruction `at`: extends the root's life, and through every loop
 * around `at` that began after the root was made, to that loop's end. */
static void see_use(vm_code *c, int s, int at) {
    vm_slot *r = &c->slots[root(c, s)];
    if (r->first < 0) r->first = at;
    int last = at;
    for (int L = c->instr[at].loop; L >= 0 && c->loops[L].start > r->first; L = c->loops[L].parent)
        if (c->loops[L].end > last) last = c->loops[L].end;
    if (last > r->last) r->last = last;
}

static void liveness(vm_code *c) {
    for (int i = 0; i < c->n_slots; i++) c->slots[i].first = c->slots[i].last = -1;
    for (int i = 0; i < c->n_in; i++) c->slots[root(c, c->in[i])].first = 0; /* bound before the first instruction */
    for (int p = 0; p < c->n_instr; p++)
        for (int k = 0; k < c->instr[p].n_out; k++) see_def(c, c->instr[p].out[k], p);
    for (int p = 0; p < c->n_instr; p++) {
        vm_instr *I = &c->instr[p];
        for (int k = 0; k < I->n_in; k++) see_use(c, I->in[k], p);
        for (int k = 0; k < I->n_out; k++) see_use(c, I->out[k], p);
    }
    for (int i = 0; i < c->n_out; i++) {
        vm_slot *r = &c->slots[root(c, c->out[i])];
        if (r->first < 0) r->first = 0;
        r->last = c->n_instr; /* results live to the end */
    }
    for (int i = 0; i < c->n_slots; i++) {
        vm_slot *r = &c->slots[i];
        if (r->storage == i && r->first >= 0 && r->last < r->first) r->last = r->first;
    }
}

/* Whether generated kernel g is elementwise (reads element i of a same-shaped input before it
 * writes element i of its output), so an output may overwrite an input it reads in place. */
static bool elementwise_kernel(const kiln_function *g) {
    for (const kiln_node *n = g->body->first; n; n = n->next)
        if (kiln_op_info_get(n->op)->cls == KILN_CLASS_REDUCE) return false;
    return true;
}

static bool same_shape(const vm_slot *a, const vm_slot *b) {
    return a->dtype == b->dtype && a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* Output leaf j written straight into input leaf i's buffer when the input is dead by then. */
static bool place_donation(kiln_program *p, vm_code *c, int j, int i) {
    int s = root(c, c->out[j]), t = c->in[i];
    vm_slot *S = &c->slots[s], *T = &c->slots[t];
    if (S->kind != VM_SLOT_ARENA || T->kind != VM_SLOT_INPUT || T->type->kind != KILN_TYPE_TENSOR ||
        S->bytes != T->bytes || S->first < 0)
        return false;
    if (T->last < S->first) goto place;
    if (T->last > S->first) return false;
    const vm_instr *I = &c->instr[S->first];
    if (I->op != VM_GEN || !elementwise_kernel(p->gen_funcs[I->gen])) return false;
    for (int k = 0; k < I->n_out; k++)
        if (root(c, I->out[k]) == s)
            for (int m = 0; m < I->n_in; m++)
                if (root(c, I->in[m]) == t && !same_shape(&c->slots[I->in[m]], &c->slots[I->out[k]])) return false;
place:
    S->kind = VM_SLOT_INPUT;
    S->input = i;
    T->last = S->last > T->last ? S->last : T->last;
    return true;
}

typedef struct span { int64_t offset, bytes; int first, last; } span;

static int by_size_desc(const void *a, const void *b) {
    const span *x = *(span *const *)a, *y = *(span *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->first - y->first;
}

static int by_offset(const void *a, const void *b) {
    const span *x = *(span *const *)a, *y = *(span *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* First-fit, largest first: the lowest offset where no buffer live at the same time sits. */
static kiln_status assign_offsets(kiln_context *ctx, vm_code *c) {
    int n = 0;
    for (int i = 0; i < c->n_slots; i++) n += c->slots[i].storage == i && c->slots[i].kind == VM_SLOT_ARENA;
    span *spans = calloc((size_t)n + 1, sizeof *spans);
    span **order = calloc((size_t)n + 1, sizeof *order), **placed = calloc((size_t)n + 1, sizeof *placed);
    int *slot_of = calloc((size_t)n + 1, sizeof *slot_of);
    if (!spans || !order || !placed || !slot_of) {
        free(spans), free(order), free(placed), free(slot_of);
        return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < c->n_slots; i++) {
        vm_slot *s = &c->slots[i];
        if (s->storage != i || s->kind != VM_SLOT_ARENA) continue;
        spans[k] = (span){0, (s->bytes + ALIGN - 1) / ALIGN * ALIGN, s->first, s->last};
        if (spans[k].bytes == 0) spans[k].bytes = ALIGN;
        slot_of[k] = i;
        order[k] = &spans[k];
        k++;
    }
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int n_placed = 0;
    int64_t arena = 0;
    span **live = calloc((size_t)n + 1, sizeof *live);
    if (!live) {
        free(spans), free(order), free(placed), free(slot_of);
        return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    }
    for (int a = 0; a < n; a++) {
        span *s = order[a];
        int n_live = 0;
        for (int b = 0; b < n_placed; b++)
            if (placed[b]->first <= s->last && s->first <= placed[b]->last) live[n_live++] = placed[b];
        qsort(live, (size_t)n_live, sizeof *live, by_offset);
        int64_t at = 0;
        for (int b = 0; b < n_live; b++) {
            if (live[b]->offset >= at + s->bytes) break;
            if (live[b]->offset + live[b]->bytes > at) at = live[b]->offset + live[b]->bytes;
        }
        s->offset = at;
        if (at + s->bytes > arena) arena = at + s->bytes;
        placed[n_placed++] = s;
    }
    for (int i = 0; i < n; i++) c->slots[slot_of[i]].offset = spans[i].offset;
    c->arena_bytes = arena;
    free(live), free(spans), free(order), free(placed), free(slot_of);
    return KILN_OK;
}

/* Per instruction: bytes of arena buffers live, and the highest arena byte in use. */
static kiln_status trace_footprint(kiln_program *p, vm_code *c) {
    int n = c->n_instr ? c->n_instr : 1;
    p->live_bytes = calloc((size_t)n, sizeof *p->live_bytes);
    p->high_water = calloc((size_t)n, sizeof *p->high_water);
    if (!p->live_bytes || !p->high_water) return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < c->n_slots; i++) {
        vm_slot *s = &c->slots[i];
        if (s->storage != i || s->kind != VM_SLOT_ARENA || s->first < 0) continue;
        int64_t top = s->offset + (s->bytes ? (s->bytes + ALIGN - 1) / ALIGN * ALIGN : ALIGN);
        int last = s->last < c->n_instr ? s->last : c->n_instr - 1;
        for (int q = s->first; q <= last; q++) {
            p->live_bytes[q] += s->bytes;
            if (top > p->high_water[q]) p->high_water[q] = top;
        }
    }
    return KILN_OK;
}

/* A list push / pop may update its input list in place when nothing reads that slot before
 * it is next written: scanning forward, a write comes before any read and before any jump (a
 * jump could lead to a read; then the list is copied instead, which is always correct). */
static void mark_steals(vm_code *c) {
    for (int p = 0; p < c->n_instr; p++) {
        vm_instr *I = &c->instr[p];
        if (I->op != VM_LIST_PUSH && I->op != VM_LIST_POP) continue;
        int s = I->in[0];
        bool dead = true, decided = false;
        for (int q = p + 1; q < c->n_instr && !decided; q++) {
            const vm_instr *J = &c->instr[q];
            for (int k = 0; k < J->n_in && !decided; k++)
                if (J->in[k] == s) dead = false, decided = true;
            for (int k = 0; k < J->n_out && !decided; k++)
                if (J->out[k] == s) decided = true;
            if (!decided && (J->op == VM_JUMP || J->op == VM_JUMP_UNLESS)) dead = false, decided = true;
        }
        for (int k = 0; k < c->n_out && !decided; k++)
            if (c->out[k] == s) dead = false;
        for (int k = 0; k < c->n_in; k++)
            if (c->in[k] == s) dead = false;
        I->steal = dead;
    }
}

kiln_status kiln_vm_plan(kiln_program *p, vm_code *c, bool main) {
    liveness(c);
    mark_steals(c);
    if (main) {
        for (int k = 0; k < p->n_donate; k++) {
            int j = p->donate[k][0], i = p->donate[k][1];
            if (j < 0 || j >= c->n_out || i < 0 || i >= c->n_in)
                return kiln_error(p->ctx, KILN_ERR_VALUE, "@%s: donation {output %d, input %d} out of range (%d outputs, %d inputs)",
                                  c->f->name, j, i, c->n_out, c->n_in);
            const vm_slot *o = &c->slots[c->out[j]], *in = &c->slots[c->in[i]];
            if (!same_shape(o, in) || in->type->kind != KILN_TYPE_TENSOR) {
                char a[128], b[128];
                return kiln_error(p->ctx, KILN_ERR_VALUE, "@%s: output leaf %d (%s) cannot be donated to input leaf %d (%s)",
                                  c->f->name, j, kiln_type_cstr(o->type, a, sizeof a), i, kiln_type_cstr(in->type, b, sizeof b));
            }
            for (int m = 0; m < k; m++)
                if (p->donate[m][1] == i || p->donate[m][0] == j)
                    return kiln_error(p->ctx, KILN_ERR_VALUE, "@%s: input leaf %d or output leaf %d is donated twice", c->f->name, i, j);
            p->donate_placed[k] = place_donation(p, c, j, i);
        }
    }
    if (assign_offsets(p->ctx, c)) return kiln_error_status(p->ctx);
    return main ? trace_footprint(p, c) : KILN_OK;
}
