/* cuda_attention.cu — kiln's attention kernels (dialect "cuda", driven by cuda_attention.c):
 * the flash-attention forward and backward on TF32 tensor cores (mma.sync), and the row kernels
 * of the GEMM-based fallback (cuBLASLt runs its matrix products): softmax probabilities from f32
 * scores, their adjoint, delta = rowsum(dout * out) - dlse, and f16 / bf16 -> f32 copies.
 * Compiled at run time by NVRTC (embedded in libkiln as a string); self-contained: no includes. */

/* Score-shaped buffers are [rows, Tk] (a chunk's [n, Tq, Tk] matrices, row r = query r % Tq of
 * matrix r / Tq); one block of THREADS threads per row. Causal (top-left, as torch's is_causal):
 * query i sees keys j <= i. The log-sum-exp, delta and dlse are f32, one per row. */
typedef long long i64;

#define THREADS 256
#define FULL 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

/* ---- element types: f32 as is, f16 / bf16 as 16-bit patterns converted to and from f32 -------- */
struct h16 { unsigned short x; };
struct b16 { unsigned short x; };

__device__ __forceinline__ float ld(const float *p, i64 i) { return p[i]; }
__device__ __forceinline__ float ld(const h16 *p, i64 i) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i].x));
    return f;
}
__device__ __forceinline__ float ld(const b16 *p, i64 i) { return __uint_as_float((unsigned)p[i].x << 16); }
__device__ __forceinline__ void st(float *p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(h16 *p, i64 i, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p[i].x = h;
}
/* Round to nearest even; a NaN stays a (quiet) NaN. */
__device__ __forceinline__ void st(b16 *p, i64 i, float v) {
    unsigned u = __float_as_uint(v);
    p[i].x = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)
                                             : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

/* The block's sum (or max) of v, returned to every thread; sh: 32 floats of shared memory. */
__device__ float block_reduce(float v, bool sum, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = sum ? warp_sum(v) : warp_max(v);
    __syncthreads(); /* sh is free (a previous call's readers are done) */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? sh[lane] : sum ? 0.f : NEG_INF;
    return sum ? warp_sum(v) : warp_max(v);
}

/* The keys row r sees: all Tk, or (causal) keys 0..i of query i = r % Tq. */
__device__ __forceinline__ i64 keys_seen(i64 r, i64 tq, i64 tk, int causal) {
    const i64 i = r % tq;
    return causal && i + 1 < tk ? i + 1 : tk;
}

/* ---- kernels ---------------------------------------------------------------------------------- */
/* p = softmax of the scores s (already scaled) over the keys the row sees, 0 for the others:
 * p_j = exp(s_j - lse). fwd: lse = max + log(sum exp(s - max)) is computed and stored; else it
 * is read (the backward's recomputation from the forward's log-sum-exp). */
template <typename T>
__device__ void attn_probs(const float *s, T *p, float *lse, i64 tq, i64 tk, int causal, int fwd) {
    __shared__ float sh[32];
    const i64 r = blockIdx.x, n = keys_seen(r, tq, tk, causal);
    s += r * tk, p += r * tk;
    float l;
    if (fwd) {
        float m = NEG_INF, sum = 0.f;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, s[j]);
        m = block_reduce(m, false, sh);
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) sum += expf(s[j] - m);
        l = m + logf(block_reduce(sum, true, sh));
        if (threadIdx.x == 0) lse[r] = l;
    } else {
        l = lse[r];
    }
    for (i64 j = threadIdx.x; j < tk; j += blockDim.x) st(p, j, j < n ? expf(s[j] - l) : 0.f);
}

/* dS = P * (dP - delta), in place over p (the probabilities); masked keys have p = 0 already,
 * so only the keys the row sees are visited. */
template <typename T>
__device__ void attn_dscores(T *p, const float *dp, const float *delta, i64 tq, i64 tk, int causal) {
    const i64 r = blockIdx.x, n = keys_seen(r, tq, tk, causal);
    const float dl = delta[r];
    p += r * tk, dp += r * tk;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) st(p, j, ld(p, j) * (dp[j] - dl));
}

