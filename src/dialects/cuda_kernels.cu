/* cuda_kernels.cu — kiln's own CUDA kernels (dialect "cuda", driven by cuda_ops.c): strided copies,
 * fills, pad, arange, the gather / scatter family and its backward, nll_loss, adaptive average pooling and
 * its backward, cumsum, argmax / argmin.
 * Compiled at run time by NVRTC (embedded in libkiln as a string); self-contained: no includes. */

/* Every kernel walks its elements with a grid-stride loop and 64-bit indices. Structs passed by
 * value mirror the ones of the same name in cuda_ops.c field for field (8-byte fields only); they
 * are __grid_constant__, so indexing their arrays reads the parameter space instead of a
 * per-thread copy. Element
 * kernels come in four sizes (suffix _1 _2 _4 _8: bytes per element) moving raw bits. Dtype codes
 * are kiln_dtype's values. Index inputs are any int dtype; an index out of range is clamped (mode
 * "raise" behaves as "clip" on the device: see cuda_ops.c). */
typedef long long i64;
typedef unsigned long long u64;
enum { DT_F32, DT_F64, DT_F16, DT_BF16, DT_I8, DT_U8, DT_I32, DT_I64, DT_BOOL };
enum { MODE_RAISE, MODE_CLIP, MODE_WRAP };
#define MAX_DIMS 8
#define VIEW_DIMS 16
#define FOR_EACH(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

/* ---- scalar conversions (the host's kiln_load_* / kiln_store_* semantics) ---------------------- */
__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float bf16_to_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }
/* Round to nearest even; a NaN stays a (quiet) NaN. */
__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/* double -> int64 as the host does: NaN -> 0, saturating. */
__device__ __forceinline__ i64 f64_to_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return (i64)0x7fffffffffffffffLL;
    if (v <= -9223372036854775808.0) return (i64)(-0x7fffffffffffffffLL - 1);
    return (i64)v;
}

__device__ double load_f64(const void *p, i64 i, int dt) {
    switch (dt) {
    case DT_F32: return ((const float *)p)[i];
    case DT_F64: return ((const double *)p)[i];
    case DT_F16: return f16_to_f32(((const unsigned short *)p)[i]);
    case DT_BF16: return bf16_to_f32(((const unsigned short *)p)[i]);
    case DT_I8: return ((const signed char *)p)[i];
    case DT_U8: case DT_BOOL: return ((const unsigned char *)p)[i];
    case DT_I32: return ((const int *)p)[i];
    default: return (double)((const i64 *)p)[i];
    }
}
__device__ i64 load_i64(const void *p, i64 i, int dt) {
    switch (dt) {
    case DT_I8: return ((const signed char *)p)[i];
    case DT_U8: case DT_BOOL: return ((const unsigned char *)p)[i];
    case DT_I32: return ((const int *)p)[i];
    case DT_I64: return ((const i64 *)p)[i];
    default: return f64_to_i64(load_f64(p, i, dt));
    }
}
__device__ void store_i64(void *p, i64 i, int dt, i64 v);
__device__ void store_f64(void *p, i64 i, int dt, double v) {
    switch (dt) {
    case DT_F32: ((float *)p)[i] = (float)v; break;
    case DT_F64: ((double *)p)[i] = v; break;
    case DT_F16: ((unsigned short *)p)[i] = f32_to_f16((float)v); break;  /* through float, as the host */
    case DT_BF16: ((unsigned short *)p)[i] = f32_to_bf16((float)v); break;
    case DT_BOOL: ((unsigned char *)p)[i] = v != 0; break;
    default: store_i64(p, i, dt, f64_to_i64(v)); break;
    }
}
__device__ void store_i64(void *p, i64 i, int dt, i64 v) {
    switch (dt) {
    case DT_I8: ((signed char *)p)[i] = (signed char)v; break;
    case DT_U8: ((unsigned char *)p)[i] = (unsigned char)v; break;
    case DT_I32: ((int *)p)[i] = (int)v; break;
    case DT_I64: ((i64 *)p)[i] = v; break;
    case DT_BOOL: ((unsigned char *)p)[i] = v != 0; break;
    default: store_f64(p, i, dt, (double)v); break;
    }
}
__device__ __forceinline__ bool is_float_dt(int dt) { return dt <= DT_BF16; }

