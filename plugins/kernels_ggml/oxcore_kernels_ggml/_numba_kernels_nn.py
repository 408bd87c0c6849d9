"""numba kernels for cpu_numpy of the small per-layer ops of a decode step: ``rms_norm``,
``rope`` and ``scaled_dot_product_attention``.

A decode step of a small quantized model (Gemma 3 270M: 109 norms, 36 ropes, 18 attentions a
token, over rows of 256-640 floats) spends its non-GEMV time in NumPy's per-call cost: each of
these ops is 5-15 NumPy calls of ~1-3 us. One compiled loop each does the same arithmetic in
1-3 us. The kernels accept float32 and decode-sized inputs only (``supports`` says why not
otherwise), so prefill keeps cpu_numpy's NumPy/BLAS kernels.

numba is imported on the first call (plugin load stays light); machine code is cached on disk.

Example:
    >>> import oxcore as ox, numpy as np
    >>> x = np.random.default_rng(0).standard_normal((1, 1, 640)).astype(np.float32)
    >>> with ox.use("cpu_numpy"):
    ...     y = ox.rms_norm(ox.asarray(x), eps=1e-6)
    ...     [p.kernel.id for p in ox.explain(y).nodes]
    ['cpu_numpy.rms_norm.numba']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

KERNEL_NAME = "numba"
#: query rows (heads x positions) up to which attention runs here; above, BLAS products win
SDPA_MAX_ROWS = 64
#: elements up to which norms and ropes run here (a decode step's rows; a prefill has many more)
MAX_ELEMENTS = 1 << 16
_STATE: dict[str, Any] = {}


def _jit() -> Any:
    got = _STATE.get("mod")
    if got is None:
        from . import _precompile

        _precompile.ensure()
        from . import _numba_nn_impl as got
        _STATE["mod"] = got
    return got


def _float32(node: Any, n_inputs: int) -> bool | str:
    for a in (node, *node.inputs[:n_inputs]):
        if a.dtype.name != "float32":
            return f"numba kernels take float32, got {a.dtype.name}"
    from ._cpu import _numba_missing

    if _numba_missing():
        return "numba is not installed (pip install numba)"
    return True


def _elements(shape: tuple) -> int:
    return math.prod(shape)


# --- rms_norm -------------------------------------------------------------------------------
def _rms_supports(node: Any) -> bool | str:
    if _elements(node.shape) > MAX_ELEMENTS:
        return f"{_elements(node.shape)} elements: more than a decode step's rows ({MAX_ELEMENTS}); NumPy's kernel wins"
    return _float32(node, len(node.inputs))


def rms_norm(x: np.ndarray, *w: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x^2) + eps) * w`` over the last axis, float32 like cpu_numpy's kernel."""
    n = x.shape[-1]
    xs = np.ascontiguousarray(x).reshape(-1, n)
    out = np.empty_like(xs)
    ww = np.ascontiguousarray(w[0]) if w else np.ones(n, np.float32)
    _jit().rms_norm(xs, ww, np.float32(eps), out)
    return out.reshape(x.shape)


# --- rope -----------------------------------------------------------------------------------
_TABLES: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()


def _rope_table(offset: int, T: int, dims: int, base: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin (T, dims/2) float32, with NumPy in the order of the op's decomposition (so the
    angles are bit-equal to cpu_numpy's); a decode step reuses them in every layer."""
    key = (offset, T, dims, base, scale)
    got = _TABLES.get(key)
    if got is None:
        f = np.float32
        half = dims // 2
        pos = (np.arange(T, dtype=np.int64) + offset).astype(f)
        inv = np.arange(half, dtype=f) * f(-2.0 * math.log(base) / dims)
        theta = (pos * f(scale)).reshape(T, 1) * np.exp(inv).reshape(1, half)
        got = _TABLES[key] = (np.cos(theta), np.sin(theta))
        if len(_TABLES) > 16:
            _TABLES.popitem(last=False)
    return got


def _rope_supports(node: Any) -> bool | str:
    if _elements(node.shape) > MAX_ELEMENTS:
        return f"{_elements(node.shape)} elements: more than a decode step's rows ({MAX_ELEMENTS}); NumPy's kernel wins"
    return _float32(node, 1)


def rope(x: np.ndarray, offset: np.ndarray, *, dims: int, traditional: bool, base: float, scale: float) -> np.ndarray:
    """Rotary embedding of the first ``dims`` features of ``(..., T, features)`` from ``offset``."""
    T, n = x.shape[-2], x.shape[-1]
    cos, sin = _rope_table(int(offset), T, dims, base, scale)
    xs = np.ascontiguousarray(x).reshape(-1, T, n)
    out = np.empty_like(xs)
    _jit().rope(xs, cos, sin, dims, traditional, out)
    return out.reshape(x.shape)


# --- attention ------------------------------------------------------------------------------
def _sdpa_supports(node: Any) -> bool | str:
    q = node.inputs[0]
    rows = q.shape[1] * q.shape[2]
    if rows > SDPA_MAX_ROWS:
        return f"{rows} query rows (heads x positions): more than {SDPA_MAX_ROWS}; NumPy's BLAS kernel wins"
    if len(node.inputs) == 4 and node.inputs[3].dtype.name != "bool":
        return f"numba attention takes a boolean mask, got {node.inputs[3].dtype.name}"
    return _float32(node, 3)


_ALL = np.ones((1, 1, 1, 1), np.bool_)


def sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, *mask: np.ndarray, scale: float, causal: bool) -> np.ndarray:
    """``softmax(q k^T * scale, masked) v`` over (B, H, T, D); GQA; only keys some query sees."""
    B, H, Tq, _ = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    # NOTE: the mask keeps its broadcast shape (size-1 axes read at 0): np.broadcast_to costs ~5 us
    m = mask[0].reshape((1,) * (4 - mask[0].ndim) + mask[0].shape) if mask else _ALL
    out = np.empty((B, H, Tq, Dv), np.float32)
    _jit().sdpa(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), m, np.float32(scale),
                causal, out)
    return out


def _prior(factor: float) -> Any:
    def prior_us(node: Any) -> float:
        nbytes = node.dtype.itemsize * _elements(node.shape) + sum(i.dtype.itemsize * _elements(i.shape)
                                                                    for i in node.inputs)
        return 0.5 + factor * nbytes / 8e3
    return prior_us


def kernels() -> list:
    from oxcore.extend import Kernel

    return [Kernel("rms_norm", "cpu_numpy", rms_norm, _rms_supports, name=KERNEL_NAME, prior_us=_prior(0.5)),
            Kernel("rope", "cpu_numpy", rope, _rope_supports, name=KERNEL_NAME, prior_us=_prior(0.5)),
            Kernel("scaled_dot_product_attention", "cpu_numpy", sdpa, _sdpa_supports, name=KERNEL_NAME,
                   prior_us=_prior(0.5))]
