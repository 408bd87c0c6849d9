"""Gradients of model pieces equal MLX's ``mx.value_and_grad`` on the same inputs, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import oxcore as ox

mx = pytest.importorskip("mlx.core")

BACKENDS = [b for b in ("cpu_numpy", "metal_basic", "metal_fused") if b in ox.backends()]
TOL = {"float32": (2e-4, 2e-5), "bfloat16": (5e-2, 5e-2)}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng, *shape, scale=None):
    return (rng.standard_normal(shape) * (scale or 1 / math.sqrt(shape[-1]))).astype(np.float32)


def _compare(ox_fn, mx_fn, params: dict, data: dict, backend: str, dtype: str = "float32") -> None:
    """value_and_grad of both over ``params`` (a dict), ``data`` held fixed."""
    names = sorted(params)
    cast = (lambda a: a.astype(np.float32)) if dtype == "float32" else (lambda a: a)
    mxd = getattr(mx, dtype)
    mp = {k: mx.array(v).astype(mxd) for k, v in params.items()}
    md = {k: (mx.array(v).astype(mxd) if v.dtype.kind == "f" else mx.array(v)) for k, v in data.items()}
    m_loss, m_grads = mx.value_and_grad(lambda p: mx_fn(p, md))(mp)
    with ox.use(backend):
        op = {k: ox.asarray(v).astype(ox.dtype(dtype)) for k, v in params.items()}
        od = {k: (ox.asarray(v).astype(ox.dtype(dtype)) if v.dtype.kind == "f" else ox.asarray(v))
              for k, v in data.items()}
        o_loss, o_grads = ox.value_and_grad(lambda p: ox_fn(p, od))(op)
        ox.eval(o_loss, *o_grads.values())
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(float(o_loss.astype(ox.float32).item()), float(m_loss.astype(mx.float32).item()),
                               rtol=rtol, atol=atol, err_msg=f"loss on {backend}")
    for k in names:
        got = o_grads[k].astype(ox.float32).numpy()
        want = np.asarray(m_grads[k].astype(mx.float32))
        scale = np.abs(want).max() + 1e-6
        np.testing.assert_allclose(got / scale, want / scale, rtol=rtol, atol=atol * 10,
                                   err_msg=f"grad of {k} on {backend} ({dtype})")
    del cast


# --- the functions, written twice -------------------------------------------------------------------
def _mlp_ox(p, d):
    h = ox.tanh(ox.linear(d["x"], p["w1"], p["b1"]))
    h = ox.gelu(ox.linear(h, p["w2"], p["b2"]))
    return ox.mean((ox.linear(h, p["w3"]) - d["y"]) ** 2)


def _mlp_mx(p, d):
    import mlx.nn as nn

    h = mx.tanh(d["x"] @ p["w1"].T + p["b1"])
    h = nn.gelu(h @ p["w2"].T + p["b2"])
    return mx.mean((h @ p["w3"].T - d["y"]) ** 2)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mlp(backend, dtype):
    rng = _rng(1)
    params = {"w1": _w(rng, 32, 16), "b1": _w(rng, 32, scale=0.1), "w2": _w(rng, 24, 32), "b2": _w(rng, 24, scale=0.1),
              "w3": _w(rng, 4, 24)}
    data = {"x": rng.standard_normal((8, 16)).astype(np.float32), "y": rng.standard_normal((8, 4)).astype(np.float32)}
    _compare(_mlp_ox, _mlp_mx, params, data, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy(backend):
    import mlx.nn as nn

    rng = _rng(2)
    params = {"w": _w(rng, 10, 12)}
    data = {"x": rng.standard_normal((16, 12)).astype(np.float32), "t": rng.integers(0, 10, 16).astype(np.int32)}
    _compare(lambda p, d: ox.cross_entropy(ox.linear(d["x"], p["w"]), d["t"]),
             lambda p, d: nn.losses.cross_entropy(d["x"] @ p["w"].T, d["t"], reduction="mean"),
             params, data, backend)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_norms(backend, dtype):
    rng = _rng(3)
    params = {"x": rng.standard_normal((6, 32)).astype(np.float32), "g": (1 + 0.1 * rng.standard_normal(32)).astype(np.float32),
              "b": (0.1 * rng.standard_normal(32)).astype(np.float32)}
    data = {"r": rng.standard_normal((6, 32)).astype(np.float32)}
    _compare(lambda p, d: (ox.layer_norm(p["x"], p["g"], p["b"], eps=1e-5) * d["r"]).sum()
             + (ox.rms_norm(p["x"], p["g"], eps=1e-5) * d["r"] * d["r"]).sum(),
             lambda p, d: (mx.fast.layer_norm(p["x"], p["g"], p["b"], 1e-5) * d["r"]).sum()
             + (mx.fast.rms_norm(p["x"], p["g"], 1e-5) * d["r"] * d["r"]).sum(),
             params, data, backend, dtype)


def _attn_ox(p, d, heads=4, kv=2):
    B, T, D = d["x"].shape
    hd = D // heads

    def split(t, n):
        return ox.permute_dims(ox.reshape(t, (B, T, n, hd)), (0, 2, 1, 3))
    q, k, v = (split(ox.linear(d["x"], p[w]), n) for w, n in (("wq", heads), ("wk", kv), ("wv", kv)))
    q, k = ox.rope(q, hd), ox.rope(k, hd)
    a = ox.scaled_dot_product_attention(q, k, v, causal=True)
    return (ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, D)) * d["r"]).sum()


def _attn_mx(p, d, heads=4, kv=2):
    B, T, D = d["x"].shape
    hd = D // heads

    def split(t, n):
        return t.reshape(B, T, n, hd).transpose(0, 2, 1, 3)
    q, k, v = split(d["x"] @ p["wq"].T, heads), split(d["x"] @ p["wk"].T, kv), split(d["x"] @ p["wv"].T, kv)
    q = mx.fast.rope(q, hd, traditional=False, base=10000.0, scale=1.0, offset=0)
    k = mx.fast.rope(k, hd, traditional=False, base=10000.0, scale=1.0, offset=0)
    a = mx.fast.scaled_dot_product_attention(q, k, v, scale=hd ** -0.5, mask="causal")
    return (a.transpose(0, 2, 1, 3).reshape(B, T, D) * d["r"]).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_gqa_rope(backend):
    rng = _rng(4)
    D = 32
    params = {"wq": _w(rng, D, D), "wk": _w(rng, D // 2, D), "wv": _w(rng, D // 2, D)}
    data = {"x": rng.standard_normal((2, 5, D)).astype(np.float32), "r": rng.standard_normal((2, 5, D)).astype(np.float32)}
    _compare(_attn_ox, _attn_mx, params, data, backend)


def _block_ox(p, d, heads=4, kv=2):
    x = d["x"]
    h = ox.rms_norm(x, p["n1"])
    x = x + ox.linear(_attn_inner_ox(p, h, heads, kv), p["wo"])
    h = ox.rms_norm(x, p["n2"])
    return (x + ox.linear(ox.silu(ox.linear(h, p["w1"])) * ox.linear(h, p["w3"]), p["w2"])).sum() * 0.01


def _attn_inner_ox(p, x, heads, kv):
    B, T, D = x.shape
    hd = D // heads

    def split(t, n):
        return ox.permute_dims(ox.reshape(t, (B, T, n, hd)), (0, 2, 1, 3))
    q, k, v = (split(ox.linear(x, p[w]), n) for w, n in (("wq", heads), ("wk", kv), ("wv", kv)))
    a = ox.scaled_dot_product_attention(ox.rope(q, hd), ox.rope(k, hd), v, causal=True)
    return ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, D))


def _block_mx(p, d, heads=4, kv=2):
    x = d["x"]
    B, T, D = x.shape
    hd = D // heads

    def split(t, n):
        return t.reshape(B, T, n, hd).transpose(0, 2, 1, 3)
    h = mx.fast.rms_norm(x, p["n1"], 1e-5)
    q, k, v = split(h @ p["wq"].T, heads), split(h @ p["wk"].T, kv), split(h @ p["wv"].T, kv)
    q = mx.fast.rope(q, hd, traditional=False, base=10000.0, scale=1.0, offset=0)
    k = mx.fast.rope(k, hd, traditional=False, base=10000.0, scale=1.0, offset=0)
    a = mx.fast.scaled_dot_product_attention(q, k, v, scale=hd ** -0.5, mask="causal")
    x = x + a.transpose(0, 2, 1, 3).reshape(B, T, D) @ p["wo"].T
    h = mx.fast.rms_norm(x, p["n2"], 1e-5)
    g = h @ p["w1"].T
    return (x + ((g * mx.sigmoid(g)) * (h @ p["w3"].T)) @ p["w2"].T).sum() * 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_transformer_block(backend):
    rng = _rng(5)
    D, F = 32, 64
    params = {"n1": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
              "n2": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
              "wq": _w(rng, D, D), "wk": _w(rng, D // 2, D), "wv": _w(rng, D // 2, D), "wo": _w(rng, D, D),
              "w1": _w(rng, F, D), "w3": _w(rng, F, D), "w2": _w(rng, D, F)}
    data = {"x": rng.standard_normal((2, 6, D)).astype(np.float32)}
    _compare(_block_ox, _block_mx, params, data, backend)
