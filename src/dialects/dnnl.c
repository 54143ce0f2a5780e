/* dnnl.c — the oneDNN dialect: f32 matmul (batched, broadcasting), conv2d, its data gradient
 * (conv2d_transpose) and weight gradient, max / avg pooling and their backward primitives, on plain
 * NCHW f32 tensors. libdnnl is opened with dlopen at first use; primitives are cached per shape. */
#include "dialects/conv_geom.h"
#include "dialects/dialect.h"

#if defined(__has_include)
#if __has_include(<dnnl.h>)
#include <dnnl.h>
#define KILN_HAVE_DNNL (DNNL_VERSION_MAJOR == 2)
#endif
#endif
#ifndef KILN_HAVE_DNNL
#define KILN_HAVE_DNNL 0
#endif

#if KILN_HAVE_DNNL
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the library ---------------------------------------------------------------------------- */
/* Every function used, resolved by dlsym into dn (called as dn.name). */
#define DNNL_FUNCS(X)                                                                               \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_stream_destroy)          \
    X(dnnl_memory_desc_init_by_tag) X(dnnl_memory_desc_init_by_strides) X(dnnl_memory_desc_get_size) X(dnnl_memory_create)              \
    X(dnnl_memory_destroy) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)             \
    X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_primitive_desc_create)                        \
    X(dnnl_primitive_desc_destroy) X(dnnl_primitive_desc_query_md) X(dnnl_primitive_create)         \
    X(dnnl_primitive_destroy) X(dnnl_primitive_execute) X(dnnl_dilated_convolution_forward_desc_init) \
    X(dnnl_dilated_convolution_backward_data_desc_init)                                             \
    X(dnnl_dilated_convolution_backward_weights_desc_init) X(dnnl_pooling_v2_forward_desc_init)     \
    X(dnnl_pooling_v2_backward_desc_init) X(dnnl_matmul_desc_init)
#define DN_FIELD(f) __typeof__(&f) f;
static struct { DNNL_FUNCS(DN_FIELD) } dn;
#undef DN_FIELD
static dnnl_engine_t dn_engine;

bool kiln_dnnl_load(char *why, size_t why_size) {
    const char *name = "libdnnl.so.2";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, why_size, "%s not found (%s)", name, dlerror());
        return false;
    }
    const char *missing = NULL;
    /* dlsym returns void *; POSIX guarantees it converts to a function pointer */
#define DN_RESOLVE(f) if (!missing && !(*(void **)&dn.f = dlsym(lib, #f))) missing = #f;
    DNNL_FUNCS(DN_RESOLVE)
#undef DN_RESOLVE
    if (missing) snprintf(why, why_size, "%s lacks %s", name, missing);
    else if (dn.dnnl_engine_create(&dn_engine, dnnl_cpu, 0) != dnnl_success) snprintf(why, why_size, "%s: no CPU engine", name);
    if (missing || !dn_engine) {
        memset(&dn, 0, sizeof dn);
        dlclose(lib);
        return false;
    }
    return true; /* the library and the engine live as long as the process */
}

/* ---- geometry ------------------------------------------------------------------------------- */
/* A call as oneDNN sees it: the big (conv input / pool input) and small (conv output / pool
 * output) NCHW shapes, the weight shape (5-D goihw with groups), and the window in oneDNN's
 * conventions: dilation - 1, and a right padding that makes floor((big + l + r - extent) / stride)
 * + 1 equal the small size (torch's ceil_mode, conv2d_transpose's output_padding and a
 * conv2d_backward_weight dy smaller than conv2d's output all fold into it). Zeroed, so the bytes
 * are the cache key. */
typedef struct dn_geom {
    int64_t op;
    int64_t big[4], small[4], wei[5], wei_nd;
    dnnl_dims_t kernel, stride, dil, pad_l, pad_r; /* 2 used, as oneDNN's calls take dnnl_dims_t */
    int64_t include_pad;
    /* matmul: rank, src [batch..., M, K], weights [batch..., K, N], dst [batch..., M, N] (size-1
     * batch dims broadcast) and whether src / weights are stored transposed */
    int64_t mm_nd, mm_src[KILN_MAX_DIMS], mm_wei[KILN_MAX_DIMS], mm_dst[KILN_MAX_DIMS], mm_ta, mm_tb;
    int64_t mm_bias; /* dense with a bias: the matmul's bias argument is its epilogue */
} dn_geom;

