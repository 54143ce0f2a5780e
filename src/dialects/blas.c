/* blas.c — the BLAS dialect: matmul through sgemm / dgemm; conv2d, its data gradient
 * (conv2d_transpose) and its weight gradient through im2col / col2im + sgemm; attention's forward
 * and backward through the CPU attention kernels over sgemm / dgemm. The CBLAS library
 * (OpenBLAS) is opened with dlopen at first use, so kiln never needs it to load. */
#include "dialects/conv_geom.h"
#include "dialects/dialect.h"
#include "ops/attention.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- the library ---------------------------------------------------------------------------- */
/* CBLAS's enum values (cblas.h): row-major order, no transpose, transpose. */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*dgemm_fn)(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                         const double *b, int ldb, double beta, double *c, int ldc);
static sgemm_fn blas_sgemm;
static dgemm_fn blas_dgemm;

bool kiln_blas_load(char *why, size_t why_size) {
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
    /* OpenBLAS's threads spin after each call and would take the cores from the OpenMP kernels
     * that run next: they sleep at once instead (read when the library loads) unless set */
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
    void *lib = NULL;
    for (size_t i = 0; !lib && i < sizeof names / sizeof names[0]; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, why_size, "%s not found (%s)", names[0], dlerror());
        return false;
    }
    /* dlsym returns void *; POSIX guarantees it converts to a function pointer */
    *(void **)&blas_sgemm = dlsym(lib, "cblas_sgemm");
    *(void **)&blas_dgemm = dlsym(lib, "cblas_dgemm");
    if (!blas_sgemm || !blas_dgemm) {
        snprintf(why, why_size, "%s lacks cblas_sgemm / cblas_dgemm", names[0]);
        blas_sgemm = NULL, blas_dgemm = NULL;
        dlclose(lib);
        return false;
    }
    return true; /* the library stays open for the life of the process */
}

/* C[m, n] = op(A) @ op(B) + beta * C, row-major, in f32 or f64. Every size is checked to fit an
 * int by supports(). */
