"""Data types: one frozen singleton per dtype and one explicit promotion table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False, repr=False)
class DType:
    """An array element type. Singletons: compare with ``is`` or ``==``.

    Example:
        >>> import oxcore as ox
        >>> ox.float32.itemsize, ox.float32.kind
        (4, 'f')
    """

    name: str
    kind: str  # 'b' bool, 'i' signed, 'u' unsigned, 'f' real floating, 'c' complex floating
    itemsize: int

    def __repr__(self) -> str:
        return f"oxcore.{self.name}"

    __str__ = __repr__

    def __reduce__(self):  # pickles as the singleton
        return (dtype, (self.name,))

    @property
    def numpy(self) -> np.dtype:
        """The NumPy dtype used for host buffers (bfloat16 via ml_dtypes)."""
        npd = _TO_NUMPY.get(self)
        return npd if npd is not None else _load_bfloat16()

    @property
    def is_floating(self) -> bool:
        return self.kind == "f"

    @property
    def is_integer(self) -> bool:
        return self.kind in "iu"

    @property
    def is_numeric(self) -> bool:
        return self.kind != "b"

    @property
    def is_complex(self) -> bool:
        return self.kind == "c"


bool_ = DType("bool", "b", 1)
int8, int16, int32, int64 = (DType(f"int{8 * s}", "i", s) for s in (1, 2, 4, 8))
uint8, uint16, uint32, uint64 = (DType(f"uint{8 * s}", "u", s) for s in (1, 2, 4, 8))
float16 = DType("float16", "f", 2)
bfloat16 = DType("bfloat16", "f", 2)
float32 = DType("float32", "f", 4)
float64 = DType("float64", "f", 8)
complex64 = DType("complex64", "c", 8)
complex128 = DType("complex128", "c", 16)

ALL: tuple[DType, ...] = (bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
                          float16, bfloat16, float32, float64, complex64, complex128)
SIGNED = (int8, int16, int32, int64)
UNSIGNED = (uint8, uint16, uint32, uint64)
INTEGER = SIGNED + UNSIGNED
FLOATING = (float16, bfloat16, float32, float64)
COMPLEX = (complex64, complex128)
NUMERIC = INTEGER + FLOATING  # NOTE: real numeric; complex dtypes are numeric too (is_numeric)


def real_dtype(dt: DType) -> DType:
    """The dtype of a complex dtype's components (real dtypes map to themselves)."""
    return float32 if dt is complex64 else float64 if dt is complex128 else dt


def complex_dtype(dt: DType) -> DType:
    """The complex dtype whose components are ``dt`` (float64 -> complex128, else complex64)."""
    return dt if dt.kind == "c" else complex128 if dt is float64 else complex64


default_float = float32
default_int = int64

_BY_NAME = {d.name: d for d in ALL}
_BY_NAME["bool_"] = bool_
_TO_NUMPY: dict[DType, np.dtype] = {d: np.dtype(d.name) for d in ALL if d is not bfloat16}
_TO_NUMPY[bool_] = np.dtype(np.bool_)
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}


def _load_bfloat16() -> np.dtype:
    """bfloat16's NumPy dtype, importing ml_dtypes on first use.

    NOTE: importing ml_dtypes costs ~0.3-0.7 s (it registers its types with NumPy); paid by the
    first bfloat16 array, not by every ``import oxcore`` (``oxcore --help`` stays fast)."""
    import ml_dtypes

    npd = np.dtype(ml_dtypes.bfloat16)
    _FROM_NUMPY[npd] = bfloat16
    _TO_NUMPY[bfloat16] = npd
    return npd


