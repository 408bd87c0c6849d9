"""numba drivers of ``x @ W.T`` on ggml blocks, parallel over runs of output rows.

- ``gemv``: float32 activations; each weight row's blocks are dotted in 32 float32 lanes
  (``_numba_blocks``) and summed once (any x86/ARM CPU).
- ``quantize_x`` + ``gemv_q8`` / ``gemm_q8``: int8 activations (ggml's q8_0 blocks of 32) and
  ``vpdpbusd`` (``_numba_vnni``, CPUs with VNNI): the GEMV unpacks each block straight into the
  dot product; the GEMM unpacks each weight row once (unsigned quants, a scale and an offset/min
  coefficient per 16) and dots it with every row of x.
- ``gemv_x``: the decode GEMV in one call (x quantized inside): ``gemv_rows`` (Q8_0, Q5_0,
  Q4_0) and ``gemv_rows_k`` (Q4_K, Q6_K) run four weight rows per ``_numba_vnni.dot_rows4_*``
  call, the block loop written in IR (accumulators in registers); ``gemv_q8`` the other types.

Every driver prefetches the weight rows ~2 KiB ahead. The prefill GEMM beyond
``_cpu.INT8_MAX_ROWS`` rows (``_cpu``) unpacks tiles of rows with io_gguf's vectorized
dequantizer and multiplies them with BLAS.

NOTE: numba's disk cache (``cache=True``) is keyed on this file; a change in ``_numba_blocks`` or
``_numba_vnni`` alone does not invalidate it: change this file too (``_INTRINSICS`` below; a
touch was not always enough), or clear ``__pycache__``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _numba_blocks as B
from . import _numba_vnni as V

#: bump with every change of ``_numba_vnni``'s or ``_numba_blocks``' code (see the NOTE above)
_INTRINSICS = 4
_ROWS = 64  # NOTE: rows per parallel chunk: one scratch allocation per chunk, not per row
# NOTE: the GEMVs ask for the weight rows this many bytes ahead (whole rows): without it the
# memory reads did not overlap the arithmetic (Q8_0 262144 x 640, 1 thread on the busy 2-core
# machine: 42 ms without, 23.5 ms at 1-3 KiB ahead, 25 ms at 11 KiB)
_PREFETCH_BYTES = 2048


@njit(cache=True, inline="always")
def _prefetch_row(flat, n, n_rows, row_bytes):
    """Prefetch the weight row ``_PREFETCH_BYTES`` ahead of row ``n`` (``flat``: W's bytes)."""
    a = n + max(1, _PREFETCH_BYTES // row_bytes)
    if a < n_rows:
        for line in range(0, row_bytes + 63, 64):
            V.prefetch(flat, a * row_bytes + min(line, row_bytes - 1))


@njit(parallel=True, cache=True, fastmath=True)
def gemv(code, w, x, lut, y):
    """y (M, N) = x (M, K) @ W.T for W's row bytes ``w`` (N, row_bytes) of type ``code``
    (``_cpu.CODES``). NOTE: block sizes are literals in each arm so the lane loops unroll."""
    n_rows = w.shape[0]
    m_rows, k = x.shape
    wi = w.view(np.int8)
    flat = w.reshape(-1)
    for c in prange((n_rows + _ROWS - 1) // _ROWS):
        acc = np.empty(32, np.float32)
        for n in range(c * _ROWS, min(n_rows, (c + 1) * _ROWS)):
            b, bi = w[n], wi[n]
            _prefetch_row(flat, n, n_rows, w.shape[1])
            for m in range(m_rows):
                xm = x[m]
                acc[:] = 0
                if code == 0:
                    for i in range(k // 32):
                        B.q4_0(b, bi, i * 18, lut, xm, i * 32, acc)
                elif code == 1:
                    for i in range(k // 32):
                        B.q4_1(b, bi, i * 20, lut, xm, i * 32, acc)
                elif code == 2:
                    for i in range(k // 32):
                        B.q5_0(b, bi, i * 22, lut, xm, i * 32, acc)
                elif code == 3:
                    for i in range(k // 32):
                        B.q5_1(b, bi, i * 24, lut, xm, i * 32, acc)
                elif code == 4:
                    for i in range(k // 32):
                        B.q8_0(b, bi, i * 34, lut, xm, i * 32, acc)
                elif code == 5:
                    for i in range(k // 256):
                        B.q4_k(b, bi, i * 144, lut, xm, i * 256, acc)
                elif code == 6:
                    for i in range(k // 256):
                        B.q5_k(b, bi, i * 176, lut, xm, i * 256, acc)
                elif code == 7:
                    for i in range(k // 256):
                        B.q6_k(b, bi, i * 210, lut, xm, i * 256, acc)
                y[m, n] = acc.sum()


@njit(cache=True, fastmath=True)
def quantize_x(x, xq, xd, xs):
    """ggml's q8_0 quantization of the activations, per block of 32: ``xd = max|x| / 127``,
    ``xq = round(x / xd)`` (int8), and ``xs``: ``xd`` times the sum of ``xq`` per 16 (the offset
    and min terms of the int8 GEMV need the quantized sums)."""
    m_rows, k = x.shape
    for m in range(m_rows):
        for i in range(k // 32):
            amax = np.float32(0)
            for j in range(32):
                amax = max(amax, abs(x[m, 32 * i + j]))
            d = amax / np.float32(127)
            inv = np.float32(1) / d if d > 0 else np.float32(0)
            xd[m, i] = d
            for h in range(2):
                s = 0
                for j in range(16 * h, 16 * h + 16):
                    q = np.int32(np.rint(x[m, 32 * i + j] * inv))
                    xq[m, 32 * i + j] = q
                    s += q
                xs[m, 2 * i + h] = d * np.float32(s)


@njit(cache=True, inline="always")
def _q32(code, b, i, ao, acc, q, d_x, s_x):
    """Block ``i`` of a 32-quant type into ``acc[ao:ao + 8]``; returns its offset/min term."""
    xs = s_x[2 * i] + s_x[2 * i + 1]
    if code == 4:  # Q8_0: d, 32 int8 (read as q + 128)
        o = i * 34
        d = V.f16(b, o)
        V.dot_q8(acc, ao, q, i * 32, d * d_x[i], d * d_x[i], b, o + 2)
        return np.float32(-128) * d * xs
    if code == 0:  # Q4_0: d, 16 bytes of nibbles; q - 8
        o = i * 18
        d = V.f16(b, o)
        V.dot_q4(acc, ao, q, i * 32, d * d_x[i], d * d_x[i], b, o + 2, 0)
        return np.float32(-8) * d * xs
    if code == 1:  # Q4_1: d, m, nibbles; d * q + m
        o = i * 20
        d = V.f16(b, o)
        V.dot_q4(acc, ao, q, i * 32, d * d_x[i], d * d_x[i], b, o + 4, 0)
        return V.f16(b, o + 2) * xs
    if code == 2:  # Q5_0: d, qh (32 bits), nibbles; q - 16
        o = i * 22
        d = V.f16(b, o)
        V.dot_q4(acc, ao, q, i * 32, d * d_x[i], d * d_x[i], b, o + 6, B._u32(b, o + 2))
        return np.float32(-16) * d * xs
    # Q5_1: d, m, qh, nibbles; d * q + m
    o = i * 24
    d = V.f16(b, o)
    V.dot_q4(acc, ao, q, i * 32, d * d_x[i], d * d_x[i], b, o + 8, B._u32(b, o + 4))
    return V.f16(b, o + 2) * xs


@njit(cache=True, inline="always")
def _row32(code, b, acc, q, d_x, s_x):
    """A row of a 32-quant type, blocks alternating between ``acc[0:8]`` and ``acc[8:16]``."""
    nb = q.shape[0] // 32
    extra = np.float32(0)
    for p in range(nb // 2):  # NOTE: not range(0, nb - 1, 2): a step adds sign checks
        extra += _q32(code, b, 2 * p, 0, acc, q, d_x, s_x)
        extra += _q32(code, b, 2 * p + 1, 8, acc, q, d_x, s_x)
    if nb % 2:
        extra += _q32(code, b, nb - 1, 0, acc, q, d_x, s_x)
    return extra


@njit(cache=True, inline="always")
def _k45(five, b, i, acc, q, d_x, s_x):
    """Super-block ``i`` of Q4_K / Q5_K (d, dmin, 12 bytes of 6-bit scales and mins, (qh,) qs):
    low nibbles into ``acc[0:8]``, high ones into ``acc[8:16]``; returns the min term."""
    o = i * (176 if five else 144)
    d, dmin = V.f16(b, o), V.f16(b, o + 2)
    qs = o + 48 if five else o + 16
    extra = np.float32(0)
    for j in range(4):
        xb = 8 * i + 2 * j  # NOTE: x block of the low nibbles; the high ones: xb + 1
        sc1, m1 = B._scale_min_k4(2 * j, b, o + 4)
        sc2, m2 = B._scale_min_k4(2 * j + 1, b, o + 4)
        s1, s2 = d * np.float32(sc1) * d_x[xb], d * np.float32(sc2) * d_x[xb + 1]
        if five:
            V.dot_k(acc, 0, q, 32 * xb, s1, s1, b, qs + 32 * j, 0, o + 16, 2 * j, 1)
            V.dot_k(acc, 8, q, 32 * xb + 32, s2, s2, b, qs + 32 * j, 4, o + 16, 2 * j + 1, 1)
        else:
            V.dot_k(acc, 0, q, 32 * xb, s1, s1, b, qs + 32 * j, 0, qs, 0, 0)
            V.dot_k(acc, 8, q, 32 * xb + 32, s2, s2, b, qs + 32 * j, 4, qs, 0, 0)
        extra -= dmin * (np.float32(m1) * (s_x[2 * xb] + s_x[2 * xb + 1])
                         + np.float32(m2) * (s_x[2 * xb + 2] + s_x[2 * xb + 3]))
    return extra


@njit(cache=True, inline="always")
def _q6k(b, bi, i, acc, q, d_x, s_x):
    """Super-block ``i`` of Q6_K (ql 128, qh 64, 16 int8 scales, d); returns the offset term."""
    o = i * 210
    d = V.f16(b, o + 208)
    extra = np.float32(0)
    for half in range(2):
        ql, qh, sc, xb = o + 64 * half, o + 128 + 32 * half, o + 192 + 8 * half, 8 * i + 4 * half
        for t in range(4):
            # NOTE: quants t of the 4 in a byte pair: ql nibble (low for t 0/1, high for 2/3) of
            # ql[32 * (t & 1):], 2 bits of qh at 2 * t; x block xb + t; a scale per 16 quants
            sa, sb = d * np.float32(bi[sc + 2 * t]), d * np.float32(bi[sc + 2 * t + 1])
            V.dot_k(acc, 8 * (t & 1), q, 32 * (xb + t), sa * d_x[xb + t], sb * d_x[xb + t], b,
                    ql + 32 * (t & 1), 4 * (t >> 1), qh, 2 * t, 3)
            extra -= np.float32(32) * (sa * s_x[2 * (xb + t)] + sb * s_x[2 * (xb + t) + 1])
    return extra


@njit(parallel=True, cache=True, fastmath=True)
def gemv_q8(code, w, xq, xd, xs, y):
    """y (M, N) = x @ W.T with x given as int8 blocks (``quantize_x``): the VNNI GEMV.

    Each block adds ``vpdpbusd(q, xq) * d_w * d_x`` into 8 float32 lanes (``_numba_vnni``); the
    offset (Q4_0: 8, Q5_0: 16, Q8_0: 128 from the unsigned read, Q6_K: 32) and min terms are one
    scalar per block from ``xs``. Codes as in ``gemv``. NOTE: two lane sets (``acc[0:8]``,
    ``acc[8:16]``) take alternate blocks, so two multiply-add chains overlap. The float16
    scales are converted with ``vcvtph2ps`` (``V.f16``), not the 256 KiB table of the float32
    path: it competed with the weights for L2 (Q8_0 262144 x 640, one thread: 27.9 -> 22.5 ms)."""
    n_rows = w.shape[0]
    m_rows, k = xq.shape
    flat = w.reshape(-1)
    for c in prange((n_rows + _ROWS - 1) // _ROWS):
        acc = np.zeros(16, np.float32)
        for n in range(c * _ROWS, min(n_rows, (c + 1) * _ROWS)):
            b = w[n]
            _prefetch_row(flat, n, n_rows, w.shape[1])
            for m in range(m_rows):
                q, d_x, s_x = xq[m], xd[m], xs[m]
                acc[:] = 0
                extra = np.float32(0)
                # NOTE: one loop per type, the type a literal in it: a switch inside the block loop
                # is not hoisted by LLVM (measured 1.5x slower)
                if code == 0:
                    extra = _row32(0, b, acc, q, d_x, s_x)
                elif code == 1:
                    extra = _row32(1, b, acc, q, d_x, s_x)
                elif code == 2:
                    extra = _row32(2, b, acc, q, d_x, s_x)
                elif code == 3:
                    extra = _row32(3, b, acc, q, d_x, s_x)
                elif code == 4:
                    extra = _row32(4, b, acc, q, d_x, s_x)
                elif code == 5:
                    for i in range(k // 256):
                        extra += _k45(False, b, i, acc, q, d_x, s_x)
                elif code == 6:
                    for i in range(k // 256):
                        extra += _k45(True, b, i, acc, q, d_x, s_x)
                else:
                    bi = b.view(np.int8)
                    for i in range(k // 256):
                        extra += _q6k(b, bi, i, acc, q, d_x, s_x)
                y[m, n] = acc.sum() + extra


@njit(cache=True, inline="always")
def _unpack_row(code, b, u, wsc, wof):
    """Weight row ``b`` as unsigned quants ``u`` (K bytes) with, per 16 quants, the scale
    ``wsc`` and the coefficient ``wof`` of x's sum (offset or min): the row is
    ``wsc[g] * u[16 g:16 g + 16] + wof[g]``. NOTE: the GEMM's split: unpacked once, dotted with
    every row of x."""
    k = u.shape[0]
    if code <= 4:
        bs = (18, 20, 22, 24, 34)[code]
        for i in range(k // 32):
            o = i * bs
            d = V.f16(b, o)
            if code == 4:
                V.unpack_q8(u, 32 * i, b, o + 2)
                c = np.float32(-128) * d
            elif code == 0:
                V.unpack_q4(u, 32 * i, b, o + 2, 0)
                c = np.float32(-8) * d
            elif code == 1:
                V.unpack_q4(u, 32 * i, b, o + 4, 0)
                c = V.f16(b, o + 2)
            elif code == 2:
                V.unpack_q4(u, 32 * i, b, o + 6, B._u32(b, o + 2))
                c = np.float32(-16) * d
            else:
                V.unpack_q4(u, 32 * i, b, o + 8, B._u32(b, o + 4))
                c = V.f16(b, o + 2)
            wsc[2 * i] = wsc[2 * i + 1] = d
            wof[2 * i] = wof[2 * i + 1] = c
    elif code == 5 or code == 6:
        five = code == 6
        for i in range(k // 256):
            o = i * (176 if five else 144)
            d, dmin = V.f16(b, o), V.f16(b, o + 2)
            qs = o + 48 if five else o + 16
            for j in range(4):
                xb = 8 * i + 2 * j
                if five:
                    V.unpack_k(u, 32 * xb, b, qs + 32 * j, 0, o + 16, 2 * j, 1)
                    V.unpack_k(u, 32 * xb + 32, b, qs + 32 * j, 4, o + 16, 2 * j + 1, 1)
                else:
                    V.unpack_k(u, 32 * xb, b, qs + 32 * j, 0, qs, 0, 0)
                    V.unpack_k(u, 32 * xb + 32, b, qs + 32 * j, 4, qs, 0, 0)
                for h in range(2):
                    sc, mn = B._scale_min_k4(2 * j + h, b, o + 4)
                    g = 2 * (xb + h)
                    wsc[g] = wsc[g + 1] = d * np.float32(sc)
                    wof[g] = wof[g + 1] = -dmin * np.float32(mn)
    else:
        bi = b.view(np.int8)
        for i in range(k // 256):
            o = i * 210
            d = V.f16(b, o + 208)
            for half in range(2):
                ql, qh, sc, xb = o + 64 * half, o + 128 + 32 * half, o + 192 + 8 * half, 8 * i + 4 * half
                for t in range(4):
                    V.unpack_k(u, 32 * (xb + t), b, ql + 32 * (t & 1), 4 * (t >> 1), qh, 2 * t, 3)
                    for h in range(2):
                        g = 2 * (xb + t) + h
                        wsc[g] = d * np.float32(bi[sc + 2 * t + h])
                        wof[g] = np.float32(-32) * wsc[g]


@njit(parallel=True, cache=True, fastmath=True)
def gemm_q8(code, w, xq, xd, xs, y):
    """y (M, N) = x @ W.T with x as int8 blocks, for many rows of x (prefill): each weight row
    is unpacked once (``_unpack_row``), then every x row is dotted with it (``dot_u8``: one
    load, ``vpdpbusd``, multiply-add per 32 quants) and with x's sums for the offsets/mins."""
    n_rows = w.shape[0]
    m_rows, k = xq.shape
    nb = k // 32
    flat = w.reshape(-1)
    for c in prange((n_rows + _ROWS - 1) // _ROWS):
        acc = np.zeros(16, np.float32)
        u = np.empty(k, np.uint8)
        wsc, wof, sv = np.empty(k // 16, np.float32), np.empty(k // 16, np.float32), np.empty(k // 4, np.float32)
        for n in range(c * _ROWS, min(n_rows, (c + 1) * _ROWS)):
            _prefetch_row(flat, n, n_rows, w.shape[1])
            # NOTE: one call per type (a literal): the per-block switch would stay in the loop
            if code == 0:
                _unpack_row(0, w[n], u, wsc, wof)
            elif code == 1:
                _unpack_row(1, w[n], u, wsc, wof)
            elif code == 2:
                _unpack_row(2, w[n], u, wsc, wof)
            elif code == 3:
                _unpack_row(3, w[n], u, wsc, wof)
            elif code == 4:
                _unpack_row(4, w[n], u, wsc, wof)
            elif code == 5:
                _unpack_row(5, w[n], u, wsc, wof)
            elif code == 6:
                _unpack_row(6, w[n], u, wsc, wof)
            else:
                _unpack_row(7, w[n], u, wsc, wof)
            for g in range(k // 16):  # NOTE: each 16-quant scale over its 4 int32 lanes
                for j in range(4):
                    sv[4 * g + j] = wsc[g]
            for m in range(m_rows):
                q, d_x, s_x = xq[m], xd[m], xs[m]
                acc[:] = 0
                for p in range(nb // 2):
                    i = 2 * p
                    V.dot_u8s(acc, 0, q, 32 * i, d_x[i], sv, 8 * i, u, 32 * i)
                    V.dot_u8s(acc, 8, q, 32 * i + 32, d_x[i + 1], sv, 8 * i + 8, u, 32 * i + 32)
                if nb % 2:
                    V.dot_u8s(acc, 0, q, 32 * (nb - 1), d_x[nb - 1], sv, 8 * (nb - 1), u, 32 * (nb - 1))
                extra = np.float32(0)
                for g in range(k // 16):
                    extra += wof[g] * s_x[g]
                y[m, n] = acc.sum() + extra


@njit(cache=True)
def lane_offsets(xq, offset, out):
    """``out[m, j]`` = ``-offset`` times the sum of ``xq[m, 4 j:4 j + 4]`` (int32): what ``vpdpbusd``
    starts from, so weights read as unsigned ``q + offset`` give the signed product exactly."""
    m_rows, k = xq.shape
    for m in range(m_rows):
        for j in range(k // 4):
            s = np.int32(xq[m, 4 * j]) + np.int32(xq[m, 4 * j + 1]) + np.int32(xq[m, 4 * j + 2]) + np.int32(xq[m, 4 * j + 3])
            out[m, j] = -offset * s


_GROUP = 4  # NOTE: rows per dot_rows4_q8_0 call: the four share each block of x


@njit(cache=True, inline="always")
def prefetch_group_l2(flat, g, group):
    """Ask for group ``g`` of ``group`` bytes of W (``flat``) into L2 (``V.prefetch_l2``), if it
    exists: the decode GEMVs ask 2 groups ahead of the one they compute."""
    a = g * group
    if a + group <= flat.shape[0]:
        for line in range(0, group, 64):
            V.prefetch_l2(flat, a + line)


@njit(cache=True, inline="always")
def _rows4(code, flat, wo, row_bytes, q, xo, d_x, nb, out, yo):
    """Four rows of a 32-quant type with an offset (Q8_0, Q5_0, Q4_0) from ``V.dot_rows4_*``."""
    if code == 4:
        V.dot_rows4_q8_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)
    elif code == 2:
        V.dot_rows4_q5_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)
    else:
        V.dot_rows4_q4_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)


@njit(cache=True, inline="always")
def _rows1(code, flat, wo, row_bytes, q, xo, d_x, nb, out, yo):
    if code == 4:
        V.dot_rows1_q8_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)
    elif code == 2:
        V.dot_rows1_q5_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)
    else:
        V.dot_rows1_q4_0(flat, wo, row_bytes, q, xo, d_x, nb, out, yo)


#: the types ``gemv_rows`` takes (``_cpu.CODES``) and their quants' offset
ROW_OFFSETS = {4: 128, 2: 16, 0: 8}


@njit(parallel=True, cache=True, fastmath=True)
def gemv_rows(code, w, xq, xd, xoff, y):
    """y (1, N) = x @ W.T for rows ``w`` (N, row_bytes) of Q8_0, Q5_0 or Q4_0 (``code``) and one
    row of x as int8 blocks (``quantize_x``, then ``lane_offsets`` with the type's offset,
    ``ROW_OFFSETS``): the decode GEMV of these types. Four rows per ``V.dot_rows4_*`` call.

    NOTE: measured against ``gemv_q8`` on Gemma's output projection (Q8_0 262144 x 640,
    interleaved, medians of 15 on the shared 2-core machine): one thread 14.1 vs 17.3 ms. The
    prefetch asks for the next groups into L2 only (``prefetch_l2``): into L1 it took the fill
    buffers the loads need (13.0 vs 15.4 ms); 2 groups ahead (~5 KiB) tied 1 to 8."""
    n_rows, row_bytes = w.shape
    nb = xq.shape[1] // 32
    flat = w.reshape(-1)
    q, d_x, xo, out = xq[0], xd[0], xoff[0], y[0]
    group = _GROUP * row_bytes
    n_groups = n_rows // _GROUP
    # NOTE: one loop per type, the type a literal in it (as gemv_q8). The groups themselves are
    # the parallel range (numba gives each thread an equal run of them): runs of _ROWS groups
    # left Gemma's 256-row K/V products on one thread and split its 640-row ones 2:1
    for g in prange(n_groups):
        prefetch_group_l2(flat, g + 2, group)
        if code == 4:
            _rows4(4, flat, g * group, row_bytes, q, xo, d_x, nb, out, g * _GROUP)
        elif code == 2:
            _rows4(2, flat, g * group, row_bytes, q, xo, d_x, nb, out, g * _GROUP)
        else:
            _rows4(0, flat, g * group, row_bytes, q, xo, d_x, nb, out, g * _GROUP)
    for n in range(n_groups * _GROUP, n_rows):
        _rows1(code, flat, n * row_bytes, row_bytes, q, xo, d_x, nb, out, n)


@njit(parallel=True, cache=True, fastmath=True)
def gemv_rows_k(code, w, xq, xd, xoff, xs32, y):
    """``gemv_rows`` for Q4_K (``code`` 5; ``xs32``: x's sums times scales per 32, for the mins)
    and Q6_K (7; ``xoff``: ``lane_offsets`` with 32), four rows per ``V.dot_rows4_q*_k`` call."""
    n_rows, row_bytes = w.shape
    nb = xq.shape[1] // 256
    flat = w.reshape(-1)
    q, d_x, xo, xsum, out = xq[0], xd[0], xoff[0], xs32[0], y[0]
    group = _GROUP * row_bytes
    n_groups = n_rows // _GROUP
    for g in prange(n_groups):  # NOTE: groups as the parallel range (see gemv_rows)
        prefetch_group_l2(flat, g + 2, group)
        if code == 5:
            V.dot_rows4_q4_k(flat, g * group, row_bytes, q, xo, d_x, xsum, nb, out, g * _GROUP)
        else:
            V.dot_rows4_q6_k(flat, g * group, row_bytes, q, xo, d_x, xsum, nb, out, g * _GROUP)
    for n in range(n_groups * _GROUP, n_rows):
        if code == 5:
            V.dot_rows1_q4_k(flat, n * row_bytes, row_bytes, q, xo, d_x, xsum, nb, out, n)
        else:
            V.dot_rows1_q6_k(flat, n * row_bytes, row_bytes, q, xo, d_x, xsum, nb, out, n)


@njit(cache=True)  # NOTE: its callees run the parallel loops
def gemv_x(code, w, x, y):
    """y (1, N) = x (1, K) @ W.T through the int8 GEMV, x quantized here (``quantize_x``): one
    numba call per decode matmul. Q8_0, Q5_0 and Q4_0 take ``gemv_rows``, the others ``gemv_q8``."""
    k = x.shape[1]
    xq, xd, xs = np.empty((1, k), np.int8), np.empty((1, k // 32), np.float32), np.empty((1, k // 16), np.float32)
    quantize_x(x, xq, xd, xs)
    if code == 4 or code == 2 or code == 0:
        xo = np.empty((1, k // 4), np.int32)
        lane_offsets(xq, 128 if code == 4 else 16 if code == 2 else 8, xo)
        gemv_rows(code, w, xq, xd, xo, y)
    elif code == 5 or code == 7:
        xo = np.empty((1, k // 4), np.int32)
        lane_offsets(xq, 32, xo)
        xs32 = np.empty((1, k // 32), np.float32)
        for b in range(k // 32):
            xs32[0, b] = xs[0, 2 * b] + xs[0, 2 * b + 1]
        gemv_rows_k(code, w, xq, xd, xo, xs32, y)
    else:
        gemv_q8(code, w, xq, xd, xs, y)
