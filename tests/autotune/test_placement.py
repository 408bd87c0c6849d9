"""The planner with a synthetic profile: measured kernels win, placement is deterministic, the
refine pass removes ping-pong transfers, and a measured-faster decomposition replaces a kernel."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan, _profile
from oxcore.extend import HOST

from .conftest import ACCEL, environ, synth


def _chain(x):
    """add (cpu only) -> exp (both) -> add (cpu only)."""
    return ox.exp(x + 1.0) + 2.0


def _x():
    return ox.asarray(np.linspace(0, 1, 4096, dtype=np.float32).reshape(4, 1024))


def _backends(out) -> list[str]:
    return ox.explain(out).backends


def test_measured_faster_kernel_wins_and_explain_marks_it(accel):
    x = _x()
    out = ox.exp(x)
    prof = _profile.Profile()
    synth(prof, out, {("exp", "cpu_numpy"): 500.0, ("exp", "accel"): 10.0})
    prof.add_transfer(HOST, ACCEL, 5.0, 1e6)
    prof.add_transfer(ACCEL, HOST, 5.0, 1e6)
    with _profile.active(prof):
        ex = ox.explain(out)
        assert ex.backends == ["accel"]
        text = str(ex)
        assert "accel.exp.default=15.0us*" in text and "measured by `oxcore autotune`" in text
        np.testing.assert_allclose(out.numpy(), np.exp(x.numpy()), rtol=1e-6)
    with _profile.active(None):  # static priors: accel's priority and transfers lose
        assert _backends(ox.exp(x)) == ["cpu_numpy"]


def test_placement_is_deterministic_for_a_given_profile(accel, tmp_path):
    x = _x()
    prof = _profile.Profile(tmp_path / "p.json")
    synth(prof, _chain(x), {("exp", "cpu_numpy"): 300.0, ("exp", "accel"): 10.0,
                            ("add", "cpu_numpy"): 5.0})
    prof.add_transfer(HOST, ACCEL, 100.0, 1e6)
    prof.add_transfer(ACCEL, HOST, 100.0, 1e6)
    prof.save()
    seen = set()
    for p in (prof, _profile.Profile(tmp_path / "p.json"), _profile.Profile(tmp_path / "p.json")):
        with _profile.active(p):
            _plan.clear_cache()
            seen.add(tuple(_backends(_chain(x))))
    # exp is 290us faster on accel; two 100us transfers still leave it ahead
    assert seen == {("cpu_numpy", "accel", "cpu_numpy")}


def test_refine_removes_a_ping_pong_the_greedy_pass_makes(accel):
    x = _x()
    prof = _profile.Profile()
    # greedy sees exp on accel as 10 + 100 (transfer in) < 150, but the result must come back
    # for the next add (another 100): all on the cpu is cheaper overall
    synth(prof, _chain(x), {("exp", "cpu_numpy"): 150.0, ("exp", "accel"): 10.0,
                            ("add", "cpu_numpy"): 5.0})
    prof.add_transfer(HOST, ACCEL, 100.0, 1e6)
    prof.add_transfer(ACCEL, HOST, 100.0, 1e6)
    with _profile.active(prof):
        ex = ox.explain(_chain(x))
        assert ex.backends == ["cpu_numpy"] * 3
        assert ex.transfers == []
        assert "placed on cpu_numpy by refine" in str(ex)
        np.testing.assert_allclose(_chain(x).numpy(), np.exp(x.numpy() + 1) + 2, rtol=1e-6)


def test_refine_moves_a_whole_run_to_the_other_device(accel):
    x = _x()
    out = ox.exp(ox.exp(ox.exp(x * 0.1)))
    prof = _profile.Profile()
    # each node alone is cheaper where the previous one is, but the exp chain belongs on accel
    synth(prof, out, {("exp", "cpu_numpy"): 50.0, ("exp", "accel"): 10.0, ("multiply", "cpu_numpy"): 20.0,
                      ("multiply", "accel"): 5.0})
    prof.add_transfer(HOST, ACCEL, 60.0, 1e6)
    prof.add_transfer(ACCEL, HOST, 60.0, 1e6)
    with _profile.active(prof):
        # greedy: multiply 5 + 2 x 60 in > 20, each exp 10 + 60 > 50: all cpu, 170us in total.
        # The run of all four moves to accel (5 + 3 x 10 + 2 x 60 = 155us), then multiply comes
        # back alone (20 + one transfer of its result, 60 + 3 x 10 = 110us)
        ex = ox.explain(out)
        assert ex.backends == ["cpu_numpy"] + ["accel"] * 3, str(ex)
        assert len(ex.transfers) == 1
        np.testing.assert_allclose(out.numpy(), np.exp(np.exp(np.exp(x.numpy() * np.float32(0.1)))), rtol=1e-5)


def test_measured_decomposition_beats_a_slow_native_kernel(accel, monkeypatch):
    from oxcore.extend import manager

    # NOTE: the point is an op cpu_numpy decomposes; it has native rope kernels now, so hide them
    monkeypatch.setitem(manager().backend("cpu_numpy").kernels, "rope", ())
    _plan.clear_cache()
    x = ox.asarray(np.ones((1, 2, 8, 16), np.float32))
    out = ox.rope(x, 16)
    # NOTE: untuned, cpu_numpy's decomposition (static prior, no transfers) beats moving the input
    # to accel's device for its one native kernel
    with _profile.active(None):
        assert set(_backends(out)) == {"cpu_numpy"} and "rope.decomposed (prior)" in str(ox.explain(out))
    fast, prof = _profile.Profile(), _profile.Profile()
    with environ(OXCORE_BACKENDS="accel"):  # NOTE: a plan with the rope node itself, to key the times
        synth(fast, out, {("rope", "accel"): 5.0, ("rope", "cpu_numpy.rope.decomposed"): 500.0})
        synth(prof, out, {("rope", "accel"): 5000.0, ("rope", "cpu_numpy.rope.decomposed"): 50.0})
    with _profile.active(fast):  # measured: accel's native kernel wins now
        assert _backends(out) == ["accel"]
    with _profile.active(prof):
        ex = ox.explain(out)
        assert set(ex.backends) == {"cpu_numpy"} and len(ex.backends) > 3
        assert "rope decomposed: cpu_numpy.rope.decomposed=" in str(ex)
        got = out.numpy()
    with environ(OXCORE_BACKENDS="cpu_numpy"):  # the decomposition alone, as the reference
        ref = ox.rope(x, 16).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_untuned_demo_block_stays_on_the_host_backend_when_mlx_runs_on_the_cpu():
    """No profile: the demo's attention block (rope and attention have no NumPy kernel) must not
    be split across MLX's CPU device and NumPy with transfers: the static priors say MLX's CPU
    kernels are slower, and running a decomposition where the data is beats moving it."""
    from oxcore.cli.demo import attention_block, block_params
    from oxcore.extend import manager

    mlx_devs = {b.device.kind for b in manager().available_backends() if b.name != "cpu_numpy"}
    if mlx_devs != {"cpu"}:
        pytest.skip(f"needs the MLX backends on MLX's CPU device (here: {sorted(mlx_devs) or 'none'})")
    params = block_params(ox, 128, heads=2, kv_heads=1, hidden=256)
    xb = ox.asarray(np.random.default_rng(0).standard_normal((1, 16, 128)).astype(np.float32))
    with _profile.active(None):
        ex = ox.explain(attention_block(ox, xb, params, heads=2, kv_heads=1))
    assert set(ex.backends) == {"cpu_numpy"} and not ex.transfers, str(ex)
