/* matmul.c — the matmul family: matmul (numpy semantics plus optional transposes), batch_matmul
 * and dense (composites over matmul), and the one reference GEMM every dense kernel uses. */
#include "ir/ir.h"
#include <stdlib.h>
#include <string.h>

/* ---- the shared reference GEMM ------------------------------------------------------------ */
kiln_dtype kiln_acc_dtype(kiln_dtype dt) {
    if (dt == KILN_F64) return KILN_F64;
    return kiln_dtype_is_float(dt) ? KILN_F32 : KILN_I64;
}

void *kiln_data_as(const kiln_tensor *t, kiln_dtype dt, bool convert, void **owned) {
    *owned = NULL;
    if (t->dtype == dt) return t->data;
    size_t bytes = (size_t)t->numel * kiln_dtype_size(dt);
    if (!(*owned = malloc(bytes ? bytes : 1))) return NULL;
    if (convert) kiln_convert(dt, *owned, t->dtype, t->data, t->numel);
    return *owned;
}

#define GEMM_NB 256 /* columns of C (and of B) per block */
#define GEMM_KB 128 /* rows of B per block: a KB x NB block of B stays in L2 across all rows of A */

/* Register tiles: a 4x4 block of C lives in 16 locals while p runs over a KB block, so each
 * step loads 4 elements of A and 4 of B for 16 multiply-adds, whatever the operands' strides
 * (transposed or not). Tiles cut by the edges of C take a plain dot-product loop. */
#define GEMM_ROW(r) c##r##0 += a##r * b0, c##r##1 += a##r * b1, c##r##2 += a##r * b2, c##r##3 += a##r * b3
#define GEMM_STORE(r) cr = c + (i + r) * ldc + j, cr[0] += c##r##0, cr[1] += c##r##1, cr[2] += c##r##2, cr[3] += c##r##3
#define GEMM_DEFINE(T)                                                                             \
    static void gemm_##T(int64_t m, int64_t n, int64_t k, const T *a, int64_t sam, int64_t sak,    \
                         const T *b, int64_t sbk, int64_t sbn, T *c, int64_t ldc) {                 \
        for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, sizeof(T) * (size_t)n);             \
        for (int64_t j0 = 0; j0 < n; j0 += GEMM_NB)                                                \
            for (int64_t p0 = 0; p0 < k; p0 += GEMM_KB) {                                          \
                int64_t j1 = j0 + GEMM_NB < n ? j0 + GEMM_NB : n;                                  \
                int64_t p1 = p0 + GEMM_KB < k ? p0 + GEMM_KB : k;                                  \
                for (int64_t i = 0; i < m; i += 4)                                                 \
                    for (int64_t j = j0; j < j1; j += 4) {                                         \
                        if (i + 4 > m || j + 4 > j1) {                                             \
                            for (int64_t ii = i; ii < i + 4 && ii < m; ii++)                       \
                                for (int64_t jj = j; jj < j + 4 && jj < j1; jj++) {                \
                                    T s = 0;                                                       \
                                    for (int64_t p = p0; p < p1; p++) s += a[ii * sam + p * sak] * b[p * sbk + jj * sbn]; \
                                    c[ii * ldc + jj] += s;                                         \
                                }                                                                  \
                            continue;                                                              \
                        }                                                                          \
                        T c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;  \
                        T c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;  \
                        for (int64_t p = p0; p < p1; p++) {                                        \
                            const T *ap = a + i * sam + p * sak, *bp = b + p * sbk + j * sbn;      \
                            T a0 = ap[0], a1 = ap[sam], a2 = ap[2 * sam], a3 = ap[3 * sam];        \
                            T b0 = bp[0], b1 = bp[sbn], b2 = bp[2 * sbn], b3 = bp[3 * sbn];        \
                            GEMM_ROW(0), GEMM_ROW(1), GEMM_ROW(2), GEMM_ROW(3);                    \
                        }                                                                          \
                        T *cr;                                                                     \
                        GEMM_STORE(0), GEMM_STORE(1), GEMM_STORE(2), GEMM_STORE(3);                \
                    }                                                                              \
            }                                                                                      \
    }
