"""Every decomposition computes the right values: each composite op runs on a backend that has
only cpu_numpy's *primitive* kernels, so it must be decomposed, and is compared with the
float64 reference of its conformance cases (the same ones backends are held to)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

import oxcore_cpu_numpy as cpu
from oxcore.extend import REGISTRY, Backend
from oxcore.testing import iter_cases
from oxcore.testing.suite import check_case

from .conftest import inline_plugin


def make_primitives() -> Backend:
    class Primitives(Backend):
        name = "primitives"
        priority = -100

        def compile_segment(self, segment):
            run = segment.interpreter()

            def guarded(inputs):
                with np.errstate(all="ignore"):
                    return run(inputs)
            return guarded

    b = Primitives()
    for op, ks in cpu.make_backend().kernels.items():
        if REGISTRY[op].primitive:
            for k in ks:
                b.kernel(op, supports=k.supports, name=k.name)(k.fn)
    return b


@pytest.fixture(scope="module")
def primitives() -> Iterator[str]:
    with inline_plugin("primitives_only", oxcore_register_backends=lambda register: register(make_primitives())):
        yield "primitives"


_COMPOSITE = [pytest.param(c, dt, id=f"{c.id}-{dt.name}") for c, dt in iter_cases() if not REGISTRY[c.op].primitive]


def test_primitives_backend_has_no_composite_kernel(primitives):
    from oxcore.extend import manager

    b = manager().backend(primitives)
    assert b.kernels and all(REGISTRY[op].primitive for op in b.kernels)


@pytest.mark.parametrize("case, dt", _COMPOSITE)
def test_decomposition_matches_reference(primitives, case, dt):
    check_case(case, dt, primitives)
