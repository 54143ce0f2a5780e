/* cuda_attention.cu — the row kernels of kiln's GEMM-based attention (dialect "cuda", driven by
 * cuda_attention.c, which runs the matrix products through cuBLASLt): softmax probabilities from
 * f32 scores, their adjoint, delta = rowsum(dout * out) - dlse, and f16 / bf16 -> f32 copies.
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
