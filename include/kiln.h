/* kiln.h — the whole public C API of kiln, a deep-learning compiler for training.
 *
 * TUTORIAL (this block is extracted and compiled by `make test`; examples/c/ has more).
 *
 * A context owns error state; a module owns IR (one arena, freed once); tensors and runtime
 * values are reference counted and owned by whoever holds a reference. Every call that can fail
 * returns a status or NULL and leaves a message in the context: kiln_error_message(ctx).
 *
 * BEGIN TUTORIAL
 * #include <stdio.h>
 * #include "kiln.h"
 *
 * int main(void) {
 *     kiln_context *ctx = kiln_context_new();
 *     kiln_module *m = kiln_module_new(ctx);
 *
 *     // def @main(%x: f32[2,3], %w: f32[3,2]) { return relu(matmul(%x, %w)) summed over axis 1 }
 *     kiln_function *f = kiln_function_new(m, "main");
 *     int64_t xs[] = {2, 3}, ws[] = {3, 2};
 *     kiln_var *x = kiln_function_param(f, "x", kiln_type_tensor(m, KILN_F32, 2, xs));
 *     kiln_var *w = kiln_function_param(f, "w", kiln_type_tensor(m, KILN_F32, 2, ws));
 *     kiln_region *body = kiln_function_body(f);
 *     kiln_var *y = kiln_emit(body, "matmul", 2, (kiln_var *[]){x, w}, NULL);
 *     y = kiln_emit(body, "relu", 1, &y, NULL);
 *     kiln_var *s = kiln_emit(body, "sum", 1, &y, "axes=[1]");
 *     if (!s || kiln_region_yield(body, 1, &s) != KILN_OK) {
 *         fprintf(stderr, "%s\n", kiln_error_message(ctx));
 *         return 1;
 *     }
 *     char *text = kiln_module_print(m, KILN_PRINT_TYPES);   // the IR, with inferred types
 *     printf("%s", text);
 *     kiln_free(text);
 *
 *     float xd[] = {1, 2, 3, 4, 5, 6}, wd[] = {1, -1, 1, -1, 1, -1};
 *     kiln_value in[2] = {kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, xs, xd)),
 *                         kiln_value_tensor(kiln_tensor_from_data(ctx, KILN_F32, 2, ws, wd))};
 *     kiln_value out;
 *     if (kiln_function_run(f, 2, in, &out) != KILN_OK) {     // the interpreter
 *         fprintf(stderr, "%s\n", kiln_error_message(ctx));
 *         return 1;
 *     }
 *     kiln_value_release(out);
 *
 *     kiln_program *p;                                         // compiled: passes, fusion,
 *     if (kiln_compile(f, NULL, &p) != KILN_OK ||              // memory plan, generated kernels
 *         kiln_program_run(p, 2, in, &out) != KILN_OK) {       // the VM
 *         fprintf(stderr, "%s\n", kiln_error_message(ctx));
 *         return 1;
 *     }
 *     const float *r = kiln_tensor_data(out.tensor);
 *     printf("%g %g\n", r[0], r[1]);                          // prints: 6 15
 *     kiln_value_release(out);
 *     kiln_program_free(p);
 *     kiln_value_release(in[0]);
 *     kiln_value_release(in[1]);
 *     kiln_module_free(m);
 *     kiln_context_free(ctx);
 *     return 0;
 * }
 * END TUTORIAL
 */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_DIMS 8

/* ---- status and errors ------------------------------------------------------------------- */
typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_PARSE,       /* malformed IR text or attribute string */
    KILN_ERR_TYPE,        /* shape / dtype / arity mismatch, unknown op or attribute */
    KILN_ERR_VALUE,       /* a bad value at run time (index out of range, wrong input) */
    KILN_ERR_UNSUPPORTED, /* valid request this build cannot do */
    KILN_ERR_OOM,         /* allocation failed */
    KILN_ERR_IO,          /* file could not be read or written */
    KILN_ERR_INTERNAL,    /* a bug in kiln */
    KILN_STATUS_COUNT
} kiln_status;

typedef struct kiln_context kiln_context;

kiln_context *kiln_context_new(void);                 /* caller owns; NULL only on OOM */
void kiln_context_free(kiln_context *ctx);
const char *kiln_error_message(const kiln_context *ctx); /* last error; owned by ctx */
kiln_status kiln_error_status(const kiln_context *ctx);
void kiln_error_clear(kiln_context *ctx);
const char *kiln_status_name(kiln_status s);
void kiln_free(void *p);                              /* frees strings kiln returned */

