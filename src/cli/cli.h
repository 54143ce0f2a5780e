/* cli.h — pieces shared by the files of the `kiln` command-line tool: exit codes, error
 * reporting and loading an IR file. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "kiln.h"

enum { KILN_CLI_OK = 0, KILN_CLI_ERROR = 1, KILN_CLI_USAGE = 2 };

/* Prints "kiln: message" to stderr and returns code (KILN_CLI_ERROR or KILN_CLI_USAGE). */
int kiln_cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports the context's error and returns KILN_CLI_ERROR. */
int kiln_cli_fail(kiln_context *ctx);
/* Reads and parses an IR file; NULL with the error reported on stderr. Caller frees. */
kiln_module *kiln_cli_load(kiln_context *ctx, const char *path);
/* `kiln run FILE [-f NAME] INPUT... [-o PREFIX]`; argv[0] is "run". */
int kiln_cli_run(kiln_context *ctx, int argc, char **argv);

/* `kiln compile FILE ...` (prints the program) and `kiln analyze FILE ...` (analysis). */
int kiln_cli_compile(kiln_context *ctx, int argc, char **argv, bool analyze);

#endif /* KILN_CLI_H */
