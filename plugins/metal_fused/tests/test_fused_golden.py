"""metal_fused's mx.fast kernels against direct MLX calls and a float64 NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.testing.check import assert_close  # noqa: E402
from oxcore_metal_basic import mlx_device  # noqa: E402

DT = ["float32", "float16", "bfloat16"]
dev = mlx_device()


def _on_fused(build, *arrays):
    xs = [ox.asarray(a) for a in arrays]
    with ox.use("metal_fused"):
        y = build(*xs)
    ex = ox.explain(y)
    assert set(ex.backends) == {"metal_fused"} and not ex.fallbacks, ex
    return y, ex


def _mx(a):
    return dev.from_numpy(a)


def _np(a):
    return dev.to_numpy(a).astype(np.float64)


def _kernel_ids(ex, op):
    return [n.kernel.id for n in ex.nodes if n.op == op]


@pytest.mark.parametrize("dt", DT)
def test_rms_norm_is_mx_fast(fused, dt):
    rng = np.random.default_rng()
    x = rng.uniform(-2, 2, (3, 5, 64)).astype(ox.dtype(dt).numpy)
    w = rng.uniform(0.5, 1.5, (64,)).astype(ox.dtype(dt).numpy)
    y, ex = _on_fused(lambda a, b: ox.rms_norm(a, b, eps=1e-6), x, w)
    assert _kernel_ids(ex, "rms_norm") == ["metal_fused.rms_norm.fast"]
    direct = _np(mx.fast.rms_norm(_mx(x), _mx(w), 1e-6))
    assert_close(y, direct, ox.dtype(dt), what="vs mx.fast.rms_norm", tol=0.5)
    xf = x.astype(np.float64)
    assert_close(y, xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + 1e-6) * w.astype(np.float64), ox.dtype(dt),
                 what="vs float64", tol=2)


def test_layer_norm_is_mx_fast(fused):
    rng = np.random.default_rng()
    x, w, b = rng.uniform(-2, 2, (4, 48)), rng.uniform(0.5, 1.5, 48), rng.uniform(-1, 1, 48)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    y, ex = _on_fused(lambda a, c, d: ox.layer_norm(a, c, d), x, w, b)
    assert _kernel_ids(ex, "layer_norm") == ["metal_fused.layer_norm.fast"]
    assert_close(y, _np(mx.fast.layer_norm(_mx(x), _mx(w), _mx(b), 1e-5)), ox.float32, what="vs mx.fast", tol=0.5)
    d = x.astype(np.float64) - x.mean(-1, keepdims=True)
    assert_close(y, d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * w + b, ox.float32, what="vs f64", tol=4)


@pytest.mark.parametrize("traditional,dims,shape", [(False, 32, (1, 4, 6, 32)), (True, 16, (2, 5, 24)),
                                                    (False, 8, (7, 12))])
def test_rope_is_mx_fast_with_an_array_offset(fused, traditional, dims, shape):
    rng = np.random.default_rng()
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    off = ox.asarray(np.array(37, np.int32))
    y, ex = _on_fused(lambda a: ox.rope(a, dims, traditional=traditional, base=500.0, scale=0.5, offset=off), x)
    assert _kernel_ids(ex, "rope") == ["metal_fused.rope.fast"]
    xm = _mx(x if len(shape) > 2 else x[None])
    direct = mx.fast.rope(xm, dims, traditional=traditional, base=500.0, scale=0.5, offset=mx.array(37))
    assert_close(y, _np(direct).reshape(shape), ox.float32, what="vs mx.fast.rope", tol=1)
    ref = ox.rope(ox.asarray(x.astype(np.float64)), dims, traditional=traditional, base=500.0, scale=0.5, offset=37)
    assert_close(y, ref.numpy(), ox.float32, what="vs the decomposition in float64", tol=40)


def test_rope_offset_is_an_input_not_a_constant(fused):
    x = np.random.default_rng().uniform(-1, 1, (1, 2, 1, 16)).astype(np.float32)
    xs = ox.asarray(x)
    before = dict(fused.stats)
    for t in (3, 4, 100):
        with ox.use("metal_fused"):
            y = ox.rope(xs, 16, offset=ox.asarray(np.array(t, np.int32)))
        want = mx.fast.rope(_mx(x), 16, traditional=False, base=10000.0, scale=1.0, offset=t)
        assert_close(y, _np(want), ox.float32, what=f"offset {t}", tol=1)
    assert fused.stats["compiled"] - before["compiled"] <= 1  # one compilation serves every offset


def _sdpa64(q, k, v, mask=None, causal=False, scale=None):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    r = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, r, 1), np.repeat(v, r, 1)
    s = q @ np.swapaxes(k, -1, -2) * (scale or 1 / math.sqrt(q.shape[-1]))
    Tq, Tk = q.shape[2], k.shape[2]
    if causal:  # bottom-right: the last query sees every key
        s = np.where(np.arange(Tk - Tq, Tk)[:, None] >= np.arange(Tk)[None, :], s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    with np.errstate(invalid="ignore"):
        e = np.exp(s - s.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True) @ v


@pytest.mark.parametrize("dt", DT)
@pytest.mark.parametrize("Tq,Tk", [(1, 9), (4, 9), (6, 6)])
def test_attention_gqa_causal_is_mx_fast_bottom_right(fused, dt, Tq, Tk):
    rng = np.random.default_rng()
    npdt = ox.dtype(dt).numpy
    q = rng.uniform(-1, 1, (2, 8, Tq, 32)).astype(npdt)
    k, v = (rng.uniform(-1, 1, (2, 2, Tk, 32)).astype(npdt) for _ in range(2))
    y, ex = _on_fused(lambda a, b, c: ox.scaled_dot_product_attention(a, b, c, causal=True), q, k, v)
    assert _kernel_ids(ex, "scaled_dot_product_attention") == ["metal_fused.scaled_dot_product_attention.fast"]
    direct = mx.fast.scaled_dot_product_attention(_mx(q), _mx(k), _mx(v), scale=1 / math.sqrt(32), mask="causal")
    assert_close(y, _np(direct), ox.dtype(dt), what="vs mx.fast causal", tol=1)
    assert_close(y, _sdpa64(q, k, v, causal=True), ox.dtype(dt), what="vs float64 bottom-right causal", tol=4)


@pytest.mark.parametrize("kind", ["bool", "additive", "bool+causal", "additive+causal"])
def test_attention_masks(fused, kind):
    rng = np.random.default_rng()
    q = rng.uniform(-1, 1, (1, 4, 5, 16)).astype(np.float32)
    k, v = (rng.uniform(-1, 1, (1, 2, 7, 16)).astype(np.float32) for _ in range(2))
    if kind.startswith("bool"):
        m = rng.random((1, 4, 5, 7)) < 0.6
        m[..., -1] = True  # every query sees the last key, causal or not
    else:
        m = rng.uniform(-3, 0, (5, 7)).astype(np.float32)
    causal = kind.endswith("causal")
    y, _ = _on_fused(lambda a, b, c, d: ox.scaled_dot_product_attention(a, b, c, mask=d, causal=causal, scale=0.2),
                     q, k, v, m)
    assert_close(y, _sdpa64(q, k, v, mask=m, causal=causal, scale=0.2), ox.float32, what=kind, tol=4)
    if not causal:
        direct = mx.fast.scaled_dot_product_attention(_mx(q), _mx(k), _mx(v), scale=0.2, mask=_mx(m))
        assert_close(y, _np(direct), ox.float32, what=f"{kind} vs mx.fast", tol=1)


def test_attention_fully_masked_rows_are_nan_like_the_decomposition(fused, monkeypatch):
    rng = np.random.default_rng()
    q, k, v = (rng.uniform(-1, 1, s).astype(np.float32) for s in ((1, 2, 3, 8), (1, 2, 4, 8), (1, 2, 4, 8)))
    m = np.ones((3, 4), bool)
    m[1] = False
    y, _ = _on_fused(lambda a, b, c, d: ox.scaled_dot_product_attention(a, b, c, mask=d), q, k, v, m)
    monkeypatch.setenv("OXCORE_BACKENDS", "cpu_numpy")
    ref = ox.scaled_dot_product_attention(*(ox.asarray(a) for a in (q, k, v)), mask=ox.asarray(m)).numpy()
    assert np.isnan(ref[:, :, 1]).all() and np.isnan(y.numpy()[:, :, 1]).all()
    assert_close(y, ref.astype(np.float64), ox.float32, what="other rows", tol=4)


def test_causal_with_more_queries_than_keys_is_refused_with_a_reason(fused):
    q, k = np.ones((1, 2, 5, 8), np.float32), np.ones((1, 2, 3, 8), np.float32)
    with ox.use("metal_fused"):
        y = ox.scaled_dot_product_attention(ox.asarray(q), ox.asarray(k), ox.asarray(k), causal=True)
    ex = ox.explain(y)
    (node,) = [n for n in ex.nodes if n.op == "scaled_dot_product_attention"]
    assert node.kernel.id == "metal_fused.scaled_dot_product_attention.default"  # the mlx.core composition
    assert any("more queries (5) than keys (3)" in str(why) for k, why in node.candidates if k.endswith(".fast"))
    assert np.isnan(y.numpy()[0, 0, :2]).all() and np.isfinite(y.numpy()[0, 0, 2:]).all()
