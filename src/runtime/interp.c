/* interp.c — the interpreter: runs IR functions op by op on the CPU reference kernels,
 * control flow and calls included; composite ops run through their decomposition. It also
 * backs eager single-op execution (kiln_op_run). */
#include "ir/lexer.h"
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>

typedef struct frame {
    kiln_context *ctx;
    kiln_function *f;
    kiln_value *env; /* by var id */
    int depth;
} frame;

static kiln_status run_function(kiln_context *ctx, kiln_function *f, int n_in, const kiln_value *in,
                                kiln_value *out, int depth);

/* ---- liveness: after which node each variable can be released ----------------------------- */
/* Marks in `last` every variable used inside region r (and regions nested in it) as last used
 * at node `at`. */
static void mark_uses(kiln_region *r, kiln_node **last, kiln_node *at) {
    for (kiln_node *n = r->first; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL) last[n->in[i]->id] = at;
        for (int k = 0; k < n->n_regions; k++) mark_uses(n->regions[k], last, at);
    }
    for (int i = 0; i < r->n_results; i++)
        if (r->results[i]->kind != KILN_VAR_LITERAL) last[r->results[i]->id] = at;
}

static kiln_status plan_region(kiln_region *r, kiln_node **last) {
    kiln_module *m = r->func->module;
    for (kiln_node *n = r->first; n; n = n->next) last[n->out->id] = n; /* unused: dies at once */
    for (kiln_node *n = r->first; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->kind != KILN_VAR_LITERAL) last[n->in[i]->id] = n;
        for (int k = 0; k < n->n_regions; k++) mark_uses(n->regions[k], last, n);
    }
    for (int i = 0; i < r->n_results; i++)
        if (r->results[i]->kind != KILN_VAR_LITERAL) last[r->results[i]->id] = NULL; /* kept */
    for (kiln_node *n = r->first; n; n = n->next) n->n_dead = 0;
    for (kiln_node *n = r->first; n; n = n->next)
        if (last[n->out->id]) last[n->out->id]->n_dead++;
    for (kiln_node *n = r->first; n; n = n->next) {
        n->dead = kiln_arena_alloc(&m->arena, sizeof *n->dead * (size_t)(n->n_dead ? n->n_dead : 1));
        if (!n->dead) return kiln_error(m->ctx, KILN_ERR_OOM, "out of memory");
        n->n_dead = 0;
    }
    for (kiln_node *n = r->first; n; n = n->next) {
        kiln_node *d = last[n->out->id];
        if (d) d->dead[d->n_dead++] = n->out;
    }
    for (kiln_node *n = r->first; n; n = n->next)
        for (int k = 0; k < n->n_regions; k++)
            if (plan_region(n->regions[k], last)) return KILN_ERR_OOM;
    return KILN_OK;
}

static kiln_status plan_function(kiln_function *f) {
    if (f->liveness_ready) return KILN_OK;
    kiln_node **last = calloc((size_t)(f->n_vars ? f->n_vars : 1), sizeof *last);
    if (!last) return kiln_error(f->module->ctx, KILN_ERR_OOM, "out of memory");
    kiln_status s = plan_region(f->body, last);
    free(last);
    if (!s) f->liveness_ready = true;
    return s;
}

/* ---- values ------------------------------------------------------------------------------ */
static kiln_value lookup(frame *fr, const kiln_var *v) {
    if (v->kind == KILN_VAR_LITERAL) {
        if (v->type->dtype == KILN_I64) return kiln_value_int(v->lit.i);
        if (v->type->dtype == KILN_F64) return kiln_value_float(v->lit.f);
        return kiln_value_bool(v->lit.b);
    }
    return fr->env[v->id];
}

static void bind(frame *fr, const kiln_var *v, kiln_value val) {
    kiln_value_release(fr->env[v->id]);
    fr->env[v->id] = val;
}

/* A scalar as a 0-d tensor of its natural dtype (int -> i64, float -> f64, bool -> bool). */
static kiln_tensor *scalar_tensor(kiln_context *ctx, kiln_value v) {
    kiln_dtype dt = v.kind == KILN_VALUE_INT ? KILN_I64 : v.kind == KILN_VALUE_FLOAT ? KILN_F64 : KILN_BOOL;
    kiln_tensor *t = kiln_tensor_new(ctx, dt, 0, NULL);
    if (!t) return NULL;
    if (v.kind == KILN_VALUE_INT) *(int64_t *)t->data = v.i;
    else if (v.kind == KILN_VALUE_FLOAT) *(double *)t->data = v.f;
    else *(uint8_t *)t->data = v.b;
    return t;
}

