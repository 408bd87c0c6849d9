"""``oxcore.autotune`` and the CLI around it: real measurements on cpu_numpy, traces, commands."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

import oxcore as ox
from oxcore import _profile, autotune
from oxcore._trace import decode_attrs, load
from oxcore.cli import main


def test_tune_measures_each_case_once_then_reuses_the_profile(numpy_only, tmp_profile):
    r = autotune.tune(ops=["add", "rms_norm"], quick=True, transfers=False)
    assert r.failed == 0 and r.measured == len(r.rows) > 0
    assert all(row["us"] > 0 and row["runs"] >= 3 for row in r.rows)
    doc = json.loads(tmp_profile.read_text())
    assert len(doc["kernels"]) == r.measured
    again = autotune.tune(ops=["add", "rms_norm"], quick=True, transfers=False)
    assert again.measured == 0 and again.cached == r.measured
    x = ox.asarray(np.ones((64, 1024), np.float32))
    assert "us*" in str(ox.explain(x + x))  # the planner now reads measured numbers


def test_record_writes_a_trace_autotune_can_replay(numpy_only, tmp_profile, tmp_path):
    f = tmp_path / "trace.json"
    x = ox.asarray(np.ones((4, 32), np.float32))
    with ox.record(f) as trace:
        for _ in range(3):
            ox.sum(ox.astype(x * 2, ox.float16), axis=-1).eval()
    nodes = load(f)
    assert [n["op"] for n in nodes] == ["multiply", "astype", "sum"]
    assert all(n["count"] == 3 for n in nodes)
    assert decode_attrs(nodes[1]["attrs"]) == {"dtype": ox.float16}
    assert nodes[0]["inputs"] == [[[4, 32], "float32"], [[], "float32"]]
    r = autotune.tune(trace=str(f), quick=True, transfers=False)
    assert {row["op"] for row in r.rows} == {"multiply", "astype", "sum"} and r.failed == 0
    assert trace.nodes == nodes


def test_cli_autotune_profile_show_path_clear(numpy_only, tmp_profile):
    run = CliRunner().invoke
    res = run(main, ["autotune", "--ops", "exp", "--quick", "--no-transfers", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["measured"] == 3 and out["winners"][0]["winner"] == "cpu_numpy.exp.default"
    assert run(main, ["profile", "path"]).output.strip() == str(tmp_profile)
    shown = json.loads(run(main, ["profile", "show", "--json"]).output)
    assert {e["kernel"] for e in shown["kernels"]} == {"cpu_numpy.exp.default"}
    assert "cpu_numpy.default" in run(main, ["profile", "show"], env={"COLUMNS": "200"}).output
    assert run(main, ["autotune", "--ops", "nope"]).exit_code != 0
    assert run(main, ["profile", "clear", "--yes"]).exit_code == 0
    assert not tmp_profile.exists() and _profile.current() is not None and len(_profile.current()) == 0


def test_cli_kernels_list_includes_orphans(numpy_only):
    from oxcore.extend import Kernel

    from .conftest import register

    register("orphaner", oxcore_register_kernels=lambda register: register(Kernel("exp", "no_such_backend", np.exp)))
    rows = json.loads(CliRunner().invoke(main, ["kernels", "list", "--json"]).output)
    orphan = next(r for r in rows if r["backend"] == "no_such_backend")
    assert orphan["status"] == "orphan" and orphan["source"] == "orphaner-dist"
    assert any(r["id"] == "cpu_numpy.matmul.default" and r["status"] == "ok" for r in rows)


def test_cli_bench_plan_runs_and_saves_ratios(numpy_only, tmp_profile, tmp_path):
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(main, ["bench", "plan", "--size", "small", "--repeat", "5", "--seconds", "0.05",
                                    "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    names = {(r["group"].split()[0], r["name"]) for r in rec["results"]}
    assert {n for _, n in names} == {"cpu_numpy alone", "untuned default", "autotuned"}
    assert any("autotuned / best single" in n for n in rec["notes"])
    assert all(r["ratio"] is not None for r in rec["results"])


def test_a_kernel_that_raises_while_tuned_is_reported_not_fatal(numpy_only, tmp_profile):
    from oxcore.extend import Kernel

    from .conftest import register

    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) > 2:  # NOTE: works while warming up, breaks while being timed
            raise RuntimeError("flaky on purpose")
        return np.exp(x)

    register("flaky_tune", oxcore_register_kernels=lambda register: register(Kernel("exp", "cpu_numpy", flaky,
                                                                                     name="flaky")))
    r = autotune.tune(ops=["exp"], quick=True, transfers=False)
    status = {(row["case"], row["kernel"]): row["status"] for row in r.rows}
    assert all(v == "ok" for (c, k), v in status.items() if k == "cpu_numpy.exp.default")
    assert any(v.startswith("failed: RuntimeError: flaky on purpose") for (c, k), v in status.items()
               if k == "cpu_numpy.exp.flaky")


def test_interleaved_does_not_take_a_late_compile_for_a_sample():
    """A backend that compiles on a function's second call (metal_fused declares
    ``warmup_runs = 2``) must not have that call timed as the function's speed."""
    import time

    calls = {"n": 0}

    def compiles_on_second_call():
        calls["n"] += 1
        if calls["n"] == 2:
            time.sleep(1.1)

    fast, late = autotune.interleaved([lambda: None, compiles_on_second_call], min_rounds=5, max_rounds=5,
                                      warmup=[1, 2])
    assert late.runs >= 5 and late.median_us < 10_000, late
    assert fast.median_us < 10_000
