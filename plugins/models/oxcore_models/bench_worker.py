"""One side of ``oxcore bench models``, run in its own process so its peak memory is its own.

``python bench_worker.py KIND JSON_ARGS`` prints one JSON line: timing samples and peak RSS.
The reference kinds (``minilm-st``, ``gemma-llama``) import only their own library, so they run
in any interpreter that has it (``oxcore bench models --ref-python /tmp/refvenv/bin/python``).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024


def minilm_oxcore(a: dict) -> dict:
    import oxcore as ox
    import oxcore.models

    m = oxcore.models.load(a["model"])
    with ox.use(*([a["backend"]] if a.get("backend") else [])):
        m.embed(a["texts"], batch_size=a["batch_size"])  # NOTE: warm-up: traces every batch shape
        samples = []
        for _ in range(a["repeat"]):
            t0 = time.perf_counter()
            m.embed(a["texts"], batch_size=a["batch_size"])
            samples.append(time.perf_counter() - t0)
    return {"samples_s": samples}


def minilm_st(a: dict) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a["threads"])
    st = SentenceTransformer(a["model_dir"], device="cpu")
    st.encode(a["texts"], batch_size=a["batch_size"])
    samples = []
    for _ in range(a["repeat"]):
        t0 = time.perf_counter()
        st.encode(a["texts"], batch_size=a["batch_size"])
        samples.append(time.perf_counter() - t0)
    return {"samples_s": samples, "version": f"sentence-transformers {__import__('sentence_transformers').__version__}, "
                                            f"torch {torch.__version__}"}


def gemma_oxcore(a: dict) -> dict:
    import oxcore as ox
    from oxcore_models._cli import _load
    from oxcore_models.sampling import Sampler

    m = _load(a["model"], "gemma3", a.get("backend"))
    m.tokenizer.free_encoder_after_use = True  # NOTE: as oxcore generate: one prompt, then the weights
    ids = m.tokenize(a["prompt"])
    list(m.generate_ids(ids, max_tokens=a["tokens"], sampler=Sampler(temp=0), ignore_eos=True))  # NOTE: traces
    prompt, decode = [], []
    for _ in range(a["repeat"]):
        list(m.generate_ids(ids, max_tokens=a["tokens"], sampler=Sampler(temp=0), ignore_eos=True))
        st = m.last_stats
        prompt.append(st.prompt_s)
        decode.append(st.decode_s / max(st.generated_tokens - 1, 1))
    del ox
    return {"prompt_tokens": len(ids), "prompt_s": prompt, "decode_token_s": decode}


def gemma_llama(a: dict) -> dict:
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=a["model"], n_ctx=_ctx(a), n_batch=512, n_threads=a["threads"],
                          n_threads_batch=a["threads"], verbose=False, seed=0)
    ids = llm.tokenize(a["prompt"].encode("utf-8"), add_bos=True, special=True)

    def run() -> tuple[float, float]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        for _ in range(a["tokens"] - 1):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        return t1 - t0, (time.perf_counter() - t1) / max(a["tokens"] - 1, 1)

    run()
    prompt, decode = zip(*(run() for _ in range(a["repeat"])))
    return {"prompt_tokens": len(ids), "prompt_s": list(prompt), "decode_token_s": list(decode),
            "version": f"llama-cpp-python {llama_cpp.__version__}"}


def _ctx(a: dict) -> int:
    return max(512, -(-(len(a["prompt"]) + a["tokens"] + 64) // 256) * 256)


KINDS = {"minilm-oxcore": minilm_oxcore, "minilm-st": minilm_st, "gemma-oxcore": gemma_oxcore,
         "gemma-llama": gemma_llama}


def main() -> None:
    kind, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        out = KINDS[kind](args)
    except ImportError as e:
        out = {"skipped": f"{e.name or e} is not installed in {sys.executable}"}
    out["peak_rss_mb"] = _rss_mb()
    print("BENCH-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