/* delta_r = dout_r . out_r - dlse_r (dlse may be NULL) over rows of Dv: one warp per row. */
template <typename T>
__device__ void attn_delta(const T *o, const T *dout, const float *dlse, float *delta, i64 rows, i64 dv) {
    const int lane = threadIdx.x & 31;
    const i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    float s = 0.f;
    for (i64 c = lane; c < dv; c += 32) s += ld(o, r * dv + c) * ld(dout, r * dv + c);
    s = warp_sum(s);
    if (lane == 0) delta[r] = s - (dlse ? dlse[r] : 0.f);
}

/* y = x in f32 (exact: f16 and bf16 values are f32 and TF32 values), grid-stride. */
template <typename T>
__device__ void attn_to_f32(const T *x, float *y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = ld(x, i);
}

/* ---- entry points: one per element type (suffix f32, f16, bf16) -------------------------------- */
#define ATTN_ENTRIES(S, T)                                                                                            \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                             \
        kiln_attn_probs_##S(const float *s, T *p, float *lse, i64 tq, i64 tk, int causal, int fwd) {                  \
        attn_probs<T>(s, p, lse, tq, tk, causal, fwd);                                                                \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                             \
        kiln_attn_dscores_##S(T *p, const float *dp, const float *delta, i64 tq, i64 tk, int causal) {                \
        attn_dscores<T>(p, dp, delta, tq, tk, causal);                                                                \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                             \
        kiln_attn_delta_##S(const T *o, const T *dout, const float *dlse, float *delta, i64 rows, i64 dv) {           \
        attn_delta<T>(o, dout, dlse, delta, rows, dv);                                                                \
    }
ATTN_ENTRIES(f32, float)
ATTN_ENTRIES(f16, h16)
ATTN_ENTRIES(bf16, b16)

extern "C" __global__ void __launch_bounds__(THREADS) kiln_attn_to_f32_f16(const h16 *x, float *y, i64 n) { attn_to_f32<h16>(x, y, n); }
extern "C" __global__ void __launch_bounds__(THREADS) kiln_attn_to_f32_bf16(const b16 *x, float *y, i64 n) { attn_to_f32<b16>(x, y, n); }

/* ==== flash attention (FlashAttention-2) ==========================================================
 * No [Tq, Tk] buffer: each block keeps a tile of rows in shared memory and registers, runs the
 * products on TF32 tensor cores and the softmax online, in f32. A warp owns 16 rows of its block's
 * tile: the forward has FLASH_FWD_WARPS warps (128 query rows: each key tile loaded serves more
 * rows), the backward kernels FLASH_WARPS (64 rows: their accumulators fill the registers). Tensors (the leading dims flattened into the batch,
 * blockIdx.y): q [batch, Tq, D], k, v [batch, Tk, D], out, dout [batch, Tq, D], lse, delta
 * [batch, Tq] f32. DM (64 or 128) is the tile width: D <= DM, a multiple of 4; the columns
 * D..DM of a shared tile are zeros. Causal is top-left: query i sees keys j <= i; key tiles past
 * the diagonal are skipped, and so are a warp's products on tiles wholly above its rows. Rows past
 * Tq and keys past Tk are zeros in shared memory and masked out of the softmax.
 *
 * Shared tiles are [rows][DM + 4] f32 holding TF32-rounded values (f16 / bf16 values are TF32
 * values already); the row pad of 4 floats makes every fragment access below conflict-free. */
#define FLASH_FWD_WARPS 8
#define FLASH_WARPS 4
#define FLASH_THREADS (32 * FLASH_WARPS)
#define FLASH_ROWS (16 * FLASH_WARPS) /* the rows a backward block owns: its query tile, or (dk, dv) its key tile */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
#define POS_INF __int_as_float(0x7f800000)

/* Tiles per width: the forward and dq stream key tiles of FLASH_KEYS(DM) rows, the dk/dv kernel
 * query tiles of FLASH_QUERIES(DM) rows (smaller for DM 128, to keep two blocks on an SM).
 * cuda_attention.c sizes the dynamic shared memory with the same numbers. */
#define FLASH_KEYS(DM) ((DM) > 64 ? 32 : 64)
#define FLASH_QUERIES(DM) ((DM) > 64 ? 32 : 64)

__device__ __forceinline__ float to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
}

/* c (16 x 8) += a (16 x 8) b (8 x 8) on the tensor cores, f32 accumulation. Fragments (PTX's
 * m16n8k8 .tf32 layouts; lane = 4 g + t): a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]},
 * b = {B[t][g], B[t+4][g]}, c = {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]}. */
