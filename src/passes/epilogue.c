/* epilogue.c — the epilogue pass (runs when the cublaslt dialect is allowed and KILN_CUDA_EPILOGUES=1:
 * opt-in, since on an H100 in TF32 GPT-2's step measured 4 ms slower with it, docs/cuda.md): a
 * GEMM and what follows it become one gemm_epilogue (ops/epilogue.h), one cuBLASLt call:
 *   gelu(dense(x, w, b), tanh)        -> gelu; gelu_aux when the pre-activation has other readers
 *   relu(dense(x, w, b))              -> relu, when the pre-activation's other readers are all
 *                                        relu's backward masks greater(h, 0): they read relu(h) > 0
 *   gelu_backward(h, matmul(dy, w), tanh), the matmul read once   -> dgelu with aux h
 *   matmul(G, X, transpose_a) then sum(G, axes=[0]) (dense's weight and bias gradients) -> bgrad
 * A candidate the dialect refuses (dtype, empty dims, aux not a multiple of 8 wide) stays as it
 * was, and so does the erf gelu (cuBLASLt's is the tanh form). Nodes left unread go in dce. */
#include "compiler/compiler.h"
#include "dialects/cuda_dialect.h"
#include "ops/epilogue.h"
#include "passes/rewrite.h"
#include <stdlib.h>
#include <string.h>

/* What the first walk learns, by var id (ids below cap: those the function had before). */
typedef struct ep_state {
    int cap;
    int *reads;          /* node inputs and yields reading the var */
    int *masks;          /* readers greater(v, 0) */
    kiln_node **act;     /* dense result: its first reader relu or gelu(tanh) */
    kiln_node **wgrad;   /* G: its first reader matmul(G, X, transpose_a) with G and X 2-D */
    kiln_node **bgrad;   /* matmul result (a wgrad): the sum(G, axes=[0]) after it in its region */
    kiln_var **pending;  /* node result: the value replacing that node when the walk reaches it */
    kiln_var **relu_of;  /* relu pre-activation h: relu(h)'s replacement, for its masks to read */
} ep_state;

static bool known(const ep_state *st, const kiln_var *v) { return v->kind != KILN_VAR_LITERAL && v->id < st->cap; }

static bool is_zero(const kiln_var *v) {
    return v->kind == KILN_VAR_LITERAL && v->type->kind == KILN_TYPE_SCALAR &&
           (v->type->dtype == KILN_F64 ? v->lit.f == 0 : v->type->dtype == KILN_I64 && v->lit.i == 0);
}

static bool tanh_form(const kiln_node *n) { return !strcmp(kiln_attr_str(n->op, n->attrs, "approximate"), "tanh"); }

static bool is_2d(const kiln_var *v) { return v->type->kind == KILN_TYPE_TENSOR && v->type->ndim == 2; }

/* Operands gemm_epilogue's shape rule takes (so that building it cannot fail): tensors of one
 * dtype, the first at least 2-D. */
static bool gemm_operands(int n, kiln_var *const *in) {
    if (in[0]->type->kind != KILN_TYPE_TENSOR || in[0]->type->ndim < 2) return false;
    for (int i = 1; i < n; i++)
        if (in[i]->type->kind != KILN_TYPE_TENSOR || in[i]->type->dtype != in[0]->type->dtype) return false;
    return true;
}

/* matmul(G, X, transpose_a=true) of 2-D operands: a weight gradient dW = G^T X. */
static bool is_wgrad(const kiln_node *n) {
    return n->op == KILN_OP_MATMUL && kiln_attr_bool(n->op, n->attrs, "transpose_a") &&
           !kiln_attr_bool(n->op, n->attrs, "transpose_b") && is_2d(n->in[0]) && is_2d(n->in[1]);
}

/* sum(G, axes=[0]) of a 2-D G: the bias gradient beside it. */
static bool is_bias_sum(const kiln_node *n) {
    if (n->op != KILN_OP_SUM || !is_2d(n->in[0]) || kiln_attr_bool(n->op, n->attrs, "keepdims")) return false;
    const kiln_attr *ax = kiln_attr_get(n->op, n->attrs, "axes");
    return ax->set && ax->n == 1 && (ax->ints[0] == 0 || ax->ints[0] == -2);
}

