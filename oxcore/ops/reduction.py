"""Reductions: sum, prod, max, min, argmax, argmin, all, any, cumulative sums, mean, var, std, logsumexp."""

from __future__ import annotations

import builtins  # NOTE: this module defines its own max/min/sum/all/any
from typing import Any

from .. import _dtypes as D
from .._array import Array, scalar, build
from .._errors import AttributeValueError, DTypeError
from .._registry import Attr, Category, register_op
from ._attrs import ACCUM_DTYPE, AXES, CORRECTION, KEEPDIMS, axis
from ._rules import as_array, norm_axes, norm_axis, numel

__all__ = ["sum", "prod", "max", "min", "argmax", "argmin", "all", "any", "cumulative_sum",
           "cumulative_prod", "mean", "var", "std", "logsumexp"]


def _reduced(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(kind: str):
    def infer(inputs, attrs):
        (x,) = inputs
        # NOTE: the Array API sums and multiplies bools too (as the default integer, see _accum_dtype)
        if kind == "numeric" and not (x.dtype.is_numeric or x.dtype is D.bool_):
            raise DTypeError(f"expected a numeric or bool dtype, got {x.dtype.name}")
        if kind == "minmax" and 0 in [x.shape[a] for a in attrs["axis"]]:
            raise AttributeValueError(f"max/min of an empty axis (shape {x.shape}) has no identity")
        shape = _reduced(x.shape, attrs["axis"], attrs["keepdims"])
        return shape, attrs.get("dtype") or (D.bool_ if kind == "bool" else x.dtype)
    return infer


for _name, _kind in (("sum", "numeric"), ("prod", "numeric"), ("max", "minmax"), ("min", "minmax"),
                     ("all", "bool"), ("any", "bool")):
    register_op(_name, Category.REDUCTION, _reduce_infer(_kind),
                attrs=(AXES, KEEPDIMS) + ((ACCUM_DTYPE,) if _kind == "numeric" else ()),
                doc=f"{_name} over axes")


def _accum_dtype(x: Array, dtype: Any) -> D.DType:
    if dtype is not None:
        return D.dtype(dtype)
    if x.dtype is D.bool_ or x.dtype in D.SIGNED:
        return D.default_int
    if x.dtype in D.UNSIGNED:
        return D.uint64
    return x.dtype


def sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Array:
    """Sum over ``axis`` (None: all). Integers accumulate in the default integer dtype.

    Example:
        >>> import oxcore as ox
        >>> ox.sum(ox.asarray([[1.0, 2.0], [3.0, 4.0]]), axis=0).tolist()
        [4.0, 6.0]
    """
    x = as_array(x)
    return build("sum", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims), dtype=_accum_dtype(x, dtype))


def prod(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Array:
    """Product over ``axis``.

    Example:
        >>> import oxcore as ox
        >>> ox.prod(ox.asarray([1.0, 2.0, 3.0])).item()
        6.0
    """
    x = as_array(x)
    return build("prod", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims), dtype=_accum_dtype(x, dtype))


