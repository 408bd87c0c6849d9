"""``oxcore bench qmatmul``: ``x @ W.T`` on ggml blocks, per type x shape x kernel, against the
machine's memory bandwidth (a NumPy copy) as the roofline.

Rows per (type, rows of x): the numba kernel called directly (and, for GEMVs on a VNNI CPU,
its float32-activation variant, ``OXCORE_GGML_INT8=0``; where the blocked prefill GEMM runs,
the row-at-a-time int8 GEMM it replaced), the same through oxcore
(pinned to cpu_numpy: build, cached plan, run), dequantize + matmul in NumPy (what the op's
decomposition does on cpu_numpy), and every other backend's registered ``ggml_matmul`` kernel
(e.g. MLX's) through oxcore. GB/s counts the quantized weight bytes read once; a GEMV is
memory-bound, so its ceiling is the copy bandwidth.
"""

from __future__ import annotations

from typing import Any

import click

from .testing import TYPES


def _copy_bandwidth(np: Any, nbytes: int, repeat: int) -> tuple[Any, float]:
    """Stats of a NumPy copy of ``nbytes`` and its bandwidth (bytes read + written per second)."""
    from oxcore.autotune import interleaved

    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    (st,) = interleaved([lambda: np.copyto(dst, src)], min_rounds=repeat, max_rounds=repeat)
    return st, 2 * nbytes / (st.median_us * 1e-6)


def _other_kernels() -> list[tuple[str, str]]:
    """(backend, its ggml_matmul kernel names) of every available backend but cpu_numpy that has
    some. NOTE: one row per backend: pinned to it, the planner picks among its kernels."""
    from oxcore.extend import manager

    out = []
    for b in manager().available_backends():
        names = [k.name for k in b.kernels_for("ggml_matmul")]
        if b.name != "cpu_numpy" and names:
            out.append((b.name, ", ".join(names)))
    return out


@click.command("qmatmul")
@click.option("--type", "types", multiple=True, type=click.Choice(TYPES),
              help="ggml types (repeatable; default: all eight).")