/* The kernel tensor an argument binds: an input's index, or DN_OUT for the result. */
#define DN_OUT (-1)

static bool is_conv(kiln_op op) {
    return op == KILN_OP_CONV2D || op == KILN_OP_CONV2D_TRANSPOSE || op == KILN_OP_CONV2D_BACKWARD_WEIGHT;
}

static void dn_window(dn_geom *g, const int64_t *pad, const int64_t *dil) {
    for (int i = 0; i < 2; i++) {
        int64_t extent = (g->kernel[i] - 1) * dil[i] + 1;
        g->dil[i] = dil[i] - 1;
        g->pad_l[i] = pad[i];
        g->pad_r[i] = (g->small[2 + i] - 1) * g->stride[i] + extent - g->big[2 + i] - pad[i];
    }
}

/* matmul(a, b) as one oneDNN matmul, numpy semantics like the reference kernel (matmul.c): a 1-D
 * a is a row [1, K], a 1-D b a column [K, 1]; transposes apply to matrices only and become
 * strides; batch dims are left-padded with 1 and broadcast. When b is shared by every batch and
 * a's matrices are stacked row-major, the batches fold into M (one plain GEMM). False if the
 * result is empty or K is 0 (the kernel fills those itself) or the batch dims do not broadcast. */
static bool mm_geom(const kiln_attr *attrs, int na, const int64_t *sa, int nb, const int64_t *sb, dn_geom *g) {
    bool ta = na > 1 && kiln_attr_bool(KILN_OP_MATMUL, attrs, "transpose_a");
    bool tb = nb > 1 && kiln_attr_bool(KILN_OP_MATMUL, attrs, "transpose_b");
    int64_t m = na == 1 ? 1 : sa[na - (ta ? 1 : 2)], k = na == 1 ? sa[0] : sa[na - (ta ? 2 : 1)];
    int64_t n = nb == 1 ? 1 : sb[nb - (tb ? 2 : 1)];
    int nba = na > 2 ? na - 2 : 0, nbb = nb > 2 ? nb - 2 : 0, nbatch;
    int64_t batch[KILN_MAX_DIMS];
    if (!kiln_broadcast_shapes(nba, sa, nbb, sb, &nbatch, batch)) return false;
    int64_t nmat = kiln_shape_numel(nbatch, batch);
    if (nbb == 0 || kiln_shape_numel(nbb, sb) == 1) /* b shared: fold when a holds every batch */
        if (!ta && kiln_shape_numel(nba, sa) == nmat) m *= nmat, nbatch = 0;
    g->mm_nd = nbatch + 2, g->mm_ta = ta, g->mm_tb = tb;
    for (int d = 0; d < nbatch; d++) {
        /* a and b's batch dims right-aligned to the result's, 1 where absent */
        g->mm_src[d] = d >= nbatch - nba ? sa[d - (nbatch - nba)] : 1;
        g->mm_wei[d] = d >= nbatch - nbb ? sb[d - (nbatch - nbb)] : 1;
        g->mm_dst[d] = batch[d];
    }
    int64_t *s = g->mm_src + nbatch, *w = g->mm_wei + nbatch, *o = g->mm_dst + nbatch;
    s[0] = m, s[1] = k, w[0] = k, w[1] = n, o[0] = m, o[1] = n;
    return m && n && k && nmat;
}

/* dense(x [.., k], w [n, k], b [n]?) = x @ w^T + b: one GEMM with the leading dims folded into
 * rows, w read transposed, and the bias as the matmul's bias argument. */
static bool dense_geom(int nd0, const int64_t *in0, const int64_t *in1, bool bias, dn_geom *g) {
    int64_t m = kiln_shape_numel(nd0 - 1, in0), k = in0[nd0 - 1], n = in1[0];
    g->mm_nd = 2, g->mm_tb = 1, g->mm_bias = bias;
    g->mm_src[0] = m, g->mm_src[1] = k, g->mm_wei[0] = k, g->mm_wei[1] = n, g->mm_dst[0] = m, g->mm_dst[1] = n;
    return m && n && k;
}

