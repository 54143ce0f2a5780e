/* compile.c — `kiln compile` (the optimised IR, VM instructions and memory plan of a function)
 * and `kiln analyze` (inputs, GFLOPs, kernels and peak memory, computed without running). */
#include "cli/cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_cli_compile(kiln_context *ctx, int argc, char **argv, bool analyze) {
    const char *file = NULL, *func = "main";
    kiln_compile_options o = kiln_compile_defaults();
    bool trace = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-f") || !strcmp(s, "-O") || !strcmp(s, "--dialects") || !strcmp(s, "--device")) {
            if (++i == argc) return kiln_cli_error(KILN_CLI_USAGE, "option %s needs a value", s);
            if (s[1] == 'f') func = argv[i];
            else if (!strcmp(s, "--device")) o.device = argv[i];
            else if (s[1] == 'O') {
                char *end;
                long level = strtol(argv[i], &end, 10);
                if (*end || level < 0 || level > 2) return kiln_cli_error(KILN_CLI_USAGE, "-O takes 0, 1 or 2, not '%s'", argv[i]);
                o.opt_level = (int)level;
            } else o.dialects = argv[i];
        } else if (analyze && !strcmp(s, "--trace")) {
            trace = true;
        } else if (s[0] == '-' && s[1]) {
            return kiln_cli_error(KILN_CLI_USAGE, "unknown option '%s' for '%s'", s, argv[0]);
        } else if (!file) {
            file = s;
        } else {
            return kiln_cli_error(KILN_CLI_USAGE, "'%s' takes one FILE", argv[0]);
        }
    }
    if (!file) return kiln_cli_error(KILN_CLI_USAGE, "'%s' needs an IR FILE", argv[0]);
    kiln_module *m = kiln_cli_load(ctx, file);
    if (!m) return KILN_CLI_ERROR;
    kiln_function *f = kiln_module_function(m, func);
    kiln_program *p = NULL;
    int rc = KILN_CLI_OK;
    if (!f) rc = kiln_cli_error(KILN_CLI_ERROR, "%s: no function @%s", file, func);
    else if (kiln_compile(f, &o, &p)) rc = kiln_cli_fail(ctx);
    else if (!analyze) {
        char *text = kiln_program_print(p);
        if (text) fputs(text, stdout);
        else rc = kiln_cli_error(KILN_CLI_ERROR, "out of memory");
        kiln_free(text);
    } else {
        kiln_analysis a;
        if (kiln_program_analyze(p, &a)) rc = kiln_cli_fail(ctx);
        else {
            printf("function        @%s\n", func);
            printf("inputs          %lld tensors, %lld elements, %lld bytes\n", (long long)a.n_inputs,
                   (long long)a.input_elements, (long long)a.input_bytes);
            printf("GFLOPs          %.6f (one run; a loop body counted once)\n", a.flops * 1e-9);
            printf("instructions    %d (%d generated kernels)\n", a.n_instructions, a.n_kernels);
            printf("peak memory     %lld bytes (the VM's arena)\n", (long long)a.arena_bytes);
            if (trace) {
                printf("%6s %14s %14s\n", "instr", "live bytes", "high water");
                for (int i = 0; i < a.n_steps; i++)
                    printf("%6d %14lld %14lld\n", i, (long long)a.live_bytes[i], (long long)a.high_water[i]);
            }
        }
    }
    kiln_program_free(p);
    kiln_module_free(m);
    return rc;
}
