"""Reverse and forward mode over the lazy graph: ``grad``, ``value_and_grad``, ``vjp``, ``jvp``,
``stop_gradient``, ``custom_vjp``, ``custom_jvp`` and ``checkpoint``.

A transform calls the function on its inputs (each wrapped in a fresh node, so it is told
apart from the same array captured elsewhere), which only *records* a graph; it then walks that
graph with the rules of the op registry (``OpDef.vjp`` / ``OpDef.jvp``, written in oxcore ops),
building more graph. Nothing is computed: the backward pass is an ordinary lazy graph that
every backend runs, fusing backends fuse, placement and autotune treat like any other, and the
scheduler frees each forward value after its last use in the backward pass. Transforms of
transforms work the same way, since the rules build differentiable ops.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._dtypes import DType
from ._array import Array, build, use
from ._errors import DifferentiationError
from ._graph import KEEP_GRAPH, Node
from ._registry import REGISTRY, Attr, Category, register_op
from .tree import tree_flatten, tree_unflatten

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "stop_gradient", "custom_vjp", "custom_jvp", "checkpoint",
           "THROUGH_DECOMPOSITION"]

#: a plugin op passes this as ``vjp=``/``jvp=``/``batch=`` to be differentiated (or batched)
#: through its decomposition; core ops are by default, plugin ops must say so
THROUGH_DECOMPOSITION = "decompose"


# --- the graph walk --------------------------------------------------------------------------------
def _topo(outs: Sequence[Node], stop: set[int]) -> list[Node]:
    """Post-order of the graph under ``outs`` (inputs first), not descending below ``stop``."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in reversed(outs)]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        if id(n) not in stop:
            stack.extend((i, False) for i in reversed(n.inputs) if id(i) not in seen)
    return order


def _depends(order: list[Node], on: set[int]) -> set[int]:
    """Ids of the nodes of ``order`` that depend on a node of ``on`` (``on`` included)."""
    dep = set(on)
    for n in order:
        if id(n) not in dep and any(id(i) in dep for i in n.inputs):
            dep.add(id(n))
    return dep


def _rule(n: Node, kind: str) -> Callable | None:
    """The op's ``vjp``/``jvp`` rule; None to go through the decomposition; refuses ops with neither."""
    op = REGISTRY[n.op]
    rule = getattr(op, kind)
    if callable(rule):
        return rule
    if op.decompose is not None and (op.source == "oxcore" or rule == THROUGH_DECOMPOSITION):
        return None
    if kind == "jvp" and callable(op.vjp):
        return functools.partial(_jvp_by_transposing_vjp, op.vjp)
    if kind == "vjp" and callable(op.jvp):
        return functools.partial(_vjp_by_transposing_jvp, op.jvp)
    from_ = f" (from the plugin {op.source})" if op.source != "oxcore" else ""
    raise DifferentiationError(
        f"op {n.op!r}{from_} has no {kind.upper()} rule, so it cannot be differentiated. Its author can pass "
        f"vjp=/jvp= rules to register_op (docs/plugins/hooks.md), or vjp='decompose' to differentiate through "
        f"its decomposition; or wrap its use in oxcore.stop_gradient if no gradient should flow through it.")


def _arrays(n: Node) -> tuple[Array, list[Array]]:
    return Array._wrap(n), [Array._wrap(i) for i in n.inputs]


def _pinned(n: Node) -> Any:
    # NOTE: the backward of a node built under `oxcore.use(...)` runs under the same pin
    return use(*n.pin) if n.pin else contextlib.nullcontext()


def _differentiable(n: Node) -> bool:
    return n.dtype.is_floating


