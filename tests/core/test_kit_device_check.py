"""The conformance kit's device check on a backend with its own device: every computed result
must live there, and a decomposition that does nothing (``roll`` by 0, ``stop_gradient``), which
plans no node and leaves the input where it was, is not a placement failure (issue 17)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest

import oxcore as ox
import oxcore_cpu_numpy as cpu
from oxcore.extend import REGISTRY, Backend
from oxcore.testing import CASES, iter_cases
from oxcore.testing.suite import check_case, run_case

from .conftest import FakeBuf, FakeDevice, inline_plugin


def _on_device(f: Any) -> Any:
    def k(*xs: FakeBuf, **attrs: Any) -> FakeBuf:
        with np.errstate(all="ignore"):
            return FakeBuf(np.asarray(f(*(x.a for x in xs), **attrs)))
    return k


@pytest.fixture(scope="module")
def far() -> Iterator[FakeDevice]:
    """Backend ``far`` on device ``fake:mem``: cpu_numpy's primitive kernels (slice and concat
    among them), so every composite op is decomposed there."""
    dev = FakeDevice()

    class Far(Backend):
        name = "far"
        priority = -100
        device = dev

    b = Far()
    for op, ks in cpu.make_backend().kernels.items():
        if REGISTRY[op].primitive:
            for k in ks:
                b.kernel(op, supports=k.supports, name=k.name)(_on_device(k.fn))
    with inline_plugin("far_plugin", oxcore_register_backends=lambda register: register(b)):
        yield dev


_NOOPS = [("roll", (((3, 4),), {"shift": (0,), "axis": (1,)})),
          ("roll", (((3, 4),), {"shift": (4, 0), "axis": (1, 0)})),   # a full turn is no shift either
          ("stop_gradient", (((2, 3),), {}))]


@pytest.mark.parametrize("op, params", _NOOPS, ids=[f"{op}-{i}" for i, (op, _) in enumerate(_NOOPS)])
@pytest.mark.parametrize("dt", [ox.float32, ox.int32], ids=lambda d: d.name)
def test_a_no_op_decomposition_passes_the_device_check(far, op, params, dt):
    (case,) = [c for c in CASES if c.op == op]
    inputs, kw = case.make(dt, params, 0)
    with ox.use("far"):
        out = case.build(ox, *inputs, **kw)
    assert ox.explain(out).nodes == [] and out.device == ox.extend.HOST  # the case really is a no-op
    run_case(case, dt, params, 0, "far")  # passes: nothing computed, nothing to place


def test_a_shift_plans_nodes_and_its_result_lives_on_the_device(far):
    (case,) = [c for c in CASES if c.op == "roll"]
    inputs, kw = case.make(ox.float32, (((3, 4),), {"shift": (1,), "axis": (1,)}), 0)
    with ox.use("far"):
        out = case.build(ox, *inputs, **kw)
    assert {p.op for p in ox.explain(out).nodes} == {"slice", "concat"}
    assert out.device == ox.extend.HOST and out.is_lazy  # NOTE: unevaluated arrays report the host
    np.testing.assert_array_equal(out.numpy(), np.roll(inputs[0], 1, axis=1))
    assert out.device.name == "fake:mem"


_COMPOSITE = [pytest.param(c, dt, id=f"{c.id}-{dt.name}") for c, dt in iter_cases()
              if not REGISTRY[c.op].primitive and dt.name in ("float32", "int32")]


@pytest.mark.parametrize("case, dt", _COMPOSITE)
def test_every_decomposition_passes_the_kit_on_a_device_of_its_own(far, case, dt):
    check_case(case, dt, "far")
