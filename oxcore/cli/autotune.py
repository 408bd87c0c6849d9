"""``oxcore autotune`` and ``oxcore profile show|path|clear`` (logic in ``oxcore.autotune``)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from . import main


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for s in values for v in s.split(",") if v.strip()]


@main.command()
@click.option("--ops", "ops", multiple=True,
              help="Ops to tune, comma-separated or repeated (default: every op with representative cases, "
                   "plugin ops such as ggml_matmul included).")
@click.option("--dtype", "dtypes", multiple=True, default=("float32",), show_default=True,
              help="Dtypes of the representative cases (repeatable).")
@click.option("--quick", is_flag=True, help="Fewer shape buckets, shorter timing (under 3 minutes).")
@click.option("--from-trace", "trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Measure the shapes of a workload recorded with `with oxcore.record(FILE):`.")
@click.option("--force", is_flag=True, help="Measure again what the profile already has.")
@click.option("--no-transfers", is_flag=True, help="Skip measuring transfers between devices.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def autotune(ops: tuple[str, ...], dtypes: tuple[str, ...], quick: bool, trace: str | None, force: bool,
             no_transfers: bool, as_json: bool) -> None:
    """Time every capable kernel per op and shape bucket; store the medians in the profile.

    Only what the profile lacks is measured (a new backend: only its kernels); the planner
    then prefers the measured fastest kernel. See `oxcore profile show` and `oxcore.explain`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import autotune as at
    from .._errors import UnknownNameError
    from .._plugins import manager
    from .._registry import REGISTRY

    manager()  # NOTE: plugins register ops (ggml_matmul from oxcore-io-gguf) when they load
    names = _split(ops) or None
    for op in names or ():
        if op not in REGISTRY:
            raise UnknownNameError(f"Unknown op {op!r}. Valid ops are: {', '.join(REGISTRY)}")
    console = Console(stderr=as_json)
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]autotune[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("planning", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=what[:70])

        res = at.tune(names, _split(dtypes), quick=quick, trace=trace, force=force,
                      transfers=not no_transfers, progress=progress)
    wall = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({"path": str(res.path), "seconds": wall, "load_per_core": res.load,
                               "measured": res.measured,
                               "cached": res.cached, "failed": res.failed, "dropped_stale": res.dropped,
                               "rows": res.rows, "transfers": res.transfers, "winners": res.winners()},
                              indent=2, default=str))
        return
    _print_winners(console, res.winners())
    for tr in res.transfers:
        console.print(f"transfer {tr['src']} -> {tr['dst']}: latency {tr['latency_us']:.1f}us "
                      f"(switch {tr['switch_us']:.1f}us), {tr['bytes_per_us'] / 1e3:.2f} GB/s")
    for r in res.rows:
        if r["status"].startswith("failed"):
            console.print(f"[red]{r['kernel']}[/] on {r['case']}: {r['status']}")
    console.print(f"measured {res.measured}, already in profile {res.cached}, failed {res.failed}, "
                  f"stale entries dropped {res.dropped} in {wall:.1f}s -> {res.path}")
    if res.busy:
        console.print(f"[yellow]warning:[/] the machine was busy (load {res.load:.1f} per core) while measuring; "
                      "timings may be inflated: run `oxcore autotune --force` again when it is idle")


def _print_winners(console: Any, winners: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="fastest kernel per case (median)")
    for c in ("case", "winner", "median", "runner-up", "speedup"):
        t.add_column(c, justify="right" if c in ("median", "speedup") else "left")
    for w in winners:
        t.add_row(w["case"], w["winner"], f"{w['us']:.1f}us", w["runner_up"] or "-",
                  f"{w['speedup']:.2f}x" if w["speedup"] else "-")
    console.print(t)


@main.group()
def profile() -> None:
    """The autotune profile: measured kernel times and transfers on this machine."""


@profile.command("path")
def profile_path() -> None:
    """Print where the profile is stored (OXCORE_PROFILE overrides it)."""
    from .._profile import path

    p = path()
    click.echo(str(p) if p is not None else "(profiles are off: OXCORE_PROFILE=off)")


def profile_rows(op: str | None = None, everything: bool = False) -> list[dict[str, Any]]:
    """Entries of the active profile with a ``state``: current, stale version, other machine/env."""
    from .._backend import iter_kernels
    from .._plugins import manager
    from .._profile import _parse_bucket, current, env_key, fingerprint, stale_attrs

    prof = current()
    if prof is None:
        return []
    m = manager()
    installed = {k.id: k.version for k in iter_kernels(m.backends.values())}
    here = {fingerprint(d) for d in m.devices.values()}
    envs: dict[str, str] = {}
    rows = []
    for e in prof.data["kernels"].values():
        if op is not None and e["op"] != op:
            continue
        kid = e["kernel"]
        backend = kid.split(".", 1)[0]
        env = envs.get(backend) or envs.setdefault(backend, env_key([backend]))
        old_key = stale_attrs(e)
        if old_key is not None:
            state = f"stale ({old_key})"
        elif e["device"] not in here or e["env"] != env:
            state = "other machine or env"
        elif kid.endswith(".decomposed") or installed.get(kid) == e["version"]:
            state = "current"
        elif kid in installed:
            state = f"stale (installed {installed[kid]})"
        else:
            state = "kernel not installed"
        if everything or state == "current":
            rows.append({**e, "state": state})
    rows.sort(key=lambda r: (r["op"], r.get("attrs", ""), r["dtypes"], _parse_bucket(r["bucket"]), r["env"], r["us"]))
    return rows


