/* control_flow.c — shows `while` and `if` built through the C API: a function that counts the
 * steps of the Collatz sequence from n down to 1 (a while loop whose body holds an if), printed
 * as IR and run on the interpreter for a few n. */
#include "kiln.h"
#include <stdio.h>

static int fail(kiln_context *ctx) {
    fprintf(stderr, "control_flow: %s\n", kiln_error_message(ctx));
    return 1;
}

/* def @collatz(%n0: int) -> int:
 *   (n, steps) = (n0, 0); while n != 1 { n = n % 2 == 0 ? n / 2 : 3n + 1; steps += 1 }; steps */
static kiln_function *build_collatz(kiln_module *m) {
    kiln_function *f = kiln_function_new(m, "collatz");
    kiln_var *n0 = kiln_function_param(f, "n0", kiln_type_int(m));
    kiln_region *body = kiln_function_body(f);
    kiln_node *loop = kiln_emit_while(body, 2, (kiln_var *[]){n0, kiln_lit_int(m, 0)},
                                      (const char *[]){"n", "steps"});
    if (!loop) return NULL;
    kiln_var *n = kiln_node_loop_var(loop, 0), *steps = kiln_node_loop_var(loop, 1);

    kiln_region *cond = kiln_node_region(loop, 0); /* continue while n != 1 */
    kiln_var *go = kiln_emit(cond, "not_equal", 2, (kiln_var *[]){n, kiln_lit_int(m, 1)}, NULL);
    if (!go || kiln_region_yield(cond, 1, &go) != KILN_OK) return NULL;

    kiln_region *step = kiln_node_region(loop, 1);
    kiln_var *rem = kiln_emit(step, "mod", 2, (kiln_var *[]){n, kiln_lit_int(m, 2)}, NULL);
    kiln_var *even = rem ? kiln_emit(step, "equal", 2, (kiln_var *[]){rem, kiln_lit_int(m, 0)}, NULL) : NULL;
    kiln_node *branch = even ? kiln_emit_if(step, even) : NULL;
    if (!branch) return NULL;
    kiln_region *then_r = kiln_node_region(branch, 0), *else_r = kiln_node_region(branch, 1);
    kiln_var *half = kiln_emit(then_r, "floor_divide", 2, (kiln_var *[]){n, kiln_lit_int(m, 2)}, NULL);
    if (!half || kiln_region_yield(then_r, 1, &half) != KILN_OK) return NULL;
    kiln_var *triple = kiln_emit(else_r, "multiply", 2, (kiln_var *[]){n, kiln_lit_int(m, 3)}, NULL);
    kiln_var *up = triple ? kiln_emit(else_r, "add", 2, (kiln_var *[]){triple, kiln_lit_int(m, 1)}, NULL) : NULL;
    if (!up || kiln_region_yield(else_r, 1, &up) != KILN_OK) return NULL;
    kiln_var *next = kiln_node_result(branch);
    kiln_var *count = next ? kiln_emit(step, "add", 2, (kiln_var *[]){steps, kiln_lit_int(m, 1)}, NULL) : NULL;
    if (!count || kiln_region_yield(step, 2, (kiln_var *[]){next, count}) != KILN_OK) return NULL;

    /* the while yields the tuple (n, steps); the function returns steps */
    kiln_var *final = kiln_node_result(loop);
    kiln_var *result = final ? kiln_emit(body, "get", 1, &final, "index=1") : NULL;
    if (!result || kiln_region_yield(body, 1, &result) != KILN_OK) return NULL;
    return f;
}

int main(void) {
    kiln_context *ctx = kiln_context_new();
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = build_collatz(m);
    bool ok = f && kiln_module_infer(m) == KILN_OK && kiln_module_verify(m) == KILN_OK;
    char *text = ok ? kiln_module_print(m, KILN_PRINT_TYPES) : NULL;
    if (!text) return fail(ctx);
    printf("%s\n", text);
    kiln_free(text);

    int rc = 0;
    const int64_t starts[] = {1, 6, 27};
    for (int i = 0; i < 3 && rc == 0; i++) {
        kiln_value in = kiln_value_int(starts[i]), out;
        if (kiln_function_run(f, 1, &in, &out) != KILN_OK) rc = fail(ctx);
        else printf("collatz(%lld) takes %lld steps\n", (long long)starts[i], (long long)out.i);
    }
    kiln_module_free(m);
    kiln_context_free(ctx);
    return rc;
}
