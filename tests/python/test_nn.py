"""test_nn.py — kiln.nn layers against their torch.nn twins with copied weights (train and infer
modes, float32 and float64, traced and eager), initialisation statistics against torch's schemes,
and kiln.Model's machinery: parameter/buffer/submodule registry, modes, dropout keys, state dicts."""
import inspect
import math

import numpy as np
import pytest
import torch

import kiln
from kiln import nn

TOL = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12)}
TORCH_DT = {"float32": torch.float32, "float64": torch.float64}


def make_kiln(name, args, kwargs, dtype, seed=0):
    cls = getattr(nn, name)
    if "dtype" in inspect.signature(cls.build).parameters:
        kwargs = dict(kwargs, dtype=getattr(kiln, dtype))
    return cls(*args, seed=seed, **kwargs)


def randomize(model, rng):
    """Loads random float parameters/buffers (positive running variances) so that copies are tested
    on more than the ones/zeros defaults."""
    state = {}
    for name, a in model.state_dict().items():
        if a.dtype.kind != "f":
            state[name] = a
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 1.5, a.shape).astype(a.dtype)
        else:
            state[name] = rng.standard_normal(a.shape).astype(a.dtype)
    model.load_state_dict(state)


def to_torch(kmodel, tmodel, dtype):
    """Copies kiln's state into the torch module (same names) and returns it in kiln's mode."""
    tmodel = tmodel.to(TORCH_DT[dtype])
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in kmodel.state_dict().items()})
    return tmodel.train(kmodel.training)


def close(k, t, dtype):
    """Elementwise rtol, plus an atol relative to the largest magnitude (sums that cancel)."""
    rtol, atol = TOL[dtype]
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    scale = max(1.0, float(np.abs(t).max())) if t.size else 1.0
    np.testing.assert_allclose(np.asarray(k.numpy()), t, rtol=rtol, atol=atol * scale)


def make_input(shape, dtype, rng, name):
    if name == "Embedding":
        return rng.integers(0, 10, shape).astype(np.int64)
    return rng.standard_normal(shape).astype(dtype)


# (layer, args, kwargs, input shape)
LAYERS = [
    ("Linear", (5, 7), {}, (3, 5)),
    ("Linear", (5, 7), {"bias": False}, (2, 3, 5)),
    ("Conv2d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 7, 6)),
    ("Conv2d", (4, 6, (3, 2)), {"dilation": 2, "groups": 2, "bias": False}, (2, 4, 8, 7)),
    ("Conv2d", (3, 4, 3), {"padding": "same"}, (1, 3, 5, 5)),
    ("Conv2d", (3, 4, 4), {"padding": "same"}, (1, 3, 6, 5)),
    ("Conv2d", (3, 2, 3), {"padding": "valid"}, (1, 3, 5, 5)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 4, 5, 4)),
    ("ConvTranspose2d", (4, 6, 3), {"groups": 2, "dilation": 2, "bias": False}, (1, 4, 4, 5)),
    ("BatchNorm2d", (4,), {}, (3, 4, 5, 2)),
    ("BatchNorm2d", (4,), {"momentum": None, "eps": 1e-3}, (3, 4, 2, 2)),
    ("BatchNorm2d", (4,), {"affine": False}, (2, 4, 3, 3)),
    ("BatchNorm2d", (4,), {"track_running_stats": False}, (2, 4, 3, 3)),
    ("LayerNorm", (6,), {}, (3, 6)),
    ("LayerNorm", ((3, 6),), {"eps": 1e-6}, (2, 3, 6)),
    ("LayerNorm", (6,), {"elementwise_affine": False}, (4, 6)),
    ("LayerNorm", (6,), {"bias": False}, (4, 6)),
    ("Embedding", (10, 4), {}, (3, 5)),
    ("Embedding", (10, 4), {"padding_idx": 0}, (7,)),
    ("MaxPool2d", (2,), {}, (2, 3, 6, 7)),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 7, 8)),
    ("AvgPool2d", (2,), {}, (2, 3, 6, 6)),
    ("AvgPool2d", (3, 2, 1), {"count_include_pad": False}, (1, 2, 7, 6)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 7, 5)),
    ("AdaptiveAvgPool2d", (2,), {}, (1, 2, 5, 6)),
    ("Flatten", (), {}, (2, 3, 4)),
    ("Flatten", (0, 1), {}, (2, 3, 4)),
    ("ReLU", (), {}, (4, 5)),
    ("GELU", (), {}, (4, 5)),
    ("GELU", (), {"approximate": "tanh"}, (4, 5)),
    ("SiLU", (), {}, (4, 5)),
    ("Tanh", (), {}, (4, 5)),
    ("Sigmoid", (), {}, (4, 5)),
    ("Dropout", (0.0,), {}, (4, 5)),
    ("Dropout", (0.3,), {}, (4, 5)),  # compared in infer mode only (train: statistics below)
    ("Identity", (), {}, (2, 3)),
]


