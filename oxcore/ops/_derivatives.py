"""Differentiation and batching rules of the core ops, attached to the registry as data.

Rules are written in oxcore ops, so the backward (or batched) graph is an ordinary graph.
Elementwise ops declare their partial derivatives once; the VJP (``g * d``, summed back over
broadcast axes) and the JVP (``t * d``) both come from them. Linear ops (reshape, sum, take...)
apply themselves to the tangent. Ops listed in ``NOT_DIFFERENTIABLE`` have zero derivatives
(piecewise constant) or integer/bool outputs; every other core op without a rule here is
differentiated through its decomposition.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .. import _dtypes as D
from .._array import Array, build, scalar
from .._registry import REGISTRY
from . import elementwise as E

Rule = Callable[..., Any]


# --- helpers ---------------------------------------------------------------------------------------
def _full(shape: tuple[int, ...], value: float, dt: D.DType) -> Array:
    return build("full", shape=tuple(shape), value=value, dtype=dt)


def _zeros_like(x: Array) -> Array:
    return _full(x.shape, 0, x.dtype)


def _sum(x: Array, axes: tuple[int, ...], keepdims: bool = False) -> Array:
    return build("sum", x, axis=tuple(axes), keepdims=keepdims, dtype=x.dtype) if axes or not keepdims else x


def _reshape(x: Array, shape: tuple[int, ...]) -> Array:
    return x if x.shape == tuple(shape) else build("reshape", x, shape=tuple(shape))


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` over the axes that broadcasting added or stretched, down to ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return _reshape(_sum(g, axes) if axes else g, shape)


def _keepdims_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _expand_back(g: Array, x_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Array:
    """A reduced cotangent broadcast back over the reduced axes."""
    if not keepdims:
        g = _reshape(g, _keepdims_shape(x_shape, axes))
    return g if g.shape == x_shape else build("broadcast_to", g, shape=tuple(x_shape))


def _tangent(t: Array | None, like: Array) -> Array:
    return t if t is not None else _zeros_like(like)


def _set(name: str, **rules: Rule | None) -> None:
    REGISTRY.set_rules(name, **rules)


# --- elementwise: partial derivatives -----------------------------------------------------------------
def _unary(name: str, d: Callable[[Array, Array], Array]) -> None:
    """``d(x, out)`` is f'(x)."""
    _set(name, vjp=lambda g, out, x: (g * d(x, out),), jvp=lambda ts, out, x: ts[0] * d(x, out))


def _c(x: Array, v: float) -> Array:
    return scalar(v, x.dtype)


_set("negative", vjp=lambda g, out, x: (-g,), jvp=lambda ts, out, x: -ts[0])
_unary("abs", lambda x, out: E.sign(x))
_unary("exp", lambda x, out: out)
_unary("log", lambda x, out: E.reciprocal(x))
_unary("sqrt", lambda x, out: _c(x, 0.5) / out)
_unary("sin", lambda x, out: E.cos(x))
_unary("cos", lambda x, out: -E.sin(x))
_unary("asin", lambda x, out: E.rsqrt(_c(x, 1) - x * x))
_unary("acos", lambda x, out: -E.rsqrt(_c(x, 1) - x * x))
_unary("atan", lambda x, out: E.reciprocal(_c(x, 1) + x * x))
_unary("tanh", lambda x, out: _c(x, 1) - out * out)
_unary("erf", lambda x, out: _c(x, 2 / math.sqrt(math.pi)) * E.exp(-(x * x)))
# NOTE: decomposed ops get rules too where the decomposition would be costlier or less stable
_unary("sigmoid", lambda x, out: out * (_c(x, 1) - out))
_unary("relu", lambda x, out: build("astype", E.greater(x, _c(x, 0)), dtype=x.dtype))
_unary("expm1", lambda x, out: out + _c(x, 1))
_unary("log1p", lambda x, out: E.reciprocal(x + _c(x, 1)))
_unary("rsqrt", lambda x, out: _c(x, -0.5) * out / x)
_unary("square", lambda x, out: _c(x, 2) * x)
_unary("reciprocal", lambda x, out: -(out * out))


