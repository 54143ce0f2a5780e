/* test_npy.c — .npy load/save: round trips of every dtype kiln shares with NumPy, byte-exact
 * NumPy headers, and every malformed-file error path (crafted bytes in temp files). */
#include "test.h"
#include <stdlib.h>
#include <unistd.h>

/* A .npy image: preamble of format `major`, header text as given (no padding added), data. */
static size_t craft(unsigned char *out, int major, const char *header, const void *data, size_t ndata) {
    size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (unsigned char)(hl >> (8 * i));
    memcpy(out + pre, header, hl);
    if (ndata) memcpy(out + pre + hl, data, ndata);
    return pre + hl + ndata;
}

/* Loads the bytes; the load must fail with status st and a message containing sub and the path. */
static void check_bad(const char *file, int line, const void *bytes, size_t n, kiln_status st, const char *sub) {
    kiln_context *ctx = kiln_context_new();
    char path[64];
    if (!test_write_temp(path, bytes, n)) {
        test_fail(file, line, "cannot write temp file");
    } else {
        kiln_tensor *t = kiln_npy_load(ctx, path);
        if (t) test_fail(file, line, "load succeeded, expected %s", kiln_status_name(st));
        else if (kiln_error_status(ctx) != st)
            test_fail(file, line, "status %s, expected %s (%s)", kiln_status_name(kiln_error_status(ctx)),
                      kiln_status_name(st), kiln_error_message(ctx));
        else if (!strstr(kiln_error_message(ctx), sub) || !strstr(kiln_error_message(ctx), path))
            test_fail(file, line, "message \"%s\" lacks \"%s\" or the path", kiln_error_message(ctx), sub);
        kiln_tensor_release(t);
        unlink(path);
    }
    kiln_context_free(ctx);
}
#define CHECK_BAD(bytes, n, st, sub) check_bad(__FILE__, __LINE__, (bytes), (n), (st), (sub))

/* Crafts a file from a header dict (and optional data) and expects a VALUE error with sub. */
#define CHECK_BAD_HEADER(header, data, ndata, sub)                                               \
    do {                                                                                       \
        unsigned char img_[1024];                                                              \
        CHECK_BAD(img_, craft(img_, 1, (header), (data), (ndata)), KILN_ERR_VALUE, (sub));     \
    } while (0)

/* Saves t, loads it back, and checks dtype, shape and bytes are the same. */
static void roundtrip(const char *file, int line, kiln_context *ctx, kiln_tensor *t) {
    char path[64];
    if (!t || !test_write_temp(path, NULL, 0)) return test_fail(file, line, "setup failed");
    if (kiln_npy_save(ctx, path, t) != KILN_OK) {
        test_fail(file, line, "save: %s", kiln_error_message(ctx));
    } else {
        kiln_tensor *r = kiln_npy_load(ctx, path);
        if (!r) test_fail(file, line, "load: %s", kiln_error_message(ctx));
        else if (r->dtype != t->dtype || r->ndim != t->ndim ||
                 memcmp(r->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) ||
                 memcmp(r->data, t->data, kiln_tensor_nbytes(t)))
            test_fail(file, line, "%s tensor differs after the round trip", kiln_dtype_name(t->dtype));
        kiln_tensor_release(r);
    }
    unlink(path);
    kiln_tensor_release(t);
}
#define ROUNDTRIP(ctx, t) roundtrip(__FILE__, __LINE__, (ctx), (t))

TEST(npy_roundtrip_every_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double v[] = {0, 1, -2, 3.5, 100, -0.25};
    for (int d = 0; d < KILN_DTYPE_COUNT; d++) {
        if (d == KILN_BF16) continue;
        double vals[6];
        for (int i = 0; i < 6; i++) vals[i] = d == KILN_BOOL ? i % 2 : d == KILN_U8 ? (double)i * 7 : v[i];
        ROUNDTRIP(ctx, tt(ctx, (kiln_dtype)d, "2,3", vals));
        ROUNDTRIP(ctx, tt(ctx, (kiln_dtype)d, "6", vals));
        ROUNDTRIP(ctx, tt(ctx, (kiln_dtype)d, "", vals));      /* 0-d */
        ROUNDTRIP(ctx, tt(ctx, (kiln_dtype)d, "0,3", NULL));   /* size 0 */
        ROUNDTRIP(ctx, tt(ctx, (kiln_dtype)d, "1,1,1,1,1,1,1,6", vals));
    }
    kiln_context_free(ctx);
}

