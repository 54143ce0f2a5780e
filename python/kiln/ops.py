"""ops.py — the numpy-like functions: one per op of the op table (kiln ops), with numpy's names,
argument conventions and defaults where numpy has the op, torch's otherwise."""
import builtins

import numpy as np

from . import dtypes as _dt
from ._core import Tensor, apply, tensor_from_numpy

# ---- helpers ------------------------------------------------------------------------------------


def _axes(axis):
    """numpy `axis` (None, int or sequence) to the `axes` attribute (None = all)."""
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)):
        return [int(axis)]
    return [int(a) for a in axis]


def _pair(v):
    return [int(v), int(v)] if isinstance(v, (int, np.integer)) else [int(e) for e in v]


def _shape(shape):
    return [int(shape)] if isinstance(shape, (int, np.integer)) else [int(s) for s in shape]


def _floating(x):
    """Math that needs floats promotes integer and bool inputs to float32 (as torch does)."""
    if isinstance(x, Tensor):
        return x if x.dtype.is_floating_point else x.astype(_dt.float32)
    if isinstance(x, (bool, int, np.integer, np.bool_)):
        return float(x)
    return x


def _is_bool(x):
    return isinstance(x, (bool, np.bool_)) or isinstance(x, Tensor) and x.dtype is _dt.bool_


# bool ⊕ bool stays bool where torch defines it: these ops are then logical ones
_BOOL_ARITH = {"add": "logical_or", "maximum": "logical_or", "multiply": "logical_and", "minimum": "logical_and"}


def _numeric(op, x, y):
    """The C arithmetic ops take no bool; as torch does, a bool operand takes the other operand's
    dtype (int64 against a Python scalar or another bool), and bool ⊕ bool of _BOOL_ARITH is logical."""
    if _is_bool(x) and _is_bool(y) and op in _BOOL_ARITH:
        return _BOOL_ARITH[op], x, y

    def promote(a, other):
        if isinstance(a, (bool, np.bool_)):
            return int(a)
        if isinstance(a, Tensor) and a.dtype is _dt.bool_:
            return a.astype(other.dtype if isinstance(other, Tensor) and not _is_bool(other) else _dt.int64)
        return a
    return op, promote(x, y), promote(y, x)


def _unary(op, floating=False):
    def f(x):
        return apply(op, [_floating(x) if floating else x])
    f.__name__ = op
    f.__doc__ = f"Elementwise {op} (kiln op `{op}`)."
    return f


def _binary(op, numeric=True):
    def f(x, y):
        name = op
        if numeric:
            name, x, y = _numeric(op, x, y)
        return apply(name, [x, y])
    f.__name__ = op
    f.__doc__ = f"Elementwise {op} with numpy broadcasting (kiln op `{op}`)."
    return f


# ---- elementwise ------------------------------------------------------------------------------
negative = neg = _unary("neg")
abs = absolute = _unary("abs")
sign = _unary("sign")
exp = _unary("exp", True)
log = _unary("log", True)
log2 = _unary("log2", True)
sqrt = _unary("sqrt", True)
rsqrt = _unary("rsqrt", True)
reciprocal = _unary("reciprocal", True)
sin = _unary("sin", True)
cos = _unary("cos", True)
tanh = _unary("tanh", True)
arctan = atan = _unary("atan", True)
sigmoid = _unary("sigmoid", True)
relu = _unary("relu")
erf = _unary("erf", True)
floor = _unary("floor")
ceil = _unary("ceil")
trunc = _unary("trunc")
logical_not = _unary("logical_not")
silu = _unary("silu", True)


def round(x, decimals=0):
    """Round half to even (numpy.round); only decimals=0."""
    if decimals != 0:
        raise NotImplementedError("kiln.round supports decimals=0 only")
    return apply("round", [x])


def copy(x):
    return apply("copy", [x])


def gelu(x, approximate="none"):
    return apply("gelu", [_floating(x)], {"approximate": approximate})


def leaky_relu(x, negative_slope=0.01):
    return apply("leaky_relu", [_floating(x)], {"alpha": float(negative_slope)})


def clip(a, a_min=None, a_max=None):
    return apply("clip", [a], {"min": None if a_min is None else float(a_min),
                               "max": None if a_max is None else float(a_max)})


def threshold(x, threshold, value):
    return apply("threshold", [x], {"threshold": float(threshold), "value": float(value)})


add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = true_divide = _binary("divide")
floor_divide = _binary("floor_divide")
mod = remainder = _binary("mod")
power = _binary("power")
maximum = _binary("maximum")
minimum = _binary("minimum")
equal = _binary("equal", False)
not_equal = _binary("not_equal", False)
less = _binary("less", False)
less_equal = _binary("less_equal", False)
greater = _binary("greater", False)
greater_equal = _binary("greater_equal", False)
logical_and = _binary("logical_and", False)
logical_or = _binary("logical_or", False)
logical_xor = _binary("logical_xor", False)
left_shift = _binary("left_shift")
right_shift = _binary("right_shift")


