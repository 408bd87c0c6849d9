"""Evaluation: collect -> signature -> (cached) plan -> run; re-planning after kernel failures.

Running fills the slots, runs the steps (each value freed after its last use), writes the
buffers into the requested nodes (and any node the user still holds) and drops their inputs,
so memory is reclaimed as soon as nothing else holds it: a long loop runs in constant memory.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

from .._errors import FallbackError, OpNotSupportedError
from .._graph import KEEP_GRAPH, TRACING, Node, check_not_traced, collect, collect_signed, position_map
from .._osutil import env_raw
from .context import runtime
from .placement import Planner
from .explain import Explanation
from .plan import Plan, run_steps
from .segment import KernelFailed, segment

T = TypeVar("T")

#: held while planning or running (plans, caches and nodes are shared between threads)
LOCK = threading.RLock()
#: callbacks ``f(plan)`` called on every evaluation (``oxcore.record`` uses this)
RECORDERS: list[Callable[[Plan], None]] = []
#: run-time kernel failures, newest last (shown by ``oxcore kernels list``)
FAILURES: list[str] = []
#: plan cache hits and misses, and plans built (tests and ``oxcore demo`` read these)
STATS = {"hits": 0, "misses": 0, "plans": 0}
PLAN_CACHE_SIZE = 1024
MAX_REPLANS = 8
_CACHE: "OrderedDict[tuple, Plan]" = OrderedDict()

# NOTE: sys.getrefcount(node) inside evaluate() counts the `order` list, getrefcount's own
# argument and the loop variable. Anything above that plus the node's uses inside the graph is
# a reference from outside (an Array the user holds), so the run must hand its value out.
_BASE_REFS = 3


def clear_cache() -> None:
    """Drop every cached plan (after plugins or profiles change)."""
    with LOCK:
        _CACHE.clear()


def config_key() -> tuple:
    """What besides the graph decides a plan: installed plugins, env pins, strictness, profile."""
    rt = runtime()
    return (rt.plugins().epoch, env_raw("OXCORE_BACKENDS", _BACKENDS_KEY), env_raw("OXCORE_STRICT", _STRICT_KEY),
            rt.profile_epoch())


_BACKENDS_KEY, _STRICT_KEY = b"OXCORE_BACKENDS", b"OXCORE_STRICT"
_getrefcount = sys.getrefcount


def build_plan(order: list[Node], pos: dict[int, int], outputs: list[bool], only: str | None = None,
               constants: dict[int, Any] | None = None, donated: frozenset[int] = frozenset()) -> Plan:
    """Plan a collected graph. ``outputs[i]``: the plan hands out node ``order[i]``'s value.
    ``constants``: buffers of leaves fixed for the plan's life, by position in ``order``
    (``oxcore.compile``'s captured values); given, small ones become ``Segment.constants``.
    ``donated``: positions of leaves whose buffers the plan may overwrite (``oxcore.compile``'s
    ``donate``): a kernel with an ``inplace`` variant writes into such a buffer when it is
    that buffer's only reader."""
    STATS["plans"] += 1
    rt = runtime()
    planner = Planner(rt.plugins(), rt.profile(), rt.wrap, only, constants)
    where: list[int] = []
    for i, n in enumerate(order):
        if n.buf is not None:
            where.append(planner.add_leaf(i, n))
        else:
            where.append(planner.add(n.op, n.attrs, tuple([where[pos[id(x)]] for x in n.inputs]),
                                     n.shape, n.dtype, n.pin))
    planner.refine()
    if planner.strict and planner.fallbacks:
        raise FallbackError("OXCORE_STRICT=1 and the plan needs fallbacks:\n  " + "\n  ".join(planner.fallbacks))
    plan = segment(planner, [(i, where[i]) for i, n in enumerate(order) if outputs[i]], donated)
    log = _plan_log()
    if log is not None:
        print(plan.explain(verbose=log), file=sys.stderr)
    return plan


def _plan_log() -> bool | None:
    """``OXCORE_LOG`` (comma-separated): ``plan`` logs each new plan as ``oxcore.explain``
    shows it (True: ``plan:verbose``, every node); None when plans are not logged."""
    raw = os.environ.get("OXCORE_LOG", "")
    if "plan" not in raw:  # NOTE: the common case, no split
        return None
    words = {w.strip() for w in raw.split(",")}
    return True if "plan:verbose" in words else False if "plan" in words else None


def plan_only_on(backend: str, nodes: list[Node]) -> Plan:
    """Plan ``nodes`` using one backend alone (pins ignored); raises OpNotSupportedError if it cannot."""
    order, pos, _ = collect([n for n in nodes if n.buf is None])
    return build_plan(order, pos, [n in nodes for n in order], only=backend)


def kept_failing() -> OpNotSupportedError:
    """The error for an evaluation whose re-plans after kernel failures ran out."""
    return OpNotSupportedError("kernels kept failing at run time:\n  " + "\n  ".join(FAILURES[-8:]))


def disable_failed(e: KernelFailed) -> None:
    """A third-party kernel broke at run time: disable it, say why, and drop plans using it."""
    e.kernel.failed = f"raised at run time: {type(e.error).__name__}: {e.error}"
    FAILURES.append(f"{e.kernel.id} ({e.kernel.source}) {e.kernel.failed}; re-placed")
    clear_cache()


def retrying(attempt: Callable[[], T], replan: Callable[[], None]) -> T:
    """``attempt()``; when a kernel fails in it, disable the kernel, ``replan()`` and try again."""
    for _ in range(MAX_REPLANS):
        try:
            return attempt()
        except KernelFailed as e:
            disable_failed(e)
            replan()
    raise kept_failing()


def evaluate(targets: list[Node]) -> None:
    """Compute ``targets`` (and any held intermediates) in one plan."""
    with LOCK:
        targets = [t for t in targets if t.buf is None]
        if not targets:
            return
        order, entries, uses = collect_signed(targets)
        if TRACING.get() is not None:
            check_not_traced(order)
        tset = {id(t) for t in targets} if len(targets) > 1 else None
        last = id(targets[0])
        outputs = []
        for i, n in enumerate(order):
            outputs.append(n.buf is None and ((id(n) == last if tset is None else id(n) in tset)
                                              or _getrefcount(n) > _BASE_REFS + uses[i]))
        del n
        entries.append(tuple(outputs))
        entries.append(config_key())
        sig = tuple(entries)
        plan = _CACHE.get(sig)
        pos = None
        if plan is None:
            STATS["misses"] += 1
            pos = position_map(order)
            plan = _CACHE[sig] = build_plan(order, pos, outputs)
            if len(_CACHE) > PLAN_CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            STATS["hits"] += 1
        for rec in RECORDERS:
            rec(plan)
        try:
            _run(plan, order)
        except KernelFailed as e:  # NOTE: rare; the closures below cost ~1 us, so only now
            current = [plan]

            def replan() -> None:
                # NOTE: leaves are untouched until a run completes, so starting over is safe
                current[0] = _CACHE[sig] = build_plan(order, pos or position_map(order), outputs)
            disable_failed(e)
            replan()
            retrying(lambda: _run(current[0], order), replan)


def explain(nodes: list[Node], verbose: bool = False) -> Explanation:
    """The plan for ``nodes`` with every placement decision (nothing is computed)."""
    with LOCK:
        nodes = [n for n in nodes if n.buf is None]
        if not nodes:
            return Plan.empty().explain(verbose)
        order, pos, _ = collect(nodes)
        tset = {id(t) for t in nodes}
        return build_plan(order, pos, [n.buf is None and id(n) in tset for n in order]).explain(verbose)


def _run(plan: Plan, order: list[Node]) -> None:
    vals: list[Any] = [None] * plan.nslots
    for p, s in plan.leaf_slots:
        vals[s] = order[p].buf
    for s, buf in plan.constants:
        vals[s] = buf
    run_steps(plan.steps, vals)
    keep_graph = KEEP_GRAPH.get()
    for p, s, dev in plan.outputs:
        n = order[p]
        n.buf, n.device = vals[s], dev
        if not keep_graph:  # NOTE: under a transform the node keeps its history for the backward pass
            n.inputs, n.op, n.attrs = (), None, {}
