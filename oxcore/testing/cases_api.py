"""Conformance cases for the Array API extras: sort, argsort, searchsorted, count_nonzero,
diff, nextafter (imported by ``oxcore.testing.cases``, whose ``CASES`` they join)."""

from __future__ import annotations

import numpy as np

from .. import _dtypes as D
from .cases import (ALL, F, NUM, _discrete, _fn, _hyp, axis_st, broadcastable_st, case, composite, const, gen,
                    shape_st)


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
