"""The register-blocked int8 GEMM (``_numba_gemm``, prefill on AVX512-VNNI CPUs): equal to the
float64 product of gguf-py's dequantized weights within ggml's int8 bound, x quantized like
gguf-py's Q8_0, used by ``ggml_matmul`` from ``GEMM_MIN_ROWS`` rows of x (in slabs past
``GEMM_MAX_ROWS``)."""

from __future__ import annotations

import numpy as np
import pytest

from oxcore_kernels_ggml import _cpu
from oxcore_kernels_ggml.testing import TYPES, nmse, random_blocks, reference_matmul

pytest.importorskip("numba")
pytest.importorskip("gguf")

from oxcore_kernels_ggml import _numba_gemm as G  # noqa: E402  (needs numba)

if not G.available():
    pytest.skip("this CPU has no AVX512-VNNI", allow_module_level=True)

BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}
#: ggml's test-backend-ops bound for products with 8-bit activations
TOL_INT8 = 5e-4


# NOTE: rows of x around the 16-row lane groups and the MR-group tiles (1 group, 3, 4 = a tile of
# 3 + a tile of 1, 8 = 3 + 3 + 2); weight rows not a multiple of NR (4) nor of CHUNK (32); K of
# 1..3 blocks (Q6_K's 16-quant groups, the others' 32)
@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("m,n,blocks", [(8, 5, 1), (16, 33, 2), (39, 64, 3), (50, 7, 1), (128, 70, 2)])
def test_random_blocks_equal_gguf_py(t, m, n, blocks):
    rng = np.random.default_rng([ord(c) for c in t] + [m, n, blocks])
    k = BLOCK[t] * blocks
    raw = random_blocks(t, (n, k), rng)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10, (m, 1))).astype(np.float32)
    got = G.matmul(x, raw, _cpu.CODES[t], t)
    assert got.shape == (m, n) and got.dtype == np.float32
    err = nmse(reference_matmul(x, raw, t, (n, k)), got)
    assert err <= TOL_INT8, f"{t} x{x.shape} W({n}, {k}): NMSE {err:.3g}"


def test_each_output_is_its_own_row_and_column():
    """One nonzero row of x and one nonzero weight row: one output is nonzero (a tile written
    to the wrong row, column or lane would show elsewhere)."""
    rng = np.random.default_rng(5)
    m, n, k = 37, 11, 64
    raw = random_blocks("Q8_0", (n, k), rng)
    raw.reshape(n, -1)[:, 2:] = 0  # NOTE: Q8_0: the quants after each block's float16 scale
    raw.reshape(n, -1)[6, 2:] = rng.integers(1, 100, raw.shape[1] - 2)
    x = np.zeros((m, k), np.float32)
    x[21] = rng.uniform(0.5, 1, k)
    got = G.matmul(x, raw, _cpu.CODES["Q8_0"], "Q8_0")
    ref = reference_matmul(x, raw, "Q8_0", (n, k))
    # NOTE: not exactly 0 elsewhere: Q8_0's quants are read as q + 128 and the offset subtracted
    # in float32 (128 * sum(x) twice, rounded)
    big = np.abs(got) > 1e-4 * np.abs(ref).max()
    assert set(zip(*np.nonzero(big))) == {(21, 6)}
    np.testing.assert_allclose(got[21, 6], ref[21, 6], rtol=2e-2)


