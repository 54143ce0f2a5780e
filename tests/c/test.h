/* test.h — the C test harness: TEST(name) registers a test; CHECK* macros record failures and
 * go on; helpers build tensors from double lists and compare results. main() is in main.c. */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include "ir/ir.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, const char *file);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define TEST(name)                                                                              \
    static void name(void);                                                                     \
    __attribute__((constructor)) static void register_##name(void) { test_register(#name, name, __FILE__); } \
    static void name(void)

#define CHECK(cond)                                                                             \
    do {                                                                                        \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                         \
    } while (0)
#define CHECK_INT(a, b)                                                                         \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                     \
        if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %lld, expected %lld", #a, a_, b_);   \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                   \
    do {                                                                                        \
        double a_ = (a), b_ = (b);                                                              \
        if (!(fabs(a_ - b_) <= (tol) * (1 + fabs(b_))))                                         \
            test_fail(__FILE__, __LINE__, "%s == %.9g, expected %.9g", #a, a_, b_);             \
    } while (0)
#define CHECK_STR(a, b)                                                                         \
    do {                                                                                        \
        const char *a_ = (a), *b_ = (b);                                                        \
        if (!a_ || strcmp(a_, b_)) test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_); \
    } while (0)
/* A call that must succeed; prints the context's message if not. */
#define CHECK_OK(ctx, expr)                                                                     \
    do {                                                                                        \
        kiln_status s_ = (expr);                                                                \
        if (s_ != KILN_OK) test_fail(__FILE__, __LINE__, "%s failed: %s", #expr, kiln_error_message(ctx)); \
    } while (0)
/* A call that must fail with status `st` and a message containing `sub`. */
#define CHECK_ERR(ctx, expr, st, sub)                                                           \
    do {                                                                                        \
        kiln_error_clear(ctx);                                                                  \
        kiln_status s_ = (expr);                                                                \
        if (s_ != (st)) test_fail(__FILE__, __LINE__, "%s returned %s, expected %s (message: %s)", #expr, \
                                  kiln_status_name(s_), kiln_status_name(st), kiln_error_message(ctx)); \
        else if (!strstr(kiln_error_message(ctx), (sub)))                                       \
            test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", #expr, kiln_error_message(ctx), (sub)); \
    } while (0)

/* A tensor of dtype dt and shape "2,3" ("" for 0-d) from doubles (converted to dt). */
kiln_tensor *tt(kiln_context *ctx, kiln_dtype dt, const char *shape, const double *data);
/* Same wrapped as a value. */
kiln_value tv(kiln_context *ctx, kiln_dtype dt, const char *shape, const double *data);
/* Runs op eagerly on n inputs; returns the result (KILN_VALUE_NONE and a recorded failure if
 * it fails). */
kiln_value run_op(kiln_context *ctx, const char *op, int n, const kiln_value *in, const char *attrs);
/* Checks a tensor value's dtype, shape and elements (within tol, relative + absolute). */
#define CHECK_TENSOR(v, dt, shape, expected, tol) check_tensor(__FILE__, __LINE__, (v), (dt), (shape), (expected), (tol))
void check_tensor(const char *file, int line, kiln_value v, kiln_dtype dt, const char *shape, const double *expected, double tol);
/* Autodiff against central finite differences: parses `text`, differentiates its @f (whose
 * first result, summed, is the value) with respect to every f64 tensor parameter, and compares
 * on inputs drawn from [lo, lo + 1) (integer parameters get 0 or 1). */
#define GRADCHECK(text, lo) gradcheck(__FILE__, __LINE__, (text), (lo))
void gradcheck(const char *file, int line, const char *text, double lo);
/* Writes n bytes to a fresh temp file whose path goes into path (at least 32 bytes). */
bool test_write_temp(char *path, const void *bytes, size_t n);
/* Releases an array of values. */
void release_all(int n, kiln_value *v);
/* A tensor of type t with pseudo-random values from *seed (advanced): floats in [lo, lo + 1),
 * integers in [0, int_range). */
kiln_tensor *random_tensor(kiln_context *ctx, const kiln_type *t, unsigned *seed, double lo, int int_range);

#endif
