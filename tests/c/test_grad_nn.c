/* test_grad_nn.c — gradients of conv2d, conv2d_transpose, the 2-D pools, nll_loss and
 * cross_entropy by finite differences, and their backward primitives (conv2d_backward_weight,
 * *_pool2d_backward) against hand-computed values and on bad operands. */
#include "test.h"

/* Runs a backward primitive eagerly on n inputs (released here) and checks the result. */
#define CHECK_BACKWARD(ctx, op, n, in, attrs, dt, shape, want)                                      \
    do {                                                                                            \
        kiln_value r_ = run_op((ctx), (op), (n), (in), (attrs));                                    \
        CHECK_TENSOR(r_, (dt), (shape), (want), 1e-6);                                              \
        kiln_value_release(r_);                                                                     \
        release_all((n), (in));                                                                     \
    } while (0)

/* A backward primitive that must fail type inference with a message containing sub. */
#define CHECK_BACKWARD_ERR(ctx, op, n, in, attrs, sub)                                              \
    do {                                                                                            \
        kiln_value r_ = {0};                                                                        \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), (n), (in), (attrs), &r_), KILN_ERR_TYPE, (sub));  \
        kiln_value_release(r_);                                                                     \
        release_all((n), (in));                                                                     \
    } while (0)

TEST(grad_nn_pool_backward_values) {
    kiln_context *ctx = kiln_context_new();
    /* 2x2 windows, stride 1 over [[1, 5, 2], [3, 4, 9], [0, 6, 7]]: maxima at (0,1), (1,2), (2,1), (1,2) */
    static const double x33[] = {1, 5, 2, 3, 4, 9, 0, 6, 7}, dy4[] = {1, 2, 3, 4};
    kiln_value in[2] = {tv(ctx, KILN_F32, "1,1,3,3", x33), tv(ctx, KILN_F32, "1,1,2,2", dy4)};
    CHECK_BACKWARD(ctx, "max_pool2d_backward", 2, in, "kernel=[2, 2], stride=[1, 1]", KILN_F32, "1,1,3,3",
                   ((double[]){0, 1, 0, 0, 0, 6, 0, 3, 0}));
    /* ties go to the first maximum in row-major order; f16 computes in f32 */
    in[0] = tv(ctx, KILN_F16, "1,1,2,2", (double[]){1, 1, 1, 1}), in[1] = tv(ctx, KILN_F16, "1,1,1,1", (double[]){2.5});
    CHECK_BACKWARD(ctx, "max_pool2d_backward", 2, in, "kernel=[2, 2]", KILN_F16, "1,1,2,2", ((double[]){2.5, 0, 0, 0}));
    /* avg 2x2 stride 1: each input gets the sum of the dy of the windows holding it, over 4 */
    in[0] = tv(ctx, KILN_F64, "1,1,2,2", dy4);
    CHECK_BACKWARD(ctx, "avg_pool2d_backward", 1, in, "kernel=[2, 2], stride=[1, 1], input_size=[3, 3]", KILN_F64, "1,1,3,3",
                   ((double[]){0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1}));
    /* padding 1, stride 2: every window holds one input element and three padding taps */
    in[0] = tv(ctx, KILN_F32, "1,1,2,2", dy4);
    CHECK_BACKWARD(ctx, "avg_pool2d_backward", 1, in, "kernel=[2, 2], padding=[1, 1], input_size=[2, 2]", KILN_F32,
                   "1,1,2,2", ((double[]){0.25, 0.5, 0.75, 1}));
    in[0] = tv(ctx, KILN_F32, "1,1,2,2", dy4);
    CHECK_BACKWARD(ctx, "avg_pool2d_backward", 1, in, "kernel=[2, 2], padding=[1, 1], count_include_pad=false, input_size=[2, 2]",
                   KILN_F32, "1,1,2,2", dy4);
    /* adaptive 5 -> 3 along W: windows {0, 1}, {1, 2, 3}, {3, 4} */
    in[0] = tv(ctx, KILN_F32, "1,1,1,3", (double[]){1, 2, 3});
    CHECK_BACKWARD(ctx, "adaptive_avg_pool2d_backward", 1, in, "output_size=[1, 3], input_size=[1, 5]", KILN_F32, "1,1,1,5",
                   ((double[]){0.5, 0.5 + 2.0 / 3, 2.0 / 3, 2.0 / 3 + 1.5, 1.5}));
    in[0] = tv(ctx, KILN_BF16, "1,1,1,5", (double[]){3, 1, 4, 1, 5}), in[1] = tv(ctx, KILN_BF16, "1,1,1,3", (double[]){1, 2, 3});
    CHECK_BACKWARD(ctx, "adaptive_max_pool2d_backward", 2, in, "output_size=[1, 3]", KILN_BF16, "1,1,1,5",
                   ((double[]){1, 0, 2, 0, 3}));
    kiln_context_free(ctx);
}

