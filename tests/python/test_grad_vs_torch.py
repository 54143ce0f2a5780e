"""test_grad_vs_torch.py — kiln's gradients (eager autograd: backward replays the ops through the C
autodiff pass) against torch.autograd in float32, for every differentiable op of the op table
(the ops flagged F_DIFF in src/ops/ops.def, composites included) and the attribute variants that
change the gradient. loss = sum over float outputs of sum(output * fixed random weights)."""
import pathlib
import re
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln

OPS_DEF = pathlib.Path(__file__).resolve().parents[2] / "src" / "ops" / "ops.def"
STRUCTURAL = {"tuple", "get", "if", "while", "call"}


def differentiable_ops():
    """Names of the ops flagged F_DIFF in ops.def, less the structural ones and backward primitives."""
    ops = set()
    for line in OPS_DEF.read_text().splitlines():
        m = re.match(r"OP\(\s*\w+\s*,\s*(\w+)\s*,(?:[^,]*,){4}([^,]*),", line)
        if m and "F_DIFF" in m.group(2) and m.group(1) not in STRUCTURAL and "_backward" not in m.group(1):
            ops.add(m.group(1))
    return ops


# ---- random inputs (float32 unless said; positions of non-differentiability avoided) -----------
_RNG = np.random.default_rng(1234)


def rn(*shape, scale=1.0):
    return np.asarray(_RNG.standard_normal(shape) * scale, np.float32)


def pos(*shape, lo=0.5, hi=2.0):
    return _RNG.uniform(lo, hi, shape).astype(np.float32)


def away(*shape, points=(0.0,), gap=0.1):
    """Normal values at least `gap` from every point of `points` (kinks of abs, relu, clip...)."""
    x = rn(*shape).astype(np.float64)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 1.5
    return x.astype(np.float32)


def distinct(*shape):
    """Values at least 0.05 apart (no ties for max, min, sort, pooling)."""
    n = int(np.prod(shape))
    return ((_RNG.permutation(n) - n / 2) * 0.05 + _RNG.uniform(0, 0.01, n)).reshape(shape).astype(np.float32)


def ints(lo, hi, *shape):
    return _RNG.integers(lo, hi, shape).astype(np.int64)


# ---- cases ----------------------------------------------------------------------------------------
CASES = []  # (op, id, kiln fn, torch fn, inputs, rtol, atol)


def case(op, kfn, tfn, *inputs, rtol=1e-4, atol=1e-5, id=""):
    CASES.append(pytest.param(op, kfn, tfn, list(inputs), rtol, atol, id=f"{op}-{id or len(CASES)}"))


def dims(axes, ndim):
    return tuple(range(ndim)) if axes is None else tuple(axes)


# elementwise unary: (op, kiln fn, torch fn, input)
for name, tfn, x in [
        ("neg", torch.neg, rn(3, 4)), ("abs", torch.abs, away(3, 4)), ("sign", torch.sign, away(3, 4)),
        ("exp", torch.exp, rn(3, 4)), ("log", torch.log, pos(3, 4)), ("log2", torch.log2, pos(3, 4)),
        ("sqrt", torch.sqrt, pos(3, 4)), ("rsqrt", torch.rsqrt, pos(3, 4)),
        ("reciprocal", torch.reciprocal, pos(3, 4) * np.sign(rn(3, 4))), ("sin", torch.sin, rn(3, 4)),
        ("cos", torch.cos, rn(3, 4)), ("tanh", torch.tanh, rn(3, 4)), ("atan", torch.atan, rn(3, 4)),
        ("sigmoid", torch.sigmoid, rn(3, 4)), ("relu", torch.relu, away(3, 4)), ("erf", torch.erf, rn(3, 4)),
        ("copy", torch.clone, rn(3, 4)), ("silu", F.silu, rn(3, 4))]:
    case(name, getattr(kiln, name), tfn, x)
for lo, hi in ((-0.5, 0.7), (None, 0.3), (-0.2, None)):
    case("clip", lambda x, lo=lo, hi=hi: kiln.clip(x, lo, hi), lambda x, lo=lo, hi=hi: torch.clamp(x, lo, hi),
         away(4, 5, points=[p for p in (lo, hi) if p is not None]), id=f"{lo}-{hi}")
case("threshold", lambda x: kiln.threshold(x, 0.25, -2.5), lambda x: F.threshold(x, 0.25, -2.5),
     away(4, 5, points=(0.25,)))
for approx in ("none", "tanh"):
    case("gelu", lambda x, a=approx: kiln.gelu(x, a), lambda x, a=approx: F.gelu(x, approximate=a), rn(4, 5), id=approx)
for slope in (0.01, 0.2):
    case("leaky_relu", lambda x, s=slope: kiln.leaky_relu(x, s), lambda x, s=slope: F.leaky_relu(x, s), away(4, 5),
         id=str(slope))

# elementwise binary, with broadcasting on both sides and Python-scalar operands
for name, tfn in (("add", torch.add), ("subtract", torch.sub), ("multiply", torch.mul)):
    kfn = getattr(kiln, name)
    case(name, kfn, tfn, rn(3, 1, 4), rn(5, 1), id="bcast")
    case(name, lambda x, f=kfn: f(x, 2.5), lambda x, f=tfn: f(x, 2.5), rn(3, 4), id="scalar")
