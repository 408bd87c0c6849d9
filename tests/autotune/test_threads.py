"""Two CPU backends with their own thread pools (cpu_numpy's OpenBLAS, numba's workers): a plan
mixing them shares the cores, a plan on one gets them back, autotune measures the switch the
way such a plan runs it (tens of microseconds, not the milliseconds of two pools fighting) and
then places work on the faster backend; profile entries of another thread setting do not apply."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import oxcore as ox
from oxcore import _plan, _profile, _threads, autotune
from oxcore.cli import main
from oxcore.extend import Backend, HOST, manager

from .conftest import register

numba = pytest.importorskip("numba")
threadpoolctl = pytest.importorskip("threadpoolctl")

from .numba_backend import NUMBA_CPU, make_numba_backend  # noqa: E402


@pytest.fixture
def two_cpu_backends(numpy_only):
    """cpu_numpy plus ``numba_test`` (numba parallel kernels on ``numba:cpu``, shared host memory)."""
    register("numba_test_plugin", oxcore_register_backends=lambda register: register(make_numba_backend()))
    try:
        yield manager().backends["numba_test"]
    finally:
        _threads.restore_all()


def _blas_threads() -> int:
    (n,) = [i["num_threads"] for i in threadpoolctl.threadpool_info() if "numpy" in i["filepath"]]
    return n  # NOTE: NumPy's own BLAS (numba loads SciPy's too)


def _erf64(a: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(a.astype(np.float64))


@pytest.mark.parametrize("shape", [(8, 32), (33, 64)])
def test_a_mixed_plan_shares_the_cores_and_a_single_backend_plan_restores_them(two_cpu_backends, shape):
    rng = np.random.default_rng(shape[0])
    xs, ws = rng.normal(size=shape).astype(np.float32), rng.normal(size=(shape[1], 16)).astype(np.float32) / 8
    own_blas, own_numba = _blas_threads(), numba.get_num_threads()
    key = _profile.env_key(["cpu_numpy", "numba_test"])
    x, w = ox.asarray(xs), ox.asarray(ws)
    with _profile.active(None):
        h = x @ w                                   # cpu_numpy (priority)
        with ox.use("numba_test"):
            e = ox.erf(h)                           # pinned on the numba backend
        y = e + 1.0
        ex = ox.explain(y)
        assert ex.backends == ["cpu_numpy", "numba_test", "cpu_numpy"]
        share = max(1, _threads.cores() // 2)
        assert f"threads: cpu_numpy, numba_test share the cores, {share} each" in str(ex)
        np.testing.assert_allclose(y.numpy(), _erf64(xs.astype(np.float64) @ ws) + 1.0, rtol=1e-4, atol=1e-5)
        assert _threads.current() == (("cpu_numpy", "numba_test"), share)
        assert _blas_threads() == min(own_blas, share) and numba.get_num_threads() == share
        assert _profile.env_key(["cpu_numpy", "numba_test"]) == key  # NOTE: the runtime's limit is no new setting
        # a plan on cpu_numpy alone, in a process with two pooled backends, gets its pools back
        z = (x @ w).numpy()
        np.testing.assert_allclose(z, xs.astype(np.float64) @ ws, rtol=1e-4, atol=1e-5)
        assert _threads.current() == ((), None)
        assert _blas_threads() == own_blas and numba.get_num_threads() == own_numba

        @ox.compile
        def mixed(x, w):
            with ox.use("numba_test"):
                e = ox.erf(x @ w)
            return e + 1.0
        for _ in range(2):  # traced, then replayed: the partition step is part of the replayed plan
            _threads.restore_all()
            np.testing.assert_allclose(mixed(x, w).numpy(), _erf64(xs.astype(np.float64) @ ws) + 1.0,
                                       rtol=1e-4, atol=1e-5)
            assert _threads.current() == (("cpu_numpy", "numba_test"), share)


def test_single_backend_plans_get_no_thread_step(numpy_only):
    x = ox.asarray(np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32))
    y = ox.exp(x @ ox.asarray(np.eye(8, dtype=np.float32)))
    assert ox.explain(y).plan.threads is None  # NOTE: the hot path: no step, no threadpoolctl call


def test_autotune_measures_a_small_switch_and_places_erf_on_the_faster_backend(two_cpu_backends, tmp_path):
    prof = _profile.Profile(tmp_path / "p.json")
    res = autotune.tune(ops=["erf"], quick=True, profile=prof, transfers=True)
    assert res.failed == 0, res.rows
    switches = {(t["src"], t["dst"]): t["switch_us"] for t in res.transfers}
    assert set(switches) == {("cpu", "numba:cpu"), ("numba:cpu", "cpu")}
    # NOTE: without the partition this was 1.7-7 ms (OpenBLAS workers spinning against numba's);
    # the bound is loose because the CI machine is shared
    assert all(s < 1000.0 for s in switches.values()), switches
    by = {(r["case"], r["backend"]): r["us"] for r in res.rows}
    case = "erf(float32[256, 1024])"
    # NOTE: the planner weighs the gain against the two switches it costs: numba_test must get erf
    # when it saves more than both switches, cpu_numpy when numba_test is slower; in between both are right
    gain = by[(case, "cpu_numpy")] - by[(case, "numba_test")]
    expected = {"numba_test"} if gain > 1.5 * sum(switches.values()) else {"cpu_numpy"} if gain < 0 else \
        {"cpu_numpy", "numba_test"}
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(256, 1024)).astype(np.float32)
    with _profile.active(prof):
        _plan.clear_cache()
        y = ox.erf(ox.asarray(xs) * 0.5) + 1.0
        ex = ox.explain(y)
        assert ex.backends[1] in expected, (str(ex), by, switches)
        np.testing.assert_allclose(y.numpy(), _erf64(xs * 0.5) + 1.0, rtol=1e-5, atol=1e-6)


class _Pooled(Backend):
    """A CPU backend whose pool setting the test changes (``torch.set_num_threads(1)``-like)."""

    name = "pooled"
    device = NUMBA_CPU
    setting: int | None = None

    def limit_threads(self, n):
        pass

    def configured_threads(self):
        return self.setting


def test_profile_entries_of_another_thread_setting_neither_match_nor_show(numpy_only, tmp_profile):
    b = _Pooled()
    b.kernel("exp")(np.exp)
    register("pooled_plugin", oxcore_register_backends=lambda register: register(b))
    x = ox.asarray(np.random.default_rng(1).normal(size=(64, 256)).astype(np.float32))
    y = ox.exp(x)
    node = ox.explain(y).nodes[0]
    prof = _profile.Profile(tmp_profile)
    prof.add(b.kernels_for("exp")[0], node, 4460.0)
    numpy_exp = manager().backends["cpu_numpy"].kernels_for("exp")[0]
    prof.add(numpy_exp, node, 50.0)
    prof.add_transfer(HOST, NUMBA_CPU, 4460.0, 1e6)
    prof.save()
    _profile.reload()

    def show(*args):
        out = CliRunner().invoke(main, ["profile", "show", "--json", *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    assert _profile.current().lookup(b.kernels_for("exp")[0], node) == 4460.0
    assert [r["us"] for r in show()["kernels"] if r["kernel"] == "pooled.exp.default"] == [4460.0]
    assert len(show()["transfers"]) == 1
    b.setting = 1  # the library was set to one thread: the 4,460 us were measured under another setting
    assert "threads=pooled:1" in _profile.env_key(["pooled"]) and "threads" not in _profile.env_key(["cpu_numpy"])
    _profile.reload()
    assert _profile.current().lookup(b.kernels_for("exp")[0], node) is None
    assert _profile.current().lookup(numpy_exp, node) == 50.0  # NOTE: another library's setting: still valid
    assert _profile.current().transfer("cpu", "numba:cpu") == (None, None)
    shown = show()
    assert [r["kernel"] for r in shown["kernels"]] == ["cpu_numpy.exp.default"] and shown["transfers"] == []
    marked = show("--all")
    assert {r["state"] for r in marked["transfers"]} == {"other machine or env"}
    assert {r["state"] for r in marked["kernels"] if r["kernel"] == "pooled.exp.default"} == {"other machine or env"}


def test_a_limit_threads_that_raises_warns_and_the_plan_still_runs(numpy_only):
    class Broken(_Pooled):
        name = "broken_pool"

        def limit_threads(self, n):
            raise RuntimeError("no such pool")

    b = Broken()
    b.kernel("exp")(np.exp)
    register("broken_pool_plugin", oxcore_register_backends=lambda register: register(b))
    xs = np.random.default_rng(2).normal(size=(16, 8)).astype(np.float32)
    try:
        with _profile.active(None), pytest.warns(RuntimeWarning, match="broken_pool.limit_threads"):
            x = ox.asarray(xs)
            with ox.use("broken_pool"):
                e = ox.exp(x @ ox.asarray(np.eye(8, dtype=np.float32)))
            y = e + 1.0
            assert ox.explain(y).backends == ["cpu_numpy", "broken_pool", "cpu_numpy"]
            np.testing.assert_allclose(y.numpy(), np.exp(xs.astype(np.float64)) + 1.0, rtol=1e-6)
    finally:
        _threads.restore_all()
