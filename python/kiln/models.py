"""models.py — reference models shared by the examples, the tests and the benchmarks: LeNet-5,
a GPT (pre-norm transformer blocks with causal attention, tied embeddings) and ResNet-50
(torchvision's layout and parameter names)."""
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


class Bottleneck(Model):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3x3 conv): 1x1 reduce, 3x3,
    1x1 expand (x4), batch norm after each conv, ReLU; a 1x1 conv + batch norm shortcut when
    the shape changes."""

    def build(self, in_channels, width, stride=1):
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or in_channels != 4 * width:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, 4 * width, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = ops.relu(self.bn1(self.conv1(x)))
        out = ops.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return ops.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(Model):
    """He et al. 2015, as torchvision.models.resnet50 (same parameter and buffer names in the same
    order, so weights copy across): 7x7/2 conv, 3x3/2 max pool, four stages of bottlenecks
    (`blocks` per stage, widths width * 1, 2, 4, 8), global average pool, a linear classifier.
    blocks and width shrink it for tests; the defaults are ResNet-50 (25,557,032 parameters)."""

    def build(self, num_classes=1000, blocks=(3, 4, 6, 3), width=64):
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        for i, n in enumerate(blocks):
            stage = []
            for j in range(n):
                stage.append(Bottleneck(channels, width << i, 2 if i and not j else 1))
                channels = 4 * (width << i)
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = ops.max_pool2d(ops.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(ops.batch_flatten(ops.adaptive_avg_pool2d(x, 1)))
