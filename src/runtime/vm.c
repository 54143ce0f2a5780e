/* vm.c — runs VM code: an instance holds the arena and one tensor header per slot (made once;
 * later runs only rebind the inputs), then instructions execute in order with jumps for
 * control flow. Lists are the only values allocated while running. On a CUDA device the same
 * instructions move device memory through the backend, and the main code may replay as a
 * CUDA graph. */
#include "dialects/cuda_dialect.h"
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A list: `n` elements of `width` leaves each (tensors; scalars as 0-d tensors). */
typedef struct vm_list {
    int refcount;
    int n, cap, width;
    kiln_tensor **items; /* n * width */
} vm_list;

struct vm_instance {
    kiln_program *prog;
    vm_code *code;
    char *arena;
    kiln_tensor *hdr;      /* per slot: its tensor header (never released: refcount stays >= 1) */
    vm_list **lists;       /* per slot: list slots' values */
    kiln_tensor **held;    /* per slot: the popped tensor an element slot views */
    kiln_tensor **bound;   /* per input leaf: the caller's tensor this run */
    kiln_tensor **tin;     /* scratch: kernel operands */
    char **bufs;           /* scratch: generated kernels' buffers */
    int *rebind;           /* slots whose data pointer follows an input */
    int n_rebind;
    /* CUDA */
    kiln_tensor **staged;  /* per input leaf: the device copy of a host tensor input */
    kiln_tensor **host_of; /* per input leaf: that host tensor this run (donations go back to it) */
    kiln_tensor **htmp;    /* per slot: host copy for kernels run on the host */
    int64_t *argblk;       /* a generated kernel's launch argument: bufs then params */
    char *counters, *scratch; /* split reductions' (kiln_gen_kernel), after the arena */
};

/* ---- device memory: plain memory on the CPU, the backend's copies on CUDA ------------------ */
static kiln_status dev_fail(kiln_program *p, const char *what) {
    return kiln_error(p->ctx, KILN_ERR_UNSUPPORTED, "VM on cuda:%d: %s: %s", p->device.index, what, p->be->last_error());
}

static kiln_status dev_copy(kiln_program *p, void *dst, const void *src, size_t n) {
    if (!p->be) memcpy(dst, src, n);
    else if (n && p->be->copy_d2d(p->device.index, dst, src, n)) return dev_fail(p, "copy");
    return KILN_OK;
}

static kiln_status dev_write(kiln_program *p, void *dst, const void *host, size_t n) {
    if (!p->be) memcpy(dst, host, n);
    else if (n && p->be->copy_h2d(p->device.index, dst, host, n)) return dev_fail(p, "copy to the device");
    return KILN_OK;
}

static kiln_status dev_read(kiln_program *p, void *host, const void *src, size_t n) {
    if (!p->be) memcpy(host, src, n);
    else if (n && p->be->copy_d2h(p->device.index, host, src, n)) return dev_fail(p, "copy to the host");
    return KILN_OK;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- lists ------------------------------------------------------------------------------- */
static vm_list *list_new(int width) {
    vm_list *l = calloc(1, sizeof *l);
    if (l) {
        l->refcount = 1;
        l->width = width;
    }
    return l;
}

static void list_release(vm_list *l) {
    if (!l || --l->refcount > 0) return;
    for (int i = 0; i < l->n * l->width; i++) kiln_tensor_release(l->items[i]);
    free(l->items);
    free(l);
}

static vm_list *list_clone(const vm_list *l) {
    vm_list *c = list_new(l->width);
    if (!c) return NULL;
    int total = l->n * l->width;
    c->items = malloc(sizeof *c->items * (size_t)(total ? total : 1));
    if (!c->items) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < total; i++) c->items[i] = kiln_tensor_retain(l->items[i]);
    c->n = c->cap = l->n;
    return c;
}

static bool list_reserve(vm_list *l, int n) {
    if (n <= l->cap) return true;
    int cap = l->cap ? l->cap * 2 : 8;
    while (cap < n) cap *= 2;
    kiln_tensor **items = realloc(l->items, sizeof *items * (size_t)cap * (size_t)l->width + 1);
    if (!items) return false;
    l->items = items;
    l->cap = cap;
    return true;
}

static void set_list(vm_instance *in, int s, vm_list *l) {
    list_release(in->lists[s]);
    in->lists[s] = l;
}

/* ---- instances ------------------------------------------------------------------------- */
void kiln_vm_instance_free(vm_instance *inst) {
    if (!inst) return;
    vm_code *c = inst->code;
    for (int i = 0; i < c->n_slots; i++) { /* (a partly made instance may lack either array) */
        if (inst->lists) list_release(inst->lists[i]);
        if (inst->held) kiln_tensor_release(inst->held[i]);
    }
    if (inst->prog->be) inst->prog->be->free(inst->prog->device.index, inst->arena);
    else kiln_mem_free(inst->arena);
    for (int i = 0; inst->staged && i < c->n_in; i++) kiln_tensor_release(inst->staged[i]);
    for (int i = 0; inst->htmp && i < c->n_slots; i++) kiln_tensor_release(inst->htmp[i]);
    free(inst->staged), free(inst->host_of), free(inst->htmp), free(inst->argblk);
    free(inst->hdr), free(inst->lists), free(inst->held), free(inst->bound), free(inst->tin), free(inst->bufs);
    free(inst->rebind);
    free(inst);
}

/* CUDA: the most counter and scratch bytes of split reductions one launch of c takes (a batched
 * launch: the sum over its items, each with its own). Launches run in stream order, so every
 * kernel of the instance shares one region of each. */