static kiln_value tensor_scalar(const kiln_tensor *t) {
    if (t->dtype == KILN_I64) return kiln_value_int(*(int64_t *)t->data);
    if (t->dtype == KILN_F64) return kiln_value_float(*(double *)t->data);
    return kiln_value_bool(*(uint8_t *)t->data != 0);
}

/* Checks that a runtime value has type t (inputs of kiln_function_run). */
static bool value_matches(kiln_value v, const kiln_type *t) {
    switch (t->kind) {
    case KILN_TYPE_SCALAR:
        return (t->dtype == KILN_I64 && v.kind == KILN_VALUE_INT) || (t->dtype == KILN_F64 && v.kind == KILN_VALUE_FLOAT) ||
               (t->dtype == KILN_BOOL && v.kind == KILN_VALUE_BOOL);
    case KILN_TYPE_TENSOR:
        return v.kind == KILN_VALUE_TENSOR && v.tensor->dtype == t->dtype && v.tensor->ndim == t->ndim &&
               (!t->ndim || !memcmp(v.tensor->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim));
    case KILN_TYPE_LIST: /* held as a tuple of any length */
        if (v.kind != KILN_VALUE_TUPLE) return false;
        for (int i = 0; i < v.tuple->n; i++)
            if (!value_matches(v.tuple->items[i], t->elems[0])) return false;
        return true;
    case KILN_TYPE_TUPLE:
        if (v.kind != KILN_VALUE_TUPLE || v.tuple->n != t->n_elems) return false;
        for (int i = 0; i < t->n_elems; i++)
            if (!value_matches(v.tuple->items[i], t->elems[i])) return false;
        return true;
    }
    return false;
}

static void value_describe(kiln_value v, char *buf, size_t size) {
    char sb[160];
    switch (v.kind) {
    case KILN_VALUE_TENSOR:
        snprintf(buf, size, "%s%s", kiln_dtype_name(v.tensor->dtype), kiln_shape_str(v.tensor->ndim, v.tensor->shape, sb, sizeof sb));
        break;
    case KILN_VALUE_INT: snprintf(buf, size, "int"); break;
    case KILN_VALUE_FLOAT: snprintf(buf, size, "float"); break;
    case KILN_VALUE_BOOL: snprintf(buf, size, "bool"); break;
    case KILN_VALUE_TUPLE: snprintf(buf, size, "tuple of %d", v.tuple->n); break;
    default: snprintf(buf, size, "none"); break;
    }
}

/* ---- regions and nodes ------------------------------------------------------------------- */
static kiln_status run_region(frame *fr, kiln_region *r, kiln_value *out);

/* A tuple of the values of vars (kept out of line: its array must not sit on the recursive path). */
__attribute__((noinline)) static kiln_status make_tuple(frame *fr, int n, kiln_var *const *vars, kiln_value *out) {
    kiln_value small[16], *items = KILN_SCRATCH(small, n);
    if (!items) return kiln_error(fr->ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++) items[i] = lookup(fr, vars[i]);
    *out = kiln_value_tuple(fr->ctx, n, items);
    kiln_scratch_free(items, small);
    return out->kind == KILN_VALUE_NONE ? KILN_ERR_OOM : KILN_OK;
}

/* A region's yield: one value is itself, several a tuple. */
static kiln_status region_result(frame *fr, int n, kiln_var *const *vars, kiln_value *out) {
    if (n == 1) {
        *out = kiln_value_retain(lookup(fr, vars[0]));
        return KILN_OK;
    }
    return make_tuple(fr, n, vars, out);
}

static bool truth(kiln_value v) {
    if (v.kind == KILN_VALUE_BOOL) return v.b;
    return *(uint8_t *)v.tensor->data != 0;
}

static kiln_status run_if(frame *fr, kiln_node *n, kiln_value *out) {
    return run_region(fr, n->regions[truth(lookup(fr, n->in[0])) ? 0 : 1], out);
}