case("divide", kiln.divide, torch.div, rn(3, 1, 4), pos(5, 1), id="bcast")
case("divide", lambda y: kiln.divide(1.5, y), lambda y: torch.div(1.5, y), pos(3, 4), id="scalar-num")
_y = pos(3, 4, lo=0.7, hi=1.5) * np.where(rn(3, 4) > 0, 1, -1).astype(np.float32)
_q = ints(-3, 4, 3, 4) + _RNG.uniform(0.2, 0.8, (3, 4))  # x / y kept away from integers: mod is smooth there
case("mod", kiln.mod, torch.remainder, (_q * _y).astype(np.float32), _y)
case("power", kiln.power, torch.pow, pos(3, 4), rn(4))
case("power", lambda x: kiln.power(x, 3.0), lambda x: torch.pow(x, 3.0), rn(3, 4), id="scalar-exp")
case("power", lambda y: kiln.power(2.0, y), lambda y: torch.pow(2.0, y), rn(3, 4), id="scalar-base")
_a = distinct(3, 4)
for name, tfn in (("maximum", torch.maximum), ("minimum", torch.minimum)):
    case(name, getattr(kiln, name), tfn, _a, distinct(4)[None, :] + 0.012, id="bcast")
case("where", kiln.where, torch.where, rn(3, 4) > 0, rn(3, 4), rn(4))

# reductions and scans
for axes, keep in ((None, False), ((1,), False), ((0, 2), True), ((-1,), True)):
    tag = f"{axes}-{keep}"
    case("sum", lambda x, a=axes, k=keep: kiln.sum(x, a, k),
         lambda x, a=axes, k=keep: torch.sum(x, dims(a, 3), keepdim=k), rn(2, 3, 4), id=tag)
    case("mean", lambda x, a=axes, k=keep: kiln.mean(x, a, k),
         lambda x, a=axes, k=keep: torch.mean(x, dims(a, 3), keepdim=k), rn(2, 3, 4), id=tag)
    case("l2norm", lambda x, a=axes, k=keep: kiln.l2norm(x, a, k),
         lambda x, a=axes, k=keep: torch.linalg.vector_norm(x, dim=dims(a, 3), keepdim=k), rn(2, 3, 4), id=tag)
    case("logsumexp", lambda x, a=axes, k=keep: kiln.logsumexp(x, a, k),
         lambda x, a=axes, k=keep: torch.logsumexp(x, dims(a, 3), keepdim=k), rn(2, 3, 4), id=tag)
    for name, tfn in (("max", torch.amax), ("min", torch.amin)):
        case(name, lambda x, a=axes, k=keep, n=name: getattr(kiln, n)(x, a, k),
             lambda x, a=axes, k=keep, f=tfn: f(x, dims(a, 3), keepdim=k), distinct(2, 3, 4), id=tag)
    for corr in (0, 1):
        case("variance", lambda x, a=axes, k=keep, c=corr: kiln.var(x, a, k, ddof=c),
             lambda x, a=axes, k=keep, c=corr: torch.var(x, dims(a, 3), correction=c, keepdim=k), rn(2, 3, 4),
             id=f"{tag}-{corr}")
_p = pos(2, 3, 4, lo=0.6, hi=1.4) * np.where(rn(2, 3, 4) > 0, 1, -1).astype(np.float32)
case("prod", kiln.prod, torch.prod, _p, id="all")
case("prod", lambda x: kiln.prod(x, 1, keepdims=True), lambda x: torch.prod(x, 1, keepdim=True), _p, id="axis1-keep")
case("prod", lambda x: kiln.prod(x, (0, 2)), lambda x: torch.prod(torch.prod(x, 2), 0), _p, id="axes02")


def t_cumsum(x, axis, exclusive, reverse):
    y = x.flip(axis) if reverse else x
    c = torch.cumsum(y, axis) - (y if exclusive else 0)
    return c.flip(axis) if reverse else c


for axis in (0, -1):
    for ex in (False, True):
        for rev in (False, True):
            case("cumsum", lambda x, a=axis, e=ex, r=rev: kiln.cumsum(x, a, exclusive=e, reverse=r),
                 lambda x, a=axis, e=ex, r=rev: t_cumsum(x, a, e, r), rn(3, 5), id=f"{axis}-{ex}-{rev}")
case("cumsum", kiln.cumsum, lambda x: torch.cumsum(x.reshape(-1), 0), rn(3, 4), id="flat")
case("sum_to", lambda x: kiln.sum_to(x, (3, 1)), lambda x: x.sum(0).sum(-1, keepdim=True), rn(2, 3, 4))
case("sum_to", lambda x: kiln.sum_to(x, (1, 4)), lambda x: x.sum((0, 1)).reshape(1, 4), rn(2, 3, 4), id="lead")

# matmul family
for ta in (False, True):
    for tb in (False, True):
        sa, sb = ((4, 3) if ta else (3, 4)), ((5, 4) if tb else (4, 5))
        case("matmul", lambda a, b, x=ta, y=tb: kiln.matmul(a, b, x, y),
             lambda a, b, x=ta, y=tb: (a.mT if x else a) @ (b.mT if y else b), rn(*sa), rn(*sb), id=f"{ta}-{tb}")
        case("batch_matmul", lambda a, b, x=ta, y=tb: kiln.batch_matmul(a, b, x, y),
             lambda a, b, x=ta, y=tb: (a.mT if x else a) @ (b.mT if y else b), rn(2, *sa), rn(2, *sb),
             id=f"{ta}-{tb}")
for sa, sb in (((2, 1, 3, 4), (3, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4,))):
    case("matmul", kiln.matmul, torch.matmul, rn(*sa), rn(*sb), id=f"{sa}@{sb}")
