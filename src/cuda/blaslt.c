/* blaslt.c — GEMM through cuBLASLt (loaded at the first gemm): per device one handle and a 32 MiB
 * workspace; the operation descriptor, layouts and the heuristic's algorithm are made once per
 * distinct shape key (a hash table), so repeated calls make no heuristic query.
 *
 * kiln's GEMM is row-major: C[m,n] = op(A)[m,k] op(B)[k,n]. A row-major matrix with row stride ld
 * is the column-major transpose with leading dimension ld, so cuBLASLt (column-major) computes
 * C^T[n,m] = op(B)^T op(A)^T: its "A" is kiln's B (transposed iff trans_b), its "B" is kiln's A
 * (transposed iff trans_a), its D is n x m with ld = ldc. Consequences in the row-major view:
 * cuBLASLt's bias (one value per row of D) is one per output column n; its aux matrices are
 * [m, ld_aux]; BGRADB (sum over k of its op(B) = op(A)^T, per column of D) gives
 * bias_grad[i] = sum_k op(A)[i,k], one value per output row m. */
#include "cuda/cuda_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKSPACE_BYTES ((size_t)32 << 20)

static kiln_cu_blaslt_api lt;
static struct {
    pthread_once_t once;
    int status;
    char why[1024];
} ltlib = {.once = PTHREAD_ONCE_INIT, .status = -1};

static int load_blaslt(void) {
    static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so"};
    void *h = kiln_cu_dlopen(names, 2, NULL, 0);
    if (!h) return -1;
    const char *lib = "libcublasLt";
    void *sym;
    kiln_cu_blaslt_api *tbl = &lt;
    KILN_CU_BLASLT_FUNCS(KILN_CU_RESOLVE)
    return 0;
}

static void load_once(void) {
    ltlib.status = load_blaslt();
    if (ltlib.status) kiln_cu_save_error(ltlib.why, sizeof ltlib.why);
}

/* 0 if s is success, else -1 with "cuBLASLt: <what>: CUBLAS_STATUS_NAME (description)". */
static int lt_check(cublasStatus_t s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lt_check(cublasStatus_t s, const char *fmt, ...) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kiln_cu_fail("cuBLASLt: %s: %s (%s)", what, lt.cublasLtGetStatusName(s), lt.cublasLtGetStatusString(s));
}

/* ---- plans ---- */
typedef struct gemm_key {
    int32_t dtype, tf32, trans_a, trans_b, epilogue, has_bias;
    int32_t align_a, align_b, align_c, align_bias, align_aux; /* bytes, at most 256 */
    int64_t m, n, k, lda, ldb, ldc, batch, stride_a, stride_b, stride_c, ld_aux;
} gemm_key;

