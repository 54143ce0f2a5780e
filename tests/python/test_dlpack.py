"""test_dlpack.py — DLPack exchange with numpy and torch: round trips for every dtype, zero copy
both ways, lifetimes (producer gone before consumer), 0-d and empty tensors, and the errors."""
import gc
import weakref

import numpy as np
import pytest
import torch

import kiln
from kiln import dlpack

ALL = [d.name for d in kiln.dtypes.ALL]
NUMPY = [d for d in ALL if d != "bfloat16"]
TORCH = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
         "int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32, "int64": torch.int64, "bool": torch.bool}


def sample(dtype, shape=(2, 3)):
    """Distinct values that every dtype holds exactly (negative ones where it can; bool alternates)."""
    v = np.arange(int(np.prod(shape))).reshape(shape)
    return (v % 2 == 1) if dtype == "bool" else v + 1 if dtype == "uint8" else v - 2


def kiln_tensor(dtype, shape=(2, 3)):
    return kiln.array(sample(dtype, shape).astype(np.float64 if dtype != "bool" else np.bool_), dtype=dtype)


def data_ptr(t):
    return kiln._lib.lib.kiln_tensor_data(t._ptr) or 0


@pytest.fixture(autouse=True)
def no_leaked_exports():
    """Every exported capsule's reference is given back once its consumers are gone."""
    gc.collect()
    before = len(dlpack._exports)
    yield
    gc.collect()
    assert len(dlpack._exports) == before


# ---- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", NUMPY)
def test_export_to_numpy(dtype):
    t = kiln_tensor(dtype)
    a = np.from_dlpack(t)
    assert a.dtype == t.dtype.np_dtype and a.shape == t.shape
    np.testing.assert_array_equal(a, t.numpy())
    assert a.ctypes.data == data_ptr(t)


@pytest.mark.parametrize("dtype", ALL)
def test_export_to_torch(dtype):
    t = kiln_tensor(dtype)
    x = torch.from_dlpack(t)
    assert x.dtype == TORCH[dtype] and tuple(x.shape) == t.shape
    np.testing.assert_array_equal(x.float().numpy() if dtype == "bfloat16" else x.numpy(), t.numpy())
    assert x.data_ptr() == data_ptr(t)


@pytest.mark.parametrize("dtype", NUMPY)
def test_import_from_numpy(dtype):
    a = kiln_tensor(dtype).numpy().copy()
    t = kiln.from_dlpack(a)
    assert t.dtype == kiln.dtypes.as_dtype(dtype) and t.shape == a.shape
    np.testing.assert_array_equal(t.numpy(), a)
    assert data_ptr(t) == a.ctypes.data


@pytest.mark.parametrize("dtype", ALL)
def test_import_from_torch(dtype):
    x = torch.arange(-2, 4).reshape(2, 3).to(TORCH[dtype])
    t = kiln.from_dlpack(x)
    assert t.dtype == kiln.dtypes.as_dtype(dtype) and t.shape == (2, 3)
    np.testing.assert_array_equal(t.numpy(), x.float().numpy() if dtype == "bfloat16" else x.numpy())
    assert data_ptr(t) == x.data_ptr()


@pytest.mark.parametrize("dtype", ALL)
def test_kiln_to_kiln(dtype):
    t = kiln_tensor(dtype)
    u = kiln.from_dlpack(t)
    assert u.dtype == t.dtype and data_ptr(u) == data_ptr(t)
    np.testing.assert_array_equal(u.numpy(), t.numpy())