case("dense", kiln.dense, F.linear, rn(3, 4), rn(5, 4), rn(5), id="bias")
case("dense", kiln.dense, F.linear, rn(2, 3, 4), rn(5, 4), id="nobias-3d")
case("gemm_epilogue", lambda x, w, b: kiln._core.apply("gemm_epilogue", [x, w, b], {"epilogue": "gelu_aux", "transpose_b": True}),
     lambda x, w, b: (F.gelu(F.linear(x, w, b), approximate="tanh"), F.linear(x, w, b)), rn(2, 3, 4), rn(5, 4), rn(5),
     id="gelu_aux")
case("gemm_epilogue", lambda g, x: kiln._core.apply("gemm_epilogue", [g, x], {"epilogue": "bgrad", "transpose_a": True}),
     lambda g, x: (g.T @ x, g.sum(0)), rn(6, 5), rn(6, 7), id="bgrad")
case("bias_add", kiln.bias_add, lambda x, b: x + b.reshape(3, 1), rn(2, 3, 4), rn(3))
case("bias_add", lambda x, b: kiln.bias_add(x, b, axis=-1), lambda x, b: x + b, rn(2, 3, 4), rn(4), id="last")

# convolution: x shape, weight shape, stride, padding, dilation, groups
for xs, ws, s, p, d, g in [((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1), ((1, 2, 8, 7), (3, 2, 3, 2), 2, 1, 1, 1),
                           ((1, 4, 7, 7), (6, 2, 3, 3), 1, (1, 2), 2, 2), ((2, 3, 6, 6), (3, 1, 3, 3), (2, 1), 1, 1, 3)]:
    case("conv2d", lambda x, w, s=s, p=p, d=d, g=g: kiln.conv2d(x, w, s, p, d, g),
         lambda x, w, s=s, p=p, d=d, g=g: F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g),
         rn(*xs), rn(*ws), id=f"s{s}-p{p}-d{d}-g{g}")
case("conv2d", lambda x, w: kiln.conv2d(x, w, padding=(1, 0, 2, 1)),  # [top, left, bottom, right]
     lambda x, w: F.conv2d(F.pad(x, (0, 1, 1, 2)), w), rn(1, 2, 5, 6), rn(3, 2, 3, 3), id="asym-pad")
# conv2d_transpose: x shape, weight [C_in, C_out / groups, kh, kw], stride, padding, output_padding, dilation, groups
for xs, ws, s, p, op, d, g in [((2, 3, 4, 5), (3, 2, 3, 3), 1, 0, 0, 1, 1), ((1, 2, 4, 4), (2, 3, 3, 3), 2, 1, 1, 1, 1),
                               ((1, 4, 3, 4), (4, 1, 2, 3), (2, 3), (0, 1), (1, 2), 1, 2),
                               ((1, 2, 3, 3), (2, 2, 3, 3), 1, 1, 0, 2, 1)]:
    case("conv2d_transpose", lambda x, w, s=s, p=p, op=op, d=d, g=g: kiln.conv2d_transpose(x, w, s, p, op, d, g),
         lambda x, w, s=s, p=p, op=op, d=d, g=g: F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op,
                                                                    dilation=d, groups=g),
         rn(*xs), rn(*ws), id=f"s{s}-p{p}-op{op}-d{d}-g{g}")

# pooling: max (kernel, stride, padding, dilation, ceil_mode) and avg (kernel, stride, padding, ceil, count_include_pad)
for k, s, p, d, c in [(2, None, 0, 1, False), (3, 2, 1, 1, False), (2, 1, 0, 2, False), (3, 2, 1, 1, True),
                      ((2, 3), (1, 2), (1, 1), 1, False)]:
    case("max_pool2d", lambda x, k=k, s=s, p=p, d=d, c=c: kiln.max_pool2d(x, k, s, p, d, c),
         lambda x, k=k, s=s, p=p, d=d, c=c: F.max_pool2d(x, k, s if s is not None else k, p, d, c),
         distinct(2, 2, 7, 6), id=f"k{k}-s{s}-p{p}-d{d}-c{c}")
for k, s, p, c, cip in [(2, None, 0, False, True), (3, 2, 1, False, True), (3, 2, 1, False, False),
                        (3, 2, 1, True, True), (3, 2, 1, True, False), ((2, 3), (1, 2), (1, 1), False, False)]:
    case("avg_pool2d", lambda x, k=k, s=s, p=p, c=c, cip=cip: kiln.avg_pool2d(x, k, s, p, c, cip),
         lambda x, k=k, s=s, p=p, c=c, cip=cip: F.avg_pool2d(x, k, s if s is not None else k, p, c, cip),
         rn(2, 2, 7, 6), id=f"k{k}-s{s}-p{p}-c{c}-cip{cip}")
for size in ((3, 4), (1, 1), (7, 6), (4, 5)):
    case("adaptive_avg_pool2d", lambda x, o=size: kiln.adaptive_avg_pool2d(x, o),
         lambda x, o=size: F.adaptive_avg_pool2d(x, o), rn(2, 3, 7, 6), id=str(size))
    case("adaptive_max_pool2d", lambda x, o=size: kiln.adaptive_max_pool2d(x, o),
         lambda x, o=size: F.adaptive_max_pool2d(x, o), distinct(2, 3, 7, 6), id=str(size))


# normalisation, softmax
def t_batch_norm_train(x, g, b, axis, eps):
    """(y, batch mean, biased batch variance) over every dim but `axis`."""
    ds = [d for d in range(x.ndim) if d != axis % x.ndim]
    view = [-1 if d == axis % x.ndim else 1 for d in range(x.ndim)]
    m, v = x.mean(ds), x.var(ds, correction=0)
    return (x - m.reshape(view)) / torch.sqrt(v.reshape(view) + eps) * g.reshape(view) + b.reshape(view), m, v


