/* test_safetensors.c — .safetensors save/load: round trips of every dtype (0-d and size-0 too),
 * the exact header kiln writes, hand-written valid files, and every malformed-file error path. */
#include "test.h"
#include <stdlib.h>
#include <unistd.h>

/* A file image: 8-byte little-endian length of `header` (as given, no padding), header, data. */
static size_t craft(unsigned char *out, const char *header, const void *data, size_t ndata) {
    size_t hl = strlen(header);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, header, hl);
    if (ndata) memcpy(out + 8 + hl, data, ndata);
    return 8 + hl + ndata;
}

static void free_loaded(int n, char **names, kiln_tensor **ts) {
    for (int i = 0; i < n; i++) kiln_free(names[i]), kiln_tensor_release(ts[i]);
    kiln_free(names);
    kiln_free(ts);
}

/* Loads the bytes; the load must fail with status st and a message containing sub and the path. */
static void check_bad(const char *file, int line, const void *bytes, size_t n, kiln_status st, const char *sub) {
    kiln_context *ctx = kiln_context_new();
    char path[64];
    if (!test_write_temp(path, bytes, n)) {
        test_fail(file, line, "cannot write temp file");
    } else {
        int cnt = -1;
        char **names = (char **)&cnt;
        kiln_tensor **ts = (kiln_tensor **)&cnt;
        kiln_status s = kiln_safetensors_load(ctx, path, &cnt, &names, &ts);
        if (s == KILN_OK) {
            test_fail(file, line, "load succeeded, expected %s", kiln_status_name(st));
            free_loaded(cnt, names, ts);
        } else if (s != st) {
            test_fail(file, line, "status %s, expected %s (%s)", kiln_status_name(s), kiln_status_name(st),
                      kiln_error_message(ctx));
        } else if (!strstr(kiln_error_message(ctx), sub) || !strstr(kiln_error_message(ctx), path)) {
            test_fail(file, line, "message \"%s\" lacks \"%s\" or the path", kiln_error_message(ctx), sub);
        } else if (cnt != 0 || names || ts) {
            test_fail(file, line, "outputs not cleared on error");
        }
        unlink(path);
    }
    kiln_context_free(ctx);
}
/* Crafts a file from a header (and optional data) and expects status st with sub. */
#define CHECK_BAD(header, data, ndata, st, sub)                                                  \
    do {                                                                                       \
        unsigned char img_[2048];                                                              \
        check_bad(__FILE__, __LINE__, img_, craft(img_, (header), (data), (ndata)), (st), (sub)); \
    } while (0)
#define CHECK_BAD_HEADER(header, sub) CHECK_BAD((header), NULL, 0, KILN_ERR_VALUE, (sub))

static bool same_tensor(const kiln_tensor *a, const kiln_tensor *b) {
    return a->dtype == b->dtype && a->ndim == b->ndim &&
           !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
           !memcmp(a->data, b->data, kiln_tensor_nbytes(a));
}

