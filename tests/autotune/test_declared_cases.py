"""Plugin ops declare their representative autotune cases (``register_op(..., tune=...)``): a plain
``autotune.tune()`` measures them on the declared shapes and inputs, times the op's decomposition
on every backend (the kernel's own included), and the planner then picks per shape bucket."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import autotune
from oxcore._tune_cases import host_inputs, representative
from oxcore.extend import Category, Kernel, TuneCase, manager, same_as_input

from .conftest import register

OP = "tune_demo_softsign"
ROWS = {True: (1, 64), False: (1, 64, 512)}
SEEN: list[np.ndarray] = []


def _make(rows: int, dt):
    def make(rng):
        # NOTE: values in [2, 3]: the default inputs ([0.5, 1.5]) would not tell them apart
        return [rng.uniform(2, 3, (rows, 256)).astype(dt.numpy)]
    return make


def _cases(dtype, quick):
    return [TuneCase([((r, 256), dtype)], {}, _make(r, dtype)) for r in ROWS[quick]]


def _floats(inputs, attrs):
    (x,) = inputs
    if not x.dtype.is_floating:
        raise ox.DTypeError(f"{OP} takes floating x, got {x.dtype.name}")
    return x.shape, x.dtype


def _kernel(x):
    SEEN.append(np.array(x, copy=True))
    return x / (1 + np.abs(x))


@pytest.fixture
def demo_op(numpy_only, tmp_profile):
    """cpu_numpy only, with an inline plugin declaring the op (with tune cases) and its kernel."""
    SEEN.clear()
    register("tune_demo", oxcore_register_ops=lambda register: register(
        OP, Category.UNARY, _floats, decompose=lambda x: x / (1 + ox.abs(x)), doc="x / (1 + |x|)",
        tune=_cases),
        oxcore_register_kernels=lambda register: register(Kernel(OP, "cpu_numpy", _kernel, name="demo")))
    yield tmp_profile
    manager().unregister_plugin("tune_demo")


def test_representative_cases_come_from_the_declaration(demo_op):
    for quick in (True, False):
        cases = representative(OP, ox.float32, quick=quick)
        assert [c.inputs for c in cases] == [[((r, 256), ox.float32)] for r in ROWS[quick]]
        assert all(c.shape == c.inputs[0][0] and c.dtype is ox.float32 for c in cases)
    (c, _) = representative(OP, ox.float16, quick=True)
    x = host_inputs(c, seed=3)[0]
    assert x.dtype == np.float16 and x.shape == (1, 256) and x.min() >= 2 and x.max() <= 3
    assert representative(OP, ox.int32, quick=True) == []  # NOTE: the op refuses ints: no case


def test_plain_tune_measures_the_declared_op_and_its_decomposition(demo_op):
    assert OP in autotune.default_ops()
    res = autotune.tune(quick=True, transfers=False, ops=[OP])
    ok = {(r["kernel"], r["case"]) for r in res.rows if r["status"] == "ok"}
    for rows in ROWS[True]:
        case = f"{OP}(float32[{rows}, 256])"
        # NOTE: cpu_numpy has a kernel, yet its decomposition is timed too (a declared op)
        assert {(f"cpu_numpy.{OP}.demo", case), (f"cpu_numpy.{OP}.decomposed", case)} <= ok, res.rows
    assert SEEN and all(x.min() >= 2 for x in SEEN)  # NOTE: timed on the declared inputs


def test_the_planner_picks_per_bucket_by_the_measurements(demo_op):
    from .conftest import synth
    from oxcore import _profile

    prof = _profile.current()
    x1, x64 = (ox.asarray(np.full((r, 256), 2.5, np.float32)) for r in (1, 64))
    y1, y64 = ox.build(OP, x1), ox.build(OP, x64)
    # NOTE: the kernel wins at one row, the decomposition at 64 rows
    synth(prof, y1, {(OP, "cpu_numpy"): 1.0, (OP, f"cpu_numpy.{OP}.decomposed"): 50.0})
    synth(prof, y64, {(OP, "cpu_numpy"): 500.0, (OP, f"cpu_numpy.{OP}.decomposed"): 20.0})
    prof.save()
    _profile.reload()
    ops = lambda y: {p.op for p in ox.explain(y).nodes}  # noqa: E731
    assert OP in ops(ox.build(OP, x1))
    assert OP not in ops(ox.build(OP, x64)), ox.explain(ox.build(OP, x64))
    np.testing.assert_allclose(ox.build(OP, x64).numpy(), 2.5 / 3.5, rtol=1e-6)


def test_a_make_that_disagrees_with_the_case_is_named(demo_op):
    (c, _) = representative(OP, ox.float32, quick=True)
    c.make = lambda rng: [np.zeros((2, 256), np.float32)]
    with pytest.raises(ValueError, match=rf"{OP}: the TuneCase's make\(\) returned \(float32\[2, 256\]\), "
                                         r"but the case declares \(float32\[1, 256\]\)"):
        host_inputs(c)


def test_a_broken_declaration_warns_and_measures_nothing(numpy_only, tmp_profile):
    def broken(dtype, quick):
        raise RuntimeError("shapes table missing")

    def wrong_shape(dtype, quick):
        return [TuneCase([((4, 3), dtype), ((5, 3), dtype)])]
    register("tune_broken", oxcore_register_ops=lambda register: (
        register("tune_demo_broken", Category.UNARY, same_as_input, decompose=lambda x: x, doc="x", tune=broken),
        register("tune_demo_wrong", Category.BINARY, ox.extend.binary, decompose=lambda a, b: a + b, doc="a + b",
                 tune=wrong_shape)))
    try:
        with pytest.warns(UserWarning, match="tune_demo_broken: its tune cases raised RuntimeError: shapes table"):
            assert representative("tune_demo_broken", ox.float32) == []
        with pytest.warns(UserWarning, match="tune_demo_wrong: a tune case of tune_broken-dist does not build"):
            assert representative("tune_demo_wrong", ox.float32) == []
    finally:
        manager().unregister_plugin("tune_broken")


@pytest.mark.parametrize("op", ["rope", "take"])
def test_host_inputs_keep_every_declared_shape_0d_included(op):
    """A case's inputs arrive with the shapes it names: rope's offset is int32[] (0-d), which
    ``np.ascontiguousarray`` turned into int32[1] and every cpu_numpy rope kernel refused."""
    for c in representative(op, ox.float32, quick=True):
        got = [(a.shape, a.flags.c_contiguous) for a in host_inputs(c)]
        assert got == [(tuple(s), True) for s, _ in c.inputs], c.describe()


def test_autotune_measures_every_rope_kernel(tmp_profile):
    res = autotune.tune(["rope"], quick=True, transfers=False)
    rows = [r for r in res.rows if r["backend"] == "cpu_numpy"]
    assert rows and res.failed == 0, [r["status"] for r in res.rows if r["status"].startswith("failed")]
    assert all(r["us"] > 0 for r in rows)
