"""safetensors, built into the core: a validating header parser, mmap views, a streaming writer.

Layout: ``u64 n`` (little-endian), ``n`` bytes of UTF-8 JSON, then the data region. The JSON maps
each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to
the data region) plus an optional ``"__metadata__"`` object of str -> str.

We parse the header ourselves instead of calling the ``safetensors`` library because we need
(1) every field validated, with the byte offset of the problem, and (2) views on one mmap that
stay alive as long as any Array uses them. Choices:

* ``F8_E4M3`` / ``F8_E5M2``: oxcore has no float8 dtype. Every float8 value is exactly a float16
  (E4M3: 4 exponent bits, 3 mantissa bits; E5M2 *is* a truncated float16), so these tensors
  load as float16 through a lazy 256-entry table lookup (``take``) over the raw bytes: exact,
  lazy, and it runs on any backend. ``info(name).type`` reports the real type, ``raw(name)``
  gives the bytes. Saving writes F8 only from NumPy arrays of ml_dtypes float8 types.
* Zero-size tensors (a 0 in the shape, ``data_offsets`` ``[x, x]``) are valid, as in the
  reference library; they load as empty arrays.
* Stricter than the reference library: duplicate JSON keys, trailing bytes after the last
  tensor, gaps and non-UTF-8 names are errors. Unknown keys inside a tensor entry are
  ignored, as the reference library does.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from json.decoder import scanstring
from typing import Any, Callable

import numpy as np

from .. import _dtypes
from .._errors import FormatError
from .._format import Format, LazyFile, PathLike, TensorInfo
from .._mapping import MappedFile

HEADER_CAP = 100_000_000  # bytes of JSON; the reference library's limit too
MAGIC_MAX = 1 << 40  # sniff: a plausible header length

class _OnFirstUse(Mapping):
    """A read-only dict built on first use: the dtype tables import ml_dtypes (~0.5 s, ~6 MiB),
    which registering this format (every oxcore process that loads plugins, a GGUF-only
    ``oxcore generate`` too) must not pay."""

    def __init__(self, build: Callable[[], dict]) -> None:
        self._build = build
        self._table: dict | None = None

    def _get(self) -> dict:
        if self._table is None:
            self._table = self._build()
        return self._table

    def __getitem__(self, key: Any) -> Any:
        return self._get()[key]

    def __iter__(self) -> Any:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _dtypes_table() -> dict[str, tuple[int, np.dtype, _dtypes.DType]]:
    import ml_dtypes

    return {
        "BOOL": (1, np.dtype(np.bool_), _dtypes.bool_),
        "U8": (1, np.dtype("<u1"), _dtypes.uint8), "I8": (1, np.dtype("<i1"), _dtypes.int8),
        "U16": (2, np.dtype("<u2"), _dtypes.uint16), "I16": (2, np.dtype("<i2"), _dtypes.int16),
        "U32": (4, np.dtype("<u4"), _dtypes.uint32), "I32": (4, np.dtype("<i4"), _dtypes.int32),
        "U64": (8, np.dtype("<u8"), _dtypes.uint64), "I64": (8, np.dtype("<i8"), _dtypes.int64),
        "F16": (2, np.dtype("<f2"), _dtypes.float16), "BF16": (2, np.dtype(ml_dtypes.bfloat16), _dtypes.bfloat16),
        "F32": (4, np.dtype("<f4"), _dtypes.float32), "F64": (8, np.dtype("<f8"), _dtypes.float64),
        "F8_E4M3": (1, np.dtype(ml_dtypes.float8_e4m3fn), _dtypes.float16),
        "F8_E5M2": (1, np.dtype(ml_dtypes.float8_e5m2), _dtypes.float16),
    }


#: safetensors dtype -> (itemsize, NumPy dtype of the stored bytes, oxcore dtype you get)
DTYPES: Mapping[str, tuple[int, np.dtype, _dtypes.DType]] = _OnFirstUse(_dtypes_table)
FLOAT8 = ("F8_E4M3", "F8_E5M2")
_BY_OX = _OnFirstUse(lambda: {v[2]: k for k, v in DTYPES.items() if k not in FLOAT8})
_BY_NP = _OnFirstUse(lambda: {v[1]: k for k, v in DTYPES.items()})


def _float8_table(st: str) -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(DTYPES[st][1]).astype(np.float16)


_LUTS = _OnFirstUse(lambda: {st: _float8_table(st) for st in FLOAT8})


# --- header parsing --------------------------------------------------------------------------
class _Bytes:
    """Char index -> byte offset in the header (monotonic queries, O(n) overall)."""

    def __init__(self, text: str) -> None:
        self.text, self.ascii = text, text.isascii()
        self.ci = self.bi = 0

    def __call__(self, ci: int) -> int:
        if self.ascii:
            return ci
        if ci < self.ci:
            self.ci = self.bi = 0
        self.bi += len(self.text[self.ci:ci].encode("utf-8", "surrogatepass"))
        self.ci = ci
        return self.bi


def _no_dups(path: PathLike, where: int):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            seen: set[str] = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise FormatError(path, where, f"duplicate key {dup!r} inside a header entry")
        return d
    return hook


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_WS = " \t\n\r"


def parse_header(path: PathLike, head: bytes, size: int) -> tuple[int, dict[str, str], list[tuple]]:
    """Validate a safetensors header.

    Args:
        path: the file (for error messages).
        head: at least the first ``8 + n`` bytes of the file (or all of it when shorter).
        size: the file's size in bytes.

    Returns:
        ``(n, metadata, entries)`` with entries ``(name, dtype, shape, begin, end, key_offset)``
        in header order; begin/end relative to the data region.
    """
    if size < 8:
        raise FormatError(path, 0, f"file is {size} bytes; a safetensors file starts with an 8-byte header length")
    (n,) = struct.unpack_from("<Q", head, 0)
    if n > HEADER_CAP:
        # NOTE: a text or other binary file lands here (its first 8 bytes read as a huge length)
        raise FormatError(path, 0, f"not a safetensors file (header length {n} is not plausible: it is over "
                                   f"the {HEADER_CAP}-byte limit)")
    if 8 + n > size:
        raise FormatError(path, 0, f"header length {n} runs past the end of the file ({size} bytes)")
    if len(head) < 8 + n:
        raise FormatError(path, len(head), f"file ends at byte {len(head)}, inside the {n}-byte header")
    raw = head[8:8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(path, 8 + e.start, f"header is not valid UTF-8 ({e.reason})") from None
    try:
        return _parse_fast(path, text, n, size)
    except FormatError:
        pass  # NOTE: invalid: the careful parser below finds where, and says so
    return _parse_careful(path, text, n, size)


class _Dup(ValueError):
    pass


def _dup_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Dup("duplicate key")
    return d


def _parse_fast(path: PathLike, text: str, n: int, size: int) -> tuple[int, dict[str, str], list[tuple]]:
    """The common case at C speed: one ``json.loads``; offsets are not tracked, so any problem
    raises a FormatError without a meaningful offset and the careful parser takes over."""
    if not text.startswith("{"):
        raise FormatError(path, None, "")
    try:
        obj = json.loads(text, object_pairs_hook=_dup_hook, parse_constant=_bad_constant)
    except (ValueError, RecursionError):
        raise FormatError(path, None, "") from None
    if not isinstance(obj, dict):
        raise FormatError(path, None, "")
    data_size = size - 8 - n
    metadata: dict[str, str] = {}
    entries = []
    for key, value in obj.items():
        if key == "__metadata__":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise FormatError(path, None, "")
            metadata = value
            continue
        entries.append(_entry(path, key, value, -1, data_size))
    if "\\u" in text:  # NOTE: only escapes can smuggle lone surrogates into a name
        try:
            for key in obj:
                key.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError(path, None, "") from None
    _check_layout(path, entries, 8 + n, data_size)
    return n, metadata, entries


def _parse_careful(path: PathLike, text: str, n: int, size: int) -> tuple[int, dict[str, str], list[tuple]]:
    pos = _Bytes(text)
    at = lambda ci: 8 + pos(ci)  # noqa: E731
    data_size = size - 8 - n

    def fail(ci: int, why: str) -> None:
        raise FormatError(path, at(ci), why)

    i, L = 0, len(text)
    if not text.startswith("{"):
        fail(0, "header must be a JSON object starting with '{'")
    pairs: list[tuple[str, Any, int]] = []
    seen: set[str] = set()
    try:
        i = 1
        while i < L and text[i] in _WS:
            i += 1
        if text[i] == "}":
            i += 1
        else:
            while True:
                if text[i] != '"':
                    fail(i, "expected a tensor name in double quotes")
                kpos = i
                key, i = scanstring(text, i + 1, True)
                while text[i] in _WS:
                    i += 1
                if text[i] != ":":
                    fail(i, "expected ':' after a name")
                i += 1
                while text[i] in _WS:
                    i += 1
                dec = json.JSONDecoder(object_pairs_hook=_no_dups(path, at(kpos)), parse_constant=_bad_constant)
                value, i = dec.raw_decode(text, i)
                if key in seen:
                    fail(kpos, f"duplicate tensor name {key!r}")
                seen.add(key)
                pairs.append((key, value, kpos))
                while text[i] in _WS:
                    i += 1
                if text[i] == ",":
                    i += 1
                    while text[i] in _WS:
                        i += 1
                    continue
                if text[i] == "}":
                    i += 1
                    break
                fail(i, "expected ',' or '}' in the header object")
    except FormatError:
        raise
    except IndexError:
        fail(L, "header JSON ends early")
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip(_WS)):
            fail(len(text), "header JSON ends early")
        fail(e.pos, f"header is not valid JSON: {e.msg}")
    except ValueError as e:  # parse_constant (NaN, Infinity)
        fail(i, f"header is not valid JSON: {e}")
    except RecursionError:
        fail(i, "header JSON is nested too deeply")
    if text[i:].strip(_WS):
        fail(i, "unexpected data after the header object (only space padding may follow)")

    metadata: dict[str, str] = {}
    entries = []
    for key, value, kpos in pairs:
        off = at(kpos)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError(path, off, f"tensor name {key!r} is not valid UTF-8 (lone surrogate escape)") from None
        if key == "__metadata__":
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise FormatError(path, off, "__metadata__ must be an object of str -> str")
            metadata = value
            continue
        entries.append(_entry(path, key, value, off, data_size))
    _check_layout(path, entries, 8 + n, data_size)
    return n, metadata, entries


def _entry(path: PathLike, name: str, v: Any, off: int, data_size: int) -> tuple:
    # NOTE: the per-tensor hot path of opening a file: plain loops and type() checks
    def bad(why: str) -> FormatError:
        return FormatError(path, off, f"tensor {name!r}: {why}")

    if type(v) is not dict:
        raise bad(f"entry must be an object with dtype, shape, data_offsets; got {type(v).__name__}")
    for k in ("dtype", "shape", "data_offsets"):
        if k not in v:
            raise bad(f"missing {k!r}")
    st, shape, offs = v["dtype"], v["shape"], v["data_offsets"]
    info = DTYPES.get(st) if type(st) is str else None
    if info is None:
        raise bad(f"unknown dtype {st!r}; valid dtypes are: {', '.join(DTYPES)}")
    if type(shape) is not list:
        raise bad(f"shape must be a list of non-negative integers, got {shape!r}")
    count = 1
    for d in shape:
        if type(d) is not int or d < 0:
            raise bad(f"shape must be a list of non-negative integers, got {shape!r}")
        count *= d  # NOTE: Python ints: a product that would overflow 64 bits is just a big number
    if type(offs) is not list or len(offs) != 2 or type(offs[0]) is not int or type(offs[1]) is not int \
            or not 0 <= offs[0] <= offs[1]:
        raise bad(f"data_offsets must be [begin, end] with 0 <= begin <= end, got {offs!r}")
    nbytes = count * info[0]
    if count == 0 and shape and _too_big(shape, info[0]):
        raise bad(f"shape {shape} has no elements, but its other dimensions span 2**63 bytes or more, "
                  "which no array can represent")
    begin, end = offs
    if nbytes != end - begin:
        over = " (the element count overflows 64 bits)" if nbytes >= 1 << 64 else ""
        raise bad(f"shape {shape} of {st} is {nbytes} bytes{over}, but data_offsets [{begin}, {end}] "
                  f"span {end - begin} bytes")
    if end > data_size:
        raise bad(f"data_offsets [{begin}, {end}] run past the end of the data region ({data_size} bytes)")
    return (name, st, tuple(shape), begin, end, off)


def _too_big(shape: Any, itemsize: int) -> bool:
    # NOTE: found by scripts/fuzz: NumPy refuses a zero-size shape like (2**63, 0) or (2**40, 2**40, 0)
    n = itemsize
    for d in shape:
        n *= d or 1
    return n >= 1 << 63


def _check_layout(path: PathLike, entries: list[tuple], base: int, data_size: int) -> None:
    expected, prev = 0, None
    for e in sorted(entries, key=lambda e: (e[3], e[4])):
        name, begin, end = e[0], e[3], e[4]
        if begin < expected:
            raise FormatError(path, base + begin, f"tensor {name!r} (bytes {begin}..{end}) overlaps tensor "
                                                  f"{prev[0]!r} (bytes {prev[3]}..{prev[4]})")
        if begin > expected:
            raise FormatError(path, base + expected, f"bytes {expected}..{begin} of the data region belong to "
                                                     f"no tensor (before {name!r})")
        expected, prev = end, e
    if expected != data_size:
        raise FormatError(path, base + expected, f"{data_size - expected} bytes after the last tensor belong "
                                                 "to no tensor")


# --- reading -----------------------------------------------------------------------------------
def _realize(mf: MappedFile, info: TensorInfo) -> Any:
    from .._array import build, host_leaf

    if info.type in FLOAT8:
        raw = host_leaf(mf.view(info.offset, info.nbytes, np.dtype(np.uint8), (info.nbytes,)))
        out = build("take", host_leaf(_LUTS[info.type]), raw, axis=0)
        return build("reshape", out, shape=info.shape)
    return host_leaf(mf.view(info.offset, info.nbytes, DTYPES[info.type][1], info.shape))


def _raw(mf: MappedFile, info: TensorInfo) -> np.ndarray:
    return mf.view(info.offset, info.nbytes, np.dtype(np.uint8), (info.nbytes,))


class _Infos(Mapping[str, TensorInfo]):
    """name -> TensorInfo, each made on first request (opening stays proportional to the JSON)."""

    def __init__(self, entries: list[tuple], base: int, path: str) -> None:
        self._entries = {e[0]: e for e in entries}
        self._base, self._path = base, path
        self._made: dict[str, TensorInfo] = {}

    def __getitem__(self, name: str) -> TensorInfo:
        info = self._made.get(name)
        if info is None:
            _, st, shape, begin, end, _ = self._entries[name]
            info = self._made[name] = TensorInfo(name, DTYPES[st][2], st, shape, end - begin, self._base + begin,
                                                 self._path)
        return info

    def __iter__(self) -> Any:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def open_safetensors(fmt: Format, path: PathLike) -> LazyFile:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if n <= HEADER_CAP and 8 + n <= size:  # NOTE: never read a length we have not checked
                head += f.read(n)
    n, metadata, entries = parse_header(path, head, size)
    infos = _Infos(entries, 8 + n, str(path))
    mf = MappedFile(path, size)
    return LazyFile(path, fmt, metadata, infos, lambda i: _realize(mf, i), lambda i: _raw(mf, i))


# --- writing -----------------------------------------------------------------------------------
def _st_dtype(name: str, x: Any) -> str:
    if isinstance(x, np.ndarray):
        st = _BY_NP.get(x.dtype.newbyteorder("<")) if x.dtype.kind in "iuf" else _BY_NP.get(x.dtype)
        if st is None and x.dtype.kind == "b":
            st = "BOOL"
    else:
        st = _BY_OX.get(getattr(x, "dtype", None))
    if st is None:
        raise TypeError(f"tensor {name!r} has dtype {getattr(x, 'dtype', type(x).__name__)}, which safetensors "
                        f"cannot store; valid dtypes are: {', '.join(d.name for d in _BY_OX)} "
                        "(and NumPy ml_dtypes float8_e4m3fn / float8_e5m2)")
    return st


def save_safetensors(path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None,
                     progress: Callable[[str, int], None] | None = None) -> None:
    from .._array import Array
    from .._io import host_array

    if metadata is not None:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"safetensors metadata must map str to str; {bad[0]!r} maps to "
                            f"{type(metadata[bad[0]]).__name__}. Convert values with str() or json.dumps().")
    items = []
    for i, (name, x) in enumerate(tensors.items()):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved in safetensors and cannot name a tensor")
        if not isinstance(x, (np.ndarray, Array)):
            x = host_array(x)
        st = _st_dtype(name, x)
        items.append((-DTYPES[st][0], i, name, st, tuple(int(d) for d in x.shape), x))
    # NOTE: larger items first keeps every tensor aligned to its itemsize (the data region
    # starts 8-byte aligned thanks to the header padding below)
    items.sort(key=lambda t: (t[0], t[1]))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    off = 0
    for _, _, name, st, shape, _ in items:
        nb = math.prod(shape) * DTYPES[st][0]
        header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hb += b" " * (-(8 + len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, name, st, shape, x in items:
            a = host_array(x)
            want = DTYPES[st][1]
            if a.dtype != want:
                a = a.astype(want)
            a = np.ascontiguousarray(a).reshape(-1)
            if a.size:
                f.write(memoryview(a.view(np.uint8)))
            if progress is not None:
                progress(name, a.nbytes)
        f.flush()
        os.fsync(f.fileno())


class Safetensors(Format):
    """The safetensors format (Hugging Face): ``oxcore.load("model.safetensors")``.

    Opening reads the 8-byte header length and the JSON header only; tensors are zero-copy
    views on a read-only mmap, made into Arrays when you index the mapping.

    Example:
        >>> import oxcore as ox, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> ox.save(p, {"w": ox.ones((2, 2), dtype=ox.bfloat16)})
        >>> f = ox.load(p)
        >>> f.format, f["w"].dtype, f.info("w").offset % 8
        ('safetensors', oxcore.bfloat16, 0)
    """

    name = "safetensors"
    suffixes = (".safetensors",)
    description = "Hugging Face safetensors (built in): zero-copy mmap, sharded checkpoints"

    def sniff(self, path: PathLike, head_bytes: bytes) -> bool:
        if len(head_bytes) < 9:
            return False
        (n,) = struct.unpack_from("<Q", head_bytes, 0)
        return 2 <= n < MAGIC_MAX and head_bytes[8:9] == b"{"

    def open(self, path: PathLike) -> LazyFile:
        return open_safetensors(self, path)

    def save(self, path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None, *,
             progress: Callable[[str, int], None] | None = None) -> None:
        """Write tensors (streamed, one at a time) with str -> str metadata; ``progress(name, nbytes)``
        is called after each tensor."""
        save_safetensors(path, tensors, metadata, progress)
