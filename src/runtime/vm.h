/* vm.h — the compiled program the VM runs: slots (one per tensor, scalar or list leaf of every
 * IR value), instructions over slots, the memory plan (arena offsets), and instances (an arena
 * plus slot headers; one per program, one per recursive call). */
#ifndef KILN_VM_H
#define KILN_VM_H

#include "backend/backend.h"
#include "codegen/codegen.h"
#include "compiler/compiler.h"

typedef enum vm_slot_kind {
    VM_SLOT_ARENA,   /* a tensor or scalar (0-d: int i64, float f64, bool) at an arena offset */
    VM_SLOT_INPUT,   /* lives in a tensor input's buffer (a parameter, or an output donated to it) */
    VM_SLOT_ALIAS,   /* a view of another slot's storage with its own shape (reshape family) */
    VM_SLOT_CONST,   /* a constant tensor or a literal */
    VM_SLOT_DYNAMIC  /* a list, or an element popped from one (held by the instance) */
} vm_slot_kind;

typedef struct vm_slot {
    vm_slot_kind kind;
    const kiln_type *type;   /* tensor, scalar or list */
    kiln_dtype dtype;        /* of the buffer (scalars: I64 / F64 / BOOL) */
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t bytes;           /* buffer bytes (0 for lists) */
    int storage;             /* the slot whose memory this uses: itself, or an alias's root */
    int64_t offset;          /* ARENA roots: planned offset */
    int input;               /* INPUT: which input leaf's buffer */
    kiln_tensor *constant;   /* CONST: borrowed from the module or owned by the program */
    int first, last;         /* plan: instructions between which the storage is live */
} vm_slot;

typedef enum vm_op {
    VM_KERNEL,     /* a built-in or library kernel (kiln_kernel_fn) */
    VM_GEN,        /* a generated kernel */
    VM_COPY,       /* out[i] = in[i] for every pair */
    VM_JUMP,       /* to target */
    VM_JUMP_UNLESS,/* to target when the bool in[0] is false */
    VM_LIST_NEW, VM_LIST_PUSH, VM_LIST_POP, VM_LIST_LENGTH,
    VM_CALL,       /* a (recursive) call: runs callee in a fresh instance */
    VM_OP_COUNT
} vm_op;

typedef struct vm_code vm_code;

typedef struct vm_instr {
    vm_op op;
    const kiln_node *node;   /* where it comes from (messages, attributes); NULL for copies */
    const char *where;       /* the node's place, for kernels' messages */
    bool steal;              /* LIST_PUSH / LIST_POP: the input list is dead after: update it in place */
    int n_in, n_out;
    int *in, *out;           /* slot indices */
    kiln_kernel_fn kernel;   /* KERNEL */
    int gen;                 /* GEN: index into the program's kernels */
    int target;              /* JUMP, JUMP_UNLESS */
    vm_code *callee;         /* CALL */
    int loop;                /* innermost enclosing while loop (index into loops) or -1 */
    bool host;               /* KERNEL in a CUDA program: the reference kernel on host copies */
    /* CUDA, GEN: launched together with the next n_multi - 1 instructions (same kernel,
     * disjoint memory: multi_launch.c) as one launch of the kernel's _multi variant; those
     * have `merged` set and do nothing themselves. */
    int n_multi;
    bool merged;
} vm_instr;

typedef struct vm_loop { int start, end, parent; } vm_loop;

struct vm_code {
    kiln_function *f;
    int n_slots, cap_slots;
    vm_slot *slots;
    int n_instr, cap_instr;
    vm_instr *instr;
    int n_loops, cap_loops;
    vm_loop *loops;
    int n_in, n_out;          /* leaves of the parameters / of the result */
    int *in, *out;            /* their slots */
    int64_t arena_bytes;
    int max_operands;         /* largest n_in + n_out of an instruction */
    bool ready;               /* fully built (a recursive callee may be referenced before) */
};

/* ---- the program ------------------------------------------------------------------------- */
typedef struct vm_instance vm_instance;

struct kiln_program {
    kiln_context *ctx;
    kiln_module *module;       /* private copy, optimised */
    kiln_pass_ctx pc;
    vm_code *main;
    int n_codes, cap_codes;
    vm_code **codes;           /* main first, then recursive callees */
    int n_gens, cap_gens;
    kiln_function **gen_funcs; /* kernel functions, one generated kernel each */
    kiln_gen_kernel *gens;
    kiln_gen_fn *gen_fns;
    kiln_jit_lib *lib;
    int n_owned, cap_owned;
    kiln_tensor **owned;       /* literal tensors */
    int n_donate;
    int (*donate)[2];          /* {output leaf, input leaf} */
    bool *donate_placed;       /* per pair: the output was planned into the input's buffer */
    vm_instance *inst;         /* the main instance, made at the first run */
    /* The device the program runs on. On CUDA the arena, constants and staged inputs live in
     * device memory; generated kernels are one NVRTC module; ops without a CUDA kernel run on
     * the host through copies (instructions with `host` set). */
    kiln_device device;
    const kiln_backend *be;            /* CUDA: the backend; NULL on the CPU */
    kiln_backend_module *cuda_module;  /* CUDA: the generated kernels */
    kiln_backend_fn *gen_cuda;         /* CUDA: per generated kernel, its function */
    kiln_backend_fn *gen_cuda_multi;   /* CUDA: per generated kernel, its _multi variant (or NULL) */
    int *gen_multi_items;              /* CUDA: per generated kernel, the items its _multi takes */
    bool cuda_graph;                   /* capture the main code as a CUDA graph (options) */
    bool graph_ok;                     /* the main code can be captured (no host work inside) */
    kiln_backend_graph *graph;         /* captured at the second run */
    void **graph_inputs;               /* the input buffers the graph was captured with */
    int64_t runs;
    int64_t *live_bytes, *high_water; /* analysis, per main instruction */
    double *profile_ns;        /* KILN_PROFILE=1: time per main instruction, printed at free */
    int64_t profile_runs;
};
/* Prints the instructions that took the most time (KILN_PROFILE) to stderr. */
void kiln_vm_profile_report(const kiln_program *p);

/* vm_build.c: IR function -> code (slots and instructions); recursive callees are added to the
 * program as further codes. */
kiln_status kiln_vm_build(kiln_program *p, kiln_function *f, vm_code **out);
/* plan.c: liveness and arena offsets of a code; donation for the main code. */
kiln_status kiln_vm_plan(kiln_program *p, vm_code *c, bool main);
/* vm.c: running. */
kiln_status kiln_vm_run(kiln_program *p, vm_code *c, vm_instance **inst, int n_in, const kiln_value *in,
                        kiln_value *out, int depth);
void kiln_vm_instance_free(vm_instance *inst);
/* multi_launch.c: groups runs of launches of one generated CUDA kernel that touch disjoint
 * memory (vm_instr.n_multi); needs the plan and the rendered kernels. Returns the number of
 * groups formed; p->gen_multi_items[g] > 0 marks the kernels whose _multi variant is needed. */
int kiln_vm_group_launches(kiln_program *p);
/* Number of leaves of a type (tuples flattened). */
int kiln_vm_leaf_count(const kiln_type *t);

/* vm_check.c: KILN_VM_CHECK=1 makes kiln_function_run compare the VM with the interpreter. */
bool kiln_vm_check_enabled(void);
kiln_status kiln_vm_check(kiln_function *f, int n_in, const kiln_value *in, kiln_value expected);

#endif /* KILN_VM_H */
