"""test_cuda.py — the Python device API (kiln.device, kiln.cuda, Tensor.to / Model.to,
Trainer(device=...), kiln.compile(device=...)). Without a GPU: CUDA reports itself unavailable
with a reason and every request for a CUDA device raises an error naming it. With a GPU (the
rest skip otherwise, saying why): host <-> device round trips, device memory pools, and
training on CUDA matching the CPU (TF32 off, KILN_CUDA_TF32=0) with and without CUDA graphs."""
import os

os.environ["KILN_CUDA_TF32"] = "0"  # before the CUDA backend loads: fp32 matmuls, CPU-comparable

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kiln  # noqa: E402
from kiln._lib import lib  # noqa: E402
from kiln.models import GPT, ResNet50  # noqa: E402

HAVE_CUDA = kiln.cuda.is_available()
WHY = kiln.cuda.why_unavailable()


@pytest.fixture
def gpu():
    if not HAVE_CUDA:
        pytest.skip(f"CUDA unavailable: {WHY}")


class MLP(kiln.Model):
    def build(self):
        self.fc1 = kiln.nn.Linear(12, 32)
        self.fc2 = kiln.nn.Linear(32, 5)

    def forward(self, x):
        return self.fc2(kiln.relu(self.fc1(x)))


def lm_loss(logits, y):
    b, t, v = logits.shape
    return kiln.cross_entropy(kiln.reshape(logits, (b * t, v)), kiln.reshape(y, (b * t,)))


def mlp_case(rng):
    x = rng.standard_normal((16, 12)).astype(np.float32)
    y = rng.integers(0, 5, 16).astype(np.int64)
    return lambda: MLP(seed=3), kiln.cross_entropy, lambda: kiln.optim.SGD(lr=0.1, momentum=0.9), x, y


def gpt_case(rng):
    tokens = rng.integers(0, 64, (2, 17)).astype(np.int64)
    return (lambda: GPT(64, 32, 4, 2, 16, embed_std=0.02, seed=5), lm_loss, lambda: kiln.optim.AdamW(lr=1e-2),
            tokens[:, :-1].copy(), tokens[:, 1:].copy())


def losses(case, steps=5, **trainer_options):
    make_model, loss_fn, make_opt, x, y = case
    trainer = kiln.Trainer(make_model(), loss_fn, make_opt(), **trainer_options)
    return [trainer.step(x, y) for _ in range(steps)], trainer


# ---- everywhere -------------------------------------------------------------------------------
def test_cpu_device_names():
    t = kiln.array([1.0, 2.0])
    assert t.device == "cpu" and str(t.device) == "cpu" and t.device.type == "cpu"
    assert kiln.device("cpu") is t.device and repr(t.device) == "kiln.device('cpu')"
    assert t.to("cpu") is t and t.cpu() is t and t.to(kiln.device("cpu")) is t
    assert kiln.array([1, 2], device="cpu").device == "cpu"
    with pytest.raises(kiln.Error, match="expected"):
        kiln.device("tpu")


def test_cpu_model_to_and_trainer_device_cpu(rng):
    case = mlp_case(rng)
    m = case[0]()
    params = list(m.parameters())
    assert m.to("cpu") is m and list(m.parameters()) == params
    plain, _ = losses(case)
    on_cpu, trainer = losses(case, device="cpu")
    assert plain == on_cpu and trainer.device == "cpu"


def test_compile_options_default_to_the_cpu(rng):
    opts = lib.kiln_compile_defaults()
    assert opts.device is None and opts.cuda_graph is False
    a = rng.standard_normal((3, 4)).astype(np.float32)
    out = kiln.compile(lambda v: v * 3, a, device="cpu")(a)
    assert out.device == "cpu"
    np.testing.assert_allclose(out.numpy(), a * 3, rtol=1e-6)


