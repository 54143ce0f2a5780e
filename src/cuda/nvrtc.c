/* nvrtc.c — CUDA C++ to cubin through NVRTC (loaded lazily: needs no driver and no GPU), with a
 * disk cache <cache_dir>/<key>.cubin keyed by source, options and NVRTC version. A cache file is
 * [magic "KILNCUB1" | key (16 bytes) | image length (8)] image [image checksum (8) | "KILNEND1"],
 * written to a temporary file and renamed into place; one that fails a check is rebuilt. */
#include "cuda/cuda_internal.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static kiln_cu_nvrtc_api rtc;
static struct {
    pthread_once_t once;
    int status;
    char why[1024];
    int major, minor;
    char include[2100]; /* "-I<directory of cuda_fp16.h>", or "" */
} nv = {.once = PTHREAD_ONCE_INIT, .status = -1};

static bool has_file(const char *dir, size_t len, const char *name) {
    char path[2300];
    snprintf(path, sizeof path, "%.*s/%s", (int)len, dir, name);
    return access(path, F_OK) == 0;
}

/* NVRTC 13 ships no cuda_fp16.h / cuda_bf16.h (it provides <nv/target>, which they include):
 * the first directory holding cuda_fp16.h among $KILN_CUDA_INCLUDE (colon-separated),
 * <libnvrtc's directory>/../include (NVIDIA's wheels), $CUDA_HOME/include and
 * /usr/local/cuda/include becomes -I. None found: kernels that include them fail to compile,
 * and the message says how to fix it. */
static void find_include(const char *lib_dir) {
    char cand[4][2100];
    const char *env = getenv("KILN_CUDA_INCLUDE"), *home = getenv("CUDA_HOME");
    snprintf(cand[0], sizeof cand[0], "%s", env ? env : "");
    snprintf(cand[1], sizeof cand[1], "%s%s", lib_dir, lib_dir[0] ? "/../include" : "");
    snprintf(cand[2], sizeof cand[2], "%s%s", home ? home : "", home ? "/include" : "");
    snprintf(cand[3], sizeof cand[3], "/usr/local/cuda/include");
    for (int c = 0; c < 4; c++) {
        for (const char *d = cand[c]; *d;) {
            const char *end = strchr(d, ':');
            size_t len = end ? (size_t)(end - d) : strlen(d);
            if (len && has_file(d, len, "cuda_fp16.h")) {
                snprintf(nv.include, sizeof nv.include, "-I%.*s", (int)len, d);
                return;
            }
            if (!end) break;
            d = end + 1;
        }
    }
}

static int load_nvrtc(void) {
    static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so"};
    char dir[2048], path[2200];
    void *h = kiln_cu_dlopen(names, 2, dir, sizeof dir);
    if (!h) return -1;
    const char *lib = "libnvrtc";
    void *sym;
    kiln_cu_nvrtc_api *tbl = &rtc;
    KILN_CU_NVRTC_FUNCS(KILN_CU_RESOLVE)
    nvrtcResult r = rtc.nvrtcVersion(&nv.major, &nv.minor);
    if (r != NVRTC_SUCCESS) return kiln_cu_fail("NVRTC: nvrtcVersion: %s", rtc.nvrtcGetErrorString(r));
    /* NVRTC opens its builtins library by bare name when compiling; found beside libnvrtc in a
     * $KILN_CUDA_LIBS directory (not on the loader's path), it is loaded now so that this
     * already-loaded copy answers that request. Elsewhere the loader's path finds it. */
    if (dir[0]) {
        snprintf(path, sizeof path, "%s/libnvrtc-builtins.so.%d.%d", dir, nv.major, nv.minor);
        if (!access(path, F_OK) && !dlopen(path, RTLD_NOW | RTLD_GLOBAL))
            return kiln_cu_fail("NVRTC: cannot load %s: %s", path, dlerror());
    }
    find_include(dir);
    return 0;
}

static void load_once(void) {
    nv.status = load_nvrtc();
    if (nv.status) kiln_cu_save_error(nv.why, sizeof nv.why);
}

static int nvrtc_ready(void) {
    pthread_once(&nv.once, load_once);
    return nv.status ? kiln_cu_fail("%s", nv.why) : 0;
}

int kiln_cu_nvrtc_version(char *buf, size_t size) {
    if (nvrtc_ready()) return -1;
    snprintf(buf, size, "NVRTC %d.%d", nv.major, nv.minor);
    return 0;
}

