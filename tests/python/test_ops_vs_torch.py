"""test_ops_vs_torch.py — every op of kiln's op table through the Python API against torch (the
reference; numpy or a hand-written numpy reference where torch lacks the op): values, dtypes and
shapes over float32/float64, int and bool inputs, float16/bfloat16 against a float32 reference,
0-d, size-0, size-1 and broadcast shapes. Also Python operators, indexing and error reporting."""
import operator
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln._lib import lib

F32, F64, F16, BF16 = "float32", "float64", "float16", "bfloat16"
I8, U8, I32, I64, BOOL = "int8", "uint8", "int32", "int64", "bool"
FLOATS = (F32, F64, F16, BF16)
INTS = (I8, U8, I32, I64)
NUM = FLOATS + INTS
ALL = NUM + (BOOL,)
LOW = (F16, BF16)
TORCH_DT = {F32: torch.float32, F64: torch.float64, F16: torch.float16, BF16: torch.bfloat16, I8: torch.int8,
            U8: torch.uint8, I32: torch.int32, I64: torch.int64, BOOL: torch.bool}
# (rtol, atol) by result dtype; low-precision results are compared with a float32 reference.
TOL = {F64: (1e-10, 1e-12), F32: (2e-5, 2e-6), F16: (6e-3, 6e-3), BF16: (4e-2, 4e-2)}
STRUCTURAL = {"tuple", "get", "constant", "if", "while", "call", "list_new", "list_push", "list_pop", "list_length"}

COVERED = set()  # op names with a test below; test_every_op_is_covered checks it against the table


# ---- inputs and comparison ----------------------------------------------------------------------
class In:
    """A test input: numpy values and the kiln dtype they stand for (low-precision floats hold
    float32 values that are exact in that dtype)."""

    def __init__(self, x, dt):
        self.x, self.dt = np.asarray(x), dt

    def kiln(self):
        return kiln.array(self.x, dtype=self.dt)

    def torch(self, low=False):
        t = torch.from_numpy(self.x.copy())
        return t.to(TORCH_DT[self.dt]) if low else t


def values(rng, shape, dt, kind="any"):
    """Random numpy values for dtype dt. kind: any, pos (> 0), nonzero, unit (|x| < 1), half (k/2)."""
    shape = tuple(shape)
    if dt == BOOL:
        return np.asarray(rng.random(shape) < 0.5)
    if dt in INTS:
        lo, hi = {I8: (-8, 9), U8: (0, 17), I32: (-20, 21), I64: (-20, 21)}[dt]
        if kind == "pos":
            lo = 1
        x = rng.integers(lo, hi, shape)
        if kind == "nonzero":
            x = np.where(x == 0, 1, x)
        return np.asarray(x, dtype=dt)
    if kind == "pos":
        x = rng.uniform(0.1, 3.0, shape)
    elif kind == "nonzero":
        x = rng.uniform(0.25, 3.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif kind == "unit":
        x = rng.uniform(-0.9, 0.9, shape)
    elif kind == "half":
        x = rng.integers(-10, 11, shape) / 2.0
    else:
        x = rng.standard_normal(shape) * 2.0
    x = np.asarray(x, dtype=np.float64 if dt == F64 else np.float32)
    if dt in LOW:
        x = torch.from_numpy(x.copy()).to(TORCH_DT[dt]).float().numpy()
    return x


def rand(rng, shape, dt, kind="any"):
    return In(values(rng, shape, dt, kind), dt)


def kdt(dt):
    """kiln dtype of a name, a torch dtype or a numpy dtype."""
    return kiln.dtypes.as_dtype(dt)


def check(out, ref, dtype, scale=1.0):
    """out (kiln.Tensor) equals ref (numpy/torch values) with kiln dtype `dtype`: dtype, shape, values."""
    assert isinstance(out, kiln.Tensor), f"expected a kiln.Tensor, got {type(out).__name__}"
    if isinstance(ref, torch.Tensor):
        ref = (ref.float() if ref.dtype in (torch.bfloat16, torch.float16) else ref).numpy()
    ref = np.asarray(ref)
    assert out.dtype == kdt(dtype), f"dtype {out.dtype.name}, expected {kdt(dtype).name}"
    assert out.shape == ref.shape, f"shape {out.shape}, expected {ref.shape}"
    got = out.numpy()
    if out.dtype.is_floating_point:
        rtol, atol = TOL[kdt(dtype).name]
        np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=rtol * scale,
                                   atol=atol * scale, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, ref)


def tnp(t):
    """numpy values of a torch tensor (bfloat16, which numpy lacks, as float32)."""
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def np_ref(fn):
    """A numpy reference on torch tensors (returns a torch tensor; bfloat16, which numpy lacks, goes
    through float32 and comes back as bfloat16)."""
    def f(*args):
        out = torch.from_numpy(np.array(fn(*[tnp(a) if torch.is_tensor(a) else a for a in args])))
        bf16 = any(torch.is_tensor(a) and a.dtype == torch.bfloat16 for a in args)
        return out.to(torch.bfloat16) if bf16 and out.dtype == torch.float32 else out
    return f


def _flat(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def vs_torch(kfn, tfn, ins, scale=1.0):
    """Runs kfn on kiln versions of ins (In objects or Python scalars) and tfn on torch versions;
    compares every output. With low-precision inputs the values come from a float32 run of tfn and
    the expected dtypes from a run on the low-precision tensors."""
    out = kfn(*[a.kiln() if isinstance(a, In) else a for a in ins])
    ref = tfn(*[a.torch() if isinstance(a, In) else a for a in ins])
    if any(isinstance(a, In) and a.dt in LOW for a in ins):
        dts = [r.dtype for r in _flat(tfn(*[a.torch(low=True) if isinstance(a, In) else a for a in ins]))]
    else:
        dts = [r.dtype for r in _flat(ref)]
    dts = [I32 if d == torch.int16 else d for d in dts]  # kiln promotes int8 with uint8 to int32
    outs, refs = _flat(out), _flat(ref)
    assert len(outs) == len(refs), f"{len(outs)} outputs, expected {len(refs)}"
    for o, r, d in zip(outs, refs, dts):
        check(o, r, d, scale)


def each(cases, fn):
    """Runs fn(case) for every case of a table; a failure names the case. Shape tables loop inside
    one test per (op, dtype): pytest's cost per test is ten times that of a small op."""
    for case in cases:
        try:
            fn(case)
        except Exception as e:
            raise AssertionError(f"case {case!r}: {type(e).__name__}: {e}") from e


def op_params(table):
    """pytest params (row, dtype) for a table of rows (op name first, dtypes last)."""
    return [pytest.param(row, dt, id=f"{row[0]}{i}-{dt}") for i, row in enumerate(table) for dt in row[-1]]


# ---- elementwise unary ------------------------------------------------------------------------
UNARY_SHAPES = [(), (0,), (1,), (7,), (3, 4), (2, 1, 3), (2, 0, 3)]
FLOAT_IN = FLOATS + (I32, BOOL)  # float math promotes int and bool inputs to float32 (as torch)
UNARY = [
    ("neg", kiln.negative, torch.neg, "any", NUM),
    ("abs", kiln.abs, torch.abs, "any", NUM),
    ("sign", kiln.sign, torch.sign, "any", NUM),
    ("exp", kiln.exp, torch.exp, "any", FLOAT_IN),
    ("log", kiln.log, torch.log, "pos", FLOATS + (I32, U8)),
    ("log2", kiln.log2, torch.log2, "pos", FLOATS + (I64,)),
    ("sqrt", kiln.sqrt, torch.sqrt, "pos", FLOATS + (I32,)),
    ("rsqrt", kiln.rsqrt, torch.rsqrt, "pos", FLOATS + (I8,)),
    ("reciprocal", kiln.reciprocal, torch.reciprocal, "nonzero", FLOATS + (I32,)),
    ("sin", kiln.sin, torch.sin, "any", FLOAT_IN),
    ("cos", kiln.cos, torch.cos, "any", FLOAT_IN),
    ("tanh", kiln.tanh, torch.tanh, "any", FLOAT_IN),
    ("atan", kiln.arctan, torch.atan, "any", FLOAT_IN),
    ("sigmoid", kiln.sigmoid, torch.sigmoid, "any", FLOAT_IN),
    ("relu", kiln.relu, torch.relu, "any", NUM),
    ("erf", kiln.erf, torch.erf, "any", FLOAT_IN),
    ("floor", kiln.floor, torch.floor, "half", NUM),
    ("ceil", kiln.ceil, torch.ceil, "half", NUM),
    ("round", kiln.round, torch.round, "half", NUM),
    ("trunc", kiln.trunc, torch.trunc, "half", NUM),
    ("copy", kiln.copy, torch.clone, "any", ALL),
    ("logical_not", kiln.logical_not, torch.logical_not, "any", ALL),
    ("clip", lambda x: kiln.clip(x, 0, 2), lambda x: torch.clamp(x, 0, 2), "any", NUM),
    ("clip", lambda x: kiln.clip(x, -0.5, None), lambda x: torch.clamp(x, min=-0.5), "any", FLOATS),
    ("clip", lambda x: kiln.clip(x, a_max=0.5), lambda x: torch.clamp(x, max=0.5), "any", FLOATS),
    ("threshold", lambda x: kiln.threshold(x, 1, 7), lambda x: F.threshold(x, 1, 7), "any", NUM),
    ("threshold", lambda x: kiln.threshold(x, 0.25, -2.5), lambda x: F.threshold(x, 0.25, -2.5), "any", FLOATS),
    ("gelu", kiln.gelu, F.gelu, "any", FLOATS),
    ("gelu", lambda x: kiln.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh"), "any", FLOATS),
    ("silu", kiln.silu, F.silu, "any", FLOATS),
    ("leaky_relu", kiln.leaky_relu, F.leaky_relu, "any", FLOATS),
    ("leaky_relu", lambda x: kiln.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2), "any", FLOATS),
]
COVERED.update(r[0] for r in UNARY)


@pytest.mark.parametrize("row,dt", op_params(UNARY))
def test_unary(rng, row, dt):
    _, kfn, tfn, kind, _ = row
    each(UNARY_SHAPES, lambda s: vs_torch(kfn, tfn, [rand(rng, s, dt, kind)]))


def test_unary_special_values():
    """inf, nan and signed zeros through the float kernels."""
    x = In(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e-30], np.float32), F32)
    for op, kfn, tfn, kind, dts in UNARY:
        if F32 in dts and kind == "any":  # sign(nan) is nan as in numpy (torch says 0)
            vs_torch(kfn, np_ref(np.sign) if op == "sign" else tfn, [x])


