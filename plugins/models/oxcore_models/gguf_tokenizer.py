"""A ``tokenizers.Tokenizer`` built from a GGUF file's ``tokenizer.ggml.*`` keys.

``Gemma3`` uses ``spm_tokenizer`` instead (the same ids, ~4 MiB instead of ~100); this builder
stays for code that wants a ``tokenizers.Tokenizer`` (batch encoding, offsets, its ecosystem).

Only the SentencePiece-style ``llama`` tokenizer model (Gemma, LLaMA 1/2, Mistral) is supported,
the way llama.cpp reads it: pieces merge pairwise by the score of the merged piece (a BPE whose
merges are ordered by score), unknown characters fall back to ``<0xXX>`` byte pieces, spaces
are ``▁``, and user-defined and control pieces (``<start_of_turn>``, ``\\n\\n``) are matched in
the raw text before anything else, longest first.

Example:
    >>> from oxcore_models.gguf_tokenizer import from_gguf_metadata
    >>> meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 0,
    ...         "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.add_bos_token": True,
    ...         "tokenizer.ggml.tokens": ["<bos>", "<eos>", "▁", "a", "b", "▁a", "ab", "▁ab"],
    ...         "tokenizer.ggml.scores": [0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
    ...         "tokenizer.ggml.token_type": [3, 3, 1, 1, 1, 1, 1, 1]}
    >>> tok = from_gguf_metadata(meta)
    >>> tok.encode(" ab").ids, tok.decode(tok.encode(" ab").ids)
    ([0, 7], ' ab')
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

__all__ = ["from_gguf_metadata", "merges_by_score"]


def merges_by_score(tokens: list[str], scores: np.ndarray, mergeable: np.ndarray) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's score-ordered pair merging.

    Every mergeable piece that splits into two pieces of the vocabulary gives a merge; merges
    are ranked by the merged piece's score (highest first), ties by the pieces' ids (as
    transformers' ``SentencePieceExtractor`` does).
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    found: list[tuple[float, int, int, str, str]] = []
    for i in np.flatnonzero(mergeable):
        piece = tokens[i]
        s = -float(scores[i])
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            li = vocab.get(left)
            if li is not None:
                ri = vocab.get(right)
                if ri is not None:
                    found.append((s, li, ri, left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def from_gguf_metadata(meta: Mapping[str, Any]) -> Any:
    """Build the ``tokenizers.Tokenizer`` a GGUF file describes (BOS added as the file says).

    Raises:
        ValueError: the file's ``tokenizer.ggml.model`` is not one this module builds.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    kind = str(meta.get("tokenizer.ggml.model", ""))
    if kind != "llama":
        raise ValueError(f"tokenizer.ggml.model is {kind!r}; oxcore-models builds only 'llama' "
                         "(SentencePiece) tokenizers so far")
    tokens = [str(t) for t in meta["tokenizer.ggml.tokens"]]
    n = len(tokens)
    scores = np.asarray(meta.get("tokenizer.ggml.scores", np.zeros(n)), dtype=np.float64)
    types = np.asarray(meta.get("tokenizer.ggml.token_type", np.full(n, NORMAL)), dtype=np.int64)
    if scores.shape != (n,) or types.shape != (n,):
        raise ValueError(f"tokenizer.ggml.scores/token_type must have {n} entries (one per token), got "
                         f"{scores.shape[0]} and {types.shape[0]}")
    unk_id = int(meta.get("tokenizer.ggml.unknown_token_id", 0))
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != n:  # NOTE: duplicate pieces would shift ids; keep the first, as llama.cpp does
        vocab = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)
    merges = merges_by_score(tokens, scores, (types == NORMAL) | (types == USER_DEFINED))
    model = BPE(vocab=vocab, merges=merges, unk_token=tokens[unk_id], fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(model)
    space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    norm = [normalizers.Replace(" ", "▁")]
    if space_prefix:
        norm.insert(0, normalizers.Prepend("▁"))
    tok.normalizer = normalizers.Sequence(norm)
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if space_prefix:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    # NOTE: llama.cpp matches user-defined and control pieces in the raw text first (longest
    # first); tokenizers' added tokens do the same. Control pieces are special (skipped when decoding).
    added = [AddedToken(tokens[i], special=bool(types[i] in (CONTROL, UNKNOWN)), normalized=False)
             for i in np.flatnonzero((types == USER_DEFINED) | (types == CONTROL) | (types == UNKNOWN))]
    tok.add_tokens([a for a in added if not a.special])
    tok.add_special_tokens([a for a in added if a.special])
    bos = meta.get("tokenizer.ggml.bos_token_id")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    single, special = ["$A"], []
    if meta.get("tokenizer.ggml.add_bos_token", True) and bos is not None:
        single.insert(0, tokens[int(bos)])
        special.append((tokens[int(bos)], int(bos)))
    if meta.get("tokenizer.ggml.add_eos_token", False) and eos is not None:
        single.append(tokens[int(eos)])
        special.append((tokens[int(eos)], int(eos)))
    tok.post_processor = processors.TemplateProcessing(single=" ".join(single), special_tokens=special)
    return tok
