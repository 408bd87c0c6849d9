"""Where a Gemma 3 decode step spends its time: per op kernel, and the quantized GEMVs against the rest.

Every kernel of the backend is wrapped with a timer before the model is planned, so the table
is per op of the compiled step (``ggml_matmul`` includes its Python wrapper); the split times
the numba GEMV calls alone, so "rest" is everything else of ``Gemma3._run`` (norms, RoPE,
attention, KV update, the GEMV wrappers, the plan's replay, the sampler's input). Medians over
``--steps`` steps after a warm-up; on a shared machine, compare variants in one process.

    ./dev python plugins/models/scripts/gemma_step_profile.py --steps 40
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import types
from collections import defaultdict


def _wrap_kernels(backend: str, acc: dict, calls: dict) -> None:
    from oxcore.extend import manager

    b = manager().backend(backend)
    for op, ks in b.kernels.items():
        wrapped = []
        for k in ks:
            def timed(*a, _fn=k.fn, _op=op, **kw):
                t = time.perf_counter()
                try:
                    return _fn(*a, **kw)
                finally:
                    acc[_op] += time.perf_counter() - t
                    calls[_op] += 1
            wrapped.append(dataclasses.replace(k, fn=timed))
        b.kernels[op] = wrapped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cpu_numpy")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cache", type=int, default=256, help="KV cache length (generate's for a short prompt)")
    ap.add_argument("--prompt", default="The capital of France is")
    args = ap.parse_args()

    acc: dict = defaultdict(float)
    calls: dict = defaultdict(int)
    _wrap_kernels(args.backend, acc, calls)
    from oxcore_kernels_ggml import _cpu
    from oxcore_models._cli import _load

    m = _load(None, "gemma3", args.backend)
    ids = m.tokenize(args.prompt)
    mod, _ = _cpu._compiled()
    gemv_s = [0.0]

    def timed(fn):
        def run(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                gemv_s[0] += time.perf_counter() - t
        return run
    # NOTE: every numba driver of the module (float32 GEMV, int8 GEMV/GEMM), timed; the rest as is
    proxy = types.SimpleNamespace(**{n: timed(f) if n.startswith(("gemv", "gemm")) and callable(f) else f
                                     for n, f in vars(mod).items()})
    _cpu._STATE["mod"] = proxy
    # NOTE: the decode GEMVs on helper threads (_numba_pool), timed the same way
    from oxcore_kernels_ggml import _numba_pool

    if "pool_threads" not in _cpu._STATE:
        use = os.environ.get("OXCORE_GEMV_POOL", "").strip() != "0" and _numba_pool.available()
        _cpu._STATE["pool_threads"] = _cpu.threads() if use else 1
    _cpu._STATE["pool"] = types.SimpleNamespace(gemv=timed(_numba_pool.gemv))

    cache = m.new_cache(args.cache)
    m._run(cache, ids)
    for i in range(3):
        m._run(cache, [100 + i])
    acc.clear()
    calls.clear()
    whole, gemvs = [], []
    for i in range(args.steps):
        gemv_s[0] = 0.0
        t = time.perf_counter()
        m._run(cache, [200 + i])
        whole.append(time.perf_counter() - t)
        gemvs.append(gemv_s[0])
    rest = [w - g for w, g in zip(whole, gemvs)]
    n = args.steps
    print(f"decode step at position {cache.pos - n}..{cache.pos} of {args.cache}: median {statistics.median(whole) * 1e3:.1f} ms"
          f" = GEMV {statistics.median(gemvs) * 1e3:.1f} ms + rest {statistics.median(rest) * 1e3:.1f} ms")
    print(f"{'op':30s} {'ms/step':>8s} {'calls':>6s} {'us/call':>8s}")
    for op, s in sorted(acc.items(), key=lambda x: -x[1]):
        print(f"{op:30s} {s / n * 1e3:8.2f} {calls[op] // n:6d} {s / calls[op] * 1e6:8.1f}")


if __name__ == "__main__":
    main()
