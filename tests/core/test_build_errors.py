"""Shape, dtype and attribute errors raise when the op is built, on the user's line, before any
evaluation, with messages that say what was expected and what arrived."""

from __future__ import annotations

import traceback

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan


def A(*shape, dtype=np.float32):
    return ox.asarray(np.ones(shape, dtype))


CASES = [
    ("broadcast", lambda: A(2, 3) + A(4), ox.ShapeError, "(2, 3) and (4,) do not broadcast"),
    ("matmul", lambda: A(2, 3) @ A(4, 5), ox.ShapeError, "3 != 4"),
    ("matmul 0-d", lambda: A() @ A(3), ox.ShapeError, "0-d"),
    ("reshape", lambda: ox.reshape(A(2, 3), (4, 2)), ox.ShapeError, "6 elements"),
    ("concat", lambda: ox.concat([A(2, 3), A(2, 4)], axis=0), ox.ShapeError, "differ"),
    ("broadcast_to", lambda: ox.broadcast_to(A(3), (2, 4)), ox.ShapeError, "(3,) and (2, 4) do not broadcast"),
    ("squeeze", lambda: ox.squeeze(A(2, 3), axis=0), ox.ShapeError, "not 1"),
    ("stack", lambda: ox.stack([A(2), A(3)]), ox.ShapeError, "one shape"),
    ("linear", lambda: ox.linear(A(2, 3), A(4, 5)), ox.ShapeError, "does not fit weight"),
    ("attention heads", lambda: ox.scaled_dot_product_attention(A(1, 3, 2, 4), A(1, 2, 2, 4), A(1, 2, 2, 4)),
     ox.ShapeError, "multiple"),
    ("norm weight", lambda: ox.layer_norm(A(2, 4), A(3)), ox.ShapeError, "(4,)"),
    ("setitem", lambda: A(4, 3).__setitem__(slice(0, 2), A(3, 3)), ox.ShapeError, "(3, 3) and (2, 3) do not broadcast"),
    ("sqrt int", lambda: ox.sqrt(A(3, dtype=np.int32)), ox.DTypeError, "floating-point"),
    ("bitwise float", lambda: A(3) & A(3), ox.DTypeError, "integer or bool"),
    ("atan2 complex", lambda: ox.atan2(A(3, dtype=np.complex64), A(3)), ox.DTypeError,
     "a real floating-point dtype, got complex64"),
    ("less complex", lambda: A(3, dtype=np.complex128) < A(3), ox.DTypeError, "a real numeric dtype, got complex128"),
    ("astype complex", lambda: ox.astype(A(3, dtype=np.complex64), ox.float32), ox.DTypeError,
     "drop the imaginary part"),
    ("bool + int", lambda: A(3, dtype=bool) + A(3, dtype=np.int8), ox.DTypeError, "Cannot promote bool with int8"),
    ("int64 + uint64", lambda: A(3, dtype=np.int64) + A(3, dtype=np.uint64), ox.DTypeError, "int64 with uint64"),
    ("where cond", lambda: ox.where(A(3), A(3), A(3)), ox.DTypeError, "must be bool"),
    ("take float idx", lambda: ox.take(A(3), A(2)), ox.DTypeError, "integers"),
    ("axis", lambda: ox.sum(A(2, 3), axis=2), ox.AttributeValueError, "out of range"),
    ("repeated axis", lambda: ox.sum(A(2, 3), axis=(0, 0)), ox.AttributeValueError, "repeated axis"),
    ("permutation", lambda: ox.permute_dims(A(2, 3), (0, 0)), ox.AttributeValueError, "not a permutation"),
    ("gelu mode", lambda: ox.gelu(A(2), approximate="fast"), ox.AttributeValueError, "Valid values are"),
    ("quant bits", lambda: ox.quantize(A(2, 64), 32, bits=3), ox.AttributeValueError, "Valid values are: 4, 8"),
    ("unknown attr", lambda: ox.build("add", A(2), A(2), alpha=2), ox.AttributeValueError, "valid attributes"),
    ("unknown op", lambda: ox.build("no_such_op", A(2)), ox.UnknownNameError, "Registered ops"),
    ("rope dims", lambda: ox.rope(A(1, 4, 6), dims=3), ox.AttributeValueError, "even"),
    ("index bounds", lambda: A(3)[5], IndexError, "out of bounds"),
]


@pytest.mark.parametrize("label, build, exc, message", CASES, ids=[c[0] for c in CASES])
def test_error_at_build_time(label, build, exc, message):
    before = dict(_plan.STATS)
    with pytest.raises(exc) as info:
        build()  # NOTE: nothing is evaluated: the error is the build's
    assert message in str(info.value), f"{label}: message {str(info.value)!r} lacks {message!r}"
    assert dict(_plan.STATS) == before, f"{label}: something was planned before the error"
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(f.name == "<lambda>" and f.filename == __file__ for f in frames), "the user's line is not in the traceback"
    if exc is not IndexError:
        assert isinstance(info.value, ox.OxcoreError)


def test_errors_are_also_builtin_exceptions():
    assert issubclass(ox.ShapeError, ValueError) and issubclass(ox.DTypeError, TypeError)
    assert issubclass(ox.AttributeValueError, ValueError) and issubclass(ox.UnknownNameError, KeyError)
    assert issubclass(ox.OpNotSupportedError, NotImplementedError) and issubclass(ox.FallbackError, RuntimeError)
