"""_core.py — the Tensor type and op dispatch: every op call either runs eagerly in C
(kiln_op_run) or, while a trace is active, is emitted into the trace's IR function."""
import ctypes
import math
import threading

import numpy as np

from . import devices as _devices
from . import dtypes as _dt
from ._lib import (VALUE_BOOL, VALUE_FLOAT, VALUE_INT, VALUE_TENSOR, VALUE_TUPLE, Value, check, check_ptr, ctx, lib,
                   shape_array)

_tls = threading.local()


def current_trace():
    """The innermost active trace (see trace.py), or None when running eagerly."""
    stack = getattr(_tls, "traces", None)
    return stack[-1] if stack else None


def push_trace(t):
    if not hasattr(_tls, "traces"):
        _tls.traces = []
    _tls.traces.append(t)


def pop_trace():
    _tls.traces.pop()


class Tensor:
    """An n-dimensional array. Concrete tensors own a reference to a C kiln_tensor; symbolic
    tensors (inside a trace) stand for an IR variable and carry only dtype and shape."""

    __slots__ = ("_ptr", "_var", "_trace", "_shape", "_dtype", "requires_grad", "grad", "_grad_fn", "__weakref__")
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, *args, **kwargs):
        raise TypeError("create tensors with kiln.array(...), kiln.zeros(...) and the like")

    @classmethod
    def _own(cls, ptr):
        """Wraps a C tensor reference (taken over)."""
        t = object.__new__(cls)
        t._ptr, t._var, t._trace = ptr, None, None
        t.requires_grad, t.grad, t._grad_fn = False, None, None
        nd = lib.kiln_tensor_ndim(ptr)
        sp = lib.kiln_tensor_shape(ptr)
        t._shape = tuple(sp[i] for i in range(nd))
        t._dtype = _dt.from_code(lib.kiln_tensor_dtype(ptr))
        return t

    @classmethod
    def _symbolic(cls, var, trace, dtype, shape):
        t = object.__new__(cls)
        t._ptr, t._var, t._trace, t._dtype, t._shape = None, var, trace, dtype, tuple(shape)
        t.requires_grad, t.grad, t._grad_fn = False, None, None
        return t

    def __del__(self):
        if getattr(self, "_ptr", None):
            lib.kiln_tensor_release(self._ptr)
            self._ptr = None

    # ---- properties ---------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def size(self):
        return math.prod(self._shape)

    @property
    def device(self):
        """Where the data lives: a kiln.device, equal to "cpu" or "cuda:N" (traced tensors: "cpu")."""
        return _devices.CPU if self._ptr is None else _devices.of_tensor(self._ptr)

    def _on_host(self):
        return self._ptr is None or not self.device.is_cuda

    def to(self, device):
        """This tensor on `device` ("cpu", "cuda", "cuda:N", a kiln.device): a copy, or self
        when it is already there."""
        self._require_concrete("to()")
        d = _devices.device(device)
        if self.device == d:
            return self
        return Tensor._own(check_ptr(lib.kiln_tensor_to(ctx, self._ptr, d._c)))

    def cpu(self):
        return self.to(_devices.CPU)

    def cuda(self, index=None):
        return self.to("cuda" if index is None else f"cuda:{int(index)}")

    def _move_(self, device):
        """Moves the data to `device` in place: this object then holds the copy (Model.to)."""
        ptr = check_ptr(lib.kiln_tensor_to(ctx, self._ptr, _devices.device(device)._c))
        old, self._ptr = self._ptr, ptr
        lib.kiln_tensor_release(old)

    @property
    def is_symbolic(self):
        return self._ptr is None

    def __len__(self):
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __repr__(self):
        if self.is_symbolic:
            return f"kiln.Tensor(<traced>, shape={self._shape}, dtype={self._dtype.name})"
        body = np.array2string(self.numpy(), separator=", ", prefix="kiln.array(")
        where = "" if self._on_host() else f", device='{self.device}'"
        return f"kiln.array({body}, dtype={self._dtype.name}{where})"

    # ---- numpy exchange -------------------------------------------------------------------------
    def _require_concrete(self, what):
        if self.is_symbolic:
            raise TypeError(f"{what} of a traced tensor: its value is only known when the traced function runs")

    @property
    def __array_interface__(self):
        self._require_concrete("numpy view")
        if not self._on_host():  # numpy then calls __array__, which copies to the host
            raise AttributeError("a device tensor has no numpy view")
        if self._dtype is _dt.bfloat16:
            raise TypeError("bfloat16 has no numpy dtype; use .numpy() (converts to float32)")
        return {"shape": self._shape, "typestr": self._dtype.np_dtype.str, "version": 3,
                "data": (lib.kiln_tensor_data(self._ptr) or 0, False)}

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def numpy(self):
        """A numpy view of the data (no copy; bfloat16 converts to a float32 copy; a device
        tensor is copied to the host)."""
        self._require_concrete("numpy()")
        if not self._on_host():
            return self.cpu().numpy()
        if self._dtype is _dt.bfloat16:
            return self.astype(_dt.float32).numpy()
        return np.asarray(self)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor of one element, this one has shape {self._shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        self._require_concrete("bool()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._dtype.is_floating_point or self._dtype is _dt.bool_:
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def astype(self, dtype):
        return apply("cast", [self], {"dtype": _dt.as_dtype(dtype)})


# ---- values between Python and C -------------------------------------------------------------
def to_value(x):
    """A borrowed kiln_value for a concrete Tensor or a Python scalar."""
    v = Value()
    if isinstance(x, Tensor):
        v.kind, v.tensor = VALUE_TENSOR, x._ptr
    elif isinstance(x, (bool, np.bool_)):
        v.kind, v.b = VALUE_BOOL, bool(x)
    elif isinstance(x, (int, np.integer)):
        v.kind, v.i = VALUE_INT, int(x)
    elif isinstance(x, (float, np.floating)):
        v.kind, v.f = VALUE_FLOAT, float(x)
    else:
        raise TypeError(f"expected a kiln.Tensor or a Python scalar, got {type(x).__name__}")
    return v


def from_value(v):
    """Python object for an owned kiln_value (the reference is consumed)."""
    if v.kind == VALUE_TENSOR:
        return Tensor._own(v.tensor)
    if v.kind == VALUE_INT:
        return v.i
    if v.kind == VALUE_FLOAT:
        return v.f
    if v.kind == VALUE_BOOL:
        return bool(v.b)
    if v.kind == VALUE_TUPLE:
        n = lib.kiln_value_tuple_size(v)
        items = tuple(from_value(lib.kiln_value_retain(lib.kiln_value_tuple_get(v, i))) for i in range(n))
        lib.kiln_value_release(v)
        return items
    raise TypeError(f"unexpected kiln value kind {v.kind}")


def format_attr(v):
    """An attribute value in IR syntax."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, _dt.DType):
        return v.short
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(e) for e in v) + "]"
    raise TypeError(f"cannot use {v!r} as an attribute value")


def format_attrs(attrs):
    if not attrs:
        return None
    return ", ".join(f"{k}={format_attr(v)}" for k, v in attrs.items() if v is not None)


def apply(op, inputs, attrs=None):
    """Runs op on inputs (Tensors and Python scalars) with attributes; returns a Tensor, a
    Python scalar, or a tuple of them. Emits IR instead while a trace is active."""
    trace = current_trace()
    if trace is not None:
        return trace.emit(op, inputs, attrs)
    inputs = [tensor_from_numpy(x) if isinstance(x, (np.ndarray, list)) else x for x in inputs]
    n = len(inputs)
    vals = (Value * max(n, 1))()
    for i, x in enumerate(inputs):
        vals[i] = to_value(x)
    out = Value()
    text = format_attrs(attrs)
    check(lib.kiln_op_run(ctx, op.encode(), n, vals, text.encode() if text is not None else None, ctypes.byref(out)))
    result = from_value(out)
    if recording() and any(isinstance(x, Tensor) and (x.requires_grad or x._grad_fn) for x in inputs):
        record(op, inputs, attrs, result)
    return result


# Eager autograd (autograd.py) registers the tape here; kept as hooks to avoid an import cycle.
def recording():
    return _autograd_hooks[0]()


def record(op, inputs, attrs, result):
    _autograd_hooks[1](op, inputs, attrs, result)


_autograd_hooks = [lambda: False, None]


def tensor_from_numpy(a, dtype=None):
    """A new kiln tensor holding a copy of numpy array a (converted to dtype if given)."""
    a = np.asarray(a)
    target = _dt.as_dtype(dtype) if dtype is not None else None
    if target is _dt.bfloat16:
        return tensor_from_numpy(a.astype(np.float32)).astype(_dt.bfloat16)
    if target is not None:
        a = a.astype(target.np_dtype, copy=False)
    kd = _dt.as_dtype(a.dtype)
    a = np.require(a, requirements="C")  # (ascontiguousarray would make a 0-d array 1-d)
    ptr = lib.kiln_tensor_from_data(ctx, kd.code, a.ndim, shape_array(a.shape), a.ctypes.data if a.size else None)
    if not ptr:
        check(lib.kiln_error_status(ctx) or 7)
    return Tensor._own(ptr)
