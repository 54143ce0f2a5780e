/* manager.c — the pass pipeline: a list of named passes run in order over the function being
 * compiled; KILN_DEBUG prints the IR after each, and the verifier runs between passes. */
#include "compiler/compiler.h"
#include "passes/passes.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_status kiln_pass_infer_types(kiln_pass_ctx *pc, kiln_function *f) {
    (void)f;
    return kiln_module_infer(pc->module);
}

kiln_status kiln_pass_inline_calls(kiln_pass_ctx *pc, kiln_function *f) {
    (void)pc;
    return kiln_pass_inline(f->body);
}

/* A composite stays whole when an allowed library dialect implements it (dispatch then picks
 * that implementation); the rest become primitives. */
static bool library_claims(const kiln_node *n, void *arg) {
    const kiln_pass_ctx *pc = arg;
    return kiln_dialect_pick(n, pc->n_dialects, pc->dialects) != NULL;
}

kiln_status kiln_pass_decompose_composites(kiln_pass_ctx *pc, kiln_function *f) {
    return kiln_pass_decompose_except(f->body, library_claims, pc);
}

kiln_status kiln_pass_remove_dead(kiln_pass_ctx *pc, kiln_function *f) {
    (void)pc;
    return kiln_pass_dce(f->body);
}

const kiln_pass kiln_passes[] = {
    {"infer-types", kiln_pass_infer_types, 0},
    {"inline", kiln_pass_inline_calls, 0},
    {"epilogue", kiln_pass_epilogue, 1}, /* KILN_CUDA_EPILOGUES=1: GEMM + activation / bias gradient -> one cuBLASLt call */
    {"decompose", kiln_pass_decompose_composites, 0},
    {"simplify", kiln_pass_simplify, 1},
    {"fold", kiln_pass_fold, 1},
    {"cse", kiln_pass_cse, 1},
    {"simplify", kiln_pass_simplify, 1}, /* identities that folding and CSE exposed */
    {"dce", kiln_pass_remove_dead, 0},
    {"dispatch", kiln_pass_dispatch, 0},
    {"fuse", kiln_pass_fuse, 2},
};
const int kiln_n_passes = (int)(sizeof kiln_passes / sizeof kiln_passes[0]);

/* Whether the comma list KILN_SKIP_PASSES names pass p (an experiment's switch: e.g.
 * KILN_SKIP_PASSES=epilogue,cse). Only optimizations (min_opt_level >= 1) can be skipped. */
static bool skipped(const kiln_pass *p, bool required) {
    const char *list = getenv("KILN_SKIP_PASSES");
    size_t n = strlen(p->name);
    for (const char *at = list; !required && p->min_opt_level >= 1 && at && *at; at += strcspn(at, ",") + (at[strcspn(at, ",")] != 0))
        if (strcspn(at, ",") == n && !strncmp(at, p->name, n)) return true;
    return false;
}

kiln_status kiln_passes_run(kiln_pass_ctx *pc, kiln_function *f) {
    for (int i = 0; i < kiln_n_passes; i++) {
        const kiln_pass *p = &kiln_passes[i];
        /* on CUDA, generated kernels are the only implementation of elementwise ops and
         * reductions: fusion runs at every level */
        bool required = pc->cuda && p->run == kiln_pass_fuse;
        if ((pc->opt_level < p->min_opt_level && !required) || skipped(p, required)) continue;
        if (p->run(pc, f)) {
            const char *msg = kiln_error_message(pc->ctx);
            char copy[KILN_ERROR_MAX];
            snprintf(copy, sizeof copy, "%s", msg);
            return kiln_error(pc->ctx, kiln_error_status(pc->ctx) ? kiln_error_status(pc->ctx) : KILN_ERR_INTERNAL,
                              "pass '%s': %s", p->name, copy);
        }
        f->liveness_ready = false;
        if (pc->debug >= 1) {
            char *text = kiln_module_print(pc->module, KILN_PRINT_TYPES);
            fprintf(stderr, "---- IR after pass '%s' ----\n%s", p->name, text ? text : "(out of memory)\n");
            kiln_free(text);
        }
#ifndef NDEBUG
        if (kiln_module_verify(pc->module)) {
            char copy[KILN_ERROR_MAX];
            snprintf(copy, sizeof copy, "%s", kiln_error_message(pc->ctx));
            return kiln_error(pc->ctx, KILN_ERR_INTERNAL, "the IR after pass '%s' does not verify: %s", p->name, copy);
        }
#endif
    }
    return KILN_OK;
}
