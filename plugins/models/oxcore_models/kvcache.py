"""A fixed-size KV cache: preallocated to its maximum length, written in place of a mask.

Every decode step sees arrays of one shape (the whole cache plus a boolean mask of the
positions written so far), so ``oxcore.compile`` traces the step once and replays it for
every token. Structured like a layer (``update`` returns the new arrays) so it can move onto
``oxcore.nn``'s KVCache later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import oxcore as ox

__all__ = ["KVCache"]


@dataclass
class KVCache:
    """Keys and values of every layer, shaped ``(1, kv_heads, length, head_dim)``.

    Attributes:
        length: positions the cache holds (prompt + generated tokens must fit).
        pos: positions written so far.

    Example:
        >>> c = KVCache(layers=2, kv_heads=1, length=8, head_dim=4)
        >>> idx, offset = c.advance(3)
        >>> idx.tolist(), int(offset), c.pos
        ([0, 1, 2], 0, 3)
        >>> c.mask(3)[0, 0].astype(int).tolist()[2]    # the 3rd query sees keys 0..2
        [1, 1, 1, 0, 0, 0, 0, 0]
        >>> c.mask(3, window=2)[0, 0].astype(int).tolist()[2]
        [0, 1, 1, 0, 0, 0, 0, 0]
    """

    layers: int
    kv_heads: int
    length: int
    head_dim: int
    dtype: ox.DType = ox.float32
    pos: int = 0
    keys: list = field(default_factory=list)
    values: list = field(default_factory=list)

    def __post_init__(self) -> None:
        shape = (1, self.kv_heads, self.length, self.head_dim)
        if not self.keys:
            self.keys = [ox.zeros(shape, dtype=self.dtype) for _ in range(self.layers)]
            self.values = [ox.zeros(shape, dtype=self.dtype) for _ in range(self.layers)]

    def advance(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Reserve the next ``n`` positions: (their indices (n,) int32, the first one as a 0-d int32)."""
        if self.pos + n > self.length:
            raise ValueError(f"the KV cache holds {self.length} positions; {self.pos} are used and {n} more "
                             "do not fit (raise the context length)")
        idx = np.arange(self.pos, self.pos + n, dtype=np.int32)
        offset = np.asarray(self.pos, dtype=np.int32)
        self.pos += n
        return idx, offset

    def mask(self, n: int, window: int | None = None) -> np.ndarray:
        """Boolean ``(1, 1, n, length)``: the last ``n`` written queries see the keys at or before
        their position (and, with ``window``, fewer than ``window`` positions back)."""
        q = np.arange(self.pos - n, self.pos)[:, None]
        k = np.arange(self.length)[None, :]
        m = k <= q
        if window is not None:
            m &= (q - k) < window  # NOTE: llama.cpp's standard sliding window: p1 - p0 < n_swa
        return m[None, None]

    @staticmethod
    def update(cache: ox.Array, new: ox.Array, idx: ox.Array) -> ox.Array:
        """``cache`` with ``new`` (1, kv_heads, n, head_dim) written at positions ``idx`` (n,)."""
        return ox.setitem(cache, (slice(None), slice(None), idx), new)