typedef struct gemm_plan {
    gemm_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; /* cuBLASLt's A (kiln's B), B (kiln's A), C = D */
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

struct kiln_cu_gemm_state {
    cublasLtHandle_t handle;
    CUdeviceptr workspace;
    gemm_plan **plans; /* open addressing by key hash; NULL = empty; capacity a power of two */
    size_t cap, n;
};

static const char *const epilogue_names[KILN_EPI_COUNT] = {"none",     "bias",     "relu",  "gelu", "relu_aux",
                                                           "gelu_aux", "drelu",    "dgelu", "bgrad"};

static const char *dtype_name(kiln_dtype dt) {
    return dt == KILN_F32 ? "f32" : dt == KILN_F16 ? "f16" : dt == KILN_BF16 ? "bf16" : "unsupported dtype";
}

static bool epilogue_has_aux(kiln_gemm_epilogue e) {
    return e == KILN_EPI_RELU_AUX || e == KILN_EPI_GELU_AUX || e == KILN_EPI_DRELU || e == KILN_EPI_DGELU;
}

/* The vector cuBLASLt's BIAS_POINTER names: bias_grad for BGRAD, the bias (optional for the
 * activations) for the forward epilogues, else none. */
static const void *epilogue_vector(const kiln_gemm_desc *g) {
    switch (g->epilogue) {
    case KILN_EPI_BGRAD: return g->bias_grad;
    case KILN_EPI_BIAS:
    case KILN_EPI_RELU:
    case KILN_EPI_GELU:
    case KILN_EPI_RELU_AUX:
    case KILN_EPI_GELU_AUX: return g->bias;
    default: return NULL;
    }
}

/* The largest power of two (at most 256) dividing the address and, for batches, the stride. */
static int32_t alignment(const void *p, int64_t stride, size_t elsize, int64_t batch) {
    uint64_t a = (uint64_t)(uintptr_t)p | 256;
    if (batch > 1 && stride) a |= (uint64_t)stride * elsize;
    return (int32_t)(a & (~a + 1));
}

static uint64_t key_hash(const gemm_key *k) {
    const unsigned char *s = (const unsigned char *)k;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* "f32 gemm m=.. n=.. k=.. ..." for messages. */
static void describe(const kiln_gemm_desc *g, char *buf, size_t size) {
    snprintf(buf, size,
             "%s%s gemm m=%lld n=%lld k=%lld trans_a=%d trans_b=%d lda=%lld ldb=%lld ldc=%lld batch=%lld "
             "epilogue=%s",
             dtype_name(g->dtype), g->tf32 ? " (tf32)" : "", (long long)g->m, (long long)g->n, (long long)g->k,
             g->trans_a, g->trans_b, (long long)g->lda, (long long)g->ldb, (long long)g->ldc, (long long)g->batch,
             (unsigned)g->epilogue < KILN_EPI_COUNT ? epilogue_names[g->epilogue] : "?");
}

/* -1 with "cuBLASLt: <the gemm described>: <message>". */
static int gemm_fail(const kiln_gemm_desc *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gemm_fail(const kiln_gemm_desc *g, const char *fmt, ...) {
    char what[512], msg[1024];
    describe(g, what, sizeof what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_cu_fail("cuBLASLt: %s: %s", what, msg);
}

/* Checks what cuBLASLt would reject less clearly. */
static int validate(const kiln_gemm_desc *g) {
    if (g->dtype != KILN_F32 && g->dtype != KILN_F16 && g->dtype != KILN_BF16)
        return gemm_fail(g, "dtype must be f32, f16 or bf16");
    if (g->tf32 && g->dtype != KILN_F32) return gemm_fail(g, "tf32 applies to f32 only");
    if ((unsigned)g->epilogue >= KILN_EPI_COUNT) return gemm_fail(g, "unknown epilogue %d", (int)g->epilogue);
    if (g->m < 1 || g->n < 1 || g->k < 1 || g->batch < 1 || g->batch > INT32_MAX)
        return gemm_fail(g, "m, n, k must be >= 1 and batch in [1, 2^31)");
    if (g->lda < (g->trans_a ? g->m : g->k) || g->ldb < (g->trans_b ? g->k : g->n) || g->ldc < g->n)
        return gemm_fail(g, "a leading dimension is smaller than its row (lda >= %lld, ldb >= %lld, ldc >= %lld)",
                         (long long)(g->trans_a ? g->m : g->k), (long long)(g->trans_b ? g->k : g->n), (long long)g->n);
    if (!g->a || !g->b || !g->c) return gemm_fail(g, "a, b and c must not be NULL");
    if (g->epilogue == KILN_EPI_BIAS && !g->bias) return gemm_fail(g, "the bias epilogue needs bias");
    if (g->epilogue == KILN_EPI_BGRAD && (!g->bias_grad || g->batch > 1))
        return gemm_fail(g, "the bgrad epilogue needs bias_grad and batch 1");
    if (epilogue_has_aux(g->epilogue)) {
        bool mask = g->epilogue == KILN_EPI_RELU_AUX || g->epilogue == KILN_EPI_DRELU;
        if (!g->aux || g->ld_aux < g->n || g->ld_aux % (mask ? 128 : 8))
            return gemm_fail(g, "the %s epilogue needs aux, with ld_aux >= n and a multiple of %d (ld_aux=%lld)",
                             epilogue_names[g->epilogue], mask ? 128 : 8, (long long)g->ld_aux);
    }
    return 0;
}

static cublasLtEpilogue_t lt_epilogue(kiln_gemm_epilogue e, bool bias) {
    switch (e) {
    case KILN_EPI_BIAS: return CUBLASLT_EPILOGUE_BIAS;
    case KILN_EPI_RELU: return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case KILN_EPI_GELU: return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    case KILN_EPI_RELU_AUX: return bias ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS : CUBLASLT_EPILOGUE_RELU_AUX;
    case KILN_EPI_GELU_AUX: return bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    case KILN_EPI_DRELU: return CUBLASLT_EPILOGUE_DRELU;
    case KILN_EPI_DGELU: return CUBLASLT_EPILOGUE_DGELU;
    case KILN_EPI_BGRAD: return CUBLASLT_EPILOGUE_BGRADB; /* see the file's comment */
    default: return CUBLASLT_EPILOGUE_DEFAULT;
    }
}

/* Sets the per-call pointers of the epilogue (their alignment is part of the key). */
static int set_pointers(gemm_plan *p, const kiln_gemm_desc *g) {
    const void *bias = epilogue_vector(g);
    if (bias && lt_check(lt.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                         "set BIAS_POINTER"))
        return -1;
    const void *aux = g->aux;
    if (epilogue_has_aux(g->epilogue) &&
        lt_check(lt.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux),
                 "set EPILOGUE_AUX_POINTER"))
        return -1;
    return 0;
}

/* One column-major layout, batched when batch > 1. */
static int make_layout(cublasLtMatrixLayout_t *l, cudaDataType type, int64_t rows, int64_t cols, int64_t ld,
                       int64_t batch, int64_t stride, const char *name) {
    if (lt_check(lt.cublasLtMatrixLayoutCreate(l, type, (uint64_t)rows, (uint64_t)cols, ld), "layout of %s", name))
        return -1;
    int32_t count = (int32_t)batch;
    if (batch > 1 &&
        (lt_check(lt.cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
                  "BATCH_COUNT of %s", name) ||
         lt_check(lt.cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                      sizeof stride),
                  "STRIDED_BATCH_OFFSET of %s", name)))
        return -1;
    return 0;
}

static void plan_destroy(gemm_plan *p) {
    if (p->op) lt.cublasLtMatmulDescDestroy(p->op);
    if (p->la) lt.cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) lt.cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) lt.cublasLtMatrixLayoutDestroy(p->lc);
    free(p);
}

