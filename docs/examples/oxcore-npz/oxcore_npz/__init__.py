"""oxcore-npz: NumPy ``.npz`` archives through ``oxcore.load`` and ``oxcore.save``.

The tutorial's third plugin (docs/plugins/tutorial.md). ``open`` reads the zip directory and
each member's ``.npy`` header, nothing else. An uncompressed member (``np.savez``) becomes a
zero-copy view of the memory-mapped file; a compressed one (``np.savez_compressed``) is
inflated when you index it. NumPy cannot name bfloat16 in an ``.npy`` header (it writes
``<V2``), so ``save`` lists bfloat16 tensors, with the metadata, in a ``__oxcore__.json``
member that ``np.load`` users can ignore.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import struct
import zipfile
from typing import Any, Mapping

import ml_dtypes
import numpy as np
from oxcore.extend import DTYPES, Format, FormatError, LazyFile, TensorInfo, hookimpl, host_array

OXCORE_PLUGIN_API = 1
__version__ = "0.1.0"

SIDECAR = "__oxcore__.json"
SIDECAR_CAP = 1 << 20  # bytes; real sidecars are tiny
MAX_RATIO = 1100  # NOTE: deflate cannot expand more than ~1032x; a bigger claim is a zip bomb
BF16 = np.dtype(ml_dtypes.bfloat16)
BY_NUMPY = {d.numpy: d for d in DTYPES}


class Npz(Format):
    name = "npz"
    suffixes = (".npz",)
    description = "NumPy .npz archives (np.savez, np.savez_compressed)"

    def sniff(self, path, head):
        # a zip archive whose first member is an .npy file (or a name too long to see)
        if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
            return False
        (n,) = struct.unpack_from("<H", head, 26)
        return 30 + n > len(head) or head[30:30 + n].endswith(b".npy")

    def open(self, path):
        size = os.path.getsize(path)
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise FormatError(path, 0, f"not a readable zip archive: {e}") from None
        with zf, open(path, "rb") as f:
            members = zf.infolist()
            if len({m.filename for m in members}) != len(members):
                raise FormatError(path, 0, "the archive holds two members of the same name")
            extra = read_sidecar(path, zf)
            bf16 = set(extra.get("bfloat16", ()))
            infos, layout = {}, {}  # layout: name -> (stored NumPy dtype, Fortran order, deflated)
            for m in members:
                if m.filename.endswith(".npy"):
                    info, layout[info_name(m)] = read_member(path, f, zf, m, size, info_name(m) in bf16)
                    infos[info.name] = info
        mapped: list[mmap.mmap] = []  # one read-only map per opened file, made on first use

        def buffer():
            if not mapped:
                with open(path, "rb") as fh:
                    mapped.append(mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ))
            return mapped[0]

        def raw(info):
            return np.frombuffer(buffer(), np.uint8, info.nbytes, info.offset) if info.nbytes else \
                np.empty(0, np.uint8)

        def realize(info):
            from oxcore import asarray

            stored, fortran, deflated = layout[info.name]
            if deflated:
                with zipfile.ZipFile(path) as z, z.open(info.name + ".npy") as m:
                    data = np.lib.format.read_array(m, allow_pickle=False)
            elif info.nbytes == 0:
                data = np.empty(info.shape, stored)
            else:
                data = np.frombuffer(buffer(), stored, math.prod(info.shape), info.offset)
                data = data.reshape(info.shape, order="F" if fortran else "C")
            if not data.dtype.isnative:
                data = data.astype(data.dtype.newbyteorder("="))  # NOTE: big-endian files: one copy
            return asarray(data.view(info.dtype.numpy))

        return LazyFile(path, self, extra.get("metadata", {}), infos, realize, raw)

    def save(self, path, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None):
        bf16 = []
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, x in tensors.items():
                a = host_array(x)
                if a.dtype == BF16:
                    bf16.append(name)
                with zf.open(name + ".npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, a, allow_pickle=False)
            if bf16 or metadata:  # NOTE: last, so the first member stays an .npy (see sniff)
                zf.writestr(SIDECAR, json.dumps({"metadata": dict(metadata or {}), "bfloat16": bf16}))


def info_name(m: zipfile.ZipInfo) -> str:
    return m.filename[:-4]  # "w.npy" holds tensor "w"


def read_member(path, f, zf: zipfile.ZipFile, m: zipfile.ZipInfo, size: int, bf16: bool):
    """Check one ``.npy`` member against the file; ``(TensorInfo, layout)`` from its header alone."""
    f.seek(m.header_offset)
    local = f.read(30)
    if len(local) < 30 or not local.startswith(b"PK\x03\x04"):
        raise FormatError(path, m.header_offset, f"member {m.filename!r} has no local header")
    start = m.header_offset + 30 + sum(struct.unpack_from("<HH", local, 26))
    if start + m.compress_size > size:
        raise FormatError(path, start, f"member {m.filename!r} ({m.compress_size} bytes) runs past the end "
                                       f"of the file ({size} bytes)")
    deflated = m.compress_type == zipfile.ZIP_DEFLATED
    if deflated:
        if m.file_size > MAX_RATIO * m.compress_size + 4096:
            raise FormatError(path, start, f"member {m.filename!r} claims {m.file_size} bytes from "
                                           f"{m.compress_size} compressed: not a deflate stream")
        with zf.open(m) as z:
            head = io.BytesIO(z.read(min(m.file_size, 65536)))
        dtype, shape, fortran = read_npy_header(path, head, start)
        offset, nbytes, body = start, m.compress_size, m.file_size - head.tell()
    elif m.compress_type == zipfile.ZIP_STORED:
        f.seek(start)
        dtype, shape, fortran = read_npy_header(path, f, start)
        offset = f.tell()
        nbytes = body = start + m.compress_size - offset
    else:
        raise FormatError(path, m.header_offset, f"member {m.filename!r} uses compression {m.compress_type}; "
                                                 "valid: stored (0) or deflated (8)")
    native = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
    ox_dtype = BY_NUMPY[BF16] if bf16 and dtype.str == "|V2" else BY_NUMPY.get(native)
    if ox_dtype is None:
        raise FormatError(path, start, f"member {m.filename!r} has dtype {dtype}, which oxcore does not "
                                       f"have; valid: {', '.join(d.name for d in DTYPES)}")
    if math.prod(shape) * dtype.itemsize != body:
        raise FormatError(path, offset, f"member {m.filename!r} holds {body} bytes, but shape {shape} "
                                        f"of {dtype} needs {math.prod(shape) * dtype.itemsize}")
    info = TensorInfo(info_name(m), ox_dtype, dtype.str, tuple(shape), nbytes, offset, str(path))
    return info, (dtype, fortran, deflated)


def read_npy_header(path, f, at: int) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, fortran_order) of the ``.npy`` header at the file position."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as e:  # NOTE: NumPy validates the header and caps its size itself
        raise FormatError(path, at, f"bad .npy header: {e}") from None
    if dtype.hasobject:
        raise FormatError(path, at, "object arrays (pickles) are refused")
    return dtype, shape, fortran


def read_sidecar(path, zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        m = zf.getinfo(SIDECAR)
    except KeyError:
        return {}
    if m.file_size > SIDECAR_CAP:
        raise FormatError(path, m.header_offset, f"{SIDECAR} is {m.file_size} bytes, over the "
                                                 f"{SIDECAR_CAP}-byte limit")
    try:
        extra = json.loads(zf.read(m))
    except (ValueError, zipfile.BadZipFile) as e:
        raise FormatError(path, m.header_offset, f"{SIDECAR} is not valid JSON: {e}") from None
    if not isinstance(extra, dict) or not isinstance(extra.get("metadata", {}), dict):
        raise FormatError(path, m.header_offset, f'{SIDECAR} must be an object with a "metadata" object')
    return extra


@hookimpl
def oxcore_register_formats(register):
    register(Npz())
