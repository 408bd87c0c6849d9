"""Fixtures for the MLX backend tests (shared in spirit with plugins/metal_fused/tests)."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="MLX is not installed; the MLX backends are unavailable")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402

MLX_BACKENDS = [n for n in ("metal_basic", "metal_fused") if n in manager().backends]


@pytest.fixture(params=MLX_BACKENDS)
def mlx_backend(request):
    """Each installed MLX backend by name. NOTE: metal_fused runs a segment op by op until it
    repeats; its compiled path is tested in plugins/metal_fused/tests (compiling costs ~2 s
    per new graph on MLX's CPU)."""
    return request.param


def _run_on(backend: str, fn, *arrays: np.ndarray, **kw) -> np.ndarray:
    with ox.use(backend):
        y = fn(*[ox.asarray(a) for a in arrays], **kw)
    ex = ox.explain(y)
    assert not ex.fallbacks, f"{backend} did not run it all: {ex.fallbacks}"
    assert set(ex.backends) == {backend}, ex
    return y.numpy()


@pytest.fixture
def run_on():
    """``run_on(backend, fn, *numpy_inputs)``: build ``fn`` on oxcore arrays pinned to the
    backend, check that every node ran there (no fallback), return the values."""
    return _run_on
