/* render.c — what the C and CUDA renderers share (render.h): per-op scalar expressions, dtype
 * loads / stores / conversions as kiln_convert does them, the reduction accumulator, the plan's
 * params and index decoding, the preamble's target-neutral part. */
#include "codegen/render.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char GEN_PREAMBLE_COMMON[] =
    "KG_FN uint16_t kg_st_bf16(float x) {\n"
    "    uint32_t u = kg_bits(x);\n"
    "    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);\n"
    "    u += 0x7fff + ((u >> 16) & 1);\n"
    "    return (uint16_t)(u >> 16);\n"
    "}\n"
    "KG_FN float kg_ld_bf16(uint16_t h) { return kg_float((uint32_t)h << 16); }\n"
    "KG_FN float kg_rnd_f16(float x) { return kg_ld_f16(kg_st_f16(x)); }\n"
    "KG_FN float kg_rnd_bf16(float x) { return kg_ld_bf16(kg_st_bf16(x)); }\n"
    "KG_FN int64_t kg_sat(double v) {\n"
    "    if (isnan(v)) return 0;\n"
    "    if (v >= 9223372036854775807.0) return INT64_MAX;\n"
    "    if (v <= -9223372036854775808.0) return INT64_MIN;\n"
    "    return (int64_t)v;\n"
    "}\n"
    "KG_FN int64_t kg_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }\n"
    "KG_FN int64_t kg_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }\n"
    "KG_FN int64_t kg_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }\n"
    "KG_FN int64_t kg_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }\n"
    "KG_FN int64_t kg_floordiv(int64_t x, int64_t y) {\n"
    "    if (y == 0) return 0;\n"
    "    if (y == -1) return kg_neg(x);\n"
    "    int64_t q = x / y;\n"
    "    return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;\n"
    "}\n"
    "KG_FN int64_t kg_mod(int64_t x, int64_t y) {\n"
    "    if (y == 0 || y == -1) return 0;\n"
    "    int64_t r = x % y;\n"
    "    return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;\n"
    "}\n"
    "KG_FN int64_t kg_pow(int64_t x, int64_t y) {\n"
    "    if (y < 0) return 0;\n"
    "    uint64_t r = 1, b = (uint64_t)x;\n"
    "    for (; y; y >>= 1, b *= b) if (y & 1) r *= b;\n"
    "    return (int64_t)r;\n"
    "}\n"
    "KG_FN int64_t kg_shl(int64_t x, int64_t y) { return y < 0 || y >= 64 ? 0 : (int64_t)((uint64_t)x << y); }\n"
    "KG_FN int64_t kg_shr(int64_t x, int64_t y) { return y < 0 || y >= 64 ? (x < 0 ? -1 : 0) : x >> y; }\n"
    /* sigmoid with e = e^-|x| <= 1: 1 / (1 + e) for x >= 0, e / (1 + e) below (no overflow,
     * tiny results keep their precision). */
    "KG_FN float kg_sigmoidf(float x) {\n"
    "    const float e = kg_expf(-fabsf(x));\n"
    "    return (x >= 0 ? 1.0f : e) / (1.0f + e);\n"
    "}\n"
    "#define KG_FLOAT_MATH(M, S)\\\n"
    "    KG_FN M kg_mod_##M(M x, M y) {\\\n"
    "        M r = fmod##S(x, y);\\\n"
    "        if (r != 0 && (r < 0) != (y < 0)) return r + y;\\\n"
    "        return r != 0 ? r : copysign##S((M)0, y);\\\n"
    "    }\\\n"
    "    KG_FN M kg_floordiv_##M(M x, M y) {\\\n"
    "        if (y == 0) return x / y;\\\n"
    "        M mod = fmod##S(x, y), div = (x - mod) / y;\\\n"
    "        if (mod != 0 && (y < 0) != (mod < 0)) div -= 1;\\\n"
    "        if (div == 0) return copysign##S((M)0, x / y);\\\n"
    "        M fl = floor##S(div);\\\n"
    "        return div - fl > (M)0.5 ? fl + 1 : fl;\\\n"
    "    }\n"
    "KG_FLOAT_MATH(float, f)\n"
    "KG_FLOAT_MATH(double, )\n"
    ;

