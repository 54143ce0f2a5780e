"""model.py — kiln.Model (models written as `build` + `forward`, with named parameters, buffers and
submodules, train/infer modes, dropout keys, state dicts and tracing to IR) and kiln.Parameter.

    class MLP(kiln.Model):
        def build(self, d_in, d_hidden):          # called by __init__ with the constructor's arguments
            self.fc1 = kiln.nn.Linear(d_in, d_hidden)
            self.fc2 = kiln.nn.Linear(d_hidden, 1)
        def forward(self, x):
            return self.fc2(kiln.relu(self.fc1(x)))

    m = MLP(4, 8, seed=0)                       # seed: initialisation stream and dropout keys
    dict(m.named_parameters())                  # {"fc1.weight": ..., "fc1.bias": ..., ...}
    f = m.trace(np.zeros((2, 4), np.float32))   # kiln.TracedFunction; f.text is the IR

Attributes register themselves in assignment order: a Parameter as a parameter, a Model (or a
list/tuple of Models, kept as nn.ModuleList) as a submodule, a Tensor through register_buffer as a
buffer (e.g. batch-norm running statistics). Names are attribute paths ("fc1.weight").

Dropout keys: a model tree shares one key counter; every dropout in train mode draws the next int
key from it (Model.next_key). Models that were never seeded share a global counter starting at 0
(like torch's global generator; kiln.nn.init.manual_seed(n) restarts it at n); Model.seed(n) (or
Model(..., seed=n)) gives the tree its own counter starting at n, so a run is reproducible. With
seeds below 2**31 dropout keys stay below 2**31 and initialisation keys (kiln.nn.init) above, so
masks and weights never share a key.
Tracing bakes the keys drawn while tracing into the IR as literals: a traced train-mode function
replays the same dropout masks on every call.
"""
import collections

import numpy as np

from . import dtypes as _dt
from ._core import Tensor, current_trace, tensor_from_numpy
from ._lib import lib
from .errors import ValueError_
from .trace import trace as _trace


class Parameter(Tensor):
    """A concrete Tensor marked as trainable. Parameter(x) shares the data of a kiln Tensor x (cast
    to `dtype` if given) or copies an array-like."""

    __slots__ = ()

    def __new__(cls, data, dtype=None):
        if isinstance(data, Tensor):
            data._require_concrete("Parameter()")
            if dtype is not None and _dt.as_dtype(dtype) is not data.dtype:
                data = data.astype(dtype)
        else:
            from .ops import array
            data = array(data, dtype)
        return cls._own(lib.kiln_tensor_retain(data._ptr))

    def __init__(self, data, dtype=None):
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self):
        return "kiln.Parameter(" + Tensor.__repr__(self)[len("kiln.array("):]


class _KeyCounter:
    """The next dropout key of a model tree (shared by every model in the tree)."""

    __slots__ = ("next",)

    def __init__(self, start):
        self.next = int(start)


