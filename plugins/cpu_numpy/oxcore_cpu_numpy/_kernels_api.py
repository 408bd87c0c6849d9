"""Kernels for the Array API extras: sorting, searching, differences, nextafter (NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _argsort(x, *, axis, descending, stable):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64, copy=False)
    # NOTE: stable descending: sort the reversed array stably, reverse the order back and map
    # the indices; equal elements then keep their original order (NumPy has no descending sort)
    n = x.shape[axis]
    rev = np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return (n - 1 - rev).astype(np.int64, copy=False)


def _sort(x, *, axis, descending, stable):
    if not descending:
        return np.sort(x, axis=axis, kind="stable")
    return np.take_along_axis(x, _argsort(x, axis=axis, descending=True, stable=stable), axis=axis)


def _count_nonzero(x, *, axis, keepdims):
    return np.asarray(np.sum(x != 0, axis=axis, keepdims=keepdims, dtype=np.int64))


KERNELS: dict[str, Any] = {
    "argsort": _argsort,
    "sort": _sort,
    "searchsorted": lambda a, v, *, side: np.searchsorted(a, v, side=side).astype(np.int64),
    "count_nonzero": _count_nonzero,
    "diff": lambda x, *, axis, n: np.diff(x, n=n, axis=axis),
    "nextafter": np.nextafter,
    "isin": lambda a, b, *, invert: np.isin(a, b, invert=invert),
    "real": lambda x: np.array(np.real(x)),  # NOTE: a copy: np.real gives a strided view of x
    "imag": lambda x: np.array(np.imag(x)) if x.dtype.kind == "c" else np.zeros_like(x),
    "conj": lambda x: np.conj(x),
}


# --- linalg: NumPy's LAPACK, with oxcore's sign conventions (see oxcore.ops.factorizations) ----------
def _flat(batch, *parts):
    return np.concatenate([p.reshape(batch + (-1,)) for p in parts], axis=-1)


def _phase(p):
    """p / |p| (1 where p is 0): the sign of a real p, the unit phase of a complex one."""
    a = np.abs(p)
    return np.where(a == 0, 1, p / np.where(a == 0, 1, a))


def _column_signs(v):
    """Per column, the unit factor that makes its largest-magnitude entry real and positive."""
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    return np.conj(_phase(np.take_along_axis(v, idx, axis=-2))).astype(v.dtype)


def _qr(x, *, mode):
    q, r = np.linalg.qr(x, mode=mode)
    d = _phase(np.diagonal(r, axis1=-2, axis2=-1)).astype(x.dtype)  # NOTE: Q d, conj(d) R: same product
    k = d.shape[-1]
    q = q.copy()
    q[..., :k] *= d[..., None, :]
    r = r * np.conj(np.concatenate([d, np.ones(d.shape[:-1] + (r.shape[-2] - k,), x.dtype)], axis=-1))[..., :, None]
    return _flat(x.shape[:-2], q, r)


def _svd(x, *, full_matrices):
    u, s, vh = np.linalg.svd(x, full_matrices=full_matrices)
    k = s.shape[-1]
    sg = _column_signs(u[..., :k])
    u = u.copy()
    u[..., :k] *= sg
    vh = vh.copy()
    vh[..., :k, :] *= np.conj(np.swapaxes(sg, -1, -2))  # NOTE: U f, conj(f) Vh: same product
    return _flat(x.shape[:-2], u, s, vh)


def _eigh(x):
    w, v = np.linalg.eigh(x)
    return _flat(x.shape[:-2], w, v * _column_signs(v))


def _slogdet(x):
    sign, logdet = np.linalg.slogdet(x)
    return np.stack([sign, logdet], axis=-1).astype(x.dtype)


def _lapack(f, real_out: bool = False):
    """NOTE: LAPACK has no half precision: half inputs compute in float32, round once.
    ``real_out``: the result is real for complex input too (singular values, Hermitian eigenvalues)."""
    def k(*xs, **attrs):
        dt = xs[0].dtype
        if dt.name in ("float16", "bfloat16"):
            return np.asarray(f(*(x.astype(np.float32) for x in xs), **attrs)).astype(dt)
        return np.asarray(f(*xs, **attrs)).astype(np.finfo(dt).dtype if real_out else dt, copy=False)
    return k


KERNELS.update({
    "inv": _lapack(np.linalg.inv),
    "det": _lapack(np.linalg.det),
    "slogdet": _lapack(_slogdet),
    "solve": _lapack(np.linalg.solve),
    "cholesky": _lapack(np.linalg.cholesky),
    "qr": _lapack(_qr),
    "svd": _lapack(_svd),
    "svdvals": _lapack(lambda x: np.linalg.svd(x, compute_uv=False), real_out=True),
    "eigh": _lapack(_eigh),
    "eigvalsh": _lapack(np.linalg.eigvalsh, real_out=True),
})


# --- fft: numpy.fft (NumPy >= 2 keeps float32/complex64 in single precision) -------------------------
def _fft(name):
    f = getattr(np.fft, name)
    many = name.endswith("n")
    real_out = name in ("irfft", "hfft", "irfftn")

    def k(x, *, s, axes, norm):
        r = f(x, s=s, axes=axes, norm=norm) if many else f(x, n=s[0], axis=axes[0], norm=norm)
        if real_out:
            dt = np.float32 if x.dtype == np.complex64 else np.float64
        else:
            dt = np.complex64 if x.dtype in (np.float32, np.complex64) else np.complex128
        return r.astype(dt, copy=False)
    k.__name__ = name
    return k


KERNELS.update({name: _fft(name) for name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft", "fftn", "ifftn",
                                              "rfftn", "irfftn")})
