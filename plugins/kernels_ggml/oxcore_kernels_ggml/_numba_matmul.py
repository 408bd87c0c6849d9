"""numba drivers of ``x @ W.T`` on ggml blocks: the row-parallel GEMV (decode).

Each thread takes runs of output rows; for every activation row, the weight row's blocks are
dotted in 32 float32 lanes (``_numba_blocks``) and summed once. The prefill GEMM (``_cpu``)
unpacks tiles of rows with io_gguf's vectorized dequantizer and multiplies them with BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _numba_blocks as B

_ROWS = 64  # NOTE: rows per parallel chunk: one scratch allocation per chunk, not per row


@njit(parallel=True, cache=True, fastmath=True)
def gemv(code, w, x, lut, y):
    """y (M, N) = x (M, K) @ W.T for W's row bytes ``w`` (N, row_bytes) of type ``code``
    (``_cpu.CODES``). NOTE: block sizes are literals in each arm so the lane loops unroll."""
    n_rows = w.shape[0]
    m_rows, k = x.shape
    wi = w.view(np.int8)
    for c in prange((n_rows + _ROWS - 1) // _ROWS):
        acc = np.empty(32, np.float32)
        for n in range(c * _ROWS, min(n_rows, (c + 1) * _ROWS)):
            b, bi = w[n], wi[n]
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