GEMM_DEFINE(float)
GEMM_DEFINE(double)
GEMM_DEFINE(uint64_t) /* i64 in unsigned arithmetic: overflow wraps instead of being UB */

void kiln_gemm(kiln_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t sam, int64_t sak,
               const void *b, int64_t sbk, int64_t sbn, void *c, int64_t ldc) {
    if (dt == KILN_F32) gemm_float(m, n, k, a, sam, sak, b, sbk, sbn, c, ldc);
    else if (dt == KILN_F64) gemm_double(m, n, k, a, sam, sak, b, sbk, sbn, c, ldc);
    else gemm_uint64_t(m, n, k, a, sam, sak, b, sbk, sbn, c, ldc);
}

/* ---- matmul geometry ---------------------------------------------------------------------- */
/* How matmul(a, b) maps onto per-batch GEMMs. A 1-D a is a row [1, K] and a 1-D b a column
 * [K, 1] (the added dim is dropped from the result; transposes do not apply to vectors). */
typedef struct mm_plan {
    int64_t m, n, ka, kb;      /* rows of op(a), columns of op(b), contracted sizes of each */
    int dim_ka, dim_kb;        /* which dim of a / b is contracted (for messages) */
    int64_t sam, sak, sbk, sbn;/* element strides within one matrix of a / b */
    int64_t mat_a, mat_b;      /* elements per matrix */
    int nba, nbb, nbatch;      /* batch ranks of a, b and the result */
    int64_t batch[KILN_MAX_DIMS];
    int ndim;                  /* the result */
    int64_t shape[KILN_MAX_DIMS];
} mm_plan;

typedef enum { MM_OK, MM_RANK, MM_K, MM_BATCH } mm_result;

/* One operand's matrix view: rows x cols stored, `t` transposed; `is_b` picks which side. */
static void mm_operand(int nd, const int64_t *s, bool t, bool is_b, mm_plan *p) {
    int64_t outer, inner, s_outer, s_inner; /* outer: m (a) / n (b); inner: the contracted dim */
    int dim_inner;
    if (nd == 1) {
        outer = 1, inner = s[0], s_outer = 1, s_inner = 1, dim_inner = 0;
    } else {
        int64_t rows = s[nd - 2], cols = s[nd - 1];
        bool inner_is_cols = is_b ? t : !t; /* a: K is cols unless transposed; b: K is rows */
        outer = inner_is_cols ? rows : cols;
        inner = inner_is_cols ? cols : rows;
        s_outer = inner_is_cols ? cols : 1;
        s_inner = inner_is_cols ? 1 : cols;
        dim_inner = inner_is_cols ? nd - 1 : nd - 2;
    }
    if (is_b) p->n = outer, p->kb = inner, p->sbn = s_outer, p->sbk = s_inner, p->dim_kb = dim_inner;
    else p->m = outer, p->ka = inner, p->sam = s_outer, p->sak = s_inner, p->dim_ka = dim_inner;
}

static mm_result mm_plan_make(int na, const int64_t *sa, bool ta, int nb, const int64_t *sb, bool tb, mm_plan *p) {
    memset(p, 0, sizeof *p);
    if (na < 1 || nb < 1) return MM_RANK;
    mm_operand(na, sa, ta, false, p);
    mm_operand(nb, sb, tb, true, p);
    if (p->ka != p->kb) return MM_K;
    p->nba = na > 2 ? na - 2 : 0;
    p->nbb = nb > 2 ? nb - 2 : 0;
    p->mat_a = na == 1 ? sa[0] : sa[na - 2] * sa[na - 1];
    p->mat_b = nb == 1 ? sb[0] : sb[nb - 2] * sb[nb - 1];
    if (!kiln_broadcast_shapes(p->nba, sa, p->nbb, sb, &p->nbatch, p->batch)) return MM_BATCH;
    p->ndim = p->nbatch;
    memcpy(p->shape, p->batch, sizeof(int64_t) * (size_t)p->nbatch);
    if (na > 1) p->shape[p->ndim++] = p->m;
    if (nb > 1) p->shape[p->ndim++] = p->n;
    return MM_OK;
}

