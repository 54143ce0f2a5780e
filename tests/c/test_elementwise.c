/* test_elementwise.c — elementwise ops: unary math in every float dtype, integer and bool paths,
 * clip / threshold, binary arithmetic and comparisons with broadcasting and weak scalars, where,
 * cast, the composites (gelu, silu, leaky_relu) and the error paths. Expectations come from
 * C math or by hand, never from the kernels. */
#include "test.h"

#define NF 4
static const kiln_dtype FLOATS[NF] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16};
static const double FTOL[NF] = {1e-6, 1e-12, 2e-3, 1e-2}; /* relative + absolute, per dtype */
#define NI 4
static const kiln_dtype INTS[NI] = {KILN_I8, KILN_U8, KILN_I32, KILN_I64};

/* Runs op on one tensor input and checks the result (dtype odt, same shape). */
static void check1(int line, kiln_context *ctx, const char *op, const char *attrs, kiln_dtype dt, const char *shape,
                   const double *x, kiln_dtype odt, const double *want, double tol) {
    kiln_value in = tv(ctx, dt, shape, x), out = run_op(ctx, op, 1, &in, attrs);
    check_tensor(__FILE__, line, out, odt, shape, want, tol);
    kiln_value_release(in);
    kiln_value_release(out);
}
#define CHECK1(ctx, op, attrs, dt, shape, x, odt, want, tol) check1(__LINE__, ctx, op, attrs, dt, shape, x, odt, want, tol)

/* Runs op on two tensors and checks the result. */
static void check2(int line, kiln_context *ctx, const char *op, kiln_dtype dx, const char *sx, const double *x,
                   kiln_dtype dy, const char *sy, const double *y, kiln_dtype dout, const char *sout, const double *want,
                   double tol) {
    kiln_value in[2] = {tv(ctx, dx, sx, x), tv(ctx, dy, sy, y)}, out = run_op(ctx, op, 2, in, NULL);
    check_tensor(__FILE__, line, out, dout, sout, want, tol);
    release_all(2, in);
    kiln_value_release(out);
}
#define CHECK2(ctx, op, dx, sx, x, dy, sy, y, dout, sout, want, tol) \
    check2(__LINE__, ctx, op, dx, sx, x, dy, sy, y, dout, sout, want, tol)

/* ---- unary -------------------------------------------------------------------------------- */
static double ref_neg(double x) { return -x; }
static double ref_sign(double x) { return (x > 0) - (x < 0); }
static double ref_rsqrt(double x) { return 1 / sqrt(x); }
static double ref_recip(double x) { return 1 / x; }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_relu(double x) { return x > 0 ? x : 0; }
static double ref_copy(double x) { return x; }

static const struct {
    const char *op;
    double (*fn)(double);
    bool positive; /* domain x > 0 */
} UNARY[] = {
    {"neg", ref_neg, false},   {"abs", fabs, false},     {"sign", ref_sign, false},  {"exp", exp, false},
    {"log", log, true},        {"log2", log2, true},     {"sqrt", sqrt, true},       {"rsqrt", ref_rsqrt, true},
    {"reciprocal", ref_recip, true}, {"sin", sin, false}, {"cos", cos, false},       {"tanh", tanh, false},
    {"atan", atan, false},     {"sigmoid", ref_sigmoid, false}, {"relu", ref_relu, false}, {"erf", erf, false},
    {"floor", floor, false},   {"ceil", ceil, false},    {"trunc", trunc, false},    {"copy", ref_copy, false},
};

TEST(unary_float_ops_every_float_dtype) {
    kiln_context *ctx = kiln_context_new();
    /* Exactly representable in f16 and bf16, so the reference sees the same inputs. */
    const double any[7] = {-2.0, -0.75, -0.5, 0.0, 0.25, 1.5, 3.0}, pos[6] = {0.25, 0.5, 1.0, 2.0, 4.0, 10.0};
    for (size_t k = 0; k < KILN_COUNTOF(UNARY); k++)
        for (int d = 0; d < NF; d++) {
            const double *x = UNARY[k].positive ? pos : any;
            int n = UNARY[k].positive ? 6 : 7;
            double want[7];
            for (int i = 0; i < n; i++) want[i] = UNARY[k].fn(x[i]);
            CHECK1(ctx, UNARY[k].op, NULL, FLOATS[d], n == 6 ? "2,3" : "7", x, FLOATS[d], want, FTOL[d]);
        }
    kiln_context_free(ctx);
}

TEST(unary_round_half_to_even_and_special_values) {
    kiln_context *ctx = kiln_context_new();
    const double x[8] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.4, 2.6}, want[8] = {0, 2, 2, -0.0, -2, -2, 0, 3};
    for (int d = 0; d < NF; d++) CHECK1(ctx, "round", NULL, FLOATS[d], "8", x, FLOATS[d], want, 0);
    /* sign(0) = 0, sign and relu keep NaN, exp overflows to inf, log(0) = -inf, sigmoid saturates. */
    const double s[4] = {0.0, NAN, -3.0, 7.0}, sw[4] = {0, NAN, -1, 1}, rw[4] = {0, NAN, 0, 7};
    CHECK1(ctx, "sign", NULL, KILN_F32, "4", s, KILN_F32, sw, 0);
    CHECK1(ctx, "relu", NULL, KILN_F32, "4", s, KILN_F32, rw, 0);
    const double e[3] = {1000, -1000, 0}, ew[3] = {INFINITY, 0, 1}, sg[3] = {1, 0, 0.5};
    CHECK1(ctx, "exp", NULL, KILN_F64, "3", e, KILN_F64, ew, 0);
    CHECK1(ctx, "sigmoid", NULL, KILN_F32, "3", e, KILN_F32, sg, 0);
    const double z[1] = {0}, lw[1] = {-INFINITY};
    CHECK1(ctx, "log", NULL, KILN_F32, "1", z, KILN_F32, lw, 0);
    kiln_context_free(ctx);
}

