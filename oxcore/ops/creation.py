"""Creation: asarray, from_dlpack, full/zeros/ones/empty (and *_like), arange, linspace, eye, tril/triu."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .. import _dtypes as D
from .._array import Array, build, host_leaf
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import CREATE_DTYPE, SHAPE
from ._rules import norm_shape

__all__ = ["asarray", "from_dlpack", "full", "zeros", "ones", "empty", "full_like", "zeros_like",
           "ones_like", "empty_like", "arange", "linspace", "eye", "tril", "triu", "meshgrid"]


def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Array:
    """Make an Array from a scalar, nested sequence, NumPy array, DLPack producer or Array.

    NumPy input is shared, not copied (unless ``copy=True``): change it and the lazy values
    that read it change too. Python floats become float32 and ints int64 (the defaults).
    ``copy=False`` never copies and raises ``ValueError`` where a copy would be needed (a
    dtype change, a Python sequence); ``copy=None`` copies only then (Array API).

    Example:
        >>> import oxcore as ox
        >>> ox.asarray([1.5, 2.5]).dtype
        oxcore.float32
        >>> ox.asarray(3, dtype=ox.int8).dtype
        oxcore.int8
    """
    dt = None if dtype is None else D.dtype(dtype)
    if isinstance(obj, Array):
        if dt is not None and dt is not obj.dtype and copy is False:
            raise ValueError(f"asarray(copy=False) cannot cast {obj.dtype.name} to {dt.name} without a copy")
        out = obj if dt is None else obj.astype(dt, copy=False)
        if copy and out is obj:  # NOTE: arrays are values (x[i] = v rebinds): a new handle is a copy
            out = Array._wrap(obj._node)
        return out.to_device(device) if device is not None else out
    if isinstance(obj, np.ndarray):
        a = obj
    elif isinstance(obj, (bool, int, float, complex, list, tuple, np.generic)):
        if copy is False:
            raise ValueError(f"asarray(copy=False) needs an object that shares its memory (an array or DLPack "
                             f"producer); got a {type(obj).__name__}, which must be copied")
        try:
            a = np.asarray(obj, dtype=None if dt is None else dt.numpy)
        except ValueError as e:
            where = _ragged_at(obj)
            if not where:
                raise
            raise ShapeError(f"cannot make an oxcore array from a ragged {type(obj).__name__}: expected nested "
                             f"sequences of equal length at every level (a rectangular array of numbers), "
                             f"got {where}. Pad the short rows, or make one array per row") from e
        if dt is None and not isinstance(obj, np.generic):
            # NOTE: Python floats default to float32 and ints to int64 (the Array API defaults)
            a = a.astype(np.float32) if a.dtype == np.float64 else a.astype(np.int64) if a.dtype.kind == "i" else \
                a.astype(np.complex64) if a.dtype == np.complex128 else a
    else:
        a = _from_any(obj, copy=False if copy is False else None)
    if a.dtype.kind not in "biufc" and a.dtype != D.bfloat16.numpy:
        raise DTypeError(f"cannot make an oxcore array from {type(obj).__name__} of dtype {a.dtype}; "
                         f"valid dtypes are: {', '.join(d.name for d in D.ALL)}")
    D.dtype(a.dtype)  # raises for float128 and friends
    if dt is not None and a.dtype != dt.numpy:
        if copy is False:
            raise ValueError(f"asarray(copy=False) cannot cast {a.dtype} to {dt.name} without a copy")
        a = a.astype(dt.numpy)
    elif copy:
        a = a.copy()
    out = host_leaf(a)
    return out.to_device(device) if device is not None else out


def _ragged_at(obj: Any) -> str:
    """Where nested lists/tuples stop being rectangular ("x[1] with 1 item where x[0] has 2"), or ""."""
    level: list[tuple[str, Any]] = [("x", obj)]
    while level:
        seqs = [(p, v) for p, v in level if isinstance(v, (list, tuple))]
        if not seqs:
            return ""
        first_path, first = seqs[0]
        if len(seqs) != len(level):
            p, v = next((p, v) for p, v in level if not isinstance(v, (list, tuple)))
            return f"{p} = {v!r} where {first_path} is a {type(first).__name__}"
        for p, v in seqs:
            if len(v) != len(first):
                return f"{p} with {len(v)} item{'s' * (len(v) != 1)} where {first_path} has {len(first)}"
        level = [(f"{p}[{i}]", item) for p, v in seqs for i, item in enumerate(v)]
    return ""


def _from_any(obj: Any, copy: bool | None = None) -> np.ndarray:
    try:
        return np.from_dlpack(obj, copy=copy)
    except Exception:  # NOTE: producers whose DLPack is GPU-only still offer __array__
        if copy is False:
            raise ValueError(f"cannot import a {type(obj).__name__} without a copy: its DLPack export failed "
                             f"and __array__ would copy") from None
        return np.asarray(obj)


def from_dlpack(x: Any, /, *, device: Any = None, copy: bool | None = None) -> Array:
    """Import any DLPack producer (NumPy, MLX, PyTorch CPU...) without copying when possible.

    ``copy=True`` always copies; ``copy=False`` never does and raises ``BufferError`` when
    the producer cannot share its memory with the host; ``None`` copies only then.

    Example:
        >>> import numpy as np, oxcore as ox
        >>> ox.from_dlpack(np.arange(3.0)).tolist()
        [0.0, 1.0, 2.0]
    """
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"from_dlpack needs a DLPack producer (an object with __dlpack__), got {type(x).__name__}")
    try:
        a = np.from_dlpack(x, copy=copy)
    except BufferError as e:
        if copy is False:
            raise BufferError(f"from_dlpack(copy=False): a {type(x).__name__} cannot be shared without a copy ({e})") \
                from None
        a = np.asarray(x)  # NOTE: producers whose DLPack export is device-only still offer __array__
    out = host_leaf(a)
    return out.to_device(device) if device is not None else out


# --- full and friends --------------------------------------------------------------------------
register_op("full", Category.CREATION, lambda i, a: (a["shape"], a["dtype"]), attrs=(SHAPE, Attr("value", bool | int | float, note="a Python scalar of the dtype's kind, in range"),
                   Attr("dtype", D.DType, default=None, note="a DType, never None: the public None follows the fill value")),
            doc="array filled with one value")


def _fill_dtype(value: Any, dtype: Any) -> D.DType:
    if dtype is not None:
        return D.dtype(dtype)
    if isinstance(value, bool):
        return D.bool_
    if isinstance(value, int):
        return D.default_int
    if isinstance(value, float):
        return D.default_float
    if isinstance(value, Array):
        return value.dtype
    raise DTypeError(f"fill value must be a bool, int or float, got {type(value).__name__}")


def full(shape: int | Sequence[int], fill_value: Any, *, dtype: Any = None, device: Any = None) -> Array:
    """An array of ``shape`` filled with ``fill_value``.

    Example:
        >>> import oxcore as ox
        >>> ox.full((2,), 7).tolist()
        [7, 7]
    """
    dt = _fill_dtype(fill_value, dtype)
    value = fill_value.item() if isinstance(fill_value, Array) else fill_value
    if dt is D.bool_:
        value = bool(value)
    elif dt.is_integer:
        if isinstance(value, float) and not value.is_integer():
            raise DTypeError(f"fill value {value} does not fit integer dtype {dt.name}")
        value = int(value)
        info = np.iinfo(dt.numpy)
        if not info.min <= value <= info.max:
            raise DTypeError(f"fill value {value} is out of range for {dt.name} ({info.min}..{info.max})")
    else:
        value = float(value)
    out = build("full", shape=norm_shape(shape), value=value, dtype=dt)
    return out.to_device(device) if device is not None else out


def zeros(shape: int | Sequence[int], *, dtype: Any = None, device: Any = None) -> Array:
    """An array of zeros (float32 unless ``dtype``).

    Example:
        >>> import oxcore as ox
        >>> ox.zeros((2, 3)).shape
        (2, 3)
    """
    return full(shape, 0, dtype=D.dtype(dtype) if dtype is not None else D.default_float, device=device)


def ones(shape: int | Sequence[int], *, dtype: Any = None, device: Any = None) -> Array:
    """An array of ones (float32 unless ``dtype``)."""
    return full(shape, 1, dtype=D.dtype(dtype) if dtype is not None else D.default_float, device=device)


def empty(shape: int | Sequence[int], *, dtype: Any = None, device: Any = None) -> Array:
    """An array whose values are unspecified (oxcore gives zeros: lazy arrays cost nothing until used)."""
    return zeros(shape, dtype=dtype, device=device)


def full_like(x: Array, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Array:
    """Like ``full`` with the shape (and dtype, unless given) of ``x``."""
    return full(x.shape, fill_value, dtype=dtype if dtype is not None else x.dtype, device=device)


def zeros_like(x: Array, /, *, dtype: Any = None, device: Any = None) -> Array:
    """Zeros with the shape and dtype of ``x``."""
    return full_like(x, 0, dtype=dtype, device=device)


def ones_like(x: Array, /, *, dtype: Any = None, device: Any = None) -> Array:
    """Ones with the shape and dtype of ``x``."""
    return full_like(x, 1, dtype=dtype, device=device)


def empty_like(x: Array, /, *, dtype: Any = None, device: Any = None) -> Array:
    """Like ``empty`` with the shape and dtype of ``x``."""
    return zeros_like(x, dtype=dtype, device=device)


# --- ranges --------------------------------------------------------------------------------
def _arange_infer(inputs, attrs):
    n = max(0, math.ceil((attrs["stop"] - attrs["start"]) / attrs["step"]))
    return (n,), attrs["dtype"]


register_op("arange", Category.CREATION, _arange_infer,
            attrs=(Attr("start", int | float, note="the public one-argument form gives 0"), Attr("stop", int | float),
                   Attr("step", int | float, default=1, note="nonzero"),
                   Attr("dtype", D.DType, default=None, note="a DType: the public None gives int64 for int arguments, else float32")),
            doc="evenly spaced values in [start, stop)")


def arange(start: float, /, stop: float | None = None, step: float = 1, *, dtype: Any = None,
           device: Any = None) -> Array:
    """Values ``start, start+step, ...`` below ``stop`` (like ``range``).

    Example:
        >>> import oxcore as ox
        >>> ox.arange(1, 7, 2).tolist()
        [1, 3, 5]
    """
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise AttributeValueError("arange step must not be zero")
    if dtype is None:
        dt = D.default_int if all(isinstance(v, int) for v in (start, stop, step)) else D.default_float
    else:
        dt = D.dtype(dtype)
    out = build("arange", start=start, stop=stop, step=step, dtype=dt)
    return out.to_device(device) if device is not None else out


def _linspace(*, start, stop, num, endpoint, dtype):
    div = (num - 1) if endpoint else num
    step = (stop - start) / div if div > 0 else 0.0
    i = build("arange", start=0, stop=num, step=1, dtype=D.float64 if dtype is D.float64 else D.float32)
    out = i * step + start
    if endpoint and num > 1:  # NOTE: NumPy pins the last value to stop exactly
        from .elementwise import where

        out = where(i == num - 1, float(stop), out)
    return out if out.dtype is dtype else out.astype(dtype)


register_op("linspace", Category.CREATION, lambda i, a: ((a["num"],), a["dtype"]),
            attrs=(Attr("start", float), Attr("stop", float), Attr("num", int, note=">= 0"),
                   Attr("endpoint", bool, default=True), CREATE_DTYPE), decompose=_linspace,
            doc="num evenly spaced values over [start, stop]")


def linspace(start: float, stop: float, /, num: int, *, dtype: Any = None, device: Any = None,
             endpoint: bool = True) -> Array:
    """``num`` evenly spaced values from ``start`` to ``stop``.

    Example:
        >>> import oxcore as ox
        >>> ox.linspace(0, 1, 5).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if num < 0:
        raise AttributeValueError(f"linspace num must be >= 0, got {num}")
    dt = D.dtype(dtype) if dtype is not None else D.default_float
    out = build("linspace", start=float(start), stop=float(stop), num=int(num), endpoint=bool(endpoint), dtype=dt)
    return out.to_device(device) if device is not None else out