void kiln_cu_free_image(void *image) { free(image); }

/* ---- cache files ---- */
#define MAGIC_HEAD "KILNCUB1"
#define MAGIC_TAIL "KILNEND1"
#define HEAD_BYTES 32
#define TAIL_BYTES 16

/* 64-bit FNV-1a continued from h over n bytes. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* Two independent 64-bit hashes over each string in parts[] (with its terminating 0). */
static void cache_key(const char *const *parts, int n, uint64_t key[2]) {
    key[0] = UINT64_C(0xcbf29ce484222325);
    key[1] = UINT64_C(0x84222325cbf29ce4);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(parts[i]) + 1;
        key[0] = fnv1a(key[0], parts[i], len);
        /* second hash: FNV-1a of the bytes mixed with their position, from another basis */
        for (size_t j = 0; j < len; j++)
            key[1] = (key[1] ^ ((unsigned char)parts[i][j] + (j << 8))) * UINT64_C(0x100000001b3) + UINT64_C(0x9e3779b97f4a7c15);
    }
}

/* The cached image of `key` if the file is whole and matches; NULL otherwise. */
static void *cache_load(const char *path, const uint64_t key[2], size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[HEAD_BYTES];
    void *image = NULL;
    uint64_t len = 0;
    if (fread(head, 1, HEAD_BYTES, f) == HEAD_BYTES && !memcmp(head, MAGIC_HEAD, 8) && !memcmp(head + 8, key, 16)) {
        memcpy(&len, head + 24, 8);
        unsigned char tail[TAIL_BYTES];
        if (len && len < ((uint64_t)1 << 32) && (image = malloc((size_t)len)) &&
            (fread(image, 1, (size_t)len, f) != len || fread(tail, 1, TAIL_BYTES, f) != TAIL_BYTES ||
             fgetc(f) != EOF || memcmp(tail + 8, MAGIC_TAIL, 8))) {
            free(image);
            image = NULL;
        }
        if (image) {
            uint64_t sum = fnv1a(UINT64_C(0xcbf29ce484222325), image, (size_t)len), stored;
            memcpy(&stored, tail, 8);
            if (sum != stored) {
                free(image);
                image = NULL;
            }
        }
    }
    fclose(f);
    if (image) *size = (size_t)len;
    return image;
}

/* mkdir -p; 0 or -1 (errno set). */
static int make_dirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0755) && errno != EEXIST) return -1;
            if (!c) return 0;
            *p = c;
        }
    }
}

/* Writes the cache file atomically; a failure only costs a recompilation later, so it is
 * reported on stderr when debug > 0 and otherwise ignored. */
static void cache_store(const char *dir, const char *path, const uint64_t key[2], const void *image, size_t len,
                        int debug) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = make_dirs(dir) ? -1 : mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    bool ok = f != NULL;
    if (ok) {
        unsigned char head[HEAD_BYTES], tail[TAIL_BYTES];
        uint64_t n = len, sum = fnv1a(UINT64_C(0xcbf29ce484222325), image, len);
        memcpy(head, MAGIC_HEAD, 8);
        memcpy(head + 8, key, 16);
        memcpy(head + 24, &n, 8);
        memcpy(tail, &sum, 8);
        memcpy(tail + 8, MAGIC_TAIL, 8);
        ok = fwrite(head, 1, HEAD_BYTES, f) == HEAD_BYTES && fwrite(image, 1, len, f) == len &&
             fwrite(tail, 1, TAIL_BYTES, f) == TAIL_BYTES;
        ok = !fclose(f) && ok;
        ok = ok && !rename(tmp, path);
    } else if (fd >= 0) {
        close(fd);
    }
    if (!ok && fd >= 0) unlink(tmp);
    if (!ok && debug > 0) fprintf(stderr, "kiln cuda: could not write the kernel cache %s: %s\n", path, strerror(errno));
}

/* ---- compiling ---- */
static void print_source(const char *source) {
    fprintf(stderr, "---- kiln cuda source ----\n");
    int line = 1;
    for (const char *p = source; *p;) {
        const char *end = strchr(p, '\n');
        int len = end ? (int)(end - p) : (int)strlen(p);
        fprintf(stderr, "%4d | %.*s\n", line++, len, p);
        p += len + (end ? 1 : 0);
    }
    fprintf(stderr, "---- end of source ----\n");
}

