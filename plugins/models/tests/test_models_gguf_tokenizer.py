"""The sentencepiece-run GGUF tokenizer against a plain reference of llama.cpp's SPM tokenizer.

The reference (``ref_encode``) is the algorithm written as simply as possible, O(n^2): cut the
special pieces out of the raw text (longest first), then repeatedly merge the adjacent pair
whose concatenation is the best-scoring piece (leftmost on ties), bytes for what is no piece.
Vocabularies and texts are fresh random ones (the seed is in the failure message). Gemma's own
vocabulary against llama.cpp is checked in test_models_gemma.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from oxcore_models.gguf_tokenizer import BYTE, CONTROL, NORMAL, USER_DEFINED, from_gguf_metadata

SPACE = "\u2581"
ALPHABET = "abcde" + SPACE  # NOTE: "é" and "z" are in no piece: they come out as byte pieces
SPECIALS = [("<unk>", CONTROL), ("<bos>", CONTROL), ("<eos>", CONTROL), ("<ctl>", CONTROL),
            ("[ud]", USER_DEFINED), ("\n\n", USER_DEFINED), ("\n", USER_DEFINED), ("  ", USER_DEFINED)]


def random_vocab(rng: np.random.Generator, n_merged: int, space_prefix: bool = False) -> dict:
    pieces = [p for p, _ in SPECIALS] + [f"<0x{b:02X}>" for b in range(256)] + list(ALPHABET)
    types = [t for _, t in SPECIALS] + [BYTE] * 256 + [NORMAL] * len(ALPHABET)
    seen = set(pieces)
    while len(pieces) < len(SPECIALS) + 256 + len(ALPHABET) + n_merged:
        p = "".join(rng.choice(list(ALPHABET), size=int(rng.integers(2, 6))))
        if p not in seen:
            seen.add(p)
            pieces.append(p)
            types.append(NORMAL)
    # NOTE: scores are float32 in the model: draw them there, from few values so that ties happen
    scores = np.zeros(len(pieces), np.float32)
    scores[len(SPECIALS) + 256:] = -rng.integers(0, 40, len(pieces) - len(SPECIALS) - 256).astype(np.float32)
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": pieces, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": np.array(types, np.int32), "tokenizer.ggml.unknown_token_id": 0,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": space_prefix}


def ref_fragments(text: str, meta: dict) -> list:
    """``text`` cut at the special pieces (their ids), longest piece first; raw fragments space-prefixed
    when the vocabulary says so."""
    pieces, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    ids = {p: i for i, p in enumerate(pieces)}
    frags: list = [text]
    for p in sorted((p for p, t in zip(pieces, types) if t in (CONTROL, USER_DEFINED)), key=len, reverse=True):
        frags = [x for f in frags for x in ([f] if isinstance(f, int) else
                                            sum(([ids[p], part] for part in f.split(p)), [])[1:]) if x != ""]
    return [" " + f if isinstance(f, str) and meta["tokenizer.ggml.add_space_prefix"] else f for f in frags]


def ref_decode(text: str, meta: dict, skip_special: bool) -> str:
    """What decoding ``text``'s ids gives: the space prefixes but the first, control pieces' text unless skipped."""
    pieces, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    out = "".join(f if isinstance(f, str) else "" if skip_special and types[f] == CONTROL else pieces[f]
                  for f in ref_fragments(text, meta))
    return out[1:] if meta["tokenizer.ggml.add_space_prefix"] and out.startswith(" ") else out


def ref_encode(text: str, meta: dict) -> list[int]:
    pieces, scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]
    ids = {p: i for i, p in enumerate(pieces)}
    out = [meta["tokenizer.ggml.bos_token_id"]]
    for f in ref_fragments(text, meta):
        if isinstance(f, int):
            out.append(f)
            continue
        syms = list(f.replace(" ", SPACE))
        while True:
            cands = [(-scores[ids[a + b]], k) for k, (a, b) in enumerate(zip(syms, syms[1:])) if a + b in ids]
            if not cands:
                break
            _, k = min(cands)
            syms[k:k + 2] = [syms[k] + syms[k + 1]]
        for s in syms:
            out.extend([ids[s]] if s in ids else [ids[f"<0x{b:02X}>"] for b in s.encode()])
    return out


def random_text(rng: np.random.Generator, n: int) -> str:
    pool = list("abcde") + [" ", " ", "é", "z", "\n"] + ["<ctl>", "[ud]", "<eos>", "<unk>", "  "]
    return "".join(rng.choice(pool, size=n))


@pytest.mark.parametrize("n_merged, length, space_prefix", [(40, 12, False), (300, 60, False), (2000, 200, False),
                                                          (300, 60, True)])
def test_ids_equal_the_reference_on_random_vocabularies(n_merged, length, space_prefix):
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        meta = random_vocab(rng, n_merged, space_prefix)
        tok = from_gguf_metadata(meta)
        for _ in range(30):
            text = random_text(rng, int(rng.integers(0, length)))
            got, want = tok.encode(text).ids, ref_encode(text, meta)
            assert got == want, f"seed {seed}: {text!r}"
            for skip in (False, True):
                assert tok.decode(got[1:], skip_special_tokens=skip) == ref_decode(text, meta, skip), \
                    f"seed {seed}: {text!r}"
            if not space_prefix:
                assert tok.decode(got[1:], skip_special_tokens=False) == text, f"seed {seed}: {text!r}"


def test_vocabulary_lookups():
    meta = random_vocab(np.random.default_rng(), 50)
    tok = from_gguf_metadata(meta)
    pieces = meta["tokenizer.ggml.tokens"]
    assert tok.get_vocab_size() == len(pieces)
    assert [tok.token_to_id(p) for p in pieces] == list(range(len(pieces)))
    assert [tok.id_to_token(i) for i in range(len(pieces))] == pieces
    assert tok.token_to_id("no such piece") is None and tok.id_to_token(len(pieces)) is None


def test_gemma_round_trips_random_text(gemma_tokenizer):
    # NOTE: no "▁" in the text: it decodes as a space (in llama.cpp too), the one character that cannot round-trip
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    pool = (list("abcXYZ019 .,;!?'\"()[]{}") + [" ", "  ", "\n", "\n\n", "\t", "é", "ß", "ñ", "中文", "日本",
            "😀", "🧿", "\u0301", "\ue000", "\U000e0041", "<start_of_turn>", "<end_of_turn>", "<unk>",
            "<0x41>", "[multimodal]", "    def"])
    for _ in range(100):
        text = "".join(rng.choice(pool, size=int(rng.integers(1, 40))))
        ids = gemma_tokenizer.encode(text).ids
        assert ids[0] == 2 and gemma_tokenizer.decode(ids[1:], skip_special_tokens=False) == text, \
            f"seed {seed}: {text!r}"


@pytest.mark.parametrize("change, match", [
    ({"tokenizer.ggml.model": "gpt2"}, "tokenizer.ggml.model is 'gpt2'"),
    ({"tokenizer.ggml.scores": np.zeros(3, np.float32)}, "must have 270 entries"),
    ({"tokenizer.ggml.bos_token_id": 10**6}, "bos_token_id is 1000000"),
    ({"tokenizer.ggml.tokens": ["<unk>", "<bos>"] + ["<eos>"] * 268}, "no valid SentencePiece vocabulary"),
])
def test_bad_vocabularies_say_what_is_wrong(change, match):
    meta = random_vocab(np.random.default_rng(0), 0)
    assert len(meta["tokenizer.ggml.tokens"]) == 270
    with pytest.raises(ValueError, match=match):
        from_gguf_metadata({**meta, **change})


def _sp_decode(tok, ids: list[int]) -> str:
    """SentencePiece's own decoding of pieces that are neither control nor unknown."""
    return tok.sp.decode(ids)


