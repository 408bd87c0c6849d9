"""The GGUF ``Format``: lazy reading over one mmap (the core's ``MappedFile``), streaming writes through gguf-py's GGUFWriter."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
from oxcore.extend import Format, LazyFile, MappedFile, TensorInfo, host_array

from . import _types as T
from ._parse import MAX_DIMS, MAX_NAME, GGUFMetadata, StringArray, parse

#: --quantize choices: which tensors get quantized is decided by ``_wants_quant``
QUANTIZE = ("Q8_0", "Q4_0")
_FROM_OX = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
            "int8": "I8", "int16": "I16", "int32": "I32", "int64": "I64"}


class GGUFFile(LazyFile):
    """A GGUF file opened lazily. ``version`` is the GGUF version, ``alignment`` the data alignment."""

    version: int = 0
    alignment: int = 32


def open_gguf(fmt: Format, path: Any) -> GGUFFile:
    size = os.path.getsize(path)
    # NOTE: the core's MappedFile: change detection at every eval, and load(mmap=False) support
    mf = MappedFile(path, size)
    hdr = parse(path, mf.get(), size)
    infos = {}
    for e in hdr.tensors:
        plain = T.PLAIN.get(e.type.name)
        from oxcore import dtype as as_dtype, float32

        infos[e.name] = TensorInfo(e.name, as_dtype(plain) if plain is not None else float32, e.type.name, e.shape,
                                   e.nbytes, hdr.data_start + e.offset, str(path), quantized=plain is None)

    def realize(info: TensorInfo) -> Any:
        from oxcore import float32
        from oxcore.extend import build, host_leaf

        plain = T.PLAIN.get(info.type)
        if plain is not None:
            return host_leaf(mf.view(info.offset, info.nbytes, plain, info.shape))
        if 0 in info.shape:  # NOTE: found by scripts/fuzz: nothing to dequantize (and no kernel for empty TQ1_0)
            return host_leaf(np.zeros(info.shape, np.float32))
        raw = host_leaf(mf.view(info.offset, info.nbytes, np.dtype(np.uint8), (info.nbytes,)))
        return build("ggml_dequantize", raw, ggml_type=info.type, shape=info.shape, dtype=float32)

    def raw(info: TensorInfo) -> np.ndarray:
        return mf.view(info.offset, info.nbytes, np.dtype(np.uint8), (info.nbytes,))

    lf = GGUFFile(path, fmt, hdr.metadata, infos, realize, raw)
    lf.version, lf.alignment = hdr.version, hdr.alignment
    return lf


# --- writing -----------------------------------------------------------------------------------
def _value_type(key: str, v: Any) -> tuple[int, int | None]:
    def scalar(x: Any) -> int:
        if isinstance(x, (bool, np.bool_)):
            return T.BOOL
        if isinstance(x, (int, np.integer)):
            x = int(x)
            if 0 <= x < 1 << 32:
                return T.UINT32
            if -(1 << 31) <= x < 0:
                return T.INT32
            return T.INT64 if -(1 << 63) <= x < 1 << 63 else T.UINT64
        if isinstance(x, (float, np.floating)):
            return T.FLOAT32
        if isinstance(x, str):
            return T.STRING
        raise TypeError(f"GGUF metadata {key!r}: cannot store {type(x).__name__}; valid values are bool, int, "
                        "float, str and non-empty lists of one of them")

    if isinstance(v, np.ndarray):
        for vt, dt in T.SCALAR.items():
            if dt == v.dtype.newbyteorder("<") and vt != T.BOOL:
                return T.ARRAY, vt
        if v.dtype == np.bool_:
            return T.ARRAY, T.BOOL
    if isinstance(v, (list, tuple, StringArray, np.ndarray)):
        if len(v) == 0:
            raise TypeError(f"GGUF metadata {key!r}: GGUF cannot store an empty array")
        kinds = {scalar(x) for x in v}
        if kinds <= {T.UINT32, T.INT32}:
            return T.ARRAY, (T.INT32 if T.INT32 in kinds else T.UINT32)
        if len(kinds) != 1:
            raise TypeError(f"GGUF metadata {key!r}: array items must share one type, got "
                            f"{', '.join(T.VALUE_NAMES[k] for k in kinds)}")
        return T.ARRAY, kinds.pop()
    return scalar(v), None


def _plain_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, StringArray):
        return list(v)
    return v


def _still_quantized(x: Any) -> tuple[np.ndarray, str] | None:
    """(raw bytes, type) of an unevaluated ggml_dequantize of stored bytes, else None."""
    node = getattr(x, "_node", None)
    if node is None or node.op != "ggml_dequantize" or node.attrs.get("dtype") is None:
        return None
    src = node.inputs[0] if node.inputs else None
    if src is None or src.buf is None or node.attrs["dtype"].name != "float32":
        return None
    return src.device.to_numpy(src.buf), node.attrs["ggml_type"]


def _wants_quant(name: str, shape: tuple[int, ...], ox_dtype: str, quantize: str | None) -> bool:
    # NOTE: like llama.cpp: matrices get the block type; vectors (norms, biases) stay exact
    return (quantize is not None and len(shape) >= 2 and ox_dtype in ("float32", "float16", "bfloat16", "float64")
            and shape[-1] % 32 == 0)


def save_gguf(path: Any, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None, *,
              quantize: str | None = None, progress: Callable[[str, int], None] | None = None) -> None:
    import gguf
    from oxcore import Array

    if quantize is not None:
        quantize = quantize.upper()
        if quantize not in QUANTIZE:
            raise ValueError(f"Invalid quantize: {quantize!r}. Valid values are: {', '.join(QUANTIZE)} (or None)")
    metadata = metadata or {}
    types = getattr(metadata, "types", {})
    arch = metadata.get("general.architecture", "oxcore")
    w = gguf.GGUFWriter(path, str(arch))
    if "general.alignment" in metadata:
        w.data_alignment = int(metadata["general.alignment"])
    for k, v in metadata.items():
        if k == "general.architecture":
            continue
        vt, et = types.get(k) or _value_type(k, v)
        w.add_key_value(k, _plain_value(v), gguf.GGUFValueType(vt), None if et is None else gguf.GGUFValueType(et))
    plan = []
    for name, x in tensors.items():
        if not isinstance(x, (Array, np.ndarray)):
            x = host_array(x)
        shape = tuple(int(s) for s in x.shape)
        dname = x.dtype.name if isinstance(x, Array) else ("bfloat16" if x.dtype.name == "bfloat16" else
                                                           np.dtype(x.dtype).name)
        if len(shape) > MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {len(shape)} dimensions; GGUF allows at most {MAX_DIMS}")
        if len(name.encode("utf-8")) > MAX_NAME:
            raise ValueError(f"tensor name {name!r} is {len(name.encode('utf-8'))} bytes; GGUF allows at most "
                             f"{MAX_NAME} (rename it, e.g. shorten the prefix)")
        kept = _still_quantized(x)
        if kept is not None:  # NOTE: GGUF -> GGUF keeps quantized tensors as they are, bytes copied
            tname, x = kept[1], kept[0]
        elif _wants_quant(name, shape, dname, quantize):
            tname = quantize
        elif dname in _FROM_OX:
            tname = _FROM_OX[dname]
        else:
            raise TypeError(f"tensor {name!r} is {dname}, which GGUF cannot store; valid dtypes are: "
                            f"{', '.join(_FROM_OX)}")
        t = T.BY_NAME[tname]
        nb = T.nbytes(t, shape)
        if tname in ("F32", "F16", "F64", "I8", "I16", "I32", "I64"):
            w.add_tensor_info(name, shape, T.PLAIN[tname].newbyteorder("="), nb)
        else:  # NOTE: gguf-py takes block types (and BF16) as uint8 byte shapes
            bshape = shape[:-1] + (shape[-1] // t.block_size * t.type_size,) if shape else (t.type_size,)
            w.add_tensor_info(name, bshape, np.dtype(np.uint8), nb, raw_dtype=gguf.GGMLQuantizationType(t.id))
        plan.append((name, x, t, shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, x, t, shape in plan:
        a = host_array(x)
        if a.dtype == np.uint8 and t.name not in T.PLAIN:
            pass  # stored bytes kept as they are
        elif t.name in ("Q8_0", "Q4_0"):
            from .quants import quantize as q

            a = q(a.reshape((-1, shape[-1])), t.name)
        else:
            want = T.PLAIN[t.name]
            a = a if a.dtype == want else a.astype(want)
        a = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        w.write_tensor_data(a)
        if progress is not None:
            progress(name, a.nbytes)
    w.close()


class GGUF(Format):
    """GGUF (llama.cpp) v2/v3: metadata, plain tensors zero-copy, block-quantized tensors lazy.

    Indexing a quantized tensor gives a lazy ``ggml_dequantize`` node over the mapped bytes,
    evaluated (bit-identically to gguf-py) only when used. Saving goes through gguf-py's
    ``GGUFWriter``, one tensor at a time; ``quantize="Q8_0"`` or ``"Q4_0"`` quantizes every
    float matrix whose rows are a multiple of 32 (vectors stay exact).

    Example:
        >>> import oxcore as ox, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.gguf")
        >>> ox.save(p, {"w": ox.ones((4, 64))}, {"general.name": "demo"})
        >>> f = ox.load(p)
        >>> f.format, f.info("w").type, f["w"].shape, f.metadata["general.name"]
        ('gguf', 'F32', (4, 64), 'demo')
    """

    name = "gguf"
    suffixes = (".gguf",)
    description = "llama.cpp GGUF v2/v3 (oxcore-io-gguf): ggml quant types, lazy dequantization"

    def __init__(self, quantize: str | None = None) -> None:
        self.quantize = quantize

    def sniff(self, path: Any, head_bytes: bytes) -> bool:
        return head_bytes[:4] == b"GGUF"

    def open(self, path: Any) -> GGUFFile:
        return open_gguf(self, path)

    def broken_files(self) -> list:
        from .testing import gguf_corpus

        return gguf_corpus()

    def valid_files(self) -> list:
        from .testing import gguf_valid_cases

        return gguf_valid_cases()

    def save(self, path: Any, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None, *,
             quantize: str | None = None, progress: Callable[[str, int], None] | None = None) -> None:
        save_gguf(path, tensors, metadata, quantize=quantize or self.quantize, progress=progress)


__all__ = ["GGUF", "GGUFFile", "GGUFMetadata", "save_gguf", "open_gguf", "QUANTIZE"]
