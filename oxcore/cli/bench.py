"""``oxcore bench overhead``: oxcore-on-NumPy against plain NumPy, in one run."""

from __future__ import annotations

import click

from . import main

bench_group = main.commands["bench"]


def _mlp_numpy(np, x, w1, b1, w2, b2):
    h = np.maximum(x @ w1.T + b1, 0)
    return h @ w2.T + b2


def _mlp_oxcore(ox, x, w1, b1, w2, b2):
    return ox.linear(ox.relu(ox.linear(x, w1, b1)), w2, b2)


@bench_group.command("overhead")
@click.option("--dim", default=512, show_default=True, help="MLP width (hidden = 4 x dim).")
@click.option("--repeat", default=30, show_default=True, help="Timed samples per row.")
@click.option("--backend", default="cpu_numpy", show_default=True, help="Backend oxcore is pinned to.")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/overhead-<time>.json).")
def overhead(dim: int, repeat: int, backend: str, out_path: str | None) -> None:
    """Per-op overhead with a warm plan cache, and a 2-layer MLP at batch 1 and 256."""
    import numpy as np

    import oxcore as ox
    from oxcore.bench import Report, measure

    rep = Report("overhead")
    rng = np.random.default_rng(0)
    small = rng.standard_normal(16).astype(np.float32)
    sa, sb = ox.asarray(small), ox.asarray(small[::-1].copy())

    with ox.use(backend):
        # per-op: build + eval of one node whose plan is cached
        rep.add("numpy np.add (16 floats)", measure(lambda: np.add(small, small), repeat=repeat, inner=200),
                group="one op", baseline=True)
        rep.add("oxcore (a + b).eval()", measure(lambda: (sa + sb).eval(), repeat=repeat, inner=50), group="one op")
        rep.add("numpy x * 0.999 + 1", measure(lambda: small * np.float32(0.999) + np.float32(1), repeat=repeat,
                                               inner=200), group="two ops + scalars", baseline=True)
        rep.add("oxcore (x * 0.999 + 1).eval()", measure(lambda: (sa * 0.999 + 1).eval(), repeat=repeat, inner=50),
                group="two ops + scalars")

        w1 = (rng.standard_normal((4 * dim, dim)) / np.sqrt(dim)).astype(np.float32)
        b1 = rng.standard_normal(4 * dim).astype(np.float32)
        w2 = (rng.standard_normal((dim, 4 * dim)) / np.sqrt(4 * dim)).astype(np.float32)
        b2 = rng.standard_normal(dim).astype(np.float32)
        W = [ox.asarray(a) for a in (w1, b1, w2, b2)]
        for batch in (1, 256):
            x = rng.standard_normal((batch, dim)).astype(np.float32)
            X = ox.asarray(x)
            ref = _mlp_numpy(np, x, w1, b1, w2, b2)
            got = _mlp_oxcore(ox, X, *W).numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)  # same answer before timing it
            g = f"MLP {dim}->{4 * dim}->{dim} batch {batch}"
            inner = 20 if batch == 1 else 1
            rep.add("numpy", measure(lambda: _mlp_numpy(np, x, w1, b1, w2, b2), repeat=repeat, inner=inner),
                    group=g, baseline=True)
            rep.add(f"oxcore on {backend}", measure(lambda: _mlp_oxcore(ox, X, *W).eval(), repeat=repeat,
                                                    inner=inner), group=g)
    one = [r for r in rep.rows if r["group"] == "one op"]
    rep.notes.append(f"per-op overhead (warm plan cache): {one[1]['median_us'] - one[0]['median_us']:.1f} us")
    rep.print()
    click.echo(f"saved {rep.save(out_path)}")
