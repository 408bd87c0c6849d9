"""The profile file: keys, nearest-bucket lookup, invalidation, shipped defaults, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import types

import numpy as np
import pytest

import oxcore as ox
from oxcore import _profile
from oxcore._tune_cases import Case
from oxcore.extend import HOST, manager

from .conftest import register


def _kernel(kid: str = "cpu_numpy.add.default", version: str = "1.0") -> types.SimpleNamespace:
    backend, op, name = kid.split(".")
    return types.SimpleNamespace(op=op, backend=backend, name=name, id=kid, version=version, source="t")


def _node(rows: int, cols: int = 1024) -> object:
    return Case("add", {}, [((rows, cols), ox.float32)] * 2, (rows, cols), ox.float32).plan_node()


def test_bucket_rounds_each_dim_up_to_a_power_of_two():
    n = _node(100, 1000)
    assert _profile.bucket_of(n.inputs, n) == ((128, 1024),) * 3
    assert _profile.dtypes_of(n.inputs, n) == "float32,float32->float32"


def test_lookup_exact_nearest_and_never_measured():
    p = _profile.Profile()
    k = _kernel()
    assert p.lookup(k, _node(64)) is None
    p.add(k, _node(64), 100.0, device=HOST)
    p.add(k, _node(256), 400.0, device=HOST)
    assert p.lookup(k, _node(60)) == 100.0  # same bucket
    assert getattr(p.lookup(k, _node(60)), "measured", False)
    # 1024 rows: nearest measured bucket is 256, scaled with the kernel's own exponent (1 here)
    assert p.lookup(k, _node(1024)) == pytest.approx(1600.0, rel=1e-6)
    assert p.lookup(_kernel("cpu_numpy.add.other"), _node(64)) is None


def test_entries_of_another_kernel_version_do_not_match():
    p = _profile.Profile()
    p.add(_kernel(version="1.0"), _node(8), 10.0, device=HOST)
    assert p.lookup(_kernel(version="1.0"), _node(8)) == 10.0
    assert p.lookup(_kernel(version="2.0"), _node(8)) is None


def test_entries_of_another_tuning_env_do_not_match(monkeypatch):
    p = _profile.Profile()
    p.add(_kernel(), _node(8), 10.0, device=HOST)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    q = _profile.Profile()
    q.data = p.data
    q._reindex()
    assert "OMP_NUM_THREADS=1" in _profile.env_key()
    assert q.lookup(_kernel(), _node(8)) is None


def test_save_merges_with_what_other_writers_left(tmp_path):
    f = tmp_path / "p.json"
    a, b = _profile.Profile(f), _profile.Profile(f)
    a.add(_kernel("cpu_numpy.add.a"), _node(8), 1.0, device=HOST)
    b.add(_kernel("cpu_numpy.add.b"), _node(8), 2.0, device=HOST)
    a.save()
    b.save()  # b never read a's entry, yet keeps it
    kernels = {e["kernel"] for e in json.loads(f.read_text())["kernels"].values()}
    assert kernels == {"cpu_numpy.add.a", "cpu_numpy.add.b"}


def test_corrupt_file_reads_as_empty(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{not json")
    p = _profile.Profile(f)
    assert len(p) == 0
    p.add(_kernel(), _node(8), 1.0, device=HOST)
    p.save()
    assert len(json.loads(f.read_text())["kernels"]) == 1


def _writer(path: str, who: int, n: int) -> None:
    from oxcore import _profile as P

    for j in range(n):
        p = P.Profile(path)  # NOTE: a fresh view each time, like separate autotune runs
        p.add(_kernel(f"cpu_numpy.add.w{who}x{j}"), _node(8), float(j + 1), device=HOST)
        p.save()


def test_four_processes_writing_at_once_leave_valid_json_with_every_entry(tmp_path):
    path = str(tmp_path / "shared.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 8)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    doc = json.loads(open(path).read())
    kernels = {e["kernel"] for e in doc["kernels"].values()}
    assert kernels == {f"cpu_numpy.add.w{w}x{j}" for w in range(4) for j in range(8)}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_epoch_follows_the_active_profile_and_comes_back():
    e0 = _profile.EPOCH
    p = _profile.Profile()
    with _profile.active(p):
        e1 = _profile.EPOCH
    assert e1 != e0 and _profile.EPOCH == e0
    with _profile.active(p):
        assert _profile.EPOCH == e1  # NOTE: plans cached for p are found again
    p.add(_kernel(), _node(8), 1.0, device=HOST)
    assert _profile.EPOCH != e0  # content changed: every cached plan is stale


def test_epoch_changes_with_oxcore_profile_env(monkeypatch, tmp_path):
    e0 = _profile.EPOCH
    monkeypatch.setenv("OXCORE_PROFILE", str(tmp_path / "other.json"))
    assert _profile.EPOCH != e0
    monkeypatch.setenv("OXCORE_PROFILE", "off")
    assert _profile.current() is None


def test_plugin_defaults_answer_only_where_nothing_was_measured(numpy_only, tmp_profile):
    x = ox.asarray(np.ones((4, 1024), np.float32))
    node = ox.explain(x + x).nodes[0]
    k = manager().backends["cpu_numpy"].kernels_for("add")[0]
    shipped = {"op": "add", "kernel": k.id, "dtypes": "float32,float32->float32",
               "bucket": [[4, 1024], [4, 1024], [4, 1024]], "us": 77.0}
    register("shipper", oxcore_default_profiles=lambda: [shipped])
    prof = _profile.current()
    assert len(prof.defaults) == 1 and prof.defaults[0]["shipped_by"] == "shipper-dist"
    assert prof.lookup(k, node) == 77.0
    prof.add(k, node, 5.0)  # a measurement here wins
    assert prof.lookup(k, node) == 5.0


def _bias_node(rows: int, cols: int = 1024) -> object:
    return Case("add", {}, [((rows, cols), ox.float32), ((cols,), ox.float32)], (rows, cols), ox.float32).plan_node()


def test_sizes_close_together_give_no_size_exponent():
    """One kernel measured at two buckets whose sizes differ by less than 2x (what --quick leaves
    per ggml type: one weight at 1 and 32 rows): their time ratio says nothing about how time
    grows with size, so far sizes scale linearly, not with an exponent fitted on noise."""
    rng = np.random.default_rng()
    p = _profile.Profile()
    k = _kernel()
    t1, t2 = rng.uniform(5, 20), rng.uniform(50, 200)
    p.add(k, _bias_node(1), t1, device=HOST)  # size 3 x 1024
    p.add(k, _bias_node(2), t2, device=HOST)  # size 5 x 1024: 1.67x
    far = _bias_node(256)
    size = lambda n: sum(int(np.prod(s)) for s in _profile.bucket_of(n.inputs, n))  # noqa: E731
    assert p.lookup(k, far) == pytest.approx(t2 * size(far) / size(_bias_node(2)), rel=1e-9)
    # NOTE: sizes 4x apart do fit an exponent (here: time grows as size^1.5, the clamp)
    q = _profile.Profile()
    q.add(k, _node(1), 10.0, device=HOST)
    q.add(k, _node(4), 80.0, device=HOST)
    assert q.lookup(k, _node(16)) == pytest.approx(80.0 * 4 ** 1.5, rel=1e-9)
