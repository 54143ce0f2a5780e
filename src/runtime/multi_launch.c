/* multi_launch.c — horizontal batching of generated CUDA kernels: a run of consecutive launches
 * of one kernel (an optimizer updating each parameter, a layer norm per block...) whose members
 * never write memory another member reads or writes becomes one launch of the kernel's _multi
 * variant (kiln_codegen_cuda_multi), blockIdx.y picking the member. Running them at once is then
 * the same as running them in order. */
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>

#define MULTI_PARAM_BYTES 4000 /* a launch's argument block stays under CUDA's classic 4 KiB */
#define MULTI_MAX_ITEMS 64

/* The memory a slot's storage occupies: arena bytes [lo, hi), or a whole caller input. */
typedef struct range { int space; int64_t lo, hi; } range; /* space: -1 arena, else input leaf */

static bool slot_range(const vm_code *c, int s, range *r) {
    const vm_slot *root = &c->slots[c->slots[s].storage];
    switch (root->kind) {
    case VM_SLOT_ARENA: *r = (range){-1, root->offset, root->offset + root->bytes}; return true;
    case VM_SLOT_INPUT: *r = (range){root->input, 0, 1}; return true;
    case VM_SLOT_CONST: *r = (range){-2, 0, 0}; return true; /* read only, never written */
    default: return false;
    }
}

static bool overlap(range a, range b) { return a.space == b.space && a.space != -2 && a.lo < b.hi && b.lo < a.hi; }

/* Whether instruction a writes memory instruction b reads or writes. */
static bool writes_into(const vm_code *c, const vm_instr *a, const vm_instr *b) {
    for (int i = 0; i < a->n_out; i++) {
        range w, x;
        if (!slot_range(c, a->out[i], &w)) return true;
        for (int j = 0; j < b->n_in + b->n_out; j++) {
            int s = j < b->n_in ? b->in[j] : b->out[j - b->n_in];
            if (!slot_range(c, s, &x) || overlap(w, x)) return true;
        }
    }
    return false;
}

int kiln_vm_group_launches(kiln_program *p) {
    vm_code *c = p->main;
    int groups = 0;
    for (int i = 0; i < c->n_instr;) {
        vm_instr *I = &c->instr[i];
        if (I->op != VM_GEN) {
            i++;
            continue;
        }
        const kiln_gen_kernel *k = &p->gens[I->gen];
        int nb = I->n_in + I->n_out + (k->scratch_bytes ? 2 : 0); /* a split reduction: + counters, scratch */
        int item = 8 * ((nb ? nb : 1) + (k->n_params ? k->n_params : 1));
        int cap = MULTI_PARAM_BYTES / item < MULTI_MAX_ITEMS ? MULTI_PARAM_BYTES / item : MULTI_MAX_ITEMS;
        int n = 1;
        while (n < cap && i + n < c->n_instr) {
            vm_instr *J = &c->instr[i + n];
            if (J->op != VM_GEN || strcmp(p->gens[J->gen].symbol, k->symbol)) break;
            bool free_of = true;
            for (int m = 0; m < n && free_of; m++)
                free_of = !writes_into(c, J, &c->instr[i + m]) && !writes_into(c, &c->instr[i + m], J);
            if (!free_of) break;
            n++;
        }
        if (n > 1) {
            I->n_multi = n;
            for (int m = 1; m < n; m++) c->instr[i + m].merged = true;
            p->gen_multi_items[I->gen] = cap;
            groups++;
        }
        i += n;
    }
    return groups;
}
