/* rewrite.h — the walk shared by the simplify, fold and cse passes: every node of a function in
 * program order (a node's nested regions right after it) on an explicit stack, with a
 * substitution map that every later input and yield goes through once a value is replaced. */
#ifndef KILN_REWRITE_H
#define KILN_REWRITE_H

#include "ir/ir.h"

typedef struct kiln_rewriter kiln_rewriter;

typedef struct kiln_rewrite_hooks {
    /* Called once per node after its inputs went through the map. It may replace the node
     * (kiln_rewrite_replace), insert nodes before it or edit it in place. */
    kiln_status (*node)(kiln_rewriter *rw, kiln_node *n);
    /* Optional: the walk enters / leaves a region (a function body or a nested region). */
    kiln_status (*enter)(kiln_rewriter *rw, kiln_region *r);
    void (*leave)(kiln_rewriter *rw, kiln_region *r);
} kiln_rewrite_hooks;

struct kiln_rewriter {
    kiln_function *f;
    kiln_context *ctx;
    void *user;          /* the pass's own state */
    kiln_var **subst;    /* var id -> its replacement (NULL: itself); grows with f->n_vars */
    int cap;
    bool replaced;       /* the node being visited was replaced */
};

/* Walks f with the hooks; `user` lands in rw->user. */
kiln_status kiln_rewrite_function(kiln_function *f, const kiln_rewrite_hooks *hooks, void *user);
/* Node n's value is v from now on (v has n's type): later reads of n's result read v, and n
 * leaves its region (it must have no side effect). */
kiln_status kiln_rewrite_replace(kiln_rewriter *rw, kiln_node *n, kiln_var *v);
/* The node defining v when it is a result of op `op`, else NULL. */
kiln_node *kiln_rewrite_def(const kiln_var *v, kiln_op op);

#endif /* KILN_REWRITE_H */
