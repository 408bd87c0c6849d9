"""Gemma 3 decode written directly in MLX (``mx.quantized_matmul`` on the GGUF's converted
weights), next to oxcore's Gemma 3 on an MLX backend: the issue-13/14 "hand-written MLX" row.

The MLX forward mirrors ``oxcore_models.gemma3`` op for op (hyperparameters from the same
``Gemma3Config.from_metadata``): ggml weights in an exact affine form go through
``mx.quantized_matmul`` (converted once on the device by ``oxcore_kernels_ggml._mlx_affine``),
the others (Q6_K) as dense matrices in x's dtype; norms, RoPE and attention through ``mx.fast``;
a preallocated KV cache written with ``mx.slice_update``; the decode step ``mx.compile``d, greedy.

It runs the two ``--repeats`` times, interleaved (a shared machine slows both alike), and prints
the median prompt and decode tok/s of each, whether their greedy tokens agree (float32 shows it
best), and the oxcore decode step's segments, transfers and fallbacks; it writes JSON. oxcore's
Gemma computes in float32 whatever ``--dtype`` (which sets the reference's weights and
activations). On the lent GPU: ``python plugins/kernels_ggml/scripts/gemma_mlx_reference.py
--model gemma-3-270m-q4_k_m.gguf --dtype bfloat16 --out $OUT/gemma-mlx.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np


def _weights(path: str, dtype):
    """name -> ("q", wq, scales, biases, bits) | ("dense", W) for every tensor of the file."""
    import gguf
    import mlx.core as mx
    from oxcore_io_gguf.affine import AFFINE
    from oxcore_kernels_ggml import _mlx_affine

    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        tname = t.tensor_type.name
        shape = tuple(int(s) for s in reversed(t.shape))  # NOTE: GGUF lists ne0 (the contiguous axis) first
        if tname in AFFINE and len(shape) == 2:
            wq, s, b = _mlx_affine.to_affine(mx.array(np.asarray(t.data)), tname, shape)
            out[t.name] = ("q", wq, s, b, AFFINE[tname])
        else:
            w = np.asarray(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type), np.float32).reshape(shape)
            out[t.name] = ("dense", mx.array(w).astype(dtype if len(shape) == 2 else mx.float32))
    mx.eval([a for v in out.values() for a in v[1:] if isinstance(a, mx.array)])
    return out


class MLXGemma3:
    """The decoder over ``_weights``; ``cfg`` is oxcore_models' ``Gemma3Config``."""

    def __init__(self, w: dict, cfg, dtype, cache_len: int) -> None:
        import mlx.core as mx

        self.w, self.c, self.dtype, self.L = w, cfg, dtype, cache_len
        shape = (1, cfg.kv_heads, cache_len, cfg.head_dim)
        self.keys = [mx.zeros(shape, dtype) for _ in range(cfg.layers)]
        self.values = [mx.zeros(shape, dtype) for _ in range(cfg.layers)]
        self.decode = mx.compile(self._decode)

    def linear(self, x, name: str):
        import mlx.core as mx

        w = self.w[name]
        if w[0] == "q":
            y = mx.quantized_matmul(x, w[1], w[2], w[3], transpose=True, group_size=32, bits=w[4])
            return y.astype(x.dtype)
        return x @ w[1].T

    def embed(self, ids):
        import mlx.core as mx

        w = self.w["token_embd.weight"]
        if w[0] == "q":
            rows = mx.dequantize(w[1][ids], w[2][ids], w[3][ids], group_size=32, bits=w[4])
        else:
            rows = w[1][ids]
        return rows.astype(self.dtype) * math.sqrt(self.c.dim)  # NOTE: oxcore scales after the lookup too

    def forward(self, ids, pos, keys, values):
        """ids (1, T) int32 at positions pos.. (pos: int32 array (1,)) -> (last logits, keys, values)."""
        import mlx.core as mx

        c, T = self.c, ids.shape[1]
        H, Hk, Dh = c.heads, c.kv_heads, c.head_dim
        norm = lambda x, n: mx.fast.rms_norm(x, self.w[n][1], c.eps)  # noqa: E731
        x = self.embed(ids)
        qpos = pos + mx.arange(T, dtype=mx.int32)[:, None]
        kpos = mx.arange(self.L, dtype=mx.int32)[None, :]
        seen = kpos <= qpos
        masks = {True: seen, False: seen & ((qpos - kpos) < c.sliding_window)}
        new_k, new_v = [], []
        for i in range(c.layers):
            p = f"blk.{i}."
            glob = c.global_layers[i]
            h = norm(x, p + "attn_norm.weight")
            q = self.linear(h, p + "attn_q.weight").reshape(1, T, H, Dh).transpose(0, 2, 1, 3)
            k = self.linear(h, p + "attn_k.weight").reshape(1, T, Hk, Dh).transpose(0, 2, 1, 3)
            v = self.linear(h, p + "attn_v.weight").reshape(1, T, Hk, Dh).transpose(0, 2, 1, 3)
            q, k = norm(q, p + "attn_q_norm.weight"), norm(k, p + "attn_k_norm.weight")
            base, scale = (c.rope_base, c.rope_scale) if glob else (c.rope_base_local, 1.0)
            q = mx.fast.rope(q, Dh, traditional=False, base=base, scale=scale, offset=pos[0])
            k = mx.fast.rope(k, Dh, traditional=False, base=base, scale=scale, offset=pos[0])
            kc = mx.slice_update(keys[i], k.astype(self.dtype), pos, axes=(2,))
            vc = mx.slice_update(values[i], v.astype(self.dtype), pos, axes=(2,))
            new_k.append(kc)
            new_v.append(vc)
            a = mx.fast.scaled_dot_product_attention(q, kc, vc, scale=c.attn_scale, mask=masks[glob])
            a = self.linear(a.transpose(0, 2, 1, 3).reshape(1, T, H * Dh), p + "attn_output.weight")
            x = x + norm(a, p + "post_attention_norm.weight")
            h = norm(x, p + "ffn_norm.weight")
            g = self.linear(h, p + "ffn_gate.weight")
            g = 0.5 * g * (1 + mx.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g * g * g)))
            h = g * self.linear(h, p + "ffn_up.weight")
            x = x + norm(self.linear(h, p + "ffn_down.weight"), p + "post_ffw_norm.weight")
        x = norm(x[:, T - 1:], "output_norm.weight")
        out = "output.weight" if "output.weight" in self.w else "token_embd.weight"
        logits = self.linear(x, out).reshape(-1).astype(mx.float32)
        if c.final_softcap:
            logits = mx.tanh(logits / c.final_softcap) * c.final_softcap
        return logits, new_k, new_v

    def _decode(self, tok, pos, *kv):
        n = self.c.layers
        logits, ks, vs = self.forward(tok.reshape(1, 1), pos, list(kv[:n]), list(kv[n:]))
        import mlx.core as mx

        return [mx.argmax(logits).astype(mx.int32), pos + 1, *ks, *vs]

    def generate(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        """Greedy ``n`` tokens after ``ids``: (tokens, prompt seconds, decode seconds)."""
        import mlx.core as mx

        t0 = time.perf_counter()
        logits, self.keys, self.values = self.forward(mx.array([ids], mx.int32), mx.array([0], mx.int32),
                                                      self.keys, self.values)
        tok = mx.argmax(logits).astype(mx.int32)
        mx.eval(tok, self.keys, self.values)
        t1 = time.perf_counter()
        out, pos = [int(tok.item())], mx.array([len(ids)], mx.int32)
        for _ in range(n - 1):
            tok, pos, *kv = self.decode(tok, pos, *self.keys, *self.values)
            self.keys, self.values = kv[:self.c.layers], kv[self.c.layers:]
            out.append(int(tok.item()))  # NOTE: one sync a token, as a sampler on the host needs
        return out, t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="GGUF file (default: the installed gemma3 model)")
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--backend", default="metal_fused", help="oxcore backend of the side-by-side run ('' to skip)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of (reference, oxcore), interleaved; medians shown")
    p.add_argument("--out", default="gemma-mlx.json")
    a = p.parse_args(argv)
    import mlx.core as mx
    import oxcore as ox
    import oxcore.models
    from oxcore.models import resolve
    from oxcore_models.gemma3 import Gemma3, Gemma3Config
    from oxcore_models.sampling import Sampler

    path, _, meta = resolve(a.model or "gemma3")
    path = str(path)
    dtype = getattr(mx, a.dtype)
    ids = oxcore.models.load(path).tokenize(a.prompt)
    w = _weights(path, dtype)
    cfg = Gemma3Config.from_metadata(dict(meta, _path=path), int(w["token_embd.weight"][1].shape[0]))
    L = -(-(len(ids) + a.tokens) // 256) * 256
    MLXGemma3(w, cfg, dtype, L).generate(ids, 4)  # NOTE: warm-up (compiles the step); each run a fresh cache
    model = None
    if a.backend:
        # NOTE: loaded with the backend, as `oxcore generate --backend` does: the pin then covers
        # loading (which weights stay blocks, where the norms live) and every step
        model = Gemma3.from_file(ox.load(path), meta, backend=a.backend)
        # NOTE: warm-up as for the reference: traces and compiles the prompt and decode steps
        list(model.generate_ids(ids, max_tokens=4, sampler=Sampler(temp=0), ignore_eos=True))
    runs: dict[str, list] = {"mlx_reference": [], "oxcore": []}
    toks: list[int] = []
    got: list[int] = []
    for r in range(a.repeats):
        # NOTE: interleaved (and alternating who goes first) so a busy machine slows both alike
        for who in (("ref", "ox") if r % 2 == 0 else ("ox", "ref")):
            if who == "ref":
                toks, tp, td = MLXGemma3(w, cfg, dtype, L).generate(ids, a.tokens)
                runs["mlx_reference"].append((len(ids) / tp, (len(toks) - 1) / td))
            elif model is not None:
                got = list(model.generate_ids(ids, max_tokens=a.tokens, sampler=Sampler(temp=0), ignore_eos=True))
                runs["oxcore"].append((model.last_stats.prompt_tok_s, model.last_stats.decode_tok_s))
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in runs.items() if v}
    rec = {"model": path, "dtype": a.dtype, "device": str(mx.default_device()), "prompt_tokens": len(ids),
           "repeats": a.repeats,
           "mlx_reference": {"tokens": toks, "prompt_tok_s": med["mlx_reference"][0],
                             "decode_tok_s": med["mlx_reference"][1], "runs": runs["mlx_reference"]}}
    print(f"MLX reference ({a.dtype}, {mx.default_device()}): prompt {med['mlx_reference'][0]:.1f} tok/s, "
          f"decode {med['mlx_reference'][1]:.1f} tok/s (median of {a.repeats})")
    print("  text:", repr(oxcore.models.load(path).detokenize(toks[:32])))
    if model is not None:
        st = model.last_stats
        same = next((i for i, (x, y) in enumerate(zip(toks, got)) if x != y), min(len(toks), len(got)))
        rec["oxcore"] = {"backend": a.backend, "tokens": got, "prompt_tok_s": med["oxcore"][0],
                         "decode_tok_s": med["oxcore"][1], "runs": runs["oxcore"], "same_prefix": same,
                         "weights": st.weights}
        ex = model.explain_step(len(ids), cache_length=st.cache_length)
        # NOTE: the decode step's plan: segments, host round trips and fallbacks off the backend
        rec["oxcore"].update(segments=len(ex.segments), transfers=len(ex.transfers), fallbacks=ex.fallbacks)
        print(f"oxcore {a.backend} (activations float32): prompt {med['oxcore'][0]:.1f} tok/s, decode "
              f"{med['oxcore'][1]:.1f} tok/s ({med['oxcore'][1] / med['mlx_reference'][1]:.2f}x the MLX reference); "
              f"greedy tokens agree for the first {same} of {len(toks)}")
        print(f"  decode step: {len(ex.segments)} segments, {len(ex.transfers)} transfers "
              f"(captured weights move once, not per step), {len(ex.fallbacks)} fallbacks off {a.backend}")
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=1)
    print("wrote", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
