"""test_attention.py — kiln.attention (the fused attention op) against
torch.nn.functional.scaled_dot_product_attention, forward and backward, eager and traced, and
MultiheadAttention's fused path against its masked-scores path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import nn

# (q, k, v shapes): Tq != Tk both ways, no / one / two batch dims, D 16 and 64, Dv != D
SHAPES = [((5, 16), (7, 16), (7, 16)), ((3, 9, 16), (3, 4, 16), (3, 4, 8)), ((2, 3, 6, 64), (2, 3, 6, 64), (2, 3, 6, 64)),
          ((2, 70, 16), (2, 130, 16), (2, 130, 16))]
# (kiln dtype, torch dtype, rtol, atol): low-precision inputs are compared with a float32 torch run
DTYPES = [("float32", torch.float32, 1e-4, 1e-5), ("float64", torch.float64, 1e-10, 1e-12),
          ("bfloat16", torch.bfloat16, 3e-2, 3e-2), ("float16", torch.float16, 5e-3, 5e-3)]


def _inputs(rng, shapes, tdt):
    """q, k, v (and the loss weights w, shaped like the output) rounded to torch dtype tdt."""
    out = shapes[0][:-1] + shapes[2][-1:]
    return [torch.from_numpy(rng.standard_normal(s)).to(tdt) for s in (*shapes, out)]


@pytest.mark.parametrize("dt,tdt,rtol,atol", DTYPES, ids=[d[0] for d in DTYPES])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", SHAPES, ids=[f"q{s[0]}-k{s[1]}-v{s[2]}" for s in SHAPES])
def test_attention_vs_torch(rng, shapes, causal, dt, tdt, rtol, atol):
    q, k, v, w = _inputs(rng, shapes, tdt)
    ref_dt = torch.float64 if tdt == torch.float64 else torch.float32
    tin = [t.to(ref_dt).clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*tin, is_causal=causal)
    (ref * w.to(ref_dt)).sum().backward()
    kin = [kiln.array(t.to(ref_dt).numpy()).astype(dt).requires_grad_() for t in (q, k, v)]
    out = kiln.attention(*kin, causal=causal)
    assert out.dtype.name == dt and out.shape == tuple(ref.shape)
    (out * kiln.array(w.to(ref_dt).numpy()).astype(dt)).sum().backward()
    np.testing.assert_allclose(out.numpy().astype(np.float64), ref.detach().double().numpy(), rtol=rtol, atol=atol)
    for name, a, t in zip("qkv", kin, tin):
        np.testing.assert_allclose(a.grad.numpy().astype(np.float64), t.grad.double().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"d{name}")


def test_attention_scale_and_lse(rng):
    q, k, v, _ = _inputs(rng, SHAPES[1], torch.float64)
    out, lse = kiln.attention_forward(*(kiln.array(t.numpy()) for t in (q, k, v)), causal=True, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    s = (q @ k.mT * 0.3).masked_fill(torch.ones(9, 4, dtype=torch.bool).triu(1), float("-inf"))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse.numpy(), torch.logsumexp(s, -1).numpy(), rtol=1e-12, atol=1e-12)
    assert kiln.attention_forward(*(kiln.array(t.numpy()).astype("bfloat16") for t in (q, k, v)))[1].dtype.name == "float32"


def test_attention_errors():
    with pytest.raises(kiln.Error, match="equal leading dims"):
        kiln.attention(kiln.zeros((2, 3, 4)), kiln.zeros((3, 3, 4)), kiln.zeros((3, 3, 4)))
    with pytest.raises(kiln.Error, match="one dtype"):
        kiln.attention(kiln.zeros((3, 4)), kiln.zeros((3, 4), "float64"), kiln.zeros((3, 4)))


def test_attention_traced(rng):
    q, k, v, _ = _inputs(rng, SHAPES[2], torch.float32)
    f = kiln.trace(lambda a, b, c: kiln.attention(a, b, c, causal=True), *(kiln.array(t.numpy()) for t in (q, k, v)))
    assert "attention(" in f.text
    got = f(*(kiln.array(t.numpy()) for t in (q, k, v)))
    np.testing.assert_allclose(got.numpy(), F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_fused_path(rng, batch_first):
    """is_causal without masks or weights takes the fused op: the same values and gradients as an
    explicit causal mask (the scores path), up to rounding."""
    m = nn.MultiheadAttention(16, 4, batch_first=batch_first, seed=1)
    x = rng.standard_normal((2, 6, 16) if batch_first else (6, 2, 16)).astype(np.float32)
    mask = np.triu(np.ones((6, 6), bool), 1)
    results = []
    for kw in (dict(is_causal=True), dict(attn_mask=mask)):
        xk = kiln.array(x).requires_grad_()
        out, weights = m(xk, xk, xk, need_weights=False, **kw)
        assert weights is None
        out.sum().backward()
        results.append((out.numpy(), xk.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)
