"""cpu_train.py — CPU training-step benchmark: kiln's compiled step (kiln.Trainer, executor "vm")
against PyTorch eager and torch.compile (Inductor) on the same model, batch, initial weights and
thread count. Prints the median ms per step of each, kiln's speedup over each, kiln's cold and
warm compile times and the first-step losses of both sides (a sanity check).

    python bench/cpu_train.py [--models mlp,lenet5,gpt] [--reps 20] [--rounds 1] [--quick]
                              [--executor vm|interp] [--no-kiln]

Models: an MLP 784-512-512-10 (batch 128, SGD with momentum), LeNet-5 (batch 64, 1x28x28, Adam)
and a 4-layer GPT (width 256, 4 heads, context 128, vocabulary 2048, batch 8, AdamW). Inputs
are random (fixed seed); every step trains on the same batch. Each measurement (model x system)
runs in a process of its own; with --rounds N in N of them, reporting the lowest median (for a
shared machine: other load only ever slows a step down). docs/performance.md has the table.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # before kiln / torch load OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import kiln  # noqa: E402
from kiln.models import GPT, LeNet5  # noqa: E402


# ---- the models: kiln and its torch twin, parameters in the same order -----------------------------
class MLP(kiln.Model):
    def build(self):
        self.fc1 = kiln.nn.Linear(784, 512)
        self.fc2 = kiln.nn.Linear(512, 512)
        self.fc3 = kiln.nn.Linear(512, 10)

    def forward(self, x):
        return self.fc3(kiln.relu(self.fc2(kiln.relu(self.fc1(x)))))


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 512)
        self.fc2 = torch.nn.Linear(512, 512)
        self.fc3 = torch.nn.Linear(512, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class TorchLeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))))


class TorchBlock(torch.nn.Module):
    def __init__(self, width, heads, context):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(width)
        self.fc = torch.nn.Linear(width, 4 * width)
        self.proj = torch.nn.Linear(4 * width, width)
        self.register_buffer("mask", torch.triu(torch.ones(context, context, dtype=torch.bool), 1), persistent=False)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.mask, is_causal=True)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TorchGPT(torch.nn.Module):
    def __init__(self, vocab, width, heads, layers, context):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, width)
        self.pos = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.ModuleList([TorchBlock(width, heads, context) for _ in range(layers)])
        self.ln = torch.nn.LayerNorm(width)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        return self.ln(x) @ self.tok.weight.T


def lm_loss_kiln(logits, y):
    b, t, v = logits.shape
    return kiln.cross_entropy(kiln.reshape(logits, (b * t, v)), kiln.reshape(y, (b * t,)))


def lm_loss_torch(logits, y):
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def _classes(rng, shape, n_classes, batch):
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, n_classes, batch).astype(np.int64)


def _tokens(rng, batch, context, vocab):
    x = rng.integers(0, vocab, (batch, context + 1)).astype(np.int64)
    return x[:, :-1].copy(), x[:, 1:].copy()


# name -> kiln model, torch twin, kiln loss, torch loss, kiln optimizer, torch optimizer, batch maker
BENCHES = {
    "mlp": dict(
        title="MLP 784-512-512-10, batch 128, SGD momentum",
        kiln=lambda: MLP(seed=0), torch=TorchMLP,
        kiln_loss=kiln.cross_entropy, torch_loss=F.cross_entropy,
        kiln_opt=lambda: kiln.optim.SGD(lr=0.05, momentum=0.9),
        torch_opt=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        batch=lambda rng: _classes(rng, (128, 784), 10, 128)),
    "lenet5": dict(
        title="LeNet-5, batch 64x1x28x28, Adam",
        kiln=lambda: LeNet5(seed=0), torch=TorchLeNet5,
        kiln_loss=kiln.cross_entropy, torch_loss=F.cross_entropy,
        kiln_opt=lambda: kiln.optim.Adam(lr=1e-3),
        torch_opt=lambda ps: torch.optim.Adam(ps, lr=1e-3),
        batch=lambda rng: _classes(rng, (64, 1, 28, 28), 10, 64)),
    "gpt": dict(
        title="GPT 4 layers, width 256, 4 heads, context 128, vocab 2048, batch 8, AdamW",
        kiln=lambda: GPT(2048, 256, 4, 4, 128, embed_std=0.02, seed=0), torch=lambda: TorchGPT(2048, 256, 4, 4, 128),
        kiln_loss=lm_loss_kiln, torch_loss=lm_loss_torch,
        kiln_opt=lambda: kiln.optim.AdamW(lr=3e-4),
        torch_opt=lambda ps: torch.optim.AdamW(ps, lr=3e-4),
        batch=lambda rng: _tokens(rng, 8, 128, 2048)),
}


def copy_weights(model, net):
    """Copies kiln's initial parameters into the torch twin (same names, order and shapes)."""
    params = list(model.named_parameters())
    tparams = list(net.named_parameters())
    assert [n for n, _ in params] == [n for n, _ in tparams], ([n for n, _ in params], [n for n, _ in tparams])
    with torch.no_grad():
        for (name, p), (_, t) in zip(params, tparams):
            assert tuple(p.shape) == tuple(t.shape), name
            t.copy_(torch.from_numpy(p.numpy().copy()))


