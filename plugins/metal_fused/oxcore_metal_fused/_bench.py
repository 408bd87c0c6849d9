"""``oxcore bench ops`` and ``oxcore bench block``: the MLX backends against cpu_numpy and
against MLX and NumPy used directly, in one run.

Every oxcore row is a full call as a user makes it, with inputs already on the backend's
device: "oxcore B" builds the lazy graph, looks up the cached plan, runs and waits for the
result; "oxcore B, ox.compile" calls the same function wrapped in ``oxcore.compile`` (the plan
replayed without building the graph), the counterpart of ``mx.compile``.
"""

from __future__ import annotations

import math
from typing import Any

import click

OX_BACKENDS = ("metal_fused", "metal_basic", "cpu_numpy")


def _backends(wanted: tuple[str, ...]) -> list[str]:
    import oxcore as ox

    have = ox.backends()
    return [b for b in (wanted or OX_BACKENDS) if b in have]


def mlx_device_name() -> str:
    """The device MLX computes on here, as an oxcore device name."""
    import mlx.core as mx

    return "mlx:" + ("gpu" if mx.is_available(mx.gpu) else "cpu")


def cpu_jax(rep: Any) -> Any:
    """``jax`` set to the CPU for comparison rows, or None (said in the record) when missing."""
    try:
        import jax
    except ImportError as e:
        rep.notes.append(f"jax rows skipped: {e} (pip install 'oxcore[bench]')")
        return None
    jax.config.update("jax_platforms", "cpu")
    return jax


def _on(backend: str, arrays: list[Any]) -> list[Any]:
    from oxcore.extend import manager

    dev = manager().backend(backend).device.name
    return [a.to_device(dev) for a in arrays]


def _backend_calls(b: str, fn: Any, args: list[Any]) -> dict[str, Any]:
    """Two timed calls for backend ``b``: the lazy call and the ``oxcore.compile``d call."""
    import oxcore as ox

    compiled = ox.compile(fn)

    def lazy() -> Any:
        with ox.use(b):
            y = fn(*args)
        return y.eval()

    def replay() -> Any:
        with ox.use(b):
            return compiled(*args)
    return {f"oxcore {b}": lazy, f"oxcore {b}, ox.compile": replay}


def _time_group(rep: Any, group: str, calls: dict[str, Any], repeat: int, baseline: str,
                meta: dict[str, dict] | None = None) -> None:
    """Time ``calls`` in interleaved rounds (load and clock drift hit every row alike; timing
    them one after the other made the same row differ by 1.4x between runs on a GPU host)."""
    from oxcore.autotune import interleaved
    from oxcore.extend import manager

    names = list(calls)
    warm = max([b.warmup_runs for b in manager().available_backends()] or [1])
    for name, st in zip(names, interleaved([calls[n] for n in names], min_rounds=repeat, max_rounds=repeat,
                                           warmup=warm)):
        rep.add(name, st, group=group, baseline=name == baseline, **(meta or {}).get(name, {}))


def _target(rep: Any, group: str, row: str, ref: str, goal: float) -> None:
    """Note how many times ``ref``'s median time ``row`` takes, against a goal (at most ``goal``x)."""
    med = {r["name"]: r["median_us"] for r in rep.rows if r["group"] == group}
    if row in med and ref in med:
        x = med[row] / med[ref]
        rep.notes.append(f"goal {group}: {row!r} takes {x:.2f}x the time of {ref!r} (goal <= {goal:.2f}x: "
                         f"{'met' if x <= goal else 'MISSED'})")


def _finish(rep: Any, out_path: str | None) -> None:
    rep.print()
    click.echo(f"saved {rep.save(out_path)}")