__device__ __forceinline__ void mma_tf32(float c[4], const float a[4], float b0, float b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])), "r"(__float_as_uint(a[3])),
          "r"(__float_as_uint(b0)), "r"(__float_as_uint(b1)));
}

/* acc (16 x N, N/8 c fragments) += A B^T: A the 16 rows of shared tile a from row r0, B the N
 * rows of shared tile b ([N][K] row-major, so B^T's fragment b = {b[g][t], b[g][t+4]}). */
template <int N, int K>
__device__ __forceinline__ void mma_abt(float (*acc)[4], const float *a, int r0, const float *b) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3, ld = K + 4;
#pragma unroll
    for (int kk = 0; kk < K; kk += 8) {
        const float *ar = a + (r0 + g) * ld + kk + t;
        const float fa[4] = {ar[0], ar[8 * ld], ar[4], ar[8 * ld + 4]};
#pragma unroll
        for (int n = 0; n < N / 8; n++) {
            const float *br = b + (n * 8 + g) * ld + kk + t;
            mma_tf32(acc[n], fa, br[0], br[4]);
        }
    }
}

/* acc (16 x N) += P B: P (16 x K) in registers as K/8 c fragments (probabilities or their
 * adjoint, f32), B the shared tile b [K][N] (row stride N + 4). A c fragment holds columns 2t,
 * 2t+1 where an a fragment wants t, t+4: the product sums over k, so k is permuted instead of
 * the registers: the a fragment {p0, p2, p1, p3} is P's columns in the order (2t, 2t+1) ->
 * (t, t+4), and B's rows are read in the same order: b = {b[2t][g], b[2t+1][g]}. */
template <int N, int K>
__device__ __forceinline__ void mma_pb(float (*acc)[4], const float (*p)[4], const float *b) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3, ld = N + 4;
#pragma unroll
    for (int j = 0; j < K / 8; j++) {
        const float fa[4] = {to_tf32(p[j][0]), to_tf32(p[j][2]), to_tf32(p[j][1]), to_tf32(p[j][3])};
        const float *br = b + (j * 8 + 2 * t) * ld + g;
#pragma unroll
        for (int n = 0; n < N / 8; n++) mma_tf32(acc[n], fa, br[n * 8], br[ld + n * 8]);
    }
}

/* Four consecutive elements from x + i (16-byte aligned for f32, 8-byte for f16 / bf16) as f32. */
__device__ __forceinline__ float4 ld4(const float *x, i64 i) { return *(const float4 *)(x + i); }
template <typename T>
__device__ __forceinline__ float4 ld4(const T *x, i64 i) {
    const uint2 u = *(const uint2 *)(x + i);
    const T e[4] = {{(unsigned short)u.x}, {(unsigned short)(u.x >> 16)}, {(unsigned short)u.y}, {(unsigned short)(u.y >> 16)}};
    return make_float4(ld(e, 0), ld(e, 1), ld(e, 2), ld(e, 3));
}

/* Shared tile [R][DM + 4] = rows r0..r0+R of x [n, d] (row stride d), TF32-rounded; zeros past
 * row n and column d. The whole block (NT threads) takes part; the trip count is a constant, so
 * the loop unrolls and every load is in flight before the first store waits on one. */
template <typename T, int R, int DM, int NT = FLASH_THREADS>
__device__ __forceinline__ void load_tile(float *sh, const T *x, int r0, int n, int d) {
    constexpr int C4 = DM / 4;
#pragma unroll
    for (int i = threadIdx.x; i < R * C4; i += NT) {
        const int r = i / C4, c = (i % C4) * 4;
        float4 f = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r0 + r < n && c < d) f = ld4(x, (i64)(r0 + r) * d + c);
        *(float4 *)(sh + r * (DM + 4) + c) = make_float4(to_tf32(f.x), to_tf32(f.y), to_tf32(f.z), to_tf32(f.w));
    }
}

/* Stores the 16 x DM c fragments acc times mul as rows r0.. (the warp's; this thread's rows
 * r0 + g and r0 + g + 8) of y [n, d], inside n rows and d columns. */
template <typename T, int DM>
__device__ __forceinline__ void store_rows(T *y, const float (*acc)[4], int r0, int n, int d, float mul0, float mul1) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
    for (int c = 0; c < DM / 8; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = r0 + g + (e >> 1) * 8, col = c * 8 + 2 * t + (e & 1);
            if (r < n && col < d) st(y, (i64)r * d + col, acc[c][e] * (e >> 1 ? mul1 : mul0));
        }
}

