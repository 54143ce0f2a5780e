/* cublaslt.c — the "cublaslt" dialect: matmul, batch_matmul, dense (bias as the GEMM's epilogue)
 * and gemm_epilogue (relu / gelu / their backward / bias gradient as cuBLASLt epilogues) in f32
 * (TF32 per kiln_cuda_tf32), f16 and bf16, through the backend's gemm (cuBLASLt). */
#include "dialects/cuda_dialect.h"
#include "ops/epilogue.h"
#include "ops/layout.h"
#include <string.h>

/* ---- geometry: one strided-batched GEMM, repeated over any batch dims it cannot stride -------- */
/* matmul(a, b) with numpy semantics as matmul.c: a 1-D a is a row [1, K], a 1-D b a column [K, 1];
 * transposes apply to matrices only; batch dims broadcast. Batch dims of size 1 drop out, and
 * neighbours that step evenly through a, b and c merge; the innermost becomes the GEMM's batch
 * (stride 0 for an operand broadcast along it), the rest are looped over. When b is one matrix
 * shared by every batch and a is not transposed, a's matrices stack into one GEMM of nmat * m rows. */
typedef struct mm_geom {
    kiln_gemm_desc g;                      /* sizes, leading dims, batch and strides; no pointers */
    int nloop;                             /* outer batch dims, looped */
    int64_t loop[KILN_MAX_DIMS], loop_a[KILN_MAX_DIMS], loop_b[KILN_MAX_DIMS], loop_c[KILN_MAX_DIMS]; /* element strides */
} mm_geom;

static void mm_geom_make(kiln_dtype dt, int na, const int64_t *sa, int nb, const int64_t *sb, const int64_t *out, bool ta,
                         bool tb, mm_geom *p) {
    memset(p, 0, sizeof *p);
    kiln_gemm_desc *g = &p->g;
    g->dtype = dt, g->tf32 = dt == KILN_F32 && kiln_cuda_tf32(), g->alpha = 1, g->epilogue = KILN_EPI_NONE;
    g->trans_a = na > 1 && ta, g->trans_b = nb > 1 && tb;
    if (na == 1) g->m = 1, g->k = sa[0], g->lda = sa[0];
    else g->m = sa[na - (g->trans_a ? 1 : 2)], g->k = sa[na - (g->trans_a ? 2 : 1)], g->lda = sa[na - 1];
    if (nb == 1) g->n = 1, g->ldb = 1;
    else g->n = sb[nb - (g->trans_b ? 2 : 1)], g->ldb = sb[nb - 1];
    int nbatch = (na > nb ? na : nb) - 2;
    if (nbatch < 0) nbatch = 0;
    /* per batch dim: size and strides in matrices of a, b, c */
    int64_t stra[KILN_MAX_DIMS], strb[KILN_MAX_DIMS], strc[KILN_MAX_DIMS];
    kiln_broadcast_strides(na > 2 ? na - 2 : 0, sa, nbatch, out, stra);
    kiln_broadcast_strides(nb > 2 ? nb - 2 : 0, sb, nbatch, out, strb);
    kiln_contig_strides(nbatch, out, strc);
    int64_t nmat = kiln_shape_numel(nbatch, out);
    bool b_shared = true;
    for (int d = 0; d < nbatch; d++) b_shared = b_shared && strb[d] == 0;
    if (b_shared && !g->trans_a && na > 1 && kiln_shape_numel(na - 2, sa) == nmat) g->m *= nmat, nbatch = 0;
    /* merge: dims (outer, inner) join when outer's strides are inner's times its size */
    int64_t size[KILN_MAX_DIMS], ma[KILN_MAX_DIMS], mb[KILN_MAX_DIMS], mc[KILN_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < nbatch; d++) {
        if (out[d] == 1) continue;
        if (nd && ma[nd - 1] == stra[d] * out[d] && mb[nd - 1] == strb[d] * out[d] && mc[nd - 1] == strc[d] * out[d]) {
            size[nd - 1] *= out[d], ma[nd - 1] = stra[d], mb[nd - 1] = strb[d], mc[nd - 1] = strc[d];
            continue;
        }
        size[nd] = out[d], ma[nd] = stra[d], mb[nd] = strb[d], mc[nd] = strc[d];
        nd++;
    }
    int64_t mat_a = g->m * g->k, mat_b = g->k * g->n, mat_c = g->m * g->n;
    g->ldc = g->n, g->batch = 1, g->stride_a = mat_a, g->stride_b = mat_b, g->stride_c = mat_c;
    if (nd) {
        nd--;
        g->batch = size[nd], g->stride_a = ma[nd] * mat_a, g->stride_b = mb[nd] * mat_b, g->stride_c = mc[nd] * mat_c;
    }
    p->nloop = nd;
    for (int d = 0; d < nd; d++)
        p->loop[d] = size[d], p->loop_a[d] = ma[d] * mat_a, p->loop_b[d] = mb[d] * mat_b, p->loop_c[d] = mc[d] * mat_c;
}

