/* test_grad_layout.c — gradient rules of the indexing and layout ops (concatenate ... topk)
 * against finite differences, over axes (negative too), strides, modes and repeated indices;
 * the backward primitives of src/ops/index_grad.c against hand-computed values and errors. */
#include "test.h"

/* GRADCHECK of @f(params) computing `body` (ops ending in a value %y) times a weight %w,
 * summed, so the adjoint reaching the op is not uniform. */
static void weighted(const char *params, const char *body) {
    char text[1024];
    snprintf(text, sizeof text, "def @f(%s) { %s let %%z = multiply(%%y, %%w) let %%s = sum(%%z) return %%s }", params, body);
    GRADCHECK(text, 0.0);
}

TEST(grad_concatenate_split) {
    weighted("%x: f64[2, 3], %u: f64[2, 2], %w: f64[2, 5]", "let %y = concatenate(%x, %u, axis=-1)");
    weighted("%x: f64[1, 3], %u: f64[2, 3], %v: f64[3, 3], %w: f64[7, 3]", "let %y = concatenate(%x, %u, %v, %x)");
    /* a part left unused gets a zero adjoint; a part used twice adds up */
    GRADCHECK("def @f(%x: f64[2, 6], %w: f64[2, 2]) { let %t = split(%x, sections=3, axis=1) let %a = get(%t, index=0) "
              "let %b = get(%t, index=2) let %c = multiply(%a, %w) let %d = multiply(%b, %b) let %e = add(%c, %d) "
              "let %f = multiply(%e, %a) let %s = sum(%f) return %s }", 0.0);
    GRADCHECK("def @f(%x: f64[5, 2], %w: f64[3, 2]) { let %t = split(%x, sizes=[2, 0, 3], axis=-2) let %a = get(%t, index=2) "
              "let %c = multiply(%a, %w) let %s = sum(%c) return %s }", 0.0);
}

TEST(grad_strided_slice) {
    static const char *attrs[] = {
        "begin=[1, 0], end=[3, 5]",
        "begin=[0, 4], end=[4, 0], strides=[2, -1]",
        "begin=[-1], end=[-5], strides=[-2], axes=[-1]",
        "begin=[3, -2], end=[-10, 100], strides=[-1, 1]",
        "begin=[0], end=[5], strides=[3], axes=[1]",
    };
    static const char *shapes[] = {"2, 5", "2, 4", "4, 2", "4, 2", "4, 2"};
    for (size_t i = 0; i < KILN_COUNTOF(attrs); i++) {
        char params[128], body[256];
        snprintf(params, sizeof params, "%%x: f64[4, 5], %%w: f64[%s]", shapes[i]);
        snprintf(body, sizeof body, "let %%y = strided_slice(%%x, %s)", attrs[i]);
        weighted(params, body);
    }
}

TEST(grad_take_and_embedding) {
    weighted("%x: f64[3, 4], %w: f64[3, 5]",
                       "let %i = constant(value=i64[5]{1, 3, 1, -1, 0}) let %y = take(%x, %i, axis=-1)");
    weighted("%x: f64[3, 4], %w: f64[2, 2, 4]",
                       "let %i = constant(value=i64[2, 2]{2, 0, 2, 2}) let %y = take(%x, %i, axis=0)");
    weighted("%x: f64[2, 3, 2], %w: f64[2, 4, 2]",
                       "let %i = constant(value=i64[4]{-7, 5, 1, 9}) let %y = take(%x, %i, axis=-2, mode=\"clip\")");
    weighted("%x: f64[2, 3, 2], %w: f64[2, 4, 2]",
                       "let %i = constant(value=i64[4]{-7, 5, 1, 9}) let %y = take(%x, %i, axis=1, mode=\"wrap\")");
    weighted("%x: f64[2, 3], %w: f64[2, 3]",
                       "let %i = constant(value=i64[2, 3]{5, 0, -6, 5, 2, 2}) let %y = take(%x, %i)");
    weighted("%x: f64[3], %w: f64[]", "let %y = take(%x, 2, axis=0)");
    /* embedding is a composite: its decomposition (take) is differentiated */
    weighted("%x: f64[5, 3], %w: f64[2, 3, 3]",
                       "let %i = constant(value=i32[2, 3]{4, 0, 4, 1, 1, 4}) let %y = embedding(%x, %i)");
}

