"""Core kernels: one ``mlx.core`` function per oxcore op, with oxcore's (NumPy's) semantics
(elementwise, creation, reductions, linear algebra, shapes and indexing; nn ops: ``_kernels_nn``).

Every function takes MLX arrays and the op's attributes by their registry names, and returns
a lazy MLX array; the backend evaluates a whole segment at once. This module imports mlx, so
it is only imported from the backend factory, never at entry-point load.

Where MLX and NumPy differ, the kernel patches the difference (each such place says why):
``sign(nan)``, integer ``remainder`` by zero, shifts by >= the bit width, integer matmul,
``argmax`` dtype, scatter with non-adjacent index arrays.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np

from ._device import mx_dtype

_HALF = (mx.float16, mx.bfloat16)


def _f32(x):
    """Half inputs compute in float32 (accumulations, transcendental chains); others as they are."""
    return x.astype(mx.float32) if x.dtype in _HALF else x


def _floating(x) -> bool:
    return mx.issubdtype(x.dtype, mx.floating)


def _inexact(x) -> bool:
    """Real or complex floating point (MLX's complex64 is not ``mx.floating``)."""
    return mx.issubdtype(x.dtype, mx.inexact)


def _const(value: Any, dt: Any):
    """A 0-d MLX constant of MLX dtype ``dt``, cast like NumPy (uint64 beyond int64 included)."""
    if dt == mx.bool_:
        return mx.array(bool(value))
    if mx.issubdtype(dt, mx.integer):
        return mx.array(np.asarray(value).astype(str(dt).rsplit(".", 1)[-1]))
    return mx.array(float(value), dtype=dt)


def _axes(axis) -> list[int]:
    return list(axis)


def _reduced(shape, axis, keepdims) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axis else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axis)


# --- elementwise ---------------------------------------------------------------------------------
def _sign(x):
    if _floating(x):  # NOTE: MLX gives sign(nan) = 0; NumPy propagates nan
        return mx.where(mx.isnan(x), x, mx.sign(x))
    return mx.sign(x)  # NOTE: complex: z / |z| (0 at 0), as the standard and NumPy >= 2


def _ident_int(f):
    def k(x):
        return f(x) if _inexact(x) else x
    return k


def _signbit(x):
    # NOTE: MLX has no signbit; the sign bit of the IEEE pattern also covers -0.0 and -nan
    bits = {2: mx.int16, 4: mx.int32, 8: mx.int64}[x.dtype.size]
    return x.view(bits) < 0


# NOTE: *_like, not zeros(x.shape): elementwise kernels stay free of baked-in shapes, so
# metal_fused may compile their segments shapeless
def _isnan(x):
    return mx.isnan(x) if _inexact(x) else mx.zeros_like(x).astype(mx.bool_)


def _isinf(x):
    return mx.isinf(x) if _inexact(x) else mx.zeros_like(x).astype(mx.bool_)


def _isfinite(x):
    return mx.isfinite(x) if _inexact(x) else mx.ones_like(x).astype(mx.bool_)


def _safe_divisor(b):
    # NOTE: integer x / 0 and MIN / -1 trap (SIGFPE) in MLX's CPU backend and kill the process;
    # divide by 1 there and patch the results to NumPy's: x // 0 = x % 0 = 0, MIN // -1 = MIN
    bad = b == 0
    if mx.issubdtype(b.dtype, mx.signedinteger):
        bad = bad | (b == -1)
    return mx.where(bad, mx.ones_like(b), b)


def _remainder(a, b):
    if _floating(a):  # NOTE: half inputs in float32 and one rounding, like cpu_numpy
        return mx.remainder(_f32(a), _f32(b)).astype(a.dtype)
    r = mx.remainder(a, _safe_divisor(b))
    bad = b == 0 if not mx.issubdtype(b.dtype, mx.signedinteger) else (b == 0) | (b == -1)
    return mx.where(bad, mx.zeros_like(r), r)


