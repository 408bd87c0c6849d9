"""Tuning sweep of the CUDA GEMV kernels (``_mlx_cuda``): v3 (CUDA cores) against v4 (tensor cores)
block shapes, per type and x dtype, on one GPU; writes the fastest correct variant per (type, dtype)
as a plan for ``gpu_qmatmul.py --plan``.

    python gpu_gemv_sweep.py compile TYPE OUT.json   # phase 1 (one process per type, in parallel):
                                                     # NMSE of every variant on small shapes (and
                                                     # NVRTC compiles into MLX's disk cache)
    python gpu_gemv_sweep.py time OUTDIR             # phase 2: bandwidth of every variant that
                                                     # passed, the plan (OUTDIR/plan.json) and a table

Timing as ``gpu_qmatmul.py``: 16384x16384 weight, one row of x, median of 7 x 20 launches (20
different x), weight bytes per second as a share of the device copy (``a + 1``, 1 GiB float32).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import numpy as np

BOUND = {"float32": 1e-6, "float16": 1e-5, "bfloat16": 1e-4}
DTYPES = ("float16", "float32")
K_TYPES = ("Q4_K", "Q5_K", "Q6_K")


def variants(t: str) -> list[tuple]:
    shapes = ((1, 8), (2, 8)) if t in K_TYPES else ((1, 4), (2, 4), (1, 8))
    g = 8 if t in K_TYPES else 4
    v4 = [(4, 1, g)] if os.environ.get("SWEEP_LEAN") else [(4, 1, g), (8, 1, g), (4, 2, g)]
    return [("v3", None, None, None)] + [("v4",) + v for v in v4]


def phase_compile(t: str, path: str) -> None:
    import mlx.core as mx
    from oxcore_kernels_ggml import _mlx_cuda as C
    from oxcore_kernels_ggml.testing import random_blocks, reference_matmul, nmse

    rng = np.random.default_rng(hash(t) & 0xFFFF)
    rows = []
    for dt in DTYPES + ("bfloat16",):
        vs = variants(t) if dt != "bfloat16" else [("v4", 4, 1, 8 if t in K_TYPES else 4), ("v3", None, None, None)]
        for v in vs:
            worst, err = 0.0, None
            t0 = time.perf_counter()
            shapes = [(333, 1024, 1), (17, 2816, 3), (40, 512, 8), (1, 256, 5)]
            if t not in K_TYPES:
                shapes.append((9, 288, 2))  # NOTE: an odd number of blocks a row: 1-unit groups, no A4
            for n, k, m in shapes:
                try:
                    raw = random_blocks(t, (n, k), rng)
                    x = mx.array(rng.standard_normal((m, k)).astype(np.float32)).astype(getattr(mx, dt))
                    got = np.array(C.gemv(x, mx.array(raw), ggml_type=t, shape=(n, k), variant=v).astype(mx.float32))
                    e = nmse(reference_matmul(np.array(x.astype(mx.float32)), raw, t, (n, k)), got)
                    worst = max(worst, e) if e == e else float("inf")
                except Exception as ex:  # NOTE: every failure reported, the sweep goes on
                    err = f"{type(ex).__name__}: {ex}"[:1500]
                    break
            ok = err is None and worst <= BOUND[dt]
            rows.append({"type": t, "dtype": dt, "variant": list(v), "nmse": worst, "error": err, "ok": ok,
                         "s": time.perf_counter() - t0})
            print(f"{t} {dt} {v}: nmse {worst:.3g} {'ok' if ok else 'FAIL'} {err or ''}", flush=True)
    json.dump(rows, open(path, "w"))


def _median_s(build, reps=7):
    import mlx.core as mx
    import statistics

    mx.eval(build())
    mx.synchronize()
    ts = []
    for _ in range(reps):
        ys = build()
        mx.synchronize()
        t0 = time.perf_counter()
        mx.eval(ys)
        mx.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), max(ts) - min(ts)


def phase_time(outdir: str) -> None:
    import mlx.core as mx
    from oxcore_kernels_ggml import _mlx_cuda as C
    from oxcore_kernels_ggml.testing import random_blocks

    checks = [r for f in sorted(glob.glob(os.path.join(outdir, "check-*.json"))) for r in json.load(open(f))]
    ok = {(r["type"], r["dtype"], tuple(r["variant"])) for r in checks if r["ok"]}
    print(f"{len(checks)} variant checks, {len(ok)} passed")
    for r in checks:
        if not r["ok"]:
            print("  FAIL", r["type"], r["dtype"], r["variant"], r["nmse"], (r["error"] or "")[:300])
    a = mx.zeros((1 << 28,), dtype=mx.float32)
    mx.eval(a)
    s, _ = _median_s(lambda: a + 1, 10)
    copy = 2 * a.nbytes / s / 1e9
    del a
    print(f"device copy {copy:.0f} GB/s  ({mx.device_info().get('device_name', '')})", flush=True)
    size, per = 16384, 20
    rng = np.random.default_rng(1)
    xs = {dt: [mx.random.normal((1, size)).astype(getattr(mx, dt)) for _ in range(per)] for dt in DTYPES}
    mx.eval(xs)
    rows, plan = [], {}
    for t in C.TYPES:
        raw = mx.array(random_blocks(t, (size, size), rng))
        mx.eval(raw)
        for dt in DTYPES:
            best = None
            for v in variants(t):
                if (t, dt, tuple(v)) not in ok:
                    continue
                try:
                    s, sp = _median_s(lambda: [C.gemv(x, raw, ggml_type=t, shape=(size, size), variant=v) for x in xs[dt]])
                except Exception as ex:
                    print(f"  {t} {dt} {v}: {type(ex).__name__}: {str(ex)[:200]}", flush=True)
                    continue
                s /= per
                frac = raw.nbytes / s / 1e9 / copy
                rows.append({"type": t, "dtype": dt, "variant": list(v), "us": s * 1e6, "spread_us": sp / per * 1e6,
                             "of_copy": frac})
                print(f"  {t:5s} {dt:8s} {str(v):24s} {s * 1e6:7.1f} us +-{sp / per * 1e6:5.1f} {frac:5.0%}", flush=True)
                if best is None or s < best[0]:
                    best = (s, v)
            if best is not None:
                plan[f"{t}/{dt}"] = list(best[1])
        del raw
        mx.clear_cache()
    # NOTE: bfloat16 x is not timed: it takes the float32 plan's v4 shape (the same bfloat16 loop)
    # when that is v4 and its check passed, else v3
    for t in C.TYPES:
        v = plan.get(f"{t}/float32")
        if v and v[0] == "v4" and (t, "bfloat16", ("v4", 4, 1, 8 if t in K_TYPES else 4)) in ok:
            plan[f"{t}/bfloat16"] = list(v)
        else:
            plan[f"{t}/bfloat16"] = ["v3", None, None, None]
    json.dump({"copy_GBps": copy, "rows": rows}, open(os.path.join(outdir, "sweep.json"), "w"), indent=1)
    json.dump(plan, open(os.path.join(outdir, "plan.json"), "w"), indent=1)
    print("\nbest per (type, x dtype), % of copy:")
    for t in C.TYPES:
        cells = []
        for dt in DTYPES:
            rs = [r for r in rows if r["type"] == t and r["dtype"] == dt]
            v3 = [r["of_copy"] for r in rs if r["variant"][0] == "v3"]
            b = max(rs, key=lambda r: r["of_copy"]) if rs else None
            cells.append(f"{dt}: v3 {v3[0] if v3 else float('nan'):4.0%} best {b['of_copy'] if b else float('nan'):4.0%} "
                         f"{b['variant'] if b else '-'}")
        print(f"{t:5s} " + " | ".join(cells))


def phase_plan(outdir: str) -> None:
    """No timing: v4 (4 warps, 1 tile) wherever its check passed for the dtype, else v3."""
    checks = [r for f in sorted(glob.glob(os.path.join(outdir, "check-*.json"))) for r in json.load(open(f))]
    ok = {(r["type"], r["dtype"], tuple(r["variant"])) for r in checks if r["ok"]}
    for r in checks:
        if not r["ok"]:
            print("  FAIL", r["type"], r["dtype"], r["variant"], r["nmse"], (r["error"] or "")[:300])
    plan = {}
    for t in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"):
        v = ("v4", 4, 1, 8 if t in K_TYPES else 4)
        for dt in DTYPES + ("bfloat16",):
            plan[f"{t}/{dt}"] = list(v) if (t, dt, v) in ok else ["v3", None, None, None]
    json.dump(plan, open(os.path.join(outdir, "plan.json"), "w"), indent=1)
    print("plan:", plan)


if __name__ == "__main__":
    if sys.argv[1] == "compile":
        phase_compile(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "plan":
        phase_plan(sys.argv[2])
    else:
        phase_time(sys.argv[2])
