"""test_gpt_train.py — a 2-layer GPT (causal attention, layer norm, GELU MLP, tied embeddings)
trains with kiln.Trainer on a byte-level corpus made from text files already on the machine, and
its loss falls."""
import pathlib

import numpy as np

import kiln


class Block(kiln.Model):
    def build(self, width, heads):
        self.ln1 = kiln.nn.LayerNorm(width)
        self.attn = kiln.nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = kiln.nn.LayerNorm(width)
        self.fc = kiln.nn.Linear(width, 4 * width)
        self.proj = kiln.nn.Linear(4 * width, width)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False, is_causal=True)[0]
        return x + self.proj(kiln.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(kiln.Model):
    def build(self, vocab, width, heads, layers, context):
        self.tok = kiln.nn.Embedding(vocab, width)
        self.pos = kiln.nn.Embedding(context, width)
        self.blocks = [Block(width, heads) for _ in range(layers)]
        self.ln = kiln.nn.LayerNorm(width)
        self.context = context

    def forward(self, idx):
        x = self.tok(idx) + self.pos(kiln.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return kiln.matmul(self.ln(x), self.tok.weight, transpose_b=True)  # tied embeddings


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
