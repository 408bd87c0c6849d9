"""The untuned cost model: the documented formula (docs/plugins/backends.md), the flops term and
its own rate, and devices that share memory (a move between them is a view, charged ~0)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import oxcore as ox
from oxcore import _profile
from oxcore._device import SHARED_TRANSFER_US
from oxcore._plan.placement import TRANSFER_PRIOR, Planner
from oxcore.extend import HOST, Backend, Device, manager

from .conftest import register


def _planner() -> Planner:
    from oxcore._plan.context import runtime

    rt = runtime()
    return Planner(rt.plugins(), None, rt.wrap)


class _View(Device):
    """Host memory under another name: from_numpy/to_numpy are views."""

    def from_numpy(self, array):
        return array


SHARED = _View("view:cpu", "cpu", "host memory, another library", shares_memory_with=("cpu",))
SEPARATE = _View("copy:cpu", "cpu", "host memory, declared separate")


def _box(device: Device, name: str) -> Backend:
    """exp only, with twice cpu_numpy's bandwidth in its prior."""

    class Box(Backend):
        bytes_per_us = 16e3

    Box.name, Box.device = name, device
    b = Box()
    b.kernel("exp")(np.exp)
    return b


@pytest.mark.parametrize("nbytes", [0, 4096, 1 << 20])
def test_a_shared_edge_costs_a_constant_and_a_separate_one_latency_plus_bandwidth(numpy_only, nbytes):
    p = _planner()
    assert p.transfer_us(HOST, SHARED, nbytes) == SHARED_TRANSFER_US
    assert p.transfer_us(SHARED, HOST, nbytes) == SHARED_TRANSFER_US  # declared on one side is enough
    assert p.transfer_us(HOST, SEPARATE, nbytes) == pytest.approx(TRANSFER_PRIOR[0] + nbytes / TRANSFER_PRIOR[1])


@pytest.mark.parametrize("shape", [(64, 1024), (256, 512)])
def test_sharing_memory_changes_the_untuned_plan(numpy_only, shape):
    register("boxes", oxcore_register_backends=lambda register: (register(_box(SHARED, "shared_box")),
                                                                 register(_box(SEPARATE, "separate_box"))))
    xs = np.random.default_rng(shape[0]).normal(size=shape).astype(np.float32)
    x = ox.asarray(xs)
    with _profile.active(None):
        # each box's exp saves ~half of cpu_numpy's prior; two 20 us transfers + 4 GB/s eat that
        # saving for the separate one, the shared one pays 2 x 1 us
        y = ox.exp(x + 1.0) * 2.0
        ex = ox.explain(y)
        assert ex.backends == ["cpu_numpy", "shared_box", "cpu_numpy"], str(ex)
        np.testing.assert_allclose(y.numpy(), np.exp(xs.astype(np.float64) + 1.0) * 2.0, rtol=1e-6)
        manager().unregister_plugin("boxes")
        register("boxes2", oxcore_register_backends=lambda register: register(_box(SEPARATE, "separate_box")))
        assert ox.explain(ox.exp(x + 1.0) * 2.0).backends == ["cpu_numpy"] * 3


def test_the_documented_prior_formula(numpy_only):
    """docs/plugins/backends.md's worked example, number for number."""
    b = manager().backends["cpu_numpy"]
    x, w = ox.asarray(np.ones((64, 1024), np.float32)), ox.asarray(np.ones((1024, 1024), np.float32))
    node = ox.explain(x @ w).nodes[0]
    nbytes = 4 * (64 * 1024 + 1024 * 1024 + 64 * 1024)
    flops = 2 * 64 * 1024 * 1024
    assert b.prior_us(node) == pytest.approx(2.0 + nbytes / 8e3 + flops / 64e3)
    assert b.prior_us(node) == pytest.approx(2689.0, abs=0.1)  # 2 + 589.8 + 2097.2
    exp_node = ox.explain(ox.exp(x)).nodes[0]
    assert b.prior_us(exp_node) == pytest.approx(2.0 + 4 * 2 * 64 * 1024 / 8e3)


def test_flops_per_us_decouples_matmul_from_bandwidth(numpy_only):
    node = ox.explain(ox.asarray(np.ones((64, 1024), np.float32)) @ ox.asarray(np.ones((1024, 1024), np.float32))).nodes[0]

    class Fast(Backend):
        name = "fast_memory"
        bytes_per_us = 16e3  # twice the bandwidth...

    a = Fast()
    b = Fast()
    b.flops_per_us = 64e3  # ...but matmuls no faster than cpu_numpy's (8 x 8e3)
    numpy = manager().backends["cpu_numpy"]
    assert a.prior_us(node) < 0.55 * numpy.prior_us(node)  # bandwidth alone claims ~2x
    flops_us = 2 * 64 * 1024 * 1024 / 64e3
    assert b.prior_us(node) == pytest.approx(2.0 + (numpy.prior_us(node) - 2.0 - flops_us) / 2 + flops_us)
    assert math.isclose(b.prior_us(node) - a.prior_us(node), flops_us / 2)
