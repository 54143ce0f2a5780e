/* test_conv.c — tests of conv2d (stride, both padding forms, dilation, groups, depthwise),
 * conv2d_transpose (output_padding, groups), the composite bias_add and every error path.
 * The oracles are direct convolution loops written here, independent of im2col / col2im. */
#include "test.h"
#include <stdlib.h>

typedef struct conv_case {
    int64_t x[4], w[4];         /* shapes: conv [N,C,H,W] / [O,C/g,kH,kW]; transpose w [C,O/g,kH,kW] */
    int64_t stride[2], pad[4], opad[2], dil[2], groups;
    const char *attrs;          /* the same settings as an attribute string */
} conv_case;

static int64_t numel4(const int64_t *s) { return s[0] * s[1] * s[2] * s[3]; }

/* Direct conv2d: y[n][o][i][j] = sum over c in o's group, ki, kj of x[n][c][i*s-pt+ki*d][...] * w. */
static void direct_conv(const conv_case *k, const double *x, const double *w, double *y, int64_t *ys) {
    int64_t N = k->x[0], C = k->x[1], H = k->x[2], W = k->x[3], O = k->w[0], KH = k->w[2], KW = k->w[3];
    int64_t cg = C / k->groups, og = O / k->groups;
    int64_t OH = (H + k->pad[0] + k->pad[2] - k->dil[0] * (KH - 1) - 1) / k->stride[0] + 1;
    int64_t OW = (W + k->pad[1] + k->pad[3] - k->dil[1] * (KW - 1) - 1) / k->stride[1] + 1;
    ys[0] = N, ys[1] = O, ys[2] = OH, ys[3] = OW;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ki = 0; ki < KH; ki++)
                            for (int64_t kj = 0; kj < KW; kj++) {
                                int64_t h = i * k->stride[0] - k->pad[0] + ki * k->dil[0];
                                int64_t v = j * k->stride[1] - k->pad[1] + kj * k->dil[1];
                                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                                int64_t ci = (o / og) * cg + c;
                                s += x[((n * C + ci) * H + h) * W + v] * w[((o * cg + c) * KH + ki) * KW + kj];
                            }
                    y[((n * O + o) * OH + i) * OW + j] = s;
                }
}

/* Direct transposed conv: every input element scatters x * w into y[i*s-pt+ki*d][...]. */
static void direct_conv_t(const conv_case *k, const double *x, const double *w, double *y, int64_t *ys) {
    int64_t N = k->x[0], C = k->x[1], H = k->x[2], W = k->x[3], og = k->w[1], KH = k->w[2], KW = k->w[3];
    int64_t cg = C / k->groups, O = og * k->groups;
    int64_t OH = (H - 1) * k->stride[0] - k->pad[0] - k->pad[2] + k->dil[0] * (KH - 1) + k->opad[0] + 1;
    int64_t OW = (W - 1) * k->stride[1] - k->pad[1] - k->pad[3] + k->dil[1] * (KW - 1) + k->opad[1] + 1;
    ys[0] = N, ys[1] = O, ys[2] = OH, ys[3] = OW;
    memset(y, 0, sizeof(double) * (size_t)numel4(ys));
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < H; i++)
                for (int64_t j = 0; j < W; j++)
                    for (int64_t oc = 0; oc < og; oc++)
                        for (int64_t ki = 0; ki < KH; ki++)
                            for (int64_t kj = 0; kj < KW; kj++) {
                                int64_t h = i * k->stride[0] - k->pad[0] + ki * k->dil[0];
                                int64_t v = j * k->stride[1] - k->pad[1] + kj * k->dil[1];
                                if (h < 0 || h >= OH || v < 0 || v >= OW) continue;
                                int64_t o = (c / cg) * og + oc;
                                y[((n * O + o) * OH + h) * OW + v] +=
                                    x[((n * C + c) * H + i) * W + j] * w[((c * og + oc) * KH + ki) * KW + kj];
                            }
}

