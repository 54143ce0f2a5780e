"""cuda.py — kiln.cuda: whether CUDA can be used (and why not), the GPUs, synchronisation, and
each GPU's memory pool ("page": page-unit pool caching freed blocks; "none": the driver's
stream-ordered allocator) with its statistics. `device` arguments take "cuda", "cuda:N" or a
kiln.device; "cpu" gives the host pool (as kiln.memory does)."""
import ctypes

from ._lib import HAVE_DEVICES, MemoryStats, check, ctx, lib
from .devices import device as _device
from .memory import _KINDS, _NAMES

_NO_API = "the loaded libkiln.so has no device API (rebuild it with `make`)"


def _availability():
    if not HAVE_DEVICES:
        return False, _NO_API
    why = ctypes.create_string_buffer(1024)
    ok = lib.kiln_cuda_available(why, len(why))
    return bool(ok), "" if ok else why.value.decode(errors="replace")


def is_available():
    """True when the CUDA backend (libkiln_cuda.so), the CUDA libraries and a GPU are present."""
    return _availability()[0]


def why_unavailable():
    """Why CUDA cannot be used (the missing library, no GPU, a driver error); "" when it can."""
    return _availability()[1]


def device_count():
    """The number of usable GPUs (0 without CUDA)."""
    return lib.kiln_cuda_device_count() if HAVE_DEVICES else 0


def describe(index=0):
    """A line describing GPU `index`: name, compute capability, memory."""
    buf = ctypes.create_string_buffer(512)
    check(lib.kiln_device_describe(ctx, _device(f"cuda:{int(index)}")._c, buf, len(buf)))
    return buf.value.decode(errors="replace")


def synchronize(device="cuda"):
    """Waits until all work queued on the device has finished."""
    check(lib.kiln_device_synchronize(ctx, _device(device)._c))


def memory_stats(device="cuda"):
    """The device pool's statistics as a dict (the keys of kiln.memory.stats()): pool, bytes_in_use,
    peak_bytes, bytes_reserved, n_allocs, n_frees, n_reused."""
    s = MemoryStats()
    check(lib.kiln_device_memory_get_stats(ctx, _device(device)._c, ctypes.byref(s)))
    out = {name: getattr(s, name) for name, _ in MemoryStats._fields_}
    out["pool"] = _NAMES[s.pool]
    return out


def set_pool(kind, device="cuda"):
    """Makes `kind` ("page" or "none") the pool new tensors on the device come from; live tensors
    stay valid and return to the pool they came from."""
    if kind not in _KINDS:
        raise ValueError(f"kiln.cuda.set_pool: unknown pool {kind!r} (expected 'page' or 'none')")
    check(lib.kiln_device_memory_set_pool(ctx, _device(device)._c, _KINDS[kind]))


def reset_peak(device="cuda"):
    """Sets the device pool's peak_bytes to its current bytes_in_use."""
    check(lib.kiln_device_memory_reset_peak(ctx, _device(device)._c))


def trim(device="cuda"):
    """Returns the device pool's cached free blocks to the driver."""
    check(lib.kiln_device_memory_trim(ctx, _device(device)._c))
