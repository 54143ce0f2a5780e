/* cuda_loss.cu — the fused cross-entropy kernels of dialect "cuda" (driven by cuda_loss.c): per-row
 * loss and per-row gradient over [N, C] logits with class-index targets, one block per row, plus the
 * one-block kernels that reduce the losses and count the targets kept. Compiled at run time by NVRTC
 * (embedded in libkiln as a string); self-contained: no includes. */

/* Logits are f32, f16 or bf16 (suffix of each entry point), read once per pass: 16-byte vector
 * loads when `vec` (the host checks that rows start 16-byte aligned: C * element size % 16 == 0
 * and 16-byte aligned buffers), else one element per load. Everything computes in f32; a row's
 * softmax statistics are the online max m and s = sum exp(x - m), merged across threads. Targets
 * are any int dtype (kiln_dtype codes); target == ignore contributes nothing; a target outside
 * [0, C) gives a NaN loss and a NaN gradient row (the host's kernels would raise). */
typedef long long i64;
enum { DT_I8 = 4, DT_U8 = 5, DT_I32 = 6 };
enum { RED_NONE, RED_SUM, RED_MEAN };

#define FULL 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
#define NAN_F __int_as_float(0x7fc00000)
#define REDUCE_THREADS 256 /* the one-block kernels' block */

