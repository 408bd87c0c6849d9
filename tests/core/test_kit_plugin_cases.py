"""The conformance kit takes cases from plugins (hook ``oxcore_register_test_cases``): an inline
plugin's op case joins the kit, runs pinned to a backend against its reference, and fails when a
planted wrong kernel computes it; ``Case(nmse=...)`` compares by NMSE; a broken hook is reported."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import Category, Kernel, hookimpl, manager, same_as_input
from oxcore.testing import Case, assert_nmse, iter_cases, nmse, plugin_cases
from oxcore.testing.cases import const, gen, p_shapes, plugin_case_errors
from oxcore.testing.suite import check_case

OP = "kit_demo_scale"
KERNEL = f"cpu_numpy.{OP}.demo"


def _case(name: str = "", nmse_bound=None) -> Case:
    return Case(OP, lambda ox_, x: ox_.build(OP, ox_.asarray(x)), lambda x: 3.0 * x, (ox.float32, ox.float64),
                p_shapes(1, 1, 3, 6), const((4, 5)), gen(), name=name, nmse=nmse_bound)


def _plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.OXCORE_PLUGIN_API = 1
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


@pytest.fixture
def register():
    """Registers inline plugins for one test; unregisters them (and their op) afterwards."""
    names = []

    def add(name: str, **hooks) -> None:
        manager().register_plugin(_plugin(name, **hooks), name)
        names.append(name)
    try:
        yield add
    finally:
        for n in reversed(names):
            manager().unregister_plugin(n)


def _op_plugin(register, *cases: Case) -> None:
    """The demo op (decomposition x * 3), its cpu_numpy kernel, and ``cases`` for the kit."""
    def oxcore_register_ops(register):
        register(OP, Category.UNARY, same_as_input, decompose=lambda x: x * 3, doc="x * 3 (kit test)",
                 sample=lambda ox_: ox_.build(OP, ox_.ones((2,))))

    def oxcore_register_kernels(register):
        register(Kernel(OP, "cpu_numpy", lambda x: x * x.dtype.type(3), name="demo"))

    def oxcore_register_test_cases(register):
        for c in cases:
            register(c)
    register("kit_demo", oxcore_register_ops=oxcore_register_ops, oxcore_register_kernels=oxcore_register_kernels,
             oxcore_register_test_cases=oxcore_register_test_cases)


def _planted(register, fn) -> None:
    """A second plugin's cpu_numpy kernel for the demo op, cheaper than the right one (so chosen)."""
    register("kit_planted", oxcore_register_kernels=lambda register: register(
        Kernel(OP, "cpu_numpy", fn, name="planted", prior_us=lambda node: 0.001)))


def _placed_kernel() -> str:
    with ox.use("cpu_numpy"):
        y = ox.build(OP, ox.asarray(np.ones(3, np.float32)))
    (p,) = [p for p in ox.explain(y).nodes if p.op == OP]
    return p.kernel.id


def test_a_plugin_case_joins_the_kit_and_passes(register):
    case = _case()
    _op_plugin(register, case)
    assert case in plugin_cases()
    assert {(c.id, dt.name) for c, dt in iter_cases() if c.op == OP} == {(OP, "float32"), (OP, "float64")}
    assert _placed_kernel() == KERNEL
    for dt in case.dtypes:
        check_case(case, dt, "cpu_numpy")


@pytest.mark.parametrize("wrong", [
    lambda x: x * x.dtype.type(3) + x.dtype.type(1e-3),  # off by a little everywhere
    # NOTE: wrong past the first column
    lambda x: np.concatenate([x[..., :1] * 3, x[..., 1:] * 2], axis=-1) if x.ndim else x * 3,
    lambda x: (x * 3).astype(np.float64) if x.dtype == np.float32 else x * 3,  # right values, wrong dtype
])
def test_a_planted_wrong_kernel_fails_the_plugin_case(register, wrong):
    case = _case()
    _op_plugin(register, case)
    _planted(register, wrong)
    assert _placed_kernel() == f"cpu_numpy.{OP}.planted"
    with pytest.raises(AssertionError, match=OP):
        check_case(case, ox.float32, "cpu_numpy")