TEST(grad_gather_gather_nd_scatter) {
    weighted("%x: f64[3, 4], %w: f64[2, 3]",
                       "let %i = constant(value=i64[2, 3]{0, 3, 3, -1, 0, 0}) let %y = gather(%x, %i, axis=-1)");
    weighted("%x: f64[3, 4], %w: f64[2, 4]",
                       "let %i = constant(value=i64[2, 4]{2, 2, 0, 1, 2, 0, 0, 2}) let %y = gather(%x, %i, axis=0)");
    weighted("%x: f64[3, 4, 2], %w: f64[3, 2]",
                       "let %i = constant(value=i64[3, 2]{2, 3, 0, 0, 2, 3}) let %y = gather_nd(%x, %i)");
    weighted("%x: f64[3, 4], %w: f64[4, 4]",
                       "let %i = constant(value=i64[4, 1]{2, 0, 2, -1}) let %y = gather_nd(%x, %i)");
    weighted("%x: f64[2, 3, 2], %w: f64[2, 2, 2]",
                       "let %i = constant(value=i64[2, 2, 1]{1, 1, 0, 2}) let %y = gather_nd(%x, %i, batch_dims=1)");
    weighted("%x: f64[2, 3, 2], %w: f64[2, 3]",
                       "let %i = constant(value=i64[2, 3, 2]{1, 1, 0, 0, 2, 1, 0, 1, 0, 1, 1, 0}) let %y = gather_nd(%x, %i, batch_dims=1)");
    /* scatter (overwrite, distinct positions; src larger than the indices) and scatter-add
     * (repeated positions) */
    weighted("%x: f64[3, 4], %u: f64[3, 3], %w: f64[3, 4]",
                       "let %i = constant(value=i64[2, 2]{3, 0, 1, -2}) let %y = scatter(%x, %i, %u, axis=1)");
    weighted("%x: f64[3, 4], %u: f64[2, 4], %w: f64[3, 4]",
                       "let %i = constant(value=i64[2, 3]{2, 2, 0, 2, 1, 0}) let %y = scatter(%x, %i, %u, axis=0, reduce=\"add\")");
}

TEST(grad_pad_all_modes) {
    static const char *modes[] = {"constant", "reflect", "edge"};
    for (size_t i = 0; i < KILN_COUNTOF(modes); i++) {
        char body[256];
        snprintf(body, sizeof body, "let %%y = pad(%%x, pad_width=[2, 1, 0, 3], mode=\"%s\", value=0.5)", modes[i]);
        weighted("%x: f64[3, 4], %w: f64[6, 7]", body);
        snprintf(body, sizeof body, "let %%y = pad(%%x, pad_width=[0, 0, 2, 0, 1, 0], mode=\"%s\")", modes[i]);
        weighted("%x: f64[2, 3, 2], %w: f64[2, 5, 3]", body);
    }
}

TEST(grad_repeat_tile_reverse) {
    weighted("%x: f64[2, 3], %w: f64[2, 9]", "let %y = repeat(%x, repeats=3, axis=-1)");
    weighted("%x: f64[2, 3], %w: f64[4, 3]", "let %y = repeat(%x, repeats=2, axis=0)");
    weighted("%x: f64[2, 3], %w: f64[12]", "let %y = repeat(%x, repeats=2)");
    weighted("%x: f64[2, 3], %w: f64[2, 4, 3]", "let %y = tile(%x, reps=[2, 2, 1])");
    weighted("%x: f64[2, 1, 3], %w: f64[2, 2, 6]", "let %y = tile(%x, reps=[2, 2])");
    weighted("%x: f64[2, 3, 2], %w: f64[2, 3, 2]", "let %y = reverse(%x, axes=[0, -1])");
}

