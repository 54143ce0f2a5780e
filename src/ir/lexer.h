/* lexer.h — tokens of the IR text format, and the small parsers shared by the module parser,
 * attribute strings of the C API and the op table's schema defaults (types, attribute values). */
#ifndef KILN_LEXER_H
#define KILN_LEXER_H

#include "ir/ir.h"

typedef enum kiln_tok_kind {
    KILN_TOK_EOF, KILN_TOK_IDENT, KILN_TOK_VAR, KILN_TOK_GLOBAL, KILN_TOK_INT, KILN_TOK_FLOAT,
    KILN_TOK_STRING, KILN_TOK_PUNCT, KILN_TOK_ARROW
} kiln_tok_kind;

typedef struct kiln_token {
    kiln_tok_kind kind;
    const char *start; /* IDENT / VAR / GLOBAL: the name without its sigil */
    size_t len;
    int line, col;
    int64_t i;         /* INT */
    double f;          /* FLOAT (also set for INT) */
    char punct;        /* PUNCT: one of ( ) [ ] { } , : = */
    char *str;         /* STRING: unescaped, in the lexer's arena */
} kiln_token;

typedef struct kiln_lexer {
    kiln_context *ctx;
    kiln_arena *arena;
    const char *filename;
    const char *p;
    int line, col;
    kiln_token tok;    /* the current token */
    bool failed;
} kiln_lexer;

/* Starts lexing `src`, reading the first token (check lx->failed). */
void kiln_lex_init(kiln_lexer *lx, kiln_context *ctx, kiln_arena *arena, const char *src,
                   const char *filename);
/* Advances to the next token; false on a lexical error (error set). */
bool kiln_lex_next(kiln_lexer *lx);
/* Sets a parse error "file:line:col: message" at the current token; returns KILN_ERR_PARSE. */
kiln_status kiln_lex_error(kiln_lexer *lx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool kiln_lex_is(const kiln_lexer *lx, char punct);
bool kiln_lex_is_ident(const kiln_lexer *lx, const char *word);
/* Consumes punct if it is the current token. */
bool kiln_lex_accept(kiln_lexer *lx, char punct);
/* Consumes punct or fails with "expected <what>". */
kiln_status kiln_lex_expect(kiln_lexer *lx, char punct, const char *what);
/* Describes the current token for messages ("'%x'", "end of input"). */
const char *kiln_tok_describe(const kiln_token *t, char *buf, size_t size);

/* dtype name, type ("f32[2, 3]", "int", "(f32[], bool)"), attribute value of a given kind. */
kiln_status kiln_parse_dtype(kiln_lexer *lx, kiln_dtype *out);
kiln_status kiln_parse_type(kiln_lexer *lx, const kiln_type **out);
kiln_status kiln_parse_attr_value(kiln_lexer *lx, kiln_attr_kind kind, kiln_attr *out);
/* "name=value, name=value" for op until `end` (0: end of input); defaults filled first. */
kiln_status kiln_parse_attr_list(kiln_lexer *lx, kiln_op op, kiln_attr *attrs, char end);

#endif /* KILN_LEXER_H */
