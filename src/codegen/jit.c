/* jit.c — compiling generated kernels with the system compiler, cached (stub until written). */
#include "codegen/codegen.h"
#include <stdlib.h>
#include <string.h>

kiln_status kiln_jit_build(kiln_context *ctx, const char *cache_dir, int debug, int n, const kiln_gen_kernel *kernels,
                           kiln_gen_fn *fns, kiln_jit_lib **lib) {
    (void)cache_dir; (void)debug; (void)n; (void)kernels; (void)fns;
    *lib = NULL;
    return kiln_error(ctx, KILN_ERR_UNSUPPORTED, "the kernel compiler is not written yet");
}

void kiln_jit_lib_free(kiln_jit_lib *lib) { (void)lib; }

char *kiln_jit_cache_dir(const char *dir) { return strdup(dir ? dir : "/tmp/kiln-cache"); }
