"""``oxcore backends|plugins|ops|kernels list`` as a newcomer reads them: at 80 columns, in a pipe and in
a terminal, whole names, each long reason once under its row and printed as written (a
plugin's ``[cpu]`` is not rich markup), ``--json`` untouched."""

from __future__ import annotations

import io
import json
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

import oxcore as ox
from oxcore.cli import main
from oxcore.cli.listing import backend_rows, backends_listing
from oxcore.extend import PLUGIN_API, Backend, hookimpl, manager

LONG = "unavailable_backend_with_a_long_name"
REASON = ("mlx is not importable: ImportError: libmlx.so: cannot open shared object file (on Linux MLX "
          "needs a backend package: pip install 'oxcore-metal-basic[cpu]', or [cuda13] / [cuda12]) [/] [red]")
BROKEN = "RuntimeError: needs the [cuda13] extra: pip install 'oxcore[cuda]' [bold]"


class _Unavailable(Backend):
    name = LONG
    distribution = "oxcore-test-brackets"

    def __init__(self):
        super().__init__()
        self.kernel("add")(lambda x, y: x + y)  # listed by `kernels list` as "backend unavailable"

    def available(self):
        return False, REASON


class _Plugin:
    OXCORE_PLUGIN_API = PLUGIN_API

    @hookimpl
    def oxcore_register_backends(self, register):
        register(_Unavailable())


class _Broken:
    OXCORE_PLUGIN_API = PLUGIN_API

    @hookimpl
    def oxcore_register_formats(self, register):
        raise RuntimeError(BROKEN.split(": ", 1)[1])


@pytest.fixture
def odd_plugins():
    m = manager()
    try:
        m.register_plugin(_Plugin(), "brackets_backend")
        m.register_plugin(_Broken(), "brackets_broken")
        yield
    finally:
        m.unregister_plugin("brackets_backend")
        m.unregister_plugin("brackets_broken")


def _run(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "80"})  # NOTE: not a terminal: a pipe
    assert r.exit_code == 0, f"{r.output}\n{r.exception!r}"
    return r.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_backends_list_in_a_pipe_is_plain_whole_and_says_each_reason_once(odd_plugins):
    out = _run("backends", "list")
    lines = out.splitlines()
    assert not re.search("[\u2500-\u257f\u2026]", out), out  # no box drawing, nothing cut with an ellipsis
    assert lines[0].split() == ["name", "distribution", "devices", "available", "smoke", "native", "decomposed"]
    assert set(lines[1]) <= {"-", " "}
    names = [b for b in manager().backends]
    rows = [ln for ln in lines[2:] if not ln.startswith(" ")]
    assert [ln.split()[0] for ln in rows] == names, out
    assert out.count(REASON) == 1, out
    mine = next(i for i, ln in enumerate(lines) if ln.startswith(LONG + " "))
    assert lines[mine].split()[3:5] == ["no", "-"] and lines[mine + 1] == "    not available: " + REASON, out
    cpu = next(ln for ln in rows if ln.startswith("cpu_numpy "))
    assert cpu.split()[1:5] == ["oxcore-cpu-numpy", "cpu", "yes", "PASS"], cpu


def test_backends_list_in_an_80_column_terminal_keeps_names_and_brackets(odd_plugins):
    buf = io.StringIO()
    backends_listing(backend_rows()).print(Console(file=buf, force_terminal=True, width=80, color_system=None))
    out = buf.getvalue()
    rows = [ln for ln in out.splitlines()[3:] if not ln.startswith(" ")]
    assert [ln.split()[0] for ln in rows] == list(manager().backends), out
    assert _flat(out).count(_flat("not available: " + REASON)) == 1, out
    assert max(len(ln) for ln in out.splitlines() if ln.startswith("    ")) <= 80  # notes wrap to the width


def test_backends_list_json_keeps_reason_and_shape(odd_plugins):
    rows = json.loads(_run("backends", "list", "--json"))
    mine = next(r for r in rows if r["name"] == LONG)
    assert mine["reason"] == REASON and mine["available"] is False and mine["smoke"] == "fail"
    assert [r["name"] for r in rows] == list(manager().backends)


