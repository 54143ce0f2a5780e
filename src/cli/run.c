/* run.c — `kiln run`: runs one function of an IR file on the interpreter (or, with --vm, compiled)
 * with inputs from .npy files and scalar arguments (int:3, float:0.5, bool:true), and writes each
 * output to a .npy. */
#include "cli/cli.h"
#include "core/core.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TUPLE_DEPTH 64

typedef struct run_args {
    const char *file, *func, *prefix;
    bool vm; /* --vm: compile, then run the program */
    int n_in;
    const char **in; /* .npy paths or scalar arguments, in parameter order */
} run_args;

static int parse_args(int argc, char **argv, run_args *a) {
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (options && !strcmp(s, "--")) {
            options = false;
        } else if (options && (!strcmp(s, "-f") || !strcmp(s, "-o"))) {
            if (++i == argc) return kiln_cli_error(KILN_CLI_USAGE, "option %s needs a value", s);
            *(s[1] == 'f' ? &a->func : &a->prefix) = argv[i];
        } else if (options && !strcmp(s, "--vm")) {
            a->vm = true;
        } else if (options && s[0] == '-' && s[1]) {
            return kiln_cli_error(KILN_CLI_USAGE, "unknown option '%s' for 'run'", s);
        } else if (!a->file) {
            a->file = s;
        } else {
            a->in[a->n_in++] = s;
        }
    }
    if (!a->file) return kiln_cli_error(KILN_CLI_USAGE, "'run' needs an IR FILE");
    return KILN_CLI_OK;
}

/* A scalar argument "int:3" / "float:-0.5" / "bool:true". Returns 1 if `s` is one (stored in
 * *v), 0 if it is not scalar syntax (so a path), -1 if it is malformed. */
static int parse_scalar(const char *s, kiln_value *v) {
    const char *colon = strchr(s, ':');
    size_t tag = colon ? (size_t)(colon - s) : 0;
    const char *text = colon ? colon + 1 : NULL;
    char *end = NULL;
    errno = 0;
    if (tag == 3 && !strncmp(s, "int", 3)) {
        *v = kiln_value_int(strtoll(text, &end, 10));
    } else if (tag == 5 && !strncmp(s, "float", 5)) {
        *v = kiln_value_float(strtod(text, &end));
        if (errno == ERANGE && v->f == 0) errno = 0; /* underflow to 0 is fine */
    } else if (tag == 4 && !strncmp(s, "bool", 4)) {
        if (strcmp(text, "true") && strcmp(text, "false")) return -1;
        *v = kiln_value_bool(!strcmp(text, "true"));
        return 1;
    } else {
        return 0;
    }
    return end == text || *end || errno ? -1 : 1;
}

/* Fills in[] with the scalar arguments; a malformed one is a usage error. */
static int parse_scalars(const run_args *a, kiln_value *in) {
    for (int i = 0; i < a->n_in; i++)
        if (parse_scalar(a->in[i], &in[i]) < 0)
            return kiln_cli_error(KILN_CLI_USAGE, "bad scalar argument '%s' (expected int:N, float:X, bool:true or "
                                  "bool:false)", a->in[i]);
    return KILN_CLI_OK;
}

/* Fills the entries of in[] that parse_scalars left empty (KILN_VALUE_NONE) from .npy files. */
static int load_tensors(kiln_context *ctx, const run_args *a, kiln_value *in) {
    for (int i = 0; i < a->n_in; i++) {
        if (in[i].kind != KILN_VALUE_NONE) continue;
        kiln_tensor *t = kiln_npy_load(ctx, a->in[i]);
        if (!t) return kiln_cli_fail(ctx);
        in[i] = kiln_value_tensor(t);
    }
    return KILN_CLI_OK;
}

/* "@f takes 2 inputs (f32[2, 3], int), got 1". */
static int arity_error(kiln_function *f, int given) {
    kiln_buf b = {0};
    for (int i = 0; i < kiln_function_param_count(f); i++) {
        char *t = kiln_type_str(kiln_function_param_type(f, i));
        kiln_buf_printf(&b, "%s%s", i ? ", " : "", t ? t : "?");
        kiln_free(t);
    }
    char *sig = kiln_buf_take(&b);
    int rc = kiln_cli_error(KILN_CLI_ERROR, "@%s takes %d input%s (%s), got %d", kiln_function_name(f),
                            kiln_function_param_count(f), kiln_function_param_count(f) == 1 ? "" : "s",
                            sig ? sig : "", given);
    free(sig);
    return rc;
}

/* Writes one non-tuple output as PREFIX<index>.npy (scalars as 0-d arrays; bf16 as f32, which
 * NumPy can read) and prints what it wrote. */
