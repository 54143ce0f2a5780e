"""test_running_stats.py — batch-norm running statistics updated inside kiln.Trainer's step (VM
and interpreter): running_mean, running_var and num_batches_tracked against a torch module
trained in train mode on the same batches from the same weights, step by step (momentum 0.1 and
None, a batch norm used twice per forward), then infer-mode outputs against torch's eval outputs;
the VM updates the buffers in place, checkpoints carry them, exported traces stay pure."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import nn
from kiln._lib import lib

EXECUTORS = [pytest.param("vm", marks=pytest.mark.skipif(not kiln.compiler.available(), reason="needs kiln_compile")),
             "interp"]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class ConvBN(kiln.Model):
    def build(self, momentum=0.1, twice=False):
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=momentum)
        self.fc = nn.Linear(4 * 5 * 5, 3)
        self.twice = twice

    def forward(self, x):
        h = self.bn(self.conv(x))
        h = self.bn(kiln.relu(h)) if self.twice else h  # the second call updates the first's statistics
        return self.fc(kiln.reshape(kiln.relu(h), (x.shape[0], -1)))


class TorchConvBN(torch.nn.Module):
    def __init__(self, momentum=0.1, twice=False):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4, momentum=momentum)
        self.fc, self.twice = torch.nn.Linear(100, 3), twice

    def forward(self, x):
        h = self.bn(self.conv(x))
        h = self.bn(torch.relu(h)) if self.twice else h
        return self.fc(torch.relu(h).flatten(1))


def batches(rng, n):
    return [(rng.standard_normal((6, 2, 5, 5)).astype(np.float32) * 2 + 0.5, rng.integers(0, 3, 6).astype(np.int64))
            for _ in range(n)]


def pair(momentum, twice):
    model = ConvBN(momentum, twice, seed=0)
    twin = TorchConvBN(momentum, twice)
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return model, twin


def check_buffers(model, twin, step, calls):
    for name in BUFFERS:
        k, t = getattr(model.bn, name).numpy(), getattr(twin.bn, name).detach().numpy()
        if name == "num_batches_tracked":
            assert int(k) == int(t) == step * calls
        else:
            np.testing.assert_allclose(k, t, rtol=2e-5, atol=2e-6, err_msg=f"{name} after step {step}")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("momentum,twice", [(0.1, False), (None, False), (0.3, True)])
def test_running_stats_match_torch(executor, momentum, twice, rng):
    model, twin = pair(momentum, twice)
    trainer = kiln.Trainer(model, kiln.cross_entropy, kiln.optim.SGD(lr=0.1), executor=executor)
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    data = batches(rng, 4)
    for step, (x, y) in enumerate(data, 1):
        loss = trainer.step(kiln.array(x), kiln.array(y))
        opt.zero_grad()
        tloss = F.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        opt.step()
        np.testing.assert_allclose(loss, tloss.item(), rtol=1e-5)
        check_buffers(model, twin, step, 2 if twice else 1)
    # infer mode normalises with the running statistics, as torch's eval mode
    model.infer_mode()
    twin.eval()
    x = data[0][0]
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(kiln.array(x)).numpy(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not kiln.compiler.available(), reason="needs kiln_compile")
def test_vm_and_interpreter_give_the_same_buffers_vm_in_place(rng):
    models = [pair(0.1, True)[0] for _ in range(2)]
    trainers = [kiln.Trainer(m, kiln.cross_entropy, kiln.optim.SGD(lr=0.1), executor=e)
                for m, e in zip(models, ("vm", "interp"))]
    held = [models[0].bn.running_mean, models[0].bn.running_var, models[0].bn.num_batches_tracked]
    data = [lib.kiln_tensor_data(t._ptr) for t in held]
    for x, y in batches(rng, 3):
        for trainer in trainers:
            trainer.step(kiln.array(x), kiln.array(y))
    for name in BUFFERS:
        np.testing.assert_allclose(getattr(models[0].bn, name).numpy(), getattr(models[1].bn, name).numpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    # the VM wrote the new statistics into the buffers it was given (donated, no copies)
    assert [getattr(models[0].bn, name) for name in BUFFERS] == held
    assert [lib.kiln_tensor_data(t._ptr) for t in held] == data
    assert int(held[2].numpy()) == 6  # two batch-norm calls a step


@pytest.mark.parametrize("executor", EXECUTORS)
def test_checkpoint_carries_updated_buffers(executor, rng, tmp_path):
    model, _ = pair(None, False)
    trainer = kiln.Trainer(model, kiln.cross_entropy, kiln.optim.SGD(lr=0.1), executor=executor)
    data = batches(rng, 4)
    for x, y in data[:2]:
        trainer.step(kiln.array(x), kiln.array(y))
    trainer.save(tmp_path / "ckpt.safetensors")
    for x, y in data[2:]:
        trainer.step(kiln.array(x), kiln.array(y))
    resumed = pair(None, False)[0]
    again = kiln.Trainer(resumed, kiln.cross_entropy, kiln.optim.SGD(lr=0.1), executor=executor)
    again.load(tmp_path / "ckpt.safetensors")
    assert int(resumed.bn.num_batches_tracked.numpy()) == 2
    for x, y in data[2:]:
        again.step(kiln.array(x), kiln.array(y))
    for name in BUFFERS:
        np.testing.assert_array_equal(getattr(resumed.bn, name).numpy(), getattr(model.bn, name).numpy(), err_msg=name)


def test_exported_trace_keeps_no_buffer_updates():
    """Model.trace in train mode only normalises: the running statistics are not its parameters."""
    model, _ = pair(0.1, False)
    f = model.trace(np.zeros((6, 2, 5, 5), np.float32))
    assert [n for n, _ in f.parameters] == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    assert int(model.bn.num_batches_tracked.numpy()) == 0