def _silu_d(x: Array, out: Array) -> Array:
    s = build("sigmoid", x)
    return s * (_c(x, 1) + x * (_c(x, 1) - s))


_unary("silu", _silu_d)


def _times(g: Array, p: Array | int) -> Array:
    """``g * p``, where p may be the plain numbers 1 or -1 (no multiply built)."""
    if isinstance(p, int):
        return g if p == 1 else -g
    return g * p


def _binary(name: str, d: Callable[[Array, Array, Array], tuple[Array | int | None, Array | int | None]]) -> None:
    """``d(a, b, out) -> (df/da, df/db)``: arrays, the numbers 1/-1, or None for a zero partial."""
    def vjp(g, out, a, b):
        da, db = d(a, b, out)
        return (None if da is None else unbroadcast(_times(g, da), a.shape),
                None if db is None else unbroadcast(_times(g, db), b.shape))

    def jvp(ts, out, a, b):
        da, db = d(a, b, out)
        parts = [_times(t, p) for t, p in zip(ts, (da, db)) if t is not None and p is not None]
        if not parts:
            return None
        total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return total if total.shape == out.shape else build("broadcast_to", total, shape=out.shape)
    _set(name, vjp=vjp, jvp=jvp)


def _safe_log(a: Array) -> Array:
    # NOTE: d(a**b)/db = a**b log(a); at a <= 0 the real power has no derivative in b: give 0, not nan
    return E.log(E.where(E.greater(a, _c(a, 0)), a, _c(a, 1)))


def _tie_split(a: Array, b: Array, first: Callable) -> tuple[Array, Array]:
    """Partials of max/min: 1 for the winner, 1/2 each on ties (as JAX)."""
    win = build("astype", first(a, b), dtype=a.dtype)
    tie = build("astype", E.equal(a, b), dtype=a.dtype) * _c(a, 0.5)
    return win + tie, _c(a, 1) - win - tie


_binary("add", lambda a, b, out: (1, 1))
_binary("subtract", lambda a, b, out: (1, -1))
_binary("multiply", lambda a, b, out: (b, a))
_binary("divide", lambda a, b, out: (E.reciprocal(b), -out / b))
_binary("pow", lambda a, b, out: (b * E.pow(a, b - _c(b, 1)), out * _safe_log(a)))
_binary("maximum", lambda a, b, out: _tie_split(a, b, E.greater))
_binary("minimum", lambda a, b, out: _tie_split(a, b, E.less))
_binary("atan2", lambda a, b, out: (b / (a * a + b * b), -a / (a * a + b * b)))
_binary("remainder", lambda a, b, out: (1, -E.floor(a / b)))
_binary("hypot", lambda a, b, out: (a / out, b / out))
_binary("logaddexp", lambda a, b, out: (E.exp(a - out), E.exp(b - out)))
# NOTE: real/imag/conj of real inputs (complex values carry no derivatives in oxcore)
_set("real", vjp=lambda g, out, x: (g,), jvp=lambda ts, out, x: ts[0])
_set("conj", vjp=lambda g, out, x: (g,), jvp=lambda ts, out, x: ts[0])
_set("imag", vjp=lambda g, out, x: (None,), jvp=lambda ts, out, x: None)
_binary("nextafter", lambda a, b, out: (1, None))  # NOTE: one ulp away from a: slope 1 in a, flat in b

#: ops whose derivative is zero wherever it exists, or whose output is integer/bool
NOT_DIFFERENTIABLE = ("floor", "ceil", "round", "trunc", "sign", "floor_divide", "argmax", "argmin", "random_bits",
                      "random_uniform", "random_normal", "random_randint",
                      "full", "arange", "linspace", "eye", "argsort", "searchsorted", "count_nonzero", "isin")
for _name in NOT_DIFFERENTIABLE:
    _set(_name, vjp=lambda g, out, *ins, **attrs: (None,) * len(ins), jvp=lambda ts, out, *ins, **attrs: None)


