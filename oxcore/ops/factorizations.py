"""Matrix factorizations and solvers for ``oxcore.linalg``: inv, det, slogdet, solve, cholesky,
qr, svd, svdvals, eigh, eigvalsh, as registry ops over the last two axes.

Several-result ops (qr, svd, eigh, slogdet) are one node whose last axis packs the results
(row-major, one after the other); ``unpack`` slices them out. NOTE: one node, so the parts of
one factorization always come from the same kernel run, never from two backends. The sign of
eigen- and singular vectors and of QR's columns is fixed, so every backend gives the same
answer: R's diagonal is >= 0, and each column of V (eigh) and U (svd) has its largest-magnitude
entry positive (Vh's rows flip with U's columns).

Derivatives are JVP rules (oxcore derives VJPs by transposing them); they hold where the
factorization is smooth: distinct eigen/singular values, full rank.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from .. import _dtypes as D
from .._array import Array, build, scalar
from .._errors import DifferentiationError, DTypeError, ShapeError
from .._registry import Attr, Category, REGISTRY, register_op

__all__: list[str] = []


def _square(name: str, x) -> int:
    if not x.dtype.is_floating:
        raise DTypeError(f"linalg.{name} expects a floating-point dtype, got {x.dtype.name}")
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"linalg.{name} needs square matrices in the last two axes, got shape {x.shape}")
    return x.shape[-1]


def _matrix(name: str, x) -> tuple[int, int]:
    if not x.dtype.is_floating:
        raise DTypeError(f"linalg.{name} expects a floating-point dtype, got {x.dtype.name}")
    if x.ndim < 2:
        raise ShapeError(f"linalg.{name} needs at least 2 dimensions, got shape {x.shape}")
    return x.shape[-2], x.shape[-1]


def qr_shapes(m: int, n: int, mode: str) -> list[tuple[int, int]]:
    k = min(m, n) if mode == "reduced" else m
    return [(m, k), (k, n)]


def svd_shapes(m: int, n: int, full_matrices: bool) -> list[tuple[int, ...]]:
    k = min(m, n)
    return [(m, m if full_matrices else k), (k,), (n if full_matrices else k, n)]


def _packed(batch: tuple[int, ...], parts: list[tuple[int, ...]]) -> tuple[int, ...]:
    return batch + (sum(math.prod(p) for p in parts),)


def unpack(packed: Array, parts: list[tuple[int, ...]]) -> list[Array]:
    """Slice a packed several-result node into its results (batch axes first)."""
    batch, out, start = packed.shape[:-1], [], 0
    for p in parts:
        size = math.prod(p)
        starts = (0,) * len(batch) + (start,)
        piece = build("slice", packed, starts=starts, stops=batch + (start + size,), steps=(1,) * (len(batch) + 1))
        out.append(build("reshape", piece, shape=batch + tuple(p)))
        start += size
    return out


def pack(parts: list[tuple[Array, int]]) -> Array:
    """The inverse of ``unpack`` (tangents of several-result ops): ``(array, number of its
    trailing result axes)`` pairs, flattened over those axes and joined on the last one."""
    flat = [build("reshape", p, shape=p.shape[:p.ndim - k] + (math.prod(p.shape[p.ndim - k:]),)) for p, k in parts]
    return flat[0] if len(flat) == 1 else build("concat", *flat, axis=flat[0].ndim - 1)


# --- declarations ------------------------------------------------------------------------------------
def _inv_infer(inputs, attrs):
    _square("inv", inputs[0])
    return inputs[0].shape, inputs[0].dtype


def _det_infer(inputs, attrs):
    _square("det", inputs[0])
    return inputs[0].shape[:-2], inputs[0].dtype


def _slogdet_infer(inputs, attrs):
    _square("slogdet", inputs[0])
    return inputs[0].shape[:-2] + (2,), inputs[0].dtype


def _solve_infer(inputs, attrs):
    a, b = inputs
    n = _square("solve", a)
    if b.ndim < 2 or b.shape[-2] != n or b.shape[:-2] != a.shape[:-2] or b.dtype is not a.dtype:
        raise ShapeError(f"linalg.solve: x2 must be (..., {n}, k) with x1's batch axes {a.shape[:-2]} and dtype "
                         f"{a.dtype.name}; got {b.dtype.name}{list(b.shape)}")
    return b.shape, a.dtype


def _cholesky_infer(inputs, attrs):
    _square("cholesky", inputs[0])
    return inputs[0].shape, inputs[0].dtype


def _qr_infer(inputs, attrs):
    m, n = _matrix("qr", inputs[0])
    return _packed(inputs[0].shape[:-2], qr_shapes(m, n, attrs["mode"])), inputs[0].dtype


def _svd_infer(inputs, attrs):
    m, n = _matrix("svd", inputs[0])
    return _packed(inputs[0].shape[:-2], svd_shapes(m, n, attrs["full_matrices"])), inputs[0].dtype


def _svdvals_infer(inputs, attrs):
    m, n = _matrix("svdvals", inputs[0])
    return inputs[0].shape[:-2] + (min(m, n),), inputs[0].dtype


def _eigh_infer(inputs, attrs):
    n = _square("eigh", inputs[0])
    return _packed(inputs[0].shape[:-2], [(n,), (n, n)]), inputs[0].dtype


def _eigvalsh_infer(inputs, attrs):
    n = _square("eigvalsh", inputs[0])
    return inputs[0].shape[:-2] + (n,), inputs[0].dtype


for _name, _infer, _attrs, _doc in [
    ("inv", _inv_infer, (), "inverse of square matrices"),
    ("det", _det_infer, (), "determinant of square matrices"),
    ("slogdet", _slogdet_infer, (), "sign and log|det| of square matrices, packed (..., 2)"),
    ("solve", _solve_infer, (), "x with x1 @ x = x2 for square x1 (x2 (..., n, k), equal batch axes)"),
    ("cholesky", _cholesky_infer, (), "lower Cholesky factor of symmetric positive-definite matrices"),
    ("qr", _qr_infer, (Attr("mode", Literal["reduced", "complete"], default="reduced"),), "QR factorization (R's diagonal >= 0), Q and R packed"),
    ("svd", _svd_infer, (Attr("full_matrices", bool, default=True),), "singular value decomposition, U, S, Vh packed (fixed signs)"),
    ("svdvals", _svdvals_infer, (), "singular values, descending"),
    ("eigh", _eigh_infer, (), "eigenvalues (ascending) and eigenvectors of symmetric matrices, packed"),
    ("eigvalsh", _eigvalsh_infer, (), "eigenvalues (ascending) of symmetric matrices"),
]:
    register_op(_name, Category.LINALG, _infer, attrs=_attrs, doc=_doc)


# --- small helpers written in oxcore ops (the rules use them) ----------------------------------------
def mT(x: Array) -> Array:
    n = x.ndim
    return build("permute_dims", x, axes=tuple(range(n - 2)) + (n - 1, n - 2))


def mm(a: Array, b: Array) -> Array:
    return build("matmul", a, b)


def eye_like(n: int, x: Array) -> Array:
    return build("eye", n_rows=n, n_cols=n, k=0, dtype=x.dtype)


def diag_embed(v: Array) -> Array:
    """(..., n) -> (..., n, n) with v on the diagonal."""
    n = v.shape[-1]
    return build("reshape", v, shape=v.shape + (1,)) * eye_like(n, v)


def diag_part(x: Array) -> Array:
    """(..., n, n) -> (..., n): the diagonal (a masked sum, linear in x)."""
    n = x.shape[-1]
    return build("sum", x * eye_like(n, x), axis=(x.ndim - 1,), keepdims=False, dtype=x.dtype)


def _tri_mask(n: int, x: Array, k: int) -> Array:
    """1 on and below diagonal ``k``, else 0, in x's dtype."""
    r = build("reshape", build("arange", start=0, stop=n, step=1, dtype=D.int64), shape=(n, 1))
    c = build("reshape", build("arange", start=0, stop=n, step=1, dtype=D.int64), shape=(1, n))
    return build("astype", build("less_equal", c, r + k), dtype=x.dtype)


