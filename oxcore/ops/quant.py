"""Affine quantization in MLX's layout: ``w ~= scale * q + bias`` per group along the last axis,
``q`` packed little-endian into uint32 (32 // bits values per word)."""

from __future__ import annotations

from typing import Any

from .. import _dtypes as D
from .._array import Array, scalar, build
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import BITS as BITS_ATTR, GROUP_SIZE
from . import elementwise as E
from ._rules import as_array
from .manipulation import reshape

__all__ = ["quantize", "dequantize", "quantized_matmul"]

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)


def _check(bits: int, group_size: int) -> None:
    if bits not in BITS:
        raise AttributeValueError(f"Invalid bits: {bits}. Valid values are: {', '.join(map(str, BITS))}")
    if group_size not in GROUP_SIZES:
        raise AttributeValueError(f"Invalid group_size: {group_size}. Valid values are: "
                                  f"{', '.join(map(str, GROUP_SIZES))}")


def _params_infer(inputs, attrs):
    (w,) = inputs
    g = attrs["group_size"]
    if not w.dtype.is_floating or w.ndim < 1 or w.shape[-1] % g:
        raise ShapeError(f"quantize needs a float array whose last axis is a multiple of {g}, "
                         f"got {w.dtype.name}{list(w.shape)}")
    return w.shape[:-1] + (w.shape[-1] // g, 2), D.float32


def _params(w, *, group_size, bits):
    # NOTE: MLX's algorithm: the edge value of larger magnitude is represented exactly, so that
    # symmetric-ish groups keep zero; scale may be negative. The params stay float32: MLX packs
    # with the unrounded float32 scales and only then casts them to w's dtype (for float16 and
    # bfloat16 weights, packing with rounded scales gives different codes).
    n_bins = float(2 ** bits - 1)
    g = reshape(w.astype(D.float32), w.shape[:-1] + (w.shape[-1] // group_size, group_size))
    ax = (g.ndim - 1,)
    wmax, wmin = build("max", g, axis=ax, keepdims=False), build("min", g, axis=ax, keepdims=False)
    mask = E.abs(wmin) > E.abs(wmax)
    scales = E.maximum((wmax - wmin) / n_bins, scalar(1e-7, D.float32))
    scales = E.where(mask, scales, -scales)
    edge = E.where(mask, wmin, wmax)
    q0 = E.round(edge / scales)
    scales = E.where(q0 != 0, edge / E.where(q0 != 0, q0, scalar(1.0, D.float32)), scales)
    biases = E.where(q0 == 0, scalar(0.0, D.float32), edge)
    return build("concat", reshape(scales, scales.shape + (1,)), reshape(biases, biases.shape + (1,)), axis=scales.ndim)


def _pack_infer(inputs, attrs):
    w, sb = inputs
    return w.shape[:-1] + (w.shape[-1] * attrs["bits"] // 32,), D.uint32


def _pack(w, sb, *, group_size, bits):
    per = 32 // bits
    G = w.shape[-1] // group_size
    g = reshape(w.astype(D.float32), w.shape[:-1] + (G, group_size))
    s = reshape(sb[..., 0].astype(D.float32), sb.shape[:-2] + (G, 1))
    b = reshape(sb[..., 1].astype(D.float32), sb.shape[:-2] + (G, 1))
    q = E.clip(E.round((g - b) / s), 0, 2 ** bits - 1).astype(D.uint32)
    q = reshape(q, w.shape[:-1] + (w.shape[-1] // per, per))
    shifts = build("arange", start=0, stop=32, step=bits, dtype=D.uint32)
    return build("sum", q << shifts, axis=(q.ndim - 1,), keepdims=False, dtype=D.uint32)


register_op("quant_params", Category.QUANT, _params_infer, attrs=(GROUP_SIZE, BITS_ATTR), decompose=_params,
            doc="affine scales and biases per group (float32), stacked on a last axis of 2")
register_op("quant_pack", Category.QUANT, _pack_infer, attrs=(GROUP_SIZE, BITS_ATTR), decompose=_pack,
            doc="quantize and pack into uint32 with given scales/biases")


def quantize(w: Any, /, group_size: int = 64, bits: int = 4) -> tuple[Array, Array, Array]:
    """Affine-quantize ``w`` along its last axis: returns ``(w_q, scales, biases)``, MLX's layout.

    Example:
        >>> import oxcore as ox
        >>> wq, s, b = ox.quantize(ox.ones((4, 64)), group_size=32, bits=4)
        >>> wq.shape, wq.dtype, s.shape
        ((4, 8), oxcore.uint32, (4, 2))
    """
    _check(bits, group_size)
    w = as_array(w)
    sb = build("quant_params", w, group_size=group_size, bits=bits)
    wq = build("quant_pack", w, sb, group_size=group_size, bits=bits)
    return wq, sb[..., 0].astype(w.dtype, copy=False), sb[..., 1].astype(w.dtype, copy=False)


def _deq_infer(inputs, attrs):
    wq, s, b = inputs
    bits, g = attrs["bits"], attrs["group_size"]
    if wq.dtype is not D.uint32:
        raise DTypeError(f"dequantize expects uint32 packed weights, got {wq.dtype.name}")
    n = wq.shape[-1] * 32 // bits
    if s.shape != b.shape or s.shape != wq.shape[:-1] + (n // g,):
        raise ShapeError(f"scales/biases must have shape {wq.shape[:-1] + (n // g,)}, got {s.shape} and {b.shape}")
    return wq.shape[:-1] + (n,), s.dtype


def _dequantize(wq, s, b, *, group_size, bits):
    per = 32 // bits
    n = wq.shape[-1] * per
    shifts = build("arange", start=0, stop=32, step=bits, dtype=D.uint32)
    q = (reshape(wq, wq.shape + (1,)) >> shifts) & scalar(2 ** bits - 1, D.uint32)
    G = n // group_size
    q = reshape(q, wq.shape[:-1] + (G, group_size)).astype(D.float32)
    out = q * reshape(s.astype(D.float32), s.shape + (1,)) + reshape(b.astype(D.float32), b.shape + (1,))
    return reshape(out, wq.shape[:-1] + (n,)).astype(s.dtype)


register_op("dequantize", Category.QUANT, _deq_infer, attrs=(GROUP_SIZE, BITS_ATTR), decompose=_dequantize,
            doc="unpack affine-quantized weights")


def dequantize(w_q: Any, scales: Any, biases: Any, /, group_size: int = 64, bits: int = 4) -> Array:
    """Inverse of ``quantize``: ``scale * q + bias`` in the dtype of ``scales``.

    Example:
        >>> import oxcore as ox
        >>> w = ox.linspace(-1, 1, 64).reshape((1, 64))
        >>> err = ox.abs(ox.dequantize(*ox.quantize(w, 32, 8), 32, 8) - w).max().item()
        >>> err < 0.01
        True
    """
    _check(bits, group_size)
    return build("dequantize", as_array(w_q), as_array(scales), as_array(biases), group_size=group_size, bits=bits)


def _qmm_infer(inputs, attrs):
    x, wq, s, b = inputs
    wshape, _ = _deq_infer((wq, s, b), attrs)
    if wq.ndim != 2:
        raise ShapeError(f"quantized_matmul needs a 2-D quantized weight, got {wq.shape}")
    k = wshape[1] if attrs["transpose"] else wshape[0]
    if x.shape[-1] != k:
        raise ShapeError(f"quantized_matmul: x {x.shape} does not fit weight {wshape} (transpose={attrs['transpose']})")
    if x.dtype is not s.dtype:
        raise DTypeError(f"quantized_matmul: x is {x.dtype.name}, scales are {s.dtype.name}")
    return x.shape[:-1] + ((wshape[0],) if attrs["transpose"] else (wshape[1],)), x.dtype


def _qmm(x, wq, s, b, *, group_size, bits, transpose):
    w = build("dequantize", wq, s, b, group_size=group_size, bits=bits)
    return build("matmul", x, build("permute_dims", w, axes=(1, 0)) if transpose else w)


register_op("quantized_matmul", Category.QUANT, _qmm_infer,
            attrs=(GROUP_SIZE, BITS_ATTR, Attr("transpose", bool, default=True, note="x @ W.T (W stored (out, in))")),
            decompose=_qmm, doc="x @ dequantize(w).T without materializing w where a backend can")


def quantized_matmul(x: Any, w_q: Any, scales: Any, biases: Any, /, transpose: bool = True,
                     group_size: int = 64, bits: int = 4) -> Array:
    """``x @ dequantize(w).T`` (``transpose=True``, weights stored (out, in)), MLX's semantics."""
    _check(bits, group_size)
    return build("quantized_matmul", as_array(x), as_array(w_q), as_array(scales), as_array(biases),
                 group_size=group_size, bits=bits, transpose=bool(transpose))


