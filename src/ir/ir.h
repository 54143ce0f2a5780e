/* ir.h — the IR: a module of functions, each a region of ordered SSA bindings (A-normal form);
 * use-def edges give the graph view and nested regions (if / while) the blocks. */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "core/core.h"
#include "ops/ops.h"

/* The most values one node takes (operands, call arguments, a while's loop variables), one
 * yield or return gives, one tuple type holds, and one function takes as parameters. A training
 * step returns a value per parameter and per optimizer state (GPT-2: 445). Nesting has its own,
 * smaller limits (regions 256 deep, types 64 deep: parser.c, lexer.c). */
#define KILN_MAX_VALUES 65536

/* Zeroed scratch for n elements of elem_size bytes: `stack` (stack_size bytes, a small local
 * array) when they fit, else calloc'd; NULL on OOM (no message). Release with kiln_scratch_free.
 * KILN_SCRATCH(arr, n) passes a local array. For arrays indexed by counts up to KILN_MAX_VALUES. */
void *kiln_scratch(void *stack, size_t stack_size, size_t n, size_t elem_size);
void kiln_scratch_free(void *p, const void *stack);
#define KILN_SCRATCH(arr, n) kiln_scratch((arr), sizeof(arr), (size_t)(n), sizeof((arr)[0]))

/* LIST: a sequence of values of one type (elems[0]) whose length is known only at run time;
 * autodiff saves a while loop's per-iteration state in one. */
typedef enum kiln_type_kind { KILN_TYPE_TENSOR, KILN_TYPE_SCALAR, KILN_TYPE_TUPLE, KILN_TYPE_LIST } kiln_type_kind;

/* Immutable once built. Scalars use dtype KILN_I64 (int), KILN_F64 (float) or KILN_BOOL. */
struct kiln_type {
    kiln_type_kind kind;
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int n_elems;
    const kiln_type **elems; /* tuple */
};

typedef enum kiln_var_kind {
    KILN_VAR_PARAM,   /* function parameter */
    KILN_VAR_RESULT,  /* result of a node */
    KILN_VAR_LOOP,    /* loop-carried variable of a while node */
    KILN_VAR_LITERAL  /* int / float / bool literal operand, printed inline */
} kiln_var_kind;

struct kiln_var {
    kiln_var_kind kind;
    const char *name;       /* NULL: printed as a number */
    const kiln_type *type;  /* NULL until inferred */
    kiln_node *def;         /* RESULT: its node; LOOP: the while node */
    kiln_function *func;    /* owner (NULL for literals) */
    int id;                 /* unique within func: index into interpreter environments */
    int index;              /* PARAM / LOOP: position */
    union { int64_t i; double f; bool b; } lit; /* LITERAL; type tells which */
};

struct kiln_region {
    kiln_node *owner;       /* NULL for a function body */
    kiln_function *func;
    kiln_node *first, *last;
    int n_results;          /* -1 until yielded */
    kiln_var **results;
};

struct kiln_node {
    kiln_op op;
    int n_in;
    kiln_var **in;
    kiln_attr *attrs;       /* kiln_op_info(op)->n_attrs entries, defaults filled */
    kiln_var *out;
    int n_regions;          /* if: 2 (then, else); while: 2 (cond, body) */
    kiln_region *regions[2];
    int n_loop;             /* while: loop-carried variables (in[] holds their initial values) */
    kiln_var **loop;
    kiln_function *callee;  /* call */
    kiln_region *parent;
    kiln_node *prev, *next;
    int line, col;          /* source position, 0 when built by the API */
    kiln_function *expansion; /* composite: its decomposition, built on first use */
    int n_dead;               /* interpreter: variables whose last use is this node */
    kiln_var **dead;
    const struct kiln_dialect_impl *impl; /* dispatch: the library kernel chosen; NULL = C */
};

struct kiln_function {
    kiln_module *module;
    const char *name;
    int n_params, cap_params;
    kiln_var **params;
    const kiln_type *declared_ret; /* from `-> type`, or NULL */
    const kiln_type *ret;          /* inferred */
    kiln_region *body;
    int n_vars;                    /* ids handed out */
    int infer_state;               /* 0 not started, 1 in progress, 2 done */
    bool liveness_ready;           /* nodes' dead lists are up to date */
    bool kernel;                   /* a fused group (printed `kernel @name`): one generated kernel */
    void *vm_checked;              /* KILN_VM_CHECK: the compiled program (runtime/vm_check.c) */
};

