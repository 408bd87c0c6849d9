"""The lazy scheduler: collect -> signature -> (cached) plan -> run.

Planning (cache miss only) places each node on the cheapest capable kernel (profiled time or a
static prior, plus transfers of inputs living on other devices), decomposes nodes nobody can
run, groups consecutive nodes of one backend into segments, and inserts explicit transfers.
Running fills slots, frees each value after its last use, writes buffers into the requested
nodes (and any node the user still holds) and drops their inputs so memory can be reclaimed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _plugins, _profile
from ._backend import Backend, Instr, Kernel, Segment
from ._device import HOST, Device
from ._errors import FallbackError, OpNotSupportedError
from ._registry import KEEP_GRAPH, REGISTRY, TRACING, Node, check_not_traced

_LOCK = threading.RLock()
#: callbacks ``f(plan)`` called on every evaluation (``oxcore.record`` uses this)
RECORDERS: list[Callable[["Plan"], None]] = []
#: run-time kernel failures, newest last (shown by ``oxcore kernels list``)
FAILURES: list[str] = []


class KernelFailed(Exception):
    """Raised by a guarded (third-party) kernel; the scheduler disables it and re-plans."""

    def __init__(self, kernel: Kernel, error: BaseException) -> None:
        super().__init__(f"{kernel.id}: {error}")
        self.kernel, self.error = kernel, error


def guard(k: Kernel) -> Callable:
    """Wrap a third-party kernel so its failures are attributed to it (not a crash of the eval)."""
    fn = k.fn

    def guarded(*args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as e:
            raise KernelFailed(k, e) from e
    return guarded
_CACHE: "OrderedDict[tuple, Plan]" = OrderedDict()
_CACHE_SIZE = 1024
STATS = {"hits": 0, "misses": 0, "plans": 0}

# NOTE: a leaf's refcount seen from _collect: the `order` list, getrefcount's argument and the
# loop variable. More than that plus its uses inside the graph means the user holds it.
_BASE_REFS = 3


def clear_cache() -> None:
    """Drop every cached plan (after plugins or profiles change)."""
    with _LOCK:
        _CACHE.clear()


# --- plan data ---------------------------------------------------------------------------------
class PNode:
    """A node as the planner sees it (also what ``Kernel.supports`` receives)."""

    __slots__ = ("op", "attrs", "args", "inputs", "shape", "dtype", "pin", "backend", "kernel", "device",
                 "const", "leaf_pos", "origin", "note", "candidates")

    def __init__(self, op, attrs, args, inputs, shape, dtype, pin=None):
        self.op, self.attrs, self.args, self.inputs = op, attrs, args, inputs
        self.shape, self.dtype, self.pin = shape, dtype, pin
        self.backend = self.kernel = self.const = self.leaf_pos = self.origin = None
        self.device: Device | None = None
        self.note = ""
        self.candidates: list[tuple[str, Any]] = []

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


@dataclass
class Plan:
    leaf_slots: list[tuple[int, int]]
    consts: list[tuple[int, Any]]
    steps: list[tuple[Callable, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    outputs: list[tuple[int, int, Device]]
    nslots: int
    pnodes: list[PNode]
    segments: list[Segment]
    transfers: list[tuple[int, str, str, int]]  # (pnode, from device, to device, bytes)
    fallbacks: list[str] = field(default_factory=list)
    decomposed: int = 0

    def explain(self) -> "Explanation":
        return Explanation(self)


class Explanation:
    """What ``oxcore.explain`` returns: ``str()`` it for the table; attributes for tests."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.nodes = [p for p in plan.pnodes if p.op is not None]
        self.backends = [p.backend.name for p in self.nodes]
        self.transfers = plan.transfers
        self.fallbacks = plan.fallbacks
        self.segments = [(s.backend.name, len(s.instrs)) for s in plan.segments]

    def __str__(self) -> str:
        lines = [f"plan: {len(self.nodes)} nodes, {len(self.segments)} segments, "
                 f"{len(self.transfers)} transfers, {len(self.fallbacks)} fallbacks, "
                 f"{self.plan.decomposed} decomposed"]
        for i, p in enumerate(self.plan.pnodes):
            if p.op is None:
                what = "const" if p.const is not None else f"input #{p.leaf_pos}"
                lines.append(f"  %{i:<3} {what:<22} {p.dtype.name}{list(p.shape)} on {p.device}")
                continue
            args = ", ".join(f"%{a}" for a in p.args)
            # NOTE: "*" marks a cost measured by `oxcore autotune`; the others are static priors
            cands = "; ".join(f"{k}={v:.1f}us{'*' if getattr(v, 'measured', False) else ''}"
                              if isinstance(v, float) else f"{k}: {v}" for k, v in p.candidates)
            origin = f" (from {p.origin})" if p.origin else ""
            lines.append(f"  %{i:<3} {p.op}({args}){origin} -> {p.dtype.name}{list(p.shape)} on "
                         f"{p.backend.name} [{cands}]{(' ' + p.note) if p.note else ''}")
        if any(getattr(v, "measured", False) for p in self.nodes for _, v in p.candidates):
            lines.append("  (costs with * were measured by `oxcore autotune`; others are static priors)")
        for src, a, b, n in self.transfers:
            lines.append(f"  transfer %{src}: {a} -> {b} ({n} bytes)")
        for f in self.fallbacks:
            lines.append(f"  fallback: {f}")
        for j, (b, n) in enumerate(self.segments):
            lines.append(f"  segment {j}: {b}, {n} nodes")
        return "\n".join(lines)

    __repr__ = __str__


