"""autograd.py — eager autograd as PyTorch users expect it: tensors with requires_grad=True
record the ops applied to them; loss.backward() replays that record as an IR function, runs the
autodiff pass on it and accumulates gradients into the leaves' .grad."""
import contextlib
import ctypes
import threading

from . import _core
from ._core import Tensor
from ._lib import check_ptr, lib
from .trace import Trace, run_function

_state = threading.local()


def _enabled():
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside the block, ops are not recorded for backward()."""
    prev = _enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = prev


class _Node:
    """One recorded op: its inputs (tensors or Python scalars), attributes and outputs."""

    __slots__ = ("op", "inputs", "attrs", "outputs")

    def __init__(self, op, inputs, attrs, outputs):
        self.op, self.inputs, self.attrs, self.outputs = op, list(inputs), attrs, outputs


def _record(op, inputs, attrs, result):
    outs = result if isinstance(result, tuple) else (result,)
    node = _Node(op, inputs, attrs, outs)
    for i, o in enumerate(outs):
        if isinstance(o, Tensor):
            o._grad_fn = (node, i)


_core._autograd_hooks[:] = [_enabled, _record]


def _topo(root):
    """Recorded nodes reachable from root, inputs before users (iterative DFS)."""
    order, seen, stack = [], set(), [(root._grad_fn[0], False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for x in node.inputs:
            if isinstance(x, Tensor) and x._grad_fn and id(x._grad_fn[0]) not in seen:
                stack.append((x._grad_fn[0], False))
    return order


def backward(loss, gradient=None):
    """d loss / d leaf for every leaf tensor (requires_grad=True, not computed by a recorded op)
    that loss depends on, added to leaf.grad. A non-scalar loss needs `gradient` (its adjoint)."""
    if not loss.requires_grad and not loss._grad_fn:
        raise RuntimeError("backward(): the tensor does not require grad (no input had requires_grad=True)")
    if gradient is None and loss.size != 1:
        raise RuntimeError(f"backward(): grad can be implicitly created only for one-element outputs, not shape {loss.shape}")
    if loss._grad_fn is None:  # a leaf differentiated by itself
        _accumulate(loss, gradient if gradient is not None else _core.apply("ones_like", [loss]))
        return
    nodes = _topo(loss)
    tr = Trace("backward")
    leaves, sym = [], {}
    for node in nodes:  # leaves first as parameters, in first-use order
        for x in node.inputs:
            if isinstance(x, Tensor) and x.requires_grad and not x._grad_fn and id(x) not in sym:
                leaves.append(x)
                sym[id(x)] = tr.input(x.dtype, x.shape, f"leaf{len(leaves) - 1}")
    with tr:
        for node in nodes:
            ins = [sym.get(id(x), x) if isinstance(x, Tensor) else x for x in node.inputs]
            out = tr.emit(node.op, ins, node.attrs)
            outs = out if isinstance(out, tuple) else (out,)
            for o, s in zip(node.outputs, outs):
                if isinstance(o, Tensor):
                    sym[id(o)] = s
        value = sym[id(loss)]
        if gradient is not None:  # d(sum(loss * gradient)) = gradient-weighted backward
            value = _core.apply("sum", [_core.apply("multiply", [value, gradient])], {"axes": None, "keepdims": False})
    tr.finish(value)
    wrt = list(range(len(leaves)))
    grad_fn = check_ptr(lib.kiln_autodiff(tr.function, len(wrt), (ctypes.c_int * max(len(wrt), 1))(*wrt), b"backward_grad"))
    with no_grad():
        result = run_function(grad_fn, leaves + list(tr.captured))
    for leaf, g in zip(leaves, result[1:]):
        _accumulate(leaf, g)


def _accumulate(leaf, g):
    with no_grad():
        leaf.grad = g if leaf.grad is None else _core.apply("add", [leaf.grad, g])


def _requires_grad_(self, flag=True):
    if flag and not (self.dtype.is_floating_point):
        raise RuntimeError(f"only floating-point tensors can require gradients, not {self.dtype.name}")
    self.requires_grad = bool(flag)
    return self


def _detach(self):
    t = Tensor._own(lib.kiln_tensor_retain(self._ptr))
    return t


Tensor.backward = backward
Tensor.requires_grad_ = _requires_grad_
Tensor.detach = _detach
Tensor.is_leaf = property(lambda self: self._grad_fn is None)