/* Whether key `key` is visible from query `row`: inside Tk and (causal) not after the query. */
__device__ __forceinline__ bool key_seen(int key, int row, int tk, int causal) { return key < tk && (!causal || key <= row); }

/* The key tiles of width bk that query rows [q0, q0 + rows) see. */
__device__ __forceinline__ int key_tiles(int q0, int rows, int bk, int tk, int causal) {
    const int end = causal && q0 + rows < tk ? q0 + rows : tk;
    return (end + bk - 1) / bk;
}

/* Forward: grid (query tiles, batch), query tiles in reverse (causal: the longest first).
 * out = softmax(scale q k^T) v and lse = log-sum-exp of the scaled scores, online over the key
 * tiles: per row the running max m and sum l (log2 units: exp2 of scores times scale*log2 e),
 * the accumulator rescaled by exp2(m_old - m_new) when the max grows.
 *   shared: qs [ROWS][DM+4], ks and vs [BK][DM+4]; registers: s [16 x BK], o [16 x DM] */
template <typename T, int DM>
__device__ void flash_fwd(const T *q, const T *k, const T *v, T *out, float *lse, int tq, int tk, int d, int causal, float scale) {
    constexpr int BK = FLASH_KEYS(DM), LD = DM + 4, ROWS = 16 * FLASH_FWD_WARPS;
    extern __shared__ float4 smem4[];
    float *qs = (float *)smem4, *ks = qs + ROWS * LD, *vs = ks + BK * LD;
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ROWS, r0 = w * 16; /* the warp's rows: q0 + r0 .. + 16 */
    const i64 b = blockIdx.y;
    q += b * tq * d, k += b * tk * d, v += b * tk * d, out += b * tq * d, lse += b * tq;
    load_tile<T, ROWS, DM, 2 * ROWS>(qs, q, q0, tq, d);
    const float sl2 = scale * LOG2E;
    float o[DM / 8][4] = {}, m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
    const int nkt = key_tiles(q0, ROWS, BK, tk, causal);
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        __syncthreads(); /* the previous tiles' readers are done (and qs is loaded) */
        load_tile<T, BK, DM, 2 * ROWS>(ks, k, k0, tk, d);
        load_tile<T, BK, DM, 2 * ROWS>(vs, v, k0, tk, d);
        __syncthreads();
        if (causal && k0 > q0 + r0 + 15) continue; /* every key after the warp's rows */
        float s[BK / 8][4] = {};
        mma_abt<BK, DM>(s, qs, r0, ks);
        const bool edge = k0 + BK > tk || (causal && k0 + BK - 1 > q0 + r0);
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int n = 0; n < BK / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[n][e] * sl2;
                if (edge && !key_seen(k0 + n * 8 + 2 * t + (e & 1), q0 + r0 + g + (e >> 1) * 8, tk, causal)) x = NEG_INF;
                s[n][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        float corr[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            /* the row's max over the quad of lanes holding it; a row with no key seen yet keeps
             * m = -inf and subtracts 0 (exp2(-inf) = 0 everywhere, no inf - inf) */
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL, mx[h], 2));
            const float base = mx[h] == NEG_INF ? 0.f : mx[h];
            corr[h] = exp2f(m[h] - base);
            m[h] = mx[h], mx[h] = base, l[h] *= corr[h];
        }
#pragma unroll
        for (int n = 0; n < BK / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = exp2f(s[n][e] - mx[e >> 1]);
                l[e >> 1] += s[n][e]; /* this lane's part of the row sum (the quad's summed at the end) */
            }
#pragma unroll
        for (int n = 0; n < DM / 8; n++) o[n][0] *= corr[0], o[n][1] *= corr[0], o[n][2] *= corr[1], o[n][3] *= corr[1];
        mma_pb<DM, BK>(o, s, vs);
    }
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(FULL, l[h], 1);
        l[h] += __shfl_xor_sync(FULL, l[h], 2);
        inv[h] = l[h] > 0.f ? 1.f / l[h] : 0.f;
        const int r = q0 + r0 + g + h * 8;
        if (t == 0 && r < tq) lse[r] = l[h] > 0.f ? (m[h] + log2f(l[h])) * LN2 : NEG_INF;
    }
    store_rows<T, DM>(out, o, q0 + r0, tq, d, inv[0], inv[1]);
}