/* NVRTC's log of prog (malloc'd, never NULL unless out of memory). */
static char *program_log(nvrtcProgram prog) {
    size_t n = 0;
    if (rtc.nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS) n = 0;
    char *log = malloc(n + 1);
    if (!log) return NULL;
    log[0] = 0;
    if (n && rtc.nvrtcGetProgramLog(prog, log) != NVRTC_SUCCESS) log[0] = 0;
    log[n] = 0;
    return log;
}

static int compile(const char *source, const char *const *opts, int nopts, void **image, size_t *size) {
    nvrtcProgram prog;
    nvrtcResult r = rtc.nvrtcCreateProgram(&prog, source, "kiln.cu", 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) return kiln_cu_fail("NVRTC: nvrtcCreateProgram: %s", rtc.nvrtcGetErrorString(r));
    int rc = 0;
    r = rtc.nvrtcCompileProgram(prog, nopts, opts);
    if (r != NVRTC_SUCCESS) {
        char *log = program_log(prog);
        bool missing_header = log && strstr(log, "could not open source file") && !nv.include[0];
        rc = kiln_cu_fail("NVRTC: %s%s%s%s", log && log[0] ? log : "", log && log[0] ? "" : "compilation failed: ",
                          log && log[0] ? "" : rtc.nvrtcGetErrorString(r),
                          missing_header ? "\n(no directory with cuda_fp16.h was found: set KILN_CUDA_INCLUDE to "
                                           "the CUDA toolkit's include directory)" : "");
        free(log);
    } else if ((r = rtc.nvrtcGetCUBINSize(prog, size)) != NVRTC_SUCCESS || !*size) {
        rc = kiln_cu_fail("NVRTC: nvrtcGetCUBINSize: %s", r != NVRTC_SUCCESS ? rtc.nvrtcGetErrorString(r) : "empty cubin");
    } else if (!(*image = malloc(*size))) {
        rc = kiln_cu_fail("NVRTC: out of host memory for a %zu-byte cubin", *size);
    } else if ((r = rtc.nvrtcGetCUBIN(prog, *image)) != NVRTC_SUCCESS) {
        free(*image);
        *image = NULL;
        rc = kiln_cu_fail("NVRTC: nvrtcGetCUBIN: %s", rtc.nvrtcGetErrorString(r));
    }
    rtc.nvrtcDestroyProgram(&prog);
    return rc;
}

/* Options: the exact architecture (a cubin, not PTX), device code by default, C++17, accurate
 * math (no -use_fast_math), the include directory of find_include. */
int kiln_cu_nvrtc_compile(const char *source, int arch, const char *cache_dir, int debug, void **image,
                          size_t *size) {
    *image = NULL;
    *size = 0;
    if (!source) return kiln_cu_fail("NVRTC: no source");
    if (arch < 10 || arch > 1000) return kiln_cu_fail("NVRTC: invalid architecture %d (expected e.g. 90 for sm_90)", arch);
    if (nvrtc_ready()) return -1;
    char arch_opt[64], version[32];
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=sm_%d", arch);
    const char *opts[4] = {arch_opt, "-default-device", "--std=c++17", nv.include};
    int nopts = nv.include[0] ? 4 : 3;
    if (debug >= 2) print_source(source);

    char path[4096] = "";
    uint64_t key[2];
    if (cache_dir && *cache_dir) {
        snprintf(version, sizeof version, "%d.%d", nv.major, nv.minor);
        const char *parts[2 + 4] = {version, source};
        int nparts = 2;
        for (int i = 0; i < nopts; i++) parts[nparts++] = opts[i];
        cache_key(parts, nparts, key);
        snprintf(path, sizeof path, "%s/%016llx%016llx.cubin", cache_dir, (unsigned long long)key[0],
                 (unsigned long long)key[1]);
        if ((*image = cache_load(path, key, size))) {
            if (debug >= 1) fprintf(stderr, "kiln cuda: kernel cache hit %s\n", path);
            return 0;
        }
    }
    if (compile(source, opts, nopts, image, size)) return -1;
    if (path[0]) {
        cache_store(cache_dir, path, key, *image, *size, debug);
        if (debug >= 1) fprintf(stderr, "kiln cuda: compiled %zu-byte cubin for sm_%d, cached as %s\n", *size, arch, path);
    }
    return 0;
}
