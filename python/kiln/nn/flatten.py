"""flatten.py — Flatten (torch.nn.Flatten: merges dims start_dim..end_dim into one)."""
import math

from .. import ops
from ..model import Model


class Flatten(Model):
    def build(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        nd = input.ndim
        s, e = self.start_dim % nd if nd else 0, self.end_dim % nd if nd else 0
        shape = input.shape[:s] + (math.prod(input.shape[s:e + 1]),) + input.shape[e + 1:]
        return ops.reshape(input, shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