def _pair_inverse(w: Array) -> Array:
    """F[..., i, j] = 1 / (w_j - w_i) off the diagonal, 0 on it."""
    n = w.shape[-1]
    d = build("reshape", w, shape=w.shape[:-1] + (1, n)) - build("reshape", w, shape=w.shape + (1,))
    off = scalar(1, w.dtype) - eye_like(n, w)
    safe = d + eye_like(n, w)  # NOTE: 1 on the diagonal instead of 0, masked out below
    return off / safe


# --- JVP rules ------------------------------------------------------------------------------------------
def _inv_jvp(ts, out, x):
    return -mm(mm(out, ts[0]), out)


def _det_jvp(ts, out, x):
    inv = build("inv", x)
    tr = build("sum", mT(inv) * ts[0], axis=(x.ndim - 2, x.ndim - 1), keepdims=False, dtype=x.dtype)
    return out * tr


def _slogdet_jvp(ts, out, x):
    inv = build("inv", x)
    tr = build("sum", mT(inv) * ts[0], axis=(x.ndim - 2, x.ndim - 1), keepdims=False, dtype=x.dtype)
    tr = build("reshape", tr, shape=tr.shape + (1,))
    zero = build("full", shape=tr.shape, value=0, dtype=x.dtype)
    return build("concat", zero, tr, axis=tr.ndim - 1)


