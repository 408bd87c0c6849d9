"""Ops that declare tuning attributes (``register_op(..., tune_attrs=...)``): their values key the
profile entries, so two values of one shape bucket are measured and chosen for separately; old
files (entries without the field) still load; and a pinned plan weighs the pinned backend's
measured kernel against its measured decomposition (never against a static prior)."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan, _profile, autotune
from oxcore._registry import REGISTRY
from oxcore.extend import Category, Kernel, PluginError, TuneCase, manager, register_op

from .conftest import register

OP = "tune_attr_demo"
KERNEL = f"cpu_numpy.{OP}.demo"
DECOMPOSED = f"cpu_numpy.{OP}.decomposed"
#: two "types" whose inputs look alike (same dtypes, same shape bucket): only the attr tells them apart
KINDS = ("slow", "fast")


def _infer(inputs, attrs):
    (x,) = inputs
    if not x.dtype.is_floating:
        raise ox.DTypeError(f"{OP} takes floating x, got {x.dtype.name}")
    if attrs["kind"] not in KINDS:
        raise ox.DTypeError(f"{OP}: kind must be one of {KINDS}, got {attrs['kind']!r}")
    return x.shape, x.dtype


def _kernel(x, *, kind, scale):
    return (x * np.asarray(scale, x.dtype)).astype(x.dtype)


def _decompose(x, *, kind, scale):
    return x * ox.asarray(np.asarray(scale, x.dtype.numpy))


def _cases(dtype, quick):
    # NOTE: one shape for both kinds: without the attr in the key the second case is never timed
    return [TuneCase([((4, 256), dtype)], {"kind": k, "scale": 2.0}, name=k) for k in KINDS]


@pytest.fixture
def demo(numpy_only, tmp_profile):
    """cpu_numpy alone, with an inline plugin declaring the op (keyed on ``kind``, not ``scale``)."""
    register("tune_attr_plugin", oxcore_register_ops=lambda register: register(
        OP, Category.UNARY, _infer, attrs=("kind", "scale"), decompose=_decompose, doc="x * scale",
        tune=_cases, tune_attrs=("kind",)),
        oxcore_register_kernels=lambda register: register(Kernel(OP, "cpu_numpy", _kernel, name="demo")))
    _plan.clear_cache()
    yield tmp_profile
    manager().unregister_plugin("tune_attr_plugin")
    _plan.clear_cache()


def _x(shape=(4, 200), seed=None):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


def _y(x, kind, scale=2.0):
    return ox.build(OP, ox.asarray(x), kind=kind, scale=scale)


def _node(y):
    """The plan node of ``y``'s op as the planner keys it (placed with no profile: the kernel)."""
    with _profile.active(None):
        (p,) = [p for p in ox.explain(y).nodes if p.op == OP]
    return p


def _plant(prof, y, kernel_us=None, decomposed_us=None):
    p = _node(y)
    b = manager().backends["cpu_numpy"]
    if kernel_us is not None:
        prof.add(b.kernels_for(OP)[0], p, kernel_us)
    if decomposed_us is not None:
        prof.add(_profile.DecomposedKernel.of(OP, "cpu_numpy"), p, decomposed_us, device=b.device)
    return p


def _decomposed(y) -> bool:
    return OP not in {p.op for p in ox.explain(y).nodes}


# --- keys -----------------------------------------------------------------------------------------
def test_two_values_of_a_tune_attr_get_two_entries(demo):
    x = _x()
    prof = _profile.Profile()
    slow, fast = _plant(prof, _y(x, "slow"), 100.0), _plant(prof, _y(x, "fast"), 10.0)
    entries = list(prof.data["kernels"].values())
    assert sorted(e["attrs"] for e in entries) == ["kind=fast", "kind=slow"]
    assert len(prof.data["kernels"]) == 2  # NOTE: two keys, not one overwritten
    assert all(k.endswith("|" + e["attrs"]) for k, e in prof.data["kernels"].items())
    k = manager().backends["cpu_numpy"].kernels_for(OP)[0]
    assert (prof.lookup(k, slow), prof.lookup(k, fast)) == (100.0, 10.0)
    # NOTE: scale is not a tune attr: another scale shares the kind's entry
    assert prof.lookup(k, _node(_y(x, "fast", scale=3.0))) == 10.0


