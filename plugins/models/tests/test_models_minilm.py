"""all-MiniLM-L6-v2 on oxcore against sentence-transformers (torch, float32) reference vectors."""

from __future__ import annotations

import numpy as np
import pytest


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_embeddings_match_sentence_transformers(minilm, ref_minilm):
    texts, ref = ref_minilm
    assert len(texts) >= 64 and min(len(t.split()) for t in texts) == 1 and max(len(t.split()) for t in texts) >= 60
    got = minilm.embed(texts, batch_size=16)
    assert got.shape == ref.shape and got.dtype == np.float32
    cos, diff = _cos(got, ref), np.abs(got - ref).max(axis=1)
    bad = [(texts[i], float(cos[i]), float(diff[i])) for i in np.flatnonzero((cos < 0.99999) | (diff > 1e-5))]
    assert not bad, f"expected cosine >= 0.99999 and max abs diff <= 1e-5 per sentence; got {bad[:5]}"


def test_padded_batches_equal_single_sentences(minilm, ref_minilm):
    texts = ref_minilm[0][:12]  # NOTE: 1 to 40 tokens: most rows of a batch are padded
    batched = minilm.embed(texts, batch_size=12)
    single = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-6, rtol=0)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-6)


def test_every_backend_gives_the_reference(minilm, ref_minilm, backend):
    import oxcore as ox

    texts, ref = ref_minilm
    pick = [0, 4, 12, 40]  # NOTE: a short run: plain, numbers, emoji, a generated long sentence
    with ox.use(backend):
        got = minilm.embed([texts[i] for i in pick], batch_size=4)
    assert _cos(got, ref[pick]).min() >= 0.99999, f"{backend}: cosine {_cos(got, ref[pick])}"
    np.testing.assert_allclose(got, ref[pick], atol=1e-5, rtol=0, err_msg=f"backend {backend}")


def test_embed_rejects_a_bad_batch_size(minilm):
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        minilm.embed(["x"], batch_size=0)
