"""trace.py — tracing Python code into kiln IR: while a Trace is active every op call is emitted
into one IR function; concrete tensors the code touches (model parameters, constants) become
named parameters of that function, so it prints, parses back and runs in the interpreter."""
import ctypes

import numpy as np

from . import dtypes as _dt
from ._core import Tensor, format_attrs, pop_trace, push_trace, tensor_from_numpy, to_value, from_value
from ._lib import Value, c_ptr, check, check_ptr, ctx, lib, shape_array, take_string

_SCALAR_DTYPES = {7: _dt.int64, 1: _dt.float64, 8: _dt.bool_}


class Trace:
    """An IR function being recorded. Use `with Trace() as tr:` or kiln.trace(fn, *examples)."""

    def __init__(self, name="main", module=None):
        """A new function `name`, in a new module or in `module` (a Trace or Module whose
        module this one shares and keeps alive)."""
        self._owner = module
        self.module = module.module if isinstance(module, Trace) else module.ptr if module is not None else \
            check_ptr(lib.kiln_module_new(ctx))
        self.name = name
        self.function = check_ptr(lib.kiln_function_new(self.module, name.encode()))
        self.body = lib.kiln_function_body(self.function)
        self.n_inputs = 0
        self.captured = []        # concrete tensors lifted to parameters, in parameter order
        self._captured_vars = {}  # id(tensor) -> var
        self.names = {}           # id(tensor) -> parameter name for captured tensors (e.g. "fc1.weight")
        # Buffer updates (batch-norm running statistics): None, the default, drops them (the IR has
        # no side effects); a dict, set by a tracer that returns them (kiln.Trainer's step), maps
        # id(buffer) -> (buffer, its new symbolic value), in update order.
        self.buffer_updates = None

    def __del__(self):
        if getattr(self, "module", None) and getattr(self, "_owner", None) is None:
            lib.kiln_module_free(self.module)
        self.module = None

    def __enter__(self):
        push_trace(self)
        return self

    def __exit__(self, *exc):
        pop_trace()

    def _param(self, name, dtype, shape):
        ty = check_ptr(lib.kiln_type_tensor(self.module, dtype.code, len(shape), shape_array(shape)))
        return check_ptr(lib.kiln_function_param(self.function, name.encode() if name else None, ty))

    def input(self, dtype, shape, name=None):
        """A symbolic tensor standing for a new input of the function."""
        if self.captured:
            raise RuntimeError("declare every input before the traced code runs")
        self.n_inputs += 1
        dtype = _dt.as_dtype(dtype)
        return Tensor._symbolic(self._param(name or f"x{self.n_inputs - 1}", dtype, tuple(shape)), self, dtype, shape)

    def scalar_input(self, kind, name):
        """A symbolic scalar (kind int or float) standing for a new input of the function."""
        self.n_inputs += 1
        ty = check_ptr(lib.kiln_type_int(self.module) if kind is int else lib.kiln_type_float(self.module))
        var = check_ptr(lib.kiln_function_param(self.function, name.encode(), ty))
        return Tensor._symbolic(var, self, _dt.int64 if kind is int else _dt.float64, ())

    def call(self, function, inputs):
        """Emits a call of another IR function of the same module; returns its result(s)."""
        vars = [self.var_of(x) for x in inputs]
        arr = (c_ptr * max(len(vars), 1))(*vars)
        return self.wrap(check_ptr(lib.kiln_emit_call(self.body, function, len(vars), arr)))

    def var_of(self, x):
        if isinstance(x, Tensor):
            if x.is_symbolic:
                if x._trace is not self:
                    raise RuntimeError("a traced tensor was used outside the trace that made it")
                return x._var
            var = self._captured_vars.get(id(x))
            if var is None:
                name = self.names.get(id(x), f"c{len(self.captured)}")
                var = self._param(name, x.dtype, x.shape)
                self._captured_vars[id(x)] = var
                self.captured.append(x)
            return var
        if isinstance(x, (np.ndarray, list)):
            return self.var_of(tensor_from_numpy(x))
        if isinstance(x, (bool, np.bool_)):
            return check_ptr(lib.kiln_lit_bool(self.module, bool(x)))
        if isinstance(x, (int, np.integer)):
            return check_ptr(lib.kiln_lit_int(self.module, int(x)))
        if isinstance(x, (float, np.floating)):
            return check_ptr(lib.kiln_lit_float(self.module, float(x)))
        raise TypeError(f"cannot trace a {type(x).__name__} operand")

    def wrap(self, var):
        """Python view of an IR variable: a symbolic tensor, or a tuple of them."""
        ty = lib.kiln_var_type(var)
        kind = lib.kiln_type_kind_of(ty)
        if kind == 2:
            n = lib.kiln_type_tuple_size(ty)
            return tuple(self.wrap(self._emit("get", [var], f"index={i}")) for i in range(n))
        if kind == 1:
            return Tensor._symbolic(var, self, _SCALAR_DTYPES[lib.kiln_type_dtype(ty)], ())
        if kind == 3:
            raise TypeError("list values (list_new / list_push) have no Python tensor view in a trace")
        nd = lib.kiln_type_ndim(ty)
        sp = lib.kiln_type_shape(ty)
        return Tensor._symbolic(var, self, _dt.from_code(lib.kiln_type_dtype(ty)), tuple(sp[i] for i in range(nd)))

    def _emit(self, op, vars, attrs):
        arr = (c_ptr * max(len(vars), 1))(*vars)
        return check_ptr(lib.kiln_emit(self.body, op.encode(), len(vars), arr, attrs.encode() if attrs else None))

    def emit(self, op, inputs, attrs=None):
        return self.wrap(self._emit(op, [self.var_of(x) for x in inputs], format_attrs(attrs)))

    def update_buffer(self, buffer, value):
        """Records `value` as the new value of the concrete tensor `buffer` (a module buffer) in
        a trace that collects buffer updates (buffer_updates a dict)."""
        self.buffer_updates[id(buffer)] = (buffer, value)

    def buffer_value(self, buffer):
        """The value of `buffer` at this point of the trace: its last recorded update, or itself."""
        entry = (self.buffer_updates or {}).get(id(buffer))
        return buffer if entry is None else entry[1]

    def finish(self, outputs):
        """Ends the function with `outputs` (a tensor or a tuple of them)."""
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        vars = [self.var_of(o) for o in outs]
        arr = (c_ptr * max(len(vars), 1))(*vars)
        check(lib.kiln_region_yield(self.body, len(vars), arr))
        check(lib.kiln_module_infer(self.module))
        return TracedFunction(self, isinstance(outputs, (tuple, list)))