/* ---- dtypes ------------------------------------------------------------------------------ */
typedef enum kiln_dtype {
    KILN_F32, KILN_F64, KILN_F16, KILN_BF16, KILN_I8, KILN_U8, KILN_I32, KILN_I64, KILN_BOOL,
    KILN_DTYPE_COUNT
} kiln_dtype;

const char *kiln_dtype_name(kiln_dtype dt);           /* "f32", "bf16", ... */
int kiln_dtype_from_name(const char *name);           /* -1 if unknown; accepts "float32" too */
size_t kiln_dtype_size(kiln_dtype dt);
bool kiln_dtype_is_float(kiln_dtype dt);
bool kiln_dtype_is_int(kiln_dtype dt);                /* integer, not bool */

/* 16-bit float conversions, round to nearest even. */
uint16_t kiln_f32_to_f16(float x);
float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float x);
float kiln_bf16_to_f32(uint16_t h);

/* ---- tensors (reference counted, contiguous, 64-byte aligned host memory) ----------------- */
typedef struct kiln_tensor kiln_tensor;

/* All constructors return a new reference (caller releases) or NULL with the error set. */
kiln_tensor *kiln_tensor_new(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape);
kiln_tensor *kiln_tensor_from_data(kiln_context *ctx, kiln_dtype dt, int ndim,
                                   const int64_t *shape, const void *data);
/* Wraps memory the caller owns (zero-copy); `release(release_arg)` runs when the last
 * reference goes. `data` must stay valid until then. */
kiln_tensor *kiln_tensor_wrap(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape,
                              void *data, void (*release)(void *), void *release_arg);
kiln_tensor *kiln_tensor_cast(kiln_context *ctx, const kiln_tensor *t, kiln_dtype dt);
kiln_tensor *kiln_tensor_retain(kiln_tensor *t);
void kiln_tensor_release(kiln_tensor *t);
kiln_dtype kiln_tensor_dtype(const kiln_tensor *t);
int kiln_tensor_ndim(const kiln_tensor *t);
const int64_t *kiln_tensor_shape(const kiln_tensor *t);
int64_t kiln_tensor_numel(const kiln_tensor *t);
size_t kiln_tensor_nbytes(const kiln_tensor *t);
void *kiln_tensor_data(const kiln_tensor *t);

/* ---- devices: "cpu", "cuda", "cuda:N" (docs/cuda.md) ------------------------------------ */
/* CUDA is a separate library (libkiln_cuda.so) loaded at first use when a GPU and the CUDA
 * libraries are present; without them everything runs on the CPU, and asking for a CUDA device
 * is an error that says why CUDA is unavailable. A tensor lives on one device; on a CUDA device
 * kiln_tensor_data returns a device pointer (copy with kiln_tensor_to to read it). */
typedef enum kiln_device_type { KILN_DEVICE_CPU, KILN_DEVICE_CUDA, KILN_DEVICE_TYPE_COUNT } kiln_device_type;
typedef struct kiln_device { kiln_device_type type; int index; } kiln_device;
/* Parses "cpu", "cuda" (= "cuda:0") or "cuda:N"; a CUDA device must exist. */
kiln_status kiln_device_parse(kiln_context *ctx, const char *name, kiln_device *out);
/* "cpu" / "cuda:0" into buf; returns buf. */
const char *kiln_device_str(kiln_device d, char *buf, size_t size);
/* Whether CUDA can be used; if not, the reason (the missing library, no GPU, a driver error). */
bool kiln_cuda_available(char *why, size_t why_size);
int kiln_cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, ..." into buf (KILN_ERR_UNSUPPORTED without CUDA). */
kiln_status kiln_device_describe(kiln_context *ctx, kiln_device d, char *buf, size_t size);
kiln_status kiln_device_synchronize(kiln_context *ctx, kiln_device d);
kiln_device kiln_tensor_device(const kiln_tensor *t);
/* A new uninitialised tensor on device d. */
kiln_tensor *kiln_tensor_new_on(kiln_context *ctx, kiln_dtype dt, int ndim, const int64_t *shape, kiln_device d);
/* A copy of t on device d (a new reference to t itself when it is already there). */
kiln_tensor *kiln_tensor_to(kiln_context *ctx, kiln_tensor *t, kiln_device d);
/* Copies src's elements into dst (same dtype and shape, any devices). */
kiln_status kiln_tensor_copy_into(kiln_context *ctx, kiln_tensor *dst, const kiln_tensor *src);