TEST(unary_integer_dtypes) {
    kiln_context *ctx = kiln_context_new();
    const double x[5] = {-7, -1, 0, 3, 100};
    const double neg[5] = {7, 1, 0, -3, -100}, ab[5] = {7, 1, 0, 3, 100}, sg[5] = {-1, -1, 0, 1, 1},
                 re[5] = {0, 0, 0, 3, 100};
    const kiln_dtype signed_ints[3] = {KILN_I8, KILN_I32, KILN_I64};
    for (int d = 0; d < 3; d++) {
        kiln_dtype dt = signed_ints[d];
        CHECK1(ctx, "neg", NULL, dt, "5", x, dt, neg, 0);
        CHECK1(ctx, "abs", NULL, dt, "5", x, dt, ab, 0);
        CHECK1(ctx, "sign", NULL, dt, "5", x, dt, sg, 0);
        CHECK1(ctx, "relu", NULL, dt, "5", x, dt, re, 0);
        const char *same[5] = {"floor", "ceil", "round", "trunc", "copy"};
        for (int k = 0; k < 5; k++) CHECK1(ctx, same[k], NULL, dt, "5", x, dt, x, 0);
    }
    /* u8 and i8 wrap like C: -3 is 253 in u8; -(-128) and abs(-128) stay -128 in i8. */
    const double u[3] = {0, 3, 200}, un[3] = {0, 253, 56}, us[3] = {0, 1, 1};
    CHECK1(ctx, "neg", NULL, KILN_U8, "3", u, KILN_U8, un, 0);
    CHECK1(ctx, "abs", NULL, KILN_U8, "3", u, KILN_U8, u, 0);
    CHECK1(ctx, "sign", NULL, KILN_U8, "3", u, KILN_U8, us, 0);
    const double m[1] = {-128};
    CHECK1(ctx, "neg", NULL, KILN_I8, "1", m, KILN_I8, m, 0);
    CHECK1(ctx, "abs", NULL, KILN_I8, "1", m, KILN_I8, m, 0);
    kiln_context_free(ctx);
}

TEST(unary_logical_not_and_copy_any_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double x[4] = {0, 2, -0.5, 0}, want[4] = {1, 0, 0, 1}, b[4] = {1, 0, 1, 1}, bw[4] = {0, 1, 0, 0};
    CHECK1(ctx, "logical_not", NULL, KILN_F32, "2,2", x, KILN_BOOL, want, 0);
    CHECK1(ctx, "logical_not", NULL, KILN_F16, "4", x, KILN_BOOL, want, 0);
    const double xi[4] = {0, 2, -5, 0};
    CHECK1(ctx, "logical_not", NULL, KILN_I32, "4", xi, KILN_BOOL, want, 0);
    CHECK1(ctx, "logical_not", NULL, KILN_BOOL, "4", b, KILN_BOOL, bw, 0);
    const double nan_[1] = {NAN}, nw[1] = {0};
    CHECK1(ctx, "logical_not", NULL, KILN_F64, "1", nan_, KILN_BOOL, nw, 0);
    CHECK1(ctx, "copy", NULL, KILN_BOOL, "4", b, KILN_BOOL, b, 0);
    CHECK1(ctx, "copy", NULL, KILN_BF16, "2,2", x, KILN_BF16, x, 0);
    kiln_context_free(ctx);
}

TEST(unary_shapes_0d_size0_and_scalars) {
    kiln_context *ctx = kiln_context_new();
    const double x[1] = {-2.5}, w[1] = {2.5};
    CHECK1(ctx, "abs", NULL, KILN_F32, "", x, KILN_F32, w, 0);
    CHECK1(ctx, "exp", NULL, KILN_F32, "2,0,3", NULL, KILN_F32, NULL, 0);
    kiln_value in = kiln_value_float(2.5), out = run_op(ctx, "neg", 1, &in, NULL);
    CHECK_INT(out.kind, KILN_VALUE_FLOAT);
    CHECK(out.f == -2.5);
    in = kiln_value_int(-3);
    out = run_op(ctx, "abs", 1, &in, NULL);
    CHECK_INT(out.kind, KILN_VALUE_INT);
    CHECK_INT(out.i, 3);
    in = kiln_value_float(0.0);
    out = run_op(ctx, "exp", 1, &in, NULL);
    CHECK_INT(out.kind, KILN_VALUE_FLOAT);
    CHECK(out.f == 1.0);
    in = kiln_value_int(0);
    out = run_op(ctx, "logical_not", 1, &in, NULL);
    CHECK_INT(out.kind, KILN_VALUE_BOOL);
    CHECK(out.b);
    kiln_context_free(ctx);
}

TEST(unary_dtype_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value in = tv(ctx, KILN_I32, "2", (double[]){1, 2}), out;
    CHECK_ERR(ctx, kiln_op_run(ctx, "exp", 1, &in, NULL, &out), KILN_ERR_TYPE, "does not take");
    kiln_value_release(in);
    in = tv(ctx, KILN_BOOL, "2", (double[]){1, 0});
    CHECK_ERR(ctx, kiln_op_run(ctx, "neg", 1, &in, NULL, &out), KILN_ERR_TYPE, "bool[2]");
    kiln_value_release(in);
    in = kiln_value_int(2);
    CHECK_ERR(ctx, kiln_op_run(ctx, "sqrt", 1, &in, NULL, &out), KILN_ERR_TYPE, "sqrt");
    kiln_context_free(ctx);
}

/* ---- clip and threshold ------------------------------------------------------------------- */
TEST(clip_float_and_int) {
    kiln_context *ctx = kiln_context_new();
    const double x[6] = {-3, -1, 0, 0.5, 2, NAN};
    const double both[6] = {-1, -1, 0, 0.5, 1, NAN}, lo[6] = {0, 0, 0, 0.5, 2, NAN}, hi[6] = {-3, -1, 0, 0.5, 1, NAN};
    const double crossed[6] = {-2, -2, -2, -2, -2, NAN}; /* min > max: torch gives max */
    for (int d = 0; d < NF; d++) {
        CHECK1(ctx, "clip", "min=-1.0, max=1.0", FLOATS[d], "2,3", x, FLOATS[d], both, 0);
        CHECK1(ctx, "clip", "min=0.0", FLOATS[d], "6", x, FLOATS[d], lo, 0);
        CHECK1(ctx, "clip", "max=1.0", FLOATS[d], "6", x, FLOATS[d], hi, 0);
        CHECK1(ctx, "clip", "min=1.0, max=-2.0", FLOATS[d], "6", x, FLOATS[d], crossed, 0);
        CHECK1(ctx, "clip", NULL, FLOATS[d], "6", x, FLOATS[d], x, 0);
    }
    /* Integer tensors clamp to the integers inside the bounds: [-1.5, 2.5] -> [-1, 2]. */
    const double xi[5] = {-5, -1, 0, 2, 9}, wi[5] = {-1, -1, 0, 2, 2};
    for (int d = 0; d < NI; d++) {
        if (INTS[d] == KILN_U8) continue;
        CHECK1(ctx, "clip", "min=-1.5, max=2.5", INTS[d], "5", xi, INTS[d], wi, 0);
    }
    const double xu[3] = {0, 100, 255}, wu[3] = {10, 100, 200};
    CHECK1(ctx, "clip", "min=10.0, max=200.0", KILN_U8, "3", xu, KILN_U8, wu, 0);
    kiln_context_free(ctx);
}

