"""``oxcore.compile``: trace a function once per input signature, then replay its plan.

A lazy call builds Python ``Node`` objects, hashes the graph and looks the plan up: ~10 us per
op, fine for a model run once, too much for a decode step of 30 ops on a GPU where each op
takes microseconds. A compiled function pays that once per input signature (shapes, dtypes,
devices, non-array arguments, pins, installed plugins and profiles) and afterwards runs the
cached plan's steps directly on the new arguments' buffers: with a fusing backend, one
compiled segment call per step.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import numpy as np

from . import _plan as planning
from ._array import Array, host_leaf, leaf
from ._errors import CompileError
from ._graph import PIN, TRACING, Node, collect

__all__ = ["compile", "CompiledFunction"]

_ARRAY = "A"  # a position in a flattened tree that holds an array


def _flatten(obj: Any, leaves: list[Array]) -> Any:
    """The structure of ``obj`` (nested tuples, lists, dicts) as a hashable key; arrays are
    appended to ``leaves``. Everything else must be hashable and counts as a constant.

    NOTE: on every call of a compiled function, so exact type tests first, and a container
    holding only arrays (a dict of weights) is one key entry, not one per array.
    """
    t = type(obj)
    if t is Array:
        leaves.append(obj)
        return _ARRAY
    if t is dict or t is tuple or t is list:
        items = obj.values() if t is dict else obj
        for v in items:
            if type(v) is not Array:
                break
        else:
            leaves.extend(items)
            return (t, tuple(obj) if t is dict else len(obj), None)
        subtrees = tuple([_flatten(v, leaves) for v in items])
        return (t, tuple(obj) if t is dict else len(obj), subtrees)
    if isinstance(obj, Array):
        leaves.append(obj)
        return _ARRAY
    if isinstance(obj, np.ndarray):
        leaves.append(host_leaf(obj))
        return _ARRAY
    for base in (tuple, list, dict):  # NOTE: subclasses (named tuples...) come back as their base type
        if isinstance(obj, base):
            return _flatten(base(obj), leaves)
    try:
        hash(obj)
    except TypeError:
        raise TypeError(f"oxcore.compile: an argument of type {t.__name__} is neither an array, a "
                        "tuple/list/dict of them, nor hashable (non-array arguments are part of the cache "
                        "key)") from None
    return ("const", t, obj)  # NOTE: the type too: 1, 1.0 and True hash alike


def _split(args: tuple, kwargs: dict) -> tuple[Any, list[Array]]:
    """(structure key, arrays) of a call's arguments."""
    leaves: list[Array] = []
    tree = _flatten(args, leaves)
    if kwargs:
        tree = (tree, _flatten(kwargs, leaves))
    return tree, leaves


def _join(tree: Any, leaves: list[Array]) -> tuple[tuple, dict]:
    """The inverse of ``_split``: (args, kwargs) with these arrays."""
    it = iter(leaves)
    if tree[0] is tuple:
        return _unflatten(tree, it), {}
    return _unflatten(tree[0], it), _unflatten(tree[1], it)


def _unflatten(tree: Any, leaves: Any) -> Any:
    if tree is _ARRAY:
        return next(leaves)
    kind, shape, subtrees = tree
    if kind == "const":
        return subtrees
    if kind is dict:
        return {k: (next(leaves) if subtrees is None else _unflatten(subtrees[i], leaves))
                for i, k in enumerate(shape)}
    if subtrees is None:
        return kind(next(leaves) for _ in range(shape))
    return kind(_unflatten(v, leaves) for v in subtrees)