def _floor_divide(a, b):
    if _floating(a):
        # NOTE: MLX takes floor(a / b), which rounds up when a / b lands on an integer from
        # below (1.0 // 0.1 gives 10; NumPy 9). NumPy's divmod: (a - a % b) / b is an integer
        # up to rounding, so round it; % is exact in MLX as in NumPy.
        af, bf = _f32(a), _f32(b)
        q = mx.round((af - mx.remainder(af, bf)) / bf)
        return mx.where(bf == 0, af / bf, q).astype(a.dtype)
    q = mx.floor_divide(a, _safe_divisor(b))
    if mx.issubdtype(b.dtype, mx.signedinteger):
        q = mx.where(b == -1, -a, q)  # wraps at MIN, like NumPy
    return mx.where(b == 0, mx.zeros_like(q), q)


def _left_shift(a, b):
    # NOTE: C shifts by >= the bit width are undefined; NumPy defines them as 0
    width = mx.array(8 * a.dtype.size, a.dtype)
    return mx.where(b < width, mx.left_shift(a, mx.minimum(b, width - 1)), mx.zeros_like(a))


def _right_shift(a, b):
    width = 8 * a.dtype.size
    if mx.issubdtype(a.dtype, mx.signedinteger):  # arithmetic shift saturates at the sign
        return mx.right_shift(a, mx.minimum(b, mx.array(width - 1, a.dtype)))
    w = mx.array(width, a.dtype)
    return mx.where(b < w, mx.right_shift(a, mx.minimum(b, w - 1)), mx.zeros_like(a))


def _hypot(a, b):
    af, bf = _f32(a), _f32(b)
    return mx.sqrt(af * af + bf * bf).astype(a.dtype)


def _copysign(a, b):
    return mx.where(_signbit(b), -mx.abs(a), mx.abs(a))


UNARY = {
    "negative": mx.negative, "abs": mx.abs, "sign": _sign, "exp": mx.exp, "log": mx.log, "sqrt": mx.sqrt,
    "sin": mx.sin, "cos": mx.cos, "asin": mx.arcsin, "acos": mx.arccos, "atan": mx.arctan, "tanh": mx.tanh,
    "erf": mx.erf, "floor": _ident_int(mx.floor), "ceil": _ident_int(mx.ceil), "round": _ident_int(mx.round),
    "isnan": _isnan, "isinf": _isinf, "signbit": _signbit, "logical_not": mx.logical_not,
    "bitwise_invert": mx.bitwise_invert,
    # decomposed in the registry, native here
    "expm1": mx.expm1, "log1p": mx.log1p, "log2": mx.log2, "log10": mx.log10, "rsqrt": mx.rsqrt,
    "square": mx.square, "reciprocal": mx.reciprocal, "tan": mx.tan, "sinh": mx.sinh, "cosh": mx.cosh,
    "asinh": mx.arcsinh, "acosh": mx.arccosh, "atanh": mx.arctanh, "trunc": _ident_int(mx.trunc),
    "isfinite": _isfinite,
}
BINARY = {
    "add": mx.add, "subtract": mx.subtract, "multiply": mx.multiply, "divide": mx.divide,
    "floor_divide": _floor_divide, "remainder": _remainder, "pow": mx.power, "maximum": mx.maximum,
    "minimum": mx.minimum, "atan2": mx.arctan2, "equal": mx.equal, "not_equal": mx.not_equal,
    "less": mx.less, "less_equal": mx.less_equal, "greater": mx.greater, "greater_equal": mx.greater_equal,
    "logical_and": mx.logical_and, "logical_or": mx.logical_or, "bitwise_and": mx.bitwise_and,
    "bitwise_or": mx.bitwise_or, "bitwise_xor": mx.bitwise_xor, "bitwise_left_shift": _left_shift,
    "bitwise_right_shift": _right_shift,
    # decomposed in the registry, native here
    "logaddexp": mx.logaddexp, "logical_xor": mx.logical_xor, "hypot": _hypot, "copysign": _copysign,
}


