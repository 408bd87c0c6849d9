"""GGUF reading and writing: round trips, gguf-py interop, the hostile corpus and a fuzzer."""

from __future__ import annotations

import os
import struct

import gguf
import ml_dtypes
import numpy as np
import pytest
from hypothesis import event, example, given, settings, strategies as st

import oxcore as ox
from oxcore.testing import formats as F
from gguf_helpers import assert_infos_match_reader
from oxcore_io_gguf import save as save_gguf


def _all_dtypes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"f32": rng.standard_normal((3, 64)).astype(np.float32),
            "f16": rng.standard_normal((2, 5)).astype(np.float16),
            "bf16": rng.standard_normal((4, 3)).astype(ml_dtypes.bfloat16),
            "f64": rng.standard_normal(7),
            "i8": rng.integers(-128, 127, 9, dtype=np.int8), "i16": rng.integers(-9, 9, (2, 2), dtype=np.int16),
            "i32": rng.integers(-9, 9, 3, dtype=np.int32), "i64": rng.integers(-9, 9, (1, 2, 3), dtype=np.int64)}


def test_round_trip_every_gguf_dtype(tmp_path):
    data = _all_dtypes(np.random.default_rng(0))
    p = tmp_path / "m.gguf"
    ox.save(p, data, {"general.name": "rt", "n": 3, "xs": [1.5, 2.5], "flag": True, "tags": ["a", "b"]})
    f = ox.load(p)
    assert list(f) == list(data)
    for k, v in data.items():
        got = f[k].numpy()
        assert got.dtype == v.dtype and got.shape == v.shape and np.array_equal(got.view(np.uint8), v.view(np.uint8))
        assert not f[k].is_lazy  # plain types are zero-copy views
    assert f.metadata["general.name"] == "rt" and f.metadata["n"] == 3 and f.metadata["flag"] is True
    assert f.metadata["tags"] == ["a", "b"] and f.metadata["xs"].tolist() == [1.5, 2.5]
    assert f.metadata["general.architecture"] == "oxcore"


def test_gguf_py_reads_what_we_write(tmp_path):
    data = _all_dtypes(np.random.default_rng(1))
    p = tmp_path / "m.gguf"
    save_gguf(p, data, {"general.architecture": "llama", "llama.context_length": 128}, quantize="Q8_0")
    r = gguf.GGUFReader(p)
    f = ox.load(p)
    assert_infos_match_reader(f, r)
    assert r.fields["llama.context_length"].types == [gguf.GGUFValueType.UINT32]
    assert f.info("f32").type == "Q8_0" and f.info("f16").type == "F16"  # vectors and odd rows stay exact


@pytest.mark.parametrize("q", ["Q8_0", "Q4_0"])
def test_quantized_write_matches_gguf_py(tmp_path, q):
    w = np.random.default_rng(2).standard_normal((8, 96)).astype(np.float32)
    p = tmp_path / "q.gguf"
    save_gguf(p, {"w": ox.asarray(w), "norm": np.ones(96, np.float32)}, quantize=q)
    f = ox.load(p)
    assert f.info("w").type == q and f.info("norm").type == "F32"
    assert np.array_equal(f.raw("w").reshape(8, -1), gguf.quants.quantize(w, gguf.GGMLQuantizationType[q]))
    want = gguf.quants.dequantize(gguf.quants.quantize(w, gguf.GGMLQuantizationType[q]), gguf.GGMLQuantizationType[q])
    assert np.array_equal(f["w"].numpy(), want)


def test_metadata_types_survive_a_rewrite(tmp_path, gemma_path):
    from oxcore_io_gguf._parse import GGUFMetadata

    f = ox.load(gemma_path)
    small = {n: f[n] for n in list(f)[:3] if f.info(n).nbytes < 1 << 20}
    # NOTE: the vocabulary cut to 1000 entries: gguf-py packs arrays item by item (slow)
    meta = GGUFMetadata({k: (v[:1000] if k.startswith("tokenizer.ggml.t") or k.endswith("scores") else v)
                         for k, v in f.metadata.items()})
    meta.types = dict(f.metadata.types)
    p = tmp_path / "re.gguf"
    ox.save(p, small, meta)
    g = ox.load(p)
    assert g.metadata.types == f.metadata.types
    assert g.metadata["tokenizer.ggml.tokens"] == f.metadata["tokenizer.ggml.tokens"][:1000]
    for n in small:
        assert np.array_equal(g[n].numpy(), f[n].numpy()) and g.info(n).type == f.info(n).type


