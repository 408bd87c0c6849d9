"""A GGUF v2/v3 header parser that trusts nothing.

Layout (little-endian): ``"GGUF"``, u32 version, u64 tensor_count, u64 kv_count; kv_count
key/value pairs (string key, u32 value type, value); tensor_count tensor infos (string name,
u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset); padding to the
alignment (``general.alignment``, default 32); the data section.

Every count and length is checked against the bytes left in the file *before* it is used to
read or allocate, and every problem raises ``FormatError(path, offset, reason)``. gguf-py's
``GGUFReader`` trusts counts and builds one NumPy array per value, which is both unsafe on
hostile files and slow on tokenizer arrays (~20 s for Gemma's 262k tokens).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from oxcore.extend import FormatError

from . import _types as T

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
# NOTE: the GGUF spec: a tensor name "must be at most 64 bytes long" (ggml keeps names in a
# char[GGML_MAX_NAME = 64] field); longer names would be cut or refused by llama.cpp
MAX_NAME = 64
MAX_DEPTH = 4  # nested metadata arrays
DEFAULT_ALIGNMENT = 32
_MIN_SIZE = {T.STRING: 8, T.ARRAY: 12, **{k: v.itemsize for k, v in T.SCALAR.items()}}
# NOTE: explicit struct codes: NumPy's dtype.char for uint64 is 'L', which struct's '<' reads as 4 bytes
_FMT = {T.UINT8: "<B", T.INT8: "<b", T.UINT16: "<H", T.INT16: "<h", T.UINT32: "<I", T.INT32: "<i",
        T.FLOAT32: "<f", T.BOOL: "<?", T.UINT64: "<Q", T.INT64: "<q", T.FLOAT64: "<d"}


class GGUFMetadata(dict):
    """GGUF metadata: a dict of key -> value that remembers each value's GGUF type.

    ``types[key]`` is ``(value_type, element_type)`` (element_type for arrays, else None), so
    writing the metadata back produces the same types (llama.cpp checks them).
    """

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.types: dict[str, tuple[int, int | None]] = {}


@dataclass
class TensorEntry:
    name: str
    type: T.GGMLType
    dims: tuple[int, ...]  # GGUF order: innermost first
    offset: int  # relative to the data section
    nbytes: int
    info_offset: int  # where the tensor info starts in the file

    @property
    def shape(self) -> tuple[int, ...]:
        """Row-major shape (outermost first), the way NumPy and oxcore see it."""
        return tuple(reversed(self.dims))


@dataclass
class Header:
    version: int
    metadata: GGUFMetadata
    tensors: list[TensorEntry]
    alignment: int
    data_start: int
    size: int
    kv_offsets: dict[str, int] = field(default_factory=dict)


class _Reader:
    def __init__(self, path: Any, buf: Any, size: int) -> None:
        self.path, self.buf, self.size, self.pos = str(path), buf, size, 0

    def fail(self, why: str, at: int | None = None) -> FormatError:
        return FormatError(self.path, self.pos if at is None else at, why)

    def need(self, n: int, what: str, at: int | None = None) -> None:
        left = self.size - self.pos
        if n > left:
            raise self.fail(f"{what} needs {n} bytes, but only {left} remain before the end of the file "
                            f"({self.size} bytes)", at)

    def scalar(self, vt: int, what: str) -> Any:
        n = T.SCALAR[vt].itemsize
        self.need(n, what)
        (v,) = struct.unpack_from(_FMT[vt], self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.scalar(T.UINT32, what)

    def u64(self, what: str) -> int:
        return self.scalar(T.UINT64, what)

    def string(self, what: str, strict: bool) -> str:
        at = self.pos
        n = self.u64(f"length of {what}")
        self.need(n, what, at)  # NOTE: blame the length field, which is what lies
        b = self.buf[self.pos:self.pos + n]
        try:
            s = b.decode("utf-8") if strict else b.decode("utf-8", "surrogateescape")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not valid UTF-8 ({e.reason})", self.pos + e.start) from None
        self.pos += n
        return s

    def value(self, vt: int, what: str, depth: int = 0) -> tuple[Any, int | None]:
        if vt in T.SCALAR:
            v = self.scalar(vt, what)
            return (bool(v) if vt == T.BOOL else v), None
        if vt == T.STRING:
            return self.string(what, strict=False), None
        if vt != T.ARRAY:
            raise self.fail(f"{what} has unknown value type {vt}; valid types are 0..12 "
                            f"({', '.join(T.VALUE_NAMES)})", self.pos - 4)
        if depth >= MAX_DEPTH:
            raise self.fail(f"{what} nests arrays more than {MAX_DEPTH} deep")
        at = self.pos
        et = self.u32(f"element type of {what}")
        if et not in _MIN_SIZE:
            raise self.fail(f"{what} has unknown element type {et}; valid types are 0..12", at)
        count = self.u64(f"element count of {what}")
        # NOTE: every element takes at least _MIN_SIZE bytes: refuse counts the file cannot hold
        # before allocating or looping
        if count * _MIN_SIZE[et] > self.size - self.pos:
            raise self.fail(f"{what} claims {count} elements of type {T.VALUE_NAMES[et]}, which cannot fit "
                            f"before the end of the file ({self.size - self.pos} bytes left)", at + 4)
        if et in T.SCALAR:
            dt = T.SCALAR[et]
            arr = (np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).copy() if count
                   else np.empty(0, dt))
            self.pos += count * dt.itemsize
            return (arr.astype(bool) if et == T.BOOL else arr), et
        if et == T.STRING:
            return self._strings(count, what), et
        return [self.value(T.ARRAY, f"{what}[{i}]", depth + 1)[0] for i in range(count)], et

    def _strings(self, count: int, what: str) -> "StringArray":
        # NOTE: the hot loop of opening a model (262k tokenizer strings): only walk the lengths
        # here (StringArray decodes an item when it is read), and let struct's own bounds check
        # stop a walk that leaves the file; the careful walk below then says where and why.
        buf, pos = self.buf, self.pos
        starts = array("Q")
        unpack, append = struct.Struct("<Q").unpack_from, starts.append
        try:
            for _ in range(count):
                (n,) = unpack(buf, pos)
                pos += 8
                append(pos)
                pos += n
        except (struct.error, OverflowError):  # NOTE: a lying length can push pos past ssize_t
            pos = self.size + 1
        if pos > self.size:
            self._strings_slow(count, what)
        self.pos = pos
        return StringArray(buf, starts, pos)

    def _strings_slow(self, count: int, what: str) -> None:
        size, pos = self.size, self.pos
        for i in range(count):
            if size - pos < 8:
                raise self.fail(f"{what}[{i}]: a string length needs 8 bytes, but only {size - pos} remain "
                                "before the end of the file", pos)
            (n,) = struct.unpack_from("<Q", self.buf, pos)
            pos += 8
            if n > size - pos:
                raise self.fail(f"{what}[{i}]: string of {n} bytes runs past the end of the file "
                                f"({size - pos} bytes left)", pos - 8)
            pos += n
        raise AssertionError("unreachable: the fast walk failed but the careful one did not")


class StringArray(Sequence):
    """A GGUF array of strings, decoded item by item on access (UTF-8, undecodable bytes kept
    as surrogate escapes). Compares equal to a list of the same strings."""

    def __init__(self, buf: Any, starts: array, end: int) -> None:
        self._buf, self._starts, self._end = buf, starts, end

    def __len__(self) -> int:
        return len(self._starts)

    def _one(self, i: int) -> str:
        a = self._starts[i]
        e = self._starts[i + 1] - 8 if i + 1 < len(self._starts) else self._end
        return self._buf[a:e].decode("utf-8", "surrogateescape")

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        n = len(self._starts)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} strings")
        return self._one(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, StringArray)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def drop_pages(self) -> bool:
        """Drop the resident pages of these strings from a read-only file mapping (Linux
        ``MADV_DONTNEED``); True when advised. Nothing is lost: they stay in the page cache
        and fault back in when read. For a tokenizer built once from 262k strings, whose
        ~8 MiB of header pages would otherwise count in RSS all the while the model runs.

        Example:
            >>> StringArray(b"\\x01\\0\\0\\0\\0\\0\\0\\0a", array("Q", [8]), 9).drop_pages()  # bytes, not a mapping
            False
        """
        import mmap
        import sys

        buf = self._buf
        if not (sys.platform.startswith("linux") and isinstance(buf, mmap.mmap) and len(self._starts)):
            return False
        page = mmap.PAGESIZE
        start = (self._starts[0] - 8) // page * page  # NOTE: madvise wants a page-aligned start
        stop = min(self._end, len(buf))
        # NOTE: the pages at both ends may hold other keys too: dropping them only costs a refault
        buf.madvise(mmap.MADV_DONTNEED, start, stop - start)
        return True

    def __repr__(self) -> str:
        head = ", ".join(repr(self._one(i)) for i in range(min(3, len(self))))
        return f"StringArray([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


def parse(path: Any, buf: Any, size: int) -> Header:
    """Parse and validate the header of a GGUF file held in ``buf`` (an mmap or bytes)."""
    r = _Reader(path, buf, size)
    r.need(4, "magic")
    magic = bytes(buf[0:4])
    if magic != MAGIC:
        raise r.fail(f"bad magic {magic!r}: a GGUF file starts with {MAGIC!r}", 0)
    r.pos = 4
    version = r.u32("version")
    if version not in VERSIONS:
        if version and version & 0xFFFF == 0:
            why = f"version field reads {version:#x}: a big-endian GGUF file, which is not supported"
        elif version == 1:
            why = "GGUF version 1 is not supported (its counts are 32-bit); re-convert the model"
        else:
            why = f"unsupported GGUF version {version}; supported versions are 2 and 3"
        raise r.fail(why, 4)
    n_tensors = r.u64("tensor count")
    n_kv = r.u64("metadata count")
    left = size - r.pos
    # NOTE: a key/value takes >= 13 bytes, a tensor info >= 24: refuse counts the file cannot hold
    if n_kv * 13 > left:
        raise r.fail(f"metadata count {n_kv} cannot fit before the end of the file ({left} bytes left)", 16)
    if n_tensors * 24 > left:
        raise r.fail(f"tensor count {n_tensors} cannot fit before the end of the file ({left} bytes left)", 8)

    meta = GGUFMetadata()
    kv_offsets: dict[str, int] = {}
    for i in range(n_kv):
        at = r.pos
        key = r.string(f"metadata key #{i}", strict=True)
        if key in meta:
            raise r.fail(f"duplicate metadata key {key!r}", at)
        vt = r.u32(f"value type of {key!r}")
        meta[key], et = r.value(vt, f"metadata {key!r}")
        meta.types[key] = (vt, et)
        kv_offsets[key] = at

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in meta:
        a = meta["general.alignment"]
        if meta.types["general.alignment"][0] != T.UINT32 or a == 0 or a & (a - 1):
            raise r.fail(f"general.alignment must be a UINT32 power of two, got {a!r}",
                         kv_offsets["general.alignment"])
        alignment = a

    entries: list[TensorEntry] = []
    names: set[str] = set()
    for i in range(n_tensors):
        at = r.pos
        name = r.string(f"name of tensor #{i}", strict=True)
        if len(name.encode("utf-8")) > MAX_NAME:
            raise r.fail(f"tensor name {name[:80]!r} is {len(name.encode('utf-8'))} bytes; GGUF allows at most "
                         f"{MAX_NAME}", at)
        if name in names:
            raise r.fail(f"duplicate tensor name {name!r}", at)
        names.add(name)
        nd = r.u32(f"dimension count of tensor {name!r}")
        if nd > MAX_DIMS:
            raise r.fail(f"tensor {name!r} has {nd} dimensions; GGUF allows at most {MAX_DIMS}", r.pos - 4)
        dims = tuple(r.u64(f"dimension {j} of tensor {name!r}") for j in range(nd))
        tid = r.u32(f"type of tensor {name!r}")
        t = T.BY_ID.get(tid)
        if t is None:
            raise r.fail(f"tensor {name!r} has unknown ggml type {tid}; known types are: "
                         f"{', '.join(f'{k} ({v.name})' for k, v in T.BY_ID.items())}", r.pos - 4)
        off = r.u64(f"offset of tensor {name!r}")
        if (dims[0] if dims else 1) % t.block_size:  # NOTE: a 0-d tensor is one row of length 1
            raise r.fail(f"tensor {name!r}: row length {dims[0] if dims else '1 (a 0-d tensor)'} is not a "
                         f"multiple of the {t.name} block size {t.block_size}", at)
        if 0 in dims and math.prod(d or 1 for d in dims) * t.type_size >= 1 << 63:
            # NOTE: found by scripts/fuzz: NumPy cannot even make an empty array of shape (2**63, 0)
            raise r.fail(f"tensor {name!r} has no elements, but its other dimensions {dims} span 2**63 bytes "
                         "or more, which no array can represent", at)
        # NOTE: Python ints, so a product that overflows 64 bits is just a number too big for the file
        nb = math.prod(dims) // t.block_size * t.type_size
        if off % alignment:
            raise r.fail(f"tensor {name!r}: offset {off} is not a multiple of the alignment {alignment}", at)
        entries.append(TensorEntry(name, t, dims, off, nb, at))

    data_start = -(-r.pos // alignment) * alignment
    room = size - data_start
    for e in entries:
        if e.offset + e.nbytes > room:
            over = " (the element count overflows 64 bits)" if math.prod(e.dims) >= 1 << 64 else ""
            raise r.fail(f"tensor {e.name!r}: {e.nbytes} bytes{over} at data offset {e.offset} run past the end "
                         f"of the file (data section holds {max(room, 0)} bytes from offset {data_start})",
                         e.info_offset)
    prev = None
    for e in sorted((e for e in entries if e.nbytes), key=lambda e: e.offset):
        if prev is not None and e.offset < prev.offset + prev.nbytes:
            raise r.fail(f"tensor {e.name!r} (bytes {e.offset}..{e.offset + e.nbytes}) overlaps tensor "
                         f"{prev.name!r} (bytes {prev.offset}..{prev.offset + prev.nbytes})",
                         data_start + e.offset)
        prev = e
    return Header(version, meta, entries, alignment, data_start, size, kv_offsets)
