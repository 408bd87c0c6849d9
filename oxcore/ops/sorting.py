"""Sorting: sort and argsort (Array API 2024.12), both stable, ascending or descending."""

from __future__ import annotations

from typing import Any

from .. import _dtypes as D
from .._array import Array, build
from .._errors import DTypeError, ShapeError
from .._registry import Category, register_op
from ._attrs import SORT_ATTRS
from ._rules import as_array, norm_axis

__all__ = ["sort", "argsort"]


def _sort_infer(out_int: bool):
    def infer(inputs, attrs):
        (x,) = inputs
        if not x.dtype.is_numeric:
            raise DTypeError(f"{'argsort' if out_int else 'sort'} expects a real numeric dtype, got {x.dtype.name}; "
                             f"valid: {', '.join(d.name for d in D.NUMERIC)}")
        return x.shape, (D.int64 if out_int else x.dtype)
    return infer


def _sort_decomp(x: Array, *, axis: int, descending: bool, stable: bool) -> Array:
    # NOTE: through argsort, so sort is differentiated (take_along_axis scatters g back) and
    # batched by vmap without rules of its own
    idx = build("argsort", x, axis=axis, descending=descending, stable=stable)
    return build("take_along_axis", x, idx, axis=axis)


register_op("argsort", Category.OTHER, _sort_infer(True), attrs=SORT_ATTRS,
            doc="indices that sort along an axis (stable; int64)")
register_op("sort", Category.OTHER, _sort_infer(False), attrs=SORT_ATTRS,
            decompose=_sort_decomp, doc="values sorted along an axis")


def _check_0d(x: Array, axis: int, name: str) -> tuple[Array, int]:
    if x.ndim == 0:
        raise ShapeError(f"{name} needs an array of at least 1 dimension, got a 0-d array")
    return x, norm_axis(axis, x.ndim)


def argsort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    """Indices that sort ``x`` along ``axis``. Equal elements keep their order (stable), also
    when ``descending``. NaNs sort last (ascending) or first (descending).

    Example:
        >>> import oxcore as ox
        >>> ox.argsort(ox.asarray([3, 1, 2, 1])).tolist()
        [1, 3, 2, 0]
        >>> ox.argsort(ox.asarray([3, 1, 2, 1]), descending=True).tolist()
        [0, 2, 1, 3]
    """
    x, ax = _check_0d(as_array(x), axis, "argsort")
    return build("argsort", x, axis=ax, descending=bool(descending), stable=True)


def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    """``x`` sorted along ``axis`` (ascending unless ``descending``).

    Example:
        >>> import oxcore as ox
        >>> ox.sort(ox.asarray([[3.0, 1.0, 2.0]]), descending=True).tolist()
        [[3.0, 2.0, 1.0]]
    """
    x, ax = _check_0d(as_array(x), axis, "sort")
    return build("sort", x, axis=ax, descending=bool(descending), stable=True)
