/* test_cuda_backend.c — tests of the CUDA backend library (libkiln_cuda.so, src/cuda/): NVRTC
 * compilation and its disk cache (no GPU needed: CI runs them), then on a GPU: devices, memory
 * pools, copies, kernel launches, cuBLASLt GEMMs against a CPU reference, CUDA graphs. */
#include "test.h"
#include "backend/backend.h"
#include "core/core.h"
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* The backend with NVRTC usable, or NULL after printing why the test is skipped. */
static const kiln_backend *nvrtc_backend(const char *test) {
    char why[512];
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    if (be && be->nvrtc_version(why, sizeof why)) {
        snprintf(why, sizeof why, "%s", be->last_error());
        be = NULL;
    }
    if (!be) printf("skip: %s: %s\n", test, why);
    return be;
}

/* The backend with a GPU, or NULL after printing why the test is skipped. */
static const kiln_backend *gpu_backend(const char *test) {
    char why[512];
    const kiln_backend *be = kiln_cuda_backend(why, sizeof why);
    if (!be) printf("skip: %s: no GPU: %s\n", test, why);
    return be;
}

/* A fresh directory under /tmp (path at least 64 bytes); removed by remove_dir. */
static bool make_temp_dir(char *path) {
    snprintf(path, 64, "/tmp/kiln_cuda_test_XXXXXX");
    return mkdtemp(path) != NULL;
}

static void remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    char file[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(path);
}

