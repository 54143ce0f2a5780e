"""gpu_common.py — what the GPU training benchmarks (gpt2.py, resnet50.py) share: the common
flags, kiln's compiled step (kiln.Trainer on the device) and PyTorch's (eager and torch.compile,
cpu_train.torch_stepper) run from the same initial weights on the same batches, timed alike
(median ms/step between device synchronisations), and the report: ms/step, throughput,
model-FLOP utilisation, peak memory, first losses side by side and kiln's speedups. Each side
that fails prints its error and the run goes on with the others."""
import argparse
import copy
import gc
import os
import statistics
import sys
import time
import traceback

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # (cpu_train defaults to 2 threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cpu_train import torch_stepper  # noqa: E402  (also puts <repo>/python on sys.path)
import kiln  # noqa: E402

H100_TF32_PEAK = 494.7  # TFLOP/s: H100 SXM, TF32 tensor cores, dense
SYSTEMS = ("kiln", "eager", "compile")
LABELS = {"kiln": "kiln", "eager": "torch eager", "compile": "torch.compile"}


def parser(doc):
    """An ArgumentParser with the flags every GPU benchmark takes; scripts add their model's."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, help="batch size")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (kiln compiles before them)")
    ap.add_argument("--check-steps", type=int, default=0, metavar="N",
                    help="print the first N losses of kiln and torch eager side by side")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    ap.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                    help="kiln replays its step as a CUDA graph")
    ap.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                    help="TF32 tensor cores for fp32 matmuls and convolutions, on both sides")
    ap.add_argument("--peak-tflops", type=float, default=H100_TF32_PEAK,
                    help=f"the device's peak for MFU (default {H100_TF32_PEAK}: H100 SXM TF32 dense)")
    ap.add_argument("--seed", type=int, default=0, help="seeds kiln's initial weights and the batches")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="a tiny configuration on the CPU, kiln vs torch eager: tests the script without a GPU")
    return ap


def setup(args):
    """Picks the device ("cuda:0", or "cpu" for --cpu-smoke), switches TF32 on both sides and
    returns (device, systems); exits saying why when CUDA is missing."""
    if args.warmup < 1 or args.steps < 1:
        sys.exit("--warmup and --steps must be at least 1 (the first step compiles)")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    if args.cpu_smoke:
        return "cpu", [s for s in systems if s != "compile"]
    os.environ["KILN_CUDA_TF32"] = "1" if args.tf32 else "0"  # read at kiln's first CUDA matmul
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    if not kiln.cuda.is_available():
        sys.exit(f"kiln: CUDA is unavailable: {kiln.cuda.why_unavailable()}")
    if not torch.cuda.is_available():
        sys.exit("torch: CUDA is unavailable")
    return "cuda:0", systems


def header(args, title, device, n_params, flops_per_step):
    """Prints the command, the configuration, the device and the FLOP estimate."""
    env = [f"{k}={os.environ[k]}" for k in ("KILN_LIB", "KILN_CUDA_LIBS", "PYTHONPATH") if k in os.environ]
    print("command: " + " ".join(env + [os.path.basename(sys.executable)] + sys.argv))
    where = device
    if device != "cpu":
        where += f" ({kiln.cuda.describe(0)}; torch {torch.__version__}: {torch.cuda.get_device_name(0)})"
    print(f"== {title}")
    print(f"device {where}; TF32 {'on' if args.tf32 and device != 'cpu' else 'off'}; "
          f"kiln CUDA graph {'on' if args.cuda_graph and device != 'cpu' else 'off'}; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    print(f"{n_params:,} parameters; model FLOPs {flops_per_step / 1e12:.3f} TFLOP/step; MFU against "
          f"{args.peak_tflops} TFLOP/s peak" + (" (H100 SXM, TF32 dense)" if args.peak_tflops == H100_TF32_PEAK else ""),
          flush=True)


def _sync(device):
    if device != "cpu":
        torch.cuda.synchronize()
        kiln.cuda.synchronize(device)


def _run(step, batches, args, device):
    """Runs warm-up + timed steps (at least --check-steps), cycling through batches; returns
    every loss, the first step's seconds (torch.compile compiles there) and the median / min ms
    of the timed steps."""
    n = max(args.warmup + args.steps, args.check_steps)
    losses, times = [], []
    for i in range(n):
        x, y = batches[i % len(batches)]
        _sync(device)
        t0 = time.perf_counter()
        losses.append(step(x, y))  # a Python float: waits for the step
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    timed = times[args.warmup:args.warmup + args.steps]
    return {"losses": losses, "first_s": times[0] / 1e3, "ms": statistics.median(timed), "min": min(timed)}


def run_kiln(make_trainer, batches, args, device):
    """kiln's compiled step: make_trainer(device, cuda_graph) -> kiln.Trainer; batches are
    uploaded once. Peak memory: the device pool's peak (parameters, state, batches and the step's
    activation arena, which the VM takes from the same pool)."""
    on_gpu = device != "cpu"
    trainer = make_trainer(None if not on_gpu else device, args.cuda_graph and on_gpu)
    data = [(kiln.array(x).to(device), kiln.array(y).to(device)) for x, y in batches]
    if on_gpu:
        kiln.cuda.reset_peak(device)
    else:
        kiln.memory.reset_peak()
    t0 = time.perf_counter()
    trainer.compile(*data[0])
    compile_s = time.perf_counter() - t0
    r = _run(trainer.step, data, args, device)
    pool = (kiln.cuda.memory_stats(device) if on_gpu else kiln.memory.stats())["peak_bytes"]
    arena = trainer.analyze()["arena_bytes"]
    # the arena comes from the same pool: the pool's peak is the whole footprint
    r.update(compile_s=compile_s, peak=pool, memory_note=f"pool peak, of which arena {arena / 2**30:.2f} GiB")
    return r


def run_torch(net_cpu, make_opt, loss_fn, batches, args, device, compiled):
    """PyTorch's step on a copy of net_cpu moved to the device: eager, or torch.compile of the
    model and of opt.step. make_opt(params, fused) -> optimizer (fused: torch's fused CUDA
    kernel, for eager on the GPU; torch.compile generates its own)."""
    net = copy.deepcopy(net_cpu).to(device)
    opt = make_opt(net.parameters(), device != "cpu" and not compiled)
    data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches]
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    step = torch_stepper(net, opt, loss_fn, batches[0][0], batches[0][1], compiled)
    r = _run(step, data, args, device)
    r.update(peak=torch.cuda.max_memory_allocated() if device != "cpu" else None, memory_note="max_memory_allocated")
    return r


def run_all(systems, make_trainer, net_cpu, make_opt, torch_loss, batches, args, device):
    """Each system's results (None where it failed, after printing why). Between systems the
    memory of the last one goes back to the driver."""
    results = {}
    for s in systems:
        print(f"-- running {LABELS[s]}", flush=True)
        try:
            if s == "kiln":
                results[s] = run_kiln(make_trainer, batches, args, device)
            else:
                results[s] = run_torch(net_cpu, make_opt, torch_loss, batches, args, device, s == "compile")
        except Exception as e:  # noqa: BLE001  (report and go on with the other systems)
            print(f"{LABELS[s]} failed: {type(e).__name__}: {e}")
            traceback.print_exc(limit=6, file=sys.stdout)
            results[s] = None
        gc.collect()
        if device != "cpu":
            torch.cuda.empty_cache()
            kiln.cuda.trim(device)
    return results


def report(results, args, device, items_per_step, unit, flops_per_step):
    """Prints the table, kiln's speedups and (--check-steps) the first losses side by side."""
    print(f"\n| system | ms/step median (min) | {unit}/s | MFU | peak memory GiB | first-step loss | "
          f"first step s (kiln: + compile s) |")
    print("|---|---|---|---|---|---|---|")
    for s, r in results.items():
        label = LABELS[s] + (" (CUDA graph)" if s == "kiln" and args.cuda_graph and device != "cpu" else "")
        if r is None:
            print(f"| {label} | failed | | | | | |")
            continue
        rate = items_per_step / (r["ms"] / 1e3)
        mfu = f"{100 * flops_per_step / (r['ms'] / 1e3) / (args.peak_tflops * 1e12):.1f}%" if device != "cpu" else "-"
        mem = f"{r['peak'] / 2**30:.2f} ({r['memory_note']})" if r["peak"] is not None else "-"
        first = f"{r['first_s']:.2f}" + (f" (+ {r['compile_s']:.1f})" if "compile_s" in r else "")
        print(f"| {label} | {r['ms']:.2f} ({r['min']:.2f}) | {rate:,.0f} | {mfu} | {mem} | {r['losses'][0]:.6f} | "
              f"{first} |")
    k = results.get("kiln")
    if k is not None:
        ratios = [f"{results[s]['ms'] / k['ms']:.2f}x vs {LABELS[s]}" for s in ("eager", "compile")
                  if results.get(s) is not None]
        if ratios:
            print("kiln speedup: " + ", ".join(ratios))
    firsts = {LABELS[s]: f"{r['losses'][0]:.6f}" for s, r in results.items() if r is not None}
    print("first-step losses: " + ", ".join(f"{name} {v}" for name, v in firsts.items()))
    if args.check_steps:
        e = results.get("eager")
        if k is None or e is None:
            print("--check-steps needs both kiln and torch eager to have run")
            return
        # torch.compile's own distance from eager (same weights, same batches) shows how far two
        # correct implementations drift apart on this model: the yardstick for kiln's.
        c = results.get("compile")
        c = c if c is not None and len(c["losses"]) >= args.check_steps else None
        print(f"\nfirst {args.check_steps} losses (same initial weights, same batches; relative differences to eager):")
        print("| step | kiln | torch eager | kiln vs eager |" + (" torch.compile | compile vs eager |" if c else ""))
        print("|---|---|---|---|" + ("---|---|" if c else ""))
        def rel(x, ref):
            return f"{abs(x - ref) / max(abs(ref), 1e-30):.2e}"
        for i in range(args.check_steps):
            a, b = k["losses"][i], e["losses"][i]
            row = f"| {i + 1} | {a:.6f} | {b:.6f} | {rel(a, b)} |"
            if c:
                row += f" {c['losses'][i]:.6f} | {rel(c['losses'][i], b)} |"
            print(row)


def batches_from(make_batch, n, seed):
    """n batches (numpy x, y) from make_batch(rng), reproducible from seed."""
    rng = np.random.default_rng(seed)
    return [make_batch(rng) for _ in range(n)]
