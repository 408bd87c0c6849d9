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
from .tree import TreeDef, tree_flatten, tree_structure

__all__ = ["compile", "CompiledFunction"]

_ARRAY = "A"  # a leaf of the call's pytree that holds an array


def _split(args: tuple, kwargs: dict) -> tuple[Any, list[Any], list[Array]]:
    """A call's arguments as (cache key of their structure and constants, every leaf, the arrays).

    The structure is ``oxcore.tree``'s: nested tuples, lists, dicts, named tuples and registered
    classes (an ``nn.Module`` arrives as the Module it was). Leaves that are not arrays (NumPy
    arrays become host arrays) must be hashable: they are constants of the trace.
    """
    if not kwargs:  # NOTE: on every call: arrays alone (a decode step's usual call) skip the walk
        for a in args:
            if type(a) is not Array:
                break
        else:
            return _arrays_key(len(args)), list(args), list(args)
    leaves, treedef = tree_flatten((args, kwargs) if kwargs else args)
    if set(map(type, leaves)) <= {Array}:  # NOTE: arrays only (a dict of weights): no step per leaf
        return (treedef, bool(kwargs), ()), leaves, leaves
    arrays: list[Array] = []
    consts: list[Any] = []
    for i, v in enumerate(leaves):
        t = type(v)
        if t is Array or isinstance(v, Array):
            arrays.append(v)
            consts.append(_ARRAY)
            continue
        if isinstance(v, np.ndarray):
            leaves[i] = host_leaf(v)
            arrays.append(leaves[i])
            consts.append(_ARRAY)
            continue
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"oxcore.compile: an argument of type {t.__name__} is neither an array, a pytree of "
                            "them (tuple, list, dict, nn.Module...), nor hashable (non-array arguments are part "
                            "of the cache key)") from None
        consts.append((t, v))  # NOTE: the type too: 1, 1.0 and True hash alike
    return (treedef, bool(kwargs), tuple(consts)), leaves, arrays


@functools.lru_cache(maxsize=64)
def _arrays_key(n: int) -> tuple:
    """``_split``'s key for ``n`` positional arrays and nothing else."""
    return tree_structure((0,) * n), False, ()


def _join(tree: Any, leaves: list[Any], arrays: list[Array]) -> tuple[tuple, dict]:
    """The inverse of ``_split``: (args, kwargs), with ``arrays`` in the arrays' places."""
    treedef, has_kwargs, consts = tree
    it = iter(arrays)
    out = treedef.unflatten([next(it) if c is _ARRAY else v for c, v in zip(consts, leaves)] if consts else arrays)
    return out if has_kwargs else (out, {})