TEST(grad_nn_conv_backward_weight_values) {
    kiln_context *ctx = kiln_context_new();
    /* dy = [[1, 0], [0, 1]]: dw[ki, kj] = x[ki, kj] + x[1 + ki, 1 + kj] */
    kiln_value in[2] = {tv(ctx, KILN_F32, "1,1,3,3", (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9}),
                        tv(ctx, KILN_F32, "1,1,2,2", (double[]){1, 0, 0, 1})};
    CHECK_BACKWARD(ctx, "conv2d_backward_weight", 2, in, "kernel=[2, 2]", KILN_F32, "1,1,2,2", ((double[]){6, 8, 12, 14}));
    /* padding 1, stride 2 on a 2x2 input gives a 2x2 dy; tap (ki, kj) of output (i, j) reads
     * x[2i - 1 + ki, 2j - 1 + kj], inside for one output only: (1 - ki, 1 - kj) */
    in[0] = tv(ctx, KILN_F64, "1,1,2,2", (double[]){1, 2, 3, 4}), in[1] = tv(ctx, KILN_F64, "1,1,2,2", (double[]){10, 20, 30, 40});
    CHECK_BACKWARD(ctx, "conv2d_backward_weight", 2, in, "kernel=[2, 2], stride=[2, 2], padding=[1, 1]", KILN_F64, "1,1,2,2",
                   ((double[]){40 * 4, 30 * 3, 20 * 2, 10 * 1}));
    /* groups 2: each output channel sees only its group's input channel */
    in[0] = tv(ctx, KILN_F32, "1,2,1,1", (double[]){2, 3}), in[1] = tv(ctx, KILN_F32, "1,2,1,1", (double[]){5, 7});
    CHECK_BACKWARD(ctx, "conv2d_backward_weight", 2, in, "groups=2, kernel=[1, 1]", KILN_F32, "2,1,1,1", ((double[]){10, 21}));
    kiln_context_free(ctx);
}

TEST(grad_nn_backward_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in[2] = {tv(ctx, KILN_F32, "1,1,3,3", NULL), tv(ctx, KILN_F32, "1,1,3,3", NULL)};
    CHECK_BACKWARD_ERR(ctx, "max_pool2d_backward", 2, in, "kernel=[2, 2], stride=[1, 1]",
                       "dy is f32[1, 1, 3, 3], but max_pool2d of input f32[1, 1, 3, 3] gives f32[1, 1, 2, 2]");
    in[0] = tv(ctx, KILN_F32, "1,1,3,3", NULL), in[1] = tv(ctx, KILN_F64, "1,1,2,2", NULL);
    CHECK_BACKWARD_ERR(ctx, "max_pool2d_backward", 2, in, "kernel=[2, 2], stride=[1, 1]", "expected a 4-D f32 tensor");
    in[0] = tv(ctx, KILN_F32, "1,1,2,2", NULL);
    CHECK_BACKWARD_ERR(ctx, "avg_pool2d_backward", 1, in, "kernel=[3, 3], input_size=[2, 2]", "checking the operands of avg_pool2d_backward");
    in[0] = tv(ctx, KILN_F32, "1,1,2,2", NULL);
    CHECK_BACKWARD_ERR(ctx, "adaptive_avg_pool2d_backward", 1, in, "output_size=[2, 2], input_size=[0, 2]", "input_size must be 2 ints >= 1");
    in[0] = tv(ctx, KILN_F32, "1,2,4,4", NULL), in[1] = tv(ctx, KILN_F32, "1,3,4,4", NULL);
    CHECK_BACKWARD_ERR(ctx, "conv2d_backward_weight", 2, in, "kernel=[3, 3]",
                       "dy f32[1, 3, 4, 4] does not fit conv2d's output f32[1, 3, 2, 2]");
    in[0] = tv(ctx, KILN_F32, "1,3,4,4", NULL), in[1] = tv(ctx, KILN_F32, "1,2,2,2", NULL);
    CHECK_BACKWARD_ERR(ctx, "conv2d_backward_weight", 2, in, "kernel=[3, 3], groups=2", "groups=2 must be >= 1 and divide");
    in[0] = tv(ctx, KILN_F32, "3,4,4", NULL), in[1] = tv(ctx, KILN_F32, "1,2,2,2", NULL);
    CHECK_BACKWARD_ERR(ctx, "conv2d_backward_weight", 2, in, "kernel=[3, 3]", "input is f32[3, 4, 4], expected a 4-D float tensor");
    kiln_context_free(ctx);
}