# ---- elementwise binary -----------------------------------------------------------------------
# shape pairs: equal, 0-d either side, broadcasting in both directions, size-0 and size-1 dims
BINARY_SHAPES = [((), ()), ((3, 4), (3, 4)), ((3, 4), ()), ((), (2, 3)), ((3, 1), (1, 4)), ((4,), (2, 3, 4)),
                 ((2, 1, 4), (3, 1)), ((0, 3), (1, 3)), ((1,), (0,)), ((1, 1), (5,))]
BINARY = [
    ("add", kiln.add, torch.add, "any", "any", ALL),
    ("subtract", kiln.subtract, torch.sub, "any", "any", NUM),
    ("multiply", kiln.multiply, torch.mul, "any", "any", ALL),
    ("divide", kiln.divide, torch.div, "any", "nonzero", ALL),
    ("floor_divide", kiln.floor_divide, torch.floor_divide, "any", "nonzero", NUM),
    ("mod", kiln.mod, torch.remainder, "any", "nonzero", NUM),
    ("power", kiln.power, torch.pow, "pos", "any", FLOATS),
    ("power", kiln.power, torch.pow, "any", "pos", INTS),
    ("maximum", kiln.maximum, torch.maximum, "any", "any", ALL),
    ("minimum", kiln.minimum, torch.minimum, "any", "any", ALL),
    ("equal", kiln.equal, torch.eq, "half", "half", ALL),
    ("not_equal", kiln.not_equal, torch.ne, "half", "half", ALL),
    ("less", kiln.less, torch.lt, "half", "half", ALL),
    ("less_equal", kiln.less_equal, torch.le, "half", "half", ALL),
    ("greater", kiln.greater, torch.gt, "half", "half", ALL),
    ("greater_equal", kiln.greater_equal, torch.ge, "half", "half", ALL),
    ("logical_and", kiln.logical_and, torch.logical_and, "half", "half", ALL),
    ("logical_or", kiln.logical_or, torch.logical_or, "half", "half", ALL),
    ("logical_xor", kiln.logical_xor, torch.logical_xor, "half", "half", ALL),
    ("left_shift", kiln.left_shift, torch.bitwise_left_shift, "any", "shift", INTS),
    ("right_shift", kiln.right_shift, torch.bitwise_right_shift, "any", "shift", INTS),
]
COVERED.update(r[0] for r in BINARY)


def binary_input(rng, shape, dt, kind):
    if kind == "shift":  # shift counts in [0, 8)
        return In(rng.integers(0, 8, shape).astype(values(rng, (), dt).dtype), dt)
    return rand(rng, shape, dt, kind)


@pytest.mark.parametrize("row,dt", op_params(BINARY))
def test_binary(rng, row, dt):
    _, kfn, tfn, ka, kb, _ = row
    each(BINARY_SHAPES, lambda s: vs_torch(kfn, tfn, [binary_input(rng, s[0], dt, ka), binary_input(rng, s[1], dt, kb)]))


def test_binary_special_values():
    """Float division by zero, nan propagation of maximum/minimum, floor_divide/mod signs."""
    x = In(np.array([1.0, -1.0, 0.0, np.nan, 7.5, -7.5, np.inf], np.float64), F64)
    y = In(np.array([0.0, 0.0, 0.0, 1.0, -2.0, 2.0, 3.0], np.float64), F64)
    for _, kfn, tfn, ka, _, dts in BINARY:
        if F64 in dts and ka != "pos":
            vs_torch(kfn, tfn, [x, y])


# mixed dtypes (torch-like promotion; kiln promotes int8 with uint8 to int32, torch to int16)
MIXED = [(F16, BF16), (BF16, F32), (F16, F64), (I8, U8), (U8, I32), (I32, F16), (I64, F32), (BOOL, I8),
         (U8, BOOL), (BOOL, F16), (I8, I64), (F32, F64)]
MIXED_OPS = [(kiln.add, torch.add), (kiln.subtract, torch.sub), (kiln.multiply, torch.mul),
             (kiln.divide, torch.div), (kiln.maximum, torch.maximum), (kiln.less, torch.lt),
             (kiln.equal, torch.eq), (kiln.logical_and, torch.logical_and)]


@pytest.mark.parametrize("da,db", MIXED, ids=[f"{a}-{b}" for a, b in MIXED])
def test_binary_mixed_dtypes(rng, da, db):
    for kfn, tfn in MIXED_OPS:
        if BOOL in (da, db) and tfn in (torch.sub, torch.pow):
            continue  # torch has no bool subtraction / power
        a, b = rand(rng, (2, 3), da, "pos"), rand(rng, (3,), db, "pos")
        vs_torch(kfn, tfn, [a, b])
        vs_torch(kfn, tfn, [b, a])
    if da in FLOATS and db in FLOATS:  # (int powers overflow: int16 in torch, int32 in kiln)
        vs_torch(kiln.power, torch.pow, [rand(rng, (2, 3), da, "pos"), rand(rng, (3,), db, "unit")])


SCALARS = [2, -3, 2.5, True]
SCALAR_OPS = [("add", kiln.add, operator.add), ("subtract", kiln.subtract, operator.sub),
              ("multiply", kiln.multiply, operator.mul), ("divide", kiln.divide, operator.truediv),
              ("floor_divide", kiln.floor_divide, operator.floordiv), ("mod", kiln.mod, operator.mod),
              ("power", kiln.power, operator.pow), ("greater", kiln.greater, operator.gt),
              ("not_equal", kiln.not_equal, operator.ne), ("maximum", kiln.maximum, None)]


def _scalar_case(rng, op, kfn, tfn, dt, s, reflected):
    bool_arith = (dt == BOOL and (op in ("subtract", "floor_divide", "mod", "power") or
                                  isinstance(s, bool) and op in ("add", "multiply", "divide"))
                  or isinstance(s, bool) and op == "subtract")
    if bool_arith or op == "power" and (s == -3 or reflected and dt in INTS):
        return  # torch has no such bool arithmetic; negative powers of ints
    x = rand(rng, (2, 3), dt, "pos" if op == "power" else "nonzero")
    if tfn is None:  # torch.maximum takes no Python scalar: a 0-d tensor, weak in torch's promotion too
        tfn = lambda a, b: torch.maximum(*[v if torch.is_tensor(v) else torch.tensor(v) for v in (a, b)])  # noqa: E731
    if dt == U8 and s == -3 and op in ("greater", "not_equal"):
        tfn = np_ref(tfn)  # torch wraps -3 to uint8 253 first; kiln compares exactly, as numpy
    if reflected:
        vs_torch(lambda a: kfn(s, a), lambda a: tfn(s, a), [x])
    else:
        vs_torch(lambda a: kfn(a, s), lambda a: tfn(a, s), [x])


@pytest.mark.parametrize("op,kfn,tfn", SCALAR_OPS, ids=[m[0] for m in SCALAR_OPS])
@pytest.mark.parametrize("dt", (F32, F64, F16, BF16, I8, U8, I64, BOOL))
def test_binary_python_scalar(rng, op, kfn, tfn, dt):
    """Python scalars are weak: the tensor's dtype wins unless the scalar's category is higher
    (torch's Python operators are the reference, reflected ones included)."""
    each([(s, r) for s in SCALARS for r in (False, True)], lambda c: _scalar_case(rng, op, kfn, tfn, dt, *c))


def test_scalar_scalar():
    """Both operands Python scalars: a Python scalar comes back, with Python's promotion."""
    assert kiln.add(2, 3) == 5 and isinstance(kiln.add(2, 3), int)
    r = kiln.multiply(2, 2.5)
    assert r == 5.0 and isinstance(r, float)
    assert kiln.less(2, 2.5) is True


WHERE_SHAPES = [((), (), ()), ((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), ()), ((4,), (2, 1), (3, 1, 1)),
                ((0, 2), (2,), (1, 2)), ((1,), (1,), (5,))]
COVERED.add("where")


@pytest.mark.parametrize("dt", ALL)
def test_where(rng, dt):
    each(WHERE_SHAPES, lambda s: vs_torch(kiln.where, torch.where,
                                          [rand(rng, s[0], BOOL), rand(rng, s[1], dt), rand(rng, s[2], dt)]))


def test_where_mixed_and_scalars(rng):
    c = rand(rng, (3, 4), BOOL)
    vs_torch(kiln.where, torch.where, [c, rand(rng, (3, 4), I32), rand(rng, (4,), F16)])
    vs_torch(lambda a, b: kiln.where(a, b, 0.5), lambda a, b: torch.where(a, b, 0.5), [c, rand(rng, (4,), BF16)])
    vs_torch(lambda a, b: kiln.where(a, 2, b), lambda a, b: torch.where(a, 2, b), [c, rand(rng, (3, 1), I8)])
    vs_torch(lambda a: kiln.where(a, 1.5, 2), lambda a: torch.where(a, 1.5, 2), [c])


# ---- reductions and scans ---------------------------------------------------------------------
REDUCE_SHAPES = [((), None), ((5,), None), ((5,), 0), ((3, 4), None), ((3, 4), 0), ((3, 4), -1),
                 ((2, 3, 4), (0, 2)), ((2, 3, 4), (-1, 1)), ((1, 4), 0), ((2, 1, 3), 1), ((0, 3), 0), ((0, 3), 1),
                 ((0, 3), None), ((2, 3), ())]


def _axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    return tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))


def t_reduce(fn):
    """A torch reference over numpy-style axis (None: all, int or tuple; () reduces nothing): fn
    reduces one dim keeping it; the dims are then dropped unless keepdims."""
    def f(x, axis, keepdims):
        axes = _axes(x, axis)
        if not axes:  # nothing to reduce (0-d input or axis=()): reduce a new size-1 dim (for the dtype)
            return fn(x.unsqueeze(0), 0, False)
        y = x
        for a in axes:
            y = fn(y, a, True)
        return y if keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in axes])
    return f


def t_multi(name):
    """torch references that take a tuple of dims at once (variance, l2norm, logsumexp)."""
    def f(x, axis, keepdims):
        x, dims = _float(x), _axes(x, axis)
        if not dims:  # one value per output element
            return {"variance": x - x, "l2norm": x.abs(), "logsumexp": x.clone()}[name]
        if name == "variance":
            return torch.var(x, dim=dims, correction=0, keepdim=keepdims)
        if name == "l2norm":
            return torch.linalg.vector_norm(x, 2, dim=dims, keepdim=keepdims)
        return torch.logsumexp(x, dim=dims, keepdim=keepdims)
    return f


def np_reduce(fn):
    def f(x, axis, keepdims):
        return torch.from_numpy(np.asarray(fn(tnp(x), axis=axis, keepdims=keepdims)))
    return f


def _float(x):
    return x if x.is_floating_point() else x.float()