@pytest.mark.parametrize("g", [16, 32])
def test_activations_are_quantized_like_gguf_py_q8_0(g):
    """x's quants in the GEMM's lane layout equal gguf-py's Q8_0 quantization of x; the group
    scales and sums (float, and int times a type's offset) follow them."""
    import gguf

    rng = np.random.default_rng(g)
    m, k = 19, 640
    x = (rng.standard_normal((m, k)) * rng.uniform(0.01, 10, (m, 1))).astype(np.float32)
    x[0, :32] = 0  # NOTE: an all-zero block: scale 0, quants 0 (no division by zero)
    rg, off = 2, 16
    xt, xd, xs, xi = (np.zeros((rg, k // 4, 16), np.int32), np.zeros((rg, k // g, 16), np.float32),
                      np.zeros((rg, k // g, 16), np.float32), np.zeros((rg, k // g, 16), np.int32))
    q = np.empty(k, np.int8)
    G.quantize_x(x, g, off, q, q.view(np.int32), xt, xd, xs, xi)
    xq = xt.view(np.int8).reshape(rg, k // 4, 16, 4).transpose(0, 2, 1, 3).reshape(rg * 16, k)
    d = xd.transpose(0, 2, 1).reshape(rg * 16, k // g)
    sums = xs.transpose(0, 2, 1).reshape(rg * 16, k // g)
    isums = xi.transpose(0, 2, 1).reshape(rg * 16, k // g)
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0).reshape(m, k // 32, 34)
    ref_d = ref[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    ref_q = ref[..., 2:].copy().view(np.int8).reshape(m, k)
    assert not xq[m:].any() and not d[m:].any()  # NOTE: padding rows stay zero
    # NOTE: gguf-py stores the scale as float16; the kernel keeps it in float32
    np.testing.assert_allclose(d[:m], ref_d.repeat(32 // g, 1), rtol=1e-3, atol=0)
    assert np.abs(xq[:m].astype(int) - ref_q).max() <= 1  # NOTE: float16 vs float32 scale: rounding ties
    assert np.mean(xq[:m] != ref_q) < 0.01
    np.testing.assert_allclose(sums[:m], d[:m] * xq[:m].reshape(m, -1, g).sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(isums, -off * xq.reshape(rg * 16, -1, g).sum(-1))


def test_ggml_matmul_takes_the_gemm_from_gemm_min_rows(monkeypatch):
    calls = []
    real = G.matmul
    monkeypatch.setattr(G, "matmul", lambda x, *a: calls.append(x.shape[0]) or real(x, *a))
    monkeypatch.setattr(_cpu, "INT8_MIN_BYTES", 0)
    monkeypatch.delenv("OXCORE_GGML_INT8", raising=False)
    rng = np.random.default_rng(1)
    raw = random_blocks("Q4_K", (9, 256), rng)
    for m in (_cpu.GEMM_MIN_ROWS - 1, _cpu.GEMM_MIN_ROWS):
        x = rng.standard_normal((m, 256)).astype(np.float32)
        got = _cpu.ggml_matmul(x, raw, ggml_type="Q4_K", shape=(9, 256))
        assert nmse(reference_matmul(x, raw, "Q4_K", (9, 256)), got) <= TOL_INT8
    assert calls == [_cpu.GEMM_MIN_ROWS]


def test_rows_past_gemm_max_rows_go_in_slabs(monkeypatch):
    calls = []
    real = G.matmul
    monkeypatch.setattr(G, "matmul", lambda x, *a: calls.append(x.shape[0]) or real(x, *a))
    monkeypatch.setattr(_cpu, "GEMM_MAX_ROWS", 32)
    monkeypatch.setattr(_cpu, "INT8_MIN_BYTES", 0)
    monkeypatch.delenv("OXCORE_GGML_INT8", raising=False)
    rng = np.random.default_rng(2)
    raw = random_blocks("Q5_0", (21, 96), rng)
    x = rng.standard_normal((2, 35, 96)).astype(np.float32)
    got = _cpu.ggml_matmul(x, raw, ggml_type="Q5_0", shape=(21, 96))
    assert calls == [32, 32, 6]
    assert got.shape == (2, 35, 21)
    assert nmse(reference_matmul(x.reshape(70, 96), raw, "Q5_0", (21, 96)), got.reshape(70, 21)) <= TOL_INT8


def test_int8_off_keeps_the_float32_paths(monkeypatch):
    monkeypatch.setenv("OXCORE_GGML_INT8", "0")
    assert not _cpu._blocked_gemm(64, 1 << 30)
    monkeypatch.delenv("OXCORE_GGML_INT8")
    assert _cpu._blocked_gemm(64, 1 << 30) == _cpu.vnni512_cpu()


@pytest.mark.parametrize("threads", [2, 3])
def test_pooled_threads_give_the_one_thread_product(threads, monkeypatch):
    """Tasks split over the pool (more tasks than threads, a last short one) give the same
    bits as one thread: each output is computed by exactly one task."""
    monkeypatch.setattr(G, "TASK_CHUNKS", 1)
    rng = np.random.default_rng(threads)
    raw = random_blocks("Q6_K", (G.CHUNK * 5 + 3, 256), rng)
    x = rng.standard_normal((23, 256)).astype(np.float32)
    one = G.matmul(x, raw, _cpu.CODES["Q6_K"], "Q6_K", 1)
    np.testing.assert_array_equal(G.matmul(x, raw, _cpu.CODES["Q6_K"], "Q6_K", threads), one)
    assert nmse(reference_matmul(x, raw, "Q6_K", raw.shape[:1] + (256,)), one) <= TOL_INT8