class _Replay:
    """One traced signature: the plan's steps with argument slots, constant slots (transfers
    of constants already done) and where each output comes from."""

    __slots__ = ("plan", "nslots", "steps", "arg_slots", "constants", "outputs", "out_tree", "donated")

    def __init__(self, plan: planning.Plan, order: list[Node], arg_index: dict[int, int], out_leaves: list[Any],
                 out_tree: TreeDef, moved: dict | None = None, donated: tuple[int, ...] = ()) -> None:
        self.plan, self.nslots = plan, plan.nslots
        self.donated = donated  # NOTE: indices into the call's arrays
        self.out_tree = None if out_tree.kind is None else out_tree  # NOTE: None: one array, the fast path
        self.arg_slots = [(s, arg_index[id(order[p])]) for p, s in plan.leaf_slots if id(order[p]) in arg_index]
        constants = dict(plan.constants)
        constants.update((s, order[p].buf) for p, s in plan.leaf_slots if id(order[p]) not in arg_index)
        # NOTE: move constants (weights closed over, Python scalars) to their devices once, here;
        # transfer steps come in the order of plan.transfers
        self.steps = []
        dsts = iter(t.dst for t in plan.transfers)
        for step in plan.steps:
            dst = next(dsts) if step.transfer else None
            if step.transfer and step.inputs[0] in constants:
                constants[step.outputs[0]] = _moved(moved, constants[step.inputs[0]], dst, step.fn)
            else:
                self.steps.append(step)
        # NOTE: keep only constants a remaining step reads: a host weight already moved to its
        # device would otherwise sit in every call's slots (and, when it views a mapped file,
        # make each call stat that file)
        read = {i for step in self.steps for i in step.inputs} | {s for _, s, _ in plan.outputs}
        self.constants = [(s, buf) for s, buf in constants.items() if s in read]
        slot_of = {order[p]: (s, dev) for p, s, dev in plan.outputs}
        self.outputs: list[tuple] = []
        for v in out_leaves:
            if not isinstance(v, Array):
                self.outputs.append(("const", v))
                continue
            n = v._node
            if n in slot_of:
                self.outputs.append(("slot", n.shape, n.dtype) + slot_of[n])
            elif id(n) in arg_index:
                self.outputs.append(("arg", arg_index[id(n)]))
            else:
                self.outputs.append(("node", n))

    def __call__(self, args: list[Array]) -> Any:
        if self.donated:
            _check_donated(args, self.donated)
        vals: list[Any] = [None] * self.nslots
        for s, i in self.arg_slots:
            vals[s] = args[i]._node.buf
        for s, buf in self.constants:
            vals[s] = buf
        for rec in planning.RECORDERS:
            rec(self.plan)
        planning.run_steps(self.steps, vals)
        if self.out_tree is None and self.outputs[0][0] == "slot":  # NOTE: the common case, fast
            o = self.outputs[0]
            return Array._wrap(Node(None, (), {}, o[1], o[2], vals[o[3]], o[4]))
        out = []
        for o in self.outputs:
            if o[0] == "slot":
                out.append(Array._wrap(Node(None, (), {}, o[1], o[2], vals[o[3]], o[4])))
            elif o[0] == "arg":
                out.append(args[o[1]])
            elif o[0] == "node":
                out.append(Array._wrap(o[1]))
            else:
                out.append(o[1])
        return out[0] if self.out_tree is None else self.out_tree.unflatten(out)


def _check_donated(args: list[Array], donated: tuple[int, ...]) -> None:
    """Refuse a call where a donated buffer is also another argument's: writing into it would
    change that argument too."""
    bufs = {id(args[i]._node.buf) for i in donated}
    if len(bufs) < len(donated) or any(id(a._node.buf) in bufs for i, a in enumerate(args) if i not in donated):
        seen: dict[int, int] = {}
        for i, a in enumerate(args):
            j = seen.setdefault(id(a._node.buf), i)
            if j != i and (i in donated or j in donated):
                raise CompileError(f"oxcore.compile: array argument {i} shares its buffer with array argument {j}, "
                                   "and one of them is donated (donate=): its buffer may be overwritten. Pass a "
                                   "copy (oxcore.asarray(x, copy=True)) or do not donate it.")


