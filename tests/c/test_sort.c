/* test_sort.c — tests of sort, argsort and topk: axes, descending, stability, NaN and signed
 * zero, integer keys beyond 2^53, 0-d and size-0 inputs, and the error paths. */
#include "test.h"

/* Runs a one-input op; checks its tensor result, or element `item` of a tuple result when
 * item >= 0. A function, since compound-literal arguments hold commas. */
static void check_sort(const char *file, int line, kiln_context *ctx, const char *op, kiln_value x, const char *attrs,
                       int item, kiln_dtype dt, const char *shape, const double *expected) {
    kiln_value r = run_op(ctx, op, 1, &x, attrs);
    check_tensor(file, line, item >= 0 ? kiln_value_tuple_get(r, item) : r, dt, shape, expected, 0);
    kiln_value_release(r);
}
#define CHECK_SORT(ctx, op, x, attrs, dt, shape, ...) check_sort(__FILE__, __LINE__, ctx, op, x, attrs, -1, dt, shape, __VA_ARGS__)
#define CHECK_TOPK(ctx, x, attrs, item, dt, shape, ...) check_sort(__FILE__, __LINE__, ctx, "topk", x, attrs, item, dt, shape, __VA_ARGS__)

#define CHECK_OP_ERR(ctx, op, x, attrs, st, sub)                                                \
    do {                                                                                        \
        kiln_value r_ = {.kind = KILN_VALUE_NONE};                                              \
        CHECK_ERR((ctx), kiln_op_run((ctx), (op), 1, &(x), (attrs), &r_), (st), (sub));         \
        kiln_value_release(r_);                                                                 \
    } while (0)

TEST(argsort_axes_descending_stable) {
    kiln_context *ctx = kiln_context_new();
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F64 : KILN_F32;
        kiln_value x = tv(ctx, dt, "2,3", (double[]){3, 1, 2, 1, 5, 0});
        CHECK_SORT(ctx, "argsort", x, "", KILN_I64, "2,3", (double[]){1, 2, 0, 2, 0, 1});
        CHECK_SORT(ctx, "argsort", x, "axis=1, descending=true", KILN_I64, "2,3", (double[]){0, 2, 1, 1, 0, 2});
        CHECK_SORT(ctx, "argsort", x, "axis=0", KILN_I64, "2,3", (double[]){1, 0, 1, 0, 1, 0});
        CHECK_SORT(ctx, "argsort", x, "axis=-2, descending=true", KILN_I64, "2,3", (double[]){0, 1, 0, 1, 0, 1});
        kiln_value_release(x);
    }
    /* equal keys keep their order, ascending and descending */
    kiln_value t = tv(ctx, KILN_I32, "6", (double[]){2, 1, 2, 1, 3, 2});
    CHECK_SORT(ctx, "argsort", t, "", KILN_I64, "6", (double[]){1, 3, 0, 2, 5, 4});
    CHECK_SORT(ctx, "argsort", t, "descending=true", KILN_I64, "6", (double[]){4, 0, 2, 5, 1, 3});
    kiln_value_release(t);
    kiln_context_free(ctx);
}

TEST(sort_nan_inf_signed_zero) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "6", (double[]){NAN, 1, -INFINITY, INFINITY, 0, -2});
    CHECK_SORT(ctx, "argsort", x, "", KILN_I64, "6", (double[]){2, 5, 4, 1, 3, 0});
    CHECK_SORT(ctx, "argsort", x, "descending=true", KILN_I64, "6", (double[]){0, 3, 1, 4, 5, 2});
    /* -0 and +0 compare equal: a stable sort keeps them in place */
    kiln_value z = tv(ctx, KILN_F64, "3", (double[]){0.0, -0.0, -1});
    CHECK_SORT(ctx, "argsort", z, "", KILN_I64, "3", (double[]){2, 0, 1});
    kiln_value n = tv(ctx, KILN_F64, "3", (double[]){NAN, 1, NAN});
    CHECK_SORT(ctx, "argsort", n, "", KILN_I64, "3", (double[]){1, 0, 2});
    release_all(3, (kiln_value[]){x, z, n});
    kiln_context_free(ctx);
}

