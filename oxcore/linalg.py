"""``oxcore.linalg``: the Array API linear algebra extension (2024.12).

Factorizations and solvers are registry ops (``oxcore.ops.factorizations``) with kernels on
cpu_numpy (LAPACK through NumPy) and the MLX backends (``mx.linalg`` on MLX's CPU stream); the
rest is written with them and the core ops, so it is lazy, differentiable and runs anywhere.

Example:
    >>> import oxcore as ox
    >>> a = ox.asarray([[4.0, 1.0], [1.0, 3.0]])
    >>> round(float(ox.linalg.det(a)), 4)
    11.0
    >>> ox.linalg.solve(a, ox.asarray([1.0, 2.0])).shape
    (2,)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

from . import _dtypes as D
from ._array import Array, build, scalar
from ._errors import AttributeValueError, ShapeError
from .ops import factorizations as _f
from .ops import (abs as _abs, astype as _astype, broadcast_to as _broadcast_to, matmul, matrix_transpose,
                  max as _max, min as _min, outer, reshape as _reshape, sqrt as _sqrt, stack as _stack, sum as _sum,
                  take as _take, tensordot, vecdot, where as _where)
from .ops._rules import as_array, broadcast_shapes, norm_axes, norm_axis

__all__ = ["cholesky", "cross", "det", "diagonal", "eigh", "eigvalsh", "inv", "matmul", "matrix_norm", "matrix_power",
           "matrix_rank", "matrix_transpose", "outer", "pinv", "qr", "slogdet", "solve", "svd", "svdvals",
           "tensordot", "trace", "vecdot", "vector_norm", "EighResult", "QRResult", "SVDResult", "SlogdetResult"]


class EighResult(NamedTuple):
    eigenvalues: Array
    eigenvectors: Array


class QRResult(NamedTuple):
    Q: Array
    R: Array


class SVDResult(NamedTuple):
    U: Array
    S: Array
    Vh: Array


class SlogdetResult(NamedTuple):
    sign: Array
    logabsdet: Array


def inv(x: Any, /) -> Array:
    """Inverse of each square matrix in the last two axes.

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.inv(ox.asarray([[2.0, 0.0], [0.0, 4.0]])).tolist()
        [[0.5, 0.0], [0.0, 0.25]]
    """
    return build("inv", _f.float_input(x))


def det(x: Any, /) -> Array:
    """Determinant of each square matrix (batch axes kept)."""
    return build("det", _f.float_input(x))


def slogdet(x: Any, /) -> SlogdetResult:
    """Sign and natural log of the absolute determinant (stable where ``det`` overflows).

    Example:
        >>> import oxcore as ox
        >>> r = ox.linalg.slogdet(ox.asarray([[-2.0, 0.0], [0.0, 1.0]]))
        >>> r.sign.item(), round(r.logabsdet.item(), 5)
        (-1.0, 0.69315)
    """
    p = build("slogdet", _f.float_input(x))
    sign, logabs = _f.unpack(p, [(1,), (1,)])
    return SlogdetResult(_reshape(sign, p.shape[:-1]), _reshape(_real_part(logabs), p.shape[:-1]))


def _real_part(x: Array) -> Array:
    """NOTE: a packed complex node carries its real results (singular values, eigenvalues,
    log|det|) as complex numbers with zero imaginary parts; the public results are real."""
    return build("real", x) if x.dtype.is_complex else x


def solve(x1: Any, x2: Any, /) -> Array:
    """``x`` with ``x1 @ x = x2``. ``x2`` is a vector when 1-D, else a stack of matrices; batch
    axes broadcast.

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.solve(ox.asarray([[2.0, 0.0], [0.0, 4.0]]), ox.asarray([2.0, 2.0])).tolist()
        [1.0, 0.5]
    """
    a, b = _f.float_input(x1), _f.float_input(x2)
    if b.dtype is not a.dtype:
        dt = D.result_type_pair(a.dtype, b.dtype)
        a, b = _astype(a, dt), _astype(b, dt)
    n = _f._square("solve", a)
    vector = b.ndim == 1
    if vector:
        if b.shape[0] != n:
            raise ShapeError(f"linalg.solve: x2 has {b.shape[0]} rows, x1 is {n}x{n}")
        b = _reshape(b, (n, 1))
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = _broadcast_to(a, batch + a.shape[-2:])
    b = _broadcast_to(b, batch + b.shape[-2:])
    out = build("solve", a, b)
    return _reshape(out, out.shape[:-1]) if vector else out


def cholesky(x: Any, /, *, upper: bool = False) -> Array:
    """Cholesky factor of symmetric (Hermitian) positive-definite matrices: lower ``L`` with
    ``L @ conj(L).mT == x`` (or upper ``U = conj(L).mT`` when ``upper``). Reads the lower triangle."""
    low = build("cholesky", _f.float_input(x))
    if not upper:
        return low
    return matrix_transpose(build("conj", low) if low.dtype.is_complex else low)


def qr(x: Any, /, *, mode: str = "reduced") -> QRResult:
    """QR factorization ``x = Q @ R`` with R's diagonal >= 0 (``mode='reduced'`` or ``'complete'``).

    Example:
        >>> import oxcore as ox
        >>> q, r = ox.linalg.qr(ox.asarray([[3.0, 1.0], [4.0, 2.0], [0.0, 5.0]]))
        >>> q.shape, r.shape, round(r[0, 0].item(), 4)
        ((3, 2), (2, 2), 5.0)
    """
    if mode not in ("reduced", "complete"):
        raise AttributeValueError(f"Invalid mode: {mode!r}. Valid modes are: reduced, complete")
    x = _f.float_input(x)
    m, n = _f._matrix("qr", x)
    return QRResult(*_f.unpack(build("qr", x, mode=mode), _f.qr_shapes(m, n, mode)))


def svd(x: Any, /, *, full_matrices: bool = True) -> SVDResult:
    """Singular value decomposition ``x = U @ diag(S) @ Vh``, S descending. Signs are fixed
    (each column of U has its largest-magnitude entry positive), so every backend agrees.

    Example:
        >>> import oxcore as ox
        >>> u, s, vh = ox.linalg.svd(ox.asarray([[3.0, 0.0], [0.0, -2.0]]))
        >>> s.tolist()
        [3.0, 2.0]
    """
    x = _f.float_input(x)
    m, n = _f._matrix("svd", x)
    fm = bool(full_matrices)
    u, s, vh = _f.unpack(build("svd", x, full_matrices=fm), _f.svd_shapes(m, n, fm))
    return SVDResult(u, _real_part(s), vh)


def svdvals(x: Any, /) -> Array:
    """Singular values, descending."""
    return build("svdvals", _f.float_input(x))


def eigh(x: Any, /) -> EighResult:
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices; reads the
    lower triangle. Each eigenvector has its largest-magnitude entry positive."""
    x = _f.float_input(x)
    n = _f._square("eigh", x)
    w, v = _f.unpack(build("eigh", x), [(n,), (n, n)])
    return EighResult(_real_part(w), v)