TEST(grad_resize2d_modes) {
    static const char *attrs[] = {
        "size=[5, 7], mode=\"nearest\"",
        "size=[2, 2], mode=\"nearest\"",
        "size=[5, 7], mode=\"bilinear\"",
        "size=[5, 7], mode=\"bilinear\", align_corners=true",
        "size=[2, 1], mode=\"bilinear\"",
        "size=[2, 1], mode=\"bilinear\", align_corners=true",
    };
    static const char *shapes[] = {"5, 7", "2, 2", "5, 7", "5, 7", "2, 1", "2, 1"};
    for (size_t i = 0; i < KILN_COUNTOF(attrs); i++) {
        char params[128], body[256];
        snprintf(params, sizeof params, "%%x: f64[2, 1, 3, 4], %%w: f64[2, 1, %s]", shapes[i]);
        snprintf(body, sizeof body, "let %%y = resize2d(%%x, %s)", attrs[i]);
        weighted(params, body);
    }
}

TEST(grad_sort_topk) {
    weighted("%x: f64[3, 4], %w: f64[3, 4]", "let %y = sort(%x)");
    weighted("%x: f64[3, 4], %w: f64[3, 4]", "let %y = sort(%x, axis=0, descending=true)");
    weighted("%x: f64[3, 5], %w: f64[3, 2]", "let %t = topk(%x, k=2) let %y = get(%t, index=0)");
    weighted("%x: f64[4, 3], %w: f64[3, 3]", "let %t = topk(%x, k=3, axis=-2, largest=false) let %y = get(%t, index=0)");
}

/* ---- the backward primitives on hand-computed values --------------------------------------- */
/* Runs op on inputs and checks the result; releases inputs and result. */
static void expect(kiln_context *ctx, const char *op, int n, kiln_value *in, const char *attrs, kiln_dtype dt,
                   const char *shape, const double *want) {
    kiln_value out = run_op(ctx, op, n, in, attrs);
    CHECK_TENSOR(out, dt, shape, want, 1e-6);
    kiln_value_release(out);
    release_all(n, in);
}