# --- ops -------------------------------------------------------------------------------------------
def _op_table(ox: Any, np: Any, mx: Any) -> dict[str, tuple]:
    """name -> (input shapes from n elements, oxcore fn, numpy fn, mlx fn)."""
    def rows(n):
        return (max(1, n // 256), 256)

    def chain(m, x, y):  # 8 elementwise ops: one kernel when fused
        return m.tanh(x * y + 0.5) * m.exp(-x * x) + y / 3 - x

    def np_rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w

    def np_softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def attn_shapes(n):
        t = max(8, min(2048, int(math.sqrt(n / 8))))
        return [(1, 8, t, 64), (1, 2, t, 64), (1, 2, t, 64)]

    def np_attn(q, k, v):
        k, v = np.repeat(k, 4, 1), np.repeat(v, 4, 1)
        return np_softmax(q @ k.transpose(0, 1, 3, 2) / 8.0) @ v

    return {
        "add": (lambda n: [rows(n)] * 2, lambda x, y: x + y, np.add, mx.add),
        "exp": (lambda n: [rows(n)], ox.exp, np.exp, mx.exp),
        "chain8": (lambda n: [rows(n)] * 2, lambda x, y: chain(ox, x, y), lambda x, y: chain(np, x, y),
                   lambda x, y: chain(mx, x, y)),
        "sum": (lambda n: [rows(n)], lambda x: ox.sum(x, axis=-1), lambda x: x.sum(-1), lambda x: mx.sum(x, -1)),
        "softmax": (lambda n: [rows(n)], lambda x: ox.softmax(x, axis=-1), np_softmax, lambda x: mx.softmax(x, -1)),
        "rms_norm": (lambda n: [rows(n), (256,)], ox.rms_norm, np_rms, lambda x, w: mx.fast.rms_norm(x, w, 1e-5)),
        "matmul": (lambda n: [(int(math.sqrt(n)),) * 2] * 2, lambda a, b: a @ b, np.matmul, mx.matmul),
        "attention": (attn_shapes, lambda q, k, v: ox.scaled_dot_product_attention(q, k, v, scale=0.125), np_attn,
                      lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125)),
    }


@click.command("ops")
@click.option("--op", "ops", multiple=True, help="Only these ops (repeatable): add exp chain8 sum softmax "
              "rms_norm matmul attention.")
@click.option("--backend", "backends", multiple=True, help="oxcore backends to time (default: all available of "
              + ", ".join(OX_BACKENDS) + ").")
@click.option("--sizes", default="4096,262144,4194304", show_default=True, help="Elements per input, comma-separated.")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--repeat", default=20, show_default=True, help="Timed samples per row.")
@click.option("--quick", is_flag=True, help="Small sizes and few samples (a smoke run).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/ops-<time>.json).")
def bench_ops(ops: tuple[str, ...], backends: tuple[str, ...], sizes: str, dtype: str, repeat: int, quick: bool,
              out_path: str | None) -> None:
    """Per op x backend x size: oxcore on each backend, NumPy, MLX eager and mx.compile'd."""
    import mlx.core as mx
    import numpy as np

    import oxcore as ox
    from oxcore.bench import Report

    if quick:
        sizes, repeat = "4096,65536", min(repeat, 5)
    table = _op_table(ox, np, mx)
    names = [o for o in (ops or table) if o in table]
    rep = Report("ops")
    rng = np.random.default_rng(0)
    dt = ox.dtype(dtype)
    for name in names:
        shapes_of, ox_fn, np_fn, mx_fn = table[name]
        for n in (int(s) for s in sizes.split(",")):
            host = [rng.uniform(0.1, 1.0, s).astype(dt.numpy) for s in shapes_of(n)]
            group = f"{name} n={n}"
            mx_in = [ox.asarray(h).to_device(mlx_device_name())._node.buf
                     for h in host]
            comp = mx.compile(mx_fn)
            calls = {"mlx eager": lambda: mx.eval(mx_fn(*mx_in)), "mlx mx.compile": lambda: mx.eval(comp(*mx_in))}
            if dt.name != "bfloat16":
                calls["numpy"] = lambda: np_fn(*host)
            for b in _backends(backends):
                calls.update(_backend_calls(b, ox_fn, _on(b, [ox.asarray(h) for h in host])))
            _time_group(rep, group, calls, repeat, baseline="mlx eager")
            if name == "chain8":  # NOTE: the goal: fused at least 2x basic on fusible chains
                for how in ("", ", ox.compile"):
                    _target(rep, group, f"oxcore metal_fused{how}", f"oxcore metal_basic{how}", 0.5)
    rep.notes.append("baseline: MLX called directly, eager; oxcore rows include graph building and planning "
                     "(cached), with inputs already on the backend's device; ', ox.compile' rows replay the plan")
    _finish(rep, out_path)


# --- transformer block -----------------------------------------------------------------------------
def _weights(np: Any, rng: Any, dim: int, heads: int, kv: int, ffn: int, dt: Any) -> dict[str, Any]:
    hd = dim // heads

    def w(o, i):
        return (rng.standard_normal((o, i)) / math.sqrt(i)).astype(dt)
    return {"n1": (1 + 0.1 * rng.standard_normal(dim)).astype(dt), "n2": (1 + 0.1 * rng.standard_normal(dim)).astype(dt),
            "wq": w(dim, dim), "wk": w(kv * hd, dim), "wv": w(kv * hd, dim), "wo": w(dim, dim),
            "w1": w(ffn, dim), "w3": w(ffn, dim), "w2": w(dim, ffn)}


def _ox_block(ox, W, x, kc, vc, off, heads, kv):
    B, T, D = x.shape
    hd = D // heads

    def split(t, n):
        return ox.permute_dims(ox.reshape(t, (B, T, n, hd)), (0, 2, 1, 3))
    h = ox.rms_norm(x, W["n1"])
    q, k, v = split(ox.linear(h, W["wq"]), heads), split(ox.linear(h, W["wk"]), kv), split(ox.linear(h, W["wv"]), kv)
    q, k = ox.rope(q, hd, offset=off), ox.rope(k, hd, offset=off)
    if kc is not None:
        k, v = ox.concat([kc, k], axis=2), ox.concat([vc, v], axis=2)
    a = ox.scaled_dot_product_attention(q, k, v, causal=True)
    x = x + ox.linear(ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, D)), W["wo"])
    h = ox.rms_norm(x, W["n2"])
    return x + ox.linear(ox.silu(ox.linear(h, W["w1"])) * ox.linear(h, W["w3"]), W["w2"])