TEST(threshold_float_and_int) {
    kiln_context *ctx = kiln_context_new();
    const double x[5] = {-1, 0.5, 1, 1.5, NAN}, w[5] = {-7, -7, -7, 1.5, NAN};
    for (int d = 0; d < NF; d++) CHECK1(ctx, "threshold", "threshold=1.0, value=-7.0", FLOATS[d], "5", x, FLOATS[d], w, 0);
    const double xi[4] = {-2, 0, 1, 5}, wi[4] = {9, 9, 1, 5};
    CHECK1(ctx, "threshold", "threshold=0.5, value=9.0", KILN_I32, "4", xi, KILN_I32, wi, 0);
    CHECK1(ctx, "threshold", "threshold=0.5, value=9.0", KILN_I64, "2,2", xi, KILN_I64, wi, 0);
    kiln_context_free(ctx);
}

/* ---- binary arithmetic -------------------------------------------------------------------- */
TEST(binary_float_arithmetic_every_float_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double x[6] = {1.5, -2, 3, 0.25, -7, 7}, y[6] = {0.5, 4, -2, 2, 2, -2};
    double add[6], sub[6], mul[6], div[6], pw[6], mx[6], mn[6];
    for (int i = 0; i < 6; i++) {
        add[i] = x[i] + y[i], sub[i] = x[i] - y[i], mul[i] = x[i] * y[i], div[i] = x[i] / y[i];
        pw[i] = pow(x[i], y[i]), mx[i] = x[i] > y[i] ? x[i] : y[i], mn[i] = x[i] < y[i] ? x[i] : y[i];
    }
    /* By hand, Python semantics: 1.5 // 0.5 = 3, -2 // 4 = -1, 3 // -2 = -2, -7 // 2 = -4, 7 // -2 = -4;
     * 1.5 % 0.5 = 0, -2 % 4 = 2, 3 % -2 = -1, 0.25 % 2 = 0.25, -7 % 2 = 1, 7 % -2 = -1. */
    const double fd[6] = {3, -1, -2, 0, -4, -4}, md[6] = {0, 2, -1, 0.25, 1, -1};
    for (int d = 0; d < NF; d++) {
        kiln_dtype dt = FLOATS[d];
        double tol = FTOL[d];
        CHECK2(ctx, "add", dt, "2,3", x, dt, "2,3", y, dt, "2,3", add, tol);
        CHECK2(ctx, "subtract", dt, "2,3", x, dt, "2,3", y, dt, "2,3", sub, tol);
        CHECK2(ctx, "multiply", dt, "2,3", x, dt, "2,3", y, dt, "2,3", mul, tol);
        CHECK2(ctx, "divide", dt, "2,3", x, dt, "2,3", y, dt, "2,3", div, tol);
        CHECK2(ctx, "power", dt, "6", x, dt, "6", y, dt, "6", pw, tol);
        CHECK2(ctx, "maximum", dt, "6", x, dt, "6", y, dt, "6", mx, 0);
        CHECK2(ctx, "minimum", dt, "6", x, dt, "6", y, dt, "6", mn, 0);
        CHECK2(ctx, "floor_divide", dt, "6", x, dt, "6", y, dt, "6", fd, 0);
        CHECK2(ctx, "mod", dt, "6", x, dt, "6", y, dt, "6", md, 0);
    }
    kiln_context_free(ctx);
}

TEST(binary_float_special_values) {
    kiln_context *ctx = kiln_context_new();
    const double x[4] = {NAN, 1, 2, 1}, y[4] = {1, NAN, 0, -0.0};
    const double nan2[4] = {NAN, NAN, 2, 1}, mn[4] = {NAN, NAN, 0, -0.0};
    CHECK2(ctx, "maximum", KILN_F32, "4", x, KILN_F32, "4", y, KILN_F32, "4", nan2, 0);
    CHECK2(ctx, "minimum", KILN_F64, "4", x, KILN_F64, "4", y, KILN_F64, "4", mn, 0);
    /* Float division by zero follows IEEE; mod by zero is NaN; floor_divide by zero is x / 0. */
    const double d[3] = {1, -1, 0}, z[3] = {0, 0, 0};
    CHECK2(ctx, "divide", KILN_F32, "3", d, KILN_F32, "3", z, KILN_F32, "3", ((double[]){INFINITY, -INFINITY, NAN}), 0);
    CHECK2(ctx, "mod", KILN_F32, "3", d, KILN_F32, "3", z, KILN_F32, "3", ((double[]){NAN, NAN, NAN}), 0);
    CHECK2(ctx, "floor_divide", KILN_F64, "3", d, KILN_F64, "3", z, KILN_F64, "3", ((double[]){INFINITY, -INFINITY, NAN}), 0);
    kiln_context_free(ctx);
}

