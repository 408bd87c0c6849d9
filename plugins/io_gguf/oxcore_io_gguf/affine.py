"""ggml block types -> oxcore's affine layout (MLX's): ``w = scale * q + bias`` per group of 32.

Which types map, and why they are exact with float32 scales/biases (every product below has at
most 24 significant bits, so it is exact in float32, and each value then takes at most the one
rounding gguf-py also takes):

========  =====  ==========================  ===============================
ggml      bits   scale                        bias
========  =====  ==========================  ===============================
Q4_0      4      d                            -8 d
Q4_1      4      d                            m
Q8_0      8      d                            -128 d        (q = int8 + 128)
Q4_K      4      d * sc  (sub-block of 32)    -(dmin * m)
Q5_0      8      d                            -16 d         (5-bit values widened to 8 bits)
Q5_1      8      d                            m             (widened)
Q5_K      8      d * sc                       -(dmin * m)   (widened)
========  =====  ==========================  ===============================

"Equal" means value for value; the one bit pattern that can differ is the sign of a zero: where
gguf-py computes ``d * (q - 8) = -0.0`` (d < 0, q at the zero point), ``d * q + (-8 d)`` gives
+0.0. Q2_K, Q3_K and Q6_K use 16-value sub-blocks, which no group size oxcore allows (32/64/128)
can express; dequantize those. With float16 scales the K types are not exact (``d * sc`` needs
17 bits), which is why float32 is the default.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _types as T

AFFINE = {"Q4_0": 4, "Q4_1": 4, "Q8_0": 8, "Q4_K": 4, "Q5_0": 8, "Q5_1": 8, "Q5_K": 8}
GROUP = 32


# NOTE: the block decoding below is written once for any array module with NumPy's operators
# (``xp`` is numpy here, mlx.core in oxcore-kernels-ggml, which converts on the device): only
# shifts, masks, slices, ``concatenate``, ``arange``, ``view`` and float32 products are used.


def _f16(b: Any, at: int, xp: Any) -> Any:
    """float16 at byte ``at`` of each block -> float32 (nb, 1)."""
    lo, hi = b[:, at].astype(xp.uint16), b[:, at + 1].astype(xp.uint16)
    return (lo | (hi << 8)).view(xp.float16).astype(xp.float32)[:, None]


def _nib(qs: Any, xp: Any) -> Any:
    return xp.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _bits(b: Any, xp: Any) -> Any:
    """(nb, n) bytes -> (nb, 8 n) bits, little-endian within each byte."""
    return ((b[:, :, None] >> xp.arange(8, dtype=xp.uint8)) & 1).reshape(b.shape[0], -1)


def _q5(b: Any, at: int, xp: Any) -> Any:
    return _nib(b[:, at + 4:at + 20], xp) | (_bits(b[:, at:at + 4], xp) << 4)


def _scale_min_k4(s: Any, xp: Any) -> tuple[Any, Any]:
    """12 packed bytes -> 8 six-bit scales and mins as float32 (ggml's get_scale_min_k4)."""
    sc = xp.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=-1)
    m = xp.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=-1)
    return sc.astype(xp.float32), m.astype(xp.float32)


def _k4_nib(qs: Any, xp: Any) -> Any:
    nb = qs.shape[0]
    return _nib(qs.reshape(nb * 4, 32), xp).reshape(nb, 256)


def _groups(b: Any, tname: str, xp: Any = np) -> tuple[Any, Any, Any]:
    """Blocks (nb, type_size) -> (q (nb, values) uint8, scales (nb, groups) f32, biases (nb, groups) f32)."""
    if tname == "Q4_0":
        d = _f16(b, 0, xp)
        return _nib(b[:, 2:], xp), d, -8 * d
    if tname == "Q4_1":
        return _nib(b[:, 4:], xp), _f16(b, 0, xp), _f16(b, 2, xp)
    if tname == "Q8_0":
        d = _f16(b, 0, xp)
        return b[:, 2:] ^ 0x80, d, -128 * d
    if tname == "Q5_0":
        d = _f16(b, 0, xp)
        return _q5(b, 2, xp), d, -16 * d
    if tname == "Q5_1":
        return _q5(b, 4, xp), _f16(b, 0, xp), _f16(b, 2, xp)
    sc, m = _scale_min_k4(b[:, 4:16], xp)
    d, mb = _f16(b, 0, xp) * sc, -(_f16(b, 2, xp) * m)
    if tname == "Q4_K":
        return _k4_nib(b[:, 16:], xp), d, mb
    nb = b.shape[0]  # Q5_K: bit j of qh[l] is the fifth bit of value l of sub-block j
    hb = (b[:, None, 16:48] >> xp.arange(8, dtype=xp.uint8)[None, :, None]) & 1
    return _k4_nib(b[:, 48:], xp) | (hb.reshape(nb, 256) << 4), d, mb


