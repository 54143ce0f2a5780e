"""fashion_mnist.py — the main job: trains LeNet-5 on Fashion-MNIST (Debian's
dataset-fashion-mnist) with kiln.Trainer (forward, autodiff and Adam in one IR function), shows a
progress bar with loss and throughput, then prints test accuracy, samples/s and the checkpoint.

    python examples/python/fashion_mnist.py [--epochs 1] [--batch-size 64] [--restart] [--device auto]

The step runs on the GPU when CUDA is available (--device auto, the default), else on the CPU.

A checkpoint (model, optimizer state, step) is written after every epoch and at the end; running
again resumes from it (continuing with the same losses), --restart starts over."""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
import kiln  # noqa: E402
from kiln.data import batches, load_fashion_mnist  # noqa: E402
from kiln.models import LeNet5  # noqa: E402


def progress(epoch, epochs, done, total, loss, rate):
    width = 30
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    sys.stdout.write(f"\repoch {epoch}/{epochs} [{bar}] {done}/{total}  loss {loss:.4f}  {rate:,.0f} samples/s ")
    sys.stdout.flush()


def evaluate(model, images, labels, batch_size=500):
    model.infer_mode()
    correct = 0
    with kiln.no_grad():
        for x, y in batches(images, labels, batch_size):
            pred = kiln.argmax(model(kiln.array(x)), axis=1).numpy()
            correct += int((pred == y).sum())
    model.train_mode()
    return correct / len(labels)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (quick runs)")
    ap.add_argument("--checkpoint", default="checkpoints/lenet5.safetensors")
    ap.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (the GPU when CUDA is available)")
    args = ap.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if kiln.cuda.is_available() else "cpu"
        print(f"device: {device}" + ("" if device != "cpu" else f" (CUDA unavailable: {kiln.cuda.why_unavailable()})"))

    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    if args.limit:
        train_x, train_y = train_x[:args.limit], train_y[:args.limit]
    model = LeNet5(seed=args.seed)
    trainer = kiln.Trainer(model, lambda logits, y: kiln.cross_entropy(logits, y), kiln.optim.Adam(lr=args.lr),
                           device=None if device == "cpu" else device)
    steps_per_epoch = len(train_y) // args.batch_size
    if os.path.exists(args.checkpoint) and not args.restart:
        trainer.load(args.checkpoint)
        print(f"resuming from {args.checkpoint} at step {trainer.step_count}")
    os.makedirs(os.path.dirname(args.checkpoint) or ".", exist_ok=True)

    start_epoch = trainer.step_count // steps_per_epoch
    seen, t0 = 0, time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        skip = trainer.step_count - epoch * steps_per_epoch  # steps of this epoch already done
        for i, (x, y) in enumerate(batches(train_x, train_y, args.batch_size, shuffle=True,
                                           seed=args.seed * 1000 + epoch, drop_last=True)):
            if i < skip:
                continue
            loss = trainer.step(kiln.array(x), kiln.array(y))
            seen += len(y)
            if i % 10 == 0 or i + 1 == steps_per_epoch:
                progress(epoch + 1, args.epochs, i + 1, steps_per_epoch, loss, seen / (time.perf_counter() - t0))
        print()
        trainer.save(args.checkpoint)
    elapsed = time.perf_counter() - t0
    model.to("cpu")  # evaluation runs eagerly, on the interpreter
    acc = evaluate(model, test_x, test_y)
    print(f"test accuracy {acc:.4f}")
    if seen:
        print(f"trained {seen} samples in {elapsed:.1f} s: {seen / elapsed:,.0f} samples/s")
    print(f"checkpoint: {args.checkpoint}")
    return acc


if __name__ == "__main__":
    main()
