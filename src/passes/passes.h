/* passes.h — transformations of IR functions: cloning, inlining, decompose (composites into
 * primitives) and autodiff (reverse-mode gradients). */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"

/* Copying: map[source var id] gives the copy of a source variable; NULL entries (and ids past
 * n_map) stand for themselves — values visible where the copy goes. */
typedef struct kiln_cloner {
    kiln_function *dst;
    kiln_var **map;
    int n_map;
} kiln_cloner;
kiln_var *kiln_clone_var(kiln_cloner *c, kiln_var *v);
/* Copies src's bindings into dst before `before` (NULL: at the end); with_yield copies the
 * yield too (dst must not have one yet). */
kiln_status kiln_clone_region_into(kiln_cloner *c, const kiln_region *src, kiln_region *dst, kiln_node *before,
                                   bool with_yield);

/* Replaces every call in r (nested regions too) by a copy of the callee's body, except calls
 * that would recurse. */
kiln_status kiln_pass_inline(kiln_region *r);
kiln_status kiln_pass_decompose(kiln_region *r);
/* The same, leaving the composites for which keep(node, arg) is true. */
kiln_status kiln_pass_decompose_except(kiln_region *r, bool (*keep)(const kiln_node *n, void *arg), void *arg);
/* Removes bindings nothing reads (calls and F_SIDE ops are kept). */
kiln_status kiln_pass_dce(kiln_region *r);
/* Replaces uses of `old` by `new` in the nodes from `from` on (and regions inside them) and in
 * r's yield. */
void kiln_replace_uses(kiln_region *r, kiln_node *from, const kiln_var *old, kiln_var *new);

/* zeros shaped like var x (from grad/grad.h, also used here). */
kiln_var *kiln_grad_zeros(kiln_builder *b, kiln_var *x);

#endif
