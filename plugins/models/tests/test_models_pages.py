"""``_pages`` and the lazy imports behind ``oxcore generate``'s peak RSS (issue 14), each in a
fresh process (what is resident or imported is per process): dropped pages leave the process's
RSS and everything still works after; collecting the plugins imports no ml_dtypes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status, madvise")

STATUS = """
def rss():
    got = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("RssAnon", "RssFile"):
            got[k] = int(v.split()[0]) / 1024
    return got
"""


def _run(code: str) -> dict:
    p = subprocess.run([sys.executable, "-c", STATUS + code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_library_pages_dropped_after_a_numba_compile_and_the_code_still_runs():
    pytest.importorskip("numba")
    got = _run("""
import json
import numpy as np
from oxcore_models._pages import drop_library_pages_after_numba_compiles
import numba

@numba.njit
def f(x):
    return np.sum(x * 2.0)

x = np.random.default_rng().random(1000)
before = rss()["RssFile"]
assert drop_library_pages_after_numba_compiles()
f(x)  # NOTE: compiles under numba's lock: LLVM's pages are dropped when it is released
after = rss()["RssFile"]
# NOTE: numba sums in order, NumPy pairwise: equal up to rounding
print(json.dumps({"before": before, "after": after, "ok": bool(np.isclose(f(x), np.sum(x * 2.0), rtol=1e-12)),
                  "again": bool(np.isclose(f(x[:10]), np.sum(x[:10] * 2.0), rtol=1e-12))}))
""")
    assert got["ok"] and got["again"]
    # NOTE: importing numba maps ~40 MiB of LLVM and compiling touches more; a drop leaves a few
    assert got["after"] < got["before"] - 20, got


def test_string_pages_dropped_and_read_again(gemma_path):
    got = _run(f"""
import json
import oxcore as ox
tokens = ox.load({str(gemma_path)!r}).metadata["tokenizer.ggml.tokens"]
first = list(tokens)
before = rss()["RssFile"]
assert tokens.drop_pages()
after = rss()["RssFile"]
print(json.dumps({{"before": before, "after": after, "same": list(tokens) == first, "n": len(first)}}))
""")
    assert got["same"] and got["n"] == 262144
    assert got["after"] < got["before"] - 2, got  # NOTE: Gemma's 262k strings span ~4 MiB of the header


def test_trim_heap_returns_freed_memory():
    got = _run("""
import json
from oxcore_models._malloc import keep_freed_memory
from oxcore_models._pages import trim_heap
keep_freed_memory()  # NOTE: glibc now keeps up to 128 MiB of freed heap
objs = [bytearray(1000) for _ in range(60_000)]  # NOTE: ~60 MiB of small chunks (below the mmap threshold)
full = rss()["RssAnon"]
del objs
kept = rss()["RssAnon"]
trimmed = trim_heap()
print(json.dumps({"full": full, "kept": kept, "after": rss()["RssAnon"], "trimmed": trimmed}))
""")
    assert got["kept"] > got["full"] - 10, f"glibc returned the memory by itself (the test's premise): {got}"
    assert got["trimmed"] and got["after"] < got["kept"] - 40, got


def test_collecting_plugins_imports_no_ml_dtypes():
    got = _run("""
import json, sys
import oxcore.models
from oxcore.extend import manager
oxcore.models.architectures()
manager().available_backends()
print(json.dumps({"heavy": sorted(m for m in ("ml_dtypes", "jinja2", "rich", "gguf") if m in sys.modules)}))
""")
    assert got["heavy"] == [], got


def test_mapped_file_pages_dropped_and_read_again(tmp_path):
    p = tmp_path / "weights.bin"
    p.write_bytes(np.random.default_rng().integers(0, 256, 32 << 20, dtype=np.uint8).tobytes())
    got = _run(f"""
import json, mmap
import numpy as np
from oxcore_models._pages import drop_mapped_file_pages
with open({str(p)!r}, "rb") as f:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # NOTE: as oxcore.load maps model files
a = np.frombuffer(mm, np.uint8)
total = int(a.sum(dtype=np.uint64))
before = rss()["RssFile"]
advised = drop_mapped_file_pages()
after = rss()["RssFile"]
print(json.dumps({{"before": before, "after": after, "advised": advised, "same": int(a.sum(dtype=np.uint64)) == total,
                   "again": rss()["RssFile"]}}))
""")
    assert got["same"] and got["advised"] >= 32 << 20
    assert got["after"] < got["before"] - 24 and got["again"] > got["after"] + 24, got  # NOTE: dropped, then read back
