/* fuse.c — the fuse pass (stub until written). */
#include "compiler/compiler.h"

kiln_status kiln_pass_fuse(kiln_pass_ctx *pc, kiln_function *f) { (void)pc; (void)f; return KILN_OK; }