def backward(outs: Sequence[Node], cotangents: Sequence[Array], wrt: Sequence[Node]) -> list[Array | None]:
    """Cotangents of ``wrt`` given those of ``outs`` (None where no path leads, or only
    through integer values). Builds graph; computes nothing."""
    wrt_ids = {id(n) for n in wrt}
    order = _topo(outs, wrt_ids)
    dep = _depends(order, wrt_ids)
    ct: dict[int, Array] = {}
    for o, g in zip(outs, cotangents):
        if id(o) in dep and _differentiable(o):
            _accumulate(ct, o, g)
    for n in reversed(order):
        if id(n) in wrt_ids:
            continue
        g = ct.pop(id(n), None)
        if g is None:
            continue
        for i, c in zip(n.inputs, _vjp_node(n, g, dep)):
            if c is not None and id(i) in dep and _differentiable(i):
                _accumulate(ct, i, c)
    return [ct.get(id(n)) for n in wrt]


def _accumulate(ct: dict[int, Array], n: Node, c: Array) -> None:
    if c.shape != n.shape:
        raise DifferentiationError(f"a VJP rule returned a cotangent of shape {c.shape} for an input of shape "
                                   f"{n.shape} (a bug in that op's rule)")
    if c.dtype is not n.dtype:
        c = build("astype", c, dtype=n.dtype)
    old = ct.get(id(n))
    ct[id(n)] = c if old is None else build("add", old, c)


def _vjp_node(n: Node, g: Array, dep: set[int]) -> Sequence[Array | None]:
    rule = _rule(n, "vjp")
    out, ins = _arrays(n)
    with _pinned(n):
        if rule is not None:
            cts = rule(g, out, *ins, **n.attrs)
        else:
            d = REGISTRY[n.op].decompose(*ins, **n.attrs)
            cts = backward([d._node], [g], list(n.inputs))
    if len(cts) != len(n.inputs):
        raise DifferentiationError(f"the VJP rule of {n.op!r} returned {len(cts)} cotangents for {len(n.inputs)} inputs")
    return cts


def forward(outs: Sequence[Node], wrt: Sequence[Node], tangents: Sequence[Array | None]) -> list[Array | None]:
    """Tangents of ``outs`` given those of ``wrt`` (None: zero). Builds graph; computes nothing."""
    wrt_ids = {id(n) for n in wrt}
    order = _topo(outs, wrt_ids)
    tan: dict[int, Array] = {id(n): t for n, t in zip(wrt, tangents) if t is not None}
    for n in order:
        if id(n) in wrt_ids or not _differentiable(n):
            continue
        ts = [tan.get(id(i)) if _differentiable(i) else None for i in n.inputs]
        if all(t is None for t in ts):
            continue
        t = _jvp_node(n, ts)
        if t is not None:
            if t.shape != n.shape:
                raise DifferentiationError(f"the JVP rule of {n.op!r} returned shape {t.shape}, expected {n.shape}")
            tan[id(n)] = t if t.dtype is n.dtype else build("astype", t, dtype=n.dtype)
    return [tan.get(id(o)) for o in outs]


def _jvp_node(n: Node, ts: list[Array | None]) -> Array | None:
    rule = _rule(n, "jvp")
    out, ins = _arrays(n)
    with _pinned(n):
        if rule is not None:
            return rule(tuple(ts), out, *ins, **n.attrs)
        d = REGISTRY[n.op].decompose(*ins, **n.attrs)
        return forward([d._node], list(n.inputs), ts)[0]


# NOTE: a VJP is linear in its cotangent, so its transpose is the JVP: J t = d/du <vjp(u), t>.
# Lets an op with one rule run in both modes (plugin ops, custom_vjp functions).
def _jvp_by_transposing_vjp(vjp_rule: Callable, ts: tuple, out: Array, *ins: Array, **attrs: Any) -> Array | None:
    u = _zeros_node(out)
    cts = vjp_rule(Array._wrap(u), out, *ins, **attrs)
    total = None
    for c, t in zip(cts, ts):
        if c is not None and t is not None:
            s = build("sum", c * t, axis=tuple(range(c.ndim)), keepdims=False, dtype=c.dtype)
            total = s if total is None else total + s
    if total is None:
        return None
    (jt,) = backward([total._node], [_ones(total)], [u])
    return jt


