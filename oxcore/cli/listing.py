"""``oxcore backends list``, ``oxcore plugins list``, ``oxcore ops list``: JSON with ``--json``, else
listings readable at 80 columns and in a pipe (``_table.Listing``)."""

from __future__ import annotations

import json
from typing import Any

import click

from . import main
from ._table import Listing


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
    if not rows:
        click.echo("No backends installed. `pip install oxcore` brings cpu_numpy; see `oxcore plugins list`.")
        return
    backends_listing(rows).print()


def backends_listing(rows: list[dict[str, Any]]) -> Listing:
    """``backend_rows()`` as a listing: short cells; device descriptions, why a backend is not
    available and smoke-test errors go under the row, once."""
    t = Listing("oxcore backends", ["name", "distribution", "devices", "available", "smoke", "native",
                                    "decomposed"])
    for r in rows:
        notes = [f"{n}: {d}" for n, d in zip(r["devices"], r["device_description"]) if d and r["available"]]
        if not r["available"]:
            notes.append(f"not available: {r['reason']}")
            avail, smoke = ("no", "red"), ("-", "dim")
        else:
            avail, smoke = ("yes", "green"), ("PASS", "green") if r["smoke"] == "pass" else ("FAIL", "red")
            if r["smoke"] != "pass":
                notes.append(f"smoke test failed: {r['smoke_error']}")
        t.add(r["name"], r["distribution"], ", ".join(r["devices"]), avail, smoke, str(r["ops_native"]),
              str(r["ops_decomposed"]), notes=notes)
    return t


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
    t = Listing("oxcore plugins", ["name", "distribution", "version", "api", "status", "registered"])
    for p in infos:
        status = (p["status"], {"loaded": "green", "failed": "red"}.get(p["status"], "yellow"))
        t.add(p["name"], p["distribution"], p["version"], str(p["api"]), status, ", ".join(p["registered"]),
              notes=[p["reason"]])
    t.print()


@main.group()
def ops() -> None:
    """The op registry."""


@ops.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--backend", "only", multiple=True, help="Only these backends (repeatable).")
def ops_list(as_json: bool, only: tuple[str, ...]) -> None:
    """The op x backend matrix: native, via decomposition, or not at all; under each op, its
    attributes as kernels receive them (name: type = public default (normalisation))."""
    from .._plugins import manager
    from .._registry import REGISTRY
    from ..coverage import coverage

    m = manager()
    names = [b.name for b in m.available_backends() if not only or b.name in only]
    cov = {b: coverage(b) for b in names}
    rows = []
    for op in REGISTRY:
        d = REGISTRY.ops[op]
        row = {"op": op, "category": d.category.value, "source": d.source, "doc": d.doc,
               "attrs": [a.as_dict() for a in d.schema]}
        for b in names:
            c = cov[b]
            row[b] = "native" if op in c["native"] else "decomposed" if op in c["decomposed"] else "no"
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Listing(f"oxcore ops ({len(rows)})", ["op", "category", *names])
    style = {"native": "green", "decomposed": "yellow", "no": "red"}
    for r in rows:
        t.add(r["op"], r["category"], *((r[b], style[r[b]]) for b in names), notes=[
            f"{a.describe()}" for a in REGISTRY.ops[r["op"]].schema])
    t.print()
