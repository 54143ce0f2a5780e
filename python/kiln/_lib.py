"""_lib.py — loads libkiln.so with ctypes and declares the C API's signatures (include/kiln.h).

The library is found through $KILN_LIB, else build/libkiln.so beside this package's checkout.
CUDA's libraries (NVRTC, cuBLAS, cuDNN) are looked for where NVIDIA's wheels put them in this
Python's site-packages unless $KILN_CUDA_LIBS says where (docs/cuda.md).
"""
import ctypes
import os
import pathlib

from .errors import error_for_status


def _find_library():
    env = os.environ.get("KILN_LIB")
    if env:
        return env
    root = pathlib.Path(__file__).resolve().parents[2]
    for candidate in (root / "build" / "libkiln.so", pathlib.Path(__file__).with_name("libkiln.so")):
        if candidate.exists():
            return str(candidate)
    raise ImportError("kiln: libkiln.so not found; run `make` in the repository root or set KILN_LIB")


def _cuda_library_dirs():
    """The lib directories of NVIDIA's wheels (nvidia/cu13, nvidia/cudnn) on sys.path."""
    import sys
    dirs = []
    for entry in sys.path:
        for sub in ("cu13", "cudnn"):
            d = pathlib.Path(entry or ".") / "nvidia" / sub / "lib"
            if d.is_dir() and str(d) not in dirs:
                dirs.append(str(d))
    return dirs


if not os.environ.get("KILN_CUDA_LIBS"):
    _dirs = _cuda_library_dirs()
    if _dirs:
        os.environ["KILN_CUDA_LIBS"] = os.pathsep.join(_dirs)

lib = ctypes.CDLL(_find_library())

c_ptr = ctypes.c_void_p
i64 = ctypes.c_int64


class Value(ctypes.Structure):
    """kiln_value: a tagged union of tensor / int / float / bool / tuple."""

    class _U(ctypes.Union):
        _fields_ = [("tensor", c_ptr), ("i", ctypes.c_int64), ("f", ctypes.c_double),
                    ("b", ctypes.c_bool), ("tuple", c_ptr)]

    _anonymous_ = ("u",)
    _fields_ = [("kind", ctypes.c_int), ("u", _U)]


VALUE_NONE, VALUE_TENSOR, VALUE_INT, VALUE_FLOAT, VALUE_BOOL, VALUE_TUPLE = range(6)


def _sig(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_sig("kiln_context_new", c_ptr)
_sig("kiln_context_free", None, c_ptr)
_sig("kiln_error_message", ctypes.c_char_p, c_ptr)
_sig("kiln_error_status", ctypes.c_int, c_ptr)
_sig("kiln_error_clear", None, c_ptr)
_sig("kiln_free", None, c_ptr)
_sig("kiln_dtype_name", ctypes.c_char_p, ctypes.c_int)
_sig("kiln_tensor_new", c_ptr, c_ptr, ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64))
_sig("kiln_tensor_from_data", c_ptr, c_ptr, ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64), c_ptr)
_sig("kiln_tensor_wrap", c_ptr, c_ptr, ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64), c_ptr, c_ptr, c_ptr)
_sig("kiln_tensor_retain", c_ptr, c_ptr)
_sig("kiln_tensor_release", None, c_ptr)
_sig("kiln_tensor_dtype", ctypes.c_int, c_ptr)
_sig("kiln_tensor_ndim", ctypes.c_int, c_ptr)
_sig("kiln_tensor_shape", ctypes.POINTER(i64), c_ptr)
_sig("kiln_tensor_data", c_ptr, c_ptr)
_sig("kiln_tensor_nbytes", ctypes.c_size_t, c_ptr)
_sig("kiln_value_tuple", Value, c_ptr, ctypes.c_int, ctypes.POINTER(Value))
_sig("kiln_value_tuple_size", ctypes.c_int, Value)
_sig("kiln_value_tuple_get", Value, Value, ctypes.c_int)
_sig("kiln_value_retain", Value, Value)
_sig("kiln_value_release", None, Value)
_sig("kiln_op_run", ctypes.c_int, c_ptr, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(Value), ctypes.c_char_p,
     ctypes.POINTER(Value))
