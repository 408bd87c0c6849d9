"""``oxcore bench models``: MiniLM sentences/s and Gemma prompt/decode tok/s, each engine in its
own process (so peak RSS is its own), against sentence-transformers and llama.cpp with the same
thread count. Reference rows whose library is missing are skipped with the reason."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

GEMMA_PROMPT = ("You are a helpful assistant. Answer the question in detail and explain your reasoning step by step. "
                "Question: why is the sky blue during the day but red and orange at sunset? Answer:")


def _worker(python: str, kind: str, args: dict, threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    script = Path(__file__).with_name("bench_worker.py")
    try:
        r = subprocess.run([python, str(script), kind, json.dumps(args)], capture_output=True, text=True, env=env,
                           timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"skipped": f"{python} could not run: {e}"}
    for line in r.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"skipped": f"{kind} failed (exit {r.returncode}): {tail[0]}"}


def _stats(samples: list[float], per: int = 1) -> Any:
    from oxcore.bench import Stats

    us = sorted(s * 1e6 / per for s in samples)
    q = statistics.quantiles(us, n=10, method="inclusive") if len(us) >= 2 else [us[0]] * 9
    return Stats(statistics.median(us), q[0], q[-1], len(us))


@click.command("models")
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1), help="Timed runs per row.")
@click.option("--tokens", default=128, show_default=True, type=click.IntRange(2), help="Gemma tokens to decode.")
@click.option("--threads", default=os.cpu_count() or 1, show_default=True, type=click.IntRange(1),
              help="Threads for every engine (BLAS, torch, llama.cpp).")
@click.option("--backend", default="cpu_numpy", show_default=True, help="Backend oxcore is pinned to ('' for auto).")
@click.option("--ref-python", default=sys.executable, show_default=True,
              help="Interpreter with sentence-transformers / llama-cpp-python for the reference rows.")
@click.option("--only", type=click.Choice(["minilm", "gemma"]), default=None, help="Run one model only.")
@click.option("--out", "out_path", default=None, help="JSON record path (default .bench/models-<time>.json).")
def models(repeat: int, tokens: int, threads: int, backend: str, ref_python: str, only: str | None,
           out_path: str | None) -> None:
    """MiniLM and Gemma 3 throughput and peak memory against sentence-transformers and llama.cpp."""
    from oxcore.bench import Report

    from ._defaults import gemma3_path, minilm_path

    rep = Report("models")
    be = backend or None
    if only in (None, "minilm"):
        texts = json.loads((Path(__file__).parent.parent / "tests" / "reference" / "minilm_sentences.json")
                           .read_text(encoding="utf-8"))[:64] if _refs_present() else _fallback_sentences()
        g = f"MiniLM embed ({len(texts)} sentences)"
        d = str(minilm_path())
        common = {"texts": texts, "batch_size": 32, "repeat": repeat, "threads": threads}
        ref = _worker(ref_python, "minilm-st", {**common, "model_dir": d}, threads)
        ox = _worker(sys.executable, "minilm-oxcore", {**common, "model": d, "backend": be}, threads)
        for name, r, base in (("sentence-transformers", ref, True), (f"oxcore ({backend or 'auto'})", ox, False)):
            if "skipped" in r:
                rep.notes.append(f"skipped {name}: {r['skipped']}")
                continue
            st = _stats(r["samples_s"], len(texts))
            rep.add(name + " /sentence", st, group=g, baseline=base, sentences_per_s=1e6 / st.median_us,
                    peak_rss_mb=r["peak_rss_mb"], version=r.get("version", ""))
        _goal_minilm(rep, g)
    if only in (None, "gemma"):
        p = str(gemma3_path())
        common = {"model": p, "prompt": GEMMA_PROMPT, "tokens": tokens, "repeat": repeat, "threads": threads}
        ref = _worker(ref_python, "gemma-llama", common, threads)
        ox = _worker(sys.executable, "gemma-oxcore", {**common, "backend": be}, threads)
        for name, r, base in (("llama.cpp", ref, True), (f"oxcore ({backend or 'auto'})", ox, False)):
            if "skipped" in r:
                rep.notes.append(f"skipped {name}: {r['skipped']}")
                continue
            ps, ds = _stats(r["prompt_s"], r["prompt_tokens"]), _stats(r["decode_token_s"])
            rep.add(name + " /token", ps, group=f"Gemma prompt ({r['prompt_tokens']} tok)",
                    baseline=base, tok_s=1e6 / ps.median_us, peak_rss_mb=r["peak_rss_mb"], version=r.get("version", ""))
            rep.add(name + " /token", ds, group=f"Gemma decode ({tokens} tok)",
                    baseline=base, tok_s=1e6 / ds.median_us, peak_rss_mb=r["peak_rss_mb"], version=r.get("version", ""))
        _goal_gemma(rep)
    rep.print()
    click.echo(f"saved {rep.save(out_path)}")


def _refs_present() -> bool:
    return (Path(__file__).parent.parent / "tests" / "reference" / "minilm_sentences.json").is_file()


def _fallback_sentences() -> list[str]:
    # NOTE: an installed wheel has no tests/ folder; 64 varied sentences made up here instead
    base = ["A man is eating food.", "The quick brown fox jumps over the lazy dog.", "I paid $12.99 for 3 coffees.",
            "東京は日本の首都です。", "I love pizza 🍕 and tacos 🌮!!!", "Transformers use self-attention to weigh tokens."]
    return [" ".join(base[(i + j) % len(base)] for j in range(1 + i % 6)) for i in range(64)]


def _goal_minilm(rep: Any, group: str) -> None:
    rows = [r for r in rep.rows if r["group"] == group]
    ox = next((r for r in rows if not r["baseline"]), None)
    ref = next((r for r in rows if r["baseline"]), None)
    if ox is None:
        return
    line = f"MiniLM: oxcore {ox['sentences_per_s']:.1f} sentences/s, peak RSS {ox['peak_rss_mb']:.0f} MiB"
    if ref is not None:
        x = ox["sentences_per_s"] / ref["sentences_per_s"]
        line += (f"; torch {ref['sentences_per_s']:.1f} sentences/s, peak RSS {ref['peak_rss_mb']:.0f} MiB; "
                 f"{x:.2f}x torch (goal >= 1.0x: {'met' if x >= 1.0 else 'NOT met'})")
    rep.notes.append(line)


def _goal_gemma(rep: Any) -> None:
    dec = [r for r in rep.rows if "decode" in r["group"]]
    ox = next((r for r in dec if not r["baseline"]), None)
    ref = next((r for r in dec if r["baseline"]), None)
    if ox is None:
        return
    line = (f"Gemma decode: oxcore {ox['tok_s']:.1f} tok/s (goal >= 10 tok/s on 2 cores: "
            f"{'met' if ox['tok_s'] >= 10 else 'NOT met'}), peak RSS {ox['peak_rss_mb']:.0f} MiB")
    if ref is not None:
        line += (f"; llama.cpp {ref['tok_s']:.1f} tok/s, peak RSS {ref['peak_rss_mb']:.0f} MiB "
                 f"({ox['tok_s'] / ref['tok_s']:.2f}x)")
    pro = [r for r in rep.rows if "prompt" in r["group"]]
    if pro:
        line += "; prompt " + ", ".join(f"{r['name'].split(' /')[0]} {r['tok_s']:.0f} tok/s" for r in pro)
    rep.notes.append(line)
