/* render.h — internal: what the C (render_c.c) and CUDA (render_cuda.c) renderers share: the
 * per-element expressions of every op, dtype loads / stores / conversions, the reduction's
 * accumulator, the params of a plan, index decoding, and the preamble's target-neutral part. */
#ifndef KILN_CODEGEN_RENDER_H
#define KILN_CODEGEN_RENDER_H

#include "codegen/lower.h"

/* An expression; kernels never nest deeply (operands get their own locals). */
typedef struct gx {
    char s[512];
} gx;

gx gxf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The part of the preamble both targets share: bf16 conversions, integer helpers (wrapping as
 * the reference), float mod / floor_divide, 16-bit rounding, sigmoid. Written with KG_FN (the
 * target's `static inline`) over kg_bits / kg_float (float bits), kg_ld_f16 / kg_st_f16 and
 * kg_expf, which the target's part defines first, and the C names int64_t, INT64_MAX, isnan. */
extern const char GEN_PREAMBLE_COMMON[];

/* The C type a dtype computes in (16-bit floats in float, ints and bool in int64) and is stored as. */
const char *gen_math_t(kiln_dtype dt);
const char *gen_store_t(kiln_dtype dt);
/* Element x (stored as dt) as its math value; a math value as dt's storage. */
gx gen_load_x(kiln_dtype dt, const char *x);
gx gen_store_x(kiln_dtype dt, const char *e);
/* The value kiln_convert gives converting e (a math value of sd) to cd, as cd's math value. */
gx gen_conv_x(const char *e, kiln_dtype sd, kiln_dtype cd);
/* A var's math value: a literal inline, else its local v<id>. */
gx gen_var_x(const kiln_var *v);

/* The reduction. Accumulator: double for float inputs (float on request, for f32 / f16 / bf16),
 * uint64 for integer sums and products (wrapping), int64 otherwise; all / any keep 0 / 1.
 * `x_` is the element (or another partial accumulator: fold also combines partials). */
typedef struct gen_red {
    kiln_op op;
    const char *acc_t, *ident, *simd;
    gx elem, fold, value; /* element as acc_t; a folded with x_; a as value_dt's math value */
    kiln_dtype value_dt;
    bool nan_flag;        /* float max / min: NaN wins (a simd loop tracks it apart) */
} gen_red;
void gen_red_init(gen_red *r, const kiln_node *n, bool f32_acc);

/* The source and params being rendered. */
typedef struct gen_out {
    kiln_buf b;
    int n, cap;
    int64_t *v;
    bool oom;
} gen_out;
/* Appends an integer to params; returns its index. */
int gen_slot(gen_out *o, int64_t v);

/* How a target spells the kernel's inputs: `restrict`, the bufs and params arrays, and the
 * integer type of sizes, strides and offsets (idx). */
typedef struct gen_target {
    const char *restrict_kw, *bufs, *params, *idx;
} gen_target;

/* Declares the pointers p<buf> of the used params and of the results, then the sizes n<d> and
 * nonzero strides s<k>_<d> of the plan as params. */
void gen_emit_header(const gen_plan *p, gen_out *o, const gen_target *t);
/* Declares offsets <pre><k> of the operands (of space only_ctx when >= 0; none that are
 * `zero`), starting at <from><k> (or at 0). */
void gen_emit_offsets(const gen_plan *p, kiln_buf *b, const gen_target *t, const char *pre, const char *from, int only_ctx);
/* Emits the decoding of flat index `flat` over the dims below `upto` that are reduced (red) or
 * kept (!red), innermost first: operand k's offset <pre><k> moves by index * stride (only
 * operands of space `only_ctx` when it is >= 0). */
void gen_emit_decode(const gen_plan *p, kiln_buf *b, const gen_target *t, const char *flat, int upto, bool red,
                     const char *pre, int only_ctx);
int64_t gen_numel_dims(const gen_plan *p, int from, int to, bool red);

/* The storage lvalue of operand k's current element, as the loop at hand addresses it. */
typedef gx (*gen_elem_fn)(const gen_plan *p, int k, const void *arg);
/* Emits the values of space c: loads of its params, then its nodes in order; the reduction
 * (space 1) is r's value. */
void gen_emit_values(const gen_plan *p, kiln_buf *b, int c, gen_elem_fn elem, const void *arg, const gen_red *r);
/* Emits the stores of every result. */
void gen_emit_stores(const gen_plan *p, kiln_buf *b, gen_elem_fn elem, const void *arg);

/* Names the rendered text (with @SYM@ where the symbol goes) `<prefix><hash>` and fills out's
 * source, symbol and params (taking o's); an OOM error if any append failed. */
kiln_status gen_finish(kiln_context *ctx, const kiln_function *group, gen_out *o, const char *prefix, kiln_gen_kernel *out);

#endif /* KILN_CODEGEN_RENDER_H */