def test_resnet50_has_torchvisions_layout():
    m = ResNet50(seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert sum(p.size for p in m.parameters()) == 25_557_032 and len(names) == 161
    assert names[:4] == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight"]
    assert "layer1.0.downsample.0.weight" in names and "layer2.0.downsample.1.bias" in names
    assert "layer4.2.downsample.0.weight" not in names and names[-2:] == ["fc.weight", "fc.bias"]
    assert len(m.state_dict()) == 320  # + running_mean, running_var, num_batches_tracked of 53 batch norms
    small = ResNet50(7, (1, 1, 1, 1), 4, seed=0)
    assert small(kiln.zeros((2, 3, 32, 32))).shape == (2, 7)


def test_cuda_availability_is_reported():
    assert kiln.cuda.is_available() == HAVE_CUDA
    if HAVE_CUDA:
        assert WHY == "" and kiln.cuda.device_count() >= 1
    else:
        assert WHY and kiln.cuda.device_count() == 0


def test_without_cuda_requests_say_why(rng):
    if HAVE_CUDA:
        pytest.skip("a GPU is present")
    t = kiln.array([1.0, 2.0])
    for request in (lambda: t.to("cuda"), lambda: t.cuda(), lambda: kiln.device("cuda:0"),
                    lambda: kiln.array([1.0], device="cuda"), lambda: MLP(seed=0).to("cuda"),
                    lambda: kiln.Trainer(MLP(seed=0), kiln.cross_entropy, kiln.optim.SGD(lr=0.1), device="cuda"),
                    lambda: kiln.compile(lambda a: a * 2, np.zeros(3, np.float32), device="cuda"),
                    lambda: kiln.cuda.synchronize(), lambda: kiln.cuda.memory_stats(), lambda: kiln.cuda.describe(0)):
        with pytest.raises(kiln.UnsupportedError) as e:
            request()
        assert WHY in str(e.value)
    assert t.device == "cpu"  # nothing moved


# ---- with a GPU -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool"])
def test_round_trip_is_exact(gpu, rng, dtype):
    a = (rng.integers(0, 100, (3, 5, 7)) / 4).astype(np.float32)  # exact in every dtype's range
    host = kiln.array(a, dtype=dtype)
    dev = host.to("cuda")
    assert dev.device == "cuda:0" and dev.device.is_cuda and dev.dtype == host.dtype and dev.shape == host.shape
    assert dev.to("cuda:0") is dev
    back = dev.cpu()
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.numpy(), host.numpy())
    np.testing.assert_array_equal(dev.numpy(), host.numpy())  # numpy() copies to the host
    np.testing.assert_array_equal(np.asarray(dev), host.numpy())


def test_device_tensor_reads_and_eager_ops(gpu):
    dev = kiln.array([[1.5, -2.0]]).cuda()
    assert kiln.array(3.25).cuda().item() == 3.25
    assert "device='cuda:0'" in repr(dev) and "1.5" in repr(dev)
    assert dev.tolist() == [[1.5, -2.0]]
    with pytest.raises(kiln.UnsupportedError, match="the interpreter runs on the CPU"):
        dev + 1
    assert kiln.cuda.describe(0)
    kiln.cuda.synchronize()
    kiln.cuda.synchronize("cuda:0")


def test_device_memory_pools(gpu):
    try:
        kiln.cuda.set_pool("page")
        before = kiln.cuda.memory_stats()
        assert before["pool"] == "page"
        t = kiln.zeros((256, 1024)).to("cuda")
        during = kiln.cuda.memory_stats("cuda:0")
        assert during["bytes_in_use"] >= before["bytes_in_use"] + t.size * 4
        assert during["n_allocs"] > before["n_allocs"] and during["peak_bytes"] >= during["bytes_in_use"]
        del t
        after = kiln.cuda.memory_stats()
        assert after["bytes_in_use"] == before["bytes_in_use"] and after["n_frees"] > before["n_frees"]
        kiln.cuda.reset_peak()
        assert kiln.cuda.memory_stats()["peak_bytes"] == after["bytes_in_use"]
        kiln.cuda.trim()
        kiln.cuda.set_pool("none")
        assert kiln.cuda.memory_stats()["pool"] == "none"
        u = kiln.array(np.arange(10, dtype=np.int32)).cuda()
        np.testing.assert_array_equal(u.numpy(), np.arange(10))
        with pytest.raises(ValueError, match="unknown pool"):
            kiln.cuda.set_pool("bogus")
    finally:
        kiln.cuda.set_pool("page")


