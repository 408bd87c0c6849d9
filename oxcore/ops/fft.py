"""Discrete Fourier transforms for ``oxcore.fft`` as registry ops: fft, ifft, rfft, irfft, hfft,
ihfft (one axis) and fftn, ifftn, rfftn, irfftn (several axes). Attributes are resolved at
build time: the transform lengths (``n`` / ``s``), the axes and ``norm``."""

from __future__ import annotations

import math

from .. import _dtypes as D
from .._errors import AttributeValueError, DTypeError, ShapeError
from .._registry import Category, register_op
from ._attrs import FFT

__all__: list[str] = []

NORMS = ("backward", "ortho", "forward")
#: op -> (input kind, output kind): "c" complex, "r" real
KINDS = {"fft": ("c", "c"), "ifft": ("c", "c"), "rfft": ("r", "c"), "irfft": ("c", "r"), "hfft": ("c", "r"),
         "ihfft": ("r", "c"), "fftn": ("c", "c"), "ifftn": ("c", "c"), "rfftn": ("r", "c"), "irfftn": ("c", "r")}
INVERSE = frozenset({"ifft", "irfft", "ifftn", "irfftn"})  # NOTE: NumPy scales hfft like a forward transform


def out_len(op: str, n: int) -> int:
    """Length of the (last) transformed axis of the output for transform length ``n``."""
    return n // 2 + 1 if op in ("rfft", "ihfft", "rfftn") else n


def scale(op: str, norm: str, lengths: tuple[int, ...]) -> float:
    """The factor turning a ``norm="backward"`` result of ``op`` into ``norm``'s (NumPy's
    conventions: backward leaves forward transforms unscaled and divides inverses by n)."""
    n = math.prod(lengths)
    if norm == "backward" or n == 0:
        return 1.0
    inverse = op in INVERSE
    if norm == "ortho":
        return math.sqrt(n) if inverse else 1 / math.sqrt(n)
    return float(n) if inverse else 1 / n


def _infer(op: str):
    want_in, want_out = KINDS[op]

    def infer(inputs, attrs):
        (x,) = inputs
        if want_in == "c" and not x.dtype.is_complex:
            raise DTypeError(f"fft.{op} expects a complex dtype here (the public function casts real input), "
                             f"got {x.dtype.name}")
        if want_in == "r" and x.dtype not in (D.float32, D.float64):
            raise DTypeError(f"fft.{op} expects float32 or float64, got {x.dtype.name}")
        if attrs["norm"] not in NORMS:
            raise AttributeValueError(f"Invalid norm: {attrs['norm']!r}. Valid norms are: {', '.join(NORMS)}")
        axes, lengths = attrs["axes"], attrs["s"]
        shape = list(x.shape)
        for i, (a, n) in enumerate(zip(axes, lengths)):
            if n < 1:
                raise ShapeError(f"fft.{op}: invalid transform length {n} for axis {a} (must be >= 1)")
            shape[a] = out_len(op, n) if i == len(axes) - 1 else n
        dt = D.complex_dtype(x.dtype) if want_out == "c" else D.real_dtype(x.dtype)
        return tuple(shape), dt
    return infer


for _op in KINDS:
    register_op(_op, Category.OTHER, _infer(_op), attrs=FFT,
                doc=f"{'inverse ' if _op in INVERSE else ''}{'real ' if 'r' in _op[:2] else ''}"
                    f"discrete Fourier transform over {'axes' if _op.endswith('n') else 'one axis'} ({_op})")
