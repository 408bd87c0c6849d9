"""Vectorized NumPy dequantization of ggml block types, bit-identical to ``gguf.quants``.

gguf-py dequantizes 16 rows at a time from Python; here every block of a chunk (~1M values)
goes through a handful of whole-array NumPy operations, written into one preallocated output.
The float32 arithmetic is gguf-py's, operation for operation (``d * sc`` first, then
``(d * sc) * q - dmin * m``; NumPy never fuses a multiply-add), which is what makes the results
bit-identical rather than merely close. Types without a kernel here fall back to gguf-py.

Example:
    >>> import numpy as np
    >>> from oxcore_io_gguf.quants import dequantize, quantize
    >>> w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    >>> q = quantize(w, "Q8_0")
    >>> q.shape, q.dtype
    ((2, 34), dtype('uint8'))
    >>> float(abs(dequantize(q, "Q8_0", (2, 32)) - w).max()) < 0.01
    True
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from . import _types as T

__all__ = ["dequantize", "quantize", "supported"]

_CHUNK = 1 << 18  # values per chunk: temporaries stay in cache, threads get enough chunks
_WORKERS = 2

_U8 = np.uint8


def _f16(b: np.ndarray, at: int) -> np.ndarray:
    """The float16 at byte ``at`` of each block, as float32 of shape (nb, 1)."""
    return b[:, at:at + 2].view("<f2").astype(np.float32)


def _scale(q: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
    """out = d * float32(q). NOTE: casting first then multiplying in place is the same IEEE
    product as gguf-py's ``d * q.astype(float32)``, and faster than a mixed-type multiply."""
    np.copyto(out, q, casting="unsafe")
    np.multiply(out, d, out=out)


def _nib(qs: np.ndarray, out: np.ndarray) -> None:
    """Split bytes (nb, k) into low nibbles -> out[:, :k] and high nibbles -> out[:, k:]."""
    k = qs.shape[1]
    np.bitwise_and(qs, _U8(0x0F), out=out[:, :k])
    np.right_shift(qs, _U8(4), out=out[:, k:])


def _q4_0(b: np.ndarray, out: np.ndarray) -> None:
    q = np.empty((b.shape[0], 32), np.uint8)
    _nib(b[:, 2:], q)
    qi = q.view(np.int8)
    np.subtract(qi, np.int8(8), out=qi)
    _scale(qi, _f16(b, 0), out)


def _q4_1(b: np.ndarray, out: np.ndarray) -> None:
    q = np.empty((b.shape[0], 32), np.uint8)
    _nib(b[:, 4:], q)
    _scale(q, _f16(b, 0), out)
    np.add(out, _f16(b, 2), out=out)


def _q5(b: np.ndarray, qh_at: int) -> np.ndarray:
    q = np.empty((b.shape[0], 32), np.uint8)
    _nib(b[:, qh_at + 4:], q)
    # NOTE: qh is a little-endian u32 whose bit j is value j's fifth bit: unpackbits little
    hb = np.unpackbits(b[:, qh_at:qh_at + 4], axis=1, bitorder="little")
    np.left_shift(hb, _U8(4), out=hb)
    np.bitwise_or(q, hb, out=q)
    return q


def _q5_0(b: np.ndarray, out: np.ndarray) -> None:
    qi = _q5(b, 2).view(np.int8)
    np.subtract(qi, np.int8(16), out=qi)
    _scale(qi, _f16(b, 0), out)


def _q5_1(b: np.ndarray, out: np.ndarray) -> None:
    _scale(_q5(b, 4), _f16(b, 0), out)
    np.add(out, _f16(b, 2), out=out)


def _q8_0(b: np.ndarray, out: np.ndarray) -> None:
    _scale(b[:, 2:].view(np.int8), _f16(b, 0), out)


_SH2 = np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
_SH8 = np.arange(8, dtype=np.uint8).reshape((1, 1, 8, 1))
_SH01 = np.array([0, 4], dtype=np.uint8).reshape((1, 2, 1))


def _crumbs(src: np.ndarray, nb: int, groups: int) -> np.ndarray:
    """2-bit fields: bytes (nb, groups*32) -> (nb, groups, 4, 32), field s of byte k at [.., s, k]."""
    q = np.empty((nb, groups, 4, 32), np.uint8)
    np.right_shift(src.reshape((nb, groups, 1, 32)), _SH2, out=q)
    np.bitwise_and(q, _U8(3), out=q)
    return q


