"""Conformance cases for the Array API extras: sort, argsort, searchsorted, count_nonzero,
diff, nextafter (imported by ``oxcore.testing.cases``, whose ``CASES`` they join)."""

from __future__ import annotations

import numpy as np

from .. import _dtypes as D
from .cases import (ALL, F, NUM, _cum_ref, _discrete, _fn, _hyp, _p_cum, axis_st, broadcastable_st, case, composite,
                    const, gen, shape_st)


# --- sorting -----------------------------------------------------------------------------------------
def _p_sort(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 6))
    return (s,), {"axis": draw(st.integers(-len(s), len(s) - 1)), "descending": draw(st.booleans())}


def _argsort_ref(x, *, axis, descending):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    return n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


# NOTE: small integers in every dtype, so ties are common and stability is tested; the
# gradient checks of sort draw continuous values instead (gen(discrete=True).smooth)
case("argsort", _fn("argsort"), _argsort_ref, NUM, composite(_p_sort), const((4, 5), axis=-1, descending=True),
     gen(discrete=True), out=lambda dt, kw: D.int64)
case("sort", _fn("sort"), lambda x, *, axis, descending: np.take_along_axis(
    x, _argsort_ref(x, axis=axis, descending=descending), axis=axis), NUM, composite(_p_sort),
     const((4, 5), axis=0, descending=False), gen(discrete=True))


# --- searching ---------------------------------------------------------------------------------------
def _p_search(draw, dt):
    st, _ = _hyp()
    return ((draw(st.integers(1, 8)),), draw(shape_st(0, 2, 1, 4))), {"side": draw(st.sampled_from(["left", "right"]))}


def _search_inputs(rng, dt, shapes, kw):
    a, v = (_discrete(rng, s, dt, -4, 4) for s in shapes)
    return [np.sort(a), v]


case("searchsorted", _fn("searchsorted"), lambda a, v, *, side: np.searchsorted(a, v, side=side), NUM,
     composite(_p_search), const((6,), (2, 3), side="right"), _search_inputs, out=lambda dt, kw: D.int64)


def _p_count(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3))
    return (s,), {"axis": draw(axis_st(len(s))), "keepdims": draw(st.booleans())}


case("count_nonzero", _fn("count_nonzero"),
     lambda x, *, axis, keepdims: np.asarray(np.count_nonzero(x, axis=axis, keepdims=keepdims)), ALL,
     composite(_p_count), const((3, 4), axis=1, keepdims=False), gen(discrete=True), out=lambda dt, kw: D.int64)


def _isin_inputs(rng, dt, shapes, kw):
    return [_discrete(rng, s, dt, -4, 4) for s in shapes]


def _p_isin(draw, dt):
    st, _ = _hyp()
    return (draw(shape_st(0, 3)), draw(shape_st(0, 2, 1, 4))), {"invert": draw(st.booleans())}


case("isin", _fn("isin"), lambda a, b, *, invert: np.isin(a, b, invert=invert), ALL, composite(_p_isin),
     const((3, 4), (5,), invert=False), _isin_inputs, out=lambda dt, kw: D.bool_)


# --- differences and neighbours ------------------------------------------------------------------------
def _p_diff(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 5))
    return (s,), {"axis": draw(st.integers(-len(s), len(s) - 1)), "n": draw(st.integers(1, 3))}


case("diff", _fn("diff"), lambda x, *, axis, n: np.diff(x, n=n, axis=axis), NUM, composite(_p_diff),
     const((3, 5), axis=-1, n=2), gen(ilo=-20, ihi=20), tol=4.0)


def _p_nextafter(draw, dt):
    return draw(broadcastable_st(2, 0, 3, 4)), {"dt": dt.name}


def _nextafter_ref(a, b, *, dt):
    # NOTE: one step in the tested dtype (the float64 inputs hold its values exactly)
    t = D.dtype(dt).numpy
    return np.nextafter(a.astype(t), b.astype(t)).astype(np.float64)