class TracedFunction:
    """A traced IR function: `.text` is its IR, calling it runs it in the interpreter with the
    captured tensors (parameters) appended to the inputs."""

    def __init__(self, trace, returns_tuple):
        self.trace = trace
        self.returns_tuple = returns_tuple

    @property
    def text(self):
        return take_string(lib.kiln_module_print(self.trace.module, 0))

    @property
    def typed_text(self):
        return take_string(lib.kiln_module_print(self.trace.module, 1))

    @property
    def parameters(self):
        """(name, tensor) of every captured tensor, in parameter order after the inputs."""
        names = {id(t): n for n, t in ((self.trace.names.get(id(t), f"c{i}"), t) for i, t in enumerate(self.trace.captured))}
        return [(names[id(t)], t) for t in self.trace.captured]

    def __call__(self, *args):
        return run_function(self.trace.function, list(args) + list(self.trace.captured), self.returns_tuple)


def call_runner(runner, target, args, returns_tuple=None):
    """Calls a C runner (kiln_function_run on an IR function, kiln_program_run on a program) on
    concrete tensors / scalars; returns_tuple False unwraps a 1-tuple result."""
    args = [tensor_from_numpy(a) if isinstance(a, (np.ndarray, list)) else a for a in args]
    vals = (Value * max(len(args), 1))(*[to_value(a) for a in args])
    out = Value()
    check(runner(target, len(args), vals, ctypes.byref(out)))
    result = from_value(out)
    if returns_tuple is False and isinstance(result, tuple) and len(result) == 1:
        return result[0]
    return result


def run_function(function, args, returns_tuple=None):
    """Runs an IR function on concrete tensors / scalars in the interpreter."""
    return call_runner(lib.kiln_function_run, function, args, returns_tuple)


def trace(fn, *example_inputs, names=None):
    """Traces fn(*inputs) into an IR function using the example inputs' dtypes and shapes.
    Tensors fn reaches that are not inputs become parameters, named by `names` (a dict from
    tensor to name, or a list of (tensor, name) pairs) when given."""
    tr = Trace(getattr(fn, "__name__", "main") if getattr(fn, "__name__", "<") [0] != "<" else "main")
    if names:
        pairs = names.items() if isinstance(names, dict) else names
        tr.names.update({id(t): n for t, n in pairs})
    with tr:
        symbolic = []
        for i, x in enumerate(example_inputs):
            x = x if isinstance(x, Tensor) else tensor_from_numpy(np.asarray(x))
            symbolic.append(tr.input(x.dtype, x.shape, name=f"x{i}"))
        out = fn(*symbolic)
    return tr.finish(out)


class Module:
    """A parsed IR module: `kiln.parse(text)`; functions run through the interpreter."""

    def __init__(self, text, filename="<string>"):
        self.ptr = check_ptr(lib.kiln_module_parse(ctx, text.encode(), filename.encode()))

    def __del__(self):
        if getattr(self, "ptr", None):
            lib.kiln_module_free(self.ptr)
            self.ptr = None

    @property
    def text(self):
        return take_string(lib.kiln_module_print(self.ptr, 0))

    def run(self, name, *args):
        f = lib.kiln_module_function(self.ptr, name.encode())
        if not f:
            raise KeyError(f"no function @{name} in the module")
        return run_function(f, list(args))


def parse(text, filename="<string>"):
    return Module(text, filename)
