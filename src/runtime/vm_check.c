/* vm_check.c — the interpreter as the VM's oracle: with KILN_VM_CHECK=1 every
 * kiln_function_run also compiles the function (once per function), runs the program on the
 * same inputs and fails with a message naming the first result element that differs. The
 * check compiles with the dialects in $KILN_VM_CHECK_DIALECTS, by default "c" (generated and
 * built-in kernels): library kernels sum in other orders, which optimizers such as Adam amplify
 * on gradients that are zero up to rounding; they are checked op by op in test_dialects.c.
 * $KILN_VM_CHECK_DEVICE=cuda compiles for the GPU instead (every CUDA dialect unless
 * $KILN_VM_CHECK_DIALECTS says otherwise): the whole test suite then checks every op it runs on
 * CUDA against the interpreter (docs/cuda.md). */
#include "runtime/vm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool kiln_vm_check_enabled(void) {
    const char *e = getenv("KILN_VM_CHECK");
    return e && *e && strcmp(e, "0") != 0;
}

typedef struct checked { kiln_program *prog; int n_vars; } checked;

static void checked_free(void *arg) {
    checked *c = arg;
    kiln_program_free(c->prog);
    free(c);
}

/* Tolerances by dtype: generated and library kernels may sum in another order. */
static double rel_tol(kiln_dtype dt) {
    switch (dt) {
    case KILN_F64: return 1e-9;
    case KILN_F32: return 2e-4;
    default: return 2e-2;
    }
}

/* The loosest tolerance of the float tensors region r computes with (its nodes' operands, nested
 * regions too): an f64 result computed from an f32 intermediate (the log of an f32 input in a
 * mixed-precision gradient) carries that intermediate's rounding, which libm and the generated
 * kernels' vectorized functions may round apart by an ulp. 0 when there are none. */
static double region_tol(const kiln_region *r) {
    double t = 0;
    for (const kiln_node *n = r->first; n; n = n->next) {
        for (int i = 0; i < n->n_in; i++) {
            const kiln_type *ty = n->in[i]->type;
            bool fl = ty && ty->kind == KILN_TYPE_TENSOR &&
                      (ty->dtype == KILN_F64 || ty->dtype == KILN_F32 || ty->dtype == KILN_F16 || ty->dtype == KILN_BF16);
            if (fl && rel_tol(ty->dtype) > t) t = rel_tol(ty->dtype);
        }
        for (int k = 0; k < n->n_regions; k++) {
            double u = region_tol(n->regions[k]);
            t = u > t ? u : t;
        }
    }
    return t;
}

/* Compares the interpreter's a with the VM's b, each float tensor within the looser of its own
 * dtype's tolerance and floor_tol (the function's, region_tol). */
static kiln_status compare(kiln_context *ctx, const char *fn, kiln_value a, kiln_value b, double floor_tol, int *leaf) {
    if (a.kind != b.kind) return kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: result leaf %d: kinds differ", fn, *leaf);
    switch (a.kind) {
    case KILN_VALUE_TUPLE:
        if (kiln_value_tuple_size(a) != kiln_value_tuple_size(b))
            return kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: tuple sizes %d vs %d", fn, kiln_value_tuple_size(a),
                              kiln_value_tuple_size(b));
        for (int i = 0; i < kiln_value_tuple_size(a); i++)
            if (compare(ctx, fn, kiln_value_tuple_get(a, i), kiln_value_tuple_get(b, i), floor_tol, leaf))
                return kiln_error_status(ctx);
        return KILN_OK;
    case KILN_VALUE_TENSOR: {
        const kiln_tensor *x = a.tensor, *y = b.tensor;
        if (x->dtype != y->dtype || x->numel != y->numel)
            return kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: result leaf %d: dtype or size differs", fn, *leaf);
        bool is_float = x->dtype == KILN_F32 || x->dtype == KILN_F64 || x->dtype == KILN_F16 || x->dtype == KILN_BF16;
        double tol = rel_tol(x->dtype) > floor_tol ? rel_tol(x->dtype) : floor_tol;
        for (int64_t i = 0; i < x->numel; i++) {
            double u = kiln_load_f64(x->dtype, x->data, i), v = kiln_load_f64(y->dtype, y->data, i);
            bool same = is_float ? (u == v || (isnan(u) && isnan(v)) || fabs(u - v) <= tol * (1.0 + fabs(u)))
                                 : kiln_load_i64(x->dtype, x->data, i) == kiln_load_i64(y->dtype, y->data, i);
            if (!same)
                return kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: result leaf %d element %lld: interpreter %.9g, VM %.9g",
                                  fn, *leaf, (long long)i, u, v);
        }
        (*leaf)++;
        return KILN_OK;
    }
    case KILN_VALUE_INT: (*leaf)++; return a.i == b.i ? KILN_OK : kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: int %lld vs %lld", fn, (long long)a.i, (long long)b.i);
    case KILN_VALUE_BOOL: (*leaf)++; return a.b == b.b ? KILN_OK : kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: bool differs", fn);
    case KILN_VALUE_FLOAT:
        (*leaf)++;
        return a.f == b.f || fabs(a.f - b.f) <= 1e-9 * (1.0 + fabs(a.f)) || (isnan(a.f) && isnan(b.f))
                   ? KILN_OK
                   : kiln_error(ctx, KILN_ERR_INTERNAL, "VM check @%s: float %.17g vs %.17g", fn, a.f, b.f);
    default: return KILN_OK;
    }
}

