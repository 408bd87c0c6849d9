"""``oxcore backends list``, ``oxcore plugins list``, ``oxcore ops list``."""

from __future__ import annotations

import json
from typing import Any

import click

from . import main


def smoke_test(backend_name: str) -> tuple[str, str]:
    """Run ``[1, 2, 3] * 2`` pinned to the backend; ("pass", "") or ("fail", error)."""
    import oxcore as ox

    try:
        with ox.use(backend_name):
            y = ox.asarray([1.0, 2.0, 3.0]) * 2
        ex = ox.explain(y)
        placed = set(ex.backends)
        if placed != {backend_name}:
            return "fail", f"ran on {', '.join(sorted(placed))} instead: {'; '.join(ex.fallbacks)}"
        got = y.tolist()
        if got != [2.0, 4.0, 6.0]:
            return "fail", f"expected [2.0, 4.0, 6.0], got {got}"
        return "pass", ""
    except Exception as e:
        return "fail", f"{type(e).__name__}: {e}"


def backend_rows() -> list[dict[str, Any]]:
    from .._plugins import PLUGIN_API, manager
    from ..coverage import coverage

    m = manager()
    rows = []
    for b in m.backends.values():
        ok, why = m.available(b)
        cov = coverage(b.name) if ok else {"native": [], "decomposed": [], "missing": []}
        smoke, err = smoke_test(b.name) if ok else ("fail", f"not available: {why}")
        rows.append({
            "name": b.name, "distribution": b.distribution, "version": b.version, "plugin_api": PLUGIN_API,
            "devices": [d.name for d in b.devices], "device_description": [d.description for d in b.devices],
            "available": ok, "reason": why, "smoke": smoke, "smoke_error": err, "fuses": b.fuses,
            "ops_native": len(cov["native"]), "ops_decomposed": len(cov["decomposed"]),
            "ops_missing": cov["missing"],
        })
    return rows


@main.group()
def backends() -> None:
    """Installed device backends."""


@backends.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def backends_list(as_json: bool) -> None:
    """Each backend: distribution, devices, availability, a smoke test and op coverage."""
    rows = backend_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="oxcore backends")
    for c in ("name", "distribution", "api", "devices", "available", "smoke", "ops native", "decomposed"):
        t.add_column(c)
    for r in rows:
        avail = "yes" if r["available"] else f"no: {r['reason']}"
        smoke = "[green]PASS[/]" if r["smoke"] == "pass" else f"[red]FAIL[/] {r['smoke_error']}"
        t.add_row(r["name"], f"{r['distribution']} {r['version']}", str(r["plugin_api"]),
                  ", ".join(f"{n} ({d})" for n, d in zip(r["devices"], r["device_description"])), avail, smoke,
                  str(r["ops_native"]), str(r["ops_decomposed"]))
    Console().print(t)
    if not rows:
        click.echo("No backends installed. `pip install oxcore` brings cpu_numpy; see `oxcore plugins list`.")


@main.group()
def plugins() -> None:
    """Installed plugins (backends, kernels, formats, commands)."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_list(as_json: bool) -> None:
    """Every plugin found, including failed and disabled ones with the reason."""
    from .._plugins import manager

    infos = [p.as_dict() for p in manager().plugins.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="oxcore plugins")
    for c in ("name", "distribution", "version", "api", "status", "registered / reason"):
        t.add_column(c)
    for p in infos:
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]"}.get(p["status"], p["status"])
        t.add_row(p["name"], p["distribution"], p["version"], str(p["api"]), status,
                  "; ".join(x for x in (", ".join(p["registered"]), p["reason"]) if x) or "(nothing)")
    Console().print(t)


@main.group()
def ops() -> None:
    """The op registry."""


@ops.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--backend", "only", multiple=True, help="Only these backends (repeatable).")
def ops_list(as_json: bool, only: tuple[str, ...]) -> None:
    """The op x backend matrix: native, via decomposition, or not at all."""
    from .._plugins import manager
    from .._registry import REGISTRY
    from ..coverage import coverage

    m = manager()
    names = [b.name for b in m.available_backends() if not only or b.name in only]
    cov = {b: coverage(b) for b in names}
    rows = []
    for op in REGISTRY:
        d = REGISTRY.ops[op]
        row = {"op": op, "category": d.category.value, "source": d.source, "doc": d.doc}
        for b in names:
            c = cov[b]
            row[b] = "native" if op in c["native"] else "decomposed" if op in c["decomposed"] else "no"
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"oxcore ops ({len(rows)})")
    t.add_column("op")
    t.add_column("category")
    for b in names:
        t.add_column(b)
    style = {"native": "[green]native[/]", "decomposed": "[yellow]decomposed[/]", "no": "[red]no[/]"}
    for r in rows:
        t.add_row(r["op"], r["category"], *(style[r[b]] for b in names))
    Console().print(t)
