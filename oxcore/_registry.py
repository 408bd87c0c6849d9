"""The op registry: every op is one declarative ``OpDef``; building a node is one lookup."""

from __future__ import annotations

import dataclasses
import enum
import re
import threading
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

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


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: ``Attr.default`` of an attribute the caller must always give
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Attr:
    """One attribute of an op's schema: what kernels receive in ``node.attrs``.

    Attributes:
        name: the keyword (``"axis"``).
        type: the type of the value a kernel receives, after the public function normalised it:
            a class (``int``, ``DType``), a union (``int | None``), ``tuple[int, ...]``, a
            ``Literal["left", "right"]``, or ``Any``.
        default: what the public function uses when its caller leaves the argument out (before
            normalisation), or ``REQUIRED``.
        note: how the value is normalised, and what it means (``"non-negative"``,
            ``"None means every axis"``).

    Example:
        >>> from oxcore.extend import Attr
        >>> a = Attr("axis", int | None, default=None, note="non-negative; None: the flattened array")
        >>> a.type_text, a.accepts(1), a.accepts(1.5)
        ('int | None', True, False)
    """

    name: str
    type: Any = Any
    default: Any = REQUIRED
    note: str = ""

    @property
    def type_text(self) -> str:
        return _type_text(self.type)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has the declared type (elements of tuples included)."""
        return _accepts(self.type, value)

    def as_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "type": self.type_text, "required": self.default is REQUIRED, "note": self.note}
        if self.default is not REQUIRED:
            d["default"] = _jsonable(self.default)
        return d

    def describe(self) -> str:
        """One line: ``axis: int | None = None (non-negative)``."""
        default = "" if self.default is REQUIRED else f" = {self.default!r}"
        return f"{self.name}: {self.type_text}{default}" + (f" ({self.note})" if self.note else "")


def _type_text(t: Any) -> str:
    if t is Any:
        return "any"
    if isinstance(t, str):
        return t
    if typing.get_origin(t) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(t))
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return " | ".join(_type_text(a) for a in typing.get_args(t))
    if t is type(None):
        return "None"
    if isinstance(t, type):
        return t.__name__
    # NOTE: generic aliases print with module paths (oxcore._dtypes.DType): keep the last name
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(t))


def _accepts(t: Any, v: Any) -> bool:
    if t is Any or isinstance(t, str):
        return True
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        return v in args
    if isinstance(t, types.UnionType) or origin is typing.Union:
        return any(_accepts(a, v) for a in args)
    if t is type(None):
        return v is None
    if origin is tuple:
        if not isinstance(v, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_accepts(args[0], e) for e in v)
        return len(args) == len(v) and all(_accepts(a, e) for a, e in zip(args, v))
    if t is float:  # NOTE: Python's numeric tower: an int is acceptable where a float is
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, origin or t)


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(e) for e in v]
    return getattr(v, "name", None) or repr(v)


def _as_attr(a: str | Attr) -> Attr:
    return a if isinstance(a, Attr) else Attr(a)


@dataclass(frozen=True)
class TuneCase:
    """One representative invocation of a plugin op for ``oxcore autotune``.

    A plugin declares them with ``register_op(name, ..., tune=cases)`` where
    ``cases(dtype, quick)`` returns a list of ``TuneCase`` for the dtype autotune asks about
    (``oxcore autotune --dtype``; float32 by default) and ``quick`` says ``--quick`` (keep that
    list short: CI runs it). Each case is measured once per shape bucket (every dim rounded up
    to a power of two), for every kernel that accepts it and for the op's decomposition.

    Attributes:
        inputs: ``(shape, dtype)`` of each array input, in the op's order (dtype: a ``DType``
            or its name).
        attrs: the op's attributes.
        make: ``make(rng) -> list[np.ndarray]``, the input values to time on (matching
            ``inputs``), where the default (floats in [0.5, 1.5], integers 0) is not
            representative: block bytes with valid scales, indices in range...
        name: shown after the op where autotune lists the case (``ggml_matmul[Q4_K](...)``),
            for what the shapes do not say.

    Example:
        >>> import numpy as np, oxcore as ox
        >>> from oxcore.extend import Category, TuneCase, register_op, same_as_input
        >>> def cases(dtype, quick):
        ...     rows = (1, 64) if quick else (1, 64, 1024)
        ...     return [TuneCase([((r, 4096), dtype)]) for r in rows]
        >>> _ = register_op("my_triple", Category.UNARY, same_as_input,
        ...                 decompose=lambda x: x * 3, doc="x * 3", tune=cases)
        >>> from oxcore._tune_cases import representative
        >>> [c.describe() for c in representative("my_triple", ox.float32, quick=True)]
        ['my_triple(float32[1, 4096])', 'my_triple(float32[64, 4096])']
    """

    inputs: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    make: Callable[[Any], list[Any]] | None = None
    name: str = ""


@dataclass(frozen=True)
class OpDef:
    """One op of the registry.

    Attributes:
        name: unique op name (``"add"``, ``"rms_norm"``).
        category: a ``Category``.
        infer: ``infer(inputs, attrs) -> (shape, dtype)``; raises ``ShapeError``/``DTypeError``
            at build time. ``inputs`` are nodes with ``.shape`` and ``.dtype``.
        attrs: the attribute names the op takes; others are refused.
        schema: one ``Attr`` per attribute (type, default, normalisation), in ``attrs`` order;
            ``oxcore ops list`` shows it. A name given without an ``Attr`` has type ``any``.
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
        tune: optional ``tune(dtype, quick) -> Iterable[oxcore.extend.TuneCase]``: the op's
            representative cases for ``oxcore autotune`` (shape buckets, and how to make input
            values). Core ops get theirs from ``oxcore._tune_cases.TABLE``; a plugin op without
            one is measured only at recorded shapes (``oxcore autotune --from-trace``). Its
            decomposition is then timed on every backend, so a kernel wins only where it beats it.
        tune_attrs: names of attributes that change a kernel's speed beyond the dtypes and shapes
            (``ggml_matmul``'s ``ggml_type``: its weight is uint8 bytes whatever the type). Their
            values become part of the op's autotune profile keys, so each value is measured and
            chosen for separately. Other attributes are not keyed (nodes that differ only in them
            share measurements).
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
    schema: tuple[Attr, ...] = field(default=(), compare=False)
    tune: Callable[[DType, bool], Any] | None = field(default=None, compare=False)
    tune_attrs: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.schema) != len(self.attrs):  # NOTE: plain names (OpDef built directly): type any
            object.__setattr__(self, "schema", tuple(Attr(a) for a in self.attrs))
        if isinstance(self.tune_attrs, str):
            raise PluginError(f"op {self.name!r}: tune_attrs must be a tuple of attribute names, "
                              f"got the string {self.tune_attrs!r} (write ({self.tune_attrs!r},))")
        object.__setattr__(self, "tune_attrs", tuple(self.tune_attrs))
        unknown = [a for a in self.tune_attrs if a not in self.attrs]
        if unknown:
            raise PluginError(f"op {self.name!r}: tune_attrs {unknown} are not attributes of the op; "
                              f"valid: {', '.join(self.attrs) or '(none)'}")

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