case("nextafter", lambda ox, a, b, *, dt: ox.nextafter(ox.asarray(a), ox.asarray(b)), _nextafter_ref, F,
     composite(_p_nextafter), lambda dt: (((3, 4), (3, 4)), {"dt": dt.name}), gen(),
     tol={d.name: 0.0 for d in F},  # NOTE: exact (a mapping: gradient checks keep their own tolerance)
     grad_ref=lambda a, b, *, dt: a)


# --- linalg (oxcore.linalg): well-conditioned inputs; sign conventions as the kernels ---------------
F2 = (D.float32, D.float64)
_LA_TOL = {"float32": 50.0, "float64": 50.0}


def _p_square(max_batch: int = 2):
    def fn(draw, dt):
        st, _ = _hyp()
        n = draw(st.integers(1, 5))
        batch = tuple(draw(st.lists(st.integers(1, 3), max_size=max_batch)))
        return (batch + (n, n),), {}
    return composite(fn)


def _p_rect(**extra):
    def fn(draw, dt):
        st, _ = _hyp()
        m, n = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        batch = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
        return (batch + (m, n),), {k: draw(v(st)) for k, v in extra.items()}
    return composite(fn)


def _spd(rng, dt, shapes, kw):
    """Symmetric positive definite, eigenvalues spread apart (smooth eigen-derivatives)."""
    out = []
    for s in shapes:
        a = rng.uniform(-1, 1, s)
        n = s[-1]
        out.append((a @ np.swapaxes(a, -1, -2) + n * np.eye(n) * np.linspace(1, 2, n)).astype(dt.numpy))
    return out


def _well(rng, dt, shapes, kw):
    """Random matrices plus a dominant diagonal (invertible, well-conditioned)."""
    out = []
    for s in shapes:
        a = rng.uniform(-1, 1, s)
        if dt.is_complex:
            a = a + 1j * rng.uniform(-1, 1, s)
        if len(s) >= 2 and s[-1] == s[-2]:
            a = a + 2 * s[-1] * np.eye(s[-1]) * rng.choice([-1, 1], s[:-2] + (1, 1))
        out.append(a.astype(dt.numpy))
    return out


def _sym(ox, x):
    return (x + ox.matrix_transpose(x)) * 0.5


def _sym_ref(x):
    return (x + np.swapaxes(x, -1, -2)) * 0.5


def _phase(p):
    a = np.abs(p)
    return np.where(a == 0, 1, p / np.where(a == 0, 1, a))


def _col_signs(v):
    """The factor per column that makes its largest-magnitude entry real and positive."""
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    return np.conj(_phase(np.take_along_axis(v, idx, axis=-2)))


def _cat(batch, *parts):
    return np.concatenate([p.reshape(batch + (-1,)) for p in parts], axis=-1)


def _qr_ref(x, *, mode):
    q, r = np.linalg.qr(x, mode=mode)
    k = min(x.shape[-2:])
    d = _phase(np.diagonal(r, axis1=-2, axis2=-1))
    q = q.copy()
    q[..., :k] *= d[..., None, :]
    r = r.copy()
    r[..., :k, :] *= np.conj(d)[..., :, None]
    return _cat(x.shape[:-2], q, r)


def _svd_ref(x, *, full_matrices):
    u, s, vh = np.linalg.svd(x, full_matrices=full_matrices)
    k = s.shape[-1]
    sg = _col_signs(u[..., :k])
    u, vh = u.copy(), vh.copy()
    u[..., :k] *= sg
    vh[..., :k, :] *= np.conj(np.swapaxes(sg, -1, -2))
    return _cat(x.shape[:-2], u, s, vh)


def _eigh_ref(x):
    w, v = np.linalg.eigh(_sym_ref(x))
    return _cat(x.shape[:-2], w, v * _col_signs(v))


def _la(name, **fixed):
    def build(ox, *xs, **kw):
        return getattr(ox.linalg, name)(*(ox.asarray(x) for x in xs), **fixed, **kw)
    return build