/* Shape rule body shared by matmul and batch_matmul: a, b tensors of one dtype. */
static const kiln_type *mm_infer(kiln_shape_args *a, const kiln_type *x, const kiln_type *y) {
    char ta[256], tb[256];
    bool tra = kiln_attr_bool(a->op, a->attrs, "transpose_a"), trb = kiln_attr_bool(a->op, a->attrs, "transpose_b");
    mm_plan p;
    switch (mm_plan_make(x->ndim, x->shape, tra, y->ndim, y->shape, trb, &p)) {
    case MM_RANK:
        return kiln_op_fail(a, "operands %s and %s: 0-d tensors cannot be multiplied (need at least 1 dim each)",
                            kiln_type_cstr(x, ta, sizeof ta), kiln_type_cstr(y, tb, sizeof tb));
    case MM_K:
        return kiln_op_fail(a, "shapes %s and %s do not match (transpose_a=%s, transpose_b=%s): contracted dim %d "
                            "of a has size %lld, contracted dim %d of b has size %lld",
                            kiln_type_cstr(x, ta, sizeof ta), kiln_type_cstr(y, tb, sizeof tb), tra ? "true" : "false",
                            trb ? "true" : "false", p.dim_ka, (long long)p.ka, p.dim_kb, (long long)p.kb);
    case MM_BATCH:
        return kiln_op_fail(a, "batch dims of %s and %s do not broadcast", kiln_type_cstr(x, ta, sizeof ta),
                            kiln_type_cstr(y, tb, sizeof tb));
    case MM_OK: break;
    }
    return kiln_type_tensor_a(a->arena, x->dtype, p.ndim, p.shape);
}

/* Checks that every input is a tensor of input 0's dtype; false (error set) otherwise. */
static bool mm_check_inputs(kiln_shape_args *a) {
    char ta[256], tb[256];
    for (int i = 0; i < a->n_in; i++) {
        if (a->in[i]->kind != KILN_TYPE_TENSOR) {
            kiln_op_fail(a, "input %d is %s, expected a tensor", i, kiln_type_cstr(a->in[i], ta, sizeof ta));
            return false;
        }
        if (a->in[i]->dtype != a->in[0]->dtype) {
            kiln_op_fail(a, "inputs must have one dtype, got %s and %s (input %d); cast one first",
                         kiln_type_cstr(a->in[0], ta, sizeof ta), kiln_type_cstr(a->in[i], tb, sizeof tb), i);
            return false;
        }
    }
    return true;
}

const struct kiln_type *kiln_shape_matmul(kiln_shape_args *a) {
    if (!mm_check_inputs(a)) return NULL;
    return mm_infer(a, a->in[0], a->in[1]);
}

const struct kiln_type *kiln_shape_batch_matmul(kiln_shape_args *a) {
    char ta[256], tb[256];
    if (!mm_check_inputs(a)) return NULL;
    const kiln_type *x = a->in[0], *y = a->in[1];
    if (x->ndim != 3 || y->ndim != 3 || x->shape[0] != y->shape[0])
        return kiln_op_fail(a, "needs 3-D operands [batch, rows, cols] with equal batch, got %s and %s",
                            kiln_type_cstr(x, ta, sizeof ta), kiln_type_cstr(y, tb, sizeof tb));
    return mm_infer(a, x, y);
}