/* The one *.cubin in dir (file name into out, at least 512 bytes); how many there are. */
static int find_cubin(const char *dir, char *out) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 6 && !strcmp(e->d_name + len - 6, ".cubin")) {
            snprintf(out, 512, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static bool write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return !fclose(f) && ok;
}

/* float, __half and __nv_bfloat16 arithmetic: the headers NVRTC ships. */
static const char *const mixed_src =
    "#include <cuda_fp16.h>\n"
    "#include <cuda_bf16.h>\n"
    "extern \"C\" __global__ void mixed(const float *x, __half *h, __nv_bfloat16 *b, float *y, int n) {\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i >= n) return;\n"
    "    h[i] = __float2half(x[i]) * __float2half(2.0f);\n"
    "    b[i] = __float2bfloat16(x[i]) + __float2bfloat16(1.0f);\n"
    "    y[i] = __half2float(h[i]) + __bfloat162float(b[i]) + expf(x[i]);\n"
    "}\n";

/* ---- NVRTC: runs without a GPU ---- */

TEST(cuda_nvrtc_version) {
    const kiln_backend *be = nvrtc_backend("cuda_nvrtc_version");
    if (!be) return;
    char v[64];
    CHECK_INT(be->nvrtc_version(v, sizeof v), 0);
    CHECK(!strncmp(v, "NVRTC ", 6));
    CHECK_STR(be->name, "cuda");
}

TEST(cuda_nvrtc_compiles_half_and_bf16) {
    const kiln_backend *be = nvrtc_backend("cuda_nvrtc_compiles_half_and_bf16");
    if (!be) return;
    void *img = NULL;
    size_t size = 0;
    int rc = be->nvrtc_compile(mixed_src, 90, NULL, 0, &img, &size);
    if (rc) test_fail(__FILE__, __LINE__, "compile failed: %s", be->last_error());
    CHECK(img && size > 4 && !memcmp(img, "\x7f" "ELF", 4)); /* a cubin is an ELF image */
    be->free_image(img);
    CHECK_INT(be->nvrtc_compile(mixed_src, 3, NULL, 0, &img, &size), -1);
    CHECK(strstr(be->last_error(), "invalid architecture 3") != NULL);
}

/* FNV-1a 64, the cache file's image checksum (src/cuda/nvrtc.c). */
static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

TEST(cuda_nvrtc_cache_hit_and_rebuild) {
    const kiln_backend *be = nvrtc_backend("cuda_nvrtc_cache_hit_and_rebuild");
    char dir[64], path[512];
    if (!be || !make_temp_dir(dir)) return;
    void *img1 = NULL, *img2 = NULL, *img3 = NULL, *img4 = NULL;
    size_t n1 = 0, n2 = 0, n3 = 0, n4 = 0, nfile = 0, nfile2 = 0;
    CHECK_INT(be->nvrtc_compile(mixed_src, 90, dir, 0, &img1, &n1), 0);
    CHECK_INT(find_cubin(dir, path), 1);
    unsigned char *file = read_file(path, &nfile);
    CHECK(file && nfile == 32 + n1 + 16 && !memcmp(file, "KILNCUB1", 8) && !memcmp(file + 32, img1, n1));

    /* the second compile is served by the file: a hand-edited but consistent entry proves it */
    if (file && nfile == 32 + n1 + 16) {
        file[32 + n1 / 2] ^= 0x55;
        uint64_t sum = fnv1a(file + 32, n1);
        memcpy(file + 32 + n1, &sum, 8);
        CHECK(write_file(path, file, nfile));
        CHECK_INT(be->nvrtc_compile(mixed_src, 90, dir, 0, &img2, &n2), 0);
        CHECK(n2 == n1 && img2 && !memcmp(img2, file + 32, n1));

        /* a corrupt entry (checksum no longer matches) is rebuilt and rewritten */
        file[32 + n1 / 2] ^= 0x0f;
        CHECK(write_file(path, file, nfile));
        CHECK_INT(be->nvrtc_compile(mixed_src, 90, dir, 0, &img3, &n3), 0);
        CHECK(n3 == n1 && img3 && !memcmp(img3, img1, n1));
        unsigned char *rewritten = read_file(path, &nfile2);
        CHECK(rewritten && nfile2 == nfile && !memcmp(rewritten + 32, img1, n1));
        free(rewritten);

        /* a truncated entry too */
        CHECK(write_file(path, file, 40));
        CHECK_INT(be->nvrtc_compile(mixed_src, 90, dir, 0, &img4, &n4), 0);
        CHECK(n4 == n1 && img4 && !memcmp(img4, img1, n1));
    }
    /* another architecture is another entry */
    be->free_image(img2);
    img2 = NULL;
    CHECK_INT(be->nvrtc_compile(mixed_src, 80, dir, 0, &img2, &n2), 0);
    CHECK_INT(find_cubin(dir, path), 2);
    free(file);
    be->free_image(img1);
    be->free_image(img2);
    be->free_image(img3);
    be->free_image(img4);
    remove_dir(dir);
}

TEST(cuda_nvrtc_error_names_the_line) {
    const kiln_backend *be = nvrtc_backend("cuda_nvrtc_error_names_the_line");
    if (!be) return;
    const char *src = "extern \"C\" __global__ void bad(float *x) {\n"
                      "    int i = threadIdx.x;\n"
                      "    x[i] = undefined_name + 1.0f;\n"
                      "}\n";
    void *img = (void *)1;
    size_t size = 1;
    CHECK_INT(be->nvrtc_compile(src, 90, NULL, 0, &img, &size), -1);
    CHECK(img == NULL && size == 0);
    const char *msg = be->last_error();
    CHECK(!strncmp(msg, "NVRTC: ", 7));
    if (!strstr(msg, "(3)") || !strstr(msg, "undefined_name")) test_fail(__FILE__, __LINE__, "log: %s", msg);
}

/* Without a GPU every device entry fails with a message instead of crashing. */
TEST(cuda_no_gpu_errors) {
    char why[512];
    const kiln_backend *be = kiln_cuda_backend_nogpu(why, sizeof why);
    if (!be) {
        printf("skip: cuda_no_gpu_errors: %s\n", why);
        return;
    }
    if (kiln_cuda_backend(why, sizeof why)) return; /* a GPU is there: covered by the GPU tests */
    CHECK(be->alloc(0, 16) == NULL);
    CHECK(strstr(be->last_error(), "not initialised") != NULL);
    CHECK_INT(be->synchronize(0), -1);
    CHECK_INT(be->device_count(), 0);
}

/* ---- GPU ---- */

TEST(cuda_device_info) {
    const kiln_backend *be = gpu_backend("cuda_device_info");
    if (!be) return;
    CHECK(be->device_count() >= 1);
    char buf[256];
    CHECK_INT(be->device_describe(0, buf, sizeof buf), 0);
    CHECK(strstr(buf, ", sm_") && strstr(buf, " SMs, ") && strstr(buf, " GiB"));
    CHECK(be->device_arch(0) >= 50);
    CHECK_INT(be->device_describe(be->device_count(), buf, sizeof buf), -1);
    CHECK(strstr(be->last_error(), "out of range") != NULL);
}

static kiln_memory_stats dev_stats(const kiln_backend *be) {
    kiln_memory_stats s;
    memset(&s, 0, sizeof s);
    if (be->get_stats(0, &s)) test_fail(__FILE__, __LINE__, "get_stats: %s", be->last_error());
    return s;
}

TEST(cuda_memory_pools) {
    const kiln_backend *be = gpu_backend("cuda_memory_pools");
    if (!be) return;
    CHECK_INT(be->set_pool(0, KILN_POOL_PAGE), 0);
    CHECK_INT(be->trim(0), 0);
    kiln_memory_stats s0 = dev_stats(be), s;
    CHECK_INT(s0.pool, KILN_POOL_PAGE);

    /* page pool: 1000 bytes take a 1024-byte unit; freed, it is reused for the same size */
    void *a = be->alloc(0, 1000);
    CHECK(a && (uintptr_t)a % 256 == 0);
    s = dev_stats(be);
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 1000);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 1024);
    CHECK_INT(s.n_allocs - s0.n_allocs, 1);
    be->free(0, a);
    void *b = be->alloc(0, 1000);
    CHECK(b == a);
    s = dev_stats(be);
    CHECK_INT(s.n_reused - s0.n_reused, 1);
    CHECK_INT(s.n_frees - s0.n_frees, 1);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 1024);
    void *big = be->alloc(0, (3 << 20) + 5); /* 3 MiB + 5 -> two 2 MiB units */
    CHECK(big != NULL);
    CHECK_INT(dev_stats(be).bytes_reserved - s0.bytes_reserved, 1024 + (4 << 20));

    /* no pool: the driver's stream-ordered allocator; a block frees back to its own pool */
    CHECK_INT(be->set_pool(0, KILN_POOL_NONE), 0);
    void *c = be->alloc(0, 3000);
    CHECK(c && (uintptr_t)c % 256 == 0);
    s = dev_stats(be);
    CHECK_INT(s.pool, KILN_POOL_NONE);
    CHECK_INT(s.bytes_in_use - s0.bytes_in_use, 1000 + (3 << 20) + 5 + 3000);
    CHECK_INT(be->reset_peak(0), 0);
    CHECK_INT(be->set_pool(0, KILN_POOL_PAGE), 0);
    be->free(0, c); /* back to the driver, not into the page cache */
    be->free(0, b);
    be->free(0, big);
    s = dev_stats(be);
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.peak_bytes, s0.bytes_in_use + 1000 + (3 << 20) + 5 + 3000);
    CHECK_INT(s.bytes_reserved - s0.bytes_reserved, 1024 + (4 << 20));
    CHECK_INT(s.n_allocs - s0.n_allocs, 4);
    CHECK_INT(s.n_frees - s0.n_frees, 4);
    CHECK_INT(be->trim(0), 0);
    CHECK_INT(dev_stats(be).bytes_reserved, s0.bytes_reserved);

    /* a pointer that is not live is reported, not freed twice */
    be->free(0, a);
    CHECK(strstr(be->last_error(), "not a live allocation") != NULL);
    CHECK_INT(dev_stats(be).n_frees - s0.n_frees, 4);
}