def _pack(q: Any, bits: int, xp: Any = np) -> Any:
    per = 32 // bits
    q = q.reshape(-1, per).astype(xp.uint32) << (xp.arange(per, dtype=xp.uint32) * bits)
    return q.sum(axis=-1).astype(xp.uint32)  # NOTE: disjoint bit fields: the sum is their OR


def _source(tensor: Any) -> tuple[np.ndarray, str, tuple[int, ...]]:
    if isinstance(tensor, tuple):
        raw, tname, shape = tensor
        return np.ascontiguousarray(raw).view(np.uint8).reshape(-1), T.ggml_type(tname).name, tuple(shape)
    node = getattr(tensor, "_node", None)
    if node is None or node.op != "ggml_dequantize" or not node.inputs or node.inputs[0].buf is None:
        raise TypeError("to_mlx_affine needs an unevaluated quantized tensor from a GGUF file (f[name] of "
                        "oxcore.load('...gguf')) or a (raw_bytes, ggml_type, shape) tuple; got "
                        f"{type(tensor).__name__}" + (f" ({node.op or 'realized'})" if node is not None else ""))
    raw = node.inputs[0].device.to_numpy(node.inputs[0].buf)
    return raw.reshape(-1), node.attrs["ggml_type"], tuple(node.attrs["shape"])


def to_mlx_affine(tensor: Any, *, dtype: Any = None) -> tuple[Any, Any, Any]:
    """Re-pack a ggml-quantized tensor as ``(w_q, scales, biases)`` for ``oxcore.quantized_matmul``.

    Nothing is dequantized: the block bytes are re-packed (4 or 8 bits, group size 32) into
    uint32 words with one scale and bias per 32 values. With float32 scales (the default),
    ``oxcore.dequantize(w_q, scales, biases, 32, bits)`` equals gguf-py's dequantization value
    for value (bit for bit except the sign of some zeros). See the module docstring for the
    types that map.

    Args:
        tensor: ``f[name]`` of a GGUF file (unevaluated), or ``(raw_bytes, ggml_type, shape)``.
        dtype: scales/biases dtype (default float32, exact); float16/bfloat16 round.

    Returns:
        ``(w_q, scales, biases)`` as host Arrays; use ``group_size=32`` and
        ``bits=affine_bits(type)`` (4, or 8 for Q8_0 and the widened 5-bit types).

    Example:
        >>> import numpy as np, oxcore as ox
        >>> from oxcore_io_gguf import quantize, dequantize, to_mlx_affine
        >>> w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
        >>> raw = quantize(w, "Q4_0")
        >>> wq, s, b = to_mlx_affine((raw, "Q4_0", (8, 64)))
        >>> wq.shape, s.shape
        ((8, 8), (8, 2))
        >>> bool((ox.dequantize(wq, s, b, 32, 4).numpy() == dequantize(raw, "Q4_0", (8, 64))).all())
        True
    """
    import oxcore as ox

    raw, tname, shape = _source(tensor)
    if tname not in AFFINE:
        raise ValueError(f"ggml type {tname} has no exact affine form with group size 32; types that map: "
                         f"{', '.join(AFFINE)} (dequantize the others)")
    if not shape or shape[-1] % GROUP:
        raise ValueError(f"shape {shape}: the last axis must be a multiple of {GROUP}")
    t = T.BY_NAME[tname]
    bits = AFFINE[tname]
    q, s, b = _groups(raw.reshape((-1, t.type_size)), tname)
    lead, n = shape[:-1], shape[-1]
    wq = _pack(q, bits).reshape(lead + (n * bits // 32,))
    dt = ox.float32 if dtype is None else ox.dtype(dtype)
    s = s.reshape(lead + (n // GROUP,)).astype(dt.numpy)
    b = b.reshape(lead + (n // GROUP,)).astype(dt.numpy)
    return ox.asarray(wq), ox.asarray(s), ox.asarray(b)


def affine_bits(ggml_type: str) -> int:
    """Bits per value of ``to_mlx_affine``'s output for a ggml type (4 or 8)."""
    if ggml_type not in AFFINE:
        raise ValueError(f"ggml type {ggml_type} has no affine form; types that map: {', '.join(AFFINE)}")
    return AFFINE[ggml_type]