def where(condition, x, y):
    return apply("where", [condition, x, y])


# ---- reductions -------------------------------------------------------------------------------
def _reduce(op, floating=False):
    def f(a, axis=None, keepdims=False):
        return apply(op, [_floating(a) if floating else a], {"axes": _axes(axis), "keepdims": bool(keepdims)})
    f.__name__ = op
    f.__doc__ = f"{op} over `axis` (None: all axes), numpy-style (kiln op `{op}`)."
    return f


sum = _reduce("sum")
prod = _reduce("prod")
max = amax = _reduce("max")
min = amin = _reduce("min")
all = _reduce("all")
any = _reduce("any")
mean = _reduce("mean", True)
l2norm = _reduce("l2norm", True)
logsumexp = _reduce("logsumexp", True)


def var(a, axis=None, keepdims=False, ddof=0):
    return apply("variance", [_floating(a)], {"axes": _axes(axis), "keepdims": bool(keepdims), "correction": int(ddof)})


def std(a, axis=None, keepdims=False, ddof=0):
    return sqrt(var(a, axis, keepdims, ddof))


def argmax(a, axis=None, keepdims=False):
    return apply("argmax", [a], {"axis": axis, "keepdims": bool(keepdims)})


def argmin(a, axis=None, keepdims=False):
    return apply("argmin", [a], {"axis": axis, "keepdims": bool(keepdims)})


def cumsum(a, axis=None, exclusive=False, reverse=False):
    if axis is None:
        a, axis = reshape(a, [-1]), 0
    return apply("cumsum", [a], {"axis": int(axis), "exclusive": exclusive, "reverse": reverse})


def sum_to(x, shape):
    """Sums a broadcast tensor back to `shape` (the reverse of broadcast_to)."""
    return apply("sum_to", [x], {"shape": _shape(shape)})


# ---- matmul, convolution, pooling -------------------------------------------------------------
def matmul(a, b, transpose_a=False, transpose_b=False):
    return apply("matmul", [a, b], {"transpose_a": transpose_a, "transpose_b": transpose_b})


def batch_matmul(a, b, transpose_a=False, transpose_b=False):
    return apply("batch_matmul", [a, b], {"transpose_a": transpose_a, "transpose_b": transpose_b})


def dense(x, weight, bias=None):
    """x @ weight.T + bias (torch.nn.functional.linear)."""
    return apply("dense", [x, weight] + ([] if bias is None else [bias]))


def _padding(p):
    return [int(p), int(p)] if isinstance(p, (int, np.integer)) else [int(e) for e in p]


def conv2d(x, weight, stride=1, padding=0, dilation=1, groups=1):
    return apply("conv2d", [x, weight], {"stride": _pair(stride), "padding": _padding(padding),
                                         "dilation": _pair(dilation), "groups": int(groups)})