def time_steps(step, warmup, reps):
    """Runs step() warmup times, then reps timed times; returns (first result, median ms, min ms)."""
    first = step()
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return first, statistics.median(times), min(times)


def torch_stepper(net, opt, loss_fn, x, y, compiled):
    """One torch step (zero_grad, forward, loss, backward, optimizer) on batch x, y or on the
    tensors step(xb, yb) is given; with compiled the model goes through torch.compile (Inductor:
    forward and backward graphs) and so does opt.step."""
    model = torch.compile(net) if compiled else net
    opt_step = torch.compile(opt.step) if compiled else opt.step
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step(xb=xt, yb=yt):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt_step()
        return loss.item()
    return step


def bench_kiln(spec, x, y, executor, warmup, reps):
    """kiln's step: compile times (cold: empty cache dir; warm: a second trainer with the cache
    filled), first loss, median and min ms, the step's analysis (VM)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-cache-") as cache:
        os.environ["KILN_CACHE_DIR"] = cache
        model = spec["kiln"]()
        xk, yk = kiln.array(x), kiln.array(y)
        for key in ("cold", "warm"):
            trainer = kiln.Trainer(model, spec["kiln_loss"], spec["kiln_opt"](), executor=executor)
            t0 = time.perf_counter()
            trainer.compile(xk, yk)
            out[key] = time.perf_counter() - t0
        out["loss"], out["ms"], out["min"] = time_steps(lambda: trainer.step(xk, yk), warmup, reps)
        if executor == "vm":
            out["analysis"] = {k: v for k, v in trainer.analyze().items() if k not in ("live_bytes", "high_water")}
    return out


def bench_torch(spec, x, y, compiled, warmup, reps):
    """torch's step from kiln's initial weights: first loss (its time includes torch.compile's
    compilation), median and min ms."""
    net = spec["torch"]()
    copy_weights(spec["kiln"](), net)
    opt = spec["torch_opt"](net.parameters())
    t0 = time.perf_counter()
    step = torch_stepper(net, opt, spec["torch_loss"], x, y, compiled)
    loss = step()
    compile_s = time.perf_counter() - t0
    _, ms, fastest = time_steps(step, warmup, reps)
    return {"loss": loss, "ms": ms, "min": fastest, "compile": compile_s}


SYSTEMS = ("kiln", "eager", "compile")


def measure(name, system, args):
    """One measurement, run in this process (the --child mode)."""
    spec = BENCHES[name]
    x, y = spec["batch"](np.random.default_rng(0))
    torch.set_num_threads(THREADS)
    if system == "kiln":
        return bench_kiln(spec, x, y, args.executor, args.warmup, args.reps)
    return bench_torch(spec, x, y, system == "compile", args.warmup, args.reps)


def measure_in_child(name, system, args):
    """Each measurement runs in a fresh process, so that one system's threads, caches and
    compiled code never share a process with another's."""
    cmd = [sys.executable, __file__, "--child", f"{name}:{system}", "--reps", str(args.reps),
           "--warmup", str(args.warmup), "--executor", args.executor]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{name}/{system} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speedup(kiln_ms, other_ms):
    return f"{other_ms / kiln_ms:.2f}x"