class _Replay:
    """One traced signature: the plan's steps with argument slots, constant slots (transfers
    of constants already done) and where each output comes from."""

    __slots__ = ("plan", "nslots", "steps", "arg_slots", "constants", "outputs", "out_tree")

    def __init__(self, plan: planning.Plan, order: list[Node], arg_index: dict[int, int], out_nodes: list[Node],
                 out_tree: Any) -> None:
        self.plan, self.nslots, self.out_tree = plan, plan.nslots, out_tree
        self.arg_slots = [(s, arg_index[id(order[p])]) for p, s in plan.leaf_slots if id(order[p]) in arg_index]
        constants = dict(plan.constants)
        constants.update((s, order[p].buf) for p, s in plan.leaf_slots if id(order[p]) not in arg_index)
        # NOTE: move constants (weights closed over, Python scalars) to their devices once, here
        self.steps = []
        for step in plan.steps:
            if step.transfer and step.inputs[0] in constants:
                constants[step.outputs[0]] = step.fn([constants[step.inputs[0]]])[0]
            else:
                self.steps.append(step)
        self.constants = list(constants.items())
        slot_of = {order[p]: (s, dev) for p, s, dev in plan.outputs}
        self.outputs: list[tuple] = []
        for n in out_nodes:
            if n in slot_of:
                self.outputs.append(("slot", n.shape, n.dtype) + slot_of[n])
            elif id(n) in arg_index:
                self.outputs.append(("arg", arg_index[id(n)]))
            else:
                self.outputs.append(("node", n))

    def __call__(self, args: list[Array]) -> Any:
        vals: list[Any] = [None] * self.nslots
        for s, i in self.arg_slots:
            vals[s] = args[i]._node.buf
        for s, buf in self.constants:
            vals[s] = buf
        for rec in planning.RECORDERS:
            rec(self.plan)
        planning.run_steps(self.steps, vals)
        if self.out_tree is _ARRAY and self.outputs[0][0] == "slot":  # NOTE: the common case, fast
            o = self.outputs[0]
            return Array._wrap(Node(None, (), {}, o[1], o[2], vals[o[3]], o[4]))
        out = []
        for o in self.outputs:
            if o[0] == "slot":
                out.append(Array._wrap(Node(None, (), {}, o[1], o[2], vals[o[3]], o[4])))
            elif o[0] == "arg":
                out.append(args[o[1]])
            else:
                out.append(Array._wrap(o[1]))
        return _unflatten(self.out_tree, iter(out))


def _share_small_constants(order: list[Node], pos: dict[int, int], args: frozenset[int]) -> None:
    """Point every use of a small constant (Python scalars become 0-d leaves, one per use) at
    its first equal copy: fewer inputs for each compiled segment. Only valid here, where
    constant values are fixed; the lazy path's plans are reused for other scalar values."""
    first: dict[tuple, int] = {}
    for i, n in enumerate(order):
        if n.buf is not None and id(n) not in args and not n.shape:
            key = (n.device.name, n.dtype, np.asarray(n.device.to_numpy(n.buf)).tobytes())
            pos[id(n)] = first.setdefault(key, i)


