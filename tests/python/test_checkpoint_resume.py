"""test_checkpoint_resume.py — a run stopped and resumed from a Trainer checkpoint continues with
bit-identical losses; a checkpoint that does not fit the model fails with the mismatches listed."""
import numpy as np
import pytest

import kiln


class MLP(kiln.Model):
    def build(self, hidden=16):
        self.fc1 = kiln.nn.Linear(6, hidden)
        self.fc2 = kiln.nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(kiln.relu(self.fc1(x)))


def _batches(n):
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(n)]


def _trainer(hidden=16):
    return kiln.Trainer(MLP(hidden, seed=3), lambda o, y: kiln.mse_loss(o, kiln.one_hot(y, 3)), kiln.optim.AdamW(lr=1e-2))


def test_resume_is_bit_identical(tmp_path):
    data = _batches(10)
    straight = _trainer()
    expected = [straight.step(kiln.array(x), kiln.array(y)) for x, y in data]
    first = _trainer()
    got = [first.step(kiln.array(x), kiln.array(y)) for x, y in data[:5]]
    path = tmp_path / "ckpt.safetensors"
    first.save(path)
    resumed = _trainer()
    resumed.load(path)
    assert resumed.step_count == 5
    got += [resumed.step(kiln.array(x), kiln.array(y)) for x, y in data[5:]]
    assert got == expected  # exact equality, not approximate
    for (n, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(p.numpy(), q.numpy()), n


def test_mismatched_checkpoint_lists_the_problems(tmp_path):
    t = _trainer(hidden=16)
    t.step(*(kiln.array(v) for v in _batches(1)[0]))
    path = tmp_path / "ckpt.safetensors"
    t.save(path)
    other = _trainer(hidden=12)
    with pytest.raises(kiln.Error) as e:
        other.load(path)
    msg = str(e.value)
    assert "fc1.weight: shape (16, 6) given, the model has (12, 6)" in msg
    assert "fc1.bias: shape (16,) given" in msg and "fc2.weight: shape (3, 16) given" in msg
