/* printer.c — the IR text printer (format in docs/ir.md): names every variable of a function
 * uniquely (kept names, de-duplicated; unnamed ones numbered %0, %1, ... in definition order),
 * then prints each binding, with two spaces of indentation per region level. */
#include "ir/ir.h"
#include "dialects/dialect.h"
#include <stdlib.h>
#include <string.h>

typedef struct printer {
    kiln_buf *b;
    int flags;
    const kiln_function *f;
    const char **names;   /* by var id; NULL for a variable that is never defined */
    kiln_var **order;     /* variables in definition (= text) order */
    int n_order, cap_order;
    bool oom;
} printer;

static void add_var(printer *pr, kiln_var *v) {
    if (!v || pr->oom) return;
    if (pr->n_order == pr->cap_order) {
        int cap = pr->cap_order ? pr->cap_order * 2 : 64;
        kiln_var **o = realloc(pr->order, sizeof *o * (size_t)cap);
        if (!o) {
            pr->oom = true;
            return;
        }
        pr->order = o;
        pr->cap_order = cap;
    }
    pr->order[pr->n_order++] = v;
}

/* Collects the variables a region defines, in text order (result, loop variables, regions). */
static void collect_region(printer *pr, const kiln_region *r) {
    for (const kiln_node *n = r ? r->first : NULL; n; n = n->next) {
        add_var(pr, n->out);
        for (int i = 0; i < n->n_loop; i++) add_var(pr, n->loop[i]);
        for (int i = 0; i < n->n_regions; i++) collect_region(pr, n->regions[i]);
    }
}

/* Names print as the lexer reads them: characters outside [A-Za-z0-9_.] become '_'. */
static char name_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' ? c : '_';
}

/* A variable's name cleaned, or NULL when absent, empty or all digits (those print as numbers). */
static char *clean_name(kiln_arena *a, const char *name) {
    if (!name || !*name || strspn(name, "0123456789") == strlen(name)) return NULL;
    char *s = kiln_arena_strdup(a, name);
    for (char *c = s; c && *c; c++) *c = name_char(*c);
    return s;
}

static void print_global(kiln_buf *b, const char *name) {
    kiln_buf_puts(b, "@");
    for (const char *c = name ? name : "?"; *c; c++) kiln_buf_printf(b, "%c", name_char(*c));
}

/* What the printer knows of a name: given out yet, and the next suffix to try for duplicates
 * (kept per name so that many duplicates cost linear time). */
typedef struct name_use { bool taken; int next_suffix; } name_use;

static name_use *use_of(kiln_strmap *used, kiln_arena *a, const char *name, bool insert) {
    void **slot = kiln_strmap_slot(used, name, strlen(name), insert);
    if (slot && !*slot && (*slot = kiln_arena_alloc(a, sizeof(name_use)))) ((name_use *)*slot)->next_suffix = 1;
    return slot ? *slot : NULL;
}

/* Gives every variable of pr->f its printed name in pr->names (strings in arena a). */
static bool name_vars(printer *pr, kiln_arena *a) {
    const kiln_function *f = pr->f;
    for (int i = 0; i < f->n_params; i++) add_var(pr, f->params[i]);
    collect_region(pr, f->body);
    char **clean = kiln_arena_alloc(a, sizeof *clean * (size_t)(pr->n_order ? pr->n_order : 1));
    pr->names = kiln_arena_alloc(a, sizeof *pr->names * (size_t)(f->n_vars ? f->n_vars : 1));
    if (pr->oom || !clean || !pr->names) return false;
    kiln_strmap used = {0}; /* every kept name, then every name given out */
    bool ok = true;
    for (int i = 0; i < pr->n_order && ok; i++)
        if ((clean[i] = clean_name(a, pr->order[i]->name)) && !use_of(&used, a, clean[i], true)) ok = false;
    int number = 0;
    for (int i = 0; i < pr->n_order && ok; i++) {
        const kiln_var *v = pr->order[i];
        char *name = clean[i];
        if (!name) { /* unnamed: numbers never clash with kept names, which are not all digits */
            char num[24];
            snprintf(num, sizeof num, "%d", number++);
            name = kiln_arena_strdup(a, num);
        } else {
            name_use *u = use_of(&used, a, name, false);
            if (u->taken) { /* a duplicate: the first free name_1, name_2, ... */
                size_t len = strlen(name) + 24;
                char *cand = kiln_arena_alloc(a, len);
                while (cand) {
                    snprintf(cand, len, "%s_%d", name, u->next_suffix++);
                    if (!kiln_strmap_slot(&used, cand, strlen(cand), false)) break;
                }
                name = cand;
                u = name ? use_of(&used, a, name, true) : NULL;
            }
            if (u) u->taken = true;
            else name = NULL;
        }
        if (!name) ok = false;
        else if (v->id >= 0 && v->id < f->n_vars && v->func == f) pr->names[v->id] = name;
    }
    kiln_strmap_free(&used);
    return ok;
}

static void print_var(printer *pr, const kiln_var *v) {
    kiln_buf *b = pr->b;
    if (!v) return kiln_buf_puts(b, "%?");
    if (v->kind == KILN_VAR_LITERAL) {
        if (!v->type || v->type->dtype == KILN_I64) kiln_buf_printf(b, "%lld", (long long)v->lit.i);
        else if (v->type->dtype == KILN_F64) kiln_buf_double(b, v->lit.f);
        else kiln_buf_puts(b, v->lit.b ? "true" : "false");
        return;
    }
    const char *name = v->func == pr->f && v->id >= 0 && v->id < pr->f->n_vars ? pr->names[v->id] : NULL;
    kiln_buf_printf(b, "%%%s", name ? name : "?");
}

