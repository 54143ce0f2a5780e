/* cuda_check.c — the test helper that runs one op through a CUDA dialect implementation on
 * device copies of its inputs and compares each result with the reference (kiln_op_run on the
 * host); used by the tests of every CUDA dialect. */
#include "cuda_check.h"
#include "codegen/codegen.h"
#include <stdlib.h>
#include <string.h>

/* "f32[2, 3], scalar" of the inputs into buf. */
static void describe_inputs(int n_in, const kiln_value *in, char *buf, size_t size) {
    buf[0] = 0;
    for (int i = 0, len = 0; i < n_in && len < (int)size - 1; i++) {
        char tb[160] = "scalar", sb[128];
        if (in[i].kind == KILN_VALUE_TENSOR)
            snprintf(tb, sizeof tb, "%s%s", kiln_dtype_name(in[i].tensor->dtype),
                     kiln_shape_str(in[i].tensor->ndim, in[i].tensor->shape, sb, sizeof sb));
        len += snprintf(buf + len, size - (size_t)len, "%s%s", i ? ", " : "", tb);
    }
}

static kiln_type *value_type(kiln_module *m, kiln_value v) {
    switch (v.kind) {
    case KILN_VALUE_TENSOR: return kiln_type_tensor(m, v.tensor->dtype, v.tensor->ndim, v.tensor->shape);
    case KILN_VALUE_INT: return kiln_type_int(m);
    case KILN_VALUE_FLOAT: return kiln_type_float(m);
    default: return kiln_type_bool(m);
    }
}

/* An input on the device (scalars as the 0-d tensors kernels receive); new reference. */
static kiln_tensor *device_input(kiln_context *ctx, kiln_value v, kiln_device gpu) {
    kiln_tensor *h = v.kind == KILN_VALUE_TENSOR ? kiln_tensor_retain(v.tensor)
                     : v.kind == KILN_VALUE_INT  ? kiln_tensor_from_data(ctx, KILN_I64, 0, NULL, &v.i)
                     : v.kind == KILN_VALUE_FLOAT ? kiln_tensor_from_data(ctx, KILN_F64, 0, NULL, &v.f)
                                                   : kiln_tensor_from_data(ctx, KILN_BOOL, 0, NULL, &(uint8_t){v.b});
    kiln_tensor *d = h ? kiln_tensor_to(ctx, h, gpu) : NULL;
    kiln_tensor_release(h);
    return d;
}

const kiln_dialect_impl *cuda_check_impl(const kiln_node *n, int dialect) {
    const kiln_dialect_impl *const *lists[] = {kiln_cuda_impls, kiln_cublaslt_impls, kiln_cudnn_impls};
    const kiln_dialect_impl *best = NULL;
    for (int l = 0; l < 3; l++)
        for (int i = 0; lists[l][i]; i++) {
            const kiln_dialect_impl *c = lists[l][i];
            if (c->op == n->op && (dialect < 0 || (int)c->dialect == dialect) && (!best || c->priority > best->priority) &&
                c->supports(n))
                best = c;
        }
    return best;
}

