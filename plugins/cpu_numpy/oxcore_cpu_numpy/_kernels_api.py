"""Kernels for the Array API extras: sorting, searching, differences, nextafter (NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _argsort(x, *, axis, descending, stable):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64, copy=False)
    # NOTE: stable descending: sort the reversed array stably, reverse the order back and map
    # the indices; equal elements then keep their original order (NumPy has no descending sort)
    n = x.shape[axis]
    rev = np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return (n - 1 - rev).astype(np.int64, copy=False)


def _sort(x, *, axis, descending, stable):
    if not descending:
        return np.sort(x, axis=axis, kind="stable")
    return np.take_along_axis(x, _argsort(x, axis=axis, descending=True, stable=stable), axis=axis)


def _count_nonzero(x, *, axis, keepdims):
    return np.asarray(np.sum(x != 0, axis=axis, keepdims=keepdims, dtype=np.int64))


KERNELS: dict[str, Any] = {
    "argsort": _argsort,
    "sort": _sort,
    "searchsorted": lambda a, v, *, side: np.searchsorted(a, v, side=side).astype(np.int64),
    "count_nonzero": _count_nonzero,
    "diff": lambda x, *, axis, n: np.diff(x, n=n, axis=axis),
    "nextafter": np.nextafter,
    "isin": lambda a, b, *, invert: np.isin(a, b, invert=invert),
}
