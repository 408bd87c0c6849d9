"""Placement: each node on the cheapest capable kernel, decompositions, and a refine pass.

Greedy, in topological order: candidates are the kernels of *available* backends whose
``supports`` accepts the node; cost is the profiled time (or the kernel's static prior) plus
moving inputs that live on another device. Pins (``oxcore.use``, ``OXCORE_BACKENDS``) choose
the backend; among that backend's kernels the cheapest wins, its decomposition instead where
both were measured there and the decomposition was faster, and where they all refuse a node its
decomposition is tried on the pinned backend before falling back to another. An op nobody
runs is replaced by its decomposition. ``refine`` then moves runs of nodes where that lowers
the plan's total.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .._backend import Backend, Kernel
from .._device import SHARED_TRANSFER_US, Device
from .._errors import OpNotSupportedError
from .._graph import Node, collect
from .._osutil import env_flag, env_list
from .._registry import REGISTRY
from .plan import Decomposition, PlanNode


#: a decomposition runs several primitive ops over the same bytes: its static prior is this many
#: times the backend's prior for the node (measurements replace it after ``oxcore autotune``)
DECOMPOSITION_FACTOR = 3.0
#: a move between devices before ``oxcore autotune`` measures it: (latency us, bytes per us),
#: 20 us + 4 GB/s
TRANSFER_PRIOR = (20.0, 4e3)

class Planner:
    """Places nodes one by one (``add``), then ``refine`` fixes ping-pong between devices.

    Args:
        plugins: the plugin manager (backends and their availability), handed in by the runtime.
        profile: the active autotune profile, or None (static priors only).
        wrap: ``wrap(node) -> Array`` for running decompositions (written with oxcore ops).
        only: plan with this backend alone (pins and ``OXCORE_BACKENDS`` ignored).
        constants: buffers of leaves whose values are fixed for the plan's life, by position in
            the collected graph; only ``oxcore.compile`` passes them (None elsewhere).
    """

    def __init__(self, plugins: Any, profile: Any, wrap: Callable[[Node], Any], only: str | None = None,
                 constants: dict[int, Any] | None = None) -> None:
        self.plugins, self.wrap, self.constants = plugins, wrap, constants
        self.backends: list[Backend] = sorted(plugins.available_backends(), key=lambda b: -b.priority)
        allowed = env_list("OXCORE_BACKENDS")
        if only is not None:
            self.backends = [b for b in self.backends if b.name == only]
            self.default_pin = None
        elif allowed is not None:
            known = [b for b in allowed if b in plugins.backends]
            self.backends = [b for b in self.backends if b.name in allowed] or self.backends
            self.default_pin = tuple(known) or None
        else:
            self.default_pin = None
        self.profile = profile or None  # NOTE: an empty profile is no profile (fast path)
        self._links: dict[tuple[str, str], tuple] = {}  # (src, dst) device names -> (latency, bandwidth)
        self.nodes: list[PlanNode] = []
        self.fallbacks: list[str] = []
        self.decomposed = 0
        self.decompositions: list[Decomposition] = []
        self._depth = 0  # NOTE: decompositions nest (a decomposition's op may itself decompose)
        self.strict = env_flag("OXCORE_STRICT")
        self.movable: dict[int, list[tuple[float, int, Backend, Kernel]]] = {}  # plan node -> options (compute us)
        self.chosen_us: dict[int, float] = {}
        self._asked: dict[tuple, tuple] = {}  # see _candidates

    def add_leaf(self, position: int, n: Node) -> int:
        """A realized node of the graph: an input of the plan."""
        p = PlanNode(None, {}, (), [], n.shape, n.dtype)
        p.leaf_pos, p.device = position, n.device
        self.nodes.append(p)
        return len(self.nodes) - 1

    def transfer_us(self, src: Device, dst: Device, nbytes: int) -> float:
        """Moving ``nbytes`` from ``src`` to ``dst``: latency + bytes / bandwidth, measured when the
        profile has the pair; else ``TRANSFER_PRIOR``, or ``SHARED_TRANSFER_US`` flat between
        devices that share memory (``Device.shares_memory_with``: the move is a view)."""
        if src == dst:
            return 0.0
        link = self._links.get((src.name, dst.name))
        if link is None:
            lat, bw = self.profile.transfer(src.name, dst.name) if self.profile is not None else (None, None)
            if lat is None and src.shares_memory(dst):
                lat, bw = SHARED_TRANSFER_US, math.inf
            link = self._links[(src.name, dst.name)] = (lat if lat is not None else TRANSFER_PRIOR[0],
                                                        bw or TRANSFER_PRIOR[1])
        return link[0] + nbytes / link[1]

    def compute_us(self, k: Kernel, b: Backend, p: PlanNode) -> float:
        """The kernel's own time: measured (a ``MeasuredUs``, shown with ``*``) or the static prior."""
        t = self.profile.lookup(k, p) if self.profile is not None else None
        if t is None:
            t = k.prior_us(p) if k.prior_us else b.prior_us(p)
        return t

    def cost(self, k: Kernel, b: Backend, p: PlanNode) -> float:
        return self.with_inputs(self.compute_us(k, b, p), b, p)

    def with_inputs(self, c: float, b: Backend, p: PlanNode) -> float:
        """``c`` plus moving the node's inputs that live on another device to ``b``'s."""
        t = float(c)
        for a in p.inputs:
            if a.device is not None and a.device != b.device:
                t += self.transfer_us(a.device, b.device, a.nbytes)
        return type(c)(t) if getattr(c, "measured", False) else t

    def _candidates(self, p: PlanNode) -> tuple[list, list, dict[str, str], list, dict]:
        """(options as (cost, rank, backend, kernel), their compute-only costs, each backend's
        refusal, the candidates explain shows, decisions by pins) for ``p``: every kernel of
        every backend asked.

        NOTE: the answer depends only on the op, attributes and input shapes, dtypes and
        devices, so nodes alike (a 100k-node chain repeats a few kinds) are asked once."""
        try:
            key = (p.op, tuple(p.attrs.items()), tuple([(a.shape, a.dtype, a.device) for a in p.inputs]))
            hit = self._asked.get(key)
        except TypeError:  # NOTE: an unhashable attribute value: ask every time
            key, hit = None, None
        if hit is not None:
            return hit
        options: list[tuple[float, int, Backend, Kernel]] = []
        computes: list[float] = []
        refusals: dict[str, str] = {}
        candidates: list[tuple[str, Any]] = []
        for rank, b in enumerate(self.backends):
            ks = b.kernels_for(p.op)
            if not ks:
                refusals[b.name] = "no kernel"
                candidates.append((b.name, "no kernel"))
                continue
            for k in ks:
                why = k.failed or k.check(p)
                if why is not None:
                    refusals.setdefault(b.name, why)
                    candidates.append((k.id, why))
                    continue
                c0 = self.compute_us(k, b, p)
                c = self.with_inputs(c0, b, p)
                candidates.append((k.id, c))
                options.append((c, rank, b, k))
                computes.append(c0)
        if options and self.profile is not None and REGISTRY[p.op].decompose is not None:
            # NOTE: shown, not an option: placement weighs measured decompositions in _decide
            for b in self.backends:
                t = self.profile.lookup_decomposed(p.op, b.name, p)
                if t is not None:
                    candidates.append((f"{b.name}.{p.op}.decomposed", self.with_inputs(t, b, p)))
        out = (options, computes, refusals, candidates, {})
        if key is not None:
            self._asked[key] = out
        return out

    def add(self, op: str, attrs: dict, args: tuple[int, ...], shape, dtype, pin, origin=None) -> int:
        p = PlanNode(op, attrs, args, [self.nodes[a] for a in args], shape, dtype, pin)
        p.origin = origin
        pins = pin or self.default_pin
        options, computes, refusals, p.candidates, decisions = self._candidates(p)
        decided = decisions.get(pins)
        if decided is None:
            decided = self._decide(p, args, pins, options, computes, refusals)
            if isinstance(decided, int):  # NOTE: placed through its decomposition (never cached)
                return decided
            decisions[pins] = decided
        choice, fallback, movable, chosen_us = decided
        if fallback:
            self.fallbacks.append(fallback)
        _, _, p.backend, p.kernel = choice
        p.device = p.backend.device
        if movable is not None:  # NOTE: refine() may move unpinned nodes; keep their compute-only costs
            self.movable[len(self.nodes)] = movable
            self.chosen_us[len(self.nodes)] = chosen_us
        self.nodes.append(p)
        return len(self.nodes) - 1

    def _decide(self, p: PlanNode, args: tuple[int, ...], pins: Any, options: list, computes: list,
                refusals: dict[str, str]) -> tuple | int:
        """The kernel for ``p`` as (choice, fallback note or None, refine's options or None, the
        choice's compute cost), alike for alike nodes; or, when ``p`` runs through its
        decomposition, the plan node holding the result."""
        op, dtype, shape, pin = p.op, p.dtype, p.shape, p.pin
        # NOTE: once any candidate was measured, unmeasured ones (static priors, optimistic by
        # design) do not compete: a new kernel is chosen after `oxcore autotune` measured it
        pool = [o for o, c0 in zip(options, computes) if getattr(c0, "measured", False)] or options
        if options and not pins:
            alt = self.decomposed_us(p) if self.profile is not None else self.decomposed_prior(p, refusals)
            if alt is not None and alt[0] < min(o[0] for o in pool):
                # NOTE: measured: this op's decomposition beats every native kernel here
                best = min(pool, key=lambda o: (o[0], o[1]))
                out = self.decompose(REGISTRY[op], p, args, pin)
                self._note_decomposed(out, op, alt, best, "*" if self.profile is not None else "")
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
        # NOTE: the same when the pinned backend's kernels refuse this node (a ggml type MLX's
        # quantized kernels cannot map): its decomposition may run there, keeping the value on the
        # pinned device instead of a round trip through another one. Undone if that falls back too.
        if (pins and pins[0] in refusals and REGISTRY[op].decompose is not None
                and not any(o[2].name == pins[0] for o in options)):
            out = self._decompose_on_pin(REGISTRY[op], p, args, pin)
            if out is not None:
                return out
        fallback = None
        if pins:
            # NOTE: pins choose the backend; among that backend's kernels the cheapest still wins
            pinned = [o for name in pins for o in sorted((o for o in options if o[2].name == name),
                                                         key=lambda o: o[0])]
            if pinned and pinned[0][2].name == pins[0]:
                choice = pinned[0]
                out = self._pinned_decomposition(p, args, pin, choice, computes[options.index(choice)])
                if out is not None:
                    return out
            else:
                choice = pinned[0] if pinned else min(pool, key=lambda o: (o[0], o[1]))
                why = refusals.get(pins[0], "not installed or not available")
                fallback = (f"{op} {dtype.name}{list(shape)}: pinned {pins[0]} refused ({why}); "
                            f"ran on {choice[2].name}")
        else:
            choice = min(pool, key=lambda o: (o[0], o[1]))
            top = self.backends[0].name if self.backends else None
            # NOTE: a default backend that merely lacks a kernel for a decomposable op is not a
            # fallback (it could run the decomposition; another backend's kernel was cheaper)
            if top in refusals and choice[2].name != top and not (
                    refusals[top] == "no kernel" and REGISTRY[op].decompose is not None):
                fallback = (f"{op} {dtype.name}{list(shape)}: {top} refused ({refusals[top]}); "
                            f"ran on {choice[2].name}")
        if pins:
            return choice, fallback, None, None
        movable = [(c0, o[1], o[2], o[3]) for c0, o in zip(computes, options) if o in pool]
        return choice, fallback, movable, computes[options.index(choice)]

    def _pinned_decomposition(self, p: PlanNode, args: tuple[int, ...], pin: Any, choice: tuple,
                              compute: float) -> int | None:
        """Where ``p`` is pinned to ``choice``'s backend: its decomposition on that backend when
        both were measured there and the decomposition was faster (the plan node holding its
        result, with explain's note), else None (the kernel stays).

        NOTE: measured numbers only. A static prior is a guess (optimistic for new kernels, a
        flat factor for decompositions): it never overrides what the user pinned."""
        opdef = REGISTRY[p.op]
        if self.profile is None or opdef.decompose is None or not getattr(compute, "measured", False):
            return None
        b = choice[2]
        t = self.profile.lookup_decomposed(p.op, b.name, p)
        if t is None:
            return None
        alt = self.with_inputs(t, b, p)
        if not alt < choice[0]:
            return None
        out = self._decompose_on_pin(opdef, p, args, pin)
        if out is not None:
            self._note_decomposed(out, p.op, (alt, f"{b.name}.{p.op}.decomposed"), choice, "*")
        return out

    def _note_decomposed(self, out: int, op: str, alt: tuple, best: tuple, mark: str) -> None:
        """Tell ``explain`` why ``op`` ran through its decomposition (on its result's line)."""
        q = self.nodes[out]
        q.note = (q.note + " " if q.note else "") + \
            f"({op} decomposed: {alt[1]}={alt[0]:.1f}us{mark} < {best[3].id}={best[0]:.1f}us)"

    def _decompose_on_pin(self, opdef: Any, p: PlanNode, args: tuple[int, ...], pin: Any) -> int | None:
        """``decompose``, kept only when every node of the decomposition runs where it is pinned
        (no new fallback); otherwise the planner is left as it was and None returned."""
        n_nodes, n_fallbacks, n_records, decomposed = (len(self.nodes), len(self.fallbacks), len(self.decompositions),
                                                       self.decomposed)
        try:
            out = self.decompose(opdef, p, args, pin)
        except OpNotSupportedError:
            out = None
        if out is not None and len(self.fallbacks) == n_fallbacks:
            return out
        del self.nodes[n_nodes:], self.fallbacks[n_fallbacks:], self.decompositions[n_records:]
        self.decomposed = decomposed
        for i in [i for i in self.movable if i >= n_nodes]:
            del self.movable[i]
            self.chosen_us.pop(i, None)
        return None

    def decomposed_us(self, p: PlanNode) -> tuple[float, str] | None:
        """The cheapest measured decomposition of ``p`` (``oxcore autotune`` times those too)."""
        if REGISTRY[p.op].decompose is None:
            return None
        best = None
        for b in self.backends:
            t = self.profile.lookup_decomposed(p.op, b.name, p)
            if t is not None:
                t = self.with_inputs(t, b, p)
                if best is None or t < best[0]:
                    best = (t, f"{b.name}.{p.op}.decomposed")
        return best

    def decomposed_prior(self, p: PlanNode, refusals: dict[str, str]) -> tuple[float, str] | None:
        """Before any profile: the static guess for running ``p``'s decomposition on a backend
        that has no kernel for it (``DECOMPOSITION_FACTOR`` times its prior for the node, plus
        moving the inputs). A native kernel elsewhere must beat that and the transfers it causes:
        an untuned plan then never sends work to a slower device for one fused op."""
        if REGISTRY[p.op].decompose is None:
            return None
        best = None
        for b in self.backends:
            if refusals.get(b.name) == "no kernel":
                t = self.with_inputs(DECOMPOSITION_FACTOR * b.prior_us(p), b, p)
                if best is None or t < best[0]:
                    best = (t, f"{b.name}.{p.op}.decomposed (prior)")
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
        nodes, movable = self.nodes, self.movable
        devs = {o[2].device.name for opts in movable.values() for o in opts}
        if len(devs) < 2:
            return
        # NOTE: per value, how many of its users sit on each device, kept up to date as nodes
        # move: a value's transfer cost is then one term per device, not one per user (a weight
        # read by 100k nodes would make this pass quadratic)
        users_on: list[dict[str, int]] = [{} for _ in nodes]
        device_named: dict[str, Device] = {}
        for p in nodes:
            if p.device is not None:
                device_named.setdefault(p.device.name, p.device)
            for a in p.args:
                on = users_on[a]
                on[p.device.name] = on.get(p.device.name, 0) + 1

        def xfer(v: int) -> float:
            home, t = nodes[v].device, 0.0
            for d, n in users_on[v].items():
                if n and d != home.name:
                    t += self.transfer_us(home, device_named[d], nodes[v].nbytes)
            return t

        def place(i: int, backend: Backend, kernel: Kernel) -> None:
            old, new = nodes[i].device.name, backend.device.name
            device_named.setdefault(new, backend.device)
            for a in nodes[i].args:
                on = users_on[a]
                on[old] -= 1
                on[new] = on.get(new, 0) + 1
            nodes[i].backend, nodes[i].kernel, nodes[i].device = backend, kernel, backend.device

        best_on: dict[tuple[int, str], Any] = {}  # NOTE: alike nodes share one options list

        def best(i: int, dev: str) -> Any:
            key = (id(movable[i]), dev)
            if key not in best_on:
                opts = [o for o in movable[i] if o[2].device.name == dev]
                best_on[key] = min(opts, key=lambda o: (o[0], o[1])) if opts else None
            return best_on[key]

        def try_move(group: list[int], dev: str) -> bool:
            new = []
            for i in group:
                o = best(i, dev)
                if o is None:
                    return False
                new.append(o)
            touched = sorted({*group, *(a for i in group for a in nodes[i].args)})
            compute_before = sum(self.chosen_us[i] for i in group)
            xfer_before = sum(xfer(v) for v in touched)
            if xfer_before == 0 and sum(float(o[0]) for o in new) >= compute_before:
                return False  # NOTE: no transfer to save and no faster kernel: a move cannot win
            before = compute_before + xfer_before
            old = [(nodes[i].backend, nodes[i].kernel) for i in group]
            for i, o in zip(group, new):
                place(i, o[2], o[3])
            after = sum(float(o[0]) for o in new) + sum(xfer(v) for v in touched)
            if after < before - 1e-6:
                for i, o in zip(group, new):
                    self.chosen_us[i] = o[0]
                    moved[i] = moved.get(i, 0.0) + before - after
                return True
            for i, (b, k) in zip(group, old):
                place(i, b, k)
            return False

        moved: dict[int, float] = {}
        for _ in range(rounds):
            runs: list[list[int]] = []
            for i in sorted(movable):
                if runs and nodes[runs[-1][-1]].backend is nodes[i].backend:
                    runs[-1].append(i)
                else:
                    runs.append([i])
            any_move = False
            for g in runs + [[i] for r in runs if len(r) > 1 for i in r]:
                here = nodes[g[0]].device.name
                if any(nodes[i].device.name != here for i in g):
                    continue  # an earlier move this round split the run
                for dev in sorted(devs - {here}):
                    if try_move(g, dev):
                        any_move = True
                        break
            if not any_move:
                break
        for i, gain in moved.items():
            nodes[i].note = (nodes[i].note + " " if nodes[i].note else "") + \
                f"(placed on {nodes[i].backend.name} by refine: plan total -{gain:.1f}us)"

    def _no_backend_message(self, p: PlanNode, refusals: dict[str, str]) -> str:
        ins = ", ".join(f"{i.dtype.name}{list(i.shape)}" for i in p.inputs) or "no inputs"
        installed = []
        for name, b in self.plugins.backends.items():
            ok, why = self.plugins.available(b)
            installed.append(f"{name}: {refusals.get(name, 'not available: ' + why if not ok else 'not allowed')}")
        return (f"No backend can run {p.op}({ins}) -> {p.dtype.name}{list(p.shape)} and it has no "
                f"decomposition. Backends: " + "; ".join(installed or ["(none installed)"]))

    def decompose(self, opdef: Any, p: PlanNode, args: tuple[int, ...], pin: Any) -> int:
        """Place ``p``'s decomposition (built on proxy inputs) instead of ``p``; returns the plan
        node that holds its result."""
        self.decomposed += 1
        record = Decomposition(p.op, args, p.shape, p.dtype, self._depth, len(self.nodes))
        self.decompositions.append(record)
        self._depth += 1
        try:
            record.result = self._place_decomposition(opdef, p, args, pin)
        finally:
            self._depth -= 1
        record.stop = len(self.nodes)
        return record.result

    def _place_decomposition(self, opdef: Any, p: PlanNode, args: tuple[int, ...], pin: Any) -> int:
        proxies = [Node("__proxy__", (), {}, self.nodes[a].shape, self.nodes[a].dtype) for a in args]
        out = opdef.decompose(*[self.wrap(x) for x in proxies], **p.attrs)._node
        if out.shape != p.shape or out.dtype is not p.dtype:
            raise OpNotSupportedError(f"decomposition of {p.op} produced {out.dtype.name}{list(out.shape)}, "
                                      f"expected {p.dtype.name}{list(p.shape)} (a bug in the op's declaration)")
        where = {id(x): a for x, a in zip(proxies, args)}
        order, _, _ = collect([out]) if out.buf is None and out.op != "__proxy__" else ([out], None, None)
        for n in order:
            if id(n) in where:
                continue
            if n.buf is not None:  # a constant made by the decomposition (plan-owned)
                c = PlanNode(None, {}, (), [], n.shape, n.dtype)
                c.constant, c.device = n.buf, n.device
                self.nodes.append(c)
                where[id(n)] = len(self.nodes) - 1
                continue
            if n.op == "__proxy__":
                raise OpNotSupportedError(f"decomposition of {p.op} used an input it was not given")
            where[id(n)] = self.add(n.op, n.attrs, tuple(where[id(i)] for i in n.inputs), n.shape, n.dtype,
                                    pin, origin=p.op)
        return where[id(out)]