TEST(npy_header_matches_numpy) {
    kiln_context *ctx = kiln_context_new();
    char path[64];
    CHECK(test_write_temp(path, NULL, 0));
    kiln_tensor *t = tt(ctx, KILN_F32, "2,3", (double[]){0, 1, 2, 3, 4, 5});
    CHECK_OK(ctx, kiln_npy_save(ctx, path, t));
    unsigned char buf[256];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    const char *want = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK_INT(n, 128 + 24); /* header padded so the data starts at byte 128, as NumPy does */
    CHECK(!memcmp(buf, want, 10 + strlen(want + 10)));
    CHECK_INT(buf[127], '\n');
    CHECK(!memcmp(buf + 128, t->data, 24));
    kiln_tensor_release(t);
    /* 1-d shapes are written "(3,)" like Python tuples; single bytes use '|'. */
    t = tt(ctx, KILN_U8, "3", (double[]){1, 2, 3});
    CHECK_OK(ctx, kiln_npy_save(ctx, path, t));
    f = fopen(path, "rb");
    n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK_INT(n, 128 + 3);
    CHECK(!memcmp(buf + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", 57));
    kiln_tensor_release(t);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(npy_loads_numpy_variants) {
    kiln_context *ctx = kiln_context_new();
    unsigned char img[512];
    char path[64];
    const float data[] = {1.5f, -2, 3};
    /* format 2.0 (4-byte header length), double quotes, no trailing comma, odd spacing */
    size_t n = craft(img, 2, "{\"shape\":(3,),\"fortran_order\":False,\"descr\":\"<f4\"}\n", data, sizeof data);
    CHECK(test_write_temp(path, img, n));
    kiln_tensor *t = kiln_npy_load(ctx, path);
    CHECK_TENSOR(kiln_value_tensor(t), KILN_F32, "3", ((double[]){1.5, -2, 3}), 0);
    kiln_tensor_release(t);
    unlink(path);
    /* Python 2 long dims "2L", '=' byte order, bools with bytes other than 0 and 1 */
    const unsigned char b[] = {0, 2, 1, 255};
    n = craft(img, 1, "{'descr': '=b1', 'fortran_order': False, 'shape': (2L, 2L), }  \n", b, sizeof b);
    CHECK(test_write_temp(path, img, n));
    t = kiln_npy_load(ctx, path);
    CHECK_TENSOR(kiln_value_tensor(t), KILN_BOOL, "2,2", ((double[]){0, 1, 1, 1}), 0);
    CHECK(t && ((unsigned char *)t->data)[1] == 1);
    kiln_tensor_release(t);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(npy_malformed_preamble) {
    CHECK_BAD("", 0, KILN_ERR_VALUE, "bad magic");
    CHECK_BAD("\x93NUMP", 5, KILN_ERR_VALUE, "bad magic");
    CHECK_BAD("PK\x03\x04 zip file", 12, KILN_ERR_VALUE, "bad magic");
    CHECK_BAD("\x93NUMPY\x01\x00\x10", 9, KILN_ERR_VALUE, "truncated preamble");
    CHECK_BAD("\x93NUMPY\x02\x00\x10\x00", 10, KILN_ERR_VALUE, "truncated preamble");
    CHECK_BAD("\x93NUMPY\x09\x00\x10\x00", 10, KILN_ERR_VALUE, "unsupported format version 9.0");
    CHECK_BAD("\x93NUMPY\x00\x00\x10\x00", 10, KILN_ERR_VALUE, "unsupported format version 0.0");
    CHECK_BAD("\x93NUMPY\x01\x00\x40\x00{'descr'", 17, KILN_ERR_VALUE, "truncated header");
    CHECK_BAD("\x93NUMPY\x02\x00\xff\xff\xff\xff{", 13, KILN_ERR_VALUE, "header length 4294967295 is too large");
}

TEST(npy_malformed_header) {
    const char *ok_rest = "'fortran_order': False, 'shape': (2,), }";
    char h[256];
    CHECK_BAD_HEADER("", NULL, 0, "header is not a dict");
    CHECK_BAD_HEADER("[1, 2]", NULL, 0, "header is not a dict");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False}", NULL, 0, "lacks 'descr', 'fortran_order' or 'shape'");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", NULL, 0, "unknown key");
    CHECK_BAD_HEADER("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", NULL, 0, "duplicate key");
    CHECK_BAD_HEADER("{'descr' '<f4'}", NULL, 0, "expected ':'");
    CHECK_BAD_HEADER("{'descr': '<f4' 'shape': (1,)}", NULL, 0, "expected ',' or '}'");
    CHECK_BAD_HEADER("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", NULL, 0, "expected ',' or '}'");
    CHECK_BAD_HEADER("{'descr': '<f4", NULL, 0, "unterminated string");
    CHECK_BAD_HEADER("{'descr': 'a\\'b'}", NULL, 0, "escapes");
    CHECK_BAD_HEADER("{'descr': '<U123456789012345678', 'fortran_order': False, 'shape': ()}", NULL, 0, "string too long");
    CHECK_BAD_HEADER("{descr: 1}", NULL, 0, "expected a quoted string");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", NULL, 0, "True or False");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", NULL, 0, "shape must be a tuple");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", NULL, 0, "non-negative integers");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}", NULL, 0, "expected ',' or ')'");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", NULL, 0, "overflows");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", NULL, 0, "too many dimensions");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", NULL, 0, "unexpected text after");
    CHECK_BAD_HEADER("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", NULL, 0, "structured");
    snprintf(h, sizeof h, "{'descr': '<f4', %s", ok_rest);
    CHECK_BAD_HEADER(h, "\0\0\0\0", 4, "but the file holds 4");                       /* truncated data */
    CHECK_BAD_HEADER(h, "\0\0\0\0\0\0\0\0\0\0\0\0", 12, "(8 data bytes) but the file holds 12"); /* trailing */
    CHECK_BAD_HEADER("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", NULL, 0,
                     "is too large");
    CHECK_BAD_HEADER("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", NULL, 0,
                     "is too large");
    CHECK_BAD_HEADER("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,)}", NULL, 0,
                     "is too large");
}