static const char *shape_text(const int64_t *s, char *buf, size_t size) {
    snprintf(buf, size, "%lld,%lld,%lld,%lld", (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3]);
    return buf;
}

/* Runs one case through op in dtype dt and compares with the oracle. */
static void check_case(const char *file, int line, kiln_context *ctx, const char *op, const conv_case *k, kiln_dtype dt,
                       double tol) {
    bool tr = !strcmp(op, "conv2d_transpose");
    int64_t nx = numel4(k->x), nw = numel4(k->w), ys[4];
    double *x = malloc(sizeof(double) * (size_t)nx), *w = malloc(sizeof(double) * (size_t)nw);
    for (int64_t i = 0; i < nx; i++) x[i] = (double)((i * 7 + 3) % 13) / 4 - 1.5;
    for (int64_t i = 0; i < nw; i++) w[i] = (double)((i * 5 + 1) % 9) / 8 - 0.5;
    double *y = malloc(sizeof(double) * 4096);
    (tr ? direct_conv_t : direct_conv)(k, x, w, y, ys);
    char sx[64], sw[64], sy[64];
    kiln_value in[2] = {tv(ctx, dt, shape_text(k->x, sx, sizeof sx), x), tv(ctx, dt, shape_text(k->w, sw, sizeof sw), w)};
    kiln_value r = run_op(ctx, op, 2, in, k->attrs);
    check_tensor(file, line, r, dt, shape_text(ys, sy, sizeof sy), y, tol);
    kiln_value_release(r);
    release_all(2, in);
    free(x);
    free(w);
    free(y);
}
#define CHECK_CASE(ctx, op, k, dt, tol) check_case(__FILE__, __LINE__, ctx, op, k, dt, tol)

/* An op that must fail type checking with a message containing `sub`. */
#define CHECK_OP_ERR(ctx, op, n, in, attrs, sub)                                                \
    do {                                                                                        \
        kiln_value r_ = {.kind = KILN_VALUE_NONE};                                              \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), (n), (in), (attrs), &r_), KILN_ERR_TYPE, (sub)); \
        kiln_value_release(r_);                                                                 \
    } while (0)