def _la_sym(name):
    def build(ox, x):
        return getattr(ox.linalg, name)(_sym(ox, ox.asarray(x)))
    return build


def _packed_build(name, **fixed):
    # NOTE: the public functions unpack; the case checks the op's own (packed) node
    def build(ox, x, **kw):
        from oxcore.ops import factorizations as f

        x = ox.asarray(x)
        if name == "eigh":
            x = _sym(ox, x)
        return ox.build(name, f.float_input(x), **fixed, **kw)
    return build


case("inv", _la("inv"), np.linalg.inv, F2, _p_square(), const((2, 3, 3)), _well, tol=_LA_TOL)
case("det", _la("det"), np.linalg.det, F2, _p_square(), const((2, 3, 3)), _well, tol=_LA_TOL)
case("slogdet", _packed_build("slogdet"), lambda x: np.stack(np.linalg.slogdet(x), axis=-1), F2, _p_square(),
     const((2, 3, 3)), _well, tol=_LA_TOL)


def _p_solve(draw, dt):
    st, _ = _hyp()
    n, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    return (batch + (n, n), batch + (n, k)), {}


case("solve", _la("solve"), np.linalg.solve, F2, composite(_p_solve), const((3, 3), (3, 2)), _well, tol=_LA_TOL)
_C2, _C_LA_TOL = (D.complex64, D.complex128), {"complex64": 50.0, "complex128": 50.0}
for _op, _ref in [("inv", np.linalg.inv), ("det", np.linalg.det)]:
    case(_op, _la(_op), _ref, _C2, _p_square(), const((2, 3, 3)), _well, name="complex", tol=_C_LA_TOL)
case("solve", _la("solve"), np.linalg.solve, _C2, composite(_p_solve), const((3, 3), (3, 2)), _well, name="complex",
     tol=_C_LA_TOL)

case("cholesky", _la_sym("cholesky"), lambda x: np.linalg.cholesky(_sym_ref(x)), F2, _p_square(), const((2, 3, 3)),
     _spd, tol=_LA_TOL)
case("eigvalsh", _la_sym("eigvalsh"), lambda x: np.linalg.eigvalsh(_sym_ref(x)), F2, _p_square(), const((2, 3, 3)),
     _spd, tol=_LA_TOL)
case("eigh", _packed_build("eigh"), _eigh_ref, F2, _p_square(), const((2, 3, 3)), _spd, tol=_LA_TOL)
case("svdvals", _la("svdvals"), lambda x: np.linalg.svd(x, compute_uv=False), F2, _p_rect(), const((4, 3)), _well,
     tol=_LA_TOL)
case("svd", _packed_build("svd"), _svd_ref, F2,
     _p_rect(full_matrices=lambda st: st.booleans()), const((2, 4, 3), full_matrices=False), _well, tol=_LA_TOL)
case("qr", _packed_build("qr"), _qr_ref, F2, _p_rect(mode=lambda st: st.sampled_from(["reduced", "complete"])),
     const((2, 4, 3), mode="reduced"), _well, tol=_LA_TOL)


def _hpd(rng, dt, shapes, kw):
    """Hermitian positive definite complex matrices, eigenvalues spread apart."""
    out = []
    for s in shapes:
        a = rng.uniform(-1, 1, s) + 1j * rng.uniform(-1, 1, s)
        n = s[-1]
        out.append((a @ np.conj(np.swapaxes(a, -1, -2)) + n * np.eye(n) * np.linspace(1, 2, n)).astype(dt.numpy))
    return out


case("cholesky", _la("cholesky"), np.linalg.cholesky, _C2, _p_square(), const((2, 3, 3)), _hpd, name="complex",
     tol=_C_LA_TOL)
case("eigvalsh", _la("eigvalsh"), np.linalg.eigvalsh, _C2, _p_square(), const((2, 3, 3)), _hpd, name="complex",
     tol=_C_LA_TOL, out=lambda dt, kw: D.real_dtype(dt))