def test_ops_without_tune_attrs_keep_their_keys(demo):
    prof = _profile.Profile()
    a = ox.asarray(_x())
    p = [n for n in ox.explain(a + a).nodes][0]
    e = prof.add(manager().backends["cpu_numpy"].kernels_for("add")[0], p, 5.0)
    assert "attrs" not in e
    assert list(prof.data["kernels"]) == ["|".join(e[f] for f in ("op", "kernel", "version", "device", "env",
                                                                     "dtypes", "bucket"))]


def test_registration_checks_tune_attrs():
    with pytest.raises(PluginError, match=r"tune_attrs \['kinds'\] are not attributes of the op; valid: kind, scale"):
        register_op("tune_attr_bad", Category.UNARY, _infer, attrs=("kind", "scale"), tune_attrs=("kinds",))
    with pytest.raises(PluginError, match=r"write \('kind',\)"):
        register_op("tune_attr_bad", Category.UNARY, _infer, attrs=("kind", "scale"), tune_attrs="kind")
    assert "tune_attr_bad" not in REGISTRY


# --- choices --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pinned", [False, True])
def test_each_value_gets_its_own_choice(demo, pinned):
    x = _x((3, 256), seed=1)
    prof = _profile.Profile()
    # NOTE: the kernel is fast for one kind and slow for the other, at the same shape bucket
    _plant(prof, _y(x, "fast"), kernel_us=5.0, decomposed_us=50.0)
    _plant(prof, _y(x, "slow"), kernel_us=500.0, decomposed_us=50.0)
    pin = ox.use("cpu_numpy") if pinned else contextlib.nullcontext()
    with _profile.active(prof), pin:
        assert not _decomposed(_y(x, "fast"))
        assert _decomposed(_y(x, "slow")), ox.explain(_y(x, "slow"))
        for kind in KINDS:  # both paths compute the same
            for shape in ((1, 256), (3, 200), (2, 5, 130)):
                xs = _x(shape)
                np.testing.assert_allclose(_y(xs, kind, 1.5).numpy(), xs * np.float32(1.5), rtol=1e-6)


def test_pinned_plan_takes_a_measured_faster_decomposition_and_says_why(demo):
    x = _x(seed=2)
    prof = _profile.Profile()
    _plant(prof, _y(x, "slow"), kernel_us=400.0, decomposed_us=40.0)
    with _profile.active(prof), ox.use("cpu_numpy"):
        ex = ox.explain(_y(x, "slow"))
        text = str(ex)
        assert _decomposed(_y(x, "slow")) and not ex.fallbacks, text
        assert f"({OP} decomposed: {DECOMPOSED}=40.0us* < {KERNEL}=400.0us)" in text, text
        np.testing.assert_allclose(_y(x, "slow").numpy(), x * 2, rtol=1e-6)


def test_pinned_plan_keeps_a_faster_kernel_and_shows_the_decomposition(demo):
    x = _x(seed=3)
    prof = _profile.Profile()
    _plant(prof, _y(x, "fast"), kernel_us=4.0, decomposed_us=40.0)
    with _profile.active(prof), ox.use("cpu_numpy"):
        ex = ox.explain(_y(x, "fast"))
        (p,) = [p for p in ex.nodes if p.op == OP]
        assert p.kernel.id == KERNEL
        costs = dict(p.candidates)
        assert costs[KERNEL] == 4.0 and costs[DECOMPOSED] == 40.0, p.candidates
        assert f"{DECOMPOSED}=40.0us*" in str(ex)


def test_priors_never_flip_a_pinned_choice(demo):
    x = _x(seed=4)
    only_decomposition, only_kernel = _profile.Profile(), _profile.Profile()
    # NOTE: the kernel unmeasured (its prior may be anything) and the decomposition measured very
    # fast; then the other way round: neither may decompose a pinned node
    _plant(only_decomposition, _y(x, "slow"), decomposed_us=1e-3)
    _plant(only_kernel, _y(x, "slow"), kernel_us=1e6)
    for prof in (only_decomposition, only_kernel, None):
        with _profile.active(prof), ox.use("cpu_numpy"):
            assert not _decomposed(_y(x, "slow")), ox.explain(_y(x, "slow"))