REDUCE = [
    ("sum", kiln.sum, t_reduce(lambda x, d, k: torch.sum(x, d, keepdim=k)), "any", ALL),
    ("prod", kiln.prod, t_reduce(lambda x, d, k: torch.prod(x, d, keepdim=k)), "unit", ALL),
    ("max", kiln.max, t_reduce(lambda x, d, k: torch.amax(x, d, keepdim=k)), "any", ALL),
    ("min", kiln.min, t_reduce(lambda x, d, k: torch.amin(x, d, keepdim=k)), "any", ALL),
    ("all", kiln.all, np_reduce(np.all), "half", ALL),
    ("any", kiln.any, np_reduce(np.any), "half", ALL),
    ("mean", kiln.mean, t_reduce(lambda x, d, k: torch.mean(_float(x), d, keepdim=k)), "any", FLOATS + (I32, BOOL)),
    ("variance", kiln.var, t_multi("variance"), "any", FLOATS + (I64,)),
    ("l2norm", kiln.l2norm, t_multi("l2norm"), "any", FLOATS + (I8,)),
    ("logsumexp", kiln.logsumexp, t_multi("logsumexp"), "any", FLOATS + (U8,)),
]
COVERED.update(r[0] for r in REDUCE)


def _reduce_case(rng, op, kfn, tfn, kind, dt, case):
    (shape, axis), keepdims = case
    x = rand(rng, shape, dt, kind)
    if op in ("max", "min") and any(shape[a] == 0 for a in _axes(x.x, axis)):
        with pytest.raises(kiln.Error, match="empty"):
            kfn(x.kiln(), axis=axis, keepdims=keepdims)
        return
    vs_torch(lambda a: kfn(a, axis=axis, keepdims=keepdims), lambda a: tfn(a, axis, keepdims), [x], scale=4)


@pytest.mark.filterwarnings("ignore:var\\(\\). degrees of freedom")
@pytest.mark.parametrize("row,dt", op_params(REDUCE))
def test_reduce(rng, row, dt):
    op, kfn, tfn, kind, _ = row
    each([(c, k) for c in REDUCE_SHAPES for k in (False, True)], lambda c: _reduce_case(rng, op, kfn, tfn, kind, dt, c))


@pytest.mark.parametrize("dt", (F32, F64, BF16))
def test_variance_correction(rng, dt):
    for ddof in (1, 2):
        vs_torch(lambda x: kiln.var(x, axis=1, ddof=ddof), lambda x: torch.var(x, 1, correction=ddof),
                 [rand(rng, (3, 5), dt)], scale=2)
    vs_torch(lambda x: kiln.std(x, axis=0), lambda x: torch.std(x, 0, correction=0), [rand(rng, (4, 2), dt)], scale=2)


ARG_SHAPES = [((), None), ((7,), None), ((7,), 0), ((3, 4), None), ((3, 4), 0), ((3, 4), -1), ((2, 1, 3), 1),
              ((1, 5), 1), ((2, 0), 0)]
COVERED.update(("argmax", "argmin"))


@pytest.mark.parametrize("op", ("argmax", "argmin"))
@pytest.mark.parametrize("dt", ALL)
def test_argreduce(rng, op, dt):
    """First index of the extreme (ties included), numpy's rule; int64 result."""
    kfn, nfn = getattr(kiln, op), getattr(np, op)

    def case(c):
        (shape, axis), keepdims = c
        vs_torch(lambda x: kfn(x, axis=axis, keepdims=keepdims),
                 lambda x: torch.from_numpy(np.asarray(nfn(tnp(x), axis=axis, keepdims=keepdims))),
                 [rand(rng, shape, dt, "half")])
    each([(c, k) for c in ARG_SHAPES for k in (False, True)], case)
    with pytest.raises(kiln.Error):
        kfn(kiln.zeros((0, 3)), axis=0)


def np_cumsum(x, axis, exclusive, reverse):
    """Hand-written reference of kiln's cumsum with exclusive / reverse."""
    y = np.flip(x, axis) if reverse else x
    c = np.cumsum(y, axis=axis)
    if exclusive:
        c = c - y
    return np.flip(c, axis) if reverse else c


CUMSUM_SHAPES = [((5,), 0), ((3, 4), 0), ((3, 4), -1), ((2, 1, 3), 1), ((0, 3), 1), ((1,), 0)]
COVERED.add("cumsum")


@pytest.mark.parametrize("dt", ALL)
def test_cumsum(rng, dt):
    def case(c):
        (shape, axis), exclusive, reverse = c
        x = rand(rng, shape, dt)
        if not (exclusive or reverse):
            vs_torch(lambda a: kiln.cumsum(a, axis), lambda a: torch.cumsum(a, axis), [x], scale=4)
        out = kiln.cumsum(x.kiln(), axis, exclusive=exclusive, reverse=reverse)
        dtype = torch.cumsum(x.torch(low=True), axis).dtype
        ref = np_cumsum(x.x.astype(np.float64) if dt in FLOATS else x.x.astype(np.int64), axis, exclusive, reverse)
        check(out, ref, dtype, scale=4)
    each([(c, e, r) for c in CUMSUM_SHAPES for e in (False, True) for r in (False, True)], case)
    vs_torch(lambda a: kiln.cumsum(a), lambda a: torch.cumsum(a.reshape(-1), 0), [rand(rng, (2, 3), dt)])


SUM_TO = [((3, 4), (4,)), ((3, 4), (1, 4)), ((3, 4), (3, 1)), ((2, 3, 4), (3, 1)), ((3, 4), ()), ((3, 4), (3, 4)),
          ((0, 4), (4,)), ((2, 0), (1, 0)), ((), ())]
COVERED.add("sum_to")


@pytest.mark.parametrize("dt", NUM)
def test_sum_to(rng, dt):
    """numpy reference: sum over the leading dims and the dims where the target has size 1."""
    def case(c):
        shape, target = c
        x = rand(rng, shape, dt)
        lead = len(shape) - len(target)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(target) if n == 1 and shape[lead + i] != 1)
        ref = np.sum(x.x.astype(np.float64 if dt in FLOATS else np.int64), axis=axes).reshape(target)
        check(kiln.sum_to(x.kiln(), target), ref, dt, scale=4)
    each(SUM_TO, case)
    with pytest.raises(kiln.Error):
        kiln.sum_to(kiln.ones((3, 4)), (2,))


# ---- matmul, convolution, pooling -------------------------------------------------------------
MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                 ((2, 1, 3, 4), (3, 4, 2)), ((4, 3), (2, 1, 3, 2)), ((0, 4), (4, 5)), ((3, 0), (0, 5)),
                 ((1, 1), (1, 1)), ((2, 0, 3), (3, 2))]
COVERED.update(("matmul", "batch_matmul", "dense"))


def _t(x):
    """Transpose of the last two dims (a 1-D operand stays as is)."""
    return x.mT if x.ndim >= 2 else x


@pytest.mark.parametrize("dt", NUM)
def test_matmul(rng, dt):
    def case(c):
        (sa, sb), ta, tb = c
        if (ta and len(sa) < 2) or (tb and len(sb) < 2):
            return
        a = rand(rng, sa[:-2] + sa[:-3:-1] if ta else sa, dt)  # stored transposed when transpose_a
        b = rand(rng, sb[:-2] + sb[:-3:-1] if tb else sb, dt)
        vs_torch(lambda x, y: kiln.matmul(x, y, transpose_a=ta, transpose_b=tb),
                 lambda x, y: torch.matmul(_t(x) if ta else x, _t(y) if tb else y), [a, b], scale=4)
    each([(s, ta, tb) for s in MATMUL_SHAPES for ta in (False, True) for tb in (False, True)], case)


@pytest.mark.parametrize("dt", NUM)
def test_batch_matmul(rng, dt):
    def case(c):
        (b, m, k, n), ta, tb = c
        x = rand(rng, (b, k, m) if ta else (b, m, k), dt)
        y = rand(rng, (b, n, k) if tb else (b, k, n), dt)
        vs_torch(lambda p, q: kiln.batch_matmul(p, q, transpose_a=ta, transpose_b=tb),
                 lambda p, q: torch.bmm(_t(p) if ta else p, _t(q) if tb else q), [x, y], scale=4)
    each([(s, ta, tb) for s in ((2, 3, 4, 5), (1, 1, 1, 1), (0, 2, 3, 2), (2, 2, 0, 3))
          for ta in (False, True) for tb in (False, True)], case)


@pytest.mark.parametrize("dt", FLOATS)
def test_dense(rng, dt):
    def case(c):
        shape, bias = c
        ins = [rand(rng, shape + (4,), dt), rand(rng, (3, 4), dt)] + ([rand(rng, (3,), dt)] if bias else [])
        vs_torch(lambda *a: kiln.dense(*a), lambda *a: F.linear(*a), ins, scale=4)
    each([(s, b) for s in ((2,), (), (2, 5), (0,), (1, 1)) for b in (False, True)], case)


COVERED.add("gemm_epilogue")


@pytest.mark.parametrize("dt", FLOATS)
def test_gemm_epilogue(rng, dt):
    """The epilogue pass's GEMM (src/ops/epilogue.h): activations of F.linear, the tanh gelu's
    derivative times a product (torch's autograd), a weight gradient with its bias gradient."""
    def ep(epilogue, **transposes):
        return lambda *a: kiln._core.apply("gemm_epilogue", list(a), {"epilogue": epilogue, **transposes})

    def dgelu(dy, w, h):
        h = h.detach().requires_grad_()
        F.gelu(h, approximate="tanh").backward(dy @ w)
        return h.grad
    x, w, b = rand(rng, (2, 3, 8), dt), rand(rng, (16, 8), dt), rand(rng, (16,), dt)
    vs_torch(ep("relu", transpose_b=True), lambda *a: F.relu(F.linear(*a)), [x, w, b], scale=4)
    vs_torch(ep("gelu", transpose_b=True), lambda *a: F.gelu(F.linear(*a), approximate="tanh"), [x, w], scale=4)
    vs_torch(ep("gelu_aux", transpose_b=True), lambda *a: (F.gelu(F.linear(*a), approximate="tanh"), F.linear(*a)),
             [x, w, b], scale=4)
    vs_torch(ep("dgelu"), dgelu, [rand(rng, (2, 3, 8), dt), rand(rng, (8, 16), dt), rand(rng, (2, 3, 16), dt)], scale=8)
    vs_torch(ep("bgrad", transpose_a=True), lambda g, y: (g.T @ y, g.sum(0)), [rand(rng, (6, 5), dt), rand(rng, (6, 7), dt)],
             scale=4)