static void split_bytes(const kiln_program *p, const vm_code *c, size_t *counters, size_t *scratch) {
    *counters = *scratch = 0;
    for (int i = 0; p->be && i < c->n_instr; i++) {
        const vm_instr *I = &c->instr[i];
        if (I->op != VM_GEN || I->merged) continue;
        size_t cb = 0, sb = 0;
        for (int m = 0; m < (I->n_multi > 1 ? I->n_multi : 1); m++)
            cb += p->gens[I[m].gen].counter_bytes, sb += p->gens[I[m].gen].scratch_bytes;
        if (cb > *counters) *counters = cb;
        if (sb > *scratch) *scratch = sb;
    }
}

static vm_instance *instance_new(kiln_program *p, vm_code *c) {
    kiln_context *ctx = p->ctx;
    vm_instance *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    in->prog = p;
    in->code = c;
    size_t ns = (size_t)c->n_slots + 1, nops = (size_t)c->max_operands + 1;
    size_t counters, scratch, split_at = ((size_t)c->arena_bytes + 511) / 256 * 256; /* 256-aligned, past the slack */
    split_bytes(p, c, &counters, &scratch);
    in->arena = p->be ? p->be->alloc(p->device.index, split_at + counters + scratch) : kiln_mem_alloc((size_t)c->arena_bytes + 64);
    if (p->be) {
        in->staged = calloc((size_t)c->n_in + 1, sizeof *in->staged);
        in->host_of = calloc((size_t)c->n_in + 1, sizeof *in->host_of);
        in->htmp = calloc(ns, sizeof *in->htmp);
        in->argblk = calloc(nops + 600, sizeof *in->argblk); /* a launch's argument block: < 4 KiB + operands */
        if (!in->staged || !in->host_of || !in->htmp || !in->argblk) {
            kiln_vm_instance_free(in);
            kiln_error(ctx, KILN_ERR_OOM, "out of memory");
            return NULL;
        }
    }
    in->hdr = calloc(ns, sizeof *in->hdr);
    in->lists = calloc(ns, sizeof *in->lists);
    in->held = calloc(ns, sizeof *in->held);
    in->bound = calloc((size_t)c->n_in + 1, sizeof *in->bound);
    in->tin = calloc(nops, sizeof *in->tin);
    in->bufs = calloc(nops, sizeof *in->bufs);
    in->rebind = calloc(ns, sizeof *in->rebind);
    if (!in->arena || !in->hdr || !in->lists || !in->held || !in->bound || !in->tin || !in->bufs || !in->rebind) {
        kiln_vm_instance_free(in);
        kiln_error(ctx, KILN_ERR_OOM, "out of memory: the VM arena of @%s needs %lld bytes%s%s", c->f->name,
                   (long long)c->arena_bytes, p->be ? " on the GPU: " : "", p->be ? p->be->last_error() : "");
        return NULL;
    }
    if (p->be) { /* the counters start at zero; the kernels leave them so */
        in->counters = in->arena + split_at, in->scratch = in->counters + counters;
        if (counters && p->be->memset_d(p->device.index, in->counters, 0, counters)) {
            kiln_error(ctx, KILN_ERR_UNSUPPORTED, "VM on cuda:%d: zeroing the split reductions' counters: %s", p->device.index,
                       p->be->last_error());
            kiln_vm_instance_free(in);
            return NULL;
        }
    }
    for (int i = 0; i < c->n_slots; i++) {
        const vm_slot *s = &c->slots[i];
        kiln_tensor *h = &in->hdr[i];
        h->refcount = 1;
        h->device = p->device;
        h->dtype = s->dtype;
        h->ndim = s->ndim;
        memcpy(h->shape, s->shape, sizeof(int64_t) * (size_t)s->ndim);
        h->numel = 1;
        for (int d = 0; d < s->ndim; d++) h->numel *= s->shape[d];
        const vm_slot *r = &c->slots[s->storage];
        switch (r->kind) {
        case VM_SLOT_ARENA: h->data = in->arena + r->offset; break;
        case VM_SLOT_CONST: h->data = r->constant->data; break;
        case VM_SLOT_INPUT: in->rebind[in->n_rebind++] = i; break;
        default: break;
        }
    }
    return in;
}

/* ---- inputs and results ------------------------------------------------------------------ */
/* The leaves of value v of type t into flat[*nf...], depth first (recursion bounded by the type's
 * nesting); false when v does not have t's tuple structure. */
static bool flatten_value(kiln_value v, const kiln_type *t, kiln_value *flat, int *nf) {
    if (t->kind != KILN_TYPE_TUPLE) {
        if (v.kind == KILN_VALUE_TUPLE) return false;
        flat[(*nf)++] = v;
        return true;
    }
    if (v.kind != KILN_VALUE_TUPLE || kiln_value_tuple_size(v) != t->n_elems) return false;
    for (int i = 0; i < t->n_elems; i++)
        if (!flatten_value(kiln_value_tuple_get(v, i), t->elems[i], flat, nf)) return false;
    return true;
}

/* A list value (a tuple of elements of type elem) as a vm_list of flattened leaf tensors
 * (scalars as 0-d tensors). KILN_ERR_TYPE (no message) when v does not have that shape. */
