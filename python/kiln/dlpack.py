"""dlpack.py — zero-copy exchange with numpy, torch and any other DLPack library: the
Tensor.__dlpack__ / __dlpack_device__ protocol (export) and kiln.from_dlpack (import), in ctypes.

Export hands out a PyCapsule named "dltensor" holding a DLManagedTensor (or, when the consumer
asks with max_version >= (1, 0), "dltensor_versioned" holding a DLManagedTensorVersioned — numpy
marks arrays from unversioned capsules read-only) whose manager_ctx is a retained reference to the
C kiln_tensor; the consumer's call of its deleter releases it. Import
wraps the producer's memory with kiln_tensor_wrap, whose release callback is the producer's own
deleter, and renames the capsule "used_dltensor" as the protocol requires. CPU memory only;
imported memory must be C-contiguous (kiln tensors have no strides)."""
import ctypes

from . import dtypes as _dt
from ._core import Tensor
from ._lib import check, ctx, lib, shape_array

KDL_CPU = 1
KDL_CUDA = 2
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
                 10: "rocm", 11: "rocm_host", 13: "cuda_managed", 14: "oneapi"}
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT, _DL_BOOL = 0, 1, 2, 4, 6

# kiln dtype <-> DLPack (type code, bits); lanes are always 1.
_TO_DL = {_dt.float32: (_DL_FLOAT, 32), _dt.float64: (_DL_FLOAT, 64), _dt.float16: (_DL_FLOAT, 16),
          _dt.bfloat16: (_DL_BFLOAT, 16), _dt.int8: (_DL_INT, 8), _dt.uint8: (_DL_UINT, 8),
          _dt.int32: (_DL_INT, 32), _dt.int64: (_DL_INT, 64), _dt.bool_: (_DL_BOOL, 8)}
_FROM_DL = {v: k for k, v in _TO_DL.items()}
_CODE_NAMES = {_DL_INT: "int", _DL_UINT: "uint", _DL_FLOAT: "float", 3: "opaque", _DL_BFLOAT: "bfloat",
               5: "complex", _DL_BOOL: "bool"}


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void (*)(DLManagedTensor *)
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]

# Private prototypes of the capsule API (not ctypes.pythonapi's shared function objects, whose
# argtypes other libraries may change). Capsules are passed as raw PyObject* (c_void_p) because
# the capsule destructor receives an object that is already being destroyed.
_api = ctypes.pythonapi
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, _CapsuleDestructor)(
    ("PyCapsule_New", _api))
_capsule_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))
_capsule_set_name = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_SetName", _api))
_capsule_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_capsule_raw_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))

# Capsules keep a pointer to their name, so the names live as long as the process.
_NAME = b"dltensor"
_USED_NAME = b"used_dltensor"
_VERSIONED_NAME = b"dltensor_versioned"

# Exported DLManagedTensors by address: the struct and its shape/strides arrays stay alive here
# until the consumer calls the deleter (manager_ctx holds the retained kiln_tensor).
_exports = {}


def _release_export(addr):
    managed, _shape, _strides = _exports.pop(addr)
    lib.kiln_tensor_release(managed.manager_ctx)


# The deleter and capsule destructor are C callbacks for the whole process (module globals).
_deleter = _Deleter(_release_export)


def _capsule_destructor(capsule):
    """An unconsumed capsule (not renamed "used_...") owns its DLManagedTensor."""
    for name in (_NAME, _VERSIONED_NAME):
        if _capsule_is_valid(capsule, name):
            _release_export(_capsule_raw_pointer(capsule, name))


_destructor = _CapsuleDestructor(_capsule_destructor)