/* Many live blocks (the pointer table grows and deletes out of order) in both pools. */
TEST(cuda_memory_many_blocks) {
    const kiln_backend *be = gpu_backend("cuda_memory_many_blocks");
    if (!be) return;
    enum { N = 1500 };
    void **p = calloc(N, sizeof *p);
    if (!p) return;
    kiln_memory_stats s0 = dev_stats(be);
    int64_t total = 0;
    for (int i = 0; i < N; i++) {
        CHECK_INT(be->set_pool(0, i % 3 ? KILN_POOL_PAGE : KILN_POOL_NONE), 0);
        size_t bytes = (size_t)(i % 97) * 40 + 1;
        p[i] = be->alloc(0, bytes);
        CHECK(p[i] != NULL);
        total += (int64_t)bytes;
    }
    CHECK_INT(dev_stats(be).bytes_in_use - s0.bytes_in_use, total);
    for (int i = 0; i < N; i++) be->free(0, p[(i * 7) % N]); /* 7 is coprime to N: each once */
    kiln_memory_stats s = dev_stats(be);
    CHECK_INT(s.bytes_in_use, s0.bytes_in_use);
    CHECK_INT(s.n_frees - s0.n_frees, N);
    CHECK_INT(be->set_pool(0, KILN_POOL_PAGE), 0);
    CHECK_INT(be->trim(0), 0);
    free(p);
}

TEST(cuda_copies_and_memset) {
    const kiln_backend *be = gpu_backend("cuda_copies_and_memset");
    if (!be) return;
    enum { N = 100000 };
    unsigned char *host = malloc(N), *back = malloc(N);
    for (int i = 0; i < N; i++) host[i] = (unsigned char)(i * 7 + 3);
    void *d1 = be->alloc(0, N), *d2 = be->alloc(0, N);
    CHECK(host && back && d1 && d2);
    if (host && back && d1 && d2) {
        CHECK_INT(be->copy_h2d(0, d1, host, N), 0);
        CHECK_INT(be->copy_d2d(0, d2, d1, N), 0);
        CHECK_INT(be->memset_d(0, d1, 0xab, N / 2), 0);
        CHECK_INT(be->copy_d2h(0, back, d2, N), 0);
        CHECK(!memcmp(back, host, N));
        CHECK_INT(be->copy_d2h(0, back, d1, N), 0);
        bool ok = true;
        for (int i = 0; i < N; i++) ok &= back[i] == (i < N / 2 ? 0xab : host[i]);
        CHECK(ok);
        CHECK_INT(be->synchronize(0), 0);
    }
    be->free(0, d1);
    be->free(0, d2);
    free(host);
    free(back);
}

/* Compiles src for device 0 and loads it; NULL (and a recorded failure) if that fails. */
static kiln_backend_module *load_source(const kiln_backend *be, const char *src) {
    void *img = NULL;
    size_t size = 0;
    kiln_backend_module *m = NULL;
    if (be->nvrtc_compile(src, be->device_arch(0), NULL, 0, &img, &size) || be->module_load(0, img, &m))
        test_fail(__FILE__, __LINE__, "compile/load: %s", be->last_error());
    be->free_image(img);
    return m;
}

