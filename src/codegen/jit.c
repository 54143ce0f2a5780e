/* jit.c — compiling generated kernels with the system C compiler into a shared object, cached on
 * disk as <cache>/<hash>.so (hash of sources, compiler and flags; checked after dlopen through
 * the embedded kiln_cache_key), and loading them with dlopen. */
#define _GNU_SOURCE /* RTLD_NODELETE, RTLD_NOLOAD */
#include "codegen/codegen.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* -fno-math-errno and -fno-trapping-math change no result: they let gcc inline sqrt and
 * evaluate both arms of a select, so loops of the preamble's math functions vectorize. */
#define JIT_FLAGS "-O3 -march=native -fPIC -shared -ffp-contract=off -fno-math-errno -fno-trapping-math"
#define JIT_OMP "-fopenmp"
#define JIT_MAX_ARGS 64
#define JIT_MSG_MAX 2048

struct kiln_jit_lib {
    void *handle;
};

/* Set once a compiler rejected -fopenmp (clang without libomp): kernels then build serial. */
static int jit_no_omp;

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* separates consecutive strings */
}

char *kiln_jit_cache_dir(const char *dir) {
    char buf[4096];
    const char *env = getenv("KILN_CACHE_DIR"), *home = getenv("HOME");
    if (dir && *dir) return strdup(dir);
    if (env && *env) return strdup(env);
    if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/kiln", home);
    else snprintf(buf, sizeof buf, "/tmp/kiln-cache-%lu", (unsigned long)getuid());
    return strdup(buf);
}

/* mkdir -p */
static bool make_dirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

/* Writes text to path through a temporary file and a rename (other processes share the cache). */
static bool write_file(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    if (!fp) return false;
    bool ok = fputs(text, fp) >= 0;
    ok = (fclose(fp) == 0) && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    return ok;
}

/* Opens path and checks its key and symbols; NULL (nothing held) when any is missing. */
static void *open_checked(const char *path, const char *key, int n, const kiln_gen_kernel *k, kiln_gen_fn *fns) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return NULL;
    const char *got = dlsym(h, "kiln_cache_key");
    bool ok = got && !strcmp(got, key);
    for (int i = 0; i < n && ok; i++) {
        void *sym = dlsym(h, k[i].symbol);
        memcpy(&fns[i], &sym, sizeof sym); /* object pointer to function pointer (POSIX) */
        ok = sym != NULL;
    }
    if (!ok) dlclose(h);
    return ok ? h : NULL;
}

/* Pins the OpenMP runtime a kernel library pulled in: its idle worker threads outlive the
 * library, so the runtime must never be unloaded with it. */
static void pin_openmp(void) {
    static const char *const NAMES[] = {"libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so"};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        dlopen(NAMES[i], RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE | RTLD_GLOBAL);
}

/* Runs the compiler on src into out; its stdout and stderr go to log. Returns the exit status,
 * or -1 when it could not start (errno set). */
static int run_compiler(const char *cc, bool omp, const char *src, const char *out, const char *log) {
    char cmd[1024], *argv[JIT_MAX_ARGS];
    int argc = 0;
    snprintf(cmd, sizeof cmd, "%s %s%s", cc, JIT_FLAGS, omp ? " " JIT_OMP : "");
    for (char *sv, *t = strtok_r(cmd, " \t", &sv); t && argc < JIT_MAX_ARGS - 5; t = strtok_r(NULL, " \t", &sv)) argv[argc++] = t;
    argv[argc++] = "-o";
    argv[argc++] = (char *)out;
    argv[argc++] = (char *)src;
    argv[argc++] = "-lm";
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), status = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The first JIT_MSG_MAX bytes of a file (empty when unreadable). */
static void read_head(const char *path, char *buf, size_t size) {
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, size - 1, fp) : 0;
    buf[n] = '\0';
    if (fp) fclose(fp);
}

/* Paths of one cache entry. */
typedef struct jit_entry {
    char key[17], so[4200], src[4200], tmp[4300], log[4300];
} jit_entry;

static void entry_init(jit_entry *e, const char *dir, const char *text, const char *cc, bool omp) {
    uint64_t h = fnv(fnv(fnv(1469598103934665603ull, text), cc), omp ? JIT_FLAGS " " JIT_OMP : JIT_FLAGS);
    snprintf(e->key, sizeof e->key, "%016llx", (unsigned long long)h);
    snprintf(e->so, sizeof e->so, "%s/%s.so", dir, e->key);
    snprintf(e->src, sizeof e->src, "%s/%s.c", dir, e->key);
    snprintf(e->tmp, sizeof e->tmp, "%s.tmp.%ld", e->so, (long)getpid());
    snprintf(e->log, sizeof e->log, "%s/%s.log.%ld", dir, e->key, (long)getpid());
}

