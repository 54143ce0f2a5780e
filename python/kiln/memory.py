"""memory.py — the memory pools that hold kiln tensors' data (docs/memory.md): choose the pool
("page": sizes rounded to 4 KiB pages, freed blocks cached and reused; "none": straight to the
system), read its statistics, reset the peak, return cached blocks to the system."""
import ctypes

from ._lib import MemoryStats, lib

_KINDS = {"none": 0, "page": 1}
_NAMES = {v: k for k, v in _KINDS.items()}


def set_pool(kind):
    """Makes `kind` ("page" or "none") the pool that new tensors come from, process-wide. Live
    tensors stay valid and return to the pool they came from."""
    if kind not in _KINDS:
        raise ValueError(f"kiln.memory.set_pool: unknown pool {kind!r} (expected 'page' or 'none')")
    lib.kiln_memory_set_pool(_KINDS[kind])


def stats():
    """The pools' statistics as a dict: pool (current pool's name), bytes_in_use (requested bytes
    of live tensors), peak_bytes (highest bytes_in_use since the last reset_peak), bytes_reserved
    (held from the system: in use plus cached, with block headers), n_allocs, n_frees, n_reused
    (allocations served from cached blocks)."""
    s = MemoryStats()
    lib.kiln_memory_get_stats(ctypes.byref(s))
    out = {name: getattr(s, name) for name, _ in MemoryStats._fields_}
    out["pool"] = _NAMES[s.pool]
    return out


def reset_peak():
    """Sets peak_bytes to the current bytes_in_use."""
    lib.kiln_memory_reset_peak()


def trim():
    """Returns the page pool's cached free blocks to the system."""
    lib.kiln_memory_trim()
