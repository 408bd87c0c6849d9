"""The toy backend's own tests (the conformance kit is `pytest --oxcore-backend toy`)."""

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import manager


def test_registered_on_its_own_device():
    b = manager().backend("toy")
    assert b.device.name == "toy"
    assert manager().available(b) == (True, "")
    assert manager().plugins["toy"].status == "loaded"


def test_pinned_ops_run_on_the_toy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    with ox.use("toy"):
        y = ox.sum(ox.exp(ox.asarray(a) * 0.5) - ox.asarray(b), axis=0)  # broadcasting, then axis 0
    assert set(ox.explain(y).backends) == {"toy"}
    np.testing.assert_allclose(y.numpy(), np.sum(np.exp(a * 0.5) - b, axis=0), rtol=1e-6)
    assert y.device == "toy"


def test_integers_wrap_like_numpy():
    a = np.array([2**31 - 1, -(2**31)], dtype=np.int32)
    with ox.use("toy"):
        y = ox.asarray(a) + ox.asarray(np.ones(2, np.int32))
    assert set(ox.explain(y).backends) == {"toy"}
    assert y.tolist() == (a + 1).tolist()


@pytest.mark.parametrize("build, reason", [
    (lambda: ox.ones((3,), dtype=ox.float16) * 2, "toy stores float32, float64, int32, int64 only"),
    (lambda: ox.sum(ox.ones((3, 4), dtype=ox.int32)), "toy sums in the input dtype only, not int32 -> int64"),
    (lambda: ox.exp(ox.ones((3,), dtype=ox.float16)), "toy computes exp in float32 and float64 only"),
])
def test_refusals_say_why(build, reason):
    with ox.use("toy"):
        y = build()
    ex = ox.explain(y)
    assert ex.backends != ["toy"]
    assert any(reason in f for f in ex.fallbacks), ex.fallbacks


def test_alone_it_decomposes(monkeypatch):
    # NOTE: pinned, a missing op falls back to another backend; restricted to the toy, the
    # scheduler decomposes sigmoid into ops the toy has instead
    monkeypatch.setenv("OXCORE_BACKENDS", "toy")
    x = ox.asarray(np.linspace(-3, 3, 8, dtype=np.float32))
    y = ox.sigmoid(x)
    ex = ox.explain(y)
    assert set(ex.backends) == {"toy"} and ex.plan.decomposed == 1
    np.testing.assert_allclose(y.numpy(), 1 / (1 + np.exp(-x.numpy())), rtol=1e-6)
