"""numba dequantizers of one ggml block (the layouts of ggml-common.h), shared by the kernels.

Each ``_deq_<type>(b, o, lut, out, p)`` reads the block starting at byte ``o`` of the row bytes
``b`` and writes its values to ``out[p:p + block_size]`` as float32. ``lut`` maps a float16's
16 bits to float32 (ggml's ``ggml_table_f32_f16``): numba has no float16 arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
def _deq_q4_0(b, o, lut, out, p):
    d = _h(b, o, lut)
    for j in range(16):
        q = np.int32(b[o + 2 + j])
        out[p + j] = d * np.float32((q & 15) - 8)
        out[p + j + 16] = d * np.float32((q >> 4) - 8)


@njit(cache=True, inline="always")
def _deq_q4_1(b, o, lut, out, p):
    d, m = _h(b, o, lut), _h(b, o + 2, lut)
    for j in range(16):
        q = np.int32(b[o + 4 + j])
        out[p + j] = d * np.float32(q & 15) + m
        out[p + j + 16] = d * np.float32(q >> 4) + m


@njit(cache=True, inline="always")
def _deq_q5(b, o, lut, out, p, qh_at, offset, d, m):
    qh = _u32(b, o + qh_at)
    for j in range(16):
        q = np.int32(b[o + qh_at + 4 + j])
        h0 = np.int32(((qh >> np.uint32(j)) << np.uint32(4)) & np.uint32(0x10))
        h1 = np.int32((qh >> np.uint32(j + 12)) & np.uint32(0x10))
        out[p + j] = d * np.float32(((q & 15) | h0) - offset) + m
        out[p + j + 16] = d * np.float32(((q >> 4) | h1) - offset) + m


@njit(cache=True, inline="always")
def _deq_q8_0(b, o, lut, out, p):
    d = _h(b, o, lut)
    for j in range(32):
        q = np.int32(b[o + 2 + j])
        out[p + j] = d * np.float32(q - ((q & 128) << 1))  # NOTE: the byte as int8


@njit(cache=True, inline="always")
def _scale_min_k4(j, b, s):
    """ggml's get_scale_min_k4: 6-bit scale and min ``j`` (0..7) of the 12 bytes at ``s``."""
    if j < 4:
        return np.int32(b[s + j]) & 63, np.int32(b[s + j + 4]) & 63
    sc = (np.int32(b[s + j + 4]) & 0xF) | ((np.int32(b[s + j - 4]) >> 6) << 4)
    mn = (np.int32(b[s + j + 4]) >> 4) | ((np.int32(b[s + j]) >> 6) << 4)
    return sc, mn


@njit(cache=True, inline="always")
def _deq_k45(b, o, lut, out, p, five):
    """Q4_K (``five`` False) and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins."""
    d, dmin = _h(b, o, lut), _h(b, o + 2, lut)
    qs = o + 48 if five else o + 16
    for j in range(4):
        sc1, m1 = _scale_min_k4(2 * j, b, o + 4)
        sc2, m2 = _scale_min_k4(2 * j + 1, b, o + 4)
        d1, mm1 = d * np.float32(sc1), dmin * np.float32(m1)
        d2, mm2 = d * np.float32(sc2), dmin * np.float32(m2)
        u1, u2 = 1 << (2 * j), 2 << (2 * j)
        for l in range(32):
            q = np.int32(b[qs + 32 * j + l])
            lo, hi = q & 15, q >> 4
            if five:
                h = np.int32(b[o + 16 + l])
                lo += 16 if h & u1 else 0
                hi += 16 if h & u2 else 0
            out[p + 64 * j + l] = d1 * np.float32(lo) - mm1
            out[p + 64 * j + 32 + l] = d2 * np.float32(hi) - mm2


@njit(cache=True, inline="always")
def _deq_q6_k(b, o, lut, out, p):
    d = _h(b, o + 208, lut)
    for half in range(2):
        ql, qh, sc, y = o + 64 * half, o + 128 + 32 * half, o + 192 + 8 * half, p + 128 * half
        for l in range(32):
            s = l // 16
            a, c, h = np.int32(b[ql + l]), np.int32(b[ql + l + 32]), np.int32(b[qh + l])
            for g in range(4):
                v = (a if g % 2 == 0 else c)
                v = (v & 15) if g < 2 else (v >> 4)
                q = (v | (((h >> (2 * g)) & 3) << 4)) - 32
                scv = np.int32(b[sc + s + 2 * g])
                scv -= (scv & 128) << 1
                out[y + 32 * g + l] = d * np.float32(scv) * np.float32(q)


@njit(cache=True)
def dequantize_row(code, b, lut, out, bs, ts):
    """Row bytes ``b`` of type ``code`` (``_cpu.CODES``) -> ``out`` (float32, K values)."""
    nb = out.shape[0] // bs
    # NOTE: one branch per row, not per block: the block loop inside each arm stays tight
    if code == 0:
        for i in range(nb):
            _deq_q4_0(b, i * ts, lut, out, i * bs)
    elif code == 1:
        for i in range(nb):
            _deq_q4_1(b, i * ts, lut, out, i * bs)
    elif code == 2:
        for i in range(nb):
            _deq_q5(b, i * ts, lut, out, i * bs, 2, 16, _h(b, i * ts, lut), np.float32(0))
    elif code == 3:
        for i in range(nb):
            _deq_q5(b, i * ts, lut, out, i * bs, 4, 0, _h(b, i * ts, lut), _h(b, i * ts + 2, lut))
    elif code == 4:
        for i in range(nb):
            _deq_q8_0(b, i * ts, lut, out, i * bs)
    elif code == 5:
        for i in range(nb):
            _deq_k45(b, i * ts, lut, out, i * bs, False)
    elif code == 6:
        for i in range(nb):
            _deq_k45(b, i * ts, lut, out, i * bs, True)
    else:
        for i in range(nb):
            _deq_q6_k(b, i * ts, lut, out, i * bs)
