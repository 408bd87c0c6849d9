"""The lazy ``Array``: a handle on a graph node, following the Python Array API standard."""

from __future__ import annotations

import contextvars
import operator
from types import ModuleType
from typing import Any, Iterator

import numpy as np

from . import _dtypes
from ._device import HOST, Device
from ._errors import AttributeValueError, DTypeError
from ._graph import PIN, TRACING, Node, check_not_traced
from ._plan import evaluate, runtime
from ._registry import REGISTRY

_OPS = REGISTRY.ops  # NOTE: the registry's dict itself (registering adds to it), one lookup less per build
_new = object.__new__
_get_pin = PIN.get


class use:  # noqa: N801  (a function-like context manager, as np.errstate)
    """Pin the ops built inside the block to these backends, in order of preference.

    Pins win over measured cost. A node that none of them can run falls back to the others
    (recorded in the plan; an error under ``OXCORE_STRICT=1``).

    Example:
        >>> import oxcore as ox
        >>> with ox.use("cpu_numpy"):
        ...     y = ox.asarray([1.0, 2.0]) * 3
        >>> y.tolist()
        [3.0, 6.0]
    """

    # NOTE: a class, not @contextmanager: entered on every call of a hot loop (a decode step
    # under oxcore.compile), where a generator-based manager costs ~4 us
    __slots__ = ("names", "_tokens")

    def __init__(self, *backends: str) -> None:
        self.names = tuple(n for b in backends for n in b.split(",") if n) or None
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> None:
        self._tokens.append(PIN.set(self.names))

    def __exit__(self, *exc: Any) -> None:
        PIN.reset(self._tokens.pop())


def leaf(buf: Any, dtype: _dtypes.DType, device: Device = HOST) -> "Array":
    """A realized array on ``buf``, a buffer of ``device`` (no copy).

    Example:
        >>> import numpy as np
        >>> from oxcore.extend import leaf
        >>> from oxcore import float32
        >>> leaf(np.ones(2, np.float32), float32).tolist()
        [1.0, 1.0]
    """
    return Array._wrap(Node(None, (), {}, tuple(buf.shape), dtype, buf, device))


def host_leaf(a: np.ndarray) -> "Array":
    """A realized array on a host NumPy array (no copy), its dtype taken from the array.

    Example:
        >>> import numpy as np
        >>> from oxcore.extend import host_leaf
        >>> host_leaf(np.arange(3)).dtype
        oxcore.int64
    """
    return leaf(a, _dtypes.dtype(a.dtype))


def build(name: str, *inputs: Any, **attrs: Any) -> "Array":
    """Build a lazy node for op ``name`` on ``inputs``; shape/dtype errors raise here.

    Example:
        >>> import oxcore as ox
        >>> y = ox.build("add", ox.asarray([1, 2]), ox.asarray([3, 4]))
        >>> y.tolist()
        [4, 6]
    """
    # NOTE: the hottest function of the lazy path (once per op): positional arguments, no
    # intermediate calls beyond the op's own shape rule
    op = _OPS.get(name) or REGISTRY[name]
    nodes = tuple([x._node for x in inputs])
    if attrs and op.attrs != ("*",):
        for k in attrs:
            if k not in op.attrs:
                raise AttributeValueError(f"{name}() got an unexpected attribute {k!r}; "
                                          f"valid attributes are: {', '.join(op.attrs) or '(none)'}")
    shape, dt = op.infer(nodes, attrs)
    a = _new(Array)
    a._node = Node(name, nodes, attrs, shape, dt, None, None, _get_pin())
    return a


def scalar(value: Any, dtype: _dtypes.DType) -> "Array":
    """A 0-d host array; Python scalars in expressions become these (inputs, not plan keys)."""
    return Array._wrap(Node(None, (), {}, (), dtype, np.asarray(value, dtype=dtype.numpy), HOST))


