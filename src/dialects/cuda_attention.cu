/* cuda_attention.cu — kiln's fused attention kernels (dialect "cuda", driven by cuda_attention.c):
 * a flash-attention-2 style forward (online softmax over key tiles: never a [Tq, Tk] matrix) and
 * backward (probabilities recomputed from the saved log-sum-exp), in f32 on f32 / f16 / bf16 data.
 * Compiled at run time by NVRTC (embedded in libkiln as a string); self-contained: no includes. */

/* Tensors are contiguous [batch, T, D] (the leading dims flattened); k and v have one D; the
 * log-sum-exp, delta and dlse are f32 [batch, Tq]. Causal: query i sees keys j <= i. Blocks are
 * WARPS warps; grid.x runs over the batch, grid.y over row (forward) or key (backward) tiles. */
typedef long long i64;

#define DMAX 128       /* largest head dim */
#define DL (DMAX / 32) /* head-dim elements per lane (dims lane, lane + 32, ...) */
#define WARPS 4
#define FQ 16          /* forward: query rows per block, FQ / WARPS per warp */
#define FK 32          /* forward: keys per tile, one per lane while scoring */
#define BK 32          /* backward: keys per block, BK / WARPS per warp, held in registers */
#define BQ 32          /* backward: query rows per shared-memory tile */
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

/* ---- forward: out = softmax(scale q k^T) v, lse = the rows' log-sum-exp ------------------------ */
/* A block holds FQ query rows in shared memory and streams FK-key tiles of k and v through it.
 * Scoring, lane l takes key j0 + l (k rows padded to DMAX + 1 floats: no bank conflicts); the
 * running max m, sum l and output accumulator (lane l: dims l, l + 32, ...) of each row are
 * rescaled by exp(m_old - m_new) per tile (online softmax). */
template <typename T>
__device__ void attn_fwd(const T *q, const T *k, const T *v, T *o, float *lse, i64 tq, i64 tk, i64 d, int causal, float scale) {
    __shared__ float sq[FQ][DMAX], sk[FK][DMAX + 1], sv[FK][DMAX];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, R = FQ / WARPS;
    const i64 b = blockIdx.x, i0 = (i64)blockIdx.y * FQ;
    q += b * tq * d, o += b * tq * d, lse += b * tq, k += b * tk * d, v += b * tk * d;
    for (int e = threadIdx.x; e < FQ * d; e += blockDim.x) {
        int r = e / (int)d, c = e % (int)d;
        sq[r][c] = i0 + r < tq ? ld(q, (i0 + r) * d + c) : 0.f;
    }
    float m[R], l[R], acc[R][DL];
#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        m[rr] = NEG_INF, l[rr] = 0.f;
#pragma unroll
        for (int t = 0; t < DL; t++) acc[rr][t] = 0.f;
    }
    const i64 kend = causal && i0 + FQ < tk ? i0 + FQ : tk; /* keys some row of the block sees */
    for (i64 j0 = 0; j0 < kend; j0 += FK) {
        __syncthreads(); /* the previous tile is consumed (and sq is written, the first time) */
        for (int e = threadIdx.x; e < FK * d; e += blockDim.x) {
            int r = e / (int)d, c = e % (int)d;
            bool in = j0 + r < tk;
            sk[r][c] = in ? ld(k, (j0 + r) * d + c) : 0.f;
            sv[r][c] = in ? ld(v, (j0 + r) * d + c) : 0.f;
        }
        __syncthreads();
        const i64 j = j0 + lane;
#pragma unroll
        for (int rr = 0; rr < R; rr++) {
            const int r = w * R + rr;
            const i64 i = i0 + r;
            float s = NEG_INF;
            if (i < tq && j < tk && (!causal || j <= i)) {
                float dot = 0.f;
                for (int c = 0; c < d; c++) dot += sq[r][c] * sk[lane][c];
                s = dot * scale;
            }
            const float mn = fmaxf(m[rr], warp_max(s)); /* warp-uniform, as m */
            if (mn == NEG_INF) continue;              /* no key seen yet (or a padding row) */
            const float p = s == NEG_INF ? 0.f : __expf(s - mn), corr = __expf(m[rr] - mn);
            l[rr] = l[rr] * corr + warp_sum(p);
#pragma unroll
            for (int t = 0; t < DL; t++) acc[rr][t] *= corr;
            for (int jj = 0; jj < FK; jj++) {
                const float pj = __shfl_sync(FULL, p, jj);
#pragma unroll
                for (int t = 0; t < DL; t++)
                    if (lane + 32 * t < d) acc[rr][t] += pj * sv[jj][lane + 32 * t];
            }
            m[rr] = mn;
        }
    }
