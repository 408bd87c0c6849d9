"""``oxcore inspect``, ``oxcore convert`` and ``oxcore bench io``: model files from the shell."""

from __future__ import annotations

import json
from typing import Any

import click

from . import main

bench_group = main.commands["bench"]  # NOTE: the package attribute `bench` is the module cli/bench.py


def _jsonable(v: Any, full: bool) -> Any:
    """Metadata value -> JSON; long arrays summarized unless ``full``."""
    import numpy as np

    if isinstance(v, np.ndarray):
        v = v.tolist()
    elif not isinstance(v, (str, bytes, int, float, bool, type(None), dict)) and hasattr(v, "__len__"):
        v = list(v)
    if isinstance(v, list) and not full and len(v) > 16:
        return {"length": len(v), "type": type(v[0]).__name__, "head": [_jsonable(x, full) for x in v[:8]]}
    if isinstance(v, list):
        return [_jsonable(x, full) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def _short(v: Any, width: int = 70) -> str:
    if isinstance(v, dict) and "length" in v:
        head = ", ".join(map(repr, v["head"][:4]))
        return f"[{v['length']} x {v['type']}: {head}, ...]"
    s = repr(v) if not isinstance(v, str) else v
    return s if len(s) <= width else s[:width - 3] + "..."


def _tensor_row(f: Any, name: str) -> dict[str, Any]:
    i = f.info(name)
    # NOTE: "dtype or quant type": the quant/float8 type where it differs from what loads
    exact = not i.quantized and not i.type.startswith("F8")
    return {"name": name, "dtype": i.dtype.name if exact else i.type, "type": i.type, "loads_as": i.dtype.name,
            "shape": list(i.shape), "nbytes": i.nbytes, "offset": i.offset, "file": i.path}


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@main.command()
@click.argument("file", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (format, metadata, tensors).")
@click.option("--full", is_flag=True, help="Do not summarize long metadata arrays.")
@click.option("--format", "fmt", default=None, help="Force a format by name instead of sniffing.")
def inspect(file: str, as_json: bool, full: bool, fmt: str | None) -> None:
    """Show a model file's format, metadata and tensor table (reads the header only).

    FILE may be a file, a directory or a sharded checkpoint's *.index.json.
    """
    import oxcore as ox
    from .._mapping import GUARANTEE

    try:
        f = ox.load(file, format=fmt)
    except ox.FormatError as e:
        raise click.ClickException(str(e)) from None
    version = getattr(f.files[0], "version", None) if f.files else None
    meta = {k: _jsonable(v, full) for k, v in f.metadata.items()}
    rows = [_tensor_row(f, n) for n in f]
    if as_json:
        click.echo(json.dumps({"format": f.format, "version": version, "path": f.path,
                               "files": [lf.path for lf in f.files], "mapping": GUARANTEE, "metadata": meta,
                               "tensors": rows},
                              indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    total = sum(r["nbytes"] for r in rows)
    con.print(f"[bold]{f.path}[/]: {f.format}{f' v{version}' if version else ''}, {len(f.files)} file(s), "
              f"{len(rows)} tensors, {_human(total)} of tensor data, {len(meta)} metadata keys")
    con.print(f"[dim]{GUARANTEE}[/]")
    if meta:
        mt = Table(title="metadata", show_lines=False)
        mt.add_column("key")
        mt.add_column("value")
        for k, v in meta.items():
            mt.add_row(k, _short(v))
        con.print(mt)
    tt = Table(title="tensors")
    for c in ("name", "dtype", "shape", "bytes", "offset"):
        tt.add_column(c, justify="right" if c in ("bytes", "offset") else "left", overflow="fold")
    for r in rows:
        tt.add_row(r["name"], r["dtype"] if r["dtype"] == r["loads_as"] else f"{r['dtype']} -> {r['loads_as']}",
                   str(tuple(r["shape"])), f"{r['nbytes']:,}", f"{r['offset']:,}")
    con.print(tt)


def _to_safetensors_meta(meta: Any) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(_jsonable(v, True)) for k, v in meta.items()}


@main.command()
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path())
@click.option("--quantize", type=click.Choice(["q8_0", "q4_0"], case_sensitive=False), default=None,
              help="GGUF output: quantize float matrices (rows a multiple of 32); vectors stay exact.")
def convert(src: str, dst: str, quantize: str | None) -> None:
    """Convert SRC to DST between any two registered formats (SRC's read from its content, DST's
    from its suffix), one tensor at a time.

    Quantized GGUF tensors are dequantized (bit-exactly, as gguf-py does) when written to
    safetensors; float tensors are copied as they are (F32, F16 and BF16 round-trip exactly).
    What DST's format declares it cannot store (a dtype, a second tensor) is refused first.
    """
    import inspect as pyinspect

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    import oxcore as ox
    from .._io import format_for, refuse_unstorable
    from ..extend import atomic_write

    try:
        f = ox.load(src)
    except ox.FormatError as e:
        raise click.ClickException(str(e)) from None
    try:
        fmt = format_for(dst, reading=False)
    except ox.UnknownNameError as e:
        raise click.UsageError(str(e)) from None
    try:
        refuse_unstorable(fmt, f)
    except (TypeError, ValueError) as e:
        raise click.ClickException(f"cannot convert {src} to {fmt.name}: {e}") from None
    opts: dict[str, Any] = {}
    params = pyinspect.signature(fmt.save).parameters
    if quantize:
        if "quantize" not in params:
            raise click.UsageError(f"--quantize needs a format that quantizes (gguf), not {fmt.name}")
        opts["quantize"] = quantize.upper()
    meta = _to_safetensors_meta(f.metadata) if fmt.name == "safetensors" else f.metadata
    total = sum(f.info(n).nbytes for n in f)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[tensor]}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(f"{f.format} -> {fmt.name}", total=total, tensor="")
        sizes = {n: f.info(n).nbytes for n in f}
        if "progress" in params:
            opts["progress"] = lambda name, nbytes: bar.update(task, advance=sizes.get(name, 0), tensor=name)
        with atomic_write(dst) as tmp:
            fmt.save(tmp, f, meta, **opts)
        bar.update(task, completed=total, tensor="done")
    out = ox.load(dst)
    click.echo(f"wrote {dst}: {len(out)} tensors ({out.format})")


# --- oxcore bench io ---------------------------------------------------------------------------
def _synthetic(path: str, total_bytes: int, n_tensors: int) -> None:
    import numpy as np

    from ..formats.safetensors import save_safetensors

    per = max(4, total_bytes // n_tensors // 4)
    rows = max(1, per // 1024)
    block = np.arange(rows * 1024, dtype=np.float32).reshape(rows, 1024)  # NOTE: reused: no 2 GB in RAM
    save_safetensors(path, {f"layers.{i}.weight": block for i in range(n_tensors)}, {"synthetic": "1"})


def _drop_cache(path: str) -> bool:
    import os

    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


def _checksum(a: Any) -> int:
    import numpy as np

    b = np.asarray(a).reshape(-1).view(np.uint8)
    return int(np.bitwise_xor.reduce(b[: b.size // 8 * 8].view(np.uint64))) if b.size >= 8 else 0


@bench_group.command("io")
@click.option("--size-gb", default=2.0, show_default=True, help="Size of the synthetic safetensors file.")
@click.option("--tensors", "n_tensors", default=256, show_default=True, help="Tensors in the synthetic file.")
@click.option("--repeat", default=5, show_default=True, help="Timed samples per row (open: 20x more).")
@click.option("--tmp", "tmp_dir", default=None, help="Directory for the synthetic file (default: system temp).")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/io-<time>.json).")
def bench_io(size_gb: float, n_tensors: int, repeat: int, tmp_dir: str | None, out_path: str | None) -> None:
    """Open time and first-touch reads of a big safetensors file.

    Compared in the same run with the safetensors library (``safe_open``). The synthetic file
    goes to a temporary directory and is deleted afterwards. Format plugins add their own
    benchmarks (oxcore-io-gguf: ``oxcore bench gguf``).
    """
    import os
    import shutil
    import tempfile

    import oxcore as ox
    from ..bench import Report, measure

    rep = Report("io")
    size = int(size_gb * (1 << 30))
    d = tempfile.mkdtemp(prefix="oxcore-bench-io-", dir=tmp_dir)
    try:
        free = shutil.disk_usage(d).free
        if free < size * 1.2 + (1 << 30):
            raise click.ClickException(f"{d} has {_human(free)} free; the benchmark needs about "
                                       f"{_human(size * 1.2 + (1 << 30))} (use --size-gb or --tmp)")
        small, big = os.path.join(d, "small.safetensors"), os.path.join(d, "big.safetensors")
        click.echo(f"writing {_human(size)} synthetic safetensors ({n_tensors} tensors) in {d} ...")
        _synthetic(small, n_tensors * 4096, n_tensors)
        _synthetic(big, size, n_tensors)
        real = os.path.getsize(big)
        from safetensors import safe_open

        def st_open(p: str) -> None:
            with safe_open(p, "numpy") as h:
                h.keys()

        for label, p in ((f"open {_human(os.path.getsize(small))} file", small), (f"open {_human(real)} file", big)):
            rep.add("safetensors.safe_open", measure(lambda: st_open(p), repeat=repeat * 20), group=label,
                    baseline=True)
            rep.add("oxcore.load", measure(lambda: ox.load(p), repeat=repeat * 20), group=label)

        def read_ox() -> int:
            f = ox.load(big)
            return sum(_checksum(f[n].numpy()) for n in f)

        def read_st() -> int:
            with safe_open(big, "numpy") as h:
                return sum(_checksum(h.get_tensor(n)) for n in h.keys())

        readers = [("safetensors get_tensor", read_st, True), ("oxcore (mmap views)", read_ox, False)]
        want = read_ox()
        cold = _drop_cache(big)
        for mode in (["cold (page cache dropped)"] if cold else []) + ["warm (page cache)"]:
            g = f"read all {_human(real)}, {mode}"
            for name, fn, base in readers:
                def run(fn: Any = fn, mode: str = mode) -> None:
                    if mode.startswith("cold"):
                        _drop_cache(big)
                    assert fn() == want
                st = measure(run, warmup=0 if mode.startswith("cold") else 1, repeat=repeat)
                rep.add(name, st, group=g, baseline=base, gb_per_s=real / st.median_us / 1e3)
        for r in rep.rows:
            if "gb_per_s" in r:
                rep.notes.append(f"{r['group']}: {r['name']} {r['gb_per_s']:.2f} GB/s")
    finally:
        shutil.rmtree(d, ignore_errors=True)

    rep.print()
    click.echo(f"saved {rep.save(out_path)}")
