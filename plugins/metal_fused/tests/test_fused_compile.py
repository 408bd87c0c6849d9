"""Whole-segment compilation: one compiled function per segment structure, scalars as inputs,
shapeless reuse only for elementwise segments, a bounded cache, compile-on-repeat."""

from __future__ import annotations

import math

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.testing.check import assert_close  # noqa: E402
from oxcore_metal_fused import shapeless_key  # noqa: E402


def _chain(x, a):
    return ox.gelu(x * a + 1.0) * ox.silu(x) - x / 4


def _chain64(x, a):
    u = x * a + 1.0
    gelu = 0.5 * u * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))
    return gelu * x / (1 + np.exp(-x)) - x / 4


def _eval_fused(build, *arrays):
    with ox.use("metal_fused"):
        y = build(*[ox.asarray(a) for a in arrays])
    ex = ox.explain(y)
    assert set(ex.backends) == {"metal_fused"}
    y.eval()
    return y, ex


def test_elementwise_chain_is_one_segment_compiled_once(fused):
    rng = np.random.default_rng()
    before = dict(fused.stats)
    for i, shape in enumerate([(16, 32), (16, 32), (3, 7), (50,)]):
        x = rng.uniform(-2, 2, shape).astype(np.float32)
        a = float(rng.uniform(0.5, 2))  # a Python scalar: an input of the compiled function
        y, ex = _eval_fused(lambda t: _chain(t, a), x)
        assert len(ex.segments) == 1
        assert_close(y, _chain64(x.astype(np.float64), a), ox.float32, what=f"chain {shape}", tol=4)
    # one trace for all sizes and scalar values: the segment is elementwise, hence shapeless
    assert fused.stats["compiled"] - before["compiled"] <= 2  # (16, 32)/(3, 7) share; (50,) has another rank
    assert fused.stats["shapeless"] > before["shapeless"]


def test_shape_dependent_segments_are_not_shapeless(fused):
    x = np.random.default_rng().standard_normal((4, 6)).astype(np.float32)
    with ox.use("metal_fused"):
        y = ox.reshape(ox.asarray(x), (6, 4)) * 2
    seg = None

    class Spy:  # capture the Segment the planner hands the backend
        pass
    orig = fused.compile_segment

    def spy(segment):
        Spy.segment = segment
        return orig(segment)
    fused.compile_segment = spy
    try:
        y.eval()
    finally:
        del fused.compile_segment
    seg = Spy.segment
    assert shapeless_key(seg) is None
    np.testing.assert_array_equal(y.numpy(), x.reshape(6, 4) * 2)


def test_compile_after_runs_the_first_call_op_by_op(fused):
    fused.compile_after = 2
    x = np.random.default_rng().uniform(-1, 1, (5, 9)).astype(np.float32)
    before = fused.stats["compiled"] + fused.stats["reused"]
    b = 1.2345678  # an unusual constant: a new segment structure is not possible, only new values
    y1, _ = _eval_fused(lambda t: ox.exp(t) * ox.cos(t) + b, x)
    assert fused.stats["compiled"] + fused.stats["reused"] == before  # first run: interpreted
    y2, _ = _eval_fused(lambda t: ox.exp(t) * ox.cos(t) + b, x)
    assert fused.stats["compiled"] + fused.stats["reused"] == before + 1  # repeat: compiled
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-6)
    np.testing.assert_allclose(y2.numpy(), np.exp(x) * np.cos(x) + b, rtol=1e-5)


def test_compiled_cache_is_bounded_lru(fused):
    old = fused.cache_size
    fused.cache_size = 2
    try:
        for shape in ((3,), (2, 3), (2, 2, 3)):  # three elementwise segments of other ranks: distinct keys
            x = np.random.default_rng().uniform(-1, 1, shape).astype(np.float32)
            for _ in range(2):  # NOTE: compiled on the second run
                y, _ = _eval_fused(lambda t: ox.exp(t) + 1.0, x)
            np.testing.assert_allclose(y.numpy(), np.exp(x) + 1.0, rtol=1e-5)
        assert 1 <= len(fused.compiled) <= 2
    finally:
        fused.cache_size = old


