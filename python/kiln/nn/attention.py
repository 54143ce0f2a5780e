"""attention.py — MultiheadAttention with torch.nn.MultiheadAttention's parameters (in_proj_weight
[3E, E] xavier_uniform, in_proj_bias [3E] zeros, out_proj Linear with a zero bias), so torch's
state_dict copies over. Masks follow torch: a bool mask is True where attention is NOT allowed, a
float mask is added to the scores; is_causal=True alone builds the causal mask (torch also needs
attn_mask then; kiln uses attn_mask when both are given). Without masks other than is_causal,
without weights and without dropout, the fused attention op computes it (no [L, S] scores)."""
import math

import numpy as np

from .. import dtypes as _dt
from .. import ops
from .._core import Tensor
from ..model import Model, Parameter
from . import init
from .linear import Linear


def _as_tensor(mask):
    return mask if mask is None or isinstance(mask, Tensor) else ops.array(np.asarray(mask))


def _apply_mask(scores, mask):
    """scores [B, H, L, S] with a mask broadcastable to it: bool -> -inf where True, float -> added."""
    if mask.dtype is _dt.bool_:
        return ops.where(mask, float("-inf"), scores)
    return scores + mask


class MultiheadAttention(Model):
    def build(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False, kdim=None,
              vdim=None, batch_first=True, dtype=_dt.float32):
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention add_bias_kv / add_zero_attn")
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise NotImplementedError("MultiheadAttention with kdim/vdim other than embed_dim")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        self.in_proj_weight = Parameter(init.xavier_uniform((3 * embed_dim, embed_dim), dtype=dtype))
        self.in_proj_bias = Parameter(init.zeros((3 * embed_dim,), dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            self.out_proj.bias = Parameter(init.zeros((embed_dim,), dtype))

    def _project(self, query, key, value):
        """q, k, v = x @ W_i.T + b_i with W = in_proj_weight split in three (one dense for self-attention)."""
        if query is key and key is value:
            return ops.split(ops.dense(query, self.in_proj_weight, self.in_proj_bias), 3, axis=-1)
        ws = ops.split(self.in_proj_weight, 3, axis=0)
        bs = ops.split(self.in_proj_bias, 3, axis=0) if self.in_proj_bias is not None else (None,) * 3
        return tuple(ops.dense(x, w, b) for x, w, b in zip((query, key, value), ws, bs))

    def _heads(self, x):
        """[B, T, E] -> [B, H, T, D]."""
        b, t, _ = x.shape
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """query [B, L, E], key/value [B, S, E] (batch_first; else [L, B, E]); key_padding_mask [B, S];
        attn_mask [L, S] or [B*H, L, S]. Returns (output [B, L, E], weights or None): weights are
        [B, L, S] averaged over heads ([B, H, L, S] if not average_attn_weights)."""
        if not self.batch_first and query is key and key is value:
            query = key = value = ops.swapaxes(query, 0, 1)
        elif not self.batch_first:
            query, key, value = (ops.swapaxes(t, 0, 1) for t in (query, key, value))
        bsz, tgt, _ = query.shape
        src = key.shape[1]
        q, k, v = self._project(query, key, value)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        dropping = self.training and self.dropout > 0.0
        if attn_mask is None and key_padding_mask is None and not need_weights and not dropping:
            out = ops.attention(q, k, v, causal=is_causal)  # the fused op: [B, H, L, D]
            return self._merge(out, bsz, tgt), None
        scores = ops.matmul(q * (1.0 / math.sqrt(self.head_dim)), k, transpose_b=True)  # [B, H, L, S]
        attn_mask, key_padding_mask = _as_tensor(attn_mask), _as_tensor(key_padding_mask)
        if attn_mask is not None:
            if attn_mask.ndim == 3:
                attn_mask = ops.reshape(attn_mask, (bsz, self.num_heads, tgt, src))
            scores = _apply_mask(scores, attn_mask)
        elif is_causal:
            pos_q = ops.arange(tgt)
            pos_k = pos_q if src == tgt else ops.arange(src)  # key j > query i is masked (top-left aligned)
            scores = _apply_mask(scores, ops.greater(ops.reshape(pos_k, (1, src)), ops.reshape(pos_q, (tgt, 1))))
        if key_padding_mask is not None:
            scores = _apply_mask(scores, ops.reshape(key_padding_mask, (bsz, 1, 1, src)))
        probs = ops.softmax(scores, axis=-1)
        if dropping:
            probs = ops.dropout(probs, self.next_key(), self.dropout)
        out = self._merge(ops.matmul(probs, v), bsz, tgt)  # from [B, H, L, D]
        weights = None
        if need_weights:
            weights = ops.mean(probs, axis=1) if average_attn_weights else probs
        return out, weights

    def _merge(self, out, bsz, tgt):
        """[B, H, L, D] -> out_proj of [B, L, E] ([L, B, E] unless batch_first)."""
        out = self.out_proj(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (bsz, tgt, self.embed_dim)))
        return out if self.batch_first else ops.swapaxes(out, 0, 1)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
