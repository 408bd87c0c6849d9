"""Linear algebra: matmul (batched, broadcast), tensordot, vecdot, outer."""

from __future__ import annotations

import operator
from typing import Any, Sequence

from .._array import Array, build
from .._errors import DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import axis
from ._rules import as_array, broadcast_shapes, norm_axis, promote_to_common

__all__ = ["matmul", "tensordot", "vecdot", "outer"]


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if not (a.dtype.is_numeric and b.dtype.is_numeric):
        raise DTypeError(f"matmul needs numeric dtypes, got {a.dtype.name} and {b.dtype.name}")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul does not take 0-d operands (shapes {a.shape} and {b.shape})")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ShapeError(f"matmul: contracted dimensions differ: {a.shape} @ {b.shape} ({ka} != {kb})")
    if a.ndim == 1 and b.ndim == 1:
        return (), a.dtype
    if a.ndim == 1:
        return b.shape[:-2] + b.shape[-1:], a.dtype
    if b.ndim == 1:
        return a.shape[:-1], a.dtype
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return batch + (a.shape[-2], b.shape[-1]), a.dtype


register_op("matmul", Category.LINALG, _matmul_infer, doc="matrix product with batch broadcasting")


def matmul(x1: Any, x2: Any, /) -> Array:
    """Matrix product (``@``): batched, broadcast, 1-D operands promoted like NumPy.

    Example:
        >>> import oxcore as ox
        >>> (ox.ones((4, 2, 3)) @ ox.ones((3, 5))).shape
        (4, 2, 5)
    """
    a, b = promote_to_common(as_array(x1), as_array(x2))
    return build("matmul", a, b)


def _tensordot_infer(inputs, attrs):
    a, b = inputs
    ax_a, ax_b = attrs["axes"]
    for i, j in zip(ax_a, ax_b):
        if a.shape[i] != b.shape[j]:
            raise ShapeError(f"tensordot: axis {i} of {a.shape} and axis {j} of {b.shape} differ")
    keep_a = tuple(d for i, d in enumerate(a.shape) if i not in ax_a)
    keep_b = tuple(d for i, d in enumerate(b.shape) if i not in ax_b)
    return keep_a + keep_b, a.dtype


def _tensordot(a, b, *, axes):
    from .manipulation import permute_dims, reshape

    ax_a, ax_b = axes
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [i for i in range(b.ndim) if i not in ax_b]
    k = 1
    for i in ax_a:
        k *= a.shape[i]
    am = reshape(permute_dims(a, free_a + list(ax_a)), (-1, k))
    bm = reshape(permute_dims(b, list(ax_b) + free_b), (k, -1))
    return reshape(build("matmul", am, bm), tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


register_op("tensordot", Category.LINALG, _tensordot_infer,
            attrs=(Attr("axes", tuple[tuple[int, ...], tuple[int, ...]], default=2,
                        note="(axes of x1, axes of x2), non-negative, paired; the public int n becomes the last n of x1 and first n of x2"),), decompose=_tensordot,
            doc="contract over pairs of axes")


def tensordot(x1: Any, x2: Any, /, *, axes: int | tuple[Sequence[int], Sequence[int]] = 2) -> Array:
    """Sum products over the last ``axes`` of x1 and the first of x2 (or explicit axis pairs).

    Example:
        >>> import oxcore as ox
        >>> ox.tensordot(ox.ones((2, 3, 4)), ox.ones((3, 4, 5)), axes=2).shape
        (2, 5)
    """
    a, b = promote_to_common(as_array(x1), as_array(x2))
    if isinstance(axes, int):
        n = operator.index(axes)
        ax = (tuple(range(a.ndim - n, a.ndim)), tuple(range(n)))
    else:
        ax = (tuple(norm_axis(i, a.ndim) for i in axes[0]), tuple(norm_axis(i, b.ndim) for i in axes[1]))
    if len(ax[0]) != len(ax[1]):
        raise ShapeError(f"tensordot: {len(ax[0])} axes of x1 against {len(ax[1])} of x2")
    return build("tensordot", a, b, axes=ax)


def _vecdot_infer(inputs, attrs):
    a, b = inputs
    ax = attrs["axis"]
    shape = broadcast_shapes(a.shape, b.shape)
    if a.shape[ax] != b.shape[ax]:
        raise ShapeError(f"vecdot: axis {ax} has size {a.shape[ax]} in x1 and {b.shape[ax]} in x2")
    return shape[:ax] + shape[ax + 1:] if ax != -1 else shape[:-1], a.dtype


register_op("vecdot", Category.LINALG, _vecdot_infer, attrs=(axis(-1, "negative: counted from the end of both inputs"),),
            decompose=lambda a, b, *, axis: build("sum", a * b, axis=((a.ndim if a.ndim >= b.ndim else b.ndim) + axis,),
                                                  keepdims=False, dtype=a.dtype),
            doc="dot product along an axis, broadcast over the rest")


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Array:
    """Dot product along ``axis`` (must be negative-indexable in both), broadcast elsewhere.

    Example:
        >>> import oxcore as ox
        >>> ox.vecdot(ox.asarray([[1.0, 2.0]]), ox.asarray([3.0, 4.0])).tolist()
        [11.0]
    """
    a, b = promote_to_common(as_array(x1), as_array(x2))
    if axis >= 0:
        axis -= max(a.ndim, b.ndim)
    if -axis > min(a.ndim, b.ndim):
        raise ShapeError(f"vecdot axis {axis} is out of range for shapes {a.shape} and {b.shape}")
    return build("vecdot", a, b, axis=axis)


def outer(x1: Any, x2: Any, /) -> Array:
    """Outer product of two vectors."""
    a, b = as_array(x1), as_array(x2)
    from .manipulation import reshape

    return reshape(a, (-1, 1)) * reshape(b, (1, -1))