/* v with its tensors on the host (a new reference; none with the error set on failure). */
static kiln_value to_host(kiln_context *ctx, kiln_value v) {
    if (v.kind == KILN_VALUE_TENSOR) {
        kiln_tensor *t = kiln_tensor_to(ctx, v.tensor, (kiln_device){KILN_DEVICE_CPU, 0});
        return t ? kiln_value_tensor(t) : (kiln_value){.kind = KILN_VALUE_NONE};
    }
    if (v.kind != KILN_VALUE_TUPLE) return v;
    int n = kiln_value_tuple_size(v);
    kiln_value *parts = calloc((size_t)n + 1, sizeof *parts), r = {.kind = KILN_VALUE_NONE};
    bool ok = parts != NULL;
    for (int i = 0; ok && i < n; i++) ok = (parts[i] = to_host(ctx, kiln_value_tuple_get(v, i))).kind != KILN_VALUE_NONE;
    if (ok) r = kiln_value_tuple(ctx, n, parts);
    for (int i = 0; parts && i < n; i++) kiln_value_release(parts[i]);
    free(parts);
    return r;
}

kiln_status kiln_vm_check(kiln_function *f, int n_in, const kiln_value *in, kiln_value expected) {
    kiln_context *ctx = f->module->ctx;
    checked *c = f->vm_checked;
    if (c && c->n_vars != f->n_vars) { /* the function changed since: compile again */
        kiln_program_free(c->prog);
        c->prog = NULL;
    }
    if (!c) {
        if (!(c = calloc(1, sizeof *c)) || !kiln_arena_on_free(&f->module->arena, checked_free, c)) {
            free(c);
            return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
        }
        f->vm_checked = c;
    }
    if (!c->prog) {
        c->n_vars = f->n_vars;
        kiln_compile_options o = kiln_compile_defaults();
        const char *d = getenv("KILN_VM_CHECK_DIALECTS"), *dev = getenv("KILN_VM_CHECK_DEVICE");
        o.device = dev && *dev ? dev : NULL;
        o.dialects = d && *d ? d : o.device && strcmp(o.device, "cpu") ? NULL : "c";
        if (kiln_compile(f, &o, &c->prog)) {
            char msg[KILN_ERROR_MAX];
            snprintf(msg, sizeof msg, "%s", kiln_error_message(ctx));
            return kiln_error(ctx, kiln_error_status(ctx), "VM check @%s: compiling failed: %s", f->name, msg);
        }
    }
    kiln_value got;
    if (kiln_program_run(c->prog, n_in, in, &got)) {
        char msg[KILN_ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", kiln_error_message(ctx));
        return kiln_error(ctx, kiln_error_status(ctx), "VM check @%s: the VM failed where the interpreter did not: %s", f->name, msg);
    }
    kiln_value host = to_host(ctx, got);
    kiln_value_release(got);
    int leaf = 0;
    kiln_status s = host.kind == KILN_VALUE_NONE ? kiln_error_status(ctx) : compare(ctx, f->name, expected, host, region_tol(f->body), &leaf);
    kiln_value_release(host);
    return s;
}