_sig("kiln_op_count", ctypes.c_int)
_sig("kiln_op_name", ctypes.c_char_p, ctypes.c_int)
_sig("kiln_module_new", c_ptr, c_ptr)
_sig("kiln_module_free", None, c_ptr)
_sig("kiln_module_parse", c_ptr, c_ptr, ctypes.c_char_p, ctypes.c_char_p)
_sig("kiln_module_infer", ctypes.c_int, c_ptr)
_sig("kiln_module_verify", ctypes.c_int, c_ptr)
_sig("kiln_module_print", c_ptr, c_ptr, ctypes.c_int)
_sig("kiln_module_function", c_ptr, c_ptr, ctypes.c_char_p)
_sig("kiln_function_new", c_ptr, c_ptr, ctypes.c_char_p)
_sig("kiln_function_param", c_ptr, c_ptr, ctypes.c_char_p, c_ptr)
_sig("kiln_function_body", c_ptr, c_ptr)
_sig("kiln_function_param_count", ctypes.c_int, c_ptr)
_sig("kiln_function_param_type", c_ptr, c_ptr, ctypes.c_int)
_sig("kiln_function_run", ctypes.c_int, c_ptr, ctypes.c_int, ctypes.POINTER(Value), ctypes.POINTER(Value))
_sig("kiln_emit_call", c_ptr, c_ptr, c_ptr, ctypes.c_int, ctypes.POINTER(c_ptr))
_sig("kiln_autodiff", c_ptr, c_ptr, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p)
_sig("kiln_emit", c_ptr, c_ptr, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(c_ptr), ctypes.c_char_p)
_sig("kiln_region_yield", ctypes.c_int, c_ptr, ctypes.c_int, ctypes.POINTER(c_ptr))
_sig("kiln_lit_int", c_ptr, c_ptr, ctypes.c_int64)
_sig("kiln_lit_float", c_ptr, c_ptr, ctypes.c_double)
_sig("kiln_lit_bool", c_ptr, c_ptr, ctypes.c_bool)
_sig("kiln_var_type", c_ptr, c_ptr)
_sig("kiln_var_set_name", None, c_ptr, ctypes.c_char_p)
_sig("kiln_type_tensor", c_ptr, c_ptr, ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64))
_sig("kiln_type_int", c_ptr, c_ptr)
_sig("kiln_type_float", c_ptr, c_ptr)
_sig("kiln_type_bool", c_ptr, c_ptr)
_sig("kiln_type_kind_of", ctypes.c_int, c_ptr)
_sig("kiln_type_dtype", ctypes.c_int, c_ptr)
_sig("kiln_type_ndim", ctypes.c_int, c_ptr)
_sig("kiln_type_shape", ctypes.POINTER(i64), c_ptr)
_sig("kiln_type_tuple_size", ctypes.c_int, c_ptr)
_sig("kiln_type_tuple_elem", c_ptr, c_ptr, ctypes.c_int)

class CompileOptions(ctypes.Structure):
    """kiln_compile_options (include/kiln.h, "compiling")."""
    _fields_ = [("opt_level", ctypes.c_int), ("dialects", ctypes.c_char_p), ("cache_dir", ctypes.c_char_p),
                ("debug", ctypes.c_int), ("n_donate", ctypes.c_int), ("donate", ctypes.POINTER(ctypes.c_int * 2)),
                ("device", ctypes.c_char_p), ("cuda_graph", ctypes.c_bool)]


class Analysis(ctypes.Structure):
    """kiln_analysis: what kiln_program_analyze reports of a compiled program."""
    _fields_ = [("n_inputs", i64), ("input_elements", i64), ("input_bytes", i64), ("flops", ctypes.c_double),
                ("arena_bytes", i64), ("n_instructions", ctypes.c_int), ("n_kernels", ctypes.c_int),
                ("n_steps", ctypes.c_int), ("live_bytes", ctypes.POINTER(i64)), ("high_water", ctypes.POINTER(i64))]


