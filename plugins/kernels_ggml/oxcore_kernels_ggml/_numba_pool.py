"""Helper threads for the decode GEMV (``gemv``) that the caller never waits for to wake up.

A decode step of a small model is ~130 GEMVs of 10-100 us. numba's OpenMP team costs each of
them a worker's wake-up (~36-60 us on the shared 2-core VM with ``OMP_WAIT_POLICY=PASSIVE``),
and its closing barrier waits for a worker that the OS has not scheduled (another process on
the other core: 40 ms for a layer pass that takes 10 ms on one thread). Here instead:

- the caller publishes the product in a control block (``ctl``: an int64 array) and works
  through it itself, taking runs of 4-row groups from one atomic claim word;
- helper threads (``threads() - 1``, started on first use) take runs from the same word when
  they are awake; the caller waits only for runs a helper has already taken (tens of us at
  most), never for a helper to wake or to be scheduled;
- between products a helper spins ``SPIN_US`` (``OXCORE_SPIN_US``), calling ``sched_yield``
  each round so any other runnable thread of its core goes first, then sleeps on a futex (the
  caller wakes it with one syscall; it joins the product in progress or the next one).

The claim word holds (generation mod 2^15, groups in the product, next group): a helper needs
nothing else to claim a run, and reads the product's fields only after a successful claim
(the caller cannot publish the next product before every claimed run is done).

Linux x86-64 only (raw ``syscall`` for futex and sched_yield; ``available()``).

Example:
    >>> import numpy as np
    >>> from oxcore_kernels_ggml import _numba_pool as P
    >>> P.available() in (True, False)
    True
"""

from __future__ import annotations

import atexit
import os
import platform
import sys
import threading
import time
from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _numba_matmul as M
from . import _numba_vnni as V

#: as ``_numba_matmul._INTRINSICS``: numba's disk cache is keyed on this file, so bump it with
#: every change of ``_numba_vnni``'s or ``_numba_matmul``'s code (or clear ``__pycache__``)
_INTRINSICS = 4

#: microseconds a helper keeps polling after its last run before it sleeps (a decode step's
#: gaps between GEMVs are 20-300 us: the helper stays awake through a step, asleep after it)
SPIN_US = float(os.environ.get("OXCORE_SPIN_US", "500"))
MAX_SEGMENTS = 4  # NOTE: weight matrices sharing one x in one product (q, k, v: 3)
# NOTE: runs of 4-row groups per claim: the first runs an eighth of what is left, at least
# MIN_RUN (a claim bounces the word's cache line between cores: ~0.1 us), at most MAX_RUN
# (Q8_0 x 640: ~0.7 MB, ~50 us): the caller waits at most one run for a helper
MIN_RUN, MAX_RUN = 4, 256

# control block slots (int64), hot words on their own cache lines
_CLAIM, _DONE, _GEN, _SLEEPERS, _STOP = 0, 8, 16, 24, 32
_K, _XQ, _XD, _XS, _NSEG = 40, 41, 42, 43, 44
_SEG = 48  # NOTE: segment s at _SEG + 8 s: code, w, row bytes, groups, y, x offsets, first group
_CTL_SLOTS = _SEG + 8 * MAX_SEGMENTS
_SYS_SCHED_YIELD, _SYS_FUTEX, _FUTEX_WAIT, _FUTEX_WAKE = 24, 202, 128, 129  # NOTE: *_PRIVATE ops


def available() -> bool:
    """Whether helper threads can run here (Linux on x86-64: raw futex syscalls)."""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


# --- intrinsics: atomics on int64 array slots, pause, cycle counter, syscalls, pointers --------
def _slot(context, builder, aryty, ary, idx, idxty):
    a = context.make_array(aryty)(context, builder, ary)
    return builder.gep(a.data, [context.cast(builder, idx, idxty, types.intp)])


@intrinsic
def atomic_load(typingctx, arr, i):
    """``arr[i]`` read atomically (sequentially consistent)."""
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, sig.args[0], args[0], args[1], sig.args[1]), "seq_cst", 8)
    return types.int64(arr, i), codegen


