/* attention.c — fused scaled-dot-product attention: shape rules of attention, attention_forward
 * and attention_backward, their reference kernels (blocks of query rows through kiln_gemm, never
 * a [Tq, Tk] buffer: the backward recomputes the probabilities from the saved log-sum-exp), and
 * attention's decomposition into attention_forward. */
#include "ops/attention.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_QB 64 /* query rows per block: the kernels' scratch is [ATTN_QB, Tk] */

double kiln_attention_scale(kiln_op op, const kiln_attr *attrs, int64_t d) {
    const kiln_attr *s = kiln_attr_get(op, attrs, "scale");
    return s->set ? s->f : d > 0 ? 1 / sqrt((double)d) : 1;
}

kiln_var *kiln_attention_build(kiln_builder *b, kiln_op op, const kiln_node *n, int n_in, kiln_var *const *in) {
    const kiln_attr *s = kiln_attr_get(n->op, n->attrs, "scale");
    char scale[64] = "";
    if (s->set) snprintf(scale, sizeof scale, ", scale=%.17g", s->f);
    return kiln_build(b, op, n_in, in, "causal=%s%s", kiln_attr_bool(n->op, n->attrs, "causal") ? "true" : "false", scale);
}

/* ---- shape rules -------------------------------------------------------------------------- */
/* Checks q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] (one float dtype, equal leading dims);
 * returns the type of out [..., Tq, Dv] (NULL with the error set). */
static const kiln_type *qkv_check(kiln_shape_args *a) {
    static const char *const names[3] = {"q", "k", "v"};
    char tq[256], tk[256], tv[256];
    const kiln_type *q = a->in[0], *k = a->in[1], *v = a->in[2];
    for (int i = 0; i < 3; i++) {
        const kiln_type *t = a->in[i];
        if (t->kind != KILN_TYPE_TENSOR || t->ndim < 2)
            return kiln_op_fail(a, "%s is %s, expected a tensor [..., T, D]", names[i], kiln_type_cstr(t, tq, sizeof tq));
        if (t->dtype != q->dtype)
            return kiln_op_fail(a, "q, k and v must have one dtype, got q %s and %s %s", kiln_type_cstr(q, tq, sizeof tq),
                                names[i], kiln_type_cstr(t, tk, sizeof tk));
    }
    int nd = q->ndim;
    bool ok = k->ndim == nd && v->ndim == nd && k->shape[nd - 1] == q->shape[nd - 1] && v->shape[nd - 2] == k->shape[nd - 2];
    for (int i = 0; ok && i < nd - 2; i++) ok = k->shape[i] == q->shape[i] && v->shape[i] == q->shape[i];
    if (!ok)
        return kiln_op_fail(a, "expected q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with equal leading dims, got q %s, k %s, v %s",
                            kiln_type_cstr(q, tq, sizeof tq), kiln_type_cstr(k, tk, sizeof tk), kiln_type_cstr(v, tv, sizeof tv));
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, q->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 1] = v->shape[nd - 1];
    const kiln_type *t = kiln_type_tensor_a(a->arena, q->dtype, nd, shape);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* The log-sum-exp's type for output type o: [..., Tq] in the compute dtype (f64 or f32). */
static const kiln_type *lse_type(kiln_shape_args *a, const kiln_type *o) {
    const kiln_type *t = kiln_type_tensor_a(a->arena, kiln_acc_dtype(o->dtype), o->ndim - 1, o->shape);
    return t ? t : kiln_op_fail(a, "out of memory");
}

const struct kiln_type *kiln_shape_attention(kiln_shape_args *a) { return qkv_check(a); }

