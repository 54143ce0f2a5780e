/* dtype.c — dtype names and sizes, 16-bit float conversion (round to nearest even), element
 * loads/stores through double or int64, bulk conversion and type promotion. */
#include "core/core.h"
#include <math.h>
#include <string.h>

static const struct {
    const char *name, *long_name;
    size_t size;
} DTYPES[KILN_DTYPE_COUNT] = {
    [KILN_F32] = {"f32", "float32", 4},  [KILN_F64] = {"f64", "float64", 8},
    [KILN_F16] = {"f16", "float16", 2},  [KILN_BF16] = {"bf16", "bfloat16", 2},
    [KILN_I8] = {"i8", "int8", 1},       [KILN_U8] = {"u8", "uint8", 1},
    [KILN_I32] = {"i32", "int32", 4},    [KILN_I64] = {"i64", "int64", 8},
    [KILN_BOOL] = {"bool", "bool", 1},
};

const char *kiln_dtype_name(kiln_dtype dt) {
    return (unsigned)dt < KILN_DTYPE_COUNT ? DTYPES[dt].name : "?";
}

int kiln_dtype_from_name(const char *name) {
    for (int i = 0; i < KILN_DTYPE_COUNT; i++)
        if (!strcmp(name, DTYPES[i].name) || !strcmp(name, DTYPES[i].long_name)) return i;
    return -1;
}

size_t kiln_dtype_size(kiln_dtype dt) { return (unsigned)dt < KILN_DTYPE_COUNT ? DTYPES[dt].size : 0; }

bool kiln_dtype_is_float(kiln_dtype dt) {
    return dt == KILN_F32 || dt == KILN_F64 || dt == KILN_F16 || dt == KILN_BF16;
}

bool kiln_dtype_is_int(kiln_dtype dt) {
    return dt == KILN_I8 || dt == KILN_U8 || dt == KILN_I32 || dt == KILN_I64;
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t kiln_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff, mant = u & 0x7fffff;
    if (exp == 0xff) return sign | 0x7c00 | (mant ? 0x200 | (uint16_t)(mant >> 13) : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 31) return sign | 0x7c00; /* overflow to infinity */
    if (e <= 0) {                      /* subnormal or zero in half precision */
        if (e < -10) return sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into inf: correct */
    return sign | (uint16_t)half;
}

float kiln_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (mant << 13));
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

uint16_t kiln_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float kiln_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

double kiln_load_f64(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_F32: return ((const float *)p)[i];
    case KILN_F64: return ((const double *)p)[i];
    case KILN_F16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
    case KILN_I8: return ((const int8_t *)p)[i];
    case KILN_U8: return ((const uint8_t *)p)[i];
    case KILN_I32: return ((const int32_t *)p)[i];
    case KILN_I64: return (double)((const int64_t *)p)[i];
    case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return 0;
    }
}

/* Float to integer the way a C cast does for in-range values; NaN and out-of-range saturate
 * (a C cast would be undefined behaviour there). */
static int64_t f64_to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

int64_t kiln_load_i64(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_I8: return ((const int8_t *)p)[i];
    case KILN_U8: return ((const uint8_t *)p)[i];
    case KILN_I32: return ((const int32_t *)p)[i];
    case KILN_I64: return ((const int64_t *)p)[i];
    case KILN_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return f64_to_i64(kiln_load_f64(dt, p, i));
    }
}

void kiln_store_i64(kiln_dtype dt, void *p, int64_t i, int64_t v) {
    switch (dt) {
    case KILN_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case KILN_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case KILN_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case KILN_I64: ((int64_t *)p)[i] = v; break;
    case KILN_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: kiln_store_f64(dt, p, i, (double)v); break;
    }
}

void kiln_store_f64(kiln_dtype dt, void *p, int64_t i, double v) {
    switch (dt) {
    case KILN_F32: ((float *)p)[i] = (float)v; break;
    case KILN_F64: ((double *)p)[i] = v; break;
    /* Through float: double->float rounds to nearest even, then float->half does too; the
     * double rounding is exact for values that came from float arithmetic. */
    case KILN_F16: ((uint16_t *)p)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_BF16: ((uint16_t *)p)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: kiln_store_i64(dt, p, i, f64_to_i64(v)); break;
    }
}

void kiln_convert(kiln_dtype dst_dt, void *dst, kiln_dtype src_dt, const void *src, int64_t n) {
    if (dst_dt == src_dt) {
        memcpy(dst, src, (size_t)n * kiln_dtype_size(dst_dt));
        return;
    }
    if (kiln_dtype_is_float(src_dt) || kiln_dtype_is_float(dst_dt)) {
        if (kiln_dtype_is_float(src_dt))
            for (int64_t i = 0; i < n; i++) kiln_store_f64(dst_dt, dst, i, kiln_load_f64(src_dt, src, i));
        else /* int -> float: exact through double except int64 beyond 2^53, as in numpy */
            for (int64_t i = 0; i < n; i++)
                kiln_store_f64(dst_dt, dst, i, (double)kiln_load_i64(src_dt, src, i));
    } else {
        for (int64_t i = 0; i < n; i++) kiln_store_i64(dst_dt, dst, i, kiln_load_i64(src_dt, src, i));
    }
}

/* Rank within a category: bool 0; ints 1..; floats 10... */
static int rank(kiln_dtype d) {
    switch (d) {
    case KILN_BOOL: return 0;
    case KILN_U8: case KILN_I8: return 1;
    case KILN_I32: return 2;
    case KILN_I64: return 3;
    case KILN_F16: case KILN_BF16: return 10;
    case KILN_F32: return 11;
    default: return 12;
    }
}

kiln_dtype kiln_dtype_promote(kiln_dtype a, kiln_dtype b) {
    if (a == b) return a;
    int ra = rank(a), rb = rank(b);
    if (ra == rb) return ra == 1 ? KILN_I32 : KILN_F32; /* i8+u8 -> i32, f16+bf16 -> f32 */
    return ra > rb ? a : b;
}