def t_batch_norm_infer(x, g, b, m, v, axis, eps):
    view = [-1 if d == axis % x.ndim else 1 for d in range(x.ndim)]
    return (x - m.reshape(view)) / torch.sqrt(v.reshape(view) + eps) * g.reshape(view) + b.reshape(view)


for shape, axis in (((4, 3, 2, 2), 1), ((3, 5, 2), -1), ((6, 3), 1)):
    ch = shape[axis]
    case("batch_norm_train", lambda x, g, b, a=axis: kiln.batch_norm_train(x, g, b, axis=a, eps=1e-3),
         lambda x, g, b, a=axis: t_batch_norm_train(x, g, b, a, 1e-3), rn(*shape), rn(ch), rn(ch),
         id=f"{shape}-{axis}")
    case("batch_norm_infer", lambda x, g, b, m, v, a=axis: kiln.batch_norm_infer(x, g, b, m, v, axis=a, eps=1e-3),
         lambda x, g, b, m, v, a=axis: t_batch_norm_infer(x, g, b, m, v, a, 1e-3),
         rn(*shape), rn(ch), rn(ch), rn(ch), pos(ch), id=f"{shape}-{axis}")
for shape, axis in (((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), -2)):
    ns = shape[axis:]
    for affine in (0, 1, 2):
        case("layer_norm", lambda x, *gb, a=axis: kiln.layer_norm(x, *gb, axis=a, eps=1e-4),
             lambda x, *gb, ns=ns: F.layer_norm(x, ns, *gb, eps=1e-4), rn(*shape), *[rn(*ns) for _ in range(affine)],
             id=f"{shape}-{axis}-{affine}")