TEST(conv2d_hand_checked) {
    kiln_context *ctx = kiln_context_new();
    /* x = [1..9] as 3x3, w = [1 0; 0 -1]: y[i][j] = x[i][j] - x[i+1][j+1] = -4 everywhere */
    kiln_value in[2] = {tv(ctx, KILN_F32, "1,1,3,3", (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9}),
                        tv(ctx, KILN_F32, "1,1,2,2", (double[]){1, 0, 0, -1})};
    kiln_value r = run_op(ctx, "conv2d", 2, in, NULL);
    CHECK_TENSOR(r, KILN_F32, "1,1,2,2", ((double[]){-4, -4, -4, -4}), 0);
    kiln_value_release(r);
    /* padding 1: the corners see one tap each side of the diagonal */
    r = run_op(ctx, "conv2d", 2, in, "padding=[1, 1]");
    CHECK_TENSOR(r, KILN_F32, "1,1,4,4",
                 ((double[]){-1, -2, -3, 0, -4, -4, -4, 3, -7, -4, -4, 6, 0, 7, 8, 9}), 0);
    kiln_value_release(r);
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(conv2d_stride_padding_dilation_groups) {
    kiln_context *ctx = kiln_context_new();
    const conv_case cases[] = {
        {{2, 3, 5, 6}, {4, 3, 3, 3}, {1, 1}, {0, 0, 0, 0}, {0, 0}, {1, 1}, 1, NULL},
        {{2, 3, 7, 6}, {4, 3, 3, 2}, {2, 3}, {0, 0, 0, 0}, {0, 0}, {1, 1}, 1, "stride=[2, 3]"},
        {{1, 2, 5, 5}, {3, 2, 3, 3}, {1, 1}, {1, 2, 1, 2}, {0, 0}, {1, 1}, 1, "padding=[1, 2]"},
        {{1, 2, 5, 4}, {3, 2, 3, 2}, {2, 1}, {2, 0, 1, 1}, {0, 0}, {1, 1}, 1, "stride=[2, 1], padding=[2, 0, 1, 1]"},
        {{1, 2, 7, 7}, {2, 2, 3, 3}, {1, 1}, {0, 0, 0, 0}, {0, 0}, {2, 3}, 1, "dilation=[2, 3]"},
        {{2, 4, 5, 5}, {6, 2, 3, 3}, {1, 1}, {1, 1, 1, 1}, {0, 0}, {1, 1}, 2, "groups=2, padding=[1, 1]"},
        /* depthwise: groups = C, two filters per channel */
        {{1, 3, 6, 5}, {6, 1, 3, 3}, {2, 2}, {1, 1, 1, 1}, {0, 0}, {1, 2}, 3, "groups=3, stride=[2, 2], padding=[1, 1], dilation=[1, 2]"},
        {{3, 2, 4, 4}, {2, 2, 1, 1}, {1, 1}, {0, 0, 0, 0}, {0, 0}, {1, 1}, 1, NULL},  /* 1x1 */
        {{0, 2, 4, 4}, {2, 2, 3, 3}, {1, 1}, {0, 0, 0, 0}, {0, 0}, {1, 1}, 1, NULL},  /* empty batch */
    };
    for (size_t i = 0; i < KILN_COUNTOF(cases); i++) {
        CHECK_CASE(ctx, "conv2d", &cases[i], KILN_F64, 1e-12);
        CHECK_CASE(ctx, "conv2d", &cases[i], KILN_F32, 1e-5);
    }
    CHECK_CASE(ctx, "conv2d", &cases[5], KILN_F16, 2e-2);
    CHECK_CASE(ctx, "conv2d", &cases[6], KILN_BF16, 5e-2);
    kiln_context_free(ctx);
}

TEST(conv2d_transpose_hand_checked) {
    kiln_context *ctx = kiln_context_new();
    /* stride 1: the full correlation; [1 2; 3 4] scattered by [1 1; 1 1] */
    kiln_value in[2] = {tv(ctx, KILN_F32, "1,1,2,2", (double[]){1, 2, 3, 4}), tv(ctx, KILN_F32, "1,1,2,2", (double[]){1, 1, 1, 1})};
    kiln_value r = run_op(ctx, "conv2d_transpose", 2, in, NULL);
    CHECK_TENSOR(r, KILN_F32, "1,1,3,3", ((double[]){1, 3, 2, 4, 10, 6, 3, 7, 4}), 0);
    kiln_value_release(r);
    /* stride 2 places disjoint 2x2 copies; output_padding adds a zero row and column */
    r = run_op(ctx, "conv2d_transpose", 2, in, "stride=[2, 2], output_padding=[1, 1]");
    CHECK_TENSOR(r, KILN_F32, "1,1,5,5",
                 ((double[]){1, 1, 2, 2, 0, 1, 1, 2, 2, 0, 3, 3, 4, 4, 0, 3, 3, 4, 4, 0, 0, 0, 0, 0, 0}), 0);
    kiln_value_release(r);
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(conv2d_transpose_stride_padding_groups) {
    kiln_context *ctx = kiln_context_new();
    const conv_case cases[] = {
        {{2, 3, 3, 4}, {3, 2, 3, 3}, {1, 1}, {0, 0, 0, 0}, {0, 0}, {1, 1}, 1, NULL},
        {{1, 2, 3, 3}, {2, 3, 3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {1, 1}, 1, "stride=[2, 2], padding=[1, 1], output_padding=[1, 1]"},
        {{1, 2, 4, 3}, {2, 2, 2, 3}, {3, 2}, {0, 1, 1, 0}, {2, 0}, {1, 1}, 1, "stride=[3, 2], padding=[0, 1, 1, 0], output_padding=[2, 0]"},
        {{1, 2, 3, 3}, {2, 1, 2, 2}, {1, 1}, {0, 0, 0, 0}, {1, 0}, {2, 2}, 1, "dilation=[2, 2], output_padding=[1, 0]"},
        {{2, 4, 3, 3}, {4, 3, 3, 2}, {2, 1}, {1, 0, 1, 0}, {1, 0}, {1, 1}, 2, "groups=2, stride=[2, 1], padding=[1, 0], output_padding=[1, 0]"},
        {{1, 3, 4, 4}, {3, 1, 3, 3}, {2, 2}, {1, 1, 1, 1}, {0, 0}, {1, 1}, 3, "groups=3, stride=[2, 2], padding=[1, 1]"},
    };
    for (size_t i = 0; i < KILN_COUNTOF(cases); i++) {
        CHECK_CASE(ctx, "conv2d_transpose", &cases[i], KILN_F64, 1e-12);
        CHECK_CASE(ctx, "conv2d_transpose", &cases[i], KILN_F32, 1e-5);
    }
    CHECK_CASE(ctx, "conv2d_transpose", &cases[4], KILN_F16, 2e-2);
    CHECK_CASE(ctx, "conv2d_transpose", &cases[1], KILN_BF16, 5e-2);
    kiln_context_free(ctx);
}

TEST(conv2d_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "1,4,5,5", NULL), w = tv(ctx, KILN_F32, "6,2,3,3", NULL);
    kiln_value x3 = tv(ctx, KILN_F32, "4,5,5", NULL), wd = tv(ctx, KILN_F64, "6,2,3,3", NULL);
    kiln_value xi = tv(ctx, KILN_I32, "1,4,5,5", NULL), big = tv(ctx, KILN_F32, "6,4,6,3", NULL);
    kiln_value in[2] = {x, w};
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){x3, w}), NULL, "needs 4-D input [N, C, H, W] and 4-D weight [O, C/groups, kH, kW], got [4, 5, 5] and [6, 2, 3, 3]");
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){x, wd}), NULL, "one dtype, got f32[1, 4, 5, 5] and f64[6, 2, 3, 3]");
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){xi, w}), NULL, "input 0 has dtype i32[1, 4, 5, 5]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, NULL, "input [1, 4, 5, 5] has 4 channels, so with groups=1 weight [6, 2, 3, 3] needs dim 1 = 4");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=3", "groups=3 must be >= 1 and divide the 4 input channels of [1, 4, 5, 5]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=0", "groups=0 must be >= 1");
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){x, big}), NULL, "kernel 6 x 3 with dilation [1, 1] (extent 6 x 3) is larger than the padded input 5 x 5");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, dilation=[3, 1]", "kernel 3 x 3 with dilation [3, 1] (extent 7 x 3)");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, stride=[0, 1]", "stride must be 2 ints >= 1, got [0, 1]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, stride=[1]", "stride must be 2 ints >= 1, got [1]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, dilation=[1, 0]", "dilation must be 2 ints >= 1, got [1, 0]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, padding=[1, 1, 1]", "padding must be [h, w] or [top, left, bottom, right] >= 0, got [1, 1, 1]");
    CHECK_OP_ERR(ctx, "conv2d", 2, in, "groups=2, padding=[0, -1]", "got [0, -1]");
    release_all(6, (kiln_value[]){x, w, x3, wd, xi, big});
    /* groups must also divide the output channels */
    kiln_value w5 = tv(ctx, KILN_F32, "5,2,3,3", NULL), x2 = tv(ctx, KILN_F32, "1,4,5,5", NULL);
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){x2, w5}), "groups=2", "weight [5, 2, 3, 3] needs dim 1 = 2 and dim 0 divisible by 2");
    kiln_value e = tv(ctx, KILN_F32, "1,0,5,5", NULL);
    CHECK_OP_ERR(ctx, "conv2d", 2, ((kiln_value[]){e, w5}), NULL, "must have non-empty dims");
    release_all(3, (kiln_value[]){w5, x2, e});
    kiln_context_free(ctx);
}

