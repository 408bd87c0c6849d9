"""``oxcore validate``: a quick conformance pass over the installed backends.

Each case of the conformance kit (``oxcore.testing.cases``) runs once per dtype, on its fixed
example with seed 0, on each backend *alone* (as under ``OXCORE_BACKENDS=NAME``): an op the
backend has no kernel for is decomposed into ops it has, or the plan fails and the backend's
refusal is the answer. Results are checked against the float64 reference with the kit's
tolerances. The status of each (op, dtype, backend) is one of:

- ``native``: a kernel of the backend ran the op;
- ``decomposed``: the op's decomposition ran, entirely on the backend;
- ``refused``: no plan on the backend alone, with the backend's reason;
- ``FAIL``: it ran, and the values (or shape, or dtype) are wrong;
- ``error``: building or running the case raised.

The markdown table (``--markdown``) holds the statuses only: they depend on the installed code,
not on the machine, so regenerating it in CI does not flap. Max errors are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import click

from . import main

SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64", "bool": "bool",
         **{f"{p}int{b}": f"{p[:1]}{'i' if not p else ''}{b}" for p in ("", "u") for b in (8, 16, 32, 64)}}
ORDER = ("native", "decomposed", "refused", "FAIL", "error")


@dataclass
class Result:
    """One (case, dtype) on one backend."""

    op: str
    case: str
    dtype: str
    backend: str
    status: str
    reason: str = ""
    max_error: float | None = None


@contextlib.contextmanager
def alone(backend: str) -> Iterator[None]:
    """Plan on ``backend`` only (``OXCORE_BACKENDS`` is part of the plan cache key)."""
    old = os.environ.get("OXCORE_BACKENDS")
    os.environ["OXCORE_BACKENDS"] = backend
    try:
        yield
    finally:
        if old is None:
            del os.environ["OXCORE_BACKENDS"]
        else:
            os.environ["OXCORE_BACKENDS"] = old


def _refusal(message: str, backend: str, others: list[str]) -> str:
    """The backend's own part of an OpNotSupportedError message, with the op that stopped it."""
    op = re.match(r"No backend can run (\w+)\(", message)
    tail = message.split(" Backends: ", 1)[-1]
    start = tail.find(f"{backend}: ")
    if start < 0:
        return message
    rest = tail[start + len(backend) + 2:]
    ends = [i for o in others if o != backend and (i := rest.find(f"; {o}: ")) >= 0]
    reason = rest[:min(ends)] if ends else rest
    return f"{op.group(1)}: {reason}" if op else reason


def _max_error(got: Any, expected: Any) -> float:
    import numpy as np

    # NOTE: complex results: the distance in the complex plane (casting to float64 would drop it)
    dt = np.complex128 if np.iscomplexobj(got) or np.iscomplexobj(expected) else np.float64
    g = np.asarray(got, dtype=dt)
    e = np.asarray(expected, dtype=dt)
    if g.shape != e.shape or not g.size:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
    err = err[np.isfinite(err)]
    return float(err.max()) if err.size else 0.0


def run_one(case: Any, dt: Any, backend: str, others: list[str]) -> Result:
    import oxcore as ox

    base = dict(op=case.op, case=case.id, dtype=dt.name, backend=backend)
    try:
        inputs, kw = case.make(dt, case.example(dt), 0)
        with alone(backend):
            out = case.build(ox, *inputs, **kw)
            try:
                ex = ox.explain(out)
            except ox.OpNotSupportedError as e:
                return Result(**base, status="refused", reason=_refusal(str(e), backend, others))
            native = any(p.op == case.op and not p.origin for p in ex.nodes)
            got = out.numpy()
    except Exception as e:
        return Result(**base, status="error", reason=f"{type(e).__name__}: {e}")
    expected = case.reference(inputs, kw)
    status, reason = ("native" if native else "decomposed"), ""
    try:
        case.check(out, expected, dt, kw,
                   f"{case.id} on {backend} ({dt.name}, input shapes {[a.shape for a in inputs]})")
    except AssertionError as e:
        status, reason = "FAIL", str(e)
    return Result(**base, status=status, reason=reason, max_error=_max_error(got, expected))


def validate(backends: list[str]) -> list[Result]:
    """Every case (the plugins' included) x dtype x backend, in case order."""
    from .._plugins import manager
    from ..testing.cases import all_cases

    installed = list(manager().backends)
    results = []
    for case in sorted(all_cases(), key=lambda c: c.id):
        for dt in case.dtypes:
            for b in backends:
                results.append(run_one(case, dt, b, installed))
    return results