TEST(npy_unsupported_content) {
    CHECK_BAD_HEADER("{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}", "\0\0\0\0", 4, "big-endian");
    CHECK_BAD_HEADER("{'descr': '<f4', 'fortran_order': True, 'shape': (1,)}", "\0\0\0\0", 4, "fortran_order");
    CHECK_BAD_HEADER("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", "\0\0\0\0\0\0\0\0", 8, "object arrays");
    CHECK_BAD_HEADER("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", NULL, 0, "unsupported dtype '<c8'");
    CHECK_BAD_HEADER("{'descr': '<u4', 'fortran_order': False, 'shape': (1,)}", NULL, 0, "unsupported dtype '<u4'");
    CHECK_BAD_HEADER("{'descr': '|f4', 'fortran_order': False, 'shape': (1,)}", NULL, 0, "unsupported dtype '|f4'");
    CHECK_BAD_HEADER("{'descr': '', 'fortran_order': False, 'shape': (1,)}", NULL, 0, "unsupported dtype ''");
    /* one-byte dtypes have no byte order: any marker is fine */
    kiln_context *ctx = kiln_context_new();
    unsigned char img[256];
    char path[64];
    size_t n = craft(img, 1, "{'descr': '>i1', 'fortran_order': False, 'shape': (2,)}", "\xff\x05", 2);
    CHECK(test_write_temp(path, img, n));
    kiln_tensor *t = kiln_npy_load(ctx, path);
    CHECK_TENSOR(kiln_value_tensor(t), KILN_I8, "2", ((double[]){-1, 5}), 0);
    kiln_tensor_release(t);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(npy_io_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_error_clear(ctx);
    CHECK(!kiln_npy_load(ctx, "/nonexistent/kiln/x.npy"));
    CHECK_INT(kiln_error_status(ctx), KILN_ERR_IO);
    CHECK(strstr(kiln_error_message(ctx), "cannot open '/nonexistent/kiln/x.npy'"));
    CHECK(!kiln_npy_load(ctx, "/tmp"));
    CHECK_INT(kiln_error_status(ctx), KILN_ERR_IO);
    CHECK(strstr(kiln_error_message(ctx), "'/tmp'"));
    kiln_tensor *t = tt(ctx, KILN_F32, "2", (double[]){1, 2});
    CHECK_ERR(ctx, kiln_npy_save(ctx, "/nonexistent/kiln/x.npy", t), KILN_ERR_IO, "cannot create '/nonexistent/kiln/x.npy'");
    CHECK_ERR(ctx, kiln_npy_save(ctx, "/tmp", t), KILN_ERR_IO, "'/tmp'");
    kiln_tensor_release(t);
    t = tt(ctx, KILN_BF16, "2", (double[]){1, 2});
    CHECK_ERR(ctx, kiln_npy_save(ctx, "/tmp/kiln_never_written.npy", t), KILN_ERR_UNSUPPORTED, "bf16 has no NumPy dtype; cast");
    CHECK(access("/tmp/kiln_never_written.npy", F_OK) != 0);
    kiln_tensor_release(t);
    kiln_context_free(ctx);
}
