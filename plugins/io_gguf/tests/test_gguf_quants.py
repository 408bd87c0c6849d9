"""ggml_dequantize: the NumPy kernel and the op decomposition against gguf-py, and to_mlx_affine."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import REGISTRY
from oxcore_io_gguf import dequantize, quantize, to_mlx_affine
from oxcore_io_gguf._types import BY_NAME, NATIVE
from oxcore_io_gguf.affine import AFFINE, affine_bits

from gguf_helpers import random_blocks


def _ref(blocks: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = BY_NAME[name]
    rows = blocks.reshape((-1, shape[-1] // t.block_size * t.type_size))
    return gguf.quants.dequantize(rows, gguf.GGMLQuantizationType(t.id)).reshape(shape)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("name", NATIVE)
def test_numpy_kernel_is_bit_identical(name):
    t = BY_NAME[name]
    shape = (5, 3 * t.block_size)
    blocks = random_blocks(name, 15)
    assert np.array_equal(_bits(dequantize(blocks, name, shape)), _bits(_ref(blocks, name, shape)))
    # garbage scales (NaN, inf) give the same bits too
    junk = np.random.default_rng(1).integers(0, 256, blocks.shape, dtype=np.uint8)
    with np.errstate(all="ignore"):
        assert np.array_equal(_bits(dequantize(junk, name, shape)), _bits(_ref(junk, name, shape)))


def test_numpy_kernel_threads_and_chunks_agree():
    blocks = random_blocks("Q4_K", 3000, seed=3)  # > one chunk: goes through the thread pool
    shape = (1000, 3 * 256)
    assert np.array_equal(_bits(dequantize(blocks, "Q4_K", shape)), _bits(_ref(blocks, "Q4_K", shape)))


@pytest.mark.parametrize("name", ["IQ4_NL", "TQ2_0", "F16", "BF16"])
def test_other_types_fall_back_to_gguf_py(name):
    t = BY_NAME[name]
    shape = (3, 2 * t.block_size)
    raw = np.random.default_rng(2).integers(0, 256, 6 * t.type_size, dtype=np.uint8)
    if name in ("IQ4_NL",):
        raw = raw.reshape(6, t.type_size)
        raw[:, :2] = np.array([0.5], np.float16).view(np.uint8)
    with np.errstate(all="ignore"):
        assert np.array_equal(_bits(dequantize(raw, name, shape)), _bits(_ref(raw, name, shape)))


@pytest.mark.parametrize("name", NATIVE)
def test_decomposition_is_bit_identical_on_cpu_numpy(name):
    t = BY_NAME[name]
    shape = (4, 2 * t.block_size)
    blocks = random_blocks(name, 8, seed=5)
    op = REGISTRY["ggml_dequantize"]
    with ox.use("cpu_numpy"):
        out = op.decompose(ox.asarray(blocks.reshape(-1)), ggml_type=name, shape=shape, dtype=ox.float32)
    ex = ox.explain(out)
    assert "ggml_dequantize" not in [p.op for p in ex.nodes]  # only existing ops
    assert np.array_equal(_bits(out.numpy()), _bits(_ref(blocks, name, shape)))


@pytest.mark.parametrize("backend", ox.backends())
def test_decomposition_runs_on_every_backend(backend):
    """The decomposition uses ordinary ops only, so any backend can dequantize (MLX included)."""
    op = REGISTRY["ggml_dequantize"]
    for name in ("Q4_0", "Q4_K"):  # NOTE: fusing backends compile each graph once: keep it to two
        t = BY_NAME[name]
        shape = (2, t.block_size)
        blocks = random_blocks(name, 2, seed=9)
        with ox.use(backend):
            out = op.decompose(ox.asarray(blocks.reshape(-1)), ggml_type=name, shape=shape, dtype=ox.float32)
        np.testing.assert_allclose(out.numpy(), _ref(blocks, name, shape), rtol=1e-6, atol=1e-6, err_msg=name)


def test_op_is_lazy_and_casts():
    blocks = random_blocks("Q8_0", 4)
    y = ox.build("ggml_dequantize", ox.asarray(blocks.reshape(-1)), ggml_type="Q8_0", shape=(4, 32),
                 dtype=ox.bfloat16)
    assert y.is_lazy and y.dtype is ox.bfloat16 and y.shape == (4, 32)
    np.testing.assert_array_equal(y.numpy().astype(np.float32),
                                  _ref(blocks, "Q8_0", (4, 32)).astype(y.numpy().dtype).astype(np.float32))


@pytest.mark.parametrize("attrs, err", [
    (dict(ggml_type="Q8_0", shape=(4, 33), dtype=ox.float32), ox.ShapeError),
    (dict(ggml_type="Q8_0", shape=(5, 32), dtype=ox.float32), ox.ShapeError),
    (dict(ggml_type="Q8_0", shape=(4, 32), dtype=ox.int32), ox.DTypeError),
    (dict(ggml_type="Q9_9", shape=(4, 32), dtype=ox.float32), ox.DTypeError),
    (dict(ggml_type="Q8_1", shape=(4, 32), dtype=ox.float32), ox.ShapeError),
])
def test_op_checks_at_build_time(attrs, err):
    raw = ox.asarray(random_blocks("Q8_0", 4).reshape(-1))
    with pytest.raises(err):
        ox.build("ggml_dequantize", raw, **attrs)
    with pytest.raises(ox.DTypeError):
        ox.build("ggml_dequantize", raw.astype(ox.int8), ggml_type="Q8_0", shape=(4, 32), dtype=ox.float32)


def test_quantize_matches_gguf_py():
    w = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    for name in ("Q8_0", "Q4_0"):
        assert np.array_equal(quantize(w, name), gguf.quants.quantize(w, gguf.GGMLQuantizationType[name]))


# --- to_mlx_affine --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(AFFINE))
def test_to_mlx_affine_is_exact(name):
    t = BY_NAME[name]
    shape = (6, 2 * t.block_size)
    blocks = random_blocks(name, 12, seed=11)
    wq, s, b = to_mlx_affine((blocks, name, shape))
    bits = affine_bits(name)
    assert wq.dtype is ox.uint32 and wq.shape == (6, shape[1] * bits // 32)
    assert s.shape == b.shape == (6, shape[1] // 32) and s.dtype is ox.float32
    with ox.use("cpu_numpy"):
        got = ox.dequantize(wq, s, b, group_size=32, bits=bits).numpy()
    _same_values(got, _ref(blocks, name, shape))


def _same_values(got: np.ndarray, want: np.ndarray) -> None:
    """Equal value for value; the only bits allowed to differ are the sign of a zero (gguf-py's
    ``d * (q - 8)`` is -0.0 for d < 0, the affine ``d * q - 8 d`` is +0.0)."""
    assert np.array_equal(got, want)
    diff = _bits(got) != _bits(want)
    assert (got[diff] == 0).all()


def test_to_mlx_affine_feeds_quantized_matmul():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    raw = quantize(w, "Q4_0")
    wq, s, b = to_mlx_affine((raw, "Q4_0", (16, 64)))
    x = rng.standard_normal((3, 64)).astype(np.float32)
    y = ox.quantized_matmul(ox.asarray(x), wq, s, b, transpose=True, group_size=32, bits=4)
    np.testing.assert_allclose(y.numpy(), x @ dequantize(raw, "Q4_0", (16, 64)).T, rtol=1e-5, atol=1e-5)


def test_to_mlx_affine_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="no exact affine form"):
        to_mlx_affine((random_blocks("Q6_K", 1), "Q6_K", (1, 256)))
    with pytest.raises(TypeError, match="unevaluated quantized tensor"):
        to_mlx_affine(ox.ones((2, 32)))


def test_to_mlx_affine_on_gemma(gemma_path):
    f = ox.load(gemma_path)
    for k in ("Q4_K", "Q5_0", "Q8_0"):
        n = min((n for n in f if f.info(n).type == k), key=lambda n: f.info(n).nbytes)
        i = f.info(n)
        wq, s, b = to_mlx_affine(f[n])
        got = ox.dequantize(wq, s, b, group_size=32, bits=affine_bits(i.type)).numpy()
        _same_values(got, dequantize(f.raw(n), i.type, i.shape))
