"""models.py — reference models shared by the examples, the tests and the benchmarks: LeNet-5
and a GPT (pre-norm transformer blocks with causal attention, tied embeddings)."""
from . import nn, ops
from .model import Model, Parameter


class LeNet5(Model):
    """LeCun et al. 1998, with ReLU and max pooling (the usual modern variant): 1x28x28 -> 10."""

    def build(self):
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = ops.max_pool2d(ops.relu(self.conv1(x)), 2)
        x = ops.max_pool2d(ops.relu(self.conv2(x)), 2)
        x = ops.batch_flatten(x)
        return self.fc3(ops.relu(self.fc2(ops.relu(self.fc1(x)))))


class GPTBlock(Model):
    """x + attention(ln1(x)) (causal), then + proj(gelu(fc(ln2(x))))."""

    def build(self, width, heads):
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False, is_causal=True)[0]
        return x + self.proj(ops.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(Model):
    """Token + position embeddings, `layers` blocks, a final layer norm and logits through the
    token embedding (tied). embed_std scales the N(0, 1) embeddings (GPT-2 uses 0.02, so the
    first loss is about log(vocab))."""

    def build(self, vocab, width, heads, layers, context, embed_std=None):
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = [GPTBlock(width, heads) for _ in range(layers)]
        self.ln = nn.LayerNorm(width)
        self.context = context
        if embed_std is not None:
            self.tok.weight = Parameter(self.tok.weight * embed_std)
            self.pos.weight = Parameter(self.pos.weight * embed_std)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(ops.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return ops.matmul(self.ln(x), self.tok.weight, transpose_b=True)  # tied embeddings