def _astype(x, *, dtype):
    return x.astype(mx_dtype(dtype))


def _clip(x, *, min, max):  # noqa: A002 (the op's attribute names)
    lo = None if min is None else _const(min, x.dtype)
    hi = None if max is None else _const(max, x.dtype)
    if lo is None and hi is None:
        return x
    return mx.clip(x, lo, hi)


# --- creation -------------------------------------------------------------------------------------
def _full(*, shape, value, dtype):
    return mx.full(tuple(shape), _const(value, mx_dtype(dtype)))


def _arange(*, start, stop, step, dtype):
    dt = mx_dtype(dtype)
    n = max(0, math.ceil((stop - start) / step))
    if mx.issubdtype(dt, mx.integer) and all(isinstance(v, int) for v in (start, stop, step)):
        return mx.arange(start, stop, step, dtype=dt)
    # NOTE: NumPy computes start + i * step in float64 and casts once; float32 is the closest
    # MLX has everywhere (half dtypes would lose precision as i grows)
    i = mx.arange(n, dtype=mx.float64 if dt == mx.float64 else mx.float32)
    return (i * step + start).astype(dt)


def _eye(*, n_rows, n_cols, k, dtype):
    return mx.eye(n_rows, n_cols, k, dtype=mx_dtype(dtype))


# --- reductions ------------------------------------------------------------------------------------
def _acc_dtype(x, dtype):
    dt = mx_dtype(dtype)
    return (mx.float32 if dt in _HALF else dt), dt


def _sum_like(f):
    def k(x, *, axis, keepdims, dtype):
        acc, dt = _acc_dtype(x, dtype)
        if not axis:
            return x.astype(dt)
        return f(x.astype(acc), axis=_axes(axis), keepdims=keepdims).astype(dt)
    return k


def _minmax(f):
    def k(x, *, axis, keepdims):
        return f(x, axis=_axes(axis), keepdims=keepdims) if axis else x
    return k


def _arg(f):
    def k(x, *, axis, keepdims):
        return f(x, axis=axis, keepdims=keepdims).astype(mx.int64)  # NOTE: MLX returns uint32
    return k


def _cumulative(f, initial):
    def k(x, *, axis, dtype, include_initial):
        acc, dt = _acc_dtype(x, dtype)
        out = f(x.astype(acc), axis=axis)
        if include_initial:
            shape = list(out.shape)
            shape[axis] = 1
            out = mx.concatenate([mx.full(shape, initial, acc), out], axis=axis)
        return out.astype(dt)
    return k


def _mean(x, *, axis, keepdims):
    if not axis:
        return x
    return mx.mean(_f32(x), axis=_axes(axis), keepdims=keepdims).astype(x.dtype)


def _var(x, *, axis, keepdims, correction):
    n = math.prod(x.shape[a] for a in axis)
    if n - correction <= 0:
        return mx.full(_reduced(x.shape, axis, keepdims), float("nan"), x.dtype)
    v = mx.var(_f32(x), axis=_axes(axis), keepdims=keepdims)
    if correction:  # NOTE: mx.var takes an integer ddof only; the correction may be fractional
        v = v * (n / (n - correction))
    return v.astype(x.dtype)


def _std(x, *, axis, keepdims, correction):
    v = _var(_f32(x), axis=axis, keepdims=keepdims, correction=correction)
    return mx.sqrt(v).astype(x.dtype)


def _logsumexp(x, *, axis, keepdims):
    if not axis:
        return x
    if any(x.shape[a] == 0 for a in axis):  # NOTE: MLX refuses empty reductions; log(0) = -inf
        return mx.full(_reduced(x.shape, axis, keepdims), float("-inf"), x.dtype)
    return mx.logsumexp(_f32(x), axis=_axes(axis), keepdims=keepdims).astype(x.dtype)


