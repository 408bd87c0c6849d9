"""Fault injection: kill writers with SIGKILL at random instants and check what they leave.

``kill_writers`` forks a writer that rewrites one target over and over (alternating two
known contents), kills it with ``SIGKILL`` after a random delay, and checks that the target
is still exactly one of the complete contents, never a torn file; then it starts the next
writer. Forking from one process that imported oxcore once makes each kill cost milliseconds,
so CI runs 50+ kills in seconds (``tests/io/test_kill9.py``) and ``scripts/kill9`` thousands.

Writers (``KINDS``): ``save`` (``oxcore.save`` of a safetensors file), ``convert`` (``oxcore
convert`` safetensors -> GGUF, when oxcore-io-gguf is installed) and ``profile`` (an autotune
``Profile.save``, which merges under a file lock).

Example:
    >>> from oxcore.testing.faults import KINDS
    >>> KINDS
    ('save', 'convert', 'profile')
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["KINDS", "kill_writers"]

KINDS = ("save", "convert", "profile")


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # NOTE: ~1.5 MB in several tensors: a write takes a few ms, so random kills land inside it
    return {"w": rng.standard_normal((384, 512)).astype(np.float32),
            "b": rng.standard_normal(512).astype(np.float32),
            "h": rng.standard_normal((64, 128)).astype(np.float16),
            "i": rng.integers(-1000, 1000, (32, 32)).astype(np.int32)}


def _profile_doc(seed: int) -> dict[str, Any]:
    kernels = {}
    for j in range(200):  # NOTE: a realistic profile: a few hundred entries, ~100 KB of JSON
        e = {"op": f"op{j}", "kernel": f"cpu_numpy.op{j}", "version": "1", "source": "oxcore-cpu-numpy",
             "device": "cpu:test", "env": "", "dtypes": "float32->float32", "bucket": "64x64,64x64",
             "us": float(seed * 1000 + j), "at": float(seed)}
        kernels[f"op{j}|k|{j}"] = e
    return {"oxcore_profile": 1, "kernels": kernels, "transfers": {}}


class _Kind:
    """One writer: ``write(i)`` writes version ``i % 2``; ``check()`` says what the target holds."""

    def __init__(self, kind: str, work: Path) -> None:
        import oxcore as ox

        self.kind, self.work = kind, work
        work.mkdir(parents=True, exist_ok=True)
        if kind == "save":
            self.target = work / "model.safetensors"
            self.versions = [_tensors(1), _tensors(2)]
            self.expected = []
            for v in self.versions:
                ox.save(self.target, v)
                self.expected.append(self.target.read_bytes())
        elif kind == "convert":
            self.target = work / "model.gguf"
            self.srcs = []
            for s in (1, 2):
                src = work / f"src{s}.safetensors"
                ox.save(src, _tensors(s))
                self.srcs.append(src)
            self.expected = []
            for src in self.srcs:
                self._convert(src)
                self.expected.append(self.target.read_bytes())
        elif kind == "profile":
            self.target = work / "profile.json"
            self.versions = [_profile_doc(1), _profile_doc(2)]
            self.write(0)
        else:
            raise ValueError(f"Invalid kind: {kind!r}. Valid kinds are: {', '.join(KINDS)}")

    def _convert(self, src: Path) -> None:
        import contextlib
        import io

        from oxcore.cli import main

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["convert", str(src), str(self.target)], standalone_mode=False)

    def write(self, i: int) -> None:
        import oxcore as ox

        if self.kind == "save":
            ox.save(self.target, self.versions[i % 2])
        elif self.kind == "convert":
            self._convert(self.srcs[i % 2])
        else:
            p = ox.profile.Profile(self.target)
            p.data["kernels"].update(self.versions[i % 2]["kernels"])
            p.save()

    def check(self) -> str:
        """Which complete version the target holds (``"v0"``/``"v1"``; a merged profile:
        ``"intact"``), or raise AssertionError (torn, missing, unreadable)."""
        import oxcore as ox

        data = self.target.read_bytes()  # NOTE: FileNotFoundError here means the target vanished
        if self.kind in ("save", "convert"):
            for i, e in enumerate(self.expected):
                if data == e:
                    f = ox.load(self.target)  # and it reads back
                    assert sorted(f) == sorted(_tensors(1)), sorted(f)
                    return f"v{i}"
            raise AssertionError(f"{self.target} is torn: {len(data)} bytes, matching neither complete version "
                                 f"({', '.join(str(len(e)) for e in self.expected)} bytes)")
        doc = json.loads(data)  # NOTE: a torn JSON file raises here
        assert doc.get("oxcore_profile") == 1, "profile lost its format marker"
        known = {k: {e["us"] for e in (v["kernels"][k] for v in self.versions)} for k in self.versions[0]["kernels"]}
        assert set(doc["kernels"]) == set(known), "profile lost or gained entries"
        assert all(e["us"] in known[k] for k, e in doc["kernels"].items()), "profile entry torn"
        assert len(ox.profile.Profile(self.target)) == len(known)
        return "intact"


def _child(k: _Kind, start: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    code = 0
    try:
        i = start
        while True:
            k.write(i)
            i += 1
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _write_time(k: _Kind, n: int = 5) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        k.write(i)
    return (time.perf_counter() - t0) / n


def kill_writers(work: str | os.PathLike, kills: int, kinds: tuple[str, ...] = KINDS, *, seed: int | None = None,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Kill ``kills`` writers of each kind at random instants; check the target after each kill.

    Returns a report: per kind the kill count, how many kills left a stray temporary file
    (the kill landed inside a write), the verdicts seen and the seconds taken. Raises
    ``AssertionError`` at the first torn or missing target.
    """
    if not hasattr(os, "fork"):
        raise RuntimeError("kill_writers needs os.fork (POSIX)")
    rng = random.Random(seed)
    report: dict[str, Any] = {"seed": seed, "kinds": {}}
    for kind in kinds:
        if kind == "convert":
            import oxcore as ox

            if "gguf" not in ox._io.formats():
                report["kinds"][kind] = {"skipped": "no installed format reads and writes .gguf"}
                continue
        k = _Kind(kind, Path(work) / kind)
        per = _write_time(k)
        t0 = time.perf_counter()
        inside, verdicts = 0, {}
        for n in range(kills):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child never returns
                _child(k, n)
            # NOTE: up to ~3 writes' time: kills land before, inside and between writes
            time.sleep(rng.uniform(0, 3 * per))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            strays = [p for p in k.target.parent.iterdir() if p.name.startswith(f".{k.target.name}.")]
            inside += bool(strays)
            for p in strays:  # NOTE: a killed writer leaves its temporary file; the next write is unaffected
                p.unlink()
            v = k.check()
            verdicts[v] = verdicts.get(v, 0) + 1
        dt = time.perf_counter() - t0
        report["kinds"][kind] = {"kills": kills, "killed_mid_write": inside, "verdicts": verdicts,
                                 "write_ms": round(per * 1e3, 2), "seconds": round(dt, 2)}
        log(f"{kind}: {kills} kills ({inside} mid-write), target intact every time; {dt:.1f} s")
    return report


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(kill_writers(sys.argv[1], int(sys.argv[2])), indent=1))