TEST(binary_integer_arithmetic) {
    kiln_context *ctx = kiln_context_new();
    const double x[6] = {7, -7, 7, -7, 0, 5}, y[6] = {2, 2, -2, -2, 3, 1};
    const double add[6] = {9, -5, 5, -9, 3, 6}, sub[6] = {5, -9, 9, -5, -3, 4}, mul[6] = {14, -14, -14, 14, 0, 5};
    const double fd[6] = {3, -4, -4, 3, 0, 5}, md[6] = {1, 1, -1, -1, 0, 0};
    const double mx[6] = {7, 2, 7, -2, 3, 5}, mn[6] = {2, -7, -2, -7, 0, 1};
    const kiln_dtype dts[3] = {KILN_I8, KILN_I32, KILN_I64};
    for (int d = 0; d < 3; d++) {
        kiln_dtype dt = dts[d];
        CHECK2(ctx, "add", dt, "6", x, dt, "6", y, dt, "6", add, 0);
        CHECK2(ctx, "subtract", dt, "6", x, dt, "6", y, dt, "6", sub, 0);
        CHECK2(ctx, "multiply", dt, "2,3", x, dt, "2,3", y, dt, "2,3", mul, 0);
        CHECK2(ctx, "floor_divide", dt, "6", x, dt, "6", y, dt, "6", fd, 0);
        CHECK2(ctx, "mod", dt, "6", x, dt, "6", y, dt, "6", md, 0);
        CHECK2(ctx, "maximum", dt, "6", x, dt, "6", y, dt, "6", mx, 0);
        CHECK2(ctx, "minimum", dt, "6", x, dt, "6", y, dt, "6", mn, 0);
    }
    const double b[5] = {2, -3, 0, 5, 1}, e[5] = {10, 3, 0, 0, 62}, pw[5] = {1024, -27, 1, 1, 1};
    CHECK2(ctx, "power", KILN_I64, "5", b, KILN_I64, "5", e, KILN_I64, "5", pw, 0);
    /* Wrapping: i8 100 + 100 = -56; u8 3 - 5 = 254; i8 2^7 = -128. */
    CHECK2(ctx, "add", KILN_I8, "1", ((double[]){100}), KILN_I8, "1", ((double[]){100}), KILN_I8, "1", ((double[]){-56}), 0);
    CHECK2(ctx, "subtract", KILN_U8, "1", ((double[]){3}), KILN_U8, "1", ((double[]){5}), KILN_U8, "1", ((double[]){254}), 0);
    CHECK2(ctx, "power", KILN_I8, "1", ((double[]){2}), KILN_I8, "1", ((double[]){7}), KILN_I8, "1", ((double[]){-128}), 0);
    /* u8 divides as unsigned. */
    CHECK2(ctx, "floor_divide", KILN_U8, "2", ((double[]){200, 7}), KILN_U8, "2", ((double[]){3, 2}), KILN_U8, "2",
           ((double[]){66, 3}), 0);
    /* INT64_MIN // -1 wraps instead of trapping. */
    kiln_value in[2] = {tv(ctx, KILN_I64, "1", NULL), kiln_value_int(-1)};
    ((int64_t *)kiln_tensor_data(in[0].tensor))[0] = INT64_MIN;
    kiln_value out = run_op(ctx, "floor_divide", 2, in, NULL);
    CHECK(out.kind == KILN_VALUE_TENSOR && ((int64_t *)kiln_tensor_data(out.tensor))[0] == INT64_MIN);
    kiln_value_release(out);
    out = run_op(ctx, "mod", 2, in, NULL);
    CHECK(out.kind == KILN_VALUE_TENSOR && ((int64_t *)kiln_tensor_data(out.tensor))[0] == 0);
    kiln_value_release(out);
    release_all(2, in);
    kiln_context_free(ctx);
}

TEST(binary_shifts) {
    kiln_context *ctx = kiln_context_new();
    const double x[5] = {1, 3, -8, 5, -1}, s[5] = {0, 2, 1, 64, 70};
    CHECK2(ctx, "left_shift", KILN_I64, "5", x, KILN_I64, "5", s, KILN_I64, "5", ((double[]){1, 12, -16, 0, 0}), 0);
    CHECK2(ctx, "right_shift", KILN_I64, "5", x, KILN_I64, "5", s, KILN_I64, "5", ((double[]){1, 0, -4, 0, -1}), 0);
    /* Narrow ints shift in int64 and wrap on store: u8 200 << 1 = 144; i8 1 << 7 = -128. */
    CHECK2(ctx, "left_shift", KILN_U8, "2", ((double[]){200, 1}), KILN_U8, "2", ((double[]){1, 7}), KILN_U8, "2",
           ((double[]){144, 128}), 0);
    CHECK2(ctx, "left_shift", KILN_I8, "1", ((double[]){1}), KILN_I8, "1", ((double[]){7}), KILN_I8, "1", ((double[]){-128}), 0);
    CHECK2(ctx, "right_shift", KILN_I32, "2", ((double[]){-100, 100}), KILN_I32, "1", ((double[]){2}), KILN_I32, "2",
           ((double[]){-25, 25}), 0);
    kiln_context_free(ctx);
}

TEST(binary_divide_is_true_division) {
    kiln_context *ctx = kiln_context_new();
    const double x[4] = {7, -7, 1, 0}, y[4] = {2, 2, 3, 5}, w[4] = {3.5, -3.5, 1.0 / 3, 0};
    for (int d = 0; d < NI; d++)
        if (INTS[d] != KILN_U8) CHECK2(ctx, "divide", INTS[d], "4", x, INTS[d], "4", y, KILN_F32, "4", w, 1e-6);
    CHECK2(ctx, "divide", KILN_I32, "4", x, KILN_F64, "4", y, KILN_F64, "4", w, 1e-12);
    kiln_value in[2] = {kiln_value_int(7), kiln_value_int(2)}, out = run_op(ctx, "divide", 2, in, NULL);
    CHECK_INT(out.kind, KILN_VALUE_FLOAT);
    CHECK(out.f == 3.5);
    kiln_context_free(ctx);
}

/* ---- broadcasting --------------------------------------------------------------------------- */
TEST(binary_broadcasting_both_directions) {
    kiln_context *ctx = kiln_context_new();
    const double a[6] = {1, 2, 3, 4, 5, 6}, r[3] = {10, 20, 30}, c[2] = {100, 200};
    const double ar[6] = {11, 22, 33, 14, 25, 36}, ra[6] = {9, 18, 27, 6, 15, 24};
    CHECK2(ctx, "add", KILN_F32, "2,3", a, KILN_F32, "3", r, KILN_F32, "2,3", ar, 0);
    CHECK2(ctx, "subtract", KILN_F32, "3", r, KILN_F32, "2,3", a, KILN_F32, "2,3", ra, 0);
    CHECK2(ctx, "add", KILN_I32, "2,1", c, KILN_I32, "1,3", r, KILN_I32, "2,3", ((double[]){110, 120, 130, 210, 220, 230}), 0);
    CHECK2(ctx, "multiply", KILN_F64, "2,3", a, KILN_F64, "2,1", c, KILN_F64, "2,3",
           ((double[]){100, 200, 300, 800, 1000, 1200}), 0);
    /* 0-d tensor with a matrix, size-1 dims, size-0 dims. */
    CHECK2(ctx, "add", KILN_F32, "", ((double[]){0.5}), KILN_F32, "2,3", a, KILN_F32, "2,3",
           ((double[]){1.5, 2.5, 3.5, 4.5, 5.5, 6.5}), 0);
    CHECK2(ctx, "add", KILN_F32, "1,1", ((double[]){1}), KILN_F32, "1", ((double[]){2}), KILN_F32, "1,1", ((double[]){3}), 0);
    CHECK2(ctx, "add", KILN_F32, "", ((double[]){1}), KILN_F32, "", ((double[]){2}), KILN_F32, "", ((double[]){3}), 0);
    CHECK2(ctx, "add", KILN_F32, "0,3", NULL, KILN_F32, "3", r, KILN_F32, "0,3", NULL, 0);
    CHECK2(ctx, "less", KILN_F32, "2,0", NULL, KILN_F32, "1,1", r, KILN_BOOL, "2,0", NULL, 0);
    CHECK2(ctx, "add", KILN_F32, "1,3", r, KILN_F32, "0,1", NULL, KILN_F32, "0,3", NULL, 0);
    kiln_context_free(ctx);
}