/* Index v into an axis of n > 0 elements: raise allows [-n, n) and clamps the rest, clip clamps,
 * wrap takes v mod n. */
__device__ __forceinline__ i64 resolve_index(i64 v, i64 n, int mode) {
    if (mode == MODE_WRAP) return ((v % n) + n) % n;
    if (mode == MODE_RAISE && v < 0 && v >= -n) v += n;
    return v < 0 ? 0 : v >= n ? n - 1 : v;
}

/* Four instantiations of NAME##_body<T> by element size: extern "C" NAME_1 .. NAME_8. PARAMS is the
 * parenthesised parameter list, ARGS the call's (T names the element type inside). */
#define SIZED(NAME, PARAMS, ARGS)                                                                   \
    extern "C" __global__ void NAME##_1 PARAMS { typedef unsigned char T; NAME##_body<T> ARGS; }    \
    extern "C" __global__ void NAME##_2 PARAMS { typedef unsigned short T; NAME##_body<T> ARGS; }   \
    extern "C" __global__ void NAME##_4 PARAMS { typedef unsigned int T; NAME##_body<T> ARGS; }     \
    extern "C" __global__ void NAME##_8 PARAMS { typedef u64 T; NAME##_body<T> ARGS; }

/* ---- strided copy and fill ------------------------------------------------------------------- */
/* For every index (i_0..i_nd-1) over shape: dst[doff + sum i_k dstr_k] = src[soff + sum i_k sstr_k];
 * strides may be 0 (broadcast) or negative (flip). n = the shape's element count. */
struct kiln_view {
    i64 nd, n, doff, soff;
    i64 small; /* every index and offset fits in 32 bits: the index arithmetic runs in 32 bits */
    i64 shape[VIEW_DIMS], dstr[VIEW_DIMS], sstr[VIEW_DIMS];
};
/* Element i's offsets in dst and src, in I (int or i64: 64-bit division costs many instructions,
 * and a copy's time goes mostly into decoding indices when it is not memory-bound). */
template <typename I> __device__ __forceinline__ void view_offsets(const kiln_view &v, i64 i, i64 *d, i64 *s) {
    I r = (I)i, dd = (I)v.doff, ss = (I)v.soff;
    for (int k = (int)v.nd - 1; k >= 0; k--) {
        I c = r % (I)v.shape[k];
        r /= (I)v.shape[k];
        dd += c * (I)v.dstr[k];
        ss += c * (I)v.sstr[k];
    }
    *d = dd, *s = ss;
}
template <typename T> __device__ void kiln_copy_body(T *dst, const T *src, const kiln_view &v) {
    FOR_EACH(i, v.n) {
        i64 d, s;
        if (v.small) view_offsets<int>(v, i, &d, &s);
        else view_offsets<i64>(v, i, &d, &s);
        dst[d] = src[s];
    }
}
SIZED(kiln_copy, (void *dst, const void *src, const __grid_constant__ kiln_view v), ((T *)dst, (const T *)src, v))
/* The copy of 16-byte elements (runs of smaller ones moved as vectors). */
extern "C" __global__ void kiln_copy_16(void *dst, const void *src, const __grid_constant__ kiln_view v) {
    kiln_copy_body<uint4>((uint4 *)dst, (const uint4 *)src, v);
}

/* dst[0..n) = the element whose bits are `bits` (low bytes). */
template <typename T> __device__ void kiln_fill_body(T *dst, i64 n, u64 bits) {
    FOR_EACH(i, n) dst[i] = (T)bits;
}
SIZED(kiln_fill, (void *dst, i64 n, u64 bits), ((T *)dst, n, bits))