def conv2d_transpose(x, weight, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    return apply("conv2d_transpose", [x, weight], {
        "stride": _pair(stride), "padding": _padding(padding), "output_padding": _pair(output_padding),
        "dilation": _pair(dilation), "groups": int(groups)})


def bias_add(x, bias, axis=1):
    return apply("bias_add", [x, bias], {"axis": int(axis)})


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return apply("max_pool2d", [x], {"kernel": _pair(kernel_size), "stride": None if stride is None else _pair(stride),
                                     "padding": _padding(padding), "dilation": _pair(dilation),
                                     "ceil_mode": bool(ceil_mode)})


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return apply("avg_pool2d", [x], {"kernel": _pair(kernel_size), "stride": None if stride is None else _pair(stride),
                                     "padding": _padding(padding), "ceil_mode": bool(ceil_mode),
                                     "count_include_pad": bool(count_include_pad)})


def adaptive_avg_pool2d(x, output_size):
    return apply("adaptive_avg_pool2d", [x], {"output_size": _pair(output_size)})


def adaptive_max_pool2d(x, output_size):
    return apply("adaptive_max_pool2d", [x], {"output_size": _pair(output_size)})


# ---- normalisation, softmax, losses -----------------------------------------------------------
def batch_norm_train(x, gamma, beta, axis=1, eps=1e-5):
    """Returns (y, batch_mean, batch_var) with the biased batch variance."""
    return apply("batch_norm_train", [x, gamma, beta], {"axis": int(axis), "eps": float(eps)})


def batch_norm_infer(x, gamma, beta, running_mean, running_var, axis=1, eps=1e-5):
    return apply("batch_norm_infer", [x, gamma, beta, running_mean, running_var], {"axis": int(axis), "eps": float(eps)})


def layer_norm(x, gamma=None, beta=None, axis=-1, eps=1e-5):
    if gamma is None and beta is not None:
        raise ValueError("layer_norm: beta without gamma")
    ins = [x] + [t for t in (gamma, beta) if t is not None]
    return apply("layer_norm", ins, {"axis": int(axis), "eps": float(eps)})


def softmax(x, axis=-1):
    return apply("softmax", [_floating(x)], {"axis": int(axis)})


def log_softmax(x, axis=-1):
    return apply("log_softmax", [_floating(x)], {"axis": int(axis)})


def attention(q, k, v, causal=False, scale=None):
    """torch.nn.functional.scaled_dot_product_attention as one fused op: softmax(q @ k^T * scale) @ v
    on q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with equal leading dims; causal masks key j >
    query i (top-left aligned, as torch's is_causal); scale defaults to 1/sqrt(D)."""
    return apply("attention", [q, k, v], {"causal": bool(causal), "scale": None if scale is None else float(scale)})


def attention_forward(q, k, v, causal=False, scale=None):
    """attention's primitive: returns (out, lse), lse [..., Tq] the rows' log-sum-exp of the scaled
    scores (float64 for float64 inputs, else float32)."""
    return apply("attention_forward", [q, k, v], {"causal": bool(causal), "scale": None if scale is None else float(scale)})


def nll_loss(log_probs, target, reduction="mean", ignore_index=-100):
    return apply("nll_loss", [log_probs, target], {"reduction": reduction, "ignore_index": int(ignore_index)})


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    return apply("cross_entropy", [logits, target], {"reduction": reduction, "ignore_index": int(ignore_index),
                                                     "label_smoothing": float(label_smoothing)})


def mse_loss(pred, target, reduction="mean"):
    return apply("mse_loss", [pred, target], {"reduction": reduction})


def smooth_l1_loss(pred, target, reduction="mean", beta=1.0):
    return apply("smooth_l1_loss", [pred, target], {"reduction": reduction, "beta": float(beta)})


def dropout(x, key, rate=0.5):
    """Inverted dropout with a counter-based RNG: the same key gives the same mask everywhere."""
    return apply("dropout", [x, key], {"rate": float(rate)})


# ---- shape, layout, indexing ------------------------------------------------------------------
def reshape(a, newshape):
    return apply("reshape", [a], {"shape": _shape(newshape)})


def transpose(a, axes=None):
    return apply("transpose", [a], {"axes": None if axes is None else [int(x) for x in axes]})


def expand_dims(a, axis):
    return apply("expand_dims", [a], {"axis": int(axis)})


def squeeze(a, axis=None):
    return apply("squeeze", [a], {"axes": _axes(axis)})


def batch_flatten(a):
    return apply("batch_flatten", [a])


def swapaxes(a, axis1, axis2):
    return apply("swap_axis", [a], {"axis1": int(axis1), "axis2": int(axis2)})


def broadcast_to(a, shape):
    return apply("broadcast_to", [a], {"shape": _shape(shape)})


def concatenate(arrays, axis=0):
    return apply("concatenate", list(arrays), {"axis": int(axis)})


def stack(arrays, axis=0):
    return apply("stack", list(arrays), {"axis": int(axis)})


def split(a, indices_or_sections, axis=0):
    """numpy.split: an int splits into equal parts, a list gives the split points."""
    if isinstance(indices_or_sections, (int, np.integer)):
        return apply("split", [a], {"sections": int(indices_or_sections), "axis": int(axis)})
    dim = a.shape[axis]
    points = [0] + [builtins.min(builtins.max(int(i) if i >= 0 else int(i) + dim, 0), dim) for i in indices_or_sections] + [dim]
    sizes = [builtins.max(points[k + 1] - points[k], 0) for k in range(len(points) - 1)]
    return apply("split", [a], {"sizes": sizes, "axis": int(axis)})


def strided_slice(a, begin, end, strides=None, axes=None):
    return apply("strided_slice", [a], {"begin": list(begin), "end": list(end),
                                        "strides": None if strides is None else list(strides),
                                        "axes": None if axes is None else list(axes)})


def take(a, indices, axis=None, mode="raise"):
    return apply("take", [a, indices], {"axis": axis, "mode": mode})


def embedding(weight, indices):
    return apply("embedding", [weight, indices])


def take_along_axis(arr, indices, axis):
    return apply("gather", [arr, indices], {"axis": int(axis)})


def gather(x, indices, axis):
    """torch.gather(x, axis, indices) with kiln's argument order."""
    return take_along_axis(x, indices, axis)


def gather_nd(x, indices, batch_dims=0):
    return apply("gather_nd", [x, indices], {"batch_dims": int(batch_dims)})


def scatter(x, indices, src, axis, reduce=None):
    return apply("scatter", [x, indices, src], {"axis": int(axis), "reduce": reduce or "none"})


def pad(array, pad_width, mode="constant", constant_values=0):
    """numpy.pad: pad_width is an int, a (before, after) pair, or one pair per axis."""
    nd = array.ndim
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64).reshape(-1, 2) if np.ndim(pad_width) else
                         np.full((1, 2), int(pad_width)), (nd, 2))
    return apply("pad", [array], {"pad_width": [int(v) for v in pw.reshape(-1)], "mode": mode,
                                  "value": float(constant_values)})