#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        const i64 i = i0 + w * R + rr;
        if (i >= tq) continue;
        const float inv = l[rr] > 0.f ? 1.f / l[rr] : 0.f; /* no keys at all: zeros */
#pragma unroll
        for (int t = 0; t < DL; t++)
            if (lane + 32 * t < d) st(o, i * d + lane + 32 * t, acc[rr][t] * inv);
        if (lane == 0) lse[i] = l[rr] > 0.f ? m[rr] + logf(l[rr]) : NEG_INF;
    }
}

/* ---- backward --------------------------------------------------------------------------------- */
/* delta_i = dout_i . out_i - dlse_i (dlse may be NULL): one warp per row. */
template <typename T>
__device__ void attn_delta(const T *o, const T *dout, const float *dlse, float *delta, i64 rows, i64 d) {
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    float s = 0.f;
    for (i64 c = lane; c < d; c += 32) s += ld(o, row * d + c) * ld(dout, row * d + c);
    s = warp_sum(s);
    if (lane == 0) delta[row] = s - (dlse ? dlse[row] : 0.f);
}

/* A block owns BK keys (each warp BK / WARPS of them, k, v and their adjoints in registers, lane l
 * holding dims l, l + 32, ...) and runs over the query rows that see them, BQ at a time through
 * shared memory. Per (row i, key j): p = exp(scale q_i.k_j - lse_i), dp = dout_i.v_j,
 * ds = p (dp - delta_i) scale; dv_j += p dout_i, dk_j += ds q_i, and dq_i += ds k_j is summed
 * over the warp's keys, then added to the f32 dq (zeroed first) with atomics. */