gx gxf(const char *fmt, ...) {
    gx g;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.s, sizeof g.s, fmt, ap);
    va_end(ap);
    return g;
}

/* ---- types and conversions ----------------------------------------------------------------- */
static bool is_f(kiln_dtype dt) { return kiln_dtype_is_float(dt); }

/* The C type a dtype computes in (16-bit floats in float, ints and bool in int64). */
const char *gen_math_t(kiln_dtype dt) {
    return dt == KILN_F64 ? "double" : is_f(dt) ? "float" : "int64_t";
}

const char *gen_store_t(kiln_dtype dt) {
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_F16: case KILN_BF16: return "uint16_t";
    case KILN_I8: return "int8_t";
    case KILN_I32: return "int32_t";
    case KILN_I64: return "int64_t";
    default: return "uint8_t";
    }
}

/* Element x (stored as dt) as its math value. */
gx gen_load_x(kiln_dtype dt, const char *x) {
    switch (dt) {
    case KILN_F32: case KILN_F64: return gxf("%s", x);
    case KILN_F16: return gxf("kg_ld_f16(%s)", x);
    case KILN_BF16: return gxf("kg_ld_bf16(%s)", x);
    case KILN_BOOL: return gxf("(int64_t)(%s != 0)", x);
    default: return gxf("(int64_t)%s", x);
    }
}

/* A math value already representable in dt, as its storage. */
gx gen_store_x(kiln_dtype dt, const char *e) {
    switch (dt) {
    case KILN_F32: case KILN_F64: return gxf("%s", e);
    case KILN_F16: return gxf("kg_st_f16(%s)", e);
    case KILN_BF16: return gxf("kg_st_bf16(%s)", e);
    case KILN_BOOL: return gxf("(uint8_t)(%s != 0)", e);
    default: return gxf("(%s)%s", gen_store_t(dt), e);
    }
}

/* Rounds / wraps a math value of dt's math type to what a store into dt and a load keep. */
static gx fin_x(kiln_dtype dt, const char *e) {
    switch (dt) {
    case KILN_F16: return gxf("kg_rnd_f16(%s)", e);
    case KILN_BF16: return gxf("kg_rnd_bf16(%s)", e);
    case KILN_I8: case KILN_U8: case KILN_I32: return gxf("(int64_t)(%s)(%s)", gen_store_t(dt), e);
    case KILN_BOOL: return gxf("(int64_t)((%s) != 0)", e);
    default: return gxf("%s", e);
    }
}

/* The value kiln_convert gives converting e (a math value of sd) to cd, as cd's math value. */
gx gen_conv_x(const char *e, kiln_dtype sd, kiln_dtype cd) {
    if (sd == cd) return gxf("%s", e);
    if (is_f(cd)) {
        gx d = gxf("(double)(%s)", e); /* int -> float goes through double, as kiln_convert */
        if (cd == KILN_F64) return d;
        gx f = gxf("(float)%s", d.s);
        return cd == KILN_F32 ? f : fin_x(cd, f.s);
    }
    if (is_f(sd)) return cd == KILN_BOOL ? gxf("(int64_t)((%s) != 0)", e) : fin_x(cd, gxf("kg_sat((double)(%s))", e).s);
    return fin_x(cd, e);
}

/* A double as C source that reads back exactly. */
static gx double_x(double v) {
    if (isnan(v)) return gxf("NAN");
    if (isinf(v)) return gxf("%sINFINITY", v < 0 ? "-" : "");
    return gxf("(%a)", v);
}

/* Float to int64 as kiln_convert does: NaN 0, out of range saturated. */
static int64_t sat_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static gx int_x(int64_t v) {
    if (v == INT64_MIN) return gxf("INT64_MIN");
    return gxf("INT64_C(%lld)", (long long)v);
}