def _block(x, wn, wq, wk, wv, wo, w1, w3, w2, kc, vc, off, H, Hk):
    B, T, Dm = x.shape
    hd = Dm // H
    h = ox.rms_norm(x, wn)
    q = ox.permute_dims(ox.reshape(ox.linear(h, wq), (B, T, H, hd)), (0, 2, 1, 3))
    k = ox.permute_dims(ox.reshape(ox.linear(h, wk), (B, T, Hk, hd)), (0, 2, 1, 3))
    v = ox.permute_dims(ox.reshape(ox.linear(h, wv), (B, T, Hk, hd)), (0, 2, 1, 3))
    q, k = ox.rope(q, hd, offset=off), ox.rope(k, hd, offset=off)
    k, v = ox.concat([kc, k], axis=2), ox.concat([vc, v], axis=2)
    a = ox.scaled_dot_product_attention(q, k, v, causal=True)
    x = x + ox.linear(ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, Dm)), wo)
    h = ox.rms_norm(x, wn)
    return x + ox.linear(ox.silu(ox.linear(h, w1)) * ox.linear(h, w3), w2)


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_transformer_block_compiled_agrees_with_basic_numpy_and_float64(fused, monkeypatch, dt):
    rng = np.random.default_rng()
    npdt = ox.dtype(dt).numpy
    D, H, Hk, F, S, T = 64, 4, 2, 96, 6, 3

    def r(*s, scale=1.0):
        return (rng.standard_normal(s) * scale).astype(npdt)
    ws = [r(D, scale=0.1) + 1, r(D, D, scale=D ** -0.5), r(D // 2, D, scale=D ** -0.5), r(D // 2, D, scale=D ** -0.5),
          r(D, D, scale=D ** -0.5), r(F, D, scale=D ** -0.5), r(F, D, scale=D ** -0.5), r(D, F, scale=F ** -0.5)]
    x, kc, vc = r(1, T, D), r(1, Hk, S, D // H), r(1, Hk, S, D // H)
    off = np.array(S, np.int32)
    outs = {}
    for backend in ("metal_fused", "metal_basic", "cpu_numpy"):
        monkeypatch.setenv("OXCORE_BACKENDS", backend)
        for _ in range(2):  # metal_fused: the second run is the compiled one (compile_after=1: both)
            y = _block(*[ox.asarray(a) for a in [x, *ws, kc, vc, off]], H=H, Hk=Hk)
            assert set(ox.explain(y).backends) == {backend}
            outs[backend] = y.numpy().astype(np.float64)
    monkeypatch.setenv("OXCORE_BACKENDS", "cpu_numpy")
    ref = _block(*[ox.asarray(a.astype(np.float64) if a.dtype != np.int32 else a) for a in [x, *ws, kc, vc, off]],
                 H=H, Hk=Hk).numpy()
    for backend, got in outs.items():
        assert_close(got.astype(npdt), ref, ox.dtype(dt), what=f"block on {backend}", tol=8)
    assert_close(outs["metal_fused"].astype(npdt), outs["metal_basic"], ox.dtype(dt), what="fused vs basic", tol=8)


def test_declares_the_runs_it_needs_before_timing(fused):
    # NOTE: autotune and benchmarks run each candidate warmup_runs times untimed
    for n in (1, 3):
        fused.compile_after = n
        assert fused.warmup_runs == n
    fused.compile_after = 2


def test_an_argument_equal_to_a_baked_constant():
    """A 0-d argument whose value equals a constant of the trace (a learning rate of 0.1 next to
    a literal 0.1): the device shares 0-d arrays by value, and MLX refuses to compile a function
    whose captured constant is also an input, so baked constants are own copies."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5).astype(np.float32)
    w, lr = ox.asarray(w0), ox.asarray(np.float32(0.1))
    step = ox.compile(lambda w, lr: (w * 0.1 + 1, w - lr))
    with ox.use("metal_fused"):
        for _ in range(4):  # NOTE: compiles on the second run
            a, b = step(w, lr)
            np.testing.assert_allclose(a.numpy(), w0 * np.float32(0.1) + 1, rtol=1e-6)
            np.testing.assert_allclose(b.numpy(), w0 - np.float32(0.1), rtol=1e-6)