/* Walks a 4-d output against explicit index arithmetic: shapes that merge, broadcast in the
 * middle and in front, in f64, i32 and f16 (which converts a mixed input first). */
TEST(binary_broadcasting_against_index_arithmetic) {
    kiln_context *ctx = kiln_context_new();
    static const struct { const char *sa, *sb; int64_t a[4], b[4]; } CASES[] = {
        {"2,1,4,3", "3,1,1", {2, 1, 4, 3}, {1, 3, 1, 1}},
        {"2,3,4,3", "2,3,4,3", {2, 3, 4, 3}, {2, 3, 4, 3}},
        {"1,3,1,3", "2,1,4,1", {1, 3, 1, 3}, {2, 1, 4, 1}},
        {"2,3,4,1", "4,3", {2, 3, 4, 1}, {1, 1, 4, 3}},
    };
    const int64_t out[4] = {2, 3, 4, 3};
    double xa[72], xb[72], want[72];
    for (size_t c = 0; c < KILN_COUNTOF(CASES); c++) {
        const int64_t *sa = CASES[c].a, *sb = CASES[c].b;
        for (int i = 0; i < 72; i++) xa[i] = i, xb[i] = 1000 + 2 * i;
        for (int64_t i0 = 0; i0 < 2; i0++)
            for (int64_t i1 = 0; i1 < 3; i1++)
                for (int64_t i2 = 0; i2 < 4; i2++)
                    for (int64_t i3 = 0; i3 < 3; i3++) {
                        int64_t ia = (((sa[0] > 1 ? i0 : 0) * sa[1] + (sa[1] > 1 ? i1 : 0)) * sa[2] + (sa[2] > 1 ? i2 : 0)) * sa[3] + (sa[3] > 1 ? i3 : 0);
                        int64_t ib = (((sb[0] > 1 ? i0 : 0) * sb[1] + (sb[1] > 1 ? i1 : 0)) * sb[2] + (sb[2] > 1 ? i2 : 0)) * sb[3] + (sb[3] > 1 ? i3 : 0);
                        want[((i0 * out[1] + i1) * out[2] + i2) * out[3] + i3] = xb[ib] - xa[ia];
                    }
        CHECK2(ctx, "subtract", KILN_F64, CASES[c].sb, xb, KILN_F64, CASES[c].sa, xa, KILN_F64, "2,3,4,3", want, 0);
        CHECK2(ctx, "subtract", KILN_I32, CASES[c].sb, xb, KILN_I32, CASES[c].sa, xa, KILN_I32, "2,3,4,3", want, 0);
        CHECK2(ctx, "subtract", KILN_I32, CASES[c].sb, xb, KILN_F64, CASES[c].sa, xa, KILN_F64, "2,3,4,3", want, 0);
    }
    kiln_context_free(ctx);
}

/* ---- scalars and weak typing ---------------------------------------------------------------- */
static kiln_value run2(kiln_context *ctx, const char *op, kiln_value x, kiln_value y) {
    kiln_value in[2] = {x, y}, out = run_op(ctx, op, 2, in, NULL);
    release_all(2, in);
    return out;
}

TEST(scalar_with_scalar) {
    kiln_context *ctx = kiln_context_new();
    kiln_value v = run2(ctx, "add", kiln_value_int(2), kiln_value_int(3));
    CHECK(v.kind == KILN_VALUE_INT && v.i == 5);
    v = run2(ctx, "multiply", kiln_value_int(2), kiln_value_float(1.25));
    CHECK(v.kind == KILN_VALUE_FLOAT && v.f == 2.5);
    v = run2(ctx, "floor_divide", kiln_value_int(-7), kiln_value_int(2));
    CHECK(v.kind == KILN_VALUE_INT && v.i == -4);
    v = run2(ctx, "mod", kiln_value_int(-7), kiln_value_int(2));
    CHECK(v.kind == KILN_VALUE_INT && v.i == 1);
    v = run2(ctx, "power", kiln_value_float(2), kiln_value_int(-1));
    CHECK(v.kind == KILN_VALUE_FLOAT && v.f == 0.5);
    v = run2(ctx, "less", kiln_value_int(1), kiln_value_float(2.5));
    CHECK(v.kind == KILN_VALUE_BOOL && v.b);
    v = run2(ctx, "equal", kiln_value_bool(true), kiln_value_int(1));
    CHECK(v.kind == KILN_VALUE_BOOL && v.b);
    v = run2(ctx, "logical_xor", kiln_value_bool(true), kiln_value_float(0.0));
    CHECK(v.kind == KILN_VALUE_BOOL && v.b);
    v = run2(ctx, "maximum", kiln_value_float(NAN), kiln_value_float(1));
    CHECK(v.kind == KILN_VALUE_FLOAT && isnan(v.f));
    kiln_context_free(ctx);
}