def _dlpack(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    """DLPack export: a capsule viewing this tensor's memory (no copy unless copy=True), versioned
    when max_version allows. The capsule keeps the memory alive until its consumer is done with it."""
    self._require_concrete("__dlpack__")
    device = _dlpack_device(self)
    if device[0] == KDL_CPU and stream is not None:
        raise BufferError(f"this kiln tensor lives on the CPU; __dlpack__ takes stream=None, not {stream!r}")
    if dl_device is not None and tuple(dl_device) != device:
        raise BufferError(f"this kiln tensor lives on device {device}; cannot export to device {tuple(dl_device)}")
    if device[0] == KDL_CUDA:  # kiln's work on the tensor is done before any consumer stream reads it
        from . import cuda
        cuda.synchronize(str(self.device))
    src = self.copy() if copy and device[0] == KDL_CPU else self.to("cpu").to(str(self.device)) if copy else self
    shape = shape_array(src.shape)
    strides = shape_array(_contiguous_strides(src.shape))
    code, bits = _TO_DL[src.dtype]
    versioned = max_version is not None and tuple(max_version) >= (1, 0)
    managed = DLManagedTensorVersioned(version=DLPackVersion(1, 0)) if versioned else DLManagedTensor()
    t = managed.dl_tensor
    t.data = lib.kiln_tensor_data(src._ptr)
    t.device = DLDevice(*device)
    t.ndim = src.ndim
    t.dtype = DLDataType(code, bits, 1)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = 0
    managed.manager_ctx = lib.kiln_tensor_retain(src._ptr)
    managed.deleter = ctypes.cast(_deleter, ctypes.c_void_p)
    addr = ctypes.addressof(managed)
    _exports[addr] = (managed, shape, strides)
    try:
        return _capsule_new(addr, _VERSIONED_NAME if versioned else _NAME, _destructor)
    except BaseException:
        _release_export(addr)
        raise


def _dlpack_device(self):
    """(device type, device id) for DLPack: (1, 0) for the CPU, (2, N) for cuda:N."""
    dev = str(self.device)
    return (KDL_CUDA, int(dev.split(":")[1])) if dev.startswith("cuda") else (KDL_CPU, 0)


Tensor.__dlpack__ = _dlpack
Tensor.__dlpack_device__ = _dlpack_device


def _contiguous_strides(shape):
    """C-order strides in elements."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


def from_dlpack(obj):
    """A kiln tensor sharing the memory of `obj` (a numpy array, torch tensor, kiln tensor or any
    object with __dlpack__): no copy, writes through either side are seen by the other, and the
    memory stays alive while either side uses it. Only CPU memory in C-contiguous layout."""
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"kiln.from_dlpack: {type(obj).__name__} does not support DLPack (no __dlpack__ method)")
    if hasattr(obj, "__dlpack_device__"):
        _check_device(tuple(obj.__dlpack_device__()), type(obj).__name__)
    capsule = obj.__dlpack__()
    managed = DLManagedTensor.from_address(_capsule_get_pointer(capsule, _NAME))
    t = managed.dl_tensor
    _check_device((t.device.device_type, t.device.device_id), type(obj).__name__)
    key = (t.dtype.code, t.dtype.bits)
    if t.dtype.lanes != 1 or key not in _FROM_DL:
        name = f"{_CODE_NAMES.get(t.dtype.code, f'code {t.dtype.code}')}{t.dtype.bits}"
        if t.dtype.lanes != 1:
            name += f"x{t.dtype.lanes}"
        raise TypeError(f"kiln.from_dlpack: dtype {name} of the {type(obj).__name__} has no kiln counterpart "
                        f"(kiln has {', '.join(d.name for d in _dt.ALL)})")
    dtype = _FROM_DL[key]
    shape = [t.shape[i] for i in range(t.ndim)]
    if t.strides and 0 not in shape:  # an empty tensor's strides say nothing
        strides = [t.strides[i] for i in range(t.ndim)]
        expected = _contiguous_strides(shape)
        if any(n > 1 and s != e for n, s, e in zip(shape, strides, expected)):
            raise ValueError(f"kiln.from_dlpack: the {type(obj).__name__} of shape {tuple(shape)} has strides "
                             f"{tuple(strides)} (in elements), not the C-contiguous {tuple(expected)}; kiln tensors "
                             "are contiguous: pass a contiguous copy (torch: .contiguous(), numpy: "
                             "np.ascontiguousarray)")
    data = (t.data or 0) + t.byte_offset
    ptr = lib.kiln_tensor_wrap(ctx, dtype.code, len(shape), shape_array(shape), data or None, managed.deleter,
                               ctypes.addressof(managed))
    if not ptr:
        check(lib.kiln_error_status(ctx) or 7)
    # The kiln tensor owns the DLManagedTensor now: its release calls deleter(managed).
    _capsule_set_name(capsule, _USED_NAME)
    return Tensor._own(ptr)


def _check_device(device, producer):
    if device[0] != KDL_CPU:
        name = _DEVICE_NAMES.get(device[0], f"type {device[0]}")
        raise ValueError(f"kiln.from_dlpack: the {producer} lives on device {name}:{device[1]}; kiln reads CPU "
                         "memory only: move it to the CPU first (torch: .cpu())")
