"""What ``oxcore.explain`` shows: a plan's steps, as the ops the user wrote or as every node.

The default view is one line per op of the collected graph (the ops the user called), in the
order they feed each other: an op the planner ran through its decomposition is one line with
its node count, and the scalars and constants the user did not write are counted, not listed.
``verbose`` lists every plan node with its candidates, as the planner saw them. Both render the
same ``Plan``: nothing here decides anything.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .plan import Decomposition, Plan, PlanNode

VERBOSE_HINT = "explain(..., verbose=True) lists every node"


class UserOp(NamedTuple):
    """One line of the default view: an op the user wrote.

    Attributes:
        op: the op's name.
        args: labels of its inputs (``%k`` another line, ``inK`` an input, ``scalar``, ``const``).
        shape, dtype: its result's.
        backends: where its plan nodes run (several for a decomposition split across backends).
        nodes: how many plan nodes it ran as (1 unless ``decomposed``).
        decomposed: it ran through its decomposition.
        node: the plan node holding its value (``%node`` in the verbose view).
    """

    op: str
    args: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: Any
    backends: tuple[str, ...]
    nodes: int
    decomposed: bool
    node: int


class Explanation:
    """What ``oxcore.explain`` returns: ``str()`` it for the table; attributes for tests.

    Attributes:
        plan: the ``Plan`` explained.
        verbose: ``str()`` lists every node (else the ops the user wrote).
        nodes: every plan node that runs an op, in planning order; ``backends`` where each runs.
        ops: the ops the user wrote (``UserOp``), in the order the default view shows them.
        transfers, fallbacks: the plan's; ``segments``: ``(backend, node count)`` of each.
    """

    def __init__(self, plan: "Plan", verbose: bool = False) -> None:
        self.plan, self.verbose = plan, verbose
        self.nodes = [p for p in plan.nodes if p.op is not None]
        self.backends = [p.backend.name for p in self.nodes]
        self.transfers = plan.transfers
        self.fallbacks = plan.fallbacks
        self.segments = [(s.backend.name, len(s.instructions)) for s in plan.segments]

    @cached_property
    def _collapsed(self) -> "_Collapsed":
        # NOTE: lazy: planning benchmarks call explain() for the plan alone and never print it
        return _Collapsed(self.plan)

    @property
    def ops(self) -> list[UserOp]:
        return self._collapsed.ops

    def text(self, verbose: bool | None = None) -> str:
        """The table: every node when ``verbose`` (default: this explanation's ``verbose``)."""
        if verbose if verbose is not None else self.verbose:
            return "\n".join(_verbose_lines(self))
        return "\n".join(self._collapsed.lines(self))

    def kernels(self) -> dict[str, dict[str, int]]:
        """Per op, how many of its plan nodes each kernel runs (``"decomposed"`` counts none:
        a decomposition's pieces are listed under their own ops).

        Example:
            >>> import numpy as np, oxcore as ox
            >>> x = ox.asarray(np.ones((4, 4), np.float32))
            >>> ox.explain(ox.exp(x) + x).kernels()
            {'exp': {'cpu_numpy.exp.default': 1}, 'add': {'cpu_numpy.add.default': 1}}
        """
        out: dict[str, dict[str, int]] = {}
        for p in self.nodes:
            k = p.kernel.id if p.kernel is not None else f"{p.backend.name} (no kernel)"
            per = out.setdefault(p.op, {})
            per[k] = per.get(k, 0) + 1
        return out

    def summary(self) -> str:
        """The plan's header and one line per op: its kernels, how many nodes each runs, and
        whether autotune measured them (``*``) or the planner went by static priors.

        Example:
            >>> import numpy as np, oxcore as ox
            >>> x = ox.asarray(np.ones((4, 4), np.float32))
            >>> print(ox.explain(ox.exp(x) + x).summary())  # doctest: +ELLIPSIS
            plan: 2 nodes, 1 segment on cpu_numpy, 0 transfers, 0 fallbacks
              add  1 x cpu_numpy.add.default...
              exp  1 x cpu_numpy.exp.default...
        """
        measured: set[tuple[str, str]] = set()
        for p in self.nodes:
            if p.kernel is not None and any(k == p.kernel.id and _measured(v) for k, v in p.candidates):
                measured.add((p.op, p.kernel.id))
        per = self.kernels()
        width = max((len(op) for op in per), default=0)
        lines = [f"plan: {_plural(len(self.nodes), 'node')}, {_segments_phrase(self)}, "
                 f"{_plural(len(self.transfers), 'transfer')}, {_plural(len(self.fallbacks), 'fallback')}"]
        for op, ks in sorted(per.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
            used = ", ".join(f"{n} x {k}{'*' if (op, k) in measured else ''}"
                             for k, n in sorted(ks.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {op:<{width}}  {used}")
        if measured:
            lines.append("  (* measured by `oxcore autotune`; the others chosen by static priors)")
        return "\n".join(lines + [f"  fallback: {f}" for f in self.fallbacks])

    def __str__(self) -> str:
        return self.text()

    __repr__ = __str__


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _measured(v: Any) -> bool:
    return getattr(v, "measured", False)


def _candidates(p: "PlanNode") -> str:
    # NOTE: "*" marks a cost measured by `oxcore autotune`; the others are static priors
    return "; ".join(f"{k}={v:.1f}us{'*' if _measured(v) else ''}" if isinstance(v, float) else f"{k}: {v}"
                     for k, v in p.candidates)


def _type(p: Any) -> str:
    return f"{p.dtype.name}{list(p.shape)}"


def _segments_phrase(ex: Explanation) -> str:
    names = list(dict.fromkeys(b for b, _ in ex.segments))
    return _plural(len(ex.segments), "segment") + (f" on {', '.join(names)}" if names else "")


def _tail(ex: Explanation, label: Any) -> list[str]:
    lines = [f"  transfer {label(t.node)}: {t.src} -> {t.dst} ({t.nbytes} bytes)" for t in ex.transfers]
    lines += [f"  fallback: {f}" for f in ex.fallbacks]
    lines += [f"  segment {j}: {b}, {_plural(n, 'node')}" for j, (b, n) in enumerate(ex.segments)]
    t = ex.plan.threads
    if t is not None and t.backends:
        lines.append(f"  threads: {', '.join(b.name for b in t.backends)} share the cores, "
                     f"{t.threads} each (their thread pools)")
    return lines


_MEASURED_NOTE = "  (costs with * were measured by `oxcore autotune`; others are static priors)"


def _verbose_lines(ex: Explanation) -> list[str]:
    nodes = ex.plan.nodes
    # NOTE: "nodes" are the ops, as in the default view and the segment lines; leaves are numbered too
    numbered = f" (%0-%{len(nodes) - 1})" if nodes else ""
    lines = [f"plan: {_plural(len(ex.nodes), 'node')}, {len(nodes) - len(ex.nodes)} inputs and constants"
             f"{numbered}, {_segments_phrase(ex)}, "
             f"{_plural(len(ex.transfers), 'transfer')}, {_plural(len(ex.fallbacks), 'fallback')}, "
             f"{ex.plan.decomposed} decomposed"]
    for i, p in enumerate(nodes):
        if p.op is None:
            what = "const" if p.constant is not None else f"input #{p.leaf_pos}"
            lines.append(f"  %{i:<3} {what:<22} {_type(p)} on {p.device}")
            continue
        args = ", ".join(f"%{a}" for a in p.args)
        origin = f" (from {p.origin})" if p.origin else ""
        lines.append(f"  %{i:<3} {p.op}({args}){origin} -> {_type(p)} on {p.backend.name} "
                     f"[{_candidates(p)}]{(' ' + p.note) if p.note else ''}")
    if any(_measured(v) for p in ex.nodes for _, v in p.candidates):
        lines.append(_MEASURED_NOTE)
    return lines + _tail(ex, lambda i: f"%{i}")


class _Collapsed:
    """The default view's items: ops the user wrote (decompositions as one item) and inputs."""

    def __init__(self, plan: "Plan") -> None:
        nodes = plan.nodes
        self.plan = plan
        inside: list[Decomposition | None] = [None] * len(nodes)
        for d in plan.decompositions:
            if d.depth == 0:
                inside[d.start:d.stop] = [d] * (d.stop - d.start)
        # items in planning order: a plan node index (an op placed as written) or a Decomposition
        items: list[Any] = []
        self.item_of: list[int | None] = [None] * len(nodes)
        for i, p in enumerate(nodes):
            d = inside[i]
            if d is not None:
                if not items or items[-1] is not d:
                    items.append(d)
                self.item_of[i] = len(items) - 1
            elif p.op is not None:
                items.append(i)
                self.item_of[i] = len(items) - 1
        self.hidden_inside = sum(1 for i, p in enumerate(nodes) if inside[i] is not None and p.op is not None)
        self.hidden_leaves = sum(1 for i, p in enumerate(nodes) if p.op is None and (
            p.constant is not None or not p.shape or inside[i] is not None))
        deps = [[self.item_of[a] for a in self._args(it) if self.item_of[a] is not None] for it in items]
        self.order = _dependency_order(deps)
        self.number = {it: k for k, it in enumerate(self.order)}
        self.inputs: dict[int, str] = {}  # plan node of an input the user made -> its label
        self.ops = [self._user_op(items[it]) for it in self.order]

    def _args(self, item: Any) -> tuple[int, ...]:
        return self.plan.nodes[item].args if isinstance(item, int) else item.args

    def label(self, i: int) -> str:
        """How the default view names plan node ``i``'s value."""
        if self.item_of[i] is not None:
            return f"%{self.number[self.item_of[i]]}"
        p = self.plan.nodes[i]
        if p.constant is not None:
            return "const"
        if not p.shape:
            return "scalar"
        if i not in self.inputs:
            self.inputs[i] = f"in{len(self.inputs)}"
        return self.inputs[i]

    def _user_op(self, item: Any) -> UserOp:
        nodes = self.plan.nodes
        args = tuple(self.label(a) for a in self._args(item))
        if isinstance(item, int):
            p = nodes[item]
            return UserOp(p.op, args, p.shape, p.dtype, (p.backend.name,), 1, False, item)
        ran = [p for p in nodes[item.start:item.stop] if p.op is not None]
        backends = tuple(dict.fromkeys(p.backend.name for p in ran))
        return UserOp(item.op, args, item.shape, item.dtype, backends, len(ran), True, item.result)

    def lines(self, ex: Explanation) -> list[str]:
        nodes = self.plan.nodes
        lines = [f"plan: {_plural(len(self.ops), 'op')} you wrote ({_plural(len(ex.nodes), 'node')} in all), "
                 f"{_plural(len(self.inputs), 'input')}, {_segments_phrase(ex)}, "
                 f"{_plural(len(ex.transfers), 'transfer')}, {_plural(len(ex.fallbacks), 'fallback')}"]
        measured = False
        for k, o in enumerate(self.ops):
            head = f"  %{k:<3} {o.op}({', '.join(o.args)}) -> {o.dtype.name}{list(o.shape)} on {', '.join(o.backends)}"
            p = nodes[o.node]
            if o.decomposed:
                note = f" {p.note}" if p.note and self.item_of[o.node] == self.order[k] else ""
                lines.append(f"{head}: decomposed, {_plural(o.nodes, 'node')}{note}")
            else:
                measured = measured or any(_measured(v) for _, v in p.candidates)
                lines.append(f"{head} [{_candidates(p)}]{(' ' + p.note) if p.note else ''}")
        for i, name in self.inputs.items():
            p = nodes[i]
            lines.append(f"  {name:<4} input {_type(p)} on {p.device}")
        if measured:
            lines.append(_MEASURED_NOTE)
        lines += _tail(ex, self.label)
        hidden = []
        if self.hidden_inside:
            n = sum(1 for o in self.ops if o.decomposed)
            hidden.append(f"{_plural(self.hidden_inside, 'node')} inside {_plural(n, 'decomposition')}")
        if self.hidden_leaves:
            hidden.append(_plural(self.hidden_leaves, "scalar or constant input"))
        if hidden:
            lines.append(f"  (not listed: {', '.join(hidden)}; {VERBOSE_HINT})")
        return lines


def _dependency_order(deps: list[list[int]]) -> list[int]:
    """Items in the order they feed each other, first argument first, starting from those no
    other item reads (in planning order): the order a program writes them in.

    NOTE: iterative; graphs can be 100k nodes deep."""
    used = [False] * len(deps)
    for ds in deps:
        for d in ds:
            used[d] = True
    state = [0] * len(deps)  # 0 unseen, 1 waiting on its arguments, 2 listed
    order: list[int] = []
    for root in [i for i in range(len(deps)) if not used[i]] + list(range(len(deps))):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, 0)]
        while stack:
            it, k = stack[-1]
            if k < len(deps[it]):
                stack[-1] = (it, k + 1)
                d = deps[it][k]
                if not state[d]:
                    state[d] = 1
                    stack.append((d, 0))
            else:
                stack.pop()
                state[it] = 2
                order.append(it)
    return order
