"""test_gpt_train.py — a 2-layer GPT (causal attention, layer norm, GELU MLP, tied embeddings)
trains with kiln.Trainer on a byte-level corpus made from text files already on the machine, and
its loss falls."""
import pathlib

import numpy as np

import kiln
from kiln.models import GPT


def corpus(n_bytes=200_000):
    """Bytes of text files shipped on every Debian machine (licenses, Python's own sources)."""
    roots = [pathlib.Path("/usr/share/common-licenses"), pathlib.Path(np.__file__).parent]
    data = bytearray()
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in ("", ".py", ".txt") and len(data) < n_bytes:
                try:
                    data += p.read_bytes()[:20_000]
                except OSError:
                    pass
    return np.frombuffer(bytes(data[:n_bytes]), dtype=np.uint8).astype(np.int64)


def lm_loss(logits, targets):
    b, t, v = logits.shape
    return kiln.cross_entropy(kiln.reshape(logits, (b * t, v)), kiln.reshape(targets, (b * t,)))


def test_two_layer_gpt_loss_falls():
    text = corpus()
    assert len(text) > 50_000
    ctx, batch = 16, 8
    model = GPT(256, 32, 2, 2, ctx, seed=0)
    trainer = kiln.Trainer(model, lm_loss, kiln.optim.AdamW(lr=3e-3))
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(40):
        starts = rng.integers(0, len(text) - ctx - 1, batch)
        x = np.stack([text[s:s + ctx] for s in starts])
        y = np.stack([text[s + 1:s + ctx + 1] for s in starts])
        losses.append(trainer.step(kiln.array(x), kiln.array(y)))
    assert losses[0] > 5.0                       # about log(256) at the start
    assert np.mean(losses[-5:]) < losses[0] - 1.5, losses
