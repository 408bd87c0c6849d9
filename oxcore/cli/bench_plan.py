"""``oxcore bench plan``: does choosing kernels by measurement pay off?

For a transformer block and an MLP, in one process: the autotuned plan, each backend forced
alone, and the untuned default (no profile, static priors). Each configuration gets its inputs
resident where its plan consumes them (weights live on the device that uses them), is warmed
up, and is timed end to end (build the lazy graph + evaluate + synchronize).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from typing import Any, Callable, Iterator

import click

from . import main
from .demo import attention_block

bench_group = main.commands["bench"]  # NOTE: the module oxcore.cli.bench shadows the group's name

SIZES = {  # name: (tokens, d_model, heads, kv_heads, ffn, mlp_batch, mlp_hidden)
    "small": (16, 512, 8, 2, 1408, 16, 2048),
    "medium": (64, 1024, 16, 4, 2816, 64, 4096),
}


# --- workloads (oxcore ops only; the block is the demo's) ------------------------------------------
def mlp(ox: Any, x: Any, p: dict[str, Any]) -> Any:
    """linear -> gelu -> linear -> residual."""
    return x + ox.linear(ox.gelu(ox.linear(x, p["w1"], p["b1"])), p["w2"], p["b2"])


def make_workloads(size: str, seed: int = 0) -> list[tuple[str, dict[str, Any], Callable]]:
    """``(name, host inputs, fn(ox, arrays) -> output)`` per workload (inputs are NumPy arrays)."""
    import numpy as np

    T, D, H, Hk, F, Bm, Hm = SIZES[size]
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) / math.sqrt(shape[-1])).astype(np.float32)

    dh = D // H
    blk = {"x": w(1, T, D), "norm1": 1 + 0.1 * w(D), "norm2": 1 + 0.1 * w(D), "wq": w(D, D), "wk": w(Hk * dh, D),
           "wv": w(Hk * dh, D), "wo": w(D, D), "w_gate": w(F, D), "w_up": w(F, D), "w_down": w(D, F)}
    mlp_in = {"x": w(Bm, D), "w1": w(Hm, D), "b1": w(Hm), "w2": w(D, Hm), "b2": w(D)}
    return [(f"transformer block T={T} D={D} H={H}/{Hk}", blk,
             lambda ox, a: attention_block(ox, a["x"], a, heads=H, kv_heads=Hk)),
            (f"mlp B={Bm} D={D} H={Hm}", mlp_in, lambda ox, a: mlp(ox, a["x"], a))]


# --- configurations ------------------------------------------------------------------------------
@contextlib.contextmanager
def _env(**kv: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in kv}
    try:
        for k, v in kv.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _resident(ox: Any, fn: Callable, host: dict[str, Any]) -> dict[str, Any]:
    """Inputs moved to the device where the plan consumes them (twice: placement may follow)."""
    from .._graph import collect

    arrays = {k: ox.asarray(v) for k, v in host.items()}
    for _ in range(2):
        out = fn(ox, arrays)
        order, _, _ = collect([out._node])
        ex = ox.explain(out)
        by_leaf: dict[int, Counter] = {}
        for p in ex.plan.nodes:
            for a in p.args:
                q = ex.plan.nodes[a]
                if q.op is None and q.constant is None:
                    by_leaf.setdefault(q.leaf_pos, Counter())[p.device.name] += 1
        where = {id(order[pos]): c.most_common(1)[0][0] for pos, c in by_leaf.items()}
        moved = False
        for k, a in arrays.items():
            dev = where.get(id(a._node))
            if dev is not None and dev != a._node.device.name:
                arrays[k] = a.to_device(dev)
                moved = True
        if not moved:
            break
    return arrays


def _placement(ox: Any, fn: Callable, arrays: dict[str, Any]) -> tuple[dict[str, int], int, tuple]:
    """(nodes per backend, transfers, the plan's identity: each node's op and kernel)."""
    ex = ox.explain(fn(ox, arrays))
    return dict(Counter(ex.backends)), len(ex.transfers), tuple((p.op, p.kernel.id) for p in ex.nodes)


def _stepper(ox: Any, fn: Callable, arrays: dict[str, Any], ctx: Callable) -> Callable[[], None]:
    from .._plugins import manager

    syncs = [b.synchronize for b in manager().available_backends()]

    def step() -> None:
        with ctx():
            fn(ox, arrays).eval()
        for s in syncs:
            s()
    return step


@bench_group.command("plan")
@click.option("--size", type=click.Choice(sorted(SIZES)), default="medium", show_default=True,
              help="Workload size.")
@click.option("--repeat", default=21, show_default=True, help="Most timed rounds per workload.")
@click.option("--seconds", default=3.0, show_default=True, help="Time budget per configuration and workload.")
@click.option("--no-tune", is_flag=True, help="Use the profile as it is (default: first measure what the "
                                               "workloads need and the profile lacks).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/plan-<time>.json).")
def plan(size: str, repeat: int, seconds: float, no_tune: bool, out_path: str | None) -> None:
    """Autotuned plan vs each backend alone vs the untuned default, on a transformer block and an MLP.

    All configurations of a workload are timed in interleaved rounds (build + eval + sync per
    sample), so load changes on the machine hit them alike.
    """
    import oxcore as ox

    from .. import _profile, autotune
    from ..bench import Report

    report = Report("plan")
    file = _profile.path()
    prof = _profile.Profile(file) if file is not None else _profile.Profile()
    configs: list[tuple[str, Callable]] = [(f"{b} alone", lambda b=b: _env(OXCORE_BACKENDS=b)) for b in ox.backends()]
    configs.append(("untuned default", lambda: _profile.active(None)))
    configs.append(("autotuned", lambda: _profile.active(prof)))
    for name, host, fn in make_workloads(size):
        prepared: dict[str, tuple] = {}
        with ox.record() as trace:  # NOTE: every plan's nodes, decompositions included
            for label, ctx in configs[:-1]:
                with ctx():
                    arr = _resident(ox, fn, host)
                    fn(ox, arr).eval()
                    prepared[label] = (arr, _placement(ox, fn, arr))
        if not no_tune:
            r = autotune.tune(trace=trace.nodes, profile=prof, quick=True, transfers=not prof.data["transfers"])
            report.notes.append(f"{name}: autotune measured {r.measured} kernel timings this workload needed "
                                f"({r.cached} were in the profile) in {r.seconds:.1f}s")
        with configs[-1][1]():
            arr = _resident(ox, fn, host)
            prepared["autotuned"] = (arr, _placement(ox, fn, arr))
        labels = [label for label, _ in configs]
        steps = [_stepper(ox, fn, prepared[label][0], ctx) for label, ctx in configs]
        stats = dict(zip(labels, autotune.interleaved(steps, budget_s=seconds, max_rounds=repeat, min_rounds=5)))
        singles = [label for label in labels if label.endswith(" alone")]
        best = min(singles, key=lambda k: stats[k].median_us)
        for label in labels:
            counts, ntr, _ = prepared[label][1]
            where = ", ".join(f"{b}:{n}" for b, n in sorted(counts.items()))
            report.add(label, stats[label], group=name, baseline=label == best, placement=where, transfers=ntr)
        report.notes.append(f"{name}: placement " + "; ".join(
            f"{label} {', '.join(f'{b}:{n}' for b, n in sorted(prepared[label][1][0].items()))} "
            f"({prepared[label][1][1]} transfers)" for label in ("autotuned", "untuned default")))
        _verdict(report, name, stats, prepared, best)
    load = autotune.machine_load()
    if load is not None:
        report.notes.append(f"machine load while measuring: {load:.2f} per core"
                            + (" (busy: other work shares the cores)" if load > 0.75 else ""))
    report.print()
    click.echo(f"saved {report.save(out_path)}")


def _verdict(report: Any, name: str, stats: dict[str, Any], prepared: dict[str, tuple], best: str) -> None:
    """Notes: autotuned vs the best single backend (within noise) and vs the untuned default."""
    at, bs, un = stats["autotuned"], stats[best], stats["untuned default"]
    ratio = at.median_us / bs.median_us
    if prepared["autotuned"][1][2] == prepared[best][1][2]:
        # NOTE: the very same kernels in the same order: any difference in time is noise
        report.notes.append(f"{name}: autotuned / best single ({best}) = {ratio:.2f}x -> PASS "
                            "(the autotuned plan is the same plan, kernel for kernel)")
    else:
        report.notes.append(f"{name}: autotuned / best single ({best}) = {ratio:.2f}x "
                            f"-> {'PASS' if ratio <= 1 + NOISE else 'FAIL'} (within {NOISE:.0%})")
    # NOTE: before any autotune, a plan must not be slower than the best backend alone
    ru = un.median_us / bs.median_us
    report.notes.append(f"goal {name}: untuned default / best single ({best}) = {ru:.2f}x (goal <= "
                        f"{1 + NOISE:.2f}x: {'met' if ru <= 1 + NOISE else 'MISSED'})")
    if prepared["autotuned"][1][2] == prepared["untuned default"][1][2]:
        report.notes.append(f"{name}: the untuned default places every node as the autotuned plan does")
    else:
        report.notes.append(f"{name}: autotuned / untuned default = {at.median_us / un.median_us:.2f}x -> "
                            f"{'PASS' if at.median_us < un.median_us else 'FAIL'}")


# NOTE: what "as fast, within noise" allows; repeated runs of one configuration on this shared
# 2-core machine differ by about this much even when interleaved
NOISE = 0.10
