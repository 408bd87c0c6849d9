"""Fixtures for metal_fused: the backend with compilation at the first run."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx.core", reason="MLX is not installed; the MLX backends are unavailable")

from oxcore.extend import manager  # noqa: E402


@pytest.fixture
def fused():
    """The metal_fused backend, compiling each segment the first time it runs."""
    b = manager().backend("metal_fused")
    old, b.compile_after = b.compile_after, 1
    yield b
    b.compile_after = old
