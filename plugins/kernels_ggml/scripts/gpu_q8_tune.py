"""Block shapes of cuda_gemv_q8 against cuda_gemv (v3), float32 x, one GPU run (tuning only).

For each type and x dtype, times v3 and cuda_gemv_q8 with several (warps, rows) on a SIZE x SIZE
weight, interleaved round by round (medians over rounds), and prints % of the device copy.

    python plugins/kernels_ggml/scripts/gpu_q8_tune.py --out $OUT/q8tune.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="q8tune.json")
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--types", default="Q4_0,Q4_1,Q5_0,Q5_1,Q8_0")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--shapes", default="4x4,8x4,4x2,8x2,4x8,2x4",
                   help="warps x rows of cuda_gemv_q8, a suffix uN for N units a pass (4x4u2)")
    p.add_argument("--rows-x", type=int, default=1, help="rows of x (M)")
    p.add_argument("--rounds", type=int, default=9)
    a = p.parse_args(argv)
    import mlx.core as mx
    from oxcore_kernels_ggml import _mlx_cuda, _mlx_cuda_q8
    from oxcore_kernels_ggml.testing import nmse, random_blocks

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from gpu_qmatmul import copy_bandwidth

    copy = copy_bandwidth()["GBps"]
    print(f"copy {copy:.0f} GB/s", flush=True)
    rng = np.random.default_rng(0)
    per = 20
    out = []
    for dt in a.dtypes.split(","):
        xs = [mx.random.normal((a.rows_x, a.size)).astype(getattr(mx, dt)) for _ in range(per)]
        mx.eval(xs)
        for t in a.types.split(","):
            raw = mx.array(random_blocks(t, (a.size, a.size), rng))
            mx.eval(raw)
            kern = {"v3": lambda x: _mlx_cuda.gemv(x, raw, ggml_type=t, shape=(a.size, a.size))}
            for sh in a.shapes.split(","):
                wr, _, u = sh.partition("u")
                w, r = (int(v) for v in wr.split("x"))
                kern[f"q8 {w}w{r}r{u and 'u' + u}"] = (lambda x, w=w, r=r, u=int(u or 1): _mlx_cuda_q8.gemv_q8(
                    x, raw, ggml_type=t, shape=(a.size, a.size), warps=w, rows=r, unroll=u))
            times: dict = {k: [] for k in kern}
            # NOTE: every variant's result against v3's (exact in float32) on the first x: a block
            # shape or unroll that computes something else shows here, not only in its time
            ref = np.array(kern["v3"](xs[0]).astype(mx.float32), np.float64)
            err = {name: nmse(ref, np.array(f(xs[0]).astype(mx.float32), np.float64)) for name, f in kern.items()}
            for f in kern.values():
                mx.eval([f(x) for x in xs])
            for _ in range(a.rounds):  # NOTE: interleaved: each round times every variant once
                for name, f in kern.items():
                    ys = [f(x) for x in xs]
                    mx.synchronize()
                    t0 = time.perf_counter()
                    mx.eval(ys)
                    mx.synchronize()
                    times[name].append((time.perf_counter() - t0) / per)
            for name, ts in times.items():
                s = statistics.median(ts)
                gbps = raw.nbytes / s / 1e9
                out.append({"type": t, "dtype": dt, "kernel": name, "median_us": s * 1e6,
                            "spread_us": (max(ts) - min(ts)) * 1e6, "GBps": gbps, "of_copy": gbps / copy,
                            "nmse_vs_v3": err[name]})
                print(f"{t:5s} {dt:9s} {name:10s} {s * 1e6:8.1f} us {gbps:6.0f} GB/s {gbps / copy:5.0%} "
                      f"nmse {err[name]:.1e}", flush=True)
            del raw
            mx.clear_cache()
    with open(a.out, "w") as f:
        json.dump({"copy_GBps": copy, "rows": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