def _vjp_by_transposing_jvp(jvp_rule: Callable, g: Array, out: Array, *ins: Array, **attrs: Any) -> tuple:
    """J^T g = d/dt <g, J t> at t = 0."""
    ts = [_zeros_node(i) if i.dtype.is_floating else None for i in ins]
    jt = jvp_rule(tuple(None if t is None else Array._wrap(t) for t in ts), out, *ins, **attrs)
    if jt is None:
        return (None,) * len(ins)
    s = build("sum", jt * g, axis=tuple(range(jt.ndim)), keepdims=False, dtype=jt.dtype)
    live = [t for t in ts if t is not None]
    got = iter(backward([s._node], [_ones(s)], live))
    return tuple(None if t is None else next(got) for t in ts)


def _zeros_node(x: Array | Node) -> Node:
    # NOTE: a lazy `full` (not a host constant): the graph must see it as a node to differentiate
    return build("full", shape=tuple(x.shape), value=0, dtype=x.dtype)._node


def _ones(x: Array) -> Array:
    return build("full", shape=tuple(x.shape), value=1, dtype=x.dtype)


def _zeros(shape: tuple[int, ...], dtype: DType) -> Array:
    return build("full", shape=shape, value=0, dtype=dtype)


# --- inputs and outputs of a transformed function ---------------------------------------------------
def _trace_input(x: Any, what: str) -> Array:
    """A fresh node standing for one differentiated input (a no-op reshape: free on every backend)."""
    if not isinstance(x, Array):
        if isinstance(x, (bool, int, np.integer)) or (isinstance(x, np.ndarray) and x.dtype.kind in "biu"):
            raise DifferentiationError(f"{what} is an integer ({type(x).__name__}); differentiate with respect "
                                       f"to floating-point inputs (pass a float, or mark it static through argnums)")
        if not isinstance(x, (float, np.ndarray, np.floating)):
            raise DifferentiationError(f"{what} is a {type(x).__name__}, not an array; transforms take arrays, "
                                       f"and nested lists/tuples/dicts of them")
        from .ops.creation import asarray

        x = asarray(x)
    if not x.dtype.is_floating:
        raise DifferentiationError(f"{what} has dtype {x.dtype.name}; differentiation needs a floating-point "
                                   f"input (cast it with .astype(oxcore.float32), or leave it out of argnums)")
    return build("reshape", x, shape=x.shape)


