"""The toy kernel's own tests (the kit: `pytest --oxcore-backend cpu_numpy -k rms_norm`)."""

import numpy as np

import oxcore as ox
from oxcore.extend import manager


def _kernels():
    return {k.name: k for k in manager().backend("cpu_numpy").kernels_for("rms_norm")}


def test_added_to_cpu_numpy():
    ks = _kernels()
    assert set(ks) >= {"default", "einsum"}
    assert ks["einsum"].source == "oxcore-toy-kernels"
    assert ks["default"].source == "oxcore-cpu-numpy"  # the backend itself is untouched


def test_chosen_for_float32_and_equal_to_the_default(monkeypatch):
    monkeypatch.setenv("OXCORE_PROFILE", "off")  # static priors only: the cheaper prior wins
    x = np.random.default_rng(0).standard_normal((16, 256)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    y = ox.rms_norm(ox.asarray(x), ox.asarray(w), eps=1e-5)
    (node,) = [p for p in ox.explain(y).nodes if p.op == "rms_norm"]
    assert node.kernel.id == "cpu_numpy.rms_norm.einsum"
    ref = _kernels()["default"].fn(x, w, eps=1e-5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=2e-6, atol=1e-6)


def test_half_precision_stays_with_the_default():
    y = ox.rms_norm(ox.ones((2, 8), dtype=ox.float16), eps=1e-5)
    (node,) = [p for p in ox.explain(y).nodes if p.op == "rms_norm"]
    assert node.kernel.id == "cpu_numpy.rms_norm.default"
    assert ("cpu_numpy.rms_norm.einsum", "einsum would accumulate float16 in float16; the default "
            "kernel upcasts") in node.candidates