/* op(a) @ op(b) as one GEMM over rows: a [.., k] (its leading dims folded into the rows) or, with
 * ta, a 2-D [k, m]; b 2-D [k, n], or [n, k] with tb. dense(x, w, b?) is a = x, b = w with tb and
 * the bias as the epilogue; gemm_epilogue sets its epilogue's fields afterwards. No epilogue here. */
static void rows_desc(kiln_dtype dt, int na, const int64_t *sa, bool ta, const int64_t *sb, bool tb, kiln_gemm_desc *g) {
    memset(g, 0, sizeof *g);
    g->dtype = dt, g->tf32 = dt == KILN_F32 && kiln_cuda_tf32(), g->alpha = 1, g->trans_a = ta, g->trans_b = tb;
    g->m = ta ? sa[1] : kiln_shape_numel(na - 1, sa), g->k = ta ? sa[0] : sa[na - 1], g->n = tb ? sb[0] : sb[1];
    g->lda = sa[na - 1], g->ldb = sb[1], g->ldc = g->n, g->batch = 1;
    g->stride_a = g->m * g->k, g->stride_b = g->n * g->k, g->stride_c = g->m * g->n;
    g->epilogue = KILN_EPI_NONE;
}

/* ---- supports ---------------------------------------------------------------------------------- */
/* Every input a tensor of the result's dtype (that of its first element for a tuple), f32 / f16 /
 * bf16. */
static bool gemm_dtypes(const kiln_node *n) {
    const kiln_type *o = n->out->type;
    if (o && o->kind == KILN_TYPE_TUPLE && o->n_elems > 0) o = o->elems[0];
    if (!o || o->kind != KILN_TYPE_TENSOR || (o->dtype != KILN_F32 && o->dtype != KILN_F16 && o->dtype != KILN_BF16)) return false;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->type->kind != KILN_TYPE_TENSOR || n->in[i]->type->dtype != o->dtype) return false;
    return true;
}

static bool mm_supports(const kiln_node *n) { return gemm_dtypes(n); }

/* An empty contraction with a bias (rows = the bias) is left to the host. */
static bool dense_supports(const kiln_node *n) { return gemm_dtypes(n) && (n->n_in < 3 || n->in[1]->type->shape[1] > 0); }

/* What cuBLASLt does: no empty dims; an aux matrix (gelu_aux writes it, dgelu reads it) with
 * ld_aux = n, which cuBLASLt wants a multiple of 8; bgrad with transpose_a only (the weight
 * gradient dW = dY^T X; without it cuBLASLt may have no kernel). Otherwise the decomposition runs. */
static bool epilogue_supports(const kiln_node *n) {
    if (!gemm_dtypes(n)) return false;
    const kiln_type *x = n->in[0]->type, *w = n->in[1]->type;
    kiln_epilogue e = kiln_epilogue_of(n->attrs);
    kiln_gemm_desc g;
    rows_desc(x->dtype, x->ndim, x->shape, kiln_attr_bool(n->op, n->attrs, "transpose_a"), w->shape,
              kiln_attr_bool(n->op, n->attrs, "transpose_b"), &g);
    if (!g.m || !g.n || !g.k || e == KILN_EPILOGUE_COUNT) return false;
    if ((e == KILN_EPILOGUE_GELU_AUX || e == KILN_EPILOGUE_DGELU) && g.n % 8) return false;
    return e != KILN_EPILOGUE_BGRAD || g.trans_a;
}

/* ---- kernels ----------------------------------------------------------------------------------- */
static kiln_status run_gemm(kiln_kernel_args *a, const kiln_cuda_exec *e, const kiln_gemm_desc *g) {
    return e->be->gemm(e->dev, g) ? kiln_cuda_fail(a, e, "cuBLASLt gemm") : KILN_OK;
}

/* An empty contraction (k == 0) gives zeros; an empty result, nothing. */
static kiln_status empty_gemm(kiln_kernel_args *a, const kiln_cuda_exec *e, kiln_tensor *y) {
    size_t n = kiln_tensor_nbytes(y);
    return n && e->be->memset_d(e->dev, y->data, 0, n) ? kiln_cuda_fail(a, e, "memset") : KILN_OK;
}