CONV = [  # x shape, weight shape, stride, padding, dilation, groups
    ((1, 2, 5, 5), (3, 2, 3, 3), 1, 0, 1, 1), ((2, 2, 6, 5), (4, 1, 3, 2), (2, 1), (1, 0), 1, 2),
    ((1, 3, 7, 7), (3, 1, 3, 3), 2, 1, 2, 3), ((1, 1, 3, 3), (1, 1, 1, 1), 1, 0, 1, 1),
    ((0, 2, 4, 4), (2, 2, 2, 2), 1, 0, 1, 1), ((1, 2, 4, 4), (2, 2, 4, 4), 1, (1, 2), 1, 1),
]
CONV_T = [  # x shape, weight shape [C_in, C_out/groups, kh, kw], stride, padding, output_padding, dilation, groups
    ((1, 2, 3, 3), (2, 3, 3, 3), 1, 0, 0, 1, 1), ((2, 4, 3, 4), (4, 1, 3, 2), 2, 1, 1, 1, 2),
    ((1, 1, 2, 2), (1, 2, 2, 2), (2, 3), (0, 1), (1, 2), 1, 1), ((1, 2, 3, 3), (2, 1, 3, 3), 1, 1, 0, 2, 1),
    ((0, 1, 2, 2), (1, 1, 2, 2), 1, 0, 0, 1, 1),
]
COVERED.update(("conv2d", "conv2d_transpose"))


@pytest.mark.parametrize("dt", FLOATS)
def test_conv2d(rng, dt):
    each(CONV, lambda c: vs_torch(
        lambda x, w: kiln.conv2d(x, w, stride=c[2], padding=c[3], dilation=c[4], groups=c[5]),
        lambda x, w: F.conv2d(x, w, stride=c[2], padding=c[3], dilation=c[4], groups=c[5]),
        [rand(rng, c[0], dt), rand(rng, c[1], dt)], scale=8))


@pytest.mark.parametrize("dt", FLOATS)
def test_conv2d_transpose(rng, dt):
    each(CONV_T, lambda c: vs_torch(
        lambda x, w: kiln.conv2d_transpose(x, w, stride=c[2], padding=c[3], output_padding=c[4], dilation=c[5],
                                           groups=c[6]),
        lambda x, w: F.conv_transpose2d(x, w, stride=c[2], padding=c[3], output_padding=c[4], dilation=c[5],
                                        groups=c[6]),
        [rand(rng, c[0], dt), rand(rng, c[1], dt)], scale=8))


COVERED.add("bias_add")


@pytest.mark.parametrize("dt", NUM)
def test_bias_add(rng, dt):
    """numpy reference: bias placed along `axis` and broadcast."""
    def case(c):
        shape, axis = c
        x, b = rand(rng, shape, dt), rand(rng, (shape[axis],), dt)
        view = [1] * len(shape)
        view[axis] = shape[axis]
        vs_torch(lambda p, q: kiln.bias_add(p, q, axis=axis), lambda p, q: p + q.reshape(view), [x, b])
    each([((2, 3, 4), 1), ((2, 3, 4), -1), ((3,), 0), ((2, 0, 3), 2), ((1, 1), 0)], case)


POOL = [  # x shape, kernel, stride, padding, dilation, ceil_mode
    ((1, 1, 4, 4), 2, None, 0, 1, False), ((2, 3, 5, 6), (3, 2), (2, 1), (1, 0), 1, False),
    ((1, 2, 5, 5), 3, 2, 1, 1, True), ((1, 1, 7, 7), 2, 2, 0, 2, False), ((1, 1, 6, 5), 3, 2, 1, 1, True),
    ((0, 2, 4, 4), 2, 2, 0, 1, False), ((1, 1, 1, 1), 1, 1, 0, 1, False),
]
COVERED.update(("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"))


def _on_float(fn):
    """A torch reference for int inputs through float64 (torch's CPU pooling takes no ints)."""
    return lambda x, *a, **k: fn(x.double(), *a, **k).to(x.dtype) if not x.is_floating_point() else fn(x, *a, **k)


@pytest.mark.parametrize("dt", NUM)
def test_max_pool2d(rng, dt):
    each(POOL, lambda c: vs_torch(
        lambda x: kiln.max_pool2d(x, c[1], stride=c[2], padding=c[3], dilation=c[4], ceil_mode=c[5]),
        _on_float(lambda x: F.max_pool2d(x, c[1], stride=c[2], padding=c[3], dilation=c[4], ceil_mode=c[5])),
        [rand(rng, c[0], dt)]))


@pytest.mark.parametrize("dt", FLOATS)
def test_avg_pool2d(rng, dt):
    def case(c):
        (shape, k, s, p, d, ceil), cip = c
        if d != 1:
            return  # avg_pool2d has no dilation
        vs_torch(lambda x: kiln.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip),
                 lambda x: F.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip),
                 [rand(rng, shape, dt)], scale=2)
    each([(c, cip) for c in POOL for cip in (True, False)], case)


ADAPTIVE = [((1, 2, 5, 7), (2, 3)), ((2, 1, 4, 4), 2), ((1, 1, 3, 5), (3, 5)), ((1, 1, 3, 2), (5, 4)),
            ((1, 1, 6, 6), 1), ((0, 1, 4, 4), 2)]


@pytest.mark.parametrize("dt", FLOATS)
def test_adaptive_avg_pool2d(rng, dt):
    each(ADAPTIVE, lambda c: vs_torch(lambda x: kiln.adaptive_avg_pool2d(x, c[1]),
                                      lambda x: F.adaptive_avg_pool2d(x, c[1]), [rand(rng, c[0], dt)], scale=2))


@pytest.mark.parametrize("dt", NUM)
def test_adaptive_max_pool2d(rng, dt):
    each(ADAPTIVE, lambda c: vs_torch(lambda x: kiln.adaptive_max_pool2d(x, c[1]),
                                      _on_float(lambda x: F.adaptive_max_pool2d(x, c[1])), [rand(rng, c[0], dt)]))


# ---- attention (more shapes and the backward: tests/python/test_attention.py) -----------------
COVERED.update(("attention", "attention_forward"))


def t_attention_forward(q, k, v, causal):
    """torch's attention and the rows' log-sum-exp of its scaled scores (attention_forward's results)."""
    s = (q.double() @ k.double().mT) / q.shape[-1] ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal), torch.logsumexp(s, -1).to(q.dtype)


@pytest.mark.parametrize("dt", FLOATS)
def test_attention(rng, dt):
    shapes = [((2, 5, 8), (2, 7, 8), (2, 7, 4)), ((6, 4), (5, 4), (5, 4)), ((1, 2, 3, 16), (1, 2, 9, 16), (1, 2, 9, 16))]
    each([(s, c) for s in shapes for c in (False, True)], lambda sc: vs_torch(
        lambda q, k, v: kiln.attention(q, k, v, causal=sc[1]),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=sc[1]), [rand(rng, s, dt) for s in sc[0]]))
    if dt in (F32, F64):
        ins = [rand(rng, s, dt) for s in shapes[0]]
        out, lse = kiln.attention_forward(*[a.kiln() for a in ins], causal=True)
        ref, ref_lse = t_attention_forward(*[a.torch() for a in ins], True)
        check(out, ref, dt)
        check(lse, ref_lse, dt)


# ---- normalisation, softmax, losses -----------------------------------------------------------
COVERED.update(("batch_norm_train", "batch_norm_infer", "layer_norm", "softmax", "log_softmax"))


def t_batch_norm_train(x, g, b, axis, eps):
    """(y, batch mean, biased batch variance) over every dim but `axis`."""
    dims = [d for d in range(x.ndim) if d != axis % x.ndim]
    view = [-1 if d == axis % x.ndim else 1 for d in range(x.ndim)]
    m, v = x.mean(dims), x.var(dims, correction=0)
    return (x - m.reshape(view)) / torch.sqrt(v.reshape(view) + eps) * g.reshape(view) + b.reshape(view), m, v


@pytest.mark.parametrize("dt", FLOATS)
def test_batch_norm(rng, dt):
    def case(c):
        shape, axis = c
        ch = shape[axis]
        x, g, b = rand(rng, shape, dt), rand(rng, (ch,), dt), rand(rng, (ch,), dt)
        vs_torch(lambda *a: kiln.batch_norm_train(*a, axis=axis, eps=1e-3),
                 lambda *a: t_batch_norm_train(*a, axis, 1e-3), [x, g, b], scale=4)
        rm, rv = rand(rng, (ch,), dt), rand(rng, (ch,), dt, "pos")
        if axis == 1:
            vs_torch(lambda *a: kiln.batch_norm_infer(*a, eps=1e-3),
                     lambda x_, g_, b_, m_, v_: F.batch_norm(x_, m_, v_, g_, b_, training=False, eps=1e-3),
                     [x, g, b, rm, rv], scale=4)
        else:
            view = [-1 if d == axis % len(shape) else 1 for d in range(len(shape))]
            vs_torch(lambda *a: kiln.batch_norm_infer(*a, axis=axis, eps=1e-3),
                     lambda x_, g_, b_, m_, v_: (x_ - m_.reshape(view)) / torch.sqrt(v_.reshape(view) + 1e-3)
                     * g_.reshape(view) + b_.reshape(view), [x, g, b, rm, rv], scale=4)
    each([((4, 3), 1), ((2, 3, 4, 5), 1), ((3, 5, 2), -1), ((1, 2, 1, 1), 1)], case)
    with pytest.raises(kiln.Error):
        kiln.batch_norm_train(kiln.ones((2, 3)), kiln.ones((2,)), kiln.ones((3,)))


@pytest.mark.parametrize("dt", FLOATS)
def test_layer_norm(rng, dt):
    def case(c):
        shape, axis, affine = c
        ns = shape[axis:]
        ins = [rand(rng, shape, dt)] + [rand(rng, ns, dt) for _ in range(affine)]
        vs_torch(lambda *a: kiln.layer_norm(*a, axis=axis, eps=1e-4),
                 lambda x, *gb: F.layer_norm(x, ns, *gb, eps=1e-4), ins, scale=4)
    each([(s, a, n) for s, a in (((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), -2), ((5,), 0), ((0, 4), 1), ((2, 1), -1))
          for n in (0, 1, 2)], case)