for name, tfn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    for shape, axis in (((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1)):
        case(name, lambda x, a=axis, n=name: getattr(kiln, n)(x, a), lambda x, a=axis, f=tfn: f(x, a), rn(*shape),
             id=f"{shape}-{axis}")

# losses: every reduction, ignored targets, N-d scores
for red in ("mean", "sum", "none"):
    for sx, st in (((4, 5), (4,)), ((2, 3, 4), (2, 4)), ((5,), ())):
        t = ints(0, sx[1] if len(sx) > 1 else sx[0], *st)
        if t.size > 1:
            t.reshape(-1)[0] = -100
        case("nll_loss", lambda a, b, r=red: kiln.nll_loss(a, b, reduction=r),
             lambda a, b, r=red: F.nll_loss(a, b, reduction=r), rn(*sx), t, id=f"{red}-{sx}")
        for ls in (0.0, 0.1):
            case("cross_entropy", lambda a, b, r=red, ls=ls: kiln.cross_entropy(a, b, reduction=r, label_smoothing=ls),
                 lambda a, b, r=red, ls=ls: F.cross_entropy(a, b, reduction=r, label_smoothing=ls), rn(*sx), t,
                 id=f"{red}-{sx}-{ls}")
    case("mse_loss", lambda a, b, r=red: kiln.mse_loss(a, b, reduction=r),
         lambda a, b, r=red: F.mse_loss(a, b, reduction=r), rn(3, 4), rn(3, 4), id=red)
    for beta in (1.0, 0.5):
        _d = away(3, 4, points=(-beta, beta), gap=0.05)
        _t = rn(3, 4)
        case("smooth_l1_loss", lambda a, b, r=red, be=beta: kiln.smooth_l1_loss(a, b, reduction=r, beta=be),
             lambda a, b, r=red, be=beta: F.smooth_l1_loss(a, b, reduction=r, beta=be), _t + _d, _t, id=f"{red}-{beta}")
case("nll_loss", lambda a, b: kiln.nll_loss(a, b, ignore_index=2), lambda a, b: F.nll_loss(a, b, ignore_index=2),
     rn(6, 5), np.array([2, 0, 2, 4, 1, 3]), id="ignore2")
_probs = torch.softmax(torch.from_numpy(rn(3, 4)), 1).numpy()
case("cross_entropy", kiln.cross_entropy, F.cross_entropy, rn(3, 4), _probs, id="prob-target")

# shape, layout and indexing
case("reshape", lambda x: kiln.reshape(x, (3, -1)), lambda x: x.reshape(3, -1), rn(2, 3, 2))
case("transpose", kiln.transpose, lambda x: x.permute(2, 1, 0), rn(2, 3, 4), id="rev")
case("transpose", lambda x: kiln.transpose(x, (1, 2, 0)), lambda x: x.permute(1, 2, 0), rn(2, 3, 4), id="perm")
case("expand_dims", lambda x: kiln.expand_dims(x, 1), lambda x: x.unsqueeze(1), rn(2, 3))
case("squeeze", kiln.squeeze, lambda x: x.squeeze(), rn(1, 3, 1, 2), id="all")
case("squeeze", lambda x: kiln.squeeze(x, -2), lambda x: x.squeeze(-2), rn(1, 3, 1, 2), id="axis")
case("batch_flatten", kiln.batch_flatten, lambda x: x.flatten(1), rn(2, 3, 4))
case("swap_axis", lambda x: kiln.swapaxes(x, 0, -1), lambda x: x.swapaxes(0, -1), rn(2, 3, 4))
case("broadcast_to", lambda x: kiln.broadcast_to(x, (2, 3, 4)), lambda x: x.broadcast_to(2, 3, 4), rn(3, 1))
case("concatenate", lambda *a: kiln.concatenate(a, axis=1), lambda *a: torch.cat(a, 1), rn(2, 1, 3), rn(2, 4, 3),
     rn(2, 2, 3))
case("stack", lambda *a: kiln.stack(a, axis=1), lambda *a: torch.stack(a, 1), rn(2, 3), rn(2, 3), rn(2, 3))
case("split", lambda x: kiln.split(x, 3, axis=1), lambda x: torch.split(x, 2, 1), rn(2, 6, 3), id="sections")
case("split", lambda x: kiln.split(x, [1, 4], axis=-1), lambda x: torch.split(x, [1, 3, 2], -1), rn(3, 6), id="sizes")


def np_index(fn, n):
    """The positions a numpy slice fn picks along an axis of n elements, as a torch index."""
    return torch.from_numpy(fn(np.arange(n)).copy())


case("strided_slice", lambda x: kiln.strided_slice(x, [1, 0], [3, 5], [1, 2]), lambda x: x[1:3, 0:5:2], rn(4, 5))
case("strided_slice", lambda x: kiln.strided_slice(x, [-1], [-10], [-2], axes=[1]),
     lambda x: x[:, np_index(lambda i: i[-1:-10:-2], 6)], rn(3, 6), id="neg-step")
for axis, mode in ((None, "raise"), (1, "raise"), (1, "clip"), (0, "wrap")):
    _x = rn(3, 4)
    n = _x.size if axis is None else _x.shape[axis]
    _i = ints(-n, n, 2, 3) if mode == "raise" else ints(-n - 3, 2 * n, 2, 3)
    _norm = torch.from_numpy(np.take(np.arange(n), _i, mode=mode))
    tfn = (lambda x, i, j=_norm: x.reshape(-1)[j]) if axis is None else \
          (lambda x, i, j=_norm, a=axis: torch.movedim(torch.movedim(x, a, 0)[j], (0, 1), (a, a + 1)))
    case("take", lambda x, i, a=axis, m=mode: kiln.take(x, i, axis=a, mode=m), tfn, _x, _i, id=f"{axis}-{mode}")
case("embedding", kiln.embedding, lambda w, i: F.embedding(i, w), rn(5, 3), ints(0, 5, 2, 4))
for axis in (0, 1):
    case("gather", lambda x, i, a=axis: kiln.gather(x, i, a), lambda x, i, a=axis: torch.gather(x, a, i),
         rn(3, 4), ints(0, 3, 5, 4) if axis == 0 else ints(0, 4, 3, 6), id=str(axis))


def t_gather_nd(x, idx, b):
    """ONNX GatherND by advanced indexing: batch dims index themselves, then idx's coordinates."""
    lead = idx.shape[:-1]
    batch = tuple(torch.arange(lead[d]).reshape([-1 if e == d else 1 for e in range(len(lead))]) for d in range(b))
    return x[batch + tuple(idx[..., j] for j in range(idx.shape[-1]))]


for xs, ishape, b in (((3, 4), (5, 2), 0), ((3, 4), (5, 1), 0), ((2, 3, 4), (2, 3, 1), 1), ((2, 3, 4), (2, 2), 1)):
    _idx = np.stack([ints(0, xs[b + j], *ishape[:-1]) for j in range(ishape[-1])], -1)
    case("gather_nd", lambda x, i, b=b: kiln.gather_nd(x, i, batch_dims=b), lambda x, i, b=b: t_gather_nd(x, i, b),
         rn(*xs), _idx, id=f"{xs}-{ishape}-{b}")
for axis in (0, 1):
    _perm = np.argsort(_RNG.random((4, 5)), axis=axis)  # distinct positions per line: no write-order issue
    _idx = _perm[:3] if axis == 0 else _perm[:, :3]
    case("scatter", lambda x, i, s, a=axis: kiln.scatter(x, i, s, a), lambda x, i, s, a=axis: torch.scatter(x, a, i, s),
         rn(4, 5), _idx, rn(*_idx.shape), id=f"none-{axis}")
    case("scatter", lambda x, i, s, a=axis: kiln.scatter(x, i, s, a, reduce="add"),
         lambda x, i, s, a=axis: torch.scatter_add(x, a, i, s), rn(4, 5), ints(0, 4 if axis == 0 else 5, 3, 5), rn(3, 5),
         id=f"add-{axis}")
for mode, tmode in (("constant", "constant"), ("reflect", "reflect"), ("edge", "replicate")):
    case("pad", lambda x, m=mode: kiln.pad(x, ((0, 0), (0, 0), (1, 2), (2, 1)), mode=m, constant_values=2.5),
         lambda x, m=tmode: F.pad(x, (2, 1, 1, 2), mode=m, **({"value": 2.5} if m == "constant" else {})),
         rn(1, 2, 4, 5), id=mode)
case("pad", lambda x: kiln.pad(x, ((1, 0), (0, 2))), lambda x: F.pad(x, (0, 2, 1, 0)), rn(3, 4), id="2d")
case("repeat", lambda x: kiln.repeat(x, 2), lambda x: torch.repeat_interleave(x.reshape(-1), 2), rn(2, 3), id="flat")
case("repeat", lambda x: kiln.repeat(x, 3, axis=1), lambda x: torch.repeat_interleave(x, 3, 1), rn(2, 2, 3), id="axis")
case("tile", lambda x: kiln.tile(x, (2, 1, 3)), lambda x: torch.tile(x, (2, 1, 3)), rn(2, 3))
case("reverse", lambda x: kiln.flip(x, (0, 2)), lambda x: torch.flip(x, (0, 2)), rn(2, 3, 4))
for size in ((6, 8), (3, 2), (5, 7)):
    case("resize2d", lambda x, s=size: kiln.resize2d(x, s), lambda x, s=size: F.interpolate(x, size=s, mode="nearest"),
         rn(1, 2, 4, 5), id=f"nearest-{size}")
    for ac in (False, True):
        case("resize2d", lambda x, s=size, ac=ac: kiln.resize2d(x, s, mode="bilinear", align_corners=ac),
             lambda x, s=size, ac=ac: F.interpolate(x, size=s, mode="bilinear", align_corners=ac),
             rn(1, 2, 4, 5), id=f"bilinear-{size}-{ac}")
case("cast", lambda x: kiln.cast(x, "float64"), lambda x: x.double(), rn(3, 4), id="f32-f64")
case("cast", lambda x: kiln.cast(x, "float32"), lambda x: x.float(), rn(3, 4).astype(np.float64), id="f64-f32")

# random, sorting
_key = 7
_mask = kiln.dropout(kiln.ones((4, 5)), _key, rate=0.3).numpy()  # kiln's mask, already scaled by 1 / (1 - rate)
case("dropout", lambda x: kiln.dropout(x, _key, rate=0.3), lambda x: x * torch.from_numpy(_mask), rn(4, 5))
for axis, desc in ((-1, False), (0, True)):
    case("sort", lambda x, a=axis, d=desc: kiln.sort(x, a, descending=d),
         lambda x, a=axis, d=desc: torch.sort(x, a, descending=d).values, distinct(3, 5), id=f"{axis}-{desc}")
for k, axis, largest in ((2, -1, True), (3, 0, False), (5, 1, True)):
    case("topk", lambda x, k=k, a=axis, lg=largest: kiln.topk(x, k, axis=a, largest=lg),
         lambda x, k=k, a=axis, lg=largest: tuple(torch.topk(x, k, a, largest=lg)), distinct(4, 5),
         id=f"{k}-{axis}-{largest}")


# edge cases: 0-d and empty tensors, scalar operands, windows larger or sparser than the input
case("exp", kiln.exp, torch.exp, rn(), id="0d")
case("add", kiln.add, torch.add, rn(), rn(2, 3), id="0d-bcast")
case("subtract", lambda x: kiln.subtract(1.5, x), lambda x: torch.sub(1.5, x), rn(3, 4), id="scalar-first")
case("divide", lambda x: kiln.divide(x, 4.0), lambda x: torch.div(x, 4.0), rn(3, 4), id="scalar-den")
case("maximum", lambda x: kiln.maximum(x, 0.25), lambda x: torch.clamp_min(x, 0.25), away(3, 4, points=(0.25,)),
     id="scalar")
case("where", lambda c, x: kiln.where(c, x, 0.0), lambda c, x: torch.where(c, x, 0.0), rn(4) > 0, rn(3, 4),
     id="scalar-bcast-cond")
case("sum", kiln.sum, torch.sum, rn(0, 3), id="empty")
case("sum", lambda x: kiln.sum(x, 0), lambda x: torch.sum(x, 0), rn(0, 3), id="empty-axis")
case("concatenate", lambda *a: kiln.concatenate(a, axis=0), lambda *a: torch.cat(a, 0), rn(0, 3), rn(2, 3), id="empty")
case("split", lambda x: kiln.split(x, [0, 2], axis=0), lambda x: torch.split(x, [0, 2, 3], 0), rn(5, 2), id="empty")
case("take", lambda x: kiln.take(x, 1, axis=0), lambda x: x[1], rn(3, 2), id="scalar-index")
case("gather_nd", lambda x, i: kiln.gather_nd(x, i), lambda x, i: x[i[:, 0], i[:, 1]], rn(3, 4),
     np.array([[0, 1], [2, 3], [0, 1]]), id="repeated")
case("cumsum", lambda x: kiln.cumsum(x, 1, reverse=True), lambda x: t_cumsum(x, 1, False, True), rn(2, 4, 3), id="mid")
case("softmax", lambda x: kiln.softmax(x, 1), lambda x: torch.softmax(x, 1), rn(2, 3, 2, 2), id="4d")
case("attention", kiln.attention, F.scaled_dot_product_attention, rn(2, 5, 8), rn(2, 7, 8), rn(2, 7, 4))
case("attention", lambda q, k, v: kiln.attention(q, k, v, causal=True, scale=0.3),
     lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3), rn(2, 2, 6, 4), rn(2, 2, 5, 4),
     rn(2, 2, 5, 4), id="causal")