static kiln_status list_from_value(kiln_context *ctx, kiln_value v, const kiln_type *elem, vm_list **out) {
    *out = NULL;
    if (v.kind != KILN_VALUE_TUPLE) return KILN_ERR_TYPE;
    int width = kiln_vm_leaf_count(elem), n = kiln_value_tuple_size(v);
    vm_list *l = list_new(width);
    kiln_value flat_s[16], *flat = KILN_SCRATCH(flat_s, width);
    if (!l || !flat || !list_reserve(l, n)) {
        list_release(l);
        kiln_scratch_free(flat, flat_s);
        return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    }
    for (int e = 0; e < n; e++) {
        int nf = 0;
        if (!flatten_value(kiln_value_tuple_get(v, e), elem, flat, &nf)) {
            list_release(l);
            kiln_scratch_free(flat, flat_s);
            return KILN_ERR_TYPE;
        }
        for (int i = 0; i < nf; i++) {
            kiln_value x = flat[i];
            kiln_tensor *tt;
            if (x.kind == KILN_VALUE_TENSOR) tt = kiln_tensor_retain(x.tensor);
            else {
                kiln_dtype dt = x.kind == KILN_VALUE_INT ? KILN_I64 : x.kind == KILN_VALUE_FLOAT ? KILN_F64 : KILN_BOOL;
                if ((tt = kiln_tensor_new(ctx, dt, 0, NULL))) {
                    if (dt == KILN_I64) *(int64_t *)tt->data = x.i;
                    else if (dt == KILN_F64) *(double *)tt->data = x.f;
                    else *(uint8_t *)tt->data = x.b;
                }
            }
            if (!tt) {
                list_release(l);
                kiln_scratch_free(flat, flat_s);
                return kiln_error_status(ctx);
            }
            l->items[l->n * width + i] = tt;
        }
        l->n++;
    }
    kiln_scratch_free(flat, flat_s);
    *out = l;
    return KILN_OK;
}

/* Binds the caller's value v of type t to the leaves starting at *k. */
/* Binds tensor x to input leaf k: directly when it is on the program's device, else through a
 * device copy made once and refreshed every run. */
static kiln_status bind_tensor(vm_instance *in, kiln_tensor *x, int k, int param) {
    kiln_program *p = in->prog;
    kiln_context *ctx = p->ctx;
    char a[32], b[32];
    if (x->device.type == p->device.type && x->device.index == p->device.index) {
        in->bound[k] = x;
        return KILN_OK;
    }
    if (x->device.type != KILN_DEVICE_CPU)
        return kiln_error(ctx, KILN_ERR_VALUE, "@%s: input %d is on %s but the program runs on %s", in->code->f->name, param,
                          kiln_device_str(x->device, a, sizeof a), kiln_device_str(p->device, b, sizeof b));
    if (!in->staged[k] && !(in->staged[k] = kiln_tensor_new_on(ctx, x->dtype, x->ndim, x->shape, p->device)))
        return kiln_error_status(ctx);
    if (kiln_tensor_copy_into(ctx, in->staged[k], x)) return kiln_error_status(ctx);
    in->host_of[k] = x;
    in->bound[k] = in->staged[k];
    return KILN_OK;
}

static kiln_status bind_value(kiln_context *ctx, vm_instance *in, kiln_value v, const kiln_type *t, int *k, int param) {
    vm_code *c = in->code;
    char want[256], got[160];
    bool ok;
    switch (t->kind) {
    case KILN_TYPE_TUPLE:
        if (v.kind != KILN_VALUE_TUPLE || kiln_value_tuple_size(v) != t->n_elems) goto mismatch;
        for (int i = 0; i < t->n_elems; i++)
            if (bind_value(ctx, in, kiln_value_tuple_get(v, i), t->elems[i], k, param)) return kiln_error_status(ctx);
        return KILN_OK;
    case KILN_TYPE_TENSOR:
        ok = v.kind == KILN_VALUE_TENSOR && v.tensor->dtype == t->dtype && v.tensor->ndim == t->ndim &&
             (!t->ndim || !memcmp(v.tensor->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim));
        if (!ok) goto mismatch;
        if (in->prog->be || v.tensor->device.type != KILN_DEVICE_CPU) {
            if (bind_tensor(in, v.tensor, *k, param)) return kiln_error_status(ctx);
        } else in->bound[*k] = v.tensor;
        (*k)++;
        return KILN_OK;
    case KILN_TYPE_SCALAR: {
        void *d = in->hdr[c->in[*k]].data;
        union { int64_t i; double f; uint8_t b; } x;
        size_t n;
        if (t->dtype == KILN_I64 && v.kind == KILN_VALUE_INT) x.i = v.i, n = 8;
        else if (t->dtype == KILN_F64 && v.kind == KILN_VALUE_FLOAT) x.f = v.f, n = 8;
        else if (t->dtype == KILN_BOOL && v.kind == KILN_VALUE_BOOL) x.b = v.b, n = 1;
        else goto mismatch;
        if (dev_write(in->prog, d, &x, n)) return kiln_error_status(ctx);
        (*k)++;
        return KILN_OK;
    }
    case KILN_TYPE_LIST: {
        vm_list *l;
        kiln_status st = list_from_value(ctx, v, t->elems[0], &l);
        if (st == KILN_ERR_TYPE) goto mismatch;
        if (st) return st;
        set_list(in, c->in[*k], l);
        (*k)++;
        return KILN_OK;
    }
    }
mismatch:
    switch (v.kind) {
    case KILN_VALUE_TENSOR: {
        char sb[160];
        snprintf(got, sizeof got, "%s%s", kiln_dtype_name(v.tensor->dtype), kiln_shape_str(v.tensor->ndim, v.tensor->shape, sb, sizeof sb));
        break;
    }
    case KILN_VALUE_INT: snprintf(got, sizeof got, "int"); break;
    case KILN_VALUE_FLOAT: snprintf(got, sizeof got, "float"); break;
    case KILN_VALUE_BOOL: snprintf(got, sizeof got, "bool"); break;
    case KILN_VALUE_TUPLE: snprintf(got, sizeof got, "tuple of %d", kiln_value_tuple_size(v)); break;
    default: snprintf(got, sizeof got, "none"); break;
    }
    return kiln_error(ctx, KILN_ERR_VALUE, "@%s: input %d (%%%s) must be %s, got %s", c->f->name, param,
                      c->f->params[param]->name ? c->f->params[param]->name : "?", kiln_type_cstr(t, want, sizeof want), got);
}

