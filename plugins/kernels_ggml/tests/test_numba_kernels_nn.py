"""The numba ``rms_norm``, ``rope`` and ``scaled_dot_product_attention`` kernels on cpu_numpy:
placed for decode-sized float32 inputs (refused otherwise, with the reason), and equal to the
NumPy float64 formulas on fresh random inputs of decode and odd shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import oxcore as ox

pytest.importorskip("numba")


def _placed(y, op):
    (node,) = [p for p in ox.explain(y).nodes if p.op == op]
    return node.kernel.id


def _rel(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


@pytest.mark.parametrize("shape, weight", [((1, 1, 640), True), ((1, 4, 1, 256), True), ((3, 7), False),
                                           ((2, 5, 33), True)])
def test_rms_norm_equals_float64(shape, weight):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 30)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + 1e-6) * (w if weight else 1)
    with ox.use("cpu_numpy"):
        y = ox.rms_norm(ox.asarray(x), *((ox.asarray(w),) if weight else ()), eps=1e-6)
        assert _placed(y, "rms_norm") == "cpu_numpy.rms_norm.numba"
        assert _rel(y.numpy(), want) < 1e-6


def _rope_ref(x, offset, dims, traditional, base, scale):
    T, half = x.shape[-2], dims // 2
    theta = ((np.arange(T) + offset) * scale)[:, None] * (base ** (-2.0 * np.arange(half) / dims))[None, :]
    c, s = np.cos(theta), np.sin(theta)
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        rot = np.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1).reshape(x.shape[:-1] + (dims,))
    else:
        x1, x2 = x[..., :half], x[..., half:dims]
        rot = np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
    return np.concatenate([rot, x[..., dims:]], axis=-1)


@pytest.mark.parametrize("shape, dims, traditional, base, offset", [
    ((1, 4, 1, 256), 256, False, 10000.0, 37), ((1, 1, 1, 256), 256, False, 1e6, 300),
    ((2, 3, 5, 12), 8, True, 500.0, 4), ((1, 2, 3, 10), 10, False, 10000.0, 0)])
def test_rope_equals_float64(shape, dims, traditional, base, offset):
    rng = np.random.default_rng(dims + offset)
    x = rng.standard_normal(shape).astype(np.float32)
    want = _rope_ref(x.astype(np.float64), offset, dims, traditional, base, 1.0)
    with ox.use("cpu_numpy"):
        y = ox.rope(ox.asarray(x), dims, traditional=traditional, base=base, offset=ox.asarray(np.int32(offset)))
        assert _placed(y, "rope") == "cpu_numpy.rope.numba"
        # NOTE: float32 angles of positions in the hundreds carry ~1e-5 of absolute error (as MLX's)
        assert np.max(np.abs(y.numpy() - want)) < 1e-6 + 2e-7 * (offset + shape[-2]) * np.abs(x).max()


def _sdpa_ref(q, k, v, mask, scale, causal):
    H, Hk = q.shape[1], k.shape[1]
    k, v = np.repeat(k, H // Hk, axis=1), np.repeat(v, H // Hk, axis=1)
    s = q @ np.swapaxes(k, -1, -2) * scale
    Tq, Tk = s.shape[-2:]
    if causal:
        s = np.where(np.arange(Tk - Tq, Tk)[:, None] >= np.arange(Tk)[None, :], s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) @ v


@pytest.mark.parametrize("B, H, Hk, Tq, Tk, D, filled, window, causal", [
    (1, 4, 1, 1, 256, 256, 40, None, False),   # Gemma 3 270M decode, global layer
    (1, 4, 1, 1, 256, 256, 200, 64, False),    # sliding-window layer: keys 137..199
    (1, 4, 1, 3, 64, 32, 20, None, False),     # a few queries (speculative / short prompt)
    (2, 6, 3, 2, 9, 5, 9, None, True),         # batch, GQA 2, causal, odd sizes
])
def test_sdpa_equals_float64(B, H, Hk, Tq, Tk, D, filled, window, causal):
    rng = np.random.default_rng(Tk * 7 + filled)
    q = rng.standard_normal((B, H, Tq, D)).astype(np.float32)
    k = rng.standard_normal((B, Hk, Tk, D)).astype(np.float32)
    v = rng.standard_normal((B, Hk, Tk, D)).astype(np.float32)
    qpos = np.arange(filled - Tq, filled)[:, None]
    kpos = np.arange(Tk)[None, :]
    mask = kpos <= qpos
    if window:
        mask &= (qpos - kpos) < window
    mask = mask[None, None]
    scale = 1 / math.sqrt(D)
    want = _sdpa_ref(*(a.astype(np.float64) for a in (q, k, v)), mask, scale, causal)
    with ox.use("cpu_numpy"):
        y = ox.scaled_dot_product_attention(ox.asarray(q), ox.asarray(k), ox.asarray(v), scale=scale,
                                            mask=ox.asarray(mask), causal=causal)
        assert _placed(y, "scaled_dot_product_attention") == "cpu_numpy.scaled_dot_product_attention.numba"
        assert _rel(y.numpy(), want) < 1e-6


def test_sdpa_row_with_no_visible_key_is_nan_like_the_decomposition():
    q, k = np.ones((1, 1, 2, 4), np.float32), np.ones((1, 1, 3, 4), np.float32)
    mask = np.array([[True, False, False], [False, False, False]])[None, None]
    with ox.use("cpu_numpy"):
        y = ox.scaled_dot_product_attention(ox.asarray(q), ox.asarray(k), ox.asarray(k), mask=ox.asarray(mask))
        out = y.numpy()
    assert np.allclose(out[0, 0, 0], 1.0) and np.isnan(out[0, 0, 1]).all()


@pytest.mark.parametrize("what, build, reason", [
    ("float64 x", lambda: ox.rms_norm(ox.ones((2, 8), dtype=ox.float64)), "float32"),
    ("a prefill's rows", lambda: ox.rms_norm(ox.ones((512, 640))), "decode step's rows"),
    ("many query rows", lambda: ox.scaled_dot_product_attention(ox.ones((1, 4, 32, 8)), ox.ones((1, 1, 32, 8)),
                                                                ox.ones((1, 1, 32, 8))), "query rows"),
    ("an additive mask", lambda: ox.scaled_dot_product_attention(ox.ones((1, 1, 1, 8)), ox.ones((1, 1, 4, 8)),
                                                                 ox.ones((1, 1, 4, 8)), mask=ox.zeros((1, 4))),
     "boolean mask"),
])
def test_refusals_say_why_and_numpy_takes_over(what, build, reason):
    with ox.use("cpu_numpy"):
        y = build()
        (node,) = [p for p in ox.explain(y).nodes if p.op in ("rms_norm", "scaled_dot_product_attention")]
    assert node.kernel.id.endswith(".default"), what
    why = dict(node.candidates).get("cpu_numpy.%s.numba" % node.op, "")
    assert reason in str(why), (what, node.candidates)