static kiln_backend_fn get_fn(const kiln_backend *be, kiln_backend_module *m, const char *name) {
    kiln_backend_fn fn = NULL;
    if (m && be->module_get(m, name, &fn)) test_fail(__FILE__, __LINE__, "module_get %s: %s", name, be->last_error());
    return fn;
}

static const char *const kernels_src =
    "extern \"C\" __global__ void saxpy(float a, const float *x, float *y, int n) {\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n) y[i] = a * x[i] + y[i];\n"
    "}\n"
    "extern \"C\" __global__ void add_scalar(float *y, float v, int n) {\n"
    "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    if (i < n) y[i] += v;\n"
    "}\n"
    "extern \"C\" __global__ void reverse_shared(const float *x, float *y, int n) {\n"
    "    extern __shared__ float s[];\n"
    "    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = x[i];\n"
    "    __syncthreads();\n"
    "    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = s[n - 1 - i];\n"
    "}\n";

TEST(cuda_launch_kernels) {
    const kiln_backend *be = gpu_backend("cuda_launch_kernels");
    if (!be) return;
    enum { N = 20000 }; /* 80 000 bytes of shared memory in reverse_shared: more than 48 KiB */
    kiln_backend_module *m = load_source(be, kernels_src), *mm = load_source(be, mixed_src);
    kiln_backend_fn saxpy = get_fn(be, m, "saxpy"), rev = get_fn(be, m, "reverse_shared");
    kiln_backend_fn mixed = get_fn(be, mm, "mixed");
    kiln_backend_fn missing = NULL;
    if (m) {
        CHECK_INT(be->module_get(m, "no_such_kernel", &missing), -1);
        CHECK(strstr(be->last_error(), "no_such_kernel") != NULL);
    }
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *out = malloc(N * sizeof *out);
    float *dx = be->alloc(0, N * sizeof *x), *dy = be->alloc(0, N * sizeof *y);
    void *dh = be->alloc(0, N * 2), *db = be->alloc(0, N * 2);
    if (saxpy && rev && mixed && x && y && out && dx && dy && dh && db) {
        for (int i = 0; i < N; i++) x[i] = (float)i * 0.25f, y[i] = 1.0f - (float)i;
        CHECK_INT(be->copy_h2d(0, dx, x, N * sizeof *x), 0);
        CHECK_INT(be->copy_h2d(0, dy, y, N * sizeof *y), 0);
        float a = 3.0f;
        int n = N;
        void *args[] = {&a, &dx, &dy, &n};
        unsigned grid[3] = {(N + 255) / 256, 1, 1}, block[3] = {256, 1, 1};
        CHECK_INT(be->launch(0, saxpy, grid, block, 0, args), 0);
        CHECK_INT(be->copy_d2h(0, out, dy, N * sizeof *out), 0);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += out[i] != 3.0f * x[i] + y[i];
        CHECK_INT(bad, 0);

        unsigned one[3] = {1, 1, 1};
        void *rargs[] = {&dx, &dy, &n};
        if (be->launch(0, rev, one, block, N * sizeof(float), rargs))
            test_fail(__FILE__, __LINE__, "launch with %zu shared bytes: %s", N * sizeof(float), be->last_error());
        CHECK_INT(be->copy_d2h(0, out, dy, N * sizeof *out), 0);
        bad = 0;
        for (int i = 0; i < N; i++) bad += out[i] != x[N - 1 - i];
        CHECK_INT(bad, 0);

        void *margs[] = {&dx, &dh, &db, &dy, &n};
        CHECK_INT(be->launch(0, mixed, grid, block, 0, margs), 0);
        CHECK_INT(be->copy_d2h(0, out, dy, N * sizeof *out), 0);
        bad = 0;
        for (int i = 0; i < 200; i++) { /* x = i/4 is exact in f16 and bf16 for i < 200 */
            double want = 2.0 * x[i] + (x[i] + 1.0) + exp(x[i]);
            bad += fabs(out[i] - want) > 1e-5 * (1 + fabs(want)) + 0.02;
        }
        CHECK_INT(bad, 0);
    }
    be->free(0, dx);
    be->free(0, dy);
    be->free(0, dh);
    be->free(0, db);
    free(x);
    free(y);
    free(out);
    be->module_free(m);
    be->module_free(mm);
}

