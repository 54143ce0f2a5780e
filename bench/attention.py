"""attention.py — micro-benchmark of kiln's fused attention on the GPU (attention_forward and
attention_backward of the "cuda" dialect: the flash kernels, or the GEMM path with --no-tf32 for
f32) against torch's F.scaled_dot_product_attention in eager mode, on the same inputs: forward,
backward and forward + backward, in ms (median of timed runs between device synchronisations)
and TFLOP/s (the cost model's FLOPs: 4 B H Tq Tk D for the forward, 2.5 times that for the
backward, halved when causal), with kiln's speedups and the largest differences from torch.

  python3 bench/attention.py                        # GPT-2 124M: q, k, v [16, 12, 1024, 64] f32, causal
  python3 bench/attention.py --shape 8,16,1024,128  # [B, H, T, D]
  python3 bench/attention.py --tq 256 --no-causal --dtype float16
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import kiln  # noqa: E402

SIDES = ("fwd", "bwd", "fwd+bwd")


def module_text(dt, b, h, tq, tk, d, causal):
    """@fwd(q, k, v) -> (out, lse) and @bwd(q, k, v, out, lse, dout) -> (dq, dk, dv)."""
    q, kv, lse = f"{dt}[{b}, {h}, {tq}, {d}]", f"{dt}[{b}, {h}, {tk}, {d}]", f"f32[{b}, {h}, {tq}]"
    c = "true" if causal else "false"
    return (f"def @fwd(%q: {q}, %k: {kv}, %v: {kv}) {{ let %r = attention_forward(%q, %k, %v, causal={c}) "
            f"let %o = get(%r, index=0) let %l = get(%r, index=1) return %o, %l }}\n"
            f"def @bwd(%q: {q}, %k: {kv}, %v: {kv}, %o: {q}, %l: {lse}, %do: {q}) {{ "
            f"let %g = attention_backward(%q, %k, %v, %o, %l, %do, causal={c}) let %dq = get(%g, index=0) "
            f"let %dk = get(%g, index=1) let %dv = get(%g, index=2) return %dq, %dk, %dv }}\n")


def median_ms(fn, sync, warmup, iters):
    """Median ms of `iters` runs of fn() (each between synchronisations) after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def to_numpy(t):
    return t.detach().float().cpu().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="16,12,1024,64", help="B,H,T,D (default: GPT-2 124M at T 1024, batch 16)")
    ap.add_argument("--tq", type=int, help="queries (default T; Tk stays T)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    ap.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                    help="TF32 on both sides (kiln: the flash kernels for f32; off: its exact GEMM path)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    b, h, t, d = (int(x) for x in args.shape.split(","))
    tq, tk = args.tq or t, t
    os.environ["KILN_CUDA_TF32"] = "1" if args.tf32 else "0"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if not kiln.cuda.is_available():
        sys.exit(f"kiln: CUDA is unavailable: {kiln.cuda.why_unavailable()}")
    dev = "cuda:0"
    tdt = getattr(torch, args.dtype)
    kdt = {"float32": "f32", "float16": "f16"}[args.dtype]
    print(f"== attention [B {b}, H {h}, Tq {tq}, Tk {tk}, D {d}] {args.dtype}, causal {args.causal}, "
          f"TF32 {'on' if args.tf32 else 'off'}; {kiln.cuda.describe(0)}; torch {torch.__version__}", flush=True)

    gen = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, device=dev, dtype=tdt, generator=gen) for n in (tq, tk, tk))
    dout = torch.randn(b, h, tq, d, device=dev, dtype=tdt, generator=gen)

    # torch eager SDPA
    def t_fwd():
        return F.scaled_dot_product_attention(q, k, v, is_causal=args.causal)

    qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

    def t_fwdbwd():
        out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=args.causal)
        return torch.autograd.grad(out, (qg, kg, vg), dout)

    tsync = torch.cuda.synchronize
    ms = {"torch": {"fwd": median_ms(t_fwd, tsync, args.warmup, args.iters),
                    "fwd+bwd": median_ms(t_fwdbwd, tsync, args.warmup, args.iters)}}
    ms["torch"]["bwd"] = ms["torch"]["fwd+bwd"] - ms["torch"]["fwd"]
    t_out, t_grads = to_numpy(t_fwd()), [to_numpy(g) for g in t_fwdbwd()]

    # kiln: the two primitives compiled for the device, on device copies of the same inputs
    mod = kiln.parse(module_text(kdt, b, h, tq, tk, d, args.causal))
    fwd = kiln.compile(mod, function="fwd", device=dev)
    bwd = kiln.compile(mod, function="bwd", device=dev)
    kq, kk, kv, kdo = (kiln.array(x.cpu().numpy()).to(dev) for x in (q, k, v, dout))
    ksync = lambda: kiln.cuda.synchronize(dev)  # noqa: E731
    out, lse = fwd(kq, kk, kv)

    def k_fwdbwd():
        o, l = fwd(kq, kk, kv)
        return bwd(kq, kk, kv, o, l, kdo)

    ms["kiln"] = {"fwd": median_ms(lambda: fwd(kq, kk, kv), ksync, args.warmup, args.iters),
                  "bwd": median_ms(lambda: bwd(kq, kk, kv, out, lse, kdo), ksync, args.warmup, args.iters),
                  "fwd+bwd": median_ms(k_fwdbwd, ksync, args.warmup, args.iters)}
    k_out, k_grads = out.to("cpu").numpy().astype(np.float32), [g.to("cpu").numpy().astype(np.float32) for g in k_fwdbwd()]

    flops = 4.0 * b * h * tq * tk * d * (0.5 if args.causal else 1.0)
    side_flops = {"fwd": flops, "bwd": 2.5 * flops, "fwd+bwd": 3.5 * flops}
    print("\n| system | fwd ms | bwd ms | fwd+bwd ms | fwd TFLOP/s | fwd+bwd TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name in ("kiln", "torch"):
        r = ms[name]
        print(f"| {name if name == 'kiln' else 'torch SDPA eager'} | {r['fwd']:.3f} | {r['bwd']:.3f} | {r['fwd+bwd']:.3f} | "
              f"{side_flops['fwd'] / r['fwd'] / 1e9:.1f} | {side_flops['fwd+bwd'] / r['fwd+bwd'] / 1e9:.1f} |")
    print("kiln speedup vs torch: " + ", ".join(f"{s} {ms['torch'][s] / ms['kiln'][s]:.2f}x" for s in SIDES))
    diffs = [("out", k_out, t_out)] + [(n, kg_, tg) for n, kg_, tg in zip(("dq", "dk", "dv"), k_grads, t_grads)]
    print("max |kiln - torch| / max |torch|: " +
          ", ".join(f"{n} {np.abs(a - r).max() / max(np.abs(r).max(), 1e-30):.2e}" for n, a, r in diffs))


if __name__ == "__main__":
    main()