def _eye(*, n_rows, n_cols, k, dtype):
    r = build("reshape", build("arange", start=0, stop=n_rows, step=1, dtype=D.int64), shape=(n_rows, 1))
    c = build("reshape", build("arange", start=0, stop=n_cols, step=1, dtype=D.int64), shape=(1, n_cols))
    return ((r + k) == c).astype(dtype)


register_op("eye", Category.CREATION, lambda i, a: ((a["n_rows"], a["n_cols"]), a["dtype"]),
            attrs=(Attr("n_rows", int), Attr("n_cols", int, default=None, note="the public None becomes n_rows"),
                   Attr("k", int, default=0, note="the diagonal: > 0 above, < 0 below"), CREATE_DTYPE), decompose=_eye, doc="ones on the k-th diagonal")


def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None, device: Any = None) -> Array:
    """A 2-D array with ones on diagonal ``k``.

    Example:
        >>> import oxcore as ox
        >>> ox.eye(2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    dt = D.dtype(dtype) if dtype is not None else D.default_float
    out = build("eye", n_rows=int(n_rows), n_cols=int(n_rows if n_cols is None else n_cols), k=int(k), dtype=dt)
    return out.to_device(device) if device is not None else out


def _tri(x: Array, k: int, lower: bool) -> Array:
    from .elementwise import where
    from .creation import zeros_like as _z

    n, m = x.shape[-2:]
    r = build("reshape", build("arange", start=0, stop=n, step=1, dtype=D.int64), shape=(n, 1))
    c = build("reshape", build("arange", start=0, stop=m, step=1, dtype=D.int64), shape=(1, m))
    keep = (c <= r + k) if lower else (c >= r + k)
    return where(keep, x, _z(x))


def tril(x: Array, /, *, k: int = 0) -> Array:
    """Lower triangle of the last two axes (zeros above diagonal ``k``)."""
    return _tri(x, k, True)


def triu(x: Array, /, *, k: int = 0) -> Array:
    """Upper triangle of the last two axes (zeros below diagonal ``k``)."""
    return _tri(x, k, False)


def meshgrid(*arrays: Array, indexing: str = "xy") -> list[Array]:
    """Coordinate grids from 1-D arrays (``indexing='xy'`` or ``'ij'``)."""
    from .manipulation import broadcast_to, reshape

    n = len(arrays)
    shape = [a.shape[0] for a in arrays]
    if indexing == "xy" and n > 1:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, a in enumerate(arrays):
        s = [1] * n
        j = (1 - i if i < 2 else i) if indexing == "xy" and n > 1 else i
        s[j] = a.shape[0]
        out.append(broadcast_to(reshape(a, s), shape))
    return out
