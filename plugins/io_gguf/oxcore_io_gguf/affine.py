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


def _f16(b: np.ndarray, at: int) -> np.ndarray:
    return b[:, at:at + 2].view("<f2").astype(np.float32)


def _nib(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _q5(b: np.ndarray, at: int) -> np.ndarray:
    hb = np.unpackbits(b[:, at:at + 4], axis=1, bitorder="little")
    return _nib(b[:, at + 4:at + 20]) | (hb << 4)


def _k4(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from .quants import _scale_min_k4

    sc, m = _scale_min_k4(b[:, 4:16])
    return _f16(b, 0) * sc.astype(np.float32), -(_f16(b, 2) * m.astype(np.float32))


def _k4_nib(qs: np.ndarray) -> np.ndarray:
    nb = qs.shape[0]
    return _nib(qs.reshape((nb * 4, 32))).reshape((nb, 256))


def _groups(b: np.ndarray, tname: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks -> (q (nb, values) uint8, scales (nb, groups) f32, biases (nb, groups) f32)."""
    if tname == "Q4_0":
        d = _f16(b, 0)
        return _nib(b[:, 2:]), d, -8 * d
    if tname == "Q4_1":
        return _nib(b[:, 4:]), _f16(b, 0), _f16(b, 2)
    if tname == "Q8_0":
        d = _f16(b, 0)
        return b[:, 2:] ^ np.uint8(0x80), d, -128 * d
    if tname == "Q5_0":
        d = _f16(b, 0)
        return _q5(b, 2), d, -16 * d
    if tname == "Q5_1":
        return _q5(b, 4), _f16(b, 0), _f16(b, 2)
    d, mb = _k4(b)
    if tname == "Q4_K":
        return _k4_nib(b[:, 16:]), d, mb
    nb = b.shape[0]
    hb = ((b[:, 16:48].reshape((nb, 1, 32)) >> np.arange(8, dtype=np.uint8).reshape((1, 8, 1))) & 1)
    return _k4_nib(b[:, 48:]) | (hb.reshape((nb, 256)) << 4), d, mb


def _pack(q: np.ndarray, bits: int) -> np.ndarray:
    per = 32 // bits
    q = q.reshape((-1, per)).astype(np.uint32) << (np.arange(per, dtype=np.uint32) * bits)
    return np.bitwise_or.reduce(q, axis=-1)


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
