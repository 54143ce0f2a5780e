/* compile.c — kiln_compile: copies the function's module, runs the pass pipeline, lowers the
 * result to VM code, plans its memory and builds its generated kernels; the program API
 * (run, print, analyze, free). */
#include "dialects/cuda_dialect.h"
#include "ops/cost.h"
#include "runtime/vm.h"
#include <stdlib.h>
#include <string.h>

kiln_compile_options kiln_compile_defaults(void) {
    return (kiln_compile_options){.opt_level = 2, .dialects = NULL, .cache_dir = NULL, .debug = -1};
}

static bool is_cuda_dialect(int d) { return d == KILN_DIALECT_CUDA || d == KILN_DIALECT_CUBLASLT || d == KILN_DIALECT_CUDNN; }

/* "blas,c" -> allowed dialects in order; every named one must exist, be available and run on
 * the program's device (NULL: every dialect of that device). */
static kiln_status parse_dialects(kiln_pass_ctx *pc, const char *list, bool cuda) {
    pc->n_dialects = 0;
    if (!list) {
        for (int d = KILN_DIALECT_COUNT - 1; d >= 0; d--)
            if (is_cuda_dialect(d) == cuda) pc->dialects[pc->n_dialects++] = (kiln_dialect_id)d;
        return KILN_OK;
    }
    for (const char *s = list; *s;) {
        size_t len = strcspn(s, ", ");
        if (len) {
            int d = kiln_dialect_from_name(s, len);
            char why[256] = "";
            if (d < 0)
                return kiln_error(pc->ctx, KILN_ERR_VALUE, "unknown dialect '%.*s' (known: c, blas, dnnl, cuda, cublaslt, cudnn)", (int)len, s);
            if (is_cuda_dialect(d) != cuda)
                return kiln_error(pc->ctx, KILN_ERR_VALUE, "dialect '%.*s' runs on %s; this program runs on %s (its dialects: %s)",
                                  (int)len, s, cuda ? "the CPU" : "CUDA", cuda ? "CUDA" : "the CPU",
                                  cuda ? "cuda, cublaslt, cudnn" : "c, blas, dnnl");
            if (!kiln_dialect_available((kiln_dialect_id)d, why, sizeof why))
                return kiln_error(pc->ctx, KILN_ERR_UNSUPPORTED, "dialect '%.*s' is not available: %s", (int)len, s, why);
            bool seen = false;
            for (int i = 0; i < pc->n_dialects; i++) seen |= (int)pc->dialects[i] == d;
            if (!seen) pc->dialects[pc->n_dialects++] = (kiln_dialect_id)d;
        }
        s += len;
        s += strspn(s, ", ");
    }
    return KILN_OK;
}

void kiln_program_free(kiln_program *p) {
    if (!p) return;
    kiln_vm_profile_report(p);
    free(p->profile_ns);
    kiln_vm_instance_free(p->inst);
    for (int i = 0; i < p->n_codes; i++) {
        vm_code *c = p->codes[i];
        free(c->slots), free(c->instr), free(c->loops), free(c);
    }
    free(p->codes);
    for (int i = 0; i < p->n_gens && p->gens; i++) kiln_gen_kernel_free(&p->gens[i]);
    free(p->gens), free(p->gen_fns), free(p->gen_funcs);
    kiln_jit_lib_free(p->lib);
    if (p->be) {
        if (p->graph) p->be->graph_free(p->graph);
        if (p->cuda_module) p->be->module_free(p->cuda_module);
    }
    free(p->gen_cuda), free(p->gen_cuda_multi), free(p->gen_multi_items), free(p->graph_inputs);
    for (int i = 0; i < p->n_owned; i++) kiln_tensor_release(p->owned[i]);
    free(p->owned), free(p->donate), free(p->donate_placed);
    free(p->live_bytes), free(p->high_water);
    free((char *)p->pc.cache_dir);
    kiln_module_free(p->module);
    free(p);
}

/* CUDA: every generated kernel in one NVRTC translation unit (a kernel whose symbol already
 * appeared is the same source), compiled for the device's architecture, cached, loaded. */