const struct kiln_type *kiln_shape_attention_forward(kiln_shape_args *a) {
    const kiln_type *parts[2] = {qkv_check(a), NULL};
    if (!parts[0] || !(parts[1] = lse_type(a, parts[0]))) return NULL;
    const kiln_type *t = kiln_type_tuple_a(a->arena, 2, parts);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* (q, k, v, out, lse, dout, dlse?) -> (dq, dk, dv): out and dout typed as the forward's out,
 * lse and dlse as its log-sum-exp. */
const struct kiln_type *kiln_shape_attention_backward(kiln_shape_args *a) {
    static const char *const names[7] = {"q", "k", "v", "out", "lse", "dout", "dlse"};
    char ta[256], tb[256];
    const kiln_type *o = qkv_check(a), *l = o ? lse_type(a, o) : NULL;
    if (!l) return NULL;
    for (int i = 3; i < a->n_in; i++) {
        const kiln_type *want = i == 4 || i == 6 ? l : o;
        if (!kiln_type_equal(a->in[i], want))
            return kiln_op_fail(a, "%s is %s, expected %s", names[i], kiln_type_cstr(a->in[i], ta, sizeof ta),
                                kiln_type_cstr(want, tb, sizeof tb));
    }
    const kiln_type *t = kiln_type_tuple_a(a->arena, 3, a->in);
    return t ? t : kiln_op_fail(a, "out of memory");
}

/* ---- reference kernels -------------------------------------------------------------------- */
typedef struct attn_dims {
    int64_t batch, tq, tk, d, dv;
    bool causal;
    double scale;
} attn_dims;

static attn_dims attn_dims_of(const kiln_kernel_args *a) {
    const kiln_tensor *q = a->in[0], *v = a->in[2];
    int nd = q->ndim;
    attn_dims g = {.batch = kiln_shape_numel(nd - 2, q->shape), .tq = q->shape[nd - 2], .tk = a->in[1]->shape[nd - 2],
                   .d = q->shape[nd - 1], .dv = v->shape[nd - 1], .causal = kiln_attr_bool(a->op, a->attrs, "causal")};
    g.scale = kiln_attention_scale(a->op, a->attrs, g.d);
    return g;
}

/* Keys a block of query rows ending before row `end` reads: causal rows i see keys j <= i. */
static int64_t key_end(const attn_dims *g, int64_t end) { return g->causal && end < g->tk ? end : g->tk; }

/* Tensors seen in the compute dtype: inputs converted into scratch copies where their dtype
 * differs, outputs written to scratch copies that acc_finish converts back. */
typedef struct acc_views {
    kiln_dtype acc;
    int n;
    kiln_tensor *t[8];
    void *own[8];
    bool oom;
} acc_views;

static void *acc_view(acc_views *v, kiln_tensor *t, bool convert) {
    void *own, *p = kiln_data_as(t, v->acc, convert, &own);
    v->t[v->n] = t;
    v->own[v->n++] = own;
    v->oom |= !p;
    return p;
}

/* Stores the scratch copies of views [first_out, n) into their tensors (when `store`) and frees
 * every scratch copy. */
static void acc_finish(acc_views *v, int first_out, bool store) {
    for (int i = 0; i < v->n; i++) {
        if (store && i >= first_out && v->own[i]) kiln_convert(v->t[i]->dtype, v->t[i]->data, v->acc, v->own[i], v->t[i]->numel);
        free(v->own[i]);
    }
}

/* Per compute type T (float, double):
 * probs: P[r, j] = exp(scale * q_i.k_j - lse_i) for the `rows` query rows i = i0 + r of one batch
 *   entry and keys j < kend, 0 where masked; with lse_out, lse_i = log sum_j exp(scale * q_i.k_j)
 *   is computed first (shifted by the row's maximum) into lse_out (which is lse then).
 * forward: out = P v, block by block.
 * backward (out = P v, P = softmax(S), S = scale q k^T): dP = dout v^T, dS = P * (dP - delta) with
 *   delta_i = dout_i.out_i - dlse_i (the softmax's and the log-sum-exp's adjoints), dq = scale dS k,
 *   dk = scale dS^T q, dv = P^T dout; dk and dv accumulate over the query blocks. */
#define ATTN_DEFINE(T, DT, EXP, LOG)                                                                                   \
    static void probs_##T(const attn_dims *g, kiln_attention_gemm gemm, const T *q, const T *k, int64_t i0,          \
                          int64_t rows, int64_t kend, const T *lse, T *lse_out, T *p) {                                \
        gemm(DT, rows, kend, g->d, q, g->d, 1, k, 1, g->d, p, kend);                                                   \
        for (int64_t r = 0; r < rows; r++) {                                                                           \
            T *pr = p + r * kend;                                                                                      \
            int64_t n = g->causal && i0 + r + 1 < kend ? i0 + r + 1 : kend; /* keys row i0 + r sees */                 \
            T m = -(T)INFINITY, l = 0;                                                                                 \
            for (int64_t j = 0; j < n; j++) {                                                                          \
                pr[j] *= (T)g->scale;                                                                                  \
                m = pr[j] > m ? pr[j] : m;                                                                             \
            }                                                                                                          \
            if (lse_out) {                                                                                             \
                for (int64_t j = 0; j < n; j++) l += EXP(pr[j] - m);                                                   \
                lse_out[r] = n ? m + LOG(l) : -(T)INFINITY;                                                            \
            }                                                                                                          \
            for (int64_t j = 0; j < kend; j++) pr[j] = j < n ? EXP(pr[j] - lse[r]) : 0;                                \
        }                                                                                                              \
    }                                                                                                                  \
    static void forward_##T(const attn_dims *g, kiln_attention_gemm gemm, const T *q, const T *k, const T *v, T *out,  \
                            T *lse, T *p) {                                                                            \
        for (int64_t b = 0; b < g->batch; b++)                                                                         \
            for (int64_t i0 = 0; i0 < g->tq; i0 += ATTN_QB) {                                                          \
                int64_t rows = g->tq - i0 < ATTN_QB ? g->tq - i0 : ATTN_QB, kend = key_end(g, i0 + rows);              \
                int64_t row = b * g->tq + i0;                                                                          \
                probs_##T(g, gemm, q + row * g->d, k + b * g->tk * g->d, i0, rows, kend, lse + row, lse + row, p);     \
                gemm(DT, rows, g->dv, kend, p, kend, 1, v + b * g->tk * g->dv, g->dv, 1, out + row * g->dv, g->dv);   \
            }                                                                                                          \
    }                                                                                                                  \
    static void backward_##T(const attn_dims *g, kiln_attention_gemm gemm, const T *q, const T *k, const T *v,         \
                             const T *out, const T *lse, const T *dout, const T *dlse, T *dq, T *dk, T *dv, T *p,      \
                             T *dp, T *tmp) {                                                                          \
        memset(dk, 0, sizeof(T) * (size_t)(g->batch * g->tk * g->d));                                                  \
        memset(dv, 0, sizeof(T) * (size_t)(g->batch * g->tk * g->dv));                                                 \
        for (int64_t b = 0; b < g->batch; b++) {                                                                       \
            const T *kb = k + b * g->tk * g->d, *vb = v + b * g->tk * g->dv;                                           \
            T *dkb = dk + b * g->tk * g->d, *dvb = dv + b * g->tk * g->dv;                                             \
            for (int64_t i0 = 0; i0 < g->tq; i0 += ATTN_QB) {                                                          \
                int64_t rows = g->tq - i0 < ATTN_QB ? g->tq - i0 : ATTN_QB, kend = key_end(g, i0 + rows);              \
                int64_t row = b * g->tq + i0;                                                                          \
                const T *qi = q + row * g->d, *doi = dout + row * g->dv;                                               \
                probs_##T(g, gemm, qi, kb, i0, rows, kend, lse + row, NULL, p);                                        \
                gemm(DT, rows, kend, g->dv, doi, g->dv, 1, vb, 1, g->dv, dp, kend); /* dP = dout v^T */               \
                for (int64_t r = 0; r < rows; r++) {                                                                   \
                    T delta = dlse ? -dlse[row + r] : 0;                                                               \
                    for (int64_t c = 0; c < g->dv; c++) delta += doi[r * g->dv + c] * out[(row + r) * g->dv + c];      \
                    for (int64_t j = 0; j < kend; j++)                                                                 \
                        dp[r * kend + j] = p[r * kend + j] * (dp[r * kend + j] - delta) * (T)g->scale;                 \
                }                                                                                                      \
                gemm(DT, rows, g->d, kend, dp, kend, 1, kb, g->d, 1, dq + row * g->d, g->d); /* dq = dS k */          \
                gemm(DT, kend, g->d, rows, dp, 1, kend, qi, g->d, 1, tmp, g->d);              /* dS^T q */             \
                for (int64_t e = 0; e < kend * g->d; e++) dkb[e] += tmp[e];                                            \
                gemm(DT, kend, g->dv, rows, p, 1, kend, doi, g->dv, 1, tmp, g->dv);           /* P^T dout */           \
                for (int64_t e = 0; e < kend * g->dv; e++) dvb[e] += tmp[e];                                           \
            }                                                                                                          \
        }                                                                                                              \
    }
