"""test_batch_norm.py — batch norm in training mode, backward included: kiln's gradients of
batch_norm_train (its gradient rule and batch_norm_train_backward) against
torch.nn.functional.batch_norm(training=True), and a training step with BatchNorm2d compiled for
the VM against torch step for step."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import nn

TOL = {"float32": (2e-5, 2e-5), "float64": (1e-10, 1e-12)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 6), (4, 3, 5, 5), (2, 8, 7, 7)])
def test_training_backward_vs_torch(shape, dtype, rng):
    eps = 1e-3
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    g, b = rng.uniform(0.5, 1.5, shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    w = rng.standard_normal(shape).astype(dtype)
    kx, kg, kb = (kiln.array(a).requires_grad_() for a in (x, g, b))
    y, _, _ = kiln.batch_norm_train(kx, kg, kb, axis=1, eps=eps)
    kiln.sum(y * kiln.array(w)).backward()
    tx, tg, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, g, b))
    ty = F.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    torch.sum(ty * torch.from_numpy(w)).backward()
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=rtol, atol=atol, err_msg="y")
    for name, k, t in (("x", kx, tx), ("gamma", kg, tg), ("beta", kb, tb)):
        want = t.grad.numpy()
        np.testing.assert_allclose(k.grad.numpy(), want, rtol=rtol, atol=atol * max(1.0, np.abs(want).max()),
                                   err_msg=f"d{name}")


class ConvBN(kiln.Model):
    def build(self):
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, 3)
        self.bn1d = nn.BatchNorm2d(3)

    def forward(self, x):
        h = kiln.relu(self.bn(self.conv(x)))
        z = self.fc(kiln.reshape(h, (h.shape[0], -1)))
        # a batch norm over [N, C] (as BatchNorm1d would): x [N, C, 1, 1] here
        return kiln.reshape(self.bn1d(kiln.reshape(z, (z.shape[0], 3, 1, 1))), (z.shape[0], 3))


class TorchConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.fc, self.bn1d = torch.nn.Linear(100, 3), torch.nn.BatchNorm2d(3)

    def forward(self, x):
        z = self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
        return self.bn1d(z[:, :, None, None])[:, :, 0, 0]


@pytest.mark.skipif(not kiln.compiler.available(), reason="needs kiln_compile")
def test_compiled_training_step_vs_torch(rng):
    model = ConvBN(seed=0)
    twin = TorchConvBN()
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    trainer = kiln.Trainer(model, kiln.cross_entropy, kiln.optim.SGD(lr=0.1), executor="vm")
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(3):
        x = rng.standard_normal((6, 2, 5, 5)).astype(np.float32)
        y = rng.integers(0, 3, 6).astype(np.int64)
        loss = trainer.step(kiln.array(x), kiln.array(y))
        opt.zero_grad()
        tloss = F.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        opt.step()
        np.testing.assert_allclose(loss, tloss.item(), rtol=1e-5)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(dict(model.named_parameters())[name].numpy(), p.detach().numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)