def register_op(name: str, category: Category, infer: Callable, attrs: Sequence[str | Attr] = (),
                decompose: Callable | None = None, variadic: bool = False, doc: str = "",
                source: str = "oxcore", sample: Callable[[Any], Any] | None = None,
                vjp: Callable | None = None, jvp: Callable | None = None,
                batch: Callable | None = None, tune: Callable[[DType, bool], Any] | None = None,
                tune_attrs: Sequence[str] = ()) -> OpDef:
    """Declare an op in the global registry (one declaration per op).

    ``attrs`` lists the op's attributes, each a name or an ``Attr`` (name, type, default,
    normalisation note), which ``oxcore ops list`` shows; plain names have type ``any``.
    ``tune`` gives ``oxcore autotune`` the op's representative cases (see ``OpDef.tune`` and
    ``oxcore.extend.TuneCase``); ``tune_attrs`` names the attributes that change kernel speed
    and so key its profile entries (``tune_attrs=("ggml_type",)``; see ``OpDef.tune_attrs``).

    Example:
        >>> import oxcore as ox
        >>> from oxcore.extend import register_op, Category, same_as_input
        >>> op = register_op("my_double", Category.UNARY, same_as_input,
        ...                  decompose=lambda x: x * 2, doc="x * 2")
        >>> ox.build("my_double", ox.asarray([1.0, 2.0])).tolist()
        [2.0, 4.0]
    """
    schema = tuple(_as_attr(a) for a in attrs)
    return REGISTRY.register(OpDef(name, category, infer, tuple(a.name for a in schema), decompose, variadic,
                                   vjp=vjp, jvp=jvp, batch=batch, doc=doc, source=source, sample=sample,
                                   schema=schema, tune=tune, tune_attrs=tune_attrs))