static void gemm(kiln_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    int opa = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, opb = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (dt == KILN_F32)
        blas_sgemm(CBLAS_ROW_MAJOR, opa, opb, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
    else
        blas_dgemm(CBLAS_ROW_MAJOR, opa, opb, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static kiln_status not_loaded(kiln_kernel_args *a) {
    return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "the blas dialect's library is not loaded");
}

/* ---- matmul --------------------------------------------------------------------------------- */
/* matmul(a, b) as per-batch GEMMs, numpy semantics like the reference kernel (matmul.c): a 1-D a
 * is a row [1, K], a 1-D b a column [K, 1]; transposes apply to matrices only; batch dims
 * broadcast. The plan is read from shapes alone, so supports() and the kernel share it. */
typedef struct mm_plan {
    int64_t m, n, k, lda, ldb;
    bool ta, tb;
    int nbatch;                       /* batch dims of the result */
    int64_t batch[KILN_MAX_DIMS], stra[KILN_MAX_DIMS], strb[KILN_MAX_DIMS]; /* strides in matrices */
    int64_t nmat;                     /* product of batch */
} mm_plan;

static void mm_plan_make(int na, const int64_t *sa, int nb, const int64_t *sb, const int64_t *out, bool ta, bool tb,
                         mm_plan *p) {
    memset(p, 0, sizeof *p);
    p->ta = na > 1 && ta, p->tb = nb > 1 && tb;
    if (na == 1) p->m = 1, p->k = sa[0], p->lda = sa[0];
    else p->m = sa[na - (p->ta ? 1 : 2)], p->k = sa[na - (p->ta ? 2 : 1)], p->lda = sa[na - 1];
    if (nb == 1) p->n = 1, p->ldb = 1;
    else p->n = sb[nb - (p->tb ? 2 : 1)], p->ldb = sb[nb - 1];
    p->nbatch = (na > nb ? na : nb) - 2;
    if (p->nbatch < 0) p->nbatch = 0;
    memcpy(p->batch, out, sizeof(int64_t) * (size_t)p->nbatch);
    kiln_broadcast_strides(na > 2 ? na - 2 : 0, sa, p->nbatch, p->batch, p->stra);
    kiln_broadcast_strides(nb > 2 ? nb - 2 : 0, sb, p->nbatch, p->batch, p->strb);
    p->nmat = kiln_shape_numel(p->nbatch, p->batch);
    /* b shared by every batch and a's matrices stacked row-major: one GEMM with m * nmat rows */
    bool b_shared = true;
    for (int d = 0; d < p->nbatch; d++) b_shared = b_shared && p->strb[d] == 0;
    if (b_shared && !p->ta && na > 1 && kiln_shape_numel(na - 2, sa) == p->nmat) p->m *= p->nmat, p->nmat = 1, p->nbatch = 0;
}

static void mm_attrs(kiln_op op, const kiln_attr *attrs, bool *ta, bool *tb) {
    *ta = kiln_attr_bool(op, attrs, "transpose_a");
    *tb = kiln_attr_bool(op, attrs, "transpose_b");
}

static bool blas_matmul_supports(const kiln_node *n) {
    const kiln_type *x = n->in[0]->type, *y = n->in[1]->type, *o = n->out->type;
    if (x->kind != KILN_TYPE_TENSOR || y->kind != KILN_TYPE_TENSOR || o->kind != KILN_TYPE_TENSOR) return false;
    if ((o->dtype != KILN_F32 && o->dtype != KILN_F64) || x->dtype != o->dtype || y->dtype != o->dtype) return false;
    bool ta, tb;
    mm_plan p;
    mm_attrs(n->op, n->attrs, &ta, &tb);
    mm_plan_make(x->ndim, x->shape, y->ndim, y->shape, o->shape, ta, tb, &p);
    return fits_int(p.m) && fits_int(p.n) && fits_int(p.k) && fits_int(p.lda) && fits_int(p.ldb);
}

static kiln_status blas_matmul(kiln_kernel_args *a) {
    if (!blas_sgemm) return not_loaded(a);
    const kiln_tensor *x = a->in[0], *y = a->in[1];
    kiln_tensor *out = a->out[0];
    bool ta, tb;
    mm_plan p;
    mm_attrs(a->op, a->attrs, &ta, &tb);
    mm_plan_make(x->ndim, x->shape, y->ndim, y->shape, out->shape, ta, tb, &p);
    size_t es = kiln_dtype_size(out->dtype);
    if (!p.m || !p.n || !p.k) { /* BLAS wants lda >= 1: an empty contraction is zeros */
        memset(out->data, 0, es * (size_t)out->numel);
        return KILN_OK;
    }
    int64_t idx[KILN_MAX_DIMS] = {0}, mat_a = p.m * p.k, mat_b = p.k * p.n;
    for (int64_t t = 0; t < p.nmat; t++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < p.nbatch; d++) oa += idx[d] * p.stra[d], ob += idx[d] * p.strb[d];
        gemm(out->dtype, p.ta, p.tb, p.m, p.n, p.k, (const char *)x->data + (size_t)(oa * mat_a) * es, p.lda,
             (const char *)y->data + (size_t)(ob * mat_b) * es, p.ldb, 0, (char *)out->data + (size_t)(t * p.m * p.n) * es, p.n);
        for (int d = p.nbatch - 1; d >= 0 && ++idx[d] == p.batch[d]; d--) idx[d] = 0;
    }
    return KILN_OK;
}

/* ---- convolutions --------------------------------------------------------------------------- */
/* The column matrix of one group of a chunk of images: row r = (c*kh + ki)*kw + kj over the
 * group's big channels, column b*sh*sw + (i*sw + j) for image b of the chunk, holding big pixel
 * (i*stride0 - top + ki*dil0, j*stride1 - left + kj*dil1) of channel c (0 outside the image).
 * im2col fills it; col2im adds it back into the image (the adjoint). */

/* The small positions i in [0, n) whose tap i*s + off lands inside [0, size): [*lo, *hi). */
static void tap_range(int64_t off, int64_t s, int64_t size, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s, h = size - off <= 0 ? 0 : (size - off - 1) / s + 1;
    *lo = l < n ? l : n;
    *hi = h < n ? (h > *lo ? h : *lo) : n;
}

/* One walk serves both directions: ZERO clears the column entries of taps outside the image
 * (im2col only), COPY moves one contiguous run of `len` entries for stride 1, TAP one entry. */
#define COL_WALK(NAME, IMG_T, COL_T, ZERO, COPY, TAP)                                                \
    static void NAME(const kiln_conv_geom *g, IMG_T img, COL_T col, int64_t ld) {                   \
        int64_t cg = g->bc / g->groups, r = 0;                                                      \
        for (int64_t c = 0; c < cg; c++)                                                            \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                  \
                for (int64_t kj = 0; kj < g->kw; kj++, r++) {                                       \
                    int64_t offh = ki * g->dil[0] - g->pad[0], offw = kj * g->dil[1] - g->pad[1];   \
                    int64_t i0, i1, j0, j1;                                                         \
                    tap_range(offh, g->stride[0], g->bh, g->sh, &i0, &i1);                          \
                    tap_range(offw, g->stride[1], g->bw, g->sw, &j0, &j1);                          \
                    for (int64_t i = 0; i < g->sh; i++) {                                           \
                        COL_T cr = col + r * ld + i * g->sw;                                        \
                        if (i < i0 || i >= i1) {                                                    \
                            ZERO(cr, g->sw);                                                        \
                            continue;                                                               \
                        }                                                                           \
                        IMG_T ir = img + (c * g->bh + i * g->stride[0] + offh) * g->bw + offw;      \
                        ZERO(cr, j0);                                                               \
                        ZERO(cr + j1, g->sw - j1);                                                  \
                        if (g->stride[1] == 1) COPY(cr + j0, ir + j0, j1 - j0);                     \
                        else for (int64_t j = j0; j < j1; j++) TAP(cr[j], ir[j * g->stride[1]]);    \
                    }                                                                               \
                }                                                                                   \
    }
#define ZERO_RUN(p, len) memset((p), 0, sizeof(float) * (size_t)(len))
#define NO_ZERO(p, len) (void)0
#define GATHER_RUN(c, im, len) memcpy((c), (im), sizeof(float) * (size_t)(len))
#define SCATTER_RUN(c, im, len) for (int64_t e_ = 0; e_ < (len); e_++) (im)[e_] += (c)[e_]
#define GATHER_TAP(c, im) (c) = (im)
#define SCATTER_TAP(c, im) (im) += (c)
COL_WALK(im2col, const float *, float *, ZERO_RUN, GATHER_RUN, GATHER_TAP)
COL_WALK(col2im, float *, const float *, NO_ZERO, SCATTER_RUN, SCATTER_TAP)

/* Moves channels [q*cg, (q+1)*cg) of nb images t[n0 + b] ([n, ch, hw]) to or from the packed
 * matrix [cg, nb*hw] (column block b holds image b). */
static void pack(float *packed, float *t, int64_t n0, int64_t nb, int64_t ch, int64_t q, int64_t cg, int64_t hw, bool to_packed) {
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < cg; c++) {
            float *pr = packed + c * nb * hw + b * hw, *tr = t + ((n0 + b) * ch + q * cg + c) * hw;
            memcpy(to_packed ? pr : tr, to_packed ? tr : pr, sizeof(float) * (size_t)hw);
        }
}

