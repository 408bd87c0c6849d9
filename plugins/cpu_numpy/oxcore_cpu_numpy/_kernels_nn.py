"""Whole-op NumPy kernels for the transformer ops a decode step repeats per layer.

Without them ``rope`` and ``scaled_dot_product_attention`` run through their decompositions:
~20 and ~12 primitive ops each, every one a Python call and a temporary. For a decode step of
a small model (Gemma 3 270M: 36 ropes and 18 attentions per token over vectors of 256
floats) that per-op cost, not the arithmetic, is the time. These kernels compute the same
formulas in a few NumPy calls each, in the same float32 order as the decompositions.

Example:
    >>> import numpy as np
    >>> q = np.ones((1, 2, 1, 4), np.float32); k = v = np.ones((1, 1, 3, 4), np.float32)
    >>> m = np.array([True, True, False])[None, None, None]
    >>> sdpa(q, k, v, m, scale=0.5, causal=False).shape
    (1, 2, 1, 4)
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

__all__ = ["gelu_tanh", "rms_norm", "rope", "sdpa"]

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` in place on one temporary.

    NOTE: ``x ** 3`` goes through ``pow`` (~100 ns an element in float32); this costs a few
    multiplies, and one buffer instead of six.
    """
    t = x * x
    t *= x
    t *= x.dtype.type(0.044715)
    t += x
    t *= x.dtype.type(_SQRT_2_OVER_PI)
    np.tanh(t, out=t)
    t += x.dtype.type(1.0)
    t *= x
    t *= x.dtype.type(0.5)  # NOTE: exact (a power of two): the same value as (0.5 x) (1 + tanh)
    return t


def rms_norm(x: np.ndarray, *w: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x^2) + eps) * w`` over the last axis (as llama.cpp: x times the reciprocal).

    NOTE: ``np.mean`` costs ~10 us of Python per call; ``add.reduce`` and in-place updates
    make a norm of a short row ~5 us instead of ~16.
    """
    ss = np.add.reduce(x * x, axis=-1, keepdims=True)
    ss /= x.dtype.type(x.shape[-1])
    ss += x.dtype.type(eps)
    np.sqrt(ss, out=ss)
    np.reciprocal(ss, out=ss)
    y = x * ss
    if w:
        y *= w[0]
    return y


# NOTE: a decode step asks for the same angles for every layer (one offset, two bases): keep a few
_TABLES: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_TABLES_MAX = 16


def _rope_table(offset: int, T: int, dims: int, base: float, scale: float, dt: np.dtype) -> tuple:
    """cos and sin (T, dims/2) of the rope angles, computed as the op's decomposition does."""
    key = (offset, T, dims, base, scale, dt)
    got = _TABLES.get(key)
    if got is not None:
        return got
    half = dims // 2
    pos = (np.arange(T, dtype=np.int64) + offset).astype(dt)
    inv = np.arange(half, dtype=dt) * dt.type(-2.0 * math.log(base) / dims)
    theta = (pos * dt.type(scale)).reshape(T, 1) * np.exp(inv).reshape(1, half)
    got = _TABLES[key] = (np.cos(theta), np.sin(theta))
    if len(_TABLES) > _TABLES_MAX:
        _TABLES.popitem(last=False)
    return got


def rope(x: np.ndarray, offset: np.ndarray, *, dims: int, traditional: bool, base: float,
         scale: float) -> np.ndarray:
    """Rotary embedding of the first ``dims`` features of ``(..., T, features)`` from position ``offset``."""
    dt = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    xf = x.astype(dt, copy=False)
    cos, sin = _rope_table(int(offset), x.shape[-2], dims, base, scale, dt)
    out = np.empty(x.shape, dt)
    if traditional:
        x1, x2 = xf[..., 0:dims:2], xf[..., 1:dims:2]
        o1, o2 = out[..., 0:dims:2], out[..., 1:dims:2]
    else:
        half = dims // 2
        x1, x2 = xf[..., :half], xf[..., half:dims]
        o1, o2 = out[..., :half], out[..., half:dims]
    np.multiply(x1, cos, out=o1)
    o1 -= x2 * sin
    np.multiply(x1, sin, out=o2)
    o2 += x2 * cos
    if dims < x.shape[-1]:
        out[..., dims:] = xf[..., dims:]
    return out.astype(x.dtype, copy=False)


def _key_range(mask: np.ndarray, Tk: int) -> tuple[int, int]:
    """The keys any query may see under a boolean mask: ``[lo, hi)`` (all keys when none is)."""
    if mask.shape[-1] != Tk:
        return 0, Tk
    seen = np.flatnonzero(np.logical_or.reduce(mask.reshape(-1, Tk), axis=0))
    if not seen.size:
        return 0, Tk  # NOTE: every row masked out: keep the decomposition's NaN rows
    return int(seen[0]), int(seen[-1]) + 1


def sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, *mask: np.ndarray, scale: float, causal: bool) -> np.ndarray:
    """``softmax(q k^T * scale + mask) v`` over ``(B, H, T, D)``; k/v may have fewer heads (GQA).

    Grouped query heads become rows of one product per kv head (no repeated k/v), and with a
    boolean mask only the keys some query can see are multiplied: a fixed-size KV cache's
    empty tail costs nothing.
    """
    B, H, Tq, D = q.shape
    Hk, Tk, Dv = k.shape[1], k.shape[2], v.shape[3]
    r = H // Hk
    m = mask[0] if mask else None
    lo, hi = _key_range(m, Tk) if m is not None and m.dtype == np.bool_ else (0, Tk)
    qs = (q * q.dtype.type(scale)).reshape(B, Hk, r * Tq, D)
    kk, vv = k[:, :, lo:hi], v[:, :, lo:hi]
    s = np.empty((B, Hk, r * Tq, hi - lo), q.dtype)
    for b in range(B):  # NOTE: 2-D products: NumPy's batched matmul skips BLAS on a transposed operand
        for h in range(Hk):
            np.dot(qs[b, h], kk[b, h].T, out=s[b, h])
    s = s.reshape(B, H, Tq, hi - lo)
    neg = q.dtype.type(-np.inf)
    if causal:  # NOTE: aligned bottom-right: query i sees keys <= i + (Tk - Tq)
        s = np.where(np.arange(Tk - Tq, Tk)[:, None] >= np.arange(lo, hi)[None, :], s, neg)
    if m is not None:
        mm = m[..., lo:hi] if m.shape[-1] == Tk else m
        s = np.where(mm, s, neg) if m.dtype == np.bool_ else s + mm
    mx = np.max(s, axis=-1, keepdims=True)
    s -= np.where(np.isfinite(mx), mx, q.dtype.type(0))
    np.exp(s, out=s)
    s /= np.add.reduce(s, axis=-1, keepdims=True)
    p = s.reshape(B, Hk, r * Tq, hi - lo)
    out = np.empty((B, Hk, r * Tq, Dv), q.dtype)
    for b in range(B):
        for h in range(Hk):
            np.dot(p[b, h], vv[b, h], out=out[b, h])
    return out.reshape(B, H, Tq, Dv)
