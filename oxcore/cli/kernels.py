"""``oxcore kernels list``: every kernel of every backend, who shipped it, and whether it works.

Example:
    >>> from oxcore.cli.kernels import kernel_rows
    >>> any(r["id"] == "cpu_numpy.add.default" for r in kernel_rows(op="add"))
    True
"""

from __future__ import annotations

import json
from typing import Any

import click

from . import main


def kernel_rows(op: str | None = None) -> list[dict[str, Any]]:
    """One dict per kernel (``status``: ok, failed, backend unavailable, orphan)."""
    from .._plugins import manager
    from .._profile import current

    m = manager()
    prof = current()
    measured: dict[str, int] = {}
    if prof is not None:
        for e in prof.data["kernels"].values():
            measured[e["kernel"] + "@" + e["version"]] = measured.get(e["kernel"] + "@" + e["version"], 0) + 1
    rows = []
    for b in m.backends.values():
        ok, why = m.available(b)
        for ks in b.kernels.values():
            for k in ks:
                if op is not None and k.op != op:
                    continue
                status = "failed" if k.failed else "ok" if ok else "backend unavailable"
                rows.append({"id": k.id, "op": k.op, "backend": k.backend, "name": k.name, "source": k.source,
                             "version": k.version, "status": status,
                             "reason": k.failed or ("" if ok else why),
                             "profiled_buckets": measured.get(f"{k.id}@{k.version}", 0)})
    for k in m.orphan_kernels:
        if op is None or k.op == op:
            rows.append({"id": k.id, "op": k.op, "backend": k.backend, "name": k.name, "source": k.source,
                         "version": k.version, "status": "orphan",
                         "reason": f"backend {k.backend!r} is not installed", "profiled_buckets": 0})
    rows.sort(key=lambda r: (r["op"], r["backend"], r["name"]))
    return rows


@main.group()
def kernels() -> None:
    """Kernels: one implementation of one op on one backend (entry-point kernels included)."""


@kernels.command("list")
@click.option("--op", default=None, help="Only kernels of this op.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def kernels_list(op: str | None, as_json: bool) -> None:
    """Every kernel: id, op, backend, source distribution, version, status and why.

    Kernels registered for a backend that is not installed are listed as orphans; a kernel
    that raised at run time is listed as failed with the error (it is no longer placed).
    """
    from .._plan import FAILURES

    rows = kernel_rows(op)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from ._table import Listing

    t = Listing(f"oxcore kernels{f' for {op}' if op else ''} ({len(rows)})",
                ["op", "kernel", "source", "version", "profiled", "status"])
    style = {"ok": "green", "failed": "red", "orphan": "yellow", "backend unavailable": "yellow"}
    for r in rows:
        t.add(r["op"], r["id"], r["source"], r["version"], str(r["profiled_buckets"] or ""),
              (r["status"], style[r["status"]]), notes=[r["reason"]])
    t.print()
    if not rows:
        click.echo(f"No kernels{f' for op {op!r}' if op else ''}. See `oxcore backends list`.")
    for f in FAILURES[-8:]:
        click.echo(f"run-time failure: {f}")