def layer_id(case):
    name, args, kwargs, _ = case
    return name + "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("case", LAYERS, ids=[layer_id(c) for c in LAYERS])
def test_layer_matches_torch(case, mode, dtype, rng):
    name, args, kwargs, shape = case
    if name == "Dropout" and args[0] > 0 and mode == "train":
        pytest.skip("random masks: see test_dropout_train_statistics")
    k = make_kiln(name, args, kwargs, dtype)
    randomize(k, rng)
    k.train_mode(mode == "train")
    t = to_torch(k, getattr(torch.nn, name)(*args, **kwargs), dtype)
    x = make_input(shape, dtype, rng, name)
    traced = k.trace(x)  # before the eager call: train-mode batch norm updates its stats eagerly
    y = k(kiln.array(x))
    close(y, t(torch.from_numpy(x)), dtype)
    close(traced(x), y.numpy(), dtype)
    for bname, buf in k.named_buffers():  # batch norm in train mode: updated running statistics
        close(buf, t.get_buffer(bname), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_running_stats_over_steps(dtype, rng):
    k = make_kiln("BatchNorm2d", (3,), {"momentum": 0.2}, dtype)
    randomize(k, rng)
    t = to_torch(k, torch.nn.BatchNorm2d(3, momentum=0.2), dtype)
    for step in range(3):
        x = rng.standard_normal((4, 3, 2, 5)).astype(dtype) * (step + 1) + step
        close(k(kiln.array(x)), t(torch.from_numpy(x)), dtype)
    assert int(k.num_batches_tracked) == int(t.num_batches_tracked) == 3
    close(k.running_mean, t.running_mean, dtype)
    close(k.running_var, t.running_var, dtype)
    k.infer_mode(), t.eval()
    x = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    close(k(kiln.array(x)), t(torch.from_numpy(x)), dtype)


def test_batch_norm_traced_train_mode_does_not_update(rng):
    k = nn.BatchNorm2d(2, seed=0)
    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    f = k.trace(x)
    f(x)
    np.testing.assert_array_equal(k.running_mean.numpy(), 0)
    assert int(k.num_batches_tracked) == 0
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        k(kiln.ones((1, 2, 1, 1)))


def test_sequential_matches_torch(rng):
    k = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(16, 3), seed=1)
    randomize(k, rng)
    t = to_torch(k, torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3)), "float32")
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    for mode in (True, False):
        k.train_mode(mode), t.train(mode)
        close(k(kiln.array(x)), t(torch.from_numpy(x)), "float32")
    assert len(k) == 6 and isinstance(k[-1], nn.Linear) and len(k[1:3]) == 2
    assert [n for n, _ in k.named_parameters()][:3] == ["0.weight", "0.bias", "1.weight"]


# ---- MultiheadAttention ---------------------------------------------------------------------------
def causal(n):
    return np.triu(np.ones((n, n), bool), 1)


