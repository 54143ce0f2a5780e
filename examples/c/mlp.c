/* mlp.c — shows the C API end to end: builds the forward pass of a 2-layer MLP
 * (dense -> relu -> dense -> softmax) as IR, prints it with inferred types, then runs it on the
 * interpreter with fixed weights and prints the class probabilities of a batch of 4 inputs. */
#include "kiln.h"
#include <stdio.h>

enum { BATCH = 4, IN = 3, HIDDEN = 5, OUT = 2 };

static int fail(kiln_context *ctx) {
    fprintf(stderr, "mlp: %s\n", kiln_error_message(ctx));
    return 1;
}

int main(void) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);

    /* def @mlp(%x: f32[4,3], %w1: f32[5,3], %b1: f32[5], %w2: f32[2,5], %b2: f32[2]) */
    int64_t xs[] = {BATCH, IN}, w1s[] = {HIDDEN, IN}, b1s[] = {HIDDEN}, w2s[] = {OUT, HIDDEN}, b2s[] = {OUT};
    kiln_function *f = kiln_function_new(m, "mlp");
    kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 2, xs));
    kiln_var *w1 = kiln_function_param(f, "w1", kiln_type_tensor(m, KILN_F32, 2, w1s));
    kiln_var *b1 = kiln_function_param(f, "b1", kiln_type_tensor(m, KILN_F32, 1, b1s));
    kiln_var *w2 = kiln_function_param(f, "w2", kiln_type_tensor(m, KILN_F32, 2, w2s));
    kiln_var *b2 = kiln_function_param(f, "b2", kiln_type_tensor(m, KILN_F32, 1, b2s));
    kiln_region *body = kiln_function_body(f);
    kiln_var *h = kiln_emit(body, "dense", 3, (kiln_var *[]){x, w1, b1}, NULL); /* x @ w1^T + b1: [4,5] */
    h = h ? kiln_emit(body, "relu", 1, &h, NULL) : NULL;
    kiln_var *logits = h ? kiln_emit(body, "dense", 3, (kiln_var *[]){h, w2, b2}, NULL) : NULL; /* [4,2] */
    kiln_var *probs = logits ? kiln_emit(body, "softmax", 1, &logits, "axis=-1") : NULL;
    if (!probs || kiln_region_yield(body, 1, &probs) != KILN_OK) return fail(ctx);
    if (kiln_module_infer(m) != KILN_OK || kiln_module_verify(m) != KILN_OK) return fail(ctx);

    char *text = kiln_module_print(m, KILN_PRINT_TYPES);
    if (!text) return fail(ctx);
    printf("%s\n", text);
    kiln_free(text);

    const float xd[BATCH * IN] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, -1, 0.5f};
    const float w1d[HIDDEN * IN] = {0.5f, -0.2f, 0.1f, -0.3f, 0.8f, 0.2f, 0.7f, 0.1f, -0.5f,
                                    0.0f, 0.4f, 0.9f, -0.6f, -0.1f, 0.3f};
    const float b1d[HIDDEN] = {0.1f, 0.0f, -0.1f, 0.2f, 0.05f};
    const float w2d[OUT * HIDDEN] = {1.0f, -0.5f, 0.3f, 0.8f, -0.2f, -0.7f, 0.6f, 0.2f, -0.4f, 0.9f};
    const float b2d[OUT] = {0.0f, 0.1f};
    kiln_value in[5] = {
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, xs, xd)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, w1s, w1d)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 1, b1s, b1d)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, w2s, w2d)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 1, b2s, b2d)),
    };
    kiln_value out;
    int rc = 0;
    if (kiln_function_run(f, 5, in, &out) != KILN_OK) {
        rc = fail(ctx);
    } else {
        const float *p = kiln_tensor_data(out.tensor);
        for (int i = 0; i < BATCH; i++) printf("input %d: p = [%.4f, %.4f]\n", i, p[2 * i], p[2 * i + 1]);
        kiln_value_release(out);
    }
    for (int i = 0; i < 5; i++) kiln_value_release(in[i]);
    kiln_module_free(m);
    kiln_context_free(ctx);
    return rc;
}
