/* fuzz_safetensors.c — libFuzzer target for the .safetensors reader: any file must load or fail
 * cleanly; what loads must save, load again and give the same names, dtypes, shapes and bytes. */
#include "core/core.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void free_loaded(int n, char **names, kiln_tensor **ts) {
    for (int i = 0; i < n; i++) kiln_free(names[i]), kiln_tensor_release(ts[i]);
    kiln_free(names);
    kiln_free(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[64], out[64];
    snprintf(in, sizeof in, "/tmp/kiln_fuzz_st_%d.in", (int)getpid());
    snprintf(out, sizeof out, "/tmp/kiln_fuzz_st_%d.out", (int)getpid());
    FILE *f = fopen(in, "wb");
    if (!f) return 0;
    bool written = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0 || !written) return 0;
    kiln_context *ctx = kiln_context_new();
    int n = 0, n2 = 0;
    char **names = NULL, **names2 = NULL;
    kiln_tensor **ts = NULL, **ts2 = NULL;
    if (ctx && kiln_safetensors_load(ctx, in, &n, &names, &ts) == KILN_OK) {
        if (kiln_safetensors_save(ctx, out, n, (const char *const *)names, ts) != KILN_OK ||
            kiln_safetensors_load(ctx, out, &n2, &names2, &ts2) != KILN_OK || n2 != n)
            abort();
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], names2[i]) || ts[i]->dtype != ts2[i]->dtype || ts[i]->ndim != ts2[i]->ndim ||
                memcmp(ts[i]->shape, ts2[i]->shape, sizeof(int64_t) * (size_t)ts[i]->ndim) ||
                memcmp(ts[i]->data, ts2[i]->data, kiln_tensor_nbytes(ts[i])))
                abort();
        free_loaded(n, names, ts);
        free_loaded(n2, names2, ts2);
        unlink(out);
    }
    kiln_context_free(ctx);
    unlink(in);
    return 0;
}