def eigvalsh(x: Any, /) -> Array:
    """Eigenvalues (ascending) of symmetric matrices."""
    return build("eigvalsh", _f.float_input(x))


def _eps(dt: D.DType) -> float:
    return float(D.finfo(dt).eps)


def pinv(x: Any, /, *, rtol: float | Array | None = None) -> Array:
    """Moore-Penrose pseudo-inverse through the SVD; singular values at or below
    ``rtol * max(S)`` count as zero (default ``rtol = max(m, n) * eps``).

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.pinv(ox.asarray([[2.0, 0.0], [0.0, 0.0]])).tolist()
        [[0.5, 0.0], [0.0, 0.0]]
    """
    x = _f.float_input(x)
    m, n = _f._matrix("pinv", x)
    u, s, vh = svd(x, full_matrices=False)
    if x.dtype.is_complex:  # NOTE: pinv = Vh^H diag(1/s) U^H
        u, vh = build("conj", u), build("conj", vh)
    tol = (max(m, n) * _eps(x.dtype) if rtol is None else rtol)
    cut = _max(s, axis=-1, keepdims=True) * (tol if isinstance(tol, Array) else scalar(float(tol), s.dtype))
    keep = s > cut
    sinv = _where(keep, scalar(1, s.dtype) / _where(keep, s, scalar(1, s.dtype)), scalar(0, s.dtype))
    return matmul(matrix_transpose(vh) * _reshape(sinv, sinv.shape[:-1] + (1, sinv.shape[-1])), matrix_transpose(u))


def matrix_rank(x: Any, /, *, rtol: float | Array | None = None) -> Array:
    """Number of singular values above ``rtol * max(S)`` (int64)."""
    x = _f.float_input(x)
    m, n = _f._matrix("matrix_rank", x)
    s = svdvals(x)  # NOTE: real also for complex x: the cut is in s's dtype
    tol = (max(m, n) * _eps(x.dtype) if rtol is None else rtol)
    cut = _max(s, axis=-1, keepdims=True) * (tol if isinstance(tol, Array) else scalar(float(tol), s.dtype))
    return _sum(_astype(s > cut, D.int64), axis=-1)