def dtype(x: Any) -> DType:
    """Return the oxcore dtype for a name, a NumPy dtype, a Python type or a DType.

    Example:
        >>> import oxcore as ox
        >>> ox.dtype("bfloat16") is ox.bfloat16
        True
    """
    if isinstance(x, DType):
        return x
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    if x is bool:
        return bool_
    if x is int:
        return default_int
    if x is float:
        return default_float
    if x is complex:
        return complex64
    try:
        npd = np.dtype(x)
    except TypeError:
        npd = None
    if npd is not None and npd in _FROM_NUMPY:
        return _FROM_NUMPY[npd]
    if npd is not None and npd.name == "bfloat16" and bfloat16 not in _TO_NUMPY:
        _load_bfloat16()  # NOTE: an ml_dtypes array made before oxcore needed bfloat16
        return dtype(npd)
    from ._errors import DTypeError

    raise DTypeError(f"Unsupported dtype: {x!r}. Valid dtypes are: {', '.join(d.name for d in ALL)}")


# --- promotion -------------------------------------------------------------------------------
# NOTE: the Array API table covers same-kind pairs. Mixed int/uint promote to the next signed
# type that holds both; int64 with uint64 has no such type and raises. Mixed integer/float and
# bfloat16/float16 are outside the standard: we follow JAX (the float wins, bf16+f16 -> f32).


def _build_table() -> dict[tuple[DType, DType], DType]:
    t: dict[tuple[DType, DType], DType] = {(bool_, bool_): bool_}
    for group in (SIGNED, UNSIGNED, (float16, float32, float64), (bfloat16, float32, float64)):
        for a in group:
            for b in group:
                t[(a, b)] = a if a.itemsize >= b.itemsize else b
    for u in UNSIGNED:
        for i in SIGNED:
            if u is uint64:
                continue
            r = i if i.itemsize > u.itemsize else _BY_NAME[f"int{16 * u.itemsize}"]
            t[(u, i)] = t[(i, u)] = r
    t[(bfloat16, float16)] = t[(float16, bfloat16)] = float32
    for f in FLOATING:
        for i in INTEGER:
            t[(f, i)] = t[(i, f)] = f
    # NOTE: complex: the standard's table (c64 + f64 -> c128); integers and half floats join
    # complex like they join float32/float64
    t[(complex64, complex64)] = complex64
    t[(complex128, complex128)] = t[(complex64, complex128)] = t[(complex128, complex64)] = complex128
    for r in INTEGER + FLOATING:
        wide = r is float64
        t[(complex64, r)] = t[(r, complex64)] = complex128 if wide else complex64
        t[(complex128, r)] = t[(r, complex128)] = complex128
    return t


_PROMOTE = _build_table()


def result_type_pair(a: DType, b: DType) -> DType:
    r = _PROMOTE.get((a, b))
    if r is None:
        from ._errors import DTypeError

        raise DTypeError(f"Cannot promote {a.name} with {b.name}: no dtype holds both "
                         "(bool mixes only with bool; int64 with uint64 has no common type). "
                         "Cast one operand with astype().")
    return r


def scalar_dtype(value: Any, other: DType) -> DType:
    """The dtype a Python scalar takes next to an array of dtype ``other`` (Array API rules)."""
    if isinstance(value, bool):
        if other is bool_:
            return bool_
        return other
    if isinstance(value, int):
        return other if other.is_numeric else default_int
    if isinstance(value, float):
        return other if other.is_floating or other.is_complex else default_float
    if isinstance(value, complex):
        return other if other.is_complex else complex128 if other is float64 else complex64
    from ._errors import DTypeError

    raise DTypeError(f"Expected an Array or a Python bool/int/float/complex scalar, got {type(value).__name__}")


def finfo(dt: Any) -> Any:
    """Machine limits for a floating dtype (Array API ``finfo``; a complex dtype gives its
    real component's limits)."""
    import ml_dtypes

    d = dtype(dt.dtype if hasattr(dt, "_node") else dt)
    return ml_dtypes.finfo({"complex64": np.float32, "complex128": np.float64}.get(d.name, d.numpy))


def iinfo(dt: Any) -> Any:
    """Machine limits for an integer dtype (Array API ``iinfo``)."""
    return np.iinfo(dtype(dt).numpy)
