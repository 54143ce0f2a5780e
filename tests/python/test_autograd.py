"""test_autograd.py — eager autograd (requires_grad, backward, .grad, no_grad) against torch."""
import numpy as np
import pytest
import torch

import kiln


def _pair(a):
    return kiln.array(a).requires_grad_(), torch.from_numpy(a.copy()).requires_grad_()


def test_backward_matches_torch_through_composites_and_broadcasting():
    rng = np.random.default_rng(0)
    x, tx = _pair(rng.standard_normal((4, 5)))
    w, tw = _pair(rng.standard_normal((5, 3)))
    b, tb = _pair(rng.standard_normal(3))
    target = rng.integers(0, 3, 4)
    y = kiln.log_softmax(kiln.tanh(x @ w + b), axis=1)
    loss = -(y * kiln.one_hot(kiln.array(target), 3, dtype="float64")).sum() / 4 + kiln.sigmoid(x).mean() * 2
    loss.backward()
    ty = torch.log_softmax(torch.tanh(tx @ tw + tb), 1)
    tl = torch.nn.functional.nll_loss(ty, torch.from_numpy(target)) + torch.sigmoid(tx).mean() * 2
    tl.backward()
    assert loss.item() == pytest.approx(tl.item(), rel=1e-12)
    for k, t in ((x, tx), (w, tw), (b, tb)):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_grads_accumulate_and_no_grad_stops_recording():
    x, tx = _pair(np.array([1.0, 2.0, 3.0]))
    for _ in range(2):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())
    with kiln.no_grad():
        y = x * 2
    assert y._grad_fn is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_non_scalar_backward_needs_a_gradient():
    x, tx = _pair(np.array([[1.0, -2.0], [0.5, 4.0]]))
    y = kiln.relu(x) * 3
    with pytest.raises(RuntimeError, match="only for one-element outputs"):
        y.backward()
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    y.backward(kiln.array(g))
    (torch.relu(tx) * 3).backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="only floating-point"):
        kiln.array([1, 2]).requires_grad_()


def test_unsupported_gradient_names_the_op():
    x = kiln.array(np.arange(6.0).reshape(2, 3)).requires_grad_()
    y = kiln.argsort(x)  # integer result: no gradient can flow, so the loss does not depend on x
    z = kiln.take(x, kiln.array([0, 2]), axis=1).sum()
    try:
        z.backward()
    except kiln.Error as e:
        assert "take" in str(e)
    else:
        np.testing.assert_allclose(x.grad.numpy(), [[1, 0, 1], [1, 0, 1]])
    assert y.dtype == kiln.int64
