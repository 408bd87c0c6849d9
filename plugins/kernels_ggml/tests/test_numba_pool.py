"""The decode GEMV on helper threads (``_numba_pool``): equal to gguf-py's float64 product,
the same bits whatever the number of threads (each row computed whole by one thread), several
weight matrices in one call, and still right when the helpers were asleep."""

from __future__ import annotations

import time

import numpy as np
import pytest

from oxcore_kernels_ggml import _cpu
from oxcore_kernels_ggml.testing import nmse, random_blocks, reference_matmul

pytest.importorskip("numba")
pytest.importorskip("gguf")

TOL_INT8 = 5e-4  # NOTE: ggml's test-backend-ops bound for 8-bit activations


@pytest.fixture(scope="module")
def pool():
    from oxcore_kernels_ggml import _numba_pool, _numba_vnni

    if not (_numba_pool.available() and _numba_vnni.available()):
        pytest.skip("needs Linux x86-64 with AVX512-VNNI / AVX-VNNI")
    return _numba_pool


def _rows(t, shape, rng):
    raw = random_blocks(t, shape, rng)
    code, row, _ = _cpu._layout(t, shape)
    return raw, code, raw.reshape(shape[0], row)


@pytest.mark.parametrize("t,shape", [("Q5_0", (1024, 640)), ("Q8_0", (256, 640)), ("Q4_0", (130, 96)),
                                     ("Q4_K", (640, 1024)), ("Q6_K", (642, 512))])
def test_one_matrix_matches_float64_on_any_thread_count(pool, t, shape):
    rng = np.random.default_rng(abs(hash((t, shape))) % 2**32)
    raw, code, w = _rows(t, shape, rng)
    x = rng.standard_normal((1, shape[1])).astype(np.float32)
    y = np.full((1, shape[0]), np.nan, np.float32)
    assert pool.gemv((code,), (w,), x, (y,), 2)
    assert nmse(reference_matmul(x, raw, t, shape), y) < TOL_INT8
    one = np.empty_like(y)
    assert pool.gemv((code,), (w,), x, (one,), 2)  # NOTE: again: rows land on other threads this time
    np.testing.assert_array_equal(y, one)  # NOTE: rows not multiple of 4 (130, 642): the tail too


def test_several_matrices_of_mixed_types_share_one_x(pool):
    rng = np.random.default_rng(7)
    mats = [("Q5_0", (1024, 640)), ("Q5_0", (256, 640)), ("Q8_0", (258, 640))]
    got = [_rows(t, s, rng) for t, s in mats]
    x = rng.standard_normal((1, 640)).astype(np.float32)
    ys = tuple(np.full((1, s[0]), np.nan, np.float32) for _, s in mats)
    assert pool.gemv(tuple(c for _, c, _ in got), tuple(w for _, _, w in got), x, ys, 2)
    for (t, s), (raw, _, _), y in zip(mats, got, ys):
        assert nmse(reference_matmul(x, raw, t, s), y) < TOL_INT8


def test_right_after_the_helpers_fell_asleep(pool):
    rng = np.random.default_rng(3)
    raw, code, w = _rows("Q8_0", (4096, 256), rng)
    x = rng.standard_normal((1, 256)).astype(np.float32)
    pool.gemv((code,), (w,), x, (np.empty((1, 4096), np.float32),), 2)
    time.sleep(3 * pool.SPIN_US * 1e-6 + 0.01)  # NOTE: past the helpers' spin: they sleep on the futex
    for _ in range(3):
        y = np.full((1, 4096), np.nan, np.float32)
        assert pool.gemv((code,), (w,), x, (y,), 2)
        assert nmse(reference_matmul(x, raw, "Q8_0", (4096, 256)), y) < TOL_INT8


def test_two_callers_at_once_both_get_their_products(pool):
    """One caller holds the helpers; the other runs numba's kernel (``_cpu`` falls back): the
    pool's product releases the GIL, so the two overlap."""
    import threading

    rng = np.random.default_rng(11)
    raw, code, w = _rows("Q5_0", (2048, 640), rng)
    xs = [rng.standard_normal((1, 640)).astype(np.float32) for _ in range(2)]
    want = [reference_matmul(x, raw, "Q5_0", (2048, 640)) for x in xs]
    bad = []
    calls = {"pool": 0, "declined": 0}
    real = pool.gemv

    def counting(*a):
        got = real(*a)
        calls["pool" if got else "declined"] += 1
        return got

    def caller(i):
        for _ in range(200):
            y = _cpu.ggml_matmul(xs[i], raw, ggml_type="Q5_0", shape=(2048, 640))
            if not nmse(want[i], y) < TOL_INT8:
                bad.append(i)

    _cpu.ggml_matmul(xs[0], raw, ggml_type="Q5_0", shape=(2048, 640))  # NOTE: sets up _cpu's pool state
    saved = (_cpu._STATE["pool"], _cpu._STATE["pool_threads"])
    _cpu._STATE["pool"] = type("P", (), {"gemv": staticmethod(counting)})
    _cpu._STATE["pool_threads"] = 2
    try:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        _cpu._STATE["pool"], _cpu._STATE["pool_threads"] = saved
    assert not bad
    assert calls["pool"] > 0 and calls["declined"] > 0, calls


def test_more_matrices_than_the_control_block_holds_is_refused(pool):
    rng = np.random.default_rng(2)
    _, code, w = _rows("Q8_0", (8, 64), rng)
    n = pool.MAX_SEGMENTS + 1
    ys = tuple(np.empty((1, 8), np.float32) for _ in range(n))
    with pytest.raises(ValueError, match="at most"):
        pool.gemv((code,) * n, (w,) * n, rng.standard_normal((1, 64)).astype(np.float32), ys, 2)