def _solve_jvp(ts, out, a, b):
    ta, tb = ts
    rhs = tb if ta is None else (-mm(ta, out) if tb is None else tb - mm(ta, out))
    return build("solve", a, rhs)


def _cholesky_jvp(ts, out, x):
    # NOTE: dL = L Phi(L^-1 dA L^-T), Phi: the lower triangle with half the diagonal (dA symmetric)
    n = x.shape[-1]
    li = build("inv", out)
    inner = mm(mm(li, ts[0]), mT(li))
    phi = inner * (_tri_mask(n, x, -1) + eye_like(n, x) * scalar(0.5, x.dtype))
    return mm(out, phi)


def _eigh_parts(out: Array, n: int) -> tuple[Array, Array]:
    w, v = unpack(out, [(n,), (n, n)])
    return w, v


def _eigh_jvp(ts, out, x):
    n = x.shape[-1]
    w, v = _eigh_parts(out, n)
    p = mm(mm(mT(v), ts[0]), v)
    dw = diag_part(p)
    dv = mm(v, _pair_inverse(w) * p)
    return pack([(dw, 1), (dv, 2)])


def _eigvalsh_jvp(ts, out, x):
    n = x.shape[-1]
    _, v = _eigh_parts(build("eigh", x), n)
    return diag_part(mm(mm(mT(v), ts[0]), v))


def _svd_core(x: Array, t: Array, u: Array, s: Array, vh: Array) -> tuple[Array, Array, Array]:
    v = mT(vh)
    k = s.shape[-1]
    dp = mm(mm(mT(u), t), v)
    ds = diag_part(dp)
    sm = diag_embed(s)
    f = _pair_inverse(s * s)
    du = mm(u, f * (mm(dp, sm) + mm(sm, mT(dp))))
    dv = mm(v, f * (mm(sm, dp) + mm(mT(dp), sm)))
    m, n = x.shape[-2], x.shape[-1]
    sinv = diag_embed(scalar(1, s.dtype) / s)
    if m > k:  # NOTE: the part of dA outside U's span moves U
        du = du + mm(mm(eye_like(m, x) - mm(u, mT(u)), t), mm(v, sinv))
    if n > k:
        dv = dv + mm(mm(eye_like(n, x) - mm(v, vh), mT(t)), mm(u, sinv))
    return du, ds, mT(dv)


def _svd_jvp(ts, out, x, *, full_matrices):
    m, n = x.shape[-2], x.shape[-1]
    if full_matrices and m != n:
        raise DifferentiationError("the derivative of svd(full_matrices=True) of a non-square matrix is not "
                                   "unique; use full_matrices=False")
    u, s, vh = unpack(out, svd_shapes(m, n, full_matrices))
    du, ds, dvh = _svd_core(x, ts[0], u, s, vh)
    return pack([(du, 2), (ds, 1), (dvh, 2)])


def _svdvals_jvp(ts, out, x):
    m, n = x.shape[-2], x.shape[-1]
    u, _, vh = unpack(build("svd", x, full_matrices=False), svd_shapes(m, n, False))
    return diag_part(mm(mm(mT(u), ts[0]), mT(vh)))


def _qr_jvp(ts, out, x, *, mode):
    m, n = x.shape[-2], x.shape[-1]
    if m < n or (mode == "complete" and m != n):
        raise DifferentiationError(f"the derivative of qr is defined here for tall or square matrices in reduced "
                                   f"mode (m >= n); got shape {x.shape}, mode={mode!r}")
    q, r = unpack(out, qr_shapes(m, n, mode))
    rinv = build("inv", r)
    c = mm(mm(mT(q), ts[0]), rinv)
    low = c * _tri_mask(n, x, -1)
    omega = low - mT(low)
    dr = mm(c - omega, r)
    dq = mm(ts[0], rinv) - mm(q, c - omega)
    return pack([(dq, 2), (dr, 2)])


def _solve_vjp(g, out, a, b):
    gb = build("solve", mT(a), g)
    return -mm(gb, mT(out)), gb


REGISTRY.set_rules("solve", vjp=_solve_vjp)
for _name, _jvp in [("inv", _inv_jvp), ("det", _det_jvp), ("slogdet", _slogdet_jvp), ("solve", _solve_jvp),
                    ("cholesky", _cholesky_jvp), ("eigh", _eigh_jvp), ("eigvalsh", _eigvalsh_jvp),
                    ("svd", _svd_jvp), ("svdvals", _svdvals_jvp), ("qr", _qr_jvp)]:
    REGISTRY.set_rules(_name, jvp=_jvp)


def float_input(x: Any) -> Array:
    """linalg inputs: integers and bools compute in the default float dtype (as NumPy)."""
    from ._rules import as_array

    x = as_array(x)
    return x if x.dtype.is_floating else build("astype", x, dtype=D.default_float)