def _moved(moved: dict | None, buf: Any, dst: str, move: Callable[[list], list]) -> Any:
    """``buf`` on device ``dst``. A read-only host array (a weight viewing a mapped file) moves
    once per compiled function: every trace (a prompt of each length, the decode step) shares
    that copy, and so does whatever a kernel derives from it once per buffer (MLX's converted
    ggml weights), instead of one copy per trace. A writable one moves per trace: it may have
    changed since (the trace captures its values then)."""
    if moved is None or type(buf) is not np.ndarray or buf.flags.writeable:
        return move([buf])[0]
    key = (id(buf), dst)
    hit = moved.get(key)
    if hit is None or hit[0] is not buf:
        hit = moved[key] = (buf, move([buf])[0])  # NOTE: holds buf, so its id stays unique
    return hit[1]


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

    def __init__(self, fn: Callable, max_traces: int = 64, donate: tuple[int, ...] = ()) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.max_traces, self.traces = fn, max_traces, 0
        self.donate = _donate_arg(donate)
        self._cache: dict[tuple, _Replay] = {}
        self._moved: dict[tuple, tuple] = {}  # (id(host buffer), device) -> (buffer, its copy there)
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
        tree, leaves, arrays = _split(args, kwargs)
        key = self._key(tree, arrays)

        def attempt() -> Any:
            replay = self._cache.get(key) or self._trace(key, tree, leaves, arrays)
            with planning.LOCK:
                return replay(arrays)
        return planning.retrying(attempt, self._cache.clear)

    def _trace(self, key: tuple, tree: Any, leaves: list[Any], arrays: list[Array]) -> _Replay:
        # NOTE: fresh leaf nodes for the arguments, so an argument is told apart from the same
        # array captured as a constant (or passed twice)
        proxies = [leaf(a._node.buf, a.dtype, a._node.device) for a in arrays]
        nodes = [p._node for p in proxies]
        arg_ids = frozenset(id(n) for n in nodes)
        args, kwargs = _join(tree, leaves, proxies)
        token = TRACING.set(arg_ids)
        try:
            result = self.fn(*args, **kwargs)
        finally:
            TRACING.reset(token)
        for p, n in zip(proxies, nodes):
            if p._node is not n:
                raise CompileError(f"{self.__name__} assigned into one of its arguments (x[...] = v). Under "
                                   "oxcore.compile the caller's array would not change; return the new array instead.")
        out_leaves, out_tree = tree_flatten(result)
        targets = list({id(a._node): a._node for a in out_leaves if isinstance(a, Array) and a._node.buf is None}.values())
        # NOTE: an argument returned as it is must keep its values: not overwritten
        donated = self._donated(args, nodes) - {id(a._node) for a in out_leaves if isinstance(a, Array)}
        with planning.LOCK:
            if targets:
                order, pos, _ = collect(targets)
                _share_small_constants(order, pos, arg_ids)
                tset = {id(t) for t in targets}
                constants = {i: n.buf for i, n in enumerate(order) if n.buf is not None and id(n) not in arg_ids}
                donated_pos = frozenset(i for i, n in enumerate(order) if id(n) in donated)
                plan = planning.build_plan(order, pos, [id(n) in tset for n in order], constants=constants,
                                           donated=donated_pos)
            else:
                order, plan = [], planning.Plan.empty()
        replay = _Replay(plan, order, {id(n): i for i, n in enumerate(nodes)}, out_leaves, out_tree,
                         self._moved, tuple(i for i, n in enumerate(nodes) if id(n) in donated))
        with self._lock:
            if len(self._cache) >= self.max_traces:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = replay
            self.traces += 1
        return replay

    def _donated(self, args: tuple, nodes: list[Node]) -> set[int]:
        """Ids of the argument nodes (``nodes``) inside the donated positional arguments."""
        if not self.donate:
            return set()
        for i in self.donate:
            if i >= len(args):
                raise CompileError(f"{self.__name__}: donate={self.donate} names positional argument {i}, "
                                   f"but the call passed {len(args)}")
        ours = {id(n) for n in nodes}
        leaves = tree_flatten(tuple(args[i] for i in self.donate))[0]
        return {id(a._node) for a in leaves if isinstance(a, Array) and id(a._node) in ours}

    def explain(self, *args: Any, **kwargs: Any) -> planning.Explanation:
        """The plan a call with these arguments replays (traces it if needed; computes nothing)."""
        tree, leaves, arrays = _split(args, kwargs)
        key = self._key(tree, arrays)
        return (self._cache.get(key) or self._trace(key, tree, leaves, arrays)).plan.explain()

    def clear(self) -> None:
        """Forget every trace (the next call traces again)."""
        with self._lock:
            self._cache.clear()
            self._moved.clear()


def _donate_arg(donate: Any) -> tuple[int, ...]:
    """``donate`` as a sorted tuple of argument positions (an int or a sequence of them)."""
    items = (donate,) if isinstance(donate, int) or not isinstance(donate, (tuple, list)) else tuple(donate)
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
        raise TypeError(f"oxcore.compile: donate takes positions of positional arguments (ints >= 0), got {donate!r}")
    return tuple(sorted(set(items)))


def compile(fn: Callable | None = None, *, max_traces: int = 64, donate: int | tuple[int, ...] = ()) -> Any:
    """Trace ``fn`` once per input signature and replay its plan on later calls.

    ``fn`` takes and returns arrays, or pytrees of them (``oxcore.tree``: tuples, lists, dicts,
    named tuples, an ``nn.Module``, which arrives as the Module it is); other arguments are
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
    donate = _donate_arg(donate)
    if fn is None:
        return lambda f: CompiledFunction(f, max_traces, donate)
    return CompiledFunction(fn, max_traces, donate)
