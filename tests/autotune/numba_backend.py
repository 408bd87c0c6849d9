"""A second CPU backend with its own thread pool, for the thread-partition tests: numba
``parallel=True`` kernels (numba's OpenMP or workqueue threads) on a device that shares host
memory with ``cpu`` (buffers are the same NumPy arrays, moves are views)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oxcore.extend import Backend, Device

NUMBA_CPU = Device("numba:cpu", "cpu", "host memory (numba kernels)", shares_memory_with=("cpu",))


def _f32(node: Any) -> bool | str:
    if any(i.dtype.name != "float32" for i in (node, *node.inputs)):
        return "numba test backend computes in float32 only"
    return True


def _matmul_2d(node: Any) -> bool | str:
    if any(i.ndim != 2 for i in node.inputs):
        return "2-d matmul only"
    return _f32(node)


def make_numba_backend() -> Backend:
    import numba
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def _exp(x, out):
        for i in prange(x.size):
            out[i] = math.exp(x[i])

    @njit(parallel=True)
    def _erf(x, out):
        for i in prange(x.size):
            out[i] = math.erf(x[i])

    @njit(parallel=True, fastmath=True)
    def _mm(a, b, out):
        for i in prange(a.shape[0]):
            for k in range(a.shape[1]):
                aik = a[i, k]
                for j in range(b.shape[1]):
                    out[i, j] += aik * b[k, j]

    def unary(f):
        def k(x):
            x = np.ascontiguousarray(x)
            out = np.empty_like(x)
            f(x.reshape(-1), out.reshape(-1))
            return out
        return k

    def matmul(a, b):
        out = np.zeros((a.shape[0], b.shape[1]), np.float32)
        _mm(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
        return out

    class NumbaBackend(Backend):
        name = "numba_test"
        device = NUMBA_CPU
        priority = -1

        def limit_threads(self, n: int | None) -> None:
            numba.set_num_threads(n or numba.config.NUMBA_NUM_THREADS)

        def configured_threads(self) -> int | None:
            return numba.config.NUMBA_NUM_THREADS

    b = NumbaBackend()
    b.kernel("exp", supports=_f32)(unary(_exp))
    b.kernel("erf", supports=_f32)(unary(_erf))
    b.kernel("matmul", supports=_matmul_2d)(matmul)
    return b