TEST(tensor_with_weak_scalar) {
    kiln_context *ctx = kiln_context_new();
    kiln_value v;
    /* A float scalar keeps an f16 / bf16 tensor's dtype. */
    v = run2(ctx, "add", tv(ctx, KILN_F16, "2", (double[]){1, 2.5}), kiln_value_float(1.0));
    CHECK_TENSOR(v, KILN_F16, "2", ((double[]){2, 3.5}), 0);
    kiln_value_release(v);
    v = run2(ctx, "multiply", kiln_value_float(0.5), tv(ctx, KILN_BF16, "2", (double[]){4, -6}));
    CHECK_TENSOR(v, KILN_BF16, "2", ((double[]){2, -3}), 0);
    kiln_value_release(v);
    /* An int tensor with a float scalar gives f32; with an int scalar it keeps its dtype. */
    v = run2(ctx, "add", tv(ctx, KILN_I32, "3", (double[]){1, 2, 3}), kiln_value_float(0.5));
    CHECK_TENSOR(v, KILN_F32, "3", ((double[]){1.5, 2.5, 3.5}), 0);
    kiln_value_release(v);
    v = run2(ctx, "subtract", kiln_value_int(10), tv(ctx, KILN_I8, "3", (double[]){1, 2, 3}));
    CHECK_TENSOR(v, KILN_I8, "3", ((double[]){9, 8, 7}), 0);
    kiln_value_release(v);
    /* The scalar converts to the tensor's dtype first: 300 is 44 in u8. */
    v = run2(ctx, "add", tv(ctx, KILN_U8, "1", (double[]){1}), kiln_value_int(300));
    CHECK_TENSOR(v, KILN_U8, "1", ((double[]){45}), 0);
    kiln_value_release(v);
    v = run2(ctx, "power", tv(ctx, KILN_I32, "2", (double[]){2, 3}), kiln_value_int(3));
    CHECK_TENSOR(v, KILN_I32, "2", ((double[]){8, 27}), 0);
    kiln_value_release(v);
    v = run2(ctx, "power", tv(ctx, KILN_I32, "2", (double[]){4, 9}), kiln_value_float(0.5));
    CHECK_TENSOR(v, KILN_F32, "2", ((double[]){2, 3}), 1e-6);
    kiln_value_release(v);
    v = run2(ctx, "divide", tv(ctx, KILN_I64, "2", (double[]){1, 3}), kiln_value_int(2));
    CHECK_TENSOR(v, KILN_F32, "2", ((double[]){0.5, 1.5}), 0);
    kiln_value_release(v);
    v = run2(ctx, "left_shift", tv(ctx, KILN_I32, "2", (double[]){1, 3}), kiln_value_int(4));
    CHECK_TENSOR(v, KILN_I32, "2", ((double[]){16, 48}), 0);
    kiln_value_release(v);
    /* A 0-d tensor is not weak: f16 tensor + f32 0-d tensor gives f32. */
    v = run2(ctx, "add", tv(ctx, KILN_F16, "2", (double[]){1, 2}), tv(ctx, KILN_F32, "", (double[]){0.5}));
    CHECK_TENSOR(v, KILN_F32, "2", ((double[]){1.5, 2.5}), 0);
    kiln_value_release(v);
    kiln_context_free(ctx);
}

TEST(binary_dtype_promotion_between_tensors) {
    kiln_context *ctx = kiln_context_new();
    CHECK2(ctx, "add", KILN_F16, "2", ((double[]){1, 2}), KILN_BF16, "2", ((double[]){0.5, 0.25}), KILN_F32, "2",
           ((double[]){1.5, 2.25}), 0);
    CHECK2(ctx, "add", KILN_I8, "2", ((double[]){-1, 100}), KILN_U8, "2", ((double[]){255, 100}), KILN_I32, "2",
           ((double[]){254, 200}), 0);
    CHECK2(ctx, "multiply", KILN_I64, "2", ((double[]){3, 4}), KILN_F16, "2", ((double[]){0.5, 0.25}), KILN_F16, "2",
           ((double[]){1.5, 1}), 0);
    CHECK2(ctx, "maximum", KILN_I32, "2", ((double[]){3, -4}), KILN_F64, "2", ((double[]){0.5, 0.25}), KILN_F64, "2",
           ((double[]){3, 0.25}), 0);
    kiln_context_free(ctx);
}

/* ---- comparisons and logical ops -------------------------------------------------------------- */
TEST(comparisons_every_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double x[4] = {1, 2, 3, 0}, y[4] = {2, 2, 1, 0};
    const char *ops[6] = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"};
    const double want[6][4] = {{0, 1, 0, 1}, {1, 0, 1, 0}, {1, 0, 0, 0}, {1, 1, 0, 1}, {0, 0, 1, 0}, {0, 1, 1, 1}};
    const kiln_dtype all[8] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16, KILN_I8, KILN_U8, KILN_I32, KILN_I64};
    for (int k = 0; k < 6; k++)
        for (int d = 0; d < 8; d++) CHECK2(ctx, ops[k], all[d], "4", x, all[d], "4", y, KILN_BOOL, "4", want[k], 0);
    /* bool with bool: false < true. */
    CHECK2(ctx, "less", KILN_BOOL, "4", ((double[]){0, 0, 1, 1}), KILN_BOOL, "4", ((double[]){0, 1, 0, 1}), KILN_BOOL, "4",
           ((double[]){0, 1, 0, 0}), 0);
    /* Mixed dtypes compare in the promoted dtype; broadcasting; NaN compares unequal. */
    CHECK2(ctx, "less", KILN_I32, "3", ((double[]){1, 2, 3}), KILN_F32, "2,1", ((double[]){2.5, 1.5}), KILN_BOOL, "2,3",
           ((double[]){1, 1, 0, 1, 0, 0}), 0);
    CHECK2(ctx, "equal", KILN_F32, "2", ((double[]){NAN, 1}), KILN_F32, "2", ((double[]){NAN, 1}), KILN_BOOL, "2",
           ((double[]){0, 1}), 0);
    CHECK2(ctx, "not_equal", KILN_F64, "1", ((double[]){NAN}), KILN_F64, "1", ((double[]){NAN}), KILN_BOOL, "1",
           ((double[]){1}), 0);
    /* A float scalar compares exactly: f16(0.1) = 0.0999755859375 < 0.1. */
    kiln_value v = run2(ctx, "less", tv(ctx, KILN_F16, "2", (double[]){0.1, 0.5}), kiln_value_float(0.1));
    CHECK_TENSOR(v, KILN_BOOL, "2", ((double[]){1, 0}), 0);
    kiln_value_release(v);
    v = run2(ctx, "greater_equal", kiln_value_int(2), tv(ctx, KILN_U8, "3", (double[]){1, 2, 3}));
    CHECK_TENSOR(v, KILN_BOOL, "3", ((double[]){1, 1, 0}), 0);
    kiln_value_release(v);
    kiln_context_free(ctx);
}