TEST(backward_primitives_values) {
    kiln_context *ctx = kiln_context_new();
    /* take along axis 1 of a [2, 3] input with indices [2, 2, 0]: columns 2 and 0 collect */
    expect(ctx, "take_backward", 2,
           (kiln_value[]){tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6}), tv(ctx, KILN_I64, "3", (double[]){2, -1, 0})},
           "axis=1, shape=[2, 3]", KILN_F32, "2,3", (double[]){3, 0, 3, 6, 0, 9});
    expect(ctx, "take_backward", 2, (kiln_value[]){tv(ctx, KILN_F64, "3", (double[]){1, 2, 4}), tv(ctx, KILN_I64, "3", (double[]){7, -1, 3})},
           "mode=\"wrap\", shape=[2, 2]", KILN_F64, "2,2", (double[]){0, 0, 0, 7});
    /* gather_nd of rows [1, 1, 0] of a [2, 2] input */
    expect(ctx, "gather_nd_backward", 2,
           (kiln_value[]){tv(ctx, KILN_BF16, "3,2", (double[]){1, 2, 3, 4, 5, 6}), tv(ctx, KILN_I32, "3,1", (double[]){1, 1, 0})},
           "shape=[2, 2]", KILN_BF16, "2,2", (double[]){5, 6, 4, 6});
    /* strided_slice [::-2] of 5 elements: elements 4, 2, 0 */
    expect(ctx, "strided_slice_backward", 1, (kiln_value[]){tv(ctx, KILN_F16, "3", (double[]){1, 2, 3})},
           "begin=[-1], end=[-6], strides=[-2], shape=[5]", KILN_F16, "5", (double[]){3, 0, 2, 0, 1});
    /* pad [1, 2] of [a, b, c]: reflect [b | a b c | b a], edge [a | a b c | c c], constant */
    expect(ctx, "pad_backward", 1, (kiln_value[]){tv(ctx, KILN_F32, "6", (double[]){1, 2, 4, 8, 16, 32})},
           "pad_width=[1, 2], mode=\"reflect\", shape=[3]", KILN_F32, "3", (double[]){34, 21, 8});
    expect(ctx, "pad_backward", 1, (kiln_value[]){tv(ctx, KILN_F32, "6", (double[]){1, 2, 4, 8, 16, 32})},
           "pad_width=[1, 2], mode=\"edge\", shape=[3]", KILN_F32, "3", (double[]){3, 4, 56});
    expect(ctx, "pad_backward", 1, (kiln_value[]){tv(ctx, KILN_F32, "6", (double[]){1, 2, 4, 8, 16, 32})},
           "pad_width=[1, 2], value=3.0, shape=[3]", KILN_F32, "3", (double[]){2, 4, 8});
    /* resize2d [1, 1, 1, 2] -> [1, 1, 1, 4]: nearest reads 0 0 1 1; bilinear (half-pixel) taps
     * 0 | 0.75 0.25 | 0.25 0.75 | 1, align_corners 0 | 2/3 1/3 | 1/3 2/3 | 1 */
    expect(ctx, "resize2d_backward", 1, (kiln_value[]){tv(ctx, KILN_F32, "1,1,1,4", (double[]){1, 2, 4, 8})},
           "size=[1, 4], shape=[1, 1, 1, 2]", KILN_F32, "1,1,1,2", (double[]){3, 12});
    expect(ctx, "resize2d_backward", 1, (kiln_value[]){tv(ctx, KILN_F64, "1,1,1,4", (double[]){1, 2, 4, 8})},
           "size=[1, 4], mode=\"bilinear\", shape=[1, 1, 1, 2]", KILN_F64, "1,1,1,2", (double[]){1 + 1.5 + 1, 0.5 + 3 + 8});
    expect(ctx, "resize2d_backward", 1, (kiln_value[]){tv(ctx, KILN_F64, "1,1,1,4", (double[]){1, 2, 4, 8})},
           "size=[1, 4], mode=\"bilinear\", align_corners=true, shape=[1, 1, 1, 2]", KILN_F64, "1,1,1,2",
           (double[]){1 + 4.0 / 3 + 4.0 / 3, 2.0 / 3 + 8.0 / 3 + 8});
    kiln_context_free(ctx);
}

TEST(backward_primitives_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value dy = tv(ctx, KILN_F32, "3", (double[]){1, 2, 3}), ind = tv(ctx, KILN_I64, "2", (double[]){0, 5});
    kiln_value idy = tv(ctx, KILN_I32, "3", NULL), dy2 = tv(ctx, KILN_F32, "2", NULL), out = {.kind = KILN_VALUE_NONE};
    CHECK_ERR(ctx, kiln_op_run(ctx, "take_backward", 2, (kiln_value[]){dy, ind}, "shape=[4]", &out), KILN_ERR_TYPE,
              "dy f32[3] is not the take result f32[2] of an input of shape [4]");
    CHECK_ERR(ctx, kiln_op_run(ctx, "take_backward", 2, (kiln_value[]){dy, dy}, "shape=[4]", &out), KILN_ERR_TYPE,
              "must be an int tensor");
    CHECK_ERR(ctx, kiln_op_run(ctx, "pad_backward", 1, &dy, "pad_width=[1, 1], shape=[-1]", &out), KILN_ERR_TYPE,
              "input shape [-1] has a negative dim");
    CHECK_ERR(ctx, kiln_op_run(ctx, "strided_slice_backward", 1, &idy, "begin=[0], end=[3], shape=[3]", &out), KILN_ERR_TYPE,
              "strided_slice_backward");
    CHECK_ERR(ctx, kiln_op_run(ctx, "take_backward", 2, (kiln_value[]){dy2, ind}, "shape=[4]", &out),
              KILN_ERR_VALUE, "index 5 is out of range");
    release_all(4, (kiln_value[]){dy, ind, idy, dy2});
    kiln_context_free(ctx);
}