/* Reads a call's geometry from the shapes (and ranks) of input 0, input 1 (NULL if none) and
 * the result (`bias`: dense has its third input); false where oneDNN's semantics differ from
 * the reference kernel's. */
static bool dn_geom_make(kiln_op op, const kiln_attr *attrs, int nd0, const int64_t *in0, int nd1, const int64_t *in1,
                         const int64_t *out, bool bias, dn_geom *g) {
    char err[256];
    memset(g, 0, sizeof *g);
    g->op = op;
    if (op == KILN_OP_MATMUL) return mm_geom(attrs, nd0, in0, nd1, in1, g);
    if (op == KILN_OP_DENSE) return dense_geom(nd0, in0, in1, bias, g);
    if (is_conv(op)) {
        kiln_conv_geom c;
        if (!kiln_conv_geom_read(op, attrs, in0, in1, out, &c)) return false;
        int64_t big[4] = {c.n, c.bc, c.bh, c.bw}, small[4] = {c.n, c.sc, c.sh, c.sw};
        memcpy(g->big, big, sizeof big);
        memcpy(g->small, small, sizeof small);
        int64_t wg[5] = {c.groups, c.sc / c.groups, c.bc / c.groups, c.kh, c.kw};
        g->wei_nd = c.groups > 1 ? 5 : 4;
        memcpy(g->wei, wg + (c.groups > 1 ? 0 : 1), sizeof(int64_t) * (size_t)g->wei_nd);
        g->kernel[0] = c.kh, g->kernel[1] = c.kw;
        g->stride[0] = c.stride[0], g->stride[1] = c.stride[1];
        dn_window(g, c.pad, c.dil);
        return c.n > 0;
    }
    int64_t pad[4], dil[2] = {1, 1};
    const int64_t *big = op == KILN_OP_AVG_POOL2D_BACKWARD ? out : in0;
    const int64_t *small = op == KILN_OP_AVG_POOL2D_BACKWARD ? in0 : op == KILN_OP_MAX_POOL2D_BACKWARD ? in1 : out;
    memcpy(g->big, big, sizeof g->big);
    memcpy(g->small, small, sizeof g->small);
    if (!kiln_window_attr(op, attrs, "kernel", 1, g->kernel, err, sizeof err) ||
        !kiln_window_attr(op, attrs, "padding", 0, pad, err, sizeof err) ||
        (kiln_attr_index(op, "dilation") >= 0 && !kiln_window_attr(op, attrs, "dilation", 1, dil, err, sizeof err)))
        return false;
    if (!kiln_attr_get(op, attrs, "stride")->set) memcpy(g->stride, g->kernel, sizeof(int64_t) * 2);
    else if (!kiln_window_attr(op, attrs, "stride", 1, g->stride, err, sizeof err)) return false;
    dn_window(g, pad, dil);
    bool avg = op == KILN_OP_AVG_POOL2D || op == KILN_OP_AVG_POOL2D_BACKWARD;
    g->include_pad = avg && kiln_attr_bool(op, attrs, "count_include_pad");
    /* oneDNN divides by the whole kernel, the reference by the window cut at the declared right
     * padding: they agree unless ceil_mode adds windows reaching past that padding. */
    if (g->include_pad && (g->pad_r[0] > pad[2] || g->pad_r[1] > pad[3])) return false;
    return g->big[0] > 0;
}

/* ---- primitives and their cache ------------------------------------------------------------- */
/* Which kernel tensor each primitive argument is: in[0], in[1] or out[0] (index 2). */
typedef struct dn_arg {
    int arg, tensor;
    dnnl_memory_desc_t md;
} dn_arg;

typedef struct dn_prim {
    dnnl_primitive_t prim;
    int n_args;
    dn_arg args[4];
    size_t scratch; /* bytes of user scratchpad */
} dn_prim;

/* max_pool2d_backward runs the forward (pre) for its workspace (ws) then the backward (main). */
typedef struct dn_entry {
    struct dn_entry *next;
    dn_geom key;
    dn_prim main, pre;
    dnnl_memory_desc_t ws, pre_dst;
} dn_entry;