struct kiln_module {
    kiln_context *ctx;
    kiln_arena arena;
    const char *filename;
    int n_funcs, cap_funcs;
    kiln_function **funcs;
    int infer_depth; /* callees being inferred inside a call's inference (bounded) */
};

/* ---- types ------------------------------------------------------------------------------- */
const kiln_type *kiln_type_scalar(kiln_arena *a, kiln_dtype dt);
const kiln_type *kiln_type_tensor_a(kiln_arena *a, kiln_dtype dt, int ndim, const int64_t *shape);
const kiln_type *kiln_type_tuple_a(kiln_arena *a, int n, const kiln_type *const *elems);
const kiln_type *kiln_type_list_a(kiln_arena *a, const kiln_type *elem);
bool kiln_type_equal(const kiln_type *a, const kiln_type *b);
void kiln_buf_type(kiln_buf *b, const kiln_type *t);   /* "f32[2, 3]", "int", "(f32[], int)" */
/* Type string in a caller buffer, for messages. */
const char *kiln_type_cstr(const kiln_type *t, char *buf, size_t size);
bool kiln_type_is_tensor(const kiln_type *t);
bool kiln_type_is_scalar(const kiln_type *t);

/* ---- building (internal forms of the public builder) ------------------------------------- */
kiln_var *kiln_var_new(kiln_function *f, kiln_var_kind kind, const char *name);
kiln_node *kiln_node_new(kiln_region *r, kiln_op op, int n_in, kiln_var *const *in);
void kiln_region_append(kiln_region *r, kiln_node *n);
void kiln_region_insert_before(kiln_region *r, kiln_node *before, kiln_node *n);
void kiln_region_remove(kiln_region *r, kiln_node *n);
kiln_region *kiln_region_new(kiln_function *f, kiln_node *owner);
/* A function that belongs to module m's arena but is not listed in it (a composite's
 * expansion, an eager op's wrapper). */
kiln_function *kiln_function_detached(kiln_module *m, const char *name);
/* Takes f out of m's function list (its memory stays in the arena), e.g. after a pass failed
 * half-way through building it. */
void kiln_module_drop_function(kiln_module *m, kiln_function *f);
/* Infers the type of one node's result from its inputs (and regions / callee). */
kiln_status kiln_node_infer(kiln_node *n);
/* Where a node is, for messages: "file.kir:3:5" or "@main" (written into buf). */
const char *kiln_node_where(const kiln_node *n, char *buf, size_t size);

/* Emits ops at a position: before `before`, or at the end of `region` when it is NULL. The
 * decompositions of composite ops and (later) passes build IR through it. */
typedef struct kiln_builder {
    kiln_region *region;
    kiln_node *before;
    int line, col; /* source position given to new nodes (that of the node being expanded) */
} kiln_builder;

/* Emits op with printf-formatted attributes ("axes=[%d]"); infers its type. NULL on error. */
kiln_var *kiln_build(kiln_builder *b, kiln_op op, int n_in, kiln_var *const *in,
                     const char *attrs_fmt, ...) __attribute__((format(printf, 5, 6)));
/* Shorthands: attributes as a ready string (or NULL); unary and binary ops without attributes. */
kiln_var *kiln_build_text(kiln_builder *b, kiln_op op, int n_in, kiln_var *const *in, const char *attrs);
kiln_var *kiln_build1(kiln_builder *b, kiln_op op, kiln_var *x);
kiln_var *kiln_build2(kiln_builder *b, kiln_op op, kiln_var *x, kiln_var *y);
kiln_var *kiln_build_float(kiln_builder *b, double v); /* literal operands */
kiln_var *kiln_build_int(kiln_builder *b, int64_t v);

/* String -> pointer hash map for names in the text printer and parser (parser.c). Keys are
 * borrowed (key, len) and must outlive the map. Zero-initialise; free with kiln_strmap_free. */
typedef struct kiln_strmap { size_t cap, count; const char **keys; size_t *lens; void **vals; } kiln_strmap;
/* The value slot of key: NULL when absent and !insert, or on OOM; inserted slots start NULL. */
void **kiln_strmap_slot(kiln_strmap *m, const char *key, size_t len, bool insert);
void kiln_strmap_free(kiln_strmap *m);

/* Parses an attribute list ("axes=[1], keepdims=true") for op into attrs (defaults filled). */
kiln_status kiln_attrs_parse(kiln_context *ctx, kiln_arena *a, kiln_op op, const char *text,
                             kiln_attr *attrs);

#endif /* KILN_IR_H */
