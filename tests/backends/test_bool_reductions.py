"""sum and prod of bool arrays follow the Array API: True counts as 1 and the result has the
default integer dtype (int64), on every backend; an explicit ``dtype=`` still wins."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox

SHAPES = [(7,), (3, 5), (2, 3, 4), (1, 9, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["sum", "prod"])
def test_sum_prod_of_bool_is_default_int(oxcore_backend, name, shape):
    rng = np.random.default_rng()
    x = rng.random(shape) < 0.7  # NOTE: fresh mixed True/False; prod is 0 or 1, sum counts
    ref = getattr(np, name)
    for axis in [None, 0, -1, tuple(range(len(shape)))]:
        with ox.use(oxcore_backend):
            y = getattr(ox, name)(ox.asarray(x), axis=axis)
            k = getattr(ox, name)(ox.asarray(x), axis=axis, keepdims=True)
        assert y.dtype is ox.int64 and k.dtype is ox.int64
        want = ref(x.astype(np.int64), axis=axis)
        assert np.array_equal(y.numpy(), want), (axis, y.numpy(), want)
        assert np.array_equal(k.numpy(), ref(x.astype(np.int64), axis=axis, keepdims=True))


def test_explicit_dtype_wins_and_other_reductions_still_refuse_bool(oxcore_backend):
    x = np.random.default_rng().random((4, 6)) < 0.5
    with ox.use(oxcore_backend):
        y = ox.sum(ox.asarray(x), axis=1, dtype=ox.int32)
    assert y.dtype is ox.int32 and np.array_equal(y.numpy(), x.sum(axis=1))
    with pytest.raises(ox.DTypeError, match="expected a floating"):
        ox.mean(ox.asarray(x))