class CompiledFunction:
    """What ``oxcore.compile(fn)`` returns: call it like ``fn``.

    Attributes:
        fn: the original function.
        traces: how many times it has been traced (one per new input signature).
    """

    def __init__(self, fn: Callable, max_traces: int = 64) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.max_traces, self.traces = fn, max_traces, 0
        self._cache: dict[tuple, _Replay] = {}
        self._lock = threading.Lock()

    def _key(self, tree: Any, leaves: list[Array]) -> tuple:
        """The cache key of a call; evaluates lazy arguments first (their devices decide)."""
        sig = [tree, planning.config_key(), PIN.get()]
        try:
            for a in leaves:
                n = a._node
                sig.append((n.dtype, n.shape, n.device.name))
        except AttributeError:  # NOTE: a lazy argument (no device yet); rare, so no test up front
            planning.evaluate([a._node for a in leaves if a._node.buf is None])
            return self._key(tree, leaves)
        return tuple(sig)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if TRACING.get() is not None:  # NOTE: called while tracing an outer function: inline it
            return self.fn(*args, **kwargs)
        tree, leaves = _split(args, kwargs)
        key = self._key(tree, leaves)
        def attempt() -> Any:
            replay = self._cache.get(key) or self._trace(key, tree, leaves)
            with planning.LOCK:
                return replay(leaves)
        return planning.retrying(attempt, self._cache.clear)

    def _trace(self, key: tuple, tree: Any, leaves: list[Array]) -> _Replay:
        # NOTE: fresh leaf nodes for the arguments, so an argument is told apart from the same
        # array captured as a constant (or passed twice)
        proxies = [leaf(a._node.buf, a.dtype, a._node.device) for a in leaves]
        nodes = [p._node for p in proxies]
        arg_ids = frozenset(id(n) for n in nodes)
        args, kwargs = _join(tree, proxies)
        token = TRACING.set(arg_ids)
        try:
            result = self.fn(*args, **kwargs)
        finally:
            TRACING.reset(token)
        for p, n in zip(proxies, nodes):
            if p._node is not n:
                raise CompileError(f"{self.__name__} assigned into one of its arguments (x[...] = v). Under "
                                   "oxcore.compile the caller's array would not change; return the new array instead.")
        out_leaves: list[Array] = []
        out_tree = _flatten(result, out_leaves)
        out_nodes = [a._node for a in out_leaves]
        targets = list({id(n): n for n in out_nodes if n.buf is None}.values())
        with planning.LOCK:
            if targets:
                order, pos, _ = collect(targets)
                _share_small_constants(order, pos, arg_ids)
                tset = {id(t) for t in targets}
                constants = {i: n.buf for i, n in enumerate(order) if n.buf is not None and id(n) not in arg_ids}
                plan = planning.build_plan(order, pos, [id(n) in tset for n in order], constants=constants)
            else:
                order, plan = [], planning.Plan.empty()
        replay = _Replay(plan, order, {id(n): i for i, n in enumerate(nodes)}, out_nodes, out_tree)
        with self._lock:
            if len(self._cache) >= self.max_traces:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = replay
            self.traces += 1
        return replay

    def explain(self, *args: Any, **kwargs: Any) -> planning.Explanation:
        """The plan a call with these arguments replays (traces it if needed; computes nothing)."""
        tree, leaves = _split(args, kwargs)
        key = self._key(tree, leaves)
        return (self._cache.get(key) or self._trace(key, tree, leaves)).plan.explain()

    def clear(self) -> None:
        """Forget every trace (the next call traces again)."""
        with self._lock:
            self._cache.clear()


def compile(fn: Callable | None = None, *, max_traces: int = 64) -> Any:
    """Trace ``fn`` once per input signature and replay its plan on later calls.

    ``fn`` takes and returns arrays (or tuples, lists and dicts of them); other arguments are
    constants: a new value traces again, as do new shapes, dtypes or devices. Arrays that
    ``fn`` reads from its closure or globals are captured when it is traced; pass anything
    that changes between calls as an argument. ``fn`` must not read values (``float(x)``,
    ``bool(x)``, ``.numpy()``) or assign into its arguments: both raise ``CompileError``.
    Unseeded ``oxcore.random`` draws raise too (they would repeat every call).

    Use it for a step you call many times (a decode step, a training step): a lazy call
    costs ~10 us of Python per op to build and look up its plan, a compiled call a few us in
    all. ``max_traces`` bounds the signatures kept (oldest dropped first).

    Example:
        >>> import oxcore as ox
        >>> @ox.compile
        ... def step(x, w):
        ...     return ox.tanh(x @ w) * 0.5
        >>> x, w = ox.ones((2, 3)), ox.ones((3, 2))
        >>> [round(v, 4) for v in step(x, w).tolist()[0]]
        [0.4975, 0.4975]
        >>> step(x * 0, w).tolist(), step.traces
        ([[0.0, 0.0], [0.0, 0.0]], 1)
    """
    if fn is None:
        return lambda f: CompiledFunction(f, max_traces)
    return CompiledFunction(fn, max_traces)
