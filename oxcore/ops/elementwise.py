"""Elementwise ops: the Array API arithmetic, comparison, logical, bitwise and math functions."""

from __future__ import annotations

from typing import Any

from .. import _dtypes as D
from .._array import Array, scalar, build
from .._registry import Attr, Category, register_op
from ._rules import as_array, binary, operands, promote_to_common, unary

__all__: list[str] = []

# NOTE: one row per op: (name, input kind, output kind, decomposition or None). Primitives
# (no decomposition) need a kernel on every backend; the rest run anywhere through it.
_UNARY: list[tuple[str, str, str, Any]] = [
    ("negative", "numeric_c", "same", None),
    ("abs", "numeric_c", "real", None),  # NOTE: |complex| is real
    ("sign", "numeric", "same", None),
    ("exp", "float_c", "same", None),
    ("expm1", "float_c", "same", lambda x: exp(x) - 1),
    ("log", "float_c", "same", None),
    ("log1p", "float_c", "same", lambda x: log(x + 1)),
    ("log2", "float", "same", lambda x: log(x) * (1 / 0.6931471805599453)),
    ("log10", "float", "same", lambda x: log(x) * (1 / 2.302585092994046)),
    ("sqrt", "float_c", "same", None),
    ("rsqrt", "float", "same", lambda x: 1 / sqrt(x)),
    ("square", "numeric_c", "same", lambda x: x * x),
    ("reciprocal", "float_c", "same", lambda x: 1 / x),
    ("sin", "float_c", "same", None),
    ("cos", "float_c", "same", None),
    ("tan", "float", "same", lambda x: sin(x) / cos(x)),
    ("asin", "float", "same", None),
    ("acos", "float", "same", None),
    ("atan", "float", "same", None),
    ("sinh", "float", "same", lambda x: (exp(x) - exp(-x)) * 0.5),
    ("cosh", "float", "same", lambda x: (exp(x) + exp(-x)) * 0.5),
    ("tanh", "float_c", "same", None),
    ("asinh", "float", "same", lambda x: sign(x) * log(abs(x) + sqrt(x * x + 1))),  # NOTE: odd: no cancellation for x < 0
    ("acosh", "float", "same", lambda x: log(x + sqrt(x * x - 1))),
    ("atanh", "float", "same", lambda x: 0.5 * log((1 + x) / (1 - x))),
    ("erf", "float", "same", None),
    ("floor", "numeric", "same", None),
    ("ceil", "numeric", "same", None),
    ("round", "numeric", "same", None),
    ("trunc", "numeric", "same", lambda x: where(x < 0, ceil(x), floor(x))),
    ("isnan", "numeric", "bool", None),
    ("isinf", "numeric", "bool", None),
    ("isfinite", "numeric", "bool", lambda x: logical_not(logical_or(isnan(x), isinf(x)))),
    ("signbit", "float", "bool", None),
    ("logical_not", "bool", "bool", None),
    ("bitwise_invert", "int_or_bool", "same", None),
    ("real", "numeric_c", "real", None),
    ("imag", "numeric_c", "real", None),
    ("conj", "numeric_c", "same", None),
]

_BINARY: list[tuple[str, str, str, Any]] = [
    ("add", "any", "same", None),
    ("subtract", "numeric_c", "same", None),
    ("multiply", "any", "same", None),
    ("divide", "float_c", "same", None),
    ("floor_divide", "numeric", "same", None),
    ("remainder", "numeric", "same", None),
    ("pow", "numeric", "same", None),
    ("maximum", "numeric", "same", None),
    ("minimum", "numeric", "same", None),
    ("atan2", "float", "same", None),
    ("hypot", "float", "same", lambda a, b: sqrt(a * a + b * b)),
    ("copysign", "float", "same", lambda a, b: where(signbit(b), -abs(a), abs(a))),
    ("logaddexp", "float", "same", lambda a, b: _logaddexp(a, b)),
    ("nextafter", "float", "same", None),
    ("equal", "any", "bool", None),
    ("not_equal", "any", "bool", None),
    ("less", "numeric", "bool", None),
    ("less_equal", "numeric", "bool", None),
    ("greater", "numeric", "bool", None),
    ("greater_equal", "numeric", "bool", None),
    ("logical_and", "bool", "bool", None),
    ("logical_or", "bool", "bool", None),
    ("logical_xor", "bool", "bool", lambda a, b: not_equal(a, b)),
    ("bitwise_and", "int_or_bool", "same", None),
    ("bitwise_or", "int_or_bool", "same", None),
    ("bitwise_xor", "int_or_bool", "same", None),
    ("bitwise_left_shift", "integer", "same", None),
    ("bitwise_right_shift", "integer", "same", None),
]

def _logaddexp(a, b):
    m = maximum(a, b)
    # NOTE: both -inf (or both +inf) make a - b nan; the answer is m itself
    return where(isinf(m), m, m + log1p(exp(-abs(a - b))))


UNARY_OPS = tuple(r[0] for r in _UNARY)
BINARY_OPS = tuple(r[0] for r in _BINARY)
# NOTE: Array API: these take any real input and return floats; ints are cast to the default float.
_INT_TO_FLOAT = {"divide"}


