"""embedding.py — Embedding (torch.nn.Embedding: rows of a [num_embeddings, embedding_dim] table
initialised N(0, 1), the padding_idx row zero)."""
import numpy as np

from .. import dtypes as _dt
from .. import ops
from ..model import Model, Parameter
from . import init


class Embedding(Model):
    def build(self, num_embeddings, embedding_dim, padding_idx=None, dtype=_dt.float32):
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} is out of range for {num_embeddings} embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        weight = init.normal((num_embeddings, embedding_dim), dtype=dtype)
        if padding_idx is not None:
            rows = ops.reshape(ops.arange(num_embeddings), (num_embeddings, 1))
            weight = ops.where(ops.equal(rows, padding_idx), 0.0, weight)
        self.weight = Parameter(weight)

    def forward(self, input):
        if isinstance(input, (np.ndarray, list)):
            input = ops.array(np.asarray(input))
        return ops.embedding(self.weight, input)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + (
            "" if self.padding_idx is None else f", padding_idx={self.padding_idx}")
