"""test_cross_entropy.py — kiln.cross_entropy's gradient (its rule: cross_entropy_backward for class
indices, primitives for probability targets) against torch for every reduction, ignore_index (none,
some, an in-range class, all ignored) and label_smoothing, on [C], [N, C] and [N, C, d1, ...]
logits; training steps with those options against torch on the CPU (the backward decomposed and
fused) and, with a GPU, on CUDA (the fused kernels) against the CPU."""
import os

os.environ["KILN_CUDA_TF32"] = "0"  # before the CUDA backend loads: fp32 matmuls, CPU-comparable

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import kiln  # noqa: E402

REDUCTIONS = ["none", "sum", "mean"]
SHAPES = [(7,), (6, 5), (2, 4, 3), (3, 5, 2, 2), (1, 1)]
# (ignore_index, which targets are set to it: a fraction, or None for an in-range class index)
IGNORES = [(-100, 0.0), (-100, 0.4), (1, None), (-100, 1.0)]


def problem(seed, shape, ignore_index, fraction, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, c, tshape).astype(np.int64)
    if fraction:
        t = np.where(rng.random(tshape) < fraction, ignore_index, t) if fraction < 1 else np.full(tshape, ignore_index)
    return x, np.asarray(t, np.int64), rng


def grads(x, t, w, kwargs):
    """(loss, dx) of sum(cross_entropy(x, t, **kwargs) * w) from kiln (eager autograd) and torch."""
    kx = kiln.array(x).requires_grad_()
    kl = kiln.cross_entropy(kx, kiln.array(t), **kwargs)
    kiln.sum(kl * kiln.array(w)).backward()
    tx = torch.from_numpy(x.copy()).requires_grad_()
    tl = F.cross_entropy(tx, torch.from_numpy(t), **kwargs)
    torch.sum(tl * torch.from_numpy(w)).backward()
    return (kl.numpy(), kx.grad.numpy()), (tl.detach().numpy(), tx.grad.numpy())


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("ignore_index,fraction", IGNORES, ids=["none", "some", "in-range", "all"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_class_index_gradient_matches_torch(shape, reduction, ignore_index, fraction, smoothing, dtype, tol):
    x, t, rng = problem(hash((shape, reduction, ignore_index, fraction, smoothing)) % 2**32, shape, ignore_index, fraction, dtype)
    w = np.asarray(rng.random(t.shape if reduction == "none" else ()) + 0.5, dtype)
    kwargs = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=smoothing)
    (kl, kg), (tl, tg) = grads(x, t, w, kwargs)
    np.testing.assert_allclose(kl, tl, rtol=tol, atol=tol, err_msg="loss")  # NaN (mean of nothing) matches NaN
    np.testing.assert_allclose(kg, tg, rtol=tol, atol=tol, err_msg="dlogits")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (6,)], ids=lambda s: "x".join(map(str, s)))
def test_probability_target_gradients_match_torch(shape, reduction, smoothing):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    p = torch.softmax(torch.from_numpy(rng.standard_normal(shape)), 1 if len(shape) > 1 else 0).numpy()
    w = np.asarray(rng.random(shape[:1] + shape[2:] if reduction == "none" and len(shape) > 1 else ()) + 0.5)
    kx, kp = kiln.array(x).requires_grad_(), kiln.array(p).requires_grad_()
    kiln.sum(kiln.cross_entropy(kx, kp, reduction=reduction, label_smoothing=smoothing) * kiln.array(w)).backward()
    tx, tp = torch.from_numpy(x).requires_grad_(), torch.from_numpy(p).requires_grad_()
    torch.sum(F.cross_entropy(tx, tp, reduction=reduction, label_smoothing=smoothing) * torch.from_numpy(w)).backward()
    np.testing.assert_allclose(kx.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg="dlogits")
    np.testing.assert_allclose(kp.grad.numpy(), tp.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg="dtarget")


# ---- training steps ---------------------------------------------------------------------------
class Net(kiln.Model):
    def build(self):
        self.fc1 = kiln.nn.Linear(12, 32)
        self.fc2 = kiln.nn.Linear(32, 257)

    def forward(self, x):
        return self.fc2(kiln.relu(self.fc1(x)))


def batch(rng, n=48):
    x = rng.standard_normal((n, 12)).astype(np.float32)
    y = rng.integers(0, 257, n).astype(np.int64)
    y[::5] = -100  # ignored
    return x, y


LOSSES = [dict(reduction="mean"), dict(reduction="mean", label_smoothing=0.1), dict(reduction="sum", label_smoothing=0.05)]


def kiln_losses(options, steps=4, **trainer_options):
    x, y = batch(np.random.default_rng(3))
    trainer = kiln.Trainer(Net(seed=11), lambda logits, t: kiln.cross_entropy(logits, t, **options),
                           kiln.optim.SGD(lr=0.05), **trainer_options)
    return [float(trainer.step(x, y)) for _ in range(steps)]


@pytest.mark.parametrize("options", LOSSES, ids=["mean", "mean-smoothed", "sum-smoothed"])
def test_training_matches_torch(options):
    """The compiled CPU step (cross_entropy_backward decomposed and fused) follows torch's SGD."""
    model = Net(seed=11)
    net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 257))
    with torch.no_grad():
        for (name, p), t in zip(model.named_parameters(), net.parameters()):
            assert tuple(p.shape) == tuple(t.shape), name
            t.copy_(torch.from_numpy(p.numpy().copy()))
    x, y = batch(np.random.default_rng(3))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    want = []
    for _ in range(4):
        opt.zero_grad()
        loss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y), **options)
        loss.backward()
        opt.step()
        want.append(loss.item())
    np.testing.assert_allclose(kiln_losses(options), want, rtol=2e-5)


@pytest.mark.parametrize("options", LOSSES, ids=["mean", "mean-smoothed", "sum-smoothed"])
def test_training_on_cuda_matches_cpu(options):
    """On CUDA the loss and its gradient run as the fused kernels (dialect "cuda")."""
    if not kiln.cuda.is_available():
        pytest.skip(f"CUDA unavailable: {kiln.cuda.why_unavailable()}")
    np.testing.assert_allclose(kiln_losses(options, device="cuda"), kiln_losses(options), rtol=1e-4)