/* Shared per-row vector: dst[i] = src[r0 + i] * mul for rows inside n, else pad. */
__device__ __forceinline__ void load_rows(float *dst, const float *src, int r0, int n, int count, float mul, float pad) {
    for (int i = threadIdx.x; i < count; i += FLASH_THREADS) dst[i] = r0 + i < n ? src[r0 + i] * mul : pad;
}

/* Backward, dk and dv: grid (key tiles, batch); a block owns FLASH_ROWS keys (16 per warp) and
 * streams the query tiles that see them (causal: from the diagonal on). Transposed, per warp:
 *   S^T = k q^T, P^T = exp2(S^T scale log2 e - lse log2 e)   (0 where masked, and for rows past Tq:
 *                                                            their lse reads +inf)
 *   dv += P^T dout;  dP^T = v dout^T;  dS^T = P^T (dP^T - delta);  dk += dS^T q   (times scale at the end)
 *   shared: ks, vs [FLASH_ROWS][DM+4], qs, dos [BQ][DM+4], lse2 (lse log2 e) and delta [BQ];
 *   registers: st, dpt [16 x BQ], dk, dv [16 x DM] */
template <typename T, int DM>
__device__ void flash_dkdv(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dk,
                           T *dv, int tq, int tk, int d, int causal, float scale) {
    constexpr int BQ = FLASH_QUERIES(DM), LD = DM + 4;
    extern __shared__ float4 smem4[];
    float *ks = (float *)smem4, *vs = ks + FLASH_ROWS * LD, *qs = vs + FLASH_ROWS * LD, *dos = qs + BQ * LD;
    float *ls = dos + BQ * LD, *dls = ls + BQ;
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int k0 = blockIdx.x * FLASH_ROWS, r0 = w * 16; /* the warp's keys: k0 + r0 .. + 16 */
    const i64 b = blockIdx.y;
    q += b * tq * d, k += b * tk * d, v += b * tk * d, dout += b * tq * d, dk += b * tk * d, dv += b * tk * d;
    lse += b * tq, delta += b * tq;
    load_tile<T, FLASH_ROWS, DM>(ks, k, k0, tk, d);
    load_tile<T, FLASH_ROWS, DM>(vs, v, k0, tk, d);
    const float sl2 = scale * LOG2E;
    float gk[DM / 8][4] = {}, gv[DM / 8][4] = {};
    for (int qt = causal ? k0 / BQ : 0; qt * BQ < tq; qt++) {
        const int q0 = qt * BQ;
        __syncthreads();
        load_tile<T, BQ, DM>(qs, q, q0, tq, d);
        load_tile<T, BQ, DM>(dos, dout, q0, tq, d);
        load_rows(ls, lse, q0, tq, BQ, LOG2E, POS_INF);
        load_rows(dls, delta, q0, tq, BQ, 1.f, 0.f);
        __syncthreads();
        if (causal && q0 + BQ - 1 < k0 + r0) continue; /* every query before the warp's keys */
        float st[BQ / 8][4] = {}, dpt[BQ / 8][4] = {};
        mma_abt<BQ, DM>(st, ks, r0, qs);
        const bool edge = causal && q0 < k0 + r0 + 15;
#pragma unroll
        for (int n = 0; n < BQ / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = n * 8 + 2 * t + (e & 1);
                const bool seen = !edge || k0 + r0 + g + (e >> 1) * 8 <= q0 + col;
                st[n][e] = seen ? exp2f(st[n][e] * sl2 - ls[col]) : 0.f;
            }
        mma_pb<DM, BQ>(gv, st, dos);
        mma_abt<BQ, DM>(dpt, vs, r0, dos);
#pragma unroll
        for (int n = 0; n < BQ / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dpt[n][e] = st[n][e] * (dpt[n][e] - dls[n * 8 + 2 * t + (e & 1)]);
        mma_pb<DM, BQ>(gk, dpt, qs);
    }
    store_rows<T, DM>(dk, gk, k0 + r0, tk, d, scale, scale);
    store_rows<T, DM>(dv, gv, k0 + r0, tk, d, 1.f, 1.f);
}

/* Backward, dq: grid (query tiles, batch), reversed as the forward's; a block owns FLASH_ROWS
 * queries and streams the key tiles they see, recomputing P as the dk/dv kernel does:
 *   S = q k^T, P = exp2(S scale log2 e - lse log2 e), dP = dout v^T, dS = P (dP - delta),
 *   dq += dS k   (times scale at the end)
 *   shared: qs, dos [FLASH_ROWS][DM+4], ks, vs [BK][DM+4]; registers: s, dp [16 x BK], dq [16 x DM] */
template <typename T, int DM>
__device__ void flash_dq(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dq,
                         int tq, int tk, int d, int causal, float scale) {
    constexpr int BK = FLASH_KEYS(DM), LD = DM + 4;
    extern __shared__ float4 smem4[];
    float *qs = (float *)smem4, *dos = qs + FLASH_ROWS * LD, *ks = dos + FLASH_ROWS * LD, *vs = ks + BK * LD;
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FLASH_ROWS, r0 = w * 16;
    const i64 b = blockIdx.y;
    q += b * tq * d, k += b * tk * d, v += b * tk * d, dout += b * tq * d, dq += b * tq * d, lse += b * tq, delta += b * tq;
    load_tile<T, FLASH_ROWS, DM>(qs, q, q0, tq, d);
    load_tile<T, FLASH_ROWS, DM>(dos, dout, q0, tq, d);
    const float sl2 = scale * LOG2E;
    float l2[2], dl[2]; /* this lane's rows' lse log2 e and delta (rows past Tq: P = 0) */
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = q0 + r0 + g + h * 8;
        l2[h] = r < tq ? lse[r] * LOG2E : POS_INF, dl[h] = r < tq ? delta[r] : 0.f;
    }
    float gq[DM / 8][4] = {};
    const int nkt = key_tiles(q0, FLASH_ROWS, BK, tk, causal);
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * BK;
        __syncthreads();
        load_tile<T, BK, DM>(ks, k, k0, tk, d);
        load_tile<T, BK, DM>(vs, v, k0, tk, d);
        __syncthreads();
        if (causal && k0 > q0 + r0 + 15) continue;
        float s[BK / 8][4] = {}, dp[BK / 8][4] = {};
        mma_abt<BK, DM>(s, qs, r0, ks);
        mma_abt<BK, DM>(dp, dos, r0, vs);
        const bool edge = k0 + BK > tk || (causal && k0 + BK - 1 > q0 + r0);
#pragma unroll
        for (int n = 0; n < BK / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int h = e >> 1;
                const bool seen = !edge || key_seen(k0 + n * 8 + 2 * t + (e & 1), q0 + r0 + g + h * 8, tk, causal);
                const float p = seen ? exp2f(s[n][e] * sl2 - l2[h]) : 0.f;
                s[n][e] = p * (dp[n][e] - dl[h]);
            }
        mma_pb<DM, BK>(gq, s, ks);
    }
    store_rows<T, DM>(dq, gq, q0 + r0, tq, d, scale, scale);
}