#define DN_BUCKETS 64
static dn_entry *dn_cache[DN_BUCKETS];
static pthread_mutex_t dn_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned dn_hash(const dn_geom *g) {
    const unsigned char *p = (const unsigned char *)g;
    unsigned h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < sizeof *g; i++) h = (h ^ p[i]) * 16777619u;
    return h % DN_BUCKETS;
}

static bool md_plain(dnnl_memory_desc_t *md, int nd, const int64_t *dims) {
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++) d[i] = dims[i];
    dnnl_format_tag_t tag = nd == 5 ? dnnl_goihw : dnnl_nchw; /* nchw and oihw are one layout */
    return dn.dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag) == dnnl_success;
}

/* Creates p from descriptor `desc` (hint: the forward primitive descriptor of a backward one);
 * args pairs (oneDNN argument, kernel tensor) with the memory descriptor each uses. */
static bool prim_make(dn_prim *p, const void *desc, const_dnnl_primitive_desc_t hint, int n_args, const int *arg,
                      const int *tensor, const dnnl_memory_desc_t *const *md, dnnl_primitive_desc_t *keep_pd) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = dn.dnnl_primitive_attr_create(&attr) == dnnl_success &&
              dn.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
              dn.dnnl_primitive_desc_create(&pd, desc, attr, dn_engine, hint) == dnnl_success &&
              dn.dnnl_primitive_create(&p->prim, pd) == dnnl_success;
    if (ok) {
        p->scratch = dn.dnnl_memory_desc_get_size(dn.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
        p->n_args = n_args;
        for (int i = 0; i < n_args; i++) p->args[i] = (dn_arg){arg[i], tensor[i], *md[i]};
    }
    if (attr) dn.dnnl_primitive_attr_destroy(attr);
    if (ok && keep_pd) *keep_pd = pd;
    else if (pd) dn.dnnl_primitive_desc_destroy(pd);
    return ok;
}

/* A forward primitive descriptor: the hint backward descriptors need, or max pooling's forward. */
static bool fwd_desc(const dn_geom *g, dnnl_prop_kind_t prop, const dnnl_memory_desc_t *big, const dnnl_memory_desc_t *small,
                     const dnnl_memory_desc_t *wei, dnnl_alg_kind_t alg, dnnl_convolution_desc_t *cd, dnnl_pooling_v2_desc_t *pd) {
    if (is_conv((kiln_op)g->op))
        return dn.dnnl_dilated_convolution_forward_desc_init(cd, prop, dnnl_convolution_direct, big, wei, NULL, small, g->stride,
                                                             g->dil, g->pad_l, g->pad_r) == dnnl_success;
    return dn.dnnl_pooling_v2_forward_desc_init(pd, prop, alg, big, small, g->stride, g->kernel, g->dil, g->pad_l, g->pad_r) ==
           dnnl_success;
}

/* A row-major [batch..., rows, cols] descriptor; `t`: each matrix is stored transposed. */
static bool md_matrix(dnnl_memory_desc_t *md, int nd, const int64_t *dims, bool t) {
    dnnl_dims_t d, str;
    int64_t rows = dims[nd - 2], cols = dims[nd - 1], step = rows * cols;
    for (int i = nd - 3; i >= 0; i--) d[i] = dims[i], str[i] = step, step *= dims[i];
    d[nd - 2] = rows, d[nd - 1] = cols;
    str[nd - 2] = t ? 1 : cols, str[nd - 1] = t ? rows : 1;
    return dn.dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, str) == dnnl_success;
}