_GLOBAL_KEYS = _KeyCounter(0)

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Model:
    """Base class of models and layers: subclasses define build(self, ...) and forward(self, ...).
    Model(*args, seed=None, **kwargs) calls build(*args, **kwargs); with a seed, the parameters
    are initialised from the key stream of that seed (kiln.nn.init.seeded) and dropout keys start
    at it, otherwise both continue the global streams (kiln.nn.init.manual_seed)."""

    def __init__(self, *args, seed=None, **kwargs):
        from .nn import init
        d = self.__dict__
        d["_parameters"], d["_buffers"], d["_modules"] = {}, {}, {}
        d["training"] = True
        d["_keys"] = _GLOBAL_KEYS if seed is None else _KeyCounter(seed)
        if seed is None:
            self.build(*args, **kwargs)
        else:
            with init.seeded(seed):
                self.build(*args, **kwargs)

    def build(self):
        """Creates layers and parameters (override; receives the constructor's arguments)."""

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *inputs, **kwargs):
        return self.forward(*inputs, **kwargs)

    # ---- attribute registry -------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Model) for v in value):
            from .nn import ModuleList
            value = ModuleList(value)
        if isinstance(value, Parameter):
            self._unregister(name, keep="_parameters")
            d["_parameters"][name] = value
        elif isinstance(value, Model):
            self._unregister(name, keep="_modules")
            d["_modules"][name] = value
            value._share_keys(self._keys)
        elif name in d["_parameters"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} to parameter '{name}' (expected a Tensor or None)")
            d["_parameters"][name] = None if value is None else Parameter(value)
        elif name in d["_buffers"]:
            self.register_buffer(name, value)
        else:
            self._unregister(name)
            object.__setattr__(self, name, value)

    def _unregister(self, name, keep=None):
        """Forgets attribute `name` everywhere but in registry `keep` (so that a reassignment there
        keeps its place in the order)."""
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry != keep:
                self.__dict__[registry].pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters or name in self._buffers or name in self._modules:
            self._unregister(name)
        else:
            object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """Registers a non-trainable tensor (or None) that belongs to the state (state_dict)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = tensor_from_numpy(np.asarray(tensor))
        self._unregister(name, keep="_buffers")
        self._buffers[name] = tensor

    # ---- enumeration --------------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix="", remove_duplicate=True):
        """(path, model) of this model and every submodule, depth first; a model reachable by
        several paths comes once unless remove_duplicate is False."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            path, m = stack.pop()
            if remove_duplicate and id(m) in seen:
                continue
            seen.add(id(m))
            yield path, m
            stack.extend(reversed([(f"{path}.{n}" if path else n, c) for n, c in m._modules.items()]))

    def modules(self):
        return (m for _, m in self.named_modules())

    def _named_members(self, registries, dedupe):
        seen = set()
        for path, m in self.named_modules():
            for registry in registries:
                for name, t in m.__dict__[registry].items():
                    if t is None or (dedupe and id(t) in seen):
                        continue
                    seen.add(id(t))
                    yield (f"{path}.{name}" if path else name), t

    def named_parameters(self):
        """(path, Parameter) of every parameter, this model's first, then each submodule's."""
        return self._named_members(("_parameters",), True)

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        return self._named_members(("_buffers",), True)

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def get_submodule(self, path):
        m = self
        for part in path.split(".") if path else ():
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule '{part}' (in '{path}')")
            m = m._modules[part]
        return m

    # ---- modes and dropout keys ---------------------------------------------------------------
    def train_mode(self, mode=True):
        """Dropout active, batch norm on batch statistics (updating running stats); returns self."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def infer_mode(self):
        """Dropout off, batch norm on running statistics; returns self."""
        return self.train_mode(False)

    def _share_keys(self, counter):
        for m in self.modules():
            m.__dict__["_keys"] = counter

    def seed(self, n):
        """Restarts the dropout key counter of the whole tree at n; returns self."""
        self._share_keys(_KeyCounter(n))
        return self

    def next_key(self):
        """Draws the next int key for a random op (dropout) from the tree's counter."""
        k = self._keys.next
        self._keys.next += 1
        return k

    # ---- state --------------------------------------------------------------------------------
    def _state_items(self):
        """(path, owner, registry, name, tensor) of every parameter and buffer under every path,
        torch's order."""
        for path, m in self.named_modules(remove_duplicate=False):
            for registry in ("_parameters", "_buffers"):
                for name, t in m.__dict__[registry].items():
                    if t is not None:
                        yield (f"{path}.{name}" if path else name), m, registry, name, t

    def state_dict(self):
        """Ordered dict path -> numpy array (a copy) of every parameter and buffer."""
        return collections.OrderedDict((path, np.array(t.numpy())) for path, _, _, _, t in self._state_items())

    def load_state_dict(self, state, strict=True):
        """Replaces parameters and buffers with copies of state's arrays (numpy arrays or anything
        np.asarray takes). Raises kiln.ValueError listing every missing or unexpected name (those
        only when strict) and every shape or dtype mismatch; nothing is changed on error.
        Returns (missing_keys, unexpected_keys). Each tensor keeps the device it was on."""
        items = list(self._state_items())
        expected = {path for path, *_ in items}
        missing = [path for path, *_ in items if path not in state]
        unexpected = [k for k in state if k not in expected]
        mismatched, updates = [], []
        for path, owner, registry, name, t in items:
            if path not in state:
                continue
            a = np.asarray(state[path])
            want = np.dtype(np.float32) if t.dtype is _dt.bfloat16 else t.dtype.np_dtype
            if a.shape != t.shape:
                mismatched.append(f"{path}: shape {a.shape} given, the model has {t.shape}")
            elif a.dtype != want:
                mismatched.append(f"{path}: dtype {a.dtype} given, the model has {t.dtype.name}")
            else:
                updates.append((owner, registry, name, a, t.dtype, t.device))
        problems = []
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        problems += mismatched
        if problems:
            raise ValueError_(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for owner, registry, name, a, dtype, device in updates:
            t = tensor_from_numpy(a, dtype).to(device)  # stays on the device the model's tensor was on
            owner.__dict__[registry][name] = Parameter(t) if registry == "_parameters" else t
        return IncompatibleKeys(missing, unexpected)

    # ---- devices ------------------------------------------------------------------------------
    def to(self, device):
        """Moves every parameter and buffer to `device` ("cpu", "cuda", "cuda:N") in place (each
        Parameter object then holds the copy, as in torch); returns self."""
        from .devices import device as as_device
        d = as_device(device)
        for _, t in self._named_members(("_parameters", "_buffers"), True):
            if t.device != d:
                t._move_(d)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=None):
        return self.to("cuda" if index is None else f"cuda:{int(index)}")

    # ---- tracing ------------------------------------------------------------------------------
    def trace(self, *example_inputs):
        """Traces forward on example inputs' dtypes and shapes into a kiln.TracedFunction named
        @forward whose IR parameters are the inputs (%x0, ...) followed by the parameters and
        buffers it uses, named by path (%conv1.weight). Calling it passes the tensors the model
        held while tracing. Batch norm traced in train mode normalises with batch statistics but
        cannot update running stats (the IR has no side effects): trace in infer mode to export."""
        names = {}
        for path, t in self._named_members(("_parameters", "_buffers"), True):
            names[t] = path

        def forward(*xs):
            return self(*xs)

        return _trace(forward, *example_inputs, names=names)

    # ---- printing -----------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n  " + "\n  ".join(lines) + "\n)" if lines else ")")


def tracing():
    """True while a trace is recording (layers skip side effects such as running-stat updates)."""
    return current_trace() is not None