/* ---- the first walk: readers ------------------------------------------------------------------ */
static kiln_status record(kiln_rewriter *rw, kiln_node *n) {
    ep_state *st = rw->user;
    for (int i = 0; i < n->n_in; i++) {
        kiln_var *v = n->in[i];
        if (!known(st, v)) continue;
        st->reads[v->id]++;
        if (i == 0 && n->op == KILN_OP_GREATER && is_zero(n->in[1])) st->masks[v->id]++;
    }
    kiln_var *x = n->n_in ? n->in[0] : NULL;
    if (!x || !known(st, x)) return KILN_OK;
    if ((n->op == KILN_OP_RELU || (n->op == KILN_OP_GELU && tanh_form(n))) && kiln_rewrite_def(x, KILN_OP_DENSE) &&
        !st->act[x->id])
        st->act[x->id] = n;
    if (is_wgrad(n) && !st->wgrad[x->id]) st->wgrad[x->id] = n;
    kiln_node *mm = st->wgrad[x->id];
    if (is_bias_sum(n) && mm && mm->parent == n->parent && known(st, mm->out) && !st->bgrad[mm->out->id])
        st->bgrad[mm->out->id] = n;
    return KILN_OK;
}

static void record_yield(kiln_rewriter *rw, kiln_region *r) {
    ep_state *st = rw->user;
    for (int i = 0; i < r->n_results; i++)
        if (known(st, r->results[i])) st->reads[r->results[i]->id]++;
}

/* ---- the second walk: rewrites ---------------------------------------------------------------- */
/* Whether the cublaslt dialect runs node n (its supports(): shapes and dtypes only, no GPU). */
static bool claimed(const kiln_node *n) {
    for (int i = 0; kiln_cublaslt_impls[i]; i++)
        if (kiln_cublaslt_impls[i]->op == n->op) return kiln_cublaslt_impls[i]->supports(n);
    return false;
}

/* gemm_epilogue(in..., epilogue=e) before `at`: its result, or NULL when the dialect refuses it
 * (the node is taken out again) or on error (set in ctx). */
static kiln_var *emit(kiln_node *at, kiln_epilogue e, int n_in, kiln_var *const *in, bool ta, bool tb, kiln_status *s) {
    kiln_builder b = {at->parent, at, at->line, at->col};
    kiln_var *t = kiln_build(&b, KILN_OP_GEMM_EPILOGUE, n_in, in, "epilogue=\"%s\", transpose_a=%s, transpose_b=%s",
                             kiln_epilogue_name(e), ta ? "true" : "false", tb ? "true" : "false");
    if (!t) {
        *s = kiln_error_status(at->parent->func->module->ctx);
        return NULL;
    }
    if (claimed(t->def)) return t;
    kiln_region_remove(at->parent, t->def);
    return NULL;
}

/* Element `index` of tuple t, built before `at`. */
static kiln_var *get(kiln_node *at, kiln_var *t, int index) {
    kiln_builder b = {at->parent, at, at->line, at->col};
    return kiln_build(&b, KILN_OP_GET, 1, &t, "index=%d", index);
}

/* dense d whose result h feeds act = relu(h) or gelu(h, tanh). */
static kiln_status fuse_activation(kiln_rewriter *rw, ep_state *st, kiln_node *d, kiln_node *act) {
    kiln_var *h = d->out;
    bool relu = act->op == KILN_OP_RELU, aux = !relu && st->reads[h->id] > 1;
    if ((relu && st->reads[h->id] != 1 + st->masks[h->id]) || !kiln_type_equal(act->out->type, h->type) ||
        !gemm_operands(d->n_in, d->in))
        return KILN_OK;
    kiln_status s = KILN_OK;
    kiln_epilogue e = relu ? KILN_EPILOGUE_RELU : aux ? KILN_EPILOGUE_GELU_AUX : KILN_EPILOGUE_GELU;
    kiln_var *t = emit(d, e, d->n_in, d->in, false, true, &s);
    if (!t) return s;
    kiln_var *y = aux ? get(d, t, 0) : t, *pre = aux ? get(d, t, 1) : NULL;
    if (!y || (aux && !pre)) return kiln_error_status(rw->ctx);
    st->pending[act->out->id] = y;
    if (relu) st->relu_of[h->id] = y; /* d stays, unread, for dce */
    return aux ? kiln_rewrite_replace(rw, d, pre) : KILN_OK;
}