class Array:
    """A lazy n-dimensional array.

    Building an expression only records it; the values are computed when you ask for them
    (``.numpy()``, ``.item()``, ``.tolist()``, ``repr``, ``bool()``, ``oxcore.eval``...).
    Shape and dtype are known at once, and wrong shapes or dtypes raise on the line that
    built the op.

    Example:
        >>> import oxcore as ox
        >>> x = ox.asarray([[1.0, 2.0], [3.0, 4.0]])
        >>> y = (x @ x.T + 1).sum(axis=1)
        >>> y.shape, y.dtype
        ((2,), oxcore.float32)
        >>> y.tolist()
        [18.0, 38.0]
    """

    __slots__ = ("_node", "__weakref__")
    __array_priority__ = 100  # NOTE: so `np_array * ox_array` defers to Array.__rmul__

    @classmethod
    def _wrap(cls, node: Node) -> "Array":
        a = _new(cls)
        a._node = node
        return a

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Create arrays with oxcore.asarray(), oxcore.zeros(), ... not Array()")

    # --- attributes ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._node.shape

    @property
    def dtype(self) -> _dtypes.DType:
        return self._node.dtype

    @property
    def ndim(self) -> int:
        return len(self._node.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._node.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self._node.dtype.itemsize

    @property
    def device(self) -> Device:
        """Where the values live: once evaluated, the device of the backend that computed it.

        An unevaluated array reports the default device (``cpu``, the host), never None and
        never a guess: where it computes is decided when it is evaluated, and finding out
        earlier means planning its whole graph (``oxcore.explain(y)`` does that and shows
        each node's backend). Evaluate first (``y.eval()``) to ask where a result lives.

        Example:
            >>> import oxcore as ox
            >>> with ox.use("cpu_numpy"):
            ...     y = ox.asarray([1.0, 2.0]) + 1
            >>> y.is_lazy, y.device
            (True, Device('cpu'))
            >>> ox.explain(y).backends                  # where it will compute (plans the graph)
            ['cpu_numpy']
            >>> y.eval().device, y.is_lazy               # where it lives now
            (Device('cpu'), False)
        """
        # NOTE: the Array API wants a device object on every array (libraries such as
        # scikit-learn compare them), so a lazy array reports the host, not None
        return self._node.device if self._node.buf is not None else HOST

    @property
    def is_lazy(self) -> bool:
        return self._node.buf is None

    @property
    def T(self) -> "Array":
        if self.ndim != 2:
            from ._errors import ShapeError

            raise ShapeError(f".T needs a 2-D array, got {self.ndim}-D; use matrix_transpose or permute_dims")
        return _ops.permute_dims(self, (1, 0))

    @property
    def mT(self) -> "Array":
        return _ops.matrix_transpose(self)

    def __array_namespace__(self, *, api_version: str | None = None) -> Any:
        if api_version not in (None, "2023.12", "2024.12"):
            raise ValueError(f"Unsupported Array API version {api_version!r}; oxcore implements 2024.12")
        return _namespace

    # --- realization --------------------------------------------------------------------
    def eval(self) -> "Array":
        """Compute the value now (returns ``self``)."""
        evaluate([self._node])
        return self

    def numpy(self) -> np.ndarray:
        """The values as a read-only NumPy array (a view when the memory allows it)."""
        n = self._node
        if n.buf is None:
            self.eval()
        elif TRACING.get() is not None:
            check_not_traced((n,))
        out = n.device.to_numpy(n.buf)
        if out.flags.writeable:
            out = out.view()
            out.flags.writeable = False
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        a = self.numpy()
        if copy or (dtype is not None and np.dtype(dtype) != a.dtype):
            return np.array(a, dtype=dtype, copy=True)
        return a

    def item(self) -> Any:
        if self.size != 1:
            raise ValueError(f"item() needs an array of size 1, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        a = self.numpy()
        if self.dtype is _dtypes.bfloat16:
            a = a.astype(np.float32)
        return a.tolist()

    def __bool__(self) -> bool:
        return bool(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __index__(self) -> int:
        if not self.dtype.is_integer:
            raise DTypeError(f"__index__ needs an integer array, got {self.dtype.name}")
        return operator.index(self.item())

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self) -> Iterator["Array"]:
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        """Export by DLPack (2023.12 keywords). Evaluates; exports go through host memory, so
        ``dl_device`` must be the host's ``(1, 0)`` (else ``BufferError``)."""
        if dl_device is not None and tuple(dl_device) != (1, 0):
            raise BufferError(f"oxcore exports DLPack on the host (kDLCPU, (1, 0)) only; asked for {tuple(dl_device)}")
        a = self.numpy()
        if copy:
            a = a.copy()
        kw = {} if max_version is None else {"max_version": max_version}
        try:
            return a.__dlpack__(stream=stream, **kw)
        except BufferError:  # NOTE: read-only views are refused by NumPy's DLPack < v1
            if copy is False:
                raise BufferError("this array's host buffer is read-only and the consumer asked for the legacy "
                                  "DLPack (< 1.0), which cannot mark it read-only; a copy is needed") from None
            return a.copy().__dlpack__(stream=stream, **kw)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU: exports go through host memory

    def to_device(self, device: Device | str, /, *, stream: Any = None) -> "Array":
        """Return a copy of the values on ``device`` (evaluates now)."""
        dev = runtime().plugins().device(device) if isinstance(device, str) else device
        n = self._node
        if n.buf is None:
            self.eval()
        elif TRACING.get() is not None:
            check_not_traced((n,))
        if n.device == dev:
            return self
        return Array._wrap(Node(None, (), {}, n.shape, n.dtype, dev.from_numpy(n.device.to_numpy(n.buf)), dev))

    def __repr__(self) -> str:
        try:
            body = np.array2string(np.asarray(self.numpy(), dtype=np.float32)
                                   if self.dtype is _dtypes.bfloat16 else self.numpy(), separator=", ",
                                   prefix="Array(")
        except Exception as e:  # NOTE: repr must never raise; show why it could not evaluate
            body = f"<unevaluated: {type(e).__name__}: {e}>"
        return f"Array({body}, dtype={self.dtype.name}, device={self._node.device})"

    __str__ = __repr__

    def __hash__(self) -> int:
        return id(self)

    # --- operators (the functions live in oxcore.ops) -------------------------------------
    def __add__(self, o): return _ops.add(self, o)
    def __radd__(self, o): return _ops.add(o, self)
    def __sub__(self, o): return _ops.subtract(self, o)
    def __rsub__(self, o): return _ops.subtract(o, self)
    def __mul__(self, o): return _ops.multiply(self, o)
    def __rmul__(self, o): return _ops.multiply(o, self)
    def __truediv__(self, o): return _ops.divide(self, o)
    def __rtruediv__(self, o): return _ops.divide(o, self)
    def __floordiv__(self, o): return _ops.floor_divide(self, o)
    def __rfloordiv__(self, o): return _ops.floor_divide(o, self)
    def __mod__(self, o): return _ops.remainder(self, o)
    def __rmod__(self, o): return _ops.remainder(o, self)
    def __pow__(self, o): return _ops.pow(self, o)
    def __rpow__(self, o): return _ops.pow(o, self)
    def __matmul__(self, o): return _ops.matmul(self, o)
    def __rmatmul__(self, o): return _ops.matmul(o, self)
    def __and__(self, o): return _ops.bitwise_and(self, o)
    def __rand__(self, o): return _ops.bitwise_and(o, self)
    def __or__(self, o): return _ops.bitwise_or(self, o)
    def __ror__(self, o): return _ops.bitwise_or(o, self)
    def __xor__(self, o): return _ops.bitwise_xor(self, o)
    def __rxor__(self, o): return _ops.bitwise_xor(o, self)
    def __lshift__(self, o): return _ops.bitwise_left_shift(self, o)
    def __rlshift__(self, o): return _ops.bitwise_left_shift(o, self)
    def __rshift__(self, o): return _ops.bitwise_right_shift(self, o)
    def __rrshift__(self, o): return _ops.bitwise_right_shift(o, self)
    def __neg__(self): return _ops.negative(self)
    def __pos__(self): return _ops.positive(self)
    def __abs__(self): return _ops.abs(self)
    def __invert__(self): return _ops.bitwise_invert(self)
    def __lt__(self, o): return _ops.less(self, o)
    def __le__(self, o): return _ops.less_equal(self, o)
    def __gt__(self, o): return _ops.greater(self, o)
    def __ge__(self, o): return _ops.greater_equal(self, o)
    def __eq__(self, o): return _ops.equal(self, o)  # type: ignore[override]
    def __ne__(self, o): return _ops.not_equal(self, o)  # type: ignore[override]

    # NOTE: in-place operators rebind the handle to a new node; other arrays built from the
    # old value keep it (nodes are immutable).
    def _rebind(self, new: "Array") -> "Array":
        if new.shape != self.shape or new.dtype is not self.dtype:
            from ._errors import ShapeError

            raise ShapeError(f"in-place result has shape {new.shape} and dtype {new.dtype.name}, but the "
                             f"array is {self.shape} {self.dtype.name}")
        self._node = new._node
        return self

    def __iadd__(self, o): return self._rebind(_ops.add(self, o))
    def __isub__(self, o): return self._rebind(_ops.subtract(self, o))
    def __imul__(self, o): return self._rebind(_ops.multiply(self, o))
    def __itruediv__(self, o): return self._rebind(_ops.divide(self, o))
    def __ifloordiv__(self, o): return self._rebind(_ops.floor_divide(self, o))
    def __imod__(self, o): return self._rebind(_ops.remainder(self, o))
    def __ipow__(self, o): return self._rebind(_ops.pow(self, o))
    def __imatmul__(self, o): return self._rebind(_ops.matmul(self, o))
    def __iand__(self, o): return self._rebind(_ops.bitwise_and(self, o))
    def __ior__(self, o): return self._rebind(_ops.bitwise_or(self, o))
    def __ixor__(self, o): return self._rebind(_ops.bitwise_xor(self, o))
    def __ilshift__(self, o): return self._rebind(_ops.bitwise_left_shift(self, o))
    def __irshift__(self, o): return self._rebind(_ops.bitwise_right_shift(self, o))

    def __getitem__(self, key: Any) -> "Array":
        return _ops.getitem(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        """Functional update: the handle now names a new node; earlier results are unchanged."""
        self._node = _ops.setitem(self, key, value)._node

    # --- method forms of common functions -------------------------------------------------
    def astype(self, dtype: Any, /, *, copy: bool = True) -> "Array":
        return _ops.astype(self, dtype, copy=copy)

    def reshape(self, *shape: Any) -> "Array":
        return _ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def sum(self, axis=None, keepdims=False, dtype=None): return _ops.sum(self, axis=axis, keepdims=keepdims, dtype=dtype)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _ops.min(self, axis=axis, keepdims=keepdims)
    def prod(self, axis=None, keepdims=False, dtype=None): return _ops.prod(self, axis=axis, keepdims=keepdims, dtype=dtype)
    def var(self, axis=None, correction=0.0, keepdims=False): return _ops.var(self, axis=axis, correction=correction, keepdims=keepdims)
    def std(self, axis=None, correction=0.0, keepdims=False): return _ops.std(self, axis=axis, correction=correction, keepdims=keepdims)
    def argmax(self, axis=None, keepdims=False): return _ops.argmax(self, axis=axis, keepdims=keepdims)
    def argmin(self, axis=None, keepdims=False): return _ops.argmin(self, axis=axis, keepdims=keepdims)
    def all(self, axis=None, keepdims=False): return _ops.all(self, axis=axis, keepdims=keepdims)
    def any(self, axis=None, keepdims=False): return _ops.any(self, axis=axis, keepdims=keepdims)
    def transpose(self, *axes): return _ops.permute_dims(self, axes[0] if len(axes) == 1 else (axes or None))
    def flatten(self): return _ops.reshape(self, (-1,))
    def squeeze(self, axis=None): return _ops.squeeze(self, axis)
    def swapaxes(self, a, b):
        p = list(range(self.ndim)); p[a], p[b] = p[b], p[a]
        return _ops.permute_dims(self, tuple(p))


# NOTE: the operators call the op functions of ``oxcore.ops``, one layer up (they build on
# Array), and ``__array_namespace__`` returns the ``oxcore`` package, the top. The runtime
# hands both down once at import (``use_ops``), as it hands planning its backends: no module
# imports upward.
_ops: Any = None
_namespace: Any = None


def use_ops(ops: ModuleType, namespace: ModuleType) -> None:
    """Give ``Array``'s operators their op functions and ``__array_namespace__`` its namespace
    (``oxcore`` does this at import, through ``oxcore._runtime``)."""
    global _ops, _namespace
    _ops, _namespace = ops, namespace