case("attention_forward", lambda q, k, v: kiln.attention_forward(q, k, v, causal=True),  # (out, log-sum-exp)
     lambda q, k, v: (F.scaled_dot_product_attention(q, k, v, is_causal=True),
                      torch.logsumexp((q @ k.mT / 2).masked_fill(torch.ones(4, 5, dtype=torch.bool).triu(1), float("-inf")), -1)),
     rn(3, 4, 4), rn(3, 5, 4), rn(3, 5, 2), id="lse")
case("layer_norm", lambda x, g: kiln.layer_norm(x, g, axis=0), lambda x, g: F.layer_norm(x, (3, 4), g), rn(3, 4),
     rn(3, 4), id="axis0")
case("l2norm", lambda x: kiln.l2norm(x, 1, True), lambda x: torch.linalg.vector_norm(x, dim=1, keepdim=True),
     rn(3, 1, 2), id="unit-axis")
case("max", lambda x: kiln.max(x, 0), lambda x: torch.amax(x, 0), distinct(1, 4), id="unit-axis")
case("prod", lambda x: kiln.prod(x, -1), lambda x: torch.prod(x, -1), _p[0], id="neg-axis")
case("matmul", lambda a, b: kiln.matmul(a, b, True, True), lambda a, b: a.mT @ b.mT, rn(2, 1, 4, 3), rn(3, 5, 4),
     id="bcast-tt")
