/* test_cli.c — runs the `kiln` binary (path in $KILN_CLI, set by `make test-c`) on the files in
 * tests/cli/: print, check, run with .npy inputs and outputs, ops, and its error exit codes. */
#include "test.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL "tests/cli/model.kir"

typedef struct cli_result {
    int status; /* exit status, or -1 if it did not exit normally */
    char *out, *err;
} cli_result;

/* The CLI's path, or NULL (the test is then skipped, saying so once). */
static const char *cli_path(void) {
    static bool warned;
    const char *p = getenv("KILN_CLI");
    if ((!p || !*p) && !warned) {
        fprintf(stderr, "test_cli: KILN_CLI is not set; skipping the CLI tests (make test-c sets it)\n");
        warned = true;
    }
    return p && *p ? p : NULL;
}

static char *slurp_fd(int fd) {
    off_t n = lseek(fd, 0, SEEK_END);
    char *s = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (!s) return NULL;
    ssize_t got = n > 0 ? pread(fd, s, (size_t)n, 0) : 0;
    s[got > 0 ? got : 0] = 0;
    close(fd);
    return s;
}

/* Runs the CLI with args (NULL-terminated), capturing stdout and stderr. */
static cli_result cli(const char *const *args) {
    cli_result r = {-1, NULL, NULL};
    const char *argv[32] = {cli_path()};
    int n = 1;
    while (args[n - 1] && n < 31) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    char out_path[] = "/tmp/kiln_cli_out_XXXXXX", err_path[] = "/tmp/kiln_cli_err_XXXXXX";
    int out = mkstemp(out_path), err = mkstemp(err_path);
    if (out < 0 || err < 0) return r;
    unlink(out_path);
    unlink(err_path);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    r.out = slurp_fd(out);
    r.err = slurp_fd(err);
    return r;
}

static void cli_free(cli_result *r) {
    free(r->out);
    free(r->err);
}

/* Runs args and checks the exit status and that stdout / stderr contain the given text. */
static void check_cli(const char *file, int line, const char *const *args, int status, const char *out_has,
                      const char *err_has) {
    cli_result r = cli(args);
    if (r.status != status)
        test_fail(file, line, "%s: exit status %d, expected %d; stderr: %s", args[0], r.status, status,
                  r.err ? r.err : "");
    if (out_has && (!r.out || !strstr(r.out, out_has)))
        test_fail(file, line, "%s: stdout lacks \"%s\":\n%s", args[0], out_has, r.out ? r.out : "");
    if (err_has && (!r.err || !strstr(r.err, err_has)))
        test_fail(file, line, "%s: stderr lacks \"%s\":\n%s", args[0], err_has, r.err ? r.err : "");
    cli_free(&r);
}
#define CHECK_CLI(status, out_has, err_has, ...)                                                 \
    check_cli(__FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL}, (status), (out_has), (err_has))

/* A temp directory for .npy files; removed with everything in it by rm_dir. */
static bool make_dir(char *dir) {
    strcpy(dir, "/tmp/kiln_cli_XXXXXX");
    return mkdtemp(dir) != NULL;
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

/* Saves a tensor made from doubles as dir/name; returns the path in a static-size buffer. */
static const char *save_npy(kiln_context *ctx, char *path, const char *dir, const char *name, kiln_dtype dt,
                            const char *shape, const double *data) {
    snprintf(path, 256, "%s/%s", dir, name);
    kiln_tensor *t = tt(ctx, dt, shape, data);
    if (t) CHECK_OK(ctx, kiln_npy_save(ctx, path, t));
    kiln_tensor_release(t);
    return path;
}

/* Loads dir/name and compares it with the expected dtype, shape and values. */
static void check_npy(const char *file, int line, kiln_context *ctx, const char *dir, const char *name, kiln_dtype dt,
                      const char *shape, const double *want) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kiln_tensor *t = kiln_npy_load(ctx, path);
    if (!t) return test_fail(file, line, "%s", kiln_error_message(ctx));
    check_tensor(file, line, kiln_value_tensor(t), dt, shape, want, 1e-6);
    kiln_tensor_release(t);
}
#define CHECK_NPY(ctx, dir, name, dt, shape, ...) \
    check_npy(__FILE__, __LINE__, (ctx), (dir), (name), (dt), (shape), (double[]){__VA_ARGS__})

TEST(cli_help_and_version) {
    if (!cli_path()) return;
    CHECK_CLI(0, "usage: kiln COMMAND", NULL, "--help");
    CHECK_CLI(0, "kiln run model.kir", NULL, "help");
    CHECK_CLI(0, "kiln 0.", NULL, "version");
}