/* y[i] = start + i * step: in int64 when `integral` (whole-number attributes, int dtype), else in
 * double rounded once to the dtype. */
extern "C" __global__ void kiln_arange(void *y, i64 dt, i64 n, double start, double step, i64 integral, i64 istart,
                                       i64 istep) {
    FOR_EACH(i, n) {
        if (integral) store_i64(y, i, (int)dt, (i64)((u64)istart + (u64)i * (u64)istep));
        else store_f64(y, i, (int)dt, start + (double)i * step);
    }
}

/* ---- pad: every output element reads its source through a per-dim index map --------------------- */
/* Output coordinate c along dim k is input coordinate t = c - before[k]; outside [0, dim[k]):
 * constant gives `bits`, edge clamps, reflect mirrors about the end element (pads < dim). */
struct kiln_pad_args {
    i64 nd, n, mode; /* 0 constant, 1 reflect, 2 edge */
    u64 bits;
    i64 oshape[MAX_DIMS], xstr[MAX_DIMS], before[MAX_DIMS], dim[MAX_DIMS];
};
/* Offset in x of output element i; false where it lies in a constant pad. */
__device__ bool pad_src(const kiln_pad_args &p, i64 i, i64 *off) {
    i64 r = i, s = 0;
    bool inside = true;
    for (int k = (int)p.nd - 1; k >= 0; k--) {
        i64 c = r % p.oshape[k], d = p.dim[k];
        r /= p.oshape[k];
        i64 t = c - p.before[k];
        if (t < 0 || t >= d) {
            if (p.mode == 0) inside = false;
            else if (p.mode == 2) t = t < 0 ? 0 : d - 1;
            else t = t < 0 ? -t : 2 * (d - 1) - t;
        }
        s += t * p.xstr[k];
    }
    *off = s;
    return inside;
}
template <typename T> __device__ void kiln_pad_body(T *y, const T *x, const kiln_pad_args &p) {
    FOR_EACH(i, p.n) {
        i64 s;
        y[i] = pad_src(p, i, &s) ? x[s] : (T)p.bits;
    }
}
SIZED(kiln_pad, (void *y, const void *x, const __grid_constant__ kiln_pad_args p), ((T *)y, (const T *)x, p))

/* ---- take, gather, gather_nd, one_hot ----------------------------------------------------------- */
/* take: x as [outer, n, inner], y as [outer, m, inner], m indices. */
struct kiln_take_args {
    i64 outer, n, inner, m, mode;
    const void *ind;
    i64 ind_dt;
};
/* Offset in x of output element i. */
__device__ __forceinline__ i64 take_src(const kiln_take_args &p, i64 i) {
    i64 k = i % p.inner, j = (i / p.inner) % p.m, o = i / (p.inner * p.m);
    return (o * p.n + resolve_index(load_i64(p.ind, j, (int)p.ind_dt), p.n, (int)p.mode)) * p.inner + k;
}
template <typename T> __device__ void kiln_take_body(T *y, const T *x, const kiln_take_args &p) {
    FOR_EACH(i, p.outer * p.m * p.inner) y[i] = x[take_src(p, i)];
}
SIZED(kiln_take, (void *y, const void *x, const __grid_constant__ kiln_take_args p), ((T *)y, (const T *)x, p))

/* gather / scatter along an axis: for every coordinate c of the indices (shape ishape), the element
 * at c with c[axis] replaced by the index; xstr: the strides of the indexed tensor, sstr: those of
 * scatter's src. */
