"""test_limits.py — a training step far wider than 256 values: an MLP of 300 Linear layers (600
parameter tensors; SGD with momentum, so the step returns 1 + 600 + 600 values) trains on the VM
exactly as in the interpreter."""
import numpy as np
import pytest

import kiln

needs_vm = pytest.mark.skipif(not kiln.compiler.available(), reason="kiln_compile is not in this libkiln.so")


class DeepMLP(kiln.Model):
    def build(self, depth=300, width=4):
        self.layers = kiln.nn.Sequential(*[kiln.nn.Linear(width, width) for _ in range(depth)])

    def forward(self, x):
        return self.layers(x)


@needs_vm
def test_trainer_600_parameters_vm_matches_interp(rng):
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 4)).astype(np.float32)
    runs = {}
    for executor in ("interp", "vm"):
        model = DeepMLP(seed=0)
        assert len(list(model.named_parameters())) == 600
        trainer = kiln.Trainer(model, kiln.mse_loss, kiln.optim.SGD(lr=0.05, momentum=0.9), executor=executor)
        losses = [trainer.step(kiln.array(x), kiln.array(y)) for _ in range(2)]
        runs[executor] = (losses, {n: p.numpy().copy() for n, p in model.named_parameters()})
    np.testing.assert_allclose(runs["vm"][0], runs["interp"][0], rtol=1e-5)
    for n, p in runs["interp"][1].items():
        np.testing.assert_allclose(runs["vm"][1][n], p, rtol=1e-4, atol=1e-6, err_msg=n)