MHA_CASES = {
    "self": dict(),
    "self-causal": dict(is_causal=True),
    "bool-mask": dict(attn_mask=causal(5)),
    "float-mask": dict(attn_mask="float"),
    "3d-mask": dict(attn_mask="3d"),
    "key-padding": dict(key_padding_mask=True),
    "cross": dict(cross=True),
    "cross-kv-mask": dict(cross=True, key_padding_mask=True),
    "no-bias": dict(bias=False),
    "per-head-weights": dict(average_attn_weights=False),
    "seq-first": dict(batch_first=False),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_torch(case, mode, dtype, rng):
    opts = dict(MHA_CASES[case])
    E, H, B, L = 8, 2, 3, 5
    S = 4 if opts.pop("cross", False) else L
    ctor = {k: opts.pop(k) for k in ("bias", "batch_first") if k in opts}
    k = nn.MultiheadAttention(E, H, dtype=getattr(kiln, dtype), seed=3, **ctor)
    randomize(k, rng)
    k.train_mode(mode == "train")
    t = to_torch(k, torch.nn.MultiheadAttention(E, H, batch_first=ctor.get("batch_first", True), bias=ctor.get("bias", True)), dtype)
    first = (B, L, E) if ctor.get("batch_first", True) else (L, B, E)
    q = rng.standard_normal(first).astype(dtype)
    kv = q if S == L else rng.standard_normal((B, S, E)).astype(dtype)
    kw_k, kw_t = dict(opts), dict(opts)
    if opts.get("is_causal"):
        kw_t["attn_mask"] = torch.from_numpy(causal(L))  # torch needs the mask with the hint
    if isinstance(opts.get("attn_mask"), np.ndarray):
        kw_t["attn_mask"] = torch.from_numpy(opts["attn_mask"])
    elif opts.get("attn_mask") == "float":
        m = rng.standard_normal((L, S)).astype(dtype)
        kw_k["attn_mask"], kw_t["attn_mask"] = m, torch.from_numpy(m)
    elif opts.get("attn_mask") == "3d":
        m = rng.standard_normal((B * H, L, S)).astype(dtype)
        kw_k["attn_mask"], kw_t["attn_mask"] = kiln.array(m), torch.from_numpy(m)
    if opts.get("key_padding_mask"):
        m = np.zeros((B, S), bool)
        m[:, -1] = True
        m[0, 0] = True
        kw_k["key_padding_mask"], kw_t["key_padding_mask"] = m, torch.from_numpy(m)
    tq, tkv = torch.from_numpy(q), torch.from_numpy(kv)
    kq = kiln.array(q)
    kkv = kq if S == L else kiln.array(kv)
    y, w = k(kq, kkv, kkv, **kw_k)
    ty, tw = t(tq, tkv if S != L else tq, tkv if S != L else tq, **kw_t)
    close(y, ty, dtype)
    close(w, tw, dtype)
    _, none = k(kq, kkv, kkv, need_weights=False, **kw_k)
    assert none is None


def test_multihead_attention_trace_and_dropout(rng):
    k = nn.MultiheadAttention(8, 2, dropout=0.5, seed=0).infer_mode()
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    y, w = k(kiln.array(x), kiln.array(x), kiln.array(x), is_causal=True)

    def fwd(k_, x_):
        return k_(x_, x_, x_, is_causal=True)
    g = kiln.trace(lambda xs: fwd(k, xs), x)
    assert "arange" in g.text  # the causal mask is built inside the IR
    gy, gw = g(x)
    close(gy, y.numpy(), "float32")
    close(gw, w.numpy(), "float32")
    assert np.allclose(np.triu(w.numpy()[0], 1), 0)
    # train mode: dropout on the attention weights, the rows still average to 1 in expectation
    k.train_mode().seed(0)
    _, w1 = k(kiln.array(x), kiln.array(x), kiln.array(x))
    _, w2 = k(kiln.array(x), kiln.array(x), kiln.array(x))
    assert not np.array_equal(w1.numpy(), w2.numpy())
    k.seed(0)
    _, w3 = k(kiln.array(x), kiln.array(x), kiln.array(x))
    np.testing.assert_array_equal(w1.numpy(), w3.numpy())


# ---- dropout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train_statistics(p):
    d = nn.Dropout(p).seed(7)
    x = kiln.full((200, 250), 3.0)
    y = d(x).numpy()
    kept = y != 0
    assert abs(1 - kept.mean() - p) < 0.01  # 50000 draws: 5 sigma is < 0.012
    np.testing.assert_allclose(y[kept], 3.0 / (1 - p), rtol=1e-6)
    assert abs(y.mean() - 3.0) < 0.1
    y2 = d(x).numpy()
    assert not np.array_equal(y, y2)  # each call draws a new key
    d.seed(7)
    np.testing.assert_array_equal(d(x).numpy(), y)  # the same seed gives the same masks
    assert np.array_equal(d.infer_mode()(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), 0)


def test_dropout_keys_shared_across_tree():
    class Two(kiln.Model):
        def build(self):
            self.a, self.b = nn.Dropout(0.5), nn.Dropout(0.5)

        def forward(self, x):
            return self.a(x), self.b(x)
    m = Two().seed(100)
    assert m.a._keys is m.b._keys is m._keys
    ya, yb = m(kiln.ones((64, 64)))
    assert not np.array_equal(ya.numpy(), yb.numpy())
    assert m.next_key() == 102
    f = m.seed(100).trace(np.ones((64, 64), np.float32))
    assert "dropout(%x0, 100" in f.text and "dropout(%x0, 101" in f.text  # keys become literals
    fa, fb = f(np.ones((64, 64), np.float32))
    np.testing.assert_array_equal(fa.numpy(), ya.numpy())
    np.testing.assert_array_equal(fb.numpy(), yb.numpy())
    nn.init.manual_seed(40)  # unseeded models draw from the global counter, restarted here
    d = nn.Dropout(0.5)
    assert d.next_key() == 40 and nn.Dropout(0.5).next_key() == 41


def test_parameter_construction():
    p = kiln.Parameter([1.0, 2.0])
    assert p.dtype is kiln.float32 and isinstance(p, kiln.Tensor) and repr(p).startswith("kiln.Parameter(")
    q = kiln.Parameter(kiln.arange(3), dtype=kiln.float64)
    assert q.dtype is kiln.float64 and q.numpy().tolist() == [0.0, 1.0, 2.0]
    t = kiln.ones(2)
    np.testing.assert_array_equal(kiln.Parameter(t).numpy(), t.numpy())


# ---- initialisation -------------------------------------------------------------------------------
def uniform_ok(w, bound):
    """w looks like U(-bound, bound): inside it, reaching near its edges, with mean 0 and variance
    bound**2 / 3 (tolerances of about 5 standard errors for n samples)."""
    w = np.asarray(w, np.float64).ravel()
    n = w.size
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > bound * (1 - 8 / n)
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 5 * math.sqrt(0.8 / n)
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)