struct kiln_along_args {
    i64 nd, axis, n, total;
    i64 ishape[MAX_DIMS], xstr[MAX_DIMS], sstr[MAX_DIMS];
    const void *ind;
    i64 ind_dt, dt;
};
/* Offsets of index element i in the indexed tensor (*xo) and in src (*so). */
__device__ void along_offsets(const kiln_along_args &p, i64 i, i64 *xo, i64 *so) {
    i64 r = i, x = 0, s = 0;
    for (int d = (int)p.nd - 1; d >= 0; d--) {
        i64 c = r % p.ishape[d];
        r /= p.ishape[d];
        if (d != p.axis) x += c * p.xstr[d];
        s += c * p.sstr[d];
    }
    *xo = x + resolve_index(load_i64(p.ind, i, (int)p.ind_dt), p.n, MODE_RAISE) * p.xstr[p.axis];
    *so = s;
}
template <typename T> __device__ void kiln_gather_body(T *y, const T *x, const kiln_along_args &p) {
    FOR_EACH(i, p.total) {
        i64 xo, so;
        along_offsets(p, i, &xo, &so);
        y[i] = x[xo];
    }
}
SIZED(kiln_gather, (void *y, const void *x, const __grid_constant__ kiln_along_args p), ((T *)y, (const T *)x, p))

/* scatter (reduce none) into y (already a copy of x): y[at c] = src[c]; with repeated indices the
 * surviving write is unspecified on the device. */
template <typename T> __device__ void kiln_scatter_body(T *y, const T *src, const kiln_along_args &p) {
    FOR_EACH(i, p.total) {
        i64 yo, so;
        along_offsets(p, i, &yo, &so);
        y[yo] = src[so];
    }
}
SIZED(kiln_scatter, (void *y, const void *src, const __grid_constant__ kiln_along_args p), ((T *)y, (const T *)src, p))

/* Atomic read-modify-write of a 1- or 2-byte element through a CAS on its aligned 32-bit word. */
__device__ void atomic_add_narrow(void *p, int dt, double v) {
    unsigned *w = (unsigned *)((u64)p & ~(u64)3);
    int bytes = dt == DT_F16 || dt == DT_BF16 ? 2 : 1;
    unsigned shift = (unsigned)((u64)p & 3) * 8, mask = (bytes == 2 ? 0xffffu : 0xffu) << shift;
    unsigned old = *w, assumed;
    do {
        assumed = old;
        unsigned e = (assumed & mask) >> shift, r;
        switch (dt) {
        case DT_F16: r = f32_to_f16(f16_to_f32((unsigned short)e) + (float)v); break;
        case DT_BF16: r = f32_to_bf16(bf16_to_f32((unsigned short)e) + (float)v); break;
        case DT_BOOL: r = e || v != 0; break;
        default: r = (e + (unsigned)(i64)v) & 0xffu; break; /* i8 / u8 wrap */
        }
        old = atomicCAS(w, assumed, (assumed & ~mask) | ((r << shift) & mask));
    } while (assumed != old);
}
/* ((dt *)y)[off] += v atomically for a float dtype (f16 / bf16 add in float). */
__device__ void atomic_add_float(void *y, i64 off, int dt, double v) {
    switch (dt) {
    case DT_F32: atomicAdd((float *)y + off, (float)v); break;
    case DT_F64: atomicAdd((double *)y + off, v); break;
    default: atomic_add_narrow((unsigned short *)y + off, dt, v); break;
    }
}
/* ((dt *)y)[yo] += ((dt *)src)[so] atomically for any dtype (ints wrap, bool ors). */
__device__ void atomic_add_dt(void *y, i64 yo, const void *src, i64 so, int dt) {
    switch (dt) {
    case DT_I32: atomicAdd((int *)y + yo, ((const int *)src)[so]); break;
    case DT_I64: atomicAdd((u64 *)y + yo, ((const u64 *)src)[so]); break;
    case DT_I8: case DT_U8: case DT_BOOL: atomic_add_narrow((unsigned char *)y + yo, dt, (double)load_i64(src, so, dt)); break;
    default: atomic_add_float(y, yo, dt, load_f64(src, so, dt)); break;
    }
}
extern "C" __global__ void kiln_scatter_add(void *y, const void *src, const __grid_constant__ kiln_along_args p) {
    FOR_EACH(i, p.total) {
        i64 yo, so;
        along_offsets(p, i, &yo, &so);
        atomic_add_dt(y, yo, src, so, (int)p.dt);
    }
}

