/* train.c — training through the C API: builds @loss = mse_loss(dense(x, w, b), y) as IR,
 * differentiates it with kiln_autodiff, builds @train_step (calls the gradient, applies an SGD
 * update) and runs 100 steps of linear regression on synthetic data with the interpreter. */
#include "kiln.h"
#include <stdio.h>

enum { N = 64, IN = 8, OUT = 2, STEPS = 100 };
static const double LR = 0.5;

static int fail(kiln_context *ctx) {
    fprintf(stderr, "train: %s\n", kiln_error_message(ctx));
    return 1;
}

/* def @loss(%x: f32[N,IN], %y: f32[N,OUT], %w: f32[OUT,IN], %b: f32[OUT]) = mse_loss(x w^T + b, y) */
static kiln_function *build_loss(kiln_module *m, kiln_type *const types[4]) {
    static const char *const names[4] = {"x", "y", "w", "b"};
    kiln_function *f = kiln_function_new(m, "loss");
    kiln_var *p[4];
    for (int i = 0; i < 4; i++) p[i] = kiln_function_param(f, names[i], types[i]);
    kiln_region *body = kiln_function_body(f);
    kiln_var *pred = kiln_emit(body, "dense", 3, (kiln_var *[]){p[0], p[2], p[3]}, NULL);
    kiln_var *loss = pred ? kiln_emit(body, "mse_loss", 2, (kiln_var *[]){pred, p[1]}, NULL) : NULL;
    return loss && kiln_region_yield(body, 1, &loss) == KILN_OK ? f : NULL;
}

/* def @train_step(%x, %y, %w, %b, %lr: float) -> (loss, w - lr dw, b - lr db), calling
 * @loss_grad(x, y, w, b) -> (loss, dw, db) made by the autodiff pass. */
static kiln_function *build_train_step(kiln_module *m, kiln_type *const types[4], kiln_function *grad) {
    static const char *const names[4] = {"x", "y", "w", "b"};
    kiln_function *f = kiln_function_new(m, "train_step");
    kiln_var *p[4];
    for (int i = 0; i < 4; i++) p[i] = kiln_function_param(f, names[i], types[i]);
    kiln_var *lr = kiln_function_param(f, "lr", kiln_type_float(m));
    kiln_region *body = kiln_function_body(f);
    kiln_var *out = kiln_emit_call(body, grad, 4, p);
    if (!out) return NULL;
    kiln_var *results[3];
    for (int i = 0; i < 3; i++) {
        char attrs[16];
        snprintf(attrs, sizeof attrs, "index=%d", i);
        if (!(results[i] = kiln_emit(body, "get", 1, &out, attrs))) return NULL;
    }
    for (int i = 1; i < 3; i++) { /* SGD: param - lr * grad (a float scalar keeps f32) */
        kiln_var *step = kiln_emit(body, "multiply", 2, (kiln_var *[]){results[i], lr}, NULL);
        if (!step || !(results[i] = kiln_emit(body, "subtract", 2, (kiln_var *[]){p[i + 1], step}, NULL))) return NULL;
    }
    return kiln_region_yield(body, 3, results) == KILN_OK ? f : NULL;
}

/* Uniform in [-1, 1) from a 32-bit LCG (Numerical Recipes constants): reproducible everywhere. */
static float uniform(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 23) - 1.0f;
}

/* y = x w_true^T + b_true + noise of amplitude 0.01, for x uniform in [-1, 1). */
static void make_data(float *x, float *y) {
    uint32_t s = 42;
    float w_true[OUT * IN], b_true[OUT];
    for (int i = 0; i < OUT * IN; i++) w_true[i] = uniform(&s);
    for (int o = 0; o < OUT; o++) b_true[o] = uniform(&s);
    for (int i = 0; i < N * IN; i++) x[i] = uniform(&s);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            float acc = b_true[o] + 0.01f * uniform(&s);
            for (int k = 0; k < IN; k++) acc += x[n * IN + k] * w_true[o * IN + k];
            y[n * OUT + o] = acc;
        }
}

/* Runs STEPS steps from w = 0, b = 0; returns 0 when the final loss is below 1% of the first. */
static int train(kiln_context *ctx, kiln_function *step_fn, const int64_t shapes[4][2]) {
    static float x[N * IN], y[N * OUT];
    make_data(x, y);
    const float zeros[OUT * IN] = {0};
    kiln_value v[5] = {
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, shapes[0], x)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, shapes[1], y)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, shapes[2], zeros)),
        kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 1, shapes[3], zeros)),
        kiln_value_float(LR),
    };
    int rc = 0;
    for (int i = 0; i < 4; i++)
        if (!v[i].tensor) rc = fail(ctx);
    double first = 0, loss = 0;
    for (int step = 1; step <= STEPS && rc == 0; step++) {
        kiln_value out;
        if (kiln_function_run(step_fn, 5, v, &out) != KILN_OK) {
            rc = fail(ctx);
            break;
        }
        loss = *(const float *)kiln_tensor_data(kiln_value_tuple_get(out, 0).tensor);
        if (step == 1) first = loss;
        for (int i = 2; i < 4; i++) { /* the updated w and b replace the old ones */
            kiln_value_release(v[i]);
            v[i] = kiln_value_retain(kiln_value_tuple_get(out, i - 1));
        }
        kiln_value_release(out);
        if (step == 1 || step % 20 == 0) printf("step %3d  loss %.6f\n", step, loss);
    }
    for (int i = 0; i < 4; i++) kiln_value_release(v[i]);
    if (rc == 0 && !(loss < 0.01 * first)) {
        fprintf(stderr, "train: final loss %g is not below 1%% of the first (%g)\n", loss, first);
        rc = 1;
    }
    if (rc == 0) printf("loss went from %.6f to %.6f (%.4f%% of the first)\n", first, loss, 100 * loss / first);
    return rc;
}

int main(void) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    const int64_t shapes[4][2] = {{N, IN}, {N, OUT}, {OUT, IN}, {OUT}};
    kiln_type *types[4] = {
        kiln_type_tensor(m, KILN_F32, 2, shapes[0]), kiln_type_tensor(m, KILN_F32, 2, shapes[1]),
        kiln_type_tensor(m, KILN_F32, 2, shapes[2]), kiln_type_tensor(m, KILN_F32, 1, shapes[3]),
    };
    kiln_function *loss = build_loss(m, types);
    kiln_function *grad = loss ? kiln_autodiff(loss, 2, (const int[]){2, 3}, "loss_grad") : NULL;
    kiln_function *step = grad ? build_train_step(m, types, grad) : NULL;
    bool ok = step && kiln_module_infer(m) == KILN_OK && kiln_module_verify(m) == KILN_OK;
    char *text = ok ? kiln_module_print(m, KILN_PRINT_TYPES) : NULL;
    int rc = text ? 0 : fail(ctx);
    if (text) {
        printf("%s\n", text);
        kiln_free(text);
        rc = train(ctx, step, shapes);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
    return rc;
}
