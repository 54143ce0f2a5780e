"""norm.py — BatchNorm2d and LayerNorm (torch.nn's arguments, ones/zeros affine parameters).

BatchNorm2d in train mode normalises with the batch statistics and updates its running
statistics buffers: running = (1 - momentum) * running + momentum * batch, with the unbiased batch
variance (momentum=None: the cumulative average 1/num_batches_tracked), as torch. Eagerly it
replaces the buffers; inside a trace that collects buffer updates (kiln.Trainer's step) it records
the new values, which the step returns and the Trainer writes back; inside other traces (the IR
has no side effects) the traced function only normalises."""
import numpy as np

from .. import dtypes as _dt
from .. import ops
from .._core import current_trace, tensor_from_numpy
from ..model import Model, Parameter
from . import init


class BatchNorm2d(Model):
    """x [N, C, H, W]; weight/bias [C] (affine), buffers running_mean, running_var [C] and
    num_batches_tracked (int64 scalar) when track_running_stats."""

    def build(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=_dt.float32):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(init.ones((num_features,), dtype)) if affine else None
        self.bias = Parameter(init.zeros((num_features,), dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", init.zeros((num_features,), dtype))
            self.register_buffer("running_var", init.ones((num_features,), dtype))
            self.register_buffer("num_batches_tracked", tensor_from_numpy(np.array(0, np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _affine(self, x):
        if self.weight is not None:
            return self.weight, self.bias
        return ops.ones((self.num_features,), x.dtype), ops.zeros((self.num_features,), x.dtype)

    def forward(self, input):
        if input.ndim != 4:
            raise ValueError(f"BatchNorm2d expects a 4-D input [N, C, H, W], got shape {input.shape}")
        gamma, beta = self._affine(input)
        if not self.training and self.running_mean is not None:
            return ops.batch_norm_infer(input, gamma, beta, self.running_mean, self.running_var, axis=1, eps=self.eps)
        n = input.size // input.shape[1]
        if self.training and n <= 1:
            raise ValueError(f"BatchNorm2d expects more than 1 value per channel when training, got input shape {input.shape}")
        y, mean, var = ops.batch_norm_train(input, gamma, beta, axis=1, eps=self.eps)
        if self.training and self.running_mean is not None:
            self._update_running_stats(mean, var, n)
        return y

    _STATS = ("num_batches_tracked", "running_mean", "running_var")

    def _update_running_stats(self, mean, var, n):
        """New running statistics from the batch's mean and biased variance over n values per
        channel: assigned eagerly, recorded as buffer updates in a trace (Trace.update_buffer)."""
        tr = current_trace()
        if tr is not None and tr.buffer_updates is None:
            return  # a trace that keeps no side effects (an export): it only normalises
        buffers = [getattr(self, k) for k in self._STATS]
        count, running_mean, running_var = buffers if tr is None else [tr.buffer_value(b) for b in buffers]
        count = count + 1
        # momentum None: the cumulative average, factor 1 / num_batches_tracked (a tensor: in a
        # trace the count is symbolic)
        m = self.momentum if self.momentum is not None else 1.0 / count.astype(running_mean.dtype)
        # torch keeps the unbiased variance: biased var * n / (n - 1)
        new = (count, running_mean * (1.0 - m) + mean * m, running_var * (1.0 - m) + var * (m * n / (n - 1)))
        for k, b, v in zip(self._STATS, buffers, new):
            if tr is None:
                setattr(self, k, v)
            else:
                tr.update_buffer(b, v)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class LayerNorm(Model):
    """Normalises over the trailing dims `normalized_shape`; weight ones, bias zeros of that shape."""

    def build(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=_dt.float32):
        shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(s) for s in normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.weight = Parameter(init.ones(shape, dtype)) if elementwise_affine else None
        self.bias = Parameter(init.zeros(shape, dtype)) if elementwise_affine and bias else None

    def forward(self, input):
        if tuple(input.shape[input.ndim - len(self.normalized_shape):]) != self.normalized_shape:
            raise ValueError(f"LayerNorm over {self.normalized_shape} got an input of shape {input.shape}")
        return ops.layer_norm(input, self.weight, self.bias, axis=-len(self.normalized_shape), eps=self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
