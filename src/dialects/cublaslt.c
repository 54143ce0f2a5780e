/* cublaslt.c — the "cublaslt" dialect: matmul, batch_matmul and dense (bias as the GEMM's
 * epilogue) in f32 (TF32 per kiln_cuda_tf32), f16 and bf16, through the backend's gemm (cuBLASLt). */
#include "dialects/cuda_dialect.h"
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

/* dense(x [.., k], w [n, k], b [n]?) = x @ w^T (+ b): one GEMM over the rows of x, the bias as
 * its epilogue (the form the epilogue patterns extend: set g->epilogue / aux afterwards). */
static void dense_desc(kiln_dtype dt, int nx, const int64_t *sx, const int64_t *sw, bool bias, kiln_gemm_desc *g) {
    memset(g, 0, sizeof *g);
    g->dtype = dt, g->tf32 = dt == KILN_F32 && kiln_cuda_tf32(), g->alpha = 1, g->trans_b = true;
    g->m = kiln_shape_numel(nx - 1, sx), g->n = sw[0], g->k = sw[1];
    g->lda = g->k, g->ldb = g->k, g->ldc = g->n, g->batch = 1;
    g->stride_a = g->m * g->k, g->stride_b = g->n * g->k, g->stride_c = g->m * g->n;
    g->epilogue = bias ? KILN_EPI_BIAS : KILN_EPI_NONE;
}

/* ---- supports ---------------------------------------------------------------------------------- */
/* Every input a tensor of the result's dtype, f32 / f16 / bf16. */
static bool gemm_dtypes(const kiln_node *n) {
    const kiln_type *o = n->out->type;
    if (!o || o->kind != KILN_TYPE_TENSOR || (o->dtype != KILN_F32 && o->dtype != KILN_F16 && o->dtype != KILN_BF16)) return false;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->type->kind != KILN_TYPE_TENSOR || n->in[i]->type->dtype != o->dtype) return false;
    return true;
}

static bool mm_supports(const kiln_node *n) { return gemm_dtypes(n); }

/* An empty contraction with a bias (rows = the bias) is left to the host. */
static bool dense_supports(const kiln_node *n) { return gemm_dtypes(n) && (n->n_in < 3 || n->in[1]->type->shape[1] > 0); }

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
    dense_desc(y->dtype, x->ndim, x->shape, w->shape, a->n_in > 2, &g);
    if (!g.m || !g.n || !g.k) return empty_gemm(a, e, y); /* k == 0 has no bias (supports) */
    g.a = x->data, g.b = w->data, g.c = y->data, g.bias = a->n_in > 2 ? a->in[2]->data : NULL;
    return run_gemm(a, e, &g);
}

/* ---- registry ---------------------------------------------------------------------------------- */
static const kiln_dialect_impl matmul_impl = {KILN_OP_MATMUL, KILN_DIALECT_CUBLASLT, 10, mm_supports, cublaslt_matmul};
static const kiln_dialect_impl batch_matmul_impl = {KILN_OP_BATCH_MATMUL, KILN_DIALECT_CUBLASLT, 10, mm_supports, cublaslt_matmul};
static const kiln_dialect_impl dense_impl = {KILN_OP_DENSE, KILN_DIALECT_CUBLASLT, 10, dense_supports, cublaslt_dense};

const kiln_dialect_impl *const kiln_cublaslt_impls[] = {&matmul_impl, &batch_matmul_impl, &dense_impl, NULL};
