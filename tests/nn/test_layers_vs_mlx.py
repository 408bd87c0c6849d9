"""Layers against ``mlx.nn`` with the same weights, on every backend: Linear, Embedding, the
norms, RoPE, MultiHeadAttention (also grouped-query, against mx.fast attention), the encoder
layer and QuantizedLinear; KV caches against full attention."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan, nn

mx = pytest.importorskip("mlx.core")
mnn = pytest.importorskip("mlx.nn")

from .conftest import np_of, to_mx  # noqa: E402


def _same_weights(ours: nn.Module, theirs, rename=lambda k: k):
    theirs.load_weights([(rename(k), to_mx(v)) for k, v in ours.named_parameters()])
    return theirs


def _close(got, want, tol=1e-5):
    got, want = np_of(got), np.array(want)
    assert got.shape == want.shape, f"shape: expected {want.shape}, got {got.shape}"
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _x(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape,bias,dtype", [((3, 8), True, np.float32), ((2, 5, 8), False, np.float32),
                                              ((4, 8), True, np.float16)])
def test_linear(backend, shape, bias, dtype):
    lin = nn.Linear(8, 16, bias=bias, dtype=ox.dtype(dtype))
    ref = _same_weights(lin, mnn.Linear(8, 16, bias=bias))
    x = _x(shape, 1, dtype)
    with ox.use(backend):
        got = lin(ox.asarray(x))
    assert got.dtype == ox.dtype(dtype)
    _close(got.astype(ox.float32), ref(mx.array(x)).astype(mx.float32), tol=1e-5 if dtype == np.float32 else 2e-3)


def test_embedding(backend):
    emb = nn.Embedding(50, 12)
    ref = _same_weights(emb, mnn.Embedding(50, 12))
    ids = np.random.default_rng(2).integers(0, 50, (3, 7)).astype(np.int32)
    h = _x((2, 12), 3)
    with ox.use(backend):
        _close(emb(ox.asarray(ids)), ref(mx.array(ids)))
        _close(emb.as_linear(ox.asarray(h)), ref.as_linear(mx.array(h)))


@pytest.mark.parametrize("kind", ["layer", "layer-no-bias", "rms"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_norms(backend, kind, dtype):
    if kind == "rms":
        ours, theirs = nn.RMSNorm(24, eps=1e-6), mnn.RMSNorm(24, eps=1e-6)
    else:
        ours, theirs = nn.LayerNorm(24, bias=kind == "layer"), mnn.LayerNorm(24, bias=kind == "layer")
    ours.update({k: ox.asarray(_x(v.shape, 4 + i, dtype)) for i, (k, v) in enumerate(ours.named_parameters())})
    _same_weights(ours, theirs)
    x = (_x((2, 3, 24), 5) * 3 + 1).astype(dtype)
    with ox.use(backend):
        got = ours(ox.asarray(x))
    assert got.dtype == ox.dtype(dtype)
    _close(got.astype(ox.float32), theirs(mx.array(x)).astype(mx.float32), tol=2e-5 if dtype == np.float32 else 1e-2)


@pytest.mark.parametrize("traditional", [False, True])
def test_rope(backend, traditional):
    x = _x((2, 3, 6, 16), 6)
    with ox.use(backend):
        got = nn.RoPE(8, traditional=traditional, base=500.0)(ox.asarray(x), offset=5)
    _close(got, mnn.RoPE(8, traditional=traditional, base=500.0)(mx.array(x), offset=5), tol=2e-5)


@pytest.mark.parametrize("mask", [None, "causal", "bool"])
def test_multi_head_attention(backend, mask):
    attn = nn.MultiHeadAttention(32, 4, key_input_dims=20, value_input_dims=12, bias=True)
    ref = _same_weights(attn, mnn.MultiHeadAttention(32, 4, key_input_dims=20, value_input_dims=12, bias=True))
    q, k, v = _x((2, 5, 32), 7), _x((2, 5, 20), 8), _x((2, 5, 12), 9)
    ref_mask = None
    ours_mask = mask
    if mask == "causal":
        ref_mask = mnn.MultiHeadAttention.create_additive_causal_mask(5)
    elif mask == "bool":
        m = np.random.default_rng(10).random((2, 1, 5, 5)) < 0.7
        m[..., 0] = True
        ours_mask, ref_mask = ox.asarray(m), mx.array(m)
    with ox.use(backend):
        got = attn(ox.asarray(q), ox.asarray(k), ox.asarray(v), mask=ours_mask)
    _close(got, ref(mx.array(q), mx.array(k), mx.array(v), mask=ref_mask), tol=2e-5)


def test_grouped_query_attention_with_rope(backend):
    attn = nn.MultiHeadAttention(48, 6, num_kv_heads=2, rope=nn.RoPE(8))
    x = _x((2, 7, 48), 11)
    W = {k: to_mx(v) for k, v in attn.named_parameters()}

    def heads(y, n):
        return y.reshape(2, 7, n, -1).transpose(0, 2, 1, 3)
    xm = mx.array(x)
    q, k, v = heads(xm @ W["query_proj.weight"].T, 6), heads(xm @ W["key_proj.weight"].T, 2), \
        heads(xm @ W["value_proj.weight"].T, 2)
    rope = mnn.RoPE(8)
    o = mx.fast.scaled_dot_product_attention(rope(q), rope(k), v, scale=8 ** -0.5, mask="causal")
    want = o.transpose(0, 2, 1, 3).reshape(2, 7, 48) @ W["out_proj.weight"].T
    with ox.use(backend):
        _close(attn(ox.asarray(x), mask="causal"), want, tol=2e-5)


def test_transformer_encoder_layer(backend):
    ours = nn.TransformerEncoderLayer(32, 4, mlp_dims=48)
    theirs = mnn.TransformerEncoderLayer(32, 4, mlp_dims=48)
    ours.update({"ln1": {"weight": ox.asarray(_x((32,), 12))}, "ln2": {"bias": ox.asarray(_x((32,), 13))}})
    _same_weights(ours, theirs, rename=lambda k: k.replace("mlp.", ""))
    x = _x((2, 6, 32), 14)
    with ox.use(backend):
        got = ours(ox.asarray(x), mask="causal")
    _close(got, theirs(mx.array(x), mnn.MultiHeadAttention.create_additive_causal_mask(6)), tol=3e-5)


def test_decoder_layer_runs_and_uses_memory():
    layer = nn.TransformerDecoderLayer(16, 2, norm_first=False)
    x, mem = ox.asarray(_x((2, 3, 16), 15)), ox.asarray(_x((2, 5, 16), 16))
    a = layer(x, mem, x_mask="causal").numpy()
    b = layer(x, mem * 2, x_mask="causal").numpy()
    assert a.shape == (2, 3, 16) and np.isfinite(a).all() and not np.allclose(a, b)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_linear(backend, bits):
    lin = nn.Linear(64, 24)
    q = nn.QuantizedLinear.from_linear(lin, group_size=32, bits=bits)
    ref = mnn.QuantizedLinear.from_linear(_same_weights(lin, mnn.Linear(64, 24)), group_size=32, bits=bits)
    x = _x((3, 64), 17)
    with ox.use(backend):
        got = q(ox.asarray(x))
    _close(got, ref(mx.array(x)), tol=1e-4)
    assert {k for k, _ in ox.tree.tree_items(q.trainable_parameters())} == {"bias"}


def test_quantize_model_keeps_outputs_close():
    ox.random.seed(1)
    model = nn.Sequential(nn.Embedding(32, 64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    ids = ox.asarray(np.arange(12).reshape(3, 4) % 32)
    before = model(ids).numpy()
    nn.quantize(model, group_size=32, bits=8)
    assert [type(m).__name__ for m in model.layers] == ["QuantizedEmbedding", "QuantizedLinear", "ReLU",
                                                        "QuantizedLinear"]
    np.testing.assert_allclose(model(ids).numpy(), before, atol=2e-2)


def _decode(attn, cache, x):
    outs = [attn(ox.asarray(x[:, :3]), mask="causal", cache=cache).numpy()]  # a prompt of 3, then one by one
    for t in range(3, x.shape[1]):
        outs.append(attn(ox.asarray(x[:, t:t + 1]), mask="causal", cache=cache).numpy())
    return np.concatenate(outs, axis=1)


def test_kv_cache_decode_equals_full_attention_with_one_plan(backend):
    attn = nn.MultiHeadAttention(32, 4, num_kv_heads=2, rope=nn.RoPE(8))
    x = _x((2, 9, 32), 18)
    with ox.use(backend):
        full = attn(ox.asarray(x), mask="causal").numpy()
        cache = nn.KVCache(2, 2, 16, 8)
        got = [attn(ox.asarray(x[:, :3]), mask="causal", cache=cache).numpy()]
        misses = []
        for t in range(3, 9):
            got.append(attn(ox.asarray(x[:, t:t + 1]), mask="causal", cache=cache).numpy())
            misses.append(_plan.STATS["misses"])
    np.testing.assert_allclose(np.concatenate(got, axis=1), full, rtol=2e-5, atol=2e-5)
    assert cache.offset.item() == 9
    # NOTE: the second decode step and later reuse the first decode step's plan
    assert misses[-1] == misses[1], f"decode steps planned again: misses {misses}"


def test_quantized_kv_cache_is_close_to_full_attention():
    attn = nn.MultiHeadAttention(64, 2)
    x = _x((1, 6, 64), 19)
    full = attn(ox.asarray(x), mask="causal").numpy()
    cache = nn.QuantizedKVCache(1, 2, 8, 32, block_size=32)
    got = _decode(attn, cache, x)
    assert cache.k.dtype == ox.int8 and cache.k_scales.shape == (1, 2, 8, 1)
    np.testing.assert_allclose(got, full, atol=3e-2)
    assert not np.allclose(got, full, atol=1e-7)  # NOTE: it really is quantized


def test_cache_rejects_wrong_shapes():
    cache = nn.KVCache(1, 2, 4, 8)
    with pytest.raises(ox.ShapeError, match=r"KVCache\(k=\(1, 2, 4, 8\).*expected input of shape keys "
                                            r"\(batch=1, kv_heads=2, L<=4, 8\)"):
        cache.update(ox.ones((1, 3, 1, 8)), ox.ones((1, 3, 1, 8)))


@pytest.mark.parametrize("ggml_type", ["Q4_0", "Q8_0"])
def test_quantized_linear_from_gguf_blocks(tmp_path, ggml_type):
    gguf = pytest.importorskip("oxcore_io_gguf")
    w = _x((16, 64), 20)
    path = tmp_path / "w.gguf"
    gguf.save(path, {"w": ox.asarray(w)}, quantize=ggml_type)
    f = ox.load(path)
    wq, s, b = gguf.to_mlx_affine(f["w"])
    bits = 4 if ggml_type == "Q4_0" else 8
    q = nn.QuantizedLinear.from_quantized(wq, s, b, group_size=32, bits=bits, bias=ox.asarray(_x((16,), 21)))
    assert q.bits == (4 if ggml_type == "Q4_0" else 8) and q.weight.dtype == ox.uint32
    x = _x((3, 64), 22)
    table = gguf.dequantize(gguf.quantize(w, ggml_type), ggml_type, (16, 64))
    _close(q(ox.asarray(x)), x @ table.T + _x((16,), 21), tol=1e-4)
    emb = nn.QuantizedEmbedding.from_quantized(wq, s, b, group_size=32, bits=bits)
    ids = np.array([[3, 0, 15]])
    _close(emb(ox.asarray(ids)), table[ids], tol=1e-6)
