/* compiler.h — the pass manager: named passes run in order over a private copy of the function
 * being compiled, with a context of options; the compiled program's lowering and the VM. */
#ifndef KILN_COMPILER_H
#define KILN_COMPILER_H

#include "ir/ir.h"
#include "dialects/dialect.h"

/* What every pass receives. */
typedef struct kiln_pass_ctx {
    kiln_context *ctx;
    kiln_module *module;      /* the private module being compiled */
    int opt_level;            /* 0, 1, 2 (kiln_compile_options) */
    int debug;                /* 0, 1 (IR after every pass), 2 (+ generated kernels) */
    int n_dialects;           /* allowed dialects, highest priority first */
    kiln_dialect_id dialects[KILN_DIALECT_COUNT];
    const char *cache_dir;    /* generated-kernel cache directory */
    int n_kernels;            /* fusion: kernel functions made so far (for names) */
    bool cuda;                /* compiling for a CUDA device */
} kiln_pass_ctx;

/* A pass transforms function f (and may add functions to pc->module). Returns KILN_OK or an
 * error whose message names the op and its place. */
typedef kiln_status (*kiln_pass_fn)(kiln_pass_ctx *pc, kiln_function *f);

typedef struct kiln_pass {
    const char *name;   /* "fold", "cse", ... as KILN_DEBUG prints it */
    kiln_pass_fn run;
    int min_opt_level;  /* runs when pc->opt_level >= this */
} kiln_pass;

/* The pipeline, in order (compiler/manager.c). */
extern const kiln_pass kiln_passes[];
extern const int kiln_n_passes;
/* Runs every enabled pass over f; with debug prints the IR after each to stderr, and in debug
 * builds (or debug >= 1) runs the verifier between passes. */
kiln_status kiln_passes_run(kiln_pass_ctx *pc, kiln_function *f);

/* ---- the passes (one file each in src/passes or src/compiler) ---------------------------- */
kiln_status kiln_pass_infer_types(kiln_pass_ctx *pc, kiln_function *f);   /* manager.c */
kiln_status kiln_pass_inline_calls(kiln_pass_ctx *pc, kiln_function *f);  /* manager.c */
kiln_status kiln_pass_epilogue(kiln_pass_ctx *pc, kiln_function *f);      /* passes/epilogue.c */
kiln_status kiln_pass_decompose_composites(kiln_pass_ctx *pc, kiln_function *f); /* manager.c */
kiln_status kiln_pass_simplify(kiln_pass_ctx *pc, kiln_function *f);      /* passes/simplify.c */
kiln_status kiln_pass_fold(kiln_pass_ctx *pc, kiln_function *f);          /* passes/fold.c */
kiln_status kiln_pass_cse(kiln_pass_ctx *pc, kiln_function *f);           /* passes/cse.c */
kiln_status kiln_pass_remove_dead(kiln_pass_ctx *pc, kiln_function *f);  /* manager.c */
kiln_status kiln_pass_dispatch(kiln_pass_ctx *pc, kiln_function *f);      /* dialects/dispatch.c */
kiln_status kiln_pass_fuse(kiln_pass_ctx *pc, kiln_function *f);          /* passes/fuse.c */

#endif /* KILN_COMPILER_H */