# --- old files and shipped defaults ----------------------------------------------------------------
def test_old_profile_files_load_and_attrless_entries_are_stale(demo, tmp_path):
    from oxcore.cli.autotune import profile_rows

    x = _x(seed=5)
    k = manager().backends["cpu_numpy"].kernels_for(OP)[0]
    add_k = manager().backends["cpu_numpy"].kernels_for("add")[0]
    a = ox.asarray(x)
    add_node = ox.explain(a + a).nodes[0]
    new = _profile.Profile()
    new.add(k, _node(_y(x, "slow")), 123.0)
    new.add(add_k, add_node, 7.0)
    # NOTE: what a file written before tune_attrs looks like: no "attrs" field, 7-part keys
    old = {}
    for e in new.data["kernels"].values():
        e = {f: v for f, v in e.items() if f != "attrs"}
        old[_profile.entry_key(e)] = e
    demo.write_text(json.dumps({"oxcore_profile": 1, "kernels": old, "transfers": {}}))
    _profile.reload()
    prof = _profile.current()
    assert len(prof.data["kernels"]) == 2
    assert prof.lookup(add_k, add_node) == 7.0  # an op without tune_attrs: still answers
    assert prof.lookup(k, _node(_y(x, "slow"))) is None  # measured on some kind, nobody knows which
    stale = prof.stale()
    assert [prof.data["kernels"][s]["op"] for s in stale] == [OP]
    (row,) = profile_rows(OP, everything=True)
    assert row["state"].startswith(f"stale (measured before kind keyed {OP}'s entries"), row
    assert profile_rows(OP) == []
    from click.testing import CliRunner

    from oxcore.cli import main

    shown = CliRunner().invoke(main, ["profile", "show", "--op", OP], env={"COLUMNS": "300"}).output
    assert f"1 {OP} entries were measured before their op keyed its tuning attributes" in shown, shown


def test_autotune_measures_each_value_and_drops_attrless_entries(demo):
    k = manager().backends["cpu_numpy"].kernels_for(OP)[0]
    x = _x((4, 256), seed=6)
    e = _profile.Profile().add(k, _node(_y(x, "slow")), 123.0)
    e.pop("attrs")
    demo.write_text(json.dumps({"oxcore_profile": 1, "kernels": {_profile.entry_key(e): e}, "transfers": {}}))
    res = autotune.tune(ops=[OP], quick=True, transfers=False)
    ok = sorted((r["case"], r["kernel"]) for r in res.rows if r["status"] == "ok")
    assert ok == sorted((f"{OP}[{kind}](float32[4, 256])", kid) for kind in KINDS for kid in (KERNEL, DECOMPOSED))
    assert res.dropped == 1
    saved = json.loads(demo.read_text())["kernels"].values()
    assert sorted((e["kernel"], e["attrs"]) for e in saved) == sorted(
        (kid, f"kind={kind}") for kind in KINDS for kid in (KERNEL, DECOMPOSED))
    prof = _profile.current()
    for kind in KINDS:  # the planner reads each kind's own measurement
        m = [e["us"] for e in saved if e["kernel"] == KERNEL and e["attrs"] == f"kind={kind}"]
        assert prof.lookup(k, _node(_y(x, kind))) == m[0]


def test_shipped_defaults_with_and_without_attrs(demo):
    x = _x(seed=7)
    k = manager().backends["cpu_numpy"].kernels_for(OP)[0]
    slow, fast = _node(_y(x, "slow")), _node(_y(x, "fast"))
    bucket = [list(s) for s in _profile.bucket_of(slow.inputs, slow)]
    base = {"op": OP, "kernel": k.id, "dtypes": "float32->float32", "bucket": bucket}
    any_kind = _profile.Profile(defaults=[{**base, "us": 30.0}])
    assert any_kind.lookup(k, slow) == 30.0 and any_kind.lookup(k, fast) == 30.0
    per_kind = _profile.Profile(defaults=[{**base, "attrs": {"kind": "fast"}, "us": 3.0},
                                          {**base, "attrs": "kind=slow", "us": 300.0}])
    assert (per_kind.lookup(k, slow), per_kind.lookup(k, fast)) == (300.0, 3.0)
