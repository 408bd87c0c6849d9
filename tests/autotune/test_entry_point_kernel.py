"""A kernel from a real third-party distribution (tests/fixtures/oxcore_fastnorm, discovered
through its entry point): chosen when the profile says it is faster, ignored when not,
forgotten when its version changes; and a kernel that raises at run time is skipped."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

import oxcore as ox
from oxcore import _plan, _profile, autotune
from oxcore.extend import Kernel, manager

from .conftest import installed_fastnorm, register, synth


def _x():
    rng = np.random.default_rng(0)
    return ox.asarray(rng.standard_normal((8, 256)).astype(np.float32)), \
        ox.asarray(rng.standard_normal(256).astype(np.float32))


def _ref(x, w):
    x, w = x.numpy().astype(np.float64), w.numpy().astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * w


def _kernel_of(out) -> str:
    return ox.explain(out).nodes[-1].kernel.id


def test_fixture_distribution_registers_through_its_entry_point(tmp_path):
    with installed_fastnorm(str(tmp_path)):
        m = manager()
        assert m.plugins["fastnorm"].status == "loaded", m.plugins["fastnorm"].reason
        k = next(k for k in m.backends["cpu_numpy"].kernels_for("rms_norm") if k.name == "fastnorm")
        assert (k.source, k.version) == ("oxcore-fastnorm", "0.1.0")
        from oxcore.cli import main

        res = CliRunner().invoke(main, ["kernels", "list", "--op", "rms_norm", "--json"])
        assert res.exit_code == 0, res.output
        assert "oxcore-fastnorm" in res.output and "cpu_numpy.rms_norm.fastnorm" in res.output


def test_third_party_kernel_is_chosen_only_when_measured_faster(tmp_path):
    with installed_fastnorm(str(tmp_path)):
        x, w = _x()
        out = ox.rms_norm(x, w)
        fast = _profile.Profile()
        synth(fast, out, {("rms_norm", "cpu_numpy.rms_norm.default"): 50.0,
                          ("rms_norm", "cpu_numpy.rms_norm.fastnorm"): 10.0})
        slow = _profile.Profile()
        synth(slow, out, {("rms_norm", "cpu_numpy.rms_norm.default"): 50.0,
                          ("rms_norm", "cpu_numpy.rms_norm.fastnorm"): 90.0})
        with _profile.active(fast):
            assert _kernel_of(out) == "cpu_numpy.rms_norm.fastnorm"
            np.testing.assert_allclose(ox.rms_norm(x, w).numpy(), _ref(x, w), rtol=1e-5, atol=1e-6)
        with _profile.active(slow):
            assert _kernel_of(out) == "cpu_numpy.rms_norm.default"
        with _profile.active(None):  # unmeasured: equal priors, the backend's own kernel first
            assert _kernel_of(out) == "cpu_numpy.rms_norm.default"


def test_installing_a_kernel_then_autotuning_measures_only_the_new_one(tmp_path, tmp_profile, numpy_only):
    trace = [{"op": "rms_norm", "attrs": {"eps": 1e-5}, "inputs": [[[8, 256], "float32"], [[256], "float32"]],
              "shape": [8, 256], "dtype": "float32", "count": 3}]
    before = autotune.tune(trace=trace, quick=True, transfers=False)
    assert {r["kernel"] for r in before.rows if r["status"] == "ok"} == {"cpu_numpy.rms_norm.default"}
    with installed_fastnorm(str(tmp_path)):
        after = autotune.tune(trace=trace, quick=True, transfers=False)
        assert {r["kernel"]: r["status"] for r in after.rows} == {"cpu_numpy.rms_norm.default": "cached",
                                                                  "cpu_numpy.rms_norm.fastnorm": "ok"}
        x, w = _x()
        out = ox.rms_norm(x, w)
        winner = min((r for r in after.rows), key=lambda r: r["us"])["kernel"]
        assert _kernel_of(out) == winner  # the planner follows the measurement, whichever won
        np.testing.assert_allclose(out.numpy(), _ref(x, w), rtol=1e-5, atol=1e-6)
        assert autotune.tune(trace=trace, quick=True, transfers=False).measured == 0


def test_new_kernel_version_invalidates_its_entries(tmp_path, tmp_profile):
    with installed_fastnorm(str(tmp_path / "v1"), "0.1.0"):
        x, w = _x()
        out = ox.rms_norm(x, w)
        prof = _profile.current()
        synth(prof, out, {("rms_norm", "cpu_numpy.rms_norm.default"): 50.0,
                          ("rms_norm", "cpu_numpy.rms_norm.fastnorm"): 10.0})
        prof.save()
        assert _kernel_of(out) == "cpu_numpy.rms_norm.fastnorm"
    with installed_fastnorm(str(tmp_path / "v2"), "0.2.0"):
        prof = _profile.current()
        k = next(k for k in manager().backends["cpu_numpy"].kernels_for("rms_norm") if k.name == "fastnorm")
        assert k.version == "0.2.0"
        node = ox.explain(out).nodes[-1]
        assert prof.lookup(k, node) is None  # 0.1.0 timings say nothing about 0.2.0
        assert _kernel_of(out) == "cpu_numpy.rms_norm.default"
        stale = prof.stale()
        assert len(stale) == 1 and "fastnorm|0.1.0" in stale[0]
        prof.save(drop=stale)
        assert not any("fastnorm" in key for key in _profile.Profile(tmp_profile).data["kernels"])


def test_kernel_that_raises_at_run_time_is_skipped_with_the_reason(numpy_only):
    def broken(x):
        raise RuntimeError("boom: no AVX-1024 here")

    def kernels(register):
        register(Kernel("exp", "cpu_numpy", broken, name="flaky"))
    register("flaky_plugin", oxcore_register_kernels=kernels)
    x = ox.asarray(np.linspace(-1, 1, 512, dtype=np.float32))
    out = ox.exp(x) * 2
    prof = _profile.Profile()
    synth(prof, out, {("exp", "cpu_numpy.exp.default"): 100.0, ("exp", "cpu_numpy.exp.flaky"): 1.0})
    with _profile.active(prof):
        assert ox.explain(out).nodes[0].kernel.id == "cpu_numpy.exp.flaky"
        np.testing.assert_allclose(out.numpy(), np.exp(x.numpy()) * 2, rtol=1e-6)
        assert "cpu_numpy.exp.flaky" in _plan.FAILURES[-1] and "boom" in _plan.FAILURES[-1]
        assert ox.explain(ox.exp(x)).nodes[0].kernel.id == "cpu_numpy.exp.default"
    from oxcore.cli.kernels import kernel_rows

    row = next(r for r in kernel_rows("exp") if r["id"] == "cpu_numpy.exp.flaky")
    assert row["status"] == "failed" and "RuntimeError: boom" in row["reason"]