/* A 0-d tensor's value (read from the device when it is there; a failed read gives none). */
static kiln_value scalar_of(const kiln_tensor *h) {
    union { int64_t i; double f; uint8_t b; } x = {0};
    if (h->device.type != KILN_DEVICE_CPU) {
        const kiln_backend *be = kiln_cuda_backend(NULL, 0);
        if (!be || be->copy_d2h(h->device.index, &x, h->data, kiln_dtype_size(h->dtype)))
            return (kiln_value){.kind = KILN_VALUE_NONE};
    } else memcpy(&x, h->data, kiln_dtype_size(h->dtype));
    if (h->dtype == KILN_I64) return kiln_value_int(x.i);
    if (h->dtype == KILN_F64) return kiln_value_float(x.f);
    return kiln_value_bool(x.b != 0);
}

/* The tuple of n parts (a calloc'd array, NULL on OOM), releasing and freeing them; NONE on OOM.
 * The recursive builders below keep their parts on the heap: tuples can be long and nested. */
static kiln_value tuple_take(kiln_context *ctx, int n, kiln_value *parts) {
    if (!parts) return (kiln_value){.kind = KILN_VALUE_NONE};
    kiln_value v = kiln_value_tuple(ctx, n, parts);
    for (int i = 0; i < n; i++) kiln_value_release(parts[i]);
    free(parts);
    return v;
}

/* The value of type t made from tensors items[*k...] (a list element). */
static kiln_value item_value(kiln_context *ctx, const kiln_type *t, kiln_tensor *const *items, int *k) {
    if (t->kind == KILN_TYPE_TUPLE) {
        kiln_value *parts = calloc((size_t)t->n_elems + 1, sizeof *parts);
        for (int i = 0; parts && i < t->n_elems; i++) parts[i] = item_value(ctx, t->elems[i], items, k);
        return tuple_take(ctx, t->n_elems, parts);
    }
    kiln_tensor *x = items[(*k)++];
    if (t->kind == KILN_TYPE_SCALAR) return scalar_of(x);
    return kiln_value_tensor(kiln_tensor_retain(x));
}

static kiln_value list_value(kiln_context *ctx, const vm_list *l, const kiln_type *elem) {
    int n = l ? l->n : 0;
    kiln_value *items = malloc(sizeof *items * (size_t)(n ? n : 1));
    if (!items) return (kiln_value){.kind = KILN_VALUE_NONE};
    for (int e = 0; e < n; e++) {
        int k = 0;
        items[e] = item_value(ctx, elem, l->items + e * l->width, &k);
    }
    kiln_value v = kiln_value_tuple(ctx, n, items);
    for (int e = 0; e < n; e++) kiln_value_release(items[e]);
    free(items);
    return v;
}

/* The value of type t from the leaves at slots[*k...]: copies (results) or borrowed headers
 * (arguments of a call). `owner` maps a result leaf to the input tensor it was donated to. */
static kiln_value leaves_value(kiln_context *ctx, vm_instance *in, const kiln_type *t, const int *slots, int *k,
                               bool copy, kiln_tensor *const *donated_to) {
    vm_code *c = in->code;
    if (t->kind == KILN_TYPE_TUPLE) {
        kiln_value *parts = calloc((size_t)t->n_elems + 1, sizeof *parts);
        for (int i = 0; parts && i < t->n_elems; i++) parts[i] = leaves_value(ctx, in, t->elems[i], slots, k, copy, donated_to);
        return tuple_take(ctx, t->n_elems, parts);
    }
    int leaf = (*k)++, s = slots[leaf];
    kiln_tensor *h = &in->hdr[s];
    if (t->kind == KILN_TYPE_LIST) return list_value(ctx, in->lists[s], t->elems[0]);
    if (t->kind == KILN_TYPE_SCALAR) return scalar_of(h);
    if (!copy) return kiln_value_tensor(kiln_tensor_retain(h));
    if (donated_to && donated_to[leaf]) return kiln_value_tensor(kiln_tensor_retain(donated_to[leaf]));
    if (c->slots[s].kind == VM_SLOT_INPUT && c->in[c->slots[s].input] == s) /* an input returned as is */
        return kiln_value_tensor(kiln_tensor_retain(in->bound[c->slots[s].input]));
    if (c->slots[s].kind == VM_SLOT_CONST) return kiln_value_tensor(kiln_tensor_retain(c->slots[s].constant));
    if (c->slots[s].kind == VM_SLOT_DYNAMIC && in->held[s]) return kiln_value_tensor(kiln_tensor_retain(in->held[s]));
    kiln_tensor *o = kiln_tensor_new_on(ctx, h->dtype, h->ndim, h->shape, in->prog->device);
    if (!o) return (kiln_value){.kind = KILN_VALUE_NONE};
    if (dev_copy(in->prog, o->data, h->data, (size_t)c->slots[s].bytes)) {
        kiln_tensor_release(o);
        return (kiln_value){.kind = KILN_VALUE_NONE};
    }
    return kiln_value_tensor(o);
}

