"""numba kernels of ``ggml_matmul`` for the cpu_numpy backend (one kernel, per-type dispatch).

Paths, by rows of x (M):

- CPUs with AVX512-VNNI or AVX-VNNI (``int8_gemv()``; ``OXCORE_GGML_INT8=0`` turns it off), W of
  at least ``INT8_MIN_BYTES``: x is quantized per 32 like ggml's q8_0 and multiplied with
  ``vpdpbusd`` (``_numba_vnni``): M = 1 the
  GEMV (``gemv_x``: one numba call that quantizes x, then ``gemv_rows``/``gemv_rows_k`` for
  Q8_0/Q5_0/Q4_0/Q4_K/Q6_K, ``gemv_q8`` for the rest), 2..``GEMM_MIN_ROWS - 1`` the row-at-a-time
  GEMM (``gemm_q8``: each weight row unpacked once), from ``GEMM_MIN_ROWS`` rows on AVX512-VNNI
  CPUs the register-blocked GEMM (``_numba_gemm``: 16 rows of x per 512-bit register, slabs of
  ``GEMM_MAX_ROWS`` rows; 3-4x ``gemm_q8`` from 16 rows), else ``gemm_q8`` up to ``INT8_MAX_ROWS``.
  NMSE ~3e-5 against the float64 product (ggml's bound for it: 5e-4).
- The int8 GEMV of Q8_0/Q5_0/Q4_0/Q4_K/Q6_K with more than one thread: ``_numba_pool`` (the
  caller and helper threads of its own claim 4-row groups from one atomic word; the caller never
  waits for a helper to wake: OpenMP's team did, ~36-60 us a call, ms on a busy machine).
- Otherwise, up to ``GEMV_MAX_ROWS``: the float32-lane GEMV (``gemv``, NMSE ~1e-14).
- More rows: tiles of W dequantized by io_gguf, multiplied with BLAS (float32).

numba is imported on the first call, never at plugin load (``oxcore --help`` stays fast); the
compiled machine code is cached on disk (``cache=True``), so only the first run of a machine
pays the compilation (~10-30 s), and it runs in a child process (``_precompile``: the memory LLVM
takes while compiling stays out of the process running the model). Threads: ``OXCORE_THREADS`` when set, else ``NUMBA_NUM_THREADS``,
else one per core; ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (idle threads sleep, not spin);
``OXCORE_GEMV_POOL=0`` keeps the decode GEMV on numba's OpenMP threads.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import numpy as np

from .testing import TYPES

KERNEL_NAME = "numba"
GEMV_MAX_ROWS = 8  # NOTE: float32 path: up to here each weight row is unpacked once and dotted with every x row
# NOTE: int8 path: up to here the VNNI GEMM (rows of W unpacked once, dotted with every x row) beats
# or ties tiles of dequantized W + BLAS (Gemma's Q5_0 2048 x 640 and Q6_K 640 x 2048 on the shared
# 2-core machine, medians of 9: 4.0 vs 11.8 ms and 3.8 vs 13.5 at 65 rows of x, 12.7 vs 13.4 and
# 7.9 vs 8.0 at 128, mixed at 256; at 16..64 rows the BLAS path took 20-100 ms while others
# loaded the machine, the GEMM 0.7-8 ms)
INT8_MAX_ROWS = 128
# NOTE: the register-blocked GEMM (_numba_gemm, AVX512-VNNI) from this many rows of x: its lanes are
# 16 rows of x, so fewer rows waste lanes (one thread, Gemma's shapes, medians of 15: at 4 rows it
# ties gemm_q8, at 8 rows 1.2-1.6x faster, at 16 rows 2.1-2.9x, at 39 2.2-3x, at 128 3.3-3.9x)
GEMM_MIN_ROWS = 8
# NOTE: rows of x per GEMM call: x's quantized copy (K bytes + 2 floats per group a row) stays in L2
# while each weight tile is run against it; more rows go in slabs (each unpacks W again)
GEMM_MAX_ROWS = 512
# NOTE: the blocked GEMM's products (2 M N K) below this run on one thread: ~0.1-0.2 ms there,
# where handing tasks to the pool cost ~20-30 us (Gemma's 256 x 640 K/V projections at 39 rows:
# 13 MFLOP, ~50 us on one thread)
GEMM_PARALLEL_MIN_FLOP = 32e6
# NOTE: int8 path: only from this many weight bytes. Below, the call's fixed cost dominates (the
# float32 GEMV is as fast), and a product with few outputs has no average: one output of 32
# cancelling terms measured a relative error of 18% with x in 8 bits (NMSE 0.03), where the float32
# path is exact. Gemma's smallest matrix is 110 KB.
INT8_MIN_BYTES = 64 << 10
# NOTE: weight bytes (times x rows) below which one thread runs it: all of Gemma's layers (the
# int8 GEMV takes 0.1-0.2 ms for them on one thread); a second thread's wake-up on the busy
# 2-core machine cost more (Gemma decode, 3 interleaved runs: median 11.6 tok/s at 4 MiB, 9.1 at
# 256 KiB; on a quieter one 17.0 vs 16.6)
PARALLEL_MIN_BYTES = 4 << 20
_TILE_BYTES = 4 << 20  # NOTE: GEMM: float32 rows unpacked per BLAS call (enough for the dequantizer's threads)
_STATE: dict[str, Any] = {}
#: the numba code dispatches on these (the kernels' own codes, not ggml's type ids)
CODES = {t: i for i, t in enumerate(TYPES)}


def supports(node: Any) -> bool | str:
    """True for float32 ``x`` and a block type the kernels know; otherwise why not."""
    t = node.attrs["ggml_type"]
    if t not in TYPES:
        return f"numba kernels take ggml types {', '.join(TYPES)}, got {t}"
    x = node.inputs[0]
    if x.dtype.name != "float32":
        return f"numba kernels take float32 x, got {x.dtype.name} (cast x, or use the decomposition)"
    if _numba_missing():
        return "numba is not installed (pip install numba)"
    return True


def prior_us(node: Any) -> float:
    """Before autotune: weight bytes at ~8 GB/s for decode, ~15 GFLOP/s for prefill; the int8
    GEMMs per thread: ``gemm_q8`` (up to ``INT8_MAX_ROWS`` rows of x) ~40 GFLOP/s, the blocked
    ``_numba_gemm`` (from ``GEMM_MIN_ROWS``) ~150 (Gemma's layers, measured)."""
    from oxcore_io_gguf._types import ggml_type, nbytes

    n, k = node.attrs["shape"]
    m = math.prod(node.inputs[0].shape[:-1])
    wbytes = nbytes(ggml_type(node.attrs["ggml_type"]), (n, k))
    rate = 15e3
    int8 = m <= INT8_MAX_ROWS and wbytes >= INT8_MIN_BYTES and int8_gemv()
    if int8 or _blocked_gemm(m, wbytes):
        # NOTE: per thread: _numba_gemm 120-250 GFLOP/s at 16-512 rows (Gemma's shapes), gemm_q8 ~40.
        # numba's own thread count would import numba while planning; the environment says it
        env = os.environ.get("OXCORE_THREADS") or os.environ.get("NUMBA_NUM_THREADS") or ""
        n_threads = int(env) if env.strip().isdigit() and int(env) > 0 else (os.cpu_count() or 1)
        rate = (150e3 if _blocked_gemm(m, wbytes) else 40e3) * n_threads
    return 5.0 + wbytes / 8e3 + 2.0 * m * n * k / rate


def ggml_matmul(x: np.ndarray, raw: np.ndarray, *, ggml_type: str, shape: tuple[int, int]) -> np.ndarray:
    """``x (..., K) @ W.T`` with W (N, K) given as its ggml block bytes ``raw``."""
    # NOTE: a decode step makes ~130 of these calls, most of them 0.1 ms of GEMV: the Python
    # around the kernel is kept to a few lookups (``_layout``, cached per type and shape) and
    # one numba call for the decode GEMV (``gemv_x`` quantizes x itself)
    mod = _STATE.get("mod") or _compiled()[0]
    code, row_bytes, wbytes = _LAYOUT.get((ggml_type, shape)) or _layout(ggml_type, shape)
    n, k = shape
    w = (raw if raw.flags.c_contiguous else np.ascontiguousarray(raw)).reshape(n, row_bytes)
    xs = x.reshape(-1, k) if x.dtype == np.float32 and x.flags.c_contiguous else np.ascontiguousarray(x, np.float32).reshape(-1, k)
    m = xs.shape[0]
    if _blocked_gemm(m, wbytes):
        return _gemm_rows(xs, w, code, ggml_type).reshape(x.shape[:-1] + (n,))
    y = np.empty((m, n), np.float32)
    int8 = m <= INT8_MAX_ROWS and wbytes >= INT8_MIN_BYTES and int8_gemv()
    if int8 or m <= GEMV_MAX_ROWS:
        # NOTE: waking the other threads costs more than a small matrix (Gemma's layers: 0.1-0.3 ms
        # on one thread, up to 10 ms when a second thread must be scheduled on a busy machine)
        if int8 and m == 1 and code in _POOL_CODES and _pool_gemv(code, w, xs, y):
            return y.reshape(x.shape[:-1] + (n,))
        # NOTE: numba's thread count is process state (per calling thread): it is put back after
        # the call (~1.5 us) so that another numba user in the process keeps its own setting
        nb = _numba()
        before = nb.get_num_threads()
        nb.set_num_threads(threads() if wbytes * m >= PARALLEL_MIN_BYTES else 1)
        try:
            if int8 and m == 1:
                mod.gemv_x(code, w, xs, y)
            elif int8:
                xq = np.empty((m, k), np.int8)
                xd, xsum = np.empty((m, k // 32), np.float32), np.empty((m, k // 16), np.float32)
                mod.quantize_x(xs, xq, xd, xsum)
                # NOTE: one row of x: unpacking straight into vpdpbusd beats storing the unpacked
                # row (0.106 vs 0.163 ms, Q5_0 2048 x 640); from 2 rows the unpacked row is reused
                mod.gemm_q8(code, w, xq, xd, xsum, y)
            else:
                mod.gemv(code, w, xs, _STATE["lut"], y)
        finally:
            nb.set_num_threads(before)
    else:
        from oxcore_io_gguf.quants import dequantize

        # NOTE: prefill is compute-bound: BLAS on tiles of rows unpacked by io_gguf's vectorized
        # dequantizer (its threads) beats any numba loop; W is never dequantized whole
        rows = max(16, _TILE_BYTES // (4 * k))
        for a in range(0, n, rows):
            e = min(n, a + rows)
            # NOTE: not matmul(out=y[:, a:e]): a strided out makes NumPy skip BLAS (10x slower)
            y[:, a:e] = xs @ dequantize(w[a:e], ggml_type, (e - a, k)).T
    return y.reshape(x.shape[:-1] + (n,))


_LAYOUT: dict[tuple, tuple[int, int, int]] = {}
_POOL_CODES = frozenset((0, 2, 4, 5, 7))  # NOTE: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K (_numba_pool.CODES)


def _pool_gemv(code: int, w: np.ndarray, xs: np.ndarray, y: np.ndarray) -> bool:
    """The decode GEMV on this thread and ``threads() - 1`` helpers (``_numba_pool``); False
    where there are no helpers (one thread, not Linux x86-64, ``OXCORE_GEMV_POOL=0``, or the
    helpers busy with another caller): the caller then runs numba's kernel."""
    n_threads = _STATE.get("pool_threads")
    if n_threads is None:
        from . import _numba_pool

        use = os.environ.get("OXCORE_GEMV_POOL", "").strip() != "0" and _numba_pool.available()
        n_threads = _STATE["pool_threads"] = threads() if use else 1
        _STATE["pool"] = _numba_pool
    return n_threads > 1 and _STATE["pool"].gemv((code,), (w,), xs, (y,), n_threads)


def _layout(ggml_type: str, shape: tuple[int, int]) -> tuple[int, int, int]:
    """(the kernels' type code, bytes per weight row, weight bytes) of W, cached."""
    from oxcore_io_gguf._types import ggml_type as lookup

    t = lookup(ggml_type)
    n, k = shape
    row = k // t.block_size * t.type_size
    got = _LAYOUT[(ggml_type, tuple(shape))] = (CODES[t.name], row, n * row)
    return got


def _numba() -> Any:
    got = _STATE.get("numba")
    if got is None:
        import numba

        got = _STATE["numba"] = numba
    return got


def _gemm_rows(xs: np.ndarray, w: np.ndarray, code: int, ggml_type: str) -> np.ndarray:
    """The blocked GEMM (``_numba_gemm``) of ``xs`` (M, K) by W's row bytes ``w``, in slabs of
    ``GEMM_MAX_ROWS`` rows, on its own pool of threads (not numba's: ``_run_pooled`` says why)."""
    m, k = xs.shape
    n_threads = threads() if 2 * m * w.shape[0] * k >= GEMM_PARALLEL_MIN_FLOP else 1
    parts = [mod_gemm().matmul(xs[a:a + GEMM_MAX_ROWS], w, code, ggml_type, n_threads)
             for a in range(0, m, GEMM_MAX_ROWS)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _blocked_gemm(m: int, wbytes: int) -> bool:
    """Whether ``m`` rows of x against ``wbytes`` of weights go to ``_numba_gemm``."""
    return m >= GEMM_MIN_ROWS and wbytes >= INT8_MIN_BYTES and int8_gemv() and vnni512_cpu()


def mod_gemm() -> Any:
    """``_numba_gemm`` (imported on first use: it compiles on import of numba). NOTE: its one
    caller, ``ggml_matmul``, has run ``_compiled()`` (and so ``_precompile.ensure()``) first."""
    from . import _numba_gemm

    return _numba_gemm


def vnni512_cpu() -> bool:
    """Whether this CPU has AVX512-VNNI (``vpdpbusd`` on 512-bit registers)."""
    if "vnni512" not in _STATE:
        try:
            import llvmlite.binding as llvm

            f = llvm.get_host_cpu_features()
        except (ImportError, RuntimeError):
            f = {}
        _STATE["vnni512"] = bool(f.get("avx512vnni") and f.get("avx512bw"))
    return _STATE["vnni512"]


def int8_gemv() -> bool:
    """Whether the GEMV quantizes x to int8 blocks and multiplies with VNNI (``vpdpbusd``): on
    CPUs with AVX512-VNNI or AVX-VNNI, unless ``OXCORE_GGML_INT8=0``. Else float32 lanes.

    NOTE: ggml's own CPU path; 2-3x the float32 kernel's speed here (Gemma's layer shapes), at an
    NMSE of ~3e-5 against the float64 product (ggml's test-backend-ops bound: 5e-4)."""
    return os.environ.get("OXCORE_GGML_INT8", "").strip() != "0" and vnni_cpu()


def vnni_cpu() -> bool:
    """Whether this CPU has AVX512-VNNI (with AVX512-VL) or AVX-VNNI: ``vpdpbusd`` on 256 bits."""
    if "vnni" not in _STATE:
        # NOTE: llvmlite only (numba's code generator, light): no numba import while planning
        try:
            import llvmlite.binding as llvm

            f = llvm.get_host_cpu_features()
        except (ImportError, RuntimeError):  # NOTE: no numba (supports() refuses), or no host info
            f = {}
        _STATE["vnni"] = bool((f.get("avx512vnni") and f.get("avx512vl")) or f.get("avxvnni"))
    return _STATE["vnni"]


def threads() -> int:
    """Threads the kernels use: ``OXCORE_THREADS``, else numba's default (``NUMBA_NUM_THREADS``
    or one per core)."""
    import numba

    env = os.environ.get("OXCORE_THREADS", "").strip()
    return max(1, min(int(env), numba.config.NUMBA_NUM_THREADS)) if env.isdigit() else numba.config.NUMBA_NUM_THREADS


def _compiled() -> tuple[Any, np.ndarray]:
    """(the numba drivers' module, the float16 table of the float32 GEMV), imported once."""
    if "mod" not in _STATE:
        # NOTE: OpenMP's idle workers spin by default; between two kernels they take the core
        # the Python thread needs for the rest of the step (Gemma decode on 2 busy cores: the
        # step's small NumPy ops took 10x longer). Passive workers sleep. A user's setting wins;
        # it must be set before numba starts its OpenMP pool.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from . import _precompile

        _precompile.ensure()
        from . import _numba_blocks, _numba_matmul

        _STATE["lut"] = _numba_blocks.f16_table()
        _STATE["mod"] = _numba_matmul
    return _STATE["mod"], _STATE["lut"]


def _numba_missing() -> bool:
    if "missing" not in _STATE:
        _STATE["missing"] = importlib.util.find_spec("numba") is None
    return _STATE["missing"]


def kernels() -> list:
    from oxcore.extend import Kernel

    return [Kernel("ggml_matmul", "cpu_numpy", ggml_matmul, supports, name=KERNEL_NAME, prior_us=prior_us)]
