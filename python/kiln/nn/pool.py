"""pool.py — MaxPool2d, AvgPool2d and AdaptiveAvgPool2d (torch.nn's arguments)."""
from .. import ops
from ..model import Model


class MaxPool2d(Model):
    def build(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        if return_indices:
            raise NotImplementedError("MaxPool2d(return_indices=True)")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, input):
        return ops.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Model):
    def build(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
        if divisor_override is not None:
            raise NotImplementedError("AvgPool2d(divisor_override=...)")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input):
        return ops.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Model):
    """output_size: an int, or a pair whose None entries keep the input's size."""

    def build(self, output_size):
        self.output_size = output_size

    def forward(self, input):
        size = (self.output_size,) * 2 if isinstance(self.output_size, int) else tuple(self.output_size)
        size = [input.shape[-2 + i] if s is None else s for i, s in enumerate(size)]
        return ops.adaptive_avg_pool2d(input, size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
