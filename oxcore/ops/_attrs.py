"""Attribute schemas shared by several op declarations (``Attr``: what a kernel receives)."""

from __future__ import annotations

from typing import Any, Literal

from .._dtypes import DType
from .._registry import Attr

Axes = tuple[int, ...]

#: reductions: ``axis=None`` (every axis), an int or a sequence, normalised by ``norm_axes``
AXES = Attr("axis", Axes, default=None, note="sorted, unique, non-negative; the public None becomes every axis")
KEEPDIMS = Attr("keepdims", bool, default=False)


def axis(default: Any = -1, note: str = "non-negative") -> Attr:
    """``axis`` of ops along one axis, normalised by ``norm_axis``."""
    return Attr("axis", int, default=default, note=note)



#: the result's (and accumulator's) dtype of sum, prod, cumulative_*
ACCUM_DTYPE = Attr("dtype", DType, default=None, note="a DType, never None: the public None becomes the input's "
                                                      "dtype, int64 for bool and signed, uint64 for unsigned")
#: creation ops: the public None becomes the default float (int64 for all-int arange)
CREATE_DTYPE = Attr("dtype", DType, default=None, note="a DType, never None: the public None becomes float32")
SHAPE = Attr("shape", Axes, note="a tuple of ints >= 0 (an int becomes a 1-tuple)")
GROUP_SIZE = Attr("group_size", int, default=64, note="32, 64 or 128 along the last axis")
BITS = Attr("bits", int, default=4, note="4 or 8")
FFT = (Attr("s", Axes, default=None, note="one output length per transformed axis; None: the input's lengths "
                                          "(2 * (n - 1) on the last axis of irfft/hfft)"),
       Attr("axes", Axes, default=None, note="non-negative, unique, in the caller's order; one-axis transforms: "
                                             "(axis,), default -1"),
       Attr("norm", Literal["backward", "ortho", "forward"], default="backward"))
CORRECTION = Attr("correction", float, default=0.0, note="degrees of freedom subtracted from the count (1.0: sample)")
EPS = Attr("eps", float, default=1e-5, note="added to the variance (mean square) before the square root")
SORT_ATTRS = (Attr("axis", int, default=-1, note="non-negative"), Attr("descending", bool, default=False),
              Attr("stable", bool, default=True, note="always True: every sort is stable"))
#: index / index_update: one entry per indexed axis of x (trailing axes untouched)
SPEC = Attr("spec", tuple[tuple[Any, ...], ...],
            note="per axis ('s', start, stop, step) for a slice (Python semantics, None allowed) or ('a', k) for "
                 "index-array input k (after x; integer, broadcast together); ints, masks and newaxis are resolved")
