"""devices.py — kiln.device: where tensors live and compiled programs run ("cpu", "cuda",
"cuda:N"). A Device is a str ("cpu", "cuda:0") with .type and .index, so strings work wherever
a device is asked for; CUDA names are checked by the C library (kiln_device_parse), which says
why CUDA is unavailable when it is."""
from ._lib import HAVE_DEVICES, Device as _CDevice, check, ctx, lib
from .errors import UnsupportedError

_CPU, _CUDA = 0, 1  # kiln_device_type
_cache = {}         # (type, index) -> Device


class Device(str):
    """A device: equal to (and hashed like) its name "cpu" / "cuda:N"; .type is "cpu" or "cuda",
    .index the CUDA ordinal (0 for the CPU)."""

    @classmethod
    def _of(cls, c):
        """The Device of a C kiln_device."""
        key = (c.type, c.index)
        if key not in _cache:
            d = str.__new__(cls, "cpu" if c.type == _CPU else f"cuda:{c.index}")
            d._c = _CDevice(c.type, c.index)
            _cache[key] = d
        return _cache[key]

    @property
    def type(self):
        return "cpu" if self._c.type == _CPU else "cuda"

    @property
    def index(self):
        return self._c.index

    @property
    def is_cuda(self):
        return self._c.type == _CUDA

    def __repr__(self):
        return f"kiln.device({str(self)!r})"


CPU = Device._of(_CDevice(_CPU, 0))


def device(name):
    """The Device named "cpu", "cuda" (= "cuda:0") or "cuda:N" (a Device or anything whose str()
    is such a name, e.g. a torch.device). A CUDA device must exist: without CUDA this raises
    kiln.UnsupportedError saying why (kiln.cuda.why_unavailable())."""
    if isinstance(name, Device):
        return name
    text = str(name).strip()
    if text == "cpu":
        return CPU
    if not HAVE_DEVICES:
        raise UnsupportedError(f"device '{text}': the loaded libkiln.so has no device API (rebuild it with `make`)")
    c = _CDevice()
    check(lib.kiln_device_parse(ctx, text.encode(), c))
    return Device._of(c)


def of_tensor(ptr):
    """The Device of a C kiln_tensor."""
    return Device._of(lib.kiln_tensor_device(ptr)) if HAVE_DEVICES else CPU
