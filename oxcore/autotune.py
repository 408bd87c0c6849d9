"""Choose kernels by measurement: time every capable kernel and every device-to-device transfer
on this machine, and store the medians in the profile the planner reads.

Each kernel is timed alone: a one-instruction segment compiled by the kernel's own backend, on
inputs already realized on the backend's device, median of several runs after warm-up, with
``backend.synchronize()`` after each run. Ops that also have a decomposition get the
decomposition timed on the backends without a kernel for them (``cpu_numpy.clip.decomposed``),
so a measured-slow native kernel elsewhere loses to composite ops that are faster here. Plugin
ops that declare their own representative cases (``register_op(..., tune=...)``, e.g.
``ggml_matmul``) get it timed on every backend: their kernels are optional add-ons, and one
wins only at the shapes where it beats the decomposition (dequantize + matmul). An op's
``tune_attrs`` (``ggml_type``) are part of each case's key: every type is measured on its own.

Example:
    >>> import oxcore as ox, tempfile, os
    >>> from oxcore import autotune
    >>> p = ox.profile.Profile(os.path.join(tempfile.mkdtemp(), "p.json"))
    >>> r = autotune.tune(ops=["rms_norm"], quick=True, profile=p, transfers=False)
    >>> r.measured > 0 and all(row["us"] > 0 for row in r.rows if row["status"] == "ok")
    True
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import _profile
from ._backend import Backend, Instruction, Kernel, Segment
from ._dtypes import DType
from ._threads import Partition, restore_all
from .bench import Stats
from ._tune_cases import Case, declared_ops, from_trace, host_inputs, representative, TABLE

__all__ = ["tune", "TuneResult", "machine_load", "time_kernel", "time_transfer", "interleaved", "kernel_runner",
           "decomposition_runner", "default_ops"]


@dataclass
class TuneResult:
    """What one ``tune`` run did. ``rows``: one dict per (case, kernel) with ``op``, ``case``,
    ``kernel``, ``backend``, ``us`` and ``status`` (``ok``, ``cached``, ``failed: ...``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    measured: int = 0
    cached: int = 0
    failed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    path: Any = None
    load: float | None = None  # 1-minute load average per usable core while tuning (Unix)

    @property
    def busy(self) -> bool:
        """The machine was busy with other work while measuring: timings may be inflated."""
        return self.load is not None and self.load > 0.75

    def winners(self) -> list[dict[str, Any]]:
        """Per case, the fastest kernel and how much faster it is than the runner-up."""
        by: dict[str, list[dict]] = {}
        for r in self.rows:
            if r.get("us") is not None:
                by.setdefault(r["case"], []).append(r)
        out = []
        for case, rs in by.items():
            rs.sort(key=lambda r: r["us"])
            out.append({"op": rs[0]["op"], "case": case, "winner": rs[0]["kernel"], "us": rs[0]["us"],
                        "runner_up": rs[1]["kernel"] if len(rs) > 1 else None,
                        "speedup": rs[1]["us"] / rs[0]["us"] if len(rs) > 1 and rs[0]["us"] else None})
        return out


# --- timing ---------------------------------------------------------------------------------------
def _once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: list[Callable[[], Any]], budget_s: float = 0.2, max_rounds: int = 31,
                min_rounds: int = 3, warmup: int | list[int] = 1) -> list[Stats]:
    """Timing ``Stats`` (median, p10, p90 in us) per ``fn``; each ``fn`` must finish its work,
    synchronize included.

    Candidates are timed in interleaved rounds, not one after the other, so load that comes and
    goes on a shared machine hits them all alike. Each ``fn`` first runs ``warmup`` times
    untimed (one number for all, or one per ``fn``): a backend that compiles late declares how
    many runs that takes (``Backend.warmup_runs``). Then a microsecond-scale ``fn`` that
    follows a different one is run once untimed first: worker threads of the previous library
    (OpenBLAS, MLX) may still be spinning. ``fn`` slower than a second gets a single sample.

    Example:
        >>> st = interleaved([lambda: None, lambda: sum(range(1000))], budget_s=0.01)
        >>> len(st), st[0].median_us < st[1].median_us
        (2, True)
    """
    n = len(fns)
    warm = warmup if isinstance(warmup, list) else [warmup] * n
    est = []
    for fn, w in zip(fns, warm):
        for _ in range(w):
            fn()  # NOTE: compiles (mx.compile, segment codegen); never a sample
        est.append(_once(fn))
    inner = [10 if e < 20e-6 else 1 for e in est]  # NOTE: amortize the timer for microsecond kernels
    discard = [n > 1 and e < 0.02 for e in est]
    cost = sum(e * (i + d) for e, i, d in zip(est, inner, discard))
    rounds = max(min_rounds, min(max_rounds, int(budget_s * n / max(cost, 1e-9))))
    # NOTE: for slow fns (> 50 ms) the estimate run already is a fair sample
    samples: list[list[float]] = [[e] if e > 0.05 else [] for e in est]
    for r in range(rounds):
        for j in range(n):
            i = (j + r) % n  # NOTE: rotate who goes first, so no candidate always follows the same one
            if est[i] > 1.0 or (r == 0 and est[i] > 0.05):
                continue
            if discard[i]:
                fns[i]()
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fns[i]()
            samples[i].append((time.perf_counter() - t0) / inner[i])
    out = []
    for s in samples:
        us = [x * 1e6 for x in s]
        q = statistics.quantiles(us, n=10) if len(us) >= 2 else [us[0]] * 9
        out.append(Stats(statistics.median(us), q[0], q[-1], len(us)))
    return out


