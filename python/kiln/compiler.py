"""compiler.py — kiln.compile: a traced function compiled by the C compiler (passes, dialect
dispatch, fusion into generated kernels, one memory plan) into a program the VM runs; kiln.dialect
scopes the dialects compiles may use; kiln.analyze reports parameters, GFLOPs and memory.

    f = kiln.compile(lambda x: kiln.relu(x) * 2, np.zeros((4, 8), np.float32))
    f(x)                       # the same results as kiln.trace(...)(x) in the interpreter
    print(f.text)              # optimised IR (`kernel @...` fused groups), instructions, arena
    f.analyze()["gflops"]
    with kiln.dialect(["c"]):  # generated / built-in C only (no BLAS) for compiles in the scope
        g = kiln.compile(model, x)
"""
import contextlib
import ctypes
import threading

from ._lib import HAVE_COMPILER, Analysis, c_ptr, check, lib, take_string
from .devices import device as as_device
from .errors import UnsupportedError
from .trace import Module, TracedFunction, call_runner, trace

_tls = threading.local()


def available():
    """True when the loaded libkiln.so has the compiler and the VM (kiln_compile)."""
    return HAVE_COMPILER


def _require():
    if not HAVE_COMPILER:
        raise UnsupportedError("kiln.compile: the loaded libkiln.so has no kiln_compile / kiln_program_run "
                               "(rebuild it with `make`, or use the interpreter: kiln.trace / executor='interp')")


def _dialect_string(names):
    """None (every dialect), "blas,c" or ["blas", "c"] -> the C option string (or None)."""
    if names is None:
        return None
    parts = names.split(",") if isinstance(names, str) else list(names)
    parts = [str(p).strip() for p in parts]
    if not parts or not all(parts):
        raise ValueError(f"kiln.dialect: expected dialect names like ['blas', 'c'], got {names!r}")
    return ",".join(parts)


@contextlib.contextmanager
def dialect(names):
    """`with kiln.dialect(["c"]):` compiles inside the scope may use only these dialects, in
    priority order ("blas,c" also works); kiln.dialect(None) allows every available one again.
    Scopes nest (the innermost wins) and belong to the thread that opened them."""
    value = _dialect_string(names)
    stack = _tls.__dict__.setdefault("dialects", [])
    stack.append(value)
    try:
        yield
    finally:
        stack.pop()


def current_dialects():
    """The dialect string of the innermost kiln.dialect scope (None: every dialect)."""
    stack = getattr(_tls, "dialects", None)
    return stack[-1] if stack else None


def compile_function(function, opt_level=2, dialects=None, donate=None, cache_dir=None, device=None,
                     cuda_graph=False):
    """kiln_compile on an IR function pointer; returns the program pointer (the caller frees it
    with lib.kiln_program_free). donate: (output leaf, input leaf) pairs written in place;
    dialects: None takes the innermost kiln.dialect scope; device: where the program runs (None:
    the CPU; "cuda[:N]": inputs on the host are copied in, results are device tensors);
    cuda_graph: capture the run as a CUDA graph and replay it (kiln_compile_options)."""
    _require()
    where = as_device(device) if device is not None else None  # raises, saying why, without CUDA
    opts = lib.kiln_compile_defaults()
    opts.device = str(where).encode() if where is not None and where.is_cuda else None
    opts.cuda_graph = bool(cuda_graph)
    opts.opt_level = int(opt_level)
    dialect_text = _dialect_string(dialects) if dialects is not None else current_dialects()
    opts.dialects = dialect_text.encode() if dialect_text is not None else None
    opts.cache_dir = str(cache_dir).encode() if cache_dir is not None else None
    pairs = [(int(j), int(i)) for j, i in (donate or ())]
    arr = ((ctypes.c_int * 2) * max(len(pairs), 1))(*pairs)
    opts.n_donate = len(pairs)
    opts.donate = ctypes.cast(arr, ctypes.POINTER(ctypes.c_int * 2))
    prog = c_ptr()
    check(lib.kiln_compile(function, ctypes.byref(opts), ctypes.byref(prog)))
    return prog.value


def run_program(program, args, returns_tuple=None):
    """Runs a compiled program on concrete tensors / scalars (the contract of run_function)."""
    return call_runner(lib.kiln_program_run, program, args, returns_tuple)