SOFTMAX_SHAPES = [((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1), ((5,), 0), ((), 0), ((0, 3), 1), ((2, 0), 0), ((1, 1), -1)]


@pytest.mark.parametrize("op,kfn,tfn", [("softmax", kiln.softmax, torch.softmax),
                                        ("log_softmax", kiln.log_softmax, torch.log_softmax)])
@pytest.mark.parametrize("dt", FLOATS + (I32,))
def test_softmax(rng, op, kfn, tfn, dt):
    each(SOFTMAX_SHAPES, lambda c: vs_torch(lambda x: kfn(x, axis=c[1]), lambda x: tfn(_float(x), c[1]),
                                            [rand(rng, c[0], dt)], scale=2))
    big = In(np.array([1000.0, -1000.0, 0.0, 999.0], np.float32), F32)  # stable: no overflow
    vs_torch(lambda x: kfn(x), lambda x: tfn(x, -1), [big])


COVERED.update(("nll_loss", "cross_entropy", "mse_loss", "smooth_l1_loss"))
LOSS_SHAPES = [((4, 5), (4,)), ((2, 3, 4), (2, 4)), ((5,), ()), ((2, 3, 2, 2), (2, 2, 2)), ((0, 3), (0,))]
REDUCTIONS = ("mean", "sum", "none")


def _targets(rng, shape, classes, ignore):
    t = rng.integers(0, classes, shape)
    if ignore and t.size > 1:
        t.reshape(-1)[0] = -100 if ignore is True else ignore
    return In(t, I64)


@pytest.mark.parametrize("dt", FLOATS)
def test_nll_loss(rng, dt):
    def case(c):
        (sx, st), red, ignore = c
        x, t = rand(rng, sx, dt), _targets(rng, st, sx[0] if len(sx) == 1 else sx[1], ignore)
        vs_torch(lambda a, b: kiln.nll_loss(a, b, reduction=red), lambda a, b: F.nll_loss(a, b, reduction=red),
                 [x, t], scale=4)
    each([(s, r, ig) for s in LOSS_SHAPES for r in REDUCTIONS for ig in (False, True)], case)
    ti = _targets(rng, (4,), 5, 2)
    vs_torch(lambda a, b: kiln.nll_loss(a, b, ignore_index=2), lambda a, b: F.nll_loss(a, b, ignore_index=2),
             [rand(rng, (4, 5), dt), ti])


@pytest.mark.parametrize("dt", FLOATS)
def test_cross_entropy(rng, dt):
    def case(c):
        (sx, st), red, ignore, ls = c
        x, t = rand(rng, sx, dt), _targets(rng, st, sx[0] if len(sx) == 1 else sx[1], ignore)
        vs_torch(lambda a, b: kiln.cross_entropy(a, b, reduction=red, label_smoothing=ls),
                 lambda a, b: F.cross_entropy(a, b, reduction=red, label_smoothing=ls), [x, t], scale=4)
    each([(s, r, ig, ls) for s in LOSS_SHAPES for r in REDUCTIONS for ig in (False, True) for ls in (0.0, 0.1)], case)
    # class probabilities as the target
    p = In(np.asarray(torch.softmax(torch.from_numpy(values(rng, (3, 4), F32)), 1)), F32)
    vs_torch(lambda a, b: kiln.cross_entropy(a, b.astype(a.dtype)),
             lambda a, b: F.cross_entropy(a, b.to(a.dtype)), [rand(rng, (3, 4), dt), p], scale=4)


@pytest.mark.parametrize("op,kfn,tfn", [("mse_loss", kiln.mse_loss, F.mse_loss),
                                        ("smooth_l1_loss", kiln.smooth_l1_loss, F.smooth_l1_loss)])
@pytest.mark.parametrize("dt", FLOATS)
def test_pointwise_loss(rng, op, kfn, tfn, dt):
    def case(c):
        shape, red = c
        vs_torch(lambda a, b: kfn(a, b, reduction=red), lambda a, b: tfn(a, b, reduction=red),
                 [rand(rng, shape, dt), rand(rng, shape, dt)], scale=4)
    each([(s, r) for s in ((3, 4), (), (0, 2), (1,)) for r in REDUCTIONS], case)
    if op == "smooth_l1_loss":
        for beta in (0.5, 0.0):
            vs_torch(lambda a, b: kfn(a, b, beta=beta), lambda a, b: tfn(a, b, beta=beta),
                     [rand(rng, (4, 3), dt), rand(rng, (4, 3), dt)], scale=4)


# ---- shape, layout and indexing ---------------------------------------------------------------
LAYOUT = [  # op, kiln fn, reference on torch tensors, input shape
    ("reshape", lambda x: kiln.reshape(x, (3, -1)), lambda x: x.reshape(3, -1), (2, 3, 2)),
    ("reshape", lambda x: kiln.reshape(x, ()), lambda x: x.reshape(()), (1, 1)),
    ("reshape", lambda x: kiln.reshape(x, (0, 5)), lambda x: x.reshape(0, 5), (5, 0)),
    ("reshape", lambda x: kiln.reshape(x, -1), lambda x: x.reshape(-1), ()),
    ("transpose", kiln.transpose, lambda x: x.permute(*reversed(range(x.ndim))), (2, 3, 4)),
    ("transpose", lambda x: kiln.transpose(x, (1, 0, 2)), lambda x: x.permute(1, 0, 2), (2, 0, 3)),
    ("transpose", lambda x: kiln.transpose(x, (-1, 0)), lambda x: x.permute(1, 0), (3, 1)),
    ("transpose", kiln.transpose, lambda x: x, ()),
    ("expand_dims", lambda x: kiln.expand_dims(x, 1), lambda x: x.unsqueeze(1), (2, 3)),
    ("expand_dims", lambda x: kiln.expand_dims(x, -1), lambda x: x.unsqueeze(-1), ()),
    ("expand_dims", lambda x: kiln.expand_dims(x, 0), lambda x: x.unsqueeze(0), (0,)),
    ("squeeze", kiln.squeeze, lambda x: x.squeeze(), (1, 3, 1, 2)),
    ("squeeze", lambda x: kiln.squeeze(x, -2), lambda x: x.squeeze(-2), (1, 3, 1, 2)),
    ("squeeze", lambda x: kiln.squeeze(x, (0, 2)), lambda x: x.squeeze((0, 2)), (1, 0, 1)),
    ("squeeze", kiln.squeeze, lambda x: x.squeeze(), ()),
    ("batch_flatten", kiln.batch_flatten, np_ref(lambda x: x.reshape(x.shape[0], -1)), (2, 3, 4)),
    ("batch_flatten", kiln.batch_flatten, np_ref(lambda x: x.reshape(0, 12)), (0, 3, 4)),
    ("batch_flatten", kiln.batch_flatten, np_ref(lambda x: x.reshape(3, 1)), (3,)),
    ("swap_axis", lambda x: kiln.swapaxes(x, 0, 2), lambda x: x.transpose(0, 2), (2, 3, 4)),
    ("swap_axis", lambda x: kiln.swapaxes(x, -1, 1), lambda x: x.transpose(-1, 1), (2, 1, 0)),
    ("broadcast_to", lambda x: kiln.broadcast_to(x, (2, 3, 4)), lambda x: x.broadcast_to((2, 3, 4)), (3, 1)),
    ("broadcast_to", lambda x: kiln.broadcast_to(x, (2, 0)), lambda x: x.broadcast_to((2, 0)), (1,)),
    ("broadcast_to", lambda x: kiln.broadcast_to(x, (3,)), lambda x: x.broadcast_to((3,)), ()),
    ("broadcast_to", lambda x: kiln.broadcast_to(x, (2, 3)), lambda x: x.broadcast_to((2, 3)), (2, 3)),
    ("strided_slice", lambda x: kiln.strided_slice(x, [1, 0], [3, 4], [1, 2]), lambda x: x[1:3, 0:4:2], (4, 5)),
    ("strided_slice", lambda x: kiln.strided_slice(x, [-1], [-10], [-2], axes=[1]), np_ref(lambda x: x[:, -1:-10:-2]),
     (2, 5)),
    ("strided_slice", lambda x: kiln.strided_slice(x, [5], [9]), lambda x: x[5:9], (4, 2)),
    ("strided_slice", lambda x: kiln.strided_slice(x, [0], [1], axes=[-1]), lambda x: x[..., 0:1], (2, 0, 3)),
    ("pad", lambda x: kiln.pad(x, ((1, 2), (0, 1))), np_ref(lambda x: np.pad(x, ((1, 2), (0, 1)))), (2, 3)),
    ("pad", lambda x: kiln.pad(x, 1, constant_values=2.5), np_ref(lambda x: np.pad(x, 1, constant_values=2.5)), (2, 2)),
    ("pad", lambda x: kiln.pad(x, ((2, 1), (1, 2)), mode="reflect"), np_ref(lambda x: np.pad(x, ((2, 1), (1, 2)), "reflect")),
     (3, 4)),
    ("pad", lambda x: kiln.pad(x, ((0, 2), (3, 1)), mode="edge"), np_ref(lambda x: np.pad(x, ((0, 2), (3, 1)), "edge")),
     (2, 3)),
    ("pad", lambda x: kiln.pad(x, 1), np_ref(lambda x: np.pad(x, 1)), (0, 2)),
    ("pad", lambda x: kiln.pad(x, 0), np_ref(lambda x: np.pad(x, 0)), ()),
    ("repeat", lambda x: kiln.repeat(x, 2), np_ref(lambda x: np.repeat(x, 2)), (2, 3)),
    ("repeat", lambda x: kiln.repeat(x, 3, axis=1), np_ref(lambda x: np.repeat(x, 3, axis=1)), (2, 2, 1)),
    ("repeat", lambda x: kiln.repeat(x, 0, axis=0), np_ref(lambda x: np.repeat(x, 0, axis=0)), (2, 2)),
    ("repeat", lambda x: kiln.repeat(x, 2), np_ref(lambda x: np.repeat(x, 2)), ()),
    ("tile", lambda x: kiln.tile(x, (2, 3)), np_ref(lambda x: np.tile(x, (2, 3))), (2, 2)),
    ("tile", lambda x: kiln.tile(x, (2, 1, 2)), np_ref(lambda x: np.tile(x, (2, 1, 2))), (3,)),
    ("tile", lambda x: kiln.tile(x, 2), np_ref(lambda x: np.tile(x, 2)), (2, 3)),
    ("tile", lambda x: kiln.tile(x, (0, 2)), np_ref(lambda x: np.tile(x, (0, 2))), (1, 2)),
    ("reverse", kiln.flip, lambda x: x.flip(list(range(x.ndim))), (2, 3)),
    ("reverse", lambda x: kiln.flip(x, -1), lambda x: x.flip(-1), (2, 1, 4)),
    ("reverse", lambda x: kiln.flip(x, (0, 2)), lambda x: x.flip((0, 2)), (2, 0, 3)),
    ("cast", lambda x: kiln.cast(x, F32), lambda x: x.to(torch.float32), (2, 3)),
    ("cast", lambda x: x.astype(I64), lambda x: x.to(torch.int64), (3,)),
    ("cast", lambda x: x.astype(BOOL), lambda x: x.to(torch.bool), (2, 2)),
    ("cast", lambda x: x.astype(U8), lambda x: x.to(torch.uint8), ()),
    ("cast", lambda x: x.astype(BF16), lambda x: x.to(torch.bfloat16), (0, 3)),
    ("cast", lambda x: x.astype(F16), lambda x: x.to(torch.float16), (4,)),
    ("cast", lambda x: x.astype(I8), lambda x: x.to(torch.int8), (4,)),
]
COVERED.update(r[0] for r in LAYOUT)


@pytest.mark.parametrize("dt", ALL)
@pytest.mark.parametrize("op", sorted({r[0] for r in LAYOUT}))
def test_layout(rng, op, dt):
    each([r for r in LAYOUT if r[0] == op],
         lambda r: vs_torch(r[1], r[2], [rand(rng, r[3], dt, "half" if op == "cast" else "any")]))


COVERED.update(("concatenate", "stack", "split"))


@pytest.mark.parametrize("dt", ALL)
def test_concatenate_stack_split(rng, dt):
    def cat(c):
        shapes, axis = c
        vs_torch(lambda *a: kiln.concatenate(a, axis=axis), lambda *a: torch.cat(a, axis),
                 [rand(rng, s, dt) for s in shapes])
    each([([(2, 3), (1, 3), (0, 3)], 0), ([(2, 1), (2, 4)], -1), ([(3,)], 0), ([(2, 0, 1), (2, 2, 1)], 1)], cat)

    def stk(c):
        shapes, axis = c
        vs_torch(lambda *a: kiln.stack(a, axis=axis), lambda *a: torch.stack(a, axis), [rand(rng, s, dt) for s in shapes])
    each([([(2, 3)] * 3, 0), ([(2, 3)] * 2, 2), ([()] * 4, 0), ([(0, 2)] * 2, -1), ([(3,)], -2)], stk)

    def spl(c):
        shape, parts, axis = c
        x = rand(rng, shape, dt)
        out = kiln.split(x.kiln(), parts, axis=axis)
        ref = np.split(x.x, parts, axis=axis)
        assert isinstance(out, tuple) and len(out) == len(ref)
        for o, r in zip(out, ref):
            check(o, r, dt)
    each([((6, 2), 3, 0), ((2, 6), [1, 4], 1), ((5,), [2, 2, 7], 0), ((0, 4), 2, 1), ((4,), 1, -1)], spl)
    with pytest.raises(kiln.Error):
        kiln.split(kiln.ones((5,)), 2)


def _indices(rng, shape, n, neg=True):
    """int64 indices into a dim of size n, negatives included when neg."""
    return In(rng.integers(-n if neg else 0, n, shape), I64)


COVERED.update(("take", "embedding", "gather", "gather_nd", "scatter", "one_hot"))


@pytest.mark.parametrize("dt", ALL)
def test_take(rng, dt):
    """numpy.take with its three modes (raise: negatives count from the end)."""
    def case(c):
        shape, ishape, axis, mode = c
        x = rand(rng, shape, dt)
        n = int(np.prod(shape)) if axis is None else shape[axis]
        idx = In(rng.integers(-2 * n - 1, 2 * n + 2, ishape), I64) if mode != "raise" else _indices(rng, ishape, n)
        vs_torch(lambda a, i: kiln.take(a, i, axis=axis, mode=mode),
                 np_ref(lambda a, i: np.take(a, i, axis=axis, mode=mode)), [x, idx])
    each([(s, i, a, m) for s, i, a in (((3, 4), (2,), 0), ((3, 4), (2, 2), 1), ((3, 4), (), -1), ((2, 3), (4,), None),
                                       ((5,), (0,), 0), ((2, 3, 2), (1, 3), 1))
          for m in ("raise", "clip", "wrap")], case)
    vs_torch(lambda a: kiln.take(a, 1, axis=0), lambda a: a[1], [rand(rng, (3, 2), dt)])
    vs_torch(lambda a, i: kiln.take(a, i.astype(I32), axis=1), np_ref(lambda a, i: np.take(a, i, axis=1)),
             [rand(rng, (2, 5), dt), _indices(rng, (3,), 5)])


@pytest.mark.parametrize("dt", FLOATS + (I64,))
def test_embedding(rng, dt):
    def case(c):
        vocab, ishape = c
        w = rand(rng, (vocab, 3), dt)
        vs_torch(kiln.embedding, lambda a, i: F.embedding(i, a), [w, _indices(rng, ishape, vocab, neg=False)])
    each([(5, (4,)), (5, (2, 3)), (1, ()), (4, (0,))], case)


@pytest.mark.parametrize("dt", ALL)
def test_gather_scatter(rng, dt):
    def gat(c):
        shape, ishape, axis = c
        vs_torch(lambda a, i: kiln.gather(a, i, axis), lambda a, i: torch.gather(a, axis, i),
                 [rand(rng, shape, dt), _indices(rng, ishape, shape[axis], neg=False)])
    each([((3, 4), (2, 4), 0), ((3, 4), (3, 2), 1), ((3, 4), (1, 1), -1), ((2, 3, 2), (2, 5, 1), 1), ((3,), (0,), 0)], gat)

    def sca(c):
        shape, ishape, axis, red = c
        if red == "add" and dt == BOOL:
            return  # torch has no bool scatter_add
        perm = np.argsort(rng.random(shape), axis=axis)  # distinct positions per line: no write-order issue
        idx = In(perm[tuple(slice(0, n) for n in ishape)], I64)
        src = rand(rng, ishape, dt)
        ref = (lambda a, i, s: torch.scatter_add(a, axis, i, s)) if red == "add" else \
              (lambda a, i, s: torch.scatter(a, axis, i, s))
        vs_torch(lambda a, i, s: kiln.scatter(a, i, s, axis, reduce=red), ref, [rand(rng, shape, dt), idx, src])
    each([(s, i, a, r) for s, i, a in (((3, 4), (2, 4), 0), ((3, 4), (3, 2), 1), ((2, 3, 2), (2, 2, 2), -2))
          for r in (None, "add")], sca)
    # scatter-add with repeated positions accumulates
    vs_torch(lambda a, i, s: kiln.scatter(a, i, s, 0, reduce="add"), lambda a, i, s: torch.scatter_add(a, 0, i, s),
             [rand(rng, (3,), F32), In(np.array([0, 2, 0, 0]), I64), rand(rng, (4,), F32)])


def np_gather_nd(x, idx, b):
    """ONNX GatherND: the last dim of idx holds coordinates into x's dims after the b batch dims."""
    k = idx.shape[-1]
    out = np.empty(idx.shape[:-1] + x.shape[b + k:], x.dtype)
    for pos in np.ndindex(*idx.shape[:-1]):
        out[pos] = x[pos[:b] + tuple(idx[pos])]
    return out


@pytest.mark.parametrize("dt", ALL)
def test_gather_nd(rng, dt):
    def case(c):
        shape, ishape, b = c
        k = ishape[-1]
        idx = np.stack([rng.integers(0, shape[b + j], ishape[:-1]) for j in range(k)], -1).astype(np.int64)
        vs_torch(lambda a, i: kiln.gather_nd(a, i, batch_dims=b), np_ref(lambda a, i: np_gather_nd(a, i, b)),
                 [rand(rng, shape, dt), In(idx, I64)])
    each([((3, 4), (2, 2), 0), ((3, 4), (5, 1), 0), ((2, 3, 4), (2, 2), 1), ((2, 3, 4), (2, 3, 2), 1),
          ((3, 4), (0, 2), 0), ((4,), (1,), 0)], case)


def np_one_hot(idx, depth, on, off, axis, dtype):
    """one_hot with ONNX's rule: negative indices count from the end; others out of range are off."""
    idx = np.where(idx < 0, idx + depth, idx)
    y = np.where(idx[..., None] == np.arange(depth), on, off).astype(dtype)
    return np.moveaxis(y, -1, axis)


@pytest.mark.parametrize("dt", INTS)
def test_one_hot(rng, dt):
    def case(c):
        ishape, depth, on, off, axis, odt = c
        idx = In(rng.integers(-depth if dt != U8 else 0, depth + 2, ishape), dt)
        out = kiln.one_hot(idx.kiln(), depth, on_value=on, off_value=off, axis=axis, dtype=odt)
        check(out, np_one_hot(idx.x.astype(np.int64), depth, on, off, axis, np.float64), odt)
    each([((4,), 3, 1.0, 0.0, -1, F32), ((2, 3), 4, 5.0, -1.0, 0, I32), ((), 3, 1.0, 0.0, -1, BOOL),
          ((2, 2), 2, 0.5, 0.25, 1, BF16), ((0,), 3, 1.0, 0.0, -1, F64)], case)
    check(kiln.one_hot(kiln.array(np.array([1, 0]), dtype=dt), 2), F.one_hot(torch.tensor([1, 0]), 2).float(), F32)


COVERED.add("resize2d")


@pytest.mark.parametrize("dt", FLOATS)
def test_resize2d(rng, dt):
    def case(c):
        shape, size, mode, ac = c
        ref = (lambda x: F.interpolate(x, size=size, mode="nearest")) if mode == "nearest" else \
              (lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=ac))
        vs_torch(lambda x: kiln.resize2d(x, size, mode=mode, align_corners=ac), ref, [rand(rng, shape, dt)], scale=4)
    each([(s, z, m, ac) for s, z in (((1, 2, 3, 4), (6, 8)), ((2, 1, 5, 5), (3, 2)), ((1, 1, 1, 1), (3, 2)),
                                     ((1, 1, 4, 3), (4, 3)), ((0, 1, 2, 2), (4, 4)))
          for m, ac in (("nearest", False), ("bilinear", False), ("bilinear", True))], case)


