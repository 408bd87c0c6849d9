"""``keep_freed_memory``: a decode-like loop of allocating and freeing ~10 MiB of NumPy buffers
stops page-faulting them back in every round (each case in a fresh process: glibc's
thresholds are per process and only ever raised)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")

LOOP = """
import resource, sys
import numpy as np
from oxcore_models._malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for step in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bufs = [np.ones((1, 1, 256, 256), np.float32) for _ in range(40)]  # NOTE: 40 KV-cache copies of 256 KiB
    del bufs
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]) // 5)
"""


def _faults_per_round(mode: str, **env: str) -> int:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True,
                       env=e, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def test_kept_pages_are_not_faulted_in_again():
    pages = 40 * 256 * 1024 // 4096
    plain, kept = _faults_per_round("plain"), _faults_per_round("keep")
    assert plain > pages // 2, f"glibc returned no memory: {plain} faults a round (the test's premise)"
    assert kept < pages // 10, f"{kept} page faults a round with the thresholds raised (of {pages} pages)"


def test_the_users_own_malloc_settings_win():
    code = "from oxcore_models._malloc import keep_freed_memory; print(keep_freed_memory())"
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="131072")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
