"""gpt2.py — GPT-2 124M training steps on the GPU: kiln's compiled step (kiln.Trainer on "cuda",
replayed as a CUDA graph) against PyTorch eager and torch.compile in the same run, from the same
initial weights on the same batches.

    KILN_LIB=build/libkiln.so PYTHONPATH=python python3 bench/gpt2.py [--batch 16] [--context 1024]
        [--layers 12] [--steps 20] [--warmup 3] [--check-steps 10] [--no-cuda-graph] [--no-tf32]
        [--systems kiln,eager,compile]
    python bench/gpt2.py --cpu-smoke     # 2 layers, width 64, context 32, vocabulary 256, batch 2,
                                         # 2 steps, kiln vs torch eager on the CPU (no GPU needed)

GPT-2 124M: 12 layers, width 768, 12 heads, context 1024, vocabulary 50304 (GPT-2's 50257 padded
to a multiple of 64, as nanoGPT), tied embeddings, tanh GELU, batch 16, AdamW (lr 6e-4, betas
0.9 / 0.95, weight decay 0.1; torch eager uses its fused kernel). The torch twin is
cpu_train.TorchGPT (parameter names and order as kiln.models.GPT); batches are random tokens.
MFU counts 6 N + 12 L T width FLOPs per token (PaLM / nanoGPT; N without position embeddings)
against --peak-tflops.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gpu_common  # noqa: E402  (first: sets up threads, sys.path)
import kiln  # noqa: E402
import torch  # noqa: E402
from cpu_train import TorchGPT, _tokens, copy_weights, lm_loss_kiln, lm_loss_torch  # noqa: E402
from kiln.models import GPT  # noqa: E402

SMOKE = dict(layers=2, width=64, heads=4, context=32, vocab=256, batch=2, steps=2, warmup=1)


def main(argv=None):
    ap = gpu_common.parser(__doc__)
    ap.add_argument("--context", type=int, default=1024, help="tokens per sequence")
    ap.add_argument("--layers", type=int, default=12, help="transformer blocks")
    ap.add_argument("--width", type=int, default=768, help="model width")
    ap.add_argument("--heads", type=int, default=12, help="attention heads")
    ap.add_argument("--vocab", type=int, default=50304, help="vocabulary size")
    ap.add_argument("--lr", type=float, default=6e-4, help="AdamW learning rate")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        vars(args).update(SMOKE)
    args.batch = args.batch or 16
    device, systems = gpu_common.setup(args)

    model = GPT(args.vocab, args.width, args.heads, args.layers, args.context, embed_std=0.02, seed=args.seed)
    net = TorchGPT(args.vocab, args.width, args.heads, args.layers, args.context)
    copy_weights(model, net)
    n_params = sum(p.size for p in model.parameters())
    tokens = args.batch * args.context
    flops = (6 * (n_params - args.context * args.width) + 12 * args.layers * args.context * args.width) * tokens
    title = (f"GPT-2: {args.layers} layers, width {args.width}, {args.heads} heads, context {args.context}, "
             f"vocabulary {args.vocab}, tied embeddings, batch {args.batch}, AdamW")
    gpu_common.header(args, title, device, n_params, flops)

    def make_trainer(dev, cuda_graph):
        opt = kiln.optim.AdamW(lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
        return kiln.Trainer(model, lm_loss_kiln, opt, device=dev, cuda_graph=cuda_graph)

    def make_opt(params, fused):
        return torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)

    batches = gpu_common.batches_from(lambda rng: _tokens(rng, args.batch, args.context, args.vocab),
                                      max(args.check_steps, 4), args.seed)
    results = gpu_common.run_all(systems, make_trainer, net, make_opt, lm_loss_torch, batches, args, device)
    gpu_common.report(results, args, device, tokens, "tokens", flops)


if __name__ == "__main__":
    main()
