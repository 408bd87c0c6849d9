"""oxcore's default backend: every primitive op on the host CPU through NumPy.

It registers through the same entry point as any third-party backend. Half-precision inputs
(float16, bfloat16 via ml_dtypes) compute in float32 and round once on the way out, which is
both faster in NumPy and closer to the float64 reference.
"""

from __future__ import annotations

import importlib.metadata

import math
from typing import Any

import numpy as np
from oxcore import hookimpl  # NOTE: only oxcore imports this module, so oxcore is importable

from . import _kernels_nn as NN
from ._kernels_api import KERNELS as API_KERNELS

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-cpu-numpy")  # NOTE: written once, in oxcore/VERSION

_F16 = np.dtype(np.float16)


def _is_half(dt: np.dtype) -> bool:
    """float16 or bfloat16, without importing ml_dtypes: its NumPy dtype costs ~0.5 s and ~6 MiB,
    which loading this plugin (`oxcore --help`, a float32 model) must not pay; a bfloat16 array
    exists only once something imported it. (``dt.name`` costs ~2.5 us: asked only of 2-byte types.)"""
    return dt.itemsize == 2 and (dt == _F16 or dt.name == "bfloat16")


class _ErrstateVar:
    """``np.errstate(all="ignore")`` as a context variable set/reset (0.6 us instead of 2.7 us a
    segment). NOTE: NumPy >= 2 keeps the error state in a ContextVar; elsewhere use errstate."""

    def __init__(self) -> None:
        try:
            from numpy._core._ufunc_config import _extobj_contextvar as var
            with np.errstate(all="ignore"):
                self.var, self.ignore = var, var.get()
        except (ImportError, AttributeError):
            self.var = None

    def set(self) -> Any:
        if self.var is None:
            state = np.errstate(all="ignore")
            state.__enter__()
            return state
        return self.var.set(self.ignore)

    def reset(self, token: Any) -> None:
        if self.var is None:
            token.__exit__(None, None, None)
        else:
            self.var.reset(token)


_ERRSTATE = _ErrstateVar()


def _up(f, recast: bool = True):
    """Run ``f`` in float32 for half inputs; cast the result back when ``recast``."""
    def k(*xs, **attrs):
        dt = xs[0].dtype
        if _is_half(dt):
            r = f(*(x.astype(np.float32) if x.dtype == dt else x for x in xs), **attrs)
            return r.astype(dt) if recast else r
        return f(*xs, **attrs)
    k.__name__ = getattr(f, "__name__", "kernel")
    return k


# --- erf: NumPy has none; float64 goes through math.erf (exact), the rest through Numerical
# Recipes' erfc Chebyshev fit (fractional error < 1.2e-7, below float32 resolution).
_erf64 = np.frompyfunc(math.erf, 1, 1)


_ERFC_FIT = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196,
             1.00002368, -1.26551223)