def _bits(src: np.ndarray, nb: int) -> np.ndarray:
    """1-bit fields: bytes (nb, 32) -> (nb, 8, 32), bit j of byte k at [.., j, k]."""
    q = np.empty((nb, 1, 8, 32), np.uint8)
    np.right_shift(src.reshape((nb, 1, 1, 32)), _SH8, out=q)
    np.bitwise_and(q, _U8(1), out=q)
    return q.reshape((nb, 8, 32))


def _q2_k(b: np.ndarray, out: np.ndarray) -> None:
    nb = b.shape[0]
    sc = b[:, :16]
    d, dmin = _f16(b, 80), _f16(b, 82)
    dl = (d * (sc & _U8(0xF)).astype(np.float32)).reshape((nb, 16, 1))
    ml = (dmin * (sc >> _U8(4)).astype(np.float32)).reshape((nb, 16, 1))
    o = out.reshape((nb, 16, 16))
    _scale(_crumbs(b[:, 16:80], nb, 2).reshape((nb, 16, 16)), dl, o)
    np.subtract(o, ml, out=o)


def _q3_k(b: np.ndarray, out: np.ndarray) -> None:
    nb = b.shape[0]
    sc = b[:, 96:108]
    lsc = (sc[:, :8].reshape((nb, 1, 8)) >> _SH01).reshape((nb, 16))
    hsc = (sc[:, 8:].reshape((nb, 1, 4)) >> _SH2.reshape((1, 4, 1))).reshape((nb, 16))
    s = (lsc & _U8(0x0F)) | ((hsc & _U8(0x03)) << _U8(4))
    dl = (_f16(b, 108) * (s.view(np.int8) - np.int8(32)).astype(np.float32)).reshape((nb, 16, 1))
    q = _crumbs(b[:, 32:96], nb, 2).reshape((nb, 8, 32))
    h = _bits(b[:, :32], nb)
    # NOTE: the offset 4 applies where the hmask bit is 0: q = ql - 4 * (1 - bit)
    np.bitwise_xor(h, _U8(1), out=h)
    np.left_shift(h, _U8(2), out=h)
    qi = q.view(np.int8)
    np.subtract(qi, h.view(np.int8), out=qi)
    _scale(qi.reshape((nb, 16, 16)), dl, out.reshape((nb, 16, 16)))