def test_plugins_list_puts_a_failure_under_its_row_intact(odd_plugins):
    out = _run("plugins", "list")
    lines = out.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("brackets_broken "))
    assert lines[i].split()[4] == "failed" and _flat(out).count("[cuda13] extra: pip install 'oxcore[cuda]' [bold]") == 1
    assert lines[i + 1].startswith("    ") and "[cuda13]" in lines[i + 1], out
    loaded = next(ln for ln in lines if ln.startswith("cpu_numpy "))
    assert loaded.split()[4] == "loaded" and loaded.split()[5].startswith("backend:cpu_numpy"), loaded


def test_ops_list_in_a_pipe_has_every_op_once_and_whole():
    names = [b.name for b in ox.extend.manager().available_backends()]
    lines = _run("ops", "list").splitlines()
    assert lines[0].split() == ["op", "category", *names]
    rows = [ln.split() for ln in lines[2:] if not ln.startswith(" ")]  # NOTE: indented lines: attributes
    assert [r[0] for r in rows] == list(ox.extend.REGISTRY)
    assert all(len(r) == 2 + len(names) and set(r[2:]) <= {"native", "decomposed", "no"} for r in rows)


def test_ops_list_shows_each_ops_attribute_schema():
    """Under each op, one line per attribute; ``--json`` carries name, type, default and note for
    every attribute of every registered op (core ops: all typed)."""
    text = _run("ops", "list")
    for line in ("    axis: int | None = None (non-negative; None: over the flattened array)",
                 "    dtype: DType = None (a DType, never None:",
                 "    stops: tuple[int | None, ...] (one per axis; None: to the end"):
        assert line in text, line
    rows = {r["op"]: r for r in json.loads(_run("ops", "list", "--json"))}
    assert list(rows) == list(ox.extend.REGISTRY)
    for op, r in rows.items():
        d = ox.extend.REGISTRY[op]
        assert [a["name"] for a in r["attrs"]] == list(d.attrs), op
        for a in r["attrs"]:
            assert set(a) >= {"name", "type", "required", "note"} and ("default" in a) is not a["required"], (op, a)
            assert d.source != "oxcore" or a["type"] != "any", f"core op {op}: attribute {a['name']} has no type"
    attrs = {op: {a["name"]: a for a in r["attrs"]} for op, r in rows.items()}
    assert attrs["argmax"]["axis"]["type"] == "int | None" and attrs["argmax"]["axis"]["default"] is None
    assert "non-negative" in attrs["softmax"]["axis"]["note"] and attrs["softmax"]["axis"]["default"] == -1
    assert attrs["sum"]["dtype"]["type"] == "DType" and attrs["sum"]["keepdims"] == {
        "name": "keepdims", "type": "bool", "required": False, "note": "", "default": False}
    assert attrs["slice"]["stops"]["type"] == "tuple[int | None, ...]" and attrs["slice"]["stops"]["required"]
    assert {"has_weight", "has_bias"} <= set(attrs["layer_norm"]) and "input" in attrs["layer_norm"]["has_bias"]["note"]
    assert attrs["gelu"]["approximate"]["type"] == "'none' | 'tanh'"


def test_kernels_list_in_a_pipe_has_whole_ids_and_reasons_once(odd_plugins):
    rows = json.loads(_run("kernels", "list", "--json"))
    lines = _run("kernels", "list").splitlines()
    assert lines[0].split() == ["op", "kernel", "source", "version", "profiled", "status"]
    # NOTE: kernels that failed earlier in this process are reported after the table
    table = [ln.split() for ln in lines[2:] if not ln.startswith((" ", "run-time failure:"))]
    assert [t[:2] for t in table] == [[r["op"], r["id"]] for r in rows]
    notes = [ln[4:] for ln in lines[2:] if ln.startswith("    ")]
    assert notes == [r["reason"] for r in rows if r["reason"]] and notes.count(REASON) == 1, notes
    mine = next(i for i, ln in enumerate(lines) if f" {LONG}.add.default " in ln)
    assert lines[mine].split()[-2:] == ["backend", "unavailable"] and lines[mine + 1] == "    " + REASON
