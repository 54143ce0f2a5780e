"""test_optim.py — kiln.Trainer with each optimizer against torch.optim, step by step for 50
steps from the same initial weights, in float64: per-step losses and final weights."""
import numpy as np
import pytest
import torch

import kiln


class MLP(kiln.Model):
    def build(self):
        self.fc1 = kiln.nn.Linear(6, 16, dtype="float64")
        self.fc2 = kiln.nn.Linear(16, 3, dtype="float64")

    def forward(self, x):
        return self.fc2(kiln.tanh(self.fc1(x)))


def torch_twin(model):
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for (name, p), t in zip(model.named_parameters(), net.parameters()):
            t.copy_(torch.from_numpy(p.numpy().copy()))
    return net


OPTIMIZERS = [
    ("sgd", lambda: kiln.optim.SGD(lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("sgd_momentum_wd", lambda: kiln.optim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-2),
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2)),
    ("sgd_nesterov", lambda: kiln.optim.SGD(lr=0.05, momentum=0.8, nesterov=True),
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd_dampening", lambda: kiln.optim.SGD(lr=0.05, momentum=0.5, dampening=0.3),
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5, dampening=0.3)),
    ("adam", lambda: kiln.optim.Adam(lr=1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2)),
    ("adam_wd", lambda: kiln.optim.Adam(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
     lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adamw", lambda: kiln.optim.AdamW(lr=1e-2, weight_decay=0.1), lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)),
]


@pytest.mark.parametrize("name,make_kiln,make_torch", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizer_matches_torch_for_50_steps(name, make_kiln, make_torch):
    rng = np.random.default_rng(0)
    model = MLP(seed=1)
    net = torch_twin(model)
    trainer = kiln.Trainer(model, lambda out, y: kiln.mse_loss(out, y), make_kiln())
    opt = make_torch(net.parameters())
    for step in range(50):
        x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
        loss = trainer.step(kiln.array(x), kiln.array(y))
        opt.zero_grad()
        tl = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        opt.step()
        assert loss == pytest.approx(tl.item(), rel=1e-9), f"step {step}"
    for (pname, p), t in zip(model.named_parameters(), net.parameters()):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=pname)


def test_clip_grad_norm_and_schedule_match_torch():
    rng = np.random.default_rng(1)
    model = MLP(seed=2)
    net = torch_twin(model)
    schedule = kiln.optim.cosine_with_warmup(0.1, warmup_steps=3, total_steps=10)
    trainer = kiln.Trainer(model, lambda out, y: kiln.mse_loss(out, y),
                           kiln.optim.SGD(lr=0.1, momentum=0.9, schedule=schedule, clip_grad_norm=0.5))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for step in range(1, 11):
        x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3)) * 10
        loss = trainer.step(kiln.array(x), kiln.array(y))
        opt.zero_grad()
        tl = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        for g in opt.param_groups:
            g["lr"] = schedule(step)
        opt.step()
        assert loss == pytest.approx(tl.item(), rel=1e-6), f"step {step}"
    for p, t in zip(model.parameters(), net.parameters()):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-9)


def test_schedules():
    s = kiln.optim.step_lr(1.0, step_size=10, gamma=0.5)
    assert [s(1), s(10), s(11), s(21)] == [1.0, 1.0, 0.5, 0.25]
    c = kiln.optim.cosine_with_warmup(1.0, warmup_steps=4, total_steps=8)
    assert c(2) == 0.5 and c(4) == 1.0 and c(8) == pytest.approx(0.0, abs=1e-12) and 0 < c(6) < 1


def test_training_step_is_one_ir_function():
    model = MLP(seed=0)
    trainer = kiln.Trainer(model, lambda out, y: kiln.mse_loss(out, y), kiln.optim.AdamW(lr=1e-3))
    text = trainer.compiled_text(kiln.zeros([4, 6], "float64"), kiln.zeros([4, 3], "float64"))
    assert "def @loss_grad(" in text and "def @train_step(" in text
    assert "let %0 = @loss_grad(%x, %y, %fc1.weight, %fc1.bias, %fc2.weight, %fc2.bias)" in text
    assert kiln.parse(text).text == text  # prints and parses back


def _lans_reference(params, grads, state, lr, step, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
    """The published LANS update (Algorithm 2 of Zheng et al. 2020) in numpy."""
    out = []
    for i, (p, g) in enumerate(zip(params, grads)):
        m, v = state[i]
        n = np.linalg.norm(g)
        g = g / n if n > 0 else g
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2 ** step)) + eps
        r = m / (1 - b1 ** step) / denom + wd * p
        c = g / denom + wd * p
        pn = np.linalg.norm(p)
        ratio = lambda u: pn / np.linalg.norm(u) if pn > 0 and np.linalg.norm(u) > 0 else 1.0
        out.append(p - lr * b1 * ratio(r) * r - lr * (1 - b1) * ratio(c) * c)
    return out


def test_lans_matches_its_published_update_rule():
    rng = np.random.default_rng(3)
    model = MLP(seed=4)
    net = torch_twin(model)  # used for the gradients only
    trainer = kiln.Trainer(model, lambda out, y: kiln.mse_loss(out, y), kiln.optim.LANS(lr=0.02))
    params = [t.detach().numpy().copy() for t in net.parameters()]
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    for step in range(1, 51):
        x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
        loss = trainer.step(kiln.array(x), kiln.array(y))
        with torch.no_grad():
            for t, p in zip(net.parameters(), params):
                t.copy_(torch.from_numpy(p))
        net.zero_grad()
        tl = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        assert loss == pytest.approx(tl.item(), rel=1e-9), f"step {step}"
        params = _lans_reference(params, [t.grad.numpy() for t in net.parameters()], state, 0.02, step)
    for p, ref in zip(model.parameters(), params):
        np.testing.assert_allclose(p.numpy(), ref, rtol=1e-9, atol=1e-12)