def test_decoding_without_sentencepiece_equals_its_decoding_on_random_vocabularies():
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    for space_prefix in (False, True):
        tok = from_gguf_metadata(random_vocab(rng, 300, space_prefix))
        plain = [i for i in range(tok.get_vocab_size()) if i not in tok.skipped]
        for _ in range(200):
            # NOTE: byte pieces drawn often, so that runs of them make valid and invalid UTF-8
            ids = [int(i) for i in rng.choice(plain, size=int(rng.integers(1, 12)))]
            assert tok._decode_run(ids) == _sp_decode(tok, ids), f"seed {seed}: {ids}"


def test_decoding_without_sentencepiece_equals_its_decoding_on_gemma(gemma_tokenizer):
    tok = gemma_tokenizer
    plain = np.array([i for i in range(tok.get_vocab_size()) if i not in tok.skipped])
    for i in plain:  # NOTE: every piece alone (bytes alone are invalid UTF-8 above 0x7f)
        assert tok._decode_run([int(i)]) == _sp_decode(tok, [int(i)]), f"id {i}"
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    byte_ids = np.flatnonzero(tok.is_byte)
    utf8 = "aé€😀中".encode()
    for _ in range(300):
        n = int(rng.integers(1, 10))
        ids = [int(i) for i in rng.choice(plain, size=n)]
        # NOTE: and runs of byte pieces: cut valid UTF-8 (a character split over pieces) and stray bytes
        cut = utf8[int(rng.integers(0, len(utf8))):][:int(rng.integers(1, 6))]
        run = [int(byte_ids[b]) for b in cut] + [int(i) for i in rng.choice(byte_ids, size=int(rng.integers(0, 3)))]
        k = int(rng.integers(0, n + 1))
        ids[k:k] = run
        assert tok._decode_run(ids) == _sp_decode(tok, ids), f"seed {seed}: {ids}"


def test_a_freed_encoder_is_built_again_and_encodes_the_same():
    meta = random_vocab(np.random.default_rng(), 300)
    tok = from_gguf_metadata(meta)
    text = "abc<ctl>dé e[ud]  z"
    ids = tok.encode(text).ids
    tok.free_encoder_after_use = True
    assert tok.encode(text).ids == ids and tok._sp is None
    assert tok.decode(ids[1:], skip_special_tokens=False) == text and tok._sp is None  # NOTE: decoding never builds it
    assert tok.token_to_id("<ctl>") == 3 and tok._sp is None
    assert tok.encode(text).ids == ids
    pieces = meta["tokenizer.ggml.tokens"]
    assert [tok.token_to_id(p) for p in pieces] == list(range(len(pieces)))
