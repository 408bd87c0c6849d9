"""The real Gemma 3 270M Q4_K_M file: header, metadata and every tensor, bit for bit."""

from __future__ import annotations

import os

import numpy as np
import pytest

import oxcore as ox
from gguf_helpers import assert_infos_match_reader
from oxcore_io_gguf._types import BY_ID


def test_every_tensor_matches_the_header(gemma_path, gemma_header):
    f = ox.load(gemma_path)
    assert f.format == "gguf" and f.files[0].version == gemma_header["version"] == 3
    tensors = gemma_header["tensors"]
    assert len(tensors) == len(f) == 236
    assert list(f) == [t[0] for t in tensors]  # file order
    for name, dims, tid, off in tensors:
        i = f.info(name)
        assert i.type == BY_ID[tid].name, name
        assert i.shape == tuple(reversed(dims)), name
        assert i.offset == gemma_header["data_start"] + off, name
        assert f[name].shape == i.shape
        assert f[name].dtype is (ox.float32 if i.type in ("F32",) or i.quantized else i.dtype)


def test_metadata_matches_the_header(gemma_path, gemma_header):
    f = ox.load(gemma_path)
    want = gemma_header["metadata"]
    assert list(f.metadata) == list(want)
    for k, v in want.items():
        got = f.metadata[k]
        if isinstance(v, list):
            got = list(got.tolist() if isinstance(got, np.ndarray) else got)
            if v and isinstance(v[0], float):
                np.testing.assert_array_equal(np.float32(got), np.float32(v))
                continue
        elif isinstance(v, float):
            assert np.float32(got) == np.float32(v), k
            continue
        assert got == v, k
    assert len(f.metadata["tokenizer.ggml.tokens"]) == 262144
    assert f.metadata.types["gemma3.context_length"] == (4, None)  # UINT32 remembered for writing


def test_every_tensor_dequantizes_bit_for_bit_like_gguf_py(gemma_path, gemma_header):
    import gguf

    f = ox.load(gemma_path)
    b, start = gemma_header["bytes"], gemma_header["data_start"]
    seen = set()
    for name, dims, tid, off in gemma_header["tensors"]:
        t = BY_ID[tid]
        nbytes = int(np.prod(dims)) // t.block_size * t.type_size
        raw = np.frombuffer(b, np.uint8, nbytes, start + off).reshape((-1, dims[0] // t.block_size * t.type_size))
        want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(tid)).reshape(tuple(reversed(dims)))
        a = f[name]
        assert a.is_lazy == (t.name != "F32"), name  # quantized tensors stay quantized until used
        got = a.numpy()
        assert got.dtype == np.float32 and got.shape == want.shape, name
        assert np.array_equal(got.view(np.uint32), np.ascontiguousarray(want, np.float32).view(np.uint32)), name
        seen.add(t.name)
    assert seen == {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"}


def test_plain_tensors_are_zero_copy_views(gemma_path):
    f = ox.load(gemma_path)
    a = f["output_norm.weight"].numpy()
    assert not a.flags.writeable and not a.flags.owndata
    assert np.shares_memory(a, f.raw("output_norm.weight"))


@pytest.mark.skipif(not os.environ.get("OXCORE_SLOW"), reason="GGUFReader takes ~20 s on Gemma; set OXCORE_SLOW=1")
def test_against_gguf_reader(gemma_path):
    import gguf

    r = gguf.GGUFReader(gemma_path)
    f = ox.load(gemma_path)
    assert_infos_match_reader(f, r)
    for k, field in r.fields.items():
        if not k.startswith("GGUF."):
            assert k in f.metadata
