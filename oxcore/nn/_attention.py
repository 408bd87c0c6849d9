"""Attention: RoPE, masks, MultiHeadAttention with grouped-query heads, and KV caches that
keep one plan for a whole decode loop."""

from __future__ import annotations

import math
from typing import Any

from .. import _dtypes as D
from .._array import Array
from .._errors import AttributeValueError, ShapeError
from ..ops import elementwise as E
from ..ops import nn as F
from ..ops.creation import arange, asarray, zeros
from ..ops.linalg import matmul
from ..ops.manipulation import permute_dims, reshape
from ..ops.reduction import max as amax
from ._layers import Linear
from ._module import Module

__all__ = ["RoPE", "MultiHeadAttention", "KVCache", "QuantizedKVCache", "causal_mask", "padding_mask"]


def _offset(offset: Any) -> Array:
    return offset if isinstance(offset, Array) else asarray(int(offset), dtype=D.int32)


def causal_mask(q_len: int, k_len: int | None = None, offset: Any = 0) -> Array:
    """Boolean ``(q_len, k_len)`` mask, True where query ``i`` (at position ``offset + i``) may
    see key ``j``: ``j <= offset + i``. ``offset`` may be a 0-d integer Array (one plan for
    every decode step).

    Example:
        >>> from oxcore import nn
        >>> nn.causal_mask(2, 3, offset=1).tolist()
        [[True, True, False], [True, True, True]]
    """
    k_len = q_len if k_len is None else k_len
    qi = reshape(arange(q_len, dtype=D.int32) + _offset(offset), (q_len, 1))
    return reshape(arange(k_len, dtype=D.int32), (1, k_len)) <= qi


def padding_mask(lengths: Any, max_len: int) -> Array:
    """Boolean ``(batch, 1, 1, max_len)`` mask (broadcasts over heads and queries), True for
    the first ``lengths[b]`` keys of each sequence.

    Example:
        >>> from oxcore import nn
        >>> nn.padding_mask([1, 3], 3)[:, 0, 0].tolist()
        [[True, False, False], [True, True, True]]
    """
    n = asarray(lengths, dtype=D.int32)
    if n.ndim != 1:
        raise ShapeError(f"padding_mask: lengths must be 1-D (one per sequence), got shape {n.shape}")
    seen = reshape(arange(max_len, dtype=D.int32), (1, max_len)) < reshape(n, (n.shape[0], 1))
    return reshape(seen, (n.shape[0], 1, 1, max_len))


class RoPE(Module):
    """Rotary position embedding of the first ``dims`` features (``oxcore.rope``).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> nn.RoPE(8)(ox.ones((1, 2, 3, 8)), offset=4).shape
        (1, 2, 3, 8)
    """

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000.0, scale: float = 1.0) -> None:
        super().__init__()
        self.dims, self.traditional, self.base, self.scale = dims, traditional, base, scale

    def _extra_repr(self) -> str:
        return f"{self.dims}, traditional={self.traditional}"

    def __call__(self, x: Array, offset: Any = 0) -> Array:
        self._check_input(x, f"(..., seq, >= {self.dims})", getattr(x, "ndim", 0) >= 2 and x.shape[-1] >= self.dims)
        return F.rope(x, self.dims, traditional=self.traditional, base=self.base, scale=self.scale, offset=offset)


class KVCache(Module):
    """Keys and values of past positions, preallocated to ``max_len`` (arrays ``k`` and ``v``).

    ``update(k, v)`` writes the new ``(batch, kv_heads, L, head_dim)`` rows at ``offset`` with
    a mask (a one-hot placement and a ``where``, exact for finite values) and returns the whole
    buffers; ``offset`` is a 0-d int32 Array. Shapes never change, so every decode step builds
    the same graph and the scheduler reuses one plan.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> cache = nn.KVCache(1, 2, 8, 4)
        >>> k, v = cache.update(ox.ones((1, 2, 3, 4)), ox.ones((1, 2, 3, 4)))
        >>> k.shape, cache.offset.item(), cache.k[0, 0, :, 0].tolist()
        ((1, 2, 8, 4), 3, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    """

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: Any = D.float32,
                 value_dim: int | None = None) -> None:
        super().__init__()
        self.max_len = max_len
        self.k = zeros((batch, kv_heads, max_len, head_dim), dtype=dtype)
        self.v = zeros((batch, kv_heads, max_len, value_dim or head_dim), dtype=dtype)
        self.offset = asarray(0, dtype=D.int32)
        self.freeze()  # NOTE: state, not something to train

    def _extra_repr(self) -> str:
        return f"k={self.k.shape}, v={self.v.shape}"

    def _placement(self, n: int) -> tuple[Array, Array]:
        """``(place, written)``: the (max_len, n) one-hot matrix putting new row ``l`` at
        ``offset + l``, and the (max_len, 1) mask of the rows written."""
        pos = reshape(arange(self.max_len, dtype=D.int32), (self.max_len, 1))
        new = reshape(arange(n, dtype=D.int32), (1, n)) + self.offset
        return pos == new, (pos >= self.offset) & (pos < self.offset + n)

    def _check(self, k: Array, v: Array) -> None:
        B, H, _, Dk = self.k.shape
        ok = (isinstance(k, Array) and isinstance(v, Array) and k.ndim == 4 and v.ndim == 4 and k.shape[2] == v.shape[2]
              and k.shape[:2] == (B, H) and v.shape[:2] == (B, H) and k.shape[3] == Dk
              and v.shape[3] == self.v.shape[3] and k.shape[2] <= self.max_len)
        self._check_input(k, f"keys (batch={B}, kv_heads={H}, L<={self.max_len}, {Dk}) and values "
                          f"(..., {self.v.shape[3]})", ok)

    def _place(self, x: Array, place: Array) -> Array:
        return matmul(place.astype(x.dtype), x)

    def update(self, k: Array, v: Array) -> tuple[Array, Array]:
        """Write ``k``/``v`` at ``offset``, advance ``offset``, return all keys and values."""
        self._check(k, v)
        place, written = self._placement(k.shape[2])
        self.k = E.where(written, self._place(k, place), self.k)
        self.v = E.where(written, self._place(v, place), self.v)
        self.offset = self.offset + k.shape[2]
        return self.k, self.v