TEST(cuda_graph_capture_replay) {
    const kiln_backend *be = gpu_backend("cuda_graph_capture_replay");
    if (!be) return;
    enum { N = 1000 };
    kiln_backend_module *m = load_source(be, kernels_src);
    kiln_backend_fn saxpy = get_fn(be, m, "saxpy"), add = get_fn(be, m, "add_scalar");
    float x[N], y[N], out[N];
    float *dx = be->alloc(0, sizeof x), *dy = be->alloc(0, sizeof y);
    if (saxpy && add && dx && dy) {
        for (int i = 0; i < N; i++) x[i] = (float)(i % 17), y[i] = (float)i;
        CHECK_INT(be->copy_h2d(0, dx, x, sizeof x), 0);
        CHECK_INT(be->copy_h2d(0, dy, y, sizeof y), 0);
        float a = 2.0f, v = 0.5f;
        int n = N;
        void *sargs[] = {&a, &dx, &dy, &n}, *aargs[] = {&dy, &v, &n};
        unsigned grid[3] = {(N + 127) / 128, 1, 1}, block[3] = {128, 1, 1};
        kiln_backend_graph *g = NULL;
        CHECK_INT(be->graph_begin(0), 0);
        CHECK_INT(be->launch(0, saxpy, grid, block, 0, sargs), 0); /* y += 2x */
        CHECK_INT(be->launch(0, add, grid, block, 0, aargs), 0);   /* y += 0.5 */
        CHECK_INT(be->copy_d2d(0, dx, dy, sizeof y), 0);            /* x = y */
        if (be->graph_end(0, &g)) test_fail(__FILE__, __LINE__, "graph_end: %s", be->last_error());
        CHECK(g != NULL);
        /* capturing ran nothing */
        CHECK_INT(be->copy_d2h(0, out, dy, sizeof out), 0);
        CHECK(!memcmp(out, y, sizeof y));
        if (g) {
            CHECK_INT(be->graph_launch(0, g), 0);
            CHECK_INT(be->graph_launch(0, g), 0);
            CHECK_INT(be->synchronize(0), 0);
            CHECK_INT(be->copy_d2h(0, out, dy, sizeof out), 0);
            int bad = 0;
            for (int i = 0; i < N; i++) {
                float y1 = y[i] + 2 * x[i] + 0.5f, y2 = y1 + 2 * y1 + 0.5f; /* second replay: x = y1 */
                bad += out[i] != y2;
            }
            CHECK_INT(bad, 0);
        }
        be->graph_free(g);
    }
    be->free(0, dx);
    be->free(0, dy);
    be->module_free(m);
}

/* ---- cuBLASLt GEMM against a CPU reference ---- */

/* Deterministic values in [-1, 1). */
static double rnd(uint64_t *s) {
    *s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return (double)(*s >> 11) / (double)(UINT64_C(1) << 52) - 1.0;
}

/* n values of dtype dt on the device, from v[] rounded to dt in place (so the reference sees
 * exactly what the GPU reads). */
static void *upload(const kiln_backend *be, kiln_dtype dt, double *v, int64_t n) {
    size_t es = kiln_dtype_size(dt);
    void *bytes = malloc((size_t)n * es), *d = be->alloc(0, (size_t)n * es);
    if (bytes && d) {
        for (int64_t i = 0; i < n; i++) {
            kiln_store_f64(dt, bytes, i, v[i]);
            v[i] = kiln_load_f64(dt, bytes, i);
        }
        if (be->copy_h2d(0, d, bytes, (size_t)n * es)) test_fail(__FILE__, __LINE__, "h2d: %s", be->last_error());
    }
    free(bytes);
    return d;
}

static double *download(const kiln_backend *be, kiln_dtype dt, const void *d, int64_t n) {
    size_t es = kiln_dtype_size(dt);
    void *bytes = malloc((size_t)n * es);
    double *v = malloc((size_t)n * sizeof *v);
    if (bytes && v && !be->copy_d2h(0, bytes, d, (size_t)n * es))
        for (int64_t i = 0; i < n; i++) v[i] = kiln_load_f64(dt, bytes, i);
    free(bytes);
    return v;
}

