"""A GGUF file's ``llama`` (SentencePiece) tokenizer, run by the ``sentencepiece`` library.

The file's ``tokenizer.ggml.tokens/scores/token_type`` become a SentencePiece ``ModelProto``
of type BPE (SentencePiece's score-driven pair merging, the algorithm llama.cpp's
``llm_tokenizer_spm`` ports) with byte fallback, loaded by ``SentencePieceProcessor``. The
normalizer is the identity: no NFKC, spaces as ``▁``, no extra-whitespace removal, no dummy
prefix (the space ``tokenizer.ggml.add_space_prefix`` asks for is added here, per fragment, as
llama.cpp adds it; Gemma's files say false).

One step is llama.cpp's and not SentencePiece's: with special parsing on (as llama.cpp's
``tokenize(..., special=True)``), control, user-defined and unknown pieces are cut out of the
raw text first, longest piece first, and SentencePiece encodes the text between them.
SentencePiece cannot do it: it never matches control pieces in text, and matches
user-defined ones left to right in the *normalized* text (Gemma's ``"  "`` pieces would never
match there, their spaces having become ``▁``). The cut leaves SentencePiece no user-defined
piece to find, except one spelled with ``▁`` (Gemma has none), which it would match in the
normalized text where llama.cpp only reaches it by merging.

Why not ``tokenizers``: its BPE needs explicit merges, 515k of them for Gemma's 262k pieces
(~300 MiB resident). SentencePiece needs only the pieces and scores (it holds ~41 MiB for Gemma's).

Example:
    >>> meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 0,
    ...         "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.unknown_token_id": 2,
    ...         "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": False,
    ...         "tokenizer.ggml.tokens": ["<bos>", "<eos>", "<unk>", "▁", "a", "b", "▁a", "ab", "▁ab"],
    ...         "tokenizer.ggml.scores": [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
    ...         "tokenizer.ggml.token_type": [3, 3, 3, 1, 1, 1, 1, 1, 1]}
    >>> tok = from_gguf_metadata(meta)
    >>> tok.encode(" ab<eos>").ids, tok.decode(tok.encode(" ab").ids)
    ([0, 8, 1], ' ab')
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["GGUFTokenizer", "Encoding", "from_gguf_metadata"]

# NOTE: llama.cpp's token types (GGUF ``tokenizer.ggml.token_type``), numbered as
# SentencePiece's ModelProto.SentencePiece.Type is
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Encoding:
    """What ``GGUFTokenizer.encode`` returns (``ids``, as ``tokenizers``' Encoding has)."""

    ids: list[int]


def from_gguf_metadata(meta: Mapping[str, Any]) -> "GGUFTokenizer":
    """The tokenizer a GGUF file's ``tokenizer.ggml.*`` keys describe.

    Raises:
        ValueError: ``tokenizer.ggml.model`` is not ``llama`` (SentencePiece), or the
            scores/types do not have one entry per token.
    """
    return GGUFTokenizer.from_gguf_metadata(meta)


def build_model_proto(pieces: Sequence[str], scores: np.ndarray, types: np.ndarray, *, unk_id: int,
                      bos_id: int | None, eos_id: int | None, pad_id: int | None,
                      chunk: int = 8192) -> bytes:
    """A serialized SentencePiece BPE ``ModelProto`` of these pieces.

    ``types`` are GGUF token types; the ``unk_id`` piece becomes SentencePiece's one UNKNOWN
    piece whatever its GGUF type (SentencePiece requires exactly one; Gemma's ``<unk>`` is
    CONTROL). Byte fallback is on when the vocabulary has all 256 ``<0xXX>`` byte pieces
    (SentencePiece refuses it otherwise); without it a character that is no piece encodes as ``unk_id``.

    Example:
        >>> from sentencepiece import sentencepiece_model_pb2 as pb
        >>> mp = pb.ModelProto.FromString(build_model_proto(
        ...     ["<unk>", "a", "b", "ab"], np.array([0, -1, -2, -3.0]), np.array([3, 1, 1, 1]),
        ...     unk_id=0, bos_id=None, eos_id=None, pad_id=None, chunk=2))
        >>> [(p.piece, p.score, p.type) for p in mp.pieces]
        [('<unk>', 0.0, 2), ('a', -1.0, 1), ('b', -2.0, 1), ('ab', -3.0, 1)]
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError as e:  # NOTE: e.g. a protobuf runtime older than the module's generated code
        raise ImportError(f"sentencepiece's model protobuf does not import ({e}); "
                          "pip install -U sentencepiece protobuf") from e

    mp = pb.ModelProto()
    ts = mp.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(pieces)
    ts.byte_fallback = int(np.count_nonzero(types == BYTE)) == 256
    ts.unk_id = unk_id
    ts.unk_piece = pieces[unk_id]
    # NOTE: -1 is SentencePiece's "none"; the ids only name the pieces (encode adds BOS/EOS itself)
    for name, i in (("bos", bos_id), ("eos", eos_id), ("pad", pad_id)):
        setattr(ts, f"{name}_id", -1 if i is None or i == unk_id else i)
        if i is not None and i != unk_id:
            setattr(ts, f"{name}_piece", pieces[i])
    ns = mp.normalizer_spec
    ns.name = "identity"  # NOTE: no NFKC: llama.cpp does not normalize Unicode
    # NOTE: no dummy prefix: SentencePiece would also strip a leading space from every decoded
    # run, where llama.cpp strips only the text's first (GGUFTokenizer adds and strips it)
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    # NOTE: GGUF and SentencePiece number the types alike (1 normal ... 6 byte); GGUF's 0
    # (undefined) is read as normal, and unknown pieces other than unk_id as control
    ptypes = np.where(types == 0, NORMAL, np.where(types == UNKNOWN, CONTROL, types))
    ptypes[unk_id] = UNKNOWN
    # NOTE: serialized protobuf messages concatenate into their merge (repeated fields append):
    # the pieces go in chunks, so at most one chunk of them is held as message objects
    # (262k at once would hold ~25 MiB, which glibc keeps once generation tunes malloc)
    out = [mp.SerializeToString()]
    n = len(pieces)
    for start in range(0, n, chunk):
        part = pb.ModelProto()
        stop = min(start + chunk, n)
        for i, s, t in zip(range(start, stop), scores[start:stop].tolist(), ptypes[start:stop].tolist()):
            sp = part.pieces.add()
            sp.piece, sp.score, sp.type = str(pieces[i]), s, t
        out.append(part.SerializeToString())
    return b"".join(out)


class GGUFTokenizer:
    """Encode and decode with a SentencePiece vocabulary (pieces, scores, GGUF token types).

    Args:
        pieces: every piece, by id (a list, or the GGUF reader's lazy string array).
        scores: one score per piece (higher merges first).
        types: one ``tokenizer.ggml.token_type`` per piece (1 normal ... 6 byte).
        unk_id: the unknown piece (made SentencePiece's UNKNOWN piece).
        bos_id, eos_id: added by ``encode(add_special_tokens=True)`` when ``add_bos``/``add_eos``.
        add_space_prefix: prepend a space to the text (and after each special piece), as the file says.
    """

    def __init__(self, pieces: Sequence[str], scores: np.ndarray, types: np.ndarray, *, unk_id: int = 0,
                 bos_id: int | None, eos_id: int | None, pad_id: int | None = None, add_bos: bool = True,
                 add_eos: bool = False, add_space_prefix: bool = False) -> None:
        n = len(pieces)
        scores, types = np.asarray(scores, np.float32), np.asarray(types, np.int32)
        if scores.shape != (n,) or types.shape != (n,):
            raise ValueError(f"tokenizer.ggml.scores/token_type must have {n} entries (one per token), got "
                             f"{scores.shape[0]} and {types.shape[0]}")
        for name, i in (("unknown", unk_id), ("bos", bos_id), ("eos", eos_id), ("padding", pad_id)):
            if i is not None and not 0 <= i < n:
                raise ValueError(f"tokenizer.ggml.{name}_token_id is {i}, not the id of one of the {n} tokens")
        self.unk_id, self.bos_id, self.eos_id, self.add_bos, self.add_eos = unk_id, bos_id, eos_id, add_bos, add_eos
        self.add_space_prefix = add_space_prefix
        self.pieces, self.is_byte = pieces, types == BYTE
        self._scores, self._types, self._pad_id = scores, types, pad_id
        #: True: ``encode`` frees the SentencePiece model after each call (rebuilt by the next one):
        #: ~40 MiB less for a process that encodes one prompt and then generates (``oxcore generate``)
        self.free_encoder_after_use = False
        self._sp: Any = None
        self._sp = self.sp  # NOTE: built now, so a bad vocabulary fails here, where it was read
        special = np.flatnonzero((types == CONTROL) | (types == USER_DEFINED) | (types == UNKNOWN))
        # NOTE: longest first (in UTF-8 bytes), as llama.cpp cuts them; ties by id (llama.cpp's
        # std::sort leaves their order open; it only matters for overlapping pieces of one length)
        self.special = sorted(((str(pieces[i]), int(i)) for i in special if pieces[i]), key=lambda p: -len(p[0].encode()))
        self._special_ids = {p: i for p, i in reversed(self.special)}
        self.skipped = frozenset(int(i) for i in np.flatnonzero((types == CONTROL) | (types == UNKNOWN)))
        self.skipped |= {unk_id}

    @property
    def sp(self) -> Any:
        """The ``SentencePieceProcessor`` that encodes (built on first use after ``free_encoder``)."""
        if self._sp is None:
            import sentencepiece

            proto = build_model_proto(self.pieces, self._scores, self._types, unk_id=self.unk_id, bos_id=self.bos_id,
                                      eos_id=self.eos_id, pad_id=self._pad_id)
            try:
                self._sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
            except RuntimeError as e:  # NOTE: e.g. a piece twice, a malformed byte piece
                raise ValueError(f"the tokenizer.ggml.* keys are no valid SentencePiece vocabulary: {e}") from None
        return self._sp

    def free_encoder(self) -> None:
        """Free the SentencePiece model (~40 MiB for Gemma's 262k pieces) and return its heap to
        the OS; decoding and id lookups never need it, the next ``encode`` builds it again."""
        if self._sp is not None:
            self._sp = None
            from ._pages import trim_heap

            trim_heap()  # NOTE: glibc keeps freed heap once _malloc raised its thresholds

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> "GGUFTokenizer":
        """The tokenizer a GGUF file's ``tokenizer.ggml.*`` keys describe (see ``from_gguf_metadata``)."""
        kind = str(meta.get("tokenizer.ggml.model", ""))
        if kind != "llama":
            raise ValueError(f"tokenizer.ggml.model is {kind!r}; oxcore-models builds only 'llama' "
                             "(SentencePiece) tokenizers so far")
        pieces = meta["tokenizer.ggml.tokens"]
        n = len(pieces)

        def tid(key: str, default: int | None = None) -> int | None:
            v = meta.get(f"tokenizer.ggml.{key}_token_id", default)
            return None if v is None else int(v)

        # NOTE: what a key leaves out is llama.cpp's default for 'llama' vocabularies: <unk> 0,
        # <s> 1, </s> 2, BOS added, a space prefix
        return cls(pieces, np.asarray(meta.get("tokenizer.ggml.scores", np.zeros(n))),
                   np.asarray(meta.get("tokenizer.ggml.token_type", np.full(n, NORMAL))),
                   unk_id=tid("unknown", 0), bos_id=tid("bos", 1), eos_id=tid("eos", 2), pad_id=tid("padding"),
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", True)),
                   add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
                   add_space_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", True)))

    # --- the vocabulary ---------------------------------------------------------------------
    def get_vocab_size(self) -> int:
        return len(self.pieces)

    def token_to_id(self, piece: str) -> int | None:
        if piece in self._special_ids:  # NOTE: the end-of-turn pieces a model looks up: no SentencePiece needed
            return self._special_ids[piece]
        i = self.sp.piece_to_id(piece)
        # NOTE: SentencePiece answers the unknown id for a piece it does not have
        return None if i == self.unk_id and piece != self.sp.id_to_piece(i) else i

    def id_to_token(self, i: int) -> str | None:
        return str(self.pieces[i]) if 0 <= i < len(self.pieces) else None

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> Encoding:
        """Token ids of ``text`` (special pieces in the text are parsed), BOS first when the file asks.

        Example (Gemma): ``encode("<start_of_turn>user")`` -> ``[2, 105, 2364]``.
        """
        out: list[int] = []
        if add_special_tokens and self.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        for frag in self._split_special(text):
            if isinstance(frag, int):
                out.append(frag)
            else:
                # NOTE: llama.cpp prefixes each raw fragment that follows a special piece (or
                # starts the text), which is every raw fragment
                out.extend(self.sp.encode(" " + frag if self.add_space_prefix else frag))
        if add_special_tokens and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        if self.free_encoder_after_use:
            self.free_encoder()
        return Encoding(out)

    def _split_special(self, text: str) -> list[str | int]:
        """``text`` as raw strings and the ids of the special pieces cut out of it (longest first)."""
        frags: list[str | int] = [text] if text else []  # NOTE: "" has no fragment to space-prefix
        for piece, i in (p for p in self.special if p[0] in text):
            nxt: list[str | int] = []
            for f in frags:
                if isinstance(f, int) or piece not in f:
                    nxt.append(f)
                    continue
                for j, part in enumerate(f.split(piece)):
                    if j:
                        nxt.append(i)
                    if part:
                        nxt.append(part)
            frags = nxt
        return frags

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """The text of ``ids``: control and unknown pieces skipped, or written as their text."""
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            if i in self.skipped:
                # NOTE: SentencePiece decodes control pieces to "" and unknown to " ⁇ ": write them here
                if run:
                    parts.append(self._decode_run(run))
                    run = []
                if not skip_special_tokens:
                    parts.append(str(self.pieces[i]))
            else:
                run.append(i)
        if run:
            parts.append(self._decode_run(run))
        text = "".join(parts)
        return text[1:] if self.add_space_prefix and text.startswith(" ") else text

    def _decode_run(self, ids: list[int]) -> str:
        """SentencePiece's decoding of pieces that are neither control nor unknown, from the
        pieces themselves (so generating needs no SentencePiece model): ``▁`` is a space, byte
        pieces are their byte, and each byte that is no valid UTF-8 becomes U+FFFD, as in
        SentencePiece (no dummy prefix or extra whitespace to strip: the normalizer has none)."""
        out = bytearray()
        for i in ids:
            p = str(self.pieces[i])
            if self.is_byte[i]:
                out.append(int(p[3:5], 16))  # NOTE: "<0xAB>"; SentencePiece refused any other byte piece
            else:
                out += p.replace("\u2581", " ").encode("utf-8", "surrogateescape")
        return out.decode("utf-8", _ONE_FFFD_PER_BYTE)


def _one_fffd_per_byte(e: UnicodeDecodeError) -> tuple[str, int]:
    # NOTE: Python replaces a whole invalid sequence with one U+FFFD; SentencePiece writes one per byte
    return "\ufffd", e.start + 1


_ONE_FFFD_PER_BYTE = "oxcore-models-one-fffd-per-byte"
codecs.register_error(_ONE_FFFD_PER_BYTE, _one_fffd_per_byte)