static kiln_status run_while(frame *fr, kiln_node *n, kiln_value *out) {
    for (int i = 0; i < n->n_loop; i++) bind(fr, n->loop[i], kiln_value_retain(lookup(fr, n->in[i])));
    for (;;) {
        kiln_value c;
        if (run_region(fr, n->regions[0], &c)) return kiln_error_status(fr->ctx);
        bool go = truth(c);
        kiln_value_release(c);
        if (!go) break;
        kiln_value next;
        if (run_region(fr, n->regions[1], &next)) return kiln_error_status(fr->ctx);
        if (n->n_loop == 1) {
            bind(fr, n->loop[0], next);
        } else {
            for (int i = 0; i < n->n_loop; i++) bind(fr, n->loop[i], kiln_value_retain(next.tuple->items[i]));
            kiln_value_release(next);
        }
    }
    kiln_status s = region_result(fr, n->n_loop, n->loop, out);
    for (int i = 0; i < n->n_loop; i++) bind(fr, n->loop[i], (kiln_value){.kind = KILN_VALUE_NONE});
    return s;
}

/* Calls recurse through the C stack, so this path keeps its frames small (no big locals). */
static kiln_status run_call(frame *fr, kiln_node *n, kiln_function *callee, kiln_value *out) {
    kiln_value *args = malloc(sizeof *args * (size_t)(n->n_in ? n->n_in : 1));
    if (!args) return kiln_error(fr->ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < n->n_in; i++) args[i] = lookup(fr, n->in[i]);
    kiln_status s = run_function(fr->ctx, callee, n->n_in, args, out, fr->depth + 1);
    free(args);
    return s;
}

/* Builds (once) the decomposition of a composite node as a detached function of its inputs. */
static kiln_status expand(kiln_node *n) {
    if (n->expansion) return KILN_OK;
    kiln_module *m = n->parent->func->module;
    const kiln_op_info *info = kiln_op_info_get(n->op);
    char name[96], where[256], a[256], b[256];
    snprintf(name, sizeof name, "%s.expansion", info->name);
    kiln_function *g = kiln_function_detached(m, name);
    if (!g) return kiln_error_status(m->ctx);
    for (int i = 0; i < n->n_in; i++)
        if (!kiln_function_param(g, NULL, (kiln_type *)n->in[i]->type)) return kiln_error_status(m->ctx);
    kiln_builder bl = {g->body, NULL, n->line, n->col};
    kiln_var *r = info->decompose(&bl, n, g->params);
    if (!r) return kiln_error_status(m->ctx) ? kiln_error_status(m->ctx)
                                              : kiln_error(m->ctx, KILN_ERR_INTERNAL, "op '%s' at %s: decomposition failed",
                                                           info->name, kiln_node_where(n, where, sizeof where));
    if (kiln_region_yield(g->body, 1, &r)) return kiln_error_status(m->ctx);
    g->ret = r->type;
    g->infer_state = 2;
    if (!kiln_type_equal(r->type, n->out->type))
        return kiln_error(m->ctx, KILN_ERR_INTERNAL, "op '%s' at %s: decomposition yields %s, the shape rule says %s",
                          info->name, kiln_node_where(n, where, sizeof where), kiln_type_cstr(r->type, a, sizeof a),
                          kiln_type_cstr(n->out->type, b, sizeof b));
    n->expansion = g;
    return KILN_OK;
}

/* Allocates the outputs a kernel fills: one per tensor/scalar, tuples flattened one level. */
static int alloc_outputs(kiln_context *ctx, const kiln_type *t, kiln_tensor **outs, int max) {
    if (t->kind == KILN_TYPE_TUPLE) {
        if (t->n_elems > max) return -1;
        for (int i = 0; i < t->n_elems; i++)
            if (alloc_outputs(ctx, t->elems[i], outs + i, 1) != 1) {
                for (int j = 0; j < i; j++) kiln_tensor_release(outs[j]);
                return -1;
            }
        return t->n_elems;
    }
    if (t->kind == KILN_TYPE_SCALAR) outs[0] = kiln_tensor_new(ctx, t->dtype, 0, NULL);
    else outs[0] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
    return outs[0] ? 1 : -1;
}

static kiln_value output_value(const kiln_type *t, kiln_tensor *o) {
    if (t->kind == KILN_TYPE_SCALAR) {
        kiln_value v = tensor_scalar(o);
        kiln_tensor_release(o);
        return v;
    }
    return kiln_value_tensor(o);
}

