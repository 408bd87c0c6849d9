"""A ``Plan``: named steps over numbered value slots, with what placement decided and why."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from .. import _mapping
from .._backend import Backend, Kernel, Segment
from .._device import Device


class PlanNode:
    """A node as the planner sees it (also what ``Kernel.supports`` receives).

    Leaves have ``op`` None: a plan input (``leaf_pos``: its position in the collected graph)
    or a ``constant`` made by a decomposition (the buffer itself, owned by the plan).
    """

    __slots__ = ("op", "attrs", "args", "inputs", "shape", "dtype", "pin", "backend", "kernel", "device",
                 "constant", "leaf_pos", "origin", "note", "candidates")

    def __init__(self, op: str | None, attrs: dict, args: tuple[int, ...], inputs: list["PlanNode"],
                 shape: tuple[int, ...], dtype: Any, pin: tuple[str, ...] | None = None) -> None:
        self.op, self.attrs, self.args, self.inputs = op, attrs, args, inputs
        self.shape, self.dtype, self.pin = shape, dtype, pin
        self.backend: Backend | None = None
        self.kernel: Kernel | None = None
        self.constant: Any = None
        self.leaf_pos: int | None = None
        self.origin: str | None = None
        self.device: Device | None = None
        self.note = ""
        self.candidates: list[tuple[str, Any]] = []

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a plan: ``outputs`` slots = ``fn([inputs slots])``, then ``frees`` are cleared.

    ``transfer`` marks a move between devices (``oxcore.compile`` moves constants once, at
    trace time, instead of on every call).
    """

    fn: Callable[[list], list]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    frees: tuple[int, ...] = ()
    transfer: bool = False


class Transfer(NamedTuple):
    """A value moved between devices: the plan node it comes from, source and destination
    device names, and its size."""

    node: int
    src: str
    dst: str
    nbytes: int


class Output(NamedTuple):
    """A value the plan hands out: its position in the collected graph, slot and device."""

    position: int
    slot: int
    device: Device


@dataclass
class Plan:
    """Placement, segments and transfers for one graph signature, as steps over slots.

    Attributes:
        leaf_slots: ``(position in the collected graph, slot)`` of each input buffer.
        constants: ``(slot, buffer)`` of values the plan owns (decomposition constants).
        steps: what to run, in order.
        outputs: where each requested value ends up.
        nslots: how many slots a run needs.
        nodes: every plan node (leaves too), in planning order.
        segments: the segments, in the order their steps run.
        transfers: every move between devices.
        fallbacks: why some nodes did not run where they were pinned or preferred.
        decomposed: how many nodes ran through their decomposition.
        threads: how the plan shares the cores between CPU backends with thread pools (its first
            step applies it), or None.
    """

    leaf_slots: list[tuple[int, int]]
    constants: list[tuple[int, Any]]
    steps: list[Step]
    outputs: list[Output]
    nslots: int
    nodes: list[PlanNode]
    segments: list[Segment]
    transfers: list[Transfer]
    fallbacks: list[str] = field(default_factory=list)
    decomposed: int = 0
    threads: Any = None

    @classmethod
    def empty(cls) -> "Plan":
        return cls([], [], [], [], 0, [], [], [])

    def explain(self) -> "Explanation":
        return Explanation(self)


def run_steps(steps: list[Step], vals: list) -> None:
    """Run a plan's steps over its slot list ``vals`` (leaves and constants already filled)."""
    if _mapping.LIVE:  # NOTE: a view on a file truncated since would SIGBUS: check the files first
        _mapping.check_buffers(vals)
    for st in steps:
        res = st.fn([vals[i] for i in st.inputs])
        for o, r in zip(st.outputs, res):
            vals[o] = r
        for f in st.frees:
            vals[f] = None


class Explanation:
    """What ``oxcore.explain`` returns: ``str()`` it for the table; attributes for tests."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.nodes = [p for p in plan.nodes if p.op is not None]
        self.backends = [p.backend.name for p in self.nodes]
        self.transfers = plan.transfers
        self.fallbacks = plan.fallbacks
        self.segments = [(s.backend.name, len(s.instructions)) for s in plan.segments]

    def __str__(self) -> str:
        lines = [f"plan: {len(self.nodes)} nodes, {len(self.segments)} segments, "
                 f"{len(self.transfers)} transfers, {len(self.fallbacks)} fallbacks, "
                 f"{self.plan.decomposed} decomposed"]
        for i, p in enumerate(self.plan.nodes):
            if p.op is None:
                what = "const" if p.constant is not None else f"input #{p.leaf_pos}"
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
        for t in self.transfers:
            lines.append(f"  transfer %{t.node}: {t.src} -> {t.dst} ({t.nbytes} bytes)")
        for f in self.fallbacks:
            lines.append(f"  fallback: {f}")
        for j, (b, n) in enumerate(self.segments):
            lines.append(f"  segment {j}: {b}, {n} nodes")
        t = self.plan.threads
        if t is not None and t.backends:
            lines.append(f"  threads: {', '.join(b.name for b in t.backends)} share the cores, "
                         f"{t.threads} each (their thread pools)")
        return "\n".join(lines)

    __repr__ = __str__