static kiln_status cublaslt_matmul(kiln_kernel_args *a) {
    const kiln_cuda_exec *e = kiln_cuda_exec_for(a);
    if (!e) return kiln_error_status(a->ctx);
    const kiln_tensor *x = a->in[0], *w = a->in[1];
    kiln_tensor *y = a->out[0];
    mm_geom p;
    mm_geom_make(y->dtype, x->ndim, x->shape, w->ndim, w->shape, y->shape, kiln_attr_bool(a->op, a->attrs, "transpose_a"),
                 kiln_attr_bool(a->op, a->attrs, "transpose_b"), &p);
    if (!p.g.m || !p.g.n || !p.g.k) return empty_gemm(a, e, y);
    size_t es = kiln_dtype_size(y->dtype);
    int64_t idx[KILN_MAX_DIMS] = {0}, oa = 0, ob = 0, oc = 0;
    for (;;) { /* odometer over the looped batch dims, keeping each operand's element offset */
        p.g.a = (const char *)x->data + (size_t)oa * es, p.g.b = (const char *)w->data + (size_t)ob * es;
        p.g.c = (char *)y->data + (size_t)oc * es;
        kiln_status s = run_gemm(a, e, &p.g);
        if (s) return s;
        int d = p.nloop - 1;
        for (; d >= 0; d--) {
            oa += p.loop_a[d], ob += p.loop_b[d], oc += p.loop_c[d];
            if (++idx[d] < p.loop[d]) break;
            oa -= p.loop_a[d] * p.loop[d], ob -= p.loop_b[d] * p.loop[d], oc -= p.loop_c[d] * p.loop[d];
            idx[d] = 0;
        }
        if (d < 0) return KILN_OK;
    }
}

static kiln_status cublaslt_dense(kiln_kernel_args *a) {
    const kiln_cuda_exec *e = kiln_cuda_exec_for(a);
    if (!e) return kiln_error_status(a->ctx);
    const kiln_tensor *x = a->in[0], *w = a->in[1];
    kiln_tensor *y = a->out[0];
    kiln_gemm_desc g;
    rows_desc(y->dtype, x->ndim, x->shape, false, w->shape, true, &g);
    if (!g.m || !g.n || !g.k) return empty_gemm(a, e, y); /* k == 0 has no bias (supports) */
    g.a = x->data, g.b = w->data, g.c = y->data, g.bias = a->n_in > 2 ? a->in[2]->data : NULL;
    g.epilogue = g.bias ? KILN_EPI_BIAS : KILN_EPI_NONE;
    return run_gemm(a, e, &g);
}

/* gemm_epilogue (ops/epilogue.h): operand 2 is the bias of the forward forms (the backend takes
 * relu / gelu with or without one) and dgelu's aux; the second result is gelu_aux's aux or
 * bgrad's bias gradient. Aux matrices are [m, n], contiguous: ld_aux = n. */
static kiln_status cublaslt_gemm_epilogue(kiln_kernel_args *a) {
    static const kiln_gemm_epilogue lt[KILN_EPILOGUE_COUNT] = {KILN_EPI_RELU, KILN_EPI_GELU, KILN_EPI_GELU_AUX,
                                                              KILN_EPI_DGELU, KILN_EPI_BGRAD};
    const kiln_cuda_exec *e = kiln_cuda_exec_for(a);
    if (!e) return kiln_error_status(a->ctx);
    kiln_epilogue epi = kiln_epilogue_of(a->attrs);
    const kiln_tensor *x = a->in[0], *w = a->in[1], *c = a->n_in > 2 ? a->in[2] : NULL;
    kiln_gemm_desc g;
    rows_desc(a->out[0]->dtype, x->ndim, x->shape, kiln_attr_bool(a->op, a->attrs, "transpose_a"), w->shape,
              kiln_attr_bool(a->op, a->attrs, "transpose_b"), &g);
    g.epilogue = lt[epi];
    g.a = x->data, g.b = w->data, g.c = a->out[0]->data, g.ld_aux = g.n;
    g.bias = c && epi != KILN_EPILOGUE_DGELU ? c->data : NULL;
    g.aux = epi == KILN_EPILOGUE_GELU_AUX ? a->out[1]->data : epi == KILN_EPILOGUE_DGELU ? c->data : NULL;
    g.bias_grad = epi == KILN_EPILOGUE_BGRAD ? a->out[1]->data : NULL;
    return run_gemm(a, e, &g);
}

/* ---- registry ---------------------------------------------------------------------------------- */
static const kiln_dialect_impl matmul_impl = {KILN_OP_MATMUL, KILN_DIALECT_CUBLASLT, 10, mm_supports, cublaslt_matmul};
static const kiln_dialect_impl batch_matmul_impl = {KILN_OP_BATCH_MATMUL, KILN_DIALECT_CUBLASLT, 10, mm_supports, cublaslt_matmul};
static const kiln_dialect_impl dense_impl = {KILN_OP_DENSE, KILN_DIALECT_CUBLASLT, 10, dense_supports, cublaslt_dense};
static const kiln_dialect_impl epilogue_impl = {KILN_OP_GEMM_EPILOGUE, KILN_DIALECT_CUBLASLT, 10, epilogue_supports,
                                                cublaslt_gemm_epilogue};

const kiln_dialect_impl *const kiln_cublaslt_impls[] = {&matmul_impl, &batch_matmul_impl, &dense_impl, &epilogue_impl, NULL};