/* ---- runtime values: a tensor, a scalar or a tuple --------------------------------------- */
typedef enum kiln_value_kind {
    KILN_VALUE_NONE, KILN_VALUE_TENSOR, KILN_VALUE_INT, KILN_VALUE_FLOAT, KILN_VALUE_BOOL,
    KILN_VALUE_TUPLE, KILN_VALUE_KIND_COUNT
} kiln_value_kind;

typedef struct kiln_tuple kiln_tuple;
typedef struct kiln_value {
    kiln_value_kind kind;
    union {
        kiln_tensor *tensor; /* owned reference when kind == KILN_VALUE_TENSOR */
        int64_t i;
        double f;
        bool b;
        kiln_tuple *tuple;   /* owned reference when kind == KILN_VALUE_TUPLE */
    };
} kiln_value;

kiln_value kiln_value_tensor(kiln_tensor *t);         /* takes over the reference */
kiln_value kiln_value_int(int64_t i);
kiln_value kiln_value_float(double f);
kiln_value kiln_value_bool(bool b);
kiln_value kiln_value_tuple(kiln_context *ctx, int n, const kiln_value *items); /* retains items */
int kiln_value_tuple_size(kiln_value v);
kiln_value kiln_value_tuple_get(kiln_value v, int i); /* borrowed */
kiln_value kiln_value_retain(kiln_value v);
void kiln_value_release(kiln_value v);

/* ---- IR ---------------------------------------------------------------------------------- */
typedef struct kiln_module kiln_module;
typedef struct kiln_function kiln_function;
typedef struct kiln_region kiln_region;
typedef struct kiln_node kiln_node;
typedef struct kiln_var kiln_var;
typedef struct kiln_type kiln_type;

kiln_module *kiln_module_new(kiln_context *ctx);      /* caller owns: kiln_module_free */
void kiln_module_free(kiln_module *m);
kiln_context *kiln_module_context(const kiln_module *m);
/* Parses IR text (see docs/ir.md) and infers types; `filename` is used in messages. */
kiln_module *kiln_module_parse(kiln_context *ctx, const char *text, const char *filename);
kiln_status kiln_module_infer(kiln_module *m);        /* type inference over every function */
kiln_status kiln_module_verify(kiln_module *m);       /* structure, scoping and types */

enum { KILN_PRINT_TYPES = 1 };                        /* flags for kiln_module_print */
char *kiln_module_print(const kiln_module *m, int flags); /* caller frees with kiln_free */

int kiln_module_function_count(const kiln_module *m);
kiln_function *kiln_module_function_at(const kiln_module *m, int i);
kiln_function *kiln_module_function(const kiln_module *m, const char *name); /* NULL if none */

/* Types live in the module's arena. */
kiln_type *kiln_type_tensor(kiln_module *m, kiln_dtype dt, int ndim, const int64_t *shape);
kiln_type *kiln_type_int(kiln_module *m);
kiln_type *kiln_type_float(kiln_module *m);
kiln_type *kiln_type_bool(kiln_module *m);
kiln_type *kiln_type_tuple(kiln_module *m, int n, kiln_type *const *elems);
char *kiln_type_str(const kiln_type *t);              /* caller frees with kiln_free */
/* Reading a type: kind 0 tensor, 1 scalar, 2 tuple, 3 list; a scalar's dtype is KILN_I64 (int),
 * KILN_F64 (float) or KILN_BOOL. */
int kiln_type_kind_of(const kiln_type *t);
kiln_dtype kiln_type_dtype(const kiln_type *t);
int kiln_type_ndim(const kiln_type *t);
const int64_t *kiln_type_shape(const kiln_type *t);
int kiln_type_tuple_size(const kiln_type *t);
const kiln_type *kiln_type_tuple_elem(const kiln_type *t, int i);

/* Functions, parameters and regions are owned by the module. */
kiln_function *kiln_function_new(kiln_module *m, const char *name);
kiln_var *kiln_function_param(kiln_function *f, const char *name, kiln_type *type);
kiln_region *kiln_function_body(kiln_function *f);
const char *kiln_function_name(const kiln_function *f);
int kiln_function_param_count(const kiln_function *f);
const kiln_type *kiln_function_param_type(const kiln_function *f, int i);
const kiln_type *kiln_function_return_type(const kiln_function *f); /* NULL until inferred */

/* Appends `let %v = op(inputs..., attrs)` to a region. `attrs` uses the IR attribute syntax,
 * e.g. "axes=[0, 1], keepdims=true", or NULL. Types are inferred at once when the inputs' types
 * are known. Returns the result variable, or NULL with the error set. */
kiln_var *kiln_emit(kiln_region *r, const char *op, int n_in, kiln_var *const *in,
                    const char *attrs);