# --- collecting the graph ------------------------------------------------------------------------
def _collect(targets: list[Node]) -> tuple[list[Node], dict[int, int], list[int]]:
    """Iterative post-order over unrealized nodes (no recursion limit); realized nodes are
    leaves. Returns (order, id -> position, uses of each position inside the graph)."""
    order: list[Node] = []
    pos: dict[int, int] = {}
    uses: list[int] = []
    stack = list(targets)
    stack.reverse()
    while stack:
        n = stack[-1]
        if id(n) in pos:
            stack.pop()
            continue
        if n.buf is None:
            pending = False
            for i in n.inputs:
                if id(i) not in pos:
                    stack.append(i)
                    pending = True
            if pending:
                continue
            for i in n.inputs:
                uses[pos[id(i)]] += 1
        stack.pop()
        pos[id(n)] = len(order)
        order.append(n)
        uses.append(0)
    return order, pos, uses


def _signature(order: list[Node], pos: dict[int, int], keep: list[bool], config: tuple) -> tuple:
    sig: list[Any] = [config]
    for n, k in zip(order, keep):
        if n.buf is not None:
            sig.append((n.dtype, n.shape, n.device.name))
        else:
            sig.append((n.op, tuple(n.attrs.items()), tuple([pos[id(i)] for i in n.inputs]), n.pin, k))
    return tuple(sig)


def _config() -> tuple:
    env = _plugins.env_raw
    return (_plugins.manager().epoch, env("OXCORE_BACKENDS", b"OXCORE_BACKENDS"),
            env("OXCORE_STRICT", b"OXCORE_STRICT"), _profile.epoch())


# --- evaluation ----------------------------------------------------------------------------------
def evaluate(targets: list[Node]) -> None:
    """Compute ``targets`` (and any held intermediates) in one plan."""
    with _LOCK:
        targets = [t for t in targets if t.buf is None]
        if not targets:
            return
        order, pos, uses = _collect(targets)
        if TRACING.get() is not None:
            check_not_traced(order)
        tset = {id(t) for t in targets}
        keep = []
        for i, n in enumerate(order):
            keep.append(n.buf is None and (id(n) in tset or sys.getrefcount(n) > _BASE_REFS + uses[i]))
        del n
        sig = _signature(order, pos, keep, _config())
        plan = _CACHE.get(sig)
        if plan is None:
            STATS["misses"] += 1
            plan = _build_plan(order, pos, keep)
            _CACHE[sig] = plan
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            STATS["hits"] += 1
        for rec in RECORDERS:
            rec(plan)
        for _attempt in range(8):
            try:
                _run(plan, order)
                return
            except KernelFailed as e:
                # NOTE: leaves are untouched until a run completes, so starting over is safe
                disable_failed(e)
                plan = _build_plan(order, pos, keep)
                _CACHE[sig] = plan
        raise kept_failing()


def kept_failing() -> OpNotSupportedError:
    """The error for an evaluation whose re-plans after kernel failures ran out."""
    return OpNotSupportedError("kernels kept failing at run time:\n  " + "\n  ".join(FAILURES[-8:]))


