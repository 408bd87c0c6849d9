"""Shape and dtype rules shared by op declarations (the ``infer`` functions)."""

from __future__ import annotations

import math
import operator
from typing import Any, Sequence

from .. import _dtypes as D
from .._array import Array, scalar
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._graph import Node

Shape = tuple[int, ...]


def broadcast_shapes(*shapes: Shape) -> Shape:
    """Array API broadcasting; raises ``ShapeError`` naming both shapes."""
    if len(shapes) == 1:
        return shapes[0]
    n = max(len(s) for s in shapes)
    out = []
    for i in range(n):
        d = 1
        for s in shapes:
            k = i - n + len(s)
            if k < 0:
                continue
            e = s[k]
            if e != 1:
                if d != 1 and d != e:
                    raise ShapeError(f"shapes {' and '.join(str(tuple(x)) for x in shapes)} do not broadcast "
                                     f"(dimension {i - n}: {d} vs {e})")
                d = e
        out.append(d)
    return tuple(out)


def norm_axis(axis: int, ndim: int, what: str = "axis") -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise AttributeValueError(f"{what} must be an int, got {type(axis).__name__}") from None
    if not -ndim <= axis < max(ndim, 1) or (ndim == 0 and axis not in (0, -1)):
        raise AttributeValueError(f"{what} {axis} is out of range for an array of {ndim} dimensions "
                                  f"(valid: {-ndim}..{ndim - 1})")
    return axis % ndim if ndim else 0


def norm_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """None -> all axes; int or sequence -> sorted, unique, non-negative."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (list, tuple)):
        axes = tuple(sorted(norm_axis(a, ndim) for a in axis))
        if len(set(axes)) != len(axes):
            raise AttributeValueError(f"repeated axis in {tuple(axis)}")
        return axes
    return (norm_axis(axis, ndim),)


def norm_shape(shape: Any) -> Shape:
    if isinstance(shape, int) or hasattr(shape, "__index__"):
        shape = (shape,)
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise AttributeValueError(f"shape must be a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise AttributeValueError(f"shape {out} has a negative dimension")
    return out


def numel(shape: Shape) -> int:
    return math.prod(shape)


# --- operand coercion ------------------------------------------------------------------------
def as_array(x: Any) -> Array:
    if isinstance(x, Array):
        return x
    from .creation import asarray

    return asarray(x)


def operands(a: Any, b: Any) -> tuple[Array, Array]:
    """Coerce a binary op's operands: Python scalars take the array's dtype (Array API)."""
    if isinstance(a, Array):
        if isinstance(b, Array):
            return a, b
        if isinstance(b, (bool, int, float, complex)):
            return a, scalar(b, D.scalar_dtype(b, a.dtype))
        return a, as_array(b)
    if isinstance(a, (bool, int, float, complex)) and isinstance(b, Array):
        return scalar(a, D.scalar_dtype(a, b.dtype)), b
    return as_array(a), as_array(b)


# --- infer functions ---------------------------------------------------------------------------
def same_as_input(inputs: tuple[Node, ...], attrs: dict) -> tuple[Shape, D.DType]:
    """Output has the shape and dtype of the first input."""
    x = inputs[0]
    return x.shape, x.dtype


def _require(x: Node, ok: bool, op: str, want: str) -> None:
    if not ok:
        raise DTypeError(f"{op} expects {want} input, got {x.dtype.name}")


def unary(kind: str, out: str = "same"):
    """Rule for elementwise unary ops. kind: 'float' | 'numeric' | 'integer' | 'bool' | 'int_or_bool' | 'any'."""
    def infer(inputs: tuple[Node, ...], attrs: dict, _name: str = "") -> tuple[Shape, D.DType]:
        (x,) = inputs
        _check_kind(x.dtype, kind, _name or "this op")
        return x.shape, (D.bool_ if out == "bool" else D.real_dtype(x.dtype) if out == "real" else x.dtype)
    return infer


_KINDS = {"float": frozenset(D.FLOATING), "numeric": frozenset(D.NUMERIC), "integer": frozenset(D.INTEGER),
          "bool": frozenset((D.bool_,)), "int_or_bool": frozenset(D.INTEGER + (D.bool_,)), "any": frozenset(D.ALL),
          "float_c": frozenset(D.FLOATING + D.COMPLEX), "numeric_c": frozenset(D.NUMERIC + D.COMPLEX),
          "complex": frozenset(D.COMPLEX)}
_WANT = {"float": "a real floating-point", "numeric": "a real numeric", "integer": "an integer", "bool": "a bool",
         "int_or_bool": "an integer or bool", "float_c": "a floating-point (real or complex)",
         "numeric_c": "a numeric (real or complex)", "complex": "a complex"}


def _check_kind(dt: D.DType, kind: str, op: str) -> None:
    if dt not in _KINDS[kind]:
        raise DTypeError(f"{op} expects {_WANT[kind]} dtype, got {dt.name}")


def binary(kind: str, out: str = "same"):
    """Rule for elementwise binary ops: broadcast shapes, promote dtypes, check kind."""
    ok = _KINDS[kind]

    def infer(inputs: tuple[Node, ...], attrs: dict) -> tuple[Shape, D.DType]:
        a, b = inputs
        dt = a.dtype if a.dtype is b.dtype else D.result_type_pair(a.dtype, b.dtype)
        if dt not in ok:
            _check_kind(dt, kind, "this op")
        sa, sb = a.shape, b.shape
        shape = sa if (sa == sb or not sb) else sb if not sa else broadcast_shapes(sa, sb)
        return shape, (D.bool_ if out == "bool" else dt)
    return infer


def promote_to_common(a: Array, b: Array) -> tuple[Array, Array]:
    """Cast two arrays to their promoted dtype (kernels see equal dtypes)."""
    if a.dtype is b.dtype:
        return a, b
    dt = D.result_type_pair(a.dtype, b.dtype)
    from .elementwise import astype

    return (a if a.dtype is dt else astype(a, dt)), (b if b.dtype is dt else astype(b, dt))


def float_dtype_of(dt: D.DType) -> D.DType:
    return dt if dt.is_floating else D.default_float


def seq(x: Sequence[Any] | Any) -> tuple:
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)
