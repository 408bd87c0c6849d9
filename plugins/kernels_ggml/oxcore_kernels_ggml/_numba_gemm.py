"""Register-blocked int8 GEMM for prefill: ``y (M, N) = x (M, K) @ W.T`` on ggml blocks, with
x quantized to 8 bits (ggml's q8_0 blocks of 32) and ``vpdpbusd`` on 512-bit registers.

Layout (why it is fast): the 16 lanes of a register are 16 *rows of x*, not 16 positions of K.
x is quantized once per call into ``xt``: for each group of 16 rows and each 4 bytes of K, one
64-byte vector (lane ``l`` holds row ``16 g + l``'s 4 quants). A weight row's 4 unsigned quants
are broadcast to all lanes, so one ``vpdpbusd`` adds 4 products for 16 rows of x at once, and
the weights need no transpose: each row is unpacked once (``_numba_matmul._unpack_row``) into a
scratch tile and read 4 bytes at a time. After each group of ``G`` quants (16 or 32: one weight
scale) the int32 sums become float32 and are multiplied by the weight scale (broadcast) and x's
block scales (a vector over the 16 rows), plus the offset/min term (weight coefficient times x's
group sums). No horizontal sums: each lane is one output.

The microkernel (``_microkernel(mr, g, ioff)``, LLVM IR through numba ``@intrinsic``) holds an
``MR`` x ``NR`` tile of such registers (``MR`` groups of 16 rows of x times ``NR`` weight rows)
over all of K: per 4 bytes of K it loads ``MR`` x vectors and ``NR`` broadcasts and issues
``MR * NR`` ``vpdpbusd``; per group ``3 * MR * NR`` float operations (4 for types with float
mins; an integer offset starts the int32 sums instead). The driver
(``gemm_chunks``) takes W's rows in chunks of ``CHUNK`` rows, unpacks each chunk once into
thread-local scratch (L1/L2) and runs every x tile against it; ``matmul`` splits the chunks over
this thread and a small pool (``_run_pooled``: no barrier waiting for a thread the OS has not
scheduled, unlike numba's OpenMP ``prange``).

Per group of ``G`` quants the weight has one scale and one offset or min coefficient: ``G = 32``
for the 32-quant types and Q4_K / Q5_K (sub-blocks of 32), ``16`` for Q6_K (``group_size``).

NOTE: needs AVX512-VNNI (512-bit ``vpdpbusd``); ``available()`` says whether this CPU has it.
The caller (``_cpu``) falls back to ``_numba_matmul.gemm_q8`` (256-bit) elsewhere.

NOTE: numba's disk cache (``cache=True``) is keyed on this file; a change in ``_numba_vnni``,
``_numba_matmul`` or ``_numba_blocks`` alone does not invalidate it (touch this file).

Example:
    >>> import numpy as np
    >>> from oxcore_kernels_ggml import _numba_gemm as G
    >>> G.group_size("Q6_K"), G.group_size("Q4_K"), G.group_size("Q5_0")
    (16, 32, 32)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _numba_matmul as NM

_I8, _I32, _I64, _F32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
_V16I, _V16F = ir.VectorType(_I32, 16), ir.VectorType(_F32, 16)

#: groups of 16 rows of x per microkernel call, and weight rows per call (register tile: MR * NR
#: float accumulators + MR * NR int32 sums + MR x vectors + a broadcast <= 32 zmm registers)
MR, NR = 3, 4
#: weight rows a thread unpacks at once (a multiple of NR): K bytes + 8 K / G bytes of scales each
CHUNK = 32


def available() -> bool:
    """True when this CPU runs ``vpdpbusd`` on 512-bit registers (AVX512-VNNI)."""
    from ._cpu import vnni512_cpu

    return vnni512_cpu()


def group_size(ggml_type: str) -> int:
    """Quants per weight scale as the GEMM reads them: 16 for Q6_K, else 32."""
    return 16 if ggml_type == "Q6_K" else 32


def _ptr(context, builder, aryty, ary, off, elty):
    """``elty*`` at element ``off`` (an i64 value) of a 1-d array."""
    a = context.make_array(aryty)(context, builder, ary)
    return builder.bitcast(builder.gep(a.data, [off]), elty.as_pointer())


def _splat(builder, vecty, v):
    """``vecty`` with ``v`` in every lane (LLVM folds load + splat into ``vpbroadcastd``)."""
    first = builder.insert_element(ir.Constant(vecty, ir.Undefined), v, _I32(0))
    return builder.shuffle_vector(first, ir.Constant(vecty, ir.Undefined), ir.Constant(ir.VectorType(_I32, vecty.count), None))


def _microkernel(mr: int, g: int, ioff: bool):
    """The ``mr`` x ``NR`` tile over all of K with ``g`` quants per weight scale, as an intrinsic
    ``mk(u, uo, ku, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)``:

    - ``u[uo + c * ku + k]``: weight row ``c``'s unsigned quant ``k`` (c < NR);
    - ``wsc[wo + c * ng + i]``, ``wof[...]``: its scale and offset coefficient of group ``i``;
    - ``xt[xo + (r * K / 4 + j) * 64 + 4 l + b]``: x row ``16 r + l``'s quant ``4 j + b``;
    - ``xd[xso + (r * ng + i) * 16 + l]``, ``xs[...]``: that row's block scale in group ``i``, and
      its scale times the sum of its quants in group ``i``; ``xi[...]`` (int32): minus the type's
      integer offset times that sum;
    - ``y[yo + c * ys + 16 r + l]``: written (not added) with the product (the transpose of
      y's tile: one vector store per register; ``gemm_chunks`` copies it into y).

    ``ioff``: the type's offset is an integer (Q4_0 8, Q5_0 16, Q8_0 128, Q6_K 32): each int32
    sum starts at ``xi`` instead of 0 (``vpdpbusd``'s accumulator input, free) and ``wof``/``xs``
    are not read; otherwise (float mins: Q4_1, Q5_1, Q4_K, Q5_K) one more multiply-add per
    register and group adds ``wof * xs``.
    """
    steps, nr = g // 4, NR

    def codegen(context, builder, sig, args):
        (u_t, _, _, wsc_t, _, wof_t, xt_t, _, xd_t, _, xs_t, xi_t, y_t) = sig.args[:13]
        u, uo, ku, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng = args
        dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16I, [_V16I] * 3),
                                            "llvm.x86.avx512.vpdpbusd.512")
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16F, [_V16F] * 3), "llvm.fma.v16f32")
        k = builder.mul(ng, _I64(g))
        kx = builder.mul(k, _I64(16))  # NOTE: bytes of xt per group of 16 rows
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(_V16F, None)) for _ in range(nr)] for _ in range(mr)]
        with cgutils.for_range(builder, ng) as loop:
            i = loop.index
            xoff = [builder.add(xso, builder.mul(builder.add(builder.mul(_I64(r), ng), i), _I64(16))) for r in range(mr)]
            if ioff:
                isum = [[builder.load(_ptr(context, builder, xi_t, xi, xoff[r], _V16I), align=4)] * nr for r in range(mr)]
            else:
                isum = [[ir.Constant(_V16I, None)] * nr for _ in range(mr)]
            for s in range(steps):
                j = builder.add(builder.mul(i, _I64(steps)), _I64(s))
                xv = [builder.load(_ptr(context, builder, xt_t, xt,
                                        builder.add(xo, builder.add(builder.mul(_I64(r), kx), builder.mul(j, _I64(64)))),
                                        _V16I), align=1) for r in range(mr)]
                for c in range(nr):
                    off = builder.add(uo, builder.add(builder.mul(_I64(c), ku), builder.mul(j, _I64(4))))
                    wv = _splat(builder, _V16I, builder.load(_ptr(context, builder, u_t, u, off, _I32), align=1))
                    for r in range(mr):
                        isum[r][c] = builder.call(dp, [isum[r][c], wv, xv[r]])
            dxv = [builder.load(_ptr(context, builder, xd_t, xd, xoff[r], _V16F), align=4) for r in range(mr)]
            xsv = [] if ioff else [builder.load(_ptr(context, builder, xs_t, xs, xoff[r], _V16F), align=4)
                                   for r in range(mr)]
            for c in range(nr):
                o = builder.add(wo, builder.add(builder.mul(_I64(c), ng), i))
                sw = _splat(builder, _V16F, builder.load(_ptr(context, builder, wsc_t, wsc, o, _F32)))
                so = None if ioff else _splat(builder, _V16F, builder.load(_ptr(context, builder, wof_t, wof, o, _F32)))
                for r in range(mr):
                    f = builder.load(acc[r][c])
                    f = builder.call(fma, [builder.sitofp(isum[r][c], _V16F), builder.fmul(dxv[r], sw), f])
                    if not ioff:
                        f = builder.call(fma, [xsv[r], so, f])
                    builder.store(f, acc[r][c])
        for r in range(mr):
            for c in range(nr):
                o = builder.add(yo, builder.add(builder.mul(_I64(c), ys), _I64(16 * r)))
                builder.store(builder.load(acc[r][c]), _ptr(context, builder, y_t, y, o, _V16F), align=4)
        return context.get_dummy_value()

    @intrinsic
    def mk(typingctx, u, uo, ku, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng):
        return types.void(u, uo, ku, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng), codegen

    return mk


# NOTE: one intrinsic per (groups of 16 rows of x, quants per scale, integer offset): the IR is
# unrolled per shape. Q6_K is the only type with 16-quant groups (and it has an integer offset)
_MK32F1, _MK32F2, _MK32F3 = (_microkernel(r, 32, False) for r in range(1, MR + 1))
_MK32I1, _MK32I2, _MK32I3 = (_microkernel(r, 32, True) for r in range(1, MR + 1))
_MK16I1, _MK16I2, _MK16I3 = (_microkernel(r, 16, True) for r in range(1, MR + 1))
#: the integer offset of each type code (``_cpu.CODES``: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
#: Q5_K, Q6_K) as ``_numba_matmul._unpack_row`` reads the quants; 0: float mins instead
INT_OFFSET = (8, 0, 16, 0, 128, 0, 0, 32)


@intrinsic
def _q8_block(typingctx, x, xo, q, qo, sums):
    """ggml's q8_0 of ``x[xo:xo + 32]`` (float32) into ``q[qo:qo + 32]`` (int8): returns the
    scale ``d = max|x| / 127``; the quants are ``x / d`` rounded to nearest even (0 where d is
    0); ``sums[0:2]`` (int32) get the sums of quants 0-15 and 16-31. NOTE: IR for the 32 lanes
    at once (``vmaxps``, ``vrndscaleps``, ``vpmovdb``): the scalar numba loop took ~2 ns a
    value, 15% of Gemma's prefill."""
    def codegen(context, builder, sig, args):
        x_t, _, q_t, _, s_t = sig.args
        xa, xo_, qa, qo_, sa = args
        v32f = ir.VectorType(_F32, 32)
        v = builder.load(_ptr(context, builder, x_t, xa, xo_, v32f), align=4)
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32f, [v32f]), "llvm.fabs.v32f32")
        fmax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, [v32f]),
                                              "llvm.vector.reduce.fmax.v32f32")
        amax = builder.call(fmax, [builder.call(fabs, [v])])
        d = builder.fdiv(amax, _F32(127.0))
        pos = builder.fcmp_ordered(">", d, _F32(0.0))
        inv = builder.select(pos, builder.fdiv(_F32(1.0), d), _F32(0.0))
        rnd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32f, [v32f]), "llvm.roundeven.v32f32")
        qv = builder.fptosi(builder.call(rnd, [builder.fmul(v, _splat(builder, v32f, inv))]), ir.VectorType(_I32, 32))
        builder.store(builder.trunc(qv, ir.VectorType(_I8, 32)),
                      _ptr(context, builder, q_t, qa, qo_, ir.VectorType(_I8, 32)), align=1)
        radd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32, [_V16I]),
                                              "llvm.vector.reduce.add.v16i32")
        for h in range(2):
            half = builder.shuffle_vector(qv, qv, ir.Constant(ir.VectorType(_I32, 16), list(range(16 * h, 16 * h + 16))))
            builder.store(builder.call(radd, [half]), _ptr(context, builder, s_t, sa, _I64(h), _I32))
        return d
    return types.float32(x, xo, q, qo, sums), codegen


