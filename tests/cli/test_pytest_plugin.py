"""The conformance kit as an installed pytest plugin: ``pytest --oxcore-backend NAME`` from any
directory runs the suite against that backend; a wrong name is a usage error; the hypothesis
profiles it brings (fast by default, ci under CI, thorough on request)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _pytest(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)


def test_oxcore_backend_option_runs_the_suite_from_anywhere(tmp_path):
    p = _pytest(tmp_path, "--oxcore-backend", "cpu_numpy", "-k", "transfers or dlpack or op and add-float32", "-rA")
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    for name in ("test_transfers[cpu_numpy]", "test_dlpack[cpu_numpy]", "test_op[cpu_numpy-add-float32]"):
        assert name in out, out
    assert "passed" in out and "failed" not in out


def test_unknown_backend_is_a_usage_error_listing_installed_ones(tmp_path):
    p = _pytest(tmp_path, "--oxcore-backend", "no_such_backend")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "unknown backend 'no_such_backend'" in p.stderr and "cpu_numpy" in p.stderr


def test_format_option_without_kit_or_name_is_explained(tmp_path):
    p = _pytest(tmp_path, "--oxcore-backend", "cpu_numpy", "-k", "format", "-rs")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "pass --oxcore-format NAME" in p.stdout


PROFILE_PROBE = '''
from hypothesis import settings


def test_profile():
    s = settings.default
    print(f"PROFILE max_examples={s.max_examples} derandomize={s.derandomize} database={s.database is not None}")
'''


@pytest.mark.parametrize("ci, args, want", [
    (None, (), "max_examples=5 derandomize=False database=True"),  # a newcomer's `./dev pytest`
    ("true", (), "max_examples=5 derandomize=True database=False"),
    (None, ("--hypothesis-profile=thorough",), "max_examples=20 derandomize=False database=True"),
])
def test_hypothesis_profile_is_fast_by_default_and_thorough_on_request(tmp_path, ci, args, want):
    (tmp_path / "test_probe.py").write_text(PROFILE_PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", *args, "test_probe.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"PROFILE {want}" in p.stdout, p.stdout