def disable_failed(e: KernelFailed) -> None:
    """A third-party kernel broke at run time: disable it, say why, and drop plans using it."""
    e.kernel.failed = f"raised at run time: {type(e.error).__name__}: {e.error}"
    FAILURES.append(f"{e.kernel.id} ({e.kernel.source}) {e.kernel.failed}; re-placed")
    clear_cache()


def explain(nodes: list[Node]) -> Explanation:
    with _LOCK:
        nodes = [n for n in nodes if n.buf is None]
        if not nodes:
            return Explanation(Plan([], [], [], [], 0, [], [], []))
        order, pos, uses = _collect(nodes)
        tset = {id(t) for t in nodes}
        keep = [n.buf is None and id(n) in tset for n in order]
        return _build_plan(order, pos, keep).explain()


def run_steps(steps: list, vals: list) -> None:
    """Run a plan's steps over its slot list ``vals`` (leaves and constants already filled)."""
    for fn, ins, outs, frees in steps:
        res = fn([vals[i] for i in ins])
        for o, r in zip(outs, res):
            vals[o] = r
        for f in frees:
            vals[f] = None


def _run(plan: Plan, order: list[Node]) -> None:
    vals: list[Any] = [None] * plan.nslots
    for p, s in plan.leaf_slots:
        vals[s] = order[p].buf
    for s, buf in plan.consts:
        vals[s] = buf
    run_steps(plan.steps, vals)
    keep_graph = KEEP_GRAPH.get()
    for p, s, dev in plan.outputs:
        n = order[p]
        n.buf, n.device = vals[s], dev
        if not keep_graph:  # NOTE: under a transform the node keeps its history for the backward pass
            n.inputs, n.op, n.attrs = (), None, {}


# --- planning ------------------------------------------------------------------------------------
def _allowed() -> list[str] | None:
    v = os.environ.get("OXCORE_BACKENDS")
    return [s.strip() for s in v.split(",") if s.strip()] if v else None