/* n = gelu_backward(h, dz, tanh) with dz = matmul(a, b) read only here. */
static kiln_status fuse_dgelu(kiln_rewriter *rw, ep_state *st, kiln_node *n) {
    kiln_var *h = n->in[0], *dz = n->in[1];
    kiln_node *mm = kiln_rewrite_def(dz, KILN_OP_MATMUL);
    if (!tanh_form(n) || !mm || !known(st, dz) || st->reads[dz->id] != 1) return KILN_OK;
    kiln_var *a = mm->in[0], *b = mm->in[1];
    bool ta = kiln_attr_bool(mm->op, mm->attrs, "transpose_a"), tb = kiln_attr_bool(mm->op, mm->attrs, "transpose_b");
    if (!gemm_operands(3, (kiln_var *[]){a, b, h}) || (ta && !is_2d(a)) || !is_2d(b) || !kiln_type_equal(h->type, dz->type) ||
        !kiln_type_equal(n->out->type, dz->type))
        return KILN_OK;
    kiln_status s = KILN_OK;
    kiln_var *t = emit(n, KILN_EPILOGUE_DGELU, 3, (kiln_var *[]){a, b, h}, ta, tb, &s);
    return t ? kiln_rewrite_replace(rw, n, t) : s; /* mm stays, unread, for dce */
}

/* mm = matmul(G, X, transpose_a) with `sum` = sum(G, axes=[0]) later in its region. */
static kiln_status fuse_bgrad(kiln_rewriter *rw, ep_state *st, kiln_node *mm, kiln_node *sum) {
    kiln_var *g = mm->in[0], *x = mm->in[1];
    const kiln_type *bt = sum->out->type;
    if (!gemm_operands(2, mm->in) || bt->kind != KILN_TYPE_TENSOR || bt->dtype != g->type->dtype) return KILN_OK;
    kiln_status s = KILN_OK;
    kiln_var *t = emit(mm, KILN_EPILOGUE_BGRAD, 2, (kiln_var *[]){g, x}, true, false, &s);
    if (!t) return s;
    kiln_var *dw = get(mm, t, 0), *db = get(mm, t, 1);
    if (!dw || !db) return kiln_error_status(rw->ctx);
    st->pending[sum->out->id] = db;
    return kiln_rewrite_replace(rw, mm, dw);
}

static kiln_status rewrite(kiln_rewriter *rw, kiln_node *n) {
    ep_state *st = rw->user;
    if (!known(st, n->out)) return KILN_OK; /* built by this pass */
    int id = n->out->id;
    if (st->pending[id]) return kiln_rewrite_replace(rw, n, st->pending[id]);
    switch (n->op) {
    case KILN_OP_DENSE: return st->act[id] ? fuse_activation(rw, st, n, st->act[id]) : KILN_OK;
    case KILN_OP_GREATER:
        if (known(st, n->in[0]) && st->relu_of[n->in[0]->id] && is_zero(n->in[1])) n->in[0] = st->relu_of[n->in[0]->id];
        return KILN_OK;
    case KILN_OP_GELU_BACKWARD: return fuse_dgelu(rw, st, n);
    case KILN_OP_MATMUL: return st->bgrad[id] ? fuse_bgrad(rw, st, n, st->bgrad[id]) : KILN_OK;
    default: return KILN_OK;
    }
}

kiln_status kiln_pass_epilogue(kiln_pass_ctx *pc, kiln_function *f) {
    const char *on = getenv("KILN_CUDA_EPILOGUES");
    bool allowed = false;
    for (int i = 0; on && !strcmp(on, "1") && i < pc->n_dialects; i++) allowed |= pc->dialects[i] == KILN_DIALECT_CUBLASLT;
    if (!allowed) return KILN_OK;
    size_t n = (size_t)(f->n_vars ? f->n_vars : 1);
    ep_state st = {f->n_vars, calloc(n, sizeof(int)), calloc(n, sizeof(int)), calloc(n, sizeof(kiln_node *)),
                   calloc(n, sizeof(kiln_node *)), calloc(n, sizeof(kiln_node *)), calloc(n, sizeof(kiln_var *)),
                   calloc(n, sizeof(kiln_var *))};
    kiln_status s;
    if (!st.reads || !st.masks || !st.act || !st.wgrad || !st.bgrad || !st.pending || !st.relu_of)
        s = kiln_error(pc->ctx, KILN_ERR_OOM, "epilogue: out of memory for %d variables of @%s", f->n_vars, f->name);
    else if (!(s = kiln_rewrite_function(f, &(kiln_rewrite_hooks){record, NULL, record_yield}, &st)))
        s = kiln_rewrite_function(f, &(kiln_rewrite_hooks){rewrite, NULL, NULL}, &st);
    free(st.reads), free(st.masks), free(st.act), free(st.wgrad), free(st.bgrad), free(st.pending), free(st.relu_of);
    return s;
}