def _simple(name: str):
    def fn(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Array:
        x = as_array(x)
        if name in ("all", "any") and x.dtype is not D.bool_:
            x = x != 0
        return build(name, x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}`` over ``axis`` (None: all axes).\n\nExample:\n    >>> import oxcore as ox\n" \
                 f"    >>> ox.{name}(ox.asarray([[1, 2], [3, 4]]), axis=1).shape\n    (2,)\n"
    return fn


max, min, all, any = (_simple(n) for n in ("max", "min", "all", "any"))


def _arg_infer(inputs, attrs):
    (x,) = inputs
    if not x.dtype.is_numeric:
        raise DTypeError(f"argmax/argmin expect a numeric dtype, got {x.dtype.name}")
    axis = attrs["axis"]
    if axis is None:
        return ((1,) * x.ndim if attrs["keepdims"] else ()), D.int64
    if x.shape[axis] == 0:
        raise AttributeValueError("argmax/argmin of an empty axis")
    return _reduced(x.shape, (axis,), attrs["keepdims"]), D.int64


for _name in ("argmax", "argmin"):
    register_op(_name, Category.REDUCTION, _arg_infer,
                attrs=(Attr("axis", int | None, default=None, note="non-negative; None: over the flattened array"),
                       KEEPDIMS),
                doc=f"index of the first {_name[3:]} (int64)")


def argmax(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Array:
    """Index of the first maximum along ``axis`` (flattened when None), as int64.

    Example:
        >>> import oxcore as ox
        >>> ox.argmax(ox.asarray([1.0, 3.0, 2.0])).item()
        1
    """
    x = as_array(x)
    return build("argmax", x, axis=None if axis is None else norm_axis(axis, x.ndim), keepdims=bool(keepdims))


def argmin(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Array:
    """Index of the first minimum along ``axis`` (flattened when None), as int64."""
    x = as_array(x)
    return build("argmin", x, axis=None if axis is None else norm_axis(axis, x.ndim), keepdims=bool(keepdims))


def _cum_infer(inputs, attrs):
    (x,) = inputs
    shape = list(x.shape)
    if attrs["include_initial"]:
        shape[attrs["axis"]] += 1
    return tuple(shape), attrs["dtype"]


for _name in ("cumulative_sum", "cumulative_prod"):
    register_op(_name, Category.REDUCTION, _cum_infer,
                attrs=(axis(None, "non-negative; the public None is allowed for a 1-D input only (axis 0)"), ACCUM_DTYPE,
                       Attr("include_initial", bool, default=False, note="prepend the identity (0 or 1)")),
                doc=f"running {_name[11:]} along an axis")


def _cumulative(name: str, x: Any, axis: int | None, dtype: Any, include_initial: bool) -> Array:
    x = as_array(x)
    if axis is None:
        if x.ndim > 1:
            raise AttributeValueError(f"{name} needs axis= for a {x.ndim}-D array")
        axis = 0
    if x.ndim == 0:
        raise AttributeValueError(f"{name} needs at least a 1-D array")
    return build(name, x, axis=norm_axis(axis, x.ndim), dtype=_accum_dtype(x, dtype),
                 include_initial=bool(include_initial))


def cumulative_sum(x: Any, /, *, axis: int | None = None, dtype: Any = None,
                   include_initial: bool = False) -> Array:
    """Running sum along ``axis``.

    Example:
        >>> import oxcore as ox
        >>> ox.cumulative_sum(ox.asarray([1, 2, 3])).tolist()
        [1, 3, 6]
    """
    return _cumulative("cumulative_sum", x, axis, dtype, include_initial)


def cumulative_prod(x: Any, /, *, axis: int | None = None, dtype: Any = None,
                    include_initial: bool = False) -> Array:
    """Running product along ``axis``."""
    return _cumulative("cumulative_prod", x, axis, dtype, include_initial)


# --- decomposed reductions ---------------------------------------------------------------------
def _float_infer(inputs, attrs):
    (x,) = inputs
    if not x.dtype.is_floating:
        raise DTypeError(f"expected a floating-point dtype, got {x.dtype.name}; cast with astype first")
    return _reduced(x.shape, attrs["axis"], attrs["keepdims"]), x.dtype


def _mean(x, *, axis, keepdims):
    n = numel([x.shape[a] for a in axis])
    return build("sum", x, axis=axis, keepdims=keepdims, dtype=x.dtype) * scalar(1.0 / builtins.max(n, 1), x.dtype)


def _var(x, *, axis, keepdims, correction):
    n = numel([x.shape[a] for a in axis])
    mu = _mean(x, axis=axis, keepdims=True)
    d = x - mu
    return build("sum", d * d, axis=axis, keepdims=keepdims, dtype=x.dtype) * scalar(
        1.0 / builtins.max(n - correction, 0) if n - correction > 0 else float("nan"), x.dtype)


def _logsumexp(x, *, axis, keepdims):
    from .elementwise import exp, log, where, isfinite

    m = build("max", x, axis=axis, keepdims=True)
    m = where(isfinite(m), m, scalar(0.0, x.dtype))  # NOTE: all -inf rows give -inf, not nan
    s = build("sum", exp(x - m), axis=axis, keepdims=True, dtype=x.dtype)
    out = log(s) + m
    return out if keepdims else build("reshape", out, shape=_reduced(x.shape, axis, False))


register_op("mean", Category.REDUCTION, _float_infer, attrs=(AXES, KEEPDIMS), decompose=_mean,
            doc="arithmetic mean")
register_op("var", Category.REDUCTION, _float_infer, attrs=(AXES, KEEPDIMS, CORRECTION),
            decompose=_var, doc="variance (correction=1 for the sample variance)")
register_op("std", Category.REDUCTION, _float_infer, attrs=(AXES, KEEPDIMS, CORRECTION),
            decompose=lambda x, **a: build("sqrt", build("var", x, **a)), doc="standard deviation")
register_op("logsumexp", Category.REDUCTION, _float_infer, attrs=(AXES, KEEPDIMS),
            decompose=_logsumexp, doc="log(sum(exp(x))) computed stably")


def mean(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    """Arithmetic mean over ``axis``.

    Example:
        >>> import oxcore as ox
        >>> ox.mean(ox.asarray([1.0, 2.0, 6.0])).item()
        3.0
    """
    x = as_array(x)
    return build("mean", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims))


def var(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Array:
    """Variance over ``axis``; ``correction=1`` gives the unbiased sample variance.

    Example:
        >>> import oxcore as ox
        >>> ox.var(ox.asarray([1.0, 3.0])).item()
        1.0
    """
    x = as_array(x)
    return build("var", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims), correction=float(correction))


def std(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Array:
    """Standard deviation over ``axis``."""
    x = as_array(x)
    return build("std", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims), correction=float(correction))


def logsumexp(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    """``log(sum(exp(x)))`` over ``axis``, without overflow.

    Example:
        >>> import oxcore as ox
        >>> round(ox.logsumexp(ox.asarray([1000.0, 1000.0])).item(), 3)
        1000.693
    """
    x = as_array(x)
    return build("logsumexp", x, axis=norm_axes(axis, x.ndim), keepdims=bool(keepdims))
