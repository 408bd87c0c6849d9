"""Graphs split between cpu_numpy and an MLX backend: right values, transfers in the plan."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402


def _dev(name):
    return manager().backend(name).device.name


def test_pinned_part_runs_on_mlx_with_transfers_both_ways():
    rng = np.random.default_rng()
    xn, wn = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((16, 8)).astype(np.float32)
    x, w = ox.asarray(xn), ox.asarray(wn)
    h = ox.tanh(x) * 2                     # cpu_numpy (the default on a CPU-only machine)
    with ox.use("metal_basic"):
        y = ox.softmax(h @ w, axis=-1)     # MLX
    with ox.use("cpu_numpy"):
        z = ox.sum(y * y, axis=1)          # back on the host
    ex = ox.explain(z)
    placed = dict(zip([n.op for n in ex.nodes], ex.backends))
    assert placed["softmax"] == "metal_basic" and placed["matmul"] == "metal_basic"
    assert placed["sum"] == "cpu_numpy"
    mlx = _dev("metal_basic")
    hops = {(a, b) for _, a, b, _ in ex.transfers}
    assert ("cpu", mlx) in hops and (mlx, "cpu") in hops, ex
    assert [b for b, _ in ex.segments].count("metal_basic") == 1
    e = np.exp(np.tanh(xn.astype(np.float64)) * 2 @ wn)
    want = ((e / e.sum(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-5)
    assert z.device == "cpu"


def test_oxcore_backends_env_orders_the_choice(monkeypatch):
    monkeypatch.setenv("OXCORE_BACKENDS", "metal_fused,metal_basic,cpu_numpy")
    x = ox.asarray(np.arange(6, dtype=np.float32))
    y = ox.rms_norm(x.reshape((2, 3))) + 1
    ex = ox.explain(y)
    assert set(ex.backends) == {"metal_fused"} and ex.transfers and not ex.fallbacks
    xf = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.testing.assert_allclose(y.numpy(), xf / np.sqrt((xf * xf).mean(1, keepdims=True) + 1e-5) + 1, rtol=1e-5)


def test_two_mlx_backends_share_memory_without_transfers():
    x = ox.asarray(np.linspace(-1, 1, 12, dtype=np.float32)).to_device(_dev("metal_basic"))
    with ox.use("metal_basic"):
        a = ox.exp(x)
    with ox.use("metal_fused"):
        b = ox.softmax(a, axis=0)
    ex = ox.explain(b)
    assert ex.backends == ["metal_basic", "metal_fused"] and not ex.transfers
    e = np.exp(np.exp(np.linspace(-1, 1, 12)))
    np.testing.assert_allclose(b.numpy(), e / e.sum(), rtol=1e-5)


def test_refused_nodes_run_elsewhere_with_the_reason():
    if manager().backend("metal_basic").device.kind == "gpu":
        what = "MLX has no float64 kernels on the GPU"
    else:
        what = "MLX computes float64 exp with float32 accuracy"
    x = ox.asarray(np.linspace(0, 1, 5))  # float64
    with ox.use("metal_basic"):
        y = ox.exp(x) * 2
    ex = ox.explain(y)
    assert dict(zip([n.op for n in ex.nodes], ex.backends))["exp"] == "cpu_numpy"
    assert any(what in f for f in ex.fallbacks), ex.fallbacks
    np.testing.assert_allclose(y.numpy(), np.exp(np.linspace(0, 1, 5)) * 2, rtol=1e-14)
