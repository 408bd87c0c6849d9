"""Initializers: each function returns ``init(shape_or_array, seed=None) -> Array``.

Draws come from ``oxcore.random`` (the same numbers on every backend): pass ``seed=`` for a
fixed draw, or seed the global stream with ``oxcore.random.seed`` to make a whole model
reproducible. Fans follow MLX: ``fan_in = shape[-1] * receptive``, ``fan_out = shape[0] *
receptive`` with ``receptive = prod(shape[1:-1])`` (PyTorch's ``(out, in)`` weight layout).

Example:
    >>> import oxcore as ox
    >>> from oxcore.nn import init
    >>> w = init.glorot_uniform()((64, 32), seed=0)
    >>> w.shape, w.tolist() == init.glorot_uniform()((64, 32), seed=0).tolist()
    ((64, 32), True)
    >>> bool(ox.max(ox.abs(w)) <= (6 / 96) ** 0.5)
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .. import _dtypes as D
from .._array import Array
from .._errors import AttributeValueError, ShapeError
from ..ops import random as R
from ..ops.creation import full

__all__ = ["constant", "normal", "uniform", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]

Initializer = Callable[..., Array]


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape) if hasattr(a, "shape") else ((int(a),) if isinstance(a, int) else tuple(a))


def _fans(shape: Sequence[int], who: str) -> tuple[int, int]:
    if len(shape) < 2:
        raise ShapeError(f"{who} needs a shape with at least 2 axes (fan in and out), got {tuple(shape)}")
    receptive = math.prod(shape[1:-1])
    return shape[-1] * receptive, shape[0] * receptive


def constant(value: float, dtype: Any = D.float32) -> Initializer:
    """Every element ``value``."""
    def init(a: Any, seed: int | None = None) -> Array:
        return full(_shape(a), value, dtype=dtype)
    return init


def normal(mean: float = 0.0, std: float = 1.0, dtype: Any = D.float32) -> Initializer:
    """Normal draws with ``mean`` and ``std``."""
    def init(a: Any, seed: int | None = None) -> Array:
        return R.normal(_shape(a), mean, std, dtype=dtype, seed=seed)
    return init


def uniform(low: float = 0.0, high: float = 1.0, dtype: Any = D.float32) -> Initializer:
    """Uniform draws in ``[low, high)``."""
    def init(a: Any, seed: int | None = None) -> Array:
        return R.uniform(_shape(a), low, high, dtype=dtype, seed=seed)
    return init


def glorot_normal(dtype: Any = D.float32) -> Initializer:
    """Glorot (Xavier) normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    def init(a: Any, gain: float = 1.0, seed: int | None = None) -> Array:
        fi, fo = _fans(_shape(a), "glorot_normal")
        return R.normal(_shape(a), 0.0, gain * math.sqrt(2.0 / (fi + fo)), dtype=dtype, seed=seed)
    return init


def glorot_uniform(dtype: Any = D.float32) -> Initializer:
    """Glorot (Xavier) uniform in ``+-gain * sqrt(6 / (fan_in + fan_out))``."""
    def init(a: Any, gain: float = 1.0, seed: int | None = None) -> Array:
        fi, fo = _fans(_shape(a), "glorot_uniform")
        lim = gain * math.sqrt(6.0 / (fi + fo))
        return R.uniform(_shape(a), -lim, lim, dtype=dtype, seed=seed)
    return init


def _fan(a: Any, mode: str, who: str) -> int:
    fi, fo = _fans(_shape(a), who)
    if mode not in ("fan_in", "fan_out"):
        raise AttributeValueError(f"Invalid mode: {mode!r}. Valid modes are: fan_in, fan_out")
    return fi if mode == "fan_in" else fo


def he_normal(dtype: Any = D.float32) -> Initializer:
    """He (Kaiming) normal: ``std = gain / sqrt(fan)``, ``mode`` ``"fan_in"`` or ``"fan_out"``."""
    def init(a: Any, mode: str = "fan_in", gain: float = 1.0, seed: int | None = None) -> Array:
        return R.normal(_shape(a), 0.0, gain / math.sqrt(_fan(a, mode, "he_normal")), dtype=dtype, seed=seed)
    return init


def he_uniform(dtype: Any = D.float32) -> Initializer:
    """He (Kaiming) uniform in ``+-gain * sqrt(3 / fan)``."""
    def init(a: Any, mode: str = "fan_in", gain: float = 1.0, seed: int | None = None) -> Array:
        lim = gain * math.sqrt(3.0 / _fan(a, mode, "he_uniform"))
        return R.uniform(_shape(a), -lim, lim, dtype=dtype, seed=seed)
    return init