def kernel_runner(backend: Backend, kernel: Kernel, case: Case, inputs: list | None = None) -> Callable[[], Any]:
    """``run()`` executing ``kernel`` alone on ``case`` (a one-instruction segment compiled by its
    backend, inputs already realized on the backend's device) and synchronizing."""
    n = len(case.inputs)
    seg = Segment(backend, n, list(case.inputs))
    seg.instructions.append(Instruction(case.op, case.attrs, kernel, tuple(range(n)), case.shape, case.dtype))
    seg.outputs = (n,)
    run = backend.compile_segment(seg)
    host = inputs if inputs is not None else host_inputs(case)
    bufs = [backend.device.from_numpy(x) for x in host]
    sync = backend.synchronize
    sync()

    def run_once() -> None:
        run(bufs)
        sync()
    return run_once


def decomposition_runner(backend: Backend, case: Case, inputs: list | None = None) -> Callable[[], Any]:
    """``run()`` executing ``case.op``'s decomposition planned on ``backend`` alone."""
    from ._array import Array
    from ._graph import Node, collect
    from ._plan import build_plan, run_steps
    from ._registry import REGISTRY

    host = inputs if inputs is not None else host_inputs(case)
    dev = backend.device
    leaves = [Array._wrap(Node(None, (), {}, s, d, dev.from_numpy(x), dev)) for (s, d), x in zip(case.inputs, host)]
    out = REGISTRY[case.op].decompose(*leaves, **case.attrs)._node
    if out.buf is not None:
        return backend.synchronize
    order, pos, _ = collect([out])
    plan = build_plan(order, pos, [n is out for n in order], only=backend.name)
    bufs = {s: order[p].buf for p, s in plan.leaf_slots}
    sync = backend.synchronize

    def run_once() -> None:
        vals: list[Any] = [None] * plan.nslots
        for s, b in bufs.items():
            vals[s] = b
        for s, b in plan.constants:
            vals[s] = b
        run_steps(plan.steps, vals)
        sync()
    sync()
    return run_once


def time_kernel(backend: Backend, kernel: Kernel, case: Case, inputs: list | None = None,
                quick: bool = False) -> tuple[float, int]:
    """``(median_us, runs)`` of ``kernel`` alone on ``case``."""
    st = interleaved([kernel_runner(backend, kernel, case, inputs)], 0.04 if quick else 0.2,
                     warmup=backend.warmup_runs)[0]
    return st.median_us, st.runs