class _Planner:
    def __init__(self, only: str | None = None) -> None:
        self.m = _plugins.manager()
        self.backends: list[Backend] = sorted(self.m.available_backends(), key=lambda b: -b.priority)
        allowed = _allowed()
        if only is not None:
            self.backends = [b for b in self.backends if b.name == only]
            self.default_pin = None
        elif allowed is not None:
            known = [b for b in allowed if b in self.m.backends]
            self.backends = [b for b in self.backends if b.name in allowed] or self.backends
            self.default_pin = tuple(known) or None
        else:
            self.default_pin = None
        self.profile = _profile.current() or None  # NOTE: an empty profile is no profile (fast path)
        self._links: dict[tuple[str, str], tuple] = {}  # (src, dst) device names -> (latency, bandwidth)
        self.pnodes: list[PNode] = []
        self.fallbacks: list[str] = []
        self.decomposed = 0
        self.strict = os.environ.get("OXCORE_STRICT", "") not in ("", "0")
        self.movable: dict[int, list[tuple[float, int, Backend, Kernel]]] = {}  # pnode -> options (compute us)
        self.chosen_us: dict[int, float] = {}
        # buffers of leaves with fixed values, by order position; None outside oxcore.compile
        self.frozen: dict[int, Any] | None = None

    # transfers: latency + bytes / bandwidth, measured when the profile has it
    def transfer_us(self, src: Device, dst: Device, nbytes: int) -> float:
        if src == dst:
            return 0.0
        link = self._links.get((src.name, dst.name))
        if link is None:
            lat, bw = self.profile.transfer(src.name, dst.name) if self.profile is not None else (None, None)
            link = self._links[(src.name, dst.name)] = (lat if lat is not None else 20.0, bw or 4e3)
        return link[0] + nbytes / link[1]

    def compute_us(self, k: Kernel, b: Backend, p: PNode) -> float:
        """The kernel's own time: measured (a ``MeasuredUs``, shown with ``*``) or the static prior."""
        t = self.profile.lookup(k, p) if self.profile is not None else None
        if t is None:
            t = k.prior_us(p) if k.prior_us else b.prior_us(p)
        return t

    def cost(self, k: Kernel, b: Backend, p: PNode) -> float:
        return self.with_inputs(self.compute_us(k, b, p), b, p)

    def with_inputs(self, c: float, b: Backend, p: PNode) -> float:
        """``c`` plus moving the node's inputs that live on another device to ``b``'s."""
        t = float(c)
        for a in p.inputs:
            if a.device is not None and a.device != b.device:
                t += self.transfer_us(a.device, b.device, a.nbytes)
        return type(c)(t) if getattr(c, "measured", False) else t

    def add(self, op: str, attrs: dict, args: tuple[int, ...], shape, dtype, pin, origin=None) -> int:
        p = PNode(op, attrs, args, [self.pnodes[a] for a in args], shape, dtype, pin)
        p.origin = origin
        pins = pin or self.default_pin
        options: list[tuple[float, int, Backend, Kernel]] = []
        computes: list[float] = []
        refusals: dict[str, str] = {}
        for rank, b in enumerate(self.backends):
            ks = b.kernels_for(op)
            if not ks:
                refusals[b.name] = "no kernel"
                p.candidates.append((b.name, "no kernel"))
                continue
            for k in ks:
                why = k.failed or k.check(p)
                if why is not None:
                    refusals.setdefault(b.name, why)
                    p.candidates.append((k.id, why))
                    continue
                c0 = self.compute_us(k, b, p)
                c = self.with_inputs(c0, b, p)
                p.candidates.append((k.id, c))
                options.append((c, rank, b, k))
                computes.append(c0)
        # NOTE: once any candidate was measured, unmeasured ones (static priors, optimistic by
        # design) do not compete: a new kernel is chosen after `oxcore autotune` measured it
        pool = [o for o, c0 in zip(options, computes) if getattr(c0, "measured", False)] or options
        if options and not pins and self.profile is not None:
            alt = self.decomposed_us(p)
            if alt is not None and alt[0] < min(o[0] for o in pool):
                # NOTE: measured: this op's decomposition beats every native kernel here
                best = min(pool, key=lambda o: (o[0], o[1]))
                out = self.decompose(REGISTRY[op], p, args, pin)
                q = self.pnodes[out]
                q.note = (q.note + " " if q.note else "") + \
                    f"({op} decomposed: {alt[1]}={alt[0]:.1f}us* < {best[3].id}={best[0]:.1f}us)"
                return out
        if not options:
            opdef = REGISTRY[op]
            if opdef.decompose is None:
                raise OpNotSupportedError(self._no_backend_message(p, refusals))
            return self.decompose(opdef, p, args, pin)
        # NOTE: a pinned backend without a kernel for the op can still run its decomposition;
        # that beats falling back to another backend (pins win over cost).
        if pins and refusals.get(pins[0]) == "no kernel" and REGISTRY[op].decompose is not None:
            return self.decompose(REGISTRY[op], p, args, pin)
        if pins:
            # NOTE: pins choose the backend; among that backend's kernels the cheapest still wins
            pinned = [o for name in pins for o in sorted((o for o in options if o[2].name == name),
                                                         key=lambda o: o[0])]
            if pinned and pinned[0][2].name == pins[0]:
                choice = pinned[0]
            else:
                choice = pinned[0] if pinned else min(pool, key=lambda o: (o[0], o[1]))
                why = refusals.get(pins[0], "not installed or not available")
                self.fallbacks.append(f"{op} {dtype.name}{list(shape)}: pinned {pins[0]} refused ({why}); "
                                      f"ran on {choice[2].name}")
        else:
            choice = min(pool, key=lambda o: (o[0], o[1]))
            top = self.backends[0].name if self.backends else None
            # NOTE: a default backend that merely lacks a kernel for a decomposable op is not a
            # fallback (it could run the decomposition; another backend's kernel was cheaper)
            if top in refusals and choice[2].name != top and not (
                    refusals[top] == "no kernel" and REGISTRY[op].decompose is not None):
                self.fallbacks.append(f"{op} {dtype.name}{list(shape)}: {top} refused ({refusals[top]}); "
                                      f"ran on {choice[2].name}")
        _, _, p.backend, p.kernel = choice
        p.device = p.backend.device
        if not pins:  # NOTE: refine() may move unpinned nodes; keep their compute-only costs
            self.movable[len(self.pnodes)] = [(c0, o[1], o[2], o[3]) for c0, o in zip(computes, options)
                                              if o in pool]
            self.chosen_us[len(self.pnodes)] = computes[options.index(choice)]
        self.pnodes.append(p)
        return len(self.pnodes) - 1

    def decomposed_us(self, p: PNode) -> tuple[float, str] | None:
        """The cheapest measured decomposition of ``p`` (``oxcore autotune`` times those too)."""
        if REGISTRY[p.op].decompose is None:
            return None
        best = None
        for b in self.backends:
            t = self.profile.lookup(_profile.DecomposedKernel.of(p.op, b.name), p)
            if t is not None:
                t = self.with_inputs(t, b, p)
                if best is None or t < best[0]:
                    best = (t, f"{b.name}.{p.op}.decomposed")
        return best

    # --- second pass: fix ping-pong between devices -------------------------------------------
    def refine(self, rounds: int = 3) -> None:
        """Move runs of nodes (and single nodes) to another device where that lowers the plan's
        total of compute + transfers.

        Greedy placement charges a node for the transfers *into* it but not for sending its
        output back to consumers on the first device, so a node that is slightly faster
        elsewhere can cost two transfers for a small gain. This pass sees every transfer once
        (one per value and destination device) and only accepts moves that lower the total.
        Pinned nodes never move; with a single device nothing happens.
        """
        P, mov = self.pnodes, self.movable
        devs = {o[2].device.name for opts in mov.values() for o in opts}
        if len(devs) < 2:
            return
        users: list[list[int]] = [[] for _ in P]
        for i, p in enumerate(P):
            for a in p.args:
                users[a].append(i)

        def xfer(v: int) -> float:
            home, seen, t = P[v].device, set(), 0.0
            for u in users[v]:
                d = P[u].device
                if d != home and d.name not in seen:
                    seen.add(d.name)
                    t += self.transfer_us(home, d, P[v].nbytes)
            return t

        def try_move(group: list[int], dev: str) -> bool:
            new = []
            for i in group:
                opts = [o for o in mov[i] if o[2].device.name == dev]
                if not opts:
                    return False
                new.append(min(opts, key=lambda o: (o[0], o[1])))
            touched = sorted({*group, *(a for i in group for a in P[i].args)})
            before = sum(self.chosen_us[i] for i in group) + sum(xfer(v) for v in touched)
            old = [(P[i].backend, P[i].kernel, P[i].device) for i in group]
            for i, o in zip(group, new):
                P[i].backend, P[i].kernel, P[i].device = o[2], o[3], o[2].device
            after = sum(float(o[0]) for o in new) + sum(xfer(v) for v in touched)
            if after < before - 1e-6:
                for i, o in zip(group, new):
                    self.chosen_us[i] = o[0]
                    moved[i] = moved.get(i, 0.0) + before - after
                return True
            for i, (b, k, d) in zip(group, old):
                P[i].backend, P[i].kernel, P[i].device = b, k, d
            return False

        moved: dict[int, float] = {}
        for _ in range(rounds):
            runs: list[list[int]] = []
            for i in sorted(mov):
                if runs and P[runs[-1][-1]].backend is P[i].backend:
                    runs[-1].append(i)
                else:
                    runs.append([i])
            any_move = False
            for g in runs + [[i] for r in runs if len(r) > 1 for i in r]:
                here = P[g[0]].device.name
                if any(P[i].device.name != here for i in g):
                    continue  # an earlier move this round split the run
                for dev in sorted(devs - {here}):
                    if try_move(g, dev):
                        any_move = True
                        break
            if not any_move:
                break
        for i, gain in moved.items():
            P[i].note = (P[i].note + " " if P[i].note else "") + \
                f"(placed on {P[i].backend.name} by refine: plan total -{gain:.1f}us)"

    def _no_backend_message(self, p: PNode, refusals: dict[str, str]) -> str:
        ins = ", ".join(f"{i.dtype.name}{list(i.shape)}" for i in p.inputs) or "no inputs"
        installed = []
        for name, b in self.m.backends.items():
            ok, why = self.m.available(b)
            installed.append(f"{name}: {refusals.get(name, 'not available: ' + why if not ok else 'not allowed')}")
        return (f"No backend can run {p.op}({ins}) -> {p.dtype.name}{list(p.shape)} and it has no "
                f"decomposition. Backends: " + "; ".join(installed or ["(none installed)"]))

    def decompose(self, opdef, p: PNode, args: tuple[int, ...], pin) -> int:
        from ._array import Array

        self.decomposed += 1
        proxies = [Node("__proxy__", (), {}, self.pnodes[a].shape, self.pnodes[a].dtype) for a in args]
        out = opdef.decompose(*[Array._wrap(x) for x in proxies], **p.attrs)._node
        if out.shape != p.shape or out.dtype is not p.dtype:
            raise OpNotSupportedError(f"decomposition of {p.op} produced {out.dtype.name}{list(out.shape)}, "
                                      f"expected {p.dtype.name}{list(p.shape)} (a bug in the op's declaration)")
        where = {id(x): a for x, a in zip(proxies, args)}
        order, _, _ = _collect([out]) if out.buf is None and out.op != "__proxy__" else ([out], None, None)
        for n in order:
            if id(n) in where:
                continue
            if n.buf is not None:  # a constant made by the decomposition (plan-owned)
                c = PNode(None, {}, (), [], n.shape, n.dtype)
                c.const, c.device = n.buf, n.device
                self.pnodes.append(c)
                where[id(n)] = len(self.pnodes) - 1
                continue
            if n.op == "__proxy__":
                raise OpNotSupportedError(f"decomposition of {p.op} used an input it was not given")
            where[id(n)] = self.add(n.op, n.attrs, tuple(where[id(i)] for i in n.inputs), n.shape, n.dtype,
                                    pin, origin=p.op)
        return where[id(out)]