# ---- creation ---------------------------------------------------------------------------------
COVERED.update(("full", "zeros", "ones", "full_like", "zeros_like", "ones_like", "arange"))


@pytest.mark.parametrize("dt", ALL)
def test_creation(dt):
    for shape in ((), (0,), (2, 3), (1, 0, 2)):
        value = 1 if dt == BOOL else 3 if dt in INTS else 2.5
        check(kiln.full(shape, value, dtype=dt), torch.full(shape, value, dtype=TORCH_DT[dt]), dt)
        check(kiln.zeros(shape, dtype=dt), torch.zeros(shape, dtype=TORCH_DT[dt]), dt)
        check(kiln.ones(shape, dtype=dt), torch.ones(shape, dtype=TORCH_DT[dt]), dt)
        src = kiln.zeros(shape, dtype=dt)
        check(kiln.full_like(src, value), torch.full(shape, value, dtype=TORCH_DT[dt]), dt)
        check(kiln.zeros_like(src), torch.zeros(shape, dtype=TORCH_DT[dt]), dt)
        check(kiln.ones_like(src), torch.ones(shape, dtype=TORCH_DT[dt]), dt)
        check(kiln.ones_like(src, dtype=F64), torch.ones(shape, dtype=torch.float64), F64)
        check(kiln.full_like(src, 1, dtype=I8), torch.ones(shape, dtype=torch.int8), I8)
    if dt != BOOL:
        check(kiln.arange(0, 5, 2, dtype=dt), torch.arange(0, 5, 2, dtype=TORCH_DT[dt]), dt)


