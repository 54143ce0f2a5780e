"""linear.py — Linear (torch.nn.Linear: y = x @ weight.T + bias) and Identity."""
import math

from .. import dtypes as _dt
from .. import ops
from ..model import Model, Parameter
from . import init


class Linear(Model):
    """weight [out_features, in_features] ~ kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in_features)),
    bias [out_features] ~ U(+-1/sqrt(in_features)), as torch."""

    def build(self, in_features, out_features, bias=True, dtype=_dt.float32):
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.kaiming_uniform((out_features, in_features), a=math.sqrt(5), dtype=dtype))
        self.bias = Parameter(init.fan_in_uniform((out_features,), in_features, dtype)) if bias else None

    def forward(self, input):
        return ops.dense(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Model):
    """Returns its input."""

    def forward(self, input):
        return input