def _astype_vjp(g: Array, out: Array, x: Array, *, dtype: D.DType) -> tuple:
    return (build("astype", g, dtype=x.dtype) if x.dtype.is_floating else None,)


_set("astype", vjp=_astype_vjp, jvp=lambda ts, out, x, *, dtype: build("astype", ts[0], dtype=dtype))


def _where_vjp(g: Array, out: Array, c: Array, a: Array, b: Array) -> tuple:
    z = _zeros_like(g)
    return None, unbroadcast(E.where(c, g, z), a.shape), unbroadcast(E.where(c, z, g), b.shape)


def _where_jvp(ts: tuple, out: Array, c: Array, a: Array, b: Array) -> Array:
    r = E.where(c, _tangent(ts[1], a), _tangent(ts[2], b))
    return r if r.shape == out.shape else build("broadcast_to", r, shape=out.shape)


_set("where", vjp=_where_vjp, jvp=_where_jvp)


# --- reductions ------------------------------------------------------------------------------------
def _sum_vjp(g: Array, out: Array, x: Array, *, axis: tuple, keepdims: bool, dtype: D.DType) -> tuple:
    return (_expand_back(build("astype", g, dtype=x.dtype) if g.dtype is not x.dtype else g, x.shape, axis,
                         keepdims),)


_set("sum", vjp=_sum_vjp, jvp=lambda ts, out, x, **a: build("sum", ts[0], **a))


def _prod_partial(x: Array, out: Array, axis: tuple, keepdims: bool) -> Array:
    # NOTE: d prod / d x_i = prod / x_i; inputs with zeros get inf/nan here (as out / x)
    return _expand_back(out, x.shape, axis, keepdims) / x


_set("prod", vjp=lambda g, out, x, *, axis, keepdims, dtype: (_expand_back(g, x.shape, axis, keepdims)
                                                              * _prod_partial(x, out, axis, keepdims),),
     jvp=lambda ts, out, x, *, axis, keepdims, dtype: _sum(ts[0] * _prod_partial(x, out, axis, keepdims), axis,
                                                          keepdims))


def _extremum_weights(x: Array, out: Array, axis: tuple, keepdims: bool) -> Array:
    """1/count on the positions equal to the max (or min), 0 elsewhere: ties share the gradient."""
    hit = build("astype", E.equal(x, _expand_back(out, x.shape, axis, keepdims)), dtype=x.dtype)
    return hit / _sum(hit, axis, keepdims=True)


for _name in ("max", "min"):
    _set(_name, vjp=lambda g, out, x, *, axis, keepdims: (_expand_back(g, x.shape, axis, keepdims)
                                                          * _extremum_weights(x, out, axis, keepdims),),
         jvp=lambda ts, out, x, *, axis, keepdims: _sum(ts[0] * _extremum_weights(x, out, axis, keepdims), axis,
                                                       keepdims))


def _flip(x: Array, axis: int) -> Array:
    n, d = x.ndim, x.shape[axis]
    return build("slice", x, starts=tuple(d - 1 if i == axis else 0 for i in range(n)),
                 stops=tuple(None if i == axis else e for i, e in enumerate(x.shape)),
                 steps=tuple(-1 if i == axis else 1 for i in range(n))) if d > 1 else x


def _slice_axis(x: Array, axis: int, start: int, stop: int | None) -> Array:
    n = x.ndim
    return build("slice", x, starts=tuple(start if i == axis else 0 for i in range(n)),
                 stops=tuple(stop if i == axis else d for i, d in enumerate(x.shape)), steps=(1,) * n)


def _cumsum_vjp(g: Array, out: Array, x: Array, *, axis: int, dtype: D.DType, include_initial: bool) -> tuple:
    if include_initial:  # NOTE: out[0] is the empty sum; x_j feeds out[j+1:]
        g = _slice_axis(g, axis, 1, None)
    g = g if g.dtype is x.dtype else build("astype", g, dtype=x.dtype)
    rev = build("cumulative_sum", _flip(g, axis), axis=axis, dtype=x.dtype, include_initial=False)
    return (_flip(rev, axis),)