/* A var's math value: a literal inline, else its local v<id>. */
gx gen_var_x(const kiln_var *v) {
    if (v->kind != KILN_VAR_LITERAL) return gxf("v%d", v->id);
    if (v->type->dtype == KILN_F64) return double_x(v->lit.f);
    if (v->type->dtype == KILN_BOOL) return gxf("INT64_C(%d)", v->lit.b ? 1 : 0);
    return int_x(v->lit.i);
}

/* ---- per-node expressions ------------------------------------------------------------------ */
/* Unary ops on X (a local of dt's math type), as the reference kernels compute them. */
static gx unary_x(const kiln_node *n, kiln_dtype dt, const char *X) {
    const char *sf = dt == KILN_F64 ? "" : "f", *M = gen_math_t(dt);
    bool fl = is_f(dt);
    double lo = -INFINITY, hi = INFINITY;
    if (n->op == KILN_OP_CLIP) {
        const kiln_attr *mn = kiln_attr_get(n->op, n->attrs, "min"), *mx = kiln_attr_get(n->op, n->attrs, "max");
        if (mn->set) lo = mn->f;
        if (mx->set) hi = mx->f;
        if (lo > hi) lo = hi;
    }
    switch (n->op) {
    case KILN_OP_LOGICAL_NOT: return gxf("(%s == 0)", X);
    case KILN_OP_COPY: case KILN_OP_BROADCAST_TO: return gxf("%s", X);
    case KILN_OP_NEG: return fl ? gxf("-%s", X) : gxf("kg_neg(%s)", X);
    case KILN_OP_ABS: return fl ? gxf("fabs%s(%s)", sf, X) : gxf("(%s < 0 ? kg_neg(%s) : %s)", X, X, X);
    case KILN_OP_SIGN:
        return fl ? gxf("(isnan(%s) ? %s : (%s)((%s > 0) - (%s < 0)))", X, X, M, X, X) : gxf("(int64_t)((%s > 0) - (%s < 0))", X, X);
    case KILN_OP_RELU: return fl ? gxf("(%s > 0 || isnan(%s) ? %s : 0)", X, X, X) : gxf("(%s > 0 ? %s : 0)", X, X);
    case KILN_OP_FLOOR: case KILN_OP_CEIL: case KILN_OP_ROUND: case KILN_OP_TRUNC:
        if (!fl) return gxf("%s", X);
        return gxf("%s%s(%s)", n->op == KILN_OP_FLOOR ? "floor" : n->op == KILN_OP_CEIL ? "ceil" : n->op == KILN_OP_ROUND ? "rint" : "trunc", sf, X);
    case KILN_OP_CLIP: {
        if (fl) {
            gx l = double_x(lo), h = double_x(hi);
            return gxf("(%s < (%s)%s ? (%s)%s : %s > (%s)%s ? (%s)%s : %s)", X, M, l.s, M, l.s, X, M, h.s, M, h.s, X);
        }
        int64_t ilo = sat_i64(ceil(lo)), ihi = sat_i64(floor(hi));
        if (ilo > ihi) ilo = ihi;
        gx l = int_x(ilo), h = int_x(ihi);
        return gxf("(%s < %s ? %s : %s > %s ? %s : %s)", X, l.s, l.s, X, h.s, h.s, X);
    }
    case KILN_OP_THRESHOLD: {
        double thr = kiln_attr_float(n->op, n->attrs, "threshold"), val = kiln_attr_float(n->op, n->attrs, "value");
        gx t = double_x(thr);
        if (fl) {
            gx v = double_x(val);
            return gxf("(%s <= (%s)%s ? (%s)%s : %s)", X, M, t.s, M, v.s, X);
        }
        gx v = int_x(sat_i64(val));
        return gxf("((double)%s <= %s ? %s : %s)", X, t.s, v.s, X);
    }
    default: break;
    }
    /* f64 calls libm; f32 (and f16 / bf16, computed in float) the preamble's kg_*f where the
     * op has one (within a few ulp of libm, vectorizable), else libm's float function. */
    static const struct { kiln_op op; const char *fmt, *vec; } FLOAT_FN[] = {
        {KILN_OP_EXP, "exp%s(%s)", "kg_expf(%s)"}, {KILN_OP_LOG, "log%s(%s)", "kg_logf(%s)"},
        {KILN_OP_LOG2, "log2%s(%s)", "kg_log2f(%s)"}, {KILN_OP_SQRT, "sqrt%s(%s)", NULL},
        {KILN_OP_RSQRT, "(1 / sqrt%s(%s))", NULL}, {KILN_OP_SIN, "sin%s(%s)", NULL},
        {KILN_OP_COS, "cos%s(%s)", NULL}, {KILN_OP_TANH, "tanh%s(%s)", "kg_tanhf(%s)"},
        {KILN_OP_ATAN, "atan%s(%s)", "kg_atanf(%s)"}, {KILN_OP_ERF, "erf%s(%s)", "kg_erff(%s)"},
        {KILN_OP_SIGMOID, "(1 / (1 + exp%s(-%s)))", "kg_sigmoidf(%s)"},
    };
    if (n->op == KILN_OP_RECIPROCAL) return gxf("(1 / %s)", X);
    for (size_t i = 0; i < KILN_COUNTOF(FLOAT_FN); i++) {
        if (FLOAT_FN[i].op != n->op) continue;
        if (dt != KILN_F64 && FLOAT_FN[i].vec) return gxf(FLOAT_FN[i].vec, X);
        return gxf(FLOAT_FN[i].fmt, sf, X);
    }
    return gxf("?");
}