case("dense", kiln.dense, F.linear, rn(4), rn(3, 4), rn(3), id="1d")
case("bias_add", kiln.bias_add, lambda x, b: x + b.reshape(3, 1, 1), rn(2, 3, 2, 2), rn(3), id="nchw")
case("conv2d", lambda x, w: kiln.conv2d(x, w, stride=3), lambda x, w: F.conv2d(x, w, stride=3), rn(1, 2, 8, 7),
     rn(2, 2, 2, 2), id="stride-gt-kernel")
case("conv2d", lambda x, w: kiln.conv2d(x, w, padding=3), lambda x, w: F.conv2d(x, w, padding=3), rn(1, 1, 3, 3),
     rn(2, 1, 2, 2), id="pad-gt-kernel")
case("conv2d_transpose", lambda x, w: kiln.conv2d_transpose(x, w, stride=3),
     lambda x, w: F.conv_transpose2d(x, w, stride=3), rn(1, 2, 3, 3), rn(2, 2, 2, 2), id="stride-gt-kernel")
case("max_pool2d", lambda x: kiln.max_pool2d(x, 2, 3), lambda x: F.max_pool2d(x, 2, 3), distinct(1, 2, 8, 7),
     id="stride-gt-kernel")
case("max_pool2d", lambda x: kiln.max_pool2d(x, 3, 2, 1, 2, True), lambda x: F.max_pool2d(x, 3, 2, 1, 2, True),
     distinct(1, 2, 9, 8), id="dilated-ceil")
case("avg_pool2d", lambda x: kiln.avg_pool2d(x, 2, 3), lambda x: F.avg_pool2d(x, 2, 3), rn(1, 2, 8, 7),
     id="stride-gt-kernel")
case("adaptive_avg_pool2d", lambda x: kiln.adaptive_avg_pool2d(x, (5, 4)), lambda x: F.adaptive_avg_pool2d(x, (5, 4)),
     rn(1, 2, 3, 2), id="upsample")
case("adaptive_max_pool2d", lambda x: kiln.adaptive_max_pool2d(x, (5, 4)), lambda x: F.adaptive_max_pool2d(x, (5, 4)),
     distinct(1, 2, 3, 2), id="upsample")
for ac in (False, True):
    case("resize2d", lambda x, ac=ac: kiln.resize2d(x, 1, mode="bilinear", align_corners=ac),
         lambda x, ac=ac: F.interpolate(x, size=1, mode="bilinear", align_corners=ac), rn(1, 2, 4, 5), id=f"to1-{ac}")
    case("resize2d", lambda x, ac=ac: kiln.resize2d(x, (3, 4), mode="bilinear", align_corners=ac),
         lambda x, ac=ac: F.interpolate(x, size=(3, 4), mode="bilinear", align_corners=ac), rn(1, 2, 1, 1),
         id=f"from1-{ac}")
case("pad", lambda x: kiln.pad(x, ((0, 0), (3, 3)), mode="reflect"), lambda x: F.pad(x, (3, 3), mode="reflect"),
     rn(2, 4), id="reflect-wide")
case("pad", lambda x: kiln.pad(x, ((0, 0), (0, 0), (3, 0), (0, 4)), mode="edge"),
     lambda x: F.pad(x, (0, 4, 3, 0), mode="replicate"), rn(1, 1, 2, 3), id="edge-wide")
case("strided_slice", lambda x: kiln.strided_slice(x, [0, 1], [10, 10], [2, 3], axes=[0, 2]),
     lambda x: x[0::2, :, 1::3], rn(5, 2, 7), id="axes-overrun")
case("tile", lambda x: kiln.tile(x, (3,)), lambda x: torch.tile(x, (3,)), rn(2, 3), id="short-reps")
case("repeat", lambda x: kiln.repeat(x, 2, axis=-1), lambda x: torch.repeat_interleave(x, 2, -1), rn(2, 3), id="neg")
case("reverse", lambda x: kiln.flip(x, -1), lambda x: torch.flip(x, (-1,)), rn(2, 3), id="neg")
case("squeeze", lambda x: kiln.squeeze(x, (0, 2)), lambda x: x.squeeze((0, 2)), rn(1, 3, 1, 2), id="axes")
case("transpose", lambda x: kiln.transpose(x, (-1, 0, 1)), lambda x: x.permute(2, 0, 1), rn(2, 3, 4), id="neg")
case("sort", lambda x: kiln.sort(x, 1), lambda x: torch.sort(x, 1).values, distinct(2, 4, 3), id="3d-mid")
case("cross_entropy", kiln.cross_entropy, F.cross_entropy, rn(2, 3, 4),
     torch.softmax(torch.from_numpy(rn(2, 3, 4)), 1).numpy(), id="prob-target-nd")
case("nll_loss", kiln.nll_loss, F.nll_loss, rn(3, 4), np.array([-100, 2, -100]), id="mostly-ignored")
case("batch_norm_train", lambda x, g, b: kiln.batch_norm_train(x, g, b, axis=0),
     lambda x, g, b: t_batch_norm_train(x, g, b, 0, 1e-5), rn(3, 5), rn(3), rn(3), id="axis0")

# large magnitudes: saturating functions and the max-shifted softmax family stay finite
for name, tfn in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("erf", torch.erf), ("silu", F.silu)):
    case(name, getattr(kiln, name), tfn, rn(3, 4, scale=40.0), id="large")
case("gelu", lambda x: kiln.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh"), rn(3, 4, scale=40.0), id="large")
case("softmax", kiln.softmax, lambda x: torch.softmax(x, -1), rn(3, 4, scale=300.0), id="large")
case("log_softmax", kiln.log_softmax, lambda x: torch.log_softmax(x, -1), rn(3, 4, scale=300.0), id="large")
case("logsumexp", lambda x: kiln.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1), rn(3, 4, scale=300.0), id="large")
case("cross_entropy", lambda a, b: kiln.cross_entropy(a, b, label_smoothing=0.1),
     lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1), rn(3, 4, scale=300.0), ints(0, 4, 3), id="large")