TEST(conv2d_transpose_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "1,4,3,3", NULL), w = tv(ctx, KILN_F32, "4,2,3,3", NULL), w3 = tv(ctx, KILN_F32, "3,2,3,3", NULL);
    kiln_value in[2] = {x, w};
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, ((kiln_value[]){x, w3}), NULL, "weight [3, 2, 3, 3] must have 4 input channels (dim 0) to match input [1, 4, 3, 3]");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, in, "groups=3", "groups=3 must be >= 1 and divide the 4 input channels");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, in, "output_padding=[1, 0]", "output_padding 1 must be smaller than stride 1 or dilation 1 (dim 0)");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, in, "stride=[2, 2], output_padding=[0, 2]", "output_padding 2 must be smaller than stride 2 or dilation 1 (dim 1)");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, in, "padding=[3, 0]", "give a non-positive output size -1 x 5");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, in, "output_padding=[-1, 0]", "output_padding must be 2 ints >= 0, got [-1, 0]");
    CHECK_OP_ERR(ctx, "conv2d_transpose", 2, ((kiln_value[]){x, kiln_value_float(1)}), NULL, "tensors of one dtype, got f32[1, 4, 3, 3] and float");
    release_all(3, (kiln_value[]){x, w, w3});
    kiln_context_free(ctx);
}

