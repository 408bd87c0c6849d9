"""nn kernels as ``mlx.core`` compositions: softmax, activations, norms, RoPE, attention,
quantized matmul. metal_fused puts ``mx.fast`` kernels beside the norms, RoPE and attention."""

from __future__ import annotations

import math

import mlx.core as mx

from ._kernels_core import _f32

def _softmax(x, *, axis):
    return mx.softmax(x, axis=axis, precise=True)


def _log_softmax(x, *, axis):
    xf = _f32(x)
    return (xf - mx.logsumexp(xf, axis=axis, keepdims=True)).astype(x.dtype)


def _silu(x):
    return x * mx.sigmoid(x)


def _gelu(x, *, approximate):
    xf = _f32(x)
    if approximate == "tanh":
        y = 0.5 * xf * (1 + mx.tanh(math.sqrt(2 / math.pi) * (xf + 0.044715 * xf * xf * xf)))
    else:
        y = 0.5 * xf * (1 + mx.erf(xf * (1 / math.sqrt(2))))
    return y.astype(x.dtype)


def _rms_norm(x, *w, eps):
    xf = _f32(x)
    y = (xf * mx.rsqrt(mx.mean(xf * xf, axis=-1, keepdims=True) + eps)).astype(x.dtype)
    return y * w[0] if w else y


def _layer_norm(x, *wb, eps, has_weight, has_bias):
    xf = _f32(x)
    d = xf - mx.mean(xf, axis=-1, keepdims=True)
    y = (d * mx.rsqrt(mx.mean(d * d, axis=-1, keepdims=True) + eps)).astype(x.dtype)
    if has_weight:
        y = y * wb[0]
    if has_bias:
        y = y + wb[-1]
    return y


def _rope(x, offset, *, dims, traditional, base, scale):
    T, half = x.shape[-2], dims // 2
    pos = (mx.arange(T, dtype=mx.int32) + offset.astype(mx.int32)).astype(mx.float32) * scale
    inv = mx.exp(mx.arange(half, dtype=mx.float32) * (-2.0 * math.log(base) / dims))
    theta = pos[:, None] * inv[None, :]
    cos, sin = mx.cos(theta), mx.sin(theta)
    xf = x.astype(mx.float32)
    if traditional:
        pairs = xf[..., :dims].reshape(*x.shape[:-1], half, 2)
        x1, x2 = pairs[..., 0], pairs[..., 1]
        rot = mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(*x.shape[:-1], dims)
    else:
        x1, x2 = xf[..., :half], xf[..., half:dims]
        rot = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    if dims < x.shape[-1]:
        rot = mx.concatenate([rot, xf[..., dims:]], axis=-1)
    return rot.astype(x.dtype)


def _attention_mask(m, B, Hk, r, Tq, Tk):
    """Reshape a mask broadcastable to (B, H, Tq, Tk) to the grouped (B, Hk, r, Tq, Tk) layout."""
    m = m.reshape((1,) * (4 - m.ndim) + tuple(m.shape))
    if m.shape[1] == 1:
        return m.reshape(m.shape[0], 1, 1, m.shape[2], m.shape[3])
    return mx.broadcast_to(m, (m.shape[0], Hk * r, m.shape[2], m.shape[3])).reshape(m.shape[0], Hk, r, m.shape[2],
                                                                                   m.shape[3])


def _sdpa(q, k, v, *mask, scale, causal):
    B, H, Tq, _ = q.shape
    Hk, Tk = k.shape[1], k.shape[2]
    r = H // Hk  # NOTE: grouped-query attention by reshaping q, never by copying k/v
    s = mx.matmul((q * scale).reshape(B, Hk, r, Tq, q.shape[3]), mx.expand_dims(k, 2).swapaxes(-1, -2))
    neg = mx.array(float("-inf"), s.dtype)
    if causal:  # aligned bottom-right: query i sees keys <= i + Tk - Tq
        keep = (mx.arange(Tk - Tq, Tk)[:, None] >= mx.arange(Tk)[None, :])
        s = mx.where(keep, s, neg)
    if mask:
        m = _attention_mask(mask[0], B, Hk, r, Tq, Tk)
        s = mx.where(m, s, neg) if m.dtype == mx.bool_ else s + m
    p = mx.softmax(s, axis=-1, precise=True)
    return mx.matmul(p, mx.expand_dims(v, 2)).reshape(B, H, Tq, v.shape[3])


def _dequantize(wq, s, b, *, group_size, bits):
    return mx.dequantize(wq, s, b, group_size=group_size, bits=bits)


def _quantized_matmul(x, wq, s, b, *, group_size, bits, transpose):
    return mx.quantized_matmul(x, wq, s, b, transpose=transpose, group_size=group_size, bits=bits)


NN = {
    "softmax": _softmax, "log_softmax": _log_softmax, "relu": lambda x: mx.maximum(x, mx.array(0, x.dtype)),
    "sigmoid": mx.sigmoid, "silu": _silu, "gelu": _gelu, "rms_norm": _rms_norm, "layer_norm": _layer_norm,
    "rope": _rope, "scaled_dot_product_attention": _sdpa, "embedding": lambda w, ids: mx.take(w, ids, axis=0),
    "dequantize": _dequantize, "quantized_matmul": _quantized_matmul,
}