# The compiler (kiln_compile and the VM); HAVE_COMPILER is False for a library built without it.
HAVE_COMPILER = hasattr(lib, "kiln_compile") and hasattr(lib, "kiln_program_run")
if HAVE_COMPILER:
    _sig("kiln_compile_defaults", CompileOptions)
    _sig("kiln_compile", ctypes.c_int, c_ptr, ctypes.POINTER(CompileOptions), ctypes.POINTER(c_ptr))
    _sig("kiln_program_free", None, c_ptr)
    _sig("kiln_program_run", ctypes.c_int, c_ptr, ctypes.c_int, ctypes.POINTER(Value), ctypes.POINTER(Value))
    _sig("kiln_program_print", c_ptr, c_ptr)
    _sig("kiln_program_analyze", ctypes.c_int, c_ptr, ctypes.POINTER(Analysis))


class MemoryStats(ctypes.Structure):
    """kiln_memory_stats (include/kiln.h, "memory pools")."""
    _fields_ = [("pool", ctypes.c_int), ("bytes_in_use", i64), ("peak_bytes", i64), ("bytes_reserved", i64),
                ("n_allocs", i64), ("n_frees", i64), ("n_reused", i64)]


_sig("kiln_memory_set_pool", None, ctypes.c_int)
_sig("kiln_memory_get_stats", None, ctypes.POINTER(MemoryStats))
_sig("kiln_memory_reset_peak", None)
_sig("kiln_memory_trim", None)


class Device(ctypes.Structure):
    """kiln_device (include/kiln.h, "devices"): type KILN_DEVICE_CPU (0) / KILN_DEVICE_CUDA (1), index."""
    _fields_ = [("type", ctypes.c_int), ("index", ctypes.c_int)]


# The device API (CPU / CUDA tensors, device pools); HAVE_DEVICES is False for a library without it.
HAVE_DEVICES = hasattr(lib, "kiln_device_parse") and hasattr(lib, "kiln_tensor_to")
if HAVE_DEVICES:
    _sig("kiln_device_parse", ctypes.c_int, c_ptr, ctypes.c_char_p, ctypes.POINTER(Device))
    _sig("kiln_device_str", ctypes.c_char_p, Device, ctypes.c_char_p, ctypes.c_size_t)
    _sig("kiln_cuda_available", ctypes.c_bool, ctypes.c_char_p, ctypes.c_size_t)
    _sig("kiln_cuda_device_count", ctypes.c_int)
    _sig("kiln_device_describe", ctypes.c_int, c_ptr, Device, ctypes.c_char_p, ctypes.c_size_t)
    _sig("kiln_device_synchronize", ctypes.c_int, c_ptr, Device)
    _sig("kiln_tensor_device", Device, c_ptr)
    _sig("kiln_tensor_new_on", c_ptr, c_ptr, ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64), Device)
    _sig("kiln_tensor_to", c_ptr, c_ptr, c_ptr, Device)
    _sig("kiln_tensor_copy_into", ctypes.c_int, c_ptr, c_ptr, c_ptr)
    _sig("kiln_device_memory_set_pool", ctypes.c_int, c_ptr, Device, ctypes.c_int)
    _sig("kiln_device_memory_get_stats", ctypes.c_int, c_ptr, Device, ctypes.POINTER(MemoryStats))
    _sig("kiln_device_memory_reset_peak", ctypes.c_int, c_ptr, Device)
    _sig("kiln_device_memory_trim", ctypes.c_int, c_ptr, Device)


# One context for the Python process: it holds the last error message.
ctx = lib.kiln_context_new()


def check(status):
    """Raises the kiln.Error subclass for a non-zero status with the C message."""
    if status:
        raise error_for_status(status, lib.kiln_error_message(ctx).decode())


def check_ptr(ptr):
    if not ptr:
        raise error_for_status(lib.kiln_error_status(ctx) or 7, lib.kiln_error_message(ctx).decode())
    return ptr


def take_string(ptr):
    """A malloc'd C string returned by kiln, as str (freed)."""
    check_ptr(ptr)
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        lib.kiln_free(ptr)


def shape_array(shape):
    return (i64 * max(len(shape), 1))(*shape)