kiln_var *kiln_emit_call(kiln_region *r, kiln_function *callee, int n_in, kiln_var *const *in);
/* `if`: fill kiln_node_region(n, 0) (then) and (n, 1) (else), each ending in a yield. */
kiln_node *kiln_emit_if(kiln_region *r, kiln_var *cond);
/* `while`: loop variables start at `init`; region 0 (cond) yields one bool, region 1 (body)
 * yields the next values of the loop variables. */
kiln_node *kiln_emit_while(kiln_region *r, int n, kiln_var *const *init, const char *const *names);
kiln_region *kiln_node_region(kiln_node *n, int i);
kiln_var *kiln_node_loop_var(kiln_node *n, int i);
kiln_var *kiln_node_result(kiln_node *n);             /* infers types of the node if needed */
/* Ends a region (function body: its return values). One value is itself; several, a tuple. */
kiln_status kiln_region_yield(kiln_region *r, int n, kiln_var *const *vals);

/* Literal operands (owned by the module). */
kiln_var *kiln_lit_int(kiln_module *m, int64_t v);
kiln_var *kiln_lit_float(kiln_module *m, double v);
kiln_var *kiln_lit_bool(kiln_module *m, bool v);
const kiln_type *kiln_var_type(const kiln_var *v);
void kiln_var_set_name(kiln_var *v, const char *name);

/* ---- passes ------------------------------------------------------------------------------ */
/* Reverse-mode autodiff: adds function `name` to f's module, taking f's parameters and returning
 * (f's first result, d result / d param wrt[0], ..., f's other results). The other results pass
 * through undifferentiated (no gradient flows from them: e.g. batch-norm running statistics
 * computed by the same forward). The first result must be a floating-point
 * tensor (a non-scalar one is differentiated as if summed). Composite ops are decomposed first;
 * an op on the gradient path without a gradient rule is an error naming it. Returns NULL with
 * the error set. Calls are inlined, `if` is differentiated branch-wise, `while` loops save
 * their state every iteration (in a list) for a backward loop; recursive calls on the gradient
 * path are not supported (an error names them). */
kiln_function *kiln_autodiff(kiln_function *f, int n_wrt, const int *wrt, const char *name);

/* ---- running ----------------------------------------------------------------------------- */
/* Interprets a function op by op on the CPU reference kernels. Inputs are borrowed; on
 * success *out holds a new reference the caller releases. */
kiln_status kiln_function_run(kiln_function *f, int n_in, const kiln_value *in, kiln_value *out);
/* Runs one op eagerly (the numpy-like API's path). Same ownership as kiln_function_run. */
kiln_status kiln_op_run(kiln_context *ctx, const char *op, int n_in, const kiln_value *in,
                        const char *attrs, kiln_value *out);

/* ---- compiling: passes, dialects, fused kernels, memory plan, VM (docs/performance.md) ---- */
typedef struct kiln_program kiln_program;
typedef struct kiln_compile_options {
    int opt_level;          /* 0: dispatch + plan only; 1: + simplify, fold, CSE; 2 (default): + fusion */
    const char *dialects;   /* allowed dialects in priority order, "blas,dnnl,c"; NULL: all available */
    const char *cache_dir;  /* generated-kernel cache; NULL: $KILN_CACHE_DIR or ~/.cache/kiln */
    int debug;              /* -1: from $KILN_DEBUG; 1 prints the IR after every pass, 2 also kernels */
    /* Output leaf j written into input leaf i's buffer (in place): pairs {j, i}. Leaves number
     * the tensors/scalars of the (nested) tuple of inputs or results in order. */
    int n_donate;
    const int (*donate)[2];
    /* "cpu" (NULL) or "cuda[:N]": where the program runs. Its inputs may be on the host (copied
     * in at every run) or already on the device; results are device tensors. */
    const char *device;
    /* CUDA: capture the whole run as a CUDA graph at the second run and replay it afterwards
     * (re-captured when an input's address changes). Programs with control flow never are. */
    bool cuda_graph;
} kiln_compile_options;
/* Defaults: opt_level 2, every dialect, debug from the environment, no donation. */
kiln_compile_options kiln_compile_defaults(void);
/* Compiles f (its module is copied; f is untouched) into a program the VM runs. NULL options:
 * defaults. On error *out is NULL and the message names the pass, op and place. The program
 * owns what it holds; free it with kiln_program_free. */
