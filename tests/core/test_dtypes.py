"""The promotion table against the Array API standard's table (2024.12, "Type Promotion Rules"),
plus the documented extensions (int/float mixes and bfloat16 follow JAX)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import oxcore as ox
from oxcore import _dtypes as D

b, i1, i2, i4, i8 = ox.bool, ox.int8, ox.int16, ox.int32, ox.int64
u1, u2, u4, u8 = ox.uint8, ox.uint16, ox.uint32, ox.uint64
f2, bf, f4, f8 = ox.float16, ox.bfloat16, ox.float32, ox.float64
c8, c16 = ox.complex64, ox.complex128

# NOTE: transcribed from the standard's tables (rows x columns), not computed
_SIGNED = """
    i1 i2 i4 i8
i1  i1 i2 i4 i8
i2  i2 i2 i4 i8
i4  i4 i4 i4 i8
i8  i8 i8 i8 i8
"""
_UNSIGNED = """
    u1 u2 u4 u8
u1  u1 u2 u4 u8
u2  u2 u2 u4 u8
u4  u4 u4 u4 u8
u8  u8 u8 u8 u8
"""
_MIXED = """
    i1 i2 i4 i8
u1  i2 i2 i4 i8
u2  i4 i4 i4 i8
u4  i8 i8 i8 i8
"""
_FLOAT = """
    f2 f4 f8
f2  f2 f4 f8
f4  f4 f4 f8
f8  f8 f8 f8
"""
_COMPLEX = """
     f4   f8   c8   c16
f4   f4   f8   c8   c16
f8   f8   f8   c16  c16
c8   c8   c16  c8   c16
c16  c16  c16  c16  c16
"""
_NAMES = {"c8": c8, "c16": c16, "i1": i1, "i2": i2, "i4": i4, "i8": i8, "u1": u1, "u2": u2, "u4": u4, "u8": u8, "f2": f2, "f4": f4,
          "f8": f8, "bf": bf, "b": b}


def _table(text: str) -> dict[tuple, ox.DType]:
    rows = [r.split() for r in text.strip().splitlines()]
    cols = rows[0]
    return {(_NAMES[r[0]], _NAMES[c]): _NAMES[v] for r in rows[1:] for c, v in zip(cols, r[1:])}


STANDARD = {(b, b): b}
for _t in (_SIGNED, _UNSIGNED, _MIXED, _FLOAT, _COMPLEX):
    STANDARD.update(_table(_t))
# oxcore's documented extensions outside the standard
EXTENDED = {(bf, bf): bf, (bf, f4): f4, (bf, f8): f8, (bf, f2): f4}
for _f in (f2, bf, f4, f8):
    for _i in D.INTEGER:
        EXTENDED[(_f, _i)] = _f
for _i in D.INTEGER + (f2, bf):  # integers and half floats join complex as they join float32/float64
    EXTENDED[(c8, _i)] = c8
    EXTENDED[(c16, _i)] = c16
UNDEFINED = {(b, x) for x in D.NUMERIC + D.COMPLEX} | {(i8, u8)} | {(x, u8) for x in (i1, i2, i4)}


@pytest.mark.parametrize("x, y", list(itertools.product(D.ALL, D.ALL)), ids=lambda d: d.name)
def test_promotion_pair(x, y):
    want = STANDARD.get((x, y)) or STANDARD.get((y, x)) or EXTENDED.get((x, y)) or EXTENDED.get((y, x))
    if want is None:
        assert (x, y) in UNDEFINED or (y, x) in UNDEFINED, f"{x} + {y}: not covered by the test's tables"
        with pytest.raises(ox.DTypeError, match="Cannot promote"):
            D.result_type_pair(x, y)
        return
    assert D.result_type_pair(x, y) is want, f"{x} with {y}: expected={want} got={D.result_type_pair(x, y)}"
    assert ox.result_type(x, y) is want
    assert ox.can_cast(x, want)


def test_operators_follow_the_table_and_numpy_values():
    rng = np.random.default_rng()
    for (x, y), want in STANDARD.items():
        if want is b:
            continue
        a = rng.integers(1, 20, (3,)).astype(x.numpy)
        c = rng.integers(1, 20, (3,)).astype(y.numpy)
        out = ox.asarray(a) + ox.asarray(c)
        assert out.dtype is want
        wide = np.complex128 if want.is_complex else np.float64
        np.testing.assert_array_equal(out.numpy(), (a.astype(wide) + c).astype(want.numpy))


def test_python_scalars_take_the_array_dtype():
    x8 = ox.asarray(np.array([1, 2], np.int8))
    assert (x8 + 1).dtype is i1
    assert (ox.asarray(np.array([1.0], np.float16)) * 2.5).dtype is f2
    assert (ox.asarray(np.array([True])) & True).dtype is b
    assert (x8 + 1.5).dtype is ox.float32  # int array with a float scalar: the default float
    assert ox.result_type(x8, 1) is i1 and ox.result_type(f2, 1.0) is f2


def test_dtype_lookup_and_errors():
    assert ox.dtype("bfloat16") is bf and ox.dtype(np.float32) is f4 and ox.dtype(float) is f4
    assert ox.dtype(int) is i8 and ox.dtype(bool) is b
    assert ox.dtype("complex64") is c8 and ox.dtype(np.complex128) is c16 and ox.dtype(complex) is c8
    with pytest.raises(ox.DTypeError, match="Valid dtypes are"):
        ox.dtype("complex256")
    assert ox.isdtype(c16, "complex floating") and ox.isdtype(c8, "numeric") and not ox.isdtype(c8, "real floating")
    assert ox.isdtype(f2, "real floating") and ox.isdtype(u1, "integral") and not ox.isdtype(b, "numeric")
    with pytest.raises(ValueError, match="Valid kinds"):
        ox.isdtype(f4, "complex")