ATTN_DEFINE(float, KILN_F32, expf, logf)
ATTN_DEFINE(double, KILN_F64, exp, log)

kiln_status kiln_attention_forward_with(kiln_kernel_args *a, kiln_attention_gemm gemm) {
    attn_dims g = attn_dims_of(a);
    acc_views v = {.acc = a->out[1]->dtype};
    void *q = acc_view(&v, a->in[0], true), *k = acc_view(&v, a->in[1], true), *val = acc_view(&v, a->in[2], true);
    void *out = acc_view(&v, a->out[0], false), *p = malloc(kiln_dtype_size(v.acc) * (size_t)(ATTN_QB * g.tk) + 1);
    bool ok = !v.oom && p;
    if (ok && v.acc == KILN_F64) forward_double(&g, gemm, q, k, val, out, a->out[1]->data, p);
    else if (ok) forward_float(&g, gemm, q, k, val, out, a->out[1]->data, p);
    acc_finish(&v, 3, ok);
    free(p);
    return ok ? KILN_OK : kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for the scratch of %lld x %lld keys", (long long)g.batch, (long long)g.tk);
}

kiln_status kiln_attention_backward_with(kiln_kernel_args *a, kiln_attention_gemm gemm) {
    attn_dims g = attn_dims_of(a);
    acc_views v = {.acc = a->in[4]->dtype};
    void *in[4], *grads[3];
    for (int i = 0; i < 4; i++) in[i] = acc_view(&v, a->in[i == 3 ? 5 : i], true); /* q, k, v, dout */
    void *out = acc_view(&v, a->in[3], true);
    for (int i = 0; i < 3; i++) grads[i] = acc_view(&v, a->out[i], false);
    size_t es = kiln_dtype_size(v.acc);
    int64_t width = g.d > g.dv ? g.d : g.dv;
    void *p = malloc(es * (size_t)(ATTN_QB * g.tk) + 1), *dp = malloc(es * (size_t)(ATTN_QB * g.tk) + 1),
         *tmp = malloc(es * (size_t)(g.tk * width) + 1);
    bool ok = !v.oom && p && dp && tmp;
    const void *lse = a->in[4]->data, *dlse = a->n_in > 6 ? a->in[6]->data : NULL;
    if (ok && v.acc == KILN_F64)
        backward_double(&g, gemm, in[0], in[1], in[2], out, lse, in[3], dlse, grads[0], grads[1], grads[2], p, dp, tmp);
    else if (ok)
        backward_float(&g, gemm, in[0], in[1], in[2], out, lse, in[3], dlse, grads[0], grads[1], grads[2], p, dp, tmp);
    acc_finish(&v, 5, ok);
    free(p);
    free(dp);
    free(tmp);
    return ok ? KILN_OK : kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for the scratch of %lld x %lld keys", (long long)g.batch, (long long)g.tk);
}

kiln_status kiln_ref_attention_forward(kiln_kernel_args *a) { return kiln_attention_forward_with(a, kiln_gemm); }
kiln_status kiln_ref_attention_backward(kiln_kernel_args *a) { return kiln_attention_backward_with(a, kiln_gemm); }

/* ---- decomposition ------------------------------------------------------------------------ */
/* attention = get(attention_forward(q, k, v), 0): autodiff and the dialects see the primitive. */
kiln_var *kiln_decompose_attention(kiln_builder *b, const kiln_node *n, kiln_var *const *in) {
    kiln_var *r = kiln_attention_build(b, KILN_OP_ATTENTION_FORWARD, n, 3, in);
    return r ? kiln_build(b, KILN_OP_GET, 1, &r, "index=0") : NULL;
}