def test_creation_defaults():
    """Default dtypes follow torch: float32 for float values, int64 for ints, bool for bools."""
    check(kiln.full((2,), 1.5), torch.full((2,), 1.5), F32)
    check(kiln.full((2,), 7), torch.full((2,), 7), I64)
    check(kiln.full((2,), True), torch.full((2,), True), BOOL)
    check(kiln.zeros(3), torch.zeros(3), F32)
    for args in ((5,), (2, 9), (0, 2.5, 0.5), (5, 0, -1), (1.0, 2.0, 0.25), (3, 3), (-2.5, 1), (0, 1, 0.1)):
        check(kiln.arange(*args), torch.arange(*args), torch.arange(*args).dtype)
    with pytest.raises(kiln.Error):
        kiln.arange(0, 5, 0)


# ---- random -----------------------------------------------------------------------------------
COVERED.update(("random_uniform", "random_normal", "dropout"))


@pytest.mark.parametrize("dt", FLOATS)
def test_random_uniform(dt):
    a = kiln.random_uniform(7, (200, 100), dtype=dt, low=-2.0, high=3.0)
    assert a.dtype == kdt(dt) and a.shape == (200, 100)
    x = a.numpy().astype(np.float64)
    assert x.min() >= -2.0 and x.max() < 3.0
    assert abs(x.mean() - 0.5) < 0.05 and abs(x.var() - 25 / 12) < 0.1
    hist = np.histogram(x, bins=10, range=(-2, 3))[0] / x.size
    assert np.all(np.abs(hist - 0.1) < 0.01)
    np.testing.assert_array_equal(x, kiln.random_uniform(kiln.array(np.array([7])), (200, 100), dtype=dt, low=-2.0,
                                                         high=3.0).numpy())  # same key, same numbers
    assert not np.array_equal(x, kiln.random_uniform(8, (200, 100), dtype=dt, low=-2.0, high=3.0).numpy())
    # counter-based: element i depends on (key, i) only, so a prefix is a smaller draw
    flat = kiln.random_uniform(7, (20000,), dtype=dt, low=-2.0, high=3.0).numpy()
    np.testing.assert_array_equal(flat[:50], kiln.random_uniform(7, (50,), dtype=dt, low=-2.0, high=3.0).numpy())
    assert kiln.random_uniform(1, (0, 3), dtype=dt).shape == (0, 3) and kiln.random_uniform(1, (), dtype=dt).shape == ()


@pytest.mark.parametrize("dt", FLOATS)
def test_random_normal(dt):
    a = kiln.random_normal(3, (40000,), dtype=dt, mean=1.5, std=2.0)
    assert a.dtype == kdt(dt) and a.shape == (40000,)
    x = a.numpy().astype(np.float64)
    assert abs(x.mean() - 1.5) < 0.05 and abs(x.std() - 2.0) < 0.05
    z = (x - 1.5) / 2
    assert abs(np.mean(z ** 3)) < 0.1 and abs(np.mean(z ** 4) - 3) < 0.2  # skew 0, kurtosis 3
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01
    np.testing.assert_array_equal(x, kiln.random_normal(3, (40000,), dtype=dt, mean=1.5, std=2.0).numpy().astype(np.float64))
    assert not np.array_equal(x, kiln.random_normal(4, (40000,), dtype=dt, mean=1.5, std=2.0).numpy().astype(np.float64))


@pytest.mark.parametrize("dt", FLOATS)
def test_dropout(rng, dt):
    x = rand(rng, (100, 50), dt, "nonzero")
    for rate in (0.0, 0.3, 0.9):
        y = kiln.dropout(x.kiln(), 11, rate=rate)
        assert y.dtype == kdt(dt) and y.shape == x.x.shape
        # the mask is documented: random_uniform(key, x.shape, f32) >= rate
        keep = kiln.random_uniform(11, x.x.shape).numpy() >= rate
        ref = np.where(keep, x.x.astype(np.float64) / (1 - rate), 0.0)
        np.testing.assert_allclose(y.numpy().astype(np.float64), ref, rtol=TOL[dt][0], atol=TOL[dt][1])
        assert abs(1 - keep.mean() - rate) < 0.02
        np.testing.assert_array_equal(y.numpy(), kiln.dropout(x.kiln(), 11, rate=rate).numpy())


# ---- sorting ----------------------------------------------------------------------------------
COVERED.update(("sort", "argsort", "topk"))
SORT_SHAPES = [((7,), -1), ((3, 5), 0), ((3, 5), 1), ((2, 3, 4), 1), ((), 0), ((0, 3), 1), ((4, 0), 0), ((1,), 0)]


@pytest.mark.parametrize("dt", NUM)
def test_sort_argsort(rng, dt):
    """Stable sorts (ties keep their order, descending too), as torch's stable=True."""
    def case(c):
        (shape, axis), desc = c
        x = rand(rng, shape, dt, "half")  # many ties
        vs_torch(lambda a: kiln.sort(a, axis, descending=desc),
                 lambda a: torch.sort(a, dim=axis, descending=desc, stable=True).values, [x])
        vs_torch(lambda a: kiln.argsort(a, axis, descending=desc),
                 lambda a: torch.sort(a, dim=axis, descending=desc, stable=True).indices, [x])
    each([(c, d) for c in SORT_SHAPES for d in (False, True)], case)


@pytest.mark.parametrize("dt", NUM)
def test_topk(rng, dt):
    def case(c):
        shape, k, axis, largest = c
        n = shape[axis] if shape else 1
        base = rng.permutation(int(np.prod(shape)) or 1)[:int(np.prod(shape))]  # distinct values: no ties
        x = In((base.reshape(shape) % 120).astype(values(rng, (), dt).dtype) if dt in INTS else
               values(rng, shape, dt), dt)
        assert k <= n
        vs_torch(lambda a: kiln.topk(a, k, axis=axis, largest=largest),
                 lambda a: tuple(torch.topk(a, k, axis, largest=largest)), [x])
    each([((7,), 3, -1, True), ((3, 5), 2, 1, False), ((4, 3), 4, 0, True), ((2, 3, 4), 1, -1, True), ((5,), 0, 0, True),
          ((2, 3), 3, 1, False), ((), 1, 0, True)], case)
    with pytest.raises(kiln.Error):
        kiln.topk(kiln.ones((3,)), 4)


# ---- Python operators -------------------------------------------------------------------------
OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
             operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


def _np_op_check(out, expected, torch_expected):
    """Values from numpy, dtype from torch (kiln promotes as torch: int / int is float32)."""
    check(out, np.asarray(expected), torch_expected.dtype, scale=2)


@pytest.mark.parametrize("dt", (F32, F64, I64, I32))
@pytest.mark.parametrize("op", OPERATORS, ids=[o.__name__ for o in OPERATORS])
def test_python_operators(rng, op, dt):
    """Tensor ⊕ tensor, tensor ⊕ numpy array, numpy array ⊕ tensor (reflected), tensor ⊕ Python
    scalar and Python scalar ⊕ tensor, against numpy values (0-d and broadcast shapes)."""
    kind = "pos" if op in (operator.pow, operator.truediv, operator.floordiv, operator.mod) else "half"
    for sa, sb in (((2, 3), (2, 3)), ((2, 1), (3,)), ((), (2,)), ((3,), ())):
        a, b = values(rng, sa, dt, kind), values(rng, sb, dt, kind)
        if op is operator.pow and dt in INTS:
            b = np.asarray(b % 4)
        ka, kb, ta, tb = kiln.array(a), kiln.array(b), torch.from_numpy(a), torch.from_numpy(b)
        _np_op_check(op(ka, kb), op(a, b), op(ta, tb))
        _np_op_check(op(ka, b), op(a, b), op(ta, tb))
        _np_op_check(op(a, kb), op(a, b), op(ta, tb))
        for s in (2, 1.5):
            if op is operator.pow and dt in INTS and isinstance(s, float):
                continue
            _np_op_check(op(ka, s), op(a, s), op(ta, s))
            _np_op_check(op(s, kb), op(s, b), op(s, tb))


@pytest.mark.parametrize("dt", (F32, I64, F64))
def test_unary_and_matmul_operators(rng, dt):
    a, m1, m2 = values(rng, (2, 3), dt), values(rng, (2, 3), dt), values(rng, (3, 4), dt)
    check(-kiln.array(a), -a, dt)
    check(+kiln.array(a), a, dt)
    check(abs(kiln.array(a)), np.abs(a), dt)
    check(kiln.array(m1) @ kiln.array(m2), m1.astype(np.float64) @ m2, dt, scale=4)
    check(m1 @ kiln.array(m2), m1.astype(np.float64) @ m2, dt, scale=4)
    check(kiln.array(m1) @ m2, m1.astype(np.float64) @ m2, dt, scale=4)
    b = values(rng, (2, 3), BOOL)
    check(~kiln.array(b), ~b, BOOL)
    check(kiln.array(b) & kiln.array(~b), b & ~b, BOOL)
    check(kiln.array(b) | b, b | b, BOOL)
    check(b ^ kiln.array(b), b ^ b, BOOL)
    if dt == I64:
        check(~kiln.array(a), ~a, I64)
        check(kiln.array(a) << 2, a << 2, I64)
        check(kiln.array(a) >> 1, a >> 1, I64)


def test_bool_arithmetic_promotes_as_torch():
    """bool + bool stays bool (logical or), bool tensors take the other operand's dtype."""
    t, f = kiln.array(np.array([True, False])), kiln.array(np.array([True, True]))
    check(t + f, torch.tensor([True, False]) + torch.tensor([True, True]), BOOL)
    check(t * f, torch.tensor([True, False]) * torch.tensor([True, True]), BOOL)
    check(t + kiln.array(np.array([3, 4], np.int8)), np.array([4, 4], np.int8), I8)
    check(kiln.array(np.array([3, 4], np.int8)) - t, np.array([2, 4], np.int8), I8)
    check(t + 2, np.array([3, 2]), I64)
    check(t * 2.5, np.array([2.5, 0.0], np.float32), F32)
    check(t / f, np.array([1.0, 0.0], np.float32), F32)
    check(kiln.array(np.array([1.5], np.float16)) + True, np.array([2.5], np.float16), F16)


# ---- indexing ---------------------------------------------------------------------------------
INDEX_KEYS = [
    1, -1, (0, 1), (1, -2, 3), (slice(None), 1), slice(None, None, -1), slice(1, None), slice(-2, None),
    slice(None, None, 2), (slice(None), slice(3, 0, -2)), (slice(None), slice(None), slice(-1, -5, -3)),
    slice(5, 10), slice(None, -5, -1), (Ellipsis, 1), (0, Ellipsis, -1), Ellipsis, (None, 0), (0, None),
    (slice(1, None), None, slice(None, None, 2)), (None, Ellipsis, None), np.int64(1), (),
    np.array([1, 0, 1]), [0, -1], (slice(None), [2, 0, 1]), (slice(None), slice(None), np.array([[0, 3], [1, 2]])),
    (1, [0, 2]), np.array([True, False]), (slice(None), np.array([True, False, True])), (0, slice(None), [-1]),
    (slice(None), np.array([], np.int64)), (0, slice(None), [-1]), (slice(None), 0, [1, 2]), ([1], slice(None), 0),
    (None, 0, [1]), (0, None, [1]), (slice(None), [[0, 1]], None), (0, slice(None)), (slice(None, None, -2), 0),
]