static double gelu(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_grad(double x) {
    double t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}

/* One GEMM case: operands on host (rounded) and device, in the layout the descriptor says. */
typedef struct gemm_case {
    kiln_gemm_desc g;
    double *a, *b, *c, *bias; /* host copies */
    int64_t na, nb, nc;
} gemm_case;

/* Element (i,p) of op(A) of batch z, (p,j) of op(B). */
static double op_a(const gemm_case *t, int64_t z, int64_t i, int64_t p) {
    const kiln_gemm_desc *g = &t->g;
    return t->a[z * g->stride_a + (g->trans_a ? p * g->lda + i : i * g->lda + p)];
}
static double op_b(const gemm_case *t, int64_t z, int64_t p, int64_t j) {
    const kiln_gemm_desc *g = &t->g;
    return t->b[z * g->stride_b + (g->trans_b ? j * g->ldb + p : p * g->ldb + j)];
}

/* Sets up matrices of random values; lead dims padded by `pad` elements; stride 0 for A or B
 * when bcast_a / bcast_b. */
static void case_make(const kiln_backend *be, gemm_case *t, kiln_dtype dt, bool tf32, bool ta, bool tb, int64_t m,
                      int64_t n, int64_t k, int64_t batch, bool bcast_a, bool bcast_b, int64_t pad, uint64_t seed) {
    memset(t, 0, sizeof *t);
    kiln_gemm_desc *g = &t->g;
    g->dtype = dt, g->tf32 = tf32, g->trans_a = ta, g->trans_b = tb;
    g->m = m, g->n = n, g->k = k, g->batch = batch;
    g->lda = (ta ? m : k) + pad, g->ldb = (tb ? k : n) + pad, g->ldc = n + pad;
    int64_t size_a = (ta ? k : m) * g->lda, size_b = (tb ? n : k) * g->ldb, size_c = m * g->ldc;
    g->stride_a = bcast_a ? 0 : size_a, g->stride_b = bcast_b ? 0 : size_b, g->stride_c = size_c;
    t->na = size_a * (bcast_a ? 1 : batch), t->nb = size_b * (bcast_b ? 1 : batch), t->nc = size_c * batch;
    t->a = malloc((size_t)t->na * sizeof(double));
    t->b = malloc((size_t)t->nb * sizeof(double));
    t->c = malloc((size_t)t->nc * sizeof(double));
    t->bias = malloc((size_t)(m > n ? m : n) * sizeof(double));
    uint64_t s = seed;
    for (int64_t i = 0; i < t->na; i++) t->a[i] = rnd(&s);
    for (int64_t i = 0; i < t->nb; i++) t->b[i] = rnd(&s);
    for (int64_t i = 0; i < t->nc; i++) t->c[i] = rnd(&s);
    for (int64_t i = 0; i < (m > n ? m : n); i++) t->bias[i] = rnd(&s);
    g->a = upload(be, dt, t->a, t->na);
    g->b = upload(be, dt, t->b, t->nb);
    g->c = upload(be, dt, t->c, t->nc);
    g->alpha = 1.0f, g->beta = 0.0f;
}

static void case_free(const kiln_backend *be, gemm_case *t) {
    be->free(0, (void *)t->g.a);
    be->free(0, (void *)t->g.b);
    be->free(0, t->g.c);
    free(t->a);
    free(t->b);
    free(t->c);
    free(t->bias);
}

/* The reference product alpha * op(A) op(B) + beta * C0 (+ bias[j]) at (z, i, j). */
static double ref_pre(const gemm_case *t, int64_t z, int64_t i, int64_t j, bool bias) {
    const kiln_gemm_desc *g = &t->g;
    double acc = 0;
    for (int64_t p = 0; p < g->k; p++) acc += op_a(t, z, i, p) * op_b(t, z, p, j);
    acc = g->alpha * acc + g->beta * t->c[z * g->stride_c + i * g->ldc + j];
    return acc + (bias ? t->bias[j] : 0);
}

static double tolerance(const kiln_gemm_desc *g) {
    return g->dtype == KILN_BF16 ? 3e-2 : g->dtype == KILN_F16 ? 5e-3 : g->tf32 ? 5e-3 : 1e-5;
}

/* Runs the GEMM; compares C with f(pre) for every element. False if the GEMM failed. */
static bool case_check(const kiln_backend *be, gemm_case *t, const char *label, int line) {
    const kiln_gemm_desc *g = &t->g;
    bool bias = g->bias != NULL && g->epilogue != KILN_EPI_BGRAD;
    if (be->gemm(0, g)) {
        test_fail(__FILE__, line, "%s: gemm failed: %s", label, be->last_error());
        return false;
    }
    double *c = download(be, g->dtype, g->c, t->nc);
    if (!c) return false;
    int bad = 0;
    double tol = tolerance(g);
    for (int64_t z = 0; z < g->batch; z++)
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++) {
                double pre = ref_pre(t, z, i, j, bias), want = pre;
                if (g->epilogue == KILN_EPI_RELU || g->epilogue == KILN_EPI_RELU_AUX) want = pre > 0 ? pre : 0;
                if (g->epilogue == KILN_EPI_GELU || g->epilogue == KILN_EPI_GELU_AUX) want = gelu(pre);
                double got = c[z * g->stride_c + i * g->ldc + j];
                if (!(fabs(got - want) <= tol * (1 + fabs(want))) && bad++ < 3)
                    test_fail(__FILE__, line, "%s: C[%lld,%lld,%lld] = %.6g, expected %.6g", label, (long long)z,
                              (long long)i, (long long)j, got, want);
            }
    free(c);
    return true;
}