case("svdvals", _la("svdvals"), lambda x: np.linalg.svd(x, compute_uv=False), _C2, _p_rect(), const((4, 3)), _well,
     name="complex", tol=_C_LA_TOL, out=lambda dt, kw: D.real_dtype(dt))
case("slogdet", _packed_build("slogdet"), lambda x: np.stack(np.linalg.slogdet(x), axis=-1), _C2, _p_square(),
     const((2, 3, 3)), _well, name="complex", tol=_C_LA_TOL)
case("eigh", lambda ox, x: ox.build("eigh", ox.asarray(x)), lambda x: _cat(x.shape[:-2], *(
    lambda w, v: (w, v * _col_signs(v)))(*np.linalg.eigh(x))), _C2, _p_square(), const((2, 3, 3)), _hpd, name="complex",
     tol=_C_LA_TOL)
case("svd", _packed_build("svd"), _svd_ref, _C2, _p_rect(full_matrices=lambda st: st.booleans()),
     const((2, 4, 3), full_matrices=False), _well, name="complex", tol=_C_LA_TOL)
case("qr", _packed_build("qr"), _qr_ref, _C2, _p_rect(mode=lambda st: st.sampled_from(["reduced", "complete"])),
     const((2, 4, 3), mode="reduced"), _well, name="complex", tol=_C_LA_TOL)


# --- complex dtypes and oxcore.fft ---------------------------------------------------------------------
C = (D.complex64, D.complex128)
_C_TOL = {"complex64": 2.0, "complex128": 2.0}


def _real_out(dt, kw):
    return D.real_dtype(dt)


p = composite(lambda draw, dt: ((draw(shape_st(0, 3)),), {}))
case("real", _fn("real"), np.real, C + F, p, const((3, 4)), gen(), out=lambda dt, kw: D.real_dtype(dt))
case("imag", _fn("imag"), lambda x: np.imag(x) if np.iscomplexobj(x) else np.zeros_like(x), C + F, p, const((3, 4)),
     gen(), out=lambda dt, kw: D.real_dtype(dt))
case("conj", _fn("conj"), np.conj, C + F, p, const((3, 4)), gen())
case("abs", _fn("abs"), np.abs, C, p, const((3, 4)), gen(), out=_real_out, name="complex")
for _op, _ref in [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide)]:
    case(_op, _fn(_op), _ref, C, composite(lambda draw, dt: (draw(broadcastable_st(2, 0, 3, 4)), {})),
         const((3, 4), (4,)), gen(0.5, 2.0), name="complex", tol=_C_TOL)