/* Builds one entry. 0 on success, else the compiler's status (-1: it did not start). */
static int build_entry(const jit_entry *e, const char *text, const char *cc, bool omp) {
    kiln_buf b = {0};
    kiln_buf_printf(&b, "%s\nconst char kiln_cache_key[] = \"%s\";\n", text, e->key);
    char *tu = kiln_buf_take(&b);
    if (!tu || !write_file(e->src, tu)) {
        free(tu);
        errno = EIO;
        return -2;
    }
    free(tu);
    int rc = run_compiler(cc, omp, e->src, e->tmp, e->log);
    if (rc == 0 && rename(e->tmp, e->so) != 0) rc = -2;
    if (rc != 0) unlink(e->tmp);
    return rc;
}

kiln_status kiln_jit_build(kiln_context *ctx, const char *cache_dir, int debug, int n, const kiln_gen_kernel *kernels,
                           kiln_gen_fn *fns, kiln_jit_lib **lib) {
    *lib = NULL;
    const char *cc_env = getenv("CC"), *cc = cc_env && *cc_env ? cc_env : "cc";
    kiln_buf b = {0};
    for (int i = 0; i < n; i++) {
        if (debug >= 2) fprintf(stderr, "---- generated kernel %s ----\n%s\n", kernels[i].symbol, kernels[i].source);
        kiln_buf_puts(&b, kernels[i].source);
    }
    char *text = kiln_buf_take(&b), *dir = kiln_jit_cache_dir(cache_dir);
    kiln_status st = KILN_OK;
    if (!text || !dir) {
        st = kiln_error(ctx, KILN_ERR_OOM, "jit: out of memory");
        goto done;
    }
    if (!make_dirs(dir)) {
        st = kiln_error(ctx, KILN_ERR_IO, "jit: cannot create the kernel cache directory '%s': %s", dir, strerror(errno));
        goto done;
    }
    /* A cached entry (with OpenMP, or without when this compiler lacks it) needs no compiler. */
    jit_entry e[2];
    entry_init(&e[0], dir, text, cc, true);
    entry_init(&e[1], dir, text, cc, false);
    void *h = NULL;
    for (int k = jit_no_omp; k < 2 && !h; k++) h = open_checked(e[k].so, e[k].key, n, kernels, fns);
    for (int k = jit_no_omp; k < 2 && !h; k++) {
        int rc = build_entry(&e[k], text, cc, k == 0);
        if (rc == -1) {
            st = kiln_error(ctx, KILN_ERR_UNSUPPORTED, "jit: cannot run the C compiler '%s' (%s); set $CC to a C compiler",
                            cc, strerror(errno));
            break;
        }
        if (rc == -2) {
            st = kiln_error(ctx, KILN_ERR_IO, "jit: cannot write '%s' in the kernel cache: %s", e[k].src, strerror(errno));
            break;
        }
        if (rc == 0) {
            unlink(e[k].log);
            h = open_checked(e[k].so, e[k].key, n, kernels, fns);
            if (!h) {
                st = kiln_error(ctx, KILN_ERR_INTERNAL, "jit: '%s' was built but does not load: %s", e[k].so, dlerror());
                break;
            }
            if (k == 1) jit_no_omp = 1;
            break;
        }
        char msg[JIT_MSG_MAX];
        read_head(e[k].log, msg, sizeof msg);
        if (k == 1 || !strstr(msg, "omp")) { /* not OpenMP's fault (else retry without it) */
            unlink(e[k].log);
            st = kiln_error(ctx, KILN_ERR_INTERNAL, "jit: the C compiler '%s' failed (status %d) on %s:\n%s", cc, rc, e[k].src, msg);
            break;
        }
        unlink(e[k].log); /* retry without OpenMP */
    }
    if (h) {
        pin_openmp();
        *lib = malloc(sizeof **lib);
        if (!*lib) {
            dlclose(h);
            st = kiln_error(ctx, KILN_ERR_OOM, "jit: out of memory");
        } else {
            (*lib)->handle = h;
        }
    }
done:
    free(text);
    free(dir);
    return st;
}

void kiln_jit_lib_free(kiln_jit_lib *lib) {
    if (!lib) return;
    dlclose(lib->handle);
    free(lib);
}