_set("cumulative_sum", vjp=_cumsum_vjp, jvp=lambda ts, out, x, **a: build("cumulative_sum", ts[0], **a))


def _cumprod_vjp(g: Array, out: Array, x: Array, *, axis: int, dtype: D.DType, include_initial: bool) -> tuple:
    # NOTE: d out_k / d x_j = out_k / x_j for k >= j (no zeros in x)
    if include_initial:
        g, out = _slice_axis(g, axis, 1, None), _slice_axis(out, axis, 1, None)
    rev = build("cumulative_sum", _flip(g * out, axis), axis=axis, dtype=x.dtype, include_initial=False)
    return (_flip(rev, axis) / x,)


def _cumprod_jvp(ts: tuple, out: Array, x: Array, *, axis: int, dtype: D.DType, include_initial: bool) -> Array:
    return out * build("cumulative_sum", ts[0] / x, axis=axis, dtype=x.dtype, include_initial=include_initial)


_set("cumulative_prod", vjp=_cumprod_vjp, jvp=_cumprod_jvp)


# --- shape manipulation (linear: the JVP is the op applied to the tangent) ------------------------------
def _linear_jvp(name: str, linear_in: tuple[int, ...] = (0,)) -> Rule:
    def jvp(ts, out, *ins, **attrs):
        args = [(_tangent(ts[i], x) if i in linear_in else x) for i, x in enumerate(ins)]
        return build(name, *args, **attrs)
    return jvp


_set("reshape", vjp=lambda g, out, x, *, shape: (_reshape(g, x.shape),), jvp=_linear_jvp("reshape"))


def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


_set("permute_dims", vjp=lambda g, out, x, *, axes: (build("permute_dims", g, axes=_inverse(axes)),),
     jvp=_linear_jvp("permute_dims"))
_set("broadcast_to", vjp=lambda g, out, x, *, shape: (unbroadcast(g, x.shape),), jvp=_linear_jvp("broadcast_to"))


def _concat_vjp(g: Array, out: Array, *xs: Array, axis: int) -> tuple:
    parts, start = [], 0
    for x in xs:
        parts.append(_slice_axis(g, axis, start, start + x.shape[axis]))
        start += x.shape[axis]
    return tuple(parts)


_set("concat", vjp=_concat_vjp,
     jvp=lambda ts, out, *xs, axis: build("concat", *[_tangent(t, x) for t, x in zip(ts, xs)], axis=axis))


def _slice_spec(starts: tuple, stops: tuple, steps: tuple) -> tuple:
    return tuple(("s", a, b, c) for a, b, c in zip(starts, stops, steps))


_set("slice", vjp=lambda g, out, x, *, starts, stops, steps: (
        build("index_update", _zeros_like(x), g, spec=_slice_spec(starts, stops, steps)),),
     jvp=_linear_jvp("slice"))


# --- gathers: their VJPs scatter-add --------------------------------------------------------------------
def _wrap_negative(idx: Array, n: int) -> Array:
    return E.where(E.less(idx, scalar(0, idx.dtype)), idx + scalar(n, idx.dtype), idx)


def _take_vjp(g: Array, out: Array, x: Array, idx: Array, *, axis: int) -> tuple:
    return build("scatter_add", _zeros_like(x), _wrap_negative(idx, x.shape[axis]), g, axis=axis), None


_set("take", vjp=_take_vjp, jvp=_linear_jvp("take"))


