"""Seeded random numbers that are identical on every backend.

Bits come from a counter-based hash (the murmur3 finalizer over ``index ^ f(seed)``), written
with uint32 primitives, so NumPy, MLX on a CPU and MLX on a GPU draw the same numbers.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any, Sequence

from .. import _dtypes as D
from .._array import Array, build, scalar
from .._errors import AttributeValueError, CompileError
from .._graph import TRACING
from .._registry import Attr, Category, register_op
from ._attrs import SHAPE
from ._rules import norm_shape

__all__ = ["seed", "random_bits", "uniform", "normal", "randint"]

_counter = itertools.count()
_base_seed = 0
_lock = threading.Lock()


def seed(value: int) -> None:
    """Reset the global stream used when no ``seed=`` is given.

    Example:
        >>> import oxcore as ox
        >>> ox.random.seed(0); a = ox.random.normal((3,)).tolist()
        >>> ox.random.seed(0); a == ox.random.normal((3,)).tolist()
        True
    """
    global _counter, _base_seed
    with _lock:
        _base_seed, _counter = int(value), itertools.count()


def _next_seed(s: int | None) -> int:
    if s is not None:
        return int(s) & 0xFFFFFFFF
    if TRACING.get() is not None:
        raise CompileError("oxcore.random.* without seed= inside oxcore.compile would draw the same numbers on "
                           "every call (the graph is replayed, the global stream is not advanced). Pass seed= "
                           "(each new seed traces again), or draw outside the function and pass the array in.")
    with _lock:
        return (_base_seed * 0x9E3779B1 + next(_counter) * 0x85EBCA77 + 1) & 0xFFFFFFFF


def _u32(v: int) -> Array:
    return scalar(v & 0xFFFFFFFF, D.uint32)


def _bits(*, shape, seed):
    n = math.prod(shape)
    x = build("arange", start=0, stop=n, step=1, dtype=D.uint32)
    x = x ^ _u32((seed * 0x9E3779B9 + 0x632BE5AB) & 0xFFFFFFFF)
    for mul in (0x85EBCA6B, 0xC2B2AE35):  # NOTE: murmur3 fmix32
        x = x ^ (x >> _u32(16 if mul == 0x85EBCA6B else 13))
        x = x * _u32(mul)
    x = x ^ (x >> _u32(16))
    return build("reshape", x, shape=shape)


register_op("random_bits", Category.CREATION, lambda i, a: (a["shape"], D.uint32), attrs=(SHAPE, Attr("seed", int, default=None, note="never None: the public None draws the next seed of oxcore.random.seed's stream")),
            decompose=_bits, doc="uint32 hash of (index, seed)")


def random_bits(shape: int | Sequence[int], *, seed: int | None = None) -> Array:
    """Uniform uint32 bits of ``shape``."""
    return build("random_bits", shape=norm_shape(shape), seed=_next_seed(seed))


def _unit(shape, s, dtype) -> Array:
    # 24 high bits -> [0, 1) exactly representable in float32
    b = build("random_bits", shape=shape, seed=s)
    return (b >> _u32(8)).astype(D.float32) * scalar(1.0 / (1 << 24), D.float32)


def uniform(shape: int | Sequence[int] = (), low: float = 0.0, high: float = 1.0, *, dtype: Any = None,
            seed: int | None = None) -> Array:
    """Uniform floats in ``[low, high)``.

    Example:
        >>> import oxcore as ox
        >>> x = ox.random.uniform((1000,), seed=1)
        >>> 0.0 <= ox.min(x).item() and ox.max(x).item() < 1.0
        True
    """
    dt = D.dtype(dtype) if dtype is not None else D.default_float
    u = _unit(norm_shape(shape), _next_seed(seed), dt)
    return (u * (high - low) + low).astype(dt)


def normal(shape: int | Sequence[int] = (), mean: float = 0.0, std: float = 1.0, *, dtype: Any = None,
           seed: int | None = None) -> Array:
    """Normal floats (Box-Muller over two independent uniform streams).

    Example:
        >>> import oxcore as ox
        >>> abs(ox.mean(ox.random.normal((20000,), seed=3)).item()) < 0.05
        True
    """
    from . import elementwise as E

    dt = D.dtype(dtype) if dtype is not None else D.default_float
    shape = norm_shape(shape)
    s = _next_seed(seed)
    u1 = 1.0 - _unit(shape, s, dt)  # (0, 1]: log is finite
    u2 = _unit(shape, (s ^ 0x5BD1E995) & 0xFFFFFFFF, dt)
    z = E.sqrt(-2.0 * E.log(u1)) * E.cos(u2 * (2 * math.pi))
    return (z * std + mean).astype(dt)


def randint(low: int, high: int, shape: int | Sequence[int] = (), *, dtype: Any = None,
            seed: int | None = None) -> Array:
    """Integers in ``[low, high)`` (int64 unless ``dtype``).

    Example:
        >>> import oxcore as ox
        >>> x = ox.random.randint(0, 10, (100,), seed=0)
        >>> 0 <= ox.min(x).item() and ox.max(x).item() < 10
        True
    """
    if high <= low:
        raise AttributeValueError(f"randint needs low < high, got [{low}, {high})")
    dt = D.dtype(dtype) if dtype is not None else D.default_int
    b = build("random_bits", shape=norm_shape(shape), seed=_next_seed(seed))
    r = (b % _u32(high - low)).astype(D.int64) + low
    return r.astype(dt)