def test_imported_tensor_runs_ops():
    t = kiln.from_dlpack(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal((kiln.sum(t, axis=1) * 2).numpy(), [6, 24])


def test_offset_views_import():
    a = np.arange(10, dtype=np.int32)
    np.testing.assert_array_equal(kiln.from_dlpack(a[3:]).numpy(), a[3:])
    x = torch.arange(12.).reshape(3, 4)
    np.testing.assert_array_equal(kiln.from_dlpack(x[1:]).numpy(), x[1:].numpy())
    np.testing.assert_array_equal(kiln.from_dlpack(x[1]).numpy(), x[1].numpy())


def test_size_one_dims_with_any_stride_import():
    x = torch.arange(3.).reshape(3, 1).T  # shape (1, 3), strides (1, 1): contiguous in memory
    np.testing.assert_array_equal(kiln.from_dlpack(x).numpy(), [[0, 1, 2]])


# ---- zero copy -----------------------------------------------------------------------------------
def test_export_is_zero_copy():
    t = kiln.zeros((2, 3))
    a = np.from_dlpack(t)
    a[1, 2] = 7
    x = torch.from_dlpack(t)
    x[0, 0] = -1
    np.testing.assert_array_equal(t.numpy(), [[-1, 0, 0], [0, 0, 7]])
    assert a[0, 0] == -1


def test_import_is_zero_copy():
    x = torch.zeros(4, dtype=torch.int64)
    a = np.zeros(3, dtype=np.float16)
    tx, ta = kiln.from_dlpack(x), kiln.from_dlpack(a)
    x[2] = 5
    a[0] = 1.5
    np.testing.assert_array_equal(tx.numpy(), [0, 0, 5, 0])
    np.testing.assert_array_equal(ta.numpy(), [1.5, 0, 0])
    np.from_dlpack(tx)[3] = 9  # and writes from kiln's side (through numpy) reach torch
    assert x[3] == 9


def test_versioned_export_is_writable_unversioned_is_not():
    t = kiln.ones(2)
    assert np.from_dlpack(t).flags.writeable  # numpy asks for a versioned capsule
    assert t.__dlpack__(max_version=(1, 0)).__repr__().startswith('<capsule object "dltensor_versioned"')
    assert t.__dlpack__().__repr__().startswith('<capsule object "dltensor"')


# ---- lifetimes ----------------------------------------------------------------------------------
def test_kiln_producer_dies_first():
    t = kiln.arange(5, dtype="f64")
    a, x = np.from_dlpack(t), torch.from_dlpack(t)
    del t
    gc.collect()
    np.testing.assert_array_equal(a, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(x.numpy(), [0, 1, 2, 3, 4])


def test_numpy_and_torch_producers_die_first():
    a = np.arange(4, dtype=np.float32)
    x = torch.arange(4, dtype=torch.int32) * 3
    ta, tx = kiln.from_dlpack(a), kiln.from_dlpack(x)
    wa = weakref.ref(a)
    del a, x
    gc.collect()
    assert wa() is not None  # the kiln tensor keeps the numpy array alive
    np.testing.assert_array_equal((ta + 1).numpy(), [1, 2, 3, 4])
    np.testing.assert_array_equal(tx.numpy(), [0, 3, 6, 9])
    del ta
    gc.collect()
    assert wa() is None  # ... and lets it go with its last reference


def test_unconsumed_capsule_is_released():
    t = kiln.ones(3)
    n = len(dlpack._exports)
    capsules = [t.__dlpack__(), t.__dlpack__(max_version=(1, 0))]
    assert len(dlpack._exports) == n + 2
    del capsules
    gc.collect()
    assert len(dlpack._exports) == n


def test_chain_kiln_torch_kiln():
    t = kiln.arange(3, dtype="i32")
    u = kiln.from_dlpack(torch.from_dlpack(t))
    del t
    gc.collect()
    np.testing.assert_array_equal(u.numpy(), [0, 1, 2])


# ---- 0-d and empty --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3)])
def test_zero_d_and_empty(shape):
    t = kiln.full(shape, 3.5) if shape == () else kiln.zeros(shape)
    for consumer in (np.from_dlpack, torch.from_dlpack):
        y = consumer(t)
        assert tuple(y.shape) == shape
    a = np.full(shape, 2.5, dtype=np.float32)
    for producer in (a, torch.from_numpy(a.copy())):
        u = kiln.from_dlpack(producer)
        assert u.shape == shape and u.dtype == kiln.float32
        np.testing.assert_array_equal(u.numpy(), a)
    u = kiln.from_dlpack(t)
    assert u.shape == shape
    np.testing.assert_array_equal(u.numpy(), t.numpy())


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: np.ones((3, 4)).T, lambda: np.arange(8)[::2],
                                  lambda: np.arange(4)[::-1], lambda: torch.ones(3, 4).T, lambda: torch.ones(4, 4)[:, 1:]])
def test_non_contiguous_is_refused(make):
    with pytest.raises(ValueError, match=r"strides .* not the C-contiguous .*contiguous\(\)"):
        kiln.from_dlpack(make())


@pytest.mark.parametrize("x", [np.zeros(2, np.int16), np.zeros(2, np.complex64), torch.zeros(2, dtype=torch.int16),
                               np.zeros(2, np.uint32)])
def test_unsupported_dtype_is_refused(x):
    with pytest.raises(TypeError, match="has no kiln counterpart"):
        kiln.from_dlpack(x)


class FakeGpuTensor:
    def __dlpack_device__(self):
        return (2, 1)

    def __dlpack__(self, **kw):
        raise AssertionError("must not be consumed")


class LyingTensor:
    """Claims the CPU but hands over a capsule whose DLTensor says CUDA."""

    def __init__(self):
        self.source = kiln.ones(2)

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, **kw):
        cap = self.source.__dlpack__()
        ptr = dlpack._capsule_get_pointer(cap, b"dltensor")
        dlpack.DLManagedTensor.from_address(ptr).dl_tensor.device.device_type = 2
        return cap


def test_non_cpu_device_is_refused():
    with pytest.raises(ValueError, match="device cuda:1; kiln reads CPU memory only"):
        kiln.from_dlpack(FakeGpuTensor())
    with pytest.raises(ValueError, match="device cuda:0"):
        kiln.from_dlpack(LyingTensor())  # the refused capsule still releases its tensor (fixture)


def test_other_errors():
    with pytest.raises(TypeError, match="does not support DLPack"):
        kiln.from_dlpack([1, 2, 3])
    t = kiln.ones(2)
    with pytest.raises(BufferError, match="stream=None"):
        t.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="cannot export to device"):
        t.__dlpack__(dl_device=(2, 0))
    assert t.__dlpack_device__() == (1, 0)
    with kiln.Trace() as tr:
        s = tr.input("f32", (2,))
        with pytest.raises(TypeError, match="traced tensor"):
            s.__dlpack__()


def test_copy_request_exports_a_copy():
    t = kiln.zeros(2)
    a = np.from_dlpack(t, copy=True)
    a[0] = 1
    assert t.numpy()[0] == 0
