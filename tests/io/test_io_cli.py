"""``oxcore inspect``, ``oxcore convert`` and ``oxcore bench io`` (small sizes)."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
from click.testing import CliRunner

import oxcore as ox
from oxcore.cli import main


def _file(tmp_path):
    p = tmp_path / "m.safetensors"
    ox.save(p, {"w": np.ones((2, 32), np.float32), "b": np.zeros(3, ml_dtypes.bfloat16),
                "f8": np.zeros(4, ml_dtypes.float8_e5m2)}, {"arch": "toy"})
    return p


def test_inspect_table(tmp_path):
    res = CliRunner().invoke(main, ["inspect", str(_file(tmp_path))])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for word in ("safetensors", "arch", "toy", "bfloat16", "F8_E5M2 -> float16", "(2, 32)", "256"):
        assert word in out, word


def test_inspect_json(tmp_path):
    res = CliRunner().invoke(main, ["inspect", str(_file(tmp_path)), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert {"format", "metadata", "tensors"} <= set(d) and d["format"] == "safetensors"
    assert d["metadata"] == {"arch": "toy"}
    t = {x["name"]: x for x in d["tensors"]}
    assert t["w"]["dtype"] == "float32" and t["w"]["shape"] == [2, 32] and t["w"]["nbytes"] == 256
    assert t["f8"]["dtype"] == "F8_E5M2" and t["f8"]["loads_as"] == "float16"
    assert all({"name", "dtype", "shape", "nbytes", "offset"} <= set(x) for x in d["tensors"])


def test_inspect_reports_a_broken_file(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\xff" * 16)
    res = CliRunner().invoke(main, ["inspect", str(p)])
    assert res.exit_code != 0 and "bad.safetensors at offset 0" in res.output


def test_convert_safetensors_to_safetensors(tmp_path):
    src = _file(tmp_path)
    res = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "copy.safetensors")])
    assert res.exit_code == 0, res.output
    a, b = ox.load(src), ox.load(tmp_path / "copy.safetensors")
    assert b.metadata == {"arch": "toy"} and b.info("f8").type == "F16"  # float8 widened, exactly
    for n in a:
        assert np.array_equal(a[n].numpy(), b[n].numpy())


def test_bench_io_smoke(tmp_path):
    out = tmp_path / "io.json"
    res = CliRunner().invoke(main, ["bench", "io", "--size-gb", "0.004", "--tensors", "4", "--repeat", "1",
                                    "--tmp", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    groups = {r["group"] for r in rec["results"]}
    assert any(g.startswith("open") for g in groups) and any(g.startswith("read all") for g in groups)
    assert {r["name"] for r in rec["results"]} >= {"oxcore.load", "safetensors.safe_open"}
    assert [p.name for p in tmp_path.iterdir()] == ["io.json"]  # the synthetic files are gone