class _Tracing:
    """Within a transform's call of the user function: keep node histories when values are read."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = KEEP_GRAPH.set(True)

    def __exit__(self, *exc: Any) -> None:
        KEEP_GRAPH.reset(self._token)


def _call(fn: Callable, args: tuple, kwargs: dict | None = None) -> Any:
    with _Tracing():
        return fn(*args, **(kwargs or {}))


def _outputs(out: Any, what: str) -> tuple[list[Array], Any]:
    leaves, treedef = tree_flatten(out)
    for x in leaves:
        if not isinstance(x, Array):
            raise DifferentiationError(f"{what} returned a {type(x).__name__} among its outputs; a transformed "
                                       f"function returns arrays (or nested lists/tuples/dicts of them)")
    return leaves, treedef


def _split_aux(out: Any, has_aux: bool, what: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise DifferentiationError(f"{what} has has_aux=True, so it must return a pair (output, aux); "
                                   f"it returned a {type(out).__name__}")
    return out[0], out[1]


# --- public transforms ---------------------------------------------------------------------------------
def vjp(fn: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """Call ``fn(*primals)`` and return ``(out, vjp_fn)`` (``(out, vjp_fn, aux)`` with ``has_aux``).

    ``vjp_fn(cotangents)`` takes cotangents shaped like ``out`` and returns a tuple with the
    cotangent of each primal, shaped like it. Everything stays lazy.

    Example:
        >>> import oxcore as ox
        >>> x = ox.asarray([1.0, 2.0])
        >>> y, back = ox.vjp(lambda x: x * x, x)
        >>> back(ox.asarray([1.0, 10.0]))[0].tolist()
        [2.0, 40.0]
    """
    flat, in_def = tree_flatten(primals)
    traced = [_trace_input(x, f"vjp primal {i}") for i, x in enumerate(flat)]
    # NOTE: taken before the call: `x[k] = v` inside fn repoints the handle, not the input
    wrt = [t._node for t in traced]
    out, aux = _split_aux(_call(fn, tree_unflatten(in_def, traced)), has_aux, "the function")
    out_leaves, out_def = _outputs(out, "the function")
    out_nodes = [o._node for o in out_leaves]

    def vjp_fn(cotangents: Any) -> tuple:
        cts, ct_def = tree_flatten(cotangents)
        if ct_def != out_def:
            raise DifferentiationError(f"vjp_fn: the cotangents have structure {ct_def!r}, the output {out_def!r}")
        for o, c in zip(out_leaves, cts):
            if not isinstance(c, Array) or c.shape != o.shape:
                raise DifferentiationError(f"vjp_fn: a cotangent of shape {getattr(c, 'shape', type(c).__name__)} "
                                           f"for an output of shape {o.shape}")
        grads = backward(out_nodes, [c if c.dtype is o.dtype else c.astype(o.dtype) for c, o in zip(cts, out_leaves)],
                         wrt)
        return tuple(tree_unflatten(in_def, [g if g is not None else _zeros(n.shape, n.dtype)
                                             for g, n in zip(grads, wrt)]))
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _argnums(argnums: int | Sequence[int], nargs: int, name: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise DifferentiationError(f"{name}: argnums is empty")
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise DifferentiationError(f"{name}: argnums {argnums!r} is out of range for a call with {nargs} "
                                       f"positional arguments (valid: {-nargs}..{nargs - 1})")
    norm = tuple(a % nargs for a in nums)
    if len(set(norm)) != len(norm):
        raise DifferentiationError(f"{name}: argnums {argnums!r} repeats an argument")
    return norm


def value_and_grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """A function returning ``(fn(*args), gradient)``, or ``((value, aux), gradient)`` with
    ``has_aux``. ``fn`` returns a 0-d floating-point array; the gradient has the structure of
    argument ``argnums`` (a tuple of them when ``argnums`` is a tuple).

    Example:
        >>> import oxcore as ox
        >>> f = ox.value_and_grad(lambda w, x: ((x @ w) ** 2).sum())
        >>> loss, g = f(ox.asarray([1.0, 2.0]), ox.asarray([[1.0, 0.0], [0.0, 1.0]]))
        >>> loss.item(), g.tolist()
        (5.0, [2.0, 4.0])
    """
    name = getattr(fn, "__name__", "function")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> tuple:
        nums = _argnums(argnums, len(args), "grad")

        def partial(*diff: Any) -> Any:
            full = list(args)
            for i, d in zip(nums, diff):
                full[i] = d
            return fn(*full, **kwargs)

        res = vjp(partial, *[args[i] for i in nums], has_aux=has_aux)
        out, back = res[0], res[1]
        if not isinstance(out, Array) or out.shape != () or not out.dtype.is_floating:
            got = f"shape {out.shape} {out.dtype.name}" if isinstance(out, Array) else type(out).__name__
            raise DifferentiationError(f"grad of {name}: the function must return a 0-d floating-point array "
                                       f"(a scalar loss), got {got}. Reduce it (.sum(), .mean()) or use "
                                       f"oxcore.vjp for non-scalar outputs")
        g = back(_ones(out))
        g = g[0] if isinstance(argnums, int) else g
        return ((out, res[2]) if has_aux else out), g
    return wrapper


def grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar function: ``grad(f)(x)`` has the structure of ``x``.

    Args:
        fn: returns a 0-d floating-point array (with ``has_aux``: a pair ``(loss, aux)``).
        argnums: which positional argument(s) to differentiate; a tuple gives a tuple of grads.
        has_aux: return ``(grad, aux)``.

    Example:
        >>> import oxcore as ox
        >>> df = ox.grad(lambda x: ox.sin(x).sum())
        >>> [round(v, 4) for v in df(ox.asarray([0.0, 1.0])).tolist()]
        [1.0, 0.5403]
        >>> ox.grad(ox.grad(lambda x: (x ** 3).sum()))  # doctest: +ELLIPSIS
        <function ...>
    """
    vg = value_and_grad(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def jvp(fn: Callable, primals: Sequence[Any], tangents: Sequence[Any], has_aux: bool = False) -> tuple:
    """Forward mode: ``(fn(*primals), J @ tangents)`` (plus ``aux`` with ``has_aux``).

    ``primals`` and ``tangents`` are sequences of the same structure.

    Example:
        >>> import oxcore as ox
        >>> y, t = ox.jvp(lambda x: x * x, (ox.asarray([3.0]),), (ox.asarray([1.0]),))
        >>> y.tolist(), t.tolist()
        ([9.0], [6.0])
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise DifferentiationError("jvp takes primals and tangents as tuples (or lists), one entry per argument")
    flat, in_def = tree_flatten(tuple(primals))
    tflat, t_def = tree_flatten(tuple(tangents))
    if t_def != in_def:
        raise DifferentiationError(f"jvp: tangents have structure {t_def!r}, primals {in_def!r}")
    traced = [_trace_input(x, f"jvp primal {i}") for i, x in enumerate(flat)]
    ts = []
    for x, t in zip(traced, tflat):
        from .ops.creation import asarray

        t = t if isinstance(t, Array) else asarray(t, dtype=x.dtype)
        if t.shape != x.shape:
            raise DifferentiationError(f"jvp: a tangent of shape {t.shape} for a primal of shape {x.shape}")
        ts.append(t if t.dtype is x.dtype else t.astype(x.dtype))
    wrt = [t._node for t in traced]
    out, aux = _split_aux(_call(fn, tree_unflatten(in_def, traced)), has_aux, "the function")
    out_leaves, out_def = _outputs(out, "the function")
    tans = forward([o._node for o in out_leaves], wrt, ts)
    tan_out = tree_unflatten(out_def, [t if t is not None else _zeros(o.shape, o.dtype)
                                       for t, o in zip(tans, out_leaves)])
    return (out, tan_out, aux) if has_aux else (out, tan_out)


# --- stop_gradient and custom rules --------------------------------------------------------------------
def _identity(x: Array, *rest: Array, **attrs: Any) -> Array:
    return x


register_op("stop_gradient", Category.OTHER, lambda i, a: (i[0].shape, i[0].dtype), decompose=_identity,
            vjp=lambda g, out, x: (None,), jvp=lambda ts, out, x: None, batch=lambda ins, b: ins[0],
            doc="identity whose gradient is zero")


def stop_gradient(x: Any) -> Array:
    """``x`` itself, but no gradient flows through it (a constant to every transform).

    Example:
        >>> import oxcore as ox
        >>> ox.grad(lambda x: (x * ox.stop_gradient(x)).sum())(ox.asarray([3.0])).tolist()
        [3.0]
    """
    from .ops._rules import as_array

    return build("stop_gradient", as_array(x))


@dataclass(frozen=True, eq=False)
class _CustomCall:
    """What a ``custom_vjp``/``custom_jvp`` node carries: the function object and how to read
    its inputs back (output, then the arrays of the arguments and of the residuals). Equal, for
    plan caching, when made by the same function with the same structure and static values."""

    fn: Any
    args_def: Any
    res_def: Any
    marks: tuple  # per flat leaf of (arguments, residuals): True where it is an array input
    static: tuple  # the other leaves, in order
    out_def: Any
    out_avals: tuple  # (shape, dtype) of each output leaf
    index: int

    def _key(self) -> tuple:
        return (id(self.fn), self.args_def, self.res_def, self.marks, self.static, self.out_def, self.index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CustomCall) and self._key() == other._key()

    def __hash__(self) -> int:
        try:
            return hash(self._key())
        except TypeError:  # NOTE: an unhashable static value: plans are not shared, still correct
            return id(self)

    def rebuild(self, arrays: Sequence[Array]) -> tuple[Any, Any]:
        """(arguments, residuals) from the node's array inputs."""
        it_arr, it_static = iter(arrays), iter(self.static)
        leaves = [next(it_arr) if m else next(it_static) for m in self.marks]
        k = self.args_def.num_leaves
        return self.args_def.unflatten(leaves[:k]), (self.res_def.unflatten(leaves[k:]) if self.res_def else None)


def _custom_infer(inputs: tuple[Node, ...], attrs: dict) -> tuple:
    return inputs[0].shape, inputs[0].dtype


def _custom_vjp_rule(g: Array, out: Array, *ins: Array, call: _CustomCall) -> tuple:
    args, res = call.rebuild(ins[1:])
    cts = [_zeros(s, d) for s, d in call.out_avals]
    cts[call.index] = g
    # NOTE: bwd is linear in the cotangent, so each output's node calls it with its own part
    got = call.fn.bwd(res, call.out_def.unflatten(cts))
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(got) != len(args):
        raise DifferentiationError(f"custom_vjp {call.fn.__name__}: bwd returned {len(got)} cotangents for "
                                   f"{len(args)} arguments")
    flat_got = []
    for a, c in zip(args, got):
        a_leaves, a_def = tree_flatten(a)
        if c is None:
            flat_got.extend([None] * len(a_leaves))
            continue
        c_leaves, c_def = tree_flatten(c)
        if c_def != a_def:
            raise DifferentiationError(f"custom_vjp {call.fn.__name__}: bwd returned structure {c_def!r} for an "
                                       f"argument of structure {a_def!r}")
        flat_got.extend(c_leaves)
    n_args = call.args_def.num_leaves
    arr_ct = [c for c, m in zip(flat_got, call.marks[:n_args]) if m]
    return (None, *arr_ct, *([None] * (len(ins) - 1 - len(arr_ct))))


def _custom_jvp_rule(ts: tuple, out: Array, *ins: Array, call: _CustomCall) -> Array | None:
    args, _ = call.rebuild(ins[1:])
    arr_ts = iter(ts[1:])
    flat = []
    for a, is_array in zip(tree_flatten(args)[0], call.marks):  # NOTE: marks go on into the residuals
        t = next(arr_ts) if is_array else None
        flat.append(t if t is not None or not is_array else _zeros(a.shape, a.dtype))
    tangents = call.args_def.unflatten(flat)
    _, t_out = call.fn.jvp_rule(tuple(args), tuple(tangents))
    return tree_flatten(t_out)[0][call.index]


CALL = Attr("call", "CustomCall", note="the user's function and its rules (an internal object; kernels never see these ops)")
register_op("custom_vjp_call", Category.OTHER, _custom_infer, attrs=(CALL,), decompose=_identity,
            variadic=True, vjp=_custom_vjp_rule, doc="a custom_vjp function's output (identity; carries its rule)")
register_op("custom_jvp_call", Category.OTHER, _custom_infer, attrs=(CALL,), decompose=_identity,
            variadic=True, jvp=_custom_jvp_rule, doc="a custom_jvp function's output (identity; carries its rule)")


class _Custom:
    op = ""

    def __init__(self, fn: Callable) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn

    def _wrap_outputs(self, args: tuple, out: Any, res: Any) -> Any:
        flat_args, args_def = tree_flatten(args)
        res_flat, res_def = tree_flatten(res) if res is not None else ([], None)
        out_leaves, out_def = _outputs(out, self.__name__)
        leaves = flat_args + res_flat
        marks = tuple(isinstance(x, Array) for x in leaves)
        static = tuple(x for x in leaves if not isinstance(x, Array))
        arrays = [x for x in leaves if isinstance(x, Array)]
        avals = tuple((o.shape, o.dtype) for o in out_leaves)
        return out_def.unflatten(
            build(self.op, o, *arrays, call=_CustomCall(self, args_def, res_def, marks, static, out_def, avals, i))
            for i, o in enumerate(out_leaves))


class custom_vjp(_Custom):  # noqa: N801  (a decorator, as jax.custom_vjp)
    """Give a function its own backward pass.

    Decorate ``f``, then ``f.defvjp(fwd, bwd)``: ``fwd(*args) -> (out, residuals)`` computes the
    output and what the backward needs; ``bwd(residuals, g) -> tuple`` returns one cotangent per
    argument (None for non-array arguments). Gradients never flow into ``fwd``'s graph.

    Example:
        >>> import oxcore as ox
        >>> @ox.custom_vjp
        ... def clip_grad_identity(x):
        ...     return x
        >>> clip_grad_identity.defvjp(lambda x: (x, None), lambda res, g: (ox.clip(g, -1.0, 1.0),))
        >>> ox.grad(lambda x: (clip_grad_identity(x) * 5).sum())(ox.asarray([1.0])).tolist()
        [1.0]
    """

    op = "custom_vjp_call"
    fwd: Callable | None = None
    bwd: Callable | None = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any) -> Any:
        if self.fwd is None:
            raise DifferentiationError(f"custom_vjp {self.__name__}: call .defvjp(fwd, bwd) before using it")
        out, res = self.fwd(*args)
        return self._wrap_outputs(args, out, res)