TEST(bias_add_composite) {
    kiln_context *ctx = kiln_context_new();
    double x[12];
    for (int i = 0; i < 12; i++) x[i] = i;
    kiln_value xv = tv(ctx, KILN_F32, "2,3,2", x), b3 = tv(ctx, KILN_F32, "3", (double[]){10, 20, 30});
    kiln_value b2 = tv(ctx, KILN_F32, "2", (double[]){100, 200});
    kiln_value r = run_op(ctx, "bias_add", 2, (kiln_value[]){xv, b3}, NULL);
    CHECK_TENSOR(r, KILN_F32, "2,3,2", ((double[]){10, 11, 22, 23, 34, 35, 16, 17, 28, 29, 40, 41}), 0);
    kiln_value_release(r);
    r = run_op(ctx, "bias_add", 2, (kiln_value[]){xv, b2}, "axis=-1");
    CHECK_TENSOR(r, KILN_F32, "2,3,2", ((double[]){100, 201, 102, 203, 104, 205, 106, 207, 108, 209, 110, 211}), 0);
    kiln_value_release(r);
    r = run_op(ctx, "bias_add", 2, (kiln_value[]){xv, b2}, "axis=0");
    CHECK_TENSOR(r, KILN_F32, "2,3,2", ((double[]){100, 101, 102, 103, 104, 105, 206, 207, 208, 209, 210, 211}), 0);
    kiln_value_release(r);
    kiln_value bi = tv(ctx, KILN_I32, "3", NULL);
    CHECK_OP_ERR(ctx, "bias_add", 2, ((kiln_value[]){xv, b2}), NULL, "bias f32[2] must be 1-D of size 3 (dim 1 of input f32[2, 3, 2])");
    CHECK_OP_ERR(ctx, "bias_add", 2, ((kiln_value[]){xv, b3}), "axis=3", "axis 3 is out of range for input f32[2, 3, 2]");
    CHECK_OP_ERR(ctx, "bias_add", 2, ((kiln_value[]){xv, bi}), NULL, "tensors of one dtype, got f32[2, 3, 2] and i32[3]");
    release_all(4, (kiln_value[]){xv, b3, b2, bi});
    kiln_context_free(ctx);
}
