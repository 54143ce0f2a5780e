/* render_cuda.c — prints a planned group (lower.h) as one CUDA kernel for NVRTC: the CUDA preamble
 * plus the shared one (render.h), then per form a grid-stride elementwise loop (16-byte vector
 * loads and stores where the layout allows), a row reduction (a sub-warp, warp or block per
 * row: shuffles, then shared memory), or a column reduction (threads over columns, row-threads
 * combined in shared memory). Reductions with few outputs and long reduced extents split each
 * output's extent over several blocks (partials combined by the last block to finish). */
#include "codegen/render.h"
#include <stdlib.h>
#include <string.h>

#define CU_BLOCK 256       /* threads per block of elementwise loops and most reductions */
#define CU_MAX_GRID 1056   /* blocks of a grid-stride loop: 132 SMs (H100) x 8 */

/* Self-contained (NVRTC's builtin headers have no stdint.h or cuda_fp16.h): the C names the
 * shared code uses, f16 through PTX cvt (round to nearest even, subnormals kept), the bit casts
 * the shared bf16 conversions use, CUDA's accurate libm (never the fast intrinsics) behind the kg_*f
 * names of the C preamble's polynomials; kg_pack<T, V> is V elements loaded as one vector. */
static const char CU_PREAMBLE[] =
    "typedef long long int64_t;\ntypedef unsigned long long uint64_t;\ntypedef int int32_t;\n"
    "typedef unsigned int uint32_t;\ntypedef unsigned short uint16_t;\ntypedef signed char int8_t;\n"
    "typedef unsigned char uint8_t;\n"
    "#define INT64_MAX 9223372036854775807LL\n#define INT64_MIN (-INT64_MAX - 1)\n#define INT64_C(x) x##LL\n"
    "#define INFINITY __int_as_float(0x7f800000)\n#define NAN __int_as_float(0x7fc00000)\n"
    "#define KG_FN static __device__ __forceinline__\n"
    "KG_FN float kg_ld_f16(uint16_t h) { float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h)); return f; }\n"
    "KG_FN uint16_t kg_st_f16(float x) { uint16_t h; asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(x)); return h; }\n"
    "KG_FN uint32_t kg_bits(float x) { return __float_as_uint(x); }\n"
    "KG_FN float kg_float(uint32_t u) { return __uint_as_float(u); }\n"
    "KG_FN float kg_expf(float x) { return expf(x); }\nKG_FN float kg_logf(float x) { return logf(x); }\n"
    "KG_FN float kg_log2f(float x) { return log2f(x); }\nKG_FN float kg_tanhf(float x) { return tanhf(x); }\n"
    "KG_FN float kg_erff(float x) { return erff(x); }\nKG_FN float kg_atanf(float x) { return atanf(x); }\n"
    "template <typename T, int V> struct alignas(sizeof(T) * V) kg_pack { T e[V]; };\n";

/* Where a loop reads operand k: p<buf>[<pre><k>], or element e_ of its pack x<k> / y<k> when the
 * loop is vectorized (vec > 1) and k is contiguous along the innermost dim. */
typedef struct cu_at {
    const char *pre;
    int vec;
} cu_at;

static gx cu_elem(const gen_plan *p, int k, const void *arg) {
    const cu_at *at = arg;
    const gen_opnd *o = &p->op[k];
    if (o->zero) return gxf("p%d[0]", o->buf);
    if (at->vec > 1 && o->st[p->nd - 1] == 1) return gxf("%c%d.e[e_]", o->out ? 'y' : 'x', k);
    return gxf("p%d[%s%d]", o->buf, at->pre, k);
}

