"""Kernels for the Array API extras on MLX: sort, argsort, searchsorted, count_nonzero.

Ops MLX has no function for (``nextafter``) are claimed with a kernel that always refuses,
so ``oxcore ops list`` and the plan say why they run elsewhere (``_support.MISSING``).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._support import MISSING


def _flip(x, axis):
    return x[(slice(None),) * axis + (slice(None, None, -1),)]


def _argsort(x, *, axis, descending, stable):
    # NOTE: MLX's sort is a stable merge sort (CPU and Metal); descending reuses the stable
    # ascending order of the reversed array, as cpu_numpy does, so ties keep their order
    if not descending:
        return mx.argsort(x, axis=axis).astype(mx.int64)
    n = x.shape[axis]
    return (n - 1 - _flip(mx.argsort(_flip(x, axis), axis=axis), axis).astype(mx.int64))


def _sort(x, *, axis, descending, stable):
    if not descending:
        return mx.sort(x, axis=axis)
    return mx.take_along_axis(x, _argsort(x, axis=axis, descending=True, stable=stable), axis=axis)


def _count_nonzero(x, *, axis, keepdims):
    if not axis:
        return (x != 0).astype(mx.int64)
    return mx.count_nonzero(x, axis=list(axis), keepdims=keepdims).astype(mx.int64)


def _refused(op: str):
    def kernel(*args: Any, **attrs: Any) -> Any:  # never runs: supports() refuses every node
        raise NotImplementedError(MISSING[op])
    kernel.__name__ = f"{op}_missing"
    return kernel


API: dict[str, Any] = {
    "argsort": _argsort,
    "sort": _sort,
    "searchsorted": lambda a, v, *, side: mx.searchsorted(a, v, side).astype(mx.int64),
    "count_nonzero": _count_nonzero,
    "real": lambda x: mx.real(x) if x.dtype == mx.complex64 else x,
    "imag": lambda x: mx.imag(x) if x.dtype == mx.complex64 else mx.zeros_like(x),
    "conj": lambda x: mx.conjugate(x) if x.dtype == mx.complex64 else x,
    **{op: _refused(op) for op in MISSING},
}


# --- linalg: mx.linalg runs on MLX's CPU stream only (also on Apple silicon), float32/float64;
# same sign conventions as cpu_numpy (oxcore.ops.factorizations) --------------------------------------
_CPU = mx.cpu


def _flat(batch, *parts):
    return mx.concatenate([p.reshape(batch + (-1,)) for p in parts], axis=-1)


def _column_signs(v):
    idx = mx.expand_dims(mx.argmax(mx.abs(v), axis=-2), -2)
    s = mx.sign(mx.take_along_axis(v, idx, axis=-2))
    return mx.where(s == 0, mx.ones_like(s), s)


def _qr(x, *, mode):
    q, r = mx.linalg.qr(x, stream=_CPU)
    k = min(x.shape[-2], x.shape[-1])
    d = mx.sign(mx.diagonal(r, axis1=-2, axis2=-1)[..., :k])
    d = mx.where(d == 0, mx.ones_like(d), d)
    q = q * mx.expand_dims(d, -2)
    r = r * mx.expand_dims(d, -1)
    return _flat(tuple(x.shape[:-2]), q, r)


def _svd(x, *, full_matrices):
    u, s, vh = mx.linalg.svd(x, stream=_CPU)
    m, n = x.shape[-2], x.shape[-1]
    k = min(m, n)
    sg = _column_signs(u[..., :k])
    if full_matrices:
        ones_u = mx.ones(sg.shape[:-1] + (m - k,), dtype=u.dtype)
        ones_v = mx.ones(sg.shape[:-1] + (n - k,), dtype=u.dtype)
        u = u * mx.concatenate([sg, ones_u], axis=-1)
        vh = vh * mx.expand_dims(mx.concatenate([mx.squeeze(sg, -2), mx.squeeze(ones_v, -2)], axis=-1), -1)
    else:
        u = u[..., :k] * sg
        vh = vh[..., :k, :] * mx.swapaxes(sg, -1, -2)
    return _flat(tuple(x.shape[:-2]), u, s, vh)


def _eigh(x):
    w, v = mx.linalg.eigh(x, stream=_CPU)
    return _flat(tuple(x.shape[:-2]), w, v * _column_signs(v))


def _slogdet(x):
    sign, logdet = mx.linalg.slogdet(x, stream=_CPU)
    return mx.stack([sign, logdet], axis=-1).astype(x.dtype)


API.update({
    "inv": lambda x: mx.linalg.inv(x, stream=_CPU),
    "det": lambda x: mx.linalg.det(x, stream=_CPU).astype(x.dtype),
    "slogdet": _slogdet,
    "solve": lambda a, b: mx.linalg.solve(a, b, stream=_CPU),
    "cholesky": lambda x: mx.linalg.cholesky(x, stream=_CPU),
    "qr": _qr,
    "svd": _svd,
    "svdvals": lambda x: mx.linalg.svd(x, compute_uv=False, stream=_CPU),
    "eigh": _eigh,
    "eigvalsh": lambda x: mx.linalg.eigvalsh(x, stream=_CPU),
})


# --- fft: mx.fft in complex64 (MLX has no norm= argument: scale like NumPy's conventions) -----------
def _fft(name):
    from oxcore.ops.fft import scale

    f = getattr(mx.fft, name)
    many = name.endswith("n")

    def k(x, *, s, axes, norm):
        r = f(x, s=list(s), axes=list(axes)) if many else f(x, n=s[0], axis=axes[0])
        c = scale(name, norm, tuple(s))
        return r if c == 1.0 else r * mx.array(c, dtype=mx.float32)
    k.__name__ = name
    return k


API.update({name: _fft(name) for name in ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn")})