def _scale_min_k4(sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nb = sc.shape[0]
    s = sc.reshape((nb, 3, 4))
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    scale = np.concatenate([d & _U8(0x3F), (md & _U8(0x0F)) | ((d >> _U8(2)) & _U8(0x30))], axis=-1)
    mins = np.concatenate([m & _U8(0x3F), (md >> _U8(4)) | ((m >> _U8(2)) & _U8(0x30))], axis=-1)
    return scale, mins


def _k4_scales(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nb = b.shape[0]
    sc, m = _scale_min_k4(b[:, 4:16])
    d = (_f16(b, 0) * sc.astype(np.float32)).reshape((nb, 8, 1))
    dm = (_f16(b, 2) * m.astype(np.float32)).reshape((nb, 8, 1))
    return d, dm


def _k4_nibbles(qs: np.ndarray, nb: int) -> np.ndarray:
    """(nb, 128) bytes -> (nb, 4, 64): per 32-byte chunk, its low nibbles then its high ones."""
    q = np.empty((nb, 4, 64), np.uint8)
    qs = qs.reshape((nb, 4, 32))
    np.bitwise_and(qs, _U8(0x0F), out=q[:, :, :32])
    np.right_shift(qs, _U8(4), out=q[:, :, 32:])
    return q


def _q4_k(b: np.ndarray, out: np.ndarray) -> None:
    nb = b.shape[0]
    d, dm = _k4_scales(b)
    o = out.reshape((nb, 8, 32))
    _scale(_k4_nibbles(b[:, 16:], nb).reshape((nb, 8, 32)), d, o)
    np.subtract(o, dm, out=o)


def _q5_k(b: np.ndarray, out: np.ndarray) -> None:
    nb = b.shape[0]
    d, dm = _k4_scales(b)
    q = _k4_nibbles(b[:, 48:], nb).reshape((nb, 8, 32))
    h = _bits(b[:, 16:48], nb)
    np.left_shift(h, _U8(4), out=h)
    np.bitwise_or(q, h, out=q)
    o = out.reshape((nb, 8, 32))
    _scale(q, d, o)
    np.subtract(o, dm, out=o)


def _q6_k(b: np.ndarray, out: np.ndarray) -> None:
    nb = b.shape[0]
    d = (_f16(b, 208) * b[:, 192:208].view(np.int8).astype(np.float32)).reshape((nb, 16, 1))
    q = np.empty((nb, 2, 2, 64), np.uint8)
    np.right_shift(b[:, :128].reshape((nb, 2, 1, 64)), _SH01.reshape((1, 1, 2, 1)), out=q)
    np.bitwise_and(q, _U8(0x0F), out=q)
    h = _crumbs(b[:, 128:192], nb, 2)
    np.left_shift(h, _U8(4), out=h)
    q = q.reshape((nb, 8, 32))
    np.bitwise_or(q, h.reshape((nb, 8, 32)), out=q)
    qi = q.view(np.int8)
    np.subtract(qi, np.int8(32), out=qi)
    _scale(qi.reshape((nb, 16, 16)), d, out.reshape((nb, 16, 16)))


KERNELS: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
    "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0, "Q2_K": _q2_k,
    "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k,
}
_POOL: ThreadPoolExecutor | None = None


def supported(ggml_type: str) -> bool:
    """Whether ``dequantize`` handles this type (ours, plain types, or gguf-py's fallback)."""
    if ggml_type in KERNELS or ggml_type in T.PLAIN:
        return True
    try:
        from gguf.quants import _type_traits  # type: ignore[attr-defined]
        from gguf.constants import GGMLQuantizationType

        return GGMLQuantizationType[ggml_type] in _type_traits
    except (ImportError, KeyError):
        return False


def dequantize(raw: np.ndarray, ggml_type: str | int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Dequantize ggml block bytes to float32, bit-identical to ``gguf.quants.dequantize``.

    Args:
        raw: the stored bytes (uint8, any shape; e.g. gguf-py's ``(rows, row_bytes)``).
        ggml_type: type name or id (``"Q4_K"``, ``12``).
        shape: the logical shape; default: ``raw``'s shape with the last axis in values.

    Returns:
        A new float32 array of ``shape``.
    """
    t = T.ggml_type(ggml_type)
    raw = np.ascontiguousarray(raw).view(np.uint8)
    if shape is None:
        shape = raw.shape[:-1] + (raw.shape[-1] // t.type_size * t.block_size,) if raw.ndim else (0,)
    n = 1
    for s in shape:
        n *= s
    if n // t.block_size * t.type_size != raw.size or (shape and shape[-1] % t.block_size):
        raise ValueError(f"{raw.size} bytes of {t.name} do not make shape {tuple(shape)}")
    if t.name in T.PLAIN:
        return raw.view(T.PLAIN[t.name]).astype(np.float32).reshape(shape)
    fn = KERNELS.get(t.name)
    if fn is None:
        import gguf

        return np.asarray(gguf.quants.dequantize(raw.reshape((-1, t.type_size)), gguf.GGMLQuantizationType(t.id)),
                          dtype=np.float32).reshape(shape)
    blocks = raw.reshape((-1, t.type_size))
    out = np.empty((blocks.shape[0], t.block_size), np.float32)
    step = max(1, _CHUNK // t.block_size)
    spans = [(i, min(i + step, blocks.shape[0])) for i in range(0, blocks.shape[0], step)]
    np_err = np.errstate(all="ignore")  # NOTE: NaN/inf scales give NaN/inf values, as in gguf-py
    np_err.__enter__()
    try:
        _run(fn, blocks, out, spans)
    finally:
        np_err.__exit__(None, None, None)
    return out.reshape(shape)


def _run(fn, blocks, out, spans) -> None:
    if len(spans) <= 2:
        for a, e in spans:
            fn(blocks[a:e], out[a:e])
    else:
        # NOTE: NumPy releases the GIL inside ufuncs, so chunks on threads use every core
        global _POOL
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="oxcore-gguf")
        list(_POOL.map(lambda s: fn(blocks[s[0]:s[1]], out[s[0]:s[1]]), spans))


def quantize(data: np.ndarray, ggml_type: str | int) -> np.ndarray:
    """Quantize float data with gguf-py (``Q8_0``, ``Q4_0``... whatever gguf-py implements).

    Returns the block bytes shaped ``(*data.shape[:-1], row_bytes)``, as gguf-py does.
    """
    import gguf

    t = T.ggml_type(ggml_type)
    return gguf.quants.quantize(np.asarray(data, dtype=np.float32), gguf.GGMLQuantizationType(t.id))