TEST(safetensors_roundtrip_every_dtype) {
    kiln_context *ctx = kiln_context_new();
    const double v[] = {0, 1, -2, 3.5, 100, -0.25};
    const char *names[KILN_DTYPE_COUNT + 3];
    kiln_tensor *ts[KILN_DTYPE_COUNT + 3];
    char name_buf[KILN_DTYPE_COUNT][16];
    int n = 0;
    for (int d = 0; d < KILN_DTYPE_COUNT; d++) {
        snprintf(name_buf[d], sizeof name_buf[d], "layer.%s", kiln_dtype_name((kiln_dtype)d));
        names[n] = name_buf[d];
        ts[n++] = tt(ctx, (kiln_dtype)d, "2,3", v);
    }
    names[n] = "scalar \"q\" \\ \n\x01 \xc3\xbc"; /* escapes, a control character and UTF-8 */
    ts[n++] = tt(ctx, KILN_F64, "", (double[]){2.5});
    names[n] = "empty";
    ts[n++] = kiln_tensor_new(ctx, KILN_I64, 2, (int64_t[]){0, 3});
    names[n] = "big";
    ts[n++] = tt(ctx, KILN_BF16, "1,1,1,1,1,1,1,2", (double[]){1.5, -3});
    char path[64];
    CHECK(test_write_temp(path, NULL, 0));
    CHECK_OK(ctx, kiln_safetensors_save(ctx, path, n, names, ts));
    int cnt = 0;
    char **ln = NULL;
    kiln_tensor **lt = NULL;
    CHECK_OK(ctx, kiln_safetensors_load(ctx, path, &cnt, &ln, &lt));
    CHECK_INT(cnt, n);
    for (int i = 0; i < n && i < cnt; i++) {
        CHECK_STR(ln[i], names[i]);
        if (!same_tensor(lt[i], ts[i])) test_fail(__FILE__, __LINE__, "tensor '%s' differs", names[i]);
    }
    free_loaded(cnt, ln, lt);
    for (int i = 0; i < n; i++) kiln_tensor_release(ts[i]);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(safetensors_exact_header_and_empty_file) {
    kiln_context *ctx = kiln_context_new();
    kiln_tensor *t = tt(ctx, KILN_F32, "2", (double[]){1, 2});
    char path[64];
    CHECK(test_write_temp(path, NULL, 0));
    CHECK_OK(ctx, kiln_safetensors_save(ctx, path, 1, (const char *[]){"w"}, &t));
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
    size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
    unsigned char got[256] = {0};
    FILE *f = fopen(path, "rb");
    size_t len = f ? fread(got, 1, sizeof got, f) : 0;
    if (f) fclose(f);
    CHECK_INT(len, 8 + padded + 8);
    CHECK_INT(got[0] | got[1] << 8, padded);
    CHECK(!memcmp(got + 8, want, wl));
    for (size_t i = wl; i < padded; i++) CHECK_INT(got[8 + i], ' ');
    float data[2];
    memcpy(data, got + 8 + padded, sizeof data);
    CHECK(data[0] == 1.0f && data[1] == 2.0f);
    /* no tensors at all */
    CHECK_OK(ctx, kiln_safetensors_save(ctx, path, 0, NULL, NULL));
    int cnt = -1;
    char **ln = NULL;
    kiln_tensor **lt = NULL;
    CHECK_OK(ctx, kiln_safetensors_load(ctx, path, &cnt, &ln, &lt));
    CHECK_INT(cnt, 0);
    CHECK(ln && lt);
    free_loaded(cnt, ln, lt);
    kiln_tensor_release(t);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(safetensors_load_handwritten) {
    /* Offsets out of header order, whitespace, metadata last, escapes incl. a surrogate pair, a
     * bool byte other than 0/1, and keys in another order. */
    const char *header = " { \"b\" : {\"shape\": [], \"dtype\": \"BOOL\", \"data_offsets\": [4, 5]},\n"
                         "\"a\\u00e9\\ud83d\\ude00\\/\" : {\"data_offsets\":[0,4],\"dtype\":\"I32\",\"shape\":[1]},"
                         "\"__metadata__\": {\"k\\n\": \"v\", \"format\": \"pt\"} }   ";
    unsigned char img[512], data[5] = {7, 0, 0, 0, 9};
    size_t n = craft(img, header, data, sizeof data);
    char path[64];
    CHECK(test_write_temp(path, img, n));
    kiln_context *ctx = kiln_context_new();
    int cnt = 0;
    char **ln = NULL;
    kiln_tensor **lt = NULL;
    CHECK_OK(ctx, kiln_safetensors_load(ctx, path, &cnt, &ln, &lt));
    CHECK_INT(cnt, 2);
    if (cnt == 2) {
        CHECK_STR(ln[0], "b");
        CHECK_STR(ln[1], "a\xc3\xa9\xf0\x9f\x98\x80/");
        CHECK_INT(kiln_tensor_dtype(lt[0]), KILN_BOOL);
        CHECK_INT(kiln_tensor_ndim(lt[0]), 0);
        CHECK_INT(((unsigned char *)kiln_tensor_data(lt[0]))[0], 1);
        CHECK_INT(kiln_tensor_dtype(lt[1]), KILN_I32);
        CHECK_INT(((int32_t *)kiln_tensor_data(lt[1]))[0], 7);
    }
    free_loaded(cnt, ln, lt);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(safetensors_save_errors) {
    kiln_context *ctx = kiln_context_new();
    kiln_tensor *t = tt(ctx, KILN_F32, "1", (double[]){1});
    kiln_tensor *ts[2] = {t, t};
    char path[64];
    CHECK(test_write_temp(path, NULL, 0));
    CHECK_ERR(ctx, kiln_safetensors_save(ctx, path, 2, (const char *[]){"x", "x"}, ts), KILN_ERR_VALUE,
              "duplicate tensor name 'x'");
    CHECK_ERR(ctx, kiln_safetensors_save(ctx, path, 1, (const char *[]){"__metadata__"}, ts), KILN_ERR_VALUE,
              "reserved");
    CHECK_ERR(ctx, kiln_safetensors_save(ctx, path, 1, (const char *[]){NULL}, ts), KILN_ERR_VALUE, "NULL name");
    CHECK_ERR(ctx, kiln_safetensors_save(ctx, path, -1, NULL, NULL), KILN_ERR_VALUE, "bad tensor list");
    CHECK_ERR(ctx, kiln_safetensors_save(ctx, "/nonexistent-dir/x.safetensors", 1, (const char *[]){"x"}, ts),
              KILN_ERR_IO, "cannot create '/nonexistent-dir/x.safetensors'");
    int cnt = 0;
    char **ln = NULL;
    kiln_tensor **lt = NULL;
    CHECK_ERR(ctx, kiln_safetensors_load(ctx, "/nonexistent-dir/x.safetensors", &cnt, &ln, &lt), KILN_ERR_IO,
              "cannot open");
    kiln_tensor_release(t);
    unlink(path);
    kiln_context_free(ctx);
}

TEST(safetensors_malformed_framing) {
    CHECK_BAD("", NULL, 0, KILN_ERR_VALUE, "malformed header at byte 8: header is not a JSON object");
    unsigned char img[16] = {1, 2, 3};
    check_bad(__FILE__, __LINE__, img, 3, KILN_ERR_VALUE, "truncated file");
    memset(img, 0, sizeof img);
    img[0] = 100; /* 100 header bytes declared, 8 present */
    check_bad(__FILE__, __LINE__, img, 16, KILN_ERR_VALUE, "truncated header (100 bytes declared, 8 in the file)");
    memset(img, 0xff, 8); /* 2^64-1 */
    check_bad(__FILE__, __LINE__, img, 16, KILN_ERR_VALUE, "is too large");
}

TEST(safetensors_malformed_json) {
    CHECK_BAD_HEADER("[]", "header is not a JSON object");
    CHECK_BAD_HEADER("{", "expected a string");
    CHECK_BAD_HEADER("{\"a\"}", "expected ':' after a key");
    CHECK_BAD_HEADER("{\"a", "unterminated string");
    CHECK_BAD_HEADER("{\"a\\", "unterminated string");
    CHECK_BAD_HEADER("{\"a\\x\":{}}", "bad escape in string");
    CHECK_BAD_HEADER("{\"a\\u12g4\":{}}", "bad \\u escape");
    CHECK_BAD_HEADER("{\"a\\u12\":{}}", "bad \\u escape");
    CHECK_BAD_HEADER("{\"a\\udc00\":{}}", "unpaired low surrogate");
    CHECK_BAD_HEADER("{\"a\\ud800x\":{}}", "unpaired high surrogate");
    CHECK_BAD_HEADER("{\"a\\ud800\\u0041\":{}}", "unpaired high surrogate");
    CHECK_BAD_HEADER("{\"a\\u0000\":{}}", "NUL characters");
    CHECK_BAD_HEADER("{\"a\tb\":{}}", "control character in string");
    CHECK_BAD_HEADER("{\"a\":[]}", "a tensor's entry must be an object");
    CHECK_BAD_HEADER("{\"a\":{}}", "lacks dtype, shape or data_offsets");
    CHECK_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",}}", "expected a string");
    CHECK_BAD_HEADER("{\"a\":{\"dtype\":\"F32\" \"shape\":[]}}", "expected ',' or '}' in a tensor's entry");
    CHECK_BAD_HEADER("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", "duplicate key in a tensor's entry");
    CHECK_BAD_HEADER("{\"a\":{\"offsets\":[0,0]}}", "unknown key in a tensor's entry");
    CHECK_BAD_HEADER("{\"a\":{\"dtype\":3}}", "expected a string");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":3}}", "shape must be an array");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[1 2]}}", "expected ',' or ']' in shape");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[-1]}}", "expected a non-negative integer");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[01]}}", "leading zeros");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[1.5]}}", "not a fraction");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[1e3]}}", "not a fraction");
    CHECK_BAD_HEADER("{\"a\":{\"shape\":[9223372036854775808]}}", "integer overflows int64");
    CHECK_BAD_HEADER("{\"a\":{\"data_offsets\":0}}", "data_offsets must be an array");
    CHECK_BAD_HEADER("{\"a\":{\"data_offsets\":[0]}}", "data_offsets must hold two integers");
    CHECK_BAD_HEADER("{\"a\":{\"data_offsets\":[0,0,0]}}", "data_offsets must hold two integers");
    CHECK_BAD_HEADER("{\"__metadata__\":[]}", "__metadata__ must be an object");
    CHECK_BAD_HEADER("{\"__metadata__\":{\"k\":1}}", "__metadata__ values must be strings");
    CHECK_BAD_HEADER("{\"__metadata__\":{\"k\":\"v\" \"j\":\"w\"}}", "expected ',' or '}' in __metadata__");
    CHECK_BAD_HEADER("{\"__metadata__\":{},\"__metadata__\":{}}", "duplicate __metadata__");
    CHECK_BAD_HEADER("{\"__metadata__\":{} \"a\":{}}", "expected ',' or '}' in the header object");
    CHECK_BAD_HEADER("{} x", "unexpected text after the header object");
    CHECK_BAD_HEADER("{}  \x01", "unexpected text after the header object");
}

