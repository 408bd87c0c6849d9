"""The scheduler: plan-cache hits, a long loop in one plan and flat memory, intermediates freed,
held intermediates kept, 100k-node graphs, concurrent evaluation."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan
from oxcore.extend import Node
from oxcore.testing import assert_close, run_in_threads

rng = np.random.default_rng()


def _f32(*shape: int) -> np.ndarray:
    return rng.uniform(-2, 2, shape).astype(np.float32)


def _stats() -> dict[str, int]:
    return dict(_plan.STATS)


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: _plan.STATS[k] - v for k, v in before.items()}


def test_same_graph_hits_the_plan_cache_and_new_structure_misses():
    def graph(a, b, s):
        return ox.tanh(ox.asarray(a) @ ox.asarray(b) * s).sum(axis=1)

    a, b = _f32(4, 3), _f32(3, 5)
    graph(a, b, 2.0).eval()  # warm-up
    s0 = _stats()
    for _ in range(3):  # new values, new Python scalars: inputs, not plan keys
        a, b, s = _f32(4, 3), _f32(3, 5), float(rng.uniform(0.5, 2))
        y = graph(a, b, s)
        assert_close(y, np.tanh(a.astype(np.float64) @ b * s).sum(axis=1), ox.float32, tol=4)
    assert _delta(s0)["misses"] == 0 and _delta(s0)["hits"] == 3
    s1 = _stats()
    graph(_f32(6, 3), _f32(3, 5), 2.0).eval()  # another shape
    ox.sum(ox.asarray(a), axis=0).eval()  # another structure
    assert _delta(s1)["misses"] == 2


def test_ten_thousand_steps_reuse_one_plan_in_flat_memory():
    x0 = _f32(32)
    x = ox.asarray(x0)
    ref = x0.copy()
    s0 = _stats()
    nodes_at, mem_at = {}, {}
    try:
        for step in range(10_000):
            x = x * 0.999 + 1
            x.eval()
            ref = ref * np.float32(0.999) + np.float32(1)
            if step == 4_000:  # NOTE: trace the second half only: tracemalloc slows every step
                tracemalloc.start()
            if step in (5_000, 6_666, 8_333, 9_999):
                gc.collect()
                # NOTE: type(), not isinstance: a dead weakref.proxy (numba leaves some) raises on isinstance
                nodes_at[step] = sum(type(o) is Node for o in gc.get_objects())
                mem_at[step] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    d = _delta(s0)
    assert d["misses"] == 1, f"the loop planned {d['misses']} times; one plan should serve every step"
    assert d["hits"] == 9_999
    assert nodes_at[9_999] <= nodes_at[5_000], f"live nodes grew: {nodes_at}"
    # NOTE: a leak grows in every stretch; a one-off allocation in a long test session (the
    # interpreter's caches, gc.get_objects' own list, another library's background thread) lands in
    # one or two of them only: in CI two one-offs of 24 and 48 KB once hit both of two stretches
    marks = (5_000, 6_666, 8_333, 9_999)
    growth = tuple(mem_at[b] - mem_at[a] for a, b in zip(marks, marks[1:]))
    assert min(growth) < 16 * 1024, f"traced memory grew by {growth} bytes over three stretches of 1,666 steps"
    assert_close(x, ref.astype(np.float64), ox.float32)  # the same float32 recurrence, step for step
    closed = x0.astype(np.float64) * 0.999 ** 10_000 + (1 - 0.999 ** 10_000) / 0.001
    np.testing.assert_allclose(x.numpy(), closed, rtol=1e-3)


def test_intermediates_are_freed_and_held_ones_are_filled():
    a = _f32(64, 64)
    x = ox.asarray(a)
    t1 = ox.exp(x * 0.5)
    t2 = t1 + 1
    held = t2 * 2  # the user keeps this one
    y = ox.sum(held * t2, axis=0)
    dropped = [weakref.ref(t1._node), weakref.ref(t2._node)]
    del t1, t2
    s0 = _stats()
    y.eval()
    gc.collect()
    assert all(r() is None for r in dropped), "dropped intermediates outlived the eval"
    assert not held.is_lazy, "an intermediate the user holds was not filled in"
    assert _delta(s0)["plans"] == 1
    held.numpy()
    assert _delta(s0)["plans"] == 1, "reading a filled intermediate planned again"
    e = np.exp(a.astype(np.float64) * 0.5) + 1
    assert_close(held, e * 2, ox.float32, tol=2)
    assert_close(y, np.sum(e * 2 * e, axis=0), ox.float32, tol=4)
    buf = weakref.ref(x._node.buf)  # the leaf shares the caller's NumPy memory
    del x, a, held
    gc.collect()
    assert buf() is None, "the input buffer outlived every handle (y is evaluated and must not hold it)"
    node = weakref.ref(y._node)
    del y
    gc.collect()
    assert node() is None


def test_graph_of_100k_nodes_evaluates_without_recursion(monkeypatch):
    monkeypatch.setenv("OXCORE_BACKENDS", "cpu_numpy")  # NOTE: fewer candidates: the test is about depth
    a = _f32(4)
    y = ox.asarray(a)
    for i in range(50_000):
        y = y * 1.0 + 1.0  # 100k nodes deep
    assert_close(y, a.astype(np.float64) + 50_000, ox.float32)
    z = ox.asarray(a)
    for i in range(100_000):
        z = z + 1.0
    del z  # an unevaluated 100k-deep chain is freed without recursion too
    gc.collect()


def test_concurrent_evals_from_threads_are_right():
    inputs = [_f32(16, 16) for _ in range(6)]
    shared_in = _f32(16, 16)
    shared = ox.softmax(ox.asarray(shared_in) @ ox.asarray(shared_in), axis=-1)
    out: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for k in range(20):
            a = inputs[i]
            y = ox.tanh(ox.asarray(a) * (k + 1)).sum(axis=0) + (shared if k == 10 else 0.0)
            ref = np.tanh(a.astype(np.float64) * (k + 1)).sum(axis=0)
            if k == 10:
                ref = ref + np.asarray(shared.numpy(), np.float64)
            assert_close(y, ref, ox.float32, what=f"thread {i} step {k}", tol=4)
        out[i] = np.array(shared.numpy())

    run_in_threads(work, 6)
    s = shared_in.astype(np.float64) @ shared_in
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    for i in range(6):
        assert_close(out[i], e / e.sum(axis=-1, keepdims=True), ox.float32, tol=4)


def test_explain_computes_nothing():
    y = ox.asarray(_f32(3)) * 2
    s0 = _stats()
    text = str(ox.explain(y))
    assert "multiply" in text and y.is_lazy
    assert _delta(s0)["hits"] == 0 and _delta(s0)["misses"] == 0


@pytest.mark.parametrize("key", [0, (slice(1, 3),), (slice(None), 1), "mask", "array"])
def test_setitem_is_functional(key):
    a = rng.uniform(-2, 2, (4, 3)).astype(np.float32)
    x = ox.asarray(a)
    before = x * 1  # built from the old value
    alias_node = x._node
    if key == "mask":
        k_np = a > 0
        k_ox = ox.asarray(k_np)
    elif key == "array":
        k_np = np.array([2, 0])
        k_ox = ox.asarray(k_np)
    else:
        k_np = k_ox = key
    v = float(rng.uniform(5, 6))
    x[k_ox] = v
    expected = a.copy()
    expected[k_np] = v
    assert_close(x, expected.astype(np.float64), ox.float32, what=f"x[{key!r}] = v")
    assert_close(before, a.astype(np.float64), ox.float32, what="an array built from the old value")
    assert alias_node.op is None and alias_node.buf is not None  # the old node is untouched (a leaf)
    np.testing.assert_array_equal(a, np.asarray(alias_node.buf))  # the caller's NumPy array too


def test_inplace_operators_rebind_and_check_dtype():
    a = rng.integers(-5, 5, (3,)).astype(np.int32)
    x = ox.asarray(a)
    old = x * 1
    x += 2
    assert_close(x, a + 2, ox.int32)
    assert_close(old, a, ox.int32)
    with pytest.raises(ox.ShapeError, match="float32"):
        x += 1.5  # int32 += float would change the dtype
