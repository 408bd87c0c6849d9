"""metal_basic, metal_fused and cpu_numpy agree with a float64 NumPy reference.

Fresh random inputs every run (the seed is in each failure message), several shapes and
dtypes, never all zeros. Each backend runs the whole graph alone (``OXCORE_BACKENDS``), so
ops it has no kernel for go through their decomposition on that same backend. Tolerances are
``oxcore.testing.check.TOLERANCES`` per result dtype times the case's factor (README).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402
from oxcore.testing.check import assert_close  # noqa: E402

BACKENDS = [b for b in ("metal_basic", "metal_fused", "cpu_numpy") if b in manager().backends]
HALF_AND_32 = ("float32", "float16", "bfloat16")
SEED = np.random.SeedSequence().entropy  # fresh per run, printed on failure


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _rms(x, w, eps=1e-5):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _ln(x, w, b, eps=1e-5):
    d = x - x.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps) * w + b


def _rope_ref(x, offset, dims, traditional, base=10000.0):
    T, half = x.shape[-2], dims // 2
    theta = (np.arange(T) + offset)[:, None] * base ** (-2.0 * np.arange(half) / dims)[None, :]
    c, s = np.cos(theta), np.sin(theta)
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        rot = np.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).reshape(x.shape[:-1] + (dims,))
    else:
        x1, x2 = x[..., :half], x[..., half:dims]
        rot = np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], -1)
    return np.concatenate([rot, x[..., dims:]], -1)


def _sdpa_ref(q, k, v, mask=None, causal=False, scale=None):
    B, H, Tq, D = q.shape
    r = H // k.shape[1]
    k, v = np.repeat(k, r, axis=1), np.repeat(v, r, axis=1)
    s = q @ np.swapaxes(k, -1, -2) * (scale if scale is not None else 1 / math.sqrt(D))
    Tk = k.shape[2]
    if causal:
        s = np.where(np.arange(Tk - Tq, Tk)[:, None] >= np.arange(Tk)[None, :], s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return _softmax(s) @ v


def _swiglu_block(x, w1, w3, w2):
    return (ox.silu(x @ w1) * (x @ w3)) @ w2 + x


# name -> (build(ox arrays...), ref(float64 arrays...), input specs per shape variant, dtypes, tol factor)
# an input spec is (shape, low, high) for floats, or a ready NumPy array maker taking rng
CASES = {
    "elementwise_chain": (lambda x, y: ox.gelu(x * y + 0.5) * ox.sigmoid(x) - ox.tanh(y) / 3,
                          lambda x, y: (0.5 * (x * y + 0.5) * (1 + _erf((x * y + 0.5) / math.sqrt(2))))
                          / (1 + np.exp(-x)) - np.tanh(y) / 3,
                          [[((7, 33), -3, 3), ((33,), -2, 2)], [((2, 3, 4), -3, 3), ((2, 3, 4), -2, 2)]], 2.0),
    "transcendental": (lambda x: ox.exp(x) + ox.log(x) + ox.sqrt(x) + ox.sin(x) + ox.erf(x),
                       lambda x: np.exp(x) + np.log(x) + np.sqrt(x) + np.sin(x) + _erf(x),
                       [[((5, 9), 0.1, 2)], [((64,), 0.1, 2)]], 2.0),
    "divide_broadcast": (lambda x, y: x / y - y, lambda x, y: x / y - y,
                         [[((4, 6), -3, 3), ((6,), 0.5, 2)], [((3, 1, 5), -3, 3), ((1, 4, 5), 0.5, 2)]], 1.0),
    "reductions": (lambda x: ox.concat([ox.sum(x, axis=1), ox.mean(x, axis=1), ox.max(x, axis=1),
                                        ox.var(x, axis=1, correction=1), ox.logsumexp(x, axis=1)]),
                   lambda x: np.concatenate([x.sum(1), x.mean(1), x.max(1), x.var(1, ddof=1),
                                             np.log(np.exp(x).sum(1))]),
                   [[((4, 50), -2, 2)], [((3, 7), -2, 2)]], 4.0),
    "softmax": (lambda x: ox.concat([ox.softmax(x, axis=-1), ox.log_softmax(x, axis=-1)], axis=-1),
                lambda x: np.concatenate([_softmax(x), np.log(_softmax(x))], -1),
                [[((3, 40), -4, 4)], [((2, 3, 5), -4, 4)]], 4.0),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b,
               [[((2, 5, 32), -1, 1), ((32, 6), -1, 1)], [((4, 16), -1, 1), ((3, 16, 8), -1, 1)]], 4.0),
    "linear": (lambda x, w, b: ox.linear(x, w, b), lambda x, w, b: x @ w.T + b,
               [[((3, 48), -1, 1), ((20, 48), -1, 1), ((20,), -1, 1)]], 4.0),
    "rms_norm": (lambda x, w: ox.rms_norm(x, w), _rms,
                 [[((4, 64), -2, 2), ((64,), 0.5, 1.5)], [((2, 3, 8), -2, 2), ((8,), 0.5, 1.5)]], 2.0),
    "layer_norm": (lambda x, w, b: ox.layer_norm(x, w, b), _ln,
                   [[((4, 64), -2, 2), ((64,), 0.5, 1.5), ((64,), -1, 1)]], 4.0),
    "rope": (lambda x: ox.rope(x, 16, offset=5), lambda x: _rope_ref(x, 5, 16, False),
             [[((1, 2, 6, 16), -1, 1)], [((1, 7, 24), -1, 1)]], 8.0),
    "rope_traditional": (lambda x: ox.rope(x, 8, traditional=True, offset=3), lambda x: _rope_ref(x, 3, 8, True),
                         [[((2, 5, 12), -1, 1)], [((4, 8), -1, 1)]], 8.0),
    "attention_gqa_causal": (lambda q, k, v: ox.scaled_dot_product_attention(q, k, v, causal=True),
                             lambda q, k, v: _sdpa_ref(q, k, v, causal=True),
                             [[((1, 4, 3, 16), -1, 1), ((1, 2, 7, 16), -1, 1), ((1, 2, 7, 16), -1, 1)],
                              [((2, 2, 5, 8), -1, 1), ((2, 1, 5, 8), -1, 1), ((2, 1, 5, 8), -1, 1)]], 4.0),
    "attention_additive_mask": (lambda q, k, v, m: ox.scaled_dot_product_attention(q, k, v, mask=m, scale=0.3),
                                lambda q, k, v, m: _sdpa_ref(q, k, v, mask=m, scale=0.3),
                                [[((1, 4, 3, 8), -1, 1), ((1, 2, 6, 8), -1, 1), ((1, 2, 6, 8), -1, 1),
                                  ((3, 6), -2, 0)]], 4.0),
    "swiglu_block": (_swiglu_block,
                     lambda x, w1, w3, w2: ((x @ w1) / (1 + np.exp(-(x @ w1))) * (x @ w3)) @ w2 + x,
                     [[((3, 32), -1, 1), ((32, 48), -0.3, 0.3), ((32, 48), -0.3, 0.3), ((48, 32), -0.3, 0.3)]],
                     4.0),
    "cumsum_take": (lambda x: ox.take(ox.cumulative_sum(x, axis=1), ox.asarray(np.array([2, -1, 0])), axis=1),
                    lambda x: np.take(np.cumsum(x, 1), [2, -1, 0], axis=1),
                    [[((3, 9), -1, 1)]], 4.0),
}


def _inputs(rng, specs, dt):
    return [np.asarray(rng.uniform(lo, hi, shape)).astype(ox.dtype(dt).numpy) for shape, lo, hi in specs]


def _run(backend, build, arrays, monkeypatch):
    monkeypatch.setenv("OXCORE_BACKENDS", backend)
    y = build(*[ox.asarray(a) for a in arrays])
    ex = ox.explain(y)
    assert set(ex.backends) == {backend} and not ex.fallbacks, ex
    y.eval()
    return y


@pytest.mark.parametrize("dt", HALF_AND_32)
@pytest.mark.parametrize("name", list(CASES))
def test_backends_agree_with_float64(name, dt, monkeypatch):
    build, ref, variants, tol = CASES[name]
    rng = np.random.default_rng([SEED, list(CASES).index(name), HALF_AND_32.index(dt)])
    for specs in variants:
        arrays = _inputs(rng, specs, dt)
        want = ref(*[a.astype(np.float64) for a in arrays])
        got = {}
        for b in BACKENDS:
            got[b] = _run(b, build, arrays, monkeypatch)
            assert_close(got[b], want, ox.dtype(dt), what=f"{name} on {b} {dt} {[a.shape for a in arrays]} "
                         f"(seed {SEED})", tol=tol)
        for b in BACKENDS[1:]:  # and with each other, to the same tolerance around the first
            assert_close(got[b], got[BACKENDS[0]].numpy().astype(np.float64), ox.dtype(dt),
                         what=f"{name}: {b} vs {BACKENDS[0]} {dt} (seed {SEED})", tol=2 * tol)


def test_float64_on_the_mlx_cpu(monkeypatch):
    """float64 stays float64 on MLX's CPU (ops it computes in float32 accuracy are refused)."""
    if manager().backend("metal_basic").device.kind == "gpu":
        pytest.skip("MLX has no float64 on the GPU; refusal tested in test_basic_support.py")
    rng = np.random.default_rng([SEED, 99])
    x, y = rng.uniform(0.5, 2, (5, 7)), rng.uniform(-1, 1, (7, 3))
    got = _run("metal_basic", lambda a, b: ox.sqrt(a) @ b / 3 + ox.sum(a, axis=1, keepdims=True), [x, y], monkeypatch)
    assert_close(got, np.sqrt(x) @ y / 3 + x.sum(1, keepdims=True), ox.float64, what=f"float64 (seed {SEED})")
