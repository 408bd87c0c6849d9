"""``oxcore bench grad``: a training step (value_and_grad of a loss, then an SGD update) on an
MLP and on a transformer block, for oxcore on each backend (lazy and ``ox.compile``) against
hand-written MLX under ``mx.compile(mx.value_and_grad(...))`` and JAX under
``jax.jit(jax.value_and_grad(...))`` on the CPU, in one run.

JAX is optional (``pip install "oxcore[bench]"``); without it its rows are skipped and the
record says why.
"""

from __future__ import annotations

from typing import Any

import click

from ._bench import _backends, _finish, _mx_block, _np_block, _on, _ox_block, _target, _time_group, _weights, \
    cpu_jax, mlx_device_name


def _mlp_params(np: Any, rng: Any, dim: int, dt: Any) -> dict[str, Any]:
    h = 4 * dim

    def w(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(dt)
    return {"w1": w(h, dim), "b1": np.zeros(h, dt), "w2": w(dim, h), "b2": np.zeros(dim, dt)}


def _mlp_loss(m: Any, silu: Any, p: dict, x: Any, y: Any) -> Any:
    h = silu(x @ p["w1"].T + p["b1"])
    d = h @ p["w2"].T + p["b2"] - y
    return (d * d).mean()


def _sgd(tree_map: Any, p: dict, g: dict, lr: float = 1e-3) -> dict:
    return tree_map(lambda a, b: a - lr * b, p, g)


def _workloads(dim: int, batch: int, bdim: int, tokens: int, bbatch: int, heads: int, kv: int) -> dict[str, dict]:
    """name -> how to build each framework's loss: (mlp or block, shapes)."""
    return {f"mlp {dim}-{4 * dim}-{dim} batch={batch}": {"kind": "mlp", "x": (batch, dim), "y": (batch, dim)},
            f"block dim={bdim} heads={heads}/{kv} batch={bbatch}x{tokens}": {
                "kind": "block", "x": (bbatch, tokens, bdim), "y": (bbatch, tokens, bdim)}}


@click.command("grad")
@click.option("--dim", default=512, show_default=True, help="MLP width (hidden = 4 x dim).")
@click.option("--batch", default=256, show_default=True, help="MLP batch.")
@click.option("--block-dim", default=256, show_default=True, help="Transformer block width.")
@click.option("--tokens", default=64, show_default=True, help="Block sequence length.")
@click.option("--block-batch", default=4, show_default=True, help="Block batch.")
@click.option("--backend", "backends", multiple=True, help="oxcore backends to time (default: all available).")
@click.option("--repeat", default=10, show_default=True, help="Timed samples per row.")
@click.option("--quick", is_flag=True, help="Small sizes, 3 samples (a smoke run).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/grad-<time>.json).")
def bench_grad(dim: int, batch: int, block_dim: int, tokens: int, block_batch: int, backends: tuple[str, ...],
               repeat: int, quick: bool, out_path: str | None) -> None:
    """A training step (value_and_grad + SGD) on an MLP and a transformer block: oxcore on each
    backend, lazy and ox.compile, against mx.compile(mx.value_and_grad) and jax.jit(jax.value_and_grad)."""
    import mlx.core as mx
    import numpy as np

    import oxcore as ox
    from oxcore.bench import Report
    from oxcore.tree import tree_map

    if quick:
        dim, batch, block_dim, tokens, block_batch, repeat = 64, 32, 64, 16, 2, min(repeat, 3)
    heads, kv = 4, 2
    rng = np.random.default_rng(0)
    rep = Report("grad")
    mx_dev = mlx_device_name()
    jax = cpu_jax(rep)
    jnp = jax.numpy if jax is not None else None
    for group, spec in _workloads(dim, batch, block_dim, tokens, block_batch, heads, kv).items():
        x, y = (rng.standard_normal(spec[k]).astype(np.float32) for k in ("x", "y"))
        if spec["kind"] == "mlp":
            P = _mlp_params(np, rng, dim, np.float32)

            def ox_loss(p, x, y):
                return _mlp_loss(ox, ox.silu, p, x, y)

            def mx_loss(p, x, y):
                return _mlp_loss(mx, lambda t: t * mx.sigmoid(t), p, x, y)

            def jax_loss(p, x, y):
                return _mlp_loss(jnp, jax.nn.silu, p, x, y)
        else:
            P = _weights(np, rng, block_dim, heads, kv, 2 * block_dim, np.float32)

            def ox_loss(p, x, y):
                return ((_ox_block(ox, p, x, None, None, 0, heads, kv) - y) ** 2).mean()

            def mx_loss(p, x, y):
                return ((_mx_block(mx, p, x, None, None, 0, heads, kv) - y) ** 2).mean()

            def jax_loss(p, x, y):
                return ((_np_block(jnp, p, x, None, None, 0, heads, kv) - y) ** 2).mean()

        def ox_step(p, x, y):
            loss, g = ox.value_and_grad(ox_loss)(p, x, y)
            return loss, _sgd(tree_map, p, g)

        calls: dict[str, Any] = {}
        losses: dict[str, float] = {}
        mp = {k: ox.asarray(v).to_device(mx_dev)._node.buf for k, v in P.items()}
        mxx, mxy = (ox.asarray(a).to_device(mx_dev)._node.buf for a in (x, y))

        def mx_step(p, x, y):
            loss, g = mx.value_and_grad(mx_loss)(p, x, y)
            return loss, {k: p[k] - 1e-3 * g[k] for k in p}
        mx_comp = mx.compile(mx_step)
        calls["mlx mx.compile(value_and_grad)"] = lambda: mx.eval(mx_comp(mp, mxx, mxy))
        calls["mlx eager"] = lambda: mx.eval(mx_step(mp, mxx, mxy))
        losses["mlx"] = float(mx_comp(mp, mxx, mxy)[0].item())
        if jax is not None:
            jp = {k: jnp.asarray(v) for k, v in P.items()}
            jx, jy = jnp.asarray(x), jnp.asarray(y)

            @jax.jit
            def jax_step(p, x, y):
                loss, g = jax.value_and_grad(jax_loss)(p, x, y)
                return loss, jax.tree_util.tree_map(lambda a, b: a - 1e-3 * b, p, g)
            calls["jax jax.jit(value_and_grad)"] = lambda: jax.block_until_ready(jax_step(jp, jx, jy))
            losses["jax"] = float(jax_step(jp, jx, jy)[0])
        compiled = ox.compile(ox_step)
        for b in _backends(backends):
            dp = {k: _on(b, [ox.asarray(v)])[0] for k, v in P.items()}
            dx, dy = _on(b, [ox.asarray(x), ox.asarray(y)])

            def lazy(b=b, dp=dp, dx=dx, dy=dy):
                with ox.use(b):
                    loss, new = ox_step(dp, dx, dy)
                ox.eval(loss, *new.values())

            def replay(b=b, dp=dp, dx=dx, dy=dy):
                with ox.use(b):
                    loss, new = compiled(dp, dx, dy)
                ox.eval(loss, *new.values())
            calls[f"oxcore {b}"], calls[f"oxcore {b}, ox.compile"] = lazy, replay
            with ox.use(b):
                losses[b] = ox_step(dp, dx, dy)[0].item()
        _time_group(rep, group, calls, repeat, baseline="mlx mx.compile(value_and_grad)")
        ref = losses["mlx"]
        rep.notes.append(f"{group}: loss " + ", ".join(f"{k}={v:.6g}" for k, v in losses.items())
                         + f" (max relative difference to mlx {max(abs(v - ref) / abs(ref) for v in losses.values()):.1e})")
        # NOTE: the goals: fused + compile within 1.1x of compiled MLX; NumPy + compile
        # within 1.3x of jax.jit on the CPU at batch 256
        _target(rep, group, "oxcore metal_fused, ox.compile", "mlx mx.compile(value_and_grad)", 1.1)
        if spec["kind"] == "mlp":
            _target(rep, group, "oxcore cpu_numpy, ox.compile", "jax jax.jit(value_and_grad)", 1.3)
    rep.notes.append("each row: one training step (loss, gradients, SGD update) with inputs on the row's device")
    _finish(rep, out_path)
