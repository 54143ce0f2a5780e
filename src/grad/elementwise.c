/* elementwise.c — gradient rules of the elementwise ops: unary math and activations, binary
 * arithmetic with broadcasting (adjoints summed back to each input's shape), where and cast. */
#include "grad/grad.h"
#include <math.h>

#define B1(op, x) kiln_build1(b, KILN_OP_##op, (x))
#define B2(op, x, y) kiln_build2(b, KILN_OP_##op, (x), (y))
#define F(v) kiln_build_float(b, (v))

kiln_status kiln_grad_unary(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    kiln_var *x = in[0], *g;
    switch (n->op) {
    case KILN_OP_NEG: g = B1(NEG, dy); break;
    case KILN_OP_ABS: g = B2(MULTIPLY, dy, B1(SIGN, x)); break;
    case KILN_OP_SIGN: g = kiln_grad_zeros(b, x); break;
    case KILN_OP_EXP: g = B2(MULTIPLY, dy, y); break;
    case KILN_OP_LOG: g = B2(DIVIDE, dy, x); break;
    case KILN_OP_LOG2: g = B2(DIVIDE, dy, B2(MULTIPLY, x, F(0.69314718055994530942))); break;
    case KILN_OP_SQRT: g = B2(DIVIDE, B2(MULTIPLY, dy, F(0.5)), y); break;
    case KILN_OP_RSQRT: /* d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3 */
        g = B2(MULTIPLY, B2(MULTIPLY, dy, F(-0.5)), B2(MULTIPLY, y, B2(MULTIPLY, y, y)));
        break;
    case KILN_OP_RECIPROCAL: g = B2(MULTIPLY, B1(NEG, dy), B2(MULTIPLY, y, y)); break;
    case KILN_OP_SIN: g = B2(MULTIPLY, dy, B1(COS, x)); break;
    case KILN_OP_COS: g = B2(MULTIPLY, B1(NEG, dy), B1(SIN, x)); break;
    case KILN_OP_TANH: g = B2(MULTIPLY, dy, B2(SUBTRACT, F(1.0), B2(MULTIPLY, y, y))); break;
    case KILN_OP_ATAN: g = B2(DIVIDE, dy, B2(ADD, F(1.0), B2(MULTIPLY, x, x))); break;
    case KILN_OP_SIGMOID: g = B2(MULTIPLY, dy, B2(MULTIPLY, y, B2(SUBTRACT, F(1.0), y))); break;
    case KILN_OP_RELU: g = kiln_grad_mask(b, B2(GREATER, x, F(0.0)), dy); break;
    case KILN_OP_ERF: /* 2/sqrt(pi) exp(-x^2) */
        g = B2(MULTIPLY, B2(MULTIPLY, dy, F(1.12837916709551257390)), B1(EXP, B1(NEG, B2(MULTIPLY, x, x))));
        break;
    case KILN_OP_COPY: g = dy; break;
    case KILN_OP_CLIP: { /* passes where min <= x <= max, as torch.clamp */
        const kiln_attr *lo = kiln_attr_get(n->op, n->attrs, "min"), *hi = kiln_attr_get(n->op, n->attrs, "max");
        kiln_var *keep = NULL;
        if (lo->set) keep = B2(GREATER_EQUAL, x, F(lo->f));
        if (hi->set) {
            kiln_var *le = B2(LESS_EQUAL, x, F(hi->f));
            keep = keep ? B2(LOGICAL_AND, keep, le) : le;
        }
        g = keep ? kiln_grad_mask(b, keep, dy) : dy;
        break;
    }
    case KILN_OP_THRESHOLD:
        g = kiln_grad_mask(b, B2(GREATER, x, F(kiln_attr_float(n->op, n->attrs, "threshold"))), dy);
        break;
    default: return KILN_ERR_INTERNAL;
    }
    din[0] = g;
    return g ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}