_EXAMPLE = {"float": ("[0.5, 1.0]", "2.0"), "numeric": ("[0.5, 1.0]", "2.0"), "any": ("[0.5, 1.0]", "2.0"),
            "float_c": ("[0.5, 1.0]", "2.0"), "numeric_c": ("[0.5, 1.0]", "2.0"),
            "bool": ("[True, False]", "True"), "int_or_bool": ("[1, 2]", "3"), "integer": ("[1, 2]", "3")}


def _make_unary(name: str, kind: str, out: str, decomp: Any):
    rule = unary(kind, out)
    register_op(name, Category.UNARY, lambda i, a: rule(i, a, name), decompose=decomp,
                doc=f"elementwise {name}")

    def fn(x: Array, /) -> Array:
        return build(name, as_array(x))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (Array API).\n\nExample:\n    >>> import oxcore as ox\n" \
                 f"    >>> ox.{name}(ox.asarray({_EXAMPLE[kind][0]})).shape\n    (2,)\n"
    return fn


def _make_binary(name: str, kind: str, out: str, decomp: Any):
    register_op(name, Category.BINARY, binary(kind, out), decompose=decomp, doc=f"elementwise {name}")

    def fn(x1: Any, x2: Any, /) -> Array:
        a, b = operands(x1, x2)
        if a.dtype is not b.dtype:
            a, b = promote_to_common(a, b)
        if name in _INT_TO_FLOAT and not (a.dtype.is_floating or a.dtype.is_complex):
            a, b = astype(a, D.default_float), astype(b, D.default_float)
        return build(name, a, b)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with broadcasting and Array API promotion.\n\nExample:\n" \
                 f"    >>> import oxcore as ox\n    >>> ox.{name}(ox.asarray({_EXAMPLE[kind][0]}), {_EXAMPLE[kind][1]}).shape\n" \
                 f"    (2,)\n"
    return fn


for _row in _UNARY:
    globals()[_row[0]] = _make_unary(*_row)
    __all__.append(_row[0])
for _row in _BINARY:
    globals()[_row[0]] = _make_binary(*_row)
    __all__.append(_row[0])


def _astype_infer(inputs, attrs):
    return inputs[0].shape, attrs["dtype"]


register_op("astype", Category.UNARY, _astype_infer, attrs=(Attr("dtype", D.DType, note="the target DType (may equal the input's)"),),
            doc="cast to another dtype")


def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Array:
    """Cast to ``dtype`` (float->int truncates toward zero, like NumPy).

    Example:
        >>> import oxcore as ox
        >>> ox.astype(ox.asarray([1.7, -1.7]), ox.int32).tolist()
        [1, -1]
    """
    x = as_array(x)
    dt = D.dtype(dtype)
    if dt is x.dtype and not copy:
        return x
    return build("astype", x, dtype=dt)


def positive(x: Any, /) -> Array:
    """Elementwise ``+x`` (returns a handle on the same values)."""
    x = as_array(x)
    if not x.dtype.is_numeric:
        from .._errors import DTypeError

        raise DTypeError(f"positive expects a numeric dtype, got {x.dtype.name}")
    return Array._wrap(x._node)


def _where_infer(inputs, attrs):
    from ._rules import broadcast_shapes
    from .._errors import DTypeError

    c, a, b = inputs
    if c.dtype is not D.bool_:
        raise DTypeError(f"where() condition must be bool, got {c.dtype.name}")
    return broadcast_shapes(c.shape, a.shape, b.shape), D.result_type_pair(a.dtype, b.dtype)


register_op("where", Category.TERNARY, _where_infer, doc="select x1 where condition else x2")


def where(condition: Any, x1: Any, x2: Any, /) -> Array:
    """Elementwise select: ``x1`` where ``condition`` is true, else ``x2``.

    Example:
        >>> import oxcore as ox
        >>> x = ox.asarray([-1.0, 2.0])
        >>> ox.where(x > 0, x, 0.0).tolist()
        [0.0, 2.0]
    """
    a, b = operands(x1, x2)
    a, b = promote_to_common(a, b)
    return build("where", as_array(condition), a, b)


def _clip_decomp(x: Array, *, min: Any, max: Any) -> Array:
    out = x
    if min is not None:
        out = maximum(out, scalar(min, x.dtype))
    if max is not None:
        out = minimum(out, scalar(max, x.dtype))
    return out


register_op("clip", Category.UNARY, unary("numeric"),
            attrs=(Attr("min", int | float | None, default=None, note="a Python scalar or None (no bound); array bounds build maximum/minimum instead"),
                   Attr("max", int | float | None, default=None, note="as min")), decompose=_clip_decomp,
            doc="clamp to [min, max]")


def clip(x: Any, /, min: Any = None, max: Any = None) -> Array:
    """Clamp to ``[min, max]`` (either may be None; scalars or arrays).

    Example:
        >>> import oxcore as ox
        >>> ox.clip(ox.asarray([-2.0, 0.5, 3.0]), -1.0, 1.0).tolist()
        [-1.0, 0.5, 1.0]
    """
    x = as_array(x)
    if isinstance(min, Array) or isinstance(max, Array):
        out = x if min is None else maximum(x, min)
        return out if max is None else minimum(out, max)
    return build("clip", x, min=min, max=max)


__all__ += ["astype", "positive", "where", "clip"]