template <typename T>
__device__ void attn_bwd(const T *q, const T *k, const T *v, const float *lse, const float *delta, const T *dout, float *dq,
                         T *dk, T *dv, i64 tq, i64 tk, i64 d, int causal, float scale) {
    __shared__ float sq[BQ][DMAX], sdo[BQ][DMAX], sl[BQ], sdl[BQ];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, KW = BK / WARPS;
    const i64 b = blockIdx.x, jw = (i64)blockIdx.y * BK + w * KW; /* the warp's first key */
    q += b * tq * d, dout += b * tq * d, dq += b * tq * d, lse += b * tq, delta += b * tq;
    k += b * tk * d, v += b * tk * d, dk += b * tk * d, dv += b * tk * d;
    float kr[KW][DL], vr[KW][DL], dkr[KW][DL], dvr[KW][DL];
#pragma unroll
    for (int kk = 0; kk < KW; kk++)
#pragma unroll
        for (int t = 0; t < DL; t++) {
            const i64 j = jw + kk, c = lane + 32 * t;
            const bool in = j < tk && c < d;
            kr[kk][t] = in ? ld(k, j * d + c) : 0.f, vr[kk][t] = in ? ld(v, j * d + c) : 0.f;
            dkr[kk][t] = dvr[kk][t] = 0.f;
        }
    const i64 start = causal ? (i64)blockIdx.y * BK : 0; /* earlier rows see none of these keys */
    for (i64 r0 = start; r0 < tq; r0 += BQ) {
        __syncthreads();
        for (int e = threadIdx.x; e < BQ * DMAX; e += blockDim.x) { /* dims >= d are zeros */
            const int r = e / DMAX, c = e % DMAX;
            const bool in = r0 + r < tq && c < d;
            sq[r][c] = in ? ld(q, (r0 + r) * d + c) : 0.f;
            sdo[r][c] = in ? ld(dout, (r0 + r) * d + c) : 0.f;
        }
        for (int e = threadIdx.x; e < BQ; e += blockDim.x) {
            sl[e] = r0 + e < tq ? lse[r0 + e] : 0.f;
            sdl[e] = r0 + e < tq ? delta[r0 + e] : 0.f;
        }
        __syncthreads();
        for (int r = 0; r < BQ && r0 + r < tq; r++) {
            const i64 i = r0 + r;
            float qv[DL], dov[DL], dqv[DL];
#pragma unroll
            for (int t = 0; t < DL; t++) qv[t] = sq[r][lane + 32 * t], dov[t] = sdo[r][lane + 32 * t], dqv[t] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KW; kk++) {
                const i64 j = jw + kk;
                float s = 0.f, dp = 0.f;
#pragma unroll
                for (int t = 0; t < DL; t++) s += qv[t] * kr[kk][t], dp += dov[t] * vr[kk][t];
                s = warp_sum(s), dp = warp_sum(dp);
                const float p = j < tk && (!causal || j <= i) ? __expf(s * scale - sl[r]) : 0.f;
                const float ds = p * (dp - sdl[r]) * scale;
#pragma unroll
                for (int t = 0; t < DL; t++) {
                    dvr[kk][t] += p * dov[t];
                    dkr[kk][t] += ds * qv[t];
                    dqv[t] += ds * kr[kk][t];
                }
            }
#pragma unroll
            for (int t = 0; t < DL; t++)
                if (lane + 32 * t < d) atomicAdd(dq + i * d + lane + 32 * t, dqv[t]);
        }
    }
#pragma unroll
    for (int kk = 0; kk < KW; kk++)
#pragma unroll
        for (int t = 0; t < DL; t++) {
            const i64 j = jw + kk, c = lane + 32 * t;
            if (j < tk && c < d) st(dk, j * d + c, dkr[kk][t]), st(dv, j * d + c, dvr[kk][t]);
        }
}

/* dq from its f32 accumulator (f16 / bf16 results), grid-stride. */
template <typename T>
__device__ void attn_cast(const float *x, T *y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) st(y, i, x[i]);
}

/* ---- entry points: one per element type (suffix f32, f16, bf16) -------------------------------- */
#define ATTN_ENTRIES(S, T)                                                                                            \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                          \
        kiln_attn_fwd_##S(const T *q, const T *k, const T *v, T *o, float *lse, i64 tq, i64 tk, i64 d, int causal,    \
                          float scale) {                                                                              \
        attn_fwd<T>(q, k, v, o, lse, tq, tk, d, causal, scale);                                                       \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                          \
        kiln_attn_delta_##S(const T *o, const T *dout, const float *dlse, float *delta, i64 rows, i64 d) {            \
        attn_delta<T>(o, dout, dlse, delta, rows, d);                                                                 \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                          \
        kiln_attn_bwd_##S(const T *q, const T *k, const T *v, const float *lse, const float *delta, const T *dout,    \
                          float *dq, T *dk, T *dv, i64 tq, i64 tk, i64 d, int causal, float scale) {                  \
        attn_bwd<T>(q, k, v, lse, delta, dout, dq, dk, dv, tq, tk, d, causal, scale);                                 \
    }
ATTN_ENTRIES(f32, float)
ATTN_ENTRIES(f16, h16)
ATTN_ENTRIES(bf16, b16)

extern "C" __global__ void kiln_attn_cast_f16(const float *x, h16 *y, i64 n) { attn_cast<h16>(x, y, n); }
extern "C" __global__ void kiln_attn_cast_bf16(const float *x, b16 *y, i64 n) { attn_cast<b16>(x, y, n); }
