/* parser.c — the IR text parser (format in docs/ir.md): pass 1 reads every `def` header so calls
 * may name later functions, pass 2 the bodies with scoped names; then type inference and the
 * check of `let %x: type` annotations. Also the string map that the printer shares. */
#include "ir/lexer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NESTING 256 /* regions inside regions: bounds the parser's (and inference's) recursion */
#define NAME_SHOWN 60   /* longest name quoted in a message */

/* ---- string map (open addressing, linear probing) ---------------------------------------- */
static size_t hash_key(const char *s, size_t n) {
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static size_t probe(const kiln_strmap *m, const char *key, size_t len) {
    size_t i = hash_key(key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && !memcmp(m->keys[i], key, len))) i = (i + 1) & (m->cap - 1);
    return i;
}

void **kiln_strmap_slot(kiln_strmap *m, const char *key, size_t len, bool insert) {
    if (m->cap) {
        size_t i = probe(m, key, len);
        if (m->keys[i]) return &m->vals[i];
    }
    if (!insert) return NULL;
    if ((m->count + 1) * 2 > m->cap) { /* keep the load under one half */
        kiln_strmap g = {m->cap ? m->cap * 2 : 16, m->count, NULL, NULL, NULL};
        g.keys = calloc(g.cap, sizeof *g.keys);
        g.lens = calloc(g.cap, sizeof *g.lens);
        g.vals = calloc(g.cap, sizeof *g.vals);
        if (!g.keys || !g.lens || !g.vals) {
            kiln_strmap_free(&g);
            return NULL;
        }
        for (size_t j = 0; j < m->cap; j++)
            if (m->keys[j]) {
                size_t k = probe(&g, m->keys[j], m->lens[j]);
                g.keys[k] = m->keys[j], g.lens[k] = m->lens[j], g.vals[k] = m->vals[j];
            }
        kiln_strmap_free(m);
        *m = g;
    }
    size_t i = probe(m, key, len);
    m->keys[i] = key;
    m->lens[i] = len;
    m->count++;
    return &m->vals[i];
}