void cuda_check_op(const char *file, int line, kiln_context *ctx, int dialect, const char *op, int n_in,
                   const kiln_value *in, const char *attrs, double tol, bool tol_of_max) {
    const kiln_device gpu = {KILN_DEVICE_CUDA, 0}, cpu = {KILN_DEVICE_CPU, 0};
    const kiln_backend *be = kiln_cuda_backend(NULL, 0);
    char types[512];
    describe_inputs(n_in, in, types, sizeof types);
    const char *at = attrs ? attrs : "";
    kiln_value ref = {.kind = KILN_VALUE_NONE};
    if (kiln_op_run(ctx, op, n_in, in, attrs, &ref) != KILN_OK) {
        test_fail(file, line, "%s(%s; %s) on the host: %s", op, types, at, kiln_error_message(ctx));
        return;
    }
    kiln_module *m = kiln_module_new(ctx);
    kiln_function *f = kiln_function_new(m, "f");
    kiln_var *params[CUDA_CHECK_MAX];
    kiln_tensor *din[CUDA_CHECK_MAX] = {NULL}, *dout[CUDA_CHECK_MAX] = {NULL};
    for (int i = 0; i < n_in && i < CUDA_CHECK_MAX; i++) {
        char name[8];
        snprintf(name, sizeof name, "p%d", i);
        params[i] = kiln_function_param(f, name, value_type(m, in[i]));
    }
    kiln_node *n = kiln_emit(kiln_function_body(f), op, n_in, params, attrs) ? kiln_function_body(f)->first : NULL;
    const kiln_dialect_impl *impl = n ? cuda_check_impl(n, dialect) : NULL;
    int n_out = ref.kind == KILN_VALUE_TUPLE ? kiln_value_tuple_size(ref) : 1;
    if (!impl) {
        test_fail(file, line, "%s(%s; %s): no CUDA implementation takes it", op, types, at);
        goto done;
    }
    for (int i = 0; i < n_in; i++)
        if (!(din[i] = device_input(ctx, in[i], gpu))) {
            test_fail(file, line, "%s: device input %d: %s", op, i, kiln_error_message(ctx));
            goto done;
        }
    for (int j = 0; j < n_out; j++) {
        const kiln_tensor *r = ref.kind == KILN_VALUE_TUPLE ? kiln_value_tuple_get(ref, j).tensor : ref.tensor;
        if (!(dout[j] = kiln_tensor_new_on(ctx, r->dtype, r->ndim, r->shape, gpu))) {
            test_fail(file, line, "%s: device output %d: %s", op, j, kiln_error_message(ctx));
            goto done;
        }
    }
    char *cache = kiln_jit_cache_dir(NULL);
    kiln_cuda_exec exec = {be, 0, cache, 0};
    const kiln_cuda_exec *outer = kiln_cuda_exec_get();
    kiln_cuda_exec_set(&exec);
    kiln_kernel_args a = {ctx, n->op, n->attrs, n_in, din, n_out, dout, "test"};
    kiln_status s = impl->kernel(&a);
    kiln_cuda_exec_set(outer);
    free(cache);
    if (s != KILN_OK || be->synchronize(0)) {
        test_fail(file, line, "cuda %s(%s; %s) [%s]: %s", op, types, at, kiln_dialect_name(impl->dialect),
                  s != KILN_OK ? kiln_error_message(ctx) : be->last_error());
        goto done;
    }
    for (int j = 0; j < n_out; j++) {
        const kiln_tensor *r = ref.kind == KILN_VALUE_TUPLE ? kiln_value_tuple_get(ref, j).tensor : ref.tensor;
        kiln_tensor *h = kiln_tensor_to(ctx, dout[j], cpu);
        if (!h) {
            test_fail(file, line, "cuda %s: reading result %d: %s", op, j, kiln_error_message(ctx));
            goto done;
        }
        double scale = 0;
        for (int64_t e = 0; tol_of_max && e < r->numel; e++) scale = fmax(scale, fabs(kiln_load_f64(r->dtype, r->data, e)));
        for (int64_t e = 0; e < r->numel; e++) {
            double w = kiln_load_f64(r->dtype, r->data, e), g = kiln_load_f64(h->dtype, h->data, e);
            if (!((isnan(w) && isnan(g)) || fabs(g - w) <= tol * (1 + (tol_of_max ? scale : fabs(w))))) {
                test_fail(file, line, "cuda %s(%s; %s) [%s]: result %d element %lld is %.9g, reference %.9g", op, types, at,
                          kiln_dialect_name(impl->dialect), j, (long long)e, g, w);
                break;
            }
        }
        kiln_tensor_release(h);
    }
done:
    for (int i = 0; i < CUDA_CHECK_MAX; i++) kiln_tensor_release(din[i]), kiln_tensor_release(dout[i]);
    kiln_value_release(ref);
    kiln_module_free(m);
}

const kiln_backend *cuda_check_gpu(const char *test) {
    char why[600] = "";
    const kiln_backend *be = kiln_cuda_backend(why, sizeof why);
    if (!be) printf("  skip: %s: %s\n", test, why);
    return be;
}

void cuda_check_needs_exec(const char *file, int line, kiln_context *ctx, const kiln_dialect_impl *impl,
                           const kiln_node *n, kiln_tensor *x, kiln_tensor *y) {
    const kiln_cuda_exec *outer = kiln_cuda_exec_get();
    kiln_cuda_exec_set(NULL);
    kiln_kernel_args a = {ctx, n->op, n->attrs, 1, &x, 1, &y, "test"};
    kiln_error_clear(ctx);
    kiln_status s = impl->kernel(&a);
    if (s != KILN_ERR_INTERNAL || !strstr(kiln_error_message(ctx), "without a CUDA device context"))
        test_fail(file, line, "%s without a device context returned %s: %s", kiln_op_info_get(n->op)->name, kiln_status_name(s),
                  kiln_error_message(ctx));
    kiln_cuda_exec_set(outer);
}