/* Inputs (variadic: concatenate) and outputs (split: a part each) can be many: scratch arrays. */
__attribute__((noinline)) static kiln_status run_kernel(frame *fr, kiln_node *n, kiln_value *out) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    kiln_context *ctx = fr->ctx;
    char where[256];
    const kiln_type *ot = n->out->type;
    int max_out = ot->kind == KILN_TYPE_TUPLE ? ot->n_elems : 1;
    kiln_tensor *ins_s[8], *outs_s[8], **ins = KILN_SCRATCH(ins_s, n->n_in), **outs = KILN_SCRATCH(outs_s, max_out);
    bool owned_s[8], *owned = KILN_SCRATCH(owned_s, n->n_in);
    kiln_value items_s[8], *items = KILN_SCRATCH(items_s, max_out);
    kiln_status s = KILN_OK;
    int n_made = 0;
    if (!ins || !outs || !owned || !items) {
        s = kiln_error(ctx, KILN_ERR_OOM, "out of memory running op '%s'", info->name);
        goto done;
    }
    for (int i = 0; i < n->n_in; i++, n_made++) {
        kiln_value v = lookup(fr, n->in[i]);
        owned[i] = v.kind != KILN_VALUE_TENSOR;
        if (v.kind == KILN_VALUE_TENSOR) ins[i] = v.tensor;
        else if (v.kind == KILN_VALUE_TUPLE || !(ins[i] = scalar_tensor(ctx, v))) {
            s = v.kind == KILN_VALUE_TUPLE ? kiln_error(ctx, KILN_ERR_INTERNAL, "op '%s': tuple input", info->name) : KILN_ERR_OOM;
            goto done;
        }
    }
    int n_out = alloc_outputs(ctx, n->out->type, outs, max_out);
    if (n_out < 0) {
        s = kiln_error_status(ctx) ? kiln_error_status(ctx) : kiln_error(ctx, KILN_ERR_UNSUPPORTED, "op '%s': too many outputs", info->name);
        goto done;
    }
    kiln_kernel_args a = {ctx, n->op, n->attrs, n->n_in, ins, n_out, outs, kiln_node_where(n, where, sizeof where)};
    s = info->kernel(&a);
    if (s) {
        for (int i = 0; i < n_out; i++) kiln_tensor_release(outs[i]);
        goto done;
    }
    if (n->out->type->kind == KILN_TYPE_TUPLE) {
        for (int i = 0; i < n_out; i++) items[i] = output_value(n->out->type->elems[i], outs[i]);
        *out = kiln_value_tuple(ctx, n_out, items);
        for (int i = 0; i < n_out; i++) kiln_value_release(items[i]);
        if (out->kind == KILN_VALUE_NONE) s = KILN_ERR_OOM;
    } else {
        *out = output_value(n->out->type, outs[0]);
    }
done:
    for (int i = 0; i < n_made; i++)
        if (owned[i]) kiln_tensor_release(ins[i]);
    kiln_scratch_free(ins, ins_s);
    kiln_scratch_free(outs, outs_s);
    kiln_scratch_free(owned, owned_s);
    kiln_scratch_free(items, items_s);
    return s;
}

/* list_push copies the items and appends; list_pop returns (the list without its last item,
 * that item). Values are immutable, so lists share their items. */
__attribute__((noinline)) static kiln_status run_list(frame *fr, kiln_node *n, kiln_value *out) {
    kiln_value l = lookup(fr, n->in[0]);
    int len = l.tuple->n;
    char where[256];
    if (n->op == KILN_OP_LIST_POP && len == 0)
        return kiln_error(fr->ctx, KILN_ERR_VALUE, "op 'list_pop' at %s: the list is empty", kiln_node_where(n, where, sizeof where));
    int keep = n->op == KILN_OP_LIST_PUSH ? len : len - 1;
    kiln_value *items = malloc(sizeof *items * (size_t)(keep + 1));
    if (!items) return kiln_error(fr->ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < keep; i++) items[i] = l.tuple->items[i];
    if (n->op == KILN_OP_LIST_PUSH) items[keep++] = lookup(fr, n->in[1]);
    kiln_value list = kiln_value_tuple(fr->ctx, keep, items);
    free(items);
    if (list.kind == KILN_VALUE_NONE) return KILN_ERR_OOM;
    if (n->op == KILN_OP_LIST_PUSH) {
        *out = list;
        return KILN_OK;
    }
    kiln_value pair[2] = {list, l.tuple->items[len - 1]};
    *out = kiln_value_tuple(fr->ctx, 2, pair);
    kiln_value_release(list);
    return out->kind == KILN_VALUE_NONE ? KILN_ERR_OOM : KILN_OK;
}