def plan_only_on(backend: str, nodes: list[Node]) -> Plan:
    """Plan ``nodes`` using one backend alone (pins ignored); raises OpNotSupportedError if it cannot."""
    order, pos, _ = _collect([n for n in nodes if n.buf is None])
    return _build_plan(order, pos, [n in nodes for n in order], only=backend)


def _build_plan(order: list[Node], pos: dict[int, int], keep: list[bool], only: str | None = None,
                frozen: dict[int, Any] | None = None) -> Plan:
    """``frozen``: the buffers of leaves whose values are fixed for the plan's life, by position
    in ``order`` (``oxcore.compile``'s constants); given, small constants become
    ``Segment.constants``."""
    STATS["plans"] += 1
    pl = _Planner(only)
    pl.frozen = frozen
    where: list[int] = []
    for i, n in enumerate(order):
        if n.buf is not None:
            p = PNode(None, {}, (), [], n.shape, n.dtype)
            p.leaf_pos, p.device = i, n.device
            pl.pnodes.append(p)
            where.append(len(pl.pnodes) - 1)
        else:
            where.append(pl.add(n.op, n.attrs, tuple(where[pos[id(x)]] for x in n.inputs),
                                n.shape, n.dtype, n.pin))
    pl.refine()
    if pl.strict and pl.fallbacks:
        raise FallbackError("OXCORE_STRICT=1 and the plan needs fallbacks:\n  " + "\n  ".join(pl.fallbacks))
    outputs = [(i, where[i]) for i, n in enumerate(order) if keep[i]]
    plan = _segment(pl, outputs)
    if "plan" in os.environ.get("OXCORE_LOG", ""):
        print(plan.explain(), file=sys.stderr)
    return plan