static kiln_status build_cuda_kernels(kiln_program *p) {
    kiln_context *ctx = p->ctx;
    const kiln_backend *be = p->be;
    int dev = p->device.index;
    size_t n = (size_t)p->n_gens;
    if (!(p->gen_cuda = calloc(n, sizeof *p->gen_cuda)) || !(p->gen_cuda_multi = calloc(n, sizeof *p->gen_cuda_multi)) ||
        !(p->gen_multi_items = calloc(n, sizeof *p->gen_multi_items)))
        return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    for (int i = 0; i < p->n_gens; i++)
        if (kiln_codegen_cuda(ctx, p->gen_funcs[i], &p->gens[i])) return kiln_error_status(ctx);
    kiln_vm_group_launches(p);
    kiln_buf b = {0};
    for (int i = 0; i < p->n_gens; i++) {
        bool seen = false, seen_multi = false;
        for (int j = 0; j < i; j++)
            if (!strcmp(p->gens[j].symbol, p->gens[i].symbol)) seen = true, seen_multi |= p->gen_multi_items[j] > 0;
        if (!seen) kiln_buf_puts(&b, p->gens[i].source);
        if (p->gen_multi_items[i] && !seen_multi) {
            char *multi = kiln_codegen_cuda_multi(&p->gens[i], p->gen_multi_items[i]);
            if (!multi) b.oom = true;
            else kiln_buf_puts(&b, multi);
            free(multi);
        }
    }
    char *text = kiln_buf_take(&b);
    if (!text) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    void *image = NULL;
    size_t size = 0;
    kiln_status st = KILN_OK;
    if (be->nvrtc_compile(text, be->device_arch(dev), p->pc.cache_dir, p->pc.debug, &image, &size))
        st = kiln_error(ctx, KILN_ERR_UNSUPPORTED, "compiling the generated CUDA kernels of @%s: %s", p->main->f->name,
                        be->last_error());
    else if (be->module_load(dev, image, &p->cuda_module))
        st = kiln_error(ctx, KILN_ERR_UNSUPPORTED, "loading the generated CUDA kernels: %s", be->last_error());
    for (int i = 0; i < p->n_gens && !st; i++) {
        char multi[80];
        snprintf(multi, sizeof multi, "%s_multi", p->gens[i].symbol);
        if (be->module_get(p->cuda_module, p->gens[i].symbol, &p->gen_cuda[i]) ||
            (p->gen_multi_items[i] && be->module_get(p->cuda_module, multi, &p->gen_cuda_multi[i])))
            st = kiln_error(ctx, KILN_ERR_INTERNAL, "generated CUDA kernel %s: %s", p->gens[i].symbol, be->last_error());
    }
    if (image) be->free_image(image);
    kiln_free(text);
    return st;
}

static kiln_status build_kernels(kiln_program *p) {
    if (!p->n_gens) return KILN_OK;
    p->gens = calloc((size_t)p->n_gens, sizeof *p->gens);
    p->gen_fns = calloc((size_t)p->n_gens, sizeof *p->gen_fns);
    if (!p->gens || !p->gen_fns) return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
    if (p->be) return build_cuda_kernels(p);
    for (int i = 0; i < p->n_gens; i++)
        if (kiln_codegen_c(p->ctx, p->gen_funcs[i], &p->gens[i])) return kiln_error_status(p->ctx);
    return kiln_jit_build(p->ctx, p->pc.cache_dir, p->pc.debug, p->n_gens, p->gens, p->gen_fns, &p->lib);
}

/* CUDA: constants move to the device once (the program owns the copies); the main code can be
 * captured as a graph when nothing in it needs the host (no control flow, lists, calls or
 * kernels run on the host). */
static kiln_status prepare_cuda(kiln_program *p) {
    for (int i = 0; i < p->n_codes; i++) {
        vm_code *c = p->codes[i];
        for (int s = 0; s < c->n_slots; s++) {
            vm_slot *x = &c->slots[s];
            if (x->kind != VM_SLOT_CONST || x->constant->device.type == p->device.type) continue;
            if (p->n_owned == p->cap_owned) {
                int cap = p->cap_owned ? 2 * p->cap_owned : 16;
                kiln_tensor **o = realloc(p->owned, sizeof *o * (size_t)cap);
                if (!o) return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
                p->owned = o, p->cap_owned = cap;
            }
            kiln_tensor *d = kiln_tensor_to(p->ctx, x->constant, p->device);
            if (!d) return kiln_error_status(p->ctx);
            p->owned[p->n_owned++] = d;
            x->constant = d;
        }
    }
    p->graph_ok = p->n_codes == 1;
    for (int i = 0; i < p->main->n_instr && p->graph_ok; i++) {
        const vm_instr *I = &p->main->instr[i];
        p->graph_ok = (I->op == VM_KERNEL && !I->host) || I->op == VM_GEN || I->op == VM_COPY;
    }
    if (!(p->graph_inputs = calloc((size_t)p->main->n_in + 1, sizeof *p->graph_inputs)))
        return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory");
    return KILN_OK;
}

static int env_debug(void) {
    const char *e = getenv("KILN_DEBUG");
    return e && *e ? atoi(e) : 0;
}