static bool mm_entry_make(dn_entry *e) {
    const dn_geom *g = &e->key;
    int nd = (int)g->mm_nd;
    dnnl_memory_desc_t src, wei, dst, bias;
    dnnl_matmul_desc_t md;
    int64_t bias_dims[2] = {1, g->mm_dst[nd - 1]};
    if (!md_matrix(&src, nd, g->mm_src, g->mm_ta) || !md_matrix(&wei, nd, g->mm_wei, g->mm_tb) ||
        !md_matrix(&dst, nd, g->mm_dst, false) || (g->mm_bias && !md_matrix(&bias, 2, bias_dims, false)) ||
        dn.dnnl_matmul_desc_init(&md, &src, &wei, g->mm_bias ? &bias : NULL, &dst) != dnnl_success)
        return false;
    if (g->mm_bias)
        return prim_make(&e->main, &md, NULL, 4, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST},
                         (int[]){0, 1, 2, DN_OUT}, (const dnnl_memory_desc_t *[]){&src, &wei, &bias, &dst}, NULL);
    return prim_make(&e->main, &md, NULL, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, (int[]){0, 1, DN_OUT},
                     (const dnnl_memory_desc_t *[]){&src, &wei, &dst}, NULL);
}

static bool entry_make(dn_entry *e) {
    const dn_geom *g = &e->key;
    kiln_op op = (kiln_op)g->op;
    if (op == KILN_OP_MATMUL || op == KILN_OP_DENSE) return mm_entry_make(e);
    dnnl_memory_desc_t big, small, wei;
    if (!md_plain(&big, 4, g->big) || !md_plain(&small, 4, g->small) || (is_conv(op) && !md_plain(&wei, (int)g->wei_nd, g->wei)))
        return false;
    dnnl_alg_kind_t alg = op == KILN_OP_MAX_POOL2D || op == KILN_OP_MAX_POOL2D_BACKWARD ? dnnl_pooling_max
                          : g->include_pad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
    bool fwd_only = op == KILN_OP_CONV2D || op == KILN_OP_MAX_POOL2D || op == KILN_OP_AVG_POOL2D;
    dnnl_convolution_desc_t cd, bcd;
    dnnl_pooling_v2_desc_t pd, bpd;
    dnnl_primitive_desc_t hint = NULL;
    /* forward_inference for a lone forward pool (no workspace); training where a backward follows */
    dnnl_prop_kind_t prop = fwd_only && !is_conv(op) ? dnnl_forward_inference : dnnl_forward_training;
    if (!fwd_desc(g, prop, &big, &small, &wei, alg, &cd, &pd)) return false;
    const void *fdesc = is_conv(op) ? (const void *)&cd : (const void *)&pd;
    bool ok;
    switch (op) {
    case KILN_OP_CONV2D:
        return prim_make(&e->main, fdesc, NULL, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, (int[]){0, 1, DN_OUT},
                         (const dnnl_memory_desc_t *[]){&big, &wei, &small}, NULL);
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_AVG_POOL2D:
        return prim_make(&e->main, fdesc, NULL, 2, (int[]){DNNL_ARG_SRC, DNNL_ARG_DST}, (int[]){0, DN_OUT},
                         (const dnnl_memory_desc_t *[]){&big, &small}, NULL);
    case KILN_OP_MAX_POOL2D_BACKWARD: /* pre: x (in 0) -> scratch dst + workspace */
        if (!prim_make(&e->pre, fdesc, NULL, 1, (int[]){DNNL_ARG_SRC}, (int[]){0}, (const dnnl_memory_desc_t *[]){&big}, &hint))
            return false;
        e->ws = *dn.dnnl_primitive_desc_query_md(hint, dnnl_query_workspace_md, 0);
        e->pre_dst = small;
        break;
    default: /* the other backwards need the forward descriptor as a hint */
        if (dn.dnnl_primitive_desc_create(&hint, fdesc, NULL, dn_engine, NULL) != dnnl_success) return false;
        break;
    }
    switch (op) {
    case KILN_OP_CONV2D_TRANSPOSE:
        ok = dn.dnnl_dilated_convolution_backward_data_desc_init(&bcd, dnnl_convolution_direct, &big, &wei, &small, g->stride,
                                                                 g->dil, g->pad_l, g->pad_r) == dnnl_success &&
             prim_make(&e->main, &bcd, hint, 3, (int[]){DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC}, (int[]){0, 1, DN_OUT},
                       (const dnnl_memory_desc_t *[]){&small, &wei, &big}, NULL);
        break;
    case KILN_OP_CONV2D_BACKWARD_WEIGHT:
        ok = dn.dnnl_dilated_convolution_backward_weights_desc_init(&bcd, dnnl_convolution_direct, &big, &wei, NULL, &small,
                                                                    g->stride, g->dil, g->pad_l, g->pad_r) == dnnl_success &&
             prim_make(&e->main, &bcd, hint, 3, (int[]){DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}, (int[]){0, 1, DN_OUT},
                       (const dnnl_memory_desc_t *[]){&big, &small, &wei}, NULL);
        break;
    default: /* pool backwards: dy is the last input */
        ok = dn.dnnl_pooling_v2_backward_desc_init(&bpd, alg, &big, &small, g->stride, g->kernel, g->dil, g->pad_l, g->pad_r) ==
                 dnnl_success &&
             prim_make(&e->main, &bpd, hint, 2, (int[]){DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC},
                       (int[]){op == KILN_OP_MAX_POOL2D_BACKWARD ? 1 : 0, DN_OUT}, (const dnnl_memory_desc_t *[]){&small, &big}, NULL);
        break;
    }
    dn.dnnl_primitive_desc_destroy(hint);
    return ok;
}