def _constant_inputs(pl: _Planner, ext: list[int]) -> dict[int, Any]:
    """Segment inputs whose values are fixed and small (0-d): their host values by input index.

    Only for ``oxcore.compile`` plans: a backend may bake these into its kernels, which costs a
    kernel build per distinct value (MLX: a C++/NVRTC compile). A trace pays that once; a lazy
    plan would pay it for every new scalar, so lazy plans keep them as ordinary inputs."""
    out: dict[int, Any] = {}
    if pl.frozen is None:
        return out
    for k, a in enumerate(ext):
        p = pl.pnodes[a]
        if p.op is not None or p.shape:
            continue
        if p.const is not None:
            out[k] = np.asarray(p.device.to_numpy(p.const))
        elif p.leaf_pos in pl.frozen:
            out[k] = np.asarray(p.device.to_numpy(pl.frozen[p.leaf_pos]))
    return out


def _segment(pl: _Planner, outputs: list[tuple[int, int]]) -> Plan:
    pnodes = pl.pnodes
    # live: pnodes needed to compute the outputs (decompositions may leave dead helpers)
    need = [False] * len(pnodes)
    for _, q in outputs:
        need[q] = True
    for i in range(len(pnodes) - 1, -1, -1):
        if need[i]:
            for a in pnodes[i].args:
                need[a] = True
    groups: list[list[int]] = []
    for i, p in enumerate(pnodes):
        if p.op is None or not need[i]:
            continue
        if groups and pnodes[groups[-1][-1]].backend is p.backend:
            groups[-1].append(i)
        else:
            groups.append([i])
    slot_of: dict[tuple[int, str], int] = {}  # (pnode, device) -> slot
    nslots = 0
    leaf_slots, consts = [], []
    for i, p in enumerate(pnodes):
        if p.op is None and need[i]:
            slot_of[(i, p.device.name)] = nslots
            (leaf_slots.append((p.leaf_pos, nslots)) if p.const is None else consts.append((nslots, p.const)))
            nslots += 1
    home = {i: p.device for i, p in enumerate(pnodes) if p.device is not None}
    used_later: dict[int, int] = {}
    for gi, g in enumerate(groups):
        inside = set(g)
        for i in g:
            for a in pnodes[i].args:
                if a not in inside:
                    used_later[a] = gi
    final = {q for _, q in outputs}
    steps, segments, transfers = [], [], []
    for gi, g in enumerate(groups):
        b = pnodes[g[0]].backend
        inside = {i: k for k, i in enumerate(g)}
        ext_set: dict[int, None] = {}  # NOTE: ordered set; graphs can have 10k+ inputs
        for i in g:
            for a in pnodes[i].args:
                if a not in inside:
                    ext_set[a] = None
        ext = list(ext_set)
        in_slots = []
        for a in ext:
            key = (a, b.device.name)
            if key not in slot_of:
                src = slot_of[(a, home[a].name)]
                slot_of[key] = nslots
                steps.append((_transfer(home[a], b.device), (src,), (nslots,), ()))
                transfers.append((a, home[a].name, b.device.name, pnodes[a].nbytes))
                nslots += 1
            in_slots.append(slot_of[key])
        env = {a: k for k, a in enumerate(ext)}
        seg = Segment(b, len(ext), [(pnodes[a].shape, pnodes[a].dtype) for a in ext])
        seg.constants = _constant_inputs(pl, ext)
        for i in g:
            p = pnodes[i]
            env[i] = len(ext) + len(seg.instrs)
            k = p.kernel
            if k.source and k.source != b.distribution:
                k = dataclasses.replace(k, fn=guard(k))
            seg.instrs.append(Instr(p.op, p.attrs, k, tuple(env[a] for a in p.args), p.shape, p.dtype))
        outs = [i for i in g if i in final or used_later.get(i, -1) > gi]
        seg.outputs = tuple(env[i] for i in outs)
        out_slots = []
        for i in outs:
            slot_of[(i, b.device.name)] = nslots
            out_slots.append(nslots)
            nslots += 1
        steps.append((_compiled(b, seg), tuple(in_slots), tuple(out_slots), ()))
        segments.append(seg)
    # free each slot after its last reader (outputs and leaves are held elsewhere anyway)
    keep_slots = {slot_of[(q, home[q].name)] for q in final}
    last: dict[int, int] = {}
    for si, (_, ins, _, _) in enumerate(steps):
        for s in ins:
            last[s] = si
    frees: dict[int, list[int]] = {}
    for s, si in last.items():
        if s not in keep_slots:
            frees.setdefault(si, []).append(s)
    steps = [(fn, ins, outs, tuple(frees.get(si, ()))) for si, (fn, ins, outs, _) in enumerate(steps)]
    out_list = [(pos, slot_of[(q, home[q].name)], home[q]) for pos, q in outputs]
    return Plan(leaf_slots, consts, steps, out_list, nslots, pnodes, segments, transfers, pl.fallbacks, pl.decomposed)


_COMPILED: "OrderedDict[tuple, Callable]" = OrderedDict()


def _compiled(b: Backend, seg: Segment) -> Callable:
    key = (b.name, id(b), seg.key)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = b.compile_segment(seg)
        _COMPILED[key] = fn
        if len(_COMPILED) > 4 * _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return fn


def _transfer(src: Device, dst: Device) -> Callable:
    if src is HOST or src.name == HOST.name:
        move = lambda v: [dst.from_numpy(v[0])]  # noqa: E731
    elif dst.name == HOST.name:
        move = lambda v: [src.to_numpy(v[0])]  # noqa: E731
    else:
        move = lambda v: [dst.from_numpy(src.to_numpy(v[0]))]  # noqa: E731
    move.is_transfer = True  # NOTE: oxcore.compile moves constants once, at trace time
    return move