@pytest.mark.parametrize("dt", (F32, I64, BOOL, BF16))
def test_indexing(rng, dt):
    x = values(rng, (2, 3, 4), dt)
    kx = kiln.array(x, dtype=dt)

    def case(key):
        check(kx[key], x[key], dt)
    each(INDEX_KEYS, case)


def test_indexing_kiln_tensors_and_0d(rng):
    x = values(rng, (3, 4), F32)
    kx = kiln.array(x)
    check(kx[kiln.array(np.array([2, 0]))], x[[2, 0]], F32)
    check(kx[kiln.array(np.array(1))], x[1], F32)
    check(kx[:, kiln.array(np.array([True, False, False, True]))], x[:, [True, False, False, True]], F32)
    s = kiln.array(np.array(2.5, np.float32))
    for key in ((), Ellipsis, None, (None, None)):
        check(s[key], np.array(2.5, np.float32)[key], F32)
    e = kiln.zeros((0, 3))
    check(e[:, 1], np.zeros((0, 3), np.float32)[:, 1], F32)
    check(e[::-1], np.zeros((0, 3), np.float32), F32)


@pytest.mark.parametrize("key", [5, -4, (0, 0, 0), (0, 9), 1.5, "a", np.array([3]), np.array([True, True]),
                                 (Ellipsis, Ellipsis), True],
                         ids=lambda k: repr(k))
def test_bad_indexing_raises(key):
    """Bad indices raise IndexError / TypeError / kiln.Error as numpy would refuse them; no crash."""
    kx = kiln.zeros((3, 2))
    with pytest.raises((IndexError, TypeError, ValueError, kiln.Error)):
        kx[key]


# ---- errors -----------------------------------------------------------------------------------
def test_shape_mismatch_is_a_type_error():
    with pytest.raises(kiln.Error) as e:
        kiln.add(kiln.ones((2, 3)), kiln.ones((4,)))
    assert isinstance(e.value, TypeError)
    msg = str(e.value)
    assert "add" in msg and "[2, 3]" in msg and "[4]" in msg
    with pytest.raises(TypeError, match="matmul"):
        kiln.matmul(kiln.ones((2, 3)), kiln.ones((2, 3)))
    with pytest.raises(TypeError, match="concatenate"):
        kiln.concatenate([kiln.ones((2, 3)), kiln.ones((2, 4))])


def test_out_of_range_take_is_a_value_error():
    with pytest.raises(kiln.Error) as e:
        kiln.take(kiln.ones((2, 3)), kiln.array(np.array([0, 5])), axis=1)
    assert isinstance(e.value, ValueError)
    assert "take" in str(e.value) and "5" in str(e.value) and "out of range" in str(e.value)
    with pytest.raises(ValueError, match="gather"):
        kiln.gather(kiln.ones((2, 3)), kiln.array(np.array([[3, 0, 0]])), 1)
    with pytest.raises(ValueError, match="division by zero"):
        kiln.floor_divide(kiln.array(np.array([1, 2])), 0)


def test_error_carries_the_c_message():
    with pytest.raises(kiln.Error) as e:
        kiln.sum(kiln.ones((2, 3)), axis=4)
    assert str(e.value).startswith("op 'sum'") and "axis 4" in str(e.value)
    with pytest.raises(kiln.Error, match="dtype"):
        kiln.left_shift(kiln.ones((2,)), kiln.ones((2,)))


# Calls a user may make with wrong arguments: each must raise an exception, never crash. Run in a
# child process so that a crash fails this test instead of killing the test run.
BAD_CALLS = r'''
import numpy as np, kiln
x = kiln.ones((2, 3))
calls = [
    lambda: kiln.add(x, "a"), lambda: kiln.add(x, None), lambda: kiln.add(x, [[1, 2]]),
    lambda: kiln.zeros((-1,)), lambda: kiln.zeros((2 ** 40, 2 ** 40)), lambda: kiln.zeros((2 ** 62,)),
    lambda: kiln.ones((2 ** 63 - 1, 2)), lambda: kiln.zeros((1,) * 64), lambda: kiln.zeros(("a",)),
    lambda: kiln.full((2,), "x"), lambda: kiln.reshape(x, (-1, -1)), lambda: kiln.reshape(x, (4,)),
    lambda: kiln.reshape(x, (-2, 3)), lambda: kiln.broadcast_to(x, (-1, 3)), lambda: kiln.transpose(x, (0, 0)),
    lambda: kiln.transpose(x, (0, 5)), lambda: kiln.sum(x, axis=(0, 0)), lambda: kiln.sum(x, axis=-3),
    lambda: kiln.argmax(x, axis=2), lambda: kiln.cumsum(x, axis=9), lambda: kiln.softmax(x, axis=2),
    lambda: kiln.take(x, kiln.array(np.array([1.5]))), lambda: kiln.take(x, kiln.array(np.array([2 ** 62]))),
    lambda: kiln.take(x, kiln.array(np.array([-(2 ** 63)])), mode="wrap") + None,
    lambda: kiln.gather_nd(x, kiln.array(np.array([[5, 0]]))), lambda: kiln.gather_nd(x, kiln.array(np.array([[0, 0, 0]]))),
    lambda: kiln.scatter(x, kiln.array(np.array([[9]])), x, 0), lambda: kiln.one_hot(kiln.array(np.array([1])), -3),
    lambda: kiln.one_hot(x, 3), lambda: kiln.pad(x, ((-5, 0), (0, 0))), lambda: kiln.pad(x, 3, mode="reflect"),
    lambda: kiln.pad(x, 1, mode="bogus"), lambda: kiln.repeat(x, -1), lambda: kiln.tile(x, (-1,)),
    lambda: kiln.split(x, 0), lambda: kiln.split(x, 4), lambda: kiln.strided_slice(x, [0], [1], [0]),
    lambda: kiln.conv2d(kiln.ones((1, 1, 2, 2)), kiln.ones((1, 1, 3, 3))),
    lambda: kiln.conv2d(kiln.ones((1, 2, 4, 4)), kiln.ones((1, 2, 1, 1)), stride=0),
    lambda: kiln.conv2d(kiln.ones((1, 2, 4, 4)), kiln.ones((1, 2, 1, 1)), groups=0),
    lambda: kiln.conv2d(kiln.ones((1, 2, 4, 4)), kiln.ones((1, 2, 1, 1)), padding=-1),
    lambda: kiln.conv2d_transpose(kiln.ones((1, 2, 4, 4)), kiln.ones((2, 1, 1, 1)), stride=0),
    lambda: kiln.max_pool2d(kiln.ones((1, 1, 2, 2)), 5), lambda: kiln.max_pool2d(kiln.ones((1, 1, 4, 4)), 2, stride=0),
    lambda: kiln.avg_pool2d(kiln.ones((1, 1, 4, 4)), 2, padding=2), lambda: kiln.adaptive_avg_pool2d(kiln.ones((1, 1, 4, 4)), 0),
    lambda: kiln.resize2d(kiln.ones((1, 1, 2, 2)), (0, -1)), lambda: kiln.resize2d(kiln.ones((1, 1, 2, 2)), 4, mode="x"),
    lambda: kiln.nll_loss(kiln.ones((2, 3)), kiln.array(np.array([0, 7]))),
    lambda: kiln.cross_entropy(kiln.ones((2, 3)), kiln.array(np.array([0]))),
    lambda: kiln.layer_norm(x, kiln.ones((4,))), lambda: kiln.batch_norm_train(x, x, x),
    lambda: kiln.topk(x, -1), lambda: kiln.sort(x, axis=3), lambda: kiln.arange(0, 1e30, 1e-30),
    lambda: kiln.arange(0, float("nan")), lambda: kiln.random_uniform(1.5, (2,)), lambda: kiln.random_normal(x, (2,)),
    lambda: kiln.random_uniform(1, (-2,)), lambda: kiln.dropout(x, 1, rate=1.5), lambda: kiln.cast(x, "int16"),
    lambda: kiln.full((2,), 1, dtype="complex64"), lambda: kiln.sum_to(x, (5,)), lambda: kiln.bias_add(x, kiln.ones((5,))),
    lambda: kiln.dense(x, kiln.ones((3,))), lambda: kiln.where(x, x, x), lambda: kiln.expand_dims(x, 7),
    lambda: kiln.squeeze(x, 0), lambda: kiln.swapaxes(x, 0, 4), lambda: kiln.concatenate([]), lambda: kiln.stack([]),
    lambda: kiln.embedding(x, kiln.array(np.array([9]))), lambda: kiln.matmul(x, 3), lambda: kiln.batch_matmul(x, x),
    lambda: kiln.array(np.array([object()])), lambda: kiln.array(np.array(["a"])), lambda: kiln.array(np.zeros(3, np.complex64)),
    lambda: kiln.clip(x, "a"), lambda: kiln.power(kiln.array(np.array([2])), -1), lambda: kiln.mod(kiln.array(np.array([2])), 0),
    lambda: kiln.left_shift(kiln.array(np.array([1])), -1) + "x",
]
raised = 0
for i, f in enumerate(calls):
    try:
        f()
    except Exception:
        raised += 1
    else:
        print("no error from call", i)
print("raised", raised, "of", len(calls))
'''


def test_bad_arguments_never_crash():
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", BAD_CALLS], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(root / "python"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, f"child exited with {r.returncode}: {r.stderr[-2000:]}"
    lines = r.stdout.strip().splitlines()
    n = int(lines[-1].split()[-1])
    assert lines == [f"raised {n} of {n}"], r.stdout


# ---- every op of the table has a test ---------------------------------------------------------
def test_every_op_is_covered():
    names = [lib.kiln_op_name(i).decode() for i in range(lib.kiln_op_count())]
    assert len(names) == len(set(names)) > 100
    # backward-only primitives (`*_backward*`) serve gradient rules and are checked there:
    # against finite differences and hand values in tests/c/test_grad_*.c
    missing = [n for n in names if n not in STRUCTURAL and n not in COVERED and "_backward" not in n]
    assert not missing, f"ops without a test in test_ops_vs_torch.py: {missing}"
    unknown = COVERED - set(names)
    assert not unknown, f"coverage table names ops the library lacks: {sorted(unknown)}"