TEST(cli_usage_errors) {
    if (!cli_path()) return;
    cli_result r = cli((const char *const[]){NULL});
    CHECK_INT(r.status, 2);
    CHECK(r.err && strstr(r.err, "usage: kiln"));
    cli_free(&r);
    CHECK_CLI(2, NULL, "kiln: unknown command 'frob'", "frob");
    CHECK_CLI(2, NULL, "kiln: 'print' takes one FILE", "print");
    CHECK_CLI(2, NULL, "kiln: 'check' takes one FILE", "check", MODEL, MODEL);
    CHECK_CLI(2, NULL, "kiln: 'ops' takes no arguments", "ops", "x");
    CHECK_CLI(2, NULL, "kiln: 'run' needs an IR FILE", "run");
    CHECK_CLI(2, NULL, "kiln: unknown option '-q' for 'run'", "run", MODEL, "-q");
    CHECK_CLI(2, NULL, "kiln: option -f needs a value", "run", MODEL, "-f");
    CHECK_CLI(2, NULL, "kiln: bad scalar argument 'int:3x'", "run", MODEL, "-f", "stats", "a.npy", "int:3x", "float:1",
              "bool:true");
    CHECK_CLI(2, NULL, "kiln: bad scalar argument 'int:zz'", "run", MODEL, "int:zz"); /* before the arity check */
    CHECK_CLI(2, NULL, "bad scalar argument 'bool:yes'", "run", MODEL, "-f", "stats", "a.npy", "int:3", "float:1",
              "bool:yes");
    CHECK_CLI(2, NULL, "bad scalar argument 'float:'", "run", MODEL, "-f", "stats", "a.npy", "int:3", "float:",
              "bool:true");
    CHECK_CLI(2, NULL, "bad scalar argument 'int:99999999999999999999'", "run", MODEL, "-f", "stats", "a.npy",
              "int:99999999999999999999", "float:1", "bool:true");
}

TEST(cli_ops_lists_every_op) {
    if (!cli_path()) return;
    cli_result r = cli((const char *const[]){"ops", NULL});
    CHECK_INT(r.status, 0);
    int lines = 0;
    for (const char *p = r.out; p && *p; p++) lines += *p == '\n';
    CHECK_INT(lines, kiln_op_count());
    char line[1024];
    CHECK(r.out && strstr(r.out, kiln_op_describe(kiln_op_from_name("matmul"), line, sizeof line)));
    cli_free(&r);
}

TEST(cli_print_round_trips) {
    if (!cli_path()) return;
    cli_result a = cli((const char *const[]){"print", MODEL, NULL});
    CHECK_INT(a.status, 0);
    CHECK(a.out && strstr(a.out, "def @stats(%x: f32[2, 3], %k: int, %scale: float, %flag: bool)"));
    CHECK(a.out && !strstr(a.out, "let %y: ")); /* no types on bindings without `check` */
    char dir[64], path[256];
    CHECK(make_dir(dir));
    snprintf(path, sizeof path, "%s/printed.kir", dir);
    FILE *f = fopen(path, "w");
    if (f && a.out) fputs(a.out, f);
    if (f) fclose(f);
    cli_result b = cli((const char *const[]){"print", path, NULL});
    CHECK_INT(b.status, 0);
    CHECK_STR(b.out, a.out ? a.out : "");
    cli_free(&a);
    cli_free(&b);
    rm_dir(dir);
}

TEST(cli_check_prints_types) {
    if (!cli_path()) return;
    CHECK_CLI(0, "  let %y: f32[2, 2] = dense(%x, %w, %b)\n", NULL, "check", MODEL);
    CHECK_CLI(0, "-> (f32[2], (bf16[2, 3], int), bool) {", NULL, "check", MODEL);
}

TEST(cli_file_errors) {
    if (!cli_path()) return;
    CHECK_CLI(1, NULL, "kiln: tests/cli/parse_error.kir:3:12: unknown op 'frobnicate'", "check",
              "tests/cli/parse_error.kir");
    CHECK_CLI(1, NULL, "tests/cli/parse_error.kir:3:12:", "print", "tests/cli/parse_error.kir");
    CHECK_CLI(1, NULL, "kiln: op 'matmul' at tests/cli/type_error.kir:2:12:", "check", "tests/cli/type_error.kir");
    CHECK_CLI(1, NULL, "kiln: cannot read 'tests/cli/no_such.kir': No such file", "print", "tests/cli/no_such.kir");
    CHECK_CLI(1, NULL, "kiln: cannot read 'tests/cli': Is a directory", "check", "tests/cli");
}

