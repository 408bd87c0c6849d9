"""Files that change under a mapping: a mapped tensor used after its file was truncated,
rewritten, replaced or deleted raises ``FormatError`` (never SIGBUS); ``mmap=False`` reads the
file into memory, so the same uses keep giving the exact values. Each format runs in a
subprocess (``_mapping_child.py``), so a crash would fail the test instead of killing pytest."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import oxcore as ox
from oxcore import _mapping

CHILD = Path(__file__).with_name("_mapping_child.py")
CHANGES = ["truncate", "rewrite_same_size", "replace", "delete"]
USES = ["view", "derived", "unrealized", "compiled"]


def _suffixes() -> list[str]:
    return [f.suffixes[0] for f in ox._io.formats().values() if f.name in ("safetensors", "gguf")]


@pytest.mark.parametrize("mapped", [True, False], ids=["mmap", "in-memory"])
@pytest.mark.parametrize("suffix", _suffixes())
def test_changed_files_in_a_subprocess(tmp_path, suffix, mapped):
    r = subprocess.run([sys.executable, str(CHILD), str(tmp_path), suffix, "1" if mapped else "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"child died (signal {-r.returncode})" if r.returncode < 0 else r.stderr[-3000:]
    got = dict(line.split() for line in r.stdout.splitlines())
    want = "FormatError" if mapped else "ok"
    for change in CHANGES:
        for use in USES + (["metal_basic"] if "metal_basic" in ox.backends() else []):
            assert got[f"{change}:{use}"] == want, (change, use, r.stdout)
    assert got["unrelated"] == "ok"


def test_in_memory_load_reads_everything_now(tmp_path):
    p = tmp_path / "m.safetensors"
    vals = {"w": np.random.default_rng().standard_normal((5, 7)).astype(np.float32)}
    ox.save(p, vals)
    f = ox.load(p, mmap=False)
    os.unlink(p)
    assert np.array_equal(f["w"].numpy(), vals["w"])
    assert all(not isinstance(x, memoryview) for x in [f["w"].numpy().base])


def test_mappings_are_forgotten_when_their_arrays_die(tmp_path):
    p = tmp_path / "m.safetensors"
    ox.save(p, {"w": np.random.default_rng().standard_normal(100).astype(np.float32)})
    gc.collect()
    before = len(_mapping.LIVE)
    f = ox.load(p)
    w = f["w"]
    (w + 1).numpy()
    assert len(_mapping.LIVE) == before + 1
    del f, w
    gc.collect()
    assert len(_mapping.LIVE) == before  # NOTE: the eval path skips the check when nothing is mapped


def test_inspect_says_what_a_mapping_guarantees(tmp_path):
    from click.testing import CliRunner

    from oxcore.cli import main

    p = tmp_path / "m.safetensors"
    ox.save(p, {"w": ox.ones((2, 2))})
    out = CliRunner().invoke(main, ["inspect", str(p)], terminal_width=200).output
    assert "memory-mapped" in out and "mmap=False" in out
    js = CliRunner().invoke(main, ["inspect", "--json", str(p)]).output
    assert '"mapping"' in js