#define ENTRY(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":[" shape "],\"data_offsets\":[" #b "," #e "]}"

TEST(safetensors_malformed_entries) {
    static const unsigned char z[64];
    CHECK_BAD("{" ENTRY("a", "F32", "1", 0, 4) "," ENTRY("a", "F32", "1", 4, 8) "}", z, 8, KILN_ERR_VALUE,
              "duplicate tensor name 'a'");
    CHECK_BAD("{" ENTRY("a", "F8_E4M3", "1", 0, 1) "}", z, 1, KILN_ERR_UNSUPPORTED,
              "tensor 'a' has dtype 'F8_E4M3', which kiln does not support");
    CHECK_BAD("{" ENTRY("a", "U8", "1,1,1,1,1,1,1,1,1", 0, 1) "}", z, 1, KILN_ERR_UNSUPPORTED,
              "tensor 'a' has 9 dimensions; kiln supports at most 8");
    CHECK_BAD("{" ENTRY("a", "F32", "4294967296,4294967296", 0, 0) "}", NULL, 0, KILN_ERR_VALUE,
              "shape [4294967296, 4294967296], which is too large");
    CHECK_BAD("{" ENTRY("a", "F64", "1152921504606846976", 0, 0) "}", NULL, 0, KILN_ERR_VALUE, "too large");
    CHECK_BAD("{" ENTRY("a", "F32", "2", 0, 4) "}", z, 4, KILN_ERR_VALUE,
              "tensor 'a' (F32 [2]) needs 8 bytes but its data_offsets [0, 4] span 4");
    CHECK_BAD("{" ENTRY("a", "F32", "1", 4, 0) "}", z, 4, KILN_ERR_VALUE, "span -4");
    CHECK_BAD("{" ENTRY("a", "F32", "2", 0, 8) "}", z, 4, KILN_ERR_VALUE, "run past the end of the data (4 bytes");
    CHECK_BAD("{" ENTRY("a", "F32", "1", 0, 4) "," ENTRY("b", "F32", "1", 8, 12) "}", z, 12, KILN_ERR_VALUE,
              "tensor 'b' data_offsets [8, 12] leave a gap after byte 4");
    CHECK_BAD("{" ENTRY("a", "F32", "2", 0, 8) "," ENTRY("b", "F32", "1", 4, 8) "}", z, 8, KILN_ERR_VALUE,
              "overlap before byte 8");
    CHECK_BAD("{" ENTRY("a", "F32", "1", 4, 8) "}", z, 8, KILN_ERR_VALUE, "gap after byte 0");
    CHECK_BAD("{" ENTRY("a", "F32", "1", 0, 4) "}", z, 6, KILN_ERR_VALUE,
              "tensor data ends at byte 4 but the file holds 6 data bytes");
    CHECK_BAD("{}", z, 1, KILN_ERR_VALUE, "tensor data ends at byte 0 but the file holds 1");
}