@click.option("--n", "n", default=4096, show_default=True, help="Output features N (rows of W).")
@click.option("--k", "k", default=4096, show_default=True, help="Input features K (a multiple of each type's block: 32, or 256 for the K-types).")
@click.option("--rows", default="1,128", show_default=True, help="Rows of x, comma-separated (1: decode GEMV).")
@click.option("--repeat", default=10, show_default=True, help="Timed samples per row.")
@click.option("--quick", is_flag=True, help="K=N=1024, Q4_0/Q4_K/Q8_0, 3 samples (a smoke run).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/qmatmul-<time>.json).")
def bench_qmatmul(types: tuple[str, ...], n: int, k: int, rows: str, repeat: int, quick: bool,
                  out_path: str | None) -> None:
    """Quantized matmul per ggml type x shape x kernel: median, spread, GB/s, GFLOP/s, roofline.

    \b
    oxcore bench qmatmul                       # 8 types, 1x4096 and 128x4096 against 4096x4096
    oxcore bench qmatmul --type Q4_K --n 262144 --k 640 --rows 1
    """
    import numpy as np

    import oxcore as ox
    from oxcore.autotune import interleaved
    from oxcore.bench import Report
    from oxcore_io_gguf.quants import dequantize

    from . import _cpu
    from .testing import random_blocks

    if quick:
        types, n, k, repeat = types or ("Q4_0", "Q4_K", "Q8_0"), 1024, 1024, min(repeat, 3)
    from oxcore_io_gguf._types import ggml_type

    for t in types or TYPES:
        # NOTE: per type: Gemma's 262144 x 640 output projection is Q8_0 (blocks of 32)
        if k % ggml_type(t).block_size:
            raise click.BadParameter(f"K must be a multiple of {t}'s block size {ggml_type(t).block_size}, got {k}",
                                     param_hint="--k")
    ms = [int(r) for r in rows.split(",") if r.strip()]
    rep = Report("qmatmul")
    rng = np.random.default_rng(0)
    _, peak = _copy_bandwidth(np, 256 << 20, max(3, repeat // 2))
    rep.notes.append(f"roofline: NumPy copy of 256 MiB = {peak / 1e9:.1f} GB/s (bytes read + written); "
                     f"numba threads: {_cpu.threads()}")
    others = _other_kernels()
    for t in types or TYPES:
        raw = random_blocks(t, (n, k), rng)
        for m in ms:
            x = rng.standard_normal((m, k)).astype(np.float32)
            group = f"{t} {m}x{k} @ {n}x{k}"
            calls = {"numba kernel": lambda: _cpu.ggml_matmul(x, raw, ggml_type=t, shape=(n, k)),
                     "numpy dequantize + matmul": lambda: x @ dequantize(raw, t, (n, k)).T}
            if _cpu.int8_gemv() and m <= _cpu.GEMV_MAX_ROWS:
                calls["numba kernel, float32 x (OXCORE_GGML_INT8=0)"] = lambda: _float32_path(
                    lambda: _cpu.ggml_matmul(x, raw, ggml_type=t, shape=(n, k)))
            if _cpu._blocked_gemm(m, raw.nbytes) and m <= _cpu.INT8_MAX_ROWS:
                calls["numba kernel, row-at-a-time int8 GEMM (gemm_q8)"] = lambda: _row_gemm(
                    lambda: _cpu.ggml_matmul(x, raw, ggml_type=t, shape=(n, k)))

            def through(backend: str) -> Any:
                dev = ox.extend.manager().backend(backend).device.name
                xa, ra = ox.asarray(x).to_device(dev), ox.asarray(raw).to_device(dev)

                def run() -> Any:
                    with ox.use(backend):
                        return ox.build("ggml_matmul", xa, ra, ggml_type=t, shape=(n, k)).eval()
                return run
            calls["oxcore cpu_numpy"] = through("cpu_numpy")
            for b, kernels in others:
                calls[f"oxcore {b} ({kernels})"] = through(b)
            names = list(calls)
            for name, st in zip(names, interleaved([calls[c] for c in names], min_rounds=repeat, max_rounds=repeat)):
                s = st.median_us * 1e-6
                gbs, gflops = raw.nbytes / s / 1e9, 2.0 * m * n * k / s / 1e9
                rep.add(name, st, group=group, baseline=name == "numpy dequantize + matmul", weight_gb_s=gbs,
                        gflop_s=gflops, roofline_pct=100 * raw.nbytes / s / peak)
    rep.notes.append("baseline: NumPy dequantize (io_gguf's vectorized dequantizer) + matmul, what the op's "
                     "decomposition runs on cpu_numpy; 'oxcore' rows include building and the cached plan")
    rep.print()
    _print_rates(rep)
    click.echo(f"saved {rep.save(out_path)}")


def _float32_path(run: Any) -> Any:
    """``run()`` with the int8 (VNNI) GEMV switched off: the float32-lane kernel it replaced."""
    import os

    old = os.environ.get("OXCORE_GGML_INT8")
    os.environ["OXCORE_GGML_INT8"] = "0"
    try:
        return run()
    finally:
        if old is None:
            del os.environ["OXCORE_GGML_INT8"]
        else:
            os.environ["OXCORE_GGML_INT8"] = old


def _row_gemm(run: Any) -> Any:
    """``run()`` with the blocked GEMM (``_numba_gemm``) off: the row-at-a-time ``gemm_q8`` it
    replaced from ``GEMM_MIN_ROWS`` rows."""
    from . import _cpu

    old = _cpu.GEMM_MIN_ROWS
    _cpu.GEMM_MIN_ROWS = 1 << 62
    try:
        return run()
    finally:
        _cpu.GEMM_MIN_ROWS = old


def _print_rates(rep: Any) -> None:
    """The rates of each row: weight GB/s, GFLOP/s and the share of the copy bandwidth."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="weights read per second (GEMV: memory-bound) and arithmetic rate")
    for col in ("group", "what", "GB/s", "% of copy bandwidth", "GFLOP/s"):
        t.add_column(col, justify="left" if col in ("group", "what") else "right")
    for r in rep.rows:
        t.add_row(r["group"], r["name"], f"{r['weight_gb_s']:.2f}", f"{r['roofline_pct']:.0f}%", f"{r['gflop_s']:.1f}")
    Console().print(t)
