/* helpers.c — tensor construction and comparison helpers for the C tests. */
#include "test.h"
#include <stdlib.h>

static int parse_shape(const char *s, int64_t *shape) {
    int n = 0;
    while (s && *s) {
        shape[n++] = strtoll(s, (char **)&s, 10);
        while (*s == ',' || *s == ' ') s++;
    }
    return n;
}

kiln_tensor *tt(kiln_context *ctx, kiln_dtype dt, const char *shape, const double *data) {
    int64_t sh[KILN_MAX_DIMS];
    int nd = parse_shape(shape, sh);
    kiln_tensor *t = kiln_tensor_new(ctx, dt, nd, sh);
    if (!t) {
        test_fail(__FILE__, __LINE__, "tensor: %s", kiln_error_message(ctx));
        return NULL;
    }
    for (int64_t i = 0; data && i < t->numel; i++) kiln_store_f64(dt, t->data, i, data[i]);
    return t;
}

kiln_value tv(kiln_context *ctx, kiln_dtype dt, const char *shape, const double *data) {
    return kiln_value_tensor(tt(ctx, dt, shape, data));
}

kiln_value run_op(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs) {
    kiln_value out = {.kind = KILN_VALUE_NONE};
    if (kiln_op_run(ctx, op, n, in, attrs, &out) != KILN_OK)
        test_fail(__FILE__, __LINE__, "op %s(%s): %s", op, attrs ? attrs : "", kiln_error_message(ctx));
    return out;
}

void check_tensor(const char *file, int line, kiln_value v, kiln_dtype dt, const char *shape, const double *expected, double tol) {
    int64_t sh[KILN_MAX_DIMS];
    int nd = parse_shape(shape, sh);
    if (v.kind != KILN_VALUE_TENSOR) return test_fail(file, line, "not a tensor value (kind %d)", (int)v.kind);
    const kiln_tensor *t = v.tensor;
    char a[128], b[128];
    if (t->dtype != dt) return test_fail(file, line, "dtype %s, expected %s", kiln_dtype_name(t->dtype), kiln_dtype_name(dt));
    if (t->ndim != nd || (nd && memcmp(t->shape, sh, sizeof(int64_t) * (size_t)nd)))
        return test_fail(file, line, "shape %s, expected %s", kiln_shape_str(t->ndim, t->shape, a, sizeof a),
                         kiln_shape_str(nd, sh, b, sizeof b));
    for (int64_t i = 0; i < t->numel; i++) {
        double got = kiln_load_f64(dt, t->data, i), want = expected[i];
        bool same = (isnan(got) && isnan(want)) || got == want || fabs(got - want) <= tol * (1 + fabs(want));
        if (!same) return test_fail(file, line, "element %lld is %.9g, expected %.9g", (long long)i, got, want);
    }
}

void release_all(int n, kiln_value *v) {
    for (int i = 0; i < n; i++) kiln_value_release(v[i]);
}
