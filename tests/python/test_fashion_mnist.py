"""test_fashion_mnist.py — end-to-end training on Fashion-MNIST (Debian's dataset-fashion-mnist):
LeNet-5 and an MLP trained by kiln.Trainer match torch twins loss for loss over 20 batches, and one
epoch of examples/python/fashion_mnist.py reaches at least 85% test accuracy
and resumes from its checkpoint. Skipped when the data files are absent."""
import importlib.util
import os
import pathlib

import pytest
import torch

import kiln
from kiln.data import batches, load_fashion_mnist
from kiln.data.fashion_mnist import DEFAULT_ROOT

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "fashion_mnist.py"
_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
          "t10k-labels-idx1-ubyte.gz")
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(DEFAULT_ROOT, f)) for f in _FILES),
    reason=f"Fashion-MNIST not found in {DEFAULT_ROOT} (apt-get install dataset-fashion-mnist)")


def _load_script():
    spec = importlib.util.spec_from_file_location("fashion_mnist_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MLP(kiln.Model):
    def build(self):
        self.fc1 = kiln.nn.Linear(784, 256)
        self.fc2 = kiln.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(kiln.relu(self.fc1(kiln.batch_flatten(x))))


class TorchLeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        f = torch.nn.functional
        x = f.max_pool2d(f.relu(self.conv1(x)), 2)
        x = f.max_pool2d(f.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(f.relu(self.fc2(f.relu(self.fc1(x)))))


def _torch_mlp():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


def _torch_step(net, opt, x, y):
    """One torch training step on numpy x, y; returns the loss as a float."""
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt.step()
    return loss.item()


def _copy_into(model, net):
    """Copies kiln's initial parameters into the torch twin (same order, same shapes)."""
    params = list(model.named_parameters())
    assert len(params) == len(list(net.parameters()))
    with torch.no_grad():
        for (name, p), t in zip(params, net.parameters()):
            assert tuple(p.shape) == tuple(t.shape), name
            t.copy_(torch.from_numpy(p.numpy().copy()))


MODELS = [("lenet5", lambda: _load_script().LeNet5(seed=0), TorchLeNet5),
          ("mlp", lambda: MLP(seed=0), _torch_mlp)]
OPTIMIZERS = [("sgd_momentum", lambda: kiln.optim.SGD(lr=0.05, momentum=0.9),
               lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
              ("adam", lambda: kiln.optim.Adam(lr=1e-3), lambda ps: torch.optim.Adam(ps, lr=1e-3))]


@pytest.mark.parametrize("opt_name,make_kiln_opt,make_torch_opt", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("name,make_model,make_twin", MODELS, ids=[m[0] for m in MODELS])
def test_losses_match_torch_for_20_batches(name, make_model, make_twin, opt_name, make_kiln_opt, make_torch_opt):
    images, labels = load_fashion_mnist("train")
    model = make_model()
    net = make_twin()
    _copy_into(model, net)
    trainer = kiln.Trainer(model, lambda logits, y: kiln.cross_entropy(logits, y), make_kiln_opt())
    opt = make_torch_opt(net.parameters())
    data = batches(images[:20 * 64], labels[:20 * 64], 64)
    for step, (x, y) in enumerate(data):
        loss = trainer.step(kiln.array(x), kiln.array(y))
        expected = _torch_step(net, opt, x, y)
        assert loss == pytest.approx(expected, rel=1e-4), f"{name}/{opt_name} step {step}"
    assert step == 19


def test_one_epoch_reaches_85_percent_and_resumes(tmp_path, capsys):
    script = _load_script()
    ckpt = str(tmp_path / "lenet5.safetensors")
    acc = script.main(["--epochs", "1", "--restart", "--checkpoint", ckpt])
    first = capsys.readouterr().out
    assert "resuming" not in first and f"trained {60000 // 64 * 64} samples" in first
    # The script's recipe (Adam, lr 2e-3, batch 64) gives 86.6% here; with lr 1e-3 it gave 84.9%,
    # as did its torch twin from the same weights. The 20-batch test above checks kiln step by
    # step against torch.
    assert acc >= 0.85, first
    # a second run finds the finished epoch in the checkpoint: it trains nothing, same accuracy
    again = script.main(["--epochs", "1", "--checkpoint", ckpt])
    out = capsys.readouterr().out
    assert f"resuming from {ckpt} at step {60000 // 64}" in out
    assert "trained" not in out and "epoch 1/1" not in out
    assert again == acc
