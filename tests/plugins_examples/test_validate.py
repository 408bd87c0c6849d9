"""``oxcore validate``: the support table, its markdown (docs/ops.md, checked to be current),
and what it says about a partial backend."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oxcore.cli.validate import Result, _refusal, markdown, summary

ROOT = Path(__file__).resolve().parents[2]
OPS_MD = ROOT / "docs" / "ops.md"


def test_docs_ops_md_is_current(tmp_path):
    """docs/ops.md is exactly what `oxcore validate --markdown` writes for the plugins it names
    (the ones installed in CI); statuses only, so regenerating it never flaps."""
    head = re.search(r"<!-- oxcore validate: plugins=(\S*) backends=(\S*) -->", OPS_MD.read_text(encoding="utf-8"))
    assert head, "docs/ops.md lost its header comment; regenerate it with oxcore validate --markdown docs/ops.md"
    plugins, backends = head.group(1), head.group(2).split(",")
    from oxcore.extend import manager

    m = manager()
    missing = [b for b in backends if b not in m.backends or not m.available(m.backends[b])[0]]
    if missing or any(p not in m.plugins for p in plugins.split(",")):
        pytest.skip(f"docs/ops.md describes {plugins}; not installed or not available here: {missing}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXCORE_")}
    env.update(OXCORE_LOAD_PLUGINS=plugins, OXCORE_PROFILE="off")
    out = tmp_path / "ops.md"
    args = [a for b in backends for a in ("--backend", b)]
    p = subprocess.run([sys.executable, "-m", "oxcore", "validate", *args, "--markdown", str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert out.exists(), p.stdout + p.stderr
    if out.read_text(encoding="utf-8") != OPS_MD.read_text(encoding="utf-8"):
        import difflib

        diff = "".join(difflib.unified_diff(OPS_MD.read_text().splitlines(True), out.read_text().splitlines(True),
                                            "docs/ops.md", "regenerated", n=1))
        pytest.fail(f"docs/ops.md is out of date; run `oxcore validate --markdown docs/ops.md`:\n{diff[:4000]}")
    assert p.returncode == 0, f"a backend computes a wrong result:\n{p.stdout[-3000:]}{p.stderr[-3000:]}"


def test_refusal_is_the_backend_own_part():
    msg = ("No backend can run exp(float64[3]) -> float64[3] and it has no decomposition. Backends: "
           "metal_basic: MLX computes float64 exp with float32 accuracy; a; b; cpu_numpy: not allowed; "
           "toy: not allowed")
    assert _refusal(msg, "metal_basic", ["cpu_numpy", "metal_basic", "toy"]) == \
        "exp: MLX computes float64 exp with float32 accuracy; a; b"
    assert _refusal(msg, "toy", ["cpu_numpy", "metal_basic", "toy"]) == "exp: not allowed"


def test_summary_and_markdown_are_compact():
    rs = [Result("add", "add", dt, "toy", st, why) for dt, st, why in
          [("float32", "native", ""), ("float64", "native", ""), ("float16", "refused", "add: toy stores ...")]]
    assert summary(rs) == "native: f32 f64 · refused: f16"
    assert summary(rs[:2]) == "native"
    md = markdown(rs, ["toy"], ["toy"])
    assert "| `add` | native: f32 f64 · refused: f16 |" in md
    assert "- `add` on toy (f16): refused: add: toy stores ..." in md


def test_partial_backend_table(plugin_venv):
    """On the toy alone: its ops are native, ops it lacks are decomposed into its ops where
    possible, and the rest refused with the toy's reason."""
    r = plugin_venv.result("validate")
    rows = {(x["backend"], x["case"], x["dtype"]): x for x in json.loads(r.output[r.output.index("["):])}
    assert rows[("toy", "add", "float32")]["status"] == "native"
    assert rows[("toy", "add", "float32")]["max_error"] is not None
    assert rows[("toy", "sigmoid", "float32")]["status"] == "decomposed"
    f16 = rows[("toy", "add", "float16")]
    assert f16["status"] == "refused" and "toy stores float32, float64, int32, int64 only" in f16["reason"], f16
    assert not [k for k, x in rows.items() if k[0] == "toy" and x["status"] in ("FAIL", "error")]
