"""checkpoint.py — huggingface .safetensors files for kiln tensors and models: save_safetensors /
load_safetensors over the C reader and writer (src/core/safetensors.c), and save_model /
load_model over Model.state_dict / load_state_dict."""
import ctypes
import os

from ._core import Tensor, tensor_from_numpy
from ._lib import c_ptr, check, ctx, lib

_lib_save = lib.kiln_safetensors_save
_lib_save.restype = ctypes.c_int
_lib_save.argtypes = [c_ptr, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(c_ptr)]
_lib_load = lib.kiln_safetensors_load
_lib_load.restype = ctypes.c_int
_lib_load.argtypes = [c_ptr, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.POINTER(c_ptr)),
                      ctypes.POINTER(ctypes.POINTER(c_ptr))]


def save_safetensors(path, tensors):
    """Writes a dict name -> kiln.Tensor (or numpy array, or anything np.asarray takes) to a
    .safetensors file, in the dict's order. Every kiln dtype is stored as is (bfloat16 as BF16)."""
    names, held = [], []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: tensor names must be str, got {type(name).__name__}")
        if not isinstance(t, Tensor):
            t = tensor_from_numpy(t)
        t._require_concrete(f"save_safetensors of '{name}'")
        names.append(name.encode())
        held.append(t)  # keeps every C tensor alive through the call
    n = len(held)
    c_names = (ctypes.c_char_p * max(n, 1))(*names)
    c_tensors = (c_ptr * max(n, 1))(*(t._ptr for t in held))
    check(_lib_save(ctx, os.fsencode(path), n, c_names, c_tensors))


def load_safetensors(path):
    """Reads a .safetensors file into a dict name -> kiln.Tensor, in the file's header order.
    Malformed files raise kiln.ValueError, dtypes kiln lacks kiln.UnsupportedError and missing
    files an OSError (kiln.Error subclasses), each naming the file and the problem."""
    n = ctypes.c_int()
    c_names, c_tensors = ctypes.POINTER(c_ptr)(), ctypes.POINTER(c_ptr)()
    check(_lib_load(ctx, os.fsencode(path), ctypes.byref(n), ctypes.byref(c_names), ctypes.byref(c_tensors)))
    out = {}
    try:
        for i in range(n.value):
            t = Tensor._own(c_tensors[i])
            out[ctypes.string_at(c_names[i]).decode("utf-8", "surrogateescape")] = t
    finally:
        for i in range(n.value):
            lib.kiln_free(c_names[i])
        lib.kiln_free(ctypes.cast(c_names, c_ptr))
        lib.kiln_free(ctypes.cast(c_tensors, c_ptr))
    return out


def save_model(model, path):
    """Writes model.state_dict() (parameters and buffers by path, torch's names) to a .safetensors
    file. bfloat16 parameters are stored as F32, as state_dict gives them."""
    save_safetensors(path, model.state_dict())


def load_model(model, path, strict=True):
    """Loads a .safetensors file into model through load_state_dict: a mismatch raises
    kiln.ValueError listing every missing / unexpected name and wrong shape or dtype, and leaves
    the model unchanged. Returns load_state_dict's (missing_keys, unexpected_keys)."""
    loaded = load_safetensors(path)
    return model.load_state_dict({name: t.numpy() for name, t in loaded.items()}, strict=strict)