def matrix_power(x: Any, n: int, /) -> Array:
    """``x`` multiplied by itself ``n`` times (the identity for 0; ``inv(x)`` powers for n < 0).

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.matrix_power(ox.asarray([[1.0, 1.0], [0.0, 1.0]]), 3).tolist()
        [[1.0, 3.0], [0.0, 1.0]]
    """
    x = as_array(x)
    k = _f._square("matrix_power", x) if x.dtype.is_floating else x.shape[-1]
    n = int(n)
    if n == 0:
        return _broadcast_to(build("eye", n_rows=k, n_cols=k, k=0, dtype=x.dtype), x.shape)
    if n < 0:
        x, n = inv(x), -n
    out, base = None, x
    while n:  # NOTE: square-and-multiply: log2(n) products
        if n & 1:
            out = base if out is None else matmul(out, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return out


def diagonal(x: Any, /, *, offset: int = 0) -> Array:
    """The diagonal ``offset`` (above the main one when > 0) of each matrix in the last two axes.

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.diagonal(ox.asarray([[1, 2], [3, 4]]), offset=1).tolist()
        [2]
    """
    x = as_array(x)
    if x.ndim < 2:
        raise ShapeError(f"diagonal needs at least 2 dimensions, got shape {x.shape}")
    m, n = x.shape[-2:]
    rows = range(max(0, -offset), min(m, n - offset))
    k = len(rows)
    flat = _reshape(x, x.shape[:-2] + (m * n,))
    from .ops.creation import asarray

    idx = asarray([(r * n + r + offset) for r in rows], dtype=D.int64) if k else asarray([], dtype=D.int64)
    return _take(flat, idx, axis=-1)


def trace(x: Any, /, *, offset: int = 0, dtype: Any = None) -> Array:
    """Sum of the diagonal ``offset`` of each matrix (integers sum in int64, as ``sum``)."""
    return _sum(diagonal(x, offset=offset), axis=-1, dtype=dtype)


def cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Array:
    """Cross product of 3-vectors along ``axis`` (other axes broadcast).

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.cross(ox.asarray([1.0, 0.0, 0.0]), ox.asarray([0.0, 1.0, 0.0])).tolist()
        [0.0, 0.0, 1.0]
    """
    a, b = as_array(x1), as_array(x2)
    if axis >= 0:
        raise AttributeValueError(f"linalg.cross: axis must be negative (counted from the end), got {axis}")
    if a.ndim < -axis or b.ndim < -axis or a.shape[axis] != 3 or b.shape[axis] != 3:
        raise ShapeError(f"linalg.cross needs size 3 along axis {axis}, got shapes {a.shape} and {b.shape}")
    shape = broadcast_shapes(a.shape, b.shape)
    a, b = _broadcast_to(a, shape), _broadcast_to(b, shape)
    ax = norm_axis(axis, len(shape))
    from .ops.manipulation import slice_axis, squeeze

    c = [[squeeze(slice_axis(v, ax, i, i + 1), ax) for i in range(3)] for v in (a, b)]
    (a0, a1, a2), (b0, b1, b2) = c
    return _stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=ax)


def vector_norm(x: Any, /, *, axis: int | Sequence[int] | None = None, keepdims: bool = False,
                ord: float = 2) -> Array:  # noqa: A002 (the standard's name)
    """The ``ord``-norm over ``axis`` (all axes when None): 2, 1, inf, -inf, 0 (count of
    non-zeros) or any p.

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.vector_norm(ox.asarray([3.0, -4.0])).item()
        5.0
    """
    x = _f.float_input(x)
    axes = norm_axes(axis, x.ndim)
    a = _abs(x)
    kw = {"axis": axes, "keepdims": keepdims}
    if ord == 2:
        return _sqrt(_sum(a * a, **kw))
    if ord == 1:
        return _sum(a, **kw)
    if ord == math.inf:
        return _max(a, **kw)
    if ord == -math.inf:
        return _min(a, **kw)
    if ord == 0:
        return _sum(_astype(a != 0, a.dtype), **kw)
    p = scalar(float(ord), a.dtype)  # NOTE: a's dtype: |x| of a complex x is real, and so is the norm
    return _sum(a ** p, **kw) ** (scalar(1, a.dtype) / p)


def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Array:  # noqa: A002
    """Norm of each matrix in the last two axes: ``'fro'``, ``'nuc'``, 1, -1, 2, -2, inf, -inf.

    Example:
        >>> import oxcore as ox
        >>> ox.linalg.matrix_norm(ox.asarray([[1.0, -2.0], [3.0, 4.0]]), ord=1).item()
        6.0
    """
    x = _f.float_input(x)
    _f._matrix("matrix_norm", x)
    r, c = x.ndim - 2, x.ndim - 1
    if ord == "fro":
        a = _abs(x)
        out = _sqrt(_sum(a * a, axis=(r, c), keepdims=True))
    elif ord in ("nuc", 2, -2):
        s = svdvals(x)
        red = _sum if ord == "nuc" else _max if ord == 2 else _min
        out = _reshape(red(s, axis=-1), x.shape[:-2] + (1, 1))
    elif ord in (1, -1, math.inf, -math.inf):
        inner = r if ord in (1, -1) else c
        sums = _sum(_abs(x), axis=inner, keepdims=True)
        out = (_max if ord > 0 else _min)(sums, axis=c if inner == r else r, keepdims=True)
    else:
        raise AttributeValueError(f"Invalid ord: {ord!r}. Valid values are: 'fro', 'nuc', 1, -1, 2, -2, inf, -inf")
    return out if keepdims else _reshape(out, x.shape[:-2])

