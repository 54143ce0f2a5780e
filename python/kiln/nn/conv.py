"""conv.py — Conv2d and ConvTranspose2d (torch.nn's arguments, weight layouts and initialisation:
kaiming_uniform(a=sqrt(5)) weights and U(+-1/sqrt(fan_in)) biases)."""
import math

from .. import dtypes as _dt
from .. import ops
from ..model import Model, Parameter
from . import init


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(e) for e in v)


def _conv_padding(padding, kernel_size, dilation):
    """torch's padding: an int, a pair, 'valid' (none) or 'same' (total dilation*(k-1) per dim,
    the odd one on the bottom/right, as torch) -> the op's [h, w] or [top, left, bottom, right]."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
        before = [t // 2 for t in total]
        return tuple(before) + tuple(t - b for t, b in zip(total, before))
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got '{padding}'")
    return _pair(padding)


class _ConvNd(Model):
    """Shared parameters of the convolutions; `weight_shape` is torch's layout."""

    def _build_params(self, weight_shape, out_channels, bias, dtype):
        self.weight = Parameter(init.kaiming_uniform(weight_shape, a=math.sqrt(5), dtype=dtype))
        fan_in, _ = init.calculate_fan_in_and_fan_out(weight_shape)
        self.bias = Parameter(init.fan_in_uniform((out_channels,), fan_in, dtype)) if bias else None

    def _add_bias(self, y):
        return y if self.bias is None else ops.bias_add(y, self.bias, axis=1)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class Conv2d(_ConvNd):
    """x [N, C_in, H, W] -> [N, C_out, H', W']; weight [C_out, C_in/groups, kH, kW]."""

    def build(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
              padding_mode="zeros", dtype=_dt.float32):
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d padding_mode '{padding_mode}' (only 'zeros')")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must divide by groups {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding
        self._pad = _conv_padding(padding, self.kernel_size, self.dilation)
        self._build_params((out_channels, in_channels // groups) + self.kernel_size, out_channels, bias, dtype)

    def forward(self, input):
        y = ops.conv2d(input, self.weight, self.stride, list(self._pad), self.dilation, self.groups)
        return self._add_bias(y)


class ConvTranspose2d(_ConvNd):
    """x [N, C_in, H, W] -> [N, C_out, H', W']; weight [C_in, C_out/groups, kH, kW] (torch's fan_in
    of that layout is C_out/groups * kH * kW, used for weight and bias alike)."""

    def build(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
              dilation=1, padding_mode="zeros", dtype=_dt.float32):
        if padding_mode != "zeros":
            raise NotImplementedError(f"ConvTranspose2d padding_mode '{padding_mode}' (only 'zeros')")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must divide by groups {groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding, self.output_padding = _pair(padding), _pair(output_padding)
        self._build_params((in_channels, out_channels // groups) + self.kernel_size, out_channels, bias, dtype)

    def forward(self, input):
        y = ops.conv2d_transpose(input, self.weight, self.stride, self.padding, self.output_padding, self.dilation,
                                 self.groups)
        return self._add_bias(y)