static kiln_status run_node(frame *fr, kiln_node *n, kiln_value *out) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    switch (n->op) {
    case KILN_OP_TUPLE: return make_tuple(fr, n->n_in, n->in, out);
    case KILN_OP_GET:
        *out = kiln_value_retain(kiln_value_tuple_get(lookup(fr, n->in[0]), (int)n->attrs[0].i));
        return KILN_OK;
    case KILN_OP_CONSTANT:
        *out = kiln_value_tensor(kiln_tensor_retain(n->attrs[0].tensor));
        return KILN_OK;
    case KILN_OP_LIST_NEW:
        *out = kiln_value_tuple(fr->ctx, 0, NULL);
        return out->kind == KILN_VALUE_NONE ? KILN_ERR_OOM : KILN_OK;
    case KILN_OP_LIST_PUSH:
    case KILN_OP_LIST_POP: return run_list(fr, n, out);
    case KILN_OP_LIST_LENGTH:
        *out = kiln_value_int(lookup(fr, n->in[0]).tuple->n);
        return KILN_OK;
    case KILN_OP_IF: return run_if(fr, n, out);
    case KILN_OP_WHILE: return run_while(fr, n, out);
    case KILN_OP_CALL: return run_call(fr, n, n->callee, out);
    default: break;
    }
    if (info->flags & F_COMPOSITE) {
        if (expand(n)) return kiln_error_status(fr->ctx);
        return run_call(fr, n, n->expansion, out);
    }
    return run_kernel(fr, n, out);
}

static kiln_status run_region(frame *fr, kiln_region *r, kiln_value *out) {
    for (kiln_node *n = r->first; n; n = n->next) {
        kiln_value v = {.kind = KILN_VALUE_NONE};
        if (run_node(fr, n, &v)) return kiln_error_status(fr->ctx);
        bind(fr, n->out, v);
        for (int i = 0; i < n->n_dead; i++) bind(fr, n->dead[i], (kiln_value){.kind = KILN_VALUE_NONE});
    }
    return region_result(fr, r->n_results, r->results, out);
}

static kiln_status run_function(kiln_context *ctx, kiln_function *f, int n_in, const kiln_value *in,
                                kiln_value *out, int depth) {
    if (depth > ctx->call_depth_limit)
        return kiln_error(ctx, KILN_ERR_VALUE, "@%s: call depth exceeds %d (unbounded recursion?)", f->name,
                          ctx->call_depth_limit);
    if (plan_function(f)) return kiln_error_status(ctx);
    frame fr = {ctx, f, calloc((size_t)(f->n_vars ? f->n_vars : 1), sizeof(kiln_value)), depth};
    if (!fr.env) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < n_in; i++) fr.env[f->params[i]->id] = kiln_value_retain(in[i]);
    kiln_status s = run_region(&fr, f->body, out);
    for (int i = 0; i < f->n_vars; i++) kiln_value_release(fr.env[i]);
    free(fr.env);
    return s;
}

/* The first tensor of v that is not on the CPU (the interpreter's kernels read host memory). */
static const kiln_tensor *off_host(kiln_value v) {
    if (v.kind == KILN_VALUE_TENSOR) return v.tensor->device.type == KILN_DEVICE_CPU ? NULL : v.tensor;
    if (v.kind == KILN_VALUE_TUPLE)
        for (int i = 0; i < v.tuple->n; i++) {
            const kiln_tensor *t = off_host(v.tuple->items[i]);
            if (t) return t;
        }
    return NULL;
}

static kiln_status require_host(kiln_context *ctx, const char *what, int n_in, const kiln_value *in) {
    for (int i = 0; i < n_in; i++) {
        const kiln_tensor *t = off_host(in[i]);
        if (t) {
            char d[32];
            return kiln_error(ctx, KILN_ERR_UNSUPPORTED,
                              "%s: input %d is on %s; the interpreter runs on the CPU (copy it with to('cpu'), or "
                              "compile for the device)", what, i, kiln_device_str(t->device, d, sizeof d));
        }
    }
    return KILN_OK;
}

