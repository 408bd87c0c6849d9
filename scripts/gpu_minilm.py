"""all-MiniLM-L6-v2 through oxcore on every installed backend (on the lent GPU: metal_basic and
metal_fused on mlx:gpu) against the committed sentence-transformers reference embeddings.

For each backend: the 72 reference sentences embedded in one call (batch 32), the worst cosine
and max abs difference against ``plugins/models/tests/reference/minilm.npz`` (torch float32),
and sentences/s over ``--repeat`` timed calls after one warm-up (median and spread).

    MLX_ENABLE_TF32=0 python3 scripts/gpu_minilm.py --model DIR --out $OUT/minilm.json

Exit status 0 when every backend meets the issue's bound (cosine >= 0.99999, max abs <= 1e-5).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REF = Path(__file__).resolve().parent.parent / "plugins/models/tests/reference"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bert", help="model dir (model.safetensors + config) or 'bert' (installed default)")
    ap.add_argument("--backends", default=None, help="comma-separated (default: every available backend)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import oxcore as ox
    import oxcore.models
    from oxcore.extend import manager

    sentences = json.loads((REF / "minilm_sentences.json").read_text())
    ref = np.load(REF / "minilm.npz")["embeddings"].astype(np.float64)
    names = a.backends.split(",") if a.backends else [b.name for b in manager().available_backends()]
    rows, ok = [], True
    for name in names:
        with ox.use(name):
            m = oxcore.models.load(a.model)
            got = m.embed(sentences, batch_size=32).astype(np.float64)
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                m.embed(sentences, batch_size=32)
                times.append(time.perf_counter() - t0)
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        row = {"backend": name, "min_cosine": float(cos.min()), "max_abs": float(np.abs(got - ref).max()),
               "sentences_per_s": len(sentences) / statistics.median(times),
               "spread_s": [min(times), max(times)]}
        row["pass"] = row["min_cosine"] >= 0.99999 and row["max_abs"] <= 1e-5
        ok &= row["pass"]
        rows.append(row)
        print(f"{name:12s} min cosine {row['min_cosine']:.8f}  max abs {row['max_abs']:.2e}  "
              f"{row['sentences_per_s']:8.1f} sentences/s  {'PASS' if row['pass'] else 'FAIL'}", flush=True)
    try:
        import mlx.core as mx
        device = str(mx.default_device())
    except ImportError:
        device = "no mlx"
    if a.out:
        Path(a.out).write_text(json.dumps({"mlx_default_device": device, "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
