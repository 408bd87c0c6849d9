"""Gemma 3 decode step with the GEMVs' thread settings interleaved step by step in one process.

Variants: ``pool`` (the default: the decode GEMVs on kernels_ggml's helper threads,
``_numba_pool``), ``omp`` (no helpers: numba's OpenMP, matrices under ``PARALLEL_MIN_BYTES`` on
one thread, as before the helpers), ``one`` (everything on one thread). Medians of ``--steps``
steps each; on a shared machine, run it more than once.

    ./dev python plugins/models/scripts/gemma_thread_variants.py --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--prompt", default="The capital of France is")
    args = ap.parse_args()

    from oxcore_kernels_ggml import _cpu
    from oxcore_models._cli import _load

    m = _load(None, "gemma3", "cpu_numpy")
    ids = m.tokenize(args.prompt)
    m.logits(ids)  # NOTE: the helpers' state is set up by the first GEMV
    pool = _cpu._STATE.get("pool_threads", 1)
    parallel = _cpu.PARALLEL_MIN_BYTES
    variants = {"pool": (pool, parallel), "omp": (1, parallel), "one": (1, 1 << 62)}
    times: dict = {k: [] for k in variants}
    cache = m.new_cache(256)
    m._run(cache, ids)
    for i in range(args.steps):
        for name, (threads, min_bytes) in variants.items():
            _cpu._STATE["pool_threads"], _cpu.PARALLEL_MIN_BYTES = threads, min_bytes
            if cache.pos >= cache.length - 1:
                cache = m.new_cache(256)
                m._run(cache, ids)
            t = time.perf_counter()
            m._run(cache, [200 + i])
            times[name].append(time.perf_counter() - t)
    _cpu._STATE["pool_threads"], _cpu.PARALLEL_MIN_BYTES = pool, parallel
    print(f"decode step, medians of {args.steps} interleaved steps: "
          + ", ".join(f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in times.items())
          + ("" if pool > 1 else " (no helper threads here: pool = omp)"))


if __name__ == "__main__":
    main()