# mixed dtypes: each gradient comes back in its input's dtype (f32 operand of an f64 result)
for name, tfn, y in (("add", torch.add, rn(4).astype(np.float64)), ("multiply", torch.mul, rn(3, 1).astype(np.float64)),
                     ("divide", torch.div, pos(4).astype(np.float64)), ("maximum", torch.maximum, distinct(4) + 0.012),
                     ("power", torch.pow, rn(4).astype(np.float64)), ("multiply", torch.mul, rn(3, 4).astype(np.float16))):
    case(name, getattr(kiln, name), tfn, pos(3, 4) if name == "power" else distinct(3, 4).astype(np.float16 if
         y.dtype == np.float16 else np.float32), y.astype(np.float64) if name == "maximum" else y, id=f"mixed-{y.dtype}")
case("add", kiln.add, torch.add, rn(3, 4), ints(0, 5, 3, 4), id="mixed-int")
case("where", kiln.where, torch.where, rn(3, 4) > 0, rn(3, 4), rn(4).astype(np.float64), id="mixed")
case("mse_loss", kiln.mse_loss, F.mse_loss, rn(3, 4), rn(3, 4).astype(np.float64), id="mixed")
for dt in ("float16", "bfloat16"):
    case("cast", lambda x, d=dt: kiln.cast(x, d), lambda x, d=dt: x.to(getattr(torch, d)), rn(3, 4), id=f"f32-{dt}")

# one tensor used twice by an op: both adjoints accumulate
case("multiply", lambda x: kiln.multiply(x, x), lambda x: x * x, rn(3, 4), id="same")
case("matmul", lambda x: kiln.matmul(x, x, transpose_b=True), lambda x: x @ x.mT, rn(3, 4), id="same")
case("concatenate", lambda x: kiln.concatenate([x, x], axis=1), lambda x: torch.cat([x, x], 1), rn(3, 4), id="same")
case("where", lambda c, x: kiln.where(c, x, kiln.exp(x)), lambda c, x: torch.where(c, x, x.exp()), rn(3, 4) > 0,
     rn(3, 4), id="same")

# exact zeros where the op stays differentiable (regressions: prod's gradient was y / x, power's
# base gradient 0 * x^-1 at x == 0 with a zero exponent)
_z = np.array([[0, 2, 3, 1.5], [0, 0, 2, 1], [1, -2, 3, 0.5]], np.float32)
case("prod", lambda x: kiln.prod(x, 1), lambda x: torch.prod(x, 1), _z, id="zeros-axis")
case("prod", lambda x: kiln.prod(x, 0, keepdims=True), lambda x: torch.prod(x, 0, keepdim=True), _z, id="zeros-axis0")
case("prod", kiln.prod, torch.prod, _z[0], id="one-zero")
case("prod", kiln.prod, torch.prod, _z, id="zeros-all")
case("power", lambda x: kiln.power(x, 0.0), lambda x: torch.pow(x, 0.0), _z, id="zero-exp")
case("power", kiln.power, torch.pow, np.abs(_z), np.array([0, 0.5, 2, 0], np.float32), id="zero-base-exp")

# ---- the check --------------------------------------------------------------------------------
def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("op,kfn,tfn,inputs,rtol,atol", CASES)
def test_grad_vs_torch(request, op, kfn, tfn, inputs, rtol, atol):
    floats = [a.dtype.kind == "f" for a in inputs]
    kin = [kiln.array(a).requires_grad_() if f else kiln.array(a) for a, f in zip(inputs, floats)]
    tin = [torch.from_numpy(a.copy()).requires_grad_() if f else torch.from_numpy(a.copy())
           for a, f in zip(inputs, floats)]
    kouts, touts = _outputs(kfn(*kin)), _outputs(tfn(*tin))
    assert len(kouts) == len(touts)
    seed = zlib.crc32(request.node.nodeid.encode())
    kloss, tloss = None, None
    for j, (ko, to) in enumerate(zip(kouts, touts)):
        np.testing.assert_allclose(ko.numpy().astype(np.float64), to.detach().double().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{op} forward output {j}")
        if not to.dtype.is_floating_point:
            continue
        w = np.random.default_rng(seed + j).standard_normal(to.shape).astype(np.float32)
        w = torch.from_numpy(w).to(to.dtype)  # rounded to the output's dtype, identically on both sides
        kl, tl = kiln.sum(ko * kiln.array(w.double().numpy()).astype(ko.dtype)), torch.sum(to * w)
        kloss, tloss = (kl, tl) if kloss is None else (kloss + kl, tloss + tl)
    kloss.backward()
    tloss.backward()
    for i, (k, t, f) in enumerate(zip(kin, tin, floats)):
        if not f:
            continue
        want = t.grad.numpy() if t.grad is not None else np.zeros(inputs[i].shape, inputs[i].dtype)
        got = k.grad.numpy() if k.grad is not None else np.zeros_like(want)
        assert got.shape == want.shape and got.dtype == want.dtype, f"{op}: grad of input {i} {got.shape} {got.dtype}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{op}: gradient of input {i}")


def test_every_differentiable_op_is_covered():
    table = differentiable_ops()
    covered = {p.values[0] for p in CASES}
    assert len(table) > 60
    assert table - covered == set(), f"differentiable ops without a gradient case: {sorted(table - covered)}"
    assert covered - table == set(), f"cases naming ops that are not differentiable: {sorted(covered - table)}"