def one_hot(indices, depth, on_value=1.0, off_value=0.0, axis=-1, dtype=_dt.float32):
    return apply("one_hot", [indices], {"depth": int(depth), "on_value": float(on_value),
                                        "off_value": float(off_value), "axis": int(axis), "dtype": _dt.as_dtype(dtype)})


def repeat(a, repeats, axis=None):
    return apply("repeat", [a], {"repeats": int(repeats), "axis": axis})


def tile(a, reps):
    return apply("tile", [a], {"reps": _shape(reps)})


def flip(a, axis=None):
    axes = list(range(a.ndim)) if axis is None else _axes(axis)
    return apply("reverse", [a], {"axes": axes})


def resize2d(x, size, mode="nearest", align_corners=False):
    return apply("resize2d", [x], {"size": _pair(size), "mode": mode, "align_corners": bool(align_corners)})


def cast(x, dtype):
    return apply("cast", [x], {"dtype": _dt.as_dtype(dtype)})


# ---- creation ---------------------------------------------------------------------------------
def array(obj, dtype=None, device=None):
    """A new tensor from a numpy array, a (nested) list, a scalar or a Tensor (always a copy).
    numpy arrays keep their dtype; Python floats become float32, ints int64, bools bool.
    device ("cpu", "cuda", "cuda:N"): where the new tensor lives."""
    if device is not None:
        return array(obj, dtype).to(device)
    if isinstance(obj, Tensor):
        return obj.astype(dtype if dtype is not None else obj.dtype)
    if dtype is None and not isinstance(obj, np.ndarray):
        a = np.asarray(obj)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        return tensor_from_numpy(a)
    return tensor_from_numpy(obj, dtype)


asarray = array


def full(shape, fill_value, dtype=None):
    if dtype is None:
        dtype = _dt.bool_ if isinstance(fill_value, bool) else _dt.int64 if isinstance(fill_value, int) else _dt.float32
    return apply("full", [], {"shape": _shape(shape), "value": float(fill_value), "dtype": _dt.as_dtype(dtype)})


def zeros(shape, dtype=_dt.float32):
    return apply("zeros", [], {"shape": _shape(shape), "dtype": _dt.as_dtype(dtype)})


def ones(shape, dtype=_dt.float32):
    return apply("ones", [], {"shape": _shape(shape), "dtype": _dt.as_dtype(dtype)})


def full_like(a, fill_value, dtype=None):
    return apply("full_like", [a], {"value": float(fill_value), "dtype": None if dtype is None else _dt.as_dtype(dtype)})


def zeros_like(a, dtype=None):
    return apply("zeros_like", [a], {"dtype": None if dtype is None else _dt.as_dtype(dtype)})


def ones_like(a, dtype=None):
    return apply("ones_like", [a], {"dtype": None if dtype is None else _dt.as_dtype(dtype)})


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    return apply("arange", [], {"start": float(start), "stop": float(stop), "step": float(step),
                                "dtype": None if dtype is None else _dt.as_dtype(dtype)})


def random_uniform(key, shape, dtype=_dt.float32, low=0.0, high=1.0):
    return apply("random_uniform", [key], {"shape": _shape(shape), "dtype": _dt.as_dtype(dtype),
                                           "low": float(low), "high": float(high)})


def random_normal(key, shape, dtype=_dt.float32, mean=0.0, std=1.0):
    return apply("random_normal", [key], {"shape": _shape(shape), "dtype": _dt.as_dtype(dtype),
                                          "mean": float(mean), "std": float(std)})


# ---- sorting ----------------------------------------------------------------------------------
def sort(a, axis=-1, descending=False):
    return apply("sort", [a], {"axis": int(axis), "descending": bool(descending)})


def argsort(a, axis=-1, descending=False):
    return apply("argsort", [a], {"axis": int(axis), "descending": bool(descending)})


def topk(x, k, axis=-1, largest=True, sorted=True):
    """Returns (values, indices)."""
    return apply("topk", [x], {"k": int(k), "axis": int(axis), "largest": bool(largest), "sorted": bool(sorted)})
