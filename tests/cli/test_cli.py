"""The ``oxcore`` command line: listings as JSON (keys, cpu_numpy PASS, op coverage) and the
module entry point in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from oxcore.cli import main
from oxcore.extend import REGISTRY

BACKEND_KEYS = {"name", "distribution", "version", "devices", "available", "reason", "smoke", "ops_native",
                "ops_decomposed"}


def _json(*args: str):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, f"oxcore {' '.join(args)} exited {r.exit_code}: {r.output}\n{r.exception!r}"
    return json.loads(r.output)


def test_backends_list_json():
    rows = _json("backends", "list", "--json")
    assert rows and all(BACKEND_KEYS <= set(r) for r in rows), [sorted(set(r)) for r in rows]
    cpu = next(r for r in rows if r["name"] == "cpu_numpy")
    assert cpu["distribution"] == "oxcore-cpu-numpy" and cpu["version"]
    assert cpu["available"] is True and cpu["reason"] == "" and cpu["devices"] == ["cpu"]
    assert cpu["smoke"] == "pass", cpu.get("smoke_error")
    assert cpu["ops_native"] + cpu["ops_decomposed"] == len(list(REGISTRY)), cpu.get("ops_missing")
    for r in rows:  # every available backend passes its smoke test; an unavailable one says why
        assert r["smoke"] == "pass" if r["available"] else r["reason"], r


def test_backends_list_table_says_pass():
    r = CliRunner().invoke(main, ["backends", "list"], env={"COLUMNS": "240"})
    assert r.exit_code == 0 and "cpu_numpy" in r.output and "PASS" in r.output


def test_plugins_list_json():
    infos = _json("plugins", "list", "--json")
    by_name = {p["name"]: p for p in infos}
    cpu = by_name["cpu_numpy"]
    assert cpu["status"] == "loaded" and cpu["distribution"] == "oxcore-cpu-numpy"
    assert "backend:cpu_numpy" in cpu["registered"] and "oxcore_register_backends" in cpu["hooks"]
    assert {"name", "distribution", "version", "module", "status", "reason", "api", "hooks", "registered"} <= set(cpu)
    for p in infos:
        assert p["status"] in ("loaded", "failed", "disabled")
        assert p["status"] == "loaded" or p["reason"], p


def test_ops_list_json_covers_every_op_on_cpu_numpy():
    rows = _json("ops", "list", "--json", "--backend", "cpu_numpy")
    assert [r["op"] for r in rows] == list(REGISTRY)
    not_run = [r["op"] for r in rows if r["cpu_numpy"] not in ("native", "decomposed")]
    assert not not_run, f"ops cpu_numpy cannot run: {not_run}"
    assert {r["op"] for r in rows if r["cpu_numpy"] == "decomposed"} >= {"rsqrt", "clip", "flip", "eye"}
    assert all(r["category"] and r["doc"] for r in rows)


def test_unknown_command_lists_choices():
    r = CliRunner().invoke(main, ["backend"])
    assert r.exit_code != 0 and "backends" in r.output


@pytest.mark.parametrize("args", [["--help"], ["backends", "--help"]])
def test_python_dash_m_oxcore(args):
    p = subprocess.run([sys.executable, "-m", "oxcore", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Usage:" in p.stdout and ("backends" in p.stdout or "list" in p.stdout)
