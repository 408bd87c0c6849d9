"""Shared helpers for the nn/optim tests: the backends to run on and MLX conversions."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox

BACKENDS = ["cpu_numpy", "metal_basic", "metal_fused"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in ox.backends():
        pytest.skip(f"backend {request.param} is not available here")
    return request.param


def to_mx(x):
    import mlx.core as mx

    return mx.array(np.asarray(x.numpy() if isinstance(x, ox.Array) else x))


def np_of(x) -> np.ndarray:
    return np.array(x.numpy() if isinstance(x, ox.Array) else x)


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """NOTE: on this 2-core machine shared by several processes, OpenBLAS's spinning worker
    threads make a (64, 256) @ (256, 256) float32 matmul take ~20 ms instead of ~0.2 ms, which
    turns the cpu_numpy training runs here from seconds into minutes. One thread for the tests."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield
