"""llama.cpp's SentencePiece (``llama``) tokenizer, straight from a GGUF file's ``tokenizer.ggml.*`` keys.

Why not ``tokenizers`` (``gguf_tokenizer.from_gguf_metadata``): a BPE equivalent of Gemma's
262k-piece vocabulary needs 515k merges; loading it holds ~100 MiB and peaks ~350 MiB while
its JSON is parsed, more than the rest of a 270M-parameter model's run. The SentencePiece
algorithm needs no merges, only the pieces and their scores: this tokenizer keeps the pieces'
hashes, sorted (~3 MiB; a dict of 262k strings would hold ~50 MiB), and reads the pieces
themselves from the file's string array.

The algorithm is llama.cpp's ``llm_tokenizer_spm``: control, user-defined and unknown pieces
are cut out of the raw text first (longest first); each remaining fragment has its spaces
replaced by ``▁`` and starts as one symbol per character; the adjacent pair whose
concatenation is the best-scoring piece merges first (ties: leftmost), until no pair forms a
piece; characters that are no piece come out as ``<0xXX>`` byte pieces.

Example:
    >>> meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 0,
    ...         "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.add_bos_token": True,
    ...         "tokenizer.ggml.tokens": ["<bos>", "<eos>", "▁", "a", "b", "▁a", "ab", "▁ab"],
    ...         "tokenizer.ggml.scores": [0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
    ...         "tokenizer.ggml.token_type": [3, 3, 1, 1, 1, 1, 1, 1]}
    >>> tok = SpmTokenizer.from_gguf_metadata(meta)
    >>> tok.encode(" ab").ids, tok.decode(tok.encode(" ab").ids)
    ([0, 7], ' ab')
"""

from __future__ import annotations

