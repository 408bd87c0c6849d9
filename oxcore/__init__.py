"""oxcore: a lazy Array API framework for ML with pluggable backends, kernels and formats.

Example:
    >>> import oxcore as ox
    >>> x = ox.asarray([[1.0, 2.0], [3.0, 4.0]])
    >>> ox.softmax(x @ x.T, axis=-1).shape
    (2, 2)
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

from ._dtypes import (DType, bfloat16, bool_ as bool, complex64, complex128, dtype, finfo, float16, float32,  # noqa: A004
                      float64, iinfo, int8, int16, int32, int64, uint8, uint16, uint32, uint64)
from ._errors import (AttributeValueError, CompileError, DifferentiationError, DTypeError, FallbackError, FormatError, OpNotSupportedError,
                      OxcoreError, PluginError, ShapeError, UnknownNameError)
from ._array import Array, build, use
from ._device import HOST, Device
from ._format import TensorFile
from ._io import load, save
from ._plugins import hookimpl, PLUGIN_API
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all
from .ops import random
from . import fft, linalg, tree
from . import _dtypes, _plan, _runtime
from . import _profile as profile  # noqa: F401  (autotune profiles: oxcore.profile.current())
from ._trace import record
from ._compile import compile  # noqa: A004  (like mx.compile / torch.compile)
from ._autodiff import (checkpoint, custom_jvp, custom_vjp, grad, jvp, stop_gradient, value_and_grad,  # noqa: F401
                        vjp)
from ._vmap import vmap  # noqa: F401

_runtime.install(sys.modules[__name__])  # NOTE: wires the layers together; before any array is used

from ._version import __version__  # NOTE: written in one place, oxcore/VERSION
__array_api_version__ = "2024.12"

e = 2.718281828459045
pi = 3.141592653589793
inf = float("inf")
nan = float("nan")
newaxis = None


def eval(*arrays: Array) -> None:
    """Compute several arrays in one plan (shared work is done once).

    Example:
        >>> import oxcore as ox
        >>> a = ox.arange(3) * 2; b = a + 1
        >>> ox.eval(a, b); a.is_lazy, b.is_lazy
        (False, False)
    """
    _plan.evaluate([a._node for a in arrays if isinstance(a, Array)])


def explain(*arrays: Array, verbose: bool = False) -> _plan.Explanation:
    """Show where each op would run and why: candidates with their costs, the winner,
    segments, transfers and fallbacks. Nothing is computed.

    By default one line per op you wrote, in the order they feed each other; an op that runs
    through its decomposition (``oxcore.random.normal``, an op a backend lacks) is one line
    with its node count, and Python scalars are counted, not listed. ``verbose=True`` lists
    every node of the plan with its candidates (``OXCORE_LOG=plan:verbose`` logs that).

    Example:
        >>> import oxcore as ox
        >>> y = ox.exp(ox.asarray([1.0, 2.0]) + 1)
        >>> print(ox.explain(y))  # doctest: +ELLIPSIS
        plan: 2 ops you wrote (2 nodes in all), 1 input, 1 segment on cpu_numpy, 0 transfers, 0 fallbacks
          %0   add(in0, scalar) -> float32[2] on cpu_numpy [cpu_numpy.add.default=...us...]
          %1   exp(%0) -> float32[2] on cpu_numpy [...]
          in0  input float32[2] on cpu
          segment 0: cpu_numpy, 2 nodes
          (not listed: 1 scalar or constant input; ...)
        >>> print(ox.explain(y, verbose=True))  # doctest: +ELLIPSIS
        plan: 2 nodes, 2 inputs and constants (%0-%3), 1 segment on cpu_numpy, 0 transfers, 0 fallbacks, 0 decomposed
          %0   input #0               float32[] on cpu
          %1   input #1               float32[2] on cpu
          %2   add(%1, %0) -> float32[2] on cpu_numpy [...]
          %3   exp(%2) -> float32[2] on cpu_numpy [...]
          segment 0: cpu_numpy, 2 nodes
    """
    return _plan.explain([a._node for a in arrays], verbose)


def result_type(*arrays_and_dtypes: Any) -> DType:
    """The promoted dtype of arrays, dtypes and Python scalars (Array API)."""
    out: DType | None = None
    scalars = []
    for x in arrays_and_dtypes:
        if isinstance(x, (int, float, complex)) and not isinstance(x, DType):
            scalars.append(x)
            continue
        d = x.dtype if isinstance(x, Array) else dtype(x)
        out = d if out is None else _dtypes.result_type_pair(out, d)
    if out is None:
        raise DTypeError("result_type needs at least one array or dtype")
    for s in scalars:
        out = _dtypes.result_type_pair(out, _dtypes.scalar_dtype(s, out))
    return out


def can_cast(from_: Any, to: Any, /) -> bool:
    """Whether ``from_`` promotes to ``to`` without loss (Array API)."""
    a = from_.dtype if isinstance(from_, Array) else dtype(from_)
    b = dtype(to)
    try:
        return _dtypes.result_type_pair(a, b) is b
    except DTypeError:
        return False


def isdtype(dtype: DType, kind: Any) -> bool:
    """Array API ``isdtype``: kind is a dtype, a kind name, or a tuple of them.

    Example:
        >>> import oxcore as ox
        >>> ox.isdtype(ox.complex64, ("real floating", "complex floating"))
        True
    """
    # NOTE: the parameter names are the standard's (both may be passed by keyword)
    dt = dtype
    if isinstance(kind, tuple):
        return builtins.any(isdtype(dt, k) for k in kind)  # NOTE: oxcore.any shadows the builtin here
    if isinstance(kind, DType):
        return dt is kind
    groups = {"bool": dt.kind == "b", "signed integer": dt.kind == "i", "unsigned integer": dt.kind == "u",
              "integral": dt.kind in "iu", "real floating": dt.kind == "f", "complex floating": dt.kind == "c",
              "numeric": dt.kind in "iufc"}
    if kind not in groups:
        raise ValueError(f"Invalid kind: {kind!r}. Valid kinds are: {', '.join(groups)}")
    return groups[kind]


class _Info:
    """``__array_namespace_info__()``: capabilities, default dtypes, devices."""

    def capabilities(self) -> dict[str, Any]:
        return {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": 64}

    def default_device(self) -> Device:
        return HOST

    def devices(self) -> list[Device]:
        from ._plugins import manager

        return list(manager().devices.values())

    def default_dtypes(self, *, device: Any = None) -> dict[str, DType]:
        return {"real floating": _dtypes.default_float, "complex floating": complex64, "integral": _dtypes.default_int,
                "indexing": int64}

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, DType]:
        return {d.name: d for d in _dtypes.ALL if kind is None or isdtype(d, kind)}


def __array_namespace_info__() -> _Info:
    return _Info()


def backends() -> list[str]:
    """Names of the installed backends that are available on this machine."""
    from ._plugins import manager

    return [b.name for b in manager().available_backends()]


__all__ = ["record", "compile", "CompileError", "grad", "value_and_grad", "vjp", "jvp", "stop_gradient",
           "custom_vjp", "custom_jvp", "checkpoint", "vmap", "DifferentiationError", "Array", "DType", "Device", "use", "eval", "explain", "build", "dtype", "result_type", "can_cast",
           "isdtype", "finfo", "iinfo", "backends", "hookimpl", "random", "fft", "linalg", "nn", "optim", "tree", "PLUGIN_API", "OxcoreError",
           "ShapeError", "DTypeError", "AttributeValueError", "OpNotSupportedError", "FallbackError",
           "FormatError", "PluginError", "UnknownNameError", "bool", "int8", "int16", "int32", "int64",
           "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
           "e", "pi", "inf", "nan", "newaxis", "load", "save", "TensorFile"] + list(_ops_all)


def __getattr__(name: str) -> Any:
    # NOTE: oxcore.nn and oxcore.optim are libraries above the core's layers (they use the
    # transforms and load/save); imported on first use so that importing oxcore, which every
    # layer may do, never pulls them in (import-linter's layers contract)
    if name in ("nn", "optim"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'oxcore' has no attribute {name!r}")