/* Binary ops on X and Y (locals of dt's math type). */
static gx binary_x(kiln_op op, kiln_dtype dt, const char *X, const char *Y) {
    static const struct { kiln_op op; const char *fmt; } LOGIC[] = {
        {KILN_OP_EQUAL, "(int64_t)(%s == %s)"}, {KILN_OP_NOT_EQUAL, "(int64_t)(%s != %s)"},
        {KILN_OP_LESS, "(int64_t)(%s < %s)"}, {KILN_OP_LESS_EQUAL, "(int64_t)(%s <= %s)"},
        {KILN_OP_GREATER, "(int64_t)(%s > %s)"}, {KILN_OP_GREATER_EQUAL, "(int64_t)(%s >= %s)"},
    };
    for (size_t i = 0; i < KILN_COUNTOF(LOGIC); i++)
        if (LOGIC[i].op == op) return gxf(LOGIC[i].fmt, X, Y);
    bool fl = is_f(dt);
    const char *sf = dt == KILN_F64 ? "" : "f", *M = gen_math_t(dt);
    switch (op) {
    case KILN_OP_LOGICAL_AND: return gxf("(int64_t)(%s != 0 && %s != 0)", X, Y);
    case KILN_OP_LOGICAL_OR: return gxf("(int64_t)(%s != 0 || %s != 0)", X, Y);
    case KILN_OP_LOGICAL_XOR: return gxf("(int64_t)((%s != 0) != (%s != 0))", X, Y);
    case KILN_OP_ADD: return fl ? gxf("(%s + %s)", X, Y) : gxf("kg_add(%s, %s)", X, Y);
    case KILN_OP_SUBTRACT: return fl ? gxf("(%s - %s)", X, Y) : gxf("kg_sub(%s, %s)", X, Y);
    case KILN_OP_MULTIPLY: return fl ? gxf("(%s * %s)", X, Y) : gxf("kg_mul(%s, %s)", X, Y);
    case KILN_OP_DIVIDE: return gxf("(%s / %s)", X, Y); /* the shape rule makes it float */
    case KILN_OP_FLOOR_DIVIDE: return fl ? gxf("kg_floordiv_%s(%s, %s)", M, X, Y) : gxf("kg_floordiv(%s, %s)", X, Y);
    case KILN_OP_MOD: return fl ? gxf("kg_mod_%s(%s, %s)", M, X, Y) : gxf("kg_mod(%s, %s)", X, Y);
    case KILN_OP_POWER: return fl ? gxf("pow%s(%s, %s)", sf, X, Y) : gxf("kg_pow(%s, %s)", X, Y);
    case KILN_OP_MAXIMUM: case KILN_OP_MINIMUM: {
        const char *cmp = op == KILN_OP_MAXIMUM ? ">" : "<";
        if (fl) return gxf("(isnan(%s) ? %s : isnan(%s) ? %s : %s %s %s ? %s : %s)", X, X, Y, Y, X, cmp, Y, X, Y);
        return gxf("(%s %s %s ? %s : %s)", X, cmp, Y, X, Y);
    }
    case KILN_OP_LEFT_SHIFT: return gxf("kg_shl(%s, %s)", X, Y);
    case KILN_OP_RIGHT_SHIFT: return gxf("kg_shr(%s, %s)", X, Y);
    default: return gxf("?");
    }
}