static void print_vars(printer *pr, int n, kiln_var *const *vs) {
    for (int i = 0; i < n; i++) {
        if (i) kiln_buf_puts(pr->b, ", ");
        print_var(pr, vs[i]);
    }
}

static void indent(printer *pr, int depth) {
    for (int i = 0; i < depth; i++) kiln_buf_puts(pr->b, "  ");
}

static void print_region(printer *pr, const kiln_region *r, int depth, bool is_body);

static void print_node(printer *pr, const kiln_node *n, int depth) {
    kiln_buf *b = pr->b;
    indent(pr, depth);
    kiln_buf_puts(b, "let ");
    print_var(pr, n->out);
    if ((pr->flags & KILN_PRINT_TYPES) && n->out && n->out->type) {
        kiln_buf_puts(b, ": ");
        kiln_buf_type(b, n->out->type);
    }
    kiln_buf_puts(b, " = ");
    if (n->op == KILN_OP_IF && n->n_regions == 2) {
        kiln_buf_puts(b, "if (");
        print_vars(pr, n->n_in, n->in);
        kiln_buf_puts(b, ") {\n");
        print_region(pr, n->regions[0], depth + 1, false);
        indent(pr, depth);
        kiln_buf_puts(b, "} else {\n");
        print_region(pr, n->regions[1], depth + 1, false);
    } else if (n->op == KILN_OP_WHILE && n->n_regions == 2) {
        kiln_buf_puts(b, "while (");
        for (int i = 0; i < n->n_loop && i < n->n_in; i++) {
            if (i) kiln_buf_puts(b, ", ");
            print_var(pr, n->loop[i]);
            kiln_buf_puts(b, " = ");
            print_var(pr, n->in[i]);
        }
        kiln_buf_puts(b, ") cond {\n");
        print_region(pr, n->regions[0], depth + 1, false);
        indent(pr, depth);
        kiln_buf_puts(b, "} do {\n");
        print_region(pr, n->regions[1], depth + 1, false);
    } else {
        if (n->op == KILN_OP_CALL) print_global(b, n->callee ? n->callee->name : NULL);
        else kiln_buf_puts(b, kiln_op_info_get(n->op)->name);
        kiln_buf_puts(b, "(");
        print_vars(pr, n->n_in, n->in);
        kiln_buf attrs = {0};
        if (n->attrs) kiln_buf_attrs(&attrs, n->op, n->attrs);
        char *s = kiln_buf_take(&attrs);
        if (s && *s) kiln_buf_printf(b, "%s%s", n->n_in ? ", " : "", s);
        free(s);
        kiln_buf_puts(b, ")");
        if (n->impl) kiln_buf_printf(b, "  # %s", kiln_dialect_name(n->impl->dialect)); /* dispatch's choice */
        kiln_buf_puts(b, "\n");
        return;
    }
    indent(pr, depth);
    kiln_buf_puts(b, "}\n");
}

/* The bindings of a region, then its yield (a function body: return). A region that never
 * yielded prints no yield (and does not parse back: kiln_module_verify reports it). */
static void print_region(printer *pr, const kiln_region *r, int depth, bool is_body) {
    if (!r) return;
    for (const kiln_node *n = r->first; n; n = n->next) print_node(pr, n, depth);
    if (r->n_results < 0) return;
    indent(pr, depth);
    kiln_buf_puts(pr->b, is_body ? "return" : "yield");
    if (r->n_results) kiln_buf_puts(pr->b, " ");
    print_vars(pr, r->n_results, r->results);
    kiln_buf_puts(pr->b, "\n");
}

static bool print_function(kiln_buf *b, const kiln_function *f, int flags) {
    printer pr = {.b = b, .flags = flags, .f = f};
    kiln_arena a;
    kiln_arena_init(&a);
    bool ok = name_vars(&pr, &a);
    if (ok) {
        kiln_buf_puts(b, f->kernel ? "kernel " : "def ");
        print_global(b, f->name);
        kiln_buf_puts(b, "(");
        for (int i = 0; i < f->n_params; i++) {
            if (i) kiln_buf_puts(b, ", ");
            print_var(&pr, f->params[i]);
            kiln_buf_puts(b, ": ");
            kiln_buf_type(b, f->params[i]->type);
        }
        kiln_buf_puts(b, ")");
        const kiln_type *ret = f->ret ? f->ret : f->declared_ret;
        if (ret) {
            kiln_buf_puts(b, " -> ");
            kiln_buf_type(b, ret);
        }
        kiln_buf_puts(b, " {\n");
        print_region(&pr, f->body, 1, true);
        kiln_buf_puts(b, "}\n");
    }
    free(pr.order);
    kiln_arena_free(&a);
    return ok;
}

char *kiln_module_print(const kiln_module *m, int flags) {
    kiln_buf b = {0};
    for (int i = 0; i < m->n_funcs; i++) {
        if (i) kiln_buf_puts(&b, "\n");
        if (!print_function(&b, m->funcs[i], flags)) {
            kiln_buf_free(&b);
            kiln_error(m->ctx, KILN_ERR_OOM, "out of memory printing IR");
            return NULL;
        }
    }
    char *s = kiln_buf_take(&b);
    if (!s) kiln_error(m->ctx, KILN_ERR_OOM, "out of memory printing IR");
    return s;
}
