"""The npz format's own tests (the kit: `pytest --oxcore-format npz`)."""

import numpy as np
import pytest

import oxcore as ox


def test_roundtrip_every_dtype(tmp_path):
    tensors = {d.name: ox.asarray((np.arange(6) % 2).reshape(2, 3)).astype(d) for d in
               (ox.bool, ox.int8, ox.uint16, ox.int64, ox.float16, ox.bfloat16, ox.float32, ox.float64)}
    p = tmp_path / "all.npz"
    ox.save(p, tensors, metadata={"step": "7"})
    f = ox.load(p)
    assert f.format == "npz" and f.metadata == {"step": "7"} and sorted(f) == sorted(tensors)
    for name, x in tensors.items():
        assert f[name].dtype is x.dtype and f[name].tolist() == x.tolist()


def test_reads_what_numpy_writes(tmp_path):
    a, b = np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    np.savez(tmp_path / "plain.npz", a=a, b=b)
    np.savez_compressed(tmp_path / "small.npz", a=a, b=b)
    for name in ("plain.npz", "small.npz"):
        f = ox.load(tmp_path / name)
        assert f["a"].tolist() == a.tolist() and f["b"].tolist() == b.tolist()
    f = ox.load(tmp_path / "plain.npz")
    assert np.shares_memory(f["a"].numpy(), f.raw("a"))  # zero-copy: both view the mapped file


def test_numpy_reads_what_we_write(tmp_path):
    ox.save(tmp_path / "w.npz", {"w": ox.arange(6).reshape((2, 3))})
    assert np.load(tmp_path / "w.npz")["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_lazy_open_reads_headers_only(tmp_path):
    np.savez(tmp_path / "w.npz", w=np.ones((256, 256), np.float32))
    f = ox.load(tmp_path / "w.npz")
    info = f.info("w")
    assert (info.shape, info.type, info.nbytes) == ((256, 256), "<f4", 256 * 256 * 4)
    raw = open(tmp_path / "w.npz", "rb").read()
    assert raw[info.offset:info.offset + 4] == np.float32(1).tobytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong size"])
def test_hostile_files_raise_format_error(tmp_path, damage):
    p = tmp_path / "w.npz"
    np.savez(p, w=np.ones((4, 4), np.float32))
    data = p.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = b"PK\x03\x04" + bytes(60)
    else:  # the header claims 5x4 but the member holds 4x4
        data = data.replace(b"(4, 4)", b"(5, 4)")
    p.write_bytes(data)
    with pytest.raises(ox.FormatError, match="w.npz"):
        f = ox.load(p)
        f["w"].numpy()