/* Emits `const M v<id> = ...;` for node n (not the reduction). */
static void emit_node(kiln_buf *b, const kiln_node *n) {
    int id = n->out->id;
    kiln_dtype od = n->out->type->dtype;
    const kiln_op_info *info = kiln_op_info_get(n->op);
    if (n->op == KILN_OP_WHERE) {
        gx c = gen_var_x(n->in[0]), x = gen_var_x(n->in[1]), y = gen_var_x(n->in[2]);
        gx cx = gen_conv_x(x.s, n->in[1]->type->dtype, od), cy = gen_conv_x(y.s, n->in[2]->type->dtype, od);
        kiln_buf_printf(b, "const %s v%d = %s != 0 ? %s : %s;\n", gen_math_t(od), id, c.s, cx.s, cy.s);
        return;
    }
    if (n->op == KILN_OP_CAST) {
        gx x = gen_var_x(n->in[0]), cx = gen_conv_x(x.s, n->in[0]->type->dtype, od);
        kiln_buf_printf(b, "const %s v%d = %s;\n", gen_math_t(od), id, cx.s);
        return;
    }
    /* Comparisons and logical ops compute in the promoted input dtype, arithmetic in the
     * output's; unary ops in their input's. Operands are converted first (kiln_convert). */
    kiln_dtype cd = od;
    if (n->n_in == 1) cd = n->in[0]->type->dtype;
    else if (info->shape == kiln_shape_compare) cd = kiln_dtype_promote(n->in[0]->type->dtype, n->in[1]->type->dtype);
    for (int i = 0; i < n->n_in; i++) {
        gx x = gen_var_x(n->in[i]), cx = gen_conv_x(x.s, n->in[i]->type->dtype, cd);
        kiln_buf_printf(b, "const %s v%d_%d = %s;\n", gen_math_t(cd), id, i, cx.s);
    }
    gx X = gxf("v%d_0", id), Y = gxf("v%d_1", id);
    gx e = n->n_in == 1 ? unary_x(n, cd, X.s) : binary_x(n->op, cd, X.s, Y.s);
    gx f = fin_x(od, e.s);
    kiln_buf_printf(b, "const %s v%d = %s;\n", gen_math_t(od), id, f.s);
}