/* dense(x[..., in], w[out, in], b[out]?) -> [..., out] */
const struct kiln_type *kiln_shape_dense(kiln_shape_args *a) {
    char tx[256], tw[256], tb[256];
    if (!mm_check_inputs(a)) return NULL;
    const kiln_type *x = a->in[0], *w = a->in[1];
    if (x->ndim < 1 || w->ndim != 2)
        return kiln_op_fail(a, "needs x [..., in] and weight [out, in], got %s and %s", kiln_type_cstr(x, tx, sizeof tx),
                            kiln_type_cstr(w, tw, sizeof tw));
    if (x->shape[x->ndim - 1] != w->shape[1])
        return kiln_op_fail(a, "x %s has %lld input features (last dim), weight %s has %lld (dim 1)",
                            kiln_type_cstr(x, tx, sizeof tx), (long long)x->shape[x->ndim - 1],
                            kiln_type_cstr(w, tw, sizeof tw), (long long)w->shape[1]);
    if (a->n_in == 3 && (a->in[2]->ndim != 1 || a->in[2]->shape[0] != w->shape[0]))
        return kiln_op_fail(a, "bias %s must be [%lld] to match weight %s", kiln_type_cstr(a->in[2], tb, sizeof tb),
                            (long long)w->shape[0], kiln_type_cstr(w, tw, sizeof tw));
    int64_t shape[KILN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = w->shape[0];
    return kiln_type_tensor_a(a->arena, x->dtype, x->ndim, shape);
}

/* ---- kernel ------------------------------------------------------------------------------- */
kiln_status kiln_ref_matmul(kiln_kernel_args *a) {
    const kiln_tensor *x = a->in[0], *y = a->in[1];
    kiln_tensor *out = a->out[0];
    mm_plan p;
    if (mm_plan_make(x->ndim, x->shape, kiln_attr_bool(a->op, a->attrs, "transpose_a"), y->ndim, y->shape,
                     kiln_attr_bool(a->op, a->attrs, "transpose_b"), &p) != MM_OK)
        return kiln_kernel_fail(a, KILN_ERR_INTERNAL, "operand shapes changed after type inference");
    kiln_dtype acc = kiln_acc_dtype(out->dtype);
    size_t es = kiln_dtype_size(acc);
    void *own_x, *own_y, *own_o;
    const char *dx = kiln_data_as(x, acc, true, &own_x), *dy = kiln_data_as(y, acc, true, &own_y);
    char *dout = kiln_data_as(out, acc, false, &own_o);
    kiln_status s = KILN_OK;
    if (!dx || !dy || !dout) {
        s = kiln_kernel_fail(a, KILN_ERR_OOM, "out of memory for %lld-element operands", (long long)(x->numel + y->numel));
        goto done;
    }
    /* Matrix strides of a and b over the broadcast batch dims (0 where broadcast). */
    int64_t stra[KILN_MAX_DIMS], strb[KILN_MAX_DIMS], idx[KILN_MAX_DIMS] = {0};
    kiln_broadcast_strides(p.nba, x->shape, p.nbatch, p.batch, stra);
    kiln_broadcast_strides(p.nbb, y->shape, p.nbatch, p.batch, strb);
    int64_t nbatch = kiln_shape_numel(p.nbatch, p.batch);
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < p.nbatch; d++) oa += idx[d] * stra[d], ob += idx[d] * strb[d];
        kiln_gemm(acc, p.m, p.n, p.ka, dx + (size_t)(oa * p.mat_a) * es, p.sam, p.sak, dy + (size_t)(ob * p.mat_b) * es,
                  p.sbk, p.sbn, dout + (size_t)(t * p.m * p.n) * es, p.n);
        for (int d = p.nbatch - 1; d >= 0 && ++idx[d] == p.batch[d]; d--) idx[d] = 0;
    }
    if (own_o) kiln_convert(out->dtype, out->data, acc, own_o, out->numel);
done:
    free(own_x);
    free(own_y);
    free(own_o);
    return s;
}

/* ---- decompositions ----------------------------------------------------------------------- */
struct kiln_var *kiln_decompose_batch_matmul(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    return kiln_build(b, KILN_OP_MATMUL, 2, in, "transpose_a=%s, transpose_b=%s",
                      kiln_attr_bool(n->op, n->attrs, "transpose_a") ? "true" : "false",
                      kiln_attr_bool(n->op, n->attrs, "transpose_b") ? "true" : "false");
}

/* y = x @ w^T (+ b) */
struct kiln_var *kiln_decompose_dense(struct kiln_builder *b, const struct kiln_node *n, struct kiln_var *const *in) {
    kiln_var *y = kiln_build(b, KILN_OP_MATMUL, 2, in, "transpose_b=true");
    if (!y || n->n_in < 3) return y;
    return kiln_build(b, KILN_OP_ADD, 2, (kiln_var *[]){y, in[2]}, NULL);
}