/* gather_nd: x as [batch, block] (block = x.shape[b:]), indices as [batch, tuples, k] naming
 * coordinates in dims[0..k); each picks a run of `slice` elements. */
struct kiln_gather_nd_args {
    i64 batch, tuples, slice, block, k;
    i64 dims[MAX_DIMS];
    const void *ind;
    i64 ind_dt;
};
/* Offset in x of output element i. */
__device__ i64 gather_nd_src(const kiln_gather_nd_args &p, i64 i) {
    i64 e = i % p.slice, bt = i / p.slice, off = 0; /* bt = bi * tuples + t */
    for (int j = 0; j < (int)p.k; j++)
        off = off * p.dims[j] + resolve_index(load_i64(p.ind, bt * p.k + j, (int)p.ind_dt), p.dims[j], MODE_RAISE);
    return (bt / p.tuples) * p.block + off * p.slice + e;
}
template <typename T> __device__ void kiln_gather_nd_body(T *y, const T *x, const kiln_gather_nd_args &p) {
    FOR_EACH(i, p.batch * p.tuples * p.slice) y[i] = x[gather_nd_src(p, i)];
}
SIZED(kiln_gather_nd, (void *y, const void *x, const __grid_constant__ kiln_gather_nd_args p), ((T *)y, (const T *)x, p))

/* one_hot: y as [outer, depth, inner], indices as [outer, inner]; a negative index counts from the
 * end, one still outside [0, depth) gives off everywhere. */
struct kiln_one_hot_args {
    i64 outer, depth, inner;
    u64 on, off;
    const void *ind;
    i64 ind_dt;
};
template <typename T> __device__ void kiln_one_hot_body(T *y, const kiln_one_hot_args &p) {
    i64 total = p.outer * p.depth * p.inner;
    FOR_EACH(i, total) {
        i64 k = i % p.inner, d = (i / p.inner) % p.depth, o = i / (p.inner * p.depth);
        i64 v = load_i64(p.ind, o * p.inner + k, (int)p.ind_dt);
        y[i] = (T)((v < 0 ? v + p.depth : v) == d ? p.on : p.off);
    }
}
SIZED(kiln_one_hot, (void *y, const __grid_constant__ kiln_one_hot_args p), ((T *)y, p))

/* Backward of take, gather_nd and pad (reflect / edge) into dx (zeroed by the host): every dy
 * element adds itself where its forward read from (f32 / f64 atomics; f16 / bf16 round per add). */
extern "C" __global__ void kiln_take_backward(void *dx, const void *dy, i64 dt, const __grid_constant__ kiln_take_args p) {
    FOR_EACH(i, p.outer * p.m * p.inner) atomic_add_float(dx, take_src(p, i), (int)dt, load_f64(dy, i, (int)dt));
}
extern "C" __global__ void kiln_gather_nd_backward(void *dx, const void *dy, i64 dt, const __grid_constant__ kiln_gather_nd_args p) {
    FOR_EACH(i, p.batch * p.tuples * p.slice) atomic_add_float(dx, gather_nd_src(p, i), (int)dt, load_f64(dy, i, (int)dt));
}
extern "C" __global__ void kiln_pad_backward(void *dx, const void *dy, i64 dt, const __grid_constant__ kiln_pad_args p) {
    FOR_EACH(i, p.n) {
        i64 s;
        if (pad_src(p, i, &s)) atomic_add_float(dx, s, (int)dt, load_f64(dy, i, (int)dt));
    }
}

/* ---- nll_loss ------------------------------------------------------------------------------- */
/* loss[k] = -logp[(k / D) * C + t, k % D] for target t = tg[k] (0 where t == ignore; NaN where t is
 * outside [0, C): the host would raise). */
