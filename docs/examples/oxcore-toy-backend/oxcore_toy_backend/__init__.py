"""oxcore-toy-backend: a pure-Python backend on its own device, ``toy``.

It is the tutorial's first plugin (docs/plugins/tutorial.md). Buffers are flat
``array.array`` objects with a shape; kernels are list comprehensions. It claims a handful
of ops (elementwise arithmetic with broadcasting, a few unary functions, ``sum``) for
float32, float64, int32 and int64. Everything else is refused with a reason: the scheduler
then decomposes the op into ops the toy has, or runs it on another backend.
"""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Any

from oxcore import hookimpl

OXCORE_PLUGIN_API = 1
__version__ = "0.1.0"

# oxcore dtype name -> array typecode of the dtypes the toy computes in. Buffers of other
# dtypes are kept as raw bytes: every device must hold (and give back) every dtype.
CODES = {"float32": "f", "float64": "d", "int32": "i", "int64": "q"}


class ToyBuffer:
    """What lives on the toy device: a flat row-major ``array.array``, a shape, a NumPy dtype."""

    __slots__ = ("data", "shape", "dtype")

    def __init__(self, data: array, shape: tuple[int, ...], dtype: Any) -> None:
        self.data, self.shape, self.dtype = data, tuple(shape), dtype

    def __repr__(self) -> str:
        return f"ToyBuffer({self.dtype}, {self.shape})"


def make_device():
    """The ``toy`` device: host memory, but in the toy's own buffer type."""
    import numpy as np
    from oxcore.extend import Device

    class ToyDevice(Device):
        def from_numpy(self, a):
            code = CODES.get(a.dtype.name, "B")
            return ToyBuffer(array(code, np.ascontiguousarray(a).tobytes()), a.shape, a.dtype)

        def to_numpy(self, buf):
            return np.frombuffer(buf.data, dtype=buf.dtype).reshape(buf.shape)  # a view, no copy

    return ToyDevice("toy", "cpu", "pure-Python arrays (oxcore-toy-backend)")


# --- supports(): True, or the reason the toy cannot run the node -----------------------------
def elementwise(node) -> bool | str:
    for x in node.inputs:
        if x.dtype.name not in CODES:
            return f"toy stores {', '.join(CODES)} only, got {x.dtype.name}"
        if x.dtype is not node.dtype:
            return f"toy needs inputs of the result dtype {node.dtype.name}, got {x.dtype.name}"
    return True


def floating(node) -> bool | str:
    if node.dtype.name not in ("float32", "float64"):
        return f"toy computes {node.op} in float32 and float64 only, got {node.dtype.name}"
    return elementwise(node)


def same_dtype_sum(node) -> bool | str:
    (x,) = node.inputs
    if x.dtype.name not in CODES:
        return f"toy stores {', '.join(CODES)} only, got {x.dtype.name}"
    if x.dtype is not node.dtype:  # e.g. int32 sums accumulate in int64
        return f"toy sums in the input dtype only, not {x.dtype.name} -> {node.dtype.name}"
    return True


# --- kernels ----------------------------------------------------------------------------------
def _wrap_int(v: int, bits: int) -> int:
    """Two's-complement wrap-around, as NumPy (and every other backend) does on overflow."""
    half = 1 << (bits - 1)
    return (v + half) % (1 << bits) - half


def _store(values: list, like: ToyBuffer, shape: tuple[int, ...]) -> ToyBuffer:
    code = like.data.typecode
    if code in "iq":
        bits = 32 if code == "i" else 64
        values = [_wrap_int(v, bits) for v in values]
    return ToyBuffer(array(code, values), shape, like.dtype)


def _indices(shape: tuple[int, ...]):
    return itertools.product(*map(range, shape))


def _broadcast(buf: ToyBuffer, shape: tuple[int, ...]):
    """The buffer's values repeated to ``shape`` (NumPy's broadcasting rules), flat."""
    if buf.shape == shape:
        return buf.data
    src = (1,) * (len(shape) - len(buf.shape)) + buf.shape
    strides = [0 if d == 1 else math.prod(src[i + 1:]) for i, d in enumerate(src)]
    return [buf.data[sum(i * s for i, s in zip(idx, strides))] for idx in _indices(shape)]


def _binary(f):
    def kernel(a: ToyBuffer, b: ToyBuffer) -> ToyBuffer:
        shape = _broadcast_shape(a.shape, b.shape)
        return _store([f(x, y) for x, y in zip(_broadcast(a, shape), _broadcast(b, shape))], a, shape)
    return kernel


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a, b))


def _unary(f):
    def kernel(a: ToyBuffer) -> ToyBuffer:
        return _store([f(x) for x in a.data], a, a.shape)
    return kernel


def _divide(x, y):
    if y == 0:  # NOTE: IEEE results, like NumPy: x/0 is ±inf, 0/0 is nan
        return math.nan if x == 0 or x != x else math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _maximum(x, y):
    return x if x != x else y if y != y else max(x, y)  # NaN propagates


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _log(x):
    return -math.inf if x == 0 else math.nan if x < 0 else math.log(x)


def _sqrt(x):
    return math.nan if x < 0 else math.sqrt(x)


def sum_axes(x: ToyBuffer, *, axis, keepdims, dtype=None) -> ToyBuffer:
    keep = [d not in axis for d in range(len(x.shape))]
    out = tuple(n if k else 1 for n, k in zip(x.shape, keep))
    groups: list[list] = [[] for _ in range(math.prod(out))]
    for idx, v in zip(_indices(x.shape), x.data):  # row-major, like the data
        groups[sum(i * math.prod(out[d + 1:]) for d, i in enumerate(idx) if keep[d])].append(v)
    add = math.fsum if x.data.typecode in "fd" else sum
    shape = out if keepdims else tuple(n for n, k in zip(x.shape, keep) if k)
    return _store([add(g) for g in groups], x, shape)


KERNELS = {
    # op: (kernel, supports)
    "add": (_binary(lambda x, y: x + y), elementwise),
    "subtract": (_binary(lambda x, y: x - y), elementwise),
    "multiply": (_binary(lambda x, y: x * y), elementwise),
    "maximum": (_binary(_maximum), elementwise),
    "divide": (_binary(_divide), floating),
    "negative": (_unary(lambda x: -x), elementwise),
    "exp": (_unary(_exp), floating),
    "log": (_unary(_log), floating),
    "sqrt": (_unary(_sqrt), floating),
    "sum": (sum_axes, same_dtype_sum),
}


def make_backend():
    from oxcore.extend import Backend

    class ToyBackend(Backend):
        name = "toy"
        device = make_device()
        # NOTE: pure Python is ~100x slower than NumPy; a high cost prior keeps the scheduler
        # from choosing the toy unless you pin it (`with oxcore.use("toy"):`).
        priority = -10
        launch_us = 50.0
        bytes_per_us = 50.0

    b = ToyBackend()
    for op, (fn, supports) in KERNELS.items():
        b.kernel(op, supports=supports)(fn)
    return b


@hookimpl
def oxcore_register_backends(register):
    register(make_backend())