# --- tables ------------------------------------------------------------------------------------------
def cells(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    """(case id, backend) -> its results, in dtype order."""
    out: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        out.setdefault((r.case, r.backend), []).append(r)
    return out


def summary(rs: list[Result]) -> str:
    """``native`` when every dtype agrees, else ``native: f32 f64 · refused: f16 bf16``."""
    groups: dict[str, list[str]] = {}
    for r in rs:
        groups.setdefault(r.status, []).append(SHORT.get(r.dtype, r.dtype))
    if len(groups) == 1:
        return next(iter(groups))
    return " · ".join(f"{s}: {' '.join(groups[s])}" for s in ORDER if s in groups)


def markdown(results: list[Result], backends: list[str], plugins: list[str]) -> str:
    from .._registry import REGISTRY

    table = cells(results)
    case_ids = list(dict.fromkeys(r.case for r in results))
    op_of = {r.case: r.op for r in results}
    lines = [
        "# Op support",
        "",
        f"<!-- oxcore validate: plugins={','.join(plugins)} backends={','.join(backends)} -->",
        "",
        "Generated by `oxcore validate --markdown docs/ops.md`; do not edit by hand (a test checks",
        "that it matches). Each conformance case ran once per dtype on each backend **alone**",
        "(as under `OXCORE_BACKENDS=NAME`), on its fixed example:",
        "",
        "- **native**: a kernel of the backend ran the op;",
        "- **decomposed**: the op's decomposition ran entirely on the backend;",
        "- **refused**: the backend cannot run it alone; the reasons are listed below the table;",
        "- **FAIL** / **error**: wrong values, or an exception (a bug to fix).",
        "",
        "Where dtypes differ the cell lists them (`f32` float32, `bf16` bfloat16, `i8` int8, `u8`",
        "uint8...). Max errors depend on the machine, so they are not here: `oxcore validate`",
        "prints them. Pinned with `oxcore.use(NAME)` instead, a refused node runs on another",
        "backend (see [Choosing backends](guide/backends.md)).",
        "",
        "| op | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    for cid in case_ids:
        lines.append(f"| `{cid}` | " + " | ".join(summary(table[(cid, b)]) for b in backends) + " |")
    refusals = [r for r in results if r.status != "native" and r.status != "decomposed"]
    if refusals:
        lines += ["", "## Refusals and failures", ""]
        merged: dict[tuple[str, str, str, str], list[str]] = {}
        for r in refusals:
            reason = r.reason.splitlines()[0] if r.reason else ""
            merged.setdefault((r.case, r.backend, r.status, reason), []).append(SHORT.get(r.dtype, r.dtype))
        for (cid, b, status, reason), dts in merged.items():
            lines.append(f"- `{cid}` on {b} ({' '.join(dts)}): {status}: {_md_escape(reason)}")
    untested = sorted(set(REGISTRY) - set(op_of.values()))
    if untested:
        lines += ["", "## Ops without a conformance case", "", ", ".join(f"`{o}`" for o in untested)]
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def print_table(results: list[Result], backends: list[str], skipped: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = cells(results)
    t = Table(title=f"oxcore validate: {len(results)} runs")
    t.add_column("op")
    for b in backends:
        t.add_column(b)
    colour = {"native": "green", "decomposed": "yellow", "refused": "dim", "FAIL": "red", "error": "red"}
    for cid in dict.fromkeys(r.case for r in results):
        row = []
        for b in backends:
            rs = table[(cid, b)]
            errs = [r for r in rs if r.max_error]
            worst = max((ORDER.index(r.status) for r in rs), default=0)
            text = summary(rs)
            if errs:
                e = max(errs, key=lambda r: r.max_error)
                text += f" (max err {e.max_error:.1e} {SHORT.get(e.dtype, e.dtype)})"
            row.append(f"[{colour[ORDER[worst]]}]{escape(text)}[/]")
        t.add_row(escape(cid), *row)
    console = Console()
    console.print(t)
    for b, why in skipped.items():
        console.print(f"{b}: not validated: {why}")
    for r in results:
        if r.status in ("FAIL", "error"):
            console.print(f"[red]{r.status}[/] {escape(f'{r.case} {r.dtype} on {r.backend}: {r.reason}')}",
                          highlight=False)


@main.command("validate")
@click.option("--backend", "only", multiple=True, metavar="NAME", help="Only this backend (repeatable).")
@click.option("--markdown", "md", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the support table as markdown (docs/ops.md).")
@click.option("--json", "as_json", is_flag=True, help="Print every result as JSON instead of the table.")
def validate_cmd(only: tuple[str, ...], md: Path | None, as_json: bool) -> None:
    """Run every conformance case once per dtype on each installed backend and print the
    op x backend support table: native, decomposed, refused (with the reason), max error.

    Exits with status 1 when a backend computed a wrong result.
    """
    from .._plugins import BUILTIN, manager

    m = manager()
    for n in only:
        m.backend(n)  # NOTE: unknown names raise UnknownNameError listing the installed ones
    names = list(only) or sorted(m.backends)
    skipped = {}
    backends = []
    for n in names:
        ok, why = m.available(m.backends[n])
        (backends.append(n) if ok else skipped.__setitem__(n, why))
    results = validate(backends)
    if md is not None:
        plugins = sorted(p.name for p in m.plugins.values() if p.status == "loaded" and p.module not in BUILTIN)
        md.write_text(markdown(results, backends, plugins), encoding="utf-8")
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print_table(results, backends, skipped)
        if md is not None:
            click.echo(f"wrote {md}")
    if any(r.status in ("FAIL", "error") for r in results):
        raise SystemExit(1)