def analyze_program(program):
    """kiln_program_analyze as a dict: n_inputs, input_elements, input_bytes, gflops,
    arena_bytes, n_instructions, n_kernels, live_bytes and high_water (per instruction)."""
    a = Analysis()
    check(lib.kiln_program_analyze(program, ctypes.byref(a)))
    return {"n_inputs": a.n_inputs, "input_elements": a.input_elements, "input_bytes": a.input_bytes,
            "gflops": a.flops / 1e9, "arena_bytes": a.arena_bytes, "n_instructions": a.n_instructions,
            "n_kernels": a.n_kernels, "live_bytes": [a.live_bytes[i] for i in range(a.n_steps)],
            "high_water": [a.high_water[i] for i in range(a.n_steps)]}


def parameter_stats(model):
    """{"param_count", "param_bytes"} of a kiln.Model's parameters."""
    params = list(model.parameters())
    return {"param_count": sum(p.size for p in params),
            "param_bytes": sum(lib.kiln_tensor_nbytes(p._ptr) for p in params)}


class Compiled:
    """A compiled function: call it like the traced function (captured tensors such as model
    parameters are appended to the inputs); .text prints the program; .analyze() reports it."""

    def __init__(self, program, captured=(), returns_tuple=None, source=None):
        self._ptr = program
        self.captured = list(captured)
        self.returns_tuple = returns_tuple
        self.source = source  # the TracedFunction or Module compiled (kept alive with its IR)

    def __del__(self):
        if getattr(self, "_ptr", None):
            lib.kiln_program_free(self._ptr)
            self._ptr = None

    def __call__(self, *args):
        return run_program(self._ptr, list(args) + self.captured, self.returns_tuple)

    @property
    def text(self):
        """The optimised IR, the instruction list with each buffer's arena offset, the arena size."""
        return take_string(lib.kiln_program_print(self._ptr))

    def analyze(self):
        return analyze_program(self._ptr)


def _traced(fn, example_inputs, function):
    """(owner, IR function pointer, captured tensors, returns_tuple) of what kiln.compile was
    given; the owner (TracedFunction or Module) keeps the function's module alive."""
    from .model import Model
    if isinstance(fn, Module):
        f = lib.kiln_module_function(fn.ptr, (function or "main").encode())
        if not f:
            raise KeyError(f"kiln.compile: no function @{function or 'main'} in the module")
        return fn, f, [], None
    if function is not None:
        raise TypeError("kiln.compile: function= names a function of a parsed kiln.Module")
    if isinstance(fn, TracedFunction):
        if example_inputs:
            raise TypeError("kiln.compile: a TracedFunction already has its input types; pass no example inputs")
        traced = fn
    elif isinstance(fn, Model):
        traced = fn.trace(*example_inputs)
    elif callable(fn):
        traced = trace(fn, *example_inputs)
    else:
        raise TypeError(f"kiln.compile: expected a function, a kiln.Model, a TracedFunction or a parsed "
                        f"kiln.Module, got {type(fn).__name__}")
    return traced, traced.trace.function, traced.trace.captured, traced.returns_tuple


def compile(fn_or_traced, *example_inputs, opt_level=2, dialects=None, donate=None, cache_dir=None,
            function=None, device=None, cuda_graph=False):
    """Compiles a function for the VM: fn traced on example_inputs (their dtypes and shapes),
    a kiln.Model (its forward), a TracedFunction, or function `function` of a kiln.parse module.
    opt_level 0 / 1 / 2 (kiln_compile_options); dialects e.g. ["blas", "c"] (None: the
    kiln.dialect scope, else all); donate: (output leaf, input leaf) pairs computed in place;
    cache_dir: the generated-kernel cache (None: $KILN_CACHE_DIR or ~/.cache/kiln); device: where
    the program runs ("cpu", "cuda[:N]"; results are tensors on that device), cuda_graph: replay
    each run as a captured CUDA graph."""
    owner, f, captured, returns_tuple = _traced(fn_or_traced, example_inputs, function)
    program = compile_function(f, opt_level, dialects, donate, cache_dir, device, cuda_graph)
    return Compiled(program, captured, returns_tuple, owner)


def analyze(obj, *example_inputs, **compile_options):
    """Analysis dict of a Compiled, a Trainer (its step for batches like example_inputs x, y; or
    the last one it ran), a kiln.Model (its forward on example_inputs, plus param_count and
    param_bytes) or a function (compiled on example_inputs)."""
    from .model import Model
    from .trainer import Trainer
    if isinstance(obj, Compiled):
        return obj.analyze()
    if isinstance(obj, Trainer):
        return obj.analyze(*example_inputs)
    result = compile(obj, *example_inputs, **compile_options).analyze()
    if isinstance(obj, Model):
        result.update(parameter_stats(obj))
    return result
