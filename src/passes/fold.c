/* fold.c — constant folding: a node whose inputs are all literals or `constant` nodes runs its
 * reference kernel at compile time and becomes a constant (a literal for scalars, a tuple of
 * them for tuples); a get of a tuple node is the element. Growth of the IR is bounded. */
#include "compiler/compiler.h"
#include "passes/rewrite.h"

/* Results above this many elements fold only when they are no larger than their inputs (a
 * full or broadcast must not bloat the IR). */
#define FOLD_MAX_NEW_ELEMS 65536

static void release_tensor(void *t) { kiln_tensor_release(t); }

/* A literal operand as the 0-d tensor a kernel receives (int -> i64, float -> f64, bool). */
static kiln_tensor *literal_tensor(kiln_context *ctx, const kiln_var *v) {
    kiln_tensor *t = kiln_tensor_new(ctx, v->type->dtype, 0, NULL);
    if (!t) return NULL;
    if (v->type->dtype == KILN_I64) *(int64_t *)t->data = v->lit.i;
    else if (v->type->dtype == KILN_F64) *(double *)t->data = v->lit.f;
    else *(uint8_t *)t->data = v->lit.b;
    return t;
}

static int64_t type_elems(const kiln_type *t) {
    if (t->kind == KILN_TYPE_SCALAR) return 1;
    if (t->kind == KILN_TYPE_TENSOR) return kiln_shape_numel(t->ndim, t->shape);
    int64_t n = 0;
    for (int i = 0; i < t->n_elems; i++) n += type_elems(t->elems[i]);
    return n;
}

/* Whether n can run now: a kernel without randomness or side effects, every input known, and
 * a result of tensors / scalars (one tuple level) that does not blow up the IR. */
static bool foldable(const kiln_node *n) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    const kiln_type *t = n->out->type;
    if (!info->kernel || (info->flags & (F_RANDOM | F_SIDE)) || !t || t->kind == KILN_TYPE_LIST) return false;
    if (t->kind == KILN_TYPE_TUPLE) {
        for (int i = 0; i < t->n_elems; i++)
            if (t->elems[i]->kind != KILN_TYPE_TENSOR && t->elems[i]->kind != KILN_TYPE_SCALAR) return false;
    }
    int64_t in_elems = 0;
    for (int i = 0; i < n->n_in; i++) {
        const kiln_var *v = n->in[i];
        if (v->kind != KILN_VAR_LITERAL && !kiln_rewrite_def(v, KILN_OP_CONSTANT)) return false;
        in_elems += type_elems(v->type);
    }
    int64_t out_elems = type_elems(t);
    return out_elems >= 0 && (out_elems <= FOLD_MAX_NEW_ELEMS || out_elems <= in_elems);
}

/* A kernel output as a value in the IR: a literal for a scalar, else a constant node before n
 * that takes over the tensor. NULL on failure (t released). */
static kiln_var *materialize(kiln_node *n, const kiln_type *type, kiln_tensor *t) {
    kiln_module *m = n->parent->func->module;
    if (type->kind == KILN_TYPE_SCALAR) {
        kiln_var *v = type->dtype == KILN_I64   ? kiln_lit_int(m, *(int64_t *)t->data)
                      : type->dtype == KILN_F64 ? kiln_lit_float(m, *(double *)t->data)
                                                : kiln_lit_bool(m, *(uint8_t *)t->data != 0);
        kiln_tensor_release(t);
        return v;
    }
    if (!kiln_arena_on_free(&m->arena, release_tensor, t)) {
        kiln_tensor_release(t);
        kiln_error(m->ctx, KILN_ERR_OOM, "fold: out of memory");
        return NULL;
    }
    kiln_node *c = kiln_node_new(n->parent, KILN_OP_CONSTANT, 0, NULL);
    if (!c) return NULL;
    c->attrs[0] = (kiln_attr){.set = true, .tensor = t};
    c->line = n->line;
    c->col = n->col;
    kiln_region_insert_before(n->parent, n, c);
    if (kiln_node_infer(c)) return NULL;
    return c->out;
}