static void prim_free(dn_prim *p) {
    if (p->prim) dn.dnnl_primitive_destroy(p->prim);
}

/* The cached primitives of geometry g, created on first use; NULL if oneDNN has none. Failed
 * geometries are cached too (with no primitive), so supports() asks oneDNN once per shape. */
static dn_entry *dn_get(const dn_geom *g) {
    unsigned h = dn_hash(g);
    pthread_mutex_lock(&dn_lock);
    dn_entry *e = dn_cache[h];
    while (e && memcmp(&e->key, g, sizeof *g)) e = e->next;
    if (!e && (e = calloc(1, sizeof *e))) {
        e->key = *g;
        if (!entry_make(e)) {
            prim_free(&e->main);
            prim_free(&e->pre);
            memset(&e->main, 0, sizeof e->main);
            memset(&e->pre, 0, sizeof e->pre);
        }
        e->next = dn_cache[h];
        dn_cache[h] = e;
    }
    pthread_mutex_unlock(&dn_lock);
    return e && e->main.prim ? e : NULL;
}

/* ---- execution ------------------------------------------------------------------------------ */
/* Runs p on a's tensors plus `extra` arguments (a max backward's workspace and scratch dst). */
static bool prim_run(const dn_prim *p, dnnl_stream_t s, kiln_kernel_args *a, int n_extra, const dnnl_exec_arg_t *extra) {
    dnnl_exec_arg_t args[8];
    int n = 0;
    void *scratch = p->scratch ? malloc(p->scratch) : NULL;
    dnnl_memory_desc_t smd;
    bool ok = !p->scratch ||
              (scratch && dn.dnnl_memory_desc_init_by_tag(&smd, 1, (dnnl_dims_t){(dnnl_dim_t)p->scratch}, dnnl_u8, dnnl_a) == dnnl_success &&
               dn.dnnl_memory_create(&args[n].memory, &smd, dn_engine, scratch) == dnnl_success);
    if (ok && p->scratch) args[n++].arg = DNNL_ARG_SCRATCHPAD;
    for (int i = 0; ok && i < p->n_args; i++) {
        const kiln_tensor *t = p->args[i].tensor == DN_OUT ? a->out[0] : a->in[p->args[i].tensor];
        ok = dn.dnnl_memory_create(&args[n].memory, &p->args[i].md, dn_engine, t->data) == dnnl_success;
        if (ok) args[n++].arg = p->args[i].arg;
    }
    int own = n;
    for (int i = 0; i < n_extra; i++) args[n++] = extra[i];
    ok = ok && dn.dnnl_primitive_execute(p->prim, s, n, args) == dnnl_success && dn.dnnl_stream_wait(s) == dnnl_success;
    for (int i = 0; i < own; i++) dn.dnnl_memory_destroy(args[i].memory);
    free(scratch);
    return ok;
}

/* max_pool2d_backward: the forward fills a workspace (where each maximum was), the backward
 * routes dy through it. */
