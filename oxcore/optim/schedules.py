"""Learning-rate schedules: functions ``schedule(step) -> 0-d float32 Array``.

A schedule may be passed wherever a learning rate is. ``step`` is the number of updates done
so far (an int or a 0-d integer Array); schedules are written in oxcore ops, so they run inside
``oxcore.compile`` with the step as an input (one plan for every step). Values equal
``mlx.optimizers``' schedules.

Example:
    >>> from oxcore import optim
    >>> warmup = optim.linear_schedule(0.0, 1e-2, steps=10)
    >>> lr = optim.join_schedules([warmup, optim.cosine_decay(1e-2, 100)], [10])
    >>> [round(lr(s).item(), 5) for s in (0, 5, 10, 60, 200)]
    [0.0, 0.005, 0.01, 0.005, 0.0]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .. import _dtypes as D
from .._array import Array
from .._errors import AttributeValueError
from ..ops import elementwise as E
from ..ops.creation import asarray

__all__ = ["Schedule", "exponential_decay", "step_decay", "cosine_decay", "linear_schedule", "join_schedules"]

Schedule = Callable[[Any], Array]


def _step(step: Any) -> Array:
    s = step if isinstance(step, Array) else asarray(step, dtype=D.int64)
    return s.astype(D.float32)


def _f32(v: float) -> Array:
    return asarray(v, dtype=D.float32)


def exponential_decay(init: float, decay_rate: float) -> Schedule:
    """``init * decay_rate ** step``.

    Example:
        >>> from oxcore import optim
        >>> round(optim.exponential_decay(0.1, 0.9)(5).item(), 6)
        0.059049
    """
    def schedule(step: Any) -> Array:
        return E.pow(_f32(decay_rate), _step(step)) * init
    return schedule


def step_decay(init: float, decay_rate: float, step_size: int) -> Schedule:
    """``init * decay_rate ** (step // step_size)`` (PyTorch's StepLR).

    Example:
        >>> from oxcore import optim
        >>> round(optim.step_decay(0.1, 0.9, 10)(21).item(), 6)
        0.081
    """
    if step_size < 1:
        raise AttributeValueError(f"step_size must be at least 1, got {step_size}")

    def schedule(step: Any) -> Array:
        return E.pow(_f32(decay_rate), E.floor(_step(step) / step_size)) * init
    return schedule


def cosine_decay(init: float, decay_steps: int, end: float = 0.0) -> Schedule:
    """Half a cosine from ``init`` to ``end`` over ``decay_steps``, then ``end``
    (CosineAnnealing).

    Example:
        >>> from oxcore import optim
        >>> [round(optim.cosine_decay(1.0, 10)(s).item(), 4) for s in (0, 5, 10, 20)]
        [1.0, 0.5, 0.0, 0.0]
    """
    if decay_steps < 1:
        raise AttributeValueError(f"decay_steps must be at least 1, got {decay_steps}")

    def schedule(step: Any) -> Array:
        s = E.minimum(_step(step), _f32(decay_steps))
        decay = 0.5 * (1.0 + E.cos(s * (math.pi / decay_steps)))
        return decay * (init - end) + end
    return schedule


def linear_schedule(init: float, end: float, steps: int) -> Schedule:
    """From ``init`` to ``end`` linearly over ``steps``, then ``end`` (a warmup when
    ``init`` is 0).

    Example:
        >>> from oxcore import optim
        >>> [round(optim.linear_schedule(0.0, 1.0, 4)(s).item(), 2) for s in (0, 1, 4, 9)]
        [0.0, 0.25, 1.0, 1.0]
    """
    if steps < 1:
        raise AttributeValueError(f"steps must be at least 1, got {steps}")

    def schedule(step: Any) -> Array:
        return E.minimum(_step(step), _f32(steps)) * ((end - init) / steps) + init
    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i + 1]`` from step ``boundaries[i]`` on; it sees the steps since its
    boundary.

    Example:
        >>> from oxcore import optim
        >>> lr = optim.join_schedules([optim.linear_schedule(0, 1, 2), optim.exponential_decay(1, 0.5)], [2])
        >>> [lr(s).item() for s in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    if not schedules:
        raise AttributeValueError("join_schedules needs at least one schedule")
    if len(schedules) != len(boundaries) + 1:
        raise AttributeValueError(f"join_schedules: {len(schedules)} schedules need {len(schedules) - 1} boundaries, "
                                  f"got {len(boundaries)}")

    def schedule(step: Any) -> Array:
        s = step if isinstance(step, Array) else asarray(step, dtype=D.int64)
        out = schedules[0](s)
        for b, sch in zip(boundaries, schedules[1:]):
            out = E.where(s < b, out, sch(s - b))
        return out
    return schedule
