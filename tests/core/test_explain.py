"""``oxcore.explain``: one line per op the user wrote (the README's example pinned), every node
with ``verbose=True`` / ``OXCORE_LOG=plan:verbose``, and counts that agree with the lines."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import oxcore as ox

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_example():
    # NOTE: the README's "A taste", pinned to cpu_numpy so the lines do not depend on this machine
    with ox.use("cpu_numpy"):
        x = ox.random.normal((4, 64), seed=0)
        w = ox.random.normal((128, 64), seed=1)
        return ox.softmax(ox.linear(x, w), axis=-1)


def _without_costs(text: str) -> list[str]:
    """The lines, each op line without its candidates list (costs depend on the machine)."""
    return [line.split(" [", 1)[0] if line.startswith("  %") else line for line in text.splitlines()]


def test_readme_example_prints_the_users_ops_in_a_few_lines():
    shown = re.search(r"```text\n(plan: .*?)```", README.read_text(encoding="utf-8"), re.S)
    assert shown, "README.md lost the output of its explain example"
    ex = ox.explain(_readme_example())
    assert _without_costs(str(ex)) == _without_costs(shown.group(1).rstrip("\n"))
    assert [(o.op, o.decomposed) for o in ex.ops] == [("random_normal", True), ("random_normal", True),
                                                        ("linear", False), ("softmax", False)]
    # x is drawn first, though the planner walks w's subgraph first (linear's last input)
    assert [o.shape for o in ex.ops[:2]] == [(4, 64), (128, 64)] and ex.ops[2].args == ("%0", "%1")
    assert sum(o.nodes for o in ex.ops) == len(ex.nodes) == 78


def test_verbose_lists_every_node_and_its_header_agrees():
    ex = ox.explain(_readme_example(), verbose=True)
    lines = str(ex).splitlines()
    head = re.match(r"plan: (\d+) nodes, (\d+) inputs and constants \(%0-%(\d+)\), 1 segment on cpu_numpy, "
                    r"0 transfers, 0 fallbacks, (\d+) decomposed$", lines[0])
    assert head, lines[0]
    ops, leaves, last, decomposed = map(int, head.groups())
    numbered = [line for line in lines if line.startswith("  %")]
    assert len(numbered) == ops + leaves == last + 1 == len(ex.plan.nodes)
    assert [int(line.split()[0][1:]) for line in numbered] == list(range(last + 1))
    assert sum(" -> " in line for line in numbered) == ops == len(ex.nodes)
    assert decomposed == 2 + 2 * 2  # two draws, each with two random_bits inside
    assert sum("(from random_bits)" in line for line in numbered) == 4 * 11
    assert ex.text(verbose=False) == str(ox.explain(_readme_example()))


def test_counts_agree_with_the_lines_shown():
    a = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((5,)).astype(np.float32)
    x, w = ox.asarray(a), ox.asarray(b)
    y = ox.exp(ox.rms_norm(x, w) * 2.0) + ox.random.uniform((3, 5), seed=3)
    ex = ox.explain(y)
    lines = str(ex).splitlines()
    head = re.match(r"plan: (\d+) ops you wrote \((\d+) nodes in all\), (\d+) inputs, ", lines[0])
    assert head, lines[0]
    n_ops, n_nodes, n_inputs = map(int, head.groups())
    assert n_ops == len(ex.ops) == sum(bool(re.match(r"  %\d+ ", line)) for line in lines) == 5
    assert n_nodes == len(ex.nodes) and n_inputs == 2
    assert [o.op for o in ex.ops] == ["rms_norm", "multiply", "exp", "random_uniform", "add"]
    assert ex.ops[0].args == ("in0", "in1") and ex.ops[1].args == ("%0", "scalar")
    assert [line.split()[0] for line in lines if " input " in line] == ["in0", "in1"]
    hidden = re.search(r"not listed: (\d+) nodes inside 1 decomposition, (\d+) scalar or constant inputs", lines[-1])
    assert hidden and int(hidden.group(1)) + n_ops - 1 == n_nodes, lines[-1]
    np.testing.assert_allclose(y.numpy(), np.exp(a / np.sqrt((a.astype(np.float64) ** 2).mean(-1, keepdims=True)
                                                             + 1e-5) * b * 2) + ox.random.uniform((3, 5), seed=3).numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("setting, verbose", [("plan", False), ("plan:verbose", True), ("plugins,plan:verbose", True),
                                              ("plugins", None)])
def test_oxcore_log_plan_prints_the_default_or_the_verbose_view(monkeypatch, capsys, setting, verbose):
    monkeypatch.setenv("OXCORE_LOG", setting)
    y = _readme_example()
    capsys.readouterr()
    ex = ox.explain(y)
    logged = capsys.readouterr().err.strip()
    if verbose is None:
        assert "plan:" not in logged
    else:
        assert logged == ex.text(verbose=verbose)


def test_a_deep_chain_is_explained_without_recursion():
    x = ox.asarray(np.ones(4, np.float32))
    for _ in range(3000):  # NOTE: deeper than Python's recursion limit
        x = x + 1.0
    ex = ox.explain(x)
    assert len(ex.ops) == 3000 and ex.ops[-1].args == ("%2998", "scalar")


def test_summary_counts_each_ops_kernels_like_the_verbose_lines():
    ex = ox.explain(_readme_example())
    per = ex.kernels()
    # NOTE: the same count, op by op, as the verbose view's node lines
    want: dict[str, dict[str, int]] = {}
    for p in ex.nodes:
        want.setdefault(p.op, {}).setdefault(p.kernel.id, 0)
        want[p.op][p.kernel.id] += 1
    assert per == want and sum(sum(k.values()) for k in per.values()) == len(ex.nodes)
    lines = ex.summary().splitlines()
    assert lines[0] == (f"plan: {len(ex.nodes)} nodes, 1 segment on cpu_numpy, 0 transfers, 0 fallbacks")
    shown = {ln.split()[0]: ln.split(None, 1)[1].replace("*", "") for ln in lines[1:] if not ln.startswith("  (")}
    assert shown == {op: ", ".join(f"{n} x {k}" for k, n in ks.items()) for op, ks in per.items()}


def test_summary_marks_measured_kernels(tmp_path, monkeypatch):
    from oxcore import _profile, autotune

    monkeypatch.setenv("OXCORE_PROFILE", str(tmp_path / "profile.json"))
    _profile.reload()
    try:
        x = ox.asarray(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
        with ox.use("cpu_numpy"):
            y = ox.exp(x)
        assert "*" not in ox.explain(y).summary()
        autotune.tune(["exp"], quick=True, transfers=False)
        with ox.use("cpu_numpy"):
            s = ox.explain(ox.exp(x)).summary()
        assert "1 x cpu_numpy.exp.default*" in s and "measured by `oxcore autotune`" in s, s
    finally:
        monkeypatch.delenv("OXCORE_PROFILE")
        _profile.reload()
