"""Writes survive ``kill -9``: writers of every kind (``oxcore.save``, ``oxcore convert``,
profile saves) are killed at random instants, 17 times each (51 kills), in a separate process;
after every kill the target is the complete old or the complete new file and still loads.
The long run is ``scripts/kill9 --kills 1000``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import oxcore as ox
from oxcore.testing.faults import _profile_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked writers (POSIX)")
def test_fifty_one_kills_never_tear_a_target(tmp_path):
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "kill9"), "--kills", "17", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())["kinds"]
    done = {k: v for k, v in rep.items() if "kills" in v}
    assert {"save", "profile"} <= set(done)
    assert sum(v["kills"] for v in done.values()) >= 50 or "skipped" in rep.get("convert", {})
    # NOTE: the kills must really land inside writes, or the test proves nothing
    assert sum(v["killed_mid_write"] for v in done.values()) >= 5, rep


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "m.safetensors"
    ox.save(p, {"a": ox.arange(4)})
    before = p.read_bytes()

    with pytest.raises(TypeError):
        ox.save(p, {"a": object()})
    assert p.read_bytes() == before and [q.name for q in tmp_path.iterdir()] == ["m.safetensors"]


def test_profile_writes_go_through_the_same_atomic_write(tmp_path, monkeypatch):
    import oxcore._osutil as A

    synced = []
    real = A._fsync_path
    monkeypatch.setattr(A, "_fsync_path", lambda p, directory=False: (synced.append((Path(p).name, directory)),
                                                                       real(p, directory)))
    pr = ox.profile.Profile(tmp_path / "p.json")
    pr.data["kernels"].update(_profile_doc(3)["kernels"])
    pr.save()
    ox.save(tmp_path / "m.safetensors", {"a": ox.arange(2)})
    # NOTE: each write synced its temporary file, then the directory after the rename
    assert [d for _, d in synced] == [False, True, False, True]
    assert synced[0][0].startswith(".p.json.") and synced[2][0].startswith(".m.safetensors.")
    assert ox.extend.atomic_write is A.atomic_write
    assert json.loads((tmp_path / "p.json").read_text())["kernels"] == _profile_doc(3)["kernels"]
