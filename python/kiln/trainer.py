"""trainer.py — kiln.Trainer: builds one IR function per input signature that runs forward,
loss, backward (the autodiff pass) and the optimizer update, then runs it each step: compiled
for the VM with parameters, optimizer state and buffers (batch-norm running statistics) updated
in place (executor "vm"), or op by op in the interpreter (executor "interp"). With device="cuda"
the model, the optimizer state and the compiled step live on the GPU."""
import ctypes
import os

from . import dtypes as _dt
from .model import Parameter
from .devices import device as as_device
from .ops import zeros, zeros_like
from .trace import Trace, run_function
from ._core import Tensor
from ._lib import check, check_ptr, ctx, lib, shape_array
from . import compiler


class Trainer:
    """trainer = kiln.Trainer(model, loss_fn, kiln.optim.AdamW(lr=1e-3)); loss = trainer.step(x, y).
    loss_fn(model_output, y) returns a scalar loss tensor; optimizer state lives in the trainer.
    executor "vm" (the default when the library has the compiler; $KILN_EXECUTOR overrides the
    default) compiles the step once per input signature (kiln_compile, inside the kiln.dialect
    scope active at the first step) and updates the model's parameter tensors in place;
    "interp" runs the step in the interpreter and replaces the parameters by new tensors.
    device ("cpu", "cuda", "cuda:N"; None: the CPU): a CUDA device moves the model there (kiln's
    Model.to), keeps the optimizer state there and compiles the step for it (executor "vm" only;
    without CUDA this raises kiln.UnsupportedError saying why). Batches may be on the host (the
    step copies them in) or on the device; parameters are updated in place on the device.
    cuda_graph: replay each step as a captured CUDA graph (batches are then copied into device
    buffers of the step, so that the graph's addresses stay fixed)."""

    EXECUTORS = ("vm", "interp")

    def __init__(self, model, loss_fn, optimizer, executor=None, device=None, cuda_graph=False):
        self.device = as_device(device or "cpu")
        executor = executor or ("vm" if self.device.is_cuda else
                                os.environ.get("KILN_EXECUTOR") or ("vm" if compiler.available() else "interp"))
        if executor not in self.EXECUTORS:
            raise ValueError(f"kiln.Trainer: executor must be one of {self.EXECUTORS}, got {executor!r}")
        if executor == "vm":
            compiler._require()
        elif self.device.is_cuda:
            raise ValueError(f"kiln.Trainer: device '{self.device}' needs executor 'vm' (the interpreter runs on the CPU)")
        self.executor = executor
        self.cuda_graph = bool(cuda_graph) and self.device.is_cuda
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        if self.device.is_cuda:
            model.to(self.device)
        self.step_count = 0
        self._compiled = {}  # (dtype, shape) of x and y -> compiled step
        self._last = None    # the compiled step the last step() used
        self.state = {}      # parameter path -> tuple of state tensors

    def _compile(self, x, y):
        model = self.model
        paths = {id(t): path for path, t in model._named_members(("_parameters", "_buffers"), True)}
        trainable = {id(p) for p in model.parameters()}
        # 1. forward + loss, traced with the model's tensors as named parameters; the buffer
        # updates its layers record (new batch-norm running statistics) are its further results.
        # They come from the forward's own batch statistics, so they ride along through autodiff
        # (which passes results after the loss through) rather than in a second traced function
        # that would recompute the forward up to every batch norm.
        fwd = Trace("loss")
        fwd.names.update(paths)
        fwd.buffer_updates = {}
        with fwd:
            xs, ys = fwd.input(x.dtype, x.shape, "x"), fwd.input(y.dtype, y.shape, "y")
            loss = self.loss_fn(model(xs), ys)
        updates = list(fwd.buffer_updates.values())  # (buffer, new value)
        fwd.finish((loss, *(v for _, v in updates)))
        captured = list(fwd.captured)
        wrt = [2 + i for i, t in enumerate(captured) if id(t) in trainable]
        # 2. its gradient, by the autodiff pass: (loss, gradients..., new buffers...)
        grad_fn = check_ptr(lib.kiln_autodiff(fwd.function, len(wrt), (ctypes.c_int * max(len(wrt), 1))(*wrt), b"loss_grad"))
        # 3. the training step: call the gradient, update in IR
        step = Trace("train_step", module=fwd)
        with step:
            sx, sy = step.input(x.dtype, x.shape, "x"), step.input(y.dtype, y.shape, "y")
            tensors = [step.input(t.dtype, t.shape, paths[id(t)]) for t in captured]
            params = [tensors[i - 2] for i in wrt]
            names = [paths[id(captured[i - 2])] for i in wrt]
            state = [tuple(step.input(p.dtype, p.shape, f"{slot}.{n}") for slot in self.optimizer.slots)
                     for p, n in zip(params, names)]
            lr, t = step.scalar_input(float, "lr"), step.scalar_input(int, "step")
            out = step.call(grad_fn, [sx, sy] + tensors)
            grads = self.optimizer.clip(list(out[1:1 + len(wrt)]))
            new_p, new_s = self.optimizer.update(params, grads, state, lr, t)
            flat_state = [s for group in new_s for s in group]
        step.finish((out[0], *new_p, *flat_state, *out[1 + len(wrt):]))
        c = {"trace": step, "keep": fwd, "captured_paths": [paths[id(t)] for t in captured], "param_paths": names,
             "buffer_paths": [paths[id(b)] for b, _ in updates]}
        if self.executor == "vm":
            # Leaves: inputs x, y, captured tensors, state, lr, step; results loss, parameters,
            # state, buffers. Each new parameter / state / buffer tensor is written into its
            # input's buffer.
            n_state = len(flat_state)
            donate = [(1 + i, w) for i, w in enumerate(wrt)]
            donate += [(1 + len(wrt) + j, 2 + len(captured) + j) for j in range(n_state)]
            index = {id(t): 2 + i for i, t in enumerate(captured)}
            donate += [(1 + len(wrt) + n_state + j, index[id(b)]) for j, (b, _) in enumerate(updates)]
            c["program"] = compiler.Compiled(compiler.compile_function(
                step.function, donate=donate, device=self.device, cuda_graph=self.cuda_graph))
        return c

    def compile(self, x, y):
        """Builds (and for the VM compiles) the training step for batches like x, y, if not done yet."""
        self._get(x, y)

    def analyze(self, x=None, y=None):
        """Analysis of the compiled step (kiln.Compiled.analyze) for batches like x, y (default:
        the last step run) plus the model's param_count and param_bytes. Needs executor "vm"."""
        if self.executor != "vm":
            raise ValueError("Trainer.analyze needs executor='vm' (it analyses the compiled program)")
        c = self._get(x, y) if x is not None else self._last
        if c is None:
            raise ValueError("Trainer.analyze: give example batches x, y or run a step first")
        result = c["program"].analyze()
        result.update(compiler.parameter_stats(self.model))
        return result

    def compiled_text(self, x, y):
        """The IR of the training step for inputs like x, y (compiling it if needed)."""
        from ._lib import take_string
        c = self._get(x, y)
        return take_string(lib.kiln_module_print(c["trace"].module, 0))

    def _get(self, x, y):
        from .ops import array
        x = x if hasattr(x, "_ptr") else array(x)
        y = y if hasattr(y, "_ptr") else array(y)
        key = (x.dtype, tuple(x.shape), y.dtype, tuple(y.shape))
        if key not in self._compiled:
            self._compiled[key] = self._compile(x, y)
        self._last = self._compiled[key]
        return self._last

    def _tensor(self, path):
        mod, _, leaf = path.rpartition(".")
        owner = self.model.get_submodule(mod)
        return owner._parameters[leaf] if leaf in owner._parameters else owner._buffers[leaf]

    def state_dict(self):
        """Model tensors ("model.<path>"), optimizer state ("optim.<slot>.<path>") and the step
        count ("trainer.step"): everything a resumed run needs to continue bit-identically.
        Tensors on a device are copied to the host."""
        from .ops import array
        d = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for path, tensors in self.state.items():
            for slot, t in zip(self.optimizer.slots, tensors):
                d[f"optim.{slot}.{path}"] = t.cpu()
        d["trainer.step"] = array(self.step_count)
        return d

    def save(self, path):
        """Writes state_dict() to a .safetensors file."""
        from .checkpoint import save_safetensors
        save_safetensors(path, self.state_dict())

    def load(self, path):
        """Restores a save(): model tensors (names, shapes and dtypes must match the model, else
        an error lists the mismatches), optimizer state and step count."""
        from .checkpoint import load_safetensors
        d = load_safetensors(path)
        if "trainer.step" not in d:
            raise ValueError(f"{path}: not a kiln.Trainer checkpoint (no 'trainer.step')")
        self.model.load_state_dict({k[len("model."):]: v.numpy() for k, v in d.items() if k.startswith("model.")})
        self.step_count = int(d["trainer.step"].item())
        self.state = {}
        params = {p for p, _ in self.model.named_parameters()}
        for path in params:
            slots = [d.get(f"optim.{slot}.{path}") for slot in self.optimizer.slots]
            if all(t is not None for t in slots) and slots:
                self.state[path] = tuple(t.to(self.device) for t in slots)

    def _zeros(self, p):
        """Optimizer state for parameter p: zeros on the trainer's device (made on the host, where
        eager ops run, then copied)."""
        return zeros_like(p) if not self.device.is_cuda else zeros(p.shape, p.dtype).to(self.device)

    def _graph_inputs(self, c, x, y):
        """A CUDA graph replays fixed addresses (a new input address means a new capture): the
        batch is copied into device buffers that belong to this compiled step."""
        if "inputs" not in c:
            c["inputs"] = [Tensor._own(check_ptr(lib.kiln_tensor_new_on(ctx, t.dtype.code, t.ndim, shape_array(t.shape),
                                                                         self.device._c))) for t in (x, y)]
        for buf, t in zip(c["inputs"], (x, y)):
            check(lib.kiln_tensor_copy_into(ctx, buf._ptr, t._ptr))
        return c["inputs"]

    def step(self, x, y):
        """One training step on a batch; returns the loss as a Python float."""
        from .ops import array
        x = x if hasattr(x, "_ptr") else array(x)
        y = y if hasattr(y, "_ptr") else array(y)
        c = self._get(x, y)
        self.step_count += 1
        tensors = [self._tensor(p) for p in c["captured_paths"]]
        for path in c["param_paths"]:
            if path not in self.state:
                self.state[path] = tuple(self._zeros(self._tensor(path)) for _ in self.optimizer.slots)
        state = [s for path in c["param_paths"] for s in self.state[path]]
        if self.cuda_graph:
            x, y = self._graph_inputs(c, x, y)
        args = [x, y] + tensors + state + [self.optimizer.lr_at(self.step_count), self.step_count]
        n = len(c["param_paths"])
        k = len(self.optimizer.slots)
        if self.executor == "vm":
            result = compiler.run_program(c["program"]._ptr, args)
            targets = [self._tensor(p) for p in c["param_paths"]] + state + [self._tensor(p) for p in c["buffer_paths"]]
            for dst, src in zip(targets, result[1:]):
                _store(dst, src)
            return _loss_value(result[0])
        result = run_function(c["trace"].function, args)
        for i, path in enumerate(c["param_paths"]):
            self._set(path, Parameter(result[1 + i]))
            self.state[path] = tuple(result[1 + n + i * k: 1 + n + (i + 1) * k])
        for path, t in zip(c["buffer_paths"], result[1 + n + n * k:]):
            self._set(path, t)
        return _loss_value(result[0])

    def _set(self, path, tensor):
        """Replaces the model's parameter or buffer at `path` by `tensor`."""
        mod, _, leaf = path.rpartition(".")
        setattr(self.model.get_submodule(mod), leaf, tensor)


def _loss_value(loss):
    loss = loss.cpu()  # a device scalar: one copy to the host
    return float(loss.item()) if loss.dtype is not _dt.bfloat16 else float(loss.astype("float32").item())


def _store(dst, src):
    """Makes tensor dst hold src's values: a no-op when the VM wrote them in place (donation)."""
    to, frm = lib.kiln_tensor_data(dst._ptr), lib.kiln_tensor_data(src._ptr)
    if to == frm:
        return
    if dst.device.is_cuda or src.device.is_cuda:
        check(lib.kiln_tensor_copy_into(ctx, dst._ptr, src._ptr))
    else:
        ctypes.memmove(to, frm, lib.kiln_tensor_nbytes(dst._ptr))
