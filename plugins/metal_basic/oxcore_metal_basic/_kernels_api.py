"""Kernels for the Array API extras on MLX: sort, argsort, searchsorted, count_nonzero.

Ops MLX has no function for (``nextafter``) are claimed with a kernel that always refuses,
so ``oxcore ops list`` and the plan say why they run elsewhere (``_support.MISSING``).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._support import MISSING


def _flip(x, axis):
    return x[(slice(None),) * axis + (slice(None, None, -1),)]


def _argsort(x, *, axis, descending, stable):
    # NOTE: MLX's sort is a stable merge sort (CPU and Metal); descending reuses the stable
    # ascending order of the reversed array, as cpu_numpy does, so ties keep their order
    if not descending:
        return mx.argsort(x, axis=axis).astype(mx.int64)
    n = x.shape[axis]
    return (n - 1 - _flip(mx.argsort(_flip(x, axis), axis=axis), axis).astype(mx.int64))


def _sort(x, *, axis, descending, stable):
    if not descending:
        return mx.sort(x, axis=axis)
    return mx.take_along_axis(x, _argsort(x, axis=axis, descending=True, stable=stable), axis=axis)


def _count_nonzero(x, *, axis, keepdims):
    if not axis:
        return (x != 0).astype(mx.int64)
    return mx.count_nonzero(x, axis=list(axis), keepdims=keepdims).astype(mx.int64)


def _refused(op: str):
    def kernel(*args: Any, **attrs: Any) -> Any:  # never runs: supports() refuses every node
        raise NotImplementedError(MISSING[op])
    kernel.__name__ = f"{op}_missing"
    return kernel


API: dict[str, Any] = {
    "argsort": _argsort,
    "sort": _sort,
    "searchsorted": lambda a, v, *, side: mx.searchsorted(a, v, side).astype(mx.int64),
    "count_nonzero": _count_nonzero,
    **{op: _refused(op) for op in MISSING},
}