class QuantizedKVCache(KVCache):
    """A ``KVCache`` holding int8 values with one float32 scale per block of ``block_size``
    features (symmetric: ``x ~= q * scale``, ``scale = max|x| / 127`` per block), about 4x
    less memory than float32. ``update`` returns dequantized keys and values.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> cache = nn.QuantizedKVCache(1, 1, 4, 64, block_size=32)
        >>> x = ox.random.normal((1, 1, 2, 64), seed=0)
        >>> k, _ = cache.update(x, x)
        >>> cache.k.dtype, cache.k_scales.shape
        (oxcore.int8, (1, 1, 4, 2))
        >>> bool(ox.max(ox.abs(k[:, :, :2] - x)) <= ox.max(ox.abs(x)) / 127)
        True
    """

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: Any = D.float32,
                 value_dim: int | None = None, block_size: int = 32) -> None:
        Module.__init__(self)
        vd = value_dim or head_dim
        if head_dim % block_size or vd % block_size:
            raise AttributeValueError(f"QuantizedKVCache: block_size {block_size} must divide head_dim {head_dim} "
                                      f"and value_dim {vd}")
        self.max_len, self.block_size, self.dtype = max_len, block_size, D.dtype(dtype)
        self.k = zeros((batch, kv_heads, max_len, head_dim), dtype=D.int8)
        self.v = zeros((batch, kv_heads, max_len, vd), dtype=D.int8)
        self.k_scales = zeros((batch, kv_heads, max_len, head_dim // block_size), dtype=D.float32)
        self.v_scales = zeros((batch, kv_heads, max_len, vd // block_size), dtype=D.float32)
        self.offset = asarray(0, dtype=D.int32)
        self.freeze()

    def _quantize(self, x: Array) -> tuple[Array, Array]:
        g = reshape(x.astype(D.float32), x.shape[:-1] + (x.shape[-1] // self.block_size, self.block_size))
        scale = amax(E.abs(g), axis=-1) * (1.0 / 127.0)
        safe = E.where(scale > 0, scale, asarray(1.0, dtype=D.float32))
        q = E.clip(E.round(g / reshape(safe, safe.shape + (1,))), -127, 127).astype(D.int8)
        return reshape(q, x.shape), scale

    def _dequantize(self, q: Array, scale: Array) -> Array:
        g = reshape(q.astype(D.float32), q.shape[:-1] + (scale.shape[-1], self.block_size))
        return reshape(g * reshape(scale, scale.shape + (1,)), q.shape).astype(self.dtype)

    def update(self, k: Array, v: Array) -> tuple[Array, Array]:
        self._check(k, v)
        place, written = self._placement(k.shape[2])
        for name, x in (("k", k), ("v", v)):
            q, s = self._quantize(self._place(x.astype(D.float32), place))
            sname = name + "_scales"
            setattr(self, name, E.where(written, q, getattr(self, name)))
            setattr(self, sname, E.where(written, s, getattr(self, sname)))
        self.offset = self.offset + k.shape[2]
        return self._dequantize(self.k, self.k_scales), self._dequantize(self.v, self.v_scales)


class MultiHeadAttention(Module):
    """Multi-head attention (MLX's layer) with grouped-query heads and optional RoPE and cache.

    ``query_proj``, ``key_proj``, ``value_proj`` and ``out_proj`` are ``Linear`` layers; keys
    and values get ``num_kv_heads`` heads (default ``num_heads``; fewer is grouped-query
    attention, each kv head serving ``num_heads // num_kv_heads`` query heads).

    Args:
        dims: model width (query projection output); a multiple of ``num_heads``.
        num_heads: query heads.
        num_kv_heads: key/value heads, dividing ``num_heads``. Default: ``num_heads``.
        query_input_dims, key_input_dims, value_input_dims: input widths. Default: ``dims``.
        value_dims: width of the values over all query heads. Default: ``dims``.
        value_output_dims: output width. Default: ``dims``.
        bias: biases in the projections. Default: ``False``.
        rope: a ``RoPE`` applied to queries and keys (at the cache's offset). Default: none.

    Call ``attn(queries, keys=None, values=None, mask=None, cache=None)``: ``keys`` defaults
    to ``queries`` and ``values`` to ``keys``; ``mask`` is ``"causal"``, a boolean mask (True
    attends) or an additive one, broadcastable to ``(batch, heads, L, S)``; with a ``KVCache``
    the new keys/values are appended and attention runs over every cached position.

    Example:
        >>> import oxcore as ox
        >>> from oxcore import nn
        >>> attn = nn.MultiHeadAttention(32, 4, num_kv_heads=2, rope=nn.RoPE(8))
        >>> x = ox.random.normal((2, 5, 32), seed=0)
        >>> attn(x, mask="causal").shape
        (2, 5, 32)
    """

    def __init__(self, dims: int, num_heads: int, num_kv_heads: int | None = None,
                 query_input_dims: int | None = None, key_input_dims: int | None = None,
                 value_input_dims: int | None = None, value_dims: int | None = None,
                 value_output_dims: int | None = None, bias: bool = False, rope: RoPE | None = None) -> None:
        super().__init__()
        kvh = num_kv_heads or num_heads
        value_dims = value_dims or dims
        if dims % num_heads or value_dims % num_heads:
            raise AttributeValueError(f"MultiHeadAttention: dims {dims} and value_dims {value_dims} must be "
                                      f"multiples of num_heads {num_heads}")
        if num_heads % kvh:
            raise AttributeValueError(f"MultiHeadAttention: num_kv_heads {kvh} must divide num_heads {num_heads}")
        self.num_heads, self.num_kv_heads = num_heads, kvh
        hd, vhd = dims // num_heads, value_dims // num_heads
        self.query_proj = Linear(query_input_dims or dims, dims, bias=bias)
        self.key_proj = Linear(key_input_dims or dims, kvh * hd, bias=bias)
        self.value_proj = Linear(value_input_dims or key_input_dims or dims, kvh * vhd, bias=bias)
        self.out_proj = Linear(value_dims, value_output_dims or dims, bias=bias)
        if rope is not None:
            self.rope = rope

    def _extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}"

    def __call__(self, queries: Array, keys: Array | None = None, values: Array | None = None, mask: Any = None,
                 cache: KVCache | None = None) -> Array:
        keys = queries if keys is None else keys
        values = keys if values is None else values
        for x, lin, what in ((queries, self.query_proj, "queries"), (keys, self.key_proj, "keys"),
                             (values, self.value_proj, "values")):
            self._check_input(x, f"{what} (batch, seq, {lin.weight.shape[1]})",
                              getattr(x, "ndim", 0) == 3 and x.shape[-1] == lin.weight.shape[1])
        B, L, _ = queries.shape
        S = keys.shape[1]
        if values.shape[:2] != (B, S):
            self._check_input(values, f"values (batch={B}, seq={S}, ...) matching keys", False)
        q = permute_dims(reshape(self.query_proj(queries), (B, L, self.num_heads, -1)), (0, 2, 1, 3))
        k = permute_dims(reshape(self.key_proj(keys), (B, S, self.num_kv_heads, -1)), (0, 2, 1, 3))
        v = permute_dims(reshape(self.value_proj(values), (B, S, self.num_kv_heads, -1)), (0, 2, 1, 3))
        offset = cache.offset if cache is not None else 0
        if "rope" in self:
            q, k = self.rope(q, offset=offset), self.rope(k, offset=offset)
        causal = isinstance(mask, str)
        if causal and mask != "causal":
            raise AttributeValueError(f"Invalid mask: {mask!r}. Valid values are: 'causal', an Array, None")
        if cache is not None:
            n_valid = cache.offset + S
            k, v = cache.update(k, v)
            S = k.shape[2]
            seen = causal_mask(L, S, offset) if causal else \
                reshape(arange(S, dtype=D.int32), (1, S)) < n_valid
            mask = seen if causal or mask is None else _combine(seen, mask, q.dtype)
            causal = False
        elif causal:
            mask = None
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(q.shape[-1]), mask=mask, causal=causal)
        return self.out_proj(reshape(permute_dims(o, (0, 2, 1, 3)), (B, L, -1)))


def _combine(seen: Array, mask: Any, dtype: D.DType) -> Array:
    m = asarray(mask)
    if m.dtype is D.bool_:
        return seen & m
    return E.where(seen, m.astype(dtype), asarray(float("-inf"), dtype=dtype))