/* maximum/minimum: the adjoint goes to the winner, split in half on ties (as torch). */
static void grad_extremum(kiln_builder *b, kiln_op win_op, kiln_var *x, kiln_var *yv, kiln_var *dy, kiln_var **gx, kiln_var **gy) {
    kiln_var *half = B2(MULTIPLY, dy, F(0.5)), *tie = B2(EQUAL, x, yv);
    kiln_var *x_wins = kiln_build2(b, win_op, x, yv);
    kiln_var *y_wins = kiln_build2(b, win_op, yv, x);
    *gx = B2(ADD, kiln_grad_mask(b, x_wins, dy), kiln_grad_mask(b, tie, half));
    *gy = B2(ADD, kiln_grad_mask(b, y_wins, dy), kiln_grad_mask(b, tie, half));
}

kiln_status kiln_grad_binary(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *z, kiln_var *dy, kiln_var **din) {
    kiln_var *x = in[0], *y = in[1], *gx = NULL, *gy = NULL;
    switch (n->op) {
    case KILN_OP_ADD: gx = gy = dy; break;
    case KILN_OP_SUBTRACT: gx = dy, gy = B1(NEG, dy); break;
    case KILN_OP_MULTIPLY: gx = B2(MULTIPLY, dy, y), gy = B2(MULTIPLY, dy, x); break;
    case KILN_OP_DIVIDE: /* d(x/y)/dy = -x/y^2 = -z/y */
        gx = B2(DIVIDE, dy, y), gy = B2(DIVIDE, B2(MULTIPLY, B1(NEG, dy), z), y);
        break;
    case KILN_OP_MOD: /* x - floor(x/y) y */
        gx = dy, gy = B2(MULTIPLY, B1(NEG, dy), B2(FLOOR_DIVIDE, x, y));
        break;
    case KILN_OP_POWER: { /* y x^(y-1), 0 where y == 0 (x^0 is constant, even at x == 0: not 0 * inf);
                           * z log x, taken as 0 where x == 0 (torch) */
        gx = B2(MULTIPLY, dy, B2(MULTIPLY, y, B2(POWER, x, B2(SUBTRACT, y, F(1.0)))));
        gx = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){B2(EQUAL, y, F(0.0)), F(0.0), gx}, NULL);
        kiln_var *zero = B2(EQUAL, x, F(0.0));
        gy = kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){zero, F(0.0), B2(MULTIPLY, dy, B2(MULTIPLY, z, B1(LOG, x)))}, NULL);
        break;
    }
    case KILN_OP_MAXIMUM: grad_extremum(b, KILN_OP_GREATER, x, y, dy, &gx, &gy); break;
    case KILN_OP_MINIMUM: grad_extremum(b, KILN_OP_LESS, x, y, dy, &gx, &gy); break;
    default: return KILN_ERR_INTERNAL;
    }
    /* scalar operands (literals, scalar params) take no gradient */
    din[0] = kiln_type_is_tensor(x->type) ? kiln_grad_unbroadcast(b, gx, x) : NULL;
    din[1] = kiln_type_is_tensor(y->type) ? kiln_grad_unbroadcast(b, gy, y) : NULL;
    if ((kiln_type_is_tensor(x->type) && !din[0]) || (kiln_type_is_tensor(y->type) && !din[1]))
        return kiln_error_status(b->region->func->module->ctx);
    return KILN_OK;
}

kiln_status kiln_grad_where(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    kiln_var *c = in[0];
    for (int i = 1; i <= 2; i++) {
        if (!kiln_type_is_tensor(in[i]->type)) continue;
        kiln_var *g = i == 1 ? kiln_grad_mask(b, c, dy)
                             : kiln_build(b, KILN_OP_WHERE, 3, (kiln_var *[]){c, F(0.0), dy}, NULL);
        if (!(din[i] = kiln_grad_unbroadcast(b, g, in[i]))) return kiln_error_status(b->region->func->module->ctx);
    }
    return KILN_OK;
}

kiln_status kiln_grad_cast(kiln_builder *b, const kiln_node *n, kiln_var *const *in, kiln_var *y, kiln_var *dy, kiln_var **din) {
    if (!kiln_type_is_tensor(in[0]->type) || !kiln_dtype_is_float(in[0]->type->dtype) || !kiln_dtype_is_float(y->type->dtype))
        return KILN_OK; /* no gradient through integer or bool values */
    din[0] = kiln_build(b, KILN_OP_CAST, 1, &dy, "dtype=%s", kiln_dtype_name(in[0]->type->dtype));
    return din[0] ? KILN_OK : kiln_error_status(b->region->func->module->ctx);
}