def test_model_to_moves_in_place(gpu):
    m = MLP(seed=0)
    params = list(m.parameters())
    values = [p.numpy().copy() for p in params]
    assert m.to("cuda") is m
    assert list(m.parameters()) == params and all(p.device == "cuda:0" for p in params)
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p.numpy(), v)
    np.testing.assert_array_equal(m.state_dict()["fc1.weight"], values[0])
    m.load_state_dict({k: np.zeros_like(v) for k, v in m.state_dict().items()})
    assert all(p.device == "cuda:0" for p in m.parameters())
    m.cpu()
    assert all(p.device == "cpu" for p in m.parameters())


@pytest.mark.parametrize("make_case", [mlp_case, gpt_case], ids=["mlp", "gpt"])
def test_training_on_cuda_matches_cpu(gpu, rng, make_case):
    case = make_case(rng)
    cpu, _ = losses(case)
    cuda, trainer = losses(case, device="cuda")
    np.testing.assert_allclose(cuda, cpu, rtol=1e-4)
    graph, _ = losses(case, device="cuda", cuda_graph=True)
    np.testing.assert_allclose(graph, cuda, rtol=1e-6)
    assert all(p.device == "cuda:0" for p in trainer.model.parameters())


def test_trainer_on_cuda_updates_in_place_and_saves_to_host(gpu, rng, tmp_path):
    make_model, loss_fn, make_opt, x, y = mlp_case(rng)
    trainer = kiln.Trainer(make_model(), loss_fn, make_opt(), device="cuda")
    first = trainer.step(x, y)
    addresses = [lib.kiln_tensor_data(p._ptr) for p in trainer.model.parameters()]
    trainer.step(kiln.array(x).cuda(), kiln.array(y).cuda())  # a device batch
    assert [lib.kiln_tensor_data(p._ptr) for p in trainer.model.parameters()] == addresses  # donated in place
    assert all(t.device == "cuda:0" for ts in trainer.state.values() for t in ts)
    d = trainer.state_dict()
    assert all(not isinstance(v, kiln.Tensor) or v.device == "cpu" for v in d.values())
    trainer.save(tmp_path / "t.safetensors")
    resumed = kiln.Trainer(make_model(), loss_fn, make_opt(), device="cuda")
    resumed.load(tmp_path / "t.safetensors")
    assert all(p.device == "cuda:0" for p in resumed.model.parameters())
    np.testing.assert_allclose(resumed.step(x, y), trainer.step(x, y), rtol=1e-6)
    assert first > 0


def test_compile_on_cuda(gpu, rng):
    a = rng.standard_normal((4, 8)).astype(np.float32)
    f = kiln.compile(lambda v: kiln.relu(v) * 2 + 1, a, device="cuda")
    out = f(a)
    assert out.device == "cuda:0"
    np.testing.assert_allclose(out.numpy(), np.maximum(a, 0) * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(f(kiln.array(a).cuda()).numpy(), out.numpy(), rtol=0)


def test_dlpack_of_a_device_tensor(gpu, rng):
    """A cuda tensor exports as DLPack device (2, N): torch sees the same values on its GPU."""
    import torch
    x = rng.standard_normal((3, 5)).astype(np.float32)
    k = kiln.array(x).to("cuda")
    assert k.__dlpack_device__() == (2, 0)
    t = torch.from_dlpack(k)
    assert t.is_cuda
    np.testing.assert_array_equal(t.cpu().numpy(), x)