def _take_along_vjp(g: Array, out: Array, x: Array, idx: Array, *, axis: int) -> tuple:
    # NOTE: one-hot over the gathered axis: out[..., k, ...] = x[..., idx[..., k, ...], ...]; as a
    # one-hot (k x n) per row it costs k*n, small for the common k == 1 (cross-entropy's pick)
    n = x.shape[axis]
    idx = _wrap_negative(idx, n)
    ishape = idx.shape[:axis + 1] + (1,) + idx.shape[axis + 1:]
    rng = build("arange", start=0, stop=n, step=1, dtype=idx.dtype)
    rng = _reshape(rng, (1,) * (axis + 1) + (n,) + (1,) * (idx.ndim - axis - 1))
    onehot = build("astype", E.equal(_reshape(idx, ishape), rng), dtype=g.dtype)
    gx = _sum(_reshape(g, g.shape[:axis + 1] + (1,) + g.shape[axis + 1:]) * onehot, (axis,))
    return unbroadcast(gx, x.shape) if gx.shape != x.shape else gx, None


_set("take_along_axis", vjp=_take_along_vjp, jvp=_linear_jvp("take_along_axis"))


def _index_vjp(g: Array, out: Array, x: Array, *arrays: Array, spec: tuple) -> tuple:
    if not arrays:
        return (build("index_update", _zeros_like(x), g, spec=spec),)
    # NOTE: indexing an iota with the same key gives the flat position of every picked element;
    # scattering g there adds up repeats (x[[0, 0]] reads x[0] twice)
    n = math.prod(x.shape)
    iota = _reshape(build("arange", start=0, stop=n, step=1, dtype=D.int64), x.shape)
    where = _reshape(build("index", iota, *arrays, spec=spec), (out.size,))
    flat = build("scatter_add", _full((n,), 0, x.dtype), where, _reshape(g, (out.size,)), axis=0)
    return (_reshape(flat, x.shape), *([None] * len(arrays)))


def _index_update_vjp(g: Array, out: Array, x: Array, v: Array, *arrays: Array, spec: tuple) -> tuple:
    gx = build("index_update", g, _zeros_like(v), *arrays, spec=spec)
    return (gx, build("index", g, *arrays, spec=spec), *([None] * len(arrays)))


def _index_update_jvp(ts: tuple, out: Array, x: Array, v: Array, *arrays: Array, spec: tuple) -> Array:
    return build("index_update", _tangent(ts[0], x), _tangent(ts[1], v), *arrays, spec=spec)


_set("index", vjp=_index_vjp, jvp=_linear_jvp("index"))
_set("index_update", vjp=_index_update_vjp, jvp=_index_update_jvp)


