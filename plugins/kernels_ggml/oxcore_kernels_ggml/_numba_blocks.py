"""numba dot products of one ggml block (the layouts of ggml-common.h) with float32 activations.

Each ``_<type>(b, bi, o, lut, x, xo, acc)`` adds the block starting at byte ``o`` of the row
bytes ``b`` (``bi``: the same bytes as int8), times ``x[xo:xo + block_size]``, into 32 lane
accumulators ``acc``. NOTE: lanes, not a per-block sum: a horizontal reduction per block costs
more than the block's arithmetic (measured: 2.1 GB/s with per-block sums, 8.4 GB/s with lanes on
Q8_0, 262144 x 640, 2 threads); the row's result is ``acc.sum()`` once. ``lut`` maps a float16's
16 bits to float32 (ggml's ``ggml_table_f32_f16``): numba has no float16 arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_F = np.float32


def f16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern (65536 entries, 256 KiB: stays in L2)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, inline="always")
def _h(b, o, lut):
    return lut[np.int32(b[o]) | (np.int32(b[o + 1]) << 8)]


@njit(cache=True, inline="always")
def _u32(b, o):
    return (np.uint32(b[o]) | (np.uint32(b[o + 1]) << 8) | (np.uint32(b[o + 2]) << 16)
            | (np.uint32(b[o + 3]) << 24))


@njit(cache=True, inline="always")
def q4_0(b, bi, o, lut, x, xo, acc):
    d = _h(b, o, lut)
    for j in range(16):
        q = b[o + 2 + j]
        acc[j] += d * (_F(q & 15) - _F(8)) * x[xo + j]
        acc[j + 16] += d * (_F(q >> 4) - _F(8)) * x[xo + 16 + j]


@njit(cache=True, inline="always")
def q4_1(b, bi, o, lut, x, xo, acc):
    d, m = _h(b, o, lut), _h(b, o + 2, lut)
    for j in range(16):
        q = b[o + 4 + j]
        acc[j] += (d * _F(q & 15) + m) * x[xo + j]
        acc[j + 16] += (d * _F(q >> 4) + m) * x[xo + 16 + j]


@njit(cache=True, inline="always")
def _q5(b, o, x, xo, acc, qh_at, d, m, offset):
    qh = _u32(b, o + qh_at)
    for j in range(16):
        q = np.uint32(b[o + qh_at + 4 + j])
        lo = (q & np.uint32(15)) | (((qh >> np.uint32(j)) & np.uint32(1)) << np.uint32(4))
        hi = (q >> np.uint32(4)) | (((qh >> np.uint32(j + 16)) & np.uint32(1)) << np.uint32(4))
        acc[j] += (d * (_F(lo) - offset) + m) * x[xo + j]
        acc[j + 16] += (d * (_F(hi) - offset) + m) * x[xo + 16 + j]


@njit(cache=True, inline="always")
def q5_0(b, bi, o, lut, x, xo, acc):
    _q5(b, o, x, xo, acc, 2, _h(b, o, lut), _F(0), _F(16))


@njit(cache=True, inline="always")
def q5_1(b, bi, o, lut, x, xo, acc):
    _q5(b, o, x, xo, acc, 4, _h(b, o, lut), _h(b, o + 2, lut), _F(0))


@njit(cache=True, inline="always")
def q8_0(b, bi, o, lut, x, xo, acc):
    d = _h(b, o, lut)
    for j in range(32):
        acc[j] += d * _F(bi[o + 2 + j]) * x[xo + j]


@njit(cache=True, inline="always")
def _scale_min_k4(j, b, s):
    """ggml's get_scale_min_k4: 6-bit scale and min ``j`` (0..7) of the 12 bytes at ``s``."""
    if j < 4:
        return np.int32(b[s + j]) & 63, np.int32(b[s + j + 4]) & 63
    sc = (np.int32(b[s + j + 4]) & 0xF) | ((np.int32(b[s + j - 4]) >> 6) << 4)
    mn = (np.int32(b[s + j + 4]) >> 4) | ((np.int32(b[s + j]) >> 6) << 4)
    return sc, mn


@njit(cache=True, inline="always")
def _k45(b, o, lut, x, xo, acc, five):
    """Q4_K (``five`` False) and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins."""
    d, dmin = _h(b, o, lut), _h(b, o + 2, lut)
    qs = o + 48 if five else o + 16
    for j in range(4):
        sc1, m1 = _scale_min_k4(2 * j, b, o + 4)
        sc2, m2 = _scale_min_k4(2 * j + 1, b, o + 4)
        d1, mm1 = d * _F(sc1), dmin * _F(m1)
        d2, mm2 = d * _F(sc2), dmin * _F(m2)
        x1, x2 = xo + 64 * j, xo + 64 * j + 32
        if five:
            for l in range(32):
                q, h = b[qs + 32 * j + l], b[o + 16 + l] >> np.uint8(2 * j)
                lo = (q & np.uint8(15)) | ((h & np.uint8(1)) << np.uint8(4))
                hi = (q >> np.uint8(4)) | ((h & np.uint8(2)) << np.uint8(3))
                acc[l] += (d1 * _F(lo) - mm1) * x[x1 + l] + (d2 * _F(hi) - mm2) * x[x2 + l]
        else:
            for l in range(32):
                q = b[qs + 32 * j + l]
                acc[l] += (d1 * _F(q & np.uint8(15)) - mm1) * x[x1 + l] + (d2 * _F(q >> np.uint8(4)) - mm2) * x[x2 + l]


@njit(cache=True, inline="always")
def q4_k(b, bi, o, lut, x, xo, acc):
    _k45(b, o, lut, x, xo, acc, False)


@njit(cache=True, inline="always")
def q5_k(b, bi, o, lut, x, xo, acc):
    _k45(b, o, lut, x, xo, acc, True)


@njit(cache=True, inline="always")
def q6_k(b, bi, o, lut, x, xo, acc):
    d = _h(b, o + 208, lut)
    for half in range(2):
        ql, qh, sc, y = o + 64 * half, o + 128 + 32 * half, o + 192 + 8 * half, xo + 128 * half
        for s in range(2):
            d1, d2 = d * _F(bi[sc + s]), d * _F(bi[sc + s + 2])
            d3, d4 = d * _F(bi[sc + s + 4]), d * _F(bi[sc + s + 6])
            for i in range(16):
                l = 16 * s + i
                a, c, h = b[ql + l], b[ql + l + 32], b[qh + l]
                q1 = _F((a & np.uint8(15)) | ((h & np.uint8(3)) << np.uint8(4))) - _F(32)
                q2 = _F((c & np.uint8(15)) | (((h >> np.uint8(2)) & np.uint8(3)) << np.uint8(4))) - _F(32)
                q3 = _F((a >> np.uint8(4)) | (((h >> np.uint8(4)) & np.uint8(3)) << np.uint8(4))) - _F(32)
                q4 = _F((c >> np.uint8(4)) | ((h >> np.uint8(6)) << np.uint8(4))) - _F(32)
                acc[l] += (d1 * q1 * x[y + l] + d2 * q2 * x[y + 32 + l]
                           + d3 * q3 * x[y + 64 + l] + d4 * q4 * x[y + 96 + l])