static int write_output(kiln_context *ctx, kiln_value v, const char *prefix, int index) {
    size_t size = strlen(prefix) + 32;
    char *path = malloc(size), shape[256];
    if (!path) return kiln_cli_error(KILN_CLI_ERROR, "out of memory");
    snprintf(path, size, "%s%d.npy", prefix, index);
    kiln_buf what = {0};
    kiln_tensor *t = NULL;
    switch (v.kind) {
    case KILN_VALUE_TENSOR:
        t = v.tensor->dtype == KILN_BF16 ? kiln_tensor_cast(ctx, v.tensor, KILN_F32) : kiln_tensor_retain(v.tensor);
        kiln_buf_printf(&what, "%s%s", kiln_dtype_name(v.tensor->dtype),
                        kiln_shape_str(v.tensor->ndim, v.tensor->shape, shape, sizeof shape));
        if (v.tensor->dtype == KILN_BF16) kiln_buf_puts(&what, " (saved as f32: NumPy has no bfloat16)");
        break;
    case KILN_VALUE_INT:
        t = kiln_tensor_from_data(ctx, KILN_I64, 0, NULL, &v.i);
        kiln_buf_printf(&what, "int %lld", (long long)v.i);
        break;
    case KILN_VALUE_FLOAT:
        t = kiln_tensor_from_data(ctx, KILN_F64, 0, NULL, &v.f);
        kiln_buf_puts(&what, "float ");
        kiln_buf_double(&what, v.f);
        break;
    case KILN_VALUE_BOOL:
        t = kiln_tensor_from_data(ctx, KILN_BOOL, 0, NULL, &v.b);
        kiln_buf_puts(&what, v.b ? "bool true" : "bool false");
        break;
    default:
        kiln_error(ctx, KILN_ERR_INTERNAL, "output %d has no value", index);
    }
    char *desc = kiln_buf_take(&what);
    int rc = KILN_CLI_OK;
    if (!t || kiln_npy_save(ctx, path, t) != KILN_OK) rc = kiln_cli_fail(ctx);
    else printf("%s  %s\n", path, desc ? desc : "");
    kiln_tensor_release(t);
    free(desc);
    free(path);
    return rc;
}

/* Writes v, tuples flattened depth-first, numbering outputs from *next. */
static int write_outputs(kiln_context *ctx, kiln_value v, const char *prefix, int *next, int depth) {
    if (v.kind != KILN_VALUE_TUPLE) return write_output(ctx, v, prefix, (*next)++);
    if (depth == MAX_TUPLE_DEPTH) return kiln_cli_error(KILN_CLI_ERROR, "output tuples nest too deeply");
    int rc = KILN_CLI_OK;
    for (int i = 0; i < kiln_value_tuple_size(v) && rc == KILN_CLI_OK; i++)
        rc = write_outputs(ctx, kiln_value_tuple_get(v, i), prefix, next, depth + 1);
    return rc;
}

int kiln_cli_run(kiln_context *ctx, int argc, char **argv) {
    run_args a = {.func = "main", .prefix = "out", .in = calloc((size_t)argc, sizeof(char *))};
    kiln_value *in = calloc((size_t)argc, sizeof *in);
    kiln_module *m = NULL;
    int rc = !a.in || !in ? kiln_cli_error(KILN_CLI_ERROR, "out of memory") : parse_args(argc, argv, &a);
    if (rc == KILN_CLI_OK) rc = parse_scalars(&a, in);
    if (rc == KILN_CLI_OK && !(m = kiln_cli_load(ctx, a.file))) rc = KILN_CLI_ERROR;
    kiln_function *f = m ? kiln_module_function(m, a.func) : NULL;
    if (m && !f) rc = kiln_cli_error(KILN_CLI_ERROR, "%s: no function @%s", a.file, a.func);
    else if (f && a.n_in != kiln_function_param_count(f)) rc = arity_error(f, a.n_in);
    if (rc == KILN_CLI_OK) rc = load_tensors(ctx, &a, in);
    if (rc == KILN_CLI_OK) {
        kiln_value out;
        kiln_program *p = NULL;
        kiln_status st = a.vm ? kiln_compile(f, NULL, &p) : KILN_OK;
        if (!st) st = a.vm ? kiln_program_run(p, a.n_in, in, &out) : kiln_function_run(f, a.n_in, in, &out);
        kiln_program_free(p);
        if (st != KILN_OK) {
            rc = kiln_cli_fail(ctx);
        } else {
            int next = 0;
            rc = write_outputs(ctx, out, a.prefix, &next, 0);
            kiln_value_release(out);
        }
    }
    for (int i = 0; i < a.n_in; i++) kiln_value_release(in[i]);
    kiln_module_free(m);
    free(in);
    free(a.in);
    return rc;
}