static int64_t pow2_ceil(int64_t n) {
    int64_t w = 1;
    while (w < n) w *= 2;
    return w;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static unsigned grid_for(int64_t work, int64_t per_block) {
    int64_t g = (work + per_block - 1) / per_block;
    return (unsigned)(g < 1 ? 1 : g > CU_MAX_GRID ? CU_MAX_GRID : g);
}

/* 32-bit indexing when every size, the loop space and every operand's extent stay below 2^31
 * (unsigned division is several times cheaper than 64-bit). */
static const char *index_type(const gen_plan *p) {
    const int64_t lim = (int64_t)1 << 31;
    int64_t space = 1;
    for (int d = 0; d < p->nd; d++) space = p->dim[d] > lim ? lim : space * p->dim[d];
    if (space >= lim) return "int64_t";
    for (int k = 0; k < p->n_op; k++) {
        int64_t ext = 1;
        for (int d = 0; d < p->nd; d++) ext += (p->dim[d] > 0 ? p->dim[d] - 1 : 0) * p->op[k].st[d];
        if (ext >= lim) return "int64_t";
    }
    return "uint32_t";
}

/* Elements per vector of an elementwise loop: the widest V (16 bytes of the largest contiguous
 * operand) such that every operand is contiguous or broadcast along the innermost dim, whose
 * size and every contiguous operand's outer strides V divides (so each vector is aligned when
 * the base pointer is); 1 if none. */
static int vec_width(const gen_plan *p) {
    int last = p->nd - 1;
    size_t big = 0;
    for (int k = 0; k < p->n_op; k++) {
        const gen_opnd *o = &p->op[k];
        if (o->zero) continue;
        if (o->st[last] > 1) return 1;
        if (o->st[last] == 1 && kiln_dtype_size(o->dt) > big) big = kiln_dtype_size(o->dt);
    }
    for (int v = big ? (int)(16 / big) : 1; v > 1; v /= 2) {
        bool ok = p->dim[last] % v == 0;
        for (int k = 0; k < p->n_op && ok; k++)
            for (int d = 0; d < last && p->op[k].st[last] == 1; d++) ok &= p->op[k].st[d] % v == 0;
        if (ok) return v;
    }
    return 1;
}

/* The launch shape being chosen, and a split reduction's scratch (kiln_gen_kernel). */
typedef struct cu_geom {
    unsigned grid, block;
    size_t counter_bytes, scratch_bytes;
} cu_geom;

/* Elementwise: one element (or one vector of V) per iteration of a grid-stride loop; the vector
 * path runs when every vector operand's base pointer is aligned to its vector, else the scalar
 * loop does the same work. */
static void render_elementwise(gen_plan *p, gen_out *o, const gen_target *T, cu_geom *g) {
    kiln_buf *b = &o->b;
    int64_t total = gen_numel_dims(p, 0, p->nd, false);
    int V = vec_width(p), last = p->nd - 1;
    g->block = CU_BLOCK;
    g->grid = grid_for(total / V, CU_BLOCK);
    kiln_buf_printf(b, "const %s total = args.params[%d];\n", T->idx, gen_slot(o, total));
    kiln_buf_printf(b, "const %s step = (%s)gridDim.x * blockDim.x, t0 = (%s)blockIdx.x * blockDim.x + threadIdx.x;\n",
                    T->idx, T->idx, T->idx);
    if (V > 1) {
        const cu_at at = {"o", V};
        kiln_buf_puts(b, "if (((0");
        for (int k = 0; k < p->n_op; k++)
            if (!p->op[k].zero && p->op[k].st[last] == 1)
                kiln_buf_printf(b, ") | ((unsigned long long)p%d & %zu", p->op[k].buf, V * kiln_dtype_size(p->op[k].dt) - 1);
        kiln_buf_printf(b, ")) == 0) {\nfor (%s t = t0; t < total / %d; t += step) {\n", T->idx, V);
        gen_emit_offsets(p, b, T, "o", NULL, -1);
        gx first = gxf("t * %d", V); /* flat index of the vector's first element */
        gen_emit_decode(p, b, T, first.s, p->nd, false, "o", -1);
        for (int k = 0; k < p->n_op; k++) {
            const gen_opnd *op = &p->op[k];
            if (op->zero || op->st[last] != 1) continue;
            const char *st = gen_store_t(op->dt);
            if (op->out) kiln_buf_printf(b, "kg_pack<%s, %d> y%d;\n", st, V, k);
            else kiln_buf_printf(b, "const kg_pack<%s, %d> x%d = *(const kg_pack<%s, %d> *)(p%d + o%d);\n", st, V, k, st, V,
                                 op->buf, k);
        }
        kiln_buf_printf(b, "#pragma unroll\nfor (int e_ = 0; e_ < %d; e_++) {\n", V);
        gen_emit_values(p, b, 0, cu_elem, &at, NULL);
        gen_emit_stores(p, b, cu_elem, &at);
        kiln_buf_puts(b, "}\n");
        for (int k = 0; k < p->n_op; k++)
            if (p->op[k].out && !p->op[k].zero && p->op[k].st[last] == 1)
                kiln_buf_printf(b, "*(kg_pack<%s, %d> *)(p%d + o%d) = y%d;\n", gen_store_t(p->op[k].dt), V, p->op[k].buf, k, k);
        kiln_buf_puts(b, "}\nreturn;\n}\n");
    }
    const cu_at at = {"o", 1};
    kiln_buf_printf(b, "for (%s t = t0; t < total; t += step) {\n", T->idx);
    gen_emit_offsets(p, b, T, "o", NULL, -1);
    gen_emit_decode(p, b, T, "t", p->nd, false, "o", -1);
    gen_emit_values(p, b, 0, cu_elem, &at, NULL);
    gen_emit_stores(p, b, cu_elem, &at);
    kiln_buf_puts(b, "}\n");
}

/* Folds into a the partial of lane ^ m for m = width / 2 .. 1: each aligned group of `width`
 * lanes ends with its total (the same combination order in every run). */
static void emit_shuffles(kiln_buf *b, const gen_red *r, int64_t width) {
    for (int64_t m = width / 2; m >= 1; m /= 2)
        kiln_buf_printf(b, "{ const %s x_ = __shfl_xor_sync(0xffffffffu, a, %lld); a = %s; }\n", r->acc_t, (long long)m,
                        r->fold.s);
}

/* Split reductions. When a reduction has few outputs (rows, or column tiles) for the GPU and
 * long reduced extents, each output's extent is cut into `parts` chunks: a unit of work (one
 * iteration of a block's grid-stride loop) folds one chunk, the block combines its threads,
 * stores its partial in the kernel's scratch and counts itself on the output's counter; the
 * unit that counts last folds the output's partials in part order, combines them as the block
 * did, applies the consumers and stores, and resets the counter to zero, so the next launch
 * (a CUDA graph's replay included) finds every counter zero again. Whichever unit comes last,
 * the partials combine in the same order: results are the same in every run. The counters and
 * the partials are the two buffers after the results (kiln_gen_kernel.counter_bytes,
 * scratch_bytes). */
#define CU_SPLIT_UNITS CU_MAX_GRID /* aim: about this many units (8 blocks of 256 per SM) */
#define CU_SPLIT_MIN 16            /* elements each thread of a unit folds at least */

/* Parts to cut each of `outs` reductions of `len` elements into, for blocks of `threads`
 * threads per output: 1 (no split) unless the outputs are few (under 4 blocks per SM) and four
 * parts at least (a whole reduction's block has up to 1024 threads) keep CU_SPLIT_MIN elements
 * per thread. *chunk: elements per part, a multiple of threads (rounding keeps 4 parts). */
static int64_t split_parts(int64_t outs, int64_t len, int64_t threads, int64_t *chunk) {
    if (outs <= 0 || outs >= CU_MAX_GRID / 2) return 1;
    int64_t s = min64((CU_SPLIT_UNITS + outs - 1) / outs, len / (threads * CU_SPLIT_MIN));
    if (s < 4) return 1;
    int64_t per = (len + s - 1) / s;
    *chunk = (per + threads - 1) / threads * threads;
    return (len + *chunk - 1) / *chunk;
}

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

/* The split's sizes and buffers: params parts and chunk, the counters cnt_ (one per output) and
 * the partials part_ (parts x `width` per output), read past L1 (volatile: other SMs wrote them). */
static void emit_split_decl(const gen_plan *p, gen_out *o, const gen_target *T, const gen_red *r, int64_t outs,
                            int64_t parts, int64_t chunk, int64_t width, cu_geom *g) {
    int nb = p->f->n_params + p->f->body->n_results;
    g->counter_bytes = round256((size_t)outs * sizeof(unsigned));
    g->scratch_bytes = round256((size_t)(outs * parts * width) * (strcmp(r->acc_t, "float") ? 8 : 4));
    kiln_buf_printf(&o->b,
                    "const %s parts = args.params[%d], chunk = args.params[%d];\n"
                    "unsigned *const cnt_ = (unsigned *)args.bufs[%d];\n"
                    "volatile %s *const part_ = (volatile %s *)args.bufs[%d];\n__shared__ bool last_;\n",
                    T->idx, gen_slot(o, parts), gen_slot(o, chunk), nb, r->acc_t, r->acc_t, nb + 1);
}

/* After a unit's block combine: threads where `writer` holds store their partial a at
 * part_[slot]; thread 0 counts the unit on cnt_[out]; a unit that is not its output's last is
 * done (`continue`: the block agrees through last_). The last one (after a fence, as the other
 * units fenced their partials before counting) folds part_[<read>] for pp = first, first + step
 * ... < parts into a fresh a, for the caller to combine across the block again. */
static void emit_split_handoff(kiln_buf *b, const gen_target *T, const gen_red *r, const char *writer, const char *slot,
                               const char *out, const char *first, int64_t step, const char *read) {
    kiln_buf_printf(b,
                    "if (%s) part_[%s] = a;\n__threadfence();\n__syncthreads();\n"
                    "if (threadIdx.x == 0) last_ = atomicAdd(cnt_ + %s, 1u) == parts - 1;\n__syncthreads();\n"
                    "if (!last_) continue;\n__threadfence();\na = %s;\n"
                    "for (%s pp = %s; pp < parts; pp += %lld) {\nconst %s x_ = part_[%s];\na = %s;\n}\n",
                    writer, slot, out, r->ident, T->idx, first, (long long)step, r->acc_t, read, r->fold.s);
}

/* Combines the partials a of each group of w lanes (w a power of two): shuffles within a warp,
 * then, for w > 32, one value per warp through red_ and shuffles in the first warp; lane 0 of
 * the group ends with the total. */
static void emit_row_combine(kiln_buf *b, const gen_red *r, int64_t w) {
    emit_shuffles(b, r, min64(w, 32));
    if (w <= 32) return;
    kiln_buf_puts(b, "if (lane % 32 == 0) red_[lane / 32] = a;\n__syncthreads();\n");
    kiln_buf_printf(b, "if (lane < 32) {\na = lane < %lld ? red_[lane] : %s;\n", (long long)(w / 32), r->ident);
    emit_shuffles(b, r, w / 32);
    kiln_buf_puts(b, "}\n");
}

/* Row reduction (innermost dim reduced): w threads per output row, w a power of two up to a
 * warp for rows up to 1024 elements (several rows per block), else a block of 256 or 1024;
 * lanes stride the row computing producers on the fly, fold by shuffles (and shared memory
 * across warps); lane 0 applies the consumers and stores. Few long rows (a loss or a norm
 * summed to a scalar) split: a block of 256 per chunk of a row. */
static void render_row(gen_plan *p, gen_out *o, const gen_target *T, const gen_red *r, cu_geom *g) {
    kiln_buf *b = &o->b;
    const char *ix = T->idx;
    int64_t rows = gen_numel_dims(p, 0, p->nd, false), len = gen_numel_dims(p, 0, p->nd, true), chunk = len;
    int64_t w = len <= 32 ? pow2_ceil(len) : len <= 1024 ? 32 : len <= 8192 ? CU_BLOCK : 1024;
    int64_t parts = w >= CU_BLOCK ? split_parts(rows, len, CU_BLOCK, &chunk) : 1;
    if (parts > 1) w = CU_BLOCK;
    int64_t blk = w > CU_BLOCK ? w : CU_BLOCK, rpb = blk / w;
    const cu_at in_r = {"r", 1}, at_o = {"o", 1};
    g->block = (unsigned)blk;
    g->grid = grid_for(rows * parts, rpb);
    kiln_buf_printf(b, "const %s rows = args.params[%d], len = args.params[%d], lane = threadIdx.x %% %lld;\n", ix,
                    gen_slot(o, rows), gen_slot(o, len), (long long)w);
    if (w > 32) kiln_buf_printf(b, "__shared__ %s red_[%lld];\n", r->acc_t, (long long)(w / 32));
    if (parts > 1) {
        emit_split_decl(p, o, T, r, rows, parts, chunk, 1, g);
        kiln_buf_printf(b, "for (%s u = blockIdx.x; u < rows * parts; u += gridDim.x) {\n"
                           "const %s row = u %% rows, lo_ = u / rows * chunk, hi_ = lo_ + chunk < len ? lo_ + chunk : len;\n",
                        ix, ix);
    } else {
        kiln_buf_printf(b, "for (%s base = (%s)blockIdx.x * %lld; base < rows; base += (%s)gridDim.x * %lld) {\n", ix, ix,
                        (long long)rpb, ix, (long long)rpb);
        kiln_buf_printf(b, "const %s row = base + threadIdx.x / %lld;\n", ix, (long long)w);
    }
    kiln_buf_printf(b, "%s a = %s;\n", r->acc_t, r->ident);
    gen_emit_offsets(p, b, T, "o", NULL, -1);
    kiln_buf_puts(b, "if (row < rows) {\n");
    gen_emit_decode(p, b, T, "row", p->nd, false, "o", -1);
    kiln_buf_printf(b, "for (%s e = %s; e < %s; e += %lld) {\n", ix, parts > 1 ? "lo_ + lane" : "lane",
                    parts > 1 ? "hi_" : "len", (long long)w);
    gen_emit_offsets(p, b, T, "r", "o", 0);
    gen_emit_decode(p, b, T, "e", p->nd, true, "r", 0);
    gen_emit_values(p, b, 0, cu_elem, &in_r, r);
    kiln_buf_printf(b, "const %s x_ = %s;\na = %s;\n}\n}\n", r->acc_t, r->elem.s, r->fold.s);
    emit_row_combine(b, r, w);
    if (parts > 1) {
        emit_split_handoff(b, T, r, "threadIdx.x == 0", "row * parts + u / rows", "row", "lane", w, "row * parts + pp");
        emit_row_combine(b, r, w);
        kiln_buf_puts(b, "if (threadIdx.x == 0) cnt_[row] = 0;\n");
    }
    kiln_buf_puts(b, "if (lane == 0 && row < rows) {\n");
    gen_emit_values(p, b, 1, cu_elem, &at_o, r);
    gen_emit_stores(p, b, cu_elem, &at_o);
    kiln_buf_printf(b, "}\n%s}\n", w > 32 ? "__syncthreads();\n" : "");
}

/* The tree over the ty row-threads of each of tx columns in shared memory: row-thread 0 ends
 * with the column's total. */
static void emit_col_tree(kiln_buf *b, const gen_red *r, int64_t tx, int64_t ty) {
    if (ty <= 1) return;
    kiln_buf_puts(b, "red_[threadIdx.x] = a;\n__syncthreads();\n");
    for (int64_t s = ty / 2; s >= 1; s /= 2)
        kiln_buf_printf(b, "if (ty < %lld) {\nconst %s x_ = red_[threadIdx.x + %lld];\na = %s;\nred_[threadIdx.x] = a;\n}\n"
                           "__syncthreads();\n",
                        (long long)s, r->acc_t, (long long)(s * tx), r->fold.s);
}

/* Column reduction (innermost dim kept): a block is tx adjacent columns (coalesced) x ty
 * row-threads striding the reduced rows; the ty partials of a column are combined by a tree in
 * shared memory, and row-thread 0 applies the consumers and stores. Few column tiles over many
 * rows (bias and norm-weight gradients: 768 columns over 16384 rows are 24 tiles) split the rows:
 * blocks of 256 threads, `parts` units per tile; otherwise ty grows (to 1024 threads) when
 * there are few column tiles to spread over the GPU. */
static void render_col(gen_plan *p, gen_out *o, const gen_target *T, const gen_red *r, cu_geom *g) {
    kiln_buf *b = &o->b;
    const char *ix = T->idx;
    int last = p->nd - 1;
    int64_t n = p->dim[last], q = gen_numel_dims(p, 0, last, false), nred = gen_numel_dims(p, 0, p->nd, true);
    int64_t tx = min64(pow2_ceil(n), 32), tiles = q * ((n + tx - 1) / tx), chunk = nred;
    int64_t parts = split_parts(tiles, nred, CU_BLOCK / tx, &chunk), ty = CU_BLOCK / tx;
    if (parts == 1) {
        ty = min64(pow2_ceil(nred), (tiles < CU_MAX_GRID / 2 ? 1024 : CU_BLOCK) / tx);
        if (tx * ty < CU_BLOCK && n > tx) {
            tx = min64(pow2_ceil(n), CU_BLOCK / ty);
            tiles = q * ((n + tx - 1) / tx);
        }
    }
    const cu_at in_r = {"r", 1}, at_o = {"o", 1};
    g->block = (unsigned)(tx * ty);
    g->grid = grid_for(tiles * parts, 1);
    kiln_buf_printf(b, "const %s nt = args.params[%d], tiles = args.params[%d], nred = args.params[%d];\n", ix,
                    gen_slot(o, (n + tx - 1) / tx), gen_slot(o, tiles), gen_slot(o, nred));
    kiln_buf_printf(b, "const %s tx = threadIdx.x %% %lld, ty = threadIdx.x / %lld;\n", ix, (long long)tx, (long long)tx);
    if (ty > 1) kiln_buf_printf(b, "__shared__ %s red_[%lld];\n", r->acc_t, (long long)(tx * ty));
    if (parts > 1) {
        emit_split_decl(p, o, T, r, tiles, parts, chunk, tx, g);
        kiln_buf_printf(b, "for (%s u = blockIdx.x; u < tiles * parts; u += gridDim.x) {\n"
                           "const %s t = u %% tiles, lo_ = u / tiles * chunk, hi_ = lo_ + chunk < nred ? lo_ + chunk : nred;\n",
                        ix, ix);
    } else {
        kiln_buf_printf(b, "for (%s t = blockIdx.x; t < tiles; t += gridDim.x) {\n", ix);
    }
    kiln_buf_printf(b, "const %s q = t / nt, j = (t - q * nt) * %lld + tx;\n%s a = %s;\n", ix, (long long)tx, r->acc_t,
                    r->ident);
    gen_emit_offsets(p, b, T, "o", NULL, -1);
    gen_emit_decode(p, b, T, "q", last, false, "o", -1);
    for (int k = 0; k < p->n_op; k++)
        if (!p->op[k].zero && p->op[k].st[last] != 0) kiln_buf_printf(b, "o%d += j * s%d_%d;\n", k, k, last);
    kiln_buf_printf(b, "if (j < n%d) {\nfor (%s rr = %s; rr < %s; rr += %lld) {\n", last, ix, parts > 1 ? "lo_ + ty" : "ty",
                    parts > 1 ? "hi_" : "nred", (long long)ty);
    gen_emit_offsets(p, b, T, "r", "o", 0);
    gen_emit_decode(p, b, T, "rr", last, true, "r", 0);
    gen_emit_values(p, b, 0, cu_elem, &in_r, r);
    kiln_buf_printf(b, "const %s x_ = %s;\na = %s;\n}\n}\n", r->acc_t, r->elem.s, r->fold.s);
    emit_col_tree(b, r, tx, ty);
    if (parts > 1) {
        char slot[64], read[64];
        snprintf(slot, sizeof slot, "(t * parts + u / tiles) * %lld + tx", (long long)tx);
        snprintf(read, sizeof read, "(t * parts + pp) * %lld + tx", (long long)tx);
        emit_split_handoff(b, T, r, "ty == 0", slot, "t", "ty", ty, read);
        emit_col_tree(b, r, tx, ty);
        kiln_buf_puts(b, "if (threadIdx.x == 0) cnt_[t] = 0;\n");
    }
    kiln_buf_printf(b, "if (ty == 0 && j < n%d) {\n", last);
    gen_emit_values(p, b, 1, cu_elem, &at_o, r);
    gen_emit_stores(p, b, cu_elem, &at_o);
    kiln_buf_puts(b, "}\n}\n");
}

kiln_status kiln_codegen_cuda(kiln_context *ctx, const kiln_function *group, kiln_gen_kernel *out) {
    memset(out, 0, sizeof *out);
    gen_plan p;
    kiln_status s = gen_plan_init(ctx, group, &p);
    if (s != KILN_OK) return s;
    /* the body first: the params it takes size kiln_args */
    const gen_target T = {"__restrict__", "args.bufs", "args.params", index_type(&p)};
    gen_out body = {0};
    cu_geom g = {1, CU_BLOCK, 0, 0};
    gen_emit_header(&p, &body, &T);
    gen_red r;
    /* accumulate in double as the C kernels and the reference do: sums such as batch norm's
     * gradient cancel, and reductions are memory-bound (FP64 costs nothing measurable) */
    if (p.red) gen_red_init(&r, p.red, false);
    if (!p.red) render_elementwise(&p, &body, &T, &g);
    else if (p.row) render_row(&p, &body, &T, &r, &g);
    else render_col(&p, &body, &T, &r, &g);
    gen_plan_free(&p);
    char *text = kiln_buf_take(&body.b);
    gen_out o = {.n = body.n, .cap = body.cap, .v = body.v, .oom = body.oom || !text};
    /* guarded, and the argument struct named after the kernel: a program's kernels concatenate
     * into one NVRTC translation unit. The group's name stays out of the text, so groups that
     * compute the same thing share one kernel (the symbol is the text's hash), which is what
     * lets launches of them batch (multi_launch.c). */
    kiln_buf_puts(&o.b, "#ifndef KILN_CU_PREAMBLE\n#define KILN_CU_PREAMBLE\n");
    kiln_buf_puts(&o.b, CU_PREAMBLE);
    kiln_buf_puts(&o.b, GEN_PREAMBLE_COMMON);
    kiln_buf_printf(&o.b,
                    "#endif\nstruct @SYM@_args { char *bufs[%d]; long long params[%d]; };\n"
                    "extern \"C\" __global__ void __launch_bounds__(%u) @SYM@(const @SYM@_args args) {\n%s}\n",
                    group->n_params + group->body->n_results + (g.scratch_bytes ? 2 : 0), o.n > 0 ? o.n : 1, g.block,
                    text ? text : "");
    free(text);
    s = gen_finish(ctx, group, &o, "kiln_cu_", out);
    if (s != KILN_OK) return s;
    out->grid[0] = g.grid, out->grid[1] = out->grid[2] = 1;
    out->block[0] = g.block, out->block[1] = out->block[2] = 1;
    out->shared_bytes = 0; /* static __shared__ only */
    out->counter_bytes = g.counter_bytes, out->scratch_bytes = g.scratch_bytes;
    return KILN_OK;
}

char *kiln_codegen_cuda_multi(const kiln_gen_kernel *k, int n_items) {
    /* the kernel is the last thing in its source: its body runs from the header's "{\n" to the end */
    const char *head = strstr(k->source, "extern \"C\" __global__");
    const char *body = head ? strstr(head, "{\n") : NULL;
    if (!body) return NULL;
    kiln_buf b = {0};
    kiln_buf_printf(&b,
                    "struct %s_multi_args { %s_args items[%d]; };\n"
                    "extern \"C\" __global__ void __launch_bounds__(%u) %s_multi(const __grid_constant__ %s_multi_args multi) {\n"
                    "const %s_args &args = multi.items[blockIdx.y];\n%s",
                    k->symbol, k->symbol, n_items, k->block[0], k->symbol, k->symbol, k->symbol, body + 2);
    return kiln_buf_take(&b);
}
