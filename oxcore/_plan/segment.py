"""From placed nodes to a ``Plan``: segments, transfers, slots and frees, compiled segments.

Consecutive nodes placed on one backend form a segment; each value a segment needs from
another device gets one explicit transfer step (per value and destination device). Every
value lives in a numbered slot, freed right after its last reader.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from .._backend import Backend, Instruction, Kernel, Segment, frees_after_last_use
from .._device import HOST, Device
from .._threads import Partition
from .placement import Planner
from .plan import Output, Plan, Step, Transfer


class KernelFailed(Exception):
    """Raised by a guarded (third-party) kernel; the run disables it and re-plans."""

    def __init__(self, kernel: Kernel, error: BaseException) -> None:
        super().__init__(f"{kernel.id}: {error}")
        self.kernel, self.error = kernel, error


def guard(k: Kernel) -> Callable:
    """Wrap a third-party kernel so its failures are attributed to it (not a crash of the eval)."""
    fn = k.fn

    def guarded(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as e:
            raise KernelFailed(k, e) from e
    return guarded


def constant_inputs(planner: Planner, ext: list[int]) -> dict[int, Any]:
    """Segment inputs whose values are fixed and small (0-d): their host values by input index.

    Only for ``oxcore.compile`` plans: a backend may bake these into its kernels, which costs a
    kernel build per distinct value (MLX: a C++/NVRTC compile). A trace pays that once; a lazy
    plan would pay it for every new scalar, so lazy plans keep them as ordinary inputs."""
    out: dict[int, Any] = {}
    if planner.constants is None:
        return out
    for k, a in enumerate(ext):
        p = planner.nodes[a]
        if p.op is not None or p.shape:
            continue
        if p.constant is not None:
            out[k] = np.asarray(p.device.to_numpy(p.constant))
        elif p.leaf_pos in planner.constants:
            out[k] = np.asarray(p.device.to_numpy(planner.constants[p.leaf_pos]))
    return out


def _groups(nodes: list, need: list[bool]) -> list[list[int]]:
    """Runs of consecutive live nodes on one backend."""
    groups: list[list[int]] = []
    for i, p in enumerate(nodes):
        if p.op is None or not need[i]:
            continue
        if groups and nodes[groups[-1][-1]].backend is p.backend:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _live(nodes: list, outputs: list[tuple[int, int]]) -> list[bool]:
    """Which plan nodes the outputs need (decompositions may leave dead helpers)."""
    need = [False] * len(nodes)
    for _, q in outputs:
        need[q] = True
    for i in range(len(nodes) - 1, -1, -1):
        if need[i]:
            for a in nodes[i].args:
                need[a] = True
    return need


def _overwritable(nodes: list, need: list[bool], final: set[int], donated: frozenset[int]) -> set[int]:
    """Plan nodes of donated leaves that exactly one live node reads, once, and that the plan
    does not hand out: their only reader may write its result into their buffers."""
    if not donated:
        return set()
    cand = {i for i, p in enumerate(nodes) if p.op is None and p.constant is None and p.leaf_pos in donated
            and i not in final}
    reads: dict[int, int] = {}
    for i, p in enumerate(nodes):
        if p.op is not None and need[i]:
            for a in p.args:
                if a in cand:
                    reads[a] = reads.get(a, 0) + 1
    return {a for a, n in reads.items() if n == 1}


def segment(planner: Planner, outputs: list[tuple[int, int]], donated: frozenset[int] = frozenset()) -> Plan:
    """The plan for placed nodes; ``outputs`` are ``(position in the graph, plan node)`` pairs;
    ``donated``: positions in the graph of leaves whose buffers may be overwritten."""
    nodes = planner.nodes
    need = _live(nodes, outputs)
    groups = _groups(nodes, need)
    slot_of: dict[tuple[int, str], int] = {}  # (plan node, device name) -> slot
    nslots = 0
    leaf_slots, constants = [], []
    for i, p in enumerate(nodes):
        if p.op is None and need[i]:
            slot_of[(i, p.device.name)] = nslots
            if p.constant is None:
                leaf_slots.append((p.leaf_pos, nslots))
            else:
                constants.append((nslots, p.constant))
            nslots += 1
    home = {i: p.device for i, p in enumerate(nodes) if p.device is not None}
    used_later: dict[int, int] = {}
    for gi, g in enumerate(groups):
        inside = set(g)
        for i in g:
            for a in nodes[i].args:
                if a not in inside:
                    used_later[a] = gi
    final = {q for _, q in outputs}
    overwritable = _overwritable(nodes, need, final, donated)
    steps: list[Step] = []
    segments: list[Segment] = []
    transfers: list[Transfer] = []
    for gi, g in enumerate(groups):
        b = nodes[g[0]].backend
        inside = set(g)
        ext_set: dict[int, None] = {}  # NOTE: ordered set; graphs can have 10k+ inputs
        for i in g:
            for a in nodes[i].args:
                if a not in inside:
                    ext_set[a] = None
        ext = list(ext_set)
        in_slots = []
        for a in ext:
            key = (a, b.device.name)
            if key not in slot_of:
                src = slot_of[(a, home[a].name)]
                slot_of[key] = nslots
                steps.append(Step(transfer_fn(home[a], b.device), (src,), (nslots,), transfer=True))
                transfers.append(Transfer(a, home[a].name, b.device.name, nodes[a].nbytes))
                nslots += 1
            in_slots.append(slot_of[key])
        env = {a: k for k, a in enumerate(ext)}
        seg = Segment(b, len(ext), [(nodes[a].shape, nodes[a].dtype) for a in ext])
        seg.constants = constant_inputs(planner, ext)
        for i in g:
            p = nodes[i]
            env[i] = len(ext) + len(seg.instructions)
            k = p.kernel
            if k.inplace is not None and p.args and p.args[0] in overwritable and home[p.args[0]] == b.device:
                k = dataclasses.replace(k, fn=k.inplace)  # NOTE: a donated buffer, read here only
            if k.source and k.source != b.distribution:
                k = dataclasses.replace(k, fn=guard(k))
            seg.instructions.append(Instruction(p.op, p.attrs, k, tuple(env[a] for a in p.args), p.shape, p.dtype))
        outs = [i for i in g if i in final or used_later.get(i, -1) > gi]
        seg.outputs = tuple(env[i] for i in outs)
        out_slots = []
        for i in outs:
            slot_of[(i, b.device.name)] = nslots
            out_slots.append(nslots)
            nslots += 1
        steps.append(Step(compiled(b, seg), tuple(in_slots), tuple(out_slots)))
        segments.append(seg)
    # NOTE: outputs stay (they are written into nodes after the run); leaves are held by their
    # nodes anyway, so freeing their slots only drops the plan's reference
    held = {slot_of[(q, home[q].name)] for q in final}
    frees = frees_after_last_use([st.inputs for st in steps], held)
    steps = [dataclasses.replace(st, frees=f) for st, f in zip(steps, frees)]
    threads = thread_partition(planner, segments)
    if threads is not None:
        steps.insert(0, Step(threads.step, (), ()))
    out_list = [Output(pos, slot_of[(q, home[q].name)], home[q]) for pos, q in outputs]
    return Plan(leaf_slots, constants, steps, out_list, nslots, nodes, segments, transfers, planner.fallbacks,
                planner.decomposed, threads, planner.decompositions)


def thread_partition(planner: Planner, segments: list[Segment]) -> Partition | None:
    """The cores' partition a plan runs under, or None (no step: the single-backend hot path).

    Segments on two or more CPU backends with thread pools: those backends share the cores.
    One such backend, in a process where others are available: the plain setting (their pools
    restored), so a plan on NumPy alone after a mixed one gets every core back."""
    pooled = {seg.backend for seg in segments if seg.backend.has_thread_pools}
    if len(pooled) >= 2:
        return Partition(pooled)
    if pooled and sum(b.has_thread_pools for b in planner.backends) >= 2:
        return Partition(())
    return None


_COMPILED: "OrderedDict[tuple, Callable]" = OrderedDict()
_COMPILED_SIZE = 4096


def compiled(b: Backend, seg: Segment) -> Callable:
    """``b.compile_segment(seg)``, cached by backend and ``seg.key`` (plans of different graphs
    often share segments: a decode step's last layer, a residual block)."""
    key = (b.name, id(b), seg.key)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = b.compile_segment(seg)
        _COMPILED[key] = fn
        if len(_COMPILED) > _COMPILED_SIZE:
            _COMPILED.popitem(last=False)
    return fn


def transfer_fn(src: Device, dst: Device) -> Callable[[list], list]:
    """A step function moving one value from ``src`` to ``dst`` (through host memory)."""
    if src is HOST or src.name == HOST.name:
        return lambda v: [dst.from_numpy(v[0])]
    if dst.name == HOST.name:
        return lambda v: [src.to_numpy(v[0])]
    return lambda v: [dst.from_numpy(src.to_numpy(v[0]))]
