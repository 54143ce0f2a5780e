"""test_models.py — whole models written as kiln.Models (LeNet-5 and a 2-layer causal transformer):
eager, traced, printed-parsed-and-run and torch (same weights) give the same outputs; state_dict
round trips and load errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import nn

TOL = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}
TORCH_DT = {"float32": torch.float32, "float64": torch.float64}


# ---- LeNet-5 ----------------------------------------------------------------------------------------
class LeNet(kiln.Model):
    def build(self, num_classes=10, dtype=kiln.float32):
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2, dtype=dtype)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5, dtype=dtype)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120, dtype=dtype)
        self.fc2 = nn.Linear(120, 84, dtype=dtype)
        self.fc3 = nn.Linear(84, num_classes, dtype=dtype)

    def forward(self, x):
        x = self.pool(kiln.relu(self.conv1(x)))
        x = self.pool(kiln.relu(self.conv2(x)))
        x = self.flatten(x)
        return self.fc3(kiln.relu(self.fc2(kiln.relu(self.fc1(x)))))


class TorchLeNet(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(400, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


# ---- a 2-layer causal transformer -----------------------------------------------------------------
class Block(kiln.Model):
    def build(self, d, heads, dtype):
        self.ln1 = nn.LayerNorm(d, dtype=dtype)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True, dtype=dtype)
        self.ln2 = nn.LayerNorm(d, dtype=dtype)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, dtype=dtype), nn.GELU(), nn.Linear(4 * d, d, dtype=dtype))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.ln2(x))


class Transformer(kiln.Model):
    def build(self, vocab=11, d=16, heads=2, layers=2, dtype=kiln.float32):
        self.embed = nn.Embedding(vocab, d, dtype=dtype)
        self.blocks = [Block(d, heads, dtype) for _ in range(layers)]
        self.ln_f = nn.LayerNorm(d, dtype=dtype)
        self.head = nn.Linear(d, vocab, dtype=dtype)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class TorchBlock(torch.nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.ln1(x)
        n = x.shape[1]
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask, is_causal=True)[0]
        return x + self.mlp(self.ln2(x))


class TorchTransformer(torch.nn.Module):
    def __init__(self, vocab=11, d=16, heads=2, layers=2):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.blocks = torch.nn.ModuleList([TorchBlock(d, heads) for _ in range(layers)])
        self.ln_f = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def lenet_input(rng, dtype):
    return rng.standard_normal((3, 1, 28, 28)).astype(dtype)


def transformer_input(rng, dtype):
    return rng.integers(0, 11, (2, 7)).astype(np.int64)


MODELS = {"lenet": (LeNet, TorchLeNet, lenet_input), "transformer": (Transformer, TorchTransformer, transformer_input)}


def to_torch(kmodel, tmodel, dtype):
    tmodel = tmodel.to(TORCH_DT[dtype])
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in kmodel.state_dict().items()})
    return tmodel.eval()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_eager_traced_parsed_torch_agree(name, dtype, rng):
    kcls, tcls, make_input = MODELS[name]
    model = kcls(dtype=getattr(kiln, dtype), seed=0).infer_mode()
    x = make_input(rng, dtype)
    eager = model(kiln.array(x)).numpy()

    traced = model.trace(x)
    text = traced.text
    assert text.startswith("def @forward(%x0: ")
    params = dict(model.named_parameters())
    assert [n for n, _ in traced.parameters] == list(params)  # every parameter, named by path
    for n in params:
        assert f"%{n}: " in text
    np.testing.assert_array_equal(traced(x).numpy(), eager)

    module = kiln.parse(text)
    assert module.text == text  # printing is a fixed point
    parsed = module.run("forward", x, *params.values()).numpy()
    np.testing.assert_array_equal(parsed, eager)

    t = to_torch(model, tcls(), dtype)
    with torch.no_grad():
        ref = t(torch.from_numpy(x)).numpy()
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(eager, ref, rtol=rtol, atol=atol)


def test_transformer_is_causal(rng):
    """Changing a later token leaves the logits of earlier positions unchanged."""
    model = Transformer(seed=1).infer_mode()
    x = transformer_input(rng, "float32")
    y = model(kiln.array(x)).numpy()
    x2 = x.copy()
    x2[:, -1] = (x2[:, -1] + 1) % 11
    y2 = model(kiln.array(x2)).numpy()
    np.testing.assert_array_equal(y[:, :-1], y2[:, :-1])
    assert not np.allclose(y[:, -1], y2[:, -1])


def test_transformer_names_match_torch():
    names = list(Transformer(seed=0).state_dict())
    assert names == list(TorchTransformer().state_dict())
    assert "blocks.1.attn.in_proj_weight" in names and "blocks.0.mlp.2.bias" in names


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_round_trip(name, rng):
    kcls, _, make_input = MODELS[name]
    a, b = kcls(seed=1).infer_mode(), kcls(seed=2).infer_mode()
    x = kiln.array(make_input(rng, "float32"))
    assert not np.array_equal(a(x).numpy(), b(x).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    # torch's state dict loads into kiln too
    t = MODELS[name][1]()
    b.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    with torch.no_grad():
        ref = t.eval()(torch.from_numpy(np.asarray(x.numpy()))).numpy()
    np.testing.assert_allclose(b(x).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_load_errors():
    m = LeNet(seed=0)
    sd = m.state_dict()
    sd.pop("fc3.bias")
    sd["fc4.weight"] = np.zeros((10, 84), np.float32)
    sd["conv1.weight"] = np.zeros((6, 1, 3, 3), np.float32)
    sd["fc1.bias"] = sd["fc1.bias"].astype(np.float64)
    with pytest.raises(kiln.Error) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    for part in ("load_state_dict into LeNet", "missing: fc3.bias", "unexpected: fc4.weight",
                 "conv1.weight: shape (6, 1, 3, 3) given, the model has (6, 1, 5, 5)",
                 "fc1.bias: dtype float64 given, the model has float32"):
        assert part in msg
    with pytest.raises(kiln.Error, match="missing: .*blocks.0.ln1.weight"):
        Transformer(seed=0).load_state_dict(LeNet(seed=0).state_dict())
