"""_methods.py — Python operators, methods and indexing of kiln.Tensor, mapped onto the ops."""
import numpy as np

from . import ops
from . import dtypes as _dt
from ._core import Tensor, tensor_from_numpy


def _swap(f):
    return lambda self, other: f(other, self)


_BINARY = {"add": ops.add, "sub": ops.subtract, "mul": ops.multiply, "truediv": ops.true_divide,
           "floordiv": ops.floor_divide, "mod": ops.mod, "pow": ops.power, "matmul": ops.matmul,
           "and": ops.logical_and, "or": ops.logical_or, "xor": ops.logical_xor,
           "lshift": ops.left_shift, "rshift": ops.right_shift}
for _name, _f in _BINARY.items():
    setattr(Tensor, f"__{_name}__", lambda self, other, f=_f: f(self, other))
    setattr(Tensor, f"__r{_name}__", lambda self, other, f=_f: f(other, self))

for _name, _f in {"eq": ops.equal, "ne": ops.not_equal, "lt": ops.less, "le": ops.less_equal,
                  "gt": ops.greater, "ge": ops.greater_equal}.items():
    setattr(Tensor, f"__{_name}__", lambda self, other, f=_f: f(self, other))
Tensor.__hash__ = object.__hash__
Tensor.__neg__ = lambda self: ops.negative(self)
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = lambda self: ops.abs(self)
Tensor.__invert__ = lambda self: ops.logical_not(self) if self.dtype is _dt.bool_ else -self - 1

for _name in ("sum", "prod", "max", "min", "all", "any", "mean", "argmax", "argmin", "var", "std", "cumsum",
              "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "clip", "round", "floor", "ceil",
              "transpose", "squeeze", "flip", "repeat", "sort", "argsort", "copy"):
    setattr(Tensor, _name, lambda self, *a, f=getattr(ops, _name), **k: f(self, *a, **k))
Tensor.reshape = lambda self, *shape: ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
Tensor.T = property(lambda self: ops.transpose(self))
Tensor.flatten = lambda self: ops.reshape(self, [-1])
Tensor.__array_ufunc__ = None  # numpy operators return NotImplemented -> our reflected ops


# ---- indexing ---------------------------------------------------------------------------------
def _index_tensor(idx):
    if isinstance(idx, Tensor):
        return idx
    return tensor_from_numpy(np.asarray(idx))


def _getitem(self, key):
    """Basic indexing (ints, slices, None, ...) as strided_slice + reshape; one integer-array or
    boolean index as take (boolean masks are turned into positions, so only eagerly)."""
    if not isinstance(key, tuple):
        key = (key,)
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (self.ndim - n_real))
        else:
            expanded.append(k)
    if sum(1 for k in expanded if k is not None) > self.ndim:
        raise IndexError(f"too many indices for a tensor of shape {self.shape}")
    begin, end, strides, axes, out_shape = [], [], [], [], []
    advanced = None
    dim = 0
    for k in expanded:
        if k is None:
            out_shape.append(("new",))
            continue
        size = self.shape[dim]
        if isinstance(k, slice):
            start, stop, step = k.indices(size)
            begin.append(k.start if k.start is not None else (0 if step > 0 else size - 1))
            end.append(k.stop if k.stop is not None else (size if step > 0 else -size - 1))
            strides.append(step)
            axes.append(dim)
            out_shape.append(("keep", dim))
        elif isinstance(k, (bool, np.bool_)):
            raise IndexError("a boolean scalar is not a valid index")
        elif isinstance(k, (int, np.integer)) or (isinstance(k, Tensor) and k.ndim == 0 and not k.dtype.is_floating_point
                                                   and k.dtype is not _dt.bool_ and not k.is_symbolic):
            i = int(k)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {dim} with size {size}")
            i = i + size if i < 0 else i
            begin.append(i)
            end.append(i + 1)
            strides.append(1)
            axes.append(dim)
        else:
            if advanced is not None:
                raise IndexError("kiln supports one integer-array or boolean index per indexing expression")
            arr = k if isinstance(k, Tensor) else np.asarray(k)
            if arr.dtype in (np.bool_, _dt.bool_):
                if isinstance(arr, Tensor):
                    arr = arr.numpy()
                if arr.shape != self.shape[dim:dim + arr.ndim]:
                    raise IndexError(f"boolean index of shape {arr.shape} does not match the tensor's dims {self.shape[dim:dim + arr.ndim]}")
                if arr.ndim != 1:
                    raise IndexError("kiln supports 1-d boolean masks (use reshape first)")
                arr = np.nonzero(arr)[0]
            advanced = (dim, _index_tensor(arr))
            out_shape.append(("adv", dim))
        dim += 1
    out = ops.strided_slice(self, begin, end, strides, axes) if axes else self
    if advanced is not None:
        out = ops.take(out, advanced[1], axis=advanced[0])
    # strided_slice keeps every dim (an int leaves size 1) and take puts the index's dims in place
    # of its axis: output dims of input dim d sit at d, or d + index.ndim - 1 past the advanced axis
    shape, adv_at = [], 0
    for entry in out_shape:
        if entry[0] == "new":
            shape.append(1)
        elif entry[0] == "keep":
            shape.append(out.shape[entry[1]] if advanced is None or entry[1] < advanced[0] else
                         out.shape[entry[1] + advanced[1].ndim - 1])
        else:
            adv_at = len(shape)
            shape.extend(advanced[1].shape)
    shape.extend(self.shape[dim:])
    out = ops.reshape(out, shape) if list(out.shape) != shape else out
    # numpy: ints count as advanced indices beside an array; when a slice or None separates them,
    # the array's dims go first
    group = [i for i, k in enumerate(expanded) if k is not None and not isinstance(k, slice)]
    if advanced is not None and adv_at and group[-1] - group[0] + 1 != len(group):
        k = advanced[1].ndim
        out = ops.transpose(out, list(range(adv_at, adv_at + k)) + list(range(adv_at)) +
                            list(range(adv_at + k, len(shape))))
    return out


Tensor.__getitem__ = _getitem