TEST(cli_run_writes_npy_outputs) {
    if (!cli_path()) return;
    kiln_context *ctx = kiln_context_new();
    /* inputs written by NumPy: x = [[1, 2, 3], [-1, -2, -3]], w = [[1, 0, 1], [0, 1, -1]],
     * b = [0.5, -0.5] */
    const char *x = "tests/cli/x.npy", *w = "tests/cli/w.npy", *b = "tests/cli/b.npy";
    char dir[64], prefix[256];
    CHECK(make_dir(dir));
    snprintf(prefix, sizeof prefix, "%s/y", dir);
    /* y = relu(x @ w^T + b) */
    CHECK_CLI(0, "/y0.npy  f32[2, 2]\n", NULL, "run", MODEL, x, w, b, "-o", prefix);
    CHECK_NPY(ctx, dir, "y0.npy", KILN_F32, "2,2", 4.5, 0, 0, 0.5);
    /* -f, options after inputs, scalars; the tuple output is flattened depth-first */
    CHECK_CLI(0, "/y3.npy  bool true\n", NULL, "run", MODEL, x, "int:41", "float:0.5", "bool:true", "-o", prefix, "-f",
              "stats");
    snprintf(prefix, sizeof prefix, "%s/s", dir);
    cli_result r = cli((const char *const[]){"run", MODEL, "-f", "stats", x, "int:41", "float:0.5", "bool:true", "-o",
                                             prefix, NULL});
    CHECK_INT(r.status, 0);
    CHECK(r.out && strstr(r.out, "/s1.npy  bf16[2, 3] (saved as f32: NumPy has no bfloat16)\n"));
    CHECK(r.out && strstr(r.out, "/s2.npy  int 42\n"));
    cli_free(&r);
    CHECK_NPY(ctx, dir, "s0.npy", KILN_F32, "2", 6, -6);
    CHECK_NPY(ctx, dir, "s1.npy", KILN_F32, "2,3", 0.5, 1, 1.5, -0.5, -1, -1.5);
    CHECK_NPY(ctx, dir, "s2.npy", KILN_I64, "", 42);
    CHECK_NPY(ctx, dir, "s3.npy", KILN_BOOL, "", 1);
    rm_dir(dir);
    kiln_context_free(ctx);
}

TEST(cli_run_errors) {
    if (!cli_path()) return;
    kiln_context *ctx = kiln_context_new();
    char dir[64], x[256], x64[256], bad[256], prefix[256];
    CHECK(make_dir(dir));
    save_npy(ctx, x, dir, "x.npy", KILN_F32, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    save_npy(ctx, x64, dir, "x64.npy", KILN_F64, "2,3", (double[]){1, 2, 3, 4, 5, 6});
    snprintf(bad, sizeof bad, "%s/bad.npy", dir);
    FILE *f = fopen(bad, "w");
    if (f) fputs("not numpy", f), fclose(f);
    CHECK_CLI(1, NULL, "kiln: @main takes 3 inputs (f32[2, 3], f32[2, 3], f32[2]), got 1", "run", MODEL, x);
    CHECK_CLI(1, NULL, "kiln: " MODEL ": no function @nope", "run", MODEL, "-f", "nope");
    CHECK_CLI(1, NULL, "input 1 (%w) must be f32[2, 3], got f64[2, 3]", "run", MODEL, x, x64, x);
    CHECK_CLI(1, NULL, "kiln: npy: cannot open '/tmp/kiln_no_such.npy'", "run", MODEL, x, "/tmp/kiln_no_such.npy", x);
    CHECK_CLI(1, NULL, "bad magic", "run", MODEL, x, bad, x);
    CHECK_CLI(1, NULL, "input 1 (%k) must be int, got float", "run", MODEL, "-f", "stats", x, "float:1", "float:1",
              "bool:false");
    snprintf(prefix, sizeof prefix, "%s/no/such/dir/out", dir);
    CHECK_CLI(1, NULL, "cannot create", "run", MODEL, "-f", "stats", x, "int:1", "float:1", "bool:false", "-o", prefix);
    rm_dir(dir);
    kiln_context_free(ctx);
}

TEST(cli_compile_analyze_and_run_on_the_vm) {
    if (!cli_path()) return;
    kiln_context *ctx = kiln_context_new();
    CHECK_CLI(0, "program @main on cpu: ", NULL, "compile", MODEL);
    CHECK_CLI(0, "= dense(%x, %w, %b)  # blas", NULL, "compile", MODEL, "--dialects", "blas,c");
    CHECK_CLI(0, "kernel @main.k0(", NULL, "compile", MODEL, "--dialects", "c");
    CHECK_CLI(0, "peak memory     ", NULL, "analyze", MODEL);
    CHECK_CLI(0, " instr     live bytes     high water\n", NULL, "analyze", MODEL, "--trace", "-O", "0");
    CHECK_CLI(2, NULL, "kiln: -O takes 0, 1 or 2, not '7'", "analyze", MODEL, "-O", "7");
    CHECK_CLI(1, NULL, "kiln: unknown dialect 'tpu'", "compile", MODEL, "--dialects", "tpu");
    CHECK_CLI(1, NULL, "kiln: dialect 'cuda' runs on CUDA; this program runs on the CPU", "compile", MODEL, "--dialects", "cuda");
    CHECK_CLI(1, NULL, "no function @nope", "analyze", MODEL, "-f", "nope");
    char dir[64], prefix[256];
    CHECK(make_dir(dir));
    snprintf(prefix, sizeof prefix, "%s/v", dir);
    CHECK_CLI(0, "/v0.npy  f32[2, 2]\n", NULL, "run", "--vm", MODEL, "tests/cli/x.npy", "tests/cli/w.npy", "tests/cli/b.npy",
              "-o", prefix);
    CHECK_NPY(ctx, dir, "v0.npy", KILN_F32, "2,2", 4.5, 0, 0, 0.5); /* the interpreter's numbers */
    rm_dir(dir);
    kiln_context_free(ctx);
}