def transfer_rows(everything: bool = False) -> list[dict[str, Any]]:
    """Transfer entries of the active profile with a ``state``: ``current``, or ``other machine
    or env`` (another thread setting too: a switch cost measured while two libraries' threads
    fought must not be shown as this configuration's)."""
    from .._plugins import manager
    from .._profile import current, fingerprint, transfer_env_key

    prof = current()
    if prof is None:
        return []
    here = {fingerprint(d) for d in manager().devices.values()}
    rows = []
    for e in prof.data["transfers"].values():
        ok = (e.get("src") in here and e.get("dst") in here
              and e.get("env") == transfer_env_key(e.get("src_device", ""), e.get("dst_device", "")))
        if everything or ok:
            rows.append({**e, "state": "current" if ok else "other machine or env"})
    return rows


@profile.command("show")
@click.option("--op", default=None, help="Only entries of this op.")
@click.option("--all", "everything", is_flag=True, help="Include stale entries and other machines.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def profile_show(op: str | None, everything: bool, as_json: bool) -> None:
    """What was measured: per op and shape bucket, each kernel's median (fastest first)."""
    from rich.console import Console
    from rich.table import Table

    from .._profile import current, path

    rows = profile_rows(op, everything)
    transfers = transfer_rows(everything)
    if as_json:
        click.echo(json.dumps({"path": str(path()), "kernels": rows, "transfers": transfers}, indent=2))
        return
    t = Table(title=f"oxcore profile: {path()}")
    for c in ("op", "inputs", "kernel", "median", "vs best", "state"):
        t.add_column(c, justify="right" if c in ("median", "vs best") else "left")
    best: dict[tuple, float] = {}
    for r in rows:
        k = (r["op"], r.get("attrs", ""), r["dtypes"], r["bucket"], r["env"])
        best[k] = min(best.get(k, r["us"]), r["us"])
    prev = None
    for r in rows:
        k = (r["op"], r.get("attrs", ""), r["dtypes"], r["bucket"], r["env"])
        b = best[k]
        ins = ", ".join(f"{_short(d)}[{s}]" for d, s in zip(r["dtypes"].split("->")[0].split(","), r["bucket"].split(",")))
        ins = f"{r['attrs']}: {ins}" if r.get("attrs") else ins  # NOTE: the op's tune_attrs (ggml_type=Q4_K)
        kernel = r["kernel"].replace(f".{r['op']}.", ".")  # NOTE: backend.name; the op is the first column
        t.add_row(r["op"] if k != prev else "", ins if k != prev else "", kernel, f"{r['us']:.1f}us",
                  "[green]best[/]" if r["us"] == b else f"{r['us'] / b:.2f}x",
                  "" if r["state"] == "current" else r["state"], end_section=False)
        prev = k
    console = Console()
    console.print(t)
    for e in transfers:
        state = "" if e["state"] == "current" else f" ({e['state']})"
        console.print(f"transfer {e['src_device']} -> {e['dst_device']}: latency {e['latency_us']:.1f}us, "
                      f"{e['bytes_per_us'] / 1e3:.2f} GB/s{state}")
    prof = current()
    if prof is not None and prof.defaults:
        console.print(f"{len(prof.defaults)} default entries shipped by plugins (measurements here win)")
    old_keys = _stale_attr_ops(op) if not everything else {}
    for name, n in old_keys.items():
        console.print(f"[yellow]{n} {name} entries[/] were measured before their op keyed its tuning attributes "
                      "and no longer answer: `oxcore autotune` measures each value and drops them "
                      "(`oxcore profile show --all` lists them)")
    if not rows:
        click.echo("Nothing measured yet: run `oxcore autotune --quick`.")


def _stale_attr_ops(op: str | None = None) -> dict[str, int]:
    """Op (``op`` alone if given) -> how many entries of the active profile are stale for their
    attrs (``stale_attrs``)."""
    from .._profile import current, stale_attrs

    prof = current()
    out: dict[str, int] = {}
    for e in (prof.data["kernels"].values() if prof is not None else ()):
        if (op is None or e["op"] == op) and stale_attrs(e) is not None:
            out[e["op"]] = out.get(e["op"], 0) + 1
    return out


def _short(dtype: str) -> str:
    return {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64", "int32": "i32",
            "int64": "i64", "bool": "bool"}.get(dtype, dtype)


@profile.command("clear")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def profile_clear(yes: bool) -> None:
    """Delete the profile file (plans go back to static priors until the next autotune)."""
    from .._profile import path, reload

    p = path()
    if p is None or not p.exists():
        click.echo(f"No profile at {p}.")
        return
    if not yes:
        click.confirm(f"Delete {p}?", abort=True)
    p.unlink()
    reload()
    click.echo(f"Deleted {p}.")