/* Column matrices are built for chunks of images at most this many floats large (16 MiB), so
 * a batch makes a few wide GEMMs instead of many thin ones. */
#define COL_LIMIT ((int64_t)1 << 22)

static int64_t conv_chunk(const kiln_conv_geom *g) {
    int64_t per = (g->bc / g->groups) * g->kh * g->kw * g->sh * g->sw, nb = per ? COL_LIMIT / per : g->n;
    return nb < 1 ? 1 : nb > g->n ? g->n : nb;
}

/* Every size the GEMMs see (for the largest chunk) fits an int. */
static bool blas_conv_supports(const kiln_node *n) {
    kiln_conv_geom g;
    if (!kiln_conv_geom_of_node(n, KILN_F32, &g)) return false;
    int64_t kk = g.bc / g.groups * g.kh * g.kw, cols = conv_chunk(&g) * g.sh * g.sw;
    return fits_int(kk) && fits_int(cols) && fits_int(kk * cols) && fits_int(g.sc);
}

/* conv2d: y_g = w_g[sc/groups, kk] @ im2col(x_g); conv2d_transpose: col = w_g^T @ x_g, y_g +=
 * col2im(col); conv2d_backward_weight: dw_g += dy_g @ im2col(x_g)^T, summed over chunks. */
static void conv_run(kiln_op op, const kiln_conv_geom *g, float *x, float *w, float *y, float *col, float *packed) {
    int64_t cg = g->bc / g->groups, og = g->sc / g->groups, kk = cg * g->kh * g->kw;
    int64_t bhw = g->bh * g->bw, shw = g->sh * g->sw, nb = conv_chunk(g);
    if (op == KILN_OP_CONV2D_TRANSPOSE) memset(y, 0, sizeof(float) * (size_t)(g->n * g->bc * bhw));
    if (op == KILN_OP_CONV2D_BACKWARD_WEIGHT) memset(y, 0, sizeof(float) * (size_t)(g->sc * kk));
    for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
        int64_t cnt = g->n - n0 < nb ? g->n - n0 : nb, ld = cnt * shw;
        for (int64_t q = 0; q < g->groups; q++) {
            float *wq = w + q * og * kk, *small;
            /* the small side's [og, cnt*shw] matrix: packed, or for one image its group slice */
#define SMALL(t) (cnt == 1 ? (t) + (n0 * g->sc + q * og) * shw : packed)
            switch (op) {
            case KILN_OP_CONV2D:
                for (int64_t b = 0; b < cnt; b++) im2col(g, x + ((n0 + b) * g->bc + q * cg) * bhw, col + b * shw, ld);
                small = SMALL(y);
                gemm(KILN_F32, false, false, og, ld, kk, wq, kk, col, ld, 0, small, ld);
                if (cnt > 1) pack(packed, y, n0, cnt, g->sc, q, og, shw, false);
                break;
            case KILN_OP_CONV2D_TRANSPOSE:
                small = SMALL(x);
                if (cnt > 1) pack(packed, x, n0, cnt, g->sc, q, og, shw, true);
                gemm(KILN_F32, true, false, kk, ld, og, wq, kk, small, ld, 0, col, ld);
                for (int64_t b = 0; b < cnt; b++) col2im(g, y + ((n0 + b) * g->bc + q * cg) * bhw, col + b * shw, ld);
                break;
            default: /* backward_weight: x is the big image, w is dy */
                for (int64_t b = 0; b < cnt; b++) im2col(g, x + ((n0 + b) * g->bc + q * cg) * bhw, col + b * shw, ld);
                small = SMALL(w);
                if (cnt > 1) pack(packed, w, n0, cnt, g->sc, q, og, shw, true);
                gemm(KILN_F32, false, true, og, kk, ld, small, ld, col, ld, 1, y + q * og * kk, kk);
                break;
            }
#undef SMALL
        }
    }
}

