"""The op registry: every op is one declarative ``OpDef``; building a node is one lookup."""

from __future__ import annotations

import dataclasses
import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ._dtypes import DType
from ._errors import PluginError, UnknownNameError

Shape = tuple[int, ...]
Node = Any  # NOTE: a graph node (``oxcore._graph.Node``, one layer up): what ``infer`` receives


class Category(enum.Enum):
    """What kind of op it is; used for grouping, docs and default costs."""

    CREATION = "creation"
    UNARY = "unary"
    BINARY = "binary"
    TERNARY = "ternary"
    REDUCTION = "reduction"
    LINALG = "linalg"
    MANIPULATION = "manipulation"
    INDEXING = "indexing"
    NN = "nn"
    QUANT = "quant"
    OTHER = "other"


@dataclass(frozen=True)
class OpDef:
    """One op of the registry.

    Attributes:
        name: unique op name (``"add"``, ``"rms_norm"``).
        category: a ``Category``.
        infer: ``infer(inputs, attrs) -> (shape, dtype)``; raises ``ShapeError``/``DTypeError``
            at build time. ``inputs`` are nodes with ``.shape`` and ``.dtype``.
        attrs: the attribute names the op takes (the schema); others are refused.
        decompose: ``decompose(*inputs: Array, **attrs) -> Array`` written with other oxcore
            ops, used when a backend has no kernel for this op. ``None`` for primitives.
        variadic: the op takes any number of array inputs (concat, stack...).
        vjp: ``vjp(g, out, *inputs, **attrs) -> tuple`` (one cotangent or None per input),
            written in oxcore ops, so the backward graph is an ordinary graph. ``out`` is the
            op's result, ``g`` the cotangent of the same shape and dtype.
        jvp: ``jvp(tangents, out, *inputs, **attrs) -> Array | None``; ``tangents`` holds one
            tangent or None (zero) per input.
        batch: ``batch(inputs, batched, **attrs) -> Array`` for ``oxcore.vmap``: ``batched[i]``
            says whether input i carries the batch as its axis 0; the result carries it as axis 0.
        Ops without rules are differentiated and batched through their decomposition (core
        ops), or refused with ``DifferentiationError`` (see ``oxcore.autodiff``).
        doc: one line for ``oxcore ops list``.
        sample: optional ``sample(oxcore) -> Array`` building a small instance of the op; coverage
            (``oxcore ops list``) plans it to tell native from decomposed. Core ops get theirs
            from the conformance cases; plugin ops should pass one.
    """

    name: str
    category: Category
    infer: Callable[[tuple[Node, ...], dict[str, Any]], tuple[Shape, DType]]
    attrs: tuple[str, ...] = ()
    decompose: Callable[..., Any] | None = None
    variadic: bool = False
    vjp: Callable[..., Any] | None = None
    jvp: Callable[..., Any] | None = None
    batch: Callable[..., Any] | None = None
    doc: str = ""
    source: str = field(default="oxcore", compare=False)
    sample: Callable[[Any], Any] | None = field(default=None, compare=False)

    @property
    def primitive(self) -> bool:
        return self.decompose is None


class Registry:
    """Name -> OpDef. Thread-safe for registration; lookups are plain dict reads."""

    def __init__(self) -> None:
        self.ops: dict[str, OpDef] = {}
        self._lock = threading.Lock()
        #: called with an unknown op's name before refusing it; the runtime installs one that
        #: loads the plugins (a plugin may declare the op)
        self.on_unknown: Callable[[str], None] | None = None

    def register(self, op: OpDef) -> OpDef:
        with self._lock:
            old = self.ops.get(op.name)
            if old is not None and old is not op:
                raise PluginError(f"op {op.name!r} from {op.source} is already registered by {old.source}")
            self.ops[op.name] = op
        return op

    def __getitem__(self, name: str) -> OpDef:
        op = self.ops.get(name)
        if op is None and self.on_unknown is not None:
            self.on_unknown(name)
            op = self.ops.get(name)
        if op is None:
            raise UnknownNameError(f"Unknown op {name!r}. Registered ops: {', '.join(sorted(self.ops))}")
        return op

    def set_rules(self, name: str, **rules: Callable[..., Any] | None) -> OpDef:
        """Attach ``vjp``/``jvp``/``batch`` rules to a registered op (replaces its entry)."""
        with self._lock:
            op = dataclasses.replace(self.ops[name], **rules)
            self.ops[name] = op
        return op

    def __contains__(self, name: str) -> bool:
        return name in self.ops

    def __iter__(self):
        return iter(sorted(self.ops))


REGISTRY = Registry()


def register_op(name: str, category: Category, infer: Callable, attrs: tuple[str, ...] = (),
                decompose: Callable | None = None, variadic: bool = False, doc: str = "",
                source: str = "oxcore", sample: Callable[[Any], Any] | None = None,
                vjp: Callable | None = None, jvp: Callable | None = None,
                batch: Callable | None = None) -> OpDef:
    """Declare an op in the global registry (one declaration per op).

    Example:
        >>> import oxcore as ox
        >>> from oxcore.extend import register_op, Category, same_as_input
        >>> op = register_op("my_double", Category.UNARY, same_as_input,
        ...                  decompose=lambda x: x * 2, doc="x * 2")
        >>> ox.build("my_double", ox.asarray([1.0, 2.0])).tolist()
        [2.0, 4.0]
    """
    return REGISTRY.register(OpDef(name, category, infer, attrs, decompose, variadic, vjp=vjp, jvp=jvp,
                                   batch=batch, doc=doc, source=source, sample=sample))