kiln_status kiln_compile(kiln_function *f, const kiln_compile_options *opt, kiln_program **out);
void kiln_program_free(kiln_program *p);
/* Runs one step; the same contract as kiln_function_run (inputs borrowed, *out a new reference).
 * Allocates nothing after the first run except results handed back (from the memory pool). */
kiln_status kiln_program_run(kiln_program *p, int n_in, const kiln_value *in, kiln_value *out);
/* The optimised IR, the instruction list with each buffer's offset, and the arena size;
 * malloc'd text, free with kiln_free. */
char *kiln_program_print(const kiln_program *p);

/* Analysis of a compiled program without running it. */
typedef struct kiln_analysis {
    int64_t n_inputs, input_elements, input_bytes; /* tensors the step takes (parameters, state, batch) */
    double flops;                /* floating-point operations of one run (loops counted once) */
    int64_t arena_bytes;         /* the VM's activation arena == peak */
    int n_instructions, n_kernels; /* VM instructions; of them generated kernels */
    int n_steps;                 /* entries of the per-instruction trace below */
    const int64_t *live_bytes;   /* bytes of arena buffers live at each instruction */
    const int64_t *high_water;   /* highest arena byte in use at each instruction */
} kiln_analysis;
/* Fills *a; its arrays belong to p. */
kiln_status kiln_program_analyze(const kiln_program *p, kiln_analysis *a);

/* ---- memory pools for tensors outside the plan (results, eager values, the interpreter) --- */
typedef enum kiln_pool_kind { KILN_POOL_NONE, KILN_POOL_PAGE } kiln_pool_kind;
typedef struct kiln_memory_stats {
    kiln_pool_kind pool;
    int64_t bytes_in_use;   /* requested bytes of live tensors */
    int64_t peak_bytes;     /* highest bytes_in_use since the last reset */
    int64_t bytes_reserved; /* held from the system (in use + cached free blocks) */
    int64_t n_allocs, n_frees, n_reused; /* calls; n_reused: served from the pool's free blocks */
} kiln_memory_stats;
/* Process-wide. Switching keeps live tensors valid (each returns to the pool it came from). */
void kiln_memory_set_pool(kiln_pool_kind kind);
void kiln_memory_get_stats(kiln_memory_stats *s);
void kiln_memory_reset_peak(void);
/* Returns the page pool's cached free blocks to the system. */
void kiln_memory_trim(void);
/* Device memory pools (page-unit pool or none: the driver's stream-ordered allocator), per
 * device, switchable at run time; d = cpu gives the host pool (kiln_memory_* above). */
kiln_status kiln_device_memory_set_pool(kiln_context *ctx, kiln_device d, kiln_pool_kind kind);
kiln_status kiln_device_memory_get_stats(kiln_context *ctx, kiln_device d, kiln_memory_stats *s);
kiln_status kiln_device_memory_reset_peak(kiln_context *ctx, kiln_device d);
kiln_status kiln_device_memory_trim(kiln_context *ctx, kiln_device d);

/* ---- the op table ------------------------------------------------------------------------ */
int kiln_op_count(void);
const char *kiln_op_name(int op);
int kiln_op_from_name(const char *name);              /* -1 if unknown */
/* One line "name  inputs=N[-M]  dtypes=...  class=...  attrs" written into buf; returns buf. */
const char *kiln_op_describe(int op, char *buf, size_t size);

/* ---- .npy files -------------------------------------------------------------------------- */
kiln_tensor *kiln_npy_load(kiln_context *ctx, const char *path);
kiln_status kiln_npy_save(kiln_context *ctx, const char *path, const kiln_tensor *t);

/* ---- .safetensors files (huggingface format) --------------------------------------------- */
/* Writes n named tensors (names unique, not "__metadata__") in the given order, with metadata
 * {"format": "pt"}. Dtypes map to F32 F64 F16 BF16 I8 U8 I32 I64 BOOL. Tensors are borrowed. */
kiln_status kiln_safetensors_save(kiln_context *ctx, const char *path, int n, const char *const *names,
                                  kiln_tensor *const *tensors);
/* Reads every tensor of a file in header order (metadata is checked, then ignored). On success
 * *n_out is the count and *names_out / *tensors_out are malloc'd arrays (allocated even when
 * empty): the caller frees each name and both arrays with kiln_free and releases each tensor.
 * On error nothing is returned (outputs zeroed) and the message names the file and the problem;
 * dtypes kiln lacks give KILN_ERR_UNSUPPORTED, malformed files KILN_ERR_VALUE. */
kiln_status kiln_safetensors_load(kiln_context *ctx, const char *path, int *n_out, char ***names_out,
                                  kiln_tensor ***tensors_out);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