static kiln_status blas_conv(kiln_kernel_args *a) {
    if (!blas_sgemm) return not_loaded(a);
    kiln_conv_geom g;
    if (!kiln_conv_geom_read(a->op, a->attrs, a->in[0]->shape, a->in[1]->shape, a->out[0]->shape, &g))
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "blas: malformed convolution attributes");
    int64_t nb = conv_chunk(&g), kk = g.bc / g.groups * g.kh * g.kw, cols = nb * g.sh * g.sw;
    float *col = malloc(sizeof(float) * (size_t)(kk * cols + 1));
    float *packed = malloc(sizeof(float) * (size_t)(g.sc / g.groups * cols + 1));
    if (!col || !packed) {
        free(col);
        free(packed);
        return kiln_kernel_fail(a, KILN_ERR_OOM, "blas: out of memory for a %lld x %lld column matrix", (long long)kk,
                                (long long)cols);
    }
    conv_run(a->op, &g, a->in[0]->data, a->in[1]->data, a->out[0]->data, col, packed);
    free(col);
    free(packed);
    return KILN_OK;
}

/* ---- dense: x @ w^T + b as one GEMM, the bias its epilogue ------------------------------------- */
/* x [.., k] with the leading dims folded into m rows, w [n, k] (torch's Linear layout), b [n]:
 * the rows of y start as b and the GEMM accumulates into them (beta = 1). */
static bool blas_dense_supports(const kiln_node *n) {
    const kiln_type *o = n->out->type;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->type->kind != KILN_TYPE_TENSOR || n->in[i]->type->dtype != o->dtype) return false;
    int64_t k = n->in[1]->type->shape[1], rows = kiln_shape_numel(n->in[0]->type->ndim - 1, n->in[0]->type->shape);
    return (o->dtype == KILN_F32 || o->dtype == KILN_F64) && fits_int(rows) && fits_int(k) && fits_int(n->in[1]->type->shape[0]);
}

static kiln_status blas_dense(kiln_kernel_args *a) {
    if (!blas_sgemm) return not_loaded(a);
    const kiln_tensor *x = a->in[0], *w = a->in[1];
    kiln_tensor *y = a->out[0];
    int64_t n = w->shape[0], k = w->shape[1], m = n ? y->numel / n : 0;
    size_t es = kiln_dtype_size(y->dtype);
    if (a->n_in > 2)
        for (int64_t r = 0; r < m; r++) memcpy((char *)y->data + (size_t)(r * n) * es, a->in[2]->data, (size_t)n * es);
    else memset(y->data, 0, (size_t)y->numel * es);
    if (m && n && k) gemm(y->dtype, false, true, m, n, k, x->data, k, w->data, k, 1.0, y->data, n);
    return KILN_OK;
}

