"""What a newcomer sees first when something is wrong: errors named as ``oxcore.X`` and a
ragged nested list refused with what oxcore expected and where the rows differ."""

from __future__ import annotations

import pickle
import traceback

import numpy as np
import pytest

import oxcore as ox

ERRORS = [getattr(ox, n) for n in ox.__all__ if isinstance(getattr(ox, n), type)
          and issubclass(getattr(ox, n), ox.OxcoreError)]


def test_every_exported_error_prints_and_pickles_as_oxcore_name():
    assert len(ERRORS) >= 9, [e.__name__ for e in ERRORS]
    for cls in ERRORS:
        assert f"{cls.__module__}.{cls.__qualname__}" == f"oxcore.{cls.__name__}"
        err = cls("w.safetensors", 8, "why") if cls is ox.FormatError else cls("why")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == str(err)


def test_traceback_of_a_real_build_error_says_oxcore_shape_error():
    rng = np.random.default_rng(0)
    a, b = ox.asarray(rng.standard_normal((2, 3))), ox.asarray(rng.standard_normal((4, 5)))
    with pytest.raises(ox.ShapeError) as info:
        a @ b
    assert "".join(traceback.format_exception_only(info.value)).startswith("oxcore.ShapeError: ")


@pytest.mark.parametrize("obj, where", [
    ([[1.0, 2.0], [3.0]], "x[1] with 1 item where x[0] has 2"),
    ([[1, 2], 3], "x[1] = 3 where x[0] is a list"),
    (([[1, 2], [3, 4]], [[5, 6], [7, 8, 9]]), "x[1][1] with 3 items where x[0][0] has 2"),
    ([1.5, (2.5, 3.5)], "x[0] = 1.5 where x[1] is a tuple"),
])
def test_ragged_nested_sequence_says_what_was_expected_and_where(obj, where):
    with pytest.raises(ox.ShapeError) as info:
        ox.asarray(obj)
    msg = str(info.value)
    assert f"ragged {type(obj).__name__}" in msg and "equal length at every level" in msg and where in msg, msg
    assert isinstance(info.value, ValueError)  # still the builtin NumPy users catch


@pytest.mark.parametrize("seed", range(3))
def test_rectangular_nested_lists_still_convert_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 4, size=seed + 1))
    ref = rng.standard_normal(shape)
    got = ox.asarray(ref.tolist(), dtype=ox.float64).numpy()
    np.testing.assert_array_equal(got, ref)