# --- linear algebra ----------------------------------------------------------------------------------
def _int_matmul(a, b):
    # NOTE: MLX matmul is floating-point only; integers multiply-and-sum (wrapping like NumPy)
    va, vb = a.ndim == 1, b.ndim == 1
    a2 = a[None, :] if va else a
    b2 = b[:, None] if vb else b
    out = mx.sum(mx.expand_dims(a2, -1) * mx.expand_dims(b2, -3), axis=-2).astype(a.dtype)
    if va:
        out = mx.squeeze(out, -2)
    if vb:
        out = mx.squeeze(out, -1)
    return out


def _matmul(a, b):
    return mx.matmul(a, b) if _floating(a) else _int_matmul(a, b)


def _linear(x, w, *b):
    y = mx.matmul(x, w.T)
    return y + b[0] if b else y


def _tensordot(a, b, *, axes):
    return mx.tensordot(a, b, axes=[list(axes[0]), list(axes[1])])


# --- shapes and indexing ---------------------------------------------------------------------------
def _slice(x, *, starts, stops, steps):
    return x[tuple(map(slice, starts, stops, steps))]


def _key(spec, arrays):
    return tuple(slice(e[1], e[2], e[3]) if e[0] == "s" else arrays[e[1]] for e in spec)


def _index(x, *arrays, spec):
    return x[_key(spec, arrays)]


def _index_update(x, v, *arrays, spec):
    if not spec:  # a 0-d array: the whole value is replaced
        return v
    key = _key(spec, arrays)
    pos = [i for i, e in enumerate(spec) if e[0] == "a"]
    if pos and pos != list(range(pos[0], pos[-1] + 1)):
        # NOTE: MLX's scatter refuses non-adjacent index arrays; scatter into the flat array at
        # the linear indices that the same key selects from an iota (NumPy's placement rules)
        iota = mx.arange(x.size, dtype=mx.int64 if x.size >= 2 ** 31 else mx.int32).reshape(x.shape)
        flat = mx.reshape(x, (-1,))
        flat[iota[key].reshape(-1)] = v.reshape(-1)
        return flat.reshape(x.shape)
    out = mx.reshape(x, x.shape)  # a new array object: the scatter must not rebind the input
    out[key] = v
    return out


def _pad(x, *, pad_width, value):
    return mx.pad(x, [tuple(p) for p in pad_width], constant_values=_const(value, x.dtype))


def _roll(x, *, shift, axis):
    if axis is None:
        return mx.roll(x, shift[0])
    return mx.roll(x, tuple(shift), tuple(axis))


CORE: dict[str, Any] = {
    **UNARY, **BINARY,
    "astype": _astype, "where": mx.where, "clip": _clip,
    "full": _full, "arange": _arange, "eye": _eye,
    "sum": _sum_like(mx.sum), "prod": _sum_like(mx.prod), "max": _minmax(mx.max), "min": _minmax(mx.min),
    "all": _minmax(mx.all), "any": _minmax(mx.any), "argmax": _arg(mx.argmax), "argmin": _arg(mx.argmin),
    "cumulative_sum": _cumulative(mx.cumsum, 0), "cumulative_prod": _cumulative(mx.cumprod, 1),
    "mean": _mean, "var": _var, "std": _std, "logsumexp": _logsumexp,
    "matmul": _matmul, "linear": _linear, "tensordot": _tensordot,
    "reshape": lambda x, *, shape: mx.reshape(x, tuple(shape)),
    "permute_dims": lambda x, *, axes: mx.transpose(x, list(axes)),
    "broadcast_to": lambda x, *, shape: mx.broadcast_to(x, tuple(shape)),
    "concat": lambda *xs, axis: mx.concatenate(xs, axis=axis),
    "slice": _slice, "take": lambda x, i, *, axis: mx.take(x, i, axis=axis),
    "take_along_axis": lambda x, i, *, axis: mx.take_along_axis(x, i, axis=axis),
    "scatter_add": lambda x, i, v, *, axis: x.at[(slice(None),) * axis + (i,)].add(v),
    "index": _index, "index_update": _index_update,
    "pad": _pad, "roll": _roll, "tile": lambda x, *, reps: mx.tile(x, list(reps)),
}
