/* fuzz_parser.c — libFuzzer target for the IR text parser: any input must parse or fail cleanly;
 * what parses must verify, print, parse again and print byte-identically (round trip). */
#include "kiln.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = ctx ? kiln_module_parse(ctx, text, "fuzz.kir") : NULL;
    if (m) {
        if (kiln_module_verify(m) != KILN_OK) abort();
        char *printed = kiln_module_print(m, 0), *typed = kiln_module_print(m, KILN_PRINT_TYPES);
        if (!printed || !typed) abort();
        kiln_module *m2 = kiln_module_parse(ctx, printed, "printed.kir");
        kiln_module *m3 = kiln_module_parse(ctx, typed, "typed.kir");
        if (!m2 || !m3) abort();
        char *again = kiln_module_print(m2, 0), *typed_again = kiln_module_print(m3, KILN_PRINT_TYPES);
        if (!again || strcmp(printed, again) || !typed_again || strcmp(typed, typed_again)) abort();
        kiln_free(again);
        kiln_free(typed_again);
        kiln_free(printed);
        kiln_free(typed);
        kiln_module_free(m3);
        kiln_module_free(m2);
        kiln_module_free(m);
    }
    kiln_context_free(ctx);
    free(text);
    return 0;
}
