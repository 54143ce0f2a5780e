/* main.c — the `kiln` command-line tool: dispatches to print, check, run, compile, analyze, ops,
 * help, version.
 * Errors go to stderr as "kiln: ..." with exit status 1 (2 for usage errors). */
#include "cli/cli.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KILN_CLI_VERSION "0.1.0"

static const char USAGE[] =
    "usage: kiln COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  print FILE          parse an IR file (.kir) and print it back\n"
    "  check FILE          parse, verify and print it with every inferred type\n"
    "  run FILE [-f NAME] [INPUT...] [-o PREFIX]\n"
    "                      run @main (or @NAME) on the interpreter; INPUTs in parameter order\n"
    "                      are .npy files or scalars int:3 float:0.5 bool:true; every output\n"
    "                      (tuples flattened) is written to PREFIX0.npy, PREFIX1.npy, ...\n"
    "                      (PREFIX defaults to \"out\")\n"
    "                      --vm compiles the function and runs it on the VM instead\n"
    "  compile FILE [-f NAME] [-O N] [--dialects LIST] [--device DEV]\n"
    "                      compile @main (or @NAME) and print the optimised IR, the VM\n"
    "                      instructions with every buffer's arena offset, and the arena size;\n"
    "                      DEV is cpu (default), cuda or cuda:N\n"
    "  analyze FILE [-f NAME] [-O N] [--dialects LIST] [--device DEV] [--trace]\n"
    "                      compile and report inputs (count, bytes), GFLOPs of one run, kernels\n"
    "                      and the peak memory (= the arena); --trace adds the footprint per\n"
    "                      instruction\n"
    "  ops                 list the operators: name, inputs, dtypes, fusion class, flags, attributes\n"
    "  help                show this text\n"
    "  version             show the version\n"
    "\n"
    "example:\n"
    "  kiln run model.kir x.npy w.npy -o result_   # writes result_0.npy\n";

int kiln_cli_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kiln: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (code == KILN_CLI_USAGE) fputs("run 'kiln help' for usage\n", stderr);
    return code;
}

int kiln_cli_fail(kiln_context *ctx) { return kiln_cli_error(KILN_CLI_ERROR, "%s", kiln_error_message(ctx)); }

/* Whole file as a NUL-terminated string (caller frees); NULL with errno set on failure. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t len = 0, cap = 0;
    char *text = NULL;
    int err = 0;
    for (;;) {
        if (cap - len < 2) { /* room for at least one byte and the NUL */
            cap = cap ? cap * 2 : 4096;
            char *grown = realloc(text, cap);
            if (!grown) {
                err = ENOMEM;
                break;
            }
            text = grown;
        }
        size_t got = fread(text + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) err = errno ? errno : EIO;
            break;
        }
    }
    fclose(f);
    if (err) {
        free(text);
        errno = err;
        return NULL;
    }
    text[len] = 0;
    return text;
}

kiln_module *kiln_cli_load(kiln_context *ctx, const char *path) {
    char *text = read_text(path);
    if (!text) {
        kiln_cli_error(KILN_CLI_ERROR, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    kiln_module *m = kiln_module_parse(ctx, text, path);
    free(text);
    if (!m) kiln_cli_fail(ctx);
    return m;
}

/* `kiln print FILE` (flags 0) and `kiln check FILE` (verify, then print with types). */
static int cmd_print(kiln_context *ctx, int argc, char **argv, bool check) {
    if (argc != 2) return kiln_cli_error(KILN_CLI_USAGE, "'%s' takes one FILE", argv[0]);
    kiln_module *m = kiln_cli_load(ctx, argv[1]);
    if (!m) return KILN_CLI_ERROR;
    int rc = KILN_CLI_OK;
    char *text = NULL;
    if ((check && kiln_module_verify(m) != KILN_OK) || !(text = kiln_module_print(m, check ? KILN_PRINT_TYPES : 0)))
        rc = kiln_cli_fail(ctx);
    else
        fputs(text, stdout);
    kiln_free(text);
    kiln_module_free(m);
    return rc;
}

static int cmd_ops(int argc, char **argv) {
    if (argc != 1) return kiln_cli_error(KILN_CLI_USAGE, "'ops' takes no arguments");
    char line[1024];
    for (int op = 0; op < kiln_op_count(); op++) puts(kiln_op_describe(op, line, sizeof line));
    return KILN_CLI_OK;
}

static int dispatch(kiln_context *ctx, int argc, char **argv) {
    const char *cmd = argv[0];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(USAGE, stdout);
        return KILN_CLI_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        puts("kiln " KILN_CLI_VERSION);
        return KILN_CLI_OK;
    }
    if (!strcmp(cmd, "print")) return cmd_print(ctx, argc, argv, false);
    if (!strcmp(cmd, "check")) return cmd_print(ctx, argc, argv, true);
    if (!strcmp(cmd, "run")) return kiln_cli_run(ctx, argc, argv);
    if (!strcmp(cmd, "ops")) return cmd_ops(argc, argv);
    if (!strcmp(cmd, "compile")) return kiln_cli_compile(ctx, argc, argv, false);
    if (!strcmp(cmd, "analyze")) return kiln_cli_compile(ctx, argc, argv, true);
    return kiln_cli_error(KILN_CLI_USAGE, "unknown command '%s'", cmd);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return KILN_CLI_USAGE;
    }
    kiln_context *ctx = kiln_context_new();
    if (!ctx) return kiln_cli_error(KILN_CLI_ERROR, "out of memory");
    int rc = dispatch(ctx, argc - 1, argv + 1);
    kiln_context_free(ctx);
    if (fflush(stdout) != 0 && rc == KILN_CLI_OK) rc = kiln_cli_error(KILN_CLI_ERROR, "cannot write output: %s", strerror(errno));
    return rc;
}
