"""Token sampling on the host, in llama.cpp's order: repeat penalty, top-k, top-p, min-p,
temperature, draw. ``temp <= 0`` is greedy (argmax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Sampler"]


@dataclass
class Sampler:
    """Pick the next token from a logits vector.

    Attributes:
        temp: temperature; ``<= 0`` means greedy.
        top_k: keep the k most likely tokens (0: all).
        top_p: keep the smallest set whose probability reaches p (1.0: all).
        min_p: drop tokens below ``min_p`` times the top probability (0.0: none).
        repeat_penalty: divide positive / multiply negative logits of the last
            ``repeat_last_n`` tokens (1.0: off).
        seed: seed of the random draws (None: from the OS).

    Example:
        >>> import numpy as np
        >>> Sampler(temp=0).pick(np.array([0.1, 2.0, 0.3]), [])
        1
        >>> Sampler(temp=0, repeat_penalty=100.0).pick(np.array([0.1, 2.0, 0.3]), [1])
        2
        >>> Sampler(temp=1.0, top_k=1, seed=0).pick(np.array([0.1, 2.0, 0.3]), [])
        1
    """

    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 keeps all), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repeat_penalty <= 0:
            raise ValueError(f"repeat_penalty must be > 0 (1.0 is off), got {self.repeat_penalty}")
        self.rng = np.random.default_rng(self.seed)

    def pick(self, logits: np.ndarray, history: Sequence[int]) -> int:
        """The next token id given the logits (vocab,) and the ids so far."""
        x = np.asarray(logits, dtype=np.float32).reshape(-1)
        if self.repeat_penalty != 1.0 and len(history):
            x = x.copy()
            ids = np.unique(np.asarray(history[-self.repeat_last_n:], dtype=np.int64))
            v = x[ids]
            x[ids] = np.where(v > 0, v / self.repeat_penalty, v * self.repeat_penalty)
        if self.temp <= 0:
            return int(np.argmax(x))
        k = x.shape[0] if self.top_k <= 0 else min(self.top_k, x.shape[0])
        cand = np.argpartition(-x, k - 1)[:k] if k < x.shape[0] else np.arange(x.shape[0])
        cand = cand[np.argsort(-x[cand], kind="stable")]
        z = x[cand].astype(np.float64)
        p = np.exp(z - z[0])
        p /= p.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), self.top_p) + 1)
            cand, z, p = cand[:keep], z[:keep], p[:keep]
        if self.min_p > 0.0:
            keep = p >= self.min_p * p[0]
            cand, z = cand[keep], z[keep]
        z = z / self.temp
        p = np.exp(z - z.max())
        p /= p.sum()
        return int(cand[self.rng.choice(len(cand), p=p)])
