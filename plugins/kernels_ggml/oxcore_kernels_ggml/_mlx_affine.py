"""ggml blocks -> MLX's affine layout, on the device with MLX ops, cached per source buffer.

The same mapping as ``oxcore_io_gguf.affine`` (see its table: exact for Q4_0, Q4_1, Q8_0, Q4_K;
Q5_0, Q5_1, Q5_K widened to 8 bits), written in MLX ops so the bytes never leave the device and
the conversion can run inside an ``mx.compile``d segment.

Memory: a converted weight is kept next to its raw bytes while the raw ``mx.array`` lives
(weakref). Per 32 values it holds the packed values (16 bytes at 4 bits, 32 at 8) plus a float32
scale and bias (8 bytes): 0.75 bytes a value for the 4-bit types (Q4_0's raw blocks take 0.5625,
Q4_K's 0.5625), 1.25 for the 8-bit ones (Q8_0 raw: 1.0625, Q5_0: 0.6875). Float32 scales keep
the K types exact (``d * sc`` needs 17 significant bits).
"""

from __future__ import annotations

import weakref
from typing import Any

import mlx.core as mx

from oxcore_io_gguf import _types as T
from oxcore_io_gguf.affine import AFFINE, GROUP

#: id(raw mx.array) -> (weakref to it, (ggml_type, shape), (w_q, scales, biases))
_CACHE: dict[int, tuple[Any, tuple, tuple]] = {}


def _f16(b: mx.array, at: int) -> mx.array:
    # NOTE: b[:, at:at+2] is a strided slice; build the uint16 explicitly, then view contiguous bits
    lo, hi = b[:, at].astype(mx.uint16), b[:, at + 1].astype(mx.uint16)
    return (lo | (hi << 8)).view(mx.float16).astype(mx.float32)[:, None]


def _nib(qs: mx.array) -> mx.array:
    return mx.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _bits(b: mx.array) -> mx.array:
    """(nb, n) bytes -> (nb, 8 n) bits, little-endian within each byte."""
    sh = mx.arange(8, dtype=mx.uint8)
    return ((b[:, :, None] >> sh) & 1).reshape(b.shape[0], -1)


def _q5(b: mx.array, at: int) -> mx.array:
    return _nib(b[:, at + 4:at + 20]) | (_bits(b[:, at:at + 4]) << 4)


def _scale_min_k4(s: mx.array) -> tuple[mx.array, mx.array]:
    """12 packed bytes -> 8 six-bit scales and mins (ggml's get_scale_min_k4)."""
    sc = mx.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    m = mx.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc.astype(mx.float32), m.astype(mx.float32)


def _k4_nib(qs: mx.array) -> mx.array:
    nb = qs.shape[0]
    return _nib(qs.reshape(nb * 4, 32)).reshape(nb, 256)


def _groups(b: mx.array, tname: str) -> tuple[mx.array, mx.array, mx.array]:
    """Blocks (nb, type_size) -> (q (nb, values) uint8, scales (nb, groups), biases (nb, groups))."""
    if tname == "Q4_0":
        d = _f16(b, 0)
        return _nib(b[:, 2:]), d, -8 * d
    if tname == "Q4_1":
        return _nib(b[:, 4:]), _f16(b, 0), _f16(b, 2)
    if tname == "Q8_0":
        d = _f16(b, 0)
        return b[:, 2:] ^ 0x80, d, -128 * d
    if tname == "Q5_0":
        d = _f16(b, 0)
        return _q5(b, 2), d, -16 * d
    if tname == "Q5_1":
        return _q5(b, 4), _f16(b, 0), _f16(b, 2)
    sc, m = _scale_min_k4(b[:, 4:16])
    d, mb = _f16(b, 0) * sc, -(_f16(b, 2) * m)
    if tname == "Q4_K":
        return _k4_nib(b[:, 16:]), d, mb
    nb = b.shape[0]  # Q5_K: bit j of qh[l] is the fifth bit of value l of sub-block j
    hb = (b[:, None, 16:48] >> mx.arange(8, dtype=mx.uint8)[None, :, None]) & 1
    return _k4_nib(b[:, 48:]) | (hb.reshape(nb, 256) << 4), d, mb


def _pack(q: mx.array, bits: int) -> mx.array:
    per = 32 // bits
    q = q.reshape(-1, per).astype(mx.uint32) << (mx.arange(per, dtype=mx.uint32) * bits)
    return q.sum(axis=-1).astype(mx.uint32)  # NOTE: disjoint bit fields: the sum is their OR


def to_affine(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """Raw block bytes of W (N, K) -> ``(w_q, scales, biases)`` for ``mx.quantized_matmul``
    (group size 32, ``bits=AFFINE[ggml_type]``), as lazy MLX arrays."""
    t = T.BY_NAME[ggml_type]
    n, k = shape
    q, s, b = _groups(raw.reshape(-1, t.type_size), ggml_type)
    bits = AFFINE[ggml_type]
    return (_pack(q, bits).reshape(n, k * bits // 32), s.reshape(n, k // GROUP), b.reshape(n, k // GROUP))


def _tracing(raw: mx.array) -> bool:
    try:
        mx.eval(raw)
    except ValueError:  # NOTE: inside mx.compile the inputs are placeholders that cannot be evaluated
        return True
    return False


def converted(raw: mx.array, ggml_type: str, shape: tuple[int, int]) -> tuple[mx.array, mx.array, mx.array]:
    """``to_affine``, evaluated once per raw buffer and kept while that buffer lives.

    Inside an ``mx.compile`` trace (metal_fused's compiled segments) the raw input is a
    placeholder, so the conversion becomes part of the compiled graph and runs on every call.
    """
    key, sig = id(raw), (ggml_type, tuple(shape))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is raw and hit[1] == sig:
        return hit[2]
    out = to_affine(raw, ggml_type, sig[1])
    if _tracing(raw):
        return out
    mx.eval(*out)

    def forget(ref: Any, key: int = key) -> None:
        entry = _CACHE.get(key)
        if entry is not None and entry[0] is ref:
            del _CACHE[key]
    _CACHE[key] = (weakref.ref(raw, forget), sig, out)
    return out


def matmul(x: mx.array, raw: mx.array, *, ggml_type: str, shape: tuple[int, int]) -> mx.array:
    """``x @ W.T`` through ``mx.quantized_matmul`` on the converted weight (float32 scales; the
    result is cast back to x's dtype)."""
    wq, s, b = converted(raw, ggml_type, shape)
    y = mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=GROUP, bits=AFFINE[ggml_type])
    return y if y.dtype == x.dtype else y.astype(x.dtype)