# --- matmul ------------------------------------------------------------------------------------------
def _mT(x: Array) -> Array:
    n = x.ndim
    return build("permute_dims", x, axes=tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_vjp(g: Array, out: Array, a: Array, b: Array) -> tuple:
    if a.ndim == 1 and b.ndim == 1:
        return g * b, g * a
    a2 = _reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = _reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = _reshape(g2, g.shape[:-1] + (1,) + g.shape[-1:])
    if b.ndim == 1:
        g2 = _reshape(g2, g2.shape + (1,))
    ga = unbroadcast(build("matmul", g2, _mT(b2)), a2.shape)
    gb = unbroadcast(build("matmul", _mT(a2), g2), b2.shape)
    return _reshape(ga, a.shape), _reshape(gb, b.shape)


def _matmul_jvp(ts: tuple, out: Array, a: Array, b: Array) -> Array:
    parts = []
    if ts[0] is not None:
        parts.append(build("matmul", ts[0], b))
    if ts[1] is not None:
        parts.append(build("matmul", a, ts[1]))
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


_set("matmul", vjp=_matmul_vjp, jvp=_matmul_jvp)


# --- nn ops with cheaper rules than their decompositions ------------------------------------------------
def _softmax_vjp(g: Array, out: Array, x: Array, *, axis: int) -> tuple:
    return (out * (g - _sum(g * out, (axis,), keepdims=True)),)


def _softmax_jvp(ts: tuple, out: Array, x: Array, *, axis: int) -> Array:
    return out * (ts[0] - _sum(ts[0] * out, (axis,), keepdims=True))


def _log_softmax_vjp(g: Array, out: Array, x: Array, *, axis: int) -> tuple:
    return (g - E.exp(out) * _sum(g, (axis,), keepdims=True),)


def _log_softmax_jvp(ts: tuple, out: Array, x: Array, *, axis: int) -> Array:
    return ts[0] - _sum(E.exp(out) * ts[0], (axis,), keepdims=True)


_set("softmax", vjp=_softmax_vjp, jvp=_softmax_jvp)
_set("log_softmax", vjp=_log_softmax_vjp, jvp=_log_softmax_jvp)


def _logsumexp_vjp(g: Array, out: Array, x: Array, *, axis: tuple, keepdims: bool) -> tuple:
    return (_expand_back(g, x.shape, axis, keepdims) * E.exp(x - _expand_back(out, x.shape, axis, keepdims)),)


def _logsumexp_jvp(ts: tuple, out: Array, x: Array, *, axis: tuple, keepdims: bool) -> Array:
    return _sum(ts[0] * E.exp(x - _expand_back(out, x.shape, axis, keepdims)), axis, keepdims)


_set("logsumexp", vjp=_logsumexp_vjp, jvp=_logsumexp_jvp)


def _rope_vjp(g: Array, out: Array, x: Array, offset: Array, *, dims: int, traditional: bool, base: float,
              scale: float) -> tuple:
    # NOTE: a rotation by theta = position * scale * frequency; its transpose rotates by -theta
    return build("rope", g, offset, dims=dims, traditional=traditional, base=base, scale=-scale), None


_set("rope", vjp=_rope_vjp, jvp=lambda ts, out, x, offset, **attrs: build("rope", ts[0], offset, **attrs))


def _compute_dtype(x: Array) -> D.DType:
    return D.float32 if x.dtype in (D.float16, D.bfloat16) else x.dtype


def _rms_norm_vjp(g: Array, out: Array, x: Array, *w: Array, eps: float) -> tuple:
    cd = _compute_dtype(x)
    xf, gf = build("astype", x, dtype=cd) if cd is not x.dtype else x, build("astype", g, dtype=cd) if cd is not g.dtype else g
    last = (x.ndim - 1,)
    r = E.rsqrt(build("mean", xf * xf, axis=last, keepdims=True) + scalar(eps, cd))
    h = gf * build("astype", w[0], dtype=cd) if w else gf
    gx = r * (h - xf * (r * r) * build("mean", h * xf, axis=last, keepdims=True))
    gx = build("astype", gx, dtype=x.dtype) if gx.dtype is not x.dtype else gx
    if not w:
        return (gx,)
    gw = unbroadcast(gf * xf * r, w[0].shape)
    return gx, (build("astype", gw, dtype=w[0].dtype) if gw.dtype is not w[0].dtype else gw)


def _layer_norm_vjp(g: Array, out: Array, x: Array, *wb: Array, eps: float, has_weight: bool,
                    has_bias: bool) -> tuple:
    cd = _compute_dtype(x)
    xf, gf = build("astype", x, dtype=cd) if cd is not x.dtype else x, build("astype", g, dtype=cd) if cd is not g.dtype else g
    last = (x.ndim - 1,)
    d = xf - build("mean", xf, axis=last, keepdims=True)
    r = E.rsqrt(build("mean", d * d, axis=last, keepdims=True) + scalar(eps, cd))
    xhat = d * r
    h = gf * build("astype", wb[0], dtype=cd) if has_weight else gf
    gx = r * (h - build("mean", h, axis=last, keepdims=True) - xhat * build("mean", h * xhat, axis=last, keepdims=True))
    out_cts: list[Array | None] = [build("astype", gx, dtype=x.dtype) if gx.dtype is not x.dtype else gx]
    for p, ct in zip(wb, ([gf * xhat] if has_weight else []) + ([gf] if has_bias else [])):
        c = unbroadcast(ct, p.shape)
        out_cts.append(build("astype", c, dtype=p.dtype) if c.dtype is not p.dtype else c)
    return tuple(out_cts)


_set("rms_norm", vjp=_rms_norm_vjp)
_set("layer_norm", vjp=_layer_norm_vjp)
