"""Peak/current RSS of `oxcore generate`'s stages (Gemma 3 270M by default), from /proc/self/status.

    ./dev python scripts/rss/stages.py [--tokens 64] [--trace]   (Linux only)

Prints one row per stage: VmHWM (peak so far), VmRSS, RssAnon, RssFile (MiB). --trace adds
tracemalloc's peak of Python allocations per stage (slows the run).
"""
from __future__ import annotations

import argparse
import sys
import time


def status() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) / 1024
    return out


ROWS: list[tuple] = []


def stage(name: str, trace: bool) -> None:
    s = status()
    tm = ""
    if trace:
        import tracemalloc

        cur, peak = tracemalloc.get_traced_memory()
        tm = f"{cur / 2**20:8.1f} {peak / 2**20:8.1f}"
        tracemalloc.reset_peak()
    ROWS.append((name, s, tm))
    print(f"{name:22s} HWM {s['VmHWM']:7.1f}  RSS {s['VmRSS']:7.1f}  anon {s['RssAnon']:7.1f}  "
          f"file {s['RssFile']:7.1f}  {('py cur/peak ' + tm) if tm else ''}  t={time.perf_counter() - T0:.2f}s",
          flush=True)


T0 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--modules", action="store_true", help="list the top-level modules imported at the end")
    a = ap.parse_args()
    if a.trace:
        import tracemalloc

        tracemalloc.start()
    stage("start", a.trace)
    import oxcore as ox  # noqa: F401

    stage("import oxcore", a.trace)
    import oxcore.models as om
    from oxcore_models._cli import _load  # noqa: F401

    stage("import models plugin", a.trace)
    path, found, meta = om.resolve("gemma3")
    stage("resolve (metadata)", a.trace)
    del meta  # NOTE: as oxcore generate (_cli._load): one mapping of the file
    f = ox.load(path)
    meta = dict(f.metadata)
    stage("ox.load", a.trace)
    from oxcore_models.gguf_tokenizer import from_gguf_metadata

    tok = from_gguf_metadata(meta)  # NOTE: its cost alone; from_file builds the model's own
    stage("tokenizer alone", a.trace)
    del tok
    from oxcore_models.gemma3 import Gemma3

    m = Gemma3.from_file(f, meta, dequantize="auto")
    stage("Gemma3.from_file", a.trace)
    m.tokenizer.free_encoder_after_use = True  # NOTE: as oxcore generate
    ids = m.tokenize(a.prompt)
    stage("prompt tokenized", a.trace)
    from oxcore_models.sampling import Sampler

    gen = m.generate_ids(ids, max_tokens=a.tokens, sampler=Sampler(temp=0))
    next(gen)
    stage("prompt pass", a.trace)
    next(gen)
    stage("first decode step", a.trace)
    n = 2 + sum(1 for _ in gen)
    stage(f"decode ({n} tokens)", a.trace)
    if a.modules:
        mods = sorted({k.split(".")[0] for k in sys.modules})
        print(f"{len(mods)} top-level modules:", " ".join(mods))
    smaps_top()


def smaps_top(n: int = 25) -> None:
    """The mappings holding the most resident memory (anonymous heap/arena ones grouped as [anon])."""
    rows: dict[str, list[float]] = {}
    cur = None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                cur = parts[5] if len(parts) > 5 else "[anon]"
                rows.setdefault(cur, [0.0, 0.0])
            elif parts[0] == "Rss:":
                rows[cur][0] += int(parts[1]) / 1024
            elif parts[0] == "Size:":
                rows[cur][1] += int(parts[1]) / 1024
    for name, (rss, size) in sorted(rows.items(), key=lambda r: -r[1][0])[:n]:
        print(f"  {rss:8.1f} MiB resident of {size:9.1f}  {name}")


if __name__ == "__main__":
    main()