void kiln_strmap_free(kiln_strmap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- parser state ------------------------------------------------------------------------ */
typedef struct binding {  /* what a %name means in the function being parsed */
    kiln_var *var;
    int line, col;        /* where it was defined */
    bool live;            /* false once the region defining it has ended */
} binding;

typedef struct func_info {
    kiln_function *f;
    kiln_lexer header;    /* the lexer at the '(' of the parameter list, for pass 2 */
    int line, col;
} func_info;

typedef struct annotation { /* `let %x: type = ...`, checked after inference */
    kiln_var *var;
    const kiln_type *type;
    kiln_token name;
    int line, col;
} annotation;

typedef struct parser {
    kiln_lexer lx;
    kiln_context *ctx;
    kiln_module *m;
    const char *file;
    kiln_arena tmp;                 /* bindings and function records; freed after the parse */
    kiln_strmap funcs;              /* @name -> func_info */
    kiln_strmap scope;              /* %name -> binding, for the function being parsed */
    func_info **infos;              /* in definition order (= m->funcs) */
    binding **defs;                 /* bindings made in the open regions, innermost last */
    kiln_var **vals;                /* operand scratch */
    kiln_token *names;              /* loop-variable name scratch */
    annotation *notes;
    int n_infos, cap_infos, n_defs, cap_defs, n_vals, cap_vals, n_names, cap_names, n_notes, cap_notes;
    int depth;                      /* open nested regions */
} parser;

static kiln_status err_at(parser *p, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static kiln_status err_at(parser *p, int line, int col, const char *fmt, ...) {
    if (p->lx.failed) return KILN_ERR_PARSE; /* keep the first error */
    char msg[KILN_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->lx.failed = true;
    return kiln_error(p->ctx, KILN_ERR_PARSE, "%s:%d:%d: %s", p->file, line, col, msg);
}
/* An error at the current token. */
#define ERR(p, ...) err_at((p), (p)->lx.tok.line, (p)->lx.tok.col, __VA_ARGS__)
#define SHOWN(t) (int)((t)->len > NAME_SHOWN ? NAME_SHOWN : (t)->len), (t)->start

static kiln_status oom(parser *p) { return kiln_error(p->ctx, KILN_ERR_OOM, "out of memory parsing IR"); }

/* Doubles the capacity of the array *pp (elements of `size` bytes). */
static bool grow(parser *p, void *pp, int *cap, size_t size) {
    void *old, *a;
    memcpy(&old, pp, sizeof old);
    int nc = *cap ? *cap * 2 : 16;
    if (!(a = realloc(old, size * (size_t)nc))) return oom(p), false;
    memcpy(pp, &a, sizeof a);
    *cap = nc;
    return true;
}
/* Appends x to arr[n], growing it; KILN_OK or KILN_ERR_OOM. */
#define PUSH(p, arr, n, cap, x) \
    (((n) < (cap) || grow((p), &(arr), &(cap), sizeof *(arr))) ? ((arr)[(n)++] = (x), KILN_OK) : KILN_ERR_OOM)

static const char *describe(parser *p, char *buf, size_t size) { return kiln_tok_describe(&p->lx.tok, buf, size); }
static bool is_word(parser *p, const char *w) { return kiln_lex_is_ident(&p->lx, w); }
static bool is_punct(parser *p, char c) { return kiln_lex_is(&p->lx, c); }
static kiln_status next(parser *p) { return kiln_lex_next(&p->lx) ? KILN_OK : KILN_ERR_PARSE; }
static kiln_status expect(parser *p, char c, const char *what) { return kiln_lex_expect(&p->lx, c, what); }

static kiln_status expect_word(parser *p, const char *w, const char *where) {
    char d[80];
    if (is_word(p, w)) return next(p);
    return ERR(p, "expected '%s' %s, found %s", w, where, describe(p, d, sizeof d));
}

/* ---- names and scopes -------------------------------------------------------------------- */
/* A name that is all digits (%0, %17) means "unnamed": the printer numbers those. */
static kiln_status set_name(parser *p, kiln_var *v, const kiln_token *t) {
    size_t i = 0;
    while (i < t->len && t->start[i] >= '0' && t->start[i] <= '9') i++;
    if (i == t->len) return KILN_OK;
    return (v->name = kiln_arena_strndup(&p->m->arena, t->start, t->len)) ? KILN_OK : oom(p);
}

static binding *find(parser *p, const kiln_token *t) {
    void **slot = kiln_strmap_slot(&p->scope, t->start, t->len, false);
    return slot ? *slot : NULL;
}

static kiln_status check_fresh(parser *p, const kiln_token *t) {
    binding *b = find(p, t);
    if (b && b->live)
        return err_at(p, t->line, t->col, "variable %%%.*s is defined twice (first at %d:%d)", SHOWN(t), b->line, b->col);
    return KILN_OK;
}

/* Makes %name (token t) mean v until the innermost open region ends. */
static kiln_status bind(parser *p, const kiln_token *t, kiln_var *v) {
    if (check_fresh(p, t)) return KILN_ERR_PARSE;
    void **slot = kiln_strmap_slot(&p->scope, t->start, t->len, true);
    if (!slot) return oom(p);
    binding *b = *slot;
    if (!b && !(b = *slot = kiln_arena_alloc(&p->tmp, sizeof *b))) return oom(p);
    *b = (binding){v, t->line, t->col, true};
    return PUSH(p, p->defs, p->n_defs, p->cap_defs, b) ? oom(p) : KILN_OK;
}

/* Ends the bindings made since `mark` (a region closed). */
static void unbind(parser *p, int mark) {
    while (p->n_defs > mark) p->defs[--p->n_defs]->live = false;
}

/* ---- operands ---------------------------------------------------------------------------- */
static bool is_literal_word(parser *p) {
    return is_word(p, "true") || is_word(p, "false") || is_word(p, "inf") || is_word(p, "nan");
}

/* %name, or a literal: 1, -2, 1.5, 1e-05, inf, -inf, nan, true, false. */
static kiln_status parse_operand(parser *p, kiln_var **out) {
    const kiln_token *t = &p->lx.tok;
    char d[80];
    kiln_var *v;
    if (t->kind == KILN_TOK_VAR) {
        binding *b = find(p, t);
        if (!b) return ERR(p, "undefined variable %%%.*s", SHOWN(t));
        if (!b->live)
            return ERR(p, "variable %%%.*s is used outside its scope (defined at %d:%d in a region that has ended)",
                       SHOWN(t), b->line, b->col);
        v = b->var;
    } else if (t->kind == KILN_TOK_INT) {
        v = kiln_lit_int(p->m, t->i);
    } else if (t->kind == KILN_TOK_FLOAT) {
        v = kiln_lit_float(p->m, t->f);
    } else if (is_word(p, "true") || is_word(p, "false")) {
        v = kiln_lit_bool(p->m, is_word(p, "true"));
    } else if (is_word(p, "inf") || is_word(p, "nan")) {
        v = kiln_lit_float(p->m, is_word(p, "inf") ? INFINITY : NAN);
    } else {
        return ERR(p, "expected an operand (a %%variable or a literal), found %s", describe(p, d, sizeof d));
    }
    if (!v) return kiln_error_status(p->ctx);
    *out = v;
    return next(p);
}

/* Operands separated by commas into p->vals, up to the `end` punctuation (not consumed) or, with
 * allow_attrs, up to the first attribute name. */
static kiln_status parse_operand_list(parser *p, char end, bool allow_attrs) {
    char d[80];
    p->n_vals = 0;
    if (is_punct(p, end)) return KILN_OK;
    for (;;) {
        if (allow_attrs && p->lx.tok.kind == KILN_TOK_IDENT && !is_literal_word(p)) return KILN_OK;
        kiln_var *v;
        if (p->n_vals == KILN_MAX_VALUES) return ERR(p, "more than %d operands", KILN_MAX_VALUES);
        if (parse_operand(p, &v) || PUSH(p, p->vals, p->n_vals, p->cap_vals, v)) return kiln_error_status(p->ctx);
        if (!is_punct(p, ',')) break;
        if (next(p)) return KILN_ERR_PARSE;
    }
    if (!is_punct(p, end)) return ERR(p, "expected ',' or '%c' after an operand, found %s", end, describe(p, d, sizeof d));
    return KILN_OK;
}

/* ---- statements and regions -------------------------------------------------------------- */
static kiln_status parse_region(parser *p, kiln_region *r, bool is_body, int *yline, int *ycol);

/* '{' region '}' of an if / while. */
static kiln_status parse_nested(parser *p, kiln_region *r, const char *what, int *yline, int *ycol) {
    char msg[64];
    snprintf(msg, sizeof msg, "'{' starting the %s", what);
    if (p->depth == MAX_NESTING) return ERR(p, "regions nested more than %d deep", MAX_NESTING);
    if (expect(p, '{', msg)) return KILN_ERR_PARSE;
    p->depth++;
    kiln_status s = parse_region(p, r, false, yline, ycol);
    p->depth--;
    return s;
}

static kiln_node *new_node(parser *p, kiln_region *r, kiln_op op, const kiln_token *at) {
    kiln_node *n = kiln_node_new(r, op, p->n_vals, p->vals);
    if (!n) return NULL;
    n->line = at->line;
    n->col = at->col;
    kiln_region_append(r, n);
    return n;
}

static bool new_regions(kiln_node *n) {
    n->n_regions = 2;
    return (n->regions[0] = kiln_region_new(n->parent->func, n)) && (n->regions[1] = kiln_region_new(n->parent->func, n));
}

/* Smallest edit distance from the token to an op name, for "did you mean". */
static size_t edit_distance(const char *a, size_t na, const char *b) {
    size_t nb = strlen(b), row[64], prev;
    if (na >= 64 || nb >= 64) return SIZE_MAX;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = prev + (a[i - 1] != b[j - 1]), del = row[j] + 1, ins = row[j - 1] + 1;
            prev = row[j];
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return row[nb];
}

static kiln_status unknown_op(parser *p) {
    const kiln_token *t = &p->lx.tok;
    size_t best = SIZE_MAX;
    int best_op = -1;
    for (int op = 0; op < KILN_OP_COUNT; op++) {
        size_t d = edit_distance(t->start, t->len, kiln_op_name(op));
        if (d < best) best = d, best_op = op;
    }
    if (best_op >= 0 && best <= 2 && best < t->len)
        return ERR(p, "unknown op '%.*s' (did you mean '%s'? `kiln ops` lists every op)", SHOWN(t), kiln_op_name(best_op));
    return ERR(p, "unknown op '%.*s' (`kiln ops` lists every op)", SHOWN(t));
}

/* name(operands, attr=value, ...) */
static kiln_status parse_op(parser *p, kiln_region *r, kiln_var **out) {
    kiln_token at = p->lx.tok;
    char name[64];
    int op = -1;
    if (at.len < sizeof name) {
        memcpy(name, at.start, at.len);
        name[at.len] = 0;
        op = kiln_op_from_name(name);
    }
    if (op < 0) return unknown_op(p);
    if (op == KILN_OP_CALL) return ERR(p, "a call is written @function(arguments), not call(...)");
    if (next(p) || expect(p, '(', "'(' after the op name") || parse_operand_list(p, ')', true)) return KILN_ERR_PARSE;
    kiln_node *n = new_node(p, r, (kiln_op)op, &at);
    if (!n) return kiln_error_status(p->ctx);
    if (kiln_parse_attr_list(&p->lx, (kiln_op)op, n->attrs, ')')) return KILN_ERR_PARSE;
    *out = n->out;
    return expect(p, ')', "')' closing the operands");
}

/* @callee(arguments) */
static kiln_status parse_call(parser *p, kiln_region *r, kiln_var **out) {
    kiln_token at = p->lx.tok;
    void **slot = kiln_strmap_slot(&p->funcs, at.start, at.len, false);
    if (!slot) return ERR(p, "unknown function @%.*s", SHOWN(&at));
    if (next(p) || expect(p, '(', "'(' after the function name") || parse_operand_list(p, ')', false)) return KILN_ERR_PARSE;
    kiln_node *n = new_node(p, r, KILN_OP_CALL, &at);
    if (!n) return kiln_error_status(p->ctx);
    n->callee = ((func_info *)*slot)->f;
    *out = n->out;
    return next(p);
}

/* if (%c) { ... yield } else { ... yield } */
static kiln_status parse_if(parser *p, kiln_region *r, kiln_var **out) {
    kiln_token at = p->lx.tok;
    kiln_var *c;
    if (next(p) || expect(p, '(', "'(' after 'if'") || parse_operand(p, &c) || expect(p, ')', "')' after the condition"))
        return KILN_ERR_PARSE;
    p->n_vals = 0;
    if (PUSH(p, p->vals, p->n_vals, p->cap_vals, c)) return KILN_ERR_OOM;
    kiln_node *n = new_node(p, r, KILN_OP_IF, &at);
    if (!n || !new_regions(n)) return kiln_error_status(p->ctx);
    int tl, tc, el, ec;
    if (parse_nested(p, n->regions[0], "then branch", &tl, &tc) || expect_word(p, "else", "after the then branch") ||
        parse_nested(p, n->regions[1], "else branch", &el, &ec))
        return KILN_ERR_PARSE;
    if (n->regions[0]->n_results != n->regions[1]->n_results)
        return err_at(p, el, ec, "the branches of an if yield different numbers of values: then %d, else %d",
                      n->regions[0]->n_results, n->regions[1]->n_results);
    *out = n->out;
    return KILN_OK;
}

/* while (%i = init, ...) cond { ... yield %b } do { ... yield next values } */
static kiln_status parse_while(parser *p, kiln_region *r, kiln_var **out) {
    kiln_token at = p->lx.tok;
    char d[80];
    if (next(p) || expect(p, '(', "'(' after 'while'")) return KILN_ERR_PARSE;
    p->n_vals = p->n_names = 0;
    while (!is_punct(p, ')')) {
        kiln_var *v;
        if (p->lx.tok.kind != KILN_TOK_VAR)
            return ERR(p, "expected a loop variable %%name, found %s", describe(p, d, sizeof d));
        if (p->n_names == KILN_MAX_VALUES) return ERR(p, "more than %d loop variables", KILN_MAX_VALUES);
        if (PUSH(p, p->names, p->n_names, p->cap_names, p->lx.tok)) return KILN_ERR_OOM;
        if (next(p) || expect(p, '=', "'=' and the loop variable's initial value") || parse_operand(p, &v) ||
            PUSH(p, p->vals, p->n_vals, p->cap_vals, v))
            return kiln_error_status(p->ctx);
        if (!is_punct(p, ')') && expect(p, ',', "',' or ')' after a loop variable")) return KILN_ERR_PARSE;
    }
    if (next(p) || expect_word(p, "cond", "after the loop variables")) return KILN_ERR_PARSE;
    kiln_node *n = new_node(p, r, KILN_OP_WHILE, &at);
    if (!n || !new_regions(n)) return kiln_error_status(p->ctx);
    n->n_loop = p->n_names;
    if (!(n->loop = kiln_arena_alloc(&p->m->arena, sizeof *n->loop * (size_t)(n->n_loop ? n->n_loop : 1)))) return oom(p);
    int mark = p->n_defs;
    for (int i = 0; i < n->n_loop; i++) {
        kiln_var *v = n->loop[i] = kiln_var_new(r->func, KILN_VAR_LOOP, NULL);
        if (!v) return kiln_error_status(p->ctx);
        v->def = n;
        v->index = i;
        v->type = n->in[i]->type;
        if (set_name(p, v, &p->names[i]) || bind(p, &p->names[i], v)) return kiln_error_status(p->ctx);
    }
    int cl, cc, bl, bc;
    kiln_status s = parse_nested(p, n->regions[0], "cond region", &cl, &cc);
    if (!s) s = expect_word(p, "do", "after the cond region");
    if (!s) s = parse_nested(p, n->regions[1], "loop body", &bl, &bc);
    unbind(p, mark);
    if (s) return s;
    if (n->regions[0]->n_results != 1)
        return err_at(p, cl, cc, "the cond region of a while yields %d values; it must yield one bool", n->regions[0]->n_results);
    if (n->regions[1]->n_results != n->n_loop)
        return err_at(p, bl, bc, "the body of a while yields %d values for %d loop variables", n->regions[1]->n_results, n->n_loop);
    *out = n->out;
    return KILN_OK;
}

/* let %name [: type] = expression */
static kiln_status parse_let(parser *p, kiln_region *r) {
    char d[80];
    if (next(p)) return KILN_ERR_PARSE;
    if (p->lx.tok.kind != KILN_TOK_VAR) return ERR(p, "expected a %%name after 'let', found %s", describe(p, d, sizeof d));
    annotation note = {.name = p->lx.tok};
    if (check_fresh(p, &note.name) || next(p)) return KILN_ERR_PARSE;
    if (is_punct(p, ':')) {
        if (next(p)) return KILN_ERR_PARSE;
        note.line = p->lx.tok.line;
        note.col = p->lx.tok.col;
        if (kiln_parse_type(&p->lx, &note.type)) return KILN_ERR_PARSE;
    }
    if (expect(p, '=', "'=' after the variable")) return KILN_ERR_PARSE;
    const kiln_token *t = &p->lx.tok;
    kiln_status s;
    if (t->kind == KILN_TOK_GLOBAL) s = parse_call(p, r, &note.var);
    else if (is_word(p, "if")) s = parse_if(p, r, &note.var);
    else if (is_word(p, "while")) s = parse_while(p, r, &note.var);
    else if (t->kind == KILN_TOK_IDENT) s = parse_op(p, r, &note.var);
    else s = ERR(p, "expected an op, @function, 'if' or 'while' after '=', found %s", describe(p, d, sizeof d));
    if (s || set_name(p, note.var, &note.name) || bind(p, &note.name, note.var)) return kiln_error_status(p->ctx);
    if (note.type && PUSH(p, p->notes, p->n_notes, p->cap_notes, note)) return KILN_ERR_OOM;
    return KILN_OK;
}

/* Statements up to and including the closing '}' (the '{' is consumed by the caller). The
 * position of the yield / return goes to *yline, *ycol. Loops over statements: no recursion on
 * the length of a region. */
static kiln_status parse_region(parser *p, kiln_region *r, bool is_body, int *yline, int *ycol) {
    const char *end_word = is_body ? "return" : "yield";
    char d[80];
    int mark = p->n_defs;
    kiln_status s;
    for (;;) {
        if (is_word(p, "let")) {
            if ((s = parse_let(p, r))) break;
            continue;
        }
        if (is_word(p, "return") || is_word(p, "yield")) {
            if (!is_word(p, end_word)) {
                s = ERR(p, is_body ? "a function body ends with 'return', not 'yield'"
                                   : "'return' only ends a function body; a nested region ends with 'yield'");
                break;
            }
            *yline = p->lx.tok.line;
            *ycol = p->lx.tok.col;
            if (!(s = next(p)) && !(s = parse_operand_list(p, '}', false)) && !(s = kiln_region_yield(r, p->n_vals, p->vals)))
                s = next(p);
            break;
        }
        if (is_punct(p, '}'))
            s = is_body ? ERR(p, "missing 'return' at the end of @%s", r->func->name)
                        : ERR(p, "missing 'yield' at the end of a region");
        else
            s = ERR(p, "expected 'let' or '%s', found %s", end_word, describe(p, d, sizeof d));
        break;
    }
    unbind(p, mark);
    return s;
}

/* ---- functions and the module ------------------------------------------------------------ */
/* `(%x: type, ...) [-> type] {`. Pass 1 creates the parameters and reads the return type; pass 2
 * binds the parameter names. */
static kiln_status parse_header(parser *p, kiln_function *f, bool pass2) {
    char d[80], what[96];
    if (expect(p, '(', "'(' starting the parameters")) return KILN_ERR_PARSE;
    for (int i = 0; !is_punct(p, ')'); i++) {
        if (p->lx.tok.kind != KILN_TOK_VAR) return ERR(p, "expected a parameter %%name, found %s", describe(p, d, sizeof d));
        if (i == KILN_MAX_VALUES) return ERR(p, "more than %d parameters", KILN_MAX_VALUES);
        kiln_token name = p->lx.tok;
        const kiln_type *t;
        if (next(p) || expect(p, ':', "':' and the parameter's type") || kiln_parse_type(&p->lx, &t)) return KILN_ERR_PARSE;
        if (pass2) {
            if (bind(p, &name, f->params[i])) return kiln_error_status(p->ctx);
        } else {
            kiln_var *v = kiln_function_param(f, NULL, (kiln_type *)t);
            if (!v || set_name(p, v, &name)) return kiln_error_status(p->ctx);
        }
        if (!is_punct(p, ')') && expect(p, ',', "',' or ')' after a parameter")) return KILN_ERR_PARSE;
    }
    if (next(p)) return KILN_ERR_PARSE;
    if (p->lx.tok.kind == KILN_TOK_ARROW) {
        const kiln_type *t;
        if (next(p) || kiln_parse_type(&p->lx, &t)) return KILN_ERR_PARSE;
        if (!pass2) f->declared_ret = t;
    }
    snprintf(what, sizeof what, "'{' starting the body of @%.60s", f->name);
    return expect(p, '{', what);
}

/* Pass 1: every `def @name(params) [-> type] {`, skipping the bodies by brace matching. */
static kiln_status collect_headers(parser *p) {
    char d[80];
    while (p->lx.tok.kind != KILN_TOK_EOF) {
        bool kernel = is_word(p, "kernel"); /* a fused group: `kernel @name(...)` */
        if (!kernel && !is_word(p, "def"))
            return ERR(p, "expected 'def' or 'kernel' at the top level, found %s", describe(p, d, sizeof d));
        if (next(p)) return KILN_ERR_PARSE;
        kiln_token name = p->lx.tok;
        if (name.kind != KILN_TOK_GLOBAL) return ERR(p, "expected a function name @name after 'def', found %s", describe(p, d, sizeof d));
        void **slot = kiln_strmap_slot(&p->funcs, name.start, name.len, true);
        if (!slot) return oom(p);
        if (*slot) {
            func_info *first = *slot;
            return ERR(p, "function @%.*s is defined twice (first at %d:%d)", SHOWN(&name), first->line, first->col);
        }
        func_info *fi = kiln_arena_alloc(&p->tmp, sizeof *fi);
        char *cname = kiln_arena_strndup(&p->tmp, name.start, name.len);
        if (!fi || !cname) return oom(p);
        if (!(fi->f = kiln_function_new(p->m, cname))) return kiln_error_status(p->ctx);
        fi->f->kernel = kernel;
        fi->line = name.line;
        fi->col = name.col;
        *slot = fi;
        if (PUSH(p, p->infos, p->n_infos, p->cap_infos, fi) || next(p)) return kiln_error_status(p->ctx);
        fi->header = p->lx;
        if (parse_header(p, fi->f, false)) return KILN_ERR_PARSE;
        for (int depth = 1; depth > 0;) {
            if (p->lx.tok.kind == KILN_TOK_EOF)
                return ERR(p, "the body of @%.*s (line %d) is not closed with '}'", SHOWN(&name), name.line);
            depth += is_punct(p, '{') - is_punct(p, '}');
            if (next(p)) return KILN_ERR_PARSE;
        }
    }
    return KILN_OK;
}

/* Pass 2: the bodies, each with a fresh scope. */
static kiln_status parse_bodies(parser *p) {
    for (int i = 0; i < p->n_infos; i++) {
        func_info *fi = p->infos[i];
        int yl, yc;
        p->lx = fi->header;
        kiln_strmap_free(&p->scope);
        p->n_defs = 0;
        if (parse_header(p, fi->f, true) || parse_region(p, fi->f->body, true, &yl, &yc)) return kiln_error_status(p->ctx);
    }
    return KILN_OK;
}

/* Inference, then the declared `let` types. Gives a function-level inference message the
 * position of its `def`. */
static kiln_status check_types(parser *p) {
    if (kiln_module_infer(p->m)) {
        const char *msg = kiln_error_message(p->ctx);
        if (!strncmp(msg, "function @", 10)) {
            void **slot = kiln_strmap_slot(&p->funcs, msg + 10, strcspn(msg + 10, " "), false);
            if (slot) {
                func_info *fi = *slot;
                char copy[KILN_ERROR_MAX];
                snprintf(copy, sizeof copy, "%s", msg);
                return kiln_error(p->ctx, kiln_error_status(p->ctx), "%s:%d:%d: %s", p->file, fi->line, fi->col, copy);
            }
        }
        return kiln_error_status(p->ctx);
    }
    for (int i = 0; i < p->n_notes; i++) {
        const annotation *a = &p->notes[i];
        if (!kiln_type_equal(a->var->type, a->type)) {
            char want[256], got[256];
            return kiln_error(p->ctx, KILN_ERR_TYPE, "%s:%d:%d: %%%.*s declared %s but inferred %s", p->file, a->line,
                              a->col, SHOWN(&a->name), kiln_type_cstr(a->type, want, sizeof want),
                              kiln_type_cstr(a->var->type, got, sizeof got));
        }
    }
    return KILN_OK;
}

kiln_module *kiln_module_parse(kiln_context *ctx, const char *text, const char *filename) {
    if (!text) {
        kiln_error(ctx, KILN_ERR_PARSE, "%s: no text to parse", filename ? filename : "<input>");
        return NULL;
    }
    kiln_module *m = kiln_module_new(ctx);
    if (!m) return NULL;
    parser p = {.ctx = ctx, .m = m, .file = "<input>"};
    kiln_arena_init(&p.tmp);
    kiln_status s = KILN_OK;
    if (filename && !(m->filename = p.file = kiln_arena_strdup(&m->arena, filename))) s = oom(&p);
    if (!s) {
        kiln_lex_init(&p.lx, ctx, &m->arena, text, p.file);
        s = p.lx.failed ? KILN_ERR_PARSE : KILN_OK;
    }
    if (!s) s = collect_headers(&p);
    if (!s) s = parse_bodies(&p);
    if (!s) s = check_types(&p);
    kiln_strmap_free(&p.funcs);
    kiln_strmap_free(&p.scope);
    free(p.infos);
    free(p.defs);
    free(p.vals);
    free(p.names);
    free(p.notes);
    kiln_arena_free(&p.tmp);
    if (s) {
        kiln_module_free(m);
        return NULL;
    }
    return m;
}