TEST(sort_values_dtypes) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){3, 1, 2, 1, 5, 0});
    CHECK_SORT(ctx, "sort", x, "", KILN_F32, "2,3", (double[]){1, 2, 3, 0, 1, 5});
    CHECK_SORT(ctx, "sort", x, "axis=0, descending=true", KILN_F32, "2,3", (double[]){3, 5, 2, 1, 1, 0});
    kiln_value n = tv(ctx, KILN_F64, "4", (double[]){NAN, 2, -INFINITY, 1});
    CHECK_SORT(ctx, "sort", n, "", KILN_F64, "4", (double[]){-INFINITY, 1, 2, NAN});
    CHECK_SORT(ctx, "sort", n, "descending=true", KILN_F64, "4", (double[]){NAN, 2, 1, -INFINITY});
    kiln_value h = tv(ctx, KILN_F16, "3", (double[]){0.5, -1.5, 0.25});
    CHECK_SORT(ctx, "sort", h, "", KILN_F16, "3", (double[]){-1.5, 0.25, 0.5});
    kiln_value b = tv(ctx, KILN_BF16, "3", (double[]){2, -8, 4});
    CHECK_SORT(ctx, "sort", b, "descending=true", KILN_BF16, "3", (double[]){4, 2, -8});
    kiln_value i8 = tv(ctx, KILN_I8, "4", (double[]){-3, 5, -128, 127});
    CHECK_SORT(ctx, "sort", i8, "", KILN_I8, "4", (double[]){-128, -3, 5, 127});
    kiln_value u8 = tv(ctx, KILN_U8, "3", (double[]){200, 3, 255});
    CHECK_SORT(ctx, "sort", u8, "", KILN_U8, "3", (double[]){3, 200, 255});
    release_all(6, (kiln_value[]){x, n, h, b, i8, u8});
    kiln_context_free(ctx);
}

TEST(sort_int64_beyond_2_pow_53) {
    kiln_context *ctx = kiln_context_new();
    kiln_tensor *t = kiln_tensor_new(ctx, KILN_I64, 1, (int64_t[]){4});
    int64_t v[4] = {9007199254740993, 9007199254740992, -5, INT64_MIN};
    memcpy(t->data, v, sizeof v);
    kiln_value x = kiln_value_tensor(t);
    CHECK_SORT(ctx, "argsort", x, "", KILN_I64, "4", (double[]){3, 2, 1, 0});
    kiln_value r = run_op(ctx, "sort", 1, &x, "descending=true");
    CHECK(r.kind == KILN_VALUE_TENSOR && ((int64_t *)r.tensor->data)[0] == 9007199254740993 &&
          ((int64_t *)r.tensor->data)[3] == INT64_MIN);
    release_all(2, (kiln_value[]){x, r});
    kiln_context_free(ctx);
}

/* A longer line through every merge width: argsort of a permutation is its inverse. */
TEST(argsort_long_permutation) {
    kiln_context *ctx = kiln_context_new();
    enum { N = 101 };
    double d[N], want[N], sorted[N];
    for (int i = 0; i < N; i++) d[i] = (i * 37) % N, want[(i * 37) % N] = i, sorted[i] = i;
    kiln_value x = tv(ctx, KILN_I32, "101", d);
    CHECK_SORT(ctx, "argsort", x, "", KILN_I64, "101", want);
    CHECK_SORT(ctx, "sort", x, "", KILN_I32, "101", sorted);
    kiln_value_release(x);
    kiln_context_free(ctx);
}

