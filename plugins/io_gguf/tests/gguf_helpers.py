"""Helpers for the GGUF tests (a module of its own: conftest modules are not importable by name)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def read_gguf_header(path: Path) -> dict:
    """A deliberately separate, minimal GGUF reader (trusting: for known-good files only), so the
    tests do not check the plugin's parser against itself. gguf-py's GGUFReader would do, but it
    takes ~20 s on Gemma's 262k-token vocabulary."""
    b = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        s = b[pos:pos + n].decode("utf-8")
        pos += n
        return s

    sizes = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t: int):
        if t in sizes:
            return take(sizes[t])
        if t == 8:
            return string()
        et, n = take("<I"), take("<Q")
        return [value(et) for _ in range(n)]

    assert b[:4] == b"GGUF"
    version, n_t, n_kv = take("<4xI"), take("<Q"), take("<Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("<I"))
    tensors = []
    for _ in range(n_t):
        name = string()
        nd = take("<I")
        dims = [take("<Q") for _ in range(nd)]
        tensors.append((name, dims, take("<I"), take("<Q")))
    align = meta.get("general.alignment", 32)
    start = -(-pos // align) * align
    return {"version": version, "metadata": meta, "tensors": tensors, "data_start": start, "bytes": b}


def random_blocks(type_name: str, n_blocks: int, seed: int = 0) -> np.ndarray:
    """Random block bytes with finite float16 scales (so every value is a number)."""
    from oxcore_io_gguf._types import BY_NAME

    t = BY_NAME[type_name]
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    scale_at = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q2_K": (80, 82),
                "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}[type_name]
    for at in scale_at:
        b[:, at:at + 2] = rng.uniform(-2, 2, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return b


def assert_infos_match_reader(f, reader) -> None:
    """Our tensor order, types, shapes, offsets and sizes equal gguf-py's ``GGUFReader``'s."""
    assert [t.name for t in reader.tensors] == list(f)
    for t in reader.tensors:
        i = f.info(t.name)
        assert (i.type, i.shape, i.offset, i.nbytes) == (t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)),
                                                        int(t.data_offset), int(t.n_bytes))