INIT_CASES = [  # (layer, args, {param: bound})
    ("Linear", (300, 64), {"weight": 1 / math.sqrt(300), "bias": 1 / math.sqrt(300)}),
    ("Conv2d", (16, 32, 3), {"weight": 1 / math.sqrt(144), "bias": 1 / math.sqrt(144)}),
    ("Conv2d", (16, 32, (3, 5), 1, 0, 1, 4), {"weight": 1 / math.sqrt(60), "bias": 1 / math.sqrt(60)}),
    ("ConvTranspose2d", (16, 32, 3), {"weight": 1 / math.sqrt(288), "bias": 1 / math.sqrt(288)}),
    ("MultiheadAttention", (64, 4), {"in_proj_weight": math.sqrt(6 / 256), "out_proj.weight": 1 / 8}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", INIT_CASES, ids=[c[0] + str(c[1]) for c in INIT_CASES])
def test_init_matches_torch_scheme(case, dtype):
    name, args, bounds = case
    k = getattr(nn, name)(*args, dtype=getattr(kiln, dtype), seed=11)
    torch.manual_seed(0)
    t = getattr(torch.nn, name)(*args)
    kp, tp = dict(k.named_parameters()), dict(t.named_parameters())
    assert list(kp) == list(tp)
    for pname, bound in bounds.items():
        assert kp[pname].dtype is getattr(kiln, dtype)
        uniform_ok(kp[pname].numpy(), bound)
        uniform_ok(tp[pname].detach().numpy(), bound)  # the same scheme as torch's
    for pname in kp:
        if pname not in bounds:  # MHA's biases: zeros in both
            np.testing.assert_array_equal(kp[pname].numpy(), tp[pname].detach().numpy())


def test_init_norms_embedding():
    ln, bn = nn.LayerNorm(5), nn.BatchNorm2d(5)
    for m in (ln, bn):
        np.testing.assert_array_equal(m.weight.numpy(), 1)
        np.testing.assert_array_equal(m.bias.numpy(), 0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1)
    assert [n for n, _ in bn.named_buffers()] == [n for n, _ in torch.nn.BatchNorm2d(5).named_buffers()]
    e = nn.Embedding(2000, 50, padding_idx=3, seed=2).weight.numpy()
    np.testing.assert_array_equal(e[3], 0)
    assert abs(e.mean()) < 0.01 and abs(e.std() - 1) < 0.01
    w = nn.init.kaiming_normal((400, 100), nonlinearity="relu", key=5).numpy()
    assert abs(w.std() / math.sqrt(2 / 100) - 1) < 0.02
    w = nn.init.xavier_normal((300, 200), key=6).numpy()
    assert abs(w.std() / math.sqrt(2 / 500) - 1) < 0.02
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5)))


def test_init_seeding():
    a, b = nn.Linear(4, 3, seed=5), nn.Linear(4, 3, seed=5)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert not np.array_equal(a.weight.numpy(), nn.Linear(4, 3, seed=6).weight.numpy())
    assert not np.array_equal(a.weight.numpy(), a.bias.numpy()[:, None] * np.ones(4))
    nn.init.manual_seed(9)
    c = nn.Linear(4, 3)
    d = nn.Linear(4, 3)
    nn.init.manual_seed(9)
    np.testing.assert_array_equal(nn.Linear(4, 3).weight.numpy(), c.weight.numpy())
    assert not np.array_equal(c.weight.numpy(), d.weight.numpy())


