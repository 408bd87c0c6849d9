"""Concurrency stress: many threads evaluating many graphs at once, across backends, while
another process rewrites the autotune profile and this one reloads it.

``stress(threads, graphs)`` has each thread build ``graphs`` small graphs of mixed shapes,
dtypes and backends (pinned with ``oxcore.use``), evaluate them, and compare every result
*exactly* with NumPy (the ops are chosen so every backend must agree bit for bit: integer
arithmetic and sums, float add/multiply/maximum one op at a time). A separate process saves
the profile file in a loop and one more thread reloads it, so plans are invalidated and
rebuilt while other threads evaluate. Threads that do not finish in time are a deadlock.
``compiled=True`` runs shared ``oxcore.compile``d functions instead.

CI runs a short version (tests/core/test_concurrency.py); ``scripts/stress`` the full 8 x 1,000.

Example:
    >>> from oxcore.testing.stress import stress
    >>> r = stress(threads=2, graphs=3, backends=("cpu_numpy",), profile_writer=False)
    >>> r["graphs"], r["mismatches"]
    (6, 0)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

__all__ = ["stress"]

SHAPES = [(7,), (3, 5), (16, 16), (2, 3, 4), (64, 33), (1, 128)]

_WRITER = """
import sys, time
from pathlib import Path
from oxcore.testing.faults import _profile_doc
import oxcore as ox
stop = Path(sys.argv[2])
i = 0
print("ready", flush=True)
while not stop.exists():
    p = ox.profile.Profile(sys.argv[1])
    p.data["kernels"].update(_profile_doc(i % 7)["kernels"])
    p.save()
    i += 1
print(i)
"""


def _graph(ox: Any, rng: np.random.Generator, backend: str) -> tuple[Any, np.ndarray]:
    """One random graph pinned to ``backend`` and its exact NumPy result."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    kind = int(rng.integers(3))
    if kind == 0:  # integers: exact everywhere
        a, b, c = (rng.integers(-100, 100, shape).astype(np.int32) for _ in range(3))
        axis = int(rng.integers(len(shape)))
        with ox.use(backend):
            y = ox.sum((ox.asarray(a) * ox.asarray(b) + ox.asarray(c)) - ox.asarray(a), axis=axis)
        return y, np.sum((a * b + c) - a, axis=axis, dtype=np.int64)
    a, b, c = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    if kind == 1:  # one rounding per op, the same on every IEEE backend
        with ox.use(backend):
            y = ox.maximum(ox.asarray(a) * ox.asarray(b), ox.asarray(c)) + ox.asarray(a)
        return y, np.maximum(a * b, c) + a
    with ox.use(backend):
        y = ox.max(ox.abs(ox.asarray(a) - ox.asarray(b)), axis=-1)
    return y, np.max(np.abs(a - b), axis=-1)


def _compiled_fns(ox: Any) -> list[tuple[Any, Any]]:
    def f_int(a, b):
        return ox.sum(a * b + a, axis=-1)

    def f_float(a, b):
        return ox.maximum(a * b, a) + b

    return [(ox.compile(f_int), lambda a, b: np.sum(a * b + a, axis=-1, dtype=np.int64)),
            (ox.compile(f_float), lambda a, b: np.maximum(a * b, a) + b)]


