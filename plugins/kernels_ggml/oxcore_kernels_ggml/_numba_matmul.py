"""numba drivers of ``x @ W.T`` on ggml blocks: a row-parallel GEMV and a tiled GEMM.

GEMV (decode): each thread takes runs of output rows; a row's blocks are unpacked into a
K-float buffer that stays in L1 and dotted with every activation row (float32 accumulation).
GEMM (prefill): tiles of rows are unpacked in parallel into a small float32 buffer and
multiplied by NumPy's BLAS; W is never dequantized whole.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_blocks import dequantize_row

_ROWS = 16  # NOTE: rows per parallel chunk: one buffer allocation per chunk, not per row


@njit(parallel=True, cache=True, fastmath=True)
def gemv(code, w, x, lut, bs, ts, y):
    """y (M, N) = x (M, K) @ W.T for W's row bytes ``w`` (N, row_bytes) of type ``code``."""
    n_rows = w.shape[0]
    m_rows, k = x.shape
    for c in prange((n_rows + _ROWS - 1) // _ROWS):
        buf = np.empty(k, np.float32)
        for n in range(c * _ROWS, min(n_rows, (c + 1) * _ROWS)):
            dequantize_row(code, w[n], lut, buf, bs, ts)
            for m in range(m_rows):
                s = np.float32(0)
                for i in range(k):
                    s += buf[i] * x[m, i]
                y[m, n] = s


@njit(parallel=True, cache=True)
def dequantize_rows(code, w, lut, bs, ts, out):
    """out (R, K) = the rows ``w`` (R, row_bytes) dequantized, rows in parallel."""
    for n in prange(out.shape[0]):
        dequantize_row(code, w[n], lut, out[n], bs, ts)
