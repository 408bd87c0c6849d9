"""What ``oxcore autotune`` measures: one-op cases at representative shape buckets, or the
shapes of a recorded workload (``oxcore.record``).

A case is an op, its attrs and its inputs' shapes and dtypes. Representative cases of core ops
are built through the public op functions (``TABLE``) so their attrs are exactly what real code
produces; a plugin op declares its own with ``register_op(..., tune=...)``, a function returning
``TuneCase`` s (shapes, attrs, and optionally how to make input values worth timing on).

Example:
    >>> import oxcore as ox
    >>> [c.describe() for c in representative("rms_norm", ox.float32, quick=True)][:1]
    ['rms_norm(float32[1, 1024], float32[1024])']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _dtypes
from ._dtypes import DType
from ._registry import TuneCase

__all__ = ["Case", "TuneCase", "representative", "from_trace", "host_inputs", "TABLE", "declared_ops"]


@dataclass
class Case:
    """One op invocation to time: ``op(*inputs, **attrs) -> dtype[shape]``."""

    op: str
    attrs: dict[str, Any]
    inputs: list[tuple[tuple[int, ...], DType]]
    shape: tuple[int, ...]
    dtype: DType
    count: int = 1  # how often a trace saw it (weights the summary)
    origin: str = "bucket"  # "bucket" (representative) or "trace"
    extra: dict[str, Any] = field(default_factory=dict)
    make: Callable[[np.random.Generator], list[np.ndarray]] | None = None  # from a TuneCase
    name: str = ""  # from a TuneCase: what the shapes do not say (a ggml type)

    def describe(self) -> str:
        ins = ", ".join(f"{d.name}{list(s)}" for s, d in self.inputs)
        return f"{self.op}[{self.name}]({ins})" if self.name else f"{self.op}({ins})"

    def plan_node(self) -> Any:
        """The node as planners and ``Kernel.supports`` see it (also the profile key source)."""
        from ._plan import PlanNode

        ins = [PlanNode(None, {}, (), [], s, d) for s, d in self.inputs]
        return PlanNode(self.op, self.attrs, tuple(range(len(ins))), ins, self.shape, self.dtype)


def host_inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    """Fresh host inputs: the case's own ``make`` (a plugin's ``TuneCase``) where it has one,
    else floats in [0.5, 1.5] (safe for log, sqrt, divide), integers 0 (a valid index for every
    gather), random booleans."""
    rng = np.random.default_rng(seed)
    if case.make is not None:
        return _checked(case, [_contiguous(a) for a in case.make(rng)])
    out = []
    for shape, dt in case.inputs:
        if dt.is_floating:
            a = rng.uniform(0.5, 1.5, size=shape).astype(dt.numpy)
        elif dt is _dtypes.bool_:
            a = rng.random(size=shape) < 0.5
        else:
            a = np.zeros(shape, dt.numpy)
        out.append(_contiguous(a))
    return out


def _contiguous(a: Any) -> np.ndarray:
    """``a`` as a C-contiguous array of its own shape (``np.ascontiguousarray`` makes a 0-d
    array 1-d: rope's offset, int32[], reached its kernels as int32[1])."""
    return np.asarray(a, order="C")


def _checked(case: Case, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` when they match ``case.inputs``; otherwise a ValueError naming the op and both."""
    got = [(tuple(a.shape), _dtypes.dtype(a.dtype)) for a in arrays]
    want = [(tuple(s), d) for s, d in case.inputs]
    if got != want:
        show = lambda xs: ", ".join(f"{d.name}{list(s)}" for s, d in xs)  # noqa: E731
        raise ValueError(f"{case.op}: the TuneCase's make() returned ({show(got)}), but the case declares "
                         f"({show(want)})")
    return arrays


# --- representative buckets ----------------------------------------------------------------------
# NOTE: rows = tokens in flight (1 = decode, 64/256 = prefill); 1024 features. Quick mode keeps
# three sizes so `oxcore autotune --quick` stays well under three minutes even where one backend
# is 100x slower than another on matmul.
ROWS_QUICK = (1, 64, 256)
ROWS_FULL = (1, 8, 64, 256, 1024)
FEAT = 1024

_UNARY = ("exp", "log", "sqrt", "tanh", "negative", "abs", "square", "sin", "cos", "erf", "reciprocal",
          "relu", "sigmoid", "silu", "gelu")
_BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "pow")
_REDUCE = ("sum", "mean", "max", "min", "var", "logsumexp")

Builder = Callable[[Any, Callable, DType, int], Any]


def _unary(op: str) -> list[Builder]:
    def f(ox, ph, dt, r):
        x = ph((r, FEAT))
        return ox.build(op, x, **({"approximate": "none"} if op == "gelu" else {}))
    return [f]


def _binary(op: str) -> list[Builder]:
    return [lambda ox, ph, dt, r: ox.build(op, ph((r, FEAT)), ph((r, FEAT))),
            lambda ox, ph, dt, r: ox.build(op, ph((r, FEAT)), ph((FEAT,)))]


def _reduce(op: str) -> list[Builder]:
    return [lambda ox, ph, dt, r: getattr(ox, op)(ph((r, FEAT)), axis=-1, keepdims=True)]


def _attn_q(ph, r, heads=8, dh=64):
    return ph((1, heads, r, dh))


TABLE: dict[str, list[Builder]] = {
    **{op: _unary(op) for op in _UNARY},
    **{op: _binary(op) for op in _BINARY},
    **{op: _reduce(op) for op in _REDUCE},
    "matmul": [lambda ox, ph, dt, r: ox.matmul(ph((r, FEAT)), ph((FEAT, FEAT))),
               lambda ox, ph, dt, r: ox.matmul(_attn_q(ph, r), ph((1, 8, 64, max(r, 16))))],
    "linear": [lambda ox, ph, dt, r: ox.linear(ph((r, FEAT)), ph((FEAT, FEAT)))],
    "rms_norm": [lambda ox, ph, dt, r: ox.rms_norm(ph((r, FEAT)), ph((FEAT,)))],
    "layer_norm": [lambda ox, ph, dt, r: ox.layer_norm(ph((r, FEAT)), ph((FEAT,)), ph((FEAT,)))],
    "softmax": [lambda ox, ph, dt, r: ox.softmax(ph((r, FEAT)), axis=-1),
                lambda ox, ph, dt, r: ox.softmax(ph((1, 8, r, max(r, 16))), axis=-1)],
    "log_softmax": [lambda ox, ph, dt, r: ox.log_softmax(ph((r, FEAT)), axis=-1)],
    "rope": [lambda ox, ph, dt, r: ox.rope(_attn_q(ph, r), 64)],
    "scaled_dot_product_attention": [
        lambda ox, ph, dt, r: ox.scaled_dot_product_attention(_attn_q(ph, r), ph((1, 2, max(r, 16), 64)),
                                                              ph((1, 2, max(r, 16), 64)), causal=True)],
    "permute_dims": [lambda ox, ph, dt, r: ox.permute_dims(ph((1, r, 8, 64)), (0, 2, 1, 3))],
    "reshape": [lambda ox, ph, dt, r: ox.reshape(ph((r, FEAT)), (1, r, 16, 64))],
    "concat": [lambda ox, ph, dt, r: ox.concat([ph((r, FEAT // 2)), ph((r, FEAT // 2))], axis=-1)],
    "where": [lambda ox, ph, dt, r: ox.where(ph((r, FEAT), _dtypes.bool_), ph((r, FEAT)), ph((r, FEAT)))],
    "astype": [lambda ox, ph, dt, r: ox.astype(ph((r, FEAT)), _dtypes.float16 if dt is not _dtypes.float16 else _dtypes.float32)],
}


def declared_ops() -> list[str]:
    """Registry ops (plugin ops) that declare their own representative cases (``tune=``)."""
    from ._registry import REGISTRY

    return [op for op in REGISTRY if op not in TABLE and REGISTRY.ops[op].tune is not None]


def representative(op: str, dtype: DType, quick: bool = False) -> list[Case]:
    """The representative cases of ``op`` in ``dtype``: the table's for core ops, the op's own
    ``tune`` for plugin ops ([] when there are none)."""
    import oxcore as ox
    from ._array import leaf

    if op not in TABLE:
        return _declared(op, dtype, quick)
    builders = TABLE.get(op, [])
    cases: list[Case] = []
    for rows in ROWS_QUICK if quick else ROWS_FULL:
        for b in builders:
            def ph(shape, dt=None):
                dt = dt or dtype
                return leaf(np.empty(shape, dt.numpy), dt)
            try:
                out = b(ox, ph, dtype, rows)
            except Exception:  # NOTE: an op that refuses this dtype (e.g. erf of int) has no case
                continue
            n = out._node
            if n.op != op:
                continue
            cases.append(Case(op, dict(n.attrs), [(i.shape, i.dtype) for i in n.inputs], n.shape, n.dtype))
    return cases


def _declared(op: str, dtype: DType, quick: bool) -> list[Case]:
    """The cases a plugin op declares (``register_op(..., tune=...)``), each built through the op
    (its ``infer`` checks them and gives the output); a case the op refuses in ``dtype`` is
    skipped, any other problem is a warning naming the op: a plugin never breaks autotune."""
    import warnings

    import oxcore as ox
    from ._array import leaf
    from ._errors import DTypeError
    from ._registry import REGISTRY

    d = REGISTRY.ops.get(op)
    if d is None or d.tune is None:
        return []
    try:
        declared = list(d.tune(dtype, quick))
    except Exception as e:
        warnings.warn(f"{op}: its tune cases raised {type(e).__name__}: {e} (declared by {d.source})", stacklevel=2)
        return []
    cases: list[Case] = []
    for tc in declared:
        try:
            ins = [(tuple(int(n) for n in s), _dtypes.dtype(dt)) for s, dt in tc.inputs]
            n = ox.build(op, *[leaf(np.empty(s, dt.numpy), dt) for s, dt in ins], **tc.attrs)._node
        except DTypeError:
            continue  # NOTE: the op refuses this dtype (as the table's builders do)
        except Exception as e:
            warnings.warn(f"{op}: a tune case of {d.source} does not build: {type(e).__name__}: {e}", stacklevel=2)
            continue
        cases.append(Case(op, dict(n.attrs), ins, n.shape, n.dtype, make=tc.make, name=tc.name))
    return cases


def from_trace(nodes: list[dict]) -> list[Case]:
    """Cases for the nodes of a trace (``oxcore._trace.load``), most frequent first."""
    from ._trace import decode_attrs

    out = []
    for n in sorted(nodes, key=lambda n: -n.get("count", 1)):
        try:
            attrs = decode_attrs(n.get("attrs") or {})
            ins = [(tuple(s), _dtypes.dtype(d)) for s, d in n["inputs"]]
            c = Case(n["op"], attrs, ins, tuple(n["shape"]), _dtypes.dtype(n["dtype"]), int(n.get("count", 1)), "trace")
        except (KeyError, ValueError, TypeError):
            continue  # NOTE: a node whose attrs cannot be rebuilt is skipped, not fatal
        out.append(c)
    return out