TEST(grad_nn_conv2d) {
    GRADCHECK("def @f(%x: f64[1, 2, 5, 5], %w: f64[3, 2, 3, 3]) { let %y = conv2d(%x, %w, padding=[1, 1]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    /* stride 2 with 4-int padding: the forward drops rows, so dx needs output_padding */
    GRADCHECK("def @f(%x: f64[2, 2, 6, 7], %w: f64[2, 2, 3, 2]) { let %y = conv2d(%x, %w, stride=[2, 2], padding=[1, 0, 2, 1]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[1, 2, 7, 6], %w: f64[2, 2, 2, 3]) { let %y = conv2d(%x, %w, stride=[1, 2], dilation=[2, 1]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[1, 4, 5, 5], %w: f64[6, 2, 3, 3]) { let %y = conv2d(%x, %w, stride=[2, 2], padding=[1, 1], groups=2) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    /* depthwise, and depthwise with a channel multiplier of 2 */
    GRADCHECK("def @f(%x: f64[2, 3, 5, 5], %w: f64[3, 1, 3, 3]) { let %y = conv2d(%x, %w, padding=[1, 1], groups=3) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[1, 3, 6, 5], %w: f64[6, 1, 2, 2], %v: f64[1, 6, 3, 5]) { let %y = conv2d(%x, %w, stride=[2, 1], "
              "dilation=[1, 2], padding=[0, 1], groups=3) let %z = multiply(%y, %v) let %s = sum(%z) return %s }", -0.5);
}

TEST(grad_nn_conv2d_transpose) {
    GRADCHECK("def @f(%x: f64[1, 2, 3, 3], %w: f64[2, 3, 3, 3]) { let %y = conv2d_transpose(%x, %w, stride=[2, 2], "
              "padding=[1, 1], output_padding=[1, 1]) let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[2, 4, 3, 2], %w: f64[4, 1, 2, 2]) { let %y = conv2d_transpose(%x, %w, stride=[2, 3], groups=2) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[1, 2, 4, 3], %w: f64[2, 2, 3, 2]) { let %y = conv2d_transpose(%x, %w, dilation=[2, 1], "
              "padding=[1, 0, 2, 1], stride=[1, 2]) let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    /* output_padding >= stride (allowed as it is < dilation): conv2d of dy sees an extra row */
    GRADCHECK("def @f(%x: f64[1, 2, 3, 3], %w: f64[2, 2, 3, 3]) { let %y = conv2d_transpose(%x, %w, dilation=[2, 2], "
              "output_padding=[1, 1]) let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
}

TEST(grad_nn_max_pools) {
    static const char *attrs[] = {
        "kernel=[2, 2]", "kernel=[3, 3], stride=[2, 2], padding=[1, 1]", "kernel=[2, 3], dilation=[2, 1], stride=[1, 2]",
        "kernel=[2, 2], ceil_mode=true", "kernel=[3, 2], stride=[2, 2], padding=[1, 0, 0, 1], ceil_mode=true"};
    for (size_t i = 0; i < KILN_COUNTOF(attrs); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 2, 5, 7]) { let %%y = max_pool2d(%%x, %s) "
                                    "let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", attrs[i]);
        GRADCHECK(text, -0.5);
    }
    /* overlapping adaptive windows (5 -> 3, 7 -> 4) and an upsampling one (3 -> 4) */
    GRADCHECK("def @f(%x: f64[1, 2, 5, 7]) { let %y = adaptive_max_pool2d(%x, output_size=[3, 4]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[1, 2, 3, 6]) { let %y = adaptive_max_pool2d(%x, output_size=[4, 2]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
}

TEST(grad_nn_avg_pools) {
    static const char *attrs[] = {
        "kernel=[2, 2]", "kernel=[3, 3], stride=[2, 2], padding=[1, 1]",
        "kernel=[3, 3], stride=[2, 2], padding=[1, 1], count_include_pad=false",
        "kernel=[2, 3], stride=[2, 2], ceil_mode=true", "kernel=[3, 2], stride=[2, 1], padding=[1, 0, 0, 1], ceil_mode=true",
        "kernel=[3, 2], stride=[2, 1], padding=[1, 0, 0, 1], ceil_mode=true, count_include_pad=false"};
    for (size_t i = 0; i < KILN_COUNTOF(attrs); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 2, 5, 7]) { let %%y = avg_pool2d(%%x, %s) "
                                    "let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", attrs[i]);
        GRADCHECK(text, -0.5);
    }
    GRADCHECK("def @f(%x: f64[1, 2, 5, 7]) { let %y = adaptive_avg_pool2d(%x, output_size=[3, 4]) "
              "let %z = multiply(%y, %y) let %s = sum(%z) return %s }", -0.5);
    GRADCHECK("def @f(%x: f64[2, 1, 4, 6], %v: f64[2, 1, 2, 3]) { let %y = adaptive_avg_pool2d(%x, output_size=[2, 3]) "
              "let %z = multiply(%y, %v) let %s = sum(%z) return %s }", -0.5);
}

/* Targets drawn by GRADCHECK are 0 or 1, so ignore_index=1 ignores about half of them. */
TEST(grad_nn_nll_loss) {
    static const char *reds[] = {"none", "sum", "mean"};
    for (size_t i = 0; i < KILN_COUNTOF(reds); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[6, 3], %%t: i64[6]) { let %%y = nll_loss(%%x, %%t, reduction=\"%s\") "
                                    "let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -2.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[8, 3], %%t: i32[8]) { let %%y = nll_loss(%%x, %%t, reduction=\"%s\", "
                                    "ignore_index=1) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -2.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 3, 2, 3], %%t: i64[2, 2, 3]) { let %%y = nll_loss(%%x, %%t, "
                                    "reduction=\"%s\", ignore_index=0) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -2.0);
        snprintf(text, sizeof text, "def @f(%%x: f64[4], %%t: i64[]) { let %%y = nll_loss(%%x, %%t, reduction=\"%s\") "
                                    "let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -2.0);
    }
}

TEST(grad_nn_cross_entropy) {
    static const char *reds[] = {"none", "sum", "mean"};
    for (size_t i = 0; i < KILN_COUNTOF(reds); i++) {
        char text[512];
        snprintf(text, sizeof text, "def @f(%%x: f64[5, 4], %%t: i64[5]) { let %%y = cross_entropy(%%x, %%t, reduction=\"%s\") "
                                    "let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[8, 3], %%t: i64[8]) { let %%y = cross_entropy(%%x, %%t, reduction=\"%s\", "
                                    "label_smoothing=0.1, ignore_index=1) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[2, 3, 2, 2], %%t: i64[2, 2, 2]) { let %%y = cross_entropy(%%x, %%t, "
                                    "reduction=\"%s\", label_smoothing=0.2) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, -0.5);
        snprintf(text, sizeof text, "def @f(%%x: f64[3, 4], %%p: f64[3, 4]) { let %%y = cross_entropy(%%x, %%p, reduction=\"%s\", "
                                    "label_smoothing=0.1) let %%z = multiply(%%y, %%y) let %%s = sum(%%z) return %%s }", reds[i]);
        GRADCHECK(text, 0.0);
    }
}