/* ---- instructions ------------------------------------------------------------------------ */
static kiln_tensor *leaf_tensor(vm_instance *in, const kiln_tensor *h) {
    kiln_tensor *t = kiln_tensor_new_on(in->prog->ctx, h->dtype, h->ndim, h->shape, in->prog->device);
    if (t && dev_copy(in->prog, t->data, h->data, (size_t)h->numel * kiln_dtype_size(h->dtype))) {
        kiln_tensor_release(t);
        return NULL;
    }
    return t;
}

static kiln_status run_copy(vm_instance *in, const vm_instr *I, int pc) {
    vm_code *c = in->code;
    for (int k = 0; k < I->n_in; k++) {
        int from = I->in[k], to = I->out[k];
        if (c->slots[from].type->kind == KILN_TYPE_LIST) {
            vm_list *l = in->lists[from];
            if (c->slots[from].last == pc && c->slots[from].storage == from) in->lists[from] = NULL; /* moved */
            else if (l) l->refcount++;
            set_list(in, to, l);
        } else if (in->hdr[to].data != in->hdr[from].data) {
            if (dev_copy(in->prog, in->hdr[to].data, in->hdr[from].data, (size_t)c->slots[to].bytes)) return kiln_error_status(in->prog->ctx);
        }
    }
    return KILN_OK;
}

static kiln_status run_list(kiln_context *ctx, vm_instance *in, const vm_instr *I) {
    vm_code *c = in->code;
    if (I->op == VM_LIST_NEW) {
        vm_list *l = list_new(kiln_vm_leaf_count(c->slots[I->out[0]].type->elems[0]));
        if (!l) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        set_list(in, I->out[0], l);
        return KILN_OK;
    }
    vm_list *l = in->lists[I->in[0]];
    if (!l) return kiln_error(ctx, KILN_ERR_INTERNAL, "op '%s' at %s: the list is unset", kiln_op_info_get(I->node->op)->name, I->where);
    if (I->op == VM_LIST_LENGTH) {
        int64_t n = l->n;
        return dev_write(in->prog, in->hdr[I->out[0]].data, &n, sizeof n);
    }
    if (I->op == VM_LIST_POP && l->n == 0)
        return kiln_error(ctx, KILN_ERR_VALUE, "op 'list_pop' at %s: the list is empty", I->where);
    if (I->steal && l->refcount == 1) in->lists[I->in[0]] = NULL;
    else if (!(l = list_clone(l))) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    if (I->op == VM_LIST_PUSH) {
        if (!list_reserve(l, l->n + 1)) {
            list_release(l);
            return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        }
        for (int i = 0; i < l->width; i++) {
            int s = I->in[1 + i];
            kiln_tensor *t = in->held[s] && c->slots[s].kind == VM_SLOT_DYNAMIC ? kiln_tensor_retain(in->held[s])
                                                                                : leaf_tensor(in, &in->hdr[s]);
            if (!t) {
                for (int j = 0; j < i; j++) kiln_tensor_release(l->items[l->n * l->width + j]);
                list_release(l);
                return kiln_error_status(ctx);
            }
            l->items[l->n * l->width + i] = t;
        }
        l->n++;
        set_list(in, I->out[0], l);
        return KILN_OK;
    }
    l->n--; /* pop: the element's leaves view the popped tensors */
    for (int i = 0; i < l->width; i++) {
        int s = I->out[1 + i];
        kiln_tensor_release(in->held[s]);
        in->held[s] = l->items[l->n * l->width + i]; /* ownership moves to the slot */
        in->hdr[s].data = in->held[s]->data;
    }
    set_list(in, I->out[0], l);
    return KILN_OK;
}

/* Writes value v of type t into the slots at slots[*k...] (a call's results). */
static kiln_status store_value(kiln_context *ctx, vm_instance *in, kiln_value v, const kiln_type *t, const int *slots, int *k) {
    if (t->kind == KILN_TYPE_TUPLE) {
        for (int i = 0; i < t->n_elems; i++)
            if (store_value(ctx, in, kiln_value_tuple_get(v, i), t->elems[i], slots, k)) return kiln_error_status(ctx);
        return KILN_OK;
    }
    int o = slots[(*k)++];
    kiln_tensor *h = &in->hdr[o];
    if (t->kind == KILN_TYPE_LIST) {
        vm_list *l;
        kiln_status s = list_from_value(ctx, v, t->elems[0], &l);
        if (s) return s == KILN_ERR_TYPE ? kiln_error(ctx, KILN_ERR_INTERNAL, "VM: a call returned a malformed list") : s;
        set_list(in, o, l);
    } else if (v.kind == KILN_VALUE_TENSOR) return dev_copy(in->prog, h->data, v.tensor->data, (size_t)in->code->slots[o].bytes);
    else if (v.kind == KILN_VALUE_INT) return dev_write(in->prog, h->data, &v.i, sizeof v.i);
    else if (v.kind == KILN_VALUE_FLOAT) return dev_write(in->prog, h->data, &v.f, sizeof v.f);
    else if (v.kind == KILN_VALUE_BOOL) return dev_write(in->prog, h->data, &v.b, 1);
    return KILN_OK;
}