class custom_jvp(_Custom):  # noqa: N801
    """Give a function its own forward-mode rule (reverse mode is derived by transposing it).

    Decorate ``f``, then ``f.defjvp(rule)`` with ``rule(primals, tangents) -> (out, tangent_out)``,
    where ``primals``/``tangents`` are tuples of the arguments; the rule must be linear in the
    tangents (written in oxcore ops).

    Example:
        >>> import oxcore as ox
        >>> @ox.custom_jvp
        ... def softplus(x):
        ...     return ox.logaddexp(x, 0.0)
        >>> softplus.defjvp(lambda p, t: (softplus.fn(*p), t[0] * ox.sigmoid(p[0])))
        >>> round(ox.grad(lambda x: softplus(x).sum())(ox.asarray([0.0])).item(), 4)
        0.5
    """

    op = "custom_jvp_call"
    jvp_rule: Callable | None = None

    def defjvp(self, rule: Callable) -> None:
        self.jvp_rule = rule

    def __call__(self, *args: Any) -> Any:
        if self.jvp_rule is None:
            raise DifferentiationError(f"custom_jvp {self.__name__}: call .defjvp(rule) before using it")
        return self._wrap_outputs(args, self.fn(*args), None)


def checkpoint(fn: Callable) -> Callable:
    """Recompute ``fn``'s intermediate values in the backward pass instead of keeping them.

    Use it around a block (a transformer layer) to trade compute for memory: the forward
    values inside are freed after the forward pass and rebuilt when the gradient needs them.

    Example:
        >>> import oxcore as ox
        >>> block = ox.checkpoint(lambda x: ox.tanh(x) * 2)
        >>> [round(v, 4) for v in ox.grad(lambda x: block(x).sum())(ox.asarray([0.5])).tolist()]
        [1.5729]
    """
    wrapped = custom_vjp(fn)

    def bwd(args: tuple, g: Any) -> tuple:
        # NOTE: a fresh trace of fn: new nodes, so the scheduler computes them again here
        return vjp(fn, *args)[1](g)

    wrapped.defvjp(lambda *args: (fn(*args), args), bwd)
    return wrapped