/* ---- flash entry points: kiln_flash_{fwd,dkdv,dq}_<type>_<DM> ---------------------------------- */
#define FLASH_ENTRIES(S, T, DM)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * FLASH_FWD_WARPS) kiln_flash_fwd_##S##_##DM(                             \
        const T *q, const T *k, const T *v, T *out, float *lse, int tq, int tk, int d, int causal, float scale) {         \
        flash_fwd<T, DM>(q, k, v, out, lse, tq, tk, d, causal, scale);                                                  \
    }                                                                                                                   \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS) kiln_flash_dkdv_##S##_##DM(                            \
        const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dk, T *dv, int tq,  \
        int tk, int d, int causal, float scale) {                                                                       \
        flash_dkdv<T, DM>(q, k, v, dout, lse, delta, dk, dv, tq, tk, d, causal, scale);                                 \
    }                                                                                                                   \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS) kiln_flash_dq_##S##_##DM(                              \
        const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta, T *dq, int tq, int tk, \
        int d, int causal, float scale) {                                                                               \
        flash_dq<T, DM>(q, k, v, dout, lse, delta, dq, tq, tk, d, causal, scale);                                       \
    }
#define FLASH_WIDTHS(S, T) FLASH_ENTRIES(S, T, 64) FLASH_ENTRIES(S, T, 128)
FLASH_WIDTHS(f32, float)
FLASH_WIDTHS(f16, h16)
FLASH_WIDTHS(bf16, b16)