TEST(logical_ops_any_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double p[4] = {0, 0, 1, 1}, q[4] = {0, 1, 0, 1};
    const double band[4] = {0, 0, 0, 1}, bor[4] = {0, 1, 1, 1}, bxor[4] = {0, 1, 1, 0};
    CHECK2(ctx, "logical_and", KILN_BOOL, "4", p, KILN_BOOL, "4", q, KILN_BOOL, "4", band, 0);
    CHECK2(ctx, "logical_or", KILN_BOOL, "4", p, KILN_BOOL, "4", q, KILN_BOOL, "4", bor, 0);
    CHECK2(ctx, "logical_xor", KILN_BOOL, "4", p, KILN_BOOL, "4", q, KILN_BOOL, "4", bxor, 0);
    /* Any non-zero (NaN included) is true; mixed dtypes. */
    const double f[4] = {0, -0.0, NAN, 2}, i[4] = {0, 3, 0, -1};
    CHECK2(ctx, "logical_and", KILN_F32, "4", f, KILN_I32, "4", i, KILN_BOOL, "4", ((double[]){0, 0, 0, 1}), 0);
    CHECK2(ctx, "logical_or", KILN_F16, "4", f, KILN_I8, "4", i, KILN_BOOL, "4", ((double[]){0, 1, 1, 1}), 0);
    CHECK2(ctx, "logical_xor", KILN_BOOL, "2,1", ((double[]){0, 1}), KILN_F64, "4", f, KILN_BOOL, "2,4",
           ((double[]){0, 0, 1, 1, 1, 1, 0, 0}), 0);
    kiln_value v = run2(ctx, "logical_and", tv(ctx, KILN_BOOL, "2", (double[]){1, 0}), kiln_value_int(5));
    CHECK_TENSOR(v, KILN_BOOL, "2", ((double[]){1, 0}), 0);
    kiln_value_release(v);
    kiln_context_free(ctx);
}

/* ---- where ----------------------------------------------------------------------------------- */
TEST(where_broadcast_and_dtypes) {
    kiln_context *ctx = kiln_context_new();
    const kiln_dtype dts[5] = {KILN_F64, KILN_F32, KILN_F16, KILN_I8, KILN_BOOL}; /* each element size */
    for (int d = 0; d < 5; d++) {
        kiln_value in[3] = {tv(ctx, KILN_BOOL, "2,1", (double[]){1, 0}), tv(ctx, dts[d], "1,3", (double[]){1, 0, 1}),
                            tv(ctx, dts[d], "", (double[]){0})};
        kiln_value v = run_op(ctx, "where", 3, in, NULL);
        CHECK_TENSOR(v, dts[d], "2,3", ((double[]){1, 0, 1, 0, 0, 0}), 0);
        kiln_value_release(v);
        release_all(3, in);
    }
    kiln_value in[3] = {tv(ctx, KILN_BOOL, "3", (double[]){1, 0, 1}), tv(ctx, KILN_I32, "3", (double[]){1, 2, 3}),
                        kiln_value_float(0.5)};
    kiln_value v = run_op(ctx, "where", 3, in, NULL);
    CHECK_TENSOR(v, KILN_F32, "3", ((double[]){1, 0.5, 3}), 0);
    kiln_value_release(v);
    release_all(3, in);
    /* Scalar values under a tensor condition: float -> f32, int -> i64. */
    kiln_value s[3] = {tv(ctx, KILN_BOOL, "2", (double[]){1, 0}), kiln_value_float(1.5), kiln_value_int(-2)};
    v = run_op(ctx, "where", 3, s, NULL);
    CHECK_TENSOR(v, KILN_F32, "2", ((double[]){1.5, -2}), 0);
    kiln_value_release(v);
    s[1] = kiln_value_int(7);
    v = run_op(ctx, "where", 3, s, NULL);
    CHECK_TENSOR(v, KILN_I64, "2", ((double[]){7, -2}), 0);
    kiln_value_release(v);
    release_all(3, s);
    /* All scalars give a scalar; size-0 broadcast. */
    kiln_value t[3] = {kiln_value_bool(false), kiln_value_int(1), kiln_value_float(2.5)};
    v = run_op(ctx, "where", 3, t, NULL);
    CHECK(v.kind == KILN_VALUE_FLOAT && v.f == 2.5);
    kiln_value z[3] = {tv(ctx, KILN_BOOL, "0,1", NULL), tv(ctx, KILN_F32, "3", (double[]){1, 2, 3}), kiln_value_float(0)};
    v = run_op(ctx, "where", 3, z, NULL);
    CHECK_TENSOR(v, KILN_F32, "0,3", NULL, 0);
    kiln_value_release(v);
    release_all(3, z);
    kiln_context_free(ctx);
}

/* ---- cast ------------------------------------------------------------------------------------ */
TEST(cast_dtypes_and_scalars) {
    kiln_context *ctx = kiln_context_new();
    const double x[5] = {-1.75, 0, 0.5, 2.75, 1000};
    CHECK1(ctx, "cast", "dtype=i32", KILN_F32, "5", x, KILN_I32, ((double[]){-1, 0, 0, 2, 1000}), 0);
    CHECK1(ctx, "cast", "dtype=bool", KILN_F32, "5", x, KILN_BOOL, ((double[]){1, 0, 1, 1, 1}), 0);
    CHECK1(ctx, "cast", "dtype=f16", KILN_F64, "5", x, KILN_F16, x, 0);
    CHECK1(ctx, "cast", "dtype=f64", KILN_BF16, "5", x, KILN_F64, x, 0);
    CHECK1(ctx, "cast", "dtype=f32", KILN_BOOL, "2", ((double[]){1, 0}), KILN_F32, ((double[]){1, 0}), 0);
    CHECK1(ctx, "cast", "dtype=u8", KILN_I32, "2", ((double[]){-1, 256}), KILN_U8, ((double[]){255, 0}), 0);
    CHECK1(ctx, "cast", "dtype=f32", KILN_F32, "0,2", NULL, KILN_F32, NULL, 0);
    /* A scalar becomes a 0-d tensor. */
    kiln_value in = kiln_value_int(3), v = run_op(ctx, "cast", 1, &in, "dtype=f32");
    CHECK_TENSOR(v, KILN_F32, "", ((double[]){3}), 0);
    kiln_value_release(v);
    in = kiln_value_float(2.5);
    v = run_op(ctx, "cast", 1, &in, "dtype=bf16");
    CHECK_TENSOR(v, KILN_BF16, "", ((double[]){2.5}), 0);
    kiln_value_release(v);
    kiln_context_free(ctx);
}