/* ---- attention ---------------------------------------------------------------------------- */
/* The CPU attention kernels (ops/attention.c) over sgemm / dgemm: their GEMMs address each
 * operand with one unit stride (row-major, or transposed when the row stride is 1). */
static void strided_gemm(kiln_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t sam, int64_t sak,
                         const void *b, int64_t sbk, int64_t sbn, void *c, int64_t ldc) {
    if (!m || !n) return;
    size_t es = kiln_dtype_size(dt);
    if (!k) { /* an empty sum: zeros */
        for (int64_t i = 0; i < m; i++) memset((char *)c + (size_t)(i * ldc) * es, 0, (size_t)n * es);
        return;
    }
    bool ta = sak != 1, tb = sbn != 1;
    gemm(dt, ta, tb, m, n, k, a, ta ? sak : sam, b, tb ? sbn : sbk, 0.0, c, ldc);
}

static kiln_status blas_attention(kiln_kernel_args *a) {
    if (!blas_sgemm) return not_loaded(a);
    return a->op == KILN_OP_ATTENTION_FORWARD ? kiln_attention_forward_with(a, strided_gemm)
                                              : kiln_attention_backward_with(a, strided_gemm);
}

/* Every float dtype (the kernels compute in the log-sum-exp's f32 or f64); the key and head
 * sizes (GEMM sizes and leading dims) must fit an int. */
static bool blas_attention_supports(const kiln_node *n) {
    const kiln_type *q = n->in[0]->type, *k = n->in[1]->type, *v = n->in[2]->type;
    int nd = q->ndim;
    return fits_int(k->shape[nd - 2]) && fits_int(q->shape[nd - 1]) && fits_int(v->shape[nd - 1]) &&
           fits_int(q->shape[nd - 2]);
}

/* ---- registry ------------------------------------------------------------------------------- */
/* Priorities (measured table in bench/dialects.c): sgemm beats the reference GEMM 6-25x on every
 * matmul measured, but dnnl's matmul (20) outranks it except for large transposed-a GEMMs (weight
 * gradients), which dnnl declines (dnnl.c); im2col + sgemm beats the reference convolutions 2-40x but loses to dnnl (20)
 * everywhere, so it serves where dnnl is missing or declines (e.g. negative effective padding). */
static const kiln_dialect_impl blas_matmul_impl = {KILN_OP_MATMUL, KILN_DIALECT_BLAS, 10, blas_matmul_supports, blas_matmul};
static const kiln_dialect_impl blas_dense_impl = {KILN_OP_DENSE, KILN_DIALECT_BLAS, 10, blas_dense_supports, blas_dense};
static const kiln_dialect_impl blas_conv2d_impl = {KILN_OP_CONV2D, KILN_DIALECT_BLAS, 10, blas_conv_supports, blas_conv};
static const kiln_dialect_impl blas_conv2d_t_impl = {KILN_OP_CONV2D_TRANSPOSE, KILN_DIALECT_BLAS, 10, blas_conv_supports, blas_conv};
static const kiln_dialect_impl blas_conv2d_bw_impl = {KILN_OP_CONV2D_BACKWARD_WEIGHT, KILN_DIALECT_BLAS, 10, blas_conv_supports,
                                                      blas_conv};

/* attention through sgemm: the reference kernels' own GEMM made GPT's step 40% slower. */
static const kiln_dialect_impl blas_attention_fwd_impl = {KILN_OP_ATTENTION_FORWARD, KILN_DIALECT_BLAS, 10,
                                                          blas_attention_supports, blas_attention};
static const kiln_dialect_impl blas_attention_bwd_impl = {KILN_OP_ATTENTION_BACKWARD, KILN_DIALECT_BLAS, 10,
                                                          blas_attention_supports, blas_attention};

const kiln_dialect_impl *const kiln_blas_impls[] = {&blas_matmul_impl,   &blas_dense_impl,         &blas_conv2d_impl,
                                                    &blas_conv2d_t_impl, &blas_conv2d_bw_impl,     &blas_attention_fwd_impl,
                                                    &blas_attention_bwd_impl, NULL};
