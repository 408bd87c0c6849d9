"""8 threads evaluating mixed graphs on every available backend at once, while another process
rewrites the profile file and a thread reloads it: every result exact, no deadlock, the plan
cache consistent; the same with shared ``oxcore.compile``d functions. The full 8 x 1,000 run is
``scripts/stress``; CI runs 8 x 60."""

from __future__ import annotations

import pytest

import oxcore as ox
from oxcore.testing.stress import stress


@pytest.mark.parametrize("compiled", [False, True], ids=["lazy", "compiled"])
def test_eight_threads_with_a_profile_writer(compiled):
    r = stress(threads=8, graphs=60, compiled=compiled, timeout_s=120)
    assert r["graphs"] == 480 and r["mismatches"] == 0
    assert r["profile_writes_by_other_process"] >= 1 and r["profile_reloads"] >= 1
    if not compiled:
        assert r["evaluations"] == 480  # NOTE: one plan lookup per graph, none lost or doubled
    want = set(ox.backends())
    assert set(r["backends"]) == want