def _erf(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.float64:
        return np.asarray(_erf64(x), dtype=np.float64)  # NOTE: frompyfunc gives a Python float for 0-d input
    # NOTE: float32 arithmetic, in place: 8x faster than a float64 chain of temporaries (exact GELU in
    # BERT is erf-bound); abs error < 5e-7, a few float32 ulps
    x32 = np.array(x, dtype=np.float32, ndmin=1)  # NOTE: ndmin: 0-d ufunc results are scalars, not arrays
    z = np.abs(x32)
    t = z * np.float32(0.5)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    p = t * np.float32(_ERFC_FIT[0])
    for a in _ERFC_FIT[1:-1]:
        p += np.float32(a)
        p *= t
    p += np.float32(_ERFC_FIT[-1])
    z *= z
    p -= z
    np.exp(p, out=p)
    p *= t
    np.subtract(np.float32(1.0), p, out=p)
    np.copysign(p, x32, out=p)
    return p.reshape(x.shape).astype(x.dtype, copy=False)


def _round(x):
    return np.round(x) if x.dtype.kind in "fc" else x  # NOTE: complex: each part, half to even


def _floor(x):
    return np.floor(x) if x.dtype.kind == "f" else x


def _ceil(x):
    return np.ceil(x) if x.dtype.kind == "f" else x


def _sign(x):
    return np.sign(x) if x.dtype.kind != "u" else (x > 0).astype(x.dtype)


def _pow(a, b):
    if a.dtype.kind in "iu" and np.any(b < 0):
        raise ValueError("integers to negative integer powers are not allowed")
    return np.power(a, b)


UNARY = {
    "negative": np.negative, "abs": np.abs, "sign": _sign, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "sin": np.sin, "cos": np.cos, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "tanh": np.tanh,
    "erf": _erf, "floor": _floor, "ceil": _ceil, "round": _round, "expm1": np.expm1, "log1p": np.log1p,
    "log2": np.log2, "log10": np.log10, "tan": np.tan, "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh,
    "acosh": np.arccosh, "atanh": np.arctanh, "trunc": np.trunc, "square": np.square,
    "reciprocal": np.reciprocal,
}
PREDICATES = {"isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite, "signbit": np.signbit}
BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "floor_divide": np.floor_divide, "remainder": np.remainder, "pow": _pow, "maximum": np.maximum,
    "minimum": np.minimum, "atan2": np.arctan2, "hypot": np.hypot, "copysign": np.copysign,
    "logaddexp": np.logaddexp,
}
COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
           "greater": np.greater, "greater_equal": np.greater_equal}
EXACT = {  # bool/integer ops: no half-precision detour
    "logical_not": np.logical_not, "bitwise_invert": np.invert, "logical_and": np.logical_and,
    "logical_or": np.logical_or, "logical_xor": np.logical_xor, "bitwise_and": np.bitwise_and,
    "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor, "bitwise_left_shift": np.left_shift,
    "bitwise_right_shift": np.right_shift,
}


def _index_key(spec, arrays):
    return tuple(slice(e[1], e[2], e[3]) if e[0] == "s" else arrays[e[1]] for e in spec)


def _cumulative(f):
    def k(x, *, axis, dtype, include_initial):
        acc = np.float32 if dtype.name in ("float16", "bfloat16") else dtype.numpy
        out = f(x, axis=axis, dtype=acc)
        if include_initial:
            shape = list(out.shape)
            shape[axis] = 1
            out = np.concatenate([np.full(shape, 1 if f is np.cumprod else 0, acc), out], axis=axis)
        return out.astype(dtype.numpy, copy=False)
    return k


def _reduce(f):
    def k(x, *, axis, keepdims, dtype=None):
        if dtype is None:
            return _up(f)(x, axis=axis, keepdims=keepdims)
        acc = np.float32 if dtype.name in ("float16", "bfloat16") else dtype.numpy
        return np.asarray(f(x, axis=axis, keepdims=keepdims, dtype=acc)).astype(dtype.numpy, copy=False)
    return k


def _softmax(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True)
    s = x - np.where(np.isfinite(m), m, 0)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _logsumexp(x, *, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _gelu(x, *, approximate):
    if approximate == "tanh":
        return NN.gelu_tanh(x)
    return 0.5 * x * (1 + _erf(x * x.dtype.type(1 / math.sqrt(2))))


def _layer_norm(x, *wb, eps, has_weight, has_bias):
    mu = np.mean(x, axis=-1, keepdims=True)
    d = x - mu
    y = d / np.sqrt(np.mean(d * d, axis=-1, keepdims=True) + x.dtype.type(eps))
    if has_weight:
        y = y * wb[0]
    if has_bias:
        y = y + wb[-1]
    return y


def _var(x, *, axis, keepdims, correction):
    n = math.prod(x.shape[a] for a in axis)
    if n - correction <= 0:
        return np.full(np.sum(x, axis=axis, keepdims=keepdims).shape, np.nan, x.dtype)
    return np.var(x, axis=axis, keepdims=keepdims, ddof=correction)


def _matmul(a, b):
    # NOTE: NumPy leaves BLAS for batched-by-2-D products with a transposed operand (10-100x
    # slower); fold the batch into rows instead.
    if a.ndim > 2 and b.ndim == 2:
        return np.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:])
    return np.matmul(a, b)


