"""Searching: searchsorted, count_nonzero, nonzero (Array API 2024.12), isin (2025.12).

``nonzero`` has a data-dependent output shape: it evaluates its input (the Array API allows
that), like boolean-mask indexing does.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import _dtypes as D
from .._array import Array, build
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import AXES, KEEPDIMS
from ._rules import as_array, norm_axes, promote_to_common

__all__ = ["searchsorted", "count_nonzero", "nonzero", "isin"]


def _searchsorted_infer(inputs, attrs):
    x1, x2 = inputs
    if x1.ndim != 1:
        raise ShapeError(f"searchsorted needs a 1-D sorted array x1, got shape {x1.shape}")
    if not x1.dtype.is_numeric:
        raise DTypeError(f"searchsorted expects real numeric arrays, got {x1.dtype.name}")
    return x2.shape, D.int64


def _searchsorted_decomp(x1: Array, x2: Array, *, side: str) -> Array:
    # NOTE: the insertion index is the count of x1 elements below v (left) or not above v
    # (right): a broadcast compare and a sum, which every backend runs (O(n m), fine for the
    # sizes where no native kernel exists)
    v = build("reshape", x2, shape=x2.shape + (1,))
    below = build("astype", build("less" if side == "left" else "less_equal", x1, v), dtype=D.int64)
    return build("sum", below, axis=(x2.ndim,), keepdims=False, dtype=D.int64)


register_op("searchsorted", Category.OTHER, _searchsorted_infer, attrs=(Attr("side", Literal["left", "right"], default="left"),), decompose=_searchsorted_decomp,
            doc="insertion indices into a sorted 1-D array (int64)")

_SIDES = ("left", "right")


def searchsorted(x1: Any, x2: Any, /, *, side: str = "left", sorter: Any = None) -> Array:
    """Indices where ``x2``'s values would be inserted into the sorted 1-D ``x1`` to keep it
    sorted: the first such index (``side="left"``) or the last (``"right"``). ``sorter``
    (indices that sort ``x1``, as ``argsort`` gives) lets ``x1`` be unsorted.

    Example:
        >>> import oxcore as ox
        >>> a = ox.asarray([1.0, 2.0, 2.0, 4.0])
        >>> ox.searchsorted(a, ox.asarray([0.0, 2.0, 3.0, 5.0])).tolist()
        [0, 1, 3, 4]
        >>> ox.searchsorted(a, ox.asarray([2.0]), side="right").tolist()
        [3]
    """
    if side not in _SIDES:
        raise AttributeValueError(f"Invalid side: {side!r}. Valid sides are: left, right")
    a = as_array(x1)
    v = x2 if isinstance(x2, Array) else as_array(x2) if not isinstance(x2, (int, float)) else \
        as_array(np.asarray(x2, dtype=a.dtype.numpy))
    if sorter is not None:
        from .indexing import take

        a = take(a, as_array(sorter), axis=0)
    a, v = promote_to_common(a, v)
    return build("searchsorted", a, v, side=side)


def _count_infer(inputs, attrs):
    (x,) = inputs
    axes, keep = attrs["axis"], attrs["keepdims"]
    shape = tuple((1 if keep else None) if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for d in shape if d is not None), D.int64


def _count_decomp(x: Array, *, axis: tuple[int, ...], keepdims: bool) -> Array:
    from .creation import zeros

    nz = build("astype", build("not_equal", x, zeros((), dtype=x.dtype)), dtype=D.int64)
    return build("sum", nz, axis=axis, keepdims=keepdims, dtype=D.int64)


register_op("count_nonzero", Category.REDUCTION, _count_infer, attrs=(AXES, KEEPDIMS), decompose=_count_decomp,
            doc="number of non-zero elements over axes (int64)")


def count_nonzero(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    """Number of non-zero (true) elements over ``axis`` (None: all), as int64.

    Example:
        >>> import oxcore as ox
        >>> ox.count_nonzero(ox.asarray([[0, 1, 2], [3, 0, 0]]), axis=1).tolist()
        [2, 1]
    """
    x = as_array(x)
    return build("count_nonzero", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims))


def nonzero(x: Any, /) -> tuple[Array, ...]:
    """Indices of the non-zero (true) elements: one int64 array per dimension, in row-major
    order. The result size depends on the data, so ``x`` is evaluated here.

    Example:
        >>> import oxcore as ox
        >>> [i.tolist() for i in ox.nonzero(ox.asarray([[0, 5], [7, 0]]))]
        [[0, 1], [1, 0]]
    """
    x = as_array(x)
    if x.ndim == 0:
        raise ShapeError("nonzero needs an array of at least 1 dimension, got a 0-d array (use x != 0)")
    from .creation import asarray

    return tuple(asarray(i.astype(np.int64)) for i in np.nonzero(x.numpy()))


def _isin_infer(inputs, attrs):
    return inputs[0].shape, D.bool_


def _isin_decomp(x1: Array, x2: Array, *, invert: bool) -> Array:
    # NOTE: every element against every test value: O(n m), on any backend
    flat = build("reshape", x2, shape=(1,) * x1.ndim + (x2.size,))
    hit = build("equal", build("reshape", x1, shape=x1.shape + (1,)), flat)
    found = build("any", hit, axis=(x1.ndim,), keepdims=False)
    return build("logical_not", found) if invert else found


register_op("isin", Category.OTHER, _isin_infer, attrs=(Attr("invert", bool, default=False),), decompose=_isin_decomp,
            doc="whether each element occurs in a second array (bool)")


def isin(x1: Any, x2: Any, /, *, invert: bool = False) -> Array:
    """Whether each element of ``x1`` equals some element of ``x2`` (negated when ``invert``).

    Example:
        >>> import oxcore as ox
        >>> ox.isin(ox.asarray([1, 2, 3, 4]), ox.asarray([2, 4])).tolist()
        [False, True, False, True]
    """
    a, b = promote_to_common(as_array(x1), as_array(x2))
    return build("isin", a, b, invert=bool(invert))
