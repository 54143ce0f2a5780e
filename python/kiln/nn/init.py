"""init.py — parameter initialisation with torch.nn.init's schemes (same bounds and variances),
drawn from kiln's counter-based RNG. Each draw takes the next int key of a global key stream:
manual_seed(n) restarts it, seeded(n) swaps in a stream of its own for a block (used by
kiln.Model(..., seed=n)), so a model built after the same seed has the same weights everywhere.
Functions return new tensors (torch's in-place `foo_` become `foo(shape, ...)`)."""
import contextlib
import math

from .. import dtypes as _dt
from .. import ops

_stream = [0, 0]  # [seed, number of keys drawn]


def manual_seed(seed):
    """Restarts the global key stream at seed (a non-negative int below 2**31), and the global
    dropout key counter of unseeded models (kiln.Model) at seed too."""
    from .. import model
    _stream[:] = [int(seed), 0]
    model._GLOBAL_KEYS.next = int(seed)


@contextlib.contextmanager
def seeded(seed):
    """Draws keys from the stream of `seed` inside the block, then resumes the outer stream."""
    saved = list(_stream)
    _stream[:] = [int(seed), 0]
    try:
        yield
    finally:
        _stream[:] = saved


def next_key():
    """Key number `count` of stream `seed`: seed in the high 32 bits, and bit 31 set so that these
    keys never meet the small keys dropout draws from Model.seed(n) counters."""
    seed, count = _stream
    _stream[1] += 1
    return ((seed & 0x7FFFFFFF) << 32) | (1 << 31) | (count & 0x7FFFFFFF)


def _key(key):
    return next_key() if key is None else int(key)


def calculate_fan_in_and_fan_out(shape):
    """torch's fans: fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a shape of at least 2 dims, got {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                        "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity '{nonlinearity}'")


def uniform(shape, a=0.0, b=1.0, dtype=_dt.float32, key=None):
    """U(a, b) samples."""
    return ops.random_uniform(_key(key), shape, dtype, low=a, high=b)


def normal(shape, mean=0.0, std=1.0, dtype=_dt.float32, key=None):
    """N(mean, std**2) samples."""
    return ops.random_normal(_key(key), shape, dtype, mean=mean, std=std)


def zeros(shape, dtype=_dt.float32):
    return ops.zeros(shape, dtype)


def ones(shape, dtype=_dt.float32):
    return ops.ones(shape, dtype)


def constant(shape, value, dtype=_dt.float32):
    return ops.full(shape, value, dtype)


def _kaiming_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=_dt.float32, key=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al.); Linear and Conv use a=sqrt(5),
    which gives bound = 1 / sqrt(fan_in)."""
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity)
    return uniform(shape, -bound, bound, dtype, key)


def kaiming_normal(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=_dt.float32, key=None):
    return normal(shape, 0.0, _kaiming_std(shape, a, mode, nonlinearity), dtype, key)


def xavier_uniform(shape, gain=1.0, dtype=_dt.float32, key=None):
    """U(-bound, bound) with bound = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -bound, bound, dtype, key)


def xavier_normal(shape, gain=1.0, dtype=_dt.float32, key=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return normal(shape, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), dtype, key)


def fan_in_uniform(shape, fan_in, dtype=_dt.float32, key=None):
    """The bias scheme of torch's Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(shape, -bound, bound, dtype, key)
