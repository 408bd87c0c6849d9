"""Placement: pins, a second backend on another Device, transfers, decomposition when no kernel
exists, refusals with reasons, fallbacks (and OXCORE_STRICT), OXCORE_BACKENDS, OpNotSupportedError."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import Category, REGISTRY, register_op, same_as_input
from oxcore.testing import assert_close

rng = np.random.default_rng()


def _f32(*shape: int) -> np.ndarray:
    return rng.uniform(-2, 2, shape).astype(np.float32)


def test_pinned_graph_runs_on_the_fake_device_with_transfers(fake_backend):
    a, b = _f32(3, 4), _f32(4)
    with ox.use("fake"):
        y = ox.exp(ox.asarray(a) * ox.asarray(b) + 1.5)
    ex = ox.explain(y)
    assert set(ex.backends) == {"fake"} and not ex.fallbacks
    assert {(t[1], t[2]) for t in ex.transfers} == {("cpu", "fake:mem")}  # host leaves move in
    assert_close(y, np.exp(a.astype(np.float64) * b + 1.5), ox.float32, what="on fake", tol=4)
    assert y.device == "fake:mem"


def test_kernel_missing_on_pinned_backend_falls_back_with_transfers_both_ways(fake_backend):
    a = _f32(5)
    with ox.use("fake"):
        y = ox.sin(ox.asarray(a) + 1) * 2  # sin: a primitive fake lacks
    ex = ox.explain(y)
    assert ex.backends == ["fake", "cpu_numpy", "fake"]
    assert any("sin" in f and "pinned fake refused (no kernel)" in f and "ran on cpu_numpy" in f for f in ex.fallbacks)
    moves = {(src, dst) for _, src, dst, _ in ex.transfers}
    assert ("fake:mem", "cpu") in moves and ("cpu", "fake:mem") in moves
    assert_close(y, np.sin(a.astype(np.float64) + 1) * 2, ox.float32)


def test_pinned_backend_without_kernel_runs_the_decomposition_itself(fake_backend):
    a = _f32(3, 3)
    with ox.use("fake"):
        y = ox.square(ox.asarray(a))  # square decomposes into x * x; fake has multiply
    ex = ox.explain(y)
    assert ex.backends == ["fake"] and not ex.fallbacks, str(ex)
    assert ex.plan.decomposed == 1
    assert_close(y, a.astype(np.float64) ** 2, ox.float32)


def test_supports_refusal_is_recorded_with_its_reason(fake_backend):
    a = rng.uniform(-2, 2, (4,))
    with ox.use("fake"):
        y = ox.asarray(a) + ox.asarray(a)
    ex = ox.explain(y)
    assert ex.backends == ["cpu_numpy"]
    assert any("fake has no float64" in f for f in ex.fallbacks), ex.fallbacks
    assert ("fake.add.default", "fake has no float64") in ex.nodes[0].candidates
    assert_close(y, a * 2, ox.float64)


def test_strict_turns_a_fallback_into_an_error(fake_backend, monkeypatch):
    monkeypatch.setenv("OXCORE_STRICT", "1")
    a = rng.uniform(-2, 2, (4,))
    with ox.use("fake"):
        y = ox.asarray(a) * 3.0  # float64: fake refuses
    with pytest.raises(ox.FallbackError, match="fake has no float64"):
        y.eval()
    with ox.use("fake"):
        ok = ox.asarray(_f32(4)) * 3.0  # no fallback needed: strict lets it run
    ok.eval()
    monkeypatch.setenv("OXCORE_STRICT", "0")
    assert_close(y, a * 3.0, ox.float64)  # and without strict it runs, on cpu_numpy


def test_oxcore_backends_env_restricts_and_orders(fake_backend, monkeypatch):
    a = _f32(6)
    monkeypatch.setenv("OXCORE_BACKENDS", "fake,cpu_numpy")
    y = ox.asarray(a) * 2
    assert ox.explain(y).backends == ["fake"]
    z = ox.sin(ox.asarray(a))  # fake cannot: the next allowed backend runs it
    assert ox.explain(z).backends == ["cpu_numpy"]
    monkeypatch.setenv("OXCORE_BACKENDS", "cpu_numpy")
    w = ox.asarray(a) * 2
    assert ox.explain(w).backends == ["cpu_numpy"]
    assert_close(w, a.astype(np.float64) * 2, ox.float32)
    assert_close(y, a.astype(np.float64) * 2, ox.float32)


def test_use_is_scoped_nested_and_per_thread(fake_backend):
    x = ox.asarray(_f32(3))
    with ox.use("fake"):
        inner = x + 1
        with ox.use("cpu_numpy"):
            nested = x + 2
        after = x + 3
    outside = x + 4
    assert inner._node.pin == ("fake",) and after._node.pin == ("fake",)
    assert nested._node.pin == ("cpu_numpy",)
    assert outside._node.pin is None
    seen = []
    with ox.use("fake"):
        t = threading.Thread(target=lambda: seen.append((x + 5)._node.pin))
        t.start()
        t.join()
    assert seen == [None], "a pin leaked into another thread"
    assert ox.explain(inner).backends == ["fake"] and ox.explain(nested).backends == ["cpu_numpy"]


def test_decomposition_runs_when_no_backend_has_a_kernel():
    name = "test_twice_plus_one"
    register_op(name, Category.UNARY, same_as_input, decompose=lambda x: x * 2 + 1, doc="2x + 1")
    try:
        a = _f32(4, 2)
        y = ox.build(name, ox.asarray(a))
        ex = ox.explain(y)
        assert ex.plan.decomposed == 1 and all(p.origin == name for p in ex.nodes)
        assert_close(y, a.astype(np.float64) * 2 + 1, ox.float32)
    finally:
        REGISTRY.ops.pop(name, None)


def test_op_not_supported_names_op_dtypes_and_every_backend(fake_backend):
    name = "test_nobody_runs_me"
    register_op(name, Category.UNARY, same_as_input, doc="no kernel, no decomposition")
    try:
        y = ox.build(name, ox.asarray(np.ones((2, 3), np.float32)))
        with pytest.raises(ox.OpNotSupportedError) as e:
            y.eval()
        msg = str(e.value)
        assert name in msg and "float32[2, 3]" in msg and "no decomposition" in msg
        for b in ox.extend.manager().backends:
            assert b in msg, f"backend {b} missing from: {msg}"
        assert "cpu_numpy: no kernel" in msg
    finally:
        REGISTRY.ops.pop(name, None)


def test_a_cheaper_kernel_elsewhere_for_a_decomposable_op_is_no_fallback(fake_backend, monkeypatch):
    # fake (the top-priority backend) has no softmax kernel but softmax decomposes: choosing
    # cpu_numpy's kernel is a cost decision, not a fallback, and OXCORE_STRICT lets it run
    monkeypatch.setenv("OXCORE_STRICT", "1")
    a = _f32(3, 5)
    y = ox.softmax(ox.asarray(a), axis=-1)
    ex = ox.explain(y)
    assert not ex.fallbacks, ex.fallbacks
    e = np.exp(a.astype(np.float64) - a.max(axis=-1, keepdims=True))
    assert_close(y, e / e.sum(axis=-1, keepdims=True), ox.float32, tol=4)


def test_a_real_refusal_of_the_top_backend_is_a_fallback(fake_backend):
    a = rng.uniform(-2, 2, (4,))  # float64: fake refuses it with a reason
    ex = ox.explain(ox.exp(ox.asarray(a)))
    assert any("fake refused" in f and "float64" in f for f in ex.fallbacks), ex.fallbacks
