"""The numba kernels compile in child processes once per install (``_precompile``): the stamp
lists numba's cache index files, a stamp whose files are gone counts as missing, and a child
that fails leaves a warning and the kernels compiling in the calling process."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("numba")

from oxcore_kernels_ggml import _cpu, _precompile  # noqa: E402
from oxcore_kernels_ggml.testing import nmse, random_blocks, reference_matmul  # noqa: E402


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A user cache dir of its own (the stamp goes there) and ``ensure()`` not yet run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("OXCORE_PRECOMPILE", raising=False)
    monkeypatch.setattr(_precompile, "_DONE", [])
    assert str(_precompile.stamp_path()).startswith(str(tmp_path))
    return _precompile.stamp_path()


def test_ensure_compiles_in_children_and_stamps_the_cache(fresh, capfd):
    _precompile.ensure()
    assert "compiling the numba kernels" in capfd.readouterr().err
    index = json.loads(fresh.read_text())["index_files"]
    names = {os.path.basename(p).split("-")[0] for p in index}
    # NOTE: the decode child's GEMVs and small ops, the prefill child's products
    assert {"_numba_nn_impl.rms_norm", "_numba_nn_impl.rope", "_numba_nn_impl.sdpa", "_numba_matmul.gemm_q8"} <= names
    assert all(os.path.exists(p) for p in index) and _precompile._valid(fresh)
    _precompile.ensure()  # NOTE: once per process
    assert capfd.readouterr().err == ""


def test_a_stamp_whose_index_files_are_gone_is_not_valid(fresh, tmp_path):
    fresh.parent.mkdir(parents=True)
    real = tmp_path / "x.nbi"
    real.write_bytes(b"")
    fresh.write_text(json.dumps({"index_files": [str(real)]}))
    assert _precompile._valid(fresh)
    real.unlink()
    assert not _precompile._valid(fresh)
    for bad in ("", "{}", '{"index_files": []}', "[1]"):
        fresh.write_text(bad)
        assert not _precompile._valid(fresh)


def test_a_failing_child_warns_and_the_kernels_still_run(fresh, monkeypatch):
    monkeypatch.setattr(_precompile, "PARTS", ("no-such-part",))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with pytest.warns(RuntimeWarning, match=r"(?s)compiling in a child process failed .*part must be one of"):
        _precompile.ensure()
    assert not fresh.exists()
    rng = np.random.default_rng(5)
    raw = random_blocks("Q8_0", (70, 64), rng)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    y = _cpu.ggml_matmul(x, raw, ggml_type="Q8_0", shape=(70, 64))
    assert nmse(reference_matmul(x, raw, "Q8_0", (70, 64)), y) <= 5e-4


def test_the_switch_turns_the_children_off(fresh, monkeypatch, capfd):
    monkeypatch.setenv("OXCORE_PRECOMPILE", "0")
    _precompile.ensure()
    assert not fresh.exists() and capfd.readouterr().err == ""
