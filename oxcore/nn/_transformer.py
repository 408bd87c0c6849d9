"""Transformer encoder and decoder layers (MLX's ``mlx.nn.TransformerEncoderLayer`` shape)."""

from __future__ import annotations

from typing import Any, Callable

from .._array import Array
from ..ops import nn as F
from ._attention import KVCache, MultiHeadAttention, RoPE
from ._layers import Dropout, LayerNorm, Linear
from ._module import Module

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer"]


class _MLP(Module):
    def __init__(self, dims: int, mlp_dims: int, dropout: float, activation: Callable[[Array], Array]) -> None:
        super().__init__()
        self.linear1, self.linear2 = Linear(dims, mlp_dims), Linear(mlp_dims, dims)
        self.dropout = Dropout(dropout)
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class TransformerEncoderLayer(Module):
    """Self-attention then an MLP, each with a residual connection and a LayerNorm (before
    the sublayer with ``norm_first``, the default, else after).

    Args:
        dims: model width.
        num_heads: attention heads.
        mlp_dims: hidden width of the MLP. Default: ``4 * dims``.
        dropout: dropout after attention and inside the MLP. Default: ``0``.
        activation: the MLP's activation. Default: ``oxcore.relu``.
        norm_first: pre-norm (True) or post-norm. Default: ``True``.
        num_kv_heads: grouped-query attention heads. Default: ``num_heads``.
        rope: a ``RoPE`` for the attention. Default: none.

    Call ``layer(x, mask=None, cache=None)``; ``mask="causal"`` with a ``KVCache`` makes a
    decoder-only (GPT-style) block.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> layer = nn.TransformerEncoderLayer(16, 2)
        >>> layer(ox.random.normal((2, 3, 16), seed=0), mask="causal").shape
        (2, 3, 16)
    """

    def __init__(self, dims: int, num_heads: int, mlp_dims: int | None = None, dropout: float = 0.0,
                 activation: Callable[[Array], Array] = F.relu, norm_first: bool = True,
                 num_kv_heads: int | None = None, rope: RoPE | None = None) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dims, num_heads, num_kv_heads=num_kv_heads, rope=rope)
        self.ln1, self.ln2 = LayerNorm(dims), LayerNorm(dims)
        self.mlp = _MLP(dims, mlp_dims or 4 * dims, dropout, activation)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def __call__(self, x: Array, mask: Any = None, cache: KVCache | None = None) -> Array:
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout(self.attention(y, y, y, mask=mask, cache=cache))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.dropout(self.attention(x, x, x, mask=mask, cache=cache)))
        return self.ln2(x + self.mlp(x))


class TransformerDecoderLayer(Module):
    """Self-attention over the target, cross-attention to ``memory`` (the encoder's output),
    then an MLP; residuals and LayerNorms as in ``TransformerEncoderLayer``.

    Call ``layer(x, memory, x_mask=None, memory_mask=None, cache=None)``.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> layer = nn.TransformerDecoderLayer(16, 2)
        >>> x, mem = ox.random.normal((2, 3, 16), seed=0), ox.random.normal((2, 7, 16), seed=1)
        >>> layer(x, mem, x_mask="causal").shape
        (2, 3, 16)
    """

    def __init__(self, dims: int, num_heads: int, mlp_dims: int | None = None, dropout: float = 0.0,
                 activation: Callable[[Array], Array] = F.relu, norm_first: bool = True,
                 num_kv_heads: int | None = None, rope: RoPE | None = None) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dims, num_heads, num_kv_heads=num_kv_heads, rope=rope)
        self.cross_attention = MultiHeadAttention(dims, num_heads, num_kv_heads=num_kv_heads)
        self.ln1, self.ln2, self.ln3 = LayerNorm(dims), LayerNorm(dims), LayerNorm(dims)
        self.mlp = _MLP(dims, mlp_dims or 4 * dims, dropout, activation)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def __call__(self, x: Array, memory: Array, x_mask: Any = None, memory_mask: Any = None,
                 cache: KVCache | None = None) -> Array:
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout(self.self_attention(y, y, y, mask=x_mask, cache=cache))
            y = self.ln2(x)
            x = x + self.dropout(self.cross_attention(y, memory, memory, mask=memory_mask))
            return x + self.mlp(self.ln3(x))
        x = self.ln1(x + self.dropout(self.self_attention(x, x, x, mask=x_mask, cache=cache)))
        x = self.ln2(x + self.dropout(self.cross_attention(x, memory, memory, mask=memory_mask)))
        return self.ln3(x + self.mlp(x))