/* ---- the reduction ------------------------------------------------------------------------- */
void gen_red_init(gen_red *r, const kiln_node *n, bool f32_acc) {
    kiln_op op = n->op;
    bool logic = op == KILN_OP_ALL || op == KILN_OP_ANY, fl = is_f(n->in[0]->type->dtype) && !logic;
    bool wide = !fl && (op == KILN_OP_SUM || op == KILN_OP_PROD);
    gx v = gen_var_x(n->in[0]);
    memset(r, 0, sizeof *r);
    r->op = op;
    bool f32 = fl && f32_acc && n->in[0]->type->dtype != KILN_F64;
    r->acc_t = f32 ? "float" : fl ? "double" : wide ? "uint64_t" : "int64_t";
    r->elem = logic ? gxf("(int64_t)(%s != 0)", v.s) : gxf("(%s)%s", r->acc_t, v.s);
    r->value_dt = f32 ? KILN_F32 : fl ? KILN_F64 : KILN_I64;
    r->value = gxf(wide ? "(int64_t)a" : "a");
    const char *cmp = op == KILN_OP_MAX ? ">" : "<";
    switch (op) {
    case KILN_OP_SUM: r->ident = "0", r->simd = "reduction(+:a)", r->fold = gxf("a + x_"); break;
    case KILN_OP_PROD: r->ident = "1", r->simd = "reduction(*:a)", r->fold = gxf("a * x_"); break;
    case KILN_OP_ALL: r->ident = "1", r->simd = "reduction(&:a)", r->fold = gxf("a & x_"); break;
    case KILN_OP_ANY: r->ident = "0", r->simd = "reduction(|:a)", r->fold = gxf("a | x_"); break;
    default:
        r->ident = fl ? (op == KILN_OP_MAX ? "-INFINITY" : "INFINITY") : (op == KILN_OP_MAX ? "INT64_MIN" : "INT64_MAX");
        r->simd = op == KILN_OP_MAX ? "reduction(max:a)" : "reduction(min:a)";
        r->nan_flag = fl;
        r->fold = gxf("x_ %s a%s ? x_ : a", cmp, fl ? " || x_ != x_" : ""); /* NaN wins, as the reference */
        break;
    }
}

/* ---- params, offsets, values --------------------------------------------------------------- */
int gen_slot(gen_out *o, int64_t v) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 32;
        int64_t *nv = realloc(o->v, sizeof *nv * (size_t)cap);
        if (!nv) {
            o->oom = true;
            return 0;
        }
        o->v = nv, o->cap = cap;
    }
    o->v[o->n] = v;
    return o->n++;
}

void gen_emit_header(const gen_plan *p, gen_out *o, const gen_target *t) {
    kiln_buf *b = &o->b;
    const kiln_function *f = p->f;
    for (int i = 0; i < f->n_params; i++)
        if (p->param_op[0][i] >= 0 || (p->red && p->param_op[1][i] >= 0)) {
            const char *st = gen_store_t(f->params[i]->type->dtype);
            kiln_buf_printf(b, "const %s *%s p%d = (const %s *)%s[%d];\n", st, t->restrict_kw, i, st, t->bufs, i);
        }
    for (int k = 0; k < p->n_op; k++)
        if (p->op[k].out) {
            const char *st = gen_store_t(p->op[k].dt);
            kiln_buf_printf(b, "%s *%s p%d = (%s *)%s[%d];\n", st, t->restrict_kw, p->op[k].buf, st, t->bufs, p->op[k].buf);
        }
    for (int d = 0; d < p->nd; d++)
        kiln_buf_printf(b, "const %s n%d = %s[%d];\n", t->idx, d, t->params, gen_slot(o, p->dim[d]));
    for (int k = 0; k < p->n_op; k++)
        for (int d = 0; d < p->nd && !p->op[k].zero; d++)
            if (p->op[k].st[d] != 0)
                kiln_buf_printf(b, "const %s s%d_%d = %s[%d];\n", t->idx, k, d, t->params, gen_slot(o, p->op[k].st[d]));
}

void gen_emit_offsets(const gen_plan *p, kiln_buf *b, const gen_target *t, const char *pre, const char *from, int only_ctx) {
    for (int k = 0; k < p->n_op; k++) {
        if (p->op[k].zero || (only_ctx >= 0 && p->op[k].ctx != only_ctx)) continue;
        if (from) kiln_buf_printf(b, "%s %s%d = %s%d;\n", t->idx, pre, k, from, k);
        else kiln_buf_printf(b, "%s %s%d = 0;\n", t->idx, pre, k);
    }
}