@intrinsic
def atomic_store(typingctx, arr, i, v):
    """``arr[i] = v`` atomically (sequentially consistent)."""
    def codegen(context, builder, sig, args):
        p = _slot(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store_atomic(context.cast(builder, args[2], sig.args[2], types.int64), p, "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(arr, i, v), codegen


@intrinsic
def atomic_add(typingctx, arr, i, v):
    """``arr[i] += v`` atomically; returns the old value."""
    def codegen(context, builder, sig, args):
        p = _slot(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.atomic_rmw("add", p, context.cast(builder, args[2], sig.args[2], types.int64), "seq_cst")
    return types.int64(arr, i, v), codegen


@intrinsic
def atomic_cas(typingctx, arr, i, old, new):
    """``arr[i] = new`` if it holds ``old``, atomically; returns what it held."""
    def codegen(context, builder, sig, args):
        p = _slot(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        o = context.cast(builder, args[2], sig.args[2], types.int64)
        n = context.cast(builder, args[3], sig.args[3], types.int64)
        return builder.extract_value(builder.cmpxchg(p, o, n, "seq_cst", "seq_cst"), 0)
    return types.int64(arr, i, old, new), codegen


@intrinsic
def pause(typingctx):
    """x86 ``pause``: a polite spin-wait hint."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def cycles(typingctx):
    """The time-stamp counter (``rdtsc``)."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def syscall4(typingctx, nr, a, b, c, d):
    """libc's ``syscall(nr, a, b, c, d)`` (Linux), declared by name: the JIT links it from the
    process, so the code stays cacheable (a ctypes pointer would be baked in)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        vals = [context.cast(builder, v, t, types.int64) for v, t in zip(args, sig.args)]
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64], var_arg=True), "syscall")
        return builder.call(fn, vals)
    return types.int64(nr, a, b, c, d), codegen


def _pointer(nbtype):
    @intrinsic
    def ptr(typingctx, addr):
        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(sig.return_type))
        return types.CPointer(nbtype)(addr), codegen
    return ptr


ptr_u8, ptr_i8, ptr_i32, ptr_f32 = (_pointer(t) for t in (types.uint8, types.int8, types.int32, types.float32))


# --- the work: runs of 4-row groups -------------------------------------------------------------
@njit(cache=True, inline="always", fastmath=True)
def _groups(ctl, s, g0, g1):
    """Groups ``g0..g1`` of segment ``s`` (indices within the segment)."""
    k = ctl[_K]
    base = _SEG + 8 * s
    code, row_bytes, n_groups = ctl[base], ctl[base + 2], ctl[base + 3]
    n_rows = 4 * n_groups
    flat = carray(ptr_u8(ctl[base + 1]), n_rows * row_bytes)
    out = carray(ptr_f32(ctl[base + 4]), n_rows)
    xo = carray(ptr_i32(ctl[base + 5]), k // 4)
    q = carray(ptr_i8(ctl[_XQ]), k)
    d_x = carray(ptr_f32(ctl[_XD]), k // 32)
    xsum = carray(ptr_f32(ctl[_XS]), k // 32)
    group = 4 * row_bytes
    for g in range(g0, g1):
        M.prefetch_group_l2(flat, g + 2, group)
        if code == 4:
            V.dot_rows4_q8_0(flat, g * group, row_bytes, q, xo, d_x, k // 32, out, 4 * g)
        elif code == 2:
            V.dot_rows4_q5_0(flat, g * group, row_bytes, q, xo, d_x, k // 32, out, 4 * g)
        elif code == 0:
            V.dot_rows4_q4_0(flat, g * group, row_bytes, q, xo, d_x, k // 32, out, 4 * g)
        elif code == 5:
            V.dot_rows4_q4_k(flat, g * group, row_bytes, q, xo, d_x, xsum, k // 256, out, 4 * g)
        else:
            V.dot_rows4_q6_k(flat, g * group, row_bytes, q, xo, d_x, xsum, k // 256, out, 4 * g)


@njit(cache=True, fastmath=True)  # NOTE: as gemv_rows: the same rounding, the same tokens
def _work(ctl):
    """Claim runs of the published product and compute them until none is left."""
    while True:
        word = atomic_load(ctl, _CLAIM)
        total, nxt = (word >> 24) & 0xFFFFFF, word & 0xFFFFFF
        if nxt >= total:
            return
        run = min(MAX_RUN, max(MIN_RUN, (total - nxt) // 8), total - nxt)
        if atomic_cas(ctl, _CLAIM, word, word + run) != word:
            continue
        # NOTE: claimed: the fields are this product's until its every run is done
        g, end = nxt, nxt + run
        while g < end:
            s = 0
            for j in range(1, ctl[_NSEG]):
                if ctl[_SEG + 8 * j + 6] <= g:
                    s = j
            first = ctl[_SEG + 8 * s + 6]
            stop = min(end, first + ctl[_SEG + 8 * s + 3])
            _groups(ctl, s, g - first, stop - first)
            g = stop
        atomic_add(ctl, _DONE, run)


@njit(cache=True, nogil=True, fastmath=True)
def helper_loop(ctl, spin_cycles):
    """A helper thread's life: take runs while there are any, spin ``spin_cycles`` (yielding
    the core each round), then sleep on the futex of ``ctl[_GEN]``; return on ``ctl[_STOP]``."""
    gen_addr = ctl.ctypes.data + 8 * _GEN
    while atomic_load(ctl, _STOP) == 0:
        seen = atomic_load(ctl, _GEN)  # NOTE: before the work: a product published during it is not missed
        _work(ctl)
        t0 = cycles()
        while atomic_load(ctl, _GEN) == seen and atomic_load(ctl, _STOP) == 0:
            if cycles() - t0 < spin_cycles:
                for _ in range(16):
                    pause()
                syscall4(_SYS_SCHED_YIELD, 0, 0, 0, 0)
            else:
                # NOTE: the caller stores _GEN, then reads _SLEEPERS; here the reverse, and the
                # futex sleeps only while _GEN still holds ``seen``: no wake-up is lost
                atomic_add(ctl, _SLEEPERS, 1)
                syscall4(_SYS_FUTEX, gen_addr, _FUTEX_WAIT, seen & 0xFFFFFFFF, 0)
                atomic_add(ctl, _SLEEPERS, -1)
                t0 = cycles()


@njit(cache=True)
def _x_offsets(xq, offset, out):
    """``out[j]`` = ``-offset`` times the sum of ``xq[4 j:4 j + 4]`` (``M.lane_offsets``, one row)."""
    for j in range(out.shape[0]):
        out[j] = -offset * (np.int32(xq[4 * j]) + np.int32(xq[4 * j + 1]) + np.int32(xq[4 * j + 2]) + np.int32(xq[4 * j + 3]))


@njit(cache=True, fastmath=True, nogil=True)  # NOTE: nogil: other Python threads run meanwhile
def gemv_multi(ctl, codes, ws, x, ys):
    """``ys[s] (1, N_s) = x (1, K) @ W_s.T`` for every weight matrix ``ws[s]`` (row bytes of type
    ``codes[s]``: Q8_0, Q5_0, Q4_0, Q4_K or Q6_K) in one product: x quantized once, the 4-row
    groups of all of them claimed from one word by this thread and the helpers. False (nothing
    done) for more than ``MAX_SEGMENTS`` matrices or 2^24 groups in all."""
    k = x.shape[1]
    xq, xd, xs = np.empty((1, k), np.int8), np.empty((1, k // 32), np.float32), np.empty((1, k // 16), np.float32)
    M.quantize_x(x, xq, xd, xs)
    xs32 = np.empty(k // 32, np.float32)
    for b in range(k // 32):
        xs32[b] = xs[0, 2 * b] + xs[0, 2 * b + 1]
    n_seg = len(ws)
    total = 0
    for s in range(n_seg):
        total += ws[s].shape[0] // 4
    if n_seg > MAX_SEGMENTS or total >= 1 << 24:  # NOTE: the control block's slots; the claim word's 24 bits
        return False
    xoff = np.empty((n_seg, k // 4), np.int32)
    ctl[_K], ctl[_XQ], ctl[_XD], ctl[_XS], ctl[_NSEG] = k, xq.ctypes.data, xd.ctypes.data, xs32.ctypes.data, n_seg
    total = 0
    total = 0
    for s in range(n_seg):
        code = codes[s]
        _x_offsets(xq[0], 128 if code == 4 else 16 if code == 2 else 8 if code == 0 else 32, xoff[s])
        base = _SEG + 8 * s
        ctl[base], ctl[base + 1], ctl[base + 2] = code, ws[s].ctypes.data, ws[s].shape[1]
        ctl[base + 3], ctl[base + 4], ctl[base + 5], ctl[base + 6] = ws[s].shape[0] // 4, ys[s].ctypes.data, xoff[s].ctypes.data, total
        total += ws[s].shape[0] // 4
    gen = atomic_load(ctl, _GEN) + 1
    atomic_store(ctl, _DONE, 0)
    atomic_store(ctl, _CLAIM, ((gen & 0x7FFF) << 48) | (total << 24))
    atomic_store(ctl, _GEN, gen)
    if atomic_load(ctl, _SLEEPERS) > 0:
        syscall4(_SYS_FUTEX, ctl.ctypes.data + 8 * _GEN, _FUTEX_WAKE, 1 << 30, 0)
    _work(ctl)
    spins = 0
    while atomic_load(ctl, _DONE) < total:  # NOTE: only runs a helper has taken: tens of us
        pause()
        spins += 1
        if spins % 64 == 0:  # NOTE: that helper may share this core: let it finish
            syscall4(_SYS_SCHED_YIELD, 0, 0, 0, 0)
    for s in range(n_seg):  # NOTE: rows past the last whole group (none in Gemma)
        w, y, code = ws[s], ys[s], codes[s]
        n_rows = w.shape[0]
        for n in range(4 * (n_rows // 4), n_rows):
            flat = w.reshape(-1)
            if code == 5 or code == 7:
                if code == 5:
                    V.dot_rows1_q4_k(flat, n * w.shape[1], w.shape[1], xq[0], xoff[s], xd[0], xs32, k // 256, y[0], n)
                else:
                    V.dot_rows1_q6_k(flat, n * w.shape[1], w.shape[1], xq[0], xoff[s], xd[0], xs32, k // 256, y[0], n)
            else:
                M._rows1(code, flat, n * w.shape[1], w.shape[1], xq[0], xoff[s], xd[0], k // 32, y[0], n)
    return True


#: the types ``gemv_multi`` takes (``_cpu.CODES``: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K)
CODES = frozenset((0, 2, 4, 5, 7))

_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _tsc_hz() -> float:
    """Time-stamp counter ticks per second, measured once (~5 ms)."""
    t0, c0 = time.perf_counter(), cycles_now()
    time.sleep(0.005)
    return (cycles_now() - c0) / (time.perf_counter() - t0)


@njit(cache=True)
def _cycles_now():
    return cycles()


def cycles_now() -> int:
    return int(_cycles_now())


def control(helpers: int) -> np.ndarray:
    """The control block, with ``helpers`` helper threads running (started on first call)."""
    ctl = _STATE.get("ctl")
    if ctl is not None and _STATE["helpers"] >= helpers:
        return ctl
    if ctl is None:
        ctl = _STATE["ctl"] = np.zeros(_CTL_SLOTS, np.int64)
        _STATE["helpers"], _STATE["threads"] = 0, []
        _STATE["spin"] = int(SPIN_US * 1e-6 * _tsc_hz())
        atexit.register(stop)
    while _STATE["helpers"] < helpers:
        t = threading.Thread(target=helper_loop, args=(ctl, _STATE["spin"]), name="oxcore-gemv", daemon=True)
        t.start()
        _STATE["threads"].append(t)
        _STATE["helpers"] += 1
    return ctl


def gemv(codes: tuple, ws: tuple, x: np.ndarray, ys: tuple, threads: int) -> bool:
    """Run ``gemv_multi`` on this thread and ``threads - 1`` helpers; False (nothing done) when
    another thread is using the helpers (the caller then runs its own kernel)."""
    if not _LOCK.acquire(blocking=False):
        return False
    try:
        ok = gemv_multi(control(threads - 1), codes, ws, x, ys)
    finally:
        _LOCK.release()
    if not ok:
        raise ValueError(f"the pool's GEMV takes at most {MAX_SEGMENTS} matrices of fewer than "
                         f"{4 << 24} rows in all, got {len(ws)} of {sum(w.shape[0] for w in ws)}")
    return True


def stop() -> None:
    """Stop the helpers (at exit; after a fork the child starts its own)."""
    ctl = _STATE.get("ctl")
    if ctl is None:
        return
    ctl[_STOP] = 1
    _wake_all(ctl)
    for t in _STATE["threads"]:
        t.join(timeout=1.0)
    _STATE.clear()


@njit(cache=True)
def _wake_all(ctl):
    """Wake every sleeping helper (a new generation: they look at ``_STOP``)."""
    atomic_add(ctl, _GEN, 1)
    syscall4(_SYS_FUTEX, ctl.ctypes.data + 8 * _GEN, _FUTEX_WAKE, 1 << 30, 0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_STATE.clear)  # NOTE: a child has no helper threads