def test_an_nmse_case_accepts_small_noise_and_refuses_large(register):
    # NOTE: noise of 1e-4 relative per element: NMSE ~1e-8, while elementwise float32 allows 1e-5
    rng = np.random.default_rng()
    small = lambda x: (x * 3 * (1 + 1e-4 * rng.standard_normal(x.shape))).astype(x.dtype)  # noqa: E731
    elementwise, by_nmse = _case("elementwise"), _case("nmse", nmse_bound={"float32": 1e-6})
    _op_plugin(register, elementwise, by_nmse)
    _planted(register, small)
    check_case(by_nmse, ox.float32, "cpu_numpy")
    with pytest.raises(AssertionError, match="values differ"):
        check_case(elementwise, ox.float32, "cpu_numpy")
    manager().unregister_plugin("kit_planted")
    _planted(register, lambda x: (x * 3 * (1 + 1e-2 * rng.standard_normal(x.shape))).astype(x.dtype))
    with pytest.raises(AssertionError, match="NMSE"):
        check_case(by_nmse, ox.float32, "cpu_numpy")


def test_assert_nmse_matches_the_definition():
    rng = np.random.default_rng()
    for shape in [(7,), (3, 5), (2, 3, 4)]:
        ref = rng.standard_normal(shape)
        got = (ref + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
        want = np.sum((got.astype(np.float64) - ref) ** 2) / np.sum(ref ** 2)
        assert nmse(ref, got) == pytest.approx(want, rel=1e-12)
        assert_nmse(got, ref, ox.float32, max_nmse=want * 1.01)
        with pytest.raises(AssertionError, match="NMSE"):
            assert_nmse(got, ref, ox.float32, max_nmse=want * 0.99)
        bad = got.copy()
        bad.flat[0] = np.nan
        with pytest.raises(AssertionError, match="not finite"):
            assert_nmse(bad, ref, ox.float32, max_nmse=1.0)
        with pytest.raises(AssertionError, match="wrong shape"):
            assert_nmse(got[..., :-1], ref, ox.float32, max_nmse=1.0)


def test_a_broken_hook_is_reported_and_others_still_count(register):
    good = _case()
    _op_plugin(register, good)

    def broken(register):
        raise RuntimeError("no reference for this op")
    register("kit_broken", oxcore_register_test_cases=broken)
    register("kit_duplicate", oxcore_register_test_cases=lambda register: register(_case()))
    register("kit_unknown_op", oxcore_register_test_cases=lambda register: register(
        Case("no_such_op", lambda ox_, x: x, lambda x: x, (ox.float32,), p_shapes(), const((2,)), gen())))
    assert good in plugin_cases()
    errors = {e.plugin: e.reason for e in plugin_case_errors()}
    assert set(errors) == {"kit_broken", "kit_duplicate", "kit_unknown_op"}, errors
    assert "RuntimeError: no reference for this op" in errors["kit_broken"]
    assert f"case id {OP!r} is taken" in errors["kit_duplicate"]
    assert "no_such_op" in errors["kit_unknown_op"]


BROKEN = '''
import types
from oxcore.extend import hookimpl, manager

def cases(register):
    raise RuntimeError("the reference needs gguf")

mod = types.ModuleType("broken_cases")
mod.OXCORE_PLUGIN_API = 1
mod.oxcore_register_test_cases = hookimpl(cases)
manager().register_plugin(mod, "broken_cases")
'''


def test_pytest_reports_a_broken_hook_as_a_failing_test(tmp_path):
    (tmp_path / "broken_cases.py").write_text(BROKEN)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CI": "1", "PYTHONPATH": path}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "broken_cases",
                        "--oxcore-backend", "cpu_numpy", "-k", "plugin-cases or op and add-float32", "-rA"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED ::test_op[cpu_numpy-plugin-cases[broken_cases]]" in p.stdout, p.stdout
    assert "RuntimeError: the reference needs gguf" in p.stdout
    assert "PASSED ::test_op[cpu_numpy-add-float32]" in p.stdout  # NOTE: the rest of the kit still runs
