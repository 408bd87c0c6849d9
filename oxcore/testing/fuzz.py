"""Header fuzzing at scale: mutate real-looking files of a format, open each one, check the
contract of ``open_mutated`` (only ``FormatError`` escapes, offsets inside the file, opening
allocates in proportion to the header, every tensor a successful open reports lies inside the
file and reads). Any other outcome is a *finding*: its bytes are saved as a regression example
that ``tests/io/test_fuzz_regressions.py`` replays in CI.

Bases per format: every valid case of ``oxcore.testing.formats`` (``valid_cases``) plus a larger
file written by oxcore itself (many tensors, metadata arrays); for safetensors also MiniLM's
real header when installed. Mutations (``MUTATIONS``) follow the hypothesis fuzzers in
tests/io and plugins/io_gguf/tests: bit flips, bytes, interesting integers in 32/64-bit
fields and JSON digits, cuts, inserts, deletes, spliced duplicates, lying length prefixes,
and a data region grown or shrunk (sparse).

Example:
    >>> from oxcore.testing.fuzz import fuzz
    >>> r = fuzz("safetensors", cases=20, seed=1, save_to=None)
    >>> r["cases"], r["findings"]
    (20, 0)
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

__all__ = ["fuzz", "MUTATIONS", "REGRESSIONS", "replay"]

MUTATIONS = ("flip", "byte", "u32", "u64", "digit", "cut", "insert", "delete", "splice", "length")
_EXTREMES = [0, 1, 2, 7, 8, 0xFF, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 62, (1 << 64) - 1]
#: where findings are kept, per format: <repo>/tests/io/fuzz_regressions/<format>/<sha>.bin
REGRESSIONS = Path(__file__).resolve().parents[2] / "tests" / "io" / "fuzz_regressions"


def _bases(fmt: str, work: Path) -> list[tuple[bytes, int]]:
    """(header-ish bytes, real file size) pairs to mutate."""
    import numpy as np

    import oxcore as ox
    from oxcore.testing import formats as F

    out = [(c.data, len(c.data)) for c in F.valid_cases(fmt)]
    rng = np.random.default_rng(0)
    ts = {f"blk.{i}.{n}": rng.standard_normal(s).astype(np.float32 if i % 2 else np.float16)
          for i in range(6) for n, s in (("attn_q.weight", (8, 32)), ("ffn_norm.weight", (32,)))}
    meta = ({"general.name": "fuzz", "tokenizer.ggml.tokens": [f"t{i}" for i in range(64)],
             "tokenizer.ggml.scores": [float(i) for i in range(64)], "n": 7} if fmt == "gguf"
            else {"format": "pt", "note": "x" * 40})
    p = work / f"base.{fmt}"
    ox.save(p, ts, meta, format=fmt)
    out.append((p.read_bytes(), p.stat().st_size))
    if fmt == "safetensors":
        real = F.minilm_safetensors()
        if real is not None:
            with open(real, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                out.append((struct.pack("<Q", n) + fh.read(n), real.stat().st_size))
    return out


def mutate(data: bytes, rng: random.Random, n: int) -> bytearray:
    """``n`` random mutations of ``data`` (see ``MUTATIONS``)."""
    b = bytearray(data)
    for _ in range(n):
        kind = rng.choice(MUTATIONS)
        pos = rng.randrange(max(1, len(b)))
        if not b:
            b += bytes([rng.randrange(256)])
            continue
        if kind == "flip":
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            b[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, ord('"'), ord("{"), ord("}"), ord(","), rng.randrange(256)])
        elif kind in ("u32", "u64"):
            w = 4 if kind == "u32" else 8
            pos -= pos % w  # NOTE: GGUF fields are not aligned, but many lie on these boundaries
            b[pos:pos + w] = struct.pack("<I" if w == 4 else "<Q", rng.choice(_EXTREMES) % (1 << (8 * w)))
        elif kind == "digit":
            digits = [i for i in range(len(b)) if 48 <= b[i] <= 57]
            if digits:
                i = rng.choice(digits)
                b[i:i + 1] = str(rng.choice([0, 9, 99999999, 2**53 + 1, 18446744073709551615, 10**30, -1])).encode()
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([rng.randrange(256)]) * rng.randrange(1, 18)
        elif kind == "delete":
            del b[pos:pos + rng.randrange(1, 18)]
        elif kind == "splice":
            j = rng.randrange(len(b))
            b[pos:pos] = b[j:j + rng.randrange(1, 64)]
        else:  # a lying length prefix: the safetensors header length, or a GGUF count
            at = 0 if b[:4] != b"GGUF" else rng.choice([8, 16])
            v = rng.choice([len(b) - 8, len(b), 0, 1 << 40, (1 << 64) - 1, rng.randrange(1 << 20)])
            b[at:at + 8] = struct.pack("<Q", v % (1 << 64))
    return b


def _reader(fmt: str) -> Callable[[Any, str], None] | None:
    if fmt != "gguf":
        return None
    import oxcore as ox

    def read(f: Any, name: str) -> None:
        try:
            f[name].numpy()
        except ox.DTypeError as e:  # NOTE: a valid file of a type nobody can decode (e.g. Q8_1)
            assert "cannot be dequantized" in str(e)
    return read


def _check(path: Path, fmt: str, size: int, read: Any) -> bool:
    """True when the file loaded (and every small tensor read), False when refused."""
    from oxcore.testing.formats import open_mutated

    return open_mutated(path, fmt, alloc_budget=20 * size + (16 << 20), read=read) is not None


def replay(path: str | os.PathLike, fmt: str) -> None:
    """Run one saved example through the contract (what the regression test does)."""
    _check(Path(path), fmt, os.path.getsize(path), _reader(fmt))


def fuzz(fmt: str, cases: int, *, seed: int | None = None, save_to: str | os.PathLike | None = REGRESSIONS,
         log: Callable[[str], None] = lambda s: None, every: int = 10000) -> dict[str, Any]:
    """Fuzz ``fmt``'s reader for ``cases`` mutated files; returns a report with the findings.

    Findings (any exception but the contract's ``FormatError``, a contract violation, or a
    case slower than 10 s) are saved under ``save_to/<format>/`` as ``<sha>.bin`` with the
    traceback in ``<sha>.txt``.
    """
    import oxcore as ox

    if fmt not in ox._io.formats():
        raise ValueError(f"Unknown format {fmt!r}. Registered formats: {', '.join(ox._io.formats())}")
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    work = Path(tempfile.mkdtemp(prefix="oxcore-fuzz-", dir=shm))
    bases = _bases(fmt, work)
    read = _reader(fmt)
    suffix = ox._io.get_format(fmt).suffixes[0]
    p = work / f"case{suffix}"
    findings: list[dict[str, Any]] = []
    outcomes = {"refused": 0, "loaded": 0}
    t0 = time.perf_counter()
    for i in range(cases):
        head, size = bases[rng.randrange(len(bases))]
        b = mutate(head, rng, rng.randint(1, 4))
        with open(p, "wb") as fh:
            fh.write(b)
            if len(b) >= len(head) or rng.random() < 0.5:  # NOTE: a sparse data region of the real size
                delta = rng.randint(-64, 64) if rng.random() < 0.3 else 0
                fh.truncate(max(len(b), size + len(b) - len(head) + delta))
        c0 = time.perf_counter()
        try:
            outcomes["loaded" if _check(p, fmt, len(b), read) else "refused"] += 1
            slow = time.perf_counter() - c0 > 10
            if slow:
                raise TimeoutError(f"case took {time.perf_counter() - c0:.1f} s")
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            data = p.read_bytes()
            sha = hashlib.sha256(data).hexdigest()[:16]
            findings.append({"case": i, "sha": sha, "error": f"{type(e).__name__}: {e}"[:500]})
            if save_to is not None:
                d = Path(save_to) / fmt
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{sha}.bin").write_bytes(data)
                (d / f"{sha}.txt").write_text(f"seed {seed} case {i}\n{traceback.format_exc()}")
            log(f"FINDING case {i}: {type(e).__name__}: {e}")
        if every and (i + 1) % every == 0:
            log(f"{fmt}: {i + 1} cases, {len(findings)} findings, {time.perf_counter() - t0:.0f} s")
    dt = time.perf_counter() - t0
    for q in work.iterdir():
        q.unlink()
    work.rmdir()
    return {"format": fmt, "cases": cases, "seed": seed, "findings": len(findings), "found": findings[:20],
            "outcomes": outcomes, "seconds": round(dt, 1), "cases_per_s": round(cases / dt, 1) if dt else None}