static kiln_status run_call(kiln_program *p, vm_instance *in, const vm_instr *I, int depth) {
    kiln_context *ctx = p->ctx;
    vm_code *callee = I->callee;
    kiln_function *g = callee->f;
    kiln_value *args = calloc((size_t)g->n_params + 1, sizeof *args);
    if (!args) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    int k = 0;
    for (int i = 0; i < g->n_params; i++) args[i] = leaves_value(ctx, in, g->params[i]->type, I->in, &k, false, NULL);
    vm_instance *frame = NULL;
    kiln_value res = {.kind = KILN_VALUE_NONE};
    kiln_status s = kiln_vm_run(p, callee, &frame, g->n_params, args, &res, depth + 1);
    kiln_vm_instance_free(frame);
    for (int i = 0; i < g->n_params; i++) kiln_value_release(args[i]);
    free(args);
    if (s) return s;
    k = 0;
    s = store_value(ctx, in, res, g->ret, I->out, &k);
    kiln_value_release(res);
    return s;
}

/* A kernel without a CUDA implementation in a CUDA program: its operands are copied to host
 * tensors (made once per slot), the reference kernel runs there, the results go back. */
static kiln_status run_on_host(vm_instance *in, const vm_instr *I) {
    kiln_program *p = in->prog;
    kiln_context *ctx = p->ctx;
    int n = I->n_in + I->n_out;
    for (int i = 0; i < n; i++) {
        int s = i < I->n_in ? I->in[i] : I->out[i - I->n_in];
        kiln_tensor *h = &in->hdr[s];
        if (!in->htmp[s] && !(in->htmp[s] = kiln_tensor_new(ctx, h->dtype, h->ndim, h->shape))) return kiln_error_status(ctx);
        in->tin[i] = in->htmp[s];
        if (i < I->n_in && dev_read(p, in->htmp[s]->data, h->data, kiln_tensor_nbytes(h))) return kiln_error_status(ctx);
    }
    kiln_kernel_args a = {ctx, I->node->op, I->node->attrs, I->n_in, in->tin, I->n_out, in->tin + I->n_in, I->where};
    if (I->kernel(&a)) return kiln_error_status(ctx);
    for (int i = I->n_in; i < n; i++)
        if (dev_write(p, in->hdr[I->out[i - I->n_in]].data, in->tin[i]->data, kiln_tensor_nbytes(in->tin[i])))
            return kiln_error_status(ctx);
    return KILN_OK;
}

/* A generated kernel: a C call, or a CUDA launch whose one argument is bufs then params. */
static kiln_status run_gen(vm_instance *in, const vm_instr *I) {
    kiln_program *p = in->prog;
    const kiln_gen_kernel *g = &p->gens[I->gen];
    if (!p->be) {
        for (int i = 0; i < I->n_in; i++) in->bufs[i] = in->hdr[I->in[i]].data;
        for (int i = 0; i < I->n_out; i++) in->bufs[I->n_in + i] = in->hdr[I->out[i]].data;
        p->gen_fns[I->gen](in->bufs, g->params);
        return KILN_OK;
    }
    if (I->merged) return KILN_OK; /* launched with its group's first instruction */
    /* one item per member: bufs then params (each at least one entry), back to back */
    int n = I->n_multi > 1 ? I->n_multi : 1;
    unsigned grid[3] = {g->grid[0], (unsigned)n, 1};
    int64_t *item = in->argblk;
    char *counters = in->counters, *scratch = in->scratch;
    for (int m = 0; m < n; m++) {
        const vm_instr *M = I + m;
        const kiln_gen_kernel *mg = &p->gens[M->gen];
        int nb = M->n_in + M->n_out;
        char **bufs = (char **)item;
        for (int i = 0; i < M->n_in; i++) bufs[i] = in->hdr[M->in[i]].data;
        for (int i = 0; i < M->n_out; i++) bufs[M->n_in + i] = in->hdr[M->out[i]].data;
        if (mg->scratch_bytes) { /* a split reduction: this item's counters and scratch */
            bufs[nb++] = counters, bufs[nb++] = scratch;
            counters += mg->counter_bytes, scratch += mg->scratch_bytes;
        }
        if (!nb) bufs[0] = NULL;
        int64_t *params = item + (nb ? nb : 1);
        memcpy(params, mg->params, sizeof *params * (size_t)mg->n_params);
        if (!mg->n_params) params[0] = 0;
        item = params + (mg->n_params ? mg->n_params : 1);
        if (mg->grid[0] > grid[0]) grid[0] = mg->grid[0];
    }
    void *args[1] = {in->argblk};
    kiln_backend_fn fn = n > 1 ? p->gen_cuda_multi[I->gen] : p->gen_cuda[I->gen];
    if (p->be->launch(p->device.index, fn, grid, g->block, g->shared_bytes, args))
        return kiln_error(p->ctx, KILN_ERR_UNSUPPORTED, "VM on cuda:%d: launching kernel @%s: %s", p->device.index,
                          p->gen_funcs[I->gen]->name, p->be->last_error());
    return KILN_OK;
}