TEST(cuda_gemm_dtypes_and_transposes) {
    const kiln_backend *be = gpu_backend("cuda_gemm_dtypes_and_transposes");
    if (!be) return;
    static const struct { kiln_dtype dt; bool tf32; const char *name; } types[] = {
        {KILN_F32, false, "f32"}, {KILN_F32, true, "tf32"}, {KILN_F16, false, "f16"}, {KILN_BF16, false, "bf16"}};
    for (int ty = 0; ty < 4; ty++)
        for (int tr = 0; tr < 4; tr++) {
            gemm_case t;
            bool ta = tr & 1, tb = tr >> 1;
            case_make(be, &t, types[ty].dt, types[ty].tf32, ta, tb, 24, 40, 36, 1, false, false, 8, 17 + (uint64_t)tr);
            char label[64];
            snprintf(label, sizeof label, "%s trans_a=%d trans_b=%d", types[ty].name, ta, tb);
            case_check(be, &t, label, __LINE__);
            case_free(be, &t);
        }
    /* alpha and beta, unpadded */
    gemm_case t;
    case_make(be, &t, KILN_F32, false, false, true, 7, 9, 5, 1, false, false, 0, 99);
    t.g.alpha = 0.5f, t.g.beta = 2.0f;
    case_check(be, &t, "f32 alpha=0.5 beta=2", __LINE__);
    /* the same shape again is served by the cached plan (beta 0: C now holds the last result) */
    t.g.beta = 0.0f;
    case_check(be, &t, "f32 alpha=0.5 beta=0 (cached plan)", __LINE__);
    case_free(be, &t);
}

TEST(cuda_gemm_batched_broadcast) {
    const kiln_backend *be = gpu_backend("cuda_gemm_batched_broadcast");
    if (!be) return;
    gemm_case t;
    case_make(be, &t, KILN_F32, false, false, false, 16, 24, 32, 3, false, true, 0, 5);
    case_check(be, &t, "f32 batch 3, B broadcast", __LINE__);
    case_free(be, &t);
    case_make(be, &t, KILN_BF16, false, true, false, 16, 24, 32, 4, true, false, 8, 6);
    case_check(be, &t, "bf16 batch 4, A broadcast, trans_a", __LINE__);
    case_free(be, &t);
    case_make(be, &t, KILN_F16, false, false, true, 8, 16, 24, 2, false, false, 0, 7);
    case_check(be, &t, "f16 batch 2", __LINE__);
    case_free(be, &t);
}

TEST(cuda_gemm_epilogues) {
    const kiln_backend *be = gpu_backend("cuda_gemm_epilogues");
    if (!be) return;
    static const kiln_dtype dts[] = {KILN_F32, KILN_BF16};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = dts[d];
        char label[64];
        static const kiln_gemm_epilogue forward[] = {KILN_EPI_BIAS, KILN_EPI_RELU, KILN_EPI_GELU};
        for (int e = 0; e < 3; e++)
            for (int with_bias = e == 0; with_bias < 2; with_bias++) {
                gemm_case t;
                case_make(be, &t, dt, false, false, false, 32, 48, 40, 1, false, false, 0, 30 + (uint64_t)e);
                t.g.epilogue = forward[e];
                if (with_bias) t.g.bias = upload(be, dt, t.bias, t.g.n);
                snprintf(label, sizeof label, "%s epilogue %d bias=%d", kiln_dtype_name(dt), (int)forward[e], with_bias);
                case_check(be, &t, label, __LINE__);
                be->free(0, (void *)t.g.bias);
                case_free(be, &t);
            }
    }
}

/* RELU_AUX / GELU_AUX forward (with bias), then DRELU / DGELU of another product with that aux. */
static void aux_pair(const kiln_backend *be, kiln_dtype dt, bool gelu_form) {
    enum { M = 32, N = 64, K = 40 };
    char label[64];
    gemm_case f, b;
    case_make(be, &f, dt, false, false, false, M, N, K, 1, false, false, 0, 71);
    int64_t ld_aux = gelu_form ? N : 128; /* GELU: elements; ReLU: bits of the mask (multiple of 128) */
    size_t aux_bytes = gelu_form ? (size_t)(M * ld_aux) * kiln_dtype_size(dt) : (size_t)(M * ld_aux / 8);
    void *aux = be->alloc(0, aux_bytes);
    f.g.epilogue = gelu_form ? KILN_EPI_GELU_AUX : KILN_EPI_RELU_AUX;
    f.g.bias = upload(be, dt, f.bias, N);
    f.g.aux = aux, f.g.ld_aux = ld_aux;
    snprintf(label, sizeof label, "%s %s forward", kiln_dtype_name(dt), gelu_form ? "gelu_aux" : "relu_aux");
    bool forward_ok = case_check(be, &f, label, __LINE__);
    double tol = tolerance(&f.g);
    double *pre_dev = gelu_form && forward_ok ? download(be, dt, aux, M * ld_aux) : NULL;
    if (gelu_form && pre_dev) { /* aux holds the pre-activation */
        int bad = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double want = ref_pre(&f, 0, i, j, true);
                bad += !(fabs(pre_dev[i * ld_aux + j] - want) <= tol * (1 + fabs(want)));
            }
        CHECK_INT(bad, 0);
    }

    case_make(be, &b, dt, false, true, false, M, N, K, 1, false, false, 0, 72);
    b.g.epilogue = gelu_form ? KILN_EPI_DGELU : KILN_EPI_DRELU;
    b.g.aux = aux, b.g.ld_aux = ld_aux;
    snprintf(label, sizeof label, "%s %s backward", kiln_dtype_name(dt), gelu_form ? "dgelu" : "drelu");
    if (!forward_ok) {
        /* nothing to check against */
    } else if (be->gemm(0, &b.g)) {
        test_fail(__FILE__, __LINE__, "%s: %s", label, be->last_error());
    } else {
        double *c = download(be, dt, b.g.c, b.nc);
        int bad = 0;
        for (int64_t i = 0; c && i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double pre = ref_pre(&f, 0, i, j, true), prod = ref_pre(&b, 0, i, j, false);
                if (!gelu_form && fabs(pre) < 1e-3) continue; /* the mask's sign is ambiguous here */
                double want = prod * (gelu_form ? gelu_grad(pre_dev ? pre_dev[i * ld_aux + j] : pre) : pre > 0);
                /* cuBLASLt's GELU derivative is its own approximation: 1e-4 apart from the formula */
                double tol_b = gelu_form ? fmax(tol, 1e-4) : tol;
                if (!(fabs(c[i * b.g.ldc + j] - want) <= tol_b * (1 + fabs(want))) && bad++ < 3)
                    test_fail(__FILE__, __LINE__, "%s: C[%d,%d] = %.6g, expected %.6g", label, (int)i, (int)j,
                              c[i * b.g.ldc + j], want);
            }
        CHECK(c != NULL);
        free(c);
    }
    free(pre_dev);
    be->free(0, aux);
    be->free(0, (void *)f.g.bias);
    case_free(be, &f);
    case_free(be, &b);
}