/* ---- composites -------------------------------------------------------------------------------- */
TEST(composites_gelu_silu_leaky_relu) {
    kiln_context *ctx = kiln_context_new();
    const double x[6] = {-3, -1, -0.25, 0, 0.5, 2};
    double ge[6], gt[6], si[6], lr[6], lr2[6];
    for (int i = 0; i < 6; i++) {
        double v = x[i];
        ge[i] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
        gt[i] = 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
        si[i] = v / (1 + exp(-v));
        lr[i] = v > 0 ? v : 0.01 * v;
        lr2[i] = v > 0 ? v : 0.2 * v;
    }
    for (int d = 0; d < NF; d++) {
        /* f16 / bf16 round each intermediate: a looser bound. */
        double tol = FLOATS[d] == KILN_F16 ? 5e-3 : FLOATS[d] == KILN_BF16 ? 3e-2 : FTOL[d] * 4;
        CHECK1(ctx, "gelu", NULL, FLOATS[d], "2,3", x, FLOATS[d], ge, tol);
        CHECK1(ctx, "gelu", "approximate=\"tanh\"", FLOATS[d], "2,3", x, FLOATS[d], gt, tol);
        CHECK1(ctx, "silu", NULL, FLOATS[d], "6", x, FLOATS[d], si, tol);
        CHECK1(ctx, "leaky_relu", NULL, FLOATS[d], "6", x, FLOATS[d], lr, tol);
        CHECK1(ctx, "leaky_relu", "alpha=0.2", FLOATS[d], "6", x, FLOATS[d], lr2, tol);
    }
    /* A float scalar through a composite stays a scalar. */
    kiln_value in = kiln_value_float(-2), v = run_op(ctx, "leaky_relu", 1, &in, "alpha=0.5");
    CHECK(v.kind == KILN_VALUE_FLOAT && v.f == -1);
    in = kiln_value_float(1);
    v = run_op(ctx, "gelu", 1, &in, NULL);
    CHECK(v.kind == KILN_VALUE_FLOAT);
    CHECK_NEAR(v.f, 0.5 * (1 + erf(1 / sqrt(2.0))), 1e-15);
    kiln_context_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------------------ */
static kiln_status try_op(kiln_context *ctx, const char *op, int n, kiln_value *in, const char *attrs) {
    kiln_value out;
    kiln_status s = kiln_op_run(ctx, op, n, in, attrs, &out);
    kiln_value_release(out);
    release_all(n, in);
    return s;
}

TEST(elementwise_errors) {
    kiln_context *ctx = kiln_context_new();
    CHECK_ERR(ctx, try_op(ctx, "add", 2, (kiln_value[]){tv(ctx, KILN_F32, "2,3", NULL), tv(ctx, KILN_F32, "4", NULL)}, NULL),
              KILN_ERR_TYPE, "op 'add' at @eager: cannot broadcast f32[2, 3] with f32[4]");
    CHECK_ERR(ctx, try_op(ctx, "less", 2, (kiln_value[]){tv(ctx, KILN_I32, "3", NULL), tv(ctx, KILN_F32, "2,2", NULL)}, NULL),
              KILN_ERR_TYPE, "cannot broadcast i32[3] with f32[2, 2]");
    CHECK_ERR(ctx, try_op(ctx, "where", 3, (kiln_value[]){tv(ctx, KILN_BOOL, "2", NULL), tv(ctx, KILN_F32, "3", NULL), kiln_value_float(0)}, NULL),
              KILN_ERR_TYPE, "cannot broadcast bool[2], f32[3] and float");
    /* Dtypes outside an op's set, on any input. */
    CHECK_ERR(ctx, try_op(ctx, "add", 2, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL), tv(ctx, KILN_BOOL, "2", NULL)}, NULL),
              KILN_ERR_TYPE, "input 1 is bool[2]");
    CHECK_ERR(ctx, try_op(ctx, "add", 2, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL), kiln_value_bool(true)}, NULL),
              KILN_ERR_TYPE, "input 1 is bool");
    CHECK_ERR(ctx, try_op(ctx, "left_shift", 2, (kiln_value[]){tv(ctx, KILN_I32, "2", NULL), tv(ctx, KILN_F32, "2", NULL)}, NULL),
              KILN_ERR_TYPE, "takes integer dtypes");
    CHECK_ERR(ctx, try_op(ctx, "right_shift", 2, (kiln_value[]){tv(ctx, KILN_I32, "2", NULL), kiln_value_float(1)}, NULL),
              KILN_ERR_TYPE, "input 1 is float");
    CHECK_ERR(ctx, try_op(ctx, "where", 3, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL), kiln_value_float(1), kiln_value_float(0)}, NULL),
              KILN_ERR_TYPE, "condition must be bool, got f32[2]");
    kiln_value tup = kiln_value_tuple(ctx, 1, (kiln_value[]){kiln_value_int(1)});
    CHECK_ERR(ctx, try_op(ctx, "multiply", 2, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL), tup}, NULL), KILN_ERR_TYPE,
              "input 1 is a tuple");
    /* Integer division by zero and negative powers fail at run time, naming the op. */
    CHECK_ERR(ctx, try_op(ctx, "floor_divide", 2, (kiln_value[]){tv(ctx, KILN_I32, "3", (double[]){1, 2, 3}), tv(ctx, KILN_I32, "3", (double[]){1, 0, 1})}, NULL),
              KILN_ERR_VALUE, "op 'floor_divide' at @eager: integer division by zero");
    CHECK_ERR(ctx, try_op(ctx, "mod", 2, (kiln_value[]){kiln_value_int(5), kiln_value_int(0)}, NULL), KILN_ERR_VALUE,
              "op 'mod' at @eager: integer division by zero");
    CHECK_ERR(ctx, try_op(ctx, "power", 2, (kiln_value[]){tv(ctx, KILN_I64, "2", (double[]){2, 2}), kiln_value_int(-1)}, NULL),
              KILN_ERR_VALUE, "op 'power' at @eager: integer raised to a negative power");
    /* Unknown attribute; missing required attribute. */
    CHECK_ERR(ctx, try_op(ctx, "clip", 1, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL)}, "lo=1.0"), KILN_ERR_PARSE,
              "op 'clip' has no attribute 'lo'");
    kiln_status s = try_op(ctx, "cast", 1, (kiln_value[]){tv(ctx, KILN_F32, "2", NULL)}, NULL);
    CHECK(s != KILN_OK);
    kiln_context_free(ctx);
}