/* Runs c's instructions in order (jumps for control flow). */
static kiln_status run_instructions(kiln_program *p, vm_code *c, vm_instance *in, int depth) {
    kiln_context *ctx = p->ctx;
    kiln_status st = KILN_OK;
    double *prof = c == p->main ? p->profile_ns : NULL; /* KILN_PROFILE: ns per instruction */
    if (prof && p->profile_runs++ == 1) /* the first run warms up (library setup, page faults): not counted */
        memset(prof, 0, sizeof *prof * (size_t)c->n_instr);
    for (int pc = 0; pc < c->n_instr && !st;) {
        const vm_instr *I = &c->instr[pc];
        if (prof) prof[pc] -= now_ns();
        switch (I->op) {
        case VM_KERNEL: {
            if (I->host) {
                st = run_on_host(in, I);
                break;
            }
            for (int i = 0; i < I->n_in; i++) in->tin[i] = &in->hdr[I->in[i]];
            for (int i = 0; i < I->n_out; i++) in->tin[I->n_in + i] = &in->hdr[I->out[i]];
            kiln_kernel_args a = {ctx, I->node->op, I->node->attrs, I->n_in, in->tin, I->n_out, in->tin + I->n_in, I->where};
            st = I->kernel(&a);
            break;
        }
        case VM_GEN: st = run_gen(in, I); break;
        case VM_COPY: st = run_copy(in, I, pc); break;
        case VM_JUMP:
            if (prof) prof[pc] += now_ns();
            pc = I->target;
            continue;
        case VM_JUMP_UNLESS: {
            uint8_t cond = 0;
            if ((st = dev_read(p, &cond, in->hdr[I->in[0]].data, 1))) break;
            if (!cond) {
                if (prof) prof[pc] += now_ns();
                pc = I->target;
                continue;
            }
            break;
        }
        case VM_LIST_NEW:
        case VM_LIST_PUSH:
        case VM_LIST_POP:
        case VM_LIST_LENGTH: st = run_list(ctx, in, I); break;
        case VM_CALL: st = run_call(p, in, I, depth); break;
        default: st = kiln_error(ctx, KILN_ERR_INTERNAL, "VM: bad instruction %d", (int)I->op);
        }
        if (prof && p->be && !st && p->be->synchronize(p->device.index)) st = dev_fail(p, "synchronize");
        if (prof) prof[pc] += now_ns();
        pc++;
    }
    return st;
}

/* The main code of a CUDA program with cuda_graph: the first run executes, the second captures
 * a graph and launches it, later runs launch it again while the inputs' buffers are the ones it
 * was captured with (otherwise it is captured anew). */
static kiln_status run_main_graph(kiln_program *p, vm_code *c, vm_instance *in) {
    const kiln_backend *be = p->be;
    int dev = p->device.index;
    bool same = p->graph != NULL;
    for (int i = 0; same && i < c->n_in; i++) same = p->graph_inputs[i] == (in->bound[i] ? in->bound[i]->data : NULL);
    if (!same) {
        if (p->graph) be->graph_free(p->graph);
        p->graph = NULL;
        if (be->graph_begin(dev)) return dev_fail(p, "beginning a CUDA graph capture");
        kiln_status st = run_instructions(p, c, in, 0);
        kiln_backend_graph *g = NULL;
        int rc = be->graph_end(dev, &g);
        if (st) {
            if (g) be->graph_free(g);
            return st;
        }
        if (rc || !g) return dev_fail(p, "capturing the step as a CUDA graph");
        p->graph = g;
        for (int i = 0; i < c->n_in; i++) p->graph_inputs[i] = in->bound[i] ? in->bound[i]->data : NULL;
    }
    if (be->graph_launch(dev, p->graph)) return dev_fail(p, "launching the CUDA graph");
    return KILN_OK;
}

kiln_status kiln_vm_run(kiln_program *p, vm_code *c, vm_instance **instp, int n_in, const kiln_value *args,
                        kiln_value *out, int depth) {
    kiln_context *ctx = p->ctx;
    out->kind = KILN_VALUE_NONE;
    if (depth > ctx->call_depth_limit)
        return kiln_error(ctx, KILN_ERR_VALUE, "@%s: call depth exceeds %d (unbounded recursion?)", c->f->name, ctx->call_depth_limit);
    if (n_in != c->f->n_params)
        return kiln_error(ctx, KILN_ERR_VALUE, "@%s takes %d inputs, got %d", c->f->name, c->f->n_params, n_in);
    if (!*instp && !(*instp = instance_new(p, c))) return kiln_error_status(ctx);
    vm_instance *in = *instp;
    const kiln_cuda_exec exec = {p->be, p->device.index, p->pc.cache_dir, p->pc.debug};
    const kiln_cuda_exec *outer = kiln_cuda_exec_get();
    if (p->be) kiln_cuda_exec_set(&exec);
    int k = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; i < n_in && !st; i++) st = bind_value(ctx, in, args[i], c->f->params[i]->type, &k, i);
    for (int i = 0; i < in->n_rebind && !st; i++) {
        int s = in->rebind[i];
        in->hdr[s].data = in->bound[c->slots[c->slots[s].storage].input]->data;
    }
    bool main = c == p->main;
    if (!st) {
        if (main && p->cuda_graph && p->graph_ok && p->runs >= 1) st = run_main_graph(p, c, in);
        else st = run_instructions(p, c, in, depth);
    }
    if (main && !st) p->runs++;
    if (!st) {
        /* outputs donated to inputs but not planned into them are copied there now; inputs
         * that came from the host get their new values back */
        kiln_tensor *donated_s[16], **donated_to = KILN_SCRATCH(donated_s, c->n_out); /* by output leaf */
        if (!donated_to) st = kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        for (int d = 0; main && d < p->n_donate && !st; d++) {
            int j = p->donate[d][0], i = p->donate[d][1];
            if (!p->donate_placed[d]) st = dev_copy(p, in->bound[i]->data, in->hdr[c->out[j]].data, (size_t)c->slots[c->out[j]].bytes);
            if (!st && p->be && in->host_of[i]) st = kiln_tensor_copy_into(ctx, in->host_of[i], in->bound[i]);
            donated_to[j] = p->be && in->host_of[i] ? in->host_of[i] : in->bound[i];
        }
        int leaf = 0;
        if (!st) *out = leaves_value(ctx, in, c->f->ret, c->out, &leaf, true, main && p->n_donate ? donated_to : NULL);
        if (!st && out->kind == KILN_VALUE_NONE) st = kiln_error_status(ctx) ? kiln_error_status(ctx) : kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        kiln_scratch_free(donated_to, donated_s);
    }
    for (int i = 0; i < c->n_slots; i++) { /* lists and popped values are per run */
        if (in->lists[i]) set_list(in, i, NULL);
        if (in->held[i]) {
            kiln_tensor_release(in->held[i]);
            in->held[i] = NULL;
        }
    }
    for (int i = 0; i < c->n_in; i++) {
        in->bound[i] = NULL;
        if (in->host_of) in->host_of[i] = NULL;
    }
    if (p->be) kiln_cuda_exec_set(outer);
    return st;
}