static bool run_max_backward(const dn_entry *e, dnnl_stream_t s, kiln_kernel_args *a) {
    size_t ws_bytes = dn.dnnl_memory_desc_get_size(&e->ws), dst_bytes = dn.dnnl_memory_desc_get_size(&e->pre_dst);
    void *ws = malloc(ws_bytes ? ws_bytes : 1), *dst = malloc(dst_bytes ? dst_bytes : 1);
    dnnl_exec_arg_t extra[2] = {{DNNL_ARG_WORKSPACE, NULL}, {DNNL_ARG_DST, NULL}};
    bool ok = ws && dst && dn.dnnl_memory_create(&extra[0].memory, &e->ws, dn_engine, ws) == dnnl_success &&
              dn.dnnl_memory_create(&extra[1].memory, &e->pre_dst, dn_engine, dst) == dnnl_success &&
              prim_run(&e->pre, s, a, 2, extra) && prim_run(&e->main, s, a, 1, extra);
    for (int i = 0; i < 2; i++)
        if (extra[i].memory) dn.dnnl_memory_destroy(extra[i].memory);
    free(ws);
    free(dst);
    return ok;
}

static kiln_status dn_kernel(kiln_kernel_args *a) {
    if (!dn_engine) return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "the dnnl dialect's library is not loaded");
    const kiln_tensor *in1 = a->n_in > 1 ? a->in[1] : NULL;
    dn_geom g;
    bool geom = dn_geom_make(a->op, a->attrs, a->in[0]->ndim, a->in[0]->shape, in1 ? in1->ndim : 0, in1 ? in1->shape : NULL,
                             a->out[0]->shape, a->n_in > 2, &g);
    if (!geom && a->op == KILN_OP_MATMUL && (!a->in[0]->numel || !in1->numel)) { /* empty: zeros (or nothing) */
        memset(a->out[0]->data, 0, sizeof(float) * (size_t)a->out[0]->numel);
        return KILN_OK;
    }
    dn_entry *e = geom ? dn_get(&g) : NULL;
    if (!e) return kiln_kernel_fail(a, KILN_ERR_UNSUPPORTED, "dnnl: no primitive for these shapes and attributes");
    dnnl_stream_t s = NULL;
    bool ok = dn.dnnl_stream_create(&s, dn_engine, dnnl_stream_default_flags) == dnnl_success &&
              (e->pre.prim ? run_max_backward(e, s, a) : prim_run(&e->main, s, a, 0, NULL));
    if (s) dn.dnnl_stream_destroy(s);
    return ok ? KILN_OK : kiln_kernel_fail(a, KILN_ERR_INTERNAL, "dnnl: executing the primitive failed");
}

/* f32 operands and result (4-D but for matmul), and a geometry oneDNN accepts (asking it once
 * per shape); an empty matmul is accepted (the kernel fills it). g: the geometry read. */
static bool dn_supports_geom(const kiln_node *n, dn_geom *g) {
    bool gemm = n->op == KILN_OP_MATMUL || n->op == KILN_OP_DENSE;
    const kiln_type *t[4] = {n->in[0]->type, n->n_in > 1 ? n->in[1]->type : NULL, n->out->type, n->n_in > 2 ? n->in[2]->type : NULL};
    for (int i = 0; i < 4; i++)
        if (t[i] && (t[i]->kind != KILN_TYPE_TENSOR || t[i]->dtype != KILN_F32 || (!gemm && t[i]->ndim != 4))) return false;
    if (dn_geom_make(n->op, n->attrs, t[0]->ndim, t[0]->shape, t[1] ? t[1]->ndim : 0, t[1] ? t[1]->shape : NULL, t[2]->shape,
                     n->n_in > 2, g))
        return dn_get(g) != NULL;
    return n->op == KILN_OP_MATMUL && (!kiln_shape_numel(t[0]->ndim, t[0]->shape) || !kiln_shape_numel(t[1]->ndim, t[1]->shape));
}

static bool dn_supports(const kiln_node *n) {
    dn_geom g;
    return dn_supports_geom(n, &g);
}