#define SET_DESC(attr, value)                                                                      \
    lt_check(lt.cublasLtMatmulDescSetAttribute(p->op, attr, &(value), sizeof(value)), "set " #attr)
#define SET_PREF(attr, value)                                                                      \
    lt_check(lt.cublasLtMatmulPreferenceSetAttribute(pref, attr, &(value), sizeof(value)), "set " #attr)

/* Descriptors, layouts and the best algorithm of the heuristic for g. */
static int plan_fill(kiln_cu_gemm_state *st, gemm_plan *p, const kiln_gemm_desc *g) {
    cudaDataType type = g->dtype == KILN_F32 ? CUDA_R_32F : g->dtype == KILN_F16 ? CUDA_R_16F : CUDA_R_16BF;
    cublasComputeType_t compute = g->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    int32_t op_a = g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = lt_epilogue(g->epilogue, epilogue_vector(g) != NULL);
    if (lt_check(lt.cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F), "cublasLtMatmulDescCreate") ||
        SET_DESC(CUBLASLT_MATMUL_DESC_TRANSA, op_a) || SET_DESC(CUBLASLT_MATMUL_DESC_TRANSB, op_b) ||
        SET_DESC(CUBLASLT_MATMUL_DESC_EPILOGUE, epi))
        return -1;
    if (epilogue_has_aux(g->epilogue)) {
        int64_t ld = g->ld_aux, stride = g->ld_aux * g->m; /* aux of batch i follows that of batch i-1 */
        if (SET_DESC(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, ld) ||
            (g->batch > 1 && SET_DESC(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, stride)))
            return -1;
    }
    if (set_pointers(p, g) ||
        make_layout(&p->la, type, g->trans_b ? g->k : g->n, g->trans_b ? g->n : g->k, g->ldb, g->batch, g->stride_b, "B") ||
        make_layout(&p->lb, type, g->trans_a ? g->m : g->k, g->trans_a ? g->k : g->m, g->lda, g->batch, g->stride_a, "A") ||
        make_layout(&p->lc, type, g->n, g->m, g->ldc, g->batch, g->stride_c, "C"))
        return -1;

    cublasLtMatmulPreference_t pref;
    if (lt_check(lt.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")) return -1;
    uint64_t ws = WORKSPACE_BYTES;
    uint32_t align_a = (uint32_t)p->key.align_b, align_b = (uint32_t)p->key.align_a, align_c = (uint32_t)p->key.align_c;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    int rc = SET_PREF(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws) ||
             SET_PREF(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a) ||
             SET_PREF(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b) ||
             SET_PREF(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c) ||
             SET_PREF(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c)
                 ? -1
                 : 0;
    if (!rc) {
        memset(&res, 0, sizeof res);
        cublasStatus_t s = lt.cublasLtMatmulAlgoGetHeuristic(st->handle, p->op, p->la, p->lb, p->lc, p->lc, pref, 1,
                                                             &res, &found);
        if (s != CUBLAS_STATUS_SUCCESS || found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
            rc = gemm_fail(g, "no algorithm (cublasLtMatmulAlgoGetHeuristic: %s)",
                           lt.cublasLtGetStatusName(s != CUBLAS_STATUS_SUCCESS ? s
                                                       : found < 1              ? CUBLAS_STATUS_NOT_SUPPORTED
                                                                                : res.state));
        else p->algo = res.algo;
    }
    lt.cublasLtMatmulPreferenceDestroy(pref);
    return rc;
}

/* The plan of key, made and inserted if new; NULL with the reason. */
static gemm_plan *plan_get(kiln_cu_gemm_state *st, const gemm_key *key, const kiln_gemm_desc *g) {
    size_t i = st->cap ? (size_t)key_hash(key) & (st->cap - 1) : 0;
    for (; st->cap && st->plans[i]; i = (i + 1) & (st->cap - 1))
        if (!memcmp(&st->plans[i]->key, key, sizeof *key)) return st->plans[i];
    if ((st->n + 1) * 4 > st->cap * 3) { /* grow, then find the new key's slot again */
        size_t cap = st->cap ? st->cap * 2 : 64;
        gemm_plan **t = calloc(cap, sizeof *t);
        if (!t) {
            kiln_cu_fail("cuBLASLt: out of host memory for the plan table");
            return NULL;
        }
        for (size_t j = 0; j < st->cap; j++) {
            if (!st->plans[j]) continue;
            size_t s = (size_t)key_hash(&st->plans[j]->key) & (cap - 1);
            while (t[s]) s = (s + 1) & (cap - 1);
            t[s] = st->plans[j];
        }
        free(st->plans);
        st->plans = t;
        st->cap = cap;
        for (i = (size_t)key_hash(key) & (cap - 1); t[i];) i = (i + 1) & (cap - 1);
    }
    gemm_plan *p = calloc(1, sizeof *p);
    if (!p) {
        kiln_cu_fail("cuBLASLt: out of host memory for a plan");
        return NULL;
    }
    p->key = *key;
    if (plan_fill(st, p, g)) {
        plan_destroy(p);
        return NULL;
    }
    st->plans[i] = p;
    st->n++;
    return p;
}

/* The device's handle and workspace, made at its first gemm (caller holds gemm_lock). */
static kiln_cu_gemm_state *gemm_state(kiln_cu_device *d) {
    if (d->gemm) return d->gemm;
    pthread_once(&ltlib.once, load_once);
    if (ltlib.status) {
        kiln_cu_fail("%s", ltlib.why);
        return NULL;
    }
    kiln_cu_gemm_state *st = calloc(1, sizeof *st);
    if (!st) {
        kiln_cu_fail("cuBLASLt: out of host memory");
        return NULL;
    }
    if (lt_check(lt.cublasLtCreate(&st->handle), "cublasLtCreate(device %d)", d->ordinal)) {
        free(st);
        return NULL;
    }
    if (kiln_cu_check(kiln_cu_drv.cuMemAlloc(&st->workspace, WORKSPACE_BYTES),
                      "cuMemAlloc of the %zu-byte cuBLASLt workspace (device %d)", WORKSPACE_BYTES, d->ordinal)) {
        lt.cublasLtDestroy(st->handle);
        free(st);
        return NULL;
    }
    d->gemm = st;
    return st;
}

int kiln_cu_gemm(int dev, const kiln_gemm_desc *g) {
    if (validate(g)) return -1;
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    size_t elsize = g->dtype == KILN_F32 ? 4 : 2;
    gemm_key key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared bytewise */
    key.dtype = (int32_t)g->dtype;
    key.tf32 = g->tf32;
    key.trans_a = g->trans_a;
    key.trans_b = g->trans_b;
    key.epilogue = (int32_t)g->epilogue;
    key.has_bias = epilogue_vector(g) != NULL;
    key.align_a = alignment(g->a, g->stride_a, elsize, g->batch);
    key.align_b = alignment(g->b, g->stride_b, elsize, g->batch);
    key.align_c = alignment(g->c, g->stride_c, elsize, g->batch);
    key.align_bias = alignment(epilogue_vector(g), 0, 0, 1);
    key.align_aux = alignment(epilogue_has_aux(g->epilogue) ? g->aux : NULL, 0, 0, 1);
    key.m = g->m, key.n = g->n, key.k = g->k;
    key.lda = g->lda, key.ldb = g->ldb, key.ldc = g->ldc;
    key.batch = g->batch;
    if (g->batch > 1) key.stride_a = g->stride_a, key.stride_b = g->stride_b, key.stride_c = g->stride_c;
    key.ld_aux = epilogue_has_aux(g->epilogue) ? g->ld_aux : 0;

    pthread_mutex_lock(&d->gemm_lock);
    kiln_cu_gemm_state *st = gemm_state(d);
    gemm_plan *p = st ? plan_get(st, &key, g) : NULL;
    int rc = p ? set_pointers(p, g) : -1;
    if (!rc) {
        cublasStatus_t s = lt.cublasLtMatmul(st->handle, p->op, &g->alpha, g->b, p->la, g->a, p->lb, &g->beta, g->c,
                                             p->lc, g->c, p->lc, &p->algo, (void *)(uintptr_t)st->workspace,
                                             WORKSPACE_BYTES, d->stream);
        if (s != CUBLAS_STATUS_SUCCESS)
            rc = gemm_fail(g, "cublasLtMatmul on device %d: %s (%s)", dev, lt.cublasLtGetStatusName(s),
                           lt.cublasLtGetStatusString(s));
    }
    pthread_mutex_unlock(&d->gemm_lock);
    return rc;
}