def time_transfer(src: Any, dst: Any, quick: bool = False) -> tuple[float, float, float]:
    """``(latency_us, bytes_per_us, switch_us)`` from device ``src`` to ``dst``.

    Latency and bandwidth come from moving 4 KiB and 4-32 MiB the way plans do. ``switch_us`` is
    what running work on ``dst`` right after work on ``src`` costs on top (a GPU stream sync, or
    CPU worker threads of one library still spinning while the other's start): the median
    extra time of a small matmul on ``dst`` that follows one on ``src``.
    """
    import numpy as np

    from ._plan import transfer_fn

    move = transfer_fn(src, dst)
    on = {d.name: [b for b in _backends() if b.device == d] for d in (src, dst)}

    def sync() -> None:
        for b in on[src.name] + on[dst.name]:
            b.synchronize()

    small, big = 4096, (4 << 20) if quick else (32 << 20)
    fns = []
    for n in (small, big):
        buf = src.from_numpy(np.ones(n // 4, np.float32))
        fns.append(lambda buf=buf: (move([buf]), sync()))
    sync()
    times = [st.median_us for st in interleaved(fns, 0.04 if quick else 0.2)]
    lat = times[0]
    bw = (big - small) / max(times[1] - times[0], 1e-3)
    return lat, min(bw, 1e9), _switch_us(on[src.name], on[dst.name], quick)  # NOTE: cap zero-copy views


def _switch_us(srcs: list[Backend], dsts: list[Backend], quick: bool) -> float:
    from . import _dtypes

    case = Case("matmul", {}, [((16, 512), _dtypes.float32), ((512, 512), _dtypes.float32)], (16, 512), _dtypes.float32)
    pn = case.plan_node()

    def runner(bs: list[Backend]) -> tuple[Backend, Callable[[], Any]] | None:
        for b in bs:
            for k in b.kernels_for("matmul"):
                if k.check(pn) is None and not k.failed:
                    return b, kernel_runner(b, k, case)
        return None

    a, z = runner(srcs), runner(dsts)
    if a is None or z is None:
        return 0.0
    (b1, first), (b2, second) = a, z
    # NOTE: measured the way a plan mixing the two runs: sharing the cores when both have pools
    pooled = [b for b in (b1, b2) if b.has_thread_pools]
    Partition(pooled if len(set(pooled)) >= 2 else ()).apply()
    alone, after = [], []
    try:
        second()
        first()
        for _ in range(5 if quick else 9):
            second()
            t0 = time.perf_counter()
            second()
            alone.append(time.perf_counter() - t0)
            first()
            t0 = time.perf_counter()
            second()
            after.append(time.perf_counter() - t0)
    finally:
        restore_all()
    return max(0.0, (statistics.median(after) - statistics.median(alone)) * 1e6)


# --- the run -------------------------------------------------------------------------------------
def _backends() -> list[Backend]:
    """Available backends (only those named by ``OXCORE_BACKENDS`` when it is set)."""
    from ._osutil import env_list
    from ._plugins import manager

    allowed = env_list("OXCORE_BACKENDS")
    return [b for b in manager().available_backends() if allowed is None or b.name in allowed]


def default_ops() -> list[str]:
    """Ops with representative cases (the core's table, then plugin ops that declare theirs)
    that some available backend runs natively."""
    have = {op for b in _backends() for op in b.kernels}
    return [op for op in (*TABLE, *declared_ops()) if op in have]


def _cases(ops: list[str] | None, dtypes: Iterable[DType], quick: bool, trace: Any) -> list[Case]:
    from ._trace import load

    if trace is not None:
        nodes = trace if isinstance(trace, list) else load(trace)
        cases = [c for c in from_trace(nodes) if ops is None or c.op in ops]
    else:
        cases = [c for op in (ops or default_ops()) for dt in dtypes for c in representative(op, dt, quick)]
    seen, out = set(), []
    for c in cases:  # NOTE: one case per profile key: shapes in one bucket are measured once
        pn = c.plan_node()  # (per value of the op's tune_attrs: a Q4_K and a Q5_0 weight both)
        key = (c.op, _profile.dtypes_of(pn.inputs, pn), _profile.bucket_of(pn.inputs, pn),
               _profile.attrs_of(c.op, c.attrs))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def tune(ops: Iterable[str] | None = None, dtypes: Iterable[Any] = ("float32",), *, quick: bool = False,
         trace: Any = None, profile: "_profile.Profile | None" = None, force: bool = False,
         transfers: bool = True, progress: Callable[[str, int, int], None] | None = None) -> TuneResult:
    """Measure kernels (and transfers) and save them into ``profile`` (default: the active one).

    Args:
        ops: op names (default: every op with representative cases some backend has: the core's
            table and plugin ops that declare cases with ``register_op(..., tune=...)``).
        dtypes: dtypes of the representative cases (ignored with ``trace``).
        quick: fewer shape buckets and shorter timing budgets (under three minutes).
        trace: a file written by ``oxcore.record`` (or its ``nodes`` list): measure exactly its
            shapes instead.
        profile: where to store results (default: the file ``oxcore profile path`` names).
        force: measure again what the profile already has (default: only what is missing, so
            installing a new backend measures only the new one).
        transfers: also measure every device pair.
        progress: ``progress(what, done, total)`` after each step (the CLI draws a bar).
    """
    from . import _dtypes

    t_start = time.perf_counter()
    restore_all()  # NOTE: kernels are timed with their libraries' own thread settings
    if profile is None:
        file = _profile.path()
        if file is None:
            raise ValueError("profiles are off (OXCORE_PROFILE=off); set OXCORE_PROFILE to a file to autotune")
        profile = _profile.Profile(file)
    backends = sorted(_backends(), key=lambda b: b.name)
    cases = _cases(list(ops) if ops else None, [_dtypes.dtype(d) for d in dtypes], quick, trace)
    jobs = [(c, _candidates(c, backends)) for c in cases]
    devices = _devices(backends) if transfers else []
    pairs = [(a, b) for a in devices for b in devices if a.name != b.name]
    total = sum(len(ks) for _, ks in jobs) + len(pairs)
    res = TuneResult(path=profile.file)
    done = 0
    for c, ks in jobs:
        _tune_case(c, ks, profile, res, quick, force)
        done += len(ks)
        if progress:
            progress(c.describe(), done, total)
    for j, (a, b) in enumerate(pairs):
        lat, bw, switch = time_transfer(a, b, quick)
        profile.add_transfer(a, b, lat + switch, bw, copy_latency_us=lat, switch_us=switch)
        res.transfers.append({"src": a.name, "dst": b.name, "latency_us": lat + switch, "bytes_per_us": bw,
                              "switch_us": switch})
        if progress:
            progress(f"transfer {a.name} -> {b.name}", done + j + 1, total)
    if profile.file is not None:
        stale = profile.stale()
        res.dropped = len(stale)
        profile.save(drop=stale)
    if _profile.current() is not profile:
        _profile.reload()
    res.seconds = time.perf_counter() - t_start
    res.load = machine_load()
    return res


def machine_load() -> float | None:
    """1-minute load average per usable core, or None where the OS does not say."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] / cores
    except (AttributeError, OSError):
        return None


def _candidates(c: Case, backends: list[Backend]) -> list[tuple[Backend, Any]]:
    """Every kernel that accepts ``c``, plus the decomposition on backends without a kernel (on
    every backend for an op that declares its own cases: see the module's docstring)."""
    from ._registry import REGISTRY

    pn = c.plan_node()
    out: list[tuple[Backend, Any]] = [(b, k) for b in backends for k in b.kernels_for(c.op)
                                      if not k.failed and k.check(pn) is None]
    if out and c.op in _decomposable():
        # NOTE: a backend without a kernel for the op runs its decomposition; time that, so the
        # planner can weigh it against the other backends' native kernels. A plugin op's
        # kernels (ggml_matmul's) are measured against the decomposition on their own backend too.
        everywhere = REGISTRY.ops[c.op].tune is not None
        out += [(b, _profile.DecomposedKernel.of(c.op, b.name)) for b in backends
                if everywhere or not b.kernels_for(c.op)]
    return out


def _tune_case(c: Case, ks: list[tuple[Backend, Any]], profile: "_profile.Profile", res: TuneResult,
               quick: bool, force: bool) -> None:
    """Time the candidates of one case together (interleaved) and add them to ``profile``."""
    pn = c.plan_node()
    todo, runners = [], []
    host: list | None = None
    for b, k in ks:
        row = {"op": c.op, "case": c.describe(), "kernel": k.id, "backend": b.name, "us": None, "runs": 0,
               "origin": c.origin, "status": "ok"}
        res.rows.append(row)
        if not force and profile.has(k, pn):
            row["status"], row["us"] = "cached", float(profile.lookup(k, pn))
            res.cached += 1
            continue
        host = host if host is not None else host_inputs(c)
        try:  # NOTE: a kernel that cannot run here is reported, never fatal
            run = decomposition_runner(b, c, host) if isinstance(k, _profile.DecomposedKernel) \
                else kernel_runner(b, k, c, host)
            run()
        except Exception as e:
            row["status"] = f"failed: {type(e).__name__}: {e}"
            res.failed += 1
            continue
        todo.append((b, k, row))
        runners.append(run)
    budget, most = (0.04 if quick else 0.2), (15 if quick else 31)
    # NOTE: each runner already ran once above
    warm = [max(0, b.warmup_runs - 1) for b, _, _ in todo]
    try:
        timed: list = interleaved(runners, budget * len(runners), most, warmup=warm) if runners else []
    except Exception:  # NOTE: one kernel broke after its first run: time each alone to find it
        timed = []
        for run, w in zip(runners, warm):
            try:
                timed.append(interleaved([run], budget, most, warmup=w)[0])
            except Exception as e:
                timed.append(e)
    for (b, k, row), st in zip(todo, timed):
        if isinstance(st, Exception):
            row["status"] = f"failed: {type(st).__name__}: {st}"
            res.failed += 1
            continue
        profile.add(k, pn, st.median_us, device=b.device, runs=st.runs, p10_us=st.p10_us, p90_us=st.p90_us,
                    case=c.describe())
        row.update(us=st.median_us, runs=st.runs)
        res.measured += 1


def _decomposable() -> set[str]:
    from ._registry import REGISTRY

    return {op for op in REGISTRY if REGISTRY.ops[op].decompose is not None}


def _devices(backends: list[Backend]) -> list[Any]:
    from ._device import HOST

    out = {HOST.name: HOST}
    for b in backends:
        for d in b.devices:
            out.setdefault(d.name, d)
    return list(out.values())
