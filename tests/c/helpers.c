/* helpers.c — tensor construction and comparison helpers for the C tests. */
#include "test.h"
#include <stdlib.h>
#include <unistd.h>

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

/* Parses `text` (its @f returns the value to differentiate), differentiates with respect to
 * every f64 tensor parameter, runs on inputs in [lo, lo + 1) and compares each gradient
 * element with (f(x + h) - f(x - h)) / 2h. Summation of non-scalar results is done by
 * autodiff's ones seed; here the loss is summed too. */
kiln_tensor *random_tensor(kiln_context *ctx, const kiln_type *t, unsigned *seed, double lo, int int_range) {
    kiln_tensor *x = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
    for (int64_t k = 0; x && k < x->numel; k++) {
        *seed = *seed * 1103515245u + 12345u;
        double r = (double)(*seed >> 8) / (double)(1u << 24);
        if (kiln_dtype_is_float(t->dtype)) kiln_store_f64(t->dtype, x->data, k, lo + r);
        else kiln_store_i64(t->dtype, x->data, k, (int64_t)(r * int_range));
    }
    return x;
}

void gradcheck(const char *file, int line, const char *text, double lo) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_parse(ctx, text, "gradcheck.kir");
    if (!m) {
        test_fail(file, line, "parse: %s", kiln_error_message(ctx));
        kiln_context_free(ctx);
        return;
    }
    kiln_function *f = kiln_module_function(m, "f");
    int wrt[16], n_wrt = 0;
    for (int i = 0; i < f->n_params; i++)
        if (f->params[i]->type->kind == KILN_TYPE_TENSOR && f->params[i]->type->dtype == KILN_F64) wrt[n_wrt++] = i;
    kiln_function *g = kiln_autodiff(f, n_wrt, wrt, "f_grad");
    if (!g) {
        test_fail(file, line, "autodiff: %s", kiln_error_message(ctx));
        kiln_module_free(m);
        kiln_context_free(ctx);
        return;
    }
    kiln_value in[16];
    unsigned seed = 12345;
    for (int i = 0; i < f->n_params; i++) /* ints: small indices / flags */
        in[i] = kiln_value_tensor(random_tensor(ctx, f->params[i]->type, &seed, lo, 2));
    kiln_value out;
    if (kiln_function_run(g, f->n_params, in, &out)) {
        test_fail(file, line, "run: %s", kiln_error_message(ctx));
        goto done;
    }
    for (int j = 0; j < n_wrt; j++) {
        kiln_tensor *x = in[wrt[j]].tensor, *gr = kiln_value_tuple_get(out, 1 + j).tensor;
        double *xd = x->data;
        for (int64_t k = 0; k < x->numel; k++) {
            const double h = 1e-6, keep = xd[k];
            double fs[2];
            for (int s = 0; s < 2; s++) {
                xd[k] = keep + (s ? -h : h);
                kiln_value r;
                if (kiln_function_run(f, f->n_params, in, &r)) {
                    test_fail(file, line, "run f: %s", kiln_error_message(ctx));
                    goto done_out;
                }
                kiln_value first = r.kind == KILN_VALUE_TUPLE ? kiln_value_tuple_get(r, 0) : r;
                fs[s] = 0;
                for (int64_t e = 0; e < first.tensor->numel; e++) fs[s] += kiln_load_f64(first.tensor->dtype, first.tensor->data, e);
                kiln_value_release(r);
            }
            xd[k] = keep;
            double numeric = (fs[0] - fs[1]) / (2 * h), analytic = kiln_load_f64(gr->dtype, gr->data, k);
            if (fabs(numeric - analytic) > 1e-5 * (1 + fabs(numeric))) {
                test_fail(file, line, "d/d param %d element %lld: autodiff %.9g, finite differences %.9g in\n%s", wrt[j], (long long)k, analytic, numeric, text);
                goto done_out;
            }
        }
    }
done_out:
    kiln_value_release(out);
done:
    release_all(f->n_params, in);
    kiln_module_free(m);
    kiln_context_free(ctx);
}

bool test_write_temp(char *path, const void *bytes, size_t n) {
    strcpy(path, "/tmp/kiln_test_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return false;
    bool ok = n == 0 || write(fd, bytes, n) == (ssize_t)n;
    close(fd);
    return ok;
}
