"""Affine quantization: oxcore's decomposition, MLX's own functions and the MLX kernels agree."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore_metal_basic import mlx_device  # noqa: E402

DTYPES = ["float32", "float16", "bfloat16"]


def _w(rng, shape, dt):
    w = (rng.standard_normal(shape) * 0.2).astype(ox.dtype(dt).numpy)
    w[0, :32] = 0.0                   # an all-zero group
    w[1, :32] = np.abs(w[1, :32])     # a one-signed group
    return w


def _to_mx(a):
    return mlx_device().from_numpy(a)


def _codes(wq, bits):
    per = 32 // bits
    return ((wq.astype(np.uint64)[..., None] >> (np.arange(per, dtype=np.uint64) * bits)) & (2 ** bits - 1)).astype(
        np.int64).reshape(wq.shape[0], -1)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("bits,group", [(4, 32), (4, 64), (8, 32), (8, 128)])
def test_quantize_decomposition_matches_mx_quantize(monkeypatch, dt, bits, group):
    monkeypatch.setenv("OXCORE_BACKENDS", "cpu_numpy")  # the registry decomposition, on the host
    w = _w(np.random.default_rng(), (6, 256), dt)
    wq, s, b = ox.quantize(ox.asarray(w), group, bits)
    with mx.stream(mx.cpu):  # MLX's reference algorithm: float32 arithmetic, unrounded scales
        mq, ms, mb = mx.quantize(_to_mx(w), group_size=group, bits=bits)
    assert np.array_equal(wq.numpy(), np.array(mq))  # every packed word
    assert s.dtype is ox.dtype(dt) and b.dtype is ox.dtype(dt)
    assert s.numpy().tobytes() == mlx_device().to_numpy(ms).tobytes()
    assert b.numpy().tobytes() == mlx_device().to_numpy(mb).tobytes()
    if mlx_device().kind == "gpu":
        # NOTE: MLX's own CUDA quantize kernel computes half weights differently from its CPU
        # one (seen on an H100: a bfloat16 scale one ulp off, ~1% of codes one step off)
        gq, gs, gb = mx.quantize(_to_mx(w), group_size=group, bits=bits)
        np.testing.assert_allclose(mlx_device().to_numpy(gs).astype(np.float32), s.numpy().astype(np.float32),
                                   rtol=2.0 ** -7)
        d = np.abs(_codes(np.array(gq), bits) - _codes(wq.numpy(), bits))
        assert d.max() <= 1 and d.mean() <= 0.03, (d.max(), d.mean())


@pytest.mark.parametrize("dt", DTYPES)
def test_dequantize_kernel_decomposition_and_mlx(mlx_backend, monkeypatch, dt):
    w = _w(np.random.default_rng(), (4, 128), dt)
    mq, ms, mb = mx.quantize(_to_mx(w), group_size=64, bits=4)
    args = [mlx_device().to_numpy(a) for a in (mq, ms, mb)]
    ref = mlx_device().to_numpy(mx.dequantize(mq, ms, mb, group_size=64, bits=4)).astype(np.float64)
    for backend in (mlx_backend, "cpu_numpy"):
        monkeypatch.setenv("OXCORE_BACKENDS", backend)
        got = ox.dequantize(*[ox.asarray(a) for a in args], 64, 4)
        assert set(ox.explain(got).backends) == {backend}
        rtol = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3}[dt]
        np.testing.assert_allclose(got.numpy().astype(np.float64), ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("transpose", [True, False])
def test_quantized_matmul_against_mlx_and_float64(mlx_backend, monkeypatch, transpose):
    rng = np.random.default_rng()
    w = _w(rng, (64, 128), "float32")
    mq, ms, mb = mx.quantize(_to_mx(w), group_size=32, bits=8)
    x = rng.standard_normal((3, 128 if transpose else 64)).astype(np.float32)
    monkeypatch.setenv("OXCORE_BACKENDS", mlx_backend)
    args = [ox.asarray(mlx_device().to_numpy(a)) for a in (mq, ms, mb)]
    got = ox.quantized_matmul(ox.asarray(x), *args, transpose=transpose, group_size=32, bits=8)
    ex = ox.explain(got)
    assert [n.op for n in ex.nodes] == ["quantized_matmul"], ex  # native, not dequantize + matmul
    want = np.array(mx.quantized_matmul(_to_mx(x), mq, ms, mb, transpose=transpose, group_size=32, bits=8))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    wd = np.array(mx.dequantize(mq, ms, mb, group_size=32, bits=8)).astype(np.float64)
    np.testing.assert_allclose(got.numpy(), x @ (wd.T if transpose else wd), rtol=1e-4, atol=1e-4)


def test_bfloat16_weights_quantize_through_ml_dtypes():
    w = _w(np.random.default_rng(), (2, 64), "bfloat16")
    assert w.dtype == ml_dtypes.bfloat16
    mq, _, _ = mx.quantize(_to_mx(w), group_size=32, bits=4)
    wq, _, _ = ox.quantize(ox.asarray(w), 32, 4)
    assert np.array_equal(wq.numpy(), np.array(mq))