def test_safetensors_gguf_safetensors_is_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    data = {"a": rng.standard_normal((4, 32)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float16),
            "c": rng.standard_normal((2, 3, 4)).astype(ml_dtypes.bfloat16)}
    ox.save(tmp_path / "a.safetensors", data, {"k": "v"})
    src = ox.load(tmp_path / "a.safetensors")
    ox.save(tmp_path / "b.gguf", src, src.metadata)
    mid = ox.load(tmp_path / "b.gguf")
    ox.save(tmp_path / "c.safetensors", mid, {k: str(v) for k, v in mid.metadata.items()})
    out = ox.load(tmp_path / "c.safetensors")
    assert [mid.info(n).type for n in data] == ["F32", "F16", "BF16"]
    for n, v in data.items():
        got = out[n].numpy()
        assert got.dtype == v.dtype and np.array_equal(got.view(np.uint8), v.view(np.uint8)), n
    assert out.metadata["k"] == "v"


def test_cli_convert_round_trip(tmp_path):
    from click.testing import CliRunner

    from oxcore.cli import main

    data = {"w": np.arange(64, dtype=np.float32).reshape(2, 32), "h": np.ones(3, np.float16)}
    ox.save(tmp_path / "in.safetensors", data)
    r = CliRunner()
    res = r.invoke(main, ["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "m.gguf")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["convert", str(tmp_path / "m.gguf"), str(tmp_path / "out.safetensors")])
    assert res.exit_code == 0, res.output
    out = ox.load(tmp_path / "out.safetensors")
    for n, v in data.items():
        assert np.array_equal(out[n].numpy(), v)
    res = r.invoke(main, ["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "q.gguf"), "--quantize", "q4_0"])
    assert res.exit_code == 0, res.output
    assert ox.load(tmp_path / "q.gguf").info("w").type == "Q4_0"
    res = r.invoke(main, ["convert", str(tmp_path / "m.gguf"), str(tmp_path / "x.safetensors"), "--quantize", "q8_0"])
    assert res.exit_code != 0 and "quantize" in res.output


def test_cli_inspect_json(tmp_path, gemma_path):
    import json

    from click.testing import CliRunner

    from oxcore.cli import main

    res = CliRunner().invoke(main, ["inspect", str(gemma_path), "--json"])
    assert res.exit_code == 0, res.output[-500:]
    d = json.loads(res.output)
    assert d["format"] == "gguf" and d["version"] == 3 and len(d["tensors"]) == 236
    t = {x["name"]: x for x in d["tensors"]}
    assert t["token_embd.weight"]["dtype"] == "Q8_0" and t["token_embd.weight"]["shape"] == [262144, 640]
    assert t["output_norm.weight"]["dtype"] == "float32"
    assert d["metadata"]["general.architecture"] == "gemma3"
    assert d["metadata"]["tokenizer.ggml.tokens"]["length"] == 262144


def test_write_refuses_what_gguf_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        save_gguf(tmp_path / "x.gguf", {"u": np.zeros(3, np.uint8)})
    with pytest.raises(ValueError, match="at most 4"):
        save_gguf(tmp_path / "x.gguf", {"u": np.zeros((1,) * 5, np.float32)})
    with pytest.raises(ValueError, match="Valid values are"):
        save_gguf(tmp_path / "x.gguf", {"u": np.zeros(32, np.float32)}, quantize="Q3_K")
    with pytest.raises(TypeError, match="empty array"):
        save_gguf(tmp_path / "x.gguf", {}, {"k": []})
    assert not list(tmp_path.iterdir())  # atomic: nothing left behind


# --- hostile input --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", F.corpus("gguf"), ids=lambda c: c.name)
def test_hostile_corpus(case, tmp_path):
    F.check_case(case, tmp_path)


@pytest.mark.parametrize("case", F.valid_cases("gguf"), ids=lambda c: c.name)
def test_valid_edge_cases(case, tmp_path):
    F.check_case(case, tmp_path)


def test_corpus_for_the_conformance_mode(tmp_path):
    got = list(F.hostile_corpus("gguf", tmp_path))
    assert len(got) == len(F.corpus("gguf")) and all(p.exists() for _, p in got)
    F.roundtrip("gguf", tmp_path / "rt")


def _fuzz_base() -> tuple[bytes, int, list[tuple[int, int]]]:
    """A real header: Gemma's metadata and all 236 tensor infos (vocabulary cut to 64 entries so
    each example stays small); without Gemma, the corpus' valid file. Returns (header, file size,
    (offset, width) of every tensor info's dims, type and offset fields)."""
    from oxcore_io_gguf.testing import gemma_gguf, gguf_bytes

    p = gemma_gguf()
    if p is None:
        data = F.valid_cases("gguf")[0].data
        return data, len(data), []
    f = ox.load(p)
    m, types = f.metadata, f.metadata.types
    kinds = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 10: "u64", 11: "i64",
             12: "f64"}
    kv = []
    for k, v in m.items():
        vt, et = types[k]
        if vt == 9:
            kv.append((k, ("arr", "str" if et == 8 else kinds[et]), list(v[:64])))
        else:
            kv.append((k, "str" if vt == 8 else kinds[vt], v))
    ts = [(n, tuple(reversed(f.info(n).shape)), _tid(f.info(n).type), f.info(n).offset - f.info(list(f)[0]).offset, b"")
          for n in f]
    head, g = gguf_bytes(kv, ts)
    last = max(f.info(n).offset + f.info(n).nbytes for n in f) - f.info(list(f)[0]).offset
    fields = []
    for n, dims, *_ in ts:
        at = g.marks[f"ti:{n}"] + 8 + len(n.encode()) + 4
        fields += [(at + 8 * j, 8) for j in range(len(dims))] + [(at + 8 * len(dims), 4), (at + 8 * len(dims) + 4, 8)]
    return head, g.marks["data"] + last, fields


def _tid(name: str) -> int:
    from oxcore_io_gguf._types import BY_NAME

    return BY_NAME[name].id


_BASE: tuple[bytes, int, list[tuple[int, int]]] | None = None
_MUTATION = st.tuples(st.sampled_from(["flip", "byte", "u64", "u32", "cut", "insert", "delete", "field", "field"]),
                      st.integers(0, 1 << 30), st.integers(0, 255))


def _read_or_refuse(f, name):
    try:
        f[name].numpy()
    except ox.DTypeError as e:  # a valid file of a type nobody can decode (e.g. Q8_1)
        assert "cannot be dequantized" in str(e)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(_MUTATION, min_size=1, max_size=4), st.integers(-64, 64))
# NOTE: found by CI's hypothesis 6.170: a string length past ssize_t overflowed struct (not FormatError)
@example(mutations=[("insert", 1, 0), ("insert", 1, 234)], size_delta=0)
def test_fuzz_mutated_real_header(tmp_path_factory, mutations, size_delta):
    global _BASE
    if _BASE is None:
        _BASE = _fuzz_base()
    head, size, fields = _BASE
    b = bytearray(head)
    for kind, pos, val in mutations:
        if kind == "field" and fields:  # NOTE: a tensor's dims, type or offset: files that still parse
            at, w = fields[pos * 2654435761 % len(fields)]
            v = [0, 1, 2, 8, 12, 32, 33, 256, 1 << 20, 1 << 32, 1 << 63][val % 11] if val < 200 else val
            b[at:at + w] = struct.pack("<Q" if w == 8 else "<I", v % (1 << (8 * w)))
            continue
        pos = pos * 2654435761 % max(1, len(b))  # NOTE: spread hypothesis' small ints over the header
        if kind == "flip":
            b[pos] ^= 1 << (val % 8)
        elif kind == "byte":
            b[pos] = val
        elif kind in ("u64", "u32"):
            extreme = [0, 1, 0xFF, 1 << 31, (1 << 32) - 1, 1 << 40, 1 << 62, (1 << 64) - 1][val % 8]
            w = 8 if kind == "u64" else 4
            b[pos:pos + w] = struct.pack("<Q" if w == 8 else "<I", extreme & ((1 << (8 * w)) - 1))
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([val]) * (val % 17 + 1)
        else:
            del b[pos:pos + val % 17 + 1]
    p = tmp_path_factory.mktemp("fuzz") / "m.gguf"
    with open(p, "wb") as fh:
        fh.write(b)
        if len(b) >= len(head):  # NOTE: a sparse data region: real sizes, no real bytes
            fh.truncate(max(len(b), size + size_delta))
    F.open_mutated(p, "gguf", alloc_budget=4 * len(b) + (16 << 20), event=event, read=_read_or_refuse)