/* oneDNN's pools and its weight gradient of a 1-channel input pay only with threads to spare.
 * Measured (bench/dialects.c, ms, LeNet batch 64): 16 cores: max_pool2d_backward dnnl 0.171 /
 * 0.045 (pool1 / pool2), reference 0.412 / 0.155; conv1 wgrad dnnl 0.132, blas 1.93. 2 cores (2
 * threads): pool1 max fwd dnnl 1.03, reference 0.45; avg fwd 0.71 vs 0.24; avg bwd 0.35 vs 0.25;
 * max bwd 1.98 vs 0.47; conv1 wgrad dnnl 2.18, blas 1.53. So these are taken with at least 4 CPUs
 * online only. */
static bool many_cpus(void) { return sysconf(_SC_NPROCESSORS_ONLN) >= 4; }
static bool dn_pool_supports(const kiln_node *n) { return many_cpus() && dn_supports(n); }
static bool dn_conv_bw_supports(const kiln_node *n) {
    return (n->in[0]->type->ndim == 4 && n->in[0]->type->shape[1] > 1 ? true : many_cpus()) && dn_supports(n);
}

/* matmul: oneDNN's matmul primitive (gemm:jit, OpenMP) against OpenBLAS's sgemm, best ms of
 * several runs on 2 cores / 2 threads, OMP_WAIT_POLICY=passive (table in bench/dialects.c):
 * oneDNN matches or beats sgemm on plain and transpose_b GEMMs, wins 1.4-1.8x on batched
 * attention GEMMs and small ones, and shares the OpenMP pool of the generated kernels instead
 * of running a second pool; but with a transposed a and a large contraction its jit GEMM runs
 * 2-3x slower (x^T @ dy for [1024, 1024]^T x [1024, 256]: 36 vs 89 GFLOP/s). So it takes
 * transpose_a only for matrices of at most DN_MM_TA_LIMIT multiply-adds each (attention's dk,
 * dv), leaving larger weight gradients to blas. */
#define DN_MM_TA_LIMIT ((int64_t)1 << 21)
static bool dn_matmul_supports(const kiln_node *n) {
    dn_geom g;
    if (!dn_supports_geom(n, &g)) return false;
    const int64_t *o = g.mm_dst + g.mm_nd - 2;
    return !g.mm_ta || o[0] * o[1] * g.mm_src[g.mm_nd - 1] <= DN_MM_TA_LIMIT;
}

/* Priorities: oneDNN beat both the reference and blas's im2col + sgemm on every convolution and
 * pool measured (the table is in bench/dialects.c), so it outranks blas (10); for matmul too,
 * where dn_matmul_supports takes it (above). */
#define DN_IMPL(name, OP, supports) \
    static const kiln_dialect_impl name = {KILN_OP_##OP, KILN_DIALECT_DNNL, 20, supports, dn_kernel};
DN_IMPL(dn_matmul, MATMUL, dn_matmul_supports)
DN_IMPL(dn_dense, DENSE, dn_supports) /* x @ w^T with the bias as the matmul's epilogue */
DN_IMPL(dn_conv2d, CONV2D, dn_supports)
DN_IMPL(dn_conv2d_t, CONV2D_TRANSPOSE, dn_supports)
DN_IMPL(dn_conv2d_bw, CONV2D_BACKWARD_WEIGHT, dn_conv_bw_supports)
DN_IMPL(dn_max_pool, MAX_POOL2D, dn_pool_supports)
DN_IMPL(dn_avg_pool, AVG_POOL2D, dn_pool_supports)
DN_IMPL(dn_max_pool_bw, MAX_POOL2D_BACKWARD, dn_pool_supports)
DN_IMPL(dn_avg_pool_bw, AVG_POOL2D_BACKWARD, dn_pool_supports)
const kiln_dialect_impl *const kiln_dnnl_impls[] = {&dn_matmul, &dn_dense, &dn_conv2d, &dn_conv2d_t, &dn_conv2d_bw, &dn_max_pool, &dn_avg_pool,
                                                    &dn_max_pool_bw, &dn_avg_pool_bw, NULL};

#else /* no oneDNN headers: the dialect reports why it is unavailable */
const kiln_dialect_impl *const kiln_dnnl_impls[] = {NULL};

bool kiln_dnnl_load(char *why, size_t why_size) {
    snprintf(why, why_size, "built without oneDNN headers");
    return false;
}
#endif
