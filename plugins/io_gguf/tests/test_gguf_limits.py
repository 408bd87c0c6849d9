"""The GGUF spec's limits: tensor names of at most 64 bytes, at most 4 dimensions, a power-of-two
alignment. Files past them are refused with ``FormatError`` at the field that breaks them; the
writer refuses to produce them."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore_io_gguf.testing import gguf_bytes
from oxcore_io_gguf._parse import MAX_NAME


def _load(tmp_path, data: bytes):
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    return p, ox.load(p)


@pytest.mark.parametrize("name", ["w" * MAX_NAME, "é" * (MAX_NAME // 2), "blk.0.attn_q.weight"])
def test_names_up_to_64_bytes_load(tmp_path, name):
    vals = np.random.default_rng(len(name)).standard_normal(4).astype(np.float32)
    _, f = _load(tmp_path, gguf_bytes([], [(name, (4,), 0, None, vals.tobytes())])[0])
    assert np.array_equal(f[name].numpy(), vals)


@pytest.mark.parametrize("name", ["w" * (MAX_NAME + 1), "é" * (MAX_NAME // 2) + "x", "n" * 4096])
def test_longer_names_are_refused_at_their_tensor_info(tmp_path, name):
    data, g = gguf_bytes([], [(name, (4,), 0, None, b"\0" * 16)])
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    with pytest.raises(ox.FormatError, match=f"{len(name.encode())} bytes; GGUF allows at most 64") as e:
        ox.load(p)
    assert e.value.offset == g.marks[f"ti:{name}"] and e.value.path == str(p)


@pytest.mark.parametrize("nd", [5, 8, 64])
def test_more_than_four_dims_are_refused(tmp_path, nd):
    data, _ = gguf_bytes([], [("t", (1,) * nd, 0, None, b"\0" * 4)])
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    with pytest.raises(ox.FormatError, match=f"has {nd} dimensions; GGUF allows at most 4"):
        ox.load(p)


@pytest.mark.parametrize("align", [3, 24, 48, 96, 1000, (1 << 31) + 1])
def test_non_power_of_two_alignment_is_refused(tmp_path, align):
    data, g = gguf_bytes([("general.alignment", "u32", align)], [])
    p = tmp_path / "m.gguf"
    p.write_bytes(data)
    with pytest.raises(ox.FormatError, match="power of two") as e:
        ox.load(p)
    assert e.value.offset == g.marks["kv:general.alignment"]


@pytest.mark.parametrize("align", [1, 2, 8, 64, 256])
def test_power_of_two_alignments_load(tmp_path, align):
    vals = np.random.default_rng(align).integers(-99, 99, 8).astype(np.int32)
    data, _ = gguf_bytes([("general.alignment", "u32", align)], [("t", (8,), 26, None, vals.tobytes())],
                         alignment=align)
    _, f = _load(tmp_path, data)
    assert np.array_equal(f["t"].numpy(), vals)


def test_writer_refuses_what_readers_would_refuse(tmp_path):
    ok = {"a" * MAX_NAME: np.ones(3, np.float32)}
    ox.save(tmp_path / "ok.gguf", ok)
    assert list(ox.load(tmp_path / "ok.gguf")) == list(ok)
    with pytest.raises(ValueError, match="65 bytes; GGUF allows at most 64"):
        ox.save(tmp_path / "long.gguf", {"a" * 65: np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="5 dimensions; GGUF allows at most 4"):
        ox.save(tmp_path / "deep.gguf", {"t": np.ones((1, 1, 1, 1, 2), np.float32)})
    assert not (tmp_path / "long.gguf").exists() and not (tmp_path / "deep.gguf").exists()