TEST(sort_zero_d_and_empty) {
    kiln_context *ctx = kiln_context_new();
    kiln_value s = tv(ctx, KILN_F32, "", (double[]){7});
    CHECK_SORT(ctx, "sort", s, "", KILN_F32, "", (double[]){7});
    CHECK_SORT(ctx, "argsort", s, "axis=0", KILN_I64, "", (double[]){0});
    CHECK_TOPK(ctx, s, "k=1", 1, KILN_I64, "", (double[]){0});
    kiln_value e = tv(ctx, KILN_F32, "2,0", NULL);
    CHECK_SORT(ctx, "sort", e, "", KILN_F32, "2,0", NULL);
    CHECK_SORT(ctx, "argsort", e, "axis=0", KILN_I64, "2,0", NULL);
    CHECK_TOPK(ctx, e, "k=0", 0, KILN_F32, "2,0", NULL);
    release_all(2, (kiln_value[]){s, e});
    kiln_context_free(ctx);
}

TEST(topk_largest_smallest_ties) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "5", (double[]){1, 3, 2, 3, 0});
    CHECK_TOPK(ctx, x, "k=2", 0, KILN_F32, "2", (double[]){3, 3});
    CHECK_TOPK(ctx, x, "k=2", 1, KILN_I64, "2", (double[]){1, 3}); /* ties: lower index first */
    CHECK_TOPK(ctx, x, "k=3, largest=false", 0, KILN_F32, "3", (double[]){0, 1, 2});
    CHECK_TOPK(ctx, x, "k=3, largest=false", 1, KILN_I64, "3", (double[]){4, 0, 2});
    CHECK_TOPK(ctx, x, "k=0", 1, KILN_I64, "0", NULL);
    CHECK_TOPK(ctx, x, "k=5, sorted=false", 1, KILN_I64, "5", (double[]){1, 3, 2, 0, 4});
    kiln_value m = tv(ctx, KILN_F64, "2,3", (double[]){1, 9, 4, 7, 2, 8});
    CHECK_TOPK(ctx, m, "k=1, axis=0", 0, KILN_F64, "1,3", (double[]){7, 9, 8});
    CHECK_TOPK(ctx, m, "k=1, axis=0", 1, KILN_I64, "1,3", (double[]){1, 0, 1});
    CHECK_TOPK(ctx, m, "k=2, axis=-1", 0, KILN_F64, "2,2", (double[]){9, 4, 8, 7});
    CHECK_TOPK(ctx, m, "k=2, axis=-1", 1, KILN_I64, "2,2", (double[]){1, 2, 2, 0});
    kiln_value n = tv(ctx, KILN_F32, "3", (double[]){1, NAN, 2}); /* NaN counts as the largest */
    CHECK_TOPK(ctx, n, "k=1", 1, KILN_I64, "1", (double[]){1});
    CHECK_TOPK(ctx, n, "k=1, largest=false", 0, KILN_F32, "1", (double[]){1});
    kiln_value i = tv(ctx, KILN_I32, "4", (double[]){-1, 4, 4, -7});
    CHECK_TOPK(ctx, i, "k=2", 0, KILN_I32, "2", (double[]){4, 4});
    CHECK_TOPK(ctx, i, "k=1, largest=false", 1, KILN_I64, "1", (double[]){3});
    release_all(4, (kiln_value[]){x, m, n, i});
    kiln_context_free(ctx);
}

TEST(sort_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_value x = tv(ctx, KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    CHECK_OP_ERR(ctx, "argsort", x, "axis=2", KILN_ERR_TYPE, "axis 2 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "topk", x, "k=1, axis=-3", KILN_ERR_TYPE, "axis -3 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "sort", x, "axis=2", KILN_ERR_TYPE, "axis 2 is out of range for shape [2, 3]");
    CHECK_OP_ERR(ctx, "topk", x, "k=4", KILN_ERR_TYPE, "k = 4 is out of range for axis 1 of shape [2, 3]");
    CHECK_OP_ERR(ctx, "topk", x, "k=-1, axis=0", KILN_ERR_TYPE, "k = -1 is out of range");
    CHECK_OP_ERR(ctx, "topk", x, "", KILN_ERR_PARSE, "needs attribute 'k'");
    kiln_value b = tv(ctx, KILN_BOOL, "2", (double[]){1, 0});
    CHECK_OP_ERR(ctx, "sort", b, "", KILN_ERR_TYPE, "does not take");
    release_all(2, (kiln_value[]){x, b});
    kiln_context_free(ctx);
}