kiln_status kiln_compile(kiln_function *f, const kiln_compile_options *opt, kiln_program **out) {
    kiln_context *ctx = f->module->ctx;
    kiln_compile_options o = opt ? *opt : kiln_compile_defaults();
    *out = NULL;
    if (f->infer_state != 2 && kiln_module_infer(f->module)) return kiln_error_status(ctx);
    kiln_program *p = calloc(1, sizeof *p);
    if (!p) return kiln_error(ctx, KILN_ERR_OOM, "out of memory");
    p->ctx = ctx;
    p->pc = (kiln_pass_ctx){.ctx = ctx, .opt_level = o.opt_level, .debug = o.debug < 0 ? env_debug() : o.debug};
    if (!(p->pc.cache_dir = kiln_jit_cache_dir(o.cache_dir))) goto oom;
    if (kiln_device_parse(ctx, o.device, &p->device)) goto fail;
    if (p->device.type == KILN_DEVICE_CUDA) {
        p->be = kiln_cuda_backend(NULL, 0);
        p->cuda_graph = o.cuda_graph;
        p->pc.cuda = true;
    }
    if (parse_dialects(&p->pc, o.dialects, p->be != NULL)) goto fail;
    if (o.n_donate > 0) {
        p->donate = malloc(sizeof *p->donate * (size_t)o.n_donate);
        p->donate_placed = calloc((size_t)o.n_donate, sizeof *p->donate_placed);
        if (!p->donate || !p->donate_placed) goto oom;
        memcpy(p->donate, o.donate, sizeof *p->donate * (size_t)o.n_donate);
        p->n_donate = o.n_donate;
    }
    /* a private copy of the module: printed IR parses back exactly */
    char *text = kiln_module_print(f->module, 0);
    if (!text) goto oom;
    p->module = kiln_module_parse(ctx, text, f->module->filename ? f->module->filename : "compiled");
    kiln_free(text);
    if (!p->module) goto fail;
    p->pc.module = p->module;
    kiln_function *main = kiln_module_function(p->module, f->name);
    int n_funcs = p->module->n_funcs;
    kiln_function **funcs = malloc(sizeof *funcs * (size_t)(n_funcs ? n_funcs : 1));
    if (!funcs) goto oom;
    memcpy(funcs, p->module->funcs, sizeof *funcs * (size_t)n_funcs);
    /* the main function first; the others are reached only by calls that were not inlined */
    kiln_status s = kiln_passes_run(&p->pc, main);
    for (int i = 0; i < n_funcs && !s; i++)
        if (funcs[i] != main && !funcs[i]->kernel) s = kiln_passes_run(&p->pc, funcs[i]);
    free(funcs);
    if (s || kiln_vm_build(p, main, &p->main)) goto fail;
    for (int i = 0; i < p->n_codes; i++)
        if (kiln_vm_plan(p, p->codes[i], p->codes[i] == p->main)) goto fail;
    if (build_kernels(p) || (p->be && prepare_cuda(p))) goto fail;
    const char *prof = getenv("KILN_PROFILE");
    if (prof && *prof && strcmp(prof, "0") && !(p->profile_ns = calloc((size_t)p->main->n_instr + 1, sizeof(double)))) goto oom;
    if (p->pc.debug >= 1) {
        char *listing = kiln_program_print(p);
        fprintf(stderr, "---- compiled program ----\n%s", listing ? listing : "(out of memory)\n");
        kiln_free(listing);
    }
    *out = p;
    return KILN_OK;
oom:
    kiln_error(ctx, KILN_ERR_OOM, "out of memory");
fail:;
    kiln_status st = kiln_error_status(ctx) ? kiln_error_status(ctx) : KILN_ERR_INTERNAL;
    kiln_program_free(p);
    return st;
}

kiln_status kiln_program_run(kiln_program *p, int n_in, const kiln_value *in, kiln_value *out) {
    return kiln_vm_run(p, p->main, &p->inst, n_in, in, out, 0);
}

/* ---- printing ---------------------------------------------------------------------------- */
static const char *const op_names[VM_OP_COUNT] = {"kernel", "gen", "copy", "jump", "jump_unless", "list_new",
                                                   "list_push", "list_pop", "list_length", "call"};

static void print_slot(kiln_buf *b, const vm_code *c, int s) {
    const vm_slot *x = &c->slots[s], *r = &c->slots[x->storage];
    kiln_buf_printf(b, "s%d", s);
    switch (r->kind) {
    case VM_SLOT_ARENA: kiln_buf_printf(b, "@%lld", (long long)r->offset); break;
    case VM_SLOT_INPUT: kiln_buf_printf(b, "@in%d", r->input); break;
    case VM_SLOT_CONST: kiln_buf_puts(b, "@const"); break;
    case VM_SLOT_DYNAMIC: kiln_buf_puts(b, "@heap"); break;
    default: break;
    }
}