/* ---- element types: f32 as is, f16 / bf16 as 16-bit patterns converted to and from f32 -------- */
struct h16 { unsigned short x; };
struct b16 { unsigned short x; };

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short f2h(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
__device__ __forceinline__ float b2f(unsigned short h) { return __uint_as_float((unsigned)h << 16); }
/* Round to nearest even; a NaN stays a (quiet) NaN. */
__device__ __forceinline__ unsigned short f2b(float v) {
    unsigned u = __float_as_uint(v);
    return (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)
                                           : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float ld(const float *p, i64 i) { return p[i]; }
__device__ __forceinline__ float ld(const h16 *p, i64 i) { return h2f(p[i].x); }
__device__ __forceinline__ float ld(const b16 *p, i64 i) { return b2f(p[i].x); }
__device__ __forceinline__ void st(float *p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(h16 *p, i64 i, float v) { p[i].x = f2h(v); }
__device__ __forceinline__ void st(b16 *p, i64 i, float v) { p[i].x = f2b(v); }

/* 16 bytes <-> VW floats: 4 f32, or 8 halves (element 2k in the low half of word k). */
template <typename T> struct vec { enum { VW = 8 }; };
template <> struct vec<float> { enum { VW = 4 }; };
__device__ __forceinline__ void unpack(uint4 u, float *f, const float *) {
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack(uint4 u, float *f, const h16 *) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
    for (int k = 0; k < 4; k++) f[2 * k] = h2f((unsigned short)w[k]), f[2 * k + 1] = h2f((unsigned short)(w[k] >> 16));
}
__device__ __forceinline__ void unpack(uint4 u, float *f, const b16 *) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
    for (int k = 0; k < 4; k++) f[2 * k] = __uint_as_float(w[k] << 16), f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
}
__device__ __forceinline__ uint4 pack(const float *f, const float *) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
}
__device__ __forceinline__ uint4 pack(const float *f, const h16 *) {
    unsigned w[4];
    for (int k = 0; k < 4; k++) w[k] = (unsigned)f2h(f[2 * k]) | (unsigned)f2h(f[2 * k + 1]) << 16;
    return make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ uint4 pack(const float *f, const b16 *) {
    unsigned w[4];
    for (int k = 0; k < 4; k++) w[k] = (unsigned)f2b(f[2 * k]) | (unsigned)f2b(f[2 * k + 1]) << 16;
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* 16-byte loads and stores marked evict-first (cache streaming): the backward's last read of a
 * row and its gradient writes, so that they do not push out of L2 the rows other blocks are about
 * to read a second time. */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
__device__ __forceinline__ void st_stream(uint4 *p, uint4 v) {
    asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

/* Target element i (any int dtype) as int64. */
__device__ __forceinline__ i64 ld_target(const void *t, i64 i, i64 dt) {
    switch (dt) {
    case DT_I8: return ((const signed char *)t)[i];
    case DT_U8: return ((const unsigned char *)t)[i];
    case DT_I32: return ((const int *)t)[i];
    default: return ((const i64 *)t)[i];
    }
}

/* ---- row statistics --------------------------------------------------------------------------- */
/* Online softmax statistics: max m, s = sum exp(x - m), and the plain sum sx (label smoothing). */
struct stats { float m, s, sx; };

/* exp(v - m) with exp(-inf - -inf) = 1 (a row's leading -inf logits count until a finite max
 * rescales them to 0; an all -inf row then gives log-sum-exp -inf and a NaN loss, as the host). */
__device__ __forceinline__ float shifted_exp(float v, float m) { return v == m ? 1.f : expf(v - m); }

/* Adds n values: one rescale by the chunk's max, then one exp per value. */
__device__ __forceinline__ void stats_add(stats &a, const float *f, int n) {
    float mx = f[0];
    for (int i = 1; i < n; i++) mx = fmaxf(mx, f[i]);
    if (mx > a.m) a.s *= shifted_exp(a.m, mx), a.m = mx;
    for (int i = 0; i < n; i++) a.s += shifted_exp(f[i], a.m), a.sx += f[i];
}

__device__ __forceinline__ void stats_merge(stats &a, float m, float s, float sx) {
    const float mn = fmaxf(a.m, m);
    a.s = a.s * shifted_exp(a.m, mn) + s * shifted_exp(m, mn);
    a.m = mn, a.sx += sx;
}

/* The row's statistics (every thread of the block gets them). */
template <typename T>
__device__ stats row_stats(const T *x, i64 C, int vecload) {
    __shared__ float sm[32], ss[32], ssx[32];
    stats a = {NEG_INF, 0.f, 0.f};
    if (vecload) {
        const int VW = vec<T>::VW;
        const uint4 *xv = (const uint4 *)x;
        for (i64 k = threadIdx.x; k < C / VW; k += blockDim.x) {
            float f[VW];
            unpack(xv[k], f, (const T *)0);
            stats_add(a, f, VW);
        }
    } else {
        for (i64 j = threadIdx.x; j < C; j += blockDim.x) {
            const float v = ld(x, j);
            stats_add(a, &v, 1);
        }
    }
    for (int o = 16; o; o >>= 1)
        stats_merge(a, __shfl_xor_sync(FULL, a.m, o), __shfl_xor_sync(FULL, a.s, o), __shfl_xor_sync(FULL, a.sx, o));
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sm[w] = a.m, ss[w] = a.s, ssx[w] = a.sx;
    __syncthreads();
    a.m = NEG_INF, a.s = 0.f, a.sx = 0.f;
    if (lane < nw) a.m = sm[lane], a.s = ss[lane], a.sx = ssx[lane];
    for (int o = 16; o; o >>= 1)
        stats_merge(a, __shfl_xor_sync(FULL, a.m, o), __shfl_xor_sync(FULL, a.s, o), __shfl_xor_sync(FULL, a.sx, o));
    return a;
}

/* ---- kernels ---------------------------------------------------------------------------------- */
/* Row r = blockIdx.x of x [N, C]: with lse = m + log(s) and ε = eps,
 *   loss = (1-ε) (lse - x[t]) + ε (lse - mean_j x[j])
 * (0 when t == ignore), stored to out[r] (reduction none, out in the logits' dtype) or, for the
 * reductions, to the f32 row_loss[r] that ce_reduce sums. */
template <typename T>
__device__ void ce_forward(const T *x, const void *tg, i64 tdt, i64 C, i64 ignore, float eps, T *out, float *row_loss,
                           int vecload) {
    const i64 r = blockIdx.x, t = ld_target(tg, r, tdt);
    float loss = 0.f;
    if (t != ignore) {
        const stats a = row_stats(x + r * C, C, vecload);
        const float lse = a.m + logf(a.s);
        loss = t < 0 || t >= C ? NAN_F : (1.f - eps) * (lse - ld(x, r * C + t)) + eps * (lse - a.sx / (float)C);
    }
    if (threadIdx.x == 0) {
        if (out) st(out, r, loss);
        else row_loss[r] = loss;
    }
}

/* Row r of dx [N, C]: g (p_j - (1-ε) [j == t] - ε/C), p = softmax of the row recomputed from
 * its statistics (a second read of the row, mostly from L2); zeros where t == ignore. g is
 * dloss[r] ("none"), dloss ("sum") or dloss / *count ("mean", count from ce_count). */
template <typename T>
__device__ void ce_backward(const T *x, const void *tg, i64 tdt, const T *dloss, i64 red, const float *count, i64 C,
                            i64 ignore, float eps, T *dx, int vecload) {
    const int VW = vec<T>::VW;
    const i64 r = blockIdx.x, t = ld_target(tg, r, tdt);
    x += r * C, dx += r * C;
    if (t == ignore) {
        for (i64 j = threadIdx.x; j < C; j += blockDim.x) st(dx, j, 0.f);
        return;
    }
    const stats a = row_stats(x, C, vecload);
    const float lse = a.m + logf(a.s), off = eps / (float)C, on = 1.f - eps + off;
    float g = ld(dloss, red == RED_NONE ? r : 0);
    if (red == RED_MEAN) g /= *count;
    if (t < 0 || t >= C) g = NAN_F;
    if (vecload) {
        const uint4 *xv = (const uint4 *)x;
        uint4 *dv = (uint4 *)dx;
        for (i64 k = threadIdx.x; k < C / VW; k += blockDim.x) {
            float f[VW];
            unpack(ld_stream(xv + k), f, (const T *)0);
            for (int i = 0; i < VW; i++) f[i] = g * (expf(f[i] - lse) - (k * VW + i == t ? on : off));
            st_stream(dv + k, pack(f, (const T *)0));
        }
    } else {
        for (i64 j = threadIdx.x; j < C; j += blockDim.x) st(dx, j, g * (expf(ld(x, j) - lse) - (j == t ? on : off)));
    }
}

/* The number of targets of tg [n] not equal to ignore, in every thread of the (one) block. */
__device__ i64 count_kept(const void *tg, i64 tdt, i64 n, i64 ignore) {
    __shared__ i64 part[REDUCE_THREADS];
    i64 c = 0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) c += ld_target(tg, i, tdt) != ignore;
    part[threadIdx.x] = c;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
        if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    return part[0];
}

/* One block: out = the sum of row_loss [n] in a fixed order (f64 partial sums, then a tree), divided
 * by the targets kept for a mean (NaN when none is, as the host). */
template <typename T>
__device__ void ce_reduce(const float *row_loss, const void *tg, i64 tdt, i64 n, i64 ignore, int mean, T *out) {
    __shared__ double part[REDUCE_THREADS];
    double s = 0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) s += row_loss[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
        if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    const i64 kept = mean ? count_kept(tg, tdt, n, ignore) : 1;
    if (threadIdx.x == 0) st(out, 0, !mean ? (float)part[0] : kept ? (float)(part[0] / (double)kept) : NAN_F);
}

/* ---- entry points: one per element type (suffix f32, f16, bf16) -------------------------------- */
#define CE_ENTRIES(S, T)                                                                                              \
    extern "C" __global__ void __launch_bounds__(1024)                                                                \
        kiln_ce_forward_##S(const T *x, const void *tg, i64 tdt, i64 C, i64 ignore, float eps, T *out, float *row_loss, \
                            int vecload) {                                                                            \
        ce_forward<T>(x, tg, tdt, C, ignore, eps, out, row_loss, vecload);                                            \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(1024)                                                                \
        kiln_ce_backward_##S(const T *x, const void *tg, i64 tdt, const T *dloss, i64 red, const float *count, i64 C,  \
                             i64 ignore, float eps, T *dx, int vecload) {                                             \
        ce_backward<T>(x, tg, tdt, dloss, red, count, C, ignore, eps, dx, vecload);                                   \
    }                                                                                                                 \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                                      \
        kiln_ce_reduce_##S(const float *row_loss, const void *tg, i64 tdt, i64 n, i64 ignore, int mean, T *out) {     \
        ce_reduce<T>(row_loss, tg, tdt, n, ignore, mean, out);                                                        \
    }
CE_ENTRIES(f32, float)
CE_ENTRIES(f16, h16)
CE_ENTRIES(bf16, b16)

/* One block: *count = the targets of tg [n] not ignored, as f32 (the mean's divisor). */
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) kiln_ce_count(const void *tg, i64 tdt, i64 n, i64 ignore,
                                                                          float *count) {
    const i64 kept = count_kept(tg, tdt, n, ignore);
    if (threadIdx.x == 0) *count = (float)kept;
}