def report(name, r):
    """Prints one model's figures; returns its table row."""
    k, eager, comp = r.get("kiln"), r["eager"], r["compile"]
    if k is not None:
        print(f"kiln compile: cold {k['cold']:.2f} s, warm {k['warm']:.2f} s (from the cache)")
        print(f"first-step loss: kiln {k['loss']:.6f}  torch eager {eager['loss']:.6f}  "
              f"torch.compile {comp['loss']:.6f}")
        if "analysis" in k:
            a = k["analysis"]
            print(f"kiln analysis: {a['param_count']:,} parameters ({a['param_bytes'] / 2**20:.1f} MiB), "
                  f"{a['gflops']:.3f} GFLOP/step, arena {a['arena_bytes'] / 2**20:.1f} MiB, "
                  f"{a['n_instructions']} instructions, {a['n_kernels']} generated kernels")
    else:
        print(f"first-step loss: torch eager {eager['loss']:.6f}  torch.compile {comp['loss']:.6f}")
    print(f"torch.compile: first step (compiling) {comp['compile']:.2f} s")
    line = f"ms/step median (min): torch eager {eager['ms']:.2f} ({eager['min']:.2f})  " \
           f"torch.compile {comp['ms']:.2f} ({comp['min']:.2f})"
    if k is not None:
        line += f"  kiln {k['ms']:.2f} ({k['min']:.2f}); kiln vs eager {speedup(k['ms'], eager['ms'])}, " \
                f"vs torch.compile {speedup(k['ms'], comp['ms'])}"
    print(line, flush=True)
    kms = k["ms"] if k is not None else None
    kcell = f"{kms:.2f}" if kms is not None else "-"
    ratios = (speedup(kms, eager["ms"]), speedup(kms, comp["ms"])) if kms is not None else ("-", "-")
    return f"| {name} | {kcell} | {eager['ms']:.2f} | {comp['ms']:.2f} | {ratios[0]} | {ratios[1]} |"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(BENCHES), help="comma list of " + ", ".join(BENCHES))
    ap.add_argument("--reps", type=int, default=20, help="timed steps per measurement (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (the first one compiles)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="processes per measurement; the one with the lowest median is reported")
    ap.add_argument("--quick", action="store_true", help="3 reps, 2 warm-up steps: a smoke run")
    ap.add_argument("--executor", default="vm", choices=("vm", "interp"), help="kiln's executor")
    ap.add_argument("--no-kiln", action="store_true", help="measure only the torch side")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # MODEL:SYSTEM, one measurement, JSON on stdout
    args = ap.parse_args(argv)
    if args.child:
        name, system = args.child.split(":")
        print(json.dumps(measure(name, system, args)))
        return
    if args.quick:
        args.reps, args.warmup = 3, 2
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in names:
        if name not in BENCHES:
            ap.error(f"unknown model {name!r}; choose from {', '.join(BENCHES)}")
    print(f"threads {THREADS} (torch {torch.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
          f"kiln executor {args.executor}, warm-up {args.warmup}, {args.reps} reps, median ms/step; "
          f"each measurement in its own process, best of {args.rounds}", flush=True)
    rows = []
    for name in names:
        print(f"\n== {name}: {BENCHES[name]['title']}", flush=True)
        systems = SYSTEMS[1:] if args.no_kiln else SYSTEMS
        rows.append(report(name, {system: min((measure_in_child(name, system, args) for _ in range(args.rounds)),
                                              key=lambda r: r["ms"]) for system in systems}))
    print("\n| model | kiln ms | torch eager ms | torch.compile ms | kiln vs eager | kiln vs torch.compile |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
