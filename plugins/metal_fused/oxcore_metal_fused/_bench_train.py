"""``oxcore bench train``: training steps per second of the digits MLP (``oxcore train
digits``) and of a 4-layer causal transformer LM, each an AdamW step (value_and_grad of the
cross-entropy, then the update): oxcore on each backend (lazy and ``ox.compile``) against
hand-written MLX (``mx.compile`` over ``mlx.optimizers.AdamW``) and JAX + optax
(``jax.jit``) on the CPU, in one run. JAX rows are skipped, saying so, without ``oxcore[bench]``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from ._bench import _backends, _finish, _on, _target, _time_group, cpu_jax, mlx_device_name

LR, WD = 1e-3, 1e-2


def _ln(xp: Any, x: Any, w: Any, b: Any) -> Any:
    mu = x.mean(axis=-1, keepdims=True)
    d = x - mu
    return d / xp.sqrt((d * d).mean(axis=-1, keepdims=True) + 1e-5) * w + b


def _rope(xp: Any, x: Any) -> Any:
    T, D = x.shape[-2], x.shape[-1]
    half = D // 2
    inv = xp.exp(xp.arange(half, dtype=xp.float32) * (-2.0 * 9.210340371976184 / D))  # log(10000)
    th = xp.arange(T, dtype=xp.float32)[:, None] * inv[None, :]
    c, s = xp.cos(th), xp.sin(th)
    x1, x2 = x[..., :half], x[..., half:]
    return xp.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)


def _lm_loss(xp: Any, fns: dict, P: dict, ids: Any, tgt: Any, heads: int, layers: int) -> Any:
    """The LM of ``train.causal_lm`` written against an array namespace (mlx.core or jax.numpy)."""
    h = P["embed.weight"][ids]
    B, T, D = h.shape
    mask = xp.where(xp.arange(T)[:, None] >= xp.arange(T)[None, :], 0.0, -1e9).astype(xp.float32)
    for i in range(layers):
        p = lambda n: P[f"layers.{i}.{n}"]  # noqa: E731
        y = _ln(xp, h, p("ln1.weight"), p("ln1.bias"))

        def split(t):
            return t.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3)
        q = _rope(xp, split(y @ p("attention.query_proj.weight").T))
        k = _rope(xp, split(y @ p("attention.key_proj.weight").T))
        v = split(y @ p("attention.value_proj.weight").T)
        s = q @ k.transpose(0, 1, 3, 2) * (D // heads) ** -0.5 + mask
        a = (fns["softmax"](s) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        h = h + a @ p("attention.out_proj.weight").T
        y = _ln(xp, h, p("ln2.weight"), p("ln2.bias"))
        y = xp.maximum(y @ p("mlp.linear1.weight").T + p("mlp.linear1.bias"), 0.0)
        h = h + y @ p("mlp.linear2.weight").T + p("mlp.linear2.bias")
    logits = _ln(xp, h, P["norm.weight"], P["norm.bias"]) @ P["head.weight"].T + P["head.bias"]
    picked = fns["take_along"](logits, tgt)
    return (fns["logsumexp"](logits) - picked).mean()


def _mlp_loss(xp: Any, fns: dict, P: dict, x: Any, y: Any) -> Any:
    h = x
    for i in (0, 2):
        h = fns["gelu"](h @ P[f"layers.{i}.weight"].T + P[f"layers.{i}.bias"])
    logits = h @ P["layers.4.weight"].T + P["layers.4.bias"]
    return (fns["logsumexp"](logits) - fns["take_along"](logits, y)).mean()


@click.command("train")
@click.option("--lm-dims", default=128, show_default=True, help="Transformer width.")
@click.option("--lm-layers", default=4, show_default=True)
@click.option("--lm-tokens", default=64, show_default=True, help="Sequence length.")
@click.option("--lm-batch", default=8, show_default=True)
@click.option("--backend", "backends", multiple=True, help="oxcore backends to time (default: all available).")
@click.option("--repeat", default=10, show_default=True, help="Timed samples per row.")
@click.option("--blas-threads", default=1, show_default=True, help="NumPy BLAS threads (0: library default).")
@click.option("--quick", is_flag=True, help="Small LM, 3 samples (a smoke run).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/train-<time>.json).")
def bench_train(lm_dims: int, lm_layers: int, lm_tokens: int, lm_batch: int, backends: tuple[str, ...], repeat: int,
                blas_threads: int, quick: bool, out_path: str | None) -> None:
    """Training steps of the digits MLP and a causal transformer LM (AdamW): oxcore per backend,
    lazy and ox.compile, against mx.compile + mlx.optimizers and jax.jit + optax."""
    limit = contextlib.nullcontext()
    if blas_threads > 0:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(blas_threads, user_api="blas")
    with limit:
        _run(lm_dims, lm_layers, lm_tokens, lm_batch, backends, repeat, quick, out_path)


def _run(lm_dims: int, lm_layers: int, lm_tokens: int, lm_batch: int, backends: tuple[str, ...], repeat: int,
         quick: bool, out_path: str | None) -> None:
    import mlx.core as mx
    import mlx.optimizers as mopt
    import numpy as np

    import oxcore as ox
    from oxcore import optim
    from oxcore.bench import Report

    from oxcore.cli.train import causal_lm, digits_mlp, make_step

    if quick:
        lm_dims, lm_layers, lm_tokens, lm_batch, repeat = 64, 2, 16, 2, min(repeat, 3)
    heads, vocab = 4, 96
    rng = np.random.default_rng(0)
    rep = Report("train")
    mx_dev = mlx_device_name()
    jax = cpu_jax(rep)
    if jax is not None:
        try:
            import optax
        except ImportError as e:
            jax = None
            rep.notes.append(f"jax rows skipped: {e} (pip install 'oxcore[bench]')")
    if jax is not None:
        jnp = jax.numpy
        jfns = {"softmax": jax.nn.softmax, "gelu": lambda t: jax.nn.gelu(t, approximate=False),
                "logsumexp": lambda t: jax.nn.logsumexp(t, axis=-1),
                "take_along": lambda t, i: jnp.take_along_axis(t, i[..., None], axis=-1)[..., 0]}
    mfns = {"softmax": lambda t: mx.softmax(t, axis=-1), "gelu": lambda t: t * 0.5 * (1 + mx.erf(t / 2 ** 0.5)),
            "logsumexp": lambda t: mx.logsumexp(t, axis=-1),
            "take_along": lambda t, i: mx.take_along_axis(t, i[..., None], axis=-1)[..., 0]}
    ox.random.seed(0)
    workloads = {
        "digits MLP 64-256-256-10 batch=64": (digits_mlp(256), lambda P, x, y, xp, f: _mlp_loss(xp, f, P, x, y),
                                              rng.random((64, 64)).astype(np.float32),
                                              rng.integers(0, 10, 64).astype(np.int32)),
        f"causal LM {lm_layers} layers dim={lm_dims} batch={lm_batch}x{lm_tokens}": (
            causal_lm(vocab, lm_dims, heads, lm_layers),
            lambda P, x, y, xp, f: _lm_loss(xp, f, P, x, y, heads, lm_layers),
            rng.integers(0, vocab, (lm_batch, lm_tokens)).astype(np.int32),
            rng.integers(0, vocab, (lm_batch, lm_tokens)).astype(np.int32)),
    }
    for group, (model, ref_loss, x, y) in workloads.items():
        P = {k: v.numpy() for k, v in model.named_parameters()}
        calls: dict[str, Any] = {}
        losses: dict[str, float] = {}
        # --- MLX, hand-written: value_and_grad + mlx.optimizers.AdamW under mx.compile
        mopt_adamw = mopt.AdamW(LR, weight_decay=WD, bias_correction=True)
        mp = {k: ox.asarray(v).to_device(mx_dev)._node.buf for k, v in P.items()}
        mopt_adamw.init(mp)
        mxx, mxy = mx.array(x), mx.array(y)

        def mx_step(p, x, y):
            loss, g = mx.value_and_grad(lambda p: ref_loss(p, x, y, mx, mfns))(p)
            return loss, mopt_adamw.apply_gradients(g, p)
        mx_comp = mx.compile(mx_step, inputs=mopt_adamw.state, outputs=mopt_adamw.state)
        losses["mlx"] = float(mx_comp(mp, mxx, mxy)[0].item())
        calls["mlx mx.compile(value_and_grad + AdamW)"] = lambda: mx.eval(mx_comp(mp, mxx, mxy))
        calls["mlx eager"] = lambda: mx.eval(mx_step(mp, mxx, mxy))
        # --- JAX + optax under jax.jit
        if jax is not None:
            jp = {k: jnp.asarray(v) for k, v in P.items()}
            tx = optax.adamw(LR, weight_decay=WD)
            jstate = tx.init(jp)
            jx, jy = jnp.asarray(x), jnp.asarray(y)

            @jax.jit
            def jax_step(p, s, x, y):
                loss, g = jax.value_and_grad(lambda p: ref_loss(p, x, y, jnp, jfns))(p)
                upd, s = tx.update(g, s, p)
                return loss, optax.apply_updates(p, upd), s
            losses["jax"] = float(jax_step(jp, jstate, jx, jy)[0])
            calls["jax jax.jit(value_and_grad + optax.adamw)"] = \
                lambda: jax.block_until_ready(jax_step(jp, jstate, jx, jy))
        # --- oxcore: the same step the `train digits` command runs
        for b in _backends(backends):
            opt = optim.AdamW(LR, weight_decay=WD, bias_correction=True)
            with ox.use(b):
                params = {k: v for k, v in model.trainable_parameters().items()}
                params = ox.tree.tree_map(lambda a: _on(b, [a])[0], params)
                state = ox.tree.tree_map(lambda a: _on(b, [a])[0], opt.init(params))
                ox_x, ox_y = _on(b, [ox.asarray(x), ox.asarray(y)])
            lazy_step, comp_step = make_step(model, opt), make_step(model, opt, compiled=True)

            def run(step, b=b, params=params, state=state, ox_x=ox_x, ox_y=ox_y):
                with ox.use(b):
                    loss, p, s = step(params, state, ox_x, ox_y)
                ox.eval(loss, *ox.tree.tree_leaves(p), *ox.tree.tree_leaves(s))
                return loss
            calls[f"oxcore {b}"] = lambda run=run, st=lazy_step: run(st)
            calls[f"oxcore {b}, ox.compile"] = lambda run=run, st=comp_step: run(st)
            losses[b] = run(lazy_step).item()
        for name in list(calls):
            try:  # NOTE: a row that fails is reported, not timed; twice: a compiled row's 2nd call replays
                calls[name]()
                calls[name]()
            except Exception as e:
                del calls[name]
                rep.notes.append(f"{group}: row {name!r} FAILED: {type(e).__name__}: {str(e)[:160]}")
        _time_group(rep, group, calls, repeat, baseline="mlx mx.compile(value_and_grad + AdamW)")
        ref = losses["mlx"]
        worst = max(abs(v - ref) / abs(ref) for v in losses.values())
        rep.notes.append(f"{group}: loss " + ", ".join(f"{k}={v:.6g}" for k, v in losses.items())
                         + f" (max relative difference to mlx {worst:.1e})")
        if worst > 1e-4:  # NOTE: rows that compute different things are not comparable
            raise click.ClickException(f"{group}: the rows disagree on the loss: {losses}")
        for r in rep.rows:
            if r["group"] == group:
                r["steps_per_s"] = 1e6 / r["median_us"]
        # NOTE: the goals, as for `oxcore bench grad`
        for row, ref_row, goal in (("oxcore metal_fused, ox.compile", "mlx mx.compile(value_and_grad + AdamW)", 1.1),
                                   ("oxcore cpu_numpy, ox.compile", "jax jax.jit(value_and_grad + optax.adamw)", 1.3)):
            if row in calls and ref_row in calls:
                _target(rep, group, row, ref_row, goal)
            else:
                rep.notes.append(f"goal {group}: {row!r} within {goal:.2f}x of {ref_row!r}: not measured "
                                 f"({row if row not in calls else ref_row!r} has no timing): MISSED")
    rep.notes.append("each row: one AdamW training step (loss, gradients, update) with inputs on the row's device; "
                     "steps/s = 1e6 / median_us (in the JSON record)")
    _finish(rep, out_path)
