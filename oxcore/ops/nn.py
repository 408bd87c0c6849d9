"""ML ops. Each one is declared with a decomposition into primitives, so every backend runs it;
backends with a faster kernel (``mx.fast.rms_norm``...) register it and win on cost."""

from __future__ import annotations

import math
from typing import Any, Literal

from .. import _dtypes as D
from .._array import Array, scalar, build
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Attr, Category, register_op
from ._attrs import EPS, axis
from . import elementwise as E
from ._rules import as_array, broadcast_shapes, norm_axis
from .manipulation import concat, reshape, slice_axis

__all__ = ["softmax", "log_softmax", "relu", "sigmoid", "silu", "gelu", "layer_norm", "rms_norm", "rope",
           "scaled_dot_product_attention", "embedding", "linear", "cross_entropy", "swiglu"]


def _float_same(inputs, attrs):
    x = inputs[0]
    if not x.dtype.is_floating:
        raise DTypeError(f"expected a floating-point input, got {x.dtype.name}")
    return x.shape, x.dtype


def _softmax(x, *, axis):
    m = build("max", x, axis=(axis,), keepdims=True)
    m = E.where(E.isfinite(m), m, scalar(0.0, x.dtype))
    e = E.exp(x - m)
    return e / build("sum", e, axis=(axis,), keepdims=True, dtype=x.dtype)


def _log_softmax(x, *, axis):
    m = build("max", x, axis=(axis,), keepdims=True)
    m = E.where(E.isfinite(m), m, scalar(0.0, x.dtype))
    s = x - m
    return s - E.log(build("sum", E.exp(s), axis=(axis,), keepdims=True, dtype=x.dtype))


def _gelu(x, *, approximate):
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + E.tanh(c * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + E.erf(x * (1 / math.sqrt(2))))


register_op("softmax", Category.NN, _float_same, attrs=(axis(),), decompose=_softmax, doc="softmax along an axis")
register_op("log_softmax", Category.NN, _float_same, attrs=(axis(),), decompose=_log_softmax,
            doc="log of softmax, computed stably")
register_op("relu", Category.NN, _float_same, decompose=lambda x: E.maximum(x, scalar(0, x.dtype)), doc="max(x, 0)")
register_op("sigmoid", Category.NN, _float_same, decompose=lambda x: 1 / (1 + E.exp(-x)), doc="1 / (1 + exp(-x))")
register_op("silu", Category.NN, _float_same, decompose=lambda x: x / (1 + E.exp(-x)), doc="x * sigmoid(x)")
register_op("gelu", Category.NN, _float_same, attrs=(Attr("approximate", Literal["none", "tanh"], default="none"),), decompose=_gelu,
            doc="GELU, exact (erf) or tanh approximation")


