"""Set functions: unique_all, unique_counts, unique_inverse, unique_values (Array API 2024.12).

How many unique values there are depends on the data, so these evaluate their input (the
Array API allows that) and compute on the host with NumPy. NaNs are all distinct, as the
standard asks; the values come sorted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._array import Array
from ._rules import as_array

__all__ = ["unique_all", "unique_counts", "unique_inverse", "unique_values"]


class UniqueAllResult(NamedTuple):
    values: Array
    indices: Array
    inverse_indices: Array
    counts: Array


class UniqueCountsResult(NamedTuple):
    values: Array
    counts: Array


class UniqueInverseResult(NamedTuple):
    values: Array
    inverse_indices: Array


def _unique(x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    x = as_array(x)
    a = x.numpy()
    # NOTE: equal_nan=False: every NaN is its own unique value (the standard's rule)
    vals, idx, inv, counts = np.unique(a.reshape(-1), return_index=True, return_inverse=True, return_counts=True,
                                       equal_nan=False)
    return vals, idx.astype(np.int64), inv.astype(np.int64), counts.astype(np.int64), x.shape


def _host(a: np.ndarray) -> Array:
    from .creation import asarray

    return asarray(a)


def unique_all(x: Any, /) -> UniqueAllResult:
    """Unique values (sorted), the flat index of each one's first occurrence, the index into
    the values of each element of ``x`` (shape of ``x``), and the counts. Evaluates ``x``.

    Example:
        >>> import oxcore as ox
        >>> r = ox.unique_all(ox.asarray([3, 1, 3, 2]))
        >>> r.values.tolist(), r.indices.tolist(), r.inverse_indices.tolist(), r.counts.tolist()
        ([1, 2, 3], [1, 3, 0], [2, 0, 2, 1], [1, 1, 2])
    """
    vals, idx, inv, counts, shape = _unique(x)
    return UniqueAllResult(_host(vals), _host(idx), _host(inv.reshape(shape)), _host(counts))


def unique_counts(x: Any, /) -> UniqueCountsResult:
    """Unique values (sorted) and how often each occurs. Evaluates ``x``.

    Example:
        >>> import oxcore as ox
        >>> r = ox.unique_counts(ox.asarray([2.0, 1.0, 2.0]))
        >>> r.values.tolist(), r.counts.tolist()
        ([1.0, 2.0], [1, 2])
    """
    vals, _, _, counts, _ = _unique(x)
    return UniqueCountsResult(_host(vals), _host(counts))


def unique_inverse(x: Any, /) -> UniqueInverseResult:
    """Unique values (sorted) and, for each element of ``x``, the index of its value
    (``values[inverse_indices]`` rebuilds ``x``). Evaluates ``x``.

    Example:
        >>> import oxcore as ox
        >>> r = ox.unique_inverse(ox.asarray([[5, 4], [4, 4]]))
        >>> r.values.tolist(), r.inverse_indices.tolist()
        ([4, 5], [[1, 0], [0, 0]])
    """
    vals, _, inv, _, shape = _unique(x)
    return UniqueInverseResult(_host(vals), _host(inv.reshape(shape)))


def unique_values(x: Any, /) -> Array:
    """The sorted unique values of ``x`` (flattened). Evaluates ``x``.

    Example:
        >>> import oxcore as ox
        >>> ox.unique_values(ox.asarray([3, 1, 3])).tolist()
        [1, 3]
    """
    return _host(_unique(x)[0])