kiln_status kiln_function_run(kiln_function *f, int n_in, const kiln_value *in, kiln_value *out) {
    kiln_context *ctx = f->module->ctx;
    out->kind = KILN_VALUE_NONE;
    if (f->infer_state != 2 && kiln_module_infer(f->module)) return kiln_error_status(ctx);
    if (n_in != f->n_params)
        return kiln_error(ctx, KILN_ERR_VALUE, "@%s takes %d inputs, got %d", f->name, f->n_params, n_in);
    for (int i = 0; i < n_in; i++)
        if (!value_matches(in[i], f->params[i]->type)) {
            char want[256], got[256];
            value_describe(in[i], got, sizeof got);
            return kiln_error(ctx, KILN_ERR_VALUE, "@%s: input %d (%%%s) must be %s, got %s", f->name, i,
                              f->params[i]->name ? f->params[i]->name : "?",
                              kiln_type_cstr(f->params[i]->type, want, sizeof want), got);
        }
    char what[300];
    snprintf(what, sizeof what, "@%s", f->name);
    if (require_host(ctx, what, n_in, in)) return kiln_error_status(ctx);
    if (run_function(ctx, f, n_in, in, out, 0)) return kiln_error_status(ctx);
    if (kiln_vm_check_enabled() && kiln_vm_check(f, n_in, in, *out)) {
        kiln_value_release(*out);
        out->kind = KILN_VALUE_NONE;
        return kiln_error_status(ctx);
    }
    return KILN_OK;
}

/* ---- eager ------------------------------------------------------------------------------- */
static const kiln_type *value_type(kiln_arena *a, kiln_value v) {
    switch (v.kind) {
    case KILN_VALUE_TENSOR: return kiln_type_tensor_a(a, v.tensor->dtype, v.tensor->ndim, v.tensor->shape);
    case KILN_VALUE_INT: return kiln_type_scalar(a, KILN_I64);
    case KILN_VALUE_FLOAT: return kiln_type_scalar(a, KILN_F64);
    case KILN_VALUE_BOOL: return kiln_type_scalar(a, KILN_BOOL);
    case KILN_VALUE_TUPLE: { /* elements in the arena: no array on the recursive path */
        kiln_type *t = kiln_arena_alloc(a, sizeof *t);
        const kiln_type **ts = kiln_arena_alloc(a, sizeof *ts * (size_t)(v.tuple->n ? v.tuple->n : 1));
        if (!t || !ts || v.tuple->n > KILN_MAX_VALUES) return NULL;
        for (int i = 0; i < v.tuple->n; i++)
            if (!(ts[i] = value_type(a, v.tuple->items[i]))) return NULL;
        t->kind = KILN_TYPE_TUPLE;
        t->n_elems = v.tuple->n;
        t->elems = ts;
        return t;
    }
    default: return NULL;
    }
}

kiln_status kiln_op_run(kiln_context *ctx, const char *op, int n_in, const kiln_value *in, const char *attrs,
                        kiln_value *out) {
    out->kind = KILN_VALUE_NONE;
    char what[120];
    snprintf(what, sizeof what, "op '%s'", op ? op : "?");
    if (n_in > 0 && n_in <= KILN_MAX_VALUES && require_host(ctx, what, n_in, in)) return kiln_error_status(ctx);
    kiln_module *m = kiln_module_new(ctx);
    if (!m) return kiln_error_status(ctx);
    m->filename = "eager";
    kiln_status s = KILN_OK;
    kiln_function *f = kiln_function_new(m, "eager");
    if (!f) goto fail;
    if (n_in > KILN_MAX_VALUES || n_in < 0) {
        s = kiln_error(ctx, KILN_ERR_VALUE, "op '%s': %d inputs", op ? op : "?", n_in);
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        const kiln_type *t = value_type(&m->arena, in[i]);
        if (!t) {
            s = kiln_error(ctx, KILN_ERR_VALUE, "op '%s': input %d is not a value", op ? op : "?", i);
            goto done;
        }
        if (!kiln_function_param(f, NULL, (kiln_type *)t)) goto fail;
    }
    kiln_var *r = kiln_emit(f->body, op, n_in, f->params, attrs);
    if (!r || kiln_region_yield(f->body, 1, &r)) goto fail;
    f->ret = r->type;
    f->infer_state = 2;
    s = run_function(ctx, f, n_in, in, out, 0);
    goto done;
fail:
    s = kiln_error_status(ctx) ? kiln_error_status(ctx) : KILN_ERR_INTERNAL;
done:
    kiln_module_free(m);
    return s;
}