TEST(cuda_gemm_aux_and_backward) {
    const kiln_backend *be = gpu_backend("cuda_gemm_aux_and_backward");
    if (!be) return;
    aux_pair(be, KILN_F32, false);
    aux_pair(be, KILN_F32, true);
    aux_pair(be, KILN_BF16, false);
    aux_pair(be, KILN_BF16, true);
}

/* BGRAD: C = op(A) op(B) and bias_grad[i] = sum_k op(A)[i,k], one per output row. The linear
 * layer's weight gradient dW[out,in] = dY^T X (A = dY stored [batch,out], trans_a) must work;
 * with trans_a false cuBLASLt may have no kernel, which must then fail cleanly. */
TEST(cuda_gemm_bias_grad) {
    const kiln_backend *be = gpu_backend("cuda_gemm_bias_grad");
    if (!be) return;
    static const kiln_dtype dts[] = {KILN_F32, KILN_F16};
    for (int d = 0; d < 2; d++)
        for (int ta = 1; ta >= 0; ta--) {
            kiln_dtype dt = dts[d];
            gemm_case t;
            case_make(be, &t, dt, false, ta, false, 48, 32, 64, 1, false, false, 0, 90 + (uint64_t)ta);
            t.g.epilogue = KILN_EPI_BGRAD;
            void *bg = be->alloc(0, (size_t)t.g.m * kiln_dtype_size(dt));
            t.g.bias_grad = bg;
            char label[64];
            snprintf(label, sizeof label, "%s bgrad trans_a=%d", kiln_dtype_name(dt), ta);
            if (!ta && be->gemm(0, &t.g)) {
                CHECK(strstr(be->last_error(), "cuBLASLt") != NULL);
                printf("note: %s: %s\n", label, be->last_error());
            } else if (case_check(be, &t, label, __LINE__)) {
                double *got = download(be, dt, bg, t.g.m);
                int bad = 0;
                double tol = tolerance(&t.g);
                for (int64_t i = 0; got && i < t.g.m; i++) {
                    double want = 0;
                    for (int64_t p = 0; p < t.g.k; p++) want += op_a(&t, 0, i, p);
                    if (!(fabs(got[i] - want) <= tol * (1 + fabs(want))) && bad++ < 3)
                        test_fail(__FILE__, __LINE__, "%s: bias_grad[%d] = %.6g, expected %.6g", label, (int)i, got[i],
                                  want);
                }
                CHECK(got != NULL);
                free(got);
            }
            be->free(0, bg);
            case_free(be, &t);
        }
}

TEST(cuda_gemm_rejects_bad_descriptors) {
    const kiln_backend *be = gpu_backend("cuda_gemm_rejects_bad_descriptors");
    if (!be) return;
    gemm_case t;
    case_make(be, &t, KILN_F32, false, false, false, 4, 4, 4, 1, false, false, 0, 1);
    t.g.lda = 2;
    CHECK_INT(be->gemm(0, &t.g), -1);
    CHECK(strstr(be->last_error(), "leading dimension") && strstr(be->last_error(), "m=4 n=4 k=4"));
    t.g.lda = 4;
    t.g.epilogue = KILN_EPI_BIAS;
    CHECK_INT(be->gemm(0, &t.g), -1);
    CHECK(strstr(be->last_error(), "needs bias") != NULL);
    t.g.epilogue = KILN_EPI_NONE;
    t.g.dtype = KILN_F64;
    CHECK_INT(be->gemm(0, &t.g), -1);
    CHECK(strstr(be->last_error(), "f32, f16 or bf16") != NULL);
    t.g.dtype = KILN_F32;
    case_free(be, &t);
}