# NOTE: random points are off the branch cuts (the real or imaginary axis) almost surely
for _op, _ref in [("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("sin", np.sin), ("cos", np.cos),
                  ("tanh", np.tanh), ("square", np.square), ("reciprocal", np.reciprocal), ("negative", np.negative),
                  ("expm1", np.expm1), ("log1p", np.log1p), ("log2", np.log2), ("log10", np.log10), ("tan", np.tan),
                  ("sinh", np.sinh), ("cosh", np.cosh), ("asin", np.arcsin), ("acos", np.arccos), ("atan", np.arctan),
                  ("asinh", np.arcsinh), ("acosh", np.arccosh), ("atanh", np.arctanh), ("sign", np.sign),
                  ("round", np.round)]:
    case(_op, _fn(_op), _ref, C, p, const((3, 4)), gen(-1.5, 1.5), name="complex", tol=_C_TOL)


case("vecdot", _fn("vecdot"), lambda a, b, *, axis: np.sum(np.conj(a) * b, axis=axis), C,
     composite(lambda draw, dt: (((2, 3), (3,)), {"axis": -1})), const((2, 3), (3,), axis=-1), gen(-1.5, 1.5),
     name="complex", tol=_C_TOL)


for _op, _f, _init in (("cumulative_sum", np.cumsum, 0), ("cumulative_prod", np.cumprod, 1)):
    case(_op, _fn(_op), _cum_ref(_f, _init), C, composite(_p_cum), const((3, 4), axis=1, include_initial=True),
         gen(-1.2, 1.2), name="complex", tol=_C_TOL)


def _c_specials(rng, dt, shapes, kw):
    """Complex values with nan, inf or -inf in some real and some imaginary parts."""
    out = []
    for a in gen()(rng, dt, shapes, kw):
        edges = np.array([np.nan, np.inf, -np.inf])
        re = np.where(rng.random(a.shape) < 0.3, rng.choice(edges, a.shape), a.real)
        im = np.where(rng.random(a.shape) < 0.3, rng.choice(edges, a.shape), a.imag)
        z = np.empty(a.shape, dt.numpy)
        z.real, z.imag = re, im  # NOTE: not re + 1j * im: 1j * inf has a nan real part
        out.append(z)
    return out


def _c_pairs(rng, dt, shapes, kw):
    """Complex inputs from a small grid (both parts in {-1, 0, 1}: equal pairs are common), a few nan."""
    out = []
    for shape in shapes:
        a = rng.integers(-1, 2, shape) + 1j * rng.integers(-1, 2, shape)
        out.append(np.where(rng.random(shape) < 0.1, complex(np.nan, 0), a).astype(dt.numpy))
    return out


for _op, _ref in [("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite)]:
    case(_op, _fn(_op), _ref, C, p, const((3, 4)), _c_specials, name="complex", out=lambda dt, kw: D.bool_)
_p2 = composite(lambda draw, dt: (draw(broadcastable_st(2, 0, 3, 4)), {}))
for _op, _ref in [("equal", np.equal), ("not_equal", np.not_equal)]:
    case(_op, _fn(_op), _ref, C, _p2, const((3, 4), (3, 4)), _c_pairs, name="complex", out=lambda dt, kw: D.bool_)
# NOTE: z ** w = exp(w log z): log's error is magnified by |w log z| (MLX complex64: ~4e-5 absolute at |z^w| ~ 10)
case("pow", _fn("pow"), np.power, C, _p2, const((3, 4), (4,)), gen(0.5, 2.0), name="complex",
     tol={"complex64": 8.0, "complex128": 2.0})
for _op in ("sum", "prod", "mean"):
    case(_op, _fn(_op), getattr(np, _op), C,
         composite(lambda draw, dt: (((3, 4),), {"axis": draw(axis_st(2)), "keepdims": False})),
         const((3, 4), axis=1, keepdims=False), gen(-1.5, 1.5), name="complex", tol=_C_TOL)


def _p_fft(op):
    many = op.endswith("n")

    def fn(draw, dt):
        st, _ = _hyp()
        s = draw(shape_st(1, 3, 1, 6))
        norm = draw(st.sampled_from(["backward", "ortho", "forward"]))
        if many:
            k = draw(st.integers(1, len(s)))
            axes = tuple(draw(st.permutations(range(len(s))))[:k])
            lens = tuple(draw(st.integers(2, 6)) for _ in axes)
            return (s,), {"s": lens, "axes": axes, "norm": norm}
        return (s,), {"n": draw(st.integers(2, 7)), "axis": draw(st.integers(-len(s), len(s) - 1)), "norm": norm}
    return composite(fn)


def _fft_case(op):
    real_in = op in ("rfft", "ihfft", "rfftn")
    dts = F2 if real_in else C
    out = (lambda dt, kw: D.complex_dtype(dt)) if real_in else \
        (lambda dt, kw: D.real_dtype(dt)) if op in ("irfft", "hfft", "irfftn") else None
    many = op.endswith("n")
    ex = const((3, 6), s=(4, 6), axes=(0, 1), norm="backward") if many else const((3, 6), n=6, axis=-1, norm="ortho")

    def build(ox, x, **kw):
        return getattr(ox.fft, op)(ox.asarray(x), **kw)

    def ref(x, **kw):
        return getattr(np.fft, op)(x, **kw)
    case(op, build, ref, dts, _p_fft(op), ex, gen(), out=out, tol=4.0)


for _op in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft", "fftn", "ifftn", "rfftn", "irfftn"):
    _fft_case(_op)
