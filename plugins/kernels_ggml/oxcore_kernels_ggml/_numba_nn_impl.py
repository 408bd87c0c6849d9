"""The compiled loops behind ``_numba_kernels_nn`` (imported on first use: it imports numba).

Sums accumulate in float64 (closer to the float64 reference than NumPy's float32 pairwise
sums); every value handed on is rounded to float32 where cpu_numpy's kernels round it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def rms_norm(x, w, eps, out):
    """out[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w for each row r of x (R, N)."""
    rows, n = x.shape
    for r in range(rows):
        ss = 0.0
        for i in range(n):
            ss += np.float64(x[r, i]) * np.float64(x[r, i])
        mean = np.float32(ss) / np.float32(n)
        inv = np.float32(1.0) / np.float32(math.sqrt(mean + eps))
        for i in range(n):
            out[r, i] = (x[r, i] * inv) * w[i]


@njit(cache=True)
def rope(x, cos, sin, dims, traditional, out):
    """Rotate the first ``dims`` features of x (R, T, N) by the angles' cos/sin (T, dims/2)."""
    rows, T, n = x.shape
    half = dims // 2
    for r in range(rows):
        for t in range(T):
            for j in range(half):
                if traditional:
                    a, b = 2 * j, 2 * j + 1
                else:
                    a, b = j, j + half
                x1, x2 = x[r, t, a], x[r, t, b]
                c, s = cos[t, j], sin[t, j]
                out[r, t, a] = x1 * c - x2 * s
                out[r, t, b] = x1 * s + x2 * c
            for j in range(dims, n):
                out[r, t, j] = x[r, t, j]


# NOTE: fastmath lets LLVM vectorize the float64 dot products (it may reorder their sums: still
# float64, well inside float32's rounding); without it a decode attention costs ~60 us instead of ~10
@njit(cache=True, fastmath=True)
def sdpa(q, k, v, mask, scale, causal, out):
    """out (B, H, Tq, Dv) = softmax(q k^T * scale, where mask) v; kv head of query head h is
    h // (H / Hk). Masked keys are skipped, not multiplied; a row with no visible key is NaN
    (as softmax over nothing is in the decomposition)."""
    B, H, Tq, D = q.shape
    Hk, Tk = k.shape[1], k.shape[2]
    Dv = v.shape[3]
    ninf = -np.inf
    r = H // Hk
    # NOTE: the mask may broadcast (size-1 axes): index those at 0
    mb, mh, mi, mj = mask.shape[0] > 1, mask.shape[1] > 1, mask.shape[2] > 1, mask.shape[3] > 1
    s = np.empty(Tk, np.float32)
    acc = np.empty(Dv, np.float64)
    qs = np.empty(D, np.float32)
    for b in range(B):
        for h in range(H):
            hk = h // r
            for i in range(Tq):
                last = Tk - 1 if not causal else i + Tk - Tq  # NOTE: aligned bottom-right
                mrow = mask[b if mb else 0, h if mh else 0, i if mi else 0]
                for d in range(D):
                    qs[d] = q[b, h, i, d] * scale  # NOTE: q is scaled first, as the decomposition does
                mx = ninf
                seen = False
                for j in range(min(Tk, last + 1)):
                    if not mrow[j if mj else 0]:
                        continue
                    dot = 0.0
                    for d in range(D):
                        dot += np.float64(qs[d]) * np.float64(k[b, hk, j, d])
                    s[j] = np.float32(dot)
                    if not seen or s[j] > mx:
                        mx = s[j]
                    seen = True
                if not seen:
                    for d in range(Dv):
                        out[b, h, i, d] = np.nan
                    continue
                total = 0.0
                for j in range(min(Tk, last + 1)):
                    if mrow[j if mj else 0]:
                        e = np.float32(math.exp(np.float64(s[j] - mx)))
                        s[j] = e
                        total += np.float64(e)
                acc[:] = 0.0
                for j in range(min(Tk, last + 1)):
                    if mrow[j if mj else 0]:
                        p = np.float32(s[j] / np.float32(total))
                        for d in range(Dv):
                            acc[d] += np.float64(p) * np.float64(v[b, hk, j, d])
                for d in range(Dv):
                    out[b, h, i, d] = np.float32(acc[d])