def _mx_block(mx, W, x, kc, vc, off, heads, kv):
    B, T, D = x.shape
    hd = D // heads

    def split(t, n):
        return t.reshape(B, T, n, hd).transpose(0, 2, 1, 3)
    h = mx.fast.rms_norm(x, W["n1"], 1e-5)
    q, k, v = split(h @ W["wq"].T, heads), split(h @ W["wk"].T, kv), split(h @ W["wv"].T, kv)
    q = mx.fast.rope(q, hd, traditional=False, base=10000.0, scale=1.0, offset=off)
    k = mx.fast.rope(k, hd, traditional=False, base=10000.0, scale=1.0, offset=off)
    if kc is not None:
        k, v = mx.concatenate([kc, k], axis=2), mx.concatenate([vc, v], axis=2)
    a = mx.fast.scaled_dot_product_attention(q, k, v, scale=hd ** -0.5, mask="causal")
    x = x + a.transpose(0, 2, 1, 3).reshape(B, T, D) @ W["wo"].T
    h = mx.fast.rms_norm(x, W["n2"], 1e-5)
    g = h @ W["w1"].T
    return x + ((g * mx.sigmoid(g)) * (h @ W["w3"].T)) @ W["w2"].T


def _np_block(np, W, x, kc, vc, off, heads, kv):
    B, T, D = x.shape
    hd, half = D // heads, D // heads // 2

    def rms(t, w):
        return t / np.sqrt((t * t).mean(-1, keepdims=True) + np.float32(1e-5)) * w

    def split(t, n):
        return t.reshape(B, T, n, hd).transpose(0, 2, 1, 3)

    def rope(t):
        th = (np.arange(T) + off)[:, None] * (10000.0 ** (-2.0 * np.arange(half) / hd))[None, :]
        c, s = np.cos(th).astype(t.dtype), np.sin(th).astype(t.dtype)
        t1, t2 = t[..., :half], t[..., half:]
        return np.concatenate([t1 * c - t2 * s, t1 * s + t2 * c], -1)
    h = rms(x, W["n1"])
    q, k, v = rope(split(h @ W["wq"].T, heads)), rope(split(h @ W["wk"].T, kv)), split(h @ W["wv"].T, kv)
    if kc is not None:
        k, v = np.concatenate([kc, k], 2), np.concatenate([vc, v], 2)
    r = heads // kv
    s = (q.reshape(B, kv, r, T, hd) @ k[:, :, None].transpose(0, 1, 2, 4, 3)) * np.float32(hd ** -0.5)
    Tk = k.shape[2]
    s = np.where(np.arange(Tk - T, Tk)[:, None] >= np.arange(Tk)[None, :], s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    a = ((e / e.sum(-1, keepdims=True)) @ v[:, :, None]).reshape(B, heads, T, hd)
    x = x + a.transpose(0, 2, 1, 3).reshape(B, T, D) @ W["wo"].T
    h = rms(x, W["n2"])
    g = h @ W["w1"].T
    return x + ((g / (1 + np.exp(-g))) * (h @ W["w3"].T)) @ W["w2"].T


@click.command("block")
@click.option("--dim", default=1024, show_default=True, help="Model width.")
@click.option("--heads", default=16, show_default=True, help="Query heads.")
@click.option("--kv-heads", default=4, show_default=True, help="Key/value heads (GQA).")
@click.option("--ffn", default=0, help="MLP hidden width (default: 8/3 x dim rounded to 64).")
@click.option("--cache", default=512, show_default=True, help="Cached tokens at decode.")
@click.option("--prefill", default="8x512", show_default=True, help="Prefill batch x tokens.")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--backend", "backends", multiple=True, help="oxcore backends to time (default: all available).")
@click.option("--repeat", default=20, show_default=True)
@click.option("--quick", is_flag=True, help="dim 256, 4/2 heads, cache 128, prefill 2x64, 5 samples.")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/block-<time>.json).")
def bench_block(dim: int, heads: int, kv_heads: int, ffn: int, cache: int, prefill: str, dtype: str,
                backends: tuple[str, ...], repeat: int, quick: bool, out_path: str | None) -> None:
    """A transformer block (rms_norm, QKV, RoPE, GQA attention, out proj, residual, rms_norm,
    SwiGLU MLP, residual) at decode and prefill: oxcore on each backend vs hand-written MLX
    (eager and mx.compile) vs plain NumPy."""
    import mlx.core as mx
    import numpy as np

    import oxcore as ox
    from oxcore.bench import Report, measure

    if quick:
        dim, heads, kv_heads, cache, prefill, repeat = 256, 4, 2, 128, "2x64", min(repeat, 5)
    ffn = ffn or 64 * round(8 * dim / 3 / 64)
    pb, pt = (int(v) for v in prefill.split("x"))
    dt = ox.dtype(dtype)
    rng = np.random.default_rng(0)
    W = _weights(np, rng, dim, heads, kv_heads, ffn, dt.numpy)
    hd = dim // heads
    shapes = {f"decode b=1 t=1 cache={cache}": (1, 1, cache), f"prefill {pb}x{pt}": (pb, pt, 0)}
    mx_dev = mlx_device_name()
    rep = Report("block")
    rep.notes.append(f"dim={dim} heads={heads} kv_heads={kv_heads} ffn={ffn} dtype={dtype}; baseline: "
                     f"hand-written MLX under mx.compile")
    for group, (B, T, S) in shapes.items():
        x = rng.standard_normal((B, T, dim)).astype(dt.numpy)
        kc = rng.standard_normal((B, kv_heads, S, hd)).astype(dt.numpy) if S else None
        vc = rng.standard_normal((B, kv_heads, S, hd)).astype(dt.numpy) if S else None
        host = {"x": x, "kc": kc, "vc": vc, **W}
        to_mx = {k: (None if v is None else ox.asarray(v).to_device(mx_dev)._node.buf) for k, v in host.items()}
        off_mx = mx.array(S, dtype=mx.int32)

        def mx_call(f):
            return lambda: mx.eval(f(to_mx, to_mx["x"], to_mx["kc"], to_mx["vc"], off_mx))
        eager = lambda Wm, xx, k, v, o: _mx_block(mx, Wm, xx, k, v, o, heads, kv_heads)  # noqa: E731
        comp = mx.compile(eager)
        calls = {"mlx hand-written, mx.compile": mx_call(comp), "mlx hand-written, eager": mx_call(eager)}
        want = np.asarray(comp(to_mx, to_mx["x"], to_mx["kc"], to_mx["vc"], off_mx).astype(mx.float32))
        if dt.name != "bfloat16":
            rep.add("numpy hand-written", measure(lambda: _np_block(np, W, x, kc, vc, S, heads, kv_heads),
                                                  repeat=max(3, repeat // 4)), group=group)
        errs: dict[str, dict] = {}
        for b in _backends(backends):
            dev = {k: (None if v is None else _on(b, [ox.asarray(v)])[0]) for k, v in host.items()}
            off = _on(b, [ox.asarray(np.array(S, np.int32))])[0]

            def block(Wd, xx, k, v, o):
                return _ox_block(ox, Wd, xx, k, v, o, heads, kv_heads)
            with ox.use(b):
                y = block(dev, dev["x"], dev["kc"], dev["vc"], off)
            err = float(np.max(np.abs(np.asarray(y.numpy(), np.float32) - want)))
            more = _backend_calls(b, block, [dev, dev["x"], dev["kc"], dev["vc"], off])
            calls.update(more)
            errs.update({name: {"max_abs_diff": err} for name in more})
        _time_group(rep, group, calls, repeat, baseline="mlx hand-written, mx.compile", meta=errs)
        # NOTE: the goal: metal_fused within 1.1x of hand-written compiled MLX
        _target(rep, group, "oxcore metal_fused, ox.compile", "mlx hand-written, mx.compile", 1.1)
    _finish(rep, out_path)