# ---- Model machinery ------------------------------------------------------------------------------
class Net(kiln.Model):
    def build(self, width=4):
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.blocks = [nn.Linear(width, width), nn.Dropout(0.5)]
        self.scale = kiln.Parameter(np.ones(width, np.float32))
        self.register_buffer("steps", kiln.zeros((), kiln.int64))
        self.note = "not state"

    def forward(self, x):
        return self.blocks[1](self.blocks[0](x)) * self.scale


def test_registry_names_and_order():
    m = Net(seed=0)
    assert [n for n, _ in m.named_parameters()] == [
        "scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "blocks.0.weight", "blocks.0.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "steps", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert list(m.state_dict()) == ["scale", "steps", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                    "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                                    "blocks.0.weight", "blocks.0.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "conv", "bn", "blocks", "blocks.0", "blocks.1"]
    assert isinstance(m.blocks, nn.ModuleList) and m.get_submodule("blocks.0") is m.blocks[0]
    assert isinstance(m.scale, kiln.Parameter) and isinstance(m.scale, kiln.Tensor)
    assert type(m.scale * 2) is kiln.Tensor and m.note == "not state"
    m.scale = kiln.ones(4) * 2  # reassigning a parameter keeps it a parameter, in its place
    assert isinstance(m.scale, kiln.Parameter) and [n for n, _ in m.named_parameters()][0] == "scale"
    m.conv.weight = kiln.Parameter(kiln.zeros((2, 1, 3, 3)))
    assert [n for n, _ in m.conv.named_parameters()] == ["weight", "bias"]
    del m.conv
    assert "conv.weight" not in dict(m.named_parameters())
    with pytest.raises(AttributeError):
        m.conv
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, shared)
    assert len(list(seq.parameters())) == 2 and len(seq.state_dict()) == 4


def test_modes_propagate():
    m = Net(seed=0)
    assert all(x.training for x in m.modules())
    assert m.infer_mode() is m and not any(x.training for x in m.modules())
    m.train_mode()
    assert m.blocks[1].training and m.bn.training
    x = kiln.ones((2, 4))
    assert not np.array_equal(m(x).numpy(), m(x).numpy())  # dropout active, new keys each call
    m.infer_mode()
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())


def test_state_dict_round_trip_and_errors():
    a, b = Net(seed=1), Net(seed=2)
    sd = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values()) and sd["bn.num_batches_tracked"].dtype == np.int64
    sd["scale"][:] = 5  # a copy: the model is untouched
    assert a.scale.numpy()[0] == 1
    assert b.load_state_dict(a.state_dict()) == ([], [])
    for (n1, v1), (n2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n1 == n2 and np.array_equal(v1, v2)
    bad = a.state_dict()
    del bad["conv.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["blocks.0.weight"] = np.zeros((4, 5), np.float32)
    bad["scale"] = np.zeros(4, np.float64)
    before = b.conv.weight.numpy().copy()
    with pytest.raises(kiln.Error) as e:
        b.load_state_dict(bad)
    msg = str(e.value)
    assert "missing: conv.bias" in msg and "unexpected: extra.weight" in msg
    assert "blocks.0.weight: shape (4, 5) given, the model has (4, 4)" in msg
    assert "scale: dtype float64 given, the model has float32" in msg
    assert isinstance(e.value, ValueError)
    np.testing.assert_array_equal(b.conv.weight.numpy(), before)  # nothing changed
    part = {k: v for k, v in a.state_dict().items() if k.startswith("conv.")}
    part["junk"] = np.zeros(1)
    missing, unexpected = b.load_state_dict(part, strict=False)
    assert "scale" in missing and unexpected == ["junk"]
    np.testing.assert_array_equal(b.conv.bias.numpy(), a.conv.bias.numpy())


def test_model_trace_names_parameters():
    m = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.LayerNorm(4), seed=0).infer_mode()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = m.trace(x)
    assert f.text.startswith("def @forward(%x0: f32[2, 3], %0.weight: f32[4, 3], %0.bias: f32[4], %2.weight: f32[4]")
    assert [n for n, _ in f.parameters] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    out = kiln.parse(f.text).run("forward", x, *[t for _, t in f.parameters])
    np.testing.assert_array_equal(out.numpy(), m(kiln.array(x)).numpy())
    np.testing.assert_array_equal(f(x).numpy(), out.numpy())