@njit(cache=True, fastmath=True)
def quantize_x(x, g, off, q, q32, xt, xd, xs, xi):
    """x (M, K) float32 as ggml's q8_0 blocks (``d = max|x| / 127`` per 32, ``round(x / d)``)
    in the GEMM's layout: ``xt`` (groups of 16 rows, K / 4, 16) int32 (4 quants each: lane
    ``l`` is row ``16 g + l``), and per group of ``g`` quants ``xd`` (block scale), ``xs``
    (scale times the quants' sum) and ``xi`` (``-off`` times the sum, int32; ``off`` the weight
    type's integer offset, ``INT_OFFSET``), each (row groups, K / g, 16). ``q`` (K,) int8 and
    ``q32`` (the same bytes as int32) are scratch. Rows past M must be zero on entry."""
    m_rows, k = x.shape
    xf = x.reshape(-1)
    sums = np.empty(2, np.int32)
    for m in range(m_rows):
        rg, lane = m // 16, m % 16
        for i in range(k // 32):
            d = _q8_block(xf, m * k + 32 * i, q, 32 * i, sums)
            if g == 32:
                s = sums[0] + sums[1]
                xd[rg, i, lane] = d
                xs[rg, i, lane] = d * np.float32(s)
                xi[rg, i, lane] = -off * s
            else:
                for h in range(2):
                    xd[rg, 2 * i + h, lane] = d
                    xs[rg, 2 * i + h, lane] = d * np.float32(sums[h])
                    xi[rg, 2 * i + h, lane] = -off * sums[h]
        for j in range(k // 4):
            xt[rg, j, lane] = q32[j]


@njit(cache=True, inline="always")
def _unpack_any(code, b, u, wsc, wof):
    # NOTE: the type a literal in each call: _unpack_row's block loop keeps no switch
    if code == 0:
        NM._unpack_row(0, b, u, wsc, wof)
    elif code == 1:
        NM._unpack_row(1, b, u, wsc, wof)
    elif code == 2:
        NM._unpack_row(2, b, u, wsc, wof)
    elif code == 3:
        NM._unpack_row(3, b, u, wsc, wof)
    elif code == 4:
        NM._unpack_row(4, b, u, wsc, wof)
    elif code == 5:
        NM._unpack_row(5, b, u, wsc, wof)
    elif code == 6:
        NM._unpack_row(6, b, u, wsc, wof)
    else:
        NM._unpack_row(7, b, u, wsc, wof)


@njit(cache=True, inline="always")
def _tile(g, ioff, mr, u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng):
    """One microkernel call, picked by (g, integer offset, mr)."""
    if g == 16:
        if mr == 3:
            _MK16I3(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        elif mr == 2:
            _MK16I2(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        else:
            _MK16I1(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
    elif ioff:
        if mr == 3:
            _MK32I3(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        elif mr == 2:
            _MK32I2(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        else:
            _MK32I1(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
    else:
        if mr == 3:
            _MK32F3(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        elif mr == 2:
            _MK32F2(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)
        else:
            _MK32F1(u, uo, k, wsc, wo, wof, xt, xo, xd, xso, xs, xi, y, yo, ys, ng)


@njit(cache=True, fastmath=True, nogil=True)
def gemm_chunks(code, g, w, xt, xd, xs, xi, y, c0, c1):
    """y (row groups * 16, N) = x @ W.T, weight rows ``CHUNK * c0`` up to ``CHUNK * c1``, for
    W's row bytes ``w`` (N, row bytes) of type ``code`` (``_cpu.CODES``) and x from
    ``quantize_x`` with the same ``g`` (``group_size``) and offset (``xt`` as int8: (row groups,
    K / 4, 64)); rows of y past M get the zero rows' products (0). The GIL is released: the
    pool's threads run it side by side on other chunks (``_run_pooled``)."""
    n_rows = w.shape[0]
    rgroups = xt.shape[0]
    k = xt.shape[1] * 4
    ng = k // g
    mp = rgroups * 16
    ioff = INT_OFFSET[code] != 0
    xtf, xdf, xsf, xif = xt.reshape(-1), xd.reshape(-1), xs.reshape(-1), xi.reshape(-1)
    u = np.zeros(CHUNK * k, np.uint8)
    yt = np.empty(CHUNK * mp, np.float32)
    wsc, wof = np.zeros(CHUNK * ng, np.float32), np.zeros(CHUNK * ng, np.float32)
    s16, o16 = np.empty(k // 16, np.float32), np.empty(k // 16, np.float32)
    for c in range(c0, c1):
        n0 = c * CHUNK
        rows = min(CHUNK, n_rows - n0)
        for r in range(rows):
            _unpack_any(code, w[n0 + r], u[r * k:(r + 1) * k], s16, o16)
            step = g // 16  # NOTE: _unpack_row gives one scale per 16; a 32-group repeats it
            for i in range(ng):
                wsc[r * ng + i] = s16[i * step]
                wof[r * ng + i] = o16[i * step]
        # NOTE: a last chunk's rows past N up to a multiple of NR: zero weights (computed, not copied)
        for r in range(rows, min(CHUNK, rows + NR - 1)):
            u[r * k:(r + 1) * k] = 0
            wsc[r * ng:(r + 1) * ng] = 0
            wof[r * ng:(r + 1) * ng] = 0
        for r0 in range(0, rows, NR):
            for m0 in range(0, rgroups, MR):
                _tile(g, ioff, min(MR, rgroups - m0), u, r0 * k, k, wsc, r0 * ng, wof, xtf, m0 * 16 * k, xdf,
                      m0 * ng * 16, xsf, xif, yt, r0 * mp + m0 * 16, mp, ng)
        # NOTE: the tiles are stored transposed (a vector per weight row), copied into y here in
        # rows of `rows` floats: storing 16 lanes straight into y's column hit one cache set per
        # 16 rows of x (N * 4 bytes apart), 2x slower at N = 2048
        for m in range(mp):
            for r in range(rows):
                y[m, n0 + r] = yt[r * mp + m]


#: chunks of CHUNK weight rows per task of the pool (a task: ~20-100 us at Gemma's shapes)
TASK_CHUNKS = 4
_POOL: list = []


def _run_pooled(fn: Any, n_chunks: int, threads: int) -> None:
    """``fn(c0, c1)`` over ``range(n_chunks)`` in tasks of ``TASK_CHUNKS``, on this thread and
    up to ``threads - 1`` pool threads, each taking the next task until none is left.

    NOTE why not numba's prange: its OpenMP team ends in a barrier that waits for every thread,
    also one the OS has not scheduled yet; on the shared 2-core machine that cost 5-50 ms per
    call (a layer's 7 GEMMs: median 9-30 ms on two threads, 2.2 ms on one). Here the caller
    works through the tasks itself and only waits for tasks a pool thread has started."""
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    n_tasks = -(-n_chunks // TASK_CHUNKS)
    helpers = min(threads, n_tasks) - 1
    if helpers <= 0:
        fn(0, n_chunks)
        return
    if len(_POOL) < helpers:
        _POOL.extend(ThreadPoolExecutor(1, thread_name_prefix="oxcore-gemm") for _ in range(helpers - len(_POOL)))
    counter = itertools.count()  # NOTE: next() on it is atomic under the GIL

    def work() -> None:
        for t in iter(counter.__next__, None):
            if t >= n_tasks:
                return
            fn(t * TASK_CHUNKS, min(n_chunks, (t + 1) * TASK_CHUNKS))

    futures = [_POOL[i].submit(work) for i in range(helpers)]
    work()
    for f in futures:
        if not f.cancel():  # NOTE: not started yet: dropped; started: finishing its last task
            f.result()


def matmul(x: np.ndarray, w: np.ndarray, code: int, ggml_type: str, threads: int = 1) -> np.ndarray:
    """``x (M, K) @ W.T`` -> (M, N) float32 for W's row bytes ``w`` (N, row bytes): quantize x,
    run ``gemm_chunks`` on ``threads`` threads (this one and a pool's; ``_run_pooled``).

    Example:
        >>> import numpy as np
        >>> from oxcore_kernels_ggml import _cpu, _numba_gemm as G
        >>> from oxcore_kernels_ggml.testing import random_blocks, reference_matmul, nmse
        >>> rng = np.random.default_rng(0)
        >>> raw = random_blocks("Q4_K", (64, 512), rng)
        >>> x = rng.standard_normal((20, 512)).astype(np.float32)
        >>> y = G.matmul(x, raw, _cpu.CODES["Q4_K"], "Q4_K") if G.available() else reference_matmul(x, raw, "Q4_K", (64, 512))
        >>> y.shape, nmse(reference_matmul(x, raw, "Q4_K", (64, 512)), y) < 5e-4
        ((20, 64), True)
    """
    m, k = x.shape
    g = group_size(ggml_type)
    rg = (m + 15) // 16
    xt = np.zeros((rg, k // 4, 16), np.int32)
    xd, xs = np.zeros((rg, k // g, 16), np.float32), np.zeros((rg, k // g, 16), np.float32)
    xi = np.zeros((rg, k // g, 16), np.int32)
    q = np.empty(k, np.int8)
    quantize_x(np.ascontiguousarray(x, np.float32), g, INT_OFFSET[code], q, q.view(np.int32), xt, xd, xs, xi)
    y = np.empty((rg * 16, w.shape[0]), np.float32)
    xt8 = xt.view(np.int8)
    _run_pooled(lambda c0, c1: gemm_chunks(code, g, w, xt8, xd, xs, xi, y, c0, c1), -(-w.shape[0] // CHUNK), threads)
    return y[:m]