def _linear(x, w, *b):
    y = _matmul(x, w.T)
    return y + b[0] if b else y


def _index_update(x, v, *arrays, spec):
    out = np.array(x, copy=True)
    out[_index_key(spec, arrays)] = v
    return out


def _native_dtypes(node) -> bool | str:
    for i in (node, *node.inputs):
        if i.dtype.name not in _SUPPORTED:
            return f"NumPy has no {i.dtype.name}"
    return True


_SUPPORTED = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
              "bfloat16", "float32", "float64", "complex64", "complex128"}

def _scatter_add(x, i, v, *, axis):
    out = np.array(x, copy=True)
    np.add.at(out, (slice(None),) * axis + (i,), v)  # NOTE: unbuffered: repeated indices accumulate
    return out


KERNELS: dict[str, Any] = {
    **{k: _up(f) for k, f in UNARY.items()},
    **{k: _up(f, recast=False) for k, f in PREDICATES.items()},
    **{k: _up(f) for k, f in BINARY.items()},
    **{k: _up(f, recast=False) for k, f in COMPARE.items()},
    **EXACT,
    "astype": lambda x, *, dtype: x.astype(dtype.numpy),
    "where": lambda c, a, b: np.where(c, a, b),
    "full": lambda *, shape, value, dtype: np.full(shape, value, dtype.numpy),
    "arange": lambda *, start, stop, step, dtype: np.arange(start, stop, step).astype(dtype.numpy, copy=False),
    "sum": _reduce(np.sum), "prod": _reduce(np.prod), "max": _reduce(np.max), "min": _reduce(np.min),
    "all": _reduce(np.all), "any": _reduce(np.any),
    "argmax": lambda x, *, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64),
    "argmin": lambda x, *, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64),
    "cumulative_sum": _cumulative(np.cumsum), "cumulative_prod": _cumulative(np.cumprod),
    "mean": _up(lambda x, *, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims)),
    "var": _up(_var), "logsumexp": _up(_logsumexp),
    "matmul": _up(_matmul), "linear": _up(_linear),
    "reshape": lambda x, *, shape: np.reshape(x, shape),
    "permute_dims": lambda x, *, axes: np.transpose(x, axes),
    "broadcast_to": lambda x, *, shape: np.broadcast_to(x, shape),
    "concat": lambda *xs, axis: np.concatenate(xs, axis=axis),
    "slice": lambda x, *, starts, stops, steps: x[tuple(map(slice, starts, stops, steps))],
    "take": lambda x, i, *, axis: np.take(x, i, axis=axis),
    "take_along_axis": lambda x, i, *, axis: np.take_along_axis(x, i, axis=axis),
    "scatter_add": _scatter_add,
    "index": lambda x, *arrays, spec: x[_index_key(spec, arrays)],
    "index_update": _index_update,
    "softmax": _up(_softmax), "log_softmax": _up(_log_softmax),
    "relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "sigmoid": _up(lambda x: 1 / (1 + np.exp(-x))), "silu": _up(lambda x: x / (1 + np.exp(-x))),
    "gelu": _up(_gelu), "rms_norm": _up(NN.rms_norm), "layer_norm": _up(_layer_norm),
    "rope": _up(NN.rope), "scaled_dot_product_attention": _up(NN.sdpa),
    **API_KERNELS,
}


def make_backend():
    """Build the backend (the hook below registers it)."""
    from oxcore.extend import Backend

    class NumpyBackend(Backend):
        name = "cpu_numpy"
        priority = 0
        thread_pools = ("blas",)  # NOTE: NumPy's BLAS (OpenBLAS in the wheels): matmul, linalg

        def compile_segment(self, segment):
            run = segment.interpreter()

            def guarded(inputs):
                token = _ERRSTATE.set()  # NOTE: IEEE results (inf/nan), like every other backend
                try:
                    return run(inputs)
                finally:
                    _ERRSTATE.reset(token)
            return guarded

    b = NumpyBackend()
    b.version = __version__
    for op, fn in KERNELS.items():
        b.kernel(op, supports=_native_dtypes)(fn)
    return b


@hookimpl
def oxcore_register_backends(register):
    register(make_backend())
