"""Compile the numba kernels in a child process, once per install, so that the process that
runs a model never holds LLVM's compilation memory.

Compiling every kernel path takes ~10-20 s and, in the compiling process, ~170 MiB that stays
(Gemma 3 270M's first ``oxcore generate`` peaked at 519 MiB, the next ones at 349 MiB: the
file is 241 MiB). The first kernel call of a process (``ensure()``) therefore looks for a stamp
of this install; without one it runs ``python -m oxcore_kernels_ggml._precompile``, which calls
every kernel path on small inputs (numba writes its disk cache, ``cache=True``) and lists the
cache's index files; the stamp keeps that list. The calling process then loads machine code
from the cache. A stamp whose index files are gone (a cleared ``__pycache__``) counts as
missing. If the child fails, the kernels compile in the calling process as before (a warning
says why). ``OXCORE_PRECOMPILE=0`` turns the child off.

Example:
    >>> from oxcore_kernels_ggml import _precompile
    >>> _precompile.stamp_path().name.startswith("compiled-")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

_CHILD = "OXCORE_PRECOMPILING"
#: the modules holding ``@njit(cache=True)`` functions (their sources key the stamp)
MODULES = ("_numba_blocks", "_numba_vnni", "_numba_matmul", "_numba_gemm", "_numba_pool", "_numba_nn_impl")
_DONE: list[bool] = []


def stamp_path() -> Path:
    """Where this install's stamp lives: the user cache dir, named by a hash of the kernels'
    sources (path, size, mtime), numba's and Python's versions and ``NUMBA_CACHE_DIR``."""
    import platformdirs

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in MODULES:
        st = (here / f"{name}.py").stat()
        h.update(f"{here / name}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(f"{_numba_version()}:{sys.version}:{os.environ.get('NUMBA_CACHE_DIR', '')}".encode())
    return Path(platformdirs.user_cache_dir("oxcore")) / "kernels_ggml" / f"compiled-{h.hexdigest()[:16]}.json"


def _numba_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba")
    except PackageNotFoundError:
        return "none"


def _valid(stamp: Path) -> bool:
    try:
        index = json.loads(stamp.read_text())["index_files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(index) and all(os.path.exists(p) for p in index)


def ensure() -> None:
    """Make sure this install's kernels are in numba's disk cache, compiling them in a child
    process when they are not (once; a no-op in the child itself and after the first call)."""
    if _DONE or os.environ.get(_CHILD) or os.environ.get("OXCORE_PRECOMPILE", "").strip() == "0":
        return
    _DONE.append(True)
    stamp = stamp_path()
    if _valid(stamp):
        return
    print("oxcore-kernels-ggml: compiling the numba kernels for this machine, once (~20 s)...",
          file=sys.stderr, flush=True)
    # NOTE: the two halves in parallel where there are two cores (~17 s each on this 2-core machine)
    parts = PARTS if (os.cpu_count() or 1) > 1 else ("all",)
    children: list[subprocess.Popen] = []
    try:
        children += [subprocess.Popen([sys.executable, "-m", __name__, part], env={**os.environ, _CHILD: "1"},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for part in parts]
        index: list[str] = []
        for c in children:
            out, err = c.communicate(timeout=900)
            if c.returncode != 0:
                raise RuntimeError(f"exit {c.returncode}: {err.strip()[-500:]}")
            index += json.loads(out.strip().splitlines()[-1])
        stamp.parent.mkdir(parents=True, exist_ok=True)
        from oxcore.extend import atomic_write

        with atomic_write(stamp) as tmp:  # NOTE: another process reading it sees no half file
            Path(tmp).write_text(json.dumps({"index_files": sorted(set(index))}, indent=1))
    except Exception as e:  # NOTE: the kernels then compile here, as without the children
        for c in children:
            c.kill()
        warnings.warn(f"oxcore-kernels-ggml: compiling in a child process failed ({type(e).__name__}: {e}); "
                      f"compiling in this process", RuntimeWarning, stacklevel=2)


#: what each child compiles: the one-row GEMVs and the small ops of a decode step, or the
#: products of several rows (a prompt)
PARTS = ("decode", "prefill")


def compile_all(part: str = "all") -> list[str]:
    """Run the kernel paths a model takes once, on small inputs (what a child does): ``part``
    ``"decode"``, ``"prefill"`` (``PARTS``) or ``"all"``; returns numba's cache index files of
    the functions compiled.

    The weights are read-only, as a model's mapped file gives them (numba compiles a read-only
    array as another type). Other variants (the float32 path under ``OXCORE_GGML_INT8=0``,
    writable weights, except for the helper pool: ``_pool_writable``) compile where they are
    first used, as before."""
    from . import _cpu, _numba_kernels_nn
    from .testing import TYPES, random_blocks

    by_part = {"decode": (1,), "prefill": (4, _cpu.GEMM_MIN_ROWS + 1), "all": (1, 4, _cpu.GEMM_MIN_ROWS + 1)}
    if part not in by_part:
        raise ValueError(f"part must be one of {', '.join(by_part)}, got {part!r}")
    rows = by_part[part]
    rng = np.random.default_rng(0)
    for t in TYPES:
        # NOTE: K of 256 fits every block size; 512 rows: above INT8_MIN_BYTES for each type.
        # The type is an argument of the kernels (one compilation serves all eight): every type
        # runs once so that each one's branch is known to work here
        shape = (512, 256)
        raw = random_blocks(t, shape, rng)
        raw.setflags(write=False)
        for m in rows:
            x = rng.standard_normal((m, 256)).astype(np.float32)
            _cpu.ggml_matmul(x, raw, ggml_type=t, shape=shape)
            if m == 1 and _cpu.int8_gemv():
                # NOTE: the one-thread GEMV too (where the helper pool runs, m = 1 goes to it)
                mod, _ = _cpu._compiled()
                mod.gemv_x(_cpu._layout(t, shape)[0], raw, x, np.empty((1, 512), np.float32))
    if 1 in rows and _cpu.int8_gemv():
        _pool_writable(rng)
    if part == "prefill":
        return _index_files()
    # NOTE: the decode step's small ops, in the layouts Gemma 3 passes them
    x = rng.standard_normal((1, 4, 1, 256)).astype(np.float32)
    w = rng.standard_normal(256).astype(np.float32)
    w.setflags(write=False)
    _numba_kernels_nn.rms_norm(x, w, eps=1e-6)
    _numba_kernels_nn.rms_norm(x, eps=1e-6)
    for traditional in (False, True):
        _numba_kernels_nn.rope(x, np.array(3, np.int32), dims=256, traditional=traditional, base=1e4, scale=1.0)
    k = rng.standard_normal((1, 1, 16, 256)).astype(np.float32)
    _numba_kernels_nn.sdpa(x, k, k, np.ones((1, 1, 1, 16), np.bool_), scale=0.0625, causal=False)
    _numba_kernels_nn.sdpa(x, k, k, scale=0.0625, causal=True)
    return _index_files()


def _pool_writable(rng: np.random.Generator) -> None:
    """The helper pool's caller side for writable weights too (tests, benchmarks). NOTE: the
    caller (``gemv_multi``) and the helpers (``helper_loop``) must come from one process's
    compilation: compiled apart, LLVM rounded some rows differently (1 ulp), and a product's bits
    then depended on which thread took a row."""
    from . import _cpu, _numba_pool
    from .testing import random_blocks

    if _numba_pool.available():
        w = random_blocks("Q8_0", (512, 256), rng)  # NOTE: writable, unlike the weights above
        x = rng.standard_normal((1, 256)).astype(np.float32)
        _numba_pool.gemv((_cpu.CODES["Q8_0"],), (w,), x, (np.empty((1, 512), np.float32),), 2)


def _index_files() -> list[str]:
    """numba's index files of every cached function of ``MODULES`` that has compiled code."""
    import importlib

    from numba.core.registry import CPUDispatcher

    out = []
    for name in MODULES:
        mod = importlib.import_module(f"{__package__}.{name}")
        for f in vars(mod).values():
            cache: Any = getattr(f, "_cache", None) if isinstance(f, CPUDispatcher) else None
            path = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
            if path and f.signatures and os.path.exists(path):
                out.append(str(path))
    return sorted(out)


if __name__ == "__main__":
    os.environ[_CHILD] = "1"  # NOTE: run by hand too: this process compiles, it starts no child
    print(json.dumps(compile_all(*sys.argv[1:2])))