def stress(threads: int = 8, graphs: int = 1000, *, backends: tuple[str, ...] | None = None,
           profile_writer: bool = True, compiled: bool = False, timeout_s: float = 600.0,
           seed: int | None = None) -> dict[str, Any]:
    """Run the stress; returns a report (graphs, mismatches, errors, plan-cache checks, seconds).

    Raises ``AssertionError`` on a deadlock (a thread still running after ``timeout_s``), a
    wrong result, an error in a thread, or an inconsistent plan cache.
    """
    import oxcore as ox
    from oxcore._plan import run as S

    avail = ox.backends()
    # NOTE: default: every available backend, so graphs on different devices interleave
    backends = tuple(b for b in (backends or avail) if b in avail)
    if not backends:
        raise RuntimeError(f"none of the backends is available here; available: {', '.join(avail)}")
    fns = _compiled_fns(ox) if compiled else []
    errors: list[str] = []
    mismatches: list[str] = []
    done = [0] * threads
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)
    before = dict(S.STATS)
    work = tempfile.mkdtemp(prefix="oxcore-stress-")
    prof = os.path.join(work, "profile.json")
    stop_file = os.path.join(work, "stop")
    old_env = os.environ.get("OXCORE_PROFILE")
    writer = None
    if profile_writer:
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, prof, stop_file], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready", "profile writer did not start"
        os.environ["OXCORE_PROFILE"] = prof  # NOTE: this process plans with the file being rewritten
    reloads = [0]

    def run(i: int) -> None:
        rng = np.random.default_rng(None if seed is None else seed + i)
        try:
            barrier.wait()
            for g in range(graphs):
                b = backends[(i + g) % len(backends)]
                if fns:
                    fn, ref = fns[g % len(fns)]
                    shape = SHAPES[int(rng.integers(len(SHAPES)))]
                    dt = np.int32 if g % 2 == 0 else np.float32
                    a, c = ((rng.integers(-50, 50, shape) if dt is np.int32 else rng.standard_normal(shape)).astype(dt)
                            for _ in range(2))
                    if fn is fns[0][0]:
                        a, c = a.astype(np.int32), c.astype(np.int32)
                    with ox.use(b):
                        y = fn(ox.asarray(a), ox.asarray(c))
                    want = ref(a, c)
                else:
                    y, want = _graph(ox, rng, b)
                got = y.numpy()
                if got.shape != want.shape or not np.array_equal(got, want.astype(got.dtype)):
                    mismatches.append(f"thread {i} graph {g} on {b}: shape {got.shape} vs {want.shape}")
                done[i] += 1
        except BaseException as e:  # NOTE: reported below, in the caller's thread
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    def reloader() -> None:
        barrier.wait()
        while not stop.is_set():
            ox.profile.reload()  # NOTE: re-reads the file the other process is replacing; drops plans
            reloads[0] += 1
            time.sleep(0.005)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    rl = threading.Thread(target=reloader, daemon=True) if profile_writer else None
    for t in ts:
        t.start()
    if rl is not None:
        rl.start()
    else:
        barrier.wait()
    try:
        deadline = time.monotonic() + timeout_s
        for t in ts:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = [i for i, t in enumerate(ts) if t.is_alive()]
    finally:
        stop.set()
        if rl is not None:
            rl.join(30)
        writes = None
        if writer is not None:
            open(stop_file, "w").close()
            out, err = writer.communicate(timeout=60)
            writes = int(out.split()[-1]) if writer.returncode == 0 else f"writer failed: {err[-500:]}"
            if old_env is None:
                os.environ.pop("OXCORE_PROFILE", None)
            else:
                os.environ["OXCORE_PROFILE"] = old_env
            ox.profile.reload()
    dt = time.perf_counter() - t0
    assert not hung, f"deadlock: threads {hung} still running after {timeout_s} s ({sum(done)} graphs done)"
    assert not errors, "\n".join(errors[:10])
    assert not mismatches, "\n".join(mismatches[:10])
    assert not isinstance(writes, str), writes
    # NOTE: the plan cache after the storm: bounded, every entry a plan, and it still answers
    with S.LOCK:
        plans = list(S._CACHE.items())
    assert len(plans) <= S.PLAN_CACHE_SIZE and all(isinstance(p, S.Plan) for _, p in plans)
    evals = (S.STATS["hits"] - before["hits"]) + (S.STATS["misses"] - before["misses"])
    x = ox.asarray(np.arange(6, dtype=np.int32))
    (x * 2 + 1).numpy()
    h = S.STATS["hits"]
    assert ((x * 2 + 1).numpy() == np.arange(6) * 2 + 1).all() and S.STATS["hits"] == h + 1, "the cache stopped hitting"
    return {"threads": threads, "graphs": sum(done), "backends": list(backends), "compiled": compiled,
            "mismatches": len(mismatches), "evaluations": evals, "plan_misses": S.STATS["misses"] - before["misses"],
            "profile_writes_by_other_process": writes, "profile_reloads": reloads[0], "seconds": round(dt, 2)}