/* The outermost dim of the kind needs no division: the flat index is below the product. */
void gen_emit_decode(const gen_plan *p, kiln_buf *b, const gen_target *t, const char *flat, int upto, bool red,
                     const char *pre, int only_ctx) {
    int first = upto;
    for (int d = upto - 1; d >= 0; d--)
        if (p->red_dim[d] == red) first = d;
    kiln_buf_printf(b, "{ %s rem_ = %s;\n", t->idx, flat);
    for (int d = upto - 1; d >= 0; d--) {
        if (p->red_dim[d] != red) continue;
        if (d == first) kiln_buf_printf(b, "{ const %s i_ = rem_;\n", t->idx);
        else kiln_buf_printf(b, "{ const %s i_ = rem_ %% n%d; rem_ /= n%d;\n", t->idx, d, d);
        for (int k = 0; k < p->n_op; k++)
            if (!p->op[k].zero && (only_ctx < 0 || p->op[k].ctx == only_ctx) && p->op[k].st[d] != 0)
                kiln_buf_printf(b, "%s%d += i_ * s%d_%d;\n", pre, k, k, d);
        kiln_buf_puts(b, "}\n");
    }
    kiln_buf_puts(b, "}\n");
}

int64_t gen_numel_dims(const gen_plan *p, int from, int to, bool red) {
    int64_t n = 1;
    for (int d = from; d < to; d++)
        if (p->red_dim[d] == red) n *= p->dim[d];
    return n;
}

void gen_emit_values(const gen_plan *p, kiln_buf *b, int c, gen_elem_fn elem, const void *arg, const gen_red *r) {
    const kiln_function *f = p->f;
    for (int i = 0; i < f->n_params; i++) {
        int k = p->param_op[c][i];
        if (k < 0) continue;
        gx el = elem(p, k, arg), ld = gen_load_x(p->op[k].dt, el.s);
        kiln_buf_printf(b, "const %s v%d = %s;\n", gen_math_t(p->op[k].dt), f->params[i]->id, ld.s);
    }
    for (const kiln_node *n = f->body->first; n; n = n->next) {
        if (!p->need[c][n->out->id]) continue;
        if (n == p->red) {
            kiln_dtype od = n->out->type->dtype;
            gx v = gen_conv_x(r->value.s, r->value_dt, od);
            kiln_buf_printf(b, "const %s v%d = %s;\n", gen_math_t(od), n->out->id, v.s);
        } else {
            emit_node(b, n);
        }
    }
}

void gen_emit_stores(const gen_plan *p, kiln_buf *b, gen_elem_fn elem, const void *arg) {
    const kiln_region *body = p->f->body;
    for (int k = 0; k < p->n_op; k++) {
        if (!p->op[k].out) continue;
        int i = p->op[k].buf - p->f->n_params;
        gx el = elem(p, k, arg), v = gen_var_x(body->results[i]), st = gen_store_x(p->op[k].dt, v.s);
        kiln_buf_printf(b, "%s = %s;\n", el.s, st.s);
    }
}

/* FNV-1a, 64 bits. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

kiln_status gen_finish(kiln_context *ctx, const kiln_function *group, gen_out *o, const char *prefix, kiln_gen_kernel *out) {
    char *text = kiln_buf_take(&o->b);
    if (!text || o->oom) {
        free(text);
        free(o->v);
        return kiln_error(ctx, KILN_ERR_OOM, "kernel @%s: out of memory", group->name);
    }
    snprintf(out->symbol, sizeof out->symbol, "%s%016llx", prefix, (unsigned long long)hash_str(text));
    kiln_buf fb = {0}; /* every @SYM@ becomes the symbol */
    const char *from = text;
    for (const char *at; (at = strstr(from, "@SYM@")); from = at + 5)
        kiln_buf_printf(&fb, "%.*s%s", (int)(at - from), from, out->symbol);
    kiln_buf_puts(&fb, from);
    free(text);
    out->source = kiln_buf_take(&fb);
    out->params = o->v;
    out->n_params = o->n;
    if (!out->source) {
        kiln_gen_kernel_free(out);
        return kiln_error(ctx, KILN_ERR_OOM, "kernel @%s: out of memory", group->name);
    }
    return KILN_OK;
}
