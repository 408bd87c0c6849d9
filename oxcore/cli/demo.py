"""``oxcore demo``: build a small MLP and an attention block, show the plan, evaluate, time."""

from __future__ import annotations

import time

import click

from . import main


def mlp(ox, x, w1, b1, w2, b2):
    """A 2-layer MLP in PyTorch layout (weights are (out, in))."""
    return ox.linear(ox.gelu(ox.linear(x, w1, b1)), w2, b2)


def attention_block(ox, x, p, *, heads: int, kv_heads: int, offset: int = 0):
    """Pre-norm attention with RoPE and grouped-query heads, plus a SwiGLU MLP; residuals."""
    B, T, D = x.shape
    hd = D // heads
    h = ox.rms_norm(x, p["norm1"])
    q = ox.permute_dims(ox.reshape(ox.linear(h, p["wq"]), (B, T, heads, hd)), (0, 2, 1, 3))
    k = ox.permute_dims(ox.reshape(ox.linear(h, p["wk"]), (B, T, kv_heads, hd)), (0, 2, 1, 3))
    v = ox.permute_dims(ox.reshape(ox.linear(h, p["wv"]), (B, T, kv_heads, hd)), (0, 2, 1, 3))
    q, k = ox.rope(q, offset=offset), ox.rope(k, offset=offset)
    a = ox.scaled_dot_product_attention(q, k, v, causal=True)
    x = x + ox.linear(ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, D)), p["wo"])
    h = ox.rms_norm(x, p["norm2"])
    return x + ox.linear(ox.silu(ox.linear(h, p["w_gate"])) * ox.linear(h, p["w_up"]), p["w_down"])


def block_params(ox, dim: int, heads: int, kv_heads: int, hidden: int, seed: int = 0, dtype=None):
    dtype = dtype or ox.float32
    hd = dim // heads
    shapes = {"wq": (dim, dim), "wk": (kv_heads * hd, dim), "wv": (kv_heads * hd, dim), "wo": (dim, dim),
              "w_gate": (hidden, dim), "w_up": (hidden, dim), "w_down": (dim, hidden)}
    p = {n: (ox.random.normal(s, seed=seed + i, dtype=dtype) * (s[1] ** -0.5)).astype(dtype)
         for i, (n, s) in enumerate(shapes.items())}
    p["norm1"] = ox.ones((dim,), dtype=dtype)
    p["norm2"] = ox.ones((dim,), dtype=dtype)
    ox.eval(*p.values())
    return p


@main.command()
@click.option("--dim", default=256, show_default=True, help="Model width.")
@click.option("--seq", default=64, show_default=True, help="Sequence length of the attention block.")
@click.option("--backend", default=None, help="Pin to one backend (default: let the scheduler choose).")
@click.option("--runs", default=20, show_default=True, help="Timed runs after warm-up.")
def demo(dim: int, seq: int, backend: str | None, runs: int) -> None:
    """Build an MLP and a transformer block, show their plans, evaluate and time them."""
    import contextlib

    import numpy as np
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import oxcore as ox
    from oxcore.bench import measure

    con = Console()
    con.print(f"[bold]oxcore demo[/] · backends available: {escape(', '.join(ox.backends()))}")
    if not ox.profile.current():
        con.print("placement uses static cost priors (no autotune profile yet): `oxcore autotune --quick` "
                  "measures the kernels here and makes it measured")
    pin = ox.use(backend) if backend else contextlib.nullcontext()
    w1 = ox.random.normal((4 * dim, dim), seed=1) * dim ** -0.5
    w2 = ox.random.normal((dim, 4 * dim), seed=2) * (4 * dim) ** -0.5
    b1, b2 = ox.zeros((4 * dim,)), ox.zeros((dim,))
    params = block_params(ox, dim, heads=max(1, dim // 64), kv_heads=max(1, dim // 128), hidden=2 * dim)
    ox.eval(w1, w2)
    xs = ox.random.normal((8, dim), seed=3)
    xb = ox.random.normal((1, seq, dim), seed=4)
    ox.eval(xs, xb)

    def run_mlp():
        with pin:
            return mlp(ox, xs, w1, b1, w2, b2)

    def run_block():
        with pin:
            return attention_block(ox, xb, params, heads=max(1, dim // 64), kv_heads=max(1, dim // 128))

    for name, build in (("MLP (8 x %d)" % dim, run_mlp), ("attention block (1 x %d x %d)" % (seq, dim), run_block)):
        con.rule(name)
        y = build()
        t0 = time.perf_counter()
        plan = ox.explain(y)
        con.print(str(plan) if len(plan.ops) <= 40 else "\n".join(str(plan).splitlines()[:1] + [
            f"  ... {len(plan.ops)} ops on {', '.join(sorted(set(plan.backends)))} ..."]), markup=False)
        con.print(f"planned in {(time.perf_counter() - t0) * 1e3:.1f} ms")
        t0 = time.perf_counter()
        out = y.numpy()
        first = (time.perf_counter() - t0) * 1e3
        st = measure(lambda: build().eval(), warmup=2, repeat=runs)
        replay = ox.compile(build)  # NOTE: no arguments: the whole step is replayed as traced
        np.testing.assert_allclose(replay().numpy(), out, rtol=1e-4, atol=1e-5)
        sc = measure(replay, warmup=2, repeat=runs)
        t = Table(show_header=True)
        for c in ("output", "first eval (plan + run)", "cached plan: median", "p10-p90", "ox.compile: median"):
            t.add_column(c)
        t.add_row(f"{out.dtype}{list(out.shape)} mean={float(np.mean(out)):+.4f}", f"{first:.1f} ms",
                  f"{st.median_us / 1e3:.2f} ms", f"{st.p10_us / 1e3:.2f}-{st.p90_us / 1e3:.2f} ms",
                  f"{sc.median_us / 1e3:.2f} ms")
        con.print(t)
    from oxcore._plan import STATS

    con.print(f"plan cache: {STATS['hits']} hits, {STATS['misses']} misses")