__device__ double nll_term(const void *lp, i64 dt, const void *tg, i64 tdt, i64 k, i64 C, i64 D, i64 ignore, int *kept) {
    i64 t = load_i64(tg, k, (int)tdt);
    *kept = t != ignore;
    if (t == ignore) return 0;
    if (t < 0 || t >= C) return __longlong_as_double(0x7ff8000000000000LL);
    return -load_f64(lp, ((k / D) * C + t) * D + k % D, (int)dt);
}
extern "C" __global__ void kiln_nll_none(void *out, const void *lp, i64 dt, const void *tg, i64 tdt, i64 count, i64 C,
                                         i64 D, i64 ignore) {
    FOR_EACH(k, count) {
        int kept;
        store_f64(out, k, (int)dt, nll_term(lp, dt, tg, tdt, k, C, D, ignore, &kept));
    }
}
/* One block of 256 threads: the sum of the losses (mean: divided by the targets kept; NaN if none). */
extern "C" __global__ void kiln_nll_reduce(void *out, const void *lp, i64 dt, const void *tg, i64 tdt, i64 count, i64 C,
                                           i64 D, i64 ignore, i64 mean) {
    __shared__ double sum[256];
    __shared__ i64 kept_n[256];
    double s = 0;
    i64 c = 0;
    for (i64 k = threadIdx.x; k < count; k += blockDim.x) {
        int kept;
        s += nll_term(lp, dt, tg, tdt, k, C, D, ignore, &kept);
        c += kept;
    }
    sum[threadIdx.x] = s;
    kept_n[threadIdx.x] = c;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
        if (threadIdx.x < h) {
            sum[threadIdx.x] += sum[threadIdx.x + h];
            kept_n[threadIdx.x] += kept_n[threadIdx.x + h];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double nan = __longlong_as_double(0x7ff8000000000000LL);
        store_f64(out, 0, (int)dt, !mean ? sum[0] : kept_n[0] ? sum[0] / (double)kept_n[0] : nan);
    }
}

/* ---- adaptive average pooling ---------------------------------------------------------------- */
/* Planes of [h, w] pooled to [oh, ow] with torch's windows: output o of n covers inputs
 * [floor(o * in / n), ceil((o + 1) * in / n)) along each axis. Sums in double. */
__device__ __forceinline__ i64 win_start(i64 o, i64 in, i64 n) { return o * in / n; }
__device__ __forceinline__ i64 win_end(i64 o, i64 in, i64 n) { return ((o + 1) * in + n - 1) / n; }

/* One thread per output element: the mean of its window. */
extern "C" __global__ void kiln_adaptive_avg_pool(void *y, const void *x, i64 dt, i64 planes, i64 h, i64 w, i64 oh, i64 ow) {
    FOR_EACH(i, planes * oh * ow) {
        i64 p = i / (oh * ow), r = i % (oh * ow) / ow, c = i % ow;
        i64 r0 = win_start(r, h, oh), r1 = win_end(r, h, oh), c0 = win_start(c, w, ow), c1 = win_end(c, w, ow);
        double s = 0;
        for (i64 a = r0; a < r1; a++)
            for (i64 b = c0; b < c1; b++) s += load_f64(x, (p * h + a) * w + b, (int)dt);
        store_f64(y, i, (int)dt, s / (double)((r1 - r0) * (c1 - c0)));
    }
}

/* One thread per input element: the sum of dy / window size over the windows that cover it (a
 * gather, so no atomics; windows overlap only where in is not a multiple of n). The first
 * window along an axis that covers index a is o_lo = floor(a * n / in) or one of its
 * predecessors; later ones follow while their start is <= a. */