import bisect
import heapq
from array import array
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["SpmTokenizer", "Encoding"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_SPACE = "\u2581"  # ▁


@dataclass(frozen=True)
class Encoding:
    """What ``SpmTokenizer.encode`` returns (``ids``, as ``tokenizers``' Encoding has)."""

    ids: list[int]


class PieceIndex:
    """piece -> id over a sequence of pieces, holding only their sorted hashes and ids.

    A lookup bisects the hashes, then compares the candidates' text (hashes may collide).
    Duplicate pieces give the first id.

    Example:
        >>> ix = PieceIndex(["a", "b", "a"])
        >>> ix.get("a"), ix.get("b"), ix.get("c")
        (0, 1, None)
    """

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = pieces
        h = np.fromiter((hash(p) for p in pieces), np.int64, count=len(pieces))
        order = np.argsort(h, kind="stable")  # NOTE: stable: the first of equal pieces first
        # NOTE: array.array: bisect and indexing give Python ints, ~10x faster than NumPy scalars
        self.hashes, self.ids = array("q", h[order].tobytes()), array("q", order.astype(np.int64).tobytes())

    def get(self, piece: str) -> int | None:
        k = hash(piece)
        i = bisect.bisect_left(self.hashes, k)
        while i < len(self.hashes) and self.hashes[i] == k:
            j = self.ids[i]
            if self.pieces[j] == piece:
                return j
            i += 1
        return None


class SpmTokenizer:
    """Encode and decode with a SentencePiece vocabulary (pieces, scores, types).

    Args:
        pieces: every piece, by id (a list, or the GGUF reader's lazy string array).
        scores: one score per piece (higher merges first).
        types: one ``tokenizer.ggml.token_type`` per piece (1 normal ... 6 byte).
        bos_id, eos_id: added by ``encode(add_special_tokens=True)`` when ``add_bos``/``add_eos``.
        add_space_prefix: prepend a space to the text (and after each special piece), as the file says.
    """

    def __init__(self, pieces: Sequence[str], scores: np.ndarray, types: np.ndarray, *, bos_id: int | None,
                 eos_id: int | None, add_bos: bool = True, add_eos: bool = False,
                 add_space_prefix: bool = False) -> None:
        n = len(pieces)
        if scores.shape != (n,) or types.shape != (n,):
            raise ValueError(f"tokenizer.ggml.scores/token_type must have {n} entries (one per token), got "
                             f"{scores.shape[0]} and {types.shape[0]}")
        self.pieces = pieces
        # NOTE: array.array items are Python numbers: 10x faster to test one at a time than NumPy's
        self.types = array("q", types.astype(np.int64).tobytes())
        self.scores = array("d", scores.astype(np.float64).tobytes())  # NOTE: compared in the merge heap
        self.vocab = vocab = PieceIndex(pieces)
        self.bos_id, self.eos_id, self.add_bos, self.add_eos = bos_id, eos_id, add_bos, add_eos
        self.add_space_prefix = add_space_prefix
        special = np.flatnonzero((types == CONTROL) | (types == USER_DEFINED) | (types == UNKNOWN))
        # NOTE: longest first, as llama.cpp cuts them (ties by id: a stable order)
        self.special = sorted(((pieces[i], int(i)) for i in special if pieces[i]),
                              key=lambda p: -len(p[0].encode("utf-8", "surrogateescape")))
        self.skipped = frozenset(int(i) for i in np.flatnonzero((types == CONTROL) | (types == UNKNOWN)))
        self.byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> "SpmTokenizer":
        """The tokenizer a GGUF file's ``tokenizer.ggml.*`` keys describe.

        Raises:
            ValueError: the file's ``tokenizer.ggml.model`` is not ``llama`` (SentencePiece).
        """
        kind = str(meta.get("tokenizer.ggml.model", ""))
        if kind != "llama":
            raise ValueError(f"tokenizer.ggml.model is {kind!r}; oxcore-models builds only 'llama' "
                             "(SentencePiece) tokenizers so far")
        pieces = meta["tokenizer.ggml.tokens"]
        n = len(pieces)
        scores = np.asarray(meta.get("tokenizer.ggml.scores", np.zeros(n)), dtype=np.float32)
        types = np.asarray(meta.get("tokenizer.ggml.token_type", np.full(n, NORMAL)), dtype=np.int32)
        bos, eos = meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id")
        return cls(pieces, scores, types, bos_id=None if bos is None else int(bos),
                   eos_id=None if eos is None else int(eos), add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", True)),
                   add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
                   add_space_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", False)))

    # --- the vocabulary ---------------------------------------------------------------------
    def get_vocab_size(self) -> int:
        return len(self.pieces)

    def token_to_id(self, piece: str) -> int | None:
        return self.vocab.get(piece)

    def id_to_token(self, i: int) -> str | None:
        return self.pieces[i] if 0 <= i < len(self.pieces) else None

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> Encoding:
        """Token ids of ``text`` (control pieces in the text are parsed), BOS first when the file asks."""
        out: list[int] = []
        if add_special_tokens and self.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        prev_special = True
        for frag in self._split_special(text):
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                frag = " " + frag
            self._encode_fragment(frag.replace(" ", _SPACE), out)
            prev_special = False
        if add_special_tokens and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return Encoding(out)

    def _split_special(self, text: str) -> list:
        """``text`` as raw strings and the ids of the special pieces cut out of it (longest first)."""
        frags: list = [text]
        for piece, i in (p for p in self.special if p[0] in text):
            nxt: list = []
            for f in frags:
                if isinstance(f, int) or piece not in f:
                    nxt.append(f)
                    continue
                parts = f.split(piece)
                for j, part in enumerate(parts):
                    if j:
                        nxt.append(i)
                    if part:
                        nxt.append(part)
            frags = nxt
        return frags

    def _encode_fragment(self, text: str, out: list[int]) -> None:
        if not text:
            return
        vocab, scores = self.vocab, self.scores
        n = len(text)
        sym_text = list(text)  # NOTE: a symbol's text; "" once merged into its left neighbour
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, int, str]] = []

        def add(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            piece = sym_text[left] + sym_text[right]
            tid = vocab.get(piece)
            if tid is None:
                return
            # NOTE: max-heap on score, ties to the leftmost pair (llama.cpp's comparator)
            heapq.heappush(heap, (-scores[tid], left, right, piece))

        for i in range(1, n):
            add(i - 1, i)
        while heap:
            _, left, right, piece = heapq.heappop(heap)
            # NOTE: a stale pair: one side merged since it was queued
            if not sym_text[left] or not sym_text[right] or sym_text[left] + sym_text[right] != piece:
                continue
            sym_text[left], sym_text[right] = piece, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add(prev[left], left)
            add(left, nxt[left])
        # NOTE: a merged symbol is a piece by construction, so llama.cpp's re-segmenting through
        # its reverse merges never splits one: what is no piece is a single character -> bytes
        i = 0
        while i != -1:
            tid = vocab.get(sym_text[i])
            if tid is not None:
                out.append(tid)
            else:
                out.extend(b for b in (self.byte_ids[c] for c in sym_text[i].encode("utf-8", "surrogateescape"))
                           if b is not None)
            i = nxt[i]

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """The text of ``ids``: ``▁`` as spaces, byte pieces joined into UTF-8 (invalid bytes as U+FFFD)."""
        buf = bytearray()
        types, pieces = self.types, self.pieces
        for i in ids:
            i = int(i)
            if skip_special_tokens and i in self.skipped:
                continue
            p = pieces[i]
            if types[i] == BYTE and len(p) == 6 and p.startswith("<0x"):
                buf.append(int(p[3:5], 16))
            else:
                buf += p.replace(_SPACE, " ").encode("utf-8", "surrogateescape")
        text = buf.decode("utf-8", "replace")
        if self.add_space_prefix and text.startswith(" "):
            text = text[1:]
        return text