/* Runs n's kernel on its known inputs. *v: the value (NULL when the kernel refused: the node
 * stays and fails at run time as it would have). */
static kiln_status evaluate(kiln_node *n, kiln_var **v) {
    const kiln_op_info *info = kiln_op_info_get(n->op);
    kiln_context *ctx = n->parent->func->module->ctx;
    const kiln_type *t = n->out->type;
    bool tuple = t->kind == KILN_TYPE_TUPLE;
    int n_out = tuple ? t->n_elems : 1;
    kiln_tensor *ins_s[8], *outs_s[8], **ins = KILN_SCRATCH(ins_s, n->n_in), **outs = KILN_SCRATCH(outs_s, n_out);
    kiln_var *vals_s[8], **vals = KILN_SCRATCH(vals_s, n_out);
    bool owned_s[8], *owned = KILN_SCRATCH(owned_s, n->n_in);
    char where[256];
    kiln_status s = KILN_OK;
    *v = NULL;
    if (!ins || !outs || !vals || !owned) goto fail;
    for (int i = 0; i < n->n_in; i++) {
        owned[i] = n->in[i]->kind == KILN_VAR_LITERAL;
        ins[i] = owned[i] ? literal_tensor(ctx, n->in[i]) : n->in[i]->def->attrs[0].tensor;
        if (!ins[i]) goto fail;
    }
    for (int j = 0; j < n_out; j++) {
        const kiln_type *e = tuple ? t->elems[j] : t;
        if (!(outs[j] = kiln_tensor_new(ctx, e->dtype, e->kind == KILN_TYPE_SCALAR ? 0 : e->ndim, e->shape))) goto fail;
    }
    kiln_kernel_args a = {ctx, n->op, n->attrs, n->n_in, ins, n_out, outs, kiln_node_where(n, where, sizeof where)};
    if (info->kernel(&a)) {
        kiln_error_clear(ctx);
        goto done;
    }
    for (int j = 0; j < n_out; j++) {
        vals[j] = materialize(n, tuple ? t->elems[j] : t, outs[j]);
        outs[j] = NULL; /* taken over (or released) */
        if (!vals[j]) goto fail;
    }
    kiln_builder b = {n->parent, n, n->line, n->col};
    *v = tuple ? kiln_build(&b, KILN_OP_TUPLE, n_out, vals, NULL) : vals[0];
    if (!*v) goto fail;
    goto done;
fail:
    s = kiln_error_status(ctx) ? kiln_error_status(ctx) : kiln_error(ctx, KILN_ERR_OOM, "fold: out of memory");
done:
    for (int j = 0; outs && j < n_out; j++) kiln_tensor_release(outs[j]);
    for (int i = 0; ins && owned && i < n->n_in; i++) /* zeroed scratch: unset entries are NULL / false */
        if (owned[i]) kiln_tensor_release(ins[i]);
    kiln_scratch_free(ins, ins_s);
    kiln_scratch_free(outs, outs_s);
    kiln_scratch_free(vals, vals_s);
    kiln_scratch_free(owned, owned_s);
    return s;
}

static kiln_status fold_visit(kiln_rewriter *rw, kiln_node *n) {
    kiln_node *tup = n->op == KILN_OP_GET ? kiln_rewrite_def(n->in[0], KILN_OP_TUPLE) : NULL;
    if (tup) return kiln_rewrite_replace(rw, n, tup->in[n->attrs[0].i]);
    if (!foldable(n)) return KILN_OK;
    kiln_var *v;
    if (evaluate(n, &v)) return kiln_error_status(rw->ctx);
    if (!v) return KILN_OK;
    if (v->kind == KILN_VAR_RESULT && !v->name) v->name = n->out->name; /* keep the binding's name */
    return kiln_rewrite_replace(rw, n, v);
}

kiln_status kiln_pass_fold(kiln_pass_ctx *pc, kiln_function *f) {
    (void)pc;
    static const kiln_rewrite_hooks hooks = {fold_visit, NULL, NULL};
    return kiln_rewrite_function(f, &hooks, NULL);
}