__device__ __forceinline__ i64 first_cover(i64 a, i64 in, i64 n) {
    i64 o = a * n / in;
    while (o > 0 && win_end(o - 1, in, n) > a) o--;
    return o;
}
extern "C" __global__ void kiln_adaptive_avg_pool_backward(void *dx, const void *dy, i64 dt, i64 planes, i64 h, i64 w,
                                                           i64 oh, i64 ow) {
    FOR_EACH(i, planes * h * w) {
        i64 p = i / (h * w), a = i % (h * w) / w, b = i % w;
        double s = 0;
        for (i64 r = first_cover(a, h, oh); r < oh && win_start(r, h, oh) <= a; r++) {
            i64 rs = win_end(r, h, oh) - win_start(r, h, oh);
            for (i64 c = first_cover(b, w, ow); c < ow && win_start(c, w, ow) <= b; c++)
                s += load_f64(dy, (p * oh + r) * ow + c, (int)dt) / (double)(rs * (win_end(c, w, ow) - win_start(c, w, ow)));
        }
        store_f64(dx, i, (int)dt, s);
    }
}

/* ---- cumsum, argmax / argmin ---------------------------------------------------------------- */
/* One thread per column of x as [outer, n, inner]: running sums down the column (last to first when
 * reverse), in double for floats and wrapping int64 otherwise; exclusive leaves the element out. */
extern "C" __global__ void kiln_cumsum(void *y, i64 ydt, const void *x, i64 xdt, i64 outer, i64 n, i64 inner,
                                       i64 exclusive, i64 reverse) {
    bool fl = is_float_dt((int)xdt);
    FOR_EACH(col, outer * inner) {
        i64 base = (col / inner) * n * inner + col % inner;
        double af = 0;
        u64 ai = 0;
        for (i64 r = 0; r < n; r++) {
            i64 e = base + (reverse ? n - 1 - r : r) * inner;
            if (fl) {
                double v = load_f64(x, e, (int)xdt);
                store_f64(y, e, (int)ydt, exclusive ? af : af + v);
                af += v;
            } else {
                u64 v = (u64)load_i64(x, e, (int)xdt);
                store_i64(y, e, (int)ydt, (i64)(exclusive ? ai : ai + v));
                ai += v;
            }
        }
    }
}

/* Whether (v, i) beats the best so far (bv, bi) (bi < 0: none): NaN beats every number, ties and
 * NaNs keep the earlier index: the host's sequential first-best rule, order-free. */
template <typename V> __device__ bool beats(V v, i64 i, V bv, i64 bi, bool is_max) {
    bool vn = v != v, bn = bv != bv;
    if (bi < 0) return true;
    if (vn || bn) return vn && (!bn || i < bi);
    if (v == bv) return i < bi;
    return is_max ? v > bv : v < bv;
}
/* One block (256 threads) per output element of x as [outer, n, inner]. */
template <typename V> __device__ void argreduce(i64 *y, const void *x, int dt, i64 outer, i64 n, i64 inner, bool is_max) {
    __shared__ V best[256];
    __shared__ i64 at[256];
    for (i64 o = blockIdx.x; o < outer * inner; o += gridDim.x) {
        i64 base = (o / inner) * n * inner + o % inner, bi = -1;
        V bv = 0;
        for (i64 r = threadIdx.x; r < n; r += blockDim.x) {
            V v = is_float_dt(dt) ? (V)load_f64(x, base + r * inner, dt) : (V)load_i64(x, base + r * inner, dt);
            if (beats(v, r, bv, bi, is_max)) bv = v, bi = r;
        }
        best[threadIdx.x] = bv;
        at[threadIdx.x] = bi;
        __syncthreads();
        for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
            if (threadIdx.x < h && at[threadIdx.x + h] >= 0 &&
                beats(best[threadIdx.x + h], at[threadIdx.x + h], best[threadIdx.x], at[threadIdx.x], is_max)) {
                best[threadIdx.x] = best[threadIdx.x + h];
                at[threadIdx.x] = at[threadIdx.x + h];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) y[o] = at[0];
        __syncthreads();
    }
}
extern "C" __global__ void kiln_argreduce(i64 *y, const void *x, i64 dt, i64 outer, i64 n, i64 inner, i64 is_max) {
    if (is_float_dt((int)dt)) argreduce<double>(y, x, (int)dt, outer, n, inner, is_max != 0);
    else argreduce<i64>(y, x, (int)dt, outer, n, inner, is_max != 0);
}
