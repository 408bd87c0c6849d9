"""Saved fuzz findings (tests/io/fuzz_regressions/FORMAT/*.bin) keep passing the reader
contract, and a short run of ``scripts/fuzz`` (the 100,000-case runs are in the closing note of
issue 16) finds nothing new."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import oxcore as ox
from oxcore.testing.fuzz import REGRESSIONS, mutate, replay

ROOT = Path(__file__).resolve().parents[2]
SAVED = sorted(REGRESSIONS.glob("*/*.bin"))


@pytest.mark.parametrize("path", SAVED, ids=[f"{p.parent.name}/{p.stem}" for p in SAVED])
def test_saved_findings_pass_the_contract(path):
    if path.parent.name not in ox._io.formats():
        pytest.skip(f"format {path.parent.name} is not installed")
    replay(path, path.parent.name)


def test_short_fuzz_run_of_every_format(tmp_path):
    fmts = [f for f in ("safetensors", "gguf") if f in ox._io.formats()]
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz"), *fmts, "--cases", "1000", "--seed", "16",
                        "--save-to", str(tmp_path / "found"), "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for rep in json.loads(out.read_text()):
        assert rep["cases"] == 1000 and rep["findings"] == 0
        # NOTE: the mutations must reach both outcomes, or the run proves little
        assert rep["outcomes"]["loaded"] > 0 and rep["outcomes"]["refused"] > 0, rep


def test_a_finding_is_saved_and_replayed(tmp_path, monkeypatch):
    import random

    from oxcore.testing import fuzz as Z

    def broken(path, fmt, size, read):  # NOTE: a reader that lets a bare ValueError escape
        raise ValueError("boom")

    monkeypatch.setattr(Z, "_check", broken)
    r = Z.fuzz("safetensors", 3, seed=5, save_to=tmp_path)
    assert r["findings"] == 3 and "ValueError: boom" in r["found"][0]["error"]
    saved = sorted((tmp_path / "safetensors").glob("*.bin"))
    assert len(saved) >= 1 and "seed 5" in saved[0].with_suffix(".txt").read_text()
    assert len(mutate(b"abc" * 10, random.Random(0), 3)) > 0
