"""Sharded saving: ``oxcore.save(..., max_shard_size=...)`` writes Hugging Face shards plus
``model.safetensors.index.json``; the ``safetensors`` library reads every shard bit-exactly and
``oxcore.load`` reads the index (and the directory)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import oxcore as ox
from oxcore._shards import parse_size, plan_shards


def _tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for i in range(int(rng.integers(6, 14))):
        dt = [np.float32, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.float64][i % 7]
        shape = tuple(int(d) for d in rng.integers(1, 40, int(rng.integers(1, 4))))
        a = rng.standard_normal(shape) * 50
        out[f"layer.{i}.w"] = (a > 0) if dt is np.bool_ else a.astype(dt)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_shards_round_trip_through_safetensors_and_the_index(tmp_path, seed):
    rng = np.random.default_rng()
    ts = _tensors(rng)
    sizes = [a.nbytes for a in ts.values()]
    limit = int(rng.integers(max(sizes) // 2 + 1, sum(sizes) // 2 + 2))  # NOTE: some tensors exceed it
    p = tmp_path / "model.safetensors"
    ox.save(p, {k: ox.asarray(v) if i % 2 else v for i, (k, v) in enumerate(ts.items())},
            {"note": "sharded"}, max_shard_size=limit)
    idx = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) >= 2 and not p.exists()
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert idx["metadata"]["total_size"] == sum(sizes) and set(idx["weight_map"]) == set(ts)
    seen = {}
    for s in shards:
        got = load_file(tmp_path / s)
        data = sum(a.nbytes for a in got.values())
        assert data <= limit or len(got) == 1, (s, data, limit)
        for k, a in got.items():
            assert idx["weight_map"][k] == s
            seen[k] = a
    assert set(seen) == set(ts)
    for k, v in ts.items():
        assert seen[k].dtype == v.dtype and np.array_equal(seen[k], v), k
    for f in (ox.load(tmp_path / "model.safetensors.index.json"), ox.load(tmp_path)):
        assert set(f) == set(ts) and f.metadata["note"] == "sharded"
        for k, v in ts.items():
            assert np.array_equal(f[k].numpy(), v), k


def test_one_shard_is_a_plain_file_and_stale_shards_go(tmp_path):
    rng = np.random.default_rng()
    ts = _tensors(rng)
    p = tmp_path / "model.safetensors"
    ox.save(p, ts, max_shard_size=1)  # one tensor per shard
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) == len(ts)
    ox.save(p, ts, max_shard_size=sum(a.nbytes for a in ts.values()) // 2 + 1)
    n = len(list(tmp_path.glob("model-*-of-*.safetensors")))
    assert 2 <= n < len(ts)  # NOTE: the earlier save's extra shards were removed
    q = tmp_path / "single.safetensors"
    ox.save(q, ts, max_shard_size="2GB")
    assert not (tmp_path / "single.safetensors.index.json").exists()
    got = load_file(q)
    assert all(np.array_equal(got[k], v) for k, v in ts.items())


def test_plan_matches_the_greedy_rule():
    ts = {n: np.zeros(k, np.uint8) for n, k in [("a", 4), ("b", 4), ("c", 9), ("d", 1), ("e", 3)]}
    assert plan_shards(ts, 8) == [["a", "b"], ["c"], ["d", "e"]]


@pytest.mark.parametrize("bad, err, match", [("2XB", ValueError, "valid units are: B, KB"), (0, ValueError, "positive"),
                                             (1.5, TypeError, "int \\(bytes\\) or a string"), ("-3GB", ValueError, "Invalid")])
def test_bad_sizes_and_formats_are_refused(tmp_path, bad, err, match):
    with pytest.raises(err, match=match):
        ox.save(tmp_path / "m.safetensors", {"a": np.ones(3, np.float32)}, max_shard_size=bad)
    assert parse_size("2GB") == 2 * 10**9 and parse_size("1GiB") == 1 << 30


def test_only_safetensors_shards(tmp_path):
    if "gguf" not in ox._io.formats():
        pytest.skip("oxcore-io-gguf not installed")
    with pytest.raises(ValueError, match="format 'gguf' cannot be sharded"):
        ox.save(tmp_path / "m.gguf", {"a": np.ones(3, np.float32)}, max_shard_size="1KB")


def test_sharded_checkpoint_read_into_memory_outlives_its_files(tmp_path):
    ts = _tensors(np.random.default_rng())
    ox.save(tmp_path / "model.safetensors", ts, max_shard_size=1)
    f = ox.load(tmp_path, mmap=False)
    for q in tmp_path.iterdir():
        q.unlink()
    for k, v in ts.items():
        assert np.array_equal(f[k].numpy(), v), k