def softmax(x: Any, /, *, axis: int = -1) -> Array:
    """Softmax along ``axis``; rows of all ``-inf`` give nan, as in NumPy/PyTorch.

    Example:
        >>> import oxcore as ox
        >>> ox.softmax(ox.asarray([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    x = as_array(x)
    return build("softmax", x, axis=norm_axis(axis, x.ndim))


def log_softmax(x: Any, /, *, axis: int = -1) -> Array:
    """``log(softmax(x))`` along ``axis``, stable for large inputs."""
    x = as_array(x)
    return build("log_softmax", x, axis=norm_axis(axis, x.ndim))


def relu(x: Any, /) -> Array:
    """``max(x, 0)``.

    Example:
        >>> import oxcore as ox
        >>> ox.relu(ox.asarray([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """
    return build("relu", as_array(x))


def sigmoid(x: Any, /) -> Array:
    """Logistic sigmoid."""
    return build("sigmoid", as_array(x))


def silu(x: Any, /) -> Array:
    """SiLU / swish: ``x * sigmoid(x)``."""
    return build("silu", as_array(x))


def gelu(x: Any, /, *, approximate: str = "none") -> Array:
    """GELU; ``approximate='tanh'`` for the tanh form (GPT-2, Gemma), ``'none'`` for erf.

    Example:
        >>> import oxcore as ox
        >>> round(ox.gelu(ox.asarray([1.0])).item(), 4)
        0.8413
    """
    if approximate not in ("none", "tanh"):
        raise AttributeValueError(f"Invalid approximate: {approximate!r}. Valid values are: 'none', 'tanh'")
    return build("gelu", as_array(x), approximate=approximate)


def swiglu(gate: Any, up: Any, /) -> Array:
    """``silu(gate) * up`` (the LLaMA MLP gate)."""
    return silu(gate) * up


# --- norms -----------------------------------------------------------------------------------------
def _norm_infer(inputs, attrs):
    x, *params = inputs
    if not x.dtype.is_floating:
        raise DTypeError(f"norms expect a floating-point input, got {x.dtype.name}")
    for p in params:
        if p.shape != x.shape[-1:]:
            raise ShapeError(f"norm weight/bias must have shape {x.shape[-1:]}, got {p.shape}")
    return x.shape, x.dtype


def _rms_norm(x, *w, eps):
    xf = x.astype(D.float32) if x.dtype in (D.float16, D.bfloat16) else x
    ms = build("mean", xf * xf, axis=(x.ndim - 1,), keepdims=True)
    y = (xf * E.rsqrt(ms + scalar(eps, xf.dtype))).astype(x.dtype)
    return y * w[0] if w else y


def _layer_norm(x, *wb, eps, has_weight, has_bias):
    xf = x.astype(D.float32) if x.dtype in (D.float16, D.bfloat16) else x
    mu = build("mean", xf, axis=(x.ndim - 1,), keepdims=True)
    d = xf - mu
    var = build("mean", d * d, axis=(x.ndim - 1,), keepdims=True)
    y = (d * E.rsqrt(var + scalar(eps, xf.dtype))).astype(x.dtype)
    i = 0
    if has_weight:
        y, i = y * wb[0], 1
    if has_bias:
        y = y + wb[i]
    return y


register_op("rms_norm", Category.NN, _norm_infer, attrs=(EPS,), decompose=_rms_norm, variadic=True,
            doc="x / sqrt(mean(x^2) + eps) * weight, over the last axis")
register_op("layer_norm", Category.NN, _norm_infer,
            attrs=(EPS, Attr("has_weight", bool, default=False, note="a weight input follows x (the public weight=None: no input)"),
                   Attr("has_bias", bool, default=False, note="a bias input follows (x, weight)")),
            decompose=_layer_norm, variadic=True, doc="(x - mean) / sqrt(var + eps) * weight + bias, last axis")


def rms_norm(x: Any, weight: Any = None, /, *, eps: float = 1e-5) -> Array:
    """RMS norm over the last axis, computed in float32 for half inputs.

    Example:
        >>> import oxcore as ox
        >>> [round(v, 3) for v in ox.rms_norm(ox.asarray([3.0, 4.0])).tolist()]
        [0.849, 1.131]
    """
    x = as_array(x)
    params = () if weight is None else (as_array(weight),)
    return build("rms_norm", x, *params, eps=float(eps))


def layer_norm(x: Any, weight: Any = None, bias: Any = None, /, *, eps: float = 1e-5) -> Array:
    """Layer norm over the last axis with optional affine ``weight`` and ``bias``.

    Example:
        >>> import oxcore as ox
        >>> [round(v, 3) for v in ox.layer_norm(ox.asarray([1.0, 3.0])).tolist()]
        [-1.0, 1.0]
    """
    x = as_array(x)
    params = tuple(as_array(p) for p in (weight, bias) if p is not None)
    return build("layer_norm", x, *params, eps=float(eps), has_weight=weight is not None, has_bias=bias is not None)


# --- rotary embeddings -------------------------------------------------------------------------
def _rope_infer(inputs, attrs):
    x, offset = inputs
    if not x.dtype.is_floating:
        raise DTypeError(f"rope expects a floating-point input, got {x.dtype.name}")
    if x.ndim < 2:
        raise ShapeError(f"rope needs (..., seq, features), got shape {x.shape}")
    dims = attrs["dims"]
    if dims % 2 or dims > x.shape[-1] or dims <= 0:
        raise AttributeValueError(f"rope dims must be even and <= {x.shape[-1]}, got {dims}")
    if offset.shape != () or not offset.dtype.is_integer:
        raise DTypeError(f"rope offset must be a 0-d integer, got {offset.dtype.name}{list(offset.shape)}")
    return x.shape, x.dtype


def _rope(x, offset, *, dims, traditional, base, scale):
    T = x.shape[-2]
    cd = D.float64 if x.dtype is D.float64 else D.float32  # NOTE: float64 input keeps float64 angles
    pos = (build("arange", start=0, stop=T, step=1, dtype=D.int64) + offset.astype(D.int64)).astype(cd)
    half = dims // 2
    inv = build("arange", start=0, stop=half, step=1, dtype=cd) * scalar(-2.0 * math.log(base) / dims, cd)
    theta = reshape(pos * scalar(scale, cd), (T, 1)) * reshape(E.exp(inv), (1, half))
    cos, sin = E.cos(theta), E.sin(theta)
    xf = x.astype(cd, copy=False)
    if traditional:
        pairs = reshape(slice_axis(xf, x.ndim - 1, 0, dims), x.shape[:-1] + (half, 2))
        x1, x2 = reshape(slice_axis(pairs, x.ndim, 0, 1), x.shape[:-1] + (half,)), \
            reshape(slice_axis(pairs, x.ndim, 1, 2), x.shape[:-1] + (half,))
        o1, o2 = x1 * cos - x2 * sin, x1 * sin + x2 * cos
        rot = reshape(concat([reshape(o1, o1.shape + (1,)), reshape(o2, o2.shape + (1,))], axis=-1),
                      x.shape[:-1] + (dims,))
    else:
        x1, x2 = slice_axis(xf, x.ndim - 1, 0, half), slice_axis(xf, x.ndim - 1, half, dims)
        rot = concat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    if dims < x.shape[-1]:
        rot = concat([rot, slice_axis(xf, x.ndim - 1, dims, x.shape[-1])], axis=-1)
    return rot.astype(x.dtype, copy=False)


register_op("rope", Category.NN, _rope_infer,
            attrs=(Attr("dims", int, default=None, note="features rotated; the public None becomes the last dimension"),
                   Attr("traditional", bool, default=False, note="rotate adjacent pairs (GPT-J); False: the two halves"),
                   Attr("base", float, default=10000.0), Attr("scale", float, default=1.0, note="positions are multiplied by it")), decompose=_rope,
            doc="rotary position embedding (traditional pairs or half-split), offset as an input")


def rope(x: Any, /, dims: int | None = None, *, traditional: bool = False, base: float = 10000.0,
         scale: float = 1.0, offset: Any = 0) -> Array:
    """Rotary position embedding over the first ``dims`` features of ``(..., seq, features)``.

    ``traditional=True`` rotates adjacent pairs (GPT-J); False rotates the two halves
    (LLaMA/NeoX). ``offset`` is the position of the first row; it is an input, not part of the
    plan key, so a decode loop reuses one plan.

    Example:
        >>> import oxcore as ox
        >>> ox.rope(ox.ones((1, 4, 8)), offset=3).shape
        (1, 4, 8)
    """
    x = as_array(x)
    off = offset if isinstance(offset, Array) else scalar(int(offset), D.int32)
    return build("rope", x, off, dims=int(dims or x.shape[-1]), traditional=bool(traditional),
                 base=float(base), scale=float(scale))


# --- attention -------------------------------------------------------------------------------
def _sdpa_infer(inputs, attrs):
    q, k, v, *mask = inputs
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ShapeError(f"attention expects (batch, heads, seq, dim) inputs, got {q.shape}, {k.shape}, {v.shape}")
    if not (q.dtype == k.dtype == v.dtype) or not q.dtype.is_floating:
        raise DTypeError(f"q, k, v must share one floating dtype, got {q.dtype.name}, {k.dtype.name}, {v.dtype.name}")
    B, H, Tq, Dh = q.shape
    if k.shape[:2] != v.shape[:2] or k.shape[2] != v.shape[2] or k.shape[0] != B or k.shape[3] != Dh:
        raise ShapeError(f"k {k.shape} and v {v.shape} do not match q {q.shape}")
    if H % k.shape[1]:
        raise ShapeError(f"query heads {H} must be a multiple of key/value heads {k.shape[1]}")
    if mask:
        m = mask[0]
        broadcast_shapes(m.shape, (B, H, Tq, k.shape[2]))
        if m.dtype is not D.bool_ and m.dtype is not q.dtype:
            raise DTypeError(f"mask must be bool or {q.dtype.name}, got {m.dtype.name}")
    return (B, H, Tq, v.shape[3]), q.dtype


def _sdpa(q, k, v, *mask, scale, causal):
    from .creation import full
    from .manipulation import broadcast_to

    B, H, Tq, _ = q.shape
    Hk, Tk = k.shape[1], k.shape[2]
    if Hk != H:  # NOTE: grouped-query attention: each kv head serves H // Hk query heads
        r = H // Hk
        k = reshape(broadcast_to(reshape(k, (B, Hk, 1, Tk, k.shape[3])), (B, Hk, r, Tk, k.shape[3])), (B, H, Tk, k.shape[3]))
        v = reshape(broadcast_to(reshape(v, (B, Hk, 1, Tk, v.shape[3])), (B, Hk, r, Tk, v.shape[3])), (B, H, Tk, v.shape[3]))
    s = build("matmul", q * scalar(scale, q.dtype), build("permute_dims", k, axes=(0, 1, 3, 2)))
    neg = full((), float("-inf"), dtype=q.dtype)
    if causal:  # NOTE: aligned bottom-right: query i sees keys <= i + (Tk - Tq), as MLX does
        qi = reshape(build("arange", start=Tk - Tq, stop=Tk, step=1, dtype=D.int64), (Tq, 1))
        ki = reshape(build("arange", start=0, stop=Tk, step=1, dtype=D.int64), (1, Tk))
        s = E.where(qi >= ki, s, neg)
    if mask:
        m = mask[0]
        s = E.where(m, s, neg) if m.dtype is D.bool_ else s + m
    return build("matmul", build("softmax", s, axis=3), v)


register_op("scaled_dot_product_attention", Category.NN, _sdpa_infer,
            attrs=(Attr("scale", float, default=None, note="never None: the public None becomes 1 / sqrt(head dim)"),
                   Attr("causal", bool, default=False, note="the last query aligns with the last key; a mask is a 4th input")), decompose=_sdpa,
            variadic=True, doc="softmax(q k^T * scale + mask) v with GQA, causal and bool/additive masks")


def scaled_dot_product_attention(q: Any, k: Any, v: Any, /, *, scale: float | None = None, mask: Any = None,
                                 causal: bool = False) -> Array:
    """Attention over ``(batch, heads, seq, dim)`` arrays.

    ``k``/``v`` may have fewer heads than ``q`` (grouped-query attention). ``mask`` is boolean
    (True = attend) or additive, broadcastable to ``(batch, heads, q_len, k_len)``. ``causal``
    aligns the last query with the last key (decode with a cache works).

    Example:
        >>> import oxcore as ox
        >>> q = ox.ones((1, 4, 3, 8)); kv = ox.ones((1, 2, 5, 8))
        >>> ox.scaled_dot_product_attention(q, kv, kv, causal=True).shape
        (1, 4, 3, 8)
    """
    q, k, v = as_array(q), as_array(k), as_array(v)
    extra = () if mask is None else (as_array(mask),)
    return build("scaled_dot_product_attention", q, k, v, *extra,
                 scale=float(scale if scale is not None else 1 / math.sqrt(q.shape[-1])), causal=bool(causal))


# --- embedding, linear, losses ------------------------------------------------------------------
def _embedding_infer(inputs, attrs):
    w, ids = inputs
    if w.ndim != 2 or not ids.dtype.is_integer:
        raise ShapeError(f"embedding needs a 2-D table and integer ids, got {w.shape} and {ids.dtype.name}")
    return ids.shape + w.shape[1:], w.dtype


register_op("embedding", Category.NN, _embedding_infer, decompose=lambda w, ids: build("take", w, ids, axis=0),
            doc="rows of a table by id")


def embedding(weight: Any, ids: Any, /) -> Array:
    """Look up rows of ``weight`` (vocab, dim) for integer ``ids``.

    Example:
        >>> import oxcore as ox
        >>> ox.embedding(ox.eye(3), ox.asarray([[2, 0]])).shape
        (1, 2, 3)
    """
    return build("embedding", as_array(weight), as_array(ids))


def _linear_infer(inputs, attrs):
    x, w, *b = inputs
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"linear: x {x.shape} does not fit weight {w.shape} (out_features, in_features)")
    if b and b[0].shape != (w.shape[0],):
        raise ShapeError(f"linear: bias must have shape ({w.shape[0]},), got {b[0].shape}")
    if x.dtype is not w.dtype:
        raise DTypeError(f"linear: x is {x.dtype.name} but weight is {w.dtype.name}")
    return x.shape[:-1] + (w.shape[0],), x.dtype


def _linear(x, w, *b):
    y = build("matmul", x, build("permute_dims", w, axes=(1, 0)))
    return y + b[0] if b else y


register_op("linear", Category.NN, _linear_infer, decompose=_linear, variadic=True,
            doc="x @ weight.T + bias (PyTorch layout)")


def linear(x: Any, weight: Any, bias: Any = None, /) -> Array:
    """``x @ weight.T + bias`` with ``weight`` shaped (out_features, in_features).

    Example:
        >>> import oxcore as ox
        >>> ox.linear(ox.ones((2, 3)), ox.ones((4, 3))).shape
        (2, 4)
    """
    extra = () if bias is None else (as_array(bias),)
    return build("linear", as_array(x), as_array(weight), *extra)


def _ce_infer(inputs, attrs):
    logits, t = inputs
    if not logits.dtype.is_floating or not t.dtype.is_integer:
        raise DTypeError(f"cross_entropy needs float logits and integer targets, got {logits.dtype.name}, {t.dtype.name}")
    ax = attrs["axis"]
    expect = logits.shape[:ax] + logits.shape[ax + 1:]
    if t.shape != expect:
        raise ShapeError(f"cross_entropy targets must have shape {expect}, got {t.shape}")
    return (expect if attrs["reduction"] == "none" else ()), logits.dtype


def _ce(logits, t, *, axis, reduction):
    from .manipulation import expand_dims, squeeze

    lse = build("logsumexp", logits, axis=(axis,), keepdims=False)
    picked = squeeze(build("take_along_axis", logits, expand_dims(t, axis), axis=axis), axis)
    loss = lse - picked
    if reduction == "none":
        return loss
    red = build("mean" if reduction == "mean" else "sum", loss, axis=tuple(range(loss.ndim)), keepdims=False,
                **({} if reduction == "mean" else {"dtype": loss.dtype}))
    return red


register_op("cross_entropy", Category.NN, _ce_infer,
            attrs=(axis(), Attr("reduction", Literal["mean", "sum", "none"], default="mean")), decompose=_ce,
            doc="softmax cross-entropy with integer targets")


def cross_entropy(logits: Any, targets: Any, /, *, axis: int = -1, reduction: str = "mean") -> Array:
    """Softmax cross-entropy of ``logits`` against integer class ``targets``.

    Example:
        >>> import oxcore as ox
        >>> round(ox.cross_entropy(ox.asarray([[0.0, 0.0]]), ox.asarray([1])).item(), 4)
        0.6931
    """
    if reduction not in ("mean", "sum", "none"):
        raise AttributeValueError(f"Invalid reduction: {reduction!r}. Valid values are: 'mean', 'sum', 'none'")
    logits = as_array(logits)
    return build("cross_entropy", logits, as_array(targets), axis=norm_axis(axis, logits.ndim), reduction=reduction)