static void print_code(kiln_buf *b, const kiln_program *p, const vm_code *c) {
    int n_gen = 0;
    for (int i = 0; i < c->n_instr; i++) n_gen += c->instr[i].op == VM_GEN;
    char dev[32];
    kiln_buf_printf(b, "program @%s on %s: %d instructions, %d generated kernel calls, arena %lld bytes\n", c->f->name,
                    kiln_device_str(p->device, dev, sizeof dev), c->n_instr, n_gen, (long long)c->arena_bytes);
    kiln_buf_puts(b, "  inputs:");
    for (int i = 0; i < c->n_in; i++) {
        kiln_buf_puts(b, " ");
        print_slot(b, c, c->in[i]);
    }
    kiln_buf_puts(b, "\n");
    for (int i = 0; i < c->n_instr; i++) {
        const vm_instr *I = &c->instr[i];
        kiln_buf_printf(b, "  %4d  %-11s ", i, op_names[I->op]);
        if (I->op == VM_GEN)
            kiln_buf_printf(b, "@%s%s", p->gen_funcs[I->gen]->name, I->n_multi > 1 ? " (one launch with the next ones)" : I->merged ? " (launched above)" : "");
        else if (I->op == VM_CALL) kiln_buf_printf(b, "@%s", I->callee->f->name);
        else if (I->op == VM_KERNEL)
            kiln_buf_printf(b, "%s%s%s", kiln_op_info_get(I->node->op)->name, I->node->impl || I->host ? "." : "",
                            I->node->impl ? kiln_dialect_name(I->node->impl->dialect) : I->host ? "host" : "");
        if (I->op == VM_JUMP || I->op == VM_JUMP_UNLESS) kiln_buf_printf(b, "-> %d", I->target);
        kiln_buf_puts(b, " (");
        for (int k = 0; k < I->n_in; k++) {
            if (k) kiln_buf_puts(b, ", ");
            print_slot(b, c, I->in[k]);
        }
        kiln_buf_puts(b, ")");
        if (I->n_out) {
            kiln_buf_puts(b, " -> ");
            for (int k = 0; k < I->n_out; k++) {
                if (k) kiln_buf_puts(b, ", ");
                print_slot(b, c, I->out[k]);
            }
        }
        kiln_buf_puts(b, "\n");
    }
    kiln_buf_puts(b, "  outputs:");
    for (int i = 0; i < c->n_out; i++) {
        kiln_buf_puts(b, " ");
        print_slot(b, c, c->out[i]);
    }
    kiln_buf_puts(b, "\n");
}

char *kiln_program_print(const kiln_program *p) {
    kiln_buf b = {0};
    char *ir = kiln_module_print(p->module, KILN_PRINT_TYPES);
    if (ir) kiln_buf_puts(&b, ir);
    kiln_free(ir);
    for (int i = 0; i < p->n_codes; i++) {
        kiln_buf_puts(&b, "\n");
        print_code(&b, p, p->codes[i]);
    }
    for (int d = 0; d < p->n_donate; d++)
        kiln_buf_printf(&b, "donated: output %d -> input %d (%s)\n", p->donate[d][0], p->donate[d][1],
                        p->donate_placed[d] ? "in place" : "copied at the end");
    return kiln_buf_take(&b);
}

/* ---- analysis ---------------------------------------------------------------------------- */
kiln_status kiln_program_analyze(const kiln_program *p, kiln_analysis *a) {
    const vm_code *c = p->main;
    memset(a, 0, sizeof *a);
    for (int i = 0; i < c->n_in; i++) {
        const vm_slot *s = &c->slots[c->in[i]];
        if (s->type->kind != KILN_TYPE_TENSOR) continue;
        a->n_inputs++;
        a->input_elements += s->bytes / (int64_t)kiln_dtype_size(s->dtype);
        a->input_bytes += s->bytes;
    }
    for (int i = 0; i < c->n_instr; i++) {
        const vm_instr *I = &c->instr[i];
        if (I->op == VM_KERNEL || I->op == VM_GEN || I->op == VM_CALL) a->flops += kiln_node_flops(I->node);
        a->n_kernels += I->op == VM_GEN;
    }
    a->arena_bytes = c->arena_bytes;
    a->n_instructions = c->n_instr;
    a->n_steps = c->n_instr;
    a->live_bytes = p->live_bytes;
    a->high_water = p->high_water;
    return KILN_OK;
}