typedef struct prof_row { double ns; int pc; int calls; } prof_row;

static int by_time(const void *a, const void *b) {
    const prof_row *x = a, *y = b;
    return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : 0;
}

/* What instruction I runs, its first result's shape and its dialect, for the report. */
static void prof_label(const kiln_program *p, const vm_instr *I, const char **what, char *shape, size_t size, const char **dia) {
    const vm_code *c = p->main;
    *what = I->op == VM_GEN ? p->gen_funcs[I->gen]->name : I->node ? kiln_op_info_get(I->node->op)->name : "copy";
    shape[0] = 0;
    if (I->n_out) kiln_shape_str(c->slots[I->out[0]].ndim, c->slots[I->out[0]].shape, shape, size);
    *dia = I->node && I->node->impl ? kiln_dialect_name(I->node->impl->dialect) : "";
}

/* Instructions i and j do the same work: one op (or one generated kernel's code) on one shape
 * in one dialect, e.g. a layer's matmul and the next layer's. */
static bool prof_same(const kiln_program *p, const vm_instr *I, const vm_instr *J) {
    if (I->op != J->op || (I->op == VM_GEN ? strcmp(p->gens[I->gen].symbol, p->gens[J->gen].symbol) != 0
                                            : (!I->node) != (!J->node) || (I->node && (I->node->op != J->node->op ||
                                                                                      I->node->impl != J->node->impl))))
        return false;
    const vm_slot *a = I->n_out ? &p->main->slots[I->out[0]] : NULL, *b = J->n_out ? &p->main->slots[J->out[0]] : NULL;
    return (!a) == (!b) && (!a || (a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof *a->shape * (size_t)a->ndim)));
}

static void prof_print(const kiln_program *p, const prof_row *rows, int n, double total, const char *title) {
    fprintf(stderr, "%s\n", title);
    for (int i = 0; i < n && i < 30; i++) {
        const char *what, *dia;
        char shape[160], calls[24] = "";
        prof_label(p, &p->main->instr[rows[i].pc], &what, shape, sizeof shape, &dia);
        if (rows[i].calls > 1) snprintf(calls, sizeof calls, " x%d", rows[i].calls);
        fprintf(stderr, "%9.3f ms %5.1f%%  %5d %-28s %s%s %s%s\n", rows[i].ns * 1e-6, 100 * rows[i].ns / (total ? total : 1),
                rows[i].pc, what, shape, calls, *dia ? "# " : "", dia);
    }
}

void kiln_vm_profile_report(const kiln_program *p) {
    const vm_code *c = p->main;
    if (!p->profile_ns || !p->profile_runs) return;
    int64_t runs = p->profile_runs > 1 ? p->profile_runs - 1 : 1;
    prof_row *rows = malloc(sizeof *rows * 2 * (size_t)(c->n_instr ? c->n_instr : 1)), *ops = rows + c->n_instr;
    if (!rows) return;
    double total = 0;
    int n_ops = 0;
    for (int i = 0; i < c->n_instr; i++) {
        rows[i] = (prof_row){p->profile_ns[i] / (double)runs, i, 1};
        total += rows[i].ns;
        int k = 0; /* quadratic in the distinct ops, which are few next to the instructions */
        while (k < n_ops && !prof_same(p, &c->instr[ops[k].pc], &c->instr[i])) k++;
        if (k == n_ops) ops[n_ops++] = (prof_row){0, i, 0};
        ops[k].ns += rows[i].ns, ops[k].calls++;
    }
    double by_kind[3] = {0}; /* library / generated / built-in and the rest */
    for (int i = 0; i < c->n_instr; i++) {
        const vm_instr *I = &c->instr[i];
        by_kind[I->op == VM_GEN ? 1 : I->node && I->node->impl ? 0 : 2] += rows[i].ns;
    }
    qsort(rows, (size_t)c->n_instr, sizeof *rows, by_time);
    qsort(ops, (size_t)n_ops, sizeof *ops, by_time);
    fprintf(stderr, "---- KILN_PROFILE @%s: %.3f ms per run (%lld runs after the first) ----\n", c->f->name, total * 1e-6,
            (long long)runs);
    fprintf(stderr, "library kernels %.3f ms, generated kernels %.3f ms, built-in kernels and the rest %.3f ms\n",
            by_kind[0] * 1e-6, by_kind[1] * 1e-6, by_kind[2] * 1e-6);
    prof_print(p, ops, n_ops, total, "by op (the same op, kernel code and shape summed; xN instructions, the first's number):");
    prof_print(p, rows, c->n_instr, total, "slowest instructions:");
    free(rows);
}
